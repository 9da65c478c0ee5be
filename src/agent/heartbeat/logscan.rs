//! Secret values in container logs: the agent follows the logs (stdout and
//! stderr, from now on) of the managed running containers and looks for
//! every secret value the applied revision knows ([`Masker::values`]) with
//! one Aho-Corasick automaton. A value is never printed: a sighting names
//! the variable, the service and the time.
//!
//! Cheap by construction: per container one task reads the engine's stream
//! into a bounded queue (`try_send`) and one scans it, carrying only the
//! last (longest value − 1) bytes from one chunk to the next. When the
//! scanner falls behind, the reader drops the stream with a warning instead
//! of slowing the agent (or the engine); the next heartbeat follows the
//! container again.
//!
//! [`Masker::values`]: crate::spec::secrets::Masker::values

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aho_corasick::AhoCorasick;
use futures_util::StreamExt as _;
use serde::Serialize;
use tokio::sync::mpsc;

use super::super::Shared;
use super::super::healer::Applied;
use super::alerts::Sighting;
use crate::live::Engine;
use crate::live::heartbeat::ContainerFacts;
use crate::spec::Desired;

/// Chunks waiting for the scanner per container before the stream is dropped.
const QUEUE: usize = 64;

/// The secret values of one revision, compiled.
pub struct Patterns {
    revision: String,
    matcher: AhoCorasick,
    /// The variable each pattern is the value of (`DB_PASSWORD`), by pattern id.
    names: Vec<String>,
    longest: usize,
}

impl Patterns {
    /// The secret values of `desired`, each named by the variable that
    /// holds it (the first found), else "a secret file". `None` without any.
    pub fn of(revision: &str, desired: &Desired) -> Option<Patterns> {
        let values = desired.masker.values();
        if values.is_empty() {
            return None;
        }
        let mut holder: BTreeMap<&str, &str> = BTreeMap::new();
        for stack in &desired.stacks {
            for service in stack.services.values() {
                for (name, value) in &service.environment {
                    if let Some(v) = value {
                        holder.entry(v.as_str()).or_insert(name.as_str());
                    }
                }
            }
        }
        let names = values
            .iter()
            .map(|v| {
                holder
                    .get(v.as_str())
                    .or_else(|| holder.get(v.trim_end_matches(['\n', '\r'])))
                    .map_or_else(|| "a secret file".to_string(), |n| n.to_string())
            })
            .collect();
        let matcher = AhoCorasick::new(values).ok()?;
        Some(Patterns {
            revision: revision.to_string(),
            matcher,
            names,
            longest: values.iter().map(String::len).max().unwrap_or(0),
        })
    }

    /// How many values are looked for.
    pub fn count(&self) -> usize {
        self.names.len()
    }
}

/// Scans `chunk`, the continuation of a stream whose last bytes are
/// `carry`: the ids of the patterns whose matches end in `chunk` (a match
/// split between two chunks is found once). `carry` is left holding the
/// last (longest − 1) bytes.
pub fn scan(p: &Patterns, carry: &mut Vec<u8>, chunk: &[u8]) -> Vec<usize> {
    let old = carry.len();
    carry.extend_from_slice(chunk);
    let found = p
        .matcher
        .find_overlapping_iter(&carry[..])
        .filter(|m| m.end() > old)
        .map(|m| m.pattern().as_usize())
        .collect();
    let keep = p.longest.saturating_sub(1);
    if carry.len() > keep {
        carry.drain(..carry.len() - keep);
    }
    found
}

/// `logs` in the heartbeat of `/status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScanStatus {
    /// Containers whose logs are followed now.
    pub streams: usize,
    /// Secret values looked for.
    pub values: usize,
    /// Streams dropped because the scanner could not keep up.
    pub dropped: u64,
    /// Log bytes scanned since the agent started.
    pub bytes: u64,
}

/// The streams; cheap to clone.
#[derive(Clone)]
pub struct Scanner(Arc<Inner>);

struct Inner {
    engine: Engine,
    shared: Arc<Shared>,
    /// Asks the heartbeat for a beat (a new sighting).
    wake: Arc<tokio::sync::Notify>,
    patterns: Mutex<Option<Arc<Patterns>>>,
    streams: Mutex<BTreeMap<String, Follow>>,
    sightings: Mutex<Vec<Sighting>>,
    dropped: AtomicU64,
    bytes: AtomicU64,
}

/// One container's stream: its reader and scanner tasks, aborted on drop.
struct Follow {
    revision: String,
    reader: tokio::task::JoinHandle<()>,
    scanner: tokio::task::JoinHandle<()>,
}

impl Drop for Follow {
    fn drop(&mut self) {
        self.reader.abort();
        self.scanner.abort();
    }
}

/// Who a stream belongs to.
#[derive(Clone)]
struct Owner {
    id: String,
    name: String,
    stack: String,
    service: String,
}

impl Scanner {
    pub fn new(engine: Engine, shared: Arc<Shared>, wake: Arc<tokio::sync::Notify>) -> Scanner {
        Scanner(Arc::new(Inner {
            engine,
            shared,
            wake,
            patterns: Mutex::new(None),
            streams: Mutex::new(BTreeMap::new()),
            sightings: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }))
    }

    fn patterns(&self, applied: &Applied) -> Option<Arc<Patterns>> {
        let mut p = self.0.patterns.lock().unwrap_or_else(|e| e.into_inner());
        let revision = &applied.target.revision;
        if p.as_ref().is_none_or(|p| &p.revision != revision) {
            *p = Patterns::of(revision, &applied.target.desired).map(Arc::new);
        }
        p.clone()
    }

    /// Follows the running ones of `containers` (those not followed yet,
    /// or followed for an older revision, or whose stream ended), and stops
    /// following the others.
    pub fn follow(&self, containers: &[ContainerFacts], applied: &Applied) {
        let Some(patterns) = self.patterns(applied) else {
            self.stop_all();
            return;
        };
        let running: BTreeMap<&str, &ContainerFacts> = containers
            .iter()
            .filter(|c| c.running)
            .map(|c| (c.id.as_str(), c))
            .collect();
        let mut streams = self.0.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.retain(|id, f| {
            running.contains_key(id.as_str())
                && f.revision == patterns.revision
                && !f.reader.is_finished()
        });
        for (id, c) in running {
            if streams.contains_key(id) {
                continue;
            }
            let owner = Owner {
                id: id.to_string(),
                name: c.name.clone(),
                stack: c.stack.clone(),
                service: c.service.clone(),
            };
            streams.insert(id.to_string(), self.spawn(owner, patterns.clone()));
        }
    }

    pub fn stop_all(&self) {
        self.0
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// What was seen, for the containers that still exist.
    pub fn sightings(&self) -> Vec<Sighting> {
        self.0
            .sightings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forgets sightings of containers that are gone (their alerts resolved).
    pub fn forget_gone(&self, containers: &[ContainerFacts]) {
        let ids: BTreeSet<&str> = containers.iter().map(|c| c.id.as_str()).collect();
        self.0
            .sightings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| ids.contains(s.container_id.as_str()));
    }

    pub fn status(&self) -> ScanStatus {
        ScanStatus {
            streams: self
                .0
                .streams
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .len(),
            values: self
                .0
                .patterns
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map_or(0, |p| p.count()),
            dropped: self.0.dropped.load(Ordering::Relaxed),
            bytes: self.0.bytes.load(Ordering::Relaxed),
        }
    }

    fn spawn(&self, owner: Owner, patterns: Arc<Patterns>) -> Follow {
        let (tx, rx) = mpsc::channel::<Vec<u8>>(QUEUE);
        let logs = self.0.engine.follow_logs(&owner.id);
        let inner = self.0.clone();
        let name = owner.name.clone();
        let reader = tokio::spawn(async move {
            let mut logs = std::pin::pin!(logs);
            while let Some(chunk) = logs.next().await {
                match chunk {
                    Ok(bytes) => match tx.try_send(bytes) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            inner.dropped.fetch_add(1, Ordering::Relaxed);
                            inner.shared.metrics.log_stream_dropped();
                            tracing::warn!(
                                container = name,
                                "the log scanner cannot keep up with the logs of {name}: its stream is dropped (followed again at the next heartbeat)"
                            );
                            return;
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    },
                    Err(e) => {
                        tracing::debug!(container = name, "the log stream ended: {e}");
                        return;
                    }
                }
            }
        });
        let revision = patterns.revision.clone();
        let scanner = tokio::spawn(scan_stream(self.0.clone(), owner, patterns, rx));
        Follow {
            revision,
            reader,
            scanner,
        }
    }
}

async fn scan_stream(
    inner: Arc<Inner>,
    owner: Owner,
    patterns: Arc<Patterns>,
    mut rx: mpsc::Receiver<Vec<u8>>,
) {
    let mut carry = Vec::with_capacity(patterns.longest);
    let mut seen: BTreeSet<usize> = BTreeSet::new();
    while let Some(chunk) = rx.recv().await {
        inner.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        for id in scan(&patterns, &mut carry, &chunk) {
            inner
                .shared
                .metrics
                .secret_in_logs(&owner.stack, &owner.service);
            if seen.insert(id) {
                inner.report(&owner, &patterns.names[id]);
            }
        }
    }
}

impl Inner {
    fn report(&self, owner: &Owner, variable: &str) {
        let mut sightings = self.sightings.lock().unwrap_or_else(|e| e.into_inner());
        if sightings
            .iter()
            .any(|s| s.container_id == owner.id && s.variable == variable)
        {
            return;
        }
        tracing::warn!(
            stack = owner.stack,
            service = owner.service,
            container = owner.name,
            "the value of {variable} appears in the logs of {}/{}",
            owner.stack,
            owner.service
        );
        sightings.push(Sighting {
            container_id: owner.id.clone(),
            stack: owner.stack.clone(),
            service: owner.service.clone(),
            variable: variable.to_string(),
            time: jiff::Timestamp::now().as_second(),
        });
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(values: &[&str]) -> Patterns {
        Patterns {
            revision: "r".into(),
            matcher: AhoCorasick::new(values).unwrap(),
            names: values.iter().map(|v| format!("VAR_{v}")).collect(),
            longest: values.iter().map(|v| v.len()).max().unwrap(),
        }
    }

    #[test]
    fn finds_values_split_between_chunks_once() {
        let p = patterns(&["s3cr3t-value", "tok3n!"]);
        let mut carry = Vec::new();
        assert_eq!(scan(&p, &mut carry, b"hello s3cr3t-"), Vec::<usize>::new());
        assert!(carry.len() < p.longest, "bounded carry: {}", carry.len());
        assert_eq!(scan(&p, &mut carry, b"value and tok"), [0]);
        assert_eq!(scan(&p, &mut carry, b"3n! again"), [1]);
        // Nothing found twice from the carried bytes.
        assert_eq!(scan(&p, &mut carry, b" quiet line\n"), Vec::<usize>::new());
        assert_eq!(scan(&p, &mut carry, b"tok3n!tok3n!"), [1, 1]);
    }

    #[test]
    fn carry_stays_bounded_on_big_chunks() {
        let p = patterns(&["abcdefgh"]);
        let mut carry = Vec::new();
        let big = vec![b'x'; 1 << 16];
        assert!(scan(&p, &mut carry, &big).is_empty());
        assert_eq!(carry.len(), 7);
    }
}
