use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::{PromoteError, images, patch, pin, pinned_digest};
use crate::drift::Patched;
use crate::source::LocalFs;
use crate::spec::load_path;

const CONFIG: &str = "hosts:\n  s-1: {labels: {env: stage}}\n  p-1: {labels: {env: prod}}\n\
    environments:\n  stage: {labels: {env: stage}}\n  prod: {labels: {env: prod}}\n";
const NEW: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const OLD: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

fn repo(stack: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let shop = dir.path().join("stacks/shop");
    fs::create_dir_all(&shop).unwrap();
    fs::write(dir.path().join("plimsoll.yaml"), CONFIG).unwrap();
    for (name, text) in stack {
        fs::write(shop.join(name), text).unwrap();
    }
    dir
}

fn digests(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(i, d)| (i.to_string(), d.to_string()))
        .collect()
}

/// The patch from stage to prod of the repository at `dir`, and the
/// repository loaded again with it applied.
fn promote(
    dir: &Path,
    resolved: &BTreeMap<String, String>,
) -> (crate::drift::Patch, crate::spec::Desired) {
    let desired = load_path(dir);
    let found = images(&desired, "stage", "prod", &[]).unwrap();
    let p = patch(&desired, "prod", &found, resolved, &LocalFs).patch;
    let patched = Patched {
        base: &LocalFs,
        edited: &p.edited,
    };
    let layout = crate::source::discover_in(&patched, dir).unwrap();
    let after = crate::spec::load(&layout, &patched, &Default::default(), &[]).unwrap();
    (p, after)
}

fn prod_image(d: &crate::spec::Desired, service: &str) -> String {
    d.stacks_on("p-1")[0].whole().services[service]
        .image
        .clone()
        .unwrap()
}

#[test]
fn pins_the_stage_digest_in_the_existing_production_file() {
    let dir = repo(&[
        (
            "compose.yaml",
            "services:\n  web:\n    image: reg.test/shop/web:latest\n  db:\n    image: reg.test/db:15\n",
        ),
        (
            "compose.stage.yaml",
            "services:\n  web:\n    image: reg.test/shop/web:main\n",
        ),
        (
            "compose.prod.yaml",
            &format!(
                "# production pins digests\nservices:\n  web:\n    image: reg.test/shop/web:v1@{OLD}  # promoted\n    environment: {{LEVEL: prod}}\n"
            ),
        ),
    ]);
    let resolved = digests(&[("reg.test/shop/web:main", NEW), ("reg.test/db:15", OLD)]);
    let (p, after) = promote(dir.path(), &resolved);
    assert_eq!(
        p.written,
        [
            format!("shop/db: image reg.test/db:15@{OLD}"),
            format!("shop/web: image reg.test/shop/web:main@{NEW}"),
        ]
    );
    assert!(p.unwritten.is_empty(), "{:?}", p.unwritten);
    assert_eq!(
        prod_image(&after, "web"),
        format!("reg.test/shop/web:main@{NEW}")
    );
    assert_eq!(prod_image(&after, "db"), format!("reg.test/db:15@{OLD}"));
    // Stage is as it was; the comment and the other keys too.
    assert_eq!(
        after.stacks_on("s-1")[0].services["web"].image.as_deref(),
        Some("reg.test/shop/web:main")
    );
    let text = p.to_text_as("promote --from stage --to prod", "pins");
    assert!(
        text.contains("--- a/stacks/shop/compose.prod.yaml\n+++ b/stacks/shop/compose.prod.yaml\n"),
        "{text}"
    );
    assert!(text.contains(&format!("-    image: reg.test/shop/web:v1@{OLD}  # promoted\n+    image: reg.test/shop/web:main@{NEW}  # promoted\n")), "{text}");
    assert!(
        text.contains("+  db:\n+    image: reg.test/db:15@"),
        "{text}"
    );
    assert!(text.contains(" # production pins digests\n"), "{text}");

    // Once applied, promoting again finds production pinned: nothing to write.
    for (path, t) in &p.edited {
        fs::write(path, t).unwrap();
    }
    let applied = load_path(dir.path());
    let found = images(&applied, "stage", "prod", &[]).unwrap();
    let second = patch(&applied, "prod", &found, &resolved, &LocalFs).patch;
    assert!(second.is_empty(), "{}", second.diff);
    assert!(second.written.is_empty());
}

#[test]
fn a_stack_without_a_production_file_gets_one_that_git_apply_creates() {
    let dir = repo(&[
        (
            "compose.yaml",
            "services:\n  web:\n    image: reg.test/web:latest\n",
        ),
        (".env.prod", "LEVEL=prod\n"),
    ]);
    let (p, after) = promote(dir.path(), &digests(&[("reg.test/web:latest", NEW)]));
    assert_eq!(
        prod_image(&after, "web"),
        format!("reg.test/web:latest@{NEW}")
    );
    assert_eq!(
        p.diff,
        format!(
            "diff --git a/stacks/shop/compose.prod.yaml b/stacks/shop/compose.prod.yaml\nnew file mode 100644\n\
             --- /dev/null\n+++ b/stacks/shop/compose.prod.yaml\n@@ -0,0 +1,3 @@\n+services:\n+  web:\n+    image: reg.test/web:latest@{NEW}\n"
        )
    );
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    git(&["init", "-q"]);
    fs::write(
        dir.path().join("promote.patch"),
        p.to_text_as("promote", "pins"),
    )
    .unwrap();
    git(&["apply", "promote.patch"]);
    assert_eq!(
        fs::read_to_string(dir.path().join("stacks/shop/compose.prod.yaml")).unwrap(),
        format!("services:\n  web:\n    image: reg.test/web:latest@{NEW}\n")
    );
}

#[test]
fn a_digest_pinned_in_stage_needs_no_registry_and_flow_style_is_left_to_the_reader() {
    let dir = repo(&[
        (
            "compose.yaml",
            "services:\n  web:\n    image: reg.test/web:1\n  api:\n    image: reg.test/api:1\n  built:\n    build: .\n    image: shop-built\n",
        ),
        ("Dockerfile", "FROM scratch\n"),
        (
            "compose.stage.yaml",
            &format!("services:\n  web:\n    image: reg.test/web@{NEW}\n"),
        ),
        (
            "compose.prod.yaml",
            "services: {api: {image: reg.test/api:1}}\n",
        ),
    ]);
    let desired = load_path(dir.path());
    let found = images(&desired, "stage", "prod", &[]).unwrap();
    // The built service is the host's own: not promoted.
    let names: Vec<&str> = found.iter().map(|i| i.service.as_str()).collect();
    assert_eq!(names, ["api", "web"]);
    let promotion = patch(&desired, "prod", &found, &digests(&[]), &LocalFs);
    assert!(promotion.pins.is_empty());
    let p = promotion.patch;
    assert!(p.written.is_empty());
    let why: Vec<String> = p.unwritten.iter().map(ToString::to_string).collect();
    assert_eq!(why.len(), 2, "{why:?}");
    assert!(
        why[0].starts_with("shop/api: image: no digest was found"),
        "{why:?}"
    );
    assert_eq!(
        why[1],
        format!(
            "shop/web: image: `services` is written in flow style or over several lines; edit it by hand: \
             set `image: reg.test/web@{NEW}` in stacks/shop/compose.prod.yaml"
        )
    );
}

#[test]
fn unknown_or_equal_environments_are_errors_that_name_the_known_ones() {
    let dir = repo(&[("compose.yaml", "services:\n  web:\n    image: web\n")]);
    let desired = load_path(dir.path());
    let e = images(&desired, "staging", "prod", &[]).unwrap_err();
    assert!(matches!(e, PromoteError::UnknownEnvironment { .. }));
    assert_eq!(
        e.to_string(),
        "environment `staging` is not in plimsoll.yaml's `environments:` (it has prod, stage); name one of them with --from and --to"
    );
    let e = images(&desired, "prod", "prod", &[]).unwrap_err();
    assert!(matches!(e, PromoteError::SameEnvironment(_)));
}

#[test]
fn references_are_pinned_by_name_and_tag() {
    assert_eq!(pinned_digest("web:1"), None);
    assert_eq!(pinned_digest(&format!("web@{NEW}")), Some(NEW));
    assert_eq!(pin("reg:5000/web:1", NEW), format!("reg:5000/web:1@{NEW}"));
    assert_eq!(pin(&format!("web:1@{OLD}"), NEW), format!("web:1@{NEW}"));
}
