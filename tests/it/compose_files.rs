//! Several Compose files per stack: profiles chosen by `--profile`,
//! `PLIMSOLL_PROFILES` and plimsoll.yaml, override files, `include:` and
//! `extends:`, with errors that name the file and line they come from. (The
//! rendered results are compared with Compose's in `conformance`.)

use std::path::Path;

use crate::support::plimsoll_output as plimsoll;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, body) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, body).expect("write");
    }
}

/// The service names `plimsoll render --format json` prints for each stack of a repository.
fn services(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let mut all = vec!["render", ".", "--format", "json"];
    all.extend_from_slice(args);
    let out = plimsoll(dir, &all, env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let stack = v.get("services").map_or_else(
        || {
            v.as_object()
                .expect("stacks")
                .values()
                .next()
                .expect("a stack")
                .clone()
        },
        |_| v.clone(),
    );
    stack["services"]
        .as_object()
        .expect("services")
        .keys()
        .cloned()
        .collect()
}

const PROFILED: &str = "services:
  app: {image: busybox}
  debug: {image: busybox, profiles: [debug]}
  tools: {image: busybox, profiles: [tools]}
";

#[test]
fn profile_flag_replaces_compose_profiles_and_plimsoll_yaml() {
    let t = tempfile::tempdir().expect("tempdir");
    write(
        t.path(),
        &[
            ("plimsoll.yaml", "stacks:\n  shop: {profiles: [tools]}\n"),
            ("stacks/shop/compose.yaml", PROFILED),
            ("stacks/shop/.env", "COMPOSE_PROFILES=debug\n"),
        ],
    );
    // plimsoll.yaml's per-stack profiles win over COMPOSE_PROFILES.
    assert_eq!(services(t.path(), &[], &[]), ["app", "tools"]);
    // --profile wins over both; it is repeatable.
    assert_eq!(
        services(t.path(), &["--profile", "debug"], &[]),
        ["app", "debug"]
    );
    assert_eq!(
        services(t.path(), &["--profile", "debug", "--profile", "tools"], &[]),
        ["app", "debug", "tools"]
    );
    // PLIMSOLL_PROFILES is the flag's variable (comma-separated).
    assert_eq!(
        services(t.path(), &[], &[("PLIMSOLL_PROFILES", "debug,tools")]),
        ["app", "debug", "tools"]
    );
    assert_eq!(
        services(t.path(), &["--profile", "*"], &[]),
        ["app", "debug", "tools"]
    );
}

#[test]
fn compose_profiles_apply_without_flag_or_plimsoll_yaml() {
    let t = tempfile::tempdir().expect("tempdir");
    write(t.path(), &[("compose.yaml", PROFILED)]);
    assert_eq!(services(t.path(), &[], &[]), ["app"]);
    assert_eq!(
        services(
            t.path(),
            &["--pass-env", "COMPOSE_PROFILES"],
            &[("COMPOSE_PROFILES", "tools")]
        ),
        ["app", "tools"]
    );
    // validate and graph take the flag too.
    let out = plimsoll(t.path(), &["validate", ".", "--profile", "debug"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("app, debug"),
        "{}",
        text(&out.stdout)
    );
    let out = plimsoll(t.path(), &["graph", ".", "--profile", "tools"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("tools"), "{}", text(&out.stdout));
}

#[test]
fn a_profile_does_not_pull_in_dependencies() {
    // As `docker compose --profile x config`: a dependency of an enabled
    // service that no active profile enables is an error.
    let t = tempfile::tempdir().expect("tempdir");
    write(
        t.path(),
        &[(
            "compose.yaml",
            "services:\n  b:\n    image: busybox\n    profiles: [x]\n    depends_on: [c]\n  c:\n    image: busybox\n    profiles: [y]\n",
        )],
    );
    let out = plimsoll(t.path(), &["validate", ".", "--profile", "x"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("compose.yaml:5:"), "{err}");
    assert!(err.contains("--profile y"), "{err}");
    let out = plimsoll(
        t.path(),
        &["validate", ".", "--profile", "x", "--profile", "y"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn override_file_errors_name_the_override_file_and_line() {
    let t = tempfile::tempdir().expect("tempdir");
    write(
        t.path(),
        &[
            (
                "compose.yaml",
                "services:\n  web:\n    image: nginx\n    ports: ['80:80']\n",
            ),
            (
                "compose.override.yaml",
                "services:\n  web:\n    restart: sometimes\n    ports: ['99999:80']\n",
            ),
        ],
    );
    let out = plimsoll(t.path(), &["validate", "."], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("compose.override.yaml:3:"), "{err}");
    assert!(err.contains("compose.override.yaml:4:"), "{err}");
    assert!(!err.contains("compose.yaml:"), "{err}");
}

#[test]
fn override_file_is_merged_for_a_directory_not_for_a_named_file() {
    let t = tempfile::tempdir().expect("tempdir");
    write(
        t.path(),
        &[
            ("compose.yaml", "services:\n  web:\n    image: nginx\n"),
            (
                "docker-compose.override.yml",
                "services:\n  web:\n    image: nginx:1.27\n  debug:\n    image: busybox\n",
            ),
        ],
    );
    assert_eq!(services(t.path(), &[], &[]), ["debug", "web"]);
    // `plimsoll render compose.yaml` reads that file alone, as `docker compose -f compose.yaml` does.
    let out = plimsoll(
        t.path(),
        &["render", "compose.yaml", "--format", "json"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["services"]["web"]["image"], "nginx");
    assert!(v["services"].get("debug").is_none());
}

#[test]
fn include_errors_name_the_included_file_and_line() {
    let t = tempfile::tempdir().expect("tempdir");
    write(
        t.path(),
        &[
            (
                "compose.yaml",
                "include:\n  - lib/compose.yaml\nservices:\n  web:\n    image: nginx\n",
            ),
            (
                "lib/compose.yaml",
                "services:\n  db:\n    image: postgres\n    restart: sometimes\n",
            ),
        ],
    );
    let out = plimsoll(t.path(), &["validate", "."], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("lib/compose.yaml:4:"), "{err}");
}

#[test]
fn include_cycles_and_conflicts_are_errors() {
    let t = tempfile::tempdir().expect("tempdir");
    write(
        t.path(),
        &[
            (
                "compose.yaml",
                "include:\n  - a/compose.yaml\nservices:\n  web:\n    image: nginx\n",
            ),
            (
                "a/compose.yaml",
                "include:\n  - ../b/compose.yaml\nservices:\n  a:\n    image: busybox\n",
            ),
            (
                "b/compose.yaml",
                "include:\n  - ../a/compose.yaml\nservices:\n  b:\n    image: busybox\n",
            ),
        ],
    );
    let out = plimsoll(t.path(), &["validate", "."], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("include cycle"), "{err}");
    assert!(err.contains("b/compose.yaml:2:"), "{err}");

    write(
        t.path(),
        &[
            (
                "compose.yaml",
                "include:\n  - a/compose.yaml\nservices:\n  a:\n    image: nginx\n",
            ),
            ("a/compose.yaml", "services:\n  a:\n    image: busybox\n"),
        ],
    );
    let out = plimsoll(t.path(), &["validate", "."], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("a/compose.yaml:2:3"), "{err}");
    assert!(err.contains("already defines"), "{err}");
}

#[test]
fn extends_cycles_and_errors_name_file_and_line() {
    let t = tempfile::tempdir().expect("tempdir");
    write(
        t.path(),
        &[(
            "compose.yaml",
            "services:\n  a:\n    image: x\n    extends: b\n  b:\n    extends: {service: a}\n",
        )],
    );
    let out = plimsoll(t.path(), &["validate", "."], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("extends cycle"), "{err}");
    assert!(err.contains("compose.yaml:"), "{err}");

    write(
        t.path(),
        &[
            (
                "compose.yaml",
                "services:\n  a:\n    extends: {file: lib/base.yaml, service: base}\n  c:\n    extends: nope\n",
            ),
            (
                "lib/base.yaml",
                "services:\n  base:\n    image: busybox\n    restart: sometimes\n",
            ),
        ],
    );
    let out = plimsoll(t.path(), &["validate", "."], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    // The bad value is in the extended file, at its line; a missing base stops there.
    assert!(err.contains("compose.yaml:5:"), "{err}");
    assert!(err.contains("no service `nope`"), "{err}");
    std::fs::write(
        t.path().join("compose.yaml"),
        "services:\n  a:\n    extends: {file: lib/base.yaml, service: base}\n",
    )
    .expect("write");
    let out = plimsoll(t.path(), &["validate", "."], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("lib/base.yaml:4:"), "{err}");
}

#[test]
fn secrets_of_an_included_env_file_are_masked() {
    let t = tempfile::tempdir().expect("tempdir");
    write(
        t.path(),
        &[
            ("compose.yaml", "include:\n  - db/compose.yaml\n"),
            (
                "db/compose.yaml",
                "services:\n  db:\n    image: postgres\n    environment:\n      POSTGRES_PASSWORD: ${DB_PASSWORD}\n",
            ),
            ("db/.env", "DB_PASSWORD=hunter2-very-secret\n"),
        ],
    );
    let out = plimsoll(t.path(), &["render", "."], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(!shown.contains("hunter2-very-secret"), "{shown}");
    let out = plimsoll(t.path(), &["render", ".", "--show-secrets"], &[]);
    assert!(text(&out.stdout).contains("hunter2-very-secret"));
}

#[test]
fn compose_file_in_dotenv_lists_the_files() {
    let t = tempfile::tempdir().expect("tempdir");
    write(
        t.path(),
        &[
            ("compose.yaml", "services:\n  web:\n    image: nginx\n"),
            (
                "compose.prod.yaml",
                "services:\n  worker:\n    image: busybox\n",
            ),
            (".env", "COMPOSE_FILE=compose.yaml:compose.prod.yaml\n"),
        ],
    );
    assert_eq!(services(t.path(), &[], &[]), ["web", "worker"]);
    std::fs::write(
        t.path().join(".env"),
        "COMPOSE_FILE=compose.yaml:compose.missing.yaml\n",
    )
    .expect("write");
    let out = plimsoll(t.path(), &["validate", "."], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("compose.missing.yaml"), "{err}");
}
