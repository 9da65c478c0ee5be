//! Build hashing, pure: the content address of a scanned context and the
//! build settings ([`BuildHash::of`]; the type itself is in
//! [`crate::names`], beside the label that carries it), and the images a
//! Dockerfile starts from ([`base_images`]).

use sha2::{Digest, Sha256};

use super::scan::{Context, EntryKind, sha256_hex};
use crate::names::BuildHash;
use crate::spec::model::Build;

impl BuildHash {
    /// Pure: the hash of a scanned context and the build settings. Paths on
    /// the host (where the repository is checked out) and settings that only
    /// say how to build (`cache_from`, `no_cache`, `pull`) do not count.
    pub fn of(context: &Context, build: &Build) -> BuildHash {
        let mut h = Sha256::new();
        for e in &context.entries {
            h.update(e.path.as_bytes());
            h.update([0]);
            match &e.kind {
                EntryKind::File { digest, .. } => h.update(format!("f {:o} {digest}", e.mode)),
                EntryKind::Dir => h.update(format!("d {:o}", e.mode)),
                EntryKind::Symlink(t) => h.update(format!("l {t}")),
            }
            h.update([b'\n']);
        }
        if let Some((name, bytes)) = &context.added {
            h.update(format!("+{name}\0{}\n", sha256_hex(bytes)));
        }
        let ctx = hex::encode(h.finalize());
        let mut settings = serde_json::json!({
            "dockerfile": context.dockerfile,
            "args": build.args,
            "labels": build.labels,
            "extra_hosts": build.extra_hosts,
            "network": build.network,
            "target": build.target,
            "shm_size": build.shm_size.map(|b| b.0),
        });
        // Only when set, so images built before `tags` existed keep their hash.
        if !build.tags.is_empty() {
            settings["tags"] = serde_json::json!(build.tags);
        }
        let settings = sha256_hex(&serde_json::to_vec(&settings).expect("JSON serializes"));
        BuildHash {
            context: ctx[..16].to_string(),
            settings: settings[..16].to_string(),
        }
    }
}

/// The images a Dockerfile starts `FROM` (not stages, not `scratch`, not
/// ones built from `ARG`s).
pub fn base_images(dockerfile: &str) -> Vec<String> {
    let mut stages: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in dockerfile.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if !words
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case("FROM"))
        {
            continue;
        }
        let rest: Vec<&str> = words[1..]
            .iter()
            .copied()
            .filter(|w| !w.starts_with("--"))
            .collect();
        let Some(image) = rest.first() else { continue };
        let lower = image.to_ascii_lowercase();
        if lower != "scratch" && !image.contains('$') && !stages.contains(&lower) {
            out.push(image.to_string());
        }
        if let [_, kw, name, ..] = rest.as_slice()
            && kw.eq_ignore_ascii_case("AS")
        {
            stages.push(name.to_ascii_lowercase());
        }
    }
    out
}
