//! `plimsoll agent`: follows a git repository (or a local directory) and keeps
//! this host converged: polls, webhooks, Docker events, bounded self-heal,
//! an HTTP endpoint for health, metrics and status, and notifications.
//!
//! One loop owns every decision about revisions. Timers, the HTTP endpoint,
//! the engine's event stream and the directory watcher only send
//! [`Trigger`]s; the loop coalesces what arrived and runs one cycle: fetch
//! (when asked) → load → observe → plan → apply (deploy) or hand drift to the
//! heals → record → report. Drift of a service an engine event names goes
//! straight to that service's heal ([`healer`]): services heal independently,
//! each observing only itself, sharing the host's lock among themselves while
//! a revision's apply takes it alone.
//! Invariants: a revision that does not load, or whose apply fails, is
//! rejected, recorded and not retried until a new commit arrives; the last
//! good revision stays the target; nothing is pruned on a failed load; every
//! change goes through the same plan/apply path and the state-directory lock
//! as `plimsoll reconcile`. A revision whose loading killed the process (out
//! of memory, a stack overflow, a panic) is rejected after the restart: the
//! agent writes (and fsyncs) "loading X" to `agent.json` before it checks X
//! out and loads it, and clears it after; a restart that finds the mark
//! rejects X without loading it again instead of crash-looping on it.

mod accept;
mod choose;
mod controller;
mod converge;
pub mod dashboard;
pub mod delivery;
pub mod git;
pub mod heal;
mod healer;
mod heartbeat;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod notify;
mod revision;
mod settle;
pub mod signing;
pub mod watch;
pub mod webhook;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use crate::apply::Cancel;
use crate::events::LogProgress;
use crate::health::Health;
use crate::live::{Engine, EngineError};
use crate::reconcile::{self, Observed};
use crate::source;
use crate::spec::config::NotificationEvent;
use crate::spec::{self, Desired};
use crate::state::{StateDir, StateError};
use heal::HealBook;
use healer::{Applied, Healer, Held};
use notify::{Notification, Notifier};

/// Something that asks the loop to do work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Look for a new revision (poll, webhook, `POST /sync`, files changed).
    Fetch(&'static str),
    /// A managed container of `stack` (of `service`, by its label) changed:
    /// heal that service (or check everything, without a service).
    Event {
        stack: String,
        service: Option<String>,
        kind: &'static str,
    },
    /// Check everything (periodic, or events may have been missed).
    Resync,
    /// An operator asked (on the dashboard) to put `stack/service` back to
    /// the applied revision now.
    Revert { stack: String, service: String },
    /// The status is stale (a heal ended or found drift, a container turned
    /// healthy): publish it again; the reason, in words.
    Publish(String),
    /// The silences of these services (`stack/service`) expired: their
    /// drift is reported and healed again as any (a check of the host).
    SilenceEnded(Vec<String>),
}

/// Where the desired state comes from.
#[derive(Debug, Clone)]
pub enum Source {
    Git {
        url: String,
        reference: git::GitRef,
        auth: git::GitAuth,
    },
    /// A local directory that is not a git repository, watched for changes.
    Directory(PathBuf),
}

/// The agent's settings, resolved from flags, environment and defaults.
#[derive(Debug, Clone)]
pub struct Options {
    pub source: Source,
    /// The config repository's root inside the source (`--path`).
    pub path: Option<PathBuf>,
    pub interval: Option<Duration>,
    pub resync: Option<Duration>,
    pub listen: Option<String>,
    /// A second address serving `/status` and `/metrics` (then not on `listen`).
    pub metrics_listen: Option<String>,
    /// Bearer token `/status` and `/metrics` want (`--status-token-file`).
    pub status_token: Option<String>,
    /// Timeouts and the connection cap of each listener.
    pub http: listener::Limits,
    pub webhook_secret: Option<Vec<u8>>,
    pub sync_token: Option<String>,
    pub stacks: Vec<String>,
    pub host: Option<String>,
    pub prune: Option<bool>,
    pub state_dir: PathBuf,
    pub lock_timeout: Duration,
    /// How many services of a wave an apply changes at once (`--parallel`).
    pub parallel: crate::apply::Parallel,
    /// The variables of the process environment the host passes to Compose
    /// files (`--pass-env`, `--pass-secret-env`); also the only ones a
    /// notification's `url_env` may name.
    pub compose_env: BTreeMap<String, String>,
    /// Passed variables the host marks secret (`--pass-secret-env`).
    pub secret_env: std::collections::BTreeSet<String>,
    /// Host directories the desired state may read besides the clone (`--allow-read`).
    pub allow_read: Vec<PathBuf>,
    /// The Compose profiles of `--profile` / `PLIMSOLL_PROFILES` (`None`: plimsoll.yaml, `COMPOSE_PROFILES`).
    pub profiles: Option<Vec<String>>,
    /// The host's age identities (`--age-identity`, `<state>/age.key`), to decrypt `*.age` files.
    pub age: Option<std::sync::Arc<crate::spec::age::Identities>>,
    /// The host's policy (`--policy`), checked on every revision besides the repository's.
    pub host_policy: Option<std::sync::Arc<crate::spec::policy::HostPolicy>>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9300";
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_RESYNC: Duration = Duration::from_secs(300);
const AGENT_FILE: &str = "agent.json";

#[derive(Debug, Error)]
pub enum AgentError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Git(#[from] git::GitError),
    #[error("cannot listen on {addr}: {source}; pick another address with {flag}")]
    Listen {
        addr: String,
        flag: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot watch {dir}: {source}")]
    Watch {
        dir: PathBuf,
        #[source]
        source: ::notify::Error,
    },
}

/// What the agent remembers about revisions across restarts (`agent.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revisions {
    /// The last revision applied completely.
    pub last_good: Option<String>,
    /// The newest revision that was rejected, and why.
    pub rejected: Option<Rejected>,
    /// The revision being checked out and loaded: set (and fsynced) before,
    /// cleared after. Found set at start, the agent died loading it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loading: Option<String>,
}

/// Why a revision found in [`Revisions::loading`] at start is rejected.
pub const DIED_LOADING: &str = "the agent died while loading this revision (out of memory, a stack overflow or a crash); it is not loaded again: push a fixed commit";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub revision: String,
    pub reason: String,
    pub time: String,
}

/// `GET /status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AgentStatus {
    pub source: String,
    pub host: String,
    /// The revision this host runs (the last good one): a full commit SHA, or `local:<hash>`.
    pub revision: Option<String>,
    /// The newest revision seen at the source.
    pub fetched: Option<String>,
    pub last_sync: Option<SyncRecord>,
    pub last_success: Option<String>,
    pub rejected: Option<Rejected>,
    /// The source could not be reached (the agent keeps running the last good revision).
    pub source_error: Option<String>,
    /// The whole host is frozen (`plimsoll pause` or `hosts.<name>.paused`).
    pub paused: bool,
    pub stacks: Vec<StackStatus>,
    /// Containers without plimsoll's labels.
    pub unknown: Vec<String>,
    /// Services the agent stopped healing (`stack/service`).
    pub gave_up: Vec<String>,
    /// The last heartbeat: facts (disk, reclaimable space, containers) and
    /// the open alerts, masked; `null` until the first beat.
    pub heartbeat: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncRecord {
    pub time: String,
    /// `succeeded`, `failed` or `rejected`.
    pub result: String,
    pub trigger: String,
    pub seconds: f64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StackStatus {
    pub name: String,
    pub paused: bool,
    pub self_heal: bool,
    pub services: Vec<ServiceStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub service: String,
    /// `in sync`, `drifted`, `missing`, `stopped`, `unhealthy`, `conflict`,
    /// `silenced` (and `(paused)`).
    pub state: crate::reconcile::ServiceState,
    pub drift: Vec<String>,
    pub health: Option<Health>,
    pub running: bool,
    pub container: String,
    /// The image its container runs.
    pub image: Option<String>,
    pub self_heal: bool,
    pub heal: Option<heal::ServiceHeal>,
    /// The silence in force over its drift (`plimsoll drift --silence`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silenced: Option<crate::drift::Silence>,
}

/// What the HTTP endpoint shares with the loop.
pub struct Shared {
    pub metrics: metrics::Metrics,
    pub status: Mutex<AgentStatus>,
    /// False once the loop has ended (or panicked): `/healthz` turns 503.
    pub alive: std::sync::atomic::AtomicBool,
    pub webhook_secret: Option<Vec<u8>>,
    pub sync_token: Option<String>,
    pub status_token: Option<String>,
    /// Webhook deliveries already received (their ids), to answer replays.
    pub deliveries: Mutex<delivery::Recent>,
    /// The ref a push must name to matter (`refs/heads/main`); `None` = any.
    pub followed_ref: Option<String>,
    pub triggers: UnboundedSender<Trigger>,
    /// Bumped whenever `status` changes (the dashboard's live updates).
    pub changes: tokio::sync::watch::Sender<u64>,
    /// The dashboard's logins.
    pub sessions: dashboard::Sessions,
    /// The state directory: the audit log the dashboard's history shows,
    /// the silences it adds.
    pub state: StateDir,
    history: Mutex<HistoryCache>,
    /// Asks the heartbeat for a beat now (`POST /heartbeat`, a container started).
    pub heartbeat: Arc<tokio::sync::Notify>,
    /// The heals, which observe services for the dashboard's patch too
    /// (weak: the healer holds this).
    healer: std::sync::OnceLock<healer::WeakHealer>,
}

/// The audit log as last read, and the size and time of the file then.
#[derive(Default)]
struct HistoryCache {
    read_at: Option<(u64, std::time::SystemTime)>,
    records: Arc<Vec<serde_json::Value>>,
}

impl Shared {
    /// What the agent shares before it knows anything: no status, no
    /// tokens, no sessions.
    pub fn new(triggers: UnboundedSender<Trigger>, state: StateDir) -> Shared {
        Shared {
            metrics: metrics::Metrics::new(),
            status: Mutex::new(AgentStatus::default()),
            alive: std::sync::atomic::AtomicBool::new(true),
            webhook_secret: None,
            sync_token: None,
            status_token: None,
            deliveries: Mutex::new(delivery::Recent::default()),
            followed_ref: None,
            triggers,
            changes: tokio::sync::watch::Sender::new(0),
            sessions: dashboard::Sessions::default(),
            state,
            history: Mutex::new(HistoryCache::default()),
            heartbeat: Arc::new(tokio::sync::Notify::new()),
            healer: std::sync::OnceLock::new(),
        }
    }

    /// The heals, once the agent runs them.
    fn healer(&self) -> Option<Healer> {
        self.healer.get().and_then(healer::WeakHealer::upgrade)
    }

    /// Changes the status and tells the dashboard's streams.
    pub fn set_status(&self, f: impl FnOnce(&mut AgentStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The last [`dashboard::HISTORY`] audit records, oldest first;
    /// read again only when the audit log changed.
    pub fn history(&self) -> Arc<Vec<serde_json::Value>> {
        let state = &self.state;
        let stamp = std::fs::metadata(state.path().join(crate::state::AUDIT_FILE))
            .ok()
            .and_then(|m| Some((m.len(), m.modified().ok()?)));
        let mut cache = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if cache.read_at.is_none() || cache.read_at != stamp {
            match state.recent_audit_records(dashboard::HISTORY) {
                Ok(records) => {
                    cache.records = Arc::new(records);
                    cache.read_at = stamp;
                }
                Err(e) => tracing::warn!("the dashboard cannot read the audit log: {e}"),
            }
        }
        cache.records.clone()
    }
}

/// Marks the loop dead when it ends, however it ends.
struct AliveGuard(Arc<Shared>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0
            .alive
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The desired state of one revision.
struct Target {
    revision: String,
    desired: Desired,
    /// Where it was read from, to read it again.
    checkout: revision::Checkout,
}

/// Which stacks self-heal: service `x-plimsoll.self_heal`, else the stack's
/// `self_heal:` in plimsoll.yaml, else `agent.self_heal`, else on.
fn self_heal(desired: &Desired, stack: &str, service: Option<&str>) -> bool {
    let config = &desired.config;
    let stack_level = config
        .stacks
        .get(stack)
        .and_then(|s| s.self_heal)
        .or(config.agent.self_heal)
        .unwrap_or(true);
    service
        .and_then(|svc| {
            desired
                .stacks
                .iter()
                .find(|s| s.name == stack)?
                .services
                .get(svc)?
                .plimsoll
                .self_heal
        })
        .unwrap_or(stack_level)
}

/// A random number (std's per-process random hash keys; not for secrets).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

fn unix_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Runs the agent until `shutdown` says stop; then the current apply finishes
/// or rolls back and this returns.
pub async fn run(
    opts: Options,
    shutdown: tokio::sync::watch::Receiver<bool>,
    cancel: Cancel,
) -> Result<(), AgentError> {
    let state = StateDir::open(&opts.state_dir)?;
    let engine = Engine::connect().await?;
    log_host_paths(&engine, state.path()).await;
    let (tx, rx) = unbounded_channel();
    let followed_ref = match &opts.source {
        Source::Git {
            reference: git::GitRef::Branch(b),
            ..
        } => Some(format!("refs/heads/{b}")),
        Source::Git {
            reference: git::GitRef::Tag(t),
            ..
        } => Some(format!("refs/tags/{t}")),
        _ => None,
    };
    let shared = Arc::new(Shared {
        webhook_secret: opts.webhook_secret.clone(),
        sync_token: opts.sync_token.clone(),
        status_token: opts.status_token.clone(),
        followed_ref,
        ..Shared::new(tx.clone(), state.clone())
    });
    http::listen(&opts, shared.clone(), shutdown.clone()).await?;
    tokio::spawn(watch::engine_events(
        engine.clone(),
        tx.clone(),
        shared.heartbeat.clone(),
    ));

    let (git, _watcher) = match &opts.source {
        Source::Git {
            url,
            reference,
            auth,
        } => {
            let url = url.clone();
            let reference = reference.clone();
            let auth = auth.clone();
            let dir = state.path().join("git");
            let source = tokio::task::spawn_blocking(move || {
                git::GitSource::open(&url, reference, auth, &dir)
            })
            .await
            .expect("opening the clone does not panic")?;
            (Some(Arc::new(Mutex::new(source))), None)
        }
        Source::Directory(dir) => {
            let w =
                watch::directory(dir.clone(), tx.clone()).map_err(|source| AgentError::Watch {
                    dir: dir.clone(),
                    source,
                })?;
            (None, Some(w))
        }
    };
    let source_name = match (&opts.source, &git) {
        (_, Some(g)) => g.lock().expect("git source lock").display_url().to_string(),
        (Source::Directory(d), None) => d.display().to_string(),
        _ => String::new(),
    };
    shared.set_status(|s| s.source = source_name.clone());
    let mut revisions: Revisions = state.read_json(AGENT_FILE)?;
    let died_loading = revisions.loading.take();
    let notifier = Notifier::start();
    let healer = Healer::new(
        engine.clone(),
        state.clone(),
        shared.clone(),
        notifier.clone(),
        cancel.clone(),
        opts.lock_timeout,
        source_name.clone(),
        opts.parallel,
        tx.clone(),
    );
    let _ = shared.healer.set(healer.downgrade());
    tokio::spawn(heartbeat::run(
        heartbeat::Heartbeat {
            engine: engine.clone(),
            state: state.clone(),
            shared: shared.clone(),
            notifier: notifier.clone(),
            healer: healer.clone(),
            scanner: heartbeat::logscan::Scanner::new(
                engine.clone(),
                shared.clone(),
                shared.heartbeat.clone(),
            ),
        },
        shared.heartbeat.clone(),
        shutdown.clone(),
    ));
    let mut agent = Agent {
        loader: Arc::new(revision::Loader::new(&opts)),
        opts,
        state,
        engine,
        shared: shared.clone(),
        notifier,
        healer,
        git,
        source_name,
        target: None,
        revisions,
        host: None,
        engine_name: None,
        reported_unknown: BTreeSet::new(),
        schedule: controller::Schedule {
            fetch_at: Instant::now(),
            resync_at: Instant::now(),
            check_at: None,
            silence_at: None,
            silences_seen: jiff::Timestamp::now(),
        },
        idle_at: None,
        fetch_failures: 0,
        host_failures: 0,
        recover_due: false,
        cancel,
        unsent: None,
    };
    agent.died_loading(died_loading);
    let _alive = AliveGuard(shared);
    agent.main_loop(rx, shutdown, tx).await;
    // Heals applying now finish (or roll back); those watching a container stop.
    let _quiet = agent.healer.quiesce().await;
    agent.notifier.flush(NOTIFY_FLUSH).await;
    Ok(())
}

/// Says where the state directory (and so the clone) is on the engine's
/// host when the agent runs in a container, or warns that it is on no
/// volume, so stacks that mount repository files will be conflicts.
async fn log_host_paths(engine: &Engine, state_dir: &std::path::Path) {
    let paths = match engine.paths().await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("cannot find the agent's own container: {e}");
            return;
        }
    };
    let Some(container) = paths.container() else {
        return;
    };
    match paths.map(state_dir) {
        Ok(host) => tracing::info!(
            container,
            host_path = %host.display(),
            "running in a container: repository files are mounted from the state directory's host path"
        ),
        Err(e) => tracing::warn!(
            container,
            "stacks that mount files from the repository cannot be applied: {e}"
        ),
    }
}

/// How long a stopping agent waits for queued notifications to be delivered.
const NOTIFY_FLUSH: Duration = Duration::from_secs(5);

struct Agent {
    opts: Options,
    /// Loads revisions with the host's settings.
    loader: Arc<revision::Loader>,
    state: StateDir,
    engine: Engine,
    shared: Arc<Shared>,
    notifier: Notifier,
    /// Heals each drifted service in its own task ([`healer`]).
    healer: Healer,
    git: Option<Arc<Mutex<git::GitSource>>>,
    source_name: String,
    target: Option<Arc<Target>>,
    revisions: Revisions,
    /// The host name stacks are assigned by, once known.
    host: Option<String>,
    /// The engine's name (`docker info`), asked once: the host's name when
    /// neither `--host` nor `agent.host` names it.
    engine_name: Option<String>,
    reported_unknown: BTreeSet<String>,
    /// When the source and the host are reconciled next ([`controller`]).
    schedule: controller::Schedule,
    /// The revision at which this host had no stacks and nothing to prune:
    /// cycles of that revision make no engine calls.
    idle_at: Option<String>,
    /// Failed fetches in a row (the source unreachable).
    fetch_failures: u32,
    /// Failed checks of the host in a row.
    host_failures: u32,
    /// A killed run left a replacement half done: the next check takes the
    /// host exclusively (no heal meanwhile) to finish or undo it.
    recover_due: bool,
    cancel: Cancel,
    /// A rejection notified once a revision is loaded (its notification
    /// targets and masker come with it): the revision the agent died loading.
    unsent: Option<Notification>,
}

/// A directory's revision: the hash of what it declares.
/// Fault injection for the crash-loop test: with
/// `PLIMSOLL_FAULT_KILL_WHILE_LOADING=NAME` the process kills itself with
/// SIGKILL while it loads a revision whose root holds a file `NAME`, as the
/// kernel's out-of-memory killer or a stack overflow would. Only the host sets
/// it (an environment variable); a repository cannot.
fn fault_while_loading(root: &std::path::Path) {
    let Some(name) = std::env::var_os("PLIMSOLL_FAULT_KILL_WHILE_LOADING") else {
        return;
    };
    if !name.is_empty() && root.join(&name).exists() {
        let _ = std::process::Command::new("kill")
            .args(["-9", &std::process::id().to_string()])
            .status();
        std::process::abort();
    }
}

fn local_revision(desired: &Desired) -> String {
    let mut all = Vec::new();
    for s in &desired.stacks {
        all.extend(crate::spec::render::to_stored(s, &desired.masker));
    }
    format!("local:{}", &crate::state::content_hash(&all)[..12])
}

/// Gives the heap a revision's apply freed back to the system. An apply
/// runs up to `--parallel` services at once; glibc's allocator keeps what
/// their tasks freed (about 2 MB for 50 services), which an idle agent would
/// otherwise hold for good.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of glibc's heap to the OS;
    // it takes no pointers and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(yaml_config: &str, compose: &str) -> Desired {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("plimsoll.yaml"), yaml_config).unwrap();
        let stack = dir.path().join("stacks/shop");
        std::fs::create_dir_all(&stack).unwrap();
        std::fs::write(stack.join("compose.yaml"), compose).unwrap();
        spec::load_path(dir.path())
    }

    #[test]
    fn self_heal_service_over_stack_over_agent_default() {
        let compose =
            "services:\n  a: {image: x}\n  b: {image: x, x-plimsoll: {self_heal: true}}\n";
        let d = desired("stacks: {shop: {self_heal: false}}\n", compose);
        assert!(!self_heal(&d, "shop", Some("a")));
        assert!(self_heal(&d, "shop", Some("b")));
        assert!(!self_heal(&d, "shop", None));
        let d = desired("agent: {self_heal: false}\n", compose);
        assert!(!self_heal(&d, "shop", Some("a")));
        let d = desired("{}\n", compose);
        assert!(self_heal(&d, "shop", Some("a")), "on by default");
    }
}
