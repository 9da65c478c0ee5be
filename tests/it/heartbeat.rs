//! The agent's heartbeat on the real engine: a tmpfs-backed named volume
//! filled by a container and a data-root threshold set under its current
//! use (disk), a crash-looping container, a container stopped past a short
//! threshold, and a container that prints the canary secret. Each alert is
//! notified once when it starts and once when it resolves (a local receiver
//! counts them), and the canary appears in no notification, `/status`,
//! `/metrics` or log line.
//!
//! Every wait is on the event itself (a notification, a beat counted in
//! `/status`); `alerts.interval: 1s` only makes the beats come often.

use std::time::Duration;

use serde_json::Value;

use crate::agent::{Agent, Receiver, Scenario, sample, wait_running};
use crate::support::{BUSYBOX_IMAGE, docker, wait_for};

const WAIT: Duration = Duration::from_secs(60);

fn compose(stack: &str, services: &str, extra: &str) -> String {
    format!("name: {stack}\nservices:\n{services}{extra}")
}

/// `plimsoll.yaml`: notifications to `receiver`, beats every second, and `alerts`.
fn config(receiver: &Receiver, alerts: &str, extra: &str) -> String {
    format!(
        "{}alerts:\n  interval: 1s\n{alerts}{extra}",
        receiver.notifications()
    )
}

/// Heartbeat notifications (`alert_started`, `alert_resolved`) whose message contains `what`.
fn alerts(receiver: &Receiver, event: &str, what: &str) -> Vec<Value> {
    receiver
        .all()
        .into_iter()
        .filter(|n| n["event"] == event && n["message"].as_str().unwrap_or("").contains(what))
        .collect()
}

#[track_caller]
fn wait_alert(receiver: &Receiver, event: &str, what: &str) -> Value {
    receiver.wait_event(event, WAIT, |n| {
        n["message"].as_str().unwrap_or("").contains(what)
    })
}

/// The beats counted in `/status` so far.
fn beats(agent: &Agent) -> u64 {
    agent.status()["heartbeat"]["beats"].as_u64().unwrap_or(0)
}

/// Waits until `n` more beats have run (each one decides every alert again).
#[track_caller]
fn wait_beats(agent: &Agent, n: u64) {
    let from = beats(agent);
    agent.wait_status(&format!("{n} more heartbeats"), WAIT, |s| {
        s["heartbeat"]["beats"].as_u64().unwrap_or(0) >= from + n
    });
}

/// After a few more beats, `what` was alerted exactly once and resolved exactly once.
#[track_caller]
fn assert_once(agent: &Agent, receiver: &Receiver, what: &str) {
    wait_beats(agent, 3);
    let started = alerts(receiver, "alert_started", what);
    let resolved = alerts(receiver, "alert_resolved", what);
    assert_eq!(
        started.len(),
        1,
        "started once: {started:#?}\nall: {:#?}",
        receiver.all()
    );
    assert_eq!(resolved.len(), 1, "resolved once: {resolved:#?}");
}

/// A tmpfs volume of 4 MiB filled to about 95 % is an alert, emptied it
/// resolves; then a data-root threshold under its current use alerts, and
/// the next revision's default thresholds resolve it.
#[test]
fn heartbeat_disk_alerts_once_and_resolves_once() {
    let sc = Scenario::new("hb-disk");
    let stack = &sc.stack;
    let receiver = Receiver::start();
    sc.repo.write("plimsoll.yaml", &config(&receiver, "", ""));
    let fill = format!(
        "  fill:\n    image: {BUSYBOX_IMAGE}\n    init: true\n    command: [\"sh\", \"-c\", \"dd if=/dev/zero of=/data/fill bs=1024 count=3900 && sleep 3600\"]\n    volumes: [\"data:/data\"]\n"
    );
    let volumes = "volumes:\n  data:\n    driver_opts: {type: tmpfs, device: tmpfs, o: size=4m}\n";
    sc.repo.write(
        &format!("stacks/{stack}/compose.yaml"),
        &compose(stack, &fill, volumes),
    );
    let sha = sc.repo.commit("fill");
    let agent = sc.deploy(&["--interval", "1s"], &[], &sha);
    let volume = format!("volumes/{stack}_data/");
    let n = wait_alert(&receiver, "alert_started", &volume);
    assert_eq!(n["revision"], sha.as_str());
    assert!(
        n["message"].as_str().unwrap().contains("(critical)"),
        "{n:#}"
    );
    let metrics = agent.metrics();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("plimsoll_disk_use_ratio{") && l.contains(&volume)),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "plimsoll_open_alerts{kind=\"disk\"}"),
        1.0,
        "{metrics}"
    );
    let status = agent.status();
    assert!(
        status["heartbeat"]["open"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "disk"),
        "{status:#}"
    );
    docker(&["exec", &format!("{stack}-fill-1"), "rm", "/data/fill"]);
    wait_alert(&receiver, "alert_resolved", &volume);
    assert_once(&agent, &receiver, &volume);

    // The data root: a threshold under its current use, then the defaults again.
    let data_root = status["heartbeat"]["facts"]["data_root"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!data_root.is_empty(), "{status:#}");
    sc.repo.write(
        "plimsoll.yaml",
        &config(
            &receiver,
            "  disk: {warn_percent: 1, alert_percent: 1}\n",
            "",
        ),
    );
    let low = sc.repo.commit("low threshold");
    agent.wait_revision(&low, WAIT);
    let n = wait_alert(&receiver, "alert_started", "data root");
    assert!(n["message"].as_str().unwrap().contains(&data_root), "{n:#}");
    sc.repo.write("plimsoll.yaml", &config(&receiver, "", ""));
    let back = sc.repo.commit("default thresholds");
    agent.wait_revision(&back, WAIT);
    wait_alert(&receiver, "alert_resolved", "data root");
    assert_once(&agent, &receiver, "data root");
}

/// A container that exits every two seconds under `restart: always` is a
/// crash loop; the fixed revision replaces it and the alert resolves.
#[test]
fn heartbeat_crash_loop_alerts_once_and_resolves_once() {
    let sc = Scenario::new("hb-crash");
    let stack = &sc.stack;
    let receiver = Receiver::start();
    sc.repo.write(
        "plimsoll.yaml",
        &config(&receiver, "  crash_loop: {restarts: 2, window: 5m}\n", ""),
    );
    let service = |command: &str| {
        format!(
            "  crash:\n    image: {BUSYBOX_IMAGE}\n    restart: always\n    command: [\"sh\", \"-c\", \"{command}\"]\n"
        )
    };
    let file = format!("stacks/{stack}/compose.yaml");
    sc.repo
        .write(&file, &compose(stack, &service("sleep 2; exit 3"), ""));
    let sha = sc.repo.commit("crashing");
    let agent = sc.deploy(&["--interval", "1s"], &[], &sha);
    let key = format!("{stack}/crash");
    let n = wait_alert(&receiver, "alert_started", &key);
    assert_eq!(n["stack"], stack.as_str());
    assert_eq!(n["service"], "crash");
    assert!(
        n["message"].as_str().unwrap().contains("crash loop"),
        "{n:#}"
    );
    let metrics = agent.metrics();
    assert_eq!(
        sample(&metrics, "plimsoll_open_alerts{kind=\"crash_loop\"}"),
        1.0,
        "{metrics}"
    );
    assert!(
        metrics.contains("plimsoll_container_restarts{"),
        "{metrics}"
    );

    sc.repo
        .write(&file, &compose(stack, &service("sleep 3600"), ""));
    let fixed = sc.repo.commit("fixed");
    agent.wait_revision(&fixed, WAIT);
    wait_alert(&receiver, "alert_resolved", &key);
    assert_once(&agent, &receiver, &key);
}

/// Stopped by hand (self-heal off) past `down_after: 2s`: alerted; started
/// again: resolved.
#[test]
fn heartbeat_down_past_the_threshold_alerts_once_and_resolves_once() {
    let sc = Scenario::new("hb-down");
    let stack = &sc.stack;
    let receiver = Receiver::start();
    sc.repo.write(
        "plimsoll.yaml",
        &config(
            &receiver,
            "  down_after: 2s\n",
            &format!("stacks:\n  {stack}: {{self_heal: false}}\n"),
        ),
    );
    let web = format!(
        "  web:\n    image: {BUSYBOX_IMAGE}\n    init: true\n    command: [\"sleep\", \"3600\"]\n"
    );
    sc.repo.write(
        &format!("stacks/{stack}/compose.yaml"),
        &compose(stack, &web, ""),
    );
    let sha = sc.repo.commit("web");
    let agent = sc.deploy(&["--interval", "1s"], &[], &sha);
    docker(&["stop", "-t", "0", &sc.web]);
    let n = wait_alert(&receiver, "alert_started", &sc.web);
    assert_eq!(n["service"], "web");
    assert!(
        n["message"].as_str().unwrap().contains("longer than 2s"),
        "{n:#}"
    );
    docker(&["start", &sc.web]);
    wait_running(&sc.web, WAIT);
    wait_alert(&receiver, "alert_resolved", &sc.web);
    assert_once(&agent, &receiver, &sc.web);
}

/// A container that prints a secret value (the canary) in its logs: the
/// alert names the variable, never the value; the replaced container
/// resolves it; the canary is in no notification, `/status`, `/metrics` or log line.
#[test]
fn heartbeat_secret_in_logs_alerts_once_and_never_shows_the_value() {
    let sc = Scenario::new("hb-logs");
    let stack = &sc.stack;
    let receiver = Receiver::start();
    let canary = format!("canary-s3cr3t-{}", crate::support::unique_name("logs"));
    sc.repo.write("plimsoll.yaml", &config(&receiver, "", ""));
    let web = |line: &str| {
        format!(
            "  web:\n    image: {BUSYBOX_IMAGE}\n    init: true\n    environment:\n      API_TOKEN: \"{canary}\"\n    command: [\"sh\", \"-c\", \"while true; do echo {line}; sleep 1; done\"]\n"
        )
    };
    let file = format!("stacks/{stack}/compose.yaml");
    sc.repo
        .write(&file, &compose(stack, &web("token=$$API_TOKEN"), ""));
    let sha = sc.repo.commit("leaky");
    let agent = sc.deploy(&["--interval", "1s"], &[], &sha);
    let n = wait_alert(
        &receiver,
        "alert_started",
        "the value of API_TOKEN appears in the logs of",
    );
    assert_eq!(n["service"], "web");
    wait_for(
        "the counter of secrets in the logs",
        WAIT,
        Duration::from_millis(100),
        || {
            let m = agent.metrics();
            (sample(
                &m,
                &format!("plimsoll_secrets_in_logs_total{{stack=\"{stack}\",service=\"web\"}}"),
            ) >= 1.0)
                .then_some(())
        },
    );
    sc.repo
        .write(&file, &compose(stack, &web("nothing-to-see"), ""));
    let fixed = sc.repo.commit("quiet");
    agent.wait_revision(&fixed, WAIT);
    wait_alert(&receiver, "alert_resolved", "API_TOKEN");
    assert_once(&agent, &receiver, "API_TOKEN");

    let status = agent.status().to_string();
    let metrics = agent.metrics();
    let notes = serde_json::to_string(&receiver.all()).unwrap();
    let log = agent.log();
    assert!(log.contains("the value of API_TOKEN appears"), "{log}");
    for (what, text) in [
        ("the agent's log", &log),
        ("/status", &status),
        ("/metrics", &metrics),
        ("the notifications", &notes),
    ] {
        assert!(
            !text.contains(&canary),
            "the secret appears in {what}:\n{text}"
        );
    }
}
