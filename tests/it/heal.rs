//! The agent's heals on the real engine: drift of different services is healed
//! independently (a service waiting on its restart or its health gate never
//! delays the heal of an unrelated one), and within a stack a heal waits for
//! the heal of a dependency.
//!
//! Each test has its own stack, repository, state directory and agent (see
//! `agent.rs`), removed at the end, by panic too.

use std::time::Duration;

use serde_json::Value;

use crate::agent::{Agent, Scenario, running, wait_running};
use crate::support::{BUSYBOX_IMAGE, docker, wait_for};

/// Seconds the crash-looping service takes to stop: it ignores SIGTERM, so
/// each restart of it waits this long before the engine kills it.
const SICK_STOP: u64 = 20;

/// `docker inspect -f FORMAT NAME`.
fn inspect(name: &str, format: &str) -> String {
    let out = crate::support::docker_output(&["inspect", "-f", format, name]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// With one service crash-looping behind a health gate (unhealthy a few
/// seconds after each start; each restart waits 20 s for it to stop, then its
/// gate), a `docker stop` of an unrelated service is running again long before
/// that restart could have ended: its heal does not queue behind the other.
#[test]
fn agent_heals_a_service_while_another_waits_on_its_restart() {
    let sc = Scenario::new("heal-indep");
    let stack = &sc.stack;
    sc.repo.write(
        "plimsoll.yaml",
        "agent: {heal_backoff: 1s, heal_attempts: 1000, crash_loop_heals: 1000}\n",
    );
    // `sick` is healthy for its first seconds (the deploy's gate passes), then
    // unhealthy for good: the file survives its restarts.
    sc.repo.write(
        &format!("stacks/{stack}/compose.yaml"),
        &format!(
            r#"name: {stack}
services:
  sick:
    image: {BUSYBOX_IMAGE}
    command: ["sh", "-c", "trap '' TERM; sleep 3; touch /tmp/sick; while true; do sleep 1; done"]
    stop_grace_period: {SICK_STOP}s
    healthcheck:
      test: ["CMD", "sh", "-c", "! test -e /tmp/sick"]
      interval: 1s
      timeout: 1s
      retries: 1
    x-plimsoll: {{health_timeout: 30s}}
  web:
    image: {BUSYBOX_IMAGE}
    init: true
    command: ["sleep", "3600"]
"#
        ),
    );
    let sha = sc.repo.commit("sick and web");
    let agent = sc.deploy(&["--interval", "1h"], &[], &sha);
    let web = format!("{stack}-web-1");
    let sick_subject = format!("{stack}/sick");
    assert!(running(&web));

    // Wait until the agent restarts `sick` (it turned unhealthy): its restart
    // now waits SICK_STOP seconds for the container to stop.
    let restarting = || {
        agent
            .log()
            .lines()
            .any(|l| l.contains("restarting") && l.contains(&sick_subject))
            .then_some(())
    };
    wait_for(
        "the agent restarting the unhealthy service",
        Duration::from_secs(30),
        Duration::from_millis(50),
        restarting,
    );
    docker(&["stop", "-t", "0", &web]);
    // A hang guard only: what counts is the order of the two events below.
    wait_running(&web, Duration::from_secs(SICK_STOP * 3));
    // The restart of `sick` was still waiting when `web` was healed: had
    // web's heal queued behind it, that restart would have ended first.
    let log = agent.log();
    let lines: Vec<&str> = log.lines().collect();
    let first_restart = lines
        .iter()
        .position(|l| l.contains("restarting") && l.contains(&sick_subject))
        .expect("seen above");
    let restarted = lines[first_restart..]
        .iter()
        .filter(|l| l.contains(&sick_subject) && l.contains("done"))
        .count();
    assert_eq!(
        restarted,
        0,
        "sick's restart had ended before web was healed:\n{}",
        agent.log()
    );
}

/// A stopped service and its stopped dependency (`service_healthy`): the
/// dependent's heal waits for the dependency's, so it starts once the
/// dependency is healthy, at its first attempt.
#[test]
fn agent_heal_waits_for_the_heal_of_a_dependency() {
    let sc = Scenario::new("heal-deps");
    let stack = &sc.stack;
    sc.repo.write(
        "plimsoll.yaml",
        "agent: {heal_backoff: 1s, crash_loop_heals: 1000}\n",
    );
    sc.repo.write(
        &format!("stacks/{stack}/compose.yaml"),
        &format!(
            r#"name: {stack}
services:
  db:
    image: {BUSYBOX_IMAGE}
    init: true
    command: ["sh", "-c", "sleep 2; touch /tmp/ready; exec sleep 3600"]
    healthcheck:
      test: ["CMD", "test", "-e", "/tmp/ready"]
      interval: 1s
      timeout: 1s
      retries: 30
  app:
    image: {BUSYBOX_IMAGE}
    init: true
    command: ["sleep", "3600"]
    depends_on:
      db: {{condition: service_healthy}}
"#
        ),
    );
    let sha = sc.repo.commit("db and app");
    let agent = sc.deploy(&["--interval", "1h"], &[], &sha);
    let (db, app) = (format!("{stack}-db-1"), format!("{stack}-app-1"));
    // The marker stays in the container's file system: removed, db turns
    // healthy only 2 s after its next start (its command makes it again).
    docker(&["exec", &db, "rm", "/tmp/ready"]);
    docker(&["stop", "-t", "0", &db]);
    docker(&["stop", "-t", "0", &app]);
    wait_running(&app, Duration::from_secs(30));
    let db_healthy = inspect(&db, "{{.State.Health.Status}}");
    assert_eq!(
        db_healthy,
        "healthy",
        "app was started before db was healthy\n{}",
        agent.log()
    );
    let app_started = inspect(&app, "{{.State.StartedAt}}");
    let db_started = inspect(&db, "{{.State.StartedAt}}");
    assert!(
        app_started > db_started,
        "app ({app_started}) started before db ({db_started})"
    );
    // No failed attempt: app did not try while db was down.
    let key = format!("{stack}/app");
    let status = agent.wait_status("app in sync", Duration::from_secs(20), |s: &Value| {
        s["stacks"]
            .as_array()
            .and_then(|st| st.iter().find(|x| x["name"] == stack.as_str()))
            .and_then(|x| x["services"].as_array())
            .and_then(|v| v.iter().find(|x| x["service"] == "app"))
            .is_some_and(|x| x["state"] == "in sync")
    });
    let book: Value =
        serde_json::from_str(&std::fs::read_to_string(sc.state.join("heal.json")).unwrap())
            .unwrap();
    assert_eq!(
        book["services"][&key]["failures"].as_u64().unwrap_or(0),
        0,
        "{book:#}\n{status:#}\n{}",
        agent.log()
    );
    drop::<Agent>(agent);
}

/// A service that turns healthy after the revision's apply ended (it has no
/// dependents, so nothing waited on its gate) is shown healthy in `/status`
/// without any other trigger: the engine's `health_status: healthy` event
/// publishes the status again.
#[test]
fn agent_status_follows_a_service_turning_healthy() {
    let sc = Scenario::new("heal-status");
    let stack = &sc.stack;
    sc.repo.write(
        &format!("stacks/{stack}/compose.yaml"),
        &format!(
            r#"name: {stack}
services:
  slow:
    image: {BUSYBOX_IMAGE}
    init: true
    command: ["sh", "-c", "sleep 4; touch /tmp/ready; sleep 3600"]
    healthcheck:
      test: ["CMD", "test", "-e", "/tmp/ready"]
      interval: 1s
      timeout: 1s
      retries: 30
"#
        ),
    );
    let sha = sc.repo.commit("slow to turn healthy");
    let agent = sc.deploy(&["--interval", "1h", "--resync", "1h"], &[], &sha);
    let health = || {
        agent.status()["stacks"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["services"].as_array().cloned().unwrap_or_default())
            .find(|s| s["service"] == "slow")
            .map(|s| s["health"].as_str().unwrap_or_default().to_string())
    };
    wait_for(
        "/status to show slow healthy",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || (health().as_deref() == Some("healthy")).then_some(()),
    );
}
