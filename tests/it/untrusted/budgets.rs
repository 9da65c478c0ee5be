//! See `untrusted` (mod.rs): this module's part of the threat model.
//!
//! `budgets`: a small file that asks for a huge amount of memory or stack
//! (an alias bomb in bytes and in nodes, `${A:-${A:-...}}` nested 50,000
//! deep, lists nested 100,000 deep, a 200 MiB file, a huge `.env` line) is
//! refused by every command a pull request's CI job runs, with an error naming
//! the file and line, exit code 1, no panic and no stack overflow, and with a
//! peak resident memory far below what the attack asks for (measured with
//! `/usr/bin/time`). And the agent: a revision that kills the process while it
//! loads is rejected after the restart (audit, notification, `/status`)
//! instead of crash-looping, the last good revision keeps running, and the
//! next good commit applies.

use std::io::Write as _;
use std::process::Command;
use std::time::Duration;

use super::{Attack, CANARY, CANARY_VARS};
use crate::agent::{Agent, GitRepo, Receiver};
use crate::support::{BUSYBOX_IMAGE, Cleanup, Run, ensure_busybox, temp_dir};

/// What one refused command may hold resident at its peak (the attacks ask
/// for gigabytes).
const PEAK_RSS_KIB: u64 = 512 * 1024;

/// `plimsoll ARGS` as [`Attack::run`] runs it, under `/usr/bin/time`: the run
/// and the command's peak resident memory in KiB.
fn run_measured(attack: &Attack, args: &[&str]) -> (Run, u64) {
    let report = attack.state().join("..").join("time.txt");
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .arg(env!("CARGO_BIN_EXE_plimsoll"))
        .arg("--state-dir")
        .arg(attack.state())
        .args(args)
        .current_dir(attack.repo())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null());
    for var in ["DOCKER_HOST", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY"] {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    for var in CANARY_VARS {
        cmd.env(var, CANARY);
    }
    let run = Run::of(args, &mut cmd);
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    let kib = text
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no peak RSS from /usr/bin/time ({text:?}):\n{run}"));
    (run, kib)
}

/// Commits the attack, runs every CI command (each must exit 1 and name
/// `place`, e.g. `compose.yaml:7`, and `what`), measures `validate` and
/// `diff`, and checks that nothing leaked or changed.
#[track_caller]
fn assert_budget(attack: &Attack, place: &str, what: &str) {
    attack.commit("attack");
    let mut runs = attack.ci_commands(&[]);
    for args in [
        &["validate"][..],
        &["render", "--format", "json"][..],
        &["diff", "--from", attack.base.as_str(), "--to", "HEAD"][..],
    ] {
        let (run, kib) = run_measured(attack, args);
        assert!(
            kib < PEAK_RSS_KIB,
            "plimsoll {args:?} peaked at {kib} KiB resident:\n{run}"
        );
        runs.push(run);
    }
    Attack::assert_refused(&runs, what);
    for run in &runs {
        let all = run.all();
        assert!(all.contains(place), "expected {place:?} in:\n{run}");
        for crash in [
            "panicked",
            "stack overflow",
            "memory allocation",
            "RUST_BACKTRACE",
        ] {
            assert!(!all.contains(crash), "{crash:?}:\n{run}");
        }
    }
    attack.assert_contained(&runs, &[]);
}

/// The line of `compose.yaml` at which `needle` first appears.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("the needle is there")
        + 1
}

#[test]
fn an_alias_bomb_in_bytes_is_refused() {
    let attack = Attack::new("budget-bytes");
    // One 64 KiB scalar aliased 100,000 times: 6.4 GB of text from a 1 MB file.
    let mut yaml = format!(
        "services:\n  web:\n    image: {BUSYBOX_IMAGE}\n    command: [sleep, infinity]\nx-big: &big \"{}\"\nx-bomb:\n",
        "b".repeat(64 << 10)
    );
    for _ in 0..100_000 {
        yaml.push_str("  - *big\n");
    }
    attack.compose(&yaml);
    // The anchored scalar and 510 aliases fit in 32 MiB; the 511th does not.
    let line = line_of(&yaml, "- *big") + 510;
    assert_budget(
        &attack,
        &format!("compose.yaml:{line}:"),
        "YAML aliases expand to more than 33554432 bytes",
    );
}

#[test]
fn a_billion_laughs_node_bomb_is_refused() {
    let attack = Attack::new("budget-nodes");
    let mut yaml = format!(
        "services:\n  web:\n    image: {BUSYBOX_IMAGE}\n    command: [sleep, infinity]\nx-a: &a [l, l, l, l, l, l, l, l, l]\n"
    );
    for i in 0..9u8 {
        let (prev, cur) = ((b'a' + i) as char, (b'b' + i) as char);
        let items = vec![format!("*{prev}"); 9].join(", ");
        yaml.push_str(&format!("x-{cur}: &{cur} [{items}]\n"));
    }
    attack.compose(&yaml);
    // Up to x-f fits; the first alias of x-g does not.
    let line = line_of(&yaml, "x-g:");
    assert_budget(
        &attack,
        &format!("compose.yaml:{line}:"),
        "YAML aliases expand to more than 1000000 nodes",
    );
}

#[test]
fn interpolation_nested_50000_deep_is_refused() {
    let attack = Attack::new("budget-interp");
    let deep = "${A:-".repeat(50_000) + "x" + &"}".repeat(50_000);
    let yaml = format!(
        "services:\n  web:\n    image: {BUSYBOX_IMAGE}\n    command: [sleep, infinity]\n    environment:\n      DEEP: \"{deep}\"\n"
    );
    attack.compose(&yaml);
    assert_budget(
        &attack,
        "compose.yaml:6:",
        "`${...}` expressions are nested more than 100 levels deep",
    );
}

#[test]
fn yaml_nested_100000_deep_is_refused() {
    for (what, nested) in [
        ("budget-flow", "[".repeat(100_000)),
        ("budget-block", "- ".repeat(100_000) + "x"),
    ] {
        let attack = Attack::new(what);
        let yaml = format!(
            "services:\n  web:\n    image: {BUSYBOX_IMAGE}\n    command: [sleep, infinity]\nx-deep:\n  {nested}\n"
        );
        attack.compose(&yaml);
        assert_budget(&attack, "compose.yaml:6:", "lists and mappings are nested");
    }
}

#[test]
fn a_200_mib_file_is_refused_unread() {
    let attack = Attack::new("budget-huge");
    attack.compose(&format!(
        "services:\n  web:\n    image: {BUSYBOX_IMAGE}\n    command: [sleep, infinity]\n"
    ));
    // 200 MiB of comments, streamed to the file (and committed: git compresses it to little).
    let path = attack.stack_dir().join("compose.yaml");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    let chunk =
        "# padding padding padding padding padding padding padding padding\n".repeat(16_384);
    let mut written = 0u64;
    while written < 200 << 20 {
        file.write_all(chunk.as_bytes()).unwrap();
        written += chunk.len() as u64;
    }
    drop(file);
    assert_budget(
        &attack,
        "compose.yaml:1:",
        "more than the 16777216 bytes (16 MiB) plimsoll reads",
    );
}

#[test]
fn a_huge_env_line_is_refused() {
    let attack = Attack::new("budget-dotenv");
    attack.compose(&format!(
        "services:\n  web:\n    image: {BUSYBOX_IMAGE}\n    command: [sleep, infinity]\n    environment:\n      BIG: ${{BIG}}\n"
    ));
    attack.write(".env", &format!("A=1\nBIG={}\n", "x".repeat(8 << 20)));
    assert_budget(&attack, ".env:2:", "longer than 131072 bytes (128 KiB");
}

/// The Compose file of the crash-loop test: one busybox service with `GREETING`.
fn greeting_stack(stack: &str, greeting: &str) -> String {
    format!(
        "name: {stack}\nservices:\n  web:\n    image: {BUSYBOX_IMAGE}\n    init: true\n    command: [\"sleep\", \"3600\"]\n    environment:\n      GREETING: \"{greeting}\"\n"
    )
}

fn greeting_of(container: &str) -> String {
    let out = Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{range .Config.Env}}{{println .}}{{end}}",
            container,
        ])
        .output()
        .expect("run docker inspect");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("GREETING=").map(str::to_string))
        .unwrap_or_default()
}

/// A revision whose loading kills the agent (simulated: with
/// `PLIMSOLL_FAULT_KILL_WHILE_LOADING=crash-me` the agent SIGKILLs itself while
/// it loads a revision holding a file `crash-me`, as the OOM killer would) is
/// rejected by the restarted agent, which never loads it again (it would die
/// again: the fault stays armed); the last good revision keeps running, the
/// rejection is audited, notified and on `/status`, and a good commit applies.
#[test]
fn agent_rejects_a_revision_that_killed_it_instead_of_crash_looping() {
    ensure_busybox();
    let mut cleanup = Cleanup::new();
    let stack = cleanup.stack("budget-crashloop");
    let web = format!("{stack}-web-1");
    let tmp = temp_dir("plimsoll-crashloop-");
    let repo = GitRepo::init(tmp.path().join("repo"));
    let state = tmp.path().join("state");
    let receiver = Receiver::start();
    let fault = [("PLIMSOLL_FAULT_KILL_WHILE_LOADING", "crash-me")];
    let compose = format!("stacks/{stack}/compose.yaml");
    repo.write("plimsoll.yaml", &receiver.notifications());
    repo.write(&compose, &greeting_stack(&stack, "v1"));
    let good = repo.commit("v1");

    let mut agent = Agent::start(&state, &repo.url(), &["--interval", "1s"], &fault);
    agent.wait_revision(&good, Duration::from_secs(60));
    assert_eq!(greeting_of(&web), "v1");

    // The bad commit: the agent dies while loading it.
    repo.write(&compose, &greeting_stack(&stack, "v2"));
    repo.write("crash-me", "");
    let bad = repo.commit("kills the agent while it loads");
    let exit = agent.wait_exit(Duration::from_secs(60));
    assert!(!exit.success(), "the agent was killed: {exit:?}");
    let saved = std::fs::read_to_string(state.join("agent.json")).unwrap();
    assert!(
        saved.contains(&format!("\"loading\": \"{bad}\"")),
        "agent.json says what was loading: {saved}"
    );
    assert_eq!(
        greeting_of(&web),
        "v1",
        "the host keeps the last good revision"
    );

    // Restarted with the fault still armed: it rejects the revision without loading it.
    let agent = Agent::start(&state, &repo.url(), &["--interval", "1s"], &fault);
    let status = agent.wait_status("the revision rejected", Duration::from_secs(60), |s| {
        s["rejected"]["revision"] == bad && s["revision"] == good
    });
    let reason = status["rejected"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("died while loading this revision"),
        "{status:#}"
    );
    let note = receiver.wait_event("revision_rejected", Duration::from_secs(20), |n| {
        n["revision"] == bad
    });
    assert!(
        note["message"]
            .as_str()
            .unwrap_or_default()
            .contains("died while loading"),
        "{note:#}"
    );
    // Polls go on (a second cycle at least) without loading it again: the agent lives.
    let fetched = |s: &serde_json::Value| s["fetched"] == bad && s["last_sync"].is_object();
    agent.wait_status(
        "a poll after the rejection",
        Duration::from_secs(20),
        fetched,
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(agent.status()["revision"], good);
    assert_eq!(greeting_of(&web), "v1");
    let history =
        crate::support::plimsoll_command(&state, tmp.path(), &["history", "--format", "json"])
            .output()
            .expect("run plimsoll history");
    let records: Vec<serde_json::Value> = serde_json::from_slice(&history.stdout).unwrap();
    let rejected = records
        .iter()
        .filter(|r| r["revision"] == bad && r["outcome"] == "rejected")
        .count();
    assert_eq!(rejected, 1, "audited once: {records:#?}");
    assert!(
        !records
            .iter()
            .any(|r| r["revision"] == bad && r["outcome"] == "applied"),
        "never applied"
    );

    // The next good commit (without the crashing file) applies.
    repo.write(&compose, &greeting_stack(&stack, "v3"));
    std::fs::remove_file(tmp.path().join("repo/crash-me")).unwrap();
    let fixed = repo.commit("v3");
    agent.wait_revision(&fixed, Duration::from_secs(60));
    crate::support::wait_for(
        "GREETING=v3",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || (greeting_of(&web) == "v3").then_some(()),
    );
    let saved = std::fs::read_to_string(state.join("agent.json")).unwrap();
    assert!(
        !saved.contains("\"loading\""),
        "nothing left loading: {saved}"
    );
}
