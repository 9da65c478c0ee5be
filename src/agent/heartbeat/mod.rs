//! The host heartbeat: every `alerts.interval` (default 1m), and at once on
//! `POST /heartbeat` (with the sync token) or when the log scanner finds a
//! secret, the agent reads facts from the engine ([`crate::live::heartbeat`]),
//! decides which alerts are open ([`alerts::evaluate`], pure), notifies
//! each alert once when it starts (or changes severity) and once when it
//! resolves, and publishes the facts and open alerts in `/status` (masked)
//! and `/metrics`. The open alerts are kept in `<state>/heartbeat.json`, so
//! a restarted agent does not notify them again.
//!
//! The log scanner ([`logscan`]) follows the logs of the managed running
//! containers the last beat saw (streams start and stop with them).

pub mod alerts;
pub mod logscan;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::Shared;
use super::heal::{self, HealBook};
use super::healer::{Applied, Healer};
use super::notify::{Notification, Notifier};
use crate::live::Engine;
use crate::live::heartbeat::HostFacts;
use crate::spec::config::{NotificationEvent, Thresholds};
use crate::state::StateDir;
use alerts::{Alert, Change, Inputs, Memory, Transition};

/// The state file of the open alerts.
pub const FILE: &str = "heartbeat.json";
/// The wait before the first beat once a revision is applied, and between
/// looks while none is.
const NOT_YET: Duration = Duration::from_secs(1);

/// `heartbeat` in `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct HeartbeatStatus {
    /// When the last beat read the host.
    pub time: String,
    /// Beats since the agent started.
    pub beats: u64,
    pub facts: HostFacts,
    pub open: Vec<Alert>,
    pub logs: logscan::ScanStatus,
    /// Why the last beat could not read the engine, if it could not.
    pub error: Option<String>,
}

/// What the beats share.
pub struct Heartbeat {
    pub engine: Engine,
    pub state: StateDir,
    pub shared: Arc<Shared>,
    pub notifier: Notifier,
    pub healer: Healer,
    pub scanner: logscan::Scanner,
}

/// Beats until `shutdown`. `wake` asks for a beat now.
pub async fn run(
    hb: Heartbeat,
    wake: Arc<tokio::sync::Notify>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut memory = Memory {
        open: hb
            .state
            .read_json::<Memory>(FILE)
            .map(|m| m.open)
            .unwrap_or_else(|e| {
                tracing::warn!(
                    "the heartbeat's open alerts cannot be read ({e}); starting with none"
                );
                BTreeMap::new()
            }),
        ..Memory::default()
    };
    loop {
        let applied = hb.healer.applied();
        let wait = match &applied {
            Some(a) => {
                hb.beat(&mut memory, a).await;
                Thresholds::from_config(&a.target.desired.config).interval
            }
            None => NOT_YET,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            hb.scanner.stop_all();
            return;
        }
    }
}

impl Heartbeat {
    /// One beat against the revision `applied`.
    async fn beat(&self, memory: &mut Memory, applied: &Applied) {
        let desired = &applied.target.desired;
        let thresholds = Thresholds::from_config(&desired.config);
        let stacks: BTreeSet<String> = desired.stacks.iter().map(|s| s.name.clone()).collect();
        let facts = match self.engine.heartbeat(&stacks).await {
            Ok(f) => f,
            Err(e) => {
                let message = desired.masker.mask(&e.to_string()).into_owned();
                tracing::warn!("heartbeat: {message}");
                self.publish(applied, memory, None, Some(message));
                return;
            }
        };
        if thresholds.log_secrets {
            self.scanner.follow(&facts.containers, applied);
        } else {
            self.scanner.stop_all();
        }
        let book: HealBook = self.state.read_json(heal::FILE).unwrap_or_default();
        let heals: BTreeMap<String, Vec<i64>> = book
            .services
            .iter()
            .map(|(k, s)| (k.clone(), s.recent.iter().copied().collect()))
            .collect();
        let sightings = self.scanner.sightings();
        let (next, changes) = alerts::evaluate(
            memory,
            &Inputs {
                facts: &facts,
                thresholds: &thresholds,
                heals: &heals,
                sightings: &sightings,
            },
        );
        self.scanner.forget_gone(&facts.containers);
        for t in &changes {
            self.notify(applied, t);
        }
        if next.open != memory.open
            && let Err(e) = self.state.write_json(
                FILE,
                &Memory {
                    open: next.open.clone(),
                    ..Memory::default()
                },
            )
        {
            tracing::warn!("heartbeat: cannot keep the open alerts: {e}");
        }
        *memory = next;
        self.shared.metrics.heartbeat(&facts, memory.open.values());
        self.publish(applied, memory, Some(facts), None);
    }

    fn notify(&self, applied: &Applied, t: &Transition) {
        let a = &t.alert;
        let severity = a.severity.as_str();
        let (event, state) = match t.change {
            Change::Started => (NotificationEvent::AlertStarted, format!("({severity})")),
            Change::Escalated | Change::Deescalated => {
                (NotificationEvent::AlertStarted, format!("(now {severity})"))
            }
            Change::Resolved => (
                NotificationEvent::AlertResolved,
                format!("resolved (was {severity})"),
            ),
        };
        let message = format!("{} {state}: {}", a.kind.as_str(), a.message);
        let masker = &applied.target.desired.masker;
        tracing::warn!(
            kind = a.kind.as_str(),
            severity = a.severity.as_str(),
            "heartbeat: {}",
            masker.mask(&message)
        );
        self.notifier.send(
            Notification {
                event,
                host: applied.host.clone(),
                revision: Some(applied.target.revision.clone()),
                stack: a.stack.clone(),
                service: a.service.clone(),
                message,
            },
            masker,
        );
    }

    /// The beat in `/status`, every string masked.
    fn publish(
        &self,
        applied: &Applied,
        memory: &Memory,
        facts: Option<HostFacts>,
        error: Option<String>,
    ) {
        let mut status = self.shared.status.lock().unwrap_or_else(|e| e.into_inner());
        let Some(facts) = facts else {
            // The engine did not answer: the last facts stay, with why.
            let error = serde_json::Value::from(error);
            match status.heartbeat.as_mut().and_then(|h| h.as_object_mut()) {
                Some(h) => {
                    h.insert("error".into(), error);
                }
                None => status.heartbeat = Some(serde_json::json!({ "error": error })),
            }
            return;
        };
        let beat = HeartbeatStatus {
            time: crate::state::now(),
            beats: memory.beats,
            facts,
            open: memory.open.values().cloned().collect(),
            logs: self.scanner.status(),
            error,
        };
        let mut value = serde_json::to_value(&beat).expect("the heartbeat serializes");
        applied.target.desired.masker.mask_json(&mut value);
        status.heartbeat = Some(value);
    }
}
