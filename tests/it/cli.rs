//! The command-line contract: exit codes, stdout holds only the result,
//! warnings and errors on stderr, secrets masked, formats as documented.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::plimsoll_output;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs plimsoll with a clean environment.
fn plimsoll(args: &[&str]) -> Output {
    plimsoll_in(&repo(), args)
}

fn plimsoll_in(dir: &Path, args: &[&str]) -> Output {
    plimsoll_output(dir, args, &[])
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn validate_examples_succeeds() {
    let out = plimsoll(&["validate", "examples/stacks"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("valid: 2 stacks, 4 services"),
        "{stdout}"
    );
    assert!(stdout.contains("shop: api, db, worker"), "{stdout}");
}

#[test]
fn usage_errors_exit_1_not_2() {
    for args in [
        &["bogus"][..],
        &["validate", "--bogus"],
        &["render", "--format", "xml"],
        &["schema"],
        &["schema", "nope"],
    ] {
        let out = plimsoll(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn help_and_version_exit_0() {
    for args in [&["--help"][..], &["validate", "--help"], &["--version"]] {
        let out = plimsoll(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!out.stdout.is_empty());
    }
}

#[test]
fn every_command_help_has_an_example() {
    for cmd in ["validate", "render", "graph", "schema"] {
        let out = plimsoll(&[cmd, "--help"]);
        assert!(text(&out.stdout).contains("Example: plimsoll"), "{cmd}");
    }
}

#[test]
fn schema_prints_the_checked_in_files() {
    for (kind, file) in [
        ("plimsoll", "plimsoll.json"),
        ("stack", "stack.json"),
        ("plan", "plan.json"),
        ("diff", "diff.json"),
    ] {
        let out = plimsoll(&["schema", kind]);
        assert_eq!(out.status.code(), Some(0));
        let expected = std::fs::read_to_string(repo().join("schemas").join(file)).unwrap();
        assert_eq!(
            text(&out.stdout),
            expected,
            "schemas/{file} is stale: run `cargo run -- schema {kind} > schemas/{file}`"
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("a schema is JSON");
    }
}

#[test]
fn render_masks_secrets_unless_asked() {
    let out = plimsoll(&[
        "render",
        "examples/stacks",
        "--stack",
        "shop",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("example-not-a-real-password"), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        v["services"]["db"]["environment"]["POSTGRES_PASSWORD"],
        "********"
    );
    assert_eq!(
        v["services"]["api"]["environment"]["DATABASE_URL"],
        "postgres://shop:********@db:5432/shop"
    );
    // Ordinary values from .env are shown.
    assert_eq!(v["services"]["api"]["ports"][0]["published"], "8080");

    let out = plimsoll(&[
        "render",
        "examples/stacks",
        "--stack",
        "shop",
        "--format",
        "json",
        "--show-secrets",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["services"]["db"]["environment"]["POSTGRES_PASSWORD"],
        "example-not-a-real-password"
    );
}

#[test]
fn render_yaml_is_the_same_document() {
    let json = plimsoll(&["render", "examples/stacks/stacks/shop", "--format", "json"]);
    let yaml = plimsoll(&["render", "examples/stacks/stacks/shop"]);
    assert_eq!(yaml.status.code(), Some(0));
    let from_json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let node = plimsoll::spec::yaml::parse(&text(&yaml.stdout), Path::new("render.yaml")).unwrap();
    let from_yaml = plimsoll::spec::compose::to_json(&node);
    assert_eq!(from_json, from_yaml);
}

#[test]
fn render_of_a_repository_keys_stacks_by_name() {
    let out = plimsoll(&["render", "examples/stacks", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["shop"]["name"], "shop");
    assert_eq!(v["monitoring"]["name"], "monitoring");
}

#[test]
fn render_unknown_stack_is_an_error() {
    let out = plimsoll(&["render", "examples/stacks", "--stack", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no stack named `nope`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn graph_formats() {
    let out = plimsoll(&["graph", "examples/stacks"]);
    assert_eq!(
        text(&out.stdout),
        "stack monitoring\n  wave 1: status\nstack shop\n  wave 1: db\n  wave 2: api (after db healthy)\n  wave 3: worker (after api started)\n"
    );
    let dot = text(&plimsoll(&["graph", "examples/stacks", "--format", "dot"]).stdout);
    assert!(
        dot.starts_with("digraph plimsoll {")
            && dot.contains("\"shop/db\" -> \"shop/api\" [label=\"healthy\"];"),
        "{dot}"
    );
    let mermaid = text(&plimsoll(&["graph", "examples/stacks", "--format", "mermaid"]).stdout);
    assert!(
        mermaid.starts_with("flowchart LR")
            && mermaid.contains("shop__api -->|started| shop__worker"),
        "{mermaid}"
    );
}

#[test]
fn a_single_compose_file_and_the_current_directory_work() {
    let out = plimsoll(&["validate", "examples/stacks/stacks/monitoring/compose.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = plimsoll_in(
        &repo().join("examples/stacks/stacks/monitoring"),
        &["validate"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("monitoring: status"));
}

#[test]
fn obsolete_version_is_a_warning_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "version: '3.8'\nservices:\n  a:\n    image: busybox\n",
    )
    .unwrap();
    let out = plimsoll(&["render", dir.path().to_str().unwrap(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("the attribute `version` is obsolete"),
        "{}",
        text(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout holds only the JSON");
    assert!(v.get("version").is_none());
}

#[test]
fn process_environment_overrides_dotenv() {
    let out = Command::new(env!("CARGO_BIN_EXE_plimsoll"))
        .args(["render", "examples/stacks/stacks/shop", "--format", "json"])
        .current_dir(repo())
        .env_clear()
        .env("API_PORT", "8085")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["services"]["api"]["ports"][0]["published"], "8085");
}

#[test]
fn log_format_json_is_accepted() {
    let out = plimsoll(&["--log-format", "json", "-v", "validate", "examples/stacks"]);
    assert_eq!(out.status.code(), Some(0));
    for line in text(&out.stderr).lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
    }
}
