//! The heartbeat's decisions, pure: facts read from the engine, the
//! thresholds of `alerts:`, what the scanner saw in container logs and the
//! alerts open before go in; the alerts open now and what changed
//! (started, resolved, changed severity) come out. Only changes are
//! notified, so a lasting alert is sent once when it starts and once when
//! it resolves.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::live::heartbeat::{HostFacts, by_service};
use crate::spec::config::Thresholds;

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A file system of the engine's data or of a named volume fills up.
    Disk,
    /// Unused images, build cache and stopped containers take much space.
    Reclaimable,
    /// A service restarts over and over.
    CrashLoop,
    /// A managed container has been stopped for longer than the threshold.
    Down,
    /// A secret value appeared in a container's logs.
    SecretInLogs,
}

impl AlertKind {
    pub const ALL: [AlertKind; 5] = [
        AlertKind::Disk,
        AlertKind::Reclaimable,
        AlertKind::CrashLoop,
        AlertKind::Down,
        AlertKind::SecretInLogs,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Disk => "disk",
            AlertKind::Reclaimable => "reclaimable",
            AlertKind::CrashLoop => "crash_loop",
            AlertKind::Down => "down",
            AlertKind::SecretInLogs => "secret_in_logs",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One open alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub severity: Severity,
    /// What it is about: a path, `stack/service`, `stack/service DB_PASSWORD`.
    pub subject: String,
    pub stack: Option<String>,
    pub service: Option<String>,
    /// For a human, one line.
    pub message: String,
    /// When it started (Unix seconds).
    pub since: i64,
    /// The container whose logs hold the secret (`secret_in_logs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
}

/// How an alert changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Started,
    /// Open before and still open, with another severity.
    Escalated,
    Deescalated,
    Resolved,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub change: Change,
    /// The alert now (for `Resolved`, as it was last open).
    pub alert: Alert,
}

/// A secret value the log scanner found in a container's logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    pub container_id: String,
    pub stack: String,
    pub service: String,
    /// The variable (or secret) whose value appeared.
    pub variable: String,
    /// When it was first seen (Unix seconds).
    pub time: i64,
}

/// What the heartbeat carries from one beat to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// The open alerts, by kind and subject.
    pub open: BTreeMap<String, Alert>,
    /// Restart counts sampled per container id: (time, count), oldest first.
    #[serde(default, skip)]
    pub restarts: BTreeMap<String, VecDeque<(i64, u64)>>,
    /// Beats since the agent started.
    #[serde(default, skip)]
    pub beats: u64,
}

fn memory_key(kind: AlertKind, subject: &str) -> String {
    format!("{}:{subject}", kind.as_str())
}

/// Everything one beat decides from.
pub struct Inputs<'a> {
    pub facts: &'a HostFacts,
    pub thresholds: &'a Thresholds,
    /// The agent's own heals per `stack/service`: their Unix times (`heal.json`).
    pub heals: &'a BTreeMap<String, Vec<i64>>,
    pub sightings: &'a [Sighting],
}

/// The alerts open after this beat, and what changed since `before`.
pub fn evaluate(before: &Memory, input: &Inputs<'_>) -> (Memory, Vec<Transition>) {
    let now = input.facts.time;
    let t = input.thresholds;
    let restarts = sample_restarts(&before.restarts, input.facts, t.crash_window, now);
    let mut current: Vec<Alert> = Vec::new();
    disk_alerts(input.facts, t, &mut current);
    if let Some(r) = &input.facts.reclaimable
        && r.total() > t.reclaimable_bytes
    {
        current.push(alert(
            AlertKind::Reclaimable,
            Severity::Warning,
            "host".into(),
            None,
            format!(
                "{} could be freed (unused images {}, build cache {}, stopped containers {}): more than {}; see `docker system df`",
                size(r.total()),
                size(r.images),
                size(r.build_cache),
                size(r.containers),
                size(t.reclaimable_bytes)
            ),
        ));
    }
    crash_loops(input, &restarts, &mut current);
    down(input.facts, t, &mut current);
    secrets(input, &mut current);
    let mut open = BTreeMap::new();
    let mut changes = Vec::new();
    for mut a in current {
        let key = memory_key(a.kind, &a.subject);
        match before.open.get(&key) {
            None => {
                a.since = now;
                changes.push(Transition {
                    change: Change::Started,
                    alert: a.clone(),
                });
            }
            Some(old) => {
                a.since = old.since;
                if old.severity != a.severity {
                    let change = if a.severity > old.severity {
                        Change::Escalated
                    } else {
                        Change::Deescalated
                    };
                    changes.push(Transition {
                        change,
                        alert: a.clone(),
                    });
                }
            }
        }
        open.insert(key, a);
    }
    for (key, old) in &before.open {
        if !open.contains_key(key) && undecided(old, input.facts, &restarts) {
            // No evidence either way yet (the agent restarted): still open.
            open.insert(key.clone(), old.clone());
        } else if !open.contains_key(key) {
            changes.push(Transition {
                change: Change::Resolved,
                alert: old.clone(),
            });
        }
    }
    let beats = before.beats + 1;
    (
        Memory {
            open,
            restarts,
            beats,
        },
        changes,
    )
}

/// Whether this beat cannot tell if `old` still holds: the logs of its
/// container were read before a restart of the agent (the container is
/// still there), or its service's restarts have not been sampled twice.
fn undecided(
    old: &Alert,
    facts: &HostFacts,
    restarts: &BTreeMap<String, VecDeque<(i64, u64)>>,
) -> bool {
    match old.kind {
        AlertKind::SecretInLogs => old
            .container_id
            .as_ref()
            .is_some_and(|id| facts.containers.iter().any(|c| &c.id == id)),
        AlertKind::CrashLoop => {
            let mine: Vec<_> = facts
                .containers
                .iter()
                .filter(|c| {
                    Some(&c.stack) == old.stack.as_ref() && Some(&c.service) == old.service.as_ref()
                })
                .collect();
            !mine.is_empty()
                && mine
                    .iter()
                    .all(|c| restarts.get(&c.id).is_none_or(|s| s.len() < 2))
        }
        AlertKind::Disk | AlertKind::Reclaimable | AlertKind::Down => false,
    }
}

fn alert(
    kind: AlertKind,
    severity: Severity,
    subject: String,
    service: Option<(&str, &str)>,
    message: String,
) -> Alert {
    Alert {
        kind,
        severity,
        subject,
        stack: service.map(|s| s.0.to_string()),
        service: service.map(|s| s.1.to_string()),
        message,
        since: 0,
        container_id: None,
    }
}

fn disk_alerts(facts: &HostFacts, t: &Thresholds, out: &mut Vec<Alert>) {
    for d in &facts.disks {
        let percent = d.use_ratio() * 100.0;
        let severity = if percent >= f64::from(t.disk_alert_percent) {
            Severity::Critical
        } else if percent >= f64::from(t.disk_warn_percent) {
            Severity::Warning
        } else {
            continue;
        };
        let limit = match severity {
            Severity::Critical => t.disk_alert_percent,
            Severity::Warning => t.disk_warn_percent,
        };
        out.push(alert(
            AlertKind::Disk,
            severity,
            d.path.clone(),
            None,
            format!(
                "{} is {percent:.0} % full ({} of {} used, {} free; {}): at or above {limit} %",
                d.path,
                size(d.used_bytes),
                size(d.used_bytes + d.available_bytes),
                size(d.available_bytes),
                d.holds.join(", ")
            ),
        ));
    }
}

/// The restart samples after this beat: one more per container, those
/// older than the window dropped (but the last one before it, the base of
/// the count), containers that are gone forgotten.
fn sample_restarts(
    before: &BTreeMap<String, VecDeque<(i64, u64)>>,
    facts: &HostFacts,
    window: std::time::Duration,
    now: i64,
) -> BTreeMap<String, VecDeque<(i64, u64)>> {
    let start = now - window.as_secs() as i64;
    let mut out = BTreeMap::new();
    for c in &facts.containers {
        let mut samples = before.get(&c.id).cloned().unwrap_or_default();
        samples.push_back((now, c.restart_count));
        while samples.len() > 1 && samples[1].0 <= start {
            samples.pop_front();
        }
        out.insert(c.id.clone(), samples);
    }
    out
}

fn crash_loops(
    input: &Inputs<'_>,
    restarts: &BTreeMap<String, VecDeque<(i64, u64)>>,
    out: &mut Vec<Alert>,
) {
    let t = input.thresholds;
    let start = input.facts.time - t.crash_window.as_secs() as i64;
    for (key, containers) in by_service(&input.facts.containers) {
        let by_docker: u64 = containers
            .iter()
            .filter_map(|c| {
                let s = restarts.get(&c.id)?;
                Some(s.back()?.1.saturating_sub(s.front()?.1))
            })
            .sum();
        let by_agent = input.heals.get(&key).map_or(0, |times| {
            times.iter().filter(|t| **t > start).count() as u64
        });
        let n = by_docker + by_agent;
        if n > u64::from(t.crash_restarts) {
            let (stack, service) = (&containers[0].stack, &containers[0].service);
            out.push(alert(
                AlertKind::CrashLoop,
                Severity::Critical,
                key.clone(),
                Some((stack, service)),
                format!(
                    "{key} restarted {n} times within {} (more than {}): a crash loop; see `docker logs {}`",
                    crate::spec::model::GoDuration(t.crash_window),
                    t.crash_restarts,
                    containers[0].name
                ),
            ));
        }
    }
}

fn down(facts: &HostFacts, t: &Thresholds, out: &mut Vec<Alert>) {
    for c in &facts.containers {
        if c.running || c.status == "restarting" || c.status == "created" {
            continue;
        }
        // A one-off job that ended well is not down.
        if c.exit_code == 0 && matches!(c.restart_policy.as_str(), "no" | "on-failure") {
            continue;
        }
        let Some(finished) = c.finished_at else {
            continue;
        };
        let down_for = facts.time - finished;
        if down_for < t.down_after.as_secs() as i64 {
            continue;
        }
        let when = jiff::Timestamp::from_second(finished)
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default();
        out.push(alert(
            AlertKind::Down,
            Severity::Critical,
            format!("{}/{} {}", c.stack, c.service, short(&c.id)),
            Some((&c.stack, &c.service)),
            format!(
                "{} ({}/{}) has been {} (exit code {}) since {when}, longer than {}",
                c.name,
                c.stack,
                c.service,
                c.status,
                c.exit_code,
                crate::spec::model::GoDuration(t.down_after)
            ),
        ));
    }
}

/// A secret seen in the logs of a container stays an alert while that
/// container (and so its logs) exists.
fn secrets(input: &Inputs<'_>, out: &mut Vec<Alert>) {
    for s in input.sightings {
        let Some(c) = input
            .facts
            .containers
            .iter()
            .find(|c| c.id == s.container_id)
        else {
            continue;
        };
        let when = jiff::Timestamp::from_second(s.time)
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default();
        let mut a = alert(
            AlertKind::SecretInLogs,
            Severity::Critical,
            format!("{}/{} {} {}", s.stack, s.service, short(&c.id), s.variable),
            Some((&s.stack, &s.service)),
            format!(
                "the value of {} appears in the logs of {}/{} ({}) at {when}; rotate the secret, and remove the container to drop its logs",
                s.variable, s.stack, s.service, c.name
            ),
        );
        a.container_id = Some(c.id.clone());
        out.push(a);
    }
}

/// A container's id as `docker ps` shows it (names change: a replaced
/// container is renamed while its replacement starts).
fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Bytes for people, in binary units as Docker prints them.
fn size(b: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (name, unit) in UNITS {
        if b >= unit {
            return format!("{:.1} {name}", b as f64 / unit as f64);
        }
    }
    format!("{b} B")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::heartbeat::{ContainerFacts, DiskFacts, Reclaimable};
    use std::time::Duration;

    fn container(id: &str, service: &str, running: bool, restarts: u64) -> ContainerFacts {
        ContainerFacts {
            id: id.into(),
            name: format!("shop-{service}-1"),
            stack: "shop".into(),
            service: service.into(),
            status: if running { "running" } else { "exited" }.into(),
            running,
            exit_code: if running { 0 } else { 137 },
            restart_count: restarts,
            restart_policy: "always".into(),
            finished_at: (!running).then_some(1_000),
        }
    }

    fn disk(path: &str, used: u64, available: u64) -> DiskFacts {
        DiskFacts {
            path: path.into(),
            holds: vec!["data root".into()],
            total_bytes: used + available,
            used_bytes: used,
            available_bytes: available,
        }
    }

    fn facts(time: i64) -> HostFacts {
        HostFacts {
            time,
            data_root: "/var/lib/docker".into(),
            ..HostFacts::default()
        }
    }

    fn beat(
        before: &Memory,
        f: &HostFacts,
        t: &Thresholds,
        sightings: &[Sighting],
    ) -> (Memory, Vec<(Change, AlertKind, Severity, String)>) {
        let heals = BTreeMap::new();
        let (m, changes) = evaluate(
            before,
            &Inputs {
                facts: f,
                thresholds: t,
                heals: &heals,
                sightings,
            },
        );
        let changes = changes
            .into_iter()
            .map(|c| (c.change, c.alert.kind, c.alert.severity, c.alert.subject))
            .collect();
        (m, changes)
    }

    #[test]
    fn disk_warns_then_alerts_then_resolves_each_once() {
        let t = Thresholds::default();
        let mut f = facts(100);
        f.disks = vec![disk("/var/lib/docker", 80, 20)];
        let (m, c) = beat(&Memory::default(), &f, &t, &[]);
        assert!(c.is_empty() && m.open.is_empty(), "80 % is fine");
        f.disks = vec![disk("/var/lib/docker", 86, 14)];
        let (m, c) = beat(&m, &f, &t, &[]);
        assert_eq!(
            c,
            [(
                Change::Started,
                AlertKind::Disk,
                Severity::Warning,
                "/var/lib/docker".into()
            )]
        );
        let (m, c) = beat(&m, &f, &t, &[]);
        assert!(c.is_empty(), "not every beat: {c:?}");
        f.time = 200;
        f.disks = vec![disk("/var/lib/docker", 95, 5)];
        let (m, c) = beat(&m, &f, &t, &[]);
        assert_eq!(
            c,
            [(
                Change::Escalated,
                AlertKind::Disk,
                Severity::Critical,
                "/var/lib/docker".into()
            )]
        );
        assert_eq!(
            m.open.values().next().unwrap().since,
            100,
            "open since it started"
        );
        assert!(
            m.open
                .values()
                .next()
                .unwrap()
                .message
                .contains("95 % full")
        );
        f.disks = vec![disk("/var/lib/docker", 10, 90)];
        let (m, c) = beat(&m, &f, &t, &[]);
        assert_eq!(
            c,
            [(
                Change::Resolved,
                AlertKind::Disk,
                Severity::Critical,
                "/var/lib/docker".into()
            )]
        );
        assert!(m.open.is_empty());
        let (_, c) = beat(&m, &f, &t, &[]);
        assert!(c.is_empty());
    }

    #[test]
    fn thresholds_decide_so_a_new_revision_can_resolve() {
        let mut f = facts(100);
        f.disks = vec![disk("/", 30, 70)];
        let low = Thresholds {
            disk_warn_percent: 10,
            disk_alert_percent: 20,
            ..Thresholds::default()
        };
        let (m, c) = beat(&Memory::default(), &f, &low, &[]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].2, Severity::Critical);
        let (m, c) = beat(&m, &f, &Thresholds::default(), &[]);
        assert_eq!(c[0].0, Change::Resolved);
        assert!(m.open.is_empty());
    }

    #[test]
    fn reclaimable_over_the_threshold_is_a_warning() {
        let t = Thresholds {
            reclaimable_bytes: 1000,
            ..Thresholds::default()
        };
        let mut f = facts(1);
        f.reclaimable = Some(Reclaimable {
            images: 600,
            build_cache: 300,
            containers: 100,
        });
        let (m, c) = beat(&Memory::default(), &f, &t, &[]);
        assert!(c.is_empty(), "1000 is not more than 1000");
        f.reclaimable.as_mut().unwrap().containers = 101;
        let (_, c) = beat(&m, &f, &t, &[]);
        assert_eq!(
            c,
            [(
                Change::Started,
                AlertKind::Reclaimable,
                Severity::Warning,
                "host".into()
            )]
        );
    }

    #[test]
    fn crash_loops_count_restarts_within_the_window_and_heals() {
        let t = Thresholds {
            crash_restarts: 3,
            crash_window: Duration::from_secs(60),
            ..Thresholds::default()
        };
        let mut m = Memory::default();
        let mut f = facts(0);
        // Restarts: 10 at first sight (old history: not counted), then +2 per 10 s.
        for (time, count) in [(0, 10), (10, 12)] {
            f.time = time;
            f.containers = vec![container("a", "api", true, count)];
            let (next, c) = beat(&m, &f, &t, &[]);
            assert!(c.is_empty(), "{time}: {c:?}");
            m = next;
        }
        f.time = 20;
        f.containers = vec![container("a", "api", true, 14)];
        let (next, c) = beat(&m, &f, &t, &[]);
        assert_eq!(
            c,
            [(
                Change::Started,
                AlertKind::CrashLoop,
                Severity::Critical,
                "shop/api".into()
            )]
        );
        assert!(
            next.open["crash_loop:shop/api"]
                .message
                .contains("restarted 4 times within 1m")
        );
        m = next;
        // Quiet for a window: resolved.
        for time in [50, 80] {
            f.time = time;
            let (next, c) = beat(&m, &f, &t, &[]);
            m = next;
            if time < 80 {
                assert!(c.is_empty(), "{time}: {c:?}");
            } else {
                assert_eq!(c[0].0, Change::Resolved, "{time}");
            }
        }
        // The agent's heals count too.
        let heals = BTreeMap::from([("shop/api".to_string(), vec![75, 76, 77, 78])]);
        let (_, c) = evaluate(
            &m,
            &Inputs {
                facts: &f,
                thresholds: &t,
                heals: &heals,
                sightings: &[],
            },
        );
        assert_eq!(c[0].change, Change::Started);
        // A replaced container starts its count over.
        f.containers = vec![container("b", "api", true, 0)];
        let (m2, _) = beat(&m, &f, &t, &[]);
        assert!(!m2.restarts.contains_key("a"));
    }

    #[test]
    fn down_longer_than_the_threshold_and_one_off_jobs_are_not_down() {
        let t = Thresholds {
            down_after: Duration::from_secs(2),
            ..Thresholds::default()
        };
        let mut f = facts(1_001);
        f.containers = vec![container("a", "api", false, 0)];
        let (m, c) = beat(&Memory::default(), &f, &t, &[]);
        assert!(c.is_empty(), "down 1 s: {c:?}");
        f.time = 1_002;
        let (m, c) = beat(&m, &f, &t, &[]);
        assert_eq!(
            c,
            [(
                Change::Started,
                AlertKind::Down,
                Severity::Critical,
                "shop/api a".into()
            )]
        );
        assert!(
            m.open["down:shop/api a"].message.contains("exit code 137"),
            "{:?}",
            m.open
        );
        let mut job = container("j", "migrate", false, 0);
        job.exit_code = 0;
        job.restart_policy = "no".into();
        f.containers = vec![container("a", "api", true, 0), job];
        let (m, c) = beat(&m, &f, &t, &[]);
        assert_eq!(
            c,
            [(
                Change::Resolved,
                AlertKind::Down,
                Severity::Critical,
                "shop/api a".into()
            )]
        );
        assert!(m.open.is_empty());
    }

    #[test]
    fn a_secret_in_logs_is_open_while_its_container_exists() {
        let t = Thresholds::default();
        let mut f = facts(5);
        f.containers = vec![container("a", "api", true, 0)];
        let seen = [Sighting {
            container_id: "a".into(),
            stack: "shop".into(),
            service: "api".into(),
            variable: "DB_PASSWORD".into(),
            time: 3,
        }];
        let (m, c) = beat(&Memory::default(), &f, &t, &seen);
        assert_eq!(
            c,
            [(
                Change::Started,
                AlertKind::SecretInLogs,
                Severity::Critical,
                "shop/api a DB_PASSWORD".into()
            )]
        );
        assert!(
            m.open.values().next().unwrap().message.starts_with("the value of DB_PASSWORD appears in the logs of shop/api (shop-api-1) at 1970-01-01 00:00:03 UTC"),
            "{:?}",
            m.open
        );
        let (m, c) = beat(&m, &f, &t, &seen);
        assert!(c.is_empty());
        f.containers = vec![container("b", "api", true, 0)];
        let (m, c) = beat(&m, &f, &t, &seen);
        assert_eq!(c[0].0, Change::Resolved);
        assert!(m.open.is_empty());
    }

    #[test]
    fn a_restarted_agent_keeps_alerts_it_cannot_decide_yet() {
        let t = Thresholds {
            crash_restarts: 1,
            ..Thresholds::default()
        };
        let mut f = facts(10);
        f.containers = vec![container("a", "api", true, 0)];
        let seen = [Sighting {
            container_id: "a".into(),
            stack: "shop".into(),
            service: "api".into(),
            variable: "API_TOKEN".into(),
            time: 3,
        }];
        let (m, _) = beat(&Memory::default(), &f, &t, &seen);
        f.time = 20;
        f.containers[0].restart_count = 5;
        let (m, c) = beat(&m, &f, &t, &seen);
        assert_eq!(c.len(), 1, "the crash loop: {c:?}");
        assert_eq!(m.open.len(), 2);
        // The agent restarts: the open alerts come back from the file, without samples or sightings.
        let restarted: Memory = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        f.time = 30;
        let (m, c) = beat(&restarted, &f, &t, &[]);
        assert!(c.is_empty(), "nothing decided yet: {c:?}");
        assert_eq!(m.open.len(), 2);
        // Evidence again: no restart since, so the crash loop resolves; the logs stay.
        f.time = 40;
        let (m, c) = beat(&m, &f, &t, &[]);
        assert_eq!(
            c,
            [(
                Change::Resolved,
                AlertKind::CrashLoop,
                Severity::Critical,
                "shop/api".into()
            )]
        );
        assert_eq!(m.open.len(), 1);
        // The container is gone: so are its logs.
        f.containers.clear();
        let (m, c) = beat(&m, &f, &t, &[]);
        assert_eq!(c[0].1, AlertKind::SecretInLogs);
        assert!(m.open.is_empty());
    }

    #[test]
    fn memory_round_trips_without_samples() {
        let mut f = facts(1);
        f.disks = vec![disk("/", 99, 1)];
        f.containers = vec![container("a", "api", true, 0)];
        let (m, _) = beat(&Memory::default(), &f, &Thresholds::default(), &[]);
        let json = serde_json::to_string(&m).unwrap();
        let back: Memory = serde_json::from_str(&json).unwrap();
        assert_eq!(back.open, m.open);
        assert!(back.restarts.is_empty());
    }
}
