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

pub mod delivery;
pub mod git;
pub mod heal;
mod healer;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod notify;
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
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::apply::Cancel;
use crate::events::LogProgress;
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
    /// The status is stale (a heal ended or found drift, a container turned
    /// healthy): publish it again; the reason, in words.
    Publish(String),
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
    /// `in sync`, `drifted`, `missing`, `stopped`, `unhealthy`, `conflict` (and `(paused)`).
    pub state: String,
    pub drift: Vec<String>,
    pub health: Option<String>,
    pub running: bool,
    pub container: String,
    pub self_heal: bool,
    pub heal: Option<heal::ServiceHeal>,
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
        metrics: metrics::Metrics::new(),
        status: Mutex::new(AgentStatus::default()),
        alive: std::sync::atomic::AtomicBool::new(true),
        webhook_secret: opts.webhook_secret.clone(),
        sync_token: opts.sync_token.clone(),
        status_token: opts.status_token.clone(),
        deliveries: Mutex::new(delivery::Recent::default()),
        followed_ref,
        triggers: tx.clone(),
    });
    http::listen(&opts, shared.clone(), shutdown.clone()).await?;
    tokio::spawn(watch::engine_events(engine.clone(), tx.clone()));

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
    shared.status.lock().expect("status lock").source = source_name.clone();
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
    let mut agent = Agent {
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
        next_fetch: Instant::now(),
        idle_at: None,
        fetch_backoff: None,
        retry_at: None,
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
    next_fetch: Instant,
    /// The revision at which this host had no stacks and nothing to prune:
    /// cycles of that revision make no engine calls.
    idle_at: Option<String>,
    /// Set while the source is unreachable: the next wait.
    fetch_backoff: Option<Duration>,
    /// A check is due then (a heal backing off, the lock was busy).
    retry_at: Option<Instant>,
    /// A killed run left a replacement half done: the next check takes the
    /// host exclusively (no heal meanwhile) to finish or undo it.
    recover_due: bool,
    cancel: Cancel,
    /// A rejection notified once a revision is loaded (its notification
    /// targets and masker come with it): the revision the agent died loading.
    unsent: Option<Notification>,
}

/// The work one cycle does, coalesced from triggers.
#[derive(Debug, Default)]
struct Work {
    fetch: bool,
    check: bool,
    reasons: BTreeSet<String>,
    /// Only the status is stale (a heal ended).
    publish: bool,
}

impl Work {
    fn add(&mut self, t: Trigger) {
        match t {
            Trigger::Fetch(why) => {
                self.fetch = true;
                self.reasons.insert(why.to_string());
            }
            Trigger::Event { stack, kind, .. } => {
                self.check = true;
                self.reasons.insert(format!("{kind} in {stack}"));
            }
            Trigger::Resync => {
                self.check = true;
                self.reasons.insert("resync".into());
            }
            Trigger::Publish(why) => {
                self.publish = true;
                self.reasons.insert(why);
            }
        }
    }
}

impl Agent {
    fn interval(&self) -> Duration {
        self.opts
            .interval
            .or_else(|| {
                self.target
                    .as_ref()
                    .and_then(|t| t.desired.config.agent.interval.map(|d| d.0))
            })
            .unwrap_or(DEFAULT_INTERVAL)
    }

    fn resync(&self) -> Duration {
        self.opts
            .resync
            .or_else(|| {
                self.target
                    .as_ref()
                    .and_then(|t| t.desired.config.agent.resync.map(|d| d.0))
            })
            .unwrap_or(DEFAULT_RESYNC)
    }

    /// The poll interval with ±10 % jitter, so a fleet does not poll in step.
    fn jittered(&self, d: Duration) -> Duration {
        let spread = d.as_millis() as u64 / 5;
        if spread == 0 {
            return d;
        }
        d - Duration::from_millis(spread / 2) + Duration::from_millis(random_u64() % spread)
    }

    /// The wait before the first poll after the start: a random part of the
    /// interval, so agents started together (a fleet rollout, a power cut)
    /// spread their polls over the interval instead of polling in step.
    fn splayed(&self, d: Duration) -> Duration {
        let ms = (d.as_millis() as u64).max(1);
        Duration::from_millis(1 + random_u64() % ms)
    }

    async fn main_loop(
        &mut self,
        mut rx: UnboundedReceiver<Trigger>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
        tx: UnboundedSender<Trigger>,
    ) {
        let _ = tx.send(Trigger::Fetch("start"));
        let mut next_resync = Instant::now() + self.resync();
        loop {
            let polling = matches!(self.opts.source, Source::Git { .. });
            let fetch_at = if polling {
                self.next_fetch
            } else {
                Instant::now() + Duration::from_secs(86_400)
            };
            let retry_at = self.retry_at.unwrap_or(next_resync);
            let first = tokio::select! {
                t = rx.recv() => match t { Some(t) => t, None => return },
                _ = tokio::time::sleep_until(fetch_at.into()) => Trigger::Fetch("poll"),
                _ = tokio::time::sleep_until(next_resync.min(retry_at).into()) => Trigger::Resync,
                _ = shutdown.changed() => return,
            };
            if *shutdown.borrow() {
                return;
            }
            let mut work = Work::default();
            for t in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                match t {
                    // A service's drift is its heal's business, not the loop's.
                    Trigger::Event {
                        stack,
                        service: Some(service),
                        ..
                    } if self.healer.is_active() => {
                        if self.concerns(&stack) {
                            self.healer.request(&stack, &service);
                        }
                    }
                    Trigger::Event { ref stack, .. } if !self.concerns(stack) => {}
                    t => work.add(t),
                }
            }
            if work.reasons.is_empty() {
                continue;
            }
            if work.fetch {
                let wait = if work.reasons.contains("start") {
                    self.splayed(self.interval())
                } else {
                    self.jittered(self.interval())
                };
                self.next_fetch = Instant::now() + wait;
            }
            if work.reasons.contains("resync") {
                next_resync = Instant::now() + self.resync();
                self.retry_at = None;
            }
            // Events that arrive meanwhile (plimsoll's own changes among them)
            // are checked by the next cycle: a check that finds nothing is cheap.
            self.cycle(work).await;
            if *shutdown.borrow() || self.cancel.is_cancelled() {
                return;
            }
        }
    }

    /// Events of stacks this agent does not manage (another agent's, a test's) are not its business.
    fn concerns(&self, stack: &str) -> bool {
        self.target
            .as_ref()
            .is_none_or(|t| t.desired.stacks.iter().any(|s| s.name == stack))
    }

    fn notify(
        &self,
        event: NotificationEvent,
        stack: Option<&str>,
        service: Option<&str>,
        message: String,
    ) {
        let Some(target) = &self.target else {
            return;
        };
        self.notifier.send(
            Notification {
                event,
                host: self.host.clone().unwrap_or_else(crate::state::hostname),
                revision: Some(target.revision.clone()),
                stack: stack.map(str::to_string),
                service: service.map(str::to_string),
                message,
            },
            &target.desired.masker,
        );
    }

    fn set_status(&self, f: impl FnOnce(&mut AgentStatus)) {
        let mut s = self.shared.status.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s);
    }

    fn finish(&self, started: Instant, result: &str, trigger: &str, error: Option<String>) {
        let seconds = started.elapsed().as_secs_f64();
        self.shared.metrics.sync_finished(result, seconds);
        let masked = error.map(|e| match &self.target {
            Some(t) => t.desired.masker.mask(&e).into_owned(),
            None => e,
        });
        let now = crate::state::now();
        if result == "succeeded" {
            self.shared
                .metrics
                .set_last_success(jiff::Timestamp::now().as_millisecond() as f64 / 1000.0);
        }
        self.set_status(|s| {
            if result == "succeeded" {
                s.last_success = Some(now.clone());
            }
            s.last_sync = Some(SyncRecord {
                time: now,
                result: result.into(),
                trigger: trigger.into(),
                seconds,
                error: masked,
            });
        });
    }

    async fn cycle(&mut self, work: Work) {
        let started = Instant::now();
        let trigger = work.reasons.iter().cloned().collect::<Vec<_>>().join(", ");
        if work.fetch
            && let Err(rejected) = self.refresh().await
        {
            self.finish(started, "rejected", &trigger, Some(rejected));
            if self.target.is_none() {
                return;
            }
        }
        if self.target.is_none() || self.target_rejected() {
            return;
        }
        let deploy = self.is_deploy();
        if !deploy && !work.check && !work.fetch {
            if work.publish {
                self.refresh_status().await;
                self.finish(started, "succeeded", &trigger, None);
            }
            return;
        }
        match self.converge(deploy).await {
            Ok(()) => self.finish(started, "succeeded", &trigger, None),
            Err(e) => self.finish(started, "failed", &trigger, Some(e)),
        }
    }

    /// Observes the host (changing nothing, so without the lock) and publishes its status.
    async fn refresh_status(&mut self) {
        let Some(target) = self.target.clone() else {
            return;
        };
        let Ok(observed) = self.observe(&target.desired, self.host.as_deref()).await else {
            return;
        };
        let book: HealBook = self.state.read_json(heal::FILE).unwrap_or_default();
        self.publish(&target, &observed, &book);
    }

    /// The target is a revision not yet applied (and not rejected).
    fn is_deploy(&self) -> bool {
        self.target
            .as_ref()
            .is_some_and(|t| self.revisions.last_good.as_deref() != Some(t.revision.as_str()))
    }

    /// The target is a revision that was rejected: nothing to do until a new one.
    fn target_rejected(&self) -> bool {
        match (&self.target, &self.revisions.rejected) {
            (Some(t), Some(r)) => t.revision == r.revision,
            _ => false,
        }
    }

    /// Looks for a new revision and loads it. Err = the revision was rejected (message).
    async fn refresh(&mut self) -> Result<(), String> {
        let Some(git) = self.git.clone() else {
            let Source::Directory(dir) = &self.opts.source else {
                unreachable!("a source is git or a directory")
            };
            let root = self.opts.path.as_ref().map_or(dir.clone(), |p| dir.join(p));
            return match self.load(&root, dir) {
                Ok(desired) => {
                    let revision = local_revision(&desired);
                    self.accept(revision, desired);
                    Ok(())
                }
                Err(e) => {
                    let revision = format!("local:{}", crate::state::now());
                    self.reject(&revision, e.clone());
                    Err(e)
                }
            };
        };
        let fetched = {
            let git = git.clone();
            tokio::task::spawn_blocking(move || git.lock().expect("git source lock").fetch())
                .await
                .expect("fetch does not panic")
        };
        let sha = match fetched {
            Ok(sha) => {
                if self.fetch_backoff.take().is_some() {
                    tracing::info!(source = %self.source_name, "the source is reachable again");
                }
                self.set_status(|s| {
                    s.source_error = None;
                    s.fetched = Some(sha.clone());
                });
                sha
            }
            Err(e) => {
                let wait = self.fetch_backoff.map_or(Duration::from_secs(5), |b| {
                    (b * 2).min(Duration::from_secs(300))
                });
                self.fetch_backoff = Some(wait);
                self.next_fetch = Instant::now() + wait;
                let message = format!("{e}");
                tracing::warn!(
                    "{message}; keeping the last good revision, retrying in {}s",
                    wait.as_secs()
                );
                self.set_status(|s| s.source_error = Some(message));
                // After a restart with the source down: run the last good checkout.
                if self.target.is_none() {
                    let checked_out = git.lock().expect("git source lock").checked_out();
                    if let Some(sha) =
                        checked_out.filter(|s| Some(s) == self.revisions.last_good.as_ref())
                    {
                        self.checkout_and_load(&git, &sha).await.ok();
                    }
                }
                return Ok(());
            }
        };
        if let Some(r) = self
            .revisions
            .rejected
            .as_ref()
            .filter(|r| r.revision == sha)
        {
            tracing::debug!(
                "revision {sha} was rejected ({}); waiting for a new commit",
                r.reason
            );
            let stale = self.target.as_ref().is_none_or(|t| t.revision == sha);
            if stale && let Some(good) = self.revisions.last_good.clone() {
                let _ = self.checkout_and_load(&git, &good).await;
            }
            return Ok(());
        }
        if self.target.as_ref().is_some_and(|t| t.revision == sha) {
            return Ok(());
        }
        match self.checkout_verified(&git, &sha).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.reject(&sha, e.clone());
                // The work tree goes back to the last good revision.
                if let Some(good) = self.revisions.last_good.clone() {
                    let keep = self.target.as_ref().is_some_and(|t| t.revision == good);
                    if !keep {
                        let _ = self.checkout_and_load(&git, &good).await;
                    } else {
                        let git = git.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            git.lock().expect("git source lock").checkout(&good)
                        })
                        .await;
                    }
                }
                Err(e)
            }
        }
    }

    /// A new revision: its signature checked (with trusted keys), then
    /// checked out and loaded. Err = why it is rejected.
    async fn checkout_verified(
        &mut self,
        git: &Arc<Mutex<git::GitSource>>,
        sha: &str,
    ) -> Result<(), String> {
        let verdict = {
            let git = git.clone();
            let owned = sha.to_string();
            // The signature is the pusher's input: a verifier that panics on it
            // rejects the revision instead of taking the agent down.
            let task = tokio::task::spawn_blocking(move || {
                git.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .verify_commit(&owned)
                    .map_err(|e| e.to_string())
            });
            task.await.unwrap_or_else(|_| {
                Err(format!(
                    "the signature of commit {sha} could not be checked (the verifier failed on it): \
                     sign the commit again"
                ))
            })?
        };
        if let Some(signer) = verdict {
            tracing::info!(revision = sha, "signature verified: {signer}");
        }
        self.checkout_and_load(git, sha).await
    }

    async fn checkout_and_load(
        &mut self,
        git: &Arc<Mutex<git::GitSource>>,
        sha: &str,
    ) -> Result<(), String> {
        self.mark_loading(Some(sha));
        let loaded = self.checkout_and_load_unmarked(git, sha).await;
        self.mark_loading(None);
        loaded
    }

    /// Records (`Some`) or clears (`None`) the revision being loaded in
    /// `agent.json`, durably, so a crash while loading it is known at restart.
    fn mark_loading(&mut self, revision: Option<&str>) {
        if self.revisions.loading.as_deref() == revision {
            return;
        }
        self.revisions.loading = revision.map(str::to_string);
        if let Err(e) = self.state.write_json(AGENT_FILE, &self.revisions) {
            tracing::error!("{e}");
        }
    }

    /// At start: a revision the previous process was loading when it died is
    /// rejected (unless it is the last good one, which loaded before: the
    /// cause was elsewhere).
    fn died_loading(&mut self, revision: Option<String>) {
        let Some(revision) = revision else {
            return;
        };
        if self.revisions.last_good.as_ref() == Some(&revision) {
            tracing::warn!(
                revision,
                "the agent stopped while loading the last good revision; loading it again"
            );
            if let Err(e) = self.state.write_json(AGENT_FILE, &self.revisions) {
                tracing::error!("{e}");
            }
            return;
        }
        self.reject(&revision, DIED_LOADING.to_string());
        // No revision is loaded yet (nor the notification targets): notified
        // once the last good one is.
        self.unsent = Some(self.rejection(&revision, DIED_LOADING));
    }

    async fn checkout_and_load_unmarked(
        &mut self,
        git: &Arc<Mutex<git::GitSource>>,
        sha: &str,
    ) -> Result<(), String> {
        let dir = {
            let git = git.clone();
            let sha = sha.to_string();
            tokio::task::spawn_blocking(move || git.lock().expect("git source lock").checkout(&sha))
                .await
                .expect("checkout does not panic")
                .map_err(|e| e.to_string())?
        };
        let root = self.opts.path.as_ref().map_or(dir.clone(), |p| dir.join(p));
        let desired = self.load(&root, &dir)?;
        self.accept(sha.to_string(), desired);
        Ok(())
    }

    /// Loads and checks a revision at `root` (`--path` inside the checkout or
    /// the watched directory `top`, which confines every read); the error
    /// lists every problem with file and line.
    fn load(&self, root: &std::path::Path, top: &std::path::Path) -> Result<Desired, String> {
        // Errors name files as the repository does (`stacks/shop/compose.yaml:5:9`),
        // not by where the agent checked it out.
        let relative = |e: String| e.replace(&format!("{}/", root.display()), "");
        fault_while_loading(root);
        // Reads stay inside the clone (or the watched directory): its root
        // is the repository, whatever PATH inside it names.
        let confine = source::Confine::new(top, &self.opts.allow_read)
            .map_err(|e| relative(e.to_string()))?;
        let files = source::ConfinedFs::new(confine);
        let layout = source::discover_in(&files, root).map_err(|e| relative(e.to_string()))?;
        let options = spec::LoadOptions {
            profiles: self.opts.profiles.clone(),
            age: self.opts.age.clone(),
            secret_env: self.opts.secret_env.clone(),
            host_policy: self.opts.host_policy.clone(),
        };
        let mut desired = spec::load_with(
            &layout,
            &files,
            &self.opts.compose_env,
            &self.opts.stacks,
            &options,
        )
        .map_err(|e| relative(e.to_string()))?;
        // `agent.stacks` in plimsoll.yaml, unless --stack says otherwise.
        let only = &desired.config.agent.stacks;
        if self.opts.stacks.is_empty() && !only.is_empty() {
            let only = only.clone();
            desired.stacks.retain(|s| only.contains(&s.name));
        }
        self.notifier
            .configure(&desired.config.notifications, &self.opts.compose_env)
            .map_err(|e| format!("plimsoll.yaml: {e}"))?;
        for w in &desired.warnings {
            tracing::warn!("{w}");
        }
        Ok(desired)
    }

    fn accept(&mut self, revision: String, desired: Desired) {
        if self.target.as_ref().is_some_and(|t| t.revision == revision) {
            return;
        }
        tracing::info!(revision, "loaded a new revision");
        self.shared.metrics.set_revision(&revision);
        if let Some(note) = self.unsent.take() {
            self.notifier.send(note, &desired.masker);
        }
        self.target = Some(Arc::new(Target { revision, desired }));
    }

    fn reject(&mut self, revision: &str, reason: String) {
        let masked = match &self.target {
            Some(t) => t.desired.masker.mask(&reason).into_owned(),
            None => reason,
        };
        tracing::error!(
            revision,
            "revision rejected, the last good revision keeps running: {masked}"
        );
        self.revisions.rejected = Some(Rejected {
            revision: revision.to_string(),
            reason: masked.clone(),
            time: crate::state::now(),
        });
        if let Err(e) = self.state.write_json(AGENT_FILE, &self.revisions) {
            tracing::error!("{e}");
        }
        // `plimsoll history` lists rejections beside applies.
        let record = serde_json::json!({
            "time": crate::state::now(),
            "revision": revision,
            "source": self.source_name,
            "rollback": false,
            "user": format!("plimsoll agent ({})", crate::state::invoking_user()),
            "host": crate::state::hostname(),
            "outcome": "rejected",
            "error": masked,
            "seconds": 0.0,
            "actions": [],
        });
        if let Err(e) = self.state.audit(
            &record,
            crate::state::AUDIT_MAX_BYTES,
            crate::state::AUDIT_KEEP,
        ) {
            tracing::error!("{e}");
        }
        let rejected = self.revisions.rejected.clone();
        self.set_status(|s| s.rejected = rejected);
        // The notification names the rejected revision, not the one that keeps running.
        if let Some(target) = &self.target {
            self.notifier
                .send(self.rejection(revision, &masked), &target.desired.masker);
        }
    }

    /// The notification of a rejected revision.
    fn rejection(&self, revision: &str, masked: &str) -> Notification {
        Notification {
            event: NotificationEvent::RevisionRejected,
            host: self.host.clone().unwrap_or_else(crate::state::hostname),
            revision: Some(revision.to_string()),
            stack: None,
            service: None,
            message: format!("revision {revision} rejected: {masked}"),
        }
    }

    /// Takes the host's lock: exclusive (no heal meanwhile) to apply a
    /// revision or recover, else shared with the heals. When it is busy too
    /// long, a retry is scheduled.
    async fn lock(&mut self, exclusive: bool) -> Result<Held, String> {
        let held = if exclusive {
            self.healer
                .exclusive()
                .await
                .map(|h| Held::Exclusive { _held: h })
        } else {
            self.healer
                .shared()
                .await
                .map(|h| Held::Shared { _held: h })
        };
        held.map_err(|e| {
            self.retry_at = Some(Instant::now() + Duration::from_secs(5));
            e.to_string()
        })
    }

    /// Observes, plans and applies a revision under the host's lock, or
    /// checks for drift and hands it to the heals. Err = the sync failed (message).
    async fn converge(&mut self, deploy: bool) -> Result<(), String> {
        let exclusive = deploy || self.recover_due;
        let _lock = self.lock(exclusive).await?;
        let target = self.target.clone().expect("converge runs with a target");
        let result = self.converge_locked(&target, deploy, exclusive).await;
        // Still under the lock: heals waiting for it heal to the revision applied now.
        if !self.is_deploy() && !self.target_rejected() {
            let applied = self.target.clone().zip(self.host.clone());
            self.healer
                .set_applied(applied.map(|(target, host)| Applied { target, host }));
        }
        result
    }

    async fn converge_locked(
        &mut self,
        target: &Arc<Target>,
        deploy: bool,
        exclusive: bool,
    ) -> Result<(), String> {
        let desired = &target.desired;
        let masker = &desired.masker;
        let host = match self
            .opts
            .host
            .clone()
            .or_else(|| desired.config.agent.host.clone())
        {
            Some(h) => Some(h),
            None => Some(self.engine_name().await?),
        };
        // A host with no stacks that had nothing to do at this revision (no
        // orphans to prune) needs no engine calls until the revision changes.
        let assigned = desired.stacks.iter().any(|s| {
            desired
                .config
                .runs_on(&s.name, host.as_deref().unwrap_or_default())
        });
        if !assigned && self.idle_at.as_deref() == Some(target.revision.as_str()) {
            return Ok(());
        }
        let progress = LogProgress::new(masker.clone());
        // `always` images for a new revision; refresh policies on every cycle.
        reconcile::pull_first(&self.engine, desired, deploy, &progress).await?;
        let mut observed = self.observe(desired, host.as_deref()).await?;
        let parked = observed
            .live
            .containers
            .iter()
            .any(|c| c.name.ends_with(crate::names::OLD_SUFFIX));
        // A heal replacing a container parks the old one too: recovering
        // waits for the host alone.
        if parked && !exclusive {
            self.recover_due = true;
            self.retry_at = Some(Instant::now() + Duration::from_secs(1));
        } else if parked {
            self.recover_due = false;
            let repaired = crate::apply::recover(&observed.engine, &observed.live, &progress)
                .await
                .map_err(|e| format!("recovering from an interrupted run failed: {e}"))?;
            if repaired > 0 {
                observed = self.observe(desired, host.as_deref()).await?;
            }
        }
        self.host = Some(observed.host.clone());
        self.report_unknown(&observed)?;
        let mut book: HealBook = self
            .state
            .read_json(heal::FILE)
            .map_err(|e| e.to_string())?;
        if deploy {
            book.new_revision(&target.revision);
        }
        let pruning = reconcile::Pruning {
            flag: self.opts.prune.unwrap_or(false),
            allow_empty: false,
            volumes: false,
        };
        let mut plan = reconcile::pruned(
            observed.applicable_plan(),
            &observed,
            &desired.config,
            &pruning,
        );
        if !deploy {
            // Drift: reported here, healed by each service's own heal.
            let unhealthy = settle::unhealthy_restarts(&observed, &observed.plan);
            let mut all = observed.plan.clone();
            all.actions.extend(unhealthy.iter().cloned());
            let applied = Applied {
                target: target.clone(),
                host: observed.host.clone(),
            };
            self.healer.report_all(&applied, &observed, &all);
            plan.actions.extend(unhealthy);
            // This check's revision is the one applied: what heals converge to.
            self.healer.set_applied(Some(applied));
            self.healer.heal_drift(&plan);
            plan.actions.clear();
        }
        let nothing_to_do = plan.is_noop() && plan.conflicts.is_empty();
        let result = if nothing_to_do {
            if deploy {
                reconcile::note_in_sync(&observed, masker, &self.state)
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        } else {
            let origin = reconcile::Origin {
                revision: target.revision.clone(),
                source: self.source_name.clone(),
                rollback: false,
                audit: desired.config.audit,
                images: desired.config.images,
            };
            reconcile::apply_recorded(
                &observed,
                &plan,
                masker,
                &self.state,
                &origin,
                &progress,
                &self.cancel,
                self.opts.parallel,
            )
            .await
            .map(|_| ())
            .map_err(|e| masker.mask(&e.to_string()).into_owned())
        };
        // Only a revision's apply (exclusive) writes the heal book here; heals write their own.
        if deploy && let Err(e) = self.state.write_json(heal::FILE, &book) {
            tracing::error!("{e}");
        }
        if deploy {
            release_freed_memory();
            match &result {
                Ok(()) => {
                    self.revisions.last_good = Some(target.revision.clone());
                    if let Err(e) = self.state.write_json(AGENT_FILE, &self.revisions) {
                        tracing::error!("{e}");
                    }
                    tracing::info!(revision = target.revision, "revision applied");
                    self.notify(
                        NotificationEvent::SyncSucceeded,
                        None,
                        None,
                        format!("revision {} applied", target.revision),
                    );
                }
                Err(e) => {
                    self.notify(
                        NotificationEvent::SyncFailed,
                        None,
                        None,
                        format!("applying revision {} failed: {e}", target.revision),
                    );
                }
            }
        }
        if !assigned && nothing_to_do && result.is_ok() {
            tracing::info!(
                host = host.as_deref().unwrap_or_default(),
                "no stacks are assigned to this host: idle until the revision changes"
            );
            self.idle_at = Some(target.revision.clone());
        }
        // Report what the host looks like now.
        // A check changed nothing (its heals report when they end).
        let after = if deploy {
            self.observe(desired, host.as_deref()).await.ok()
        } else {
            None
        };
        self.publish(target, after.as_ref().unwrap_or(&observed), &book);
        if deploy && let Err(e) = &result {
            self.fail_revision(&target.revision, e.clone()).await;
        }
        result
    }

    /// A revision whose apply failed: rejected, and the last good one becomes
    /// the target again, so the host converges back to it.
    async fn fail_revision(&mut self, revision: &str, error: String) {
        self.reject(revision, format!("apply failed: {error}"));
        if let (Some(git), Some(good)) = (self.git.clone(), self.revisions.last_good.clone()) {
            match self.checkout_and_load(&git, &good).await {
                Ok(()) => self.retry_at = Some(Instant::now()),
                Err(e) => tracing::error!("reloading the last good revision {good} failed: {e}"),
            }
        }
    }

    /// The engine's name, asked once.
    async fn engine_name(&mut self) -> Result<String, String> {
        if let Some(name) = &self.engine_name {
            return Ok(name.clone());
        }
        let info = self
            .engine
            .docker
            .info()
            .await
            .map_err(|e| format!("reading the engine's name: {e}"))?;
        let name = info.name.unwrap_or_default();
        self.engine_name = Some(name.clone());
        Ok(name)
    }

    async fn observe<'d>(
        &self,
        desired: &'d Desired,
        host: Option<&str>,
    ) -> Result<Observed<'d>, String> {
        let mut observed = reconcile::observe_on(self.engine.clone(), desired, host)
            .await
            .map_err(|e| e.to_string())?;
        let frozen = self.state.paused().map_err(|e| e.to_string())?;
        let applied = self.state.applied_mounts().map_err(|e| e.to_string())?;
        reconcile::with_applied_mounts(&mut observed, &applied, &desired.masker);
        let names: Vec<String> = observed.stacks.iter().map(|s| s.name.clone()).collect();
        observed
            .paused
            .extend(names.into_iter().filter(|s| frozen.contains(s)));
        Ok(observed)
    }

    fn report_unknown(&mut self, observed: &Observed<'_>) -> Result<(), String> {
        use crate::spec::config::UnknownContainers;
        let unknown: BTreeSet<String> = reconcile::unknown(observed)
            .into_iter()
            .map(str::to_string)
            .collect();
        let new: Vec<&String> = unknown.difference(&self.reported_unknown).collect();
        let policy = self
            .target
            .as_ref()
            .map(|t| t.desired.config.policy.unknown_containers);
        if !new.is_empty() {
            let list = new
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            tracing::warn!("containers not managed by plimsoll run on this host: {list}");
            self.notify(
                NotificationEvent::UnknownContainer,
                None,
                None,
                format!("containers not managed by plimsoll run on this host: {list}"),
            );
        }
        self.reported_unknown = unknown.clone();
        if policy == Some(UnknownContainers::Fail) && !unknown.is_empty() {
            return Err(format!(
                "policy unknown_containers is `fail` and containers not managed by plimsoll run on this host: {}; remove them, or declare them in git",
                unknown.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(())
    }

    /// Publishes status and gauges from an observation.
    fn publish(&self, target: &Target, observed: &Observed<'_>, book: &HealBook) {
        let status = reconcile::status(observed);
        let desired = &target.desired;
        let frozen = self.state.paused().unwrap_or_default();
        let host_paused = frozen.host
            || desired
                .config
                .hosts
                .get(&observed.host)
                .is_some_and(|h| h.paused);
        let mut stacks: Vec<StackStatus> = Vec::new();
        for stack in &observed.stacks {
            let services = status
                .services
                .iter()
                .filter(|s| s.stack == stack.name)
                .map(|s| {
                    let key = heal::key(&s.stack, &s.service);
                    let state = if s.state == "in sync" && s.health.as_deref() == Some("unhealthy")
                    {
                        "unhealthy".to_string()
                    } else {
                        s.state.clone()
                    };
                    ServiceStatus {
                        service: s.service.clone(),
                        state,
                        drift: s.reasons.clone(),
                        health: s.health.clone(),
                        running: s.running,
                        container: s.container.clone(),
                        self_heal: self_heal(desired, &s.stack, Some(&s.service)),
                        heal: book.services.get(&key).cloned(),
                    }
                })
                .collect();
            stacks.push(StackStatus {
                name: stack.name.clone(),
                paused: observed.paused.contains(&stack.name),
                self_heal: self_heal(desired, &stack.name, None),
                services,
            });
        }
        let gave_up: Vec<String> = book.gave_up().map(str::to_string).collect();
        let managed: usize = observed.stacks.iter().map(|s| s.services.len()).sum();
        self.shared.metrics.set_gave_up(gave_up.len() as i64);
        self.shared.metrics.set_managed(managed as i64);
        let revision = self.revisions.last_good.clone();
        let rejected = self.revisions.rejected.clone();
        let host = observed.host.clone();
        self.set_status(|s| {
            s.host = host;
            s.revision = revision;
            s.rejected = rejected;
            s.paused = host_paused;
            s.stacks = stacks;
            s.unknown = status.unknown.clone();
            s.gave_up = gave_up;
        });
    }
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

    #[test]
    fn triggers_coalesce_into_one_cycle() {
        let mut w = Work::default();
        w.add(Trigger::Fetch("webhook"));
        w.add(Trigger::Fetch("webhook"));
        w.add(Trigger::Event {
            stack: "shop".into(),
            service: None,
            kind: "stopped",
        });
        w.add(Trigger::Resync);
        assert!(w.fetch && w.check);
        assert_eq!(
            w.reasons.into_iter().collect::<Vec<_>>(),
            ["resync", "stopped in shop", "webhook"]
        );
    }
}
