//! Fixture tests: saved `docker inspect` output of real containers, each
//! beside the verdict expected for each condition
//! (`tests/fixtures/inspect/state/expected.txt`).

use super::*;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/inspect/state");

/// The typed state of the saved inspect `case`, converted as `live` converts the engine's.
fn state(case: &str) -> RunState {
    let text = std::fs::read_to_string(format!("{DIR}/{case}.json")).expect(case);
    let inspect: bollard::models::ContainerInspectResponse =
        serde_json::from_str(&text).expect(case);
    crate::live::run_state(inspect.state.unwrap_or_default())
}

fn condition(word: &str) -> Condition {
    match word {
        "started" => Condition::ServiceStarted,
        "healthy" => Condition::ServiceHealthy,
        "completed" => Condition::ServiceCompletedSuccessfully,
        other => panic!("unknown condition {other}"),
    }
}

/// The verdict on the saved `case` for `cond` is `expected` (`done`, `wait`,
/// or `failed` and why).
fn check(case: &str, cond: &str, expected: &str) {
    let got = match gate(&state(case), condition(cond)) {
        Verdict::Done => "done".to_string(),
        Verdict::Wait => "wait".to_string(),
        Verdict::Failed(why) => format!("failed {why}"),
    };
    assert_eq!(got, expected, "{case} waited on for {cond}");
}

#[test]
fn saved_inspects_give_the_expected_verdicts() {
    let table = std::fs::read_to_string(format!("{DIR}/expected.txt")).unwrap();
    let mut cases = 0;
    for line in table
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let mut words = line.split_whitespace();
        let (case, cond) = (words.next().unwrap(), words.next().unwrap());
        let expected = words.collect::<Vec<_>>().join(" ");
        check(case, cond, &expected);
        cases += 1;
    }
    assert_eq!(cases, 33, "every case for every condition");
}

#[test]
fn saved_inspects_give_typed_states() {
    let s = state("unhealthy");
    assert_eq!(s.status, Status::Running);
    assert_eq!(s.health, Some(Health::Unhealthy));
    assert_eq!(s.health_log.as_deref(), Some("exit 1: broken"));
    assert_eq!(state("running").health, None, "no health check");
    assert_eq!(state("starting").health, Some(Health::Starting));
    let oom = state("oom-killed");
    assert!(oom.oom_killed && oom.status == Status::Exited && oom.exit_code == 137);
    assert_eq!(state("restarting").status, Status::Restarting);
    assert!(state("restarting").is_up() && !state("restarting").is_running());
    assert!(state("paused").is_up());
    assert_eq!(state("created").status, Status::Created);
    assert!(!state("exited-0").is_up());
}

#[test]
fn heals_wait_for_health_only_with_a_health_check() {
    assert_eq!(heal_condition(&state("running")), Condition::ServiceStarted);
    assert_eq!(
        heal_condition(&state("starting")),
        Condition::ServiceHealthy
    );
    assert_eq!(
        heal_condition(&state("unhealthy")),
        Condition::ServiceHealthy
    );
}

#[test]
fn health_is_ordered_by_worse() {
    assert!(Health::Unhealthy.is_worse(Health::Starting));
    assert!(Health::Starting.is_worse(Health::Healthy));
    assert!(!Health::Healthy.is_worse(Health::Healthy));
    let worst = [Health::Starting, Health::Unhealthy, Health::Healthy]
        .into_iter()
        .max();
    assert_eq!(worst, Some(Health::Unhealthy));
    for h in [Health::Healthy, Health::Starting, Health::Unhealthy] {
        assert_eq!(Health::parse(h.as_str()), Some(h));
    }
    assert_eq!(Health::parse("none"), None);
    for s in [
        "created",
        "running",
        "paused",
        "restarting",
        "stopping",
        "removing",
        "exited",
        "dead",
    ] {
        assert_eq!(Status::parse(s).as_str(), s);
    }
}
