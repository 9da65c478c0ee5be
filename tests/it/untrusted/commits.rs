//! See `untrusted` (mod.rs): this module's part of the threat model.
//!
//! `commits`: the attacks of the other modules as commits the agent applies,
//! one after the other, with the canary in the agent's environment. Each
//! attack is rejected (recorded, notified, the last good revision kept
//! running) or, for short secrets, applied masked; neither the canary, the
//! marker nor a secret value reaches `/status`, `/metrics`, the log, a
//! notification, the audit log or any file of the state directory.

use std::time::Duration;

use super::{Attack, CANARY, CANARY_VARS, MARKER};
use crate::agent::{Agent, Receiver};
use crate::support::{docker, ensure_busybox, files_under, remove_stack};

const WAIT: Duration = Duration::from_secs(60);
/// Short secrets (5 characters: masked whole, never by value).
const PIN: &str = "kQ7zX";
const PIN_ROTATED: &str = "Zx9wQ";

fn web(extra: &str) -> String {
    format!(
        "services:\n  web:\n    image: plimsoll-example/busybox:1\n    command: [sh, -c, \"echo pin=${{PIN_TOKEN}}; exec sleep 3600\"]\n    stop_grace_period: 1s\n    labels: {{pin: \"${{PIN_TOKEN}}\"}}\n    environment:\n      FROM_CI: \"${{CI_JOB_TOKEN:-unset}}\"\n{extra}"
    )
}

/// One attack as a commit: the stack's compose.yaml, and where its `.env`
/// points (a symlink out of the repository) when it does.
struct Commit {
    what: &'static str,
    compose: String,
    env_link: Option<String>,
}

fn attacks(attack: &Attack) -> Vec<Commit> {
    let outside = attack.outside().display().to_string();
    let big = "x".repeat(64 * 1024);
    let bomb = format!(
        "x-big: &big \"{big}\"\nx-many: [{}]\n{}",
        vec!["*big"; 100_000].join(", "),
        web("")
    );
    let deep = web(&format!(
        "      DEEP: \"{}x{}\"\n",
        "${A:-".repeat(50_000),
        "}".repeat(50_000)
    ));
    let commit = |what, compose, env_link| Commit {
        what,
        compose,
        env_link,
    };
    vec![
        commit(
            "env_file /proc/self/environ",
            web("    env_file: /proc/self/environ\n"),
            None,
        ),
        commit(
            "a secret file outside the repository",
            format!(
                "{}    secrets: [leak]\nsecrets:\n  leak:\n    file: {outside}/secret.txt\n",
                web("")
            ),
            None,
        ),
        commit(
            "a .env symlinked to a host file",
            web(""),
            Some(format!("{outside}/.env")),
        ),
        commit(
            "the Docker socket",
            web("    volumes: [/var/run/docker.sock:/var/run/docker.sock]\n"),
            None,
        ),
        commit("an alias bomb in bytes", bomb, None),
        commit("interpolation 50,000 deep", deep, None),
    ]
}

#[test]
fn every_attack_commit_is_rejected_or_masked_and_leaks_nothing() {
    ensure_busybox();
    let attack = Attack::new("commits");
    let receiver = Receiver::start();
    attack.write(
        "/plimsoll.yaml",
        &format!(
            "{}policy:\n  privileged:\n    allow: []\n",
            receiver.notifications()
        ),
    );
    attack.write(".env", &format!("PIN_TOKEN={PIN}\n"));
    attack.compose(&web(""));
    let good = attack.commit("a short secret in command, label and environment");
    let url = format!("file://{}", attack.repo().display());
    let canary: Vec<(&str, &str)> = CANARY_VARS.iter().map(|v| (*v, CANARY)).collect();
    let agent = Agent::start(&attack.state(), &url, &["--interval", "1s"], &canary);
    agent.wait_revision(&good, WAIT);
    let container = format!("{}-web-1", attack.stack);
    let env = docker(&["inspect", "--format", "{{json .Config.Env}}", &container]);
    assert!(
        env.contains("FROM_CI=unset") && !env.contains(CANARY),
        "the agent's environment is not the repository's: {env}"
    );

    for Commit {
        what,
        compose,
        env_link,
    } in attacks(&attack)
    {
        attack.compose(&compose);
        let dotenv = attack.stack_dir().join(".env");
        if let Some(target) = &env_link {
            std::fs::remove_file(&dotenv).unwrap();
            std::os::unix::fs::symlink(target, &dotenv).unwrap();
        }
        let bad = attack.commit(what);
        let status = agent.wait_status(&format!("{what} rejected"), WAIT, |s| {
            s["rejected"]["revision"] == bad
        });
        assert_eq!(
            status["revision"], good,
            "{what}: the last good revision stays"
        );
        receiver.wait_event("revision_rejected", WAIT, |n| n.to_string().contains(&bad));
        if env_link.is_some() {
            std::fs::remove_file(&dotenv).unwrap();
            attack.write(".env", &format!("PIN_TOKEN={PIN}\n"));
        }
    }

    // Rotating the short secret applies, masked.
    attack.write(".env", &format!("PIN_TOKEN={PIN_ROTATED}\n"));
    attack.compose(&web(""));
    let rotated = attack.commit("rotate the short secret");
    agent.wait_revision(&rotated, WAIT);
    let labels = docker(&["inspect", "--format", "{{json .Config.Labels}}", &container]);
    assert!(
        labels.contains(PIN_ROTATED),
        "the engine gets the value: {labels}"
    );

    let metrics = agent.get("/metrics").body;
    let history = agent.cli(&["history", "--format", "json"]);
    let outputs = [
        agent.log(),
        agent.status().to_string(),
        metrics,
        serde_json::to_string(&receiver.all()).unwrap(),
        history.all(),
    ];
    for needle in [CANARY, MARKER, PIN, PIN_ROTATED] {
        for text in &outputs {
            assert!(!text.contains(needle), "{needle:?} leaked:\n{text}");
        }
        for (path, bytes) in files_under(&attack.state()) {
            // The clone holds the repository's own files (the .env with the pin).
            if path.starts_with(attack.state().join("git")) {
                continue;
            }
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(needle),
                "{needle:?} leaked into {}",
                path.display()
            );
        }
    }
    drop(agent);
    remove_stack(&attack.stack);
}
