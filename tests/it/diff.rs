//! `plimsoll diff --from --to`: a commit range of a local git repository
//! (commits made with git2 at fixed times, so SHAs are stable), per host,
//! secrets never shown, exit 0/2/1, and the commands of the CI recipes in
//! `examples/ci/` run as written.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::{plimsoll_output, temp_dir};

/// A canary secret: must never appear in any output.
const OLD_SECRET: &str = "canary-old-s3cret";
const NEW_SECRET: &str = "canary-new-s3cret";

struct Repo {
    dir: tempfile::TempDir,
    repo: git2::Repository,
    commits: i64,
}

impl Repo {
    fn new() -> Repo {
        let dir = temp_dir("plimsoll-diff-");
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head("main");
        let repo = git2::Repository::init_opts(dir.path(), &opts).unwrap();
        Repo {
            dir,
            repo,
            commits: 0,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, path: &str, text: &str) -> &Repo {
        let p = self.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    fn remove(&self, path: &str) -> &Repo {
        let p = self.path().join(path);
        if p.is_dir() {
            std::fs::remove_dir_all(p).unwrap();
        } else {
            std::fs::remove_file(p).unwrap();
        }
        self
    }

    /// Commits everything in the work tree; returns the SHA.
    fn commit(&mut self, message: &str) -> String {
        let mut index = self.repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.update_all(["*"], None).unwrap();
        index.write().unwrap();
        let tree = self.repo.find_tree(index.write_tree().unwrap()).unwrap();
        self.commits += 1;
        let when = git2::Time::new(1_700_000_000 + self.commits * 60, 0);
        let sig = git2::Signature::new("t", "t@example.com", &when).unwrap();
        let parent = self.repo.head().ok().map(|h| h.peel_to_commit().unwrap());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        self.repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .unwrap()
            .to_string()
    }

    fn diff(&self, args: &[&str]) -> Output {
        let mut all = vec!["diff"];
        all.extend_from_slice(args);
        plimsoll_output(self.path(), &all, &[("NO_COLOR", "1")])
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_no_canary(out: &Output) {
    for s in [text(&out.stdout), text(&out.stderr)] {
        assert!(
            !s.contains(OLD_SECRET) && !s.contains(NEW_SECRET),
            "a secret leaked:\n{s}"
        );
    }
}

const CONFIG: &str = "\
hosts:
  a: {}
  b: {}
stacks:
  web:
    hosts: [a]
policy:
  privileged:
    allow: []
";

/// The part of `shop` both revisions share: a service that builds and gets a secret file.
const SHOP_BUILDER: &str = "  builder:
    build: ./ctx
    secrets: [token]
secrets:
  token:
    file: ./token.txt
";

/// Base: `shop` (every host: api, old, builder), `web` on host a, `gone`.
fn base(r: &mut Repo) -> String {
    r.write("plimsoll.yaml", CONFIG)
        .write(
            "stacks/shop/compose.yaml",
            &format!(
                "\
services:
  api:
    image: busybox:1.36
    environment:
      MODE: blue
      DB_PASSWORD: ${{DB_PASSWORD}}
  old:
    image: busybox:1.36
{SHOP_BUILDER}"
            ),
        )
        .write("stacks/shop/token.txt", &format!("{OLD_SECRET}-file\n"))
        .write("stacks/shop/.env", &format!("DB_PASSWORD={OLD_SECRET}\n"))
        .write("stacks/shop/ctx/Dockerfile", "FROM scratch\n")
        .write(
            "stacks/web/compose.yaml",
            "services:\n  web:\n    image: nginx:1.25\n",
        )
        .write(
            "stacks/gone/compose.yaml",
            "services:\n  x:\n    image: busybox:1.36\n",
        );
    r.commit("base")
}

/// Head: api's image, env, secret and replicas change; builder's secret file; `old` removed,
/// `worker` added; the build context changes; a network added; `web` moves
/// to host b with a new image; `shop` paused; `gone` removed, `metrics` added.
fn head(r: &mut Repo) -> String {
    let config = CONFIG.replace("hosts: [a]", "hosts: [b]\n  shop:\n    paused: true");
    r.write("plimsoll.yaml", &config)
        .write(
            "stacks/web/compose.yaml",
            "services:\n  web:\n    image: nginx:1.27\n",
        )
        .write(
            "stacks/shop/compose.yaml",
            &format!(
                "\
services:
  api:
    image: busybox:1.37
    scale: 2
    environment:
      MODE: green
      DB_PASSWORD: ${{DB_PASSWORD}}
    networks: [backend]
  worker:
    image: busybox:1.37
    command: [sleep, infinity]
{SHOP_BUILDER}networks:
  backend: {{}}
"
            ),
        )
        .write("stacks/shop/token.txt", &format!("{NEW_SECRET}-file\n"))
        .write("stacks/shop/.env", &format!("DB_PASSWORD={NEW_SECRET}\n"))
        .write("stacks/shop/ctx/app.txt", "v2\n")
        .write(
            "stacks/metrics/compose.yaml",
            "services:\n  prom:\n    image: prom/prometheus:v2\n",
        )
        .remove("stacks/gone");
    r.commit("head")
}

#[test]
fn diff_range_per_host_text_markdown_json() {
    let mut r = Repo::new();
    let from = base(&mut r);
    head(&mut r);
    let out = r.diff(&["--from", "HEAD~1", "--to", "HEAD"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_no_canary(&out);
    insta::assert_snapshot!("diff_range_text", text(&out.stdout));

    let md = r.diff(&["--from", &from, "--to", "main", "--format", "markdown"]);
    assert_eq!(md.status.code(), Some(2), "{}", text(&md.stderr));
    assert_no_canary(&md);
    let md_text = text(&md.stdout).replace(&from, "<from>");
    insta::assert_snapshot!("diff_range_markdown", md_text);
    assert!(md_text.contains("<details>") && md_text.contains("```diff"));

    let json = r.diff(&["--from", "HEAD~1", "--to", "HEAD", "--format", "json"]);
    assert_eq!(json.status.code(), Some(2));
    assert_no_canary(&json);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let schema = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas/diff.json"),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&serde_json::from_str(&schema).unwrap()).unwrap();
    let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "not as schemas/diff.json says: {errors:?}"
    );
    assert_eq!(v["from"]["commit"], from.as_str());
    let hosts = v["hosts"].as_array().unwrap();
    let names: Vec<&serde_json::Value> = hosts.iter().map(|h| &h["host"]).collect();
    assert_eq!(names, [&serde_json::Value::Null, &"a".into(), &"b".into()]);
    let stacks = |i: usize| -> Vec<(String, String)> {
        hosts[i]["stacks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["stack"].as_str().unwrap().to_string(),
                    s["change"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let pairs = |l: &[(&str, &str)]| -> Vec<(String, String)> {
        l.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        stacks(0),
        pairs(&[
            ("gone", "removed"),
            ("metrics", "added"),
            ("shop", "changed")
        ])
    );
    assert_eq!(stacks(1), pairs(&[("web", "removed")]));
    assert_eq!(stacks(2), pairs(&[("web", "added")]));
    assert_eq!(
        hosts[2]["stacks"][0]["moved"]["from"],
        serde_json::json!(["a"])
    );
    // Moved and changed: what differs from where it ran before.
    assert_eq!(
        hosts[2]["stacks"][0]["reasons"],
        serde_json::json!(["web: image changed: nginx:1.25 → nginx:1.27"])
    );
    let shop = &hosts[0]["stacks"][2];
    assert_eq!(
        shop["reasons"],
        serde_json::json!(["plimsoll.yaml stacks.shop.paused changed: false → true"])
    );
    let svc = |name: &str| {
        shop["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"] == name)
            .unwrap_or_else(|| panic!("no {name} in {shop}"))
            .clone()
    };
    assert_eq!(svc("api")["change"], "changed");
    assert_eq!(svc("api")["replicas"], serde_json::json!([1, 2]));
    let reasons = svc("api")["reasons"].to_string();
    assert!(
        reasons.contains("env DB_PASSWORD changed (value hidden)"),
        "{reasons}"
    );
    assert!(
        reasons.contains("env MODE changed: blue → green"),
        "{reasons}"
    );
    assert_eq!(svc("old")["change"], "removed");
    assert_eq!(svc("worker")["change"], "added");
    assert_eq!(svc("builder")["build_context_changed"], true);
    assert!(
        svc("builder")["reasons"]
            .to_string()
            .contains("secret token content changed (value hidden)")
    );
    assert_eq!(
        shop["networks"],
        serde_json::json!([{"name": "backend", "change": "added"}])
    );
}

#[test]
fn diff_host_keeps_one_hosts_view() {
    let mut r = Repo::new();
    base(&mut r);
    head(&mut r);
    let out = r.diff(&[
        "--from", "HEAD~1", "--to", "HEAD", "--host", "b", "--format", "json",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["hosts"].as_array().unwrap().len(), 1);
    assert_eq!(v["hosts"][0]["host"], "b");
    let stacks: Vec<&str> = v["hosts"][0]["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stack"].as_str().unwrap())
        .collect();
    // Stacks without assignment run on b too; web moved here.
    assert_eq!(stacks, ["gone", "metrics", "shop", "web"]);
    let out = r.diff(&["--from", "HEAD~1", "--to", "HEAD", "--host", "a"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("web") && stdout.contains("removed"),
        "{stdout}"
    );
    assert!(stdout.contains("moved: a → b"), "{stdout}");
}

#[test]
fn diff_without_changes_exits_0() {
    let mut r = Repo::new();
    base(&mut r);
    // A commit that changes nothing in the desired state.
    r.write("README.md", "docs\n");
    r.commit("docs");
    let out = r.diff(&["--from", "HEAD~1", "--to", "HEAD"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("no changes"),
        "{}",
        text(&out.stdout)
    );
    let md = r.diff(&["--from", "HEAD~1", "--to", "HEAD", "--format", "markdown"]);
    assert_eq!(md.status.code(), Some(0));
    assert!(text(&md.stdout).contains("No changes to the desired state."));
}

#[test]
fn diff_policy_violation_at_to_is_an_error_naming_file_line_and_key() {
    let mut r = Repo::new();
    base(&mut r);
    r.write(
        "stacks/web/compose.yaml",
        "services:\n  web:\n    image: nginx:1.25\n    privileged: true\n",
    );
    r.commit("privileged");
    let out = r.diff(&["--from", "HEAD~1", "--to", "HEAD"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: --to HEAD does not load:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("stacks/web/compose.yaml:4") && stderr.contains("privileged"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&r.path().display().to_string()),
        "{stderr}"
    );
    assert_no_canary(&out);
}

#[test]
fn diff_from_a_broken_revision_warns_and_shows_everything_new() {
    let mut r = Repo::new();
    r.write("plimsoll.yaml", CONFIG)
        .write("stacks/web/compose.yaml", "services:\n  web: [\n");
    r.commit("broken");
    r.write(
        "stacks/web/compose.yaml",
        "services:\n  web:\n    image: nginx:1.25\n",
    );
    r.commit("fixed");
    let out = r.diff(&["--from", "HEAD~1", "--to", "HEAD", "--format", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("warning: --from HEAD~1 does not load"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["hosts"][0]["host"], "a");
    assert_eq!(v["hosts"][0]["stacks"][0]["change"], "added");
    assert!(v["warnings"][0].as_str().unwrap().contains("does not load"));
}

#[test]
fn diff_unknown_revision_or_no_repository_exits_1() {
    let mut r = Repo::new();
    base(&mut r);
    let out = r.diff(&["--from", "nope", "--to", "HEAD"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("nope"), "{}", text(&out.stderr));
    let plain = temp_dir("plimsoll-diff-norepo-");
    let out = plimsoll_output(plain.path(), &["diff", "--from", "a", "--to", "b"], &[]);
    assert_eq!(out.status.code(), Some(1));
}

/// The command lines of the CI recipes, exactly as written in `examples/ci/`.
const CI_COMMANDS: [&str; 2] = [
    "plimsoll validate .",
    r#"plimsoll diff --from "$BASE_SHA" --to "$HEAD_SHA" --format markdown > plimsoll-diff.md || test $? -eq 2"#,
];

#[test]
fn diff_ci_recipes_run_their_commands_on_a_local_repository() {
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/ci");
    for file in ["github-actions.yml", "gitlab-ci.yml"] {
        let recipe = std::fs::read_to_string(examples.join(file)).unwrap();
        for c in CI_COMMANDS {
            assert!(
                recipe
                    .lines()
                    .any(|l| l.trim().trim_start_matches("- ") == c),
                "{file} does not run `{c}` as tested here"
            );
        }
    }
    let mut r = Repo::new();
    let base_sha = base(&mut r);
    let head_sha = head(&mut r);
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_plimsoll"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for c in CI_COMMANDS {
        let out = std::process::Command::new("sh")
            .args(["-ec", c])
            .current_dir(r.path())
            .env_clear()
            .env("PATH", &path)
            .env("HOME", "/nonexistent-home")
            .env("BASE_SHA", &base_sha)
            .env("HEAD_SHA", &head_sha)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{c}: {}", text(&out.stderr));
        assert_no_canary(&out);
    }
    let comment = std::fs::read_to_string(r.path().join("plimsoll-diff.md")).unwrap();
    assert!(comment.starts_with("### plimsoll diff"), "{comment}");
    assert!(!comment.contains(OLD_SECRET) && !comment.contains(NEW_SECRET));
}

#[test]
fn diff_of_a_config_repository_in_a_subdirectory() {
    let mut r = Repo::new();
    r.write("infra/plimsoll.yaml", "{}\n").write(
        "infra/stacks/web/compose.yaml",
        "services:\n  web:\n    image: nginx:1.25\n",
    );
    r.commit("one");
    r.write(
        "infra/stacks/web/compose.yaml",
        "services:\n  web:\n    image: nginx:1.27\n    privileged: true\n",
    );
    r.commit("two");
    let out = r.diff(&["--from", "HEAD~1", "--to", "HEAD", "infra"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("image changed: nginx:1.25 → nginx:1.27")
            && stdout.contains("privileged added: true"),
        "{stdout}"
    );
    // The same range seen from inside the directory, with a policy that forbids it.
    r.write(
        "infra/plimsoll.yaml",
        "policy:\n  privileged:\n    allow: []\n",
    );
    r.commit("three");
    let out = plimsoll_output(
        &r.path().join("infra/stacks"),
        &["diff", "--from", "HEAD~2", "--to", "HEAD", ".."],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("infra/stacks/web/compose.yaml:4"),
        "{stderr}"
    );
}

#[test]
fn diff_decrypts_age_files_with_the_identity_and_never_shows_them() {
    const OLD: &str = "age-canary-old-3141";
    const NEW: &str = "age-canary-new-2718";
    let mut r = Repo::new();
    let keys = temp_dir("plimsoll-diff-key-");
    let key = keys.path().join("ci.key");
    let key_arg = key.display().to_string();
    let keygen = plimsoll_output(r.path(), &["secret", "keygen", "-o", &key_arg], &[]);
    assert_eq!(keygen.status.code(), Some(0), "{}", text(&keygen.stderr));
    let recipient = text(&keygen.stdout).trim().to_string();
    let encrypt = |r: &Repo, value: &str| {
        r.write("stacks/vault/db_password", value);
        let out = plimsoll_output(
            r.path(),
            &[
                "secret",
                "encrypt",
                "-r",
                &recipient,
                "stacks/vault/db_password",
            ],
            &[],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        r.remove("stacks/vault/db_password");
    };
    r.write(
        "stacks/vault/compose.yaml",
        "services:\n  app:\n    image: busybox:1.36\n    secrets: [db]\nsecrets:\n  db:\n    file: ./db_password.age\n",
    );
    encrypt(&r, OLD);
    r.commit("vault");
    encrypt(&r, NEW);
    r.commit("rotate the password");

    let with_key = |format: &str| {
        let out = plimsoll_output(
            r.path(),
            &[
                "--age-identity",
                &key_arg,
                "diff",
                "--from",
                "HEAD~1",
                "--to",
                "HEAD",
                "--format",
                format,
            ],
            &[("NO_COLOR", "1")],
        );
        for s in [text(&out.stdout), text(&out.stderr)] {
            assert!(
                !s.contains(OLD) && !s.contains(NEW),
                "a secret leaked:\n{s}"
            );
        }
        out
    };
    for format in ["text", "json", "markdown"] {
        let out = with_key(format);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("content changed"),
            "{format}: {}",
            text(&out.stdout)
        );
    }
    // Without an identity the encrypted file cannot be read: an error naming it.
    let out = r.diff(&["--from", "HEAD~1", "--to", "HEAD"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("db_password.age"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn diff_names_changed_mounted_files_and_directories() {
    let mut r = Repo::new();
    r.write(
        "stacks/web/compose.yaml",
        "services:\n  web:\n    image: nginx:1.27\n    volumes:\n      - ./nginx.conf:/etc/nginx/nginx.conf:ro\n      - ./www:/www:ro\n",
    )
    .write("stacks/web/nginx.conf", "events {}\n")
    .write("stacks/web/www/index.html", "<p>one</p>\n");
    r.commit("one");
    r.write(
        "stacks/web/nginx.conf",
        "events { worker_connections 64; }\n",
    );
    r.commit("two");
    r.write("stacks/web/www/index.html", "<p>two</p>\n");
    r.commit("three");
    let out = r.diff(&["--from", "HEAD~2", "--to", "HEAD~1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("mounted file nginx.conf changed"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("worker_connections"),
        "content is never shown: {stdout}"
    );
    assert!(!stdout.contains("mounted directory"), "{stdout}");
    let out = r.diff(&["--from", "HEAD~1", "--to", "HEAD"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("mounted directory www changed"), "{stdout}");
    assert!(!stdout.contains("mounted file"), "{stdout}");
}
