//! `/metrics`: the agent's Prometheus metrics, in the OpenMetrics text format
//! (prometheus-client). Serve [`Metrics::encode`] with [`CONTENT_TYPE`].
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `plimsoll_sync_total` | counter | `result`: succeeded, failed, rejected |
//! | `plimsoll_sync_duration_seconds` | histogram (10 ms .. 10 min) | |
//! | `plimsoll_drift_detected_total` | counter | `kind`: missing, stopped, changed, unhealthy |
//! | `plimsoll_self_heal_attempts_total` | counter | `result`: succeeded, failed |
//! | `plimsoll_self_heal_gave_up_services` | gauge | |
//! | `plimsoll_last_successful_sync_timestamp_seconds` | gauge | |
//! | `plimsoll_revision_info` | gauge, always 1 | `revision`: the current commit |
//! | `plimsoll_managed_services` | gauge | |
//! | `plimsoll_disk_use_ratio` | gauge (0..1) | `path`: the data root, a volume's file system |
//! | `plimsoll_reclaimable_bytes` | gauge | `kind`: images, build_cache, containers |
//! | `plimsoll_container_restarts` | gauge | `stack`, `service`, `container` |
//! | `plimsoll_open_alerts` | gauge | `kind`: disk, reclaimable, crash_loop, down, secret_in_logs |
//! | `plimsoll_secrets_in_logs_total` | counter | `stack`, `service` |
//! | `plimsoll_log_streams_dropped_total` | counter | |
//!
//! The known label values start at zero, so `rate()` and alerts work before
//! the first event.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Buckets of `plimsoll_sync_duration_seconds`: 10 ms to 10 minutes.
const DURATION_BUCKETS: [f64; 16] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

type Labels = [(&'static str, String); 1];
type Service = [(&'static str, String); 2];
type Container = [(&'static str, String); 3];

/// The agent's metrics. Cheap to update from any thread; share it in an `Arc`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    sync: Family<Labels, Counter>,
    sync_duration: Histogram,
    drift: Family<Labels, Counter>,
    heal: Family<Labels, Counter>,
    gave_up: Gauge,
    last_success: Gauge<f64, AtomicU64>,
    revision: Family<Labels, Gauge>,
    /// Serializes revision switches, so only one series is ever left.
    current_revision: Mutex<Option<String>>,
    managed: Gauge,
    disk: Family<Labels, Gauge<f64, AtomicU64>>,
    reclaimable: Family<Labels, Gauge>,
    restarts: Family<Container, Gauge>,
    open_alerts: Family<Labels, Gauge>,
    secrets_in_logs: Family<Service, Counter>,
    streams_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn label(name: &'static str, value: &str) -> Labels {
    [(name, value.to_string())]
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let sync = Family::<Labels, Counter>::default();
        let sync_duration = Histogram::new(DURATION_BUCKETS);
        let drift = Family::<Labels, Counter>::default();
        let heal = Family::<Labels, Counter>::default();
        let gave_up = Gauge::default();
        let last_success = Gauge::<f64, AtomicU64>::default();
        let revision = Family::<Labels, Gauge>::default();
        let managed = Gauge::default();
        registry.register(
            "plimsoll_sync",
            "Syncs of the desired state, by result (succeeded, failed, rejected by policy or parsing)",
            sync.clone(),
        );
        registry.register_with_unit(
            "plimsoll_sync_duration",
            "How long a sync took, from fetch to the end of apply",
            Unit::Seconds,
            sync_duration.clone(),
        );
        registry.register(
            "plimsoll_drift_detected",
            "Drift found on managed services, by kind (missing, stopped, changed, unhealthy)",
            drift.clone(),
        );
        registry.register(
            "plimsoll_self_heal_attempts",
            "Attempts to revert drift, by result",
            heal.clone(),
        );
        registry.register(
            "plimsoll_self_heal_gave_up_services",
            "Services whose self-heal stopped after too many failed attempts",
            gave_up.clone(),
        );
        registry.register_with_unit(
            "plimsoll_last_successful_sync_timestamp",
            "Unix time of the last successful sync",
            Unit::Seconds,
            last_success.clone(),
        );
        registry.register(
            "plimsoll_revision_info",
            "The revision of the desired state currently applied (value always 1)",
            revision.clone(),
        );
        registry.register(
            "plimsoll_managed_services",
            "Services this agent manages on this host",
            managed.clone(),
        );
        let disk = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        let reclaimable = Family::<Labels, Gauge>::default();
        let restarts = Family::<Container, Gauge>::default();
        let open_alerts = Family::<Labels, Gauge>::default();
        let secrets_in_logs = Family::<Service, Counter>::default();
        let streams_dropped = Counter::default();
        registry.register(
            "plimsoll_disk_use_ratio",
            "Used share of a file system the engine keeps data on (heartbeat), by path",
            disk.clone(),
        );
        registry.register_with_unit(
            "plimsoll_reclaimable",
            "Space docker system prune could free (heartbeat), by kind",
            Unit::Bytes,
            reclaimable.clone(),
        );
        registry.register(
            "plimsoll_container_restarts",
            "Restarts of a managed container by Docker's restart policy (heartbeat)",
            restarts.clone(),
        );
        registry.register(
            "plimsoll_open_alerts",
            "Heartbeat alerts open now, by kind",
            open_alerts.clone(),
        );
        registry.register(
            "plimsoll_secrets_in_logs",
            "Secret values found in the logs of a service's containers",
            secrets_in_logs.clone(),
        );
        registry.register(
            "plimsoll_log_streams_dropped",
            "Log streams dropped because the scanner could not keep up",
            streams_dropped.clone(),
        );
        for kind in [
            "disk",
            "reclaimable",
            "crash_loop",
            "down",
            "secret_in_logs",
        ] {
            open_alerts.get_or_create_owned(&label("kind", kind));
        }
        for result in ["succeeded", "failed", "rejected"] {
            sync.get_or_create_owned(&label("result", result));
        }
        for kind in ["missing", "stopped", "changed", "unhealthy"] {
            drift.get_or_create_owned(&label("kind", kind));
        }
        for result in ["succeeded", "failed"] {
            heal.get_or_create_owned(&label("result", result));
        }
        Metrics {
            registry,
            sync,
            sync_duration,
            drift,
            heal,
            gave_up,
            last_success,
            revision,
            current_revision: Mutex::new(None),
            managed,
            disk,
            reclaimable,
            restarts,
            open_alerts,
            secrets_in_logs,
            streams_dropped,
        }
    }

    /// A sync ended: `result` is "succeeded", "failed" or "rejected".
    pub fn sync_finished(&self, result: &str, seconds: f64) {
        self.sync.get_or_create(&label("result", result)).inc();
        if seconds.is_finite() && seconds >= 0.0 {
            self.sync_duration.observe(seconds);
        }
    }

    /// Drift of `kind`: "missing", "stopped", "changed" or "unhealthy".
    pub fn drift_detected(&self, kind: &str) {
        self.drift.get_or_create(&label("kind", kind)).inc();
    }

    /// A self-heal attempt ended: `result` is "succeeded" or "failed".
    pub fn heal_attempt(&self, result: &str) {
        self.heal.get_or_create(&label("result", result)).inc();
    }

    pub fn set_gave_up(&self, services: i64) {
        self.gave_up.set(services);
    }

    pub fn set_last_success(&self, unix_seconds: f64) {
        self.last_success.set(unix_seconds);
    }

    /// The revision now applied; the previous revision's series goes away.
    pub fn set_revision(&self, sha: &str) {
        let mut current = self
            .current_revision
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if current.as_deref() == Some(sha) {
            return;
        }
        self.revision.clear();
        self.revision.get_or_create(&label("revision", sha)).set(1);
        *current = Some(sha.to_string());
    }

    pub fn set_managed(&self, services: i64) {
        self.managed.set(services);
    }

    /// A heartbeat's facts and the alerts open after it.
    pub fn heartbeat<'a>(
        &self,
        facts: &crate::live::heartbeat::HostFacts,
        open: impl Iterator<Item = &'a super::heartbeat::alerts::Alert>,
    ) {
        self.disk.clear();
        for d in &facts.disks {
            self.disk
                .get_or_create(&label("path", &d.path))
                .set(d.use_ratio());
        }
        if let Some(r) = &facts.reclaimable {
            for (kind, bytes) in [
                ("images", r.images),
                ("build_cache", r.build_cache),
                ("containers", r.containers),
            ] {
                self.reclaimable
                    .get_or_create(&label("kind", kind))
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
        }
        self.restarts.clear();
        for c in &facts.containers {
            self.restarts
                .get_or_create(&[
                    ("stack", c.stack.clone()),
                    ("service", c.service.clone()),
                    ("container", c.name.clone()),
                ])
                .set(i64::try_from(c.restart_count).unwrap_or(i64::MAX));
        }
        let mut counts = std::collections::BTreeMap::new();
        for a in open {
            *counts.entry(a.kind.as_str()).or_insert(0i64) += 1;
        }
        for kind in super::heartbeat::alerts::AlertKind::ALL {
            self.open_alerts
                .get_or_create(&label("kind", kind.as_str()))
                .set(counts.get(kind.as_str()).copied().unwrap_or(0));
        }
    }

    /// A secret value was found in the logs of `stack`/`service`.
    pub fn secret_in_logs(&self, stack: &str, service: &str) {
        self.secrets_in_logs
            .get_or_create(&[
                ("stack", stack.to_string()),
                ("service", service.to_string()),
            ])
            .inc();
    }

    /// A log stream was dropped: the scanner could not keep up.
    pub fn log_stream_dropped(&self) {
        self.streams_dropped.inc();
    }

    /// The metrics in the OpenMetrics text format, ending with `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn encodes_every_metric() {
        assert_send_sync::<Metrics>();
        let m = Metrics::new();
        m.sync_finished("succeeded", 1.5);
        m.sync_finished("failed", 0.02);
        m.drift_detected("stopped");
        m.heal_attempt("failed");
        m.set_gave_up(2);
        m.set_last_success(1_700_000_000.5);
        m.set_managed(7);
        m.set_revision("4f1c0ac9e2b7d8f0a1b2c3d4e5f60718293a4b5c");
        let out = m.encode();
        for (name, kind) in [
            ("plimsoll_sync", "counter"),
            ("plimsoll_sync_duration_seconds", "histogram"),
            ("plimsoll_drift_detected", "counter"),
            ("plimsoll_self_heal_attempts", "counter"),
            ("plimsoll_self_heal_gave_up_services", "gauge"),
            ("plimsoll_last_successful_sync_timestamp_seconds", "gauge"),
            ("plimsoll_revision_info", "gauge"),
            ("plimsoll_managed_services", "gauge"),
        ] {
            assert!(
                out.contains(&format!("\n# HELP {name} "))
                    || out.starts_with(&format!("# HELP {name} ")),
                "{name}:\n{out}"
            );
            assert!(
                out.contains(&format!("# TYPE {name} {kind}\n")),
                "{name}:\n{out}"
            );
        }
        for line in [
            "plimsoll_sync_total{result=\"succeeded\"} 1\n",
            "plimsoll_sync_total{result=\"failed\"} 1\n",
            "plimsoll_sync_total{result=\"rejected\"} 0\n",
            "plimsoll_sync_duration_seconds_count 2\n",
            "plimsoll_sync_duration_seconds_bucket{le=\"0.025\"} 1\n",
            "plimsoll_sync_duration_seconds_bucket{le=\"600.0\"} 2\n",
            "plimsoll_drift_detected_total{kind=\"stopped\"} 1\n",
            "plimsoll_drift_detected_total{kind=\"missing\"} 0\n",
            "plimsoll_self_heal_attempts_total{result=\"failed\"} 1\n",
            "plimsoll_self_heal_gave_up_services 2\n",
            "plimsoll_last_successful_sync_timestamp_seconds 1700000000.5\n",
            "plimsoll_managed_services 7\n",
            "plimsoll_revision_info{revision=\"4f1c0ac9e2b7d8f0a1b2c3d4e5f60718293a4b5c\"} 1\n",
        ] {
            assert!(out.contains(line), "{line}in:\n{out}");
        }
        assert!(out.ends_with("# EOF\n"), "{out}");
    }

    #[test]
    fn revision_switch_leaves_one_series() {
        let m = Metrics::new();
        m.set_revision("a".repeat(40).as_str());
        m.set_revision("b".repeat(40).as_str());
        m.set_revision("b".repeat(40).as_str());
        let out = m.encode();
        let series: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("plimsoll_revision_info{"))
            .collect();
        assert_eq!(
            series,
            [format!(
                "plimsoll_revision_info{{revision=\"{}\"}} 1",
                "b".repeat(40)
            )]
        );
    }
}
