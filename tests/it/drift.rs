//! `plimsoll drift` on the real engine: a `docker update --memory` drift
//! accepted into git with `drift --patch` and `git apply` (then `reconcile
//! --dry-run` is in sync), a stopped container listed and reverted, a
//! silence that hides a drift until it expires, and a secret canary that
//! appears in no output or patch.
//!
//! Each test writes its stack (a unique `name:`) into a git repository in a
//! tempdir, with its own state directory; dropping the guard removes every
//! container and network labelled with the stack, panics included.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::{Run, docker, ensure_busybox, remove_stack, temp_dir, unique_name, wait_for};

/// A stack in a git repository, with its own state directory.
struct Drifting {
    name: String,
    dir: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Drop for Drifting {
    fn drop(&mut self) {
        remove_stack(&self.name);
    }
}

/// A sleeping busybox that dies at once on stop.
const SLEEPER: &str = "    image: plimsoll-example/busybox:1\n    command: [\"sleep\", \"600\"]\n    stop_signal: SIGKILL\n";

fn canary() -> String {
    format!("canary-drift-{}-{:x}", std::process::id(), rand_nanos())
}

fn rand_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Drifting {
    /// `compose` (after `name:`) and `.env` committed in a fresh repository.
    fn new(what: &str, compose: &str, dotenv: &str) -> Drifting {
        ensure_busybox();
        let s = Drifting {
            name: unique_name(what),
            dir: temp_dir("plimsoll-it-drift-"),
            state: temp_dir("plimsoll-it-drift-state-"),
        };
        std::fs::write(
            s.path().join("compose.yaml"),
            format!("name: {}\n{compose}", s.name),
        )
        .unwrap();
        std::fs::write(s.path().join(".env"), dotenv).unwrap();
        git(s.path(), &["init", "-q"]);
        git(s.path(), &["add", "-A"]);
        git(s.path(), &["commit", "-q", "-m", "stack"]);
        s
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn plimsoll(&self, args: &[&str]) -> Run {
        let mut cmd = crate::support::plimsoll_command(self.state.path(), self.path(), args);
        cmd.env("HOME", "/nonexistent-home");
        Run::of(args, &mut cmd)
    }

    fn container(&self, service: &str) -> String {
        format!("{}-{service}-1", self.name)
    }

    fn in_sync(&self) {
        let check = self.plimsoll(&["reconcile", ".", "--dry-run"]);
        check.expect(0);
        assert!(check.stdout.contains("no changes"), "{check}");
    }
}

#[test]
fn drift_patch_of_a_docker_update_applies_and_git_is_then_in_sync() {
    let secret = canary();
    let compose = format!(
        "services:\n  web:\n{SLEEPER}    # memory as agreed with the team\n    mem_limit: 128m # keep this comment\n    environment:\n      DB_PASSWORD: ${{DB_PASSWORD}}\n      MODE: prod\n"
    );
    let s = Drifting::new("drift-patch", &compose, &format!("DB_PASSWORD={secret}\n"));
    s.plimsoll(&["reconcile", "."]).expect(0);
    s.in_sync();
    docker(&["update", "--memory", "64m", &s.container("web")]);

    let review = s.plimsoll(&["drift", "."]);
    review.expect(2);
    assert!(
        review
            .stdout
            .contains("memory limit 64 MiB on the host, 128 MiB in git"),
        "{review}"
    );
    let json = s.plimsoll(&["drift", ".", "--format", "json"]);
    json.expect(2);
    let patch = s.plimsoll(&["drift", ".", "--patch"]);
    patch.expect(2);
    for run in [&review, &json, &patch] {
        assert!(!run.all().contains(&secret), "the secret leaked:\n{run}");
    }
    assert!(
        patch.stdout.contains(
            "-    mem_limit: 128m # keep this comment\n+    mem_limit: 64m # keep this comment\n"
        ),
        "{patch}"
    );
    std::fs::write(s.path().join("drift.patch"), &patch.stdout).unwrap();
    git(s.path(), &["apply", "drift.patch"]);
    let changed = git(s.path(), &["diff", "--stat"]);
    // The memory line, and the swap the engine kept (twice the old limit),
    // which Compose no longer implies once the limit is lower.
    assert!(
        changed.contains("compose.yaml | 3 ++-"),
        "only the lines concerned change: {changed}"
    );
    assert!(
        patch.stdout.contains("+    memswap_limit: 256m\n"),
        "{patch}"
    );
    s.in_sync();
    let after = s.plimsoll(&["drift", "."]);
    after.expect(0);
    assert!(after.stdout.contains("no drift"), "{after}");
}

#[test]
fn drift_stopped_by_hand_is_listed_and_reverted() {
    let compose = format!("services:\n  web:\n{SLEEPER}  worker:\n{SLEEPER}");
    let s = Drifting::new("drift-revert", &compose, "");
    s.plimsoll(&["reconcile", "."]).expect(0);
    docker(&["stop", &s.container("worker")]);

    let json = s.plimsoll(&["drift", ".", "--format", "json"]);
    json.expect(2);
    let drifted = json.json()["drifted"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(drifted.len(), 1, "{json}");
    assert_eq!(drifted[0]["service"], "worker");
    assert_eq!(drifted[0]["kind"], "stopped");
    assert_eq!(
        drifted[0]["actions"][0]["container"],
        s.container("worker").as_str()
    );

    let web = docker(&[
        "inspect",
        "-f",
        "{{.Id}} {{.State.StartedAt}}",
        &s.container("web"),
    ]);
    let revert = s.plimsoll(&["drift", ".", "--revert"]);
    revert.expect(0);
    let running = docker(&[
        "inspect",
        "-f",
        "{{.State.Running}}",
        &s.container("worker"),
    ]);
    assert_eq!(running.trim(), "true", "{revert}");
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.Id}} {{.State.StartedAt}}",
            &s.container("web")
        ]),
        web,
        "the service in sync is not touched"
    );
    s.plimsoll(&["drift", "."]).expect(0);
    let history = s.plimsoll(&["history", "--format", "json"]);
    assert!(
        history.stdout.contains("drift --revert"),
        "the revert is audited:\n{history}"
    );
}

#[test]
fn drift_silenced_is_hidden_until_the_silence_expires() {
    let compose = format!("services:\n  worker:\n{SLEEPER}");
    let s = Drifting::new("drift-silence", &compose, "");
    s.plimsoll(&["reconcile", "."]).expect(0);
    docker(&["stop", &s.container("worker")]);
    s.plimsoll(&["drift", "."]).expect(2);

    // A silence lifted by hand shows the drift again.
    let stack = s.name.as_str();
    let on_worker = |more: &[&str]| {
        let mut args = vec!["drift", ".", "--stack", stack, "--service", "worker"];
        args.extend(more);
        s.plimsoll(&args).expect(0);
    };
    let silence = |span: &str| {
        on_worker(&["--silence", "--for", span, "--reason", "maintenance window"]);
    };
    silence("1h");
    s.plimsoll(&["drift", "."]).expect(0);
    on_worker(&["--unsilence"]);
    s.plimsoll(&["drift", "."]).expect(2);

    silence("2s");
    let hidden = s.plimsoll(&["drift", ".", "--format", "json"]);
    let listed = hidden.json()["drifted"][0].clone();
    if hidden.code == Some(0) {
        assert_eq!(
            listed["silenced"]["reason"], "maintenance window",
            "{hidden}"
        );
    }
    let text = s.plimsoll(&["drift", "."]);
    if text.code == Some(0) {
        assert!(text.stdout.contains("silenced until"), "{text}");
    }
    // Expired, it counts again: wait for the drift to come back.
    wait_for(
        "the silence to expire",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || (s.plimsoll(&["drift", "."]).code == Some(2)).then_some(()),
    );
    let records = s.plimsoll(&["history", "--format", "json"]).json();
    let outcomes: Vec<&str> = records
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["outcome"].as_str())
        .filter(|o| o.ends_with("silenced"))
        .collect();
    assert_eq!(
        outcomes,
        ["silenced", "unsilenced", "silenced"],
        "every silence is audited"
    );
}

/// The agent's view of service `service` of `stack` in `/status`.
fn service_status(status: &serde_json::Value, stack: &str, service: &str) -> serde_json::Value {
    status["stacks"]
        .as_array()
        .and_then(|stacks| stacks.iter().find(|s| s["name"] == stack))
        .and_then(|s| s["services"].as_array())
        .and_then(|svcs| svcs.iter().find(|s| s["service"] == service))
        .cloned()
        .unwrap_or_default()
}

/// The agent neither heals nor notifies a silenced drift and `/status`
/// shows it silenced; once the silence is lifted, it heals it.
#[test]
fn drift_silenced_is_not_healed_by_the_agent_and_shows_in_status() {
    use crate::agent::{Scenario, running, wait_running};
    let sc = Scenario::new("drift-agent");
    let (stack, web) = (&sc.stack, &sc.web);
    let sha = sc.commit_greeting("v1");
    let agent = sc.deploy(&["--interval", "1h", "--resync", "1s"], &[], &sha);
    let repo = sc.path("repo").display().to_string();
    let on_web = |more: &[&str]| {
        let mut args = vec!["drift", repo.as_str(), "--stack", stack, "--service", "web"];
        args.extend(more);
        agent.cli(&args).expect(0);
    };
    on_web(&["--silence", "--for", "1h", "--reason", "investigating"]);
    docker(&["stop", "-t", "0", web]);
    let status = agent.wait_status("web silenced", Duration::from_secs(10), |s| {
        service_status(s, stack, "web")["state"] == "silenced"
    });
    let web_status = service_status(&status, stack, "web");
    assert_eq!(
        web_status["silenced"]["reason"], "investigating",
        "{status}"
    );
    // Several checks (events and 1 s resyncs) later, still stopped.
    for what in ["a check", "another check"] {
        let seen = agent.status()["last_sync"]["time"].clone();
        agent.wait_status(what, Duration::from_secs(10), |s| {
            s["last_sync"]["time"] != seen
        });
    }
    assert!(!running(web), "a silenced drift is not healed");
    assert_eq!(
        service_status(&agent.status(), stack, "web")["state"],
        "silenced"
    );
    on_web(&["--unsilence"]);
    wait_running(web, Duration::from_secs(10));
}
