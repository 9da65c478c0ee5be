//! How many services of one wave an apply changes at once (`--parallel`,
//! `PLIMSOLL_PARALLEL`; default 64, a sliding window).
//!
//! The evidence is the order of the apply's own progress events (`--log-format
//! json` on stderr), never a wall-clock threshold: a service is in flight from
//! its first event to its `done`. Each test changes an environment variable of
//! every service of a one-wave stack, so every container is replaced.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use crate::support::{Cleanup, Run, ensure_busybox, plimsoll_command, temp_dir};

/// A one-wave stack in a tempdir, with its own state directory; its cleanup
/// guard removes everything labelled with its name, panics included.
struct Wave {
    name: String,
    dir: tempfile::TempDir,
    state: tempfile::TempDir,
    _cleanup: Cleanup,
}

impl Wave {
    fn new(what: &str) -> Wave {
        ensure_busybox();
        let mut cleanup = Cleanup::new();
        Wave {
            name: cleanup.stack(what),
            dir: temp_dir("plimsoll-it-parallel-"),
            state: temp_dir("plimsoll-it-parallel-state-"),
            _cleanup: cleanup,
        }
    }

    fn set_compose(&self, services: &str) {
        let yaml = format!("name: {}\nservices:\n{services}", self.name);
        std::fs::write(self.dir.path().join("compose.yaml"), yaml).expect("write compose.yaml");
    }

    /// `plimsoll --log-format json reconcile EXTRA...` with `env`.
    fn apply(&self, extra: &[&str], env: &[(&str, &str)]) -> Run {
        let path = self.dir.path().display().to_string();
        let mut args = vec!["--log-format", "json", "reconcile", path.as_str()];
        args.extend_from_slice(extra);
        let mut cmd = plimsoll_command(self.state.path(), self.dir.path(), &args);
        cmd.envs(env.iter().copied());
        Run::of(&args, &mut cmd)
    }

    fn subject(&self, service: &str) -> String {
        format!("{}/{service}", self.name)
    }
}

/// The progress events of a run: (subject, message), in the order printed.
fn events(run: &Run) -> Vec<(String, String)> {
    run.stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            let f = v.get("fields")?;
            Some((
                f.get("subject")?.as_str()?.to_string(),
                f.get("message")?.as_str()?.to_string(),
            ))
        })
        .collect()
}

/// Per subject of `subjects`: the index of its first event and of its `done`
/// (panics when one is missing).
fn spans(run: &Run, subjects: &[String]) -> BTreeMap<String, (usize, usize)> {
    let ev = events(run);
    subjects
        .iter()
        .map(|s| {
            let first = ev.iter().position(|(sub, _)| sub == s);
            let done = ev.iter().position(|(sub, m)| sub == s && m == "done");
            match (first, done) {
                (Some(f), Some(d)) => (s.clone(), (f, d)),
                _ => panic!("no events or no `done` for {s}:\n{run}"),
            }
        })
        .collect()
}

/// The most services in flight at once.
fn most_in_flight(spans: &BTreeMap<String, (usize, usize)>) -> usize {
    let mut edges: Vec<(usize, i32)> = spans
        .values()
        .flat_map(|&(f, d)| [(f, 1), (d, -1)])
        .collect();
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, e) in edges {
        now += e;
        most = most.max(now);
    }
    most as usize
}

/// `n` services `s1..sn` whose containers stop slowly: `sleep` as PID 1
/// ignores SIGTERM, so each stop takes the whole `grace`.
fn slow_stoppers(n: usize, version: u32, grace: &str) -> String {
    (1..=n)
        .map(|i| {
            format!(
                "  s{i}:\n    image: plimsoll-example/busybox:1\n    command: [\"sleep\", \"3600\"]\n    stop_grace_period: {grace}\n    environment: {{V: \"{version}\"}}\n"
            )
        })
        .collect()
}

#[test]
fn parallel_default_replaces_every_service_of_a_wave_at_once() {
    const N: usize = 6;
    let w = Wave::new("par-all");
    w.set_compose(&slow_stoppers(N, 1, "4s"));
    w.apply(&[], &[]).expect(0);
    w.set_compose(&slow_stoppers(N, 2, "4s"));
    let run = w.apply(&[], &[]);
    run.expect(0);
    let subjects: Vec<String> = (1..=N).map(|i| w.subject(&format!("s{i}"))).collect();
    let spans = spans(&run, &subjects);
    // Every old container was being stopped before any service finished: the
    // wave took about one stop time, not N (or N/4).
    let last_start = spans.values().map(|s| s.0).max().unwrap_or_default();
    let first_done = spans.values().map(|s| s.1).min().unwrap_or_default();
    assert!(
        last_start < first_done,
        "a service started after another had finished: {spans:?}\n{run}"
    );
    assert_eq!(most_in_flight(&spans), N, "{spans:?}");
    let stopping: BTreeSet<String> = events(&run)
        .into_iter()
        .filter(|(s, m)| m == "stopping the old container" && subjects.contains(s))
        .map(|(s, _)| s)
        .collect();
    assert_eq!(stopping.len(), N, "every container was replaced:\n{run}");
}

#[test]
fn parallel_1_from_the_environment_serializes_a_wave() {
    const N: usize = 3;
    let w = Wave::new("par-one");
    let fast = |v: u32| slow_stoppers(N, v, "0s");
    w.set_compose(&fast(1));
    w.apply(&[], &[]).expect(0);
    w.set_compose(&fast(2));
    let run = w.apply(&[], &[("PLIMSOLL_PARALLEL", "1")]);
    run.expect(0);
    let subjects: Vec<String> = (1..=N).map(|i| w.subject(&format!("s{i}"))).collect();
    let spans = spans(&run, &subjects);
    assert_eq!(most_in_flight(&spans), 1, "{spans:?}\n{run}");
}

/// `a` stops only once `d` has started: its `pre_stop` hook waits for the
/// file `d`'s `post_start` hook writes into a shared host directory. With a
/// window of 2, `b`, `c` and `d` pass through the second slot while `a` holds
/// the first; in chunks of 2, `d` would wait for `a` and `a`'s hook would
/// time out (a warning).
fn sliding(shared: &Path, version: u32) -> String {
    let shared = shared.display();
    let plain = |name: &str| {
        format!(
            "  {name}:\n    image: plimsoll-example/busybox:1\n    command: [\"sleep\", \"3600\"]\n    stop_signal: SIGKILL\n    environment: {{V: \"{version}\"}}\n"
        )
    };
    format!(
        "{a}    volumes: [\"{shared}:/shared\"]\n    pre_stop:\n      - command: [\"sh\", \"-c\", \"until [ -f /shared/d-{version} ]; do sleep 0.1; done\"]\n    x-plimsoll: {{health_timeout: 60s}}\n{b}{c}{d}    volumes: [\"{shared}:/shared\"]\n    post_start:\n      - command: [\"touch\", \"/shared/d-{version}\"]\n",
        a = plain("a"),
        b = plain("b"),
        c = plain("c"),
        d = plain("d"),
    )
}

#[test]
fn parallel_2_slides_a_service_in_as_soon_as_one_finishes() {
    let w = Wave::new("par-slide");
    let shared = temp_dir("plimsoll-it-parallel-shared-");
    w.set_compose(&sliding(shared.path(), 1));
    w.apply(&[], &[]).expect(0);
    w.set_compose(&sliding(shared.path(), 2));
    let run = w.apply(&["--parallel", "2"], &[]);
    run.expect(0);
    assert!(
        !run.stderr.contains("stopping the container anyway"),
        "a's pre_stop hook timed out: d did not start while a was in flight\n{run}"
    );
    let subjects: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| w.subject(s)).collect();
    let spans = spans(&run, &subjects);
    assert_eq!(most_in_flight(&spans), 2, "{spans:?}\n{run}");
    assert!(
        spans[&w.subject("d")].1 < spans[&w.subject("a")].1,
        "d finished before a: {spans:?}"
    );
}

#[test]
fn parallel_flag_rejects_zero_and_words() {
    let dir = temp_dir("plimsoll-it-parallel-flag-");
    let state = temp_dir("plimsoll-it-parallel-flag-state-");
    for bad in ["0", "many", "-2"] {
        let args = ["reconcile", ".", "--dry-run", "--parallel", bad];
        let run = Run::of(
            &args,
            &mut plimsoll_command(state.path(), dir.path(), &args),
        );
        run.expect(1);
        assert!(
            run.stderr.contains("--parallel") && run.stderr.contains("unlimited"),
            "{run}"
        );
    }
}
