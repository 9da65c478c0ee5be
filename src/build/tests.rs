//! Unit tests of building: scan, hash, loading `build:` and the plan of builds.

use super::*;
use crate::names::labels;
use crate::spec::model::Build;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

fn build_of(dir: &Path) -> Build {
    Build {
        context: dir.display().to_string(),
        dockerfile: Some("Dockerfile".into()),
        ..Build::default()
    }
}

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (p, text) in files {
        let path = dir.join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
}

fn paths(c: &Context) -> Vec<&str> {
    c.entries.iter().map(|e| e.path.as_str()).collect()
}

#[test]
fn scan_respects_dockerignore_and_always_sends_the_build_files() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("Dockerfile", "FROM scratch\n"),
            (".dockerignore", "*\n!app\n**/cache\nnode_modules\n"),
            ("app/main.js", "x"),
            // Patterns are relative to the root: `node_modules` is only the top one.
            ("app/node_modules/dep.js", "y"),
            ("app/cache/x", "w"),
            ("secret.env", "z"),
        ],
    );
    let c = scan(&build_of(dir.path())).unwrap();
    assert_eq!(
        paths(&c),
        [
            ".dockerignore",
            "Dockerfile",
            "app",
            "app/main.js",
            "app/node_modules",
            "app/node_modules/dep.js"
        ]
    );
    assert_eq!(c.dockerfile, "Dockerfile");
}

#[test]
fn exceptions_reach_into_excluded_directories() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("Dockerfile", "FROM scratch\n"),
            (".dockerignore", "vendor\n!vendor/keep.txt\n"),
            ("vendor/keep.txt", "k"),
            ("vendor/drop.txt", "d"),
        ],
    );
    let c = scan(&build_of(dir.path())).unwrap();
    assert_eq!(
        paths(&c),
        [".dockerignore", "Dockerfile", "vendor/keep.txt"]
    );
}

#[test]
fn hash_follows_content_and_settings_not_ignored_files() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("Dockerfile", "FROM scratch\nCOPY a /a\n"),
            (".dockerignore", "*.log\n"),
            ("a", "1"),
        ],
    );
    let b = build_of(dir.path());
    let h0 = hash(&b).unwrap();
    assert_eq!(hash(&b).unwrap(), h0, "stable");
    write(dir.path(), &[("debug.log", "noise")]);
    assert_eq!(hash(&b).unwrap(), h0, "an ignored file does not count");
    write(dir.path(), &[("a", "2")]);
    let h1 = hash(&b).unwrap();
    assert_ne!(h1.context, h0.context);
    assert_eq!(h1.settings, h0.settings);
    assert_eq!(h1.reason(&h0), "build: context changed");
    let mut b2 = b.clone();
    b2.args.insert("V".into(), "1".into());
    let h2 = hash(&b2).unwrap();
    assert_eq!(
        (h2.context.as_str(), h2.reason(&h1)),
        (h1.context.as_str(), "build: build settings changed")
    );
    b2.cache_from.push("x".into());
    b2.no_cache = true;
    assert_eq!(hash(&b2).unwrap(), h2, "how to build is not what is built");
    assert_eq!(BuildHash::parse(&h2.to_string()), Some(h2.clone()));
    assert_eq!(
        crate::names::parse_build_label(&format!("shop/web@{h2}")),
        Some(("shop".into(), "web".into(), h2))
    );
}

#[test]
fn the_hash_does_not_depend_on_where_the_context_is() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for d in [a.path(), b.path()] {
        write(d, &[("Dockerfile", "FROM scratch\n"), ("x/y", "1")]);
    }
    assert_eq!(
        hash(&build_of(a.path())).unwrap(),
        hash(&build_of(b.path())).unwrap()
    );
}

#[test]
fn inline_and_outside_dockerfiles_are_added() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[("ctx/a", "1"), ("Other.Dockerfile", "FROM scratch\n")],
    );
    let mut b = build_of(&dir.path().join("ctx"));
    b.dockerfile = Some("../Other.Dockerfile".into());
    let c = scan(&b).unwrap();
    let (name, bytes) = c.added.clone().unwrap();
    assert_eq!(
        (c.dockerfile.as_str(), bytes.as_slice()),
        (name.as_str(), b"FROM scratch\n".as_slice())
    );
    b.dockerfile = None;
    b.dockerfile_inline = Some("FROM scratch\nCOPY a /\n".into());
    let c2 = scan(&b).unwrap();
    assert_ne!(BuildHash::of(&c2, &b), BuildHash::of(&c, &b));
    let tar_bytes = write_tar(&c2, Vec::new()).unwrap();
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["a".to_string(), c2.dockerfile.clone()]);
    b.dockerfile_inline = None;
    b.dockerfile = Some("Missing".into());
    assert!(matches!(scan(&b), Err(ContextError::NoDockerfile(_))));
}

fn load(dir: &Path, env: &[(&str, &str)]) -> Result<crate::spec::Desired, crate::spec::LoadError> {
    let layout = crate::source::discover(dir).unwrap();
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    crate::spec::load(&layout, &crate::source::LocalFs, &env, &[])
}

/// `build:` loads in both forms with Compose's defaults and names.
#[test]
fn build_sections_load_like_compose() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("ctx/Dockerfile", "FROM scratch\n"),
            ("other.Dockerfile", "FROM scratch\n"),
            (
                "compose.yaml",
                "name: s\nservices:\n  a:\n    build: ./ctx\n  b:\n    image: x/b:1\n    build:\n      context: ctx\n      dockerfile: ../other.Dockerfile\n      args: [A=1, FROM_ENV, UNSET]\n      shm_size: 1k\n      labels: {team: web}\n  c:\n    build:\n      dockerfile_inline: FROM scratch\n    pull_policy: never\n",
            ),
        ],
    );
    let d = load(dir.path(), &[("FROM_ENV", "e")]).unwrap();
    let stack = &d.stacks[0];
    let (a, b, c) = (
        &stack.services["a"],
        &stack.services["b"],
        &stack.services["c"],
    );
    let ab = a.build.as_ref().unwrap();
    assert_eq!(ab.context, dir.path().join("ctx").display().to_string());
    assert_eq!(ab.dockerfile.as_deref(), Some("Dockerfile"));
    assert_eq!(a.image_ref("s", "a"), "s-a");
    assert!(a.builds());
    let bb = b.build.as_ref().unwrap();
    assert_eq!(
        bb.args,
        BTreeMap::from([("A".into(), "1".into()), ("FROM_ENV".into(), "e".into())])
    );
    assert_eq!(bb.shm_size.map(|s| s.0), Some(1024));
    assert_eq!(b.image_ref("s", "b"), "x/b:1");
    let cb = c.build.as_ref().unwrap();
    assert_eq!(
        (cb.dockerfile.as_deref(), cb.context.as_str()),
        (None, dir.path().to_str().unwrap())
    );
    assert!(!c.builds(), "pull_policy: never neither pulls nor builds");
    // Both Dockerfiles are found, inside and outside the context.
    assert_ne!(hash(ab).unwrap(), hash(bb).unwrap());
}

#[test]
fn missing_contexts_and_dockerfiles_fail_the_load() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[(
            "compose.yaml",
            "services:\n  a:\n    build: ./nope\n  b:\n    build:\n      context: .\n      dockerfile: Nope\n",
        )],
    );
    let e = load(dir.path(), &[]).unwrap_err();
    let keys: Vec<(&str, usize)> = e
        .diags
        .iter()
        .map(|d| (d.key.as_str(), d.mark.line))
        .collect();
    assert_eq!(
        keys,
        [
            ("services.a.build.context", 3),
            ("services.b.build.dockerfile", 7)
        ]
    );
}

#[test]
fn a_stored_revision_keeps_its_build_hashes() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("Dockerfile", "FROM scratch\n"),
            ("compose.yaml", "name: s\nservices:\n  a:\n    build: .\n"),
        ],
    );
    let d = load(dir.path(), &[]).unwrap();
    let h = hash(d.stacks[0].services["a"].build.as_ref().unwrap()).unwrap();
    let builds = BTreeMap::from([("a".to_string(), h.to_string())]);
    let bytes = crate::spec::render::to_stored_built(&d.stacks[0], &d.masker, &builds);
    // The repository may be gone by the time of a rollback.
    drop(dir);
    let (back, _) = crate::spec::load_stored(&bytes, &crate::source::LocalFs).unwrap();
    assert_eq!(back.source.pinned_builds, builds);
    assert_eq!(back.services["a"].build, d.stacks[0].services["a"].build);
    // Stored again, it is the same revision.
    assert_eq!(crate::spec::render::to_stored(&back, &d.masker), bytes);
    // Without builds, nothing changes in what is stored.
    assert!(
        !String::from_utf8_lossy(&crate::spec::render::to_stored(&d.stacks[0], &d.masker))
            .contains("\"builds\"")
    );
}

/// The plan is a function of the hashes and the labels on the host:
/// only an image whose label differs is built, before anything else.
#[test]
fn the_plan_builds_only_what_changed() {
    use crate::plan::{ActionKind, Builds, plan};
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("a/Dockerfile", "FROM scratch\n"),
            ("b/Dockerfile", "FROM scratch\nCOPY x /\n"),
            ("b/x", "1"),
            (
                "compose.yaml",
                "name: s\nservices:\n  a:\n    build: ./a\n  b:\n    build: ./b\n  c:\n    build: ./b\n    image: s/c\n    pull_policy: missing\n",
            ),
        ],
    );
    let d = load(dir.path(), &[]).unwrap();
    let stack = &d.stacks[0];
    let h = |svc: &str| hash(stack.services[svc].build.as_ref().unwrap()).unwrap();
    let image = |id: &str, label: Option<String>| {
        Some(crate::diff::ImageDefaults {
            id: id.into(),
            labels: label
                .map(|l| BTreeMap::from([(labels::BUILD.to_string(), l)]))
                .unwrap_or_default(),
            ..Default::default()
        })
    };
    let mut live = crate::live::Live::default();
    live.images.insert(
        "s-a".into(),
        image("sha256:a", Some(format!("s/a@{}", h("a")))),
    );
    let old = BuildHash {
        context: "0".repeat(16),
        settings: h("b").settings,
    };
    live.images
        .insert("s-b".into(), image("sha256:b", Some(format!("s/b@{old}"))));
    // Not plimsoll's build, but `pull_policy: missing` only builds a missing image.
    live.images.insert("s/c".into(), image("sha256:c", None));
    let builds: Builds = ["a", "b", "c"]
        .iter()
        .map(|svc| (("s".to_string(), svc.to_string()), Ok(h(svc))))
        .collect();
    let p = plan(
        &[stack],
        &live,
        &builds,
        &crate::mounts::Mounts::new(),
        &d.masker,
    );
    let built: Vec<(ActionKind, &str, &str)> = p
        .actions
        .iter()
        .map(|a| (a.action, a.target.as_str(), a.reasons[0].as_str()))
        .collect();
    assert_eq!(
        built[0],
        (ActionKind::Build, "s-b", "build: context changed")
    );
    assert!(
        built[1..].iter().all(|a| a.0 != ActionKind::Build),
        "{built:?}"
    );
    // A context that cannot be read is a conflict of its service, not a build.
    let mut broken = builds.clone();
    broken.insert(
        ("s".into(), "a".into()),
        Err(crate::plan::BuildInputError::Context(std::sync::Arc::from(
            Box::<dyn std::error::Error + Send + Sync>::from("cannot read x"),
        ))),
    );
    live.images.remove("s-a");
    let p = plan(
        &[stack],
        &live,
        &broken,
        &crate::mounts::Mounts::new(),
        &d.masker,
    );
    assert_eq!(p.conflicts.len(), 1);
    assert_eq!(p.conflicts[0].reason, "cannot build s-a: cannot read x");
    assert!(!p.actions.iter().any(|a| a.action == ActionKind::PullImage));
}

#[test]
fn base_images_skip_stages_scratch_and_args() {
    let df = "ARG V=1\nFROM golang:1.22 AS build\nRUN x\nFROM build AS test\nFROM --platform=linux/amd64 scratch\nFROM registry.example.com/base:${V}\nFROM alpine:3\nCOPY --from=build /x /x\n";
    assert_eq!(base_images(df), ["golang:1.22", "alpine:3"]);
}
