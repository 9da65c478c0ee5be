//! Entry points for the fuzz targets in `fuzz/` (and their regression tests):
//! each takes the raw bytes a fuzzer made and runs one parser of untrusted
//! input on them. A parser may refuse the input with an error; it must not
//! panic, overflow the stack, or run out of memory or time (the fuzzer runs
//! with limits on each). Not a stable API.
//!
//! Targets: [`yaml`] (the YAML reader and the typed deserializer), [`interpolate`]
//! (`${...}` and the variables it names), [`dotenv`] (`.env` and env files) and
//! [`webhook`] (a push delivery: JSON or a form body, every provider's headers).

use std::path::Path;

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::spec::{dotenv as env_file, interpolate as template, yaml as reader};

/// The variables every target's lookup knows: one set, one empty, one long.
fn lookup(name: &str) -> Option<String> {
    match name {
        "A" => Some("value".into()),
        "E" => Some(String::new()),
        "L" => Some("l".repeat(4096)),
        _ => None,
    }
}

/// Parses the input as a Compose file and deserializes it into a generic
/// value, as the loader does with every file of a stack.
pub fn yaml(data: &[u8]) {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(node) = reader::parse(src, Path::new("fuzz.yaml")) {
        let _ = reader::from_node::<serde_json::Value>(&node);
    }
}

/// Interpolates the input, and lists the variables it references.
pub fn interpolate(data: &[u8]) {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(out) = template::interpolate(src, &lookup) {
        assert!(
            out.len() <= template::MAX_OUTPUT_BYTES,
            "the output budget holds"
        );
    }
    let _ = template::referenced_variables(src);
}

/// Parses the input as a `.env` file.
pub fn dotenv(data: &[u8]) {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(vars) = env_file::parse(src, &lookup) {
        assert!(
            vars.values().all(|v| v.len() <= env_file::MAX_VALUE_BYTES),
            "the value budget holds"
        );
    }
}

/// Parses the input as a webhook delivery: the first byte picks the
/// provider's event header and the content type, the rest is the body.
pub fn webhook(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let events = [
        ("x-github-event", "push"),
        ("x-gitlab-event", "Push Hook"),
        ("x-gitea-event", "push"),
        ("x-forgejo-event", "push"),
        ("x-github-event", "ping"),
    ];
    let (name, value) = events[usize::from(pick) % events.len()];
    let content_type = if pick & 0x80 == 0 {
        "application/json"
    } else {
        "application/x-www-form-urlencoded"
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static(name),
        HeaderValue::from_static(value),
    );
    headers.insert(
        HeaderName::from_static("content-type"),
        HeaderValue::from_static(content_type),
    );
    let _ = crate::agent::webhook::parse(&headers, body);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every input committed under `fuzz/corpus/` (the seeds and the crashes
    /// the fuzzer found, which became regression inputs) runs through its target.
    #[test]
    fn the_fuzz_corpus_runs_clean() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        type Target = fn(&[u8]);
        let targets: [(&str, Target); 4] = [
            ("yaml", yaml),
            ("interpolate", interpolate),
            ("dotenv", dotenv),
            ("webhook", webhook),
        ];
        for (name, target) in targets {
            let dir = root.join(name);
            let mut n = 0;
            for entry in
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            {
                let path = entry.unwrap().path();
                target(&std::fs::read(&path).unwrap());
                n += 1;
            }
            assert!(n > 0, "{} holds seeds", dir.display());
        }
    }
}
