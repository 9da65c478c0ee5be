//! Self-heal scheduling: drift of different services is healed independently.
//!
//! A keyed queue: one task per drifted service (`stack/service`), at most one
//! heal of a service in flight; an event for a service already being healed is
//! coalesced into one more check after it. A heal observes only its service
//! (the engine event names it: [`reconcile::observe_scoped`] inspects that
//! service's containers instead of the whole host), applies through the same
//! plan/apply path as every change, then watches the result (running, healthy,
//! staying up) without holding anything, and records the verdict in
//! `heal.json`. So a service waiting on its health gate, or a restart waiting
//! on its stop timeout, never delays the heal of an unrelated service.
//!
//! Order and exclusion:
//! - within a stack, a heal waits while a dependency of its service is being
//!   healed (queued, applied or watched), as `depends_on` orders an apply;
//! - heals share the host among themselves, applying a new revision excludes
//!   them: in this process a fair read/write lock (heals read, a revision
//!   apply writes; a waiting apply holds new heals back), and across
//!   processes the state directory's lock file, `flock`ed shared by a heal and
//!   exclusive by a revision apply, `plimsoll reconcile` and every other
//!   command that changes the host, so the CLI's guarantee is unchanged;
//! - `heal.json`, the audit log and the stored revisions are written one
//!   heal at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock, Semaphore};

use super::choose::{self, Drift, When};
use super::controller::{Error, Object, error_policy};
use super::heal::{self, Decision, HealBook, HealPolicy, Recorded};
use super::notify::{Notification, Notifier};
use super::settle::{self, HealVerdict, Settled};
use super::{Shared, Target, Trigger, self_heal, unix_now};
use crate::apply::Cancel;
use crate::events::LogProgress;
use crate::live::Engine;
use crate::plan::{Action, ActionKind, Plan};
use crate::reconcile::{self, Observed};
use crate::spec::config::NotificationEvent;
use crate::state::{StateDir, StateError};

/// Scoped observations running at once (a new revision's apply wakes many
/// heals at once, each finding its service in sync).
const OBSERVES: usize = 8;
/// The wait before a heal that could not take the lock or read the engine
/// tries again ([`error_policy`]'s).
fn blocked_retry() -> Duration {
    let blocked = Error::HealBlocked {
        message: String::new(),
    };
    error_policy(Object::Service, &blocked, 1, &HealPolicy::default())
        .requeue_after()
        .unwrap_or_default()
}

/// What heals converge to: the revision this host runs, and the host's name.
#[derive(Clone)]
pub struct Applied {
    pub target: Arc<Target>,
    pub host: String,
}

/// The host held for applying a revision: no heal runs meanwhile.
pub struct Exclusive {
    _file: crate::state::Lock,
    _heals: OwnedRwLockWriteGuard<()>,
}

/// The host held by a heal (or a check), shared with other heals.
pub struct HealLock {
    _file: crate::state::Lock,
    _heals: OwnedRwLockReadGuard<()>,
}

/// The host as the loop holds it: exclusively to apply a revision, shared for a check.
pub enum Held {
    Exclusive { _held: Exclusive },
    Shared { _held: HealLock },
}

/// The heal scheduler; cheap to clone (clones share everything).
#[derive(Clone)]
pub struct Healer(Arc<Inner>);

/// A [`Healer`] that does not keep it alive ([`Shared`] holds one: the healer holds it).
pub struct WeakHealer(std::sync::Weak<Inner>);

impl WeakHealer {
    pub fn upgrade(&self) -> Option<Healer> {
        self.0.upgrade().map(Healer)
    }
}

struct Inner {
    engine: Engine,
    state: StateDir,
    shared: Arc<Shared>,
    notifier: Notifier,
    cancel: Cancel,
    lock_timeout: Duration,
    source_name: String,
    /// How many services of a wave an apply changes at once (`--parallel`).
    parallel: crate::apply::Parallel,
    host: Arc<RwLock<()>>,
    /// `heal.json` read-modify-write, one at a time.
    book: tokio::sync::Mutex<()>,
    observes: Semaphore,
    /// Services queued or being healed, by key: whether another check is due after.
    slots: Mutex<BTreeMap<String, bool>>,
    /// Told whenever a service leaves `slots`.
    freed: tokio::sync::Notify,
    applied: Mutex<Option<Applied>>,
    /// Services an operator asked to revert (the dashboard): healed once
    /// whatever self-heal, its backoff or its giving up say.
    reverts: Mutex<BTreeSet<String>>,
    /// Drift already reported, by key, so a lasting drift is notified once.
    reported: Mutex<BTreeMap<String, Vec<String>>>,
    /// To the loop: a heal ended, status is stale.
    triggers: UnboundedSender<Trigger>,
}

impl Healer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        engine: Engine,
        state: StateDir,
        shared: Arc<Shared>,
        notifier: Notifier,
        cancel: Cancel,
        lock_timeout: Duration,
        source_name: String,
        parallel: crate::apply::Parallel,
        triggers: UnboundedSender<Trigger>,
    ) -> Healer {
        Healer(Arc::new(Inner {
            engine,
            state,
            shared,
            notifier,
            cancel,
            lock_timeout,
            source_name,
            parallel,
            host: Arc::new(RwLock::new(())),
            book: tokio::sync::Mutex::new(()),
            observes: Semaphore::new(OBSERVES),
            slots: Mutex::new(BTreeMap::new()),
            freed: tokio::sync::Notify::new(),
            applied: Mutex::new(None),
            reverts: Mutex::new(BTreeSet::new()),
            reported: Mutex::new(BTreeMap::new()),
            triggers,
        }))
    }

    pub fn downgrade(&self) -> WeakHealer {
        WeakHealer(Arc::downgrade(&self.0))
    }

    /// The state directory.
    pub(super) fn state(&self) -> &StateDir {
        &self.0.state
    }

    /// Observes `stack` (its `service`, or all of it) of the applied revision
    /// as a heal does, sharing the heals' bound on observations at once;
    /// without the lock (looking changes nothing).
    pub(super) async fn look<'d>(
        &self,
        applied: &'d Applied,
        stack: &str,
        service: Option<&str>,
    ) -> Result<Observed<'d>, Error> {
        let _permit = self.0.observes.acquire().await;
        self.observe(applied, stack, service).await
    }

    /// The revision heals converge to (`None`: none is applied yet, events wait for the loop).
    pub fn set_applied(&self, applied: Option<Applied>) {
        *self.0.applied.lock().unwrap_or_else(|e| e.into_inner()) = applied;
    }

    pub(super) fn applied(&self) -> Option<Applied> {
        self.0
            .applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn is_active(&self) -> bool {
        self.applied().is_some()
    }

    /// Takes the host for applying a revision: waits for the heals applying
    /// now (not for those watching a container), then the lock file, exclusive.
    pub async fn exclusive(&self) -> Result<Exclusive, StateError> {
        let heals = self.0.host.clone().write_owned().await;
        let file = self.lock_file(false).await?;
        Ok(Exclusive {
            _file: file,
            _heals: heals,
        })
    }

    /// Takes the host shared with other heals.
    pub async fn shared(&self) -> Result<HealLock, StateError> {
        let heals = self.0.host.clone().read_owned().await;
        let file = self.lock_file(true).await?;
        Ok(HealLock {
            _file: file,
            _heals: heals,
        })
    }

    async fn lock_file(&self, shared: bool) -> Result<crate::state::Lock, StateError> {
        let state = self.0.state.clone();
        let timeout = self.0.lock_timeout;
        tokio::task::spawn_blocking(move || {
            let waiting = |holder: &str| tracing::info!("waiting for the lock held by {holder}");
            if shared {
                state.lock_shared(timeout, &waiting)
            } else {
                state.lock(timeout, &waiting)
            }
        })
        .await
        .expect("locking does not panic")
    }

    /// Waits until no heal is applying (the agent is stopping); heals that
    /// start later wait for the returned guard.
    pub async fn quiesce(&self) -> OwnedRwLockWriteGuard<()> {
        self.0.host.clone().write_owned().await
    }

    /// Asks for a heal of `stack/service`: queued, or coalesced into the one in flight.
    pub fn request(&self, stack: &str, service: &str) {
        self.request_all(&[(stack.to_string(), service.to_string())]);
    }

    /// Reverts `stack/service` to the applied revision now, through the
    /// same plan and apply as a heal (recorded in the audit log), even when
    /// self-heal is off for it, backing off or given up.
    pub fn revert(&self, stack: &str, service: &str) {
        self.0
            .reverts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(heal::key(stack, service));
        self.request(stack, service);
    }

    /// [`Healer::request`] for several services at once: all are queued
    /// before any starts, so dependency order holds among them.
    pub fn request_all(&self, services: &[(String, String)]) {
        let mut start = Vec::new();
        {
            let mut slots = self.0.slots.lock().unwrap_or_else(|e| e.into_inner());
            for (stack, service) in services {
                let key = heal::key(stack, service);
                match slots.get_mut(&key) {
                    Some(again) => *again = true,
                    None => {
                        slots.insert(key, false);
                        start.push((stack.clone(), service.clone()));
                    }
                }
            }
        }
        for (stack, service) in start {
            let healer = self.clone();
            tokio::spawn(async move { healer.run(stack, service).await });
        }
    }

    /// Whether `key` is queued or being healed.
    fn busy(&self, key: &str) -> bool {
        self.0
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(key)
    }

    /// One service's task: heals, then again while events came meanwhile.
    async fn run(self, stack: String, service: String) {
        let key = heal::key(&stack, &service);
        loop {
            if !self.0.cancel.is_cancelled() {
                self.wait_for_dependencies(&stack, &service).await;
                self.heal(&stack, &service, &key).await;
            }
            let again = {
                let mut slots = self.0.slots.lock().unwrap_or_else(|e| e.into_inner());
                match slots.get_mut(&key) {
                    Some(again) if *again && !self.0.cancel.is_cancelled() => {
                        *again = false;
                        true
                    }
                    _ => {
                        slots.remove(&key);
                        false
                    }
                }
            };
            if !again {
                self.0.freed.notify_waiters();
                return;
            }
        }
    }

    /// Waits while a service `service` depends on (in its stack) is queued or being healed.
    async fn wait_for_dependencies(&self, stack: &str, service: &str) {
        let dependencies: Vec<String> = self
            .applied()
            .and_then(|a| {
                let desired = &a.target.desired;
                // As this host runs it (its environment's variant).
                let s = desired.stacks.iter().find(|s| s.name == stack)?;
                let s = desired.stack_on(s, &a.host);
                let graph = crate::graph::StackGraph::build(s).ok()?;
                Some(
                    graph
                        .dependencies(service)
                        .into_iter()
                        .map(|(d, _)| heal::key(stack, &d))
                        .collect(),
                )
            })
            .unwrap_or_default();
        loop {
            let freed = self.0.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let Some(busy) = dependencies.iter().find(|d| self.busy(d)) else {
                return;
            };
            tracing::debug!("{stack}/{service}: waiting for the heal of {busy}");
            freed.await;
        }
    }

    /// A new check of `key` after `wait` (backing off, the lock was busy).
    fn retry_later(&self, stack: &str, service: &str, wait: Duration) {
        let healer = self.clone();
        let (stack, service) = (stack.to_string(), service.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(wait.max(Duration::from_secs(1))).await;
            if !healer.0.cancel.is_cancelled() {
                healer.request(&stack, &service);
            }
        });
    }

    /// Observes one service and heals its drift, then watches and records the outcome.
    async fn heal(&self, stack: &str, service: &str, key: &str) {
        let lock = match self.shared().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("{key}: cannot check for drift now: {e}; trying again");
                return self.retry_later(stack, service, blocked_retry());
            }
        };
        // Read under the lock: a revision applied meanwhile is the one to heal to.
        let Some(applied) = self.applied() else {
            return;
        };
        let desired = &applied.target.desired;
        let observed = {
            let _permit = self.0.observes.acquire().await;
            self.observe(&applied, stack, Some(service)).await
        };
        let observed = match observed {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!("{key}: checking for drift failed: {e}; trying again");
                return self.retry_later(stack, service, blocked_retry());
            }
        };
        let silences = crate::drift::Silences::load(&self.0.state).unwrap_or_else(|e| {
            tracing::error!("{e}: no drift is silenced");
            Default::default()
        });
        let drift = choose::drift(
            &observed.plan,
            observed.applicable_plan(),
            choose::unhealthy_restarts(
                &observed.live.containers,
                &observed.stacks,
                &observed.paused,
                &observed.plan,
            ),
            &silences,
            jiff::Timestamp::now(),
        );
        let drifted = drift.drifted();
        self.report_one(&observed, key, &drift.reported);
        let heals = drift.heals();
        let revert = self
            .0
            .reverts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        if heals.is_empty() || !(revert || self_heal(desired, stack, Some(service))) {
            return self.stale(drifted, key);
        }
        match choose::when(self.decide(key).await, unix_now()) {
            _ if revert => tracing::info!("{key}: reverting to git, as asked"),
            When::Now => {}
            When::After(wait) => {
                self.retry_later(stack, service, wait);
                return self.stale(drifted, key);
            }
            When::Never => return self.stale(drifted, key),
        }
        let result = self
            .apply(&applied, &observed, &drift.to_heal, &heals, revert)
            .await;
        drop(lock);
        let reasons: Vec<String> = heals.iter().flat_map(|a| a.reasons.clone()).collect();
        let verdict = match result {
            Err(e) => HealVerdict::Failed(e.to_string()),
            Ok(()) => {
                let names: Vec<String> = heals
                    .iter()
                    .filter(|a| a.action != ActionKind::Remove)
                    .map(|a| a.target.clone())
                    .collect();
                let timeout = observed
                    .stacks
                    .first()
                    .map_or(Duration::from_secs(60), |s| {
                        crate::apply::gate_timeout(s, service)
                    });
                settle::verdict(&self.0.engine, &names, timeout, &self.0.cancel).await
            }
        };
        let settled = Settled {
            stack: stack.to_string(),
            service: service.to_string(),
            reasons,
            verdict,
        };
        if let Err(e) = self.record(&applied, settled).await {
            tracing::error!("{key}: recording the heal's outcome failed: {e}");
        }
        self.stale(true, key);
    }

    /// Tells the loop the status of `key` is stale (it drifted).
    fn stale(&self, drifted: bool, key: &str) {
        if drifted {
            let _ = self
                .0
                .triggers
                .send(Trigger::Publish(format!("heal of {key}")));
        }
    }

    async fn observe<'d>(
        &self,
        applied: &'d Applied,
        stack: &str,
        service: Option<&str>,
    ) -> Result<Observed<'d>, Error> {
        let state = |source| Error::State { source };
        // What restarted containers were restarted with (`on_mount_change: restart`).
        let mounts = self.0.state.applied_mounts().map_err(state)?;
        let mut observed = reconcile::observe_scoped(
            self.0.engine.clone(),
            &applied.target.desired,
            &applied.host,
            stack,
            service,
            &mounts,
        )
        .await
        .map_err(|source| Error::Engine { source })?;
        let frozen = self.0.state.paused().map_err(state)?;
        if frozen.contains(stack) {
            observed.paused.insert(stack.to_string());
        }
        Ok(observed)
    }

    async fn decide(&self, key: &str) -> Decision {
        let _book = self.0.book.lock().await;
        match self.0.state.read_json::<HealBook>(heal::FILE) {
            Ok(book) => book.decide(key, unix_now()),
            Err(e) => {
                tracing::error!("{e}");
                Decision::Wait(unix_now() + blocked_retry().as_secs() as i64)
            }
        }
    }

    /// Applies a heal's plan (recorded like every apply). Err = why it failed (masked).
    async fn apply(
        &self,
        applied: &Applied,
        observed: &Observed<'_>,
        plan: &Plan,
        heals: &[Action],
        revert: bool,
    ) -> Result<(), Error> {
        let target = &applied.target;
        let masker = &target.desired.masker;
        for a in heals {
            self.0.shared.metrics.drift_detected(settle::drift_kind(a));
        }
        let origin = reconcile::Origin {
            revision: target.revision.clone(),
            source: if revert {
                format!("{} (revert asked on the dashboard)", self.0.source_name)
            } else {
                self.0.source_name.clone()
            },
            rollback: false,
            audit: target.desired.config.audit,
            images: target.desired.config.images,
        };
        let progress = LogProgress::new(masker.clone());
        reconcile::apply_recorded(
            observed,
            plan,
            masker,
            &self.0.state,
            &origin,
            &progress,
            &self.0.cancel,
            self.0.parallel,
        )
        .await
        .map(|_| ())
        .map_err(|e| Error::HealFailed {
            message: masker.mask(&e.to_string()).into_owned(),
        })
    }

    /// Records a heal's verdict in the counters (under the shared lock, one
    /// at a time); schedules the next check when it backs off; a service
    /// given up on raises an alert.
    async fn record(&self, applied: &Applied, a: Settled) -> Result<(), Error> {
        let key = heal::key(&a.stack, &a.service);
        let result = match a.verdict {
            HealVerdict::Healed => Ok(()),
            HealVerdict::Failed(e) => Err(e),
            HealVerdict::Gone => {
                tracing::info!("{key}: removed while it was being healed; checking again");
                let action = error_policy(Object::Service, &Error::Gone, 1, &HealPolicy::default());
                self.retry_later(
                    &a.stack,
                    &a.service,
                    action.requeue_after().unwrap_or_default(),
                );
                return Ok(());
            }
            HealVerdict::Interrupted => return Ok(()),
        };
        let desired = &applied.target.desired;
        let policy = HealPolicy::from_config(&desired.config.agent);
        let _lock = self
            .shared()
            .await
            .map_err(|source| Error::LockBusy { source })?;
        let _book = self.0.book.lock().await;
        let mut book: HealBook = self
            .0
            .state
            .read_json(heal::FILE)
            .map_err(|source| Error::State { source })?;
        let now = unix_now();
        let masked = result.map_err(|e| desired.masker.mask(&e).into_owned());
        let ok = masked.is_ok();
        self.0
            .shared
            .metrics
            .heal_attempt(if ok { "succeeded" } else { "failed" });
        let recorded = book.record(&key, now, masked.clone(), &policy);
        self.0
            .state
            .write_json(heal::FILE, &book)
            .map_err(|source| Error::State { source })?;
        let wait = book.services[&key].not_before.unwrap_or(now) - now;
        let later = Duration::from_secs(wait.max(1) as u64);
        match recorded {
            Recorded::Healed => tracing::info!("{key}: healed ({})", a.reasons.join("; ")),
            Recorded::CrashLoop => {
                tracing::warn!(
                    "{key}: healed again, but it keeps drifting (crash loop): next heal in {wait}s at the earliest"
                );
                self.retry_later(&a.stack, &a.service, later);
            }
            Recorded::Failed => {
                tracing::warn!(
                    "{key}: heal attempt {} of {} failed: {}; next attempt in {wait}s",
                    book.services[&key].failures,
                    policy.attempts,
                    masked.as_ref().err().map_or("", String::as_str)
                );
                self.retry_later(&a.stack, &a.service, later);
            }
            Recorded::GaveUp => {
                let error = masked.err().unwrap_or_default();
                let message = format!(
                    "{key}: self-heal gave up after {} failed attempts (last: {error}); fix it in git or by hand, then `plimsoll heal --reset {key}`",
                    policy.attempts
                );
                tracing::error!(alert = true, "{message}");
                self.notify(
                    applied,
                    NotificationEvent::SelfHealGaveUp,
                    Some(&a.stack),
                    Some(&a.service),
                    message,
                );
            }
        }
        Ok(())
    }

    fn notify(
        &self,
        applied: &Applied,
        event: NotificationEvent,
        stack: Option<&str>,
        service: Option<&str>,
        message: String,
    ) {
        let target = &applied.target;
        self.0.notifier.send(
            Notification {
                event,
                host: applied.host.clone(),
                revision: Some(target.revision.clone()),
                stack: stack.map(str::to_string),
                service: service.map(str::to_string),
                message,
            },
            &target.desired.masker,
        );
    }

    /// Logs, counts and notifies drift of the whole host not reported before
    /// (a full check); drift no longer seen is forgotten. A service being
    /// healed is its heal's to report (half replaced, it looks drifted).
    pub fn report_all(&self, applied: &Applied, observed: &Observed<'_>, plan: &Plan) {
        let mut now: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for a in &plan.actions {
            let Some(service) = &a.service else { continue };
            now.insert(heal::key(&a.stack, service), a.reasons.clone());
        }
        let new: Vec<(String, Vec<String>)> = {
            let busy: BTreeSet<String> = self
                .0
                .slots
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .cloned()
                .collect();
            let mut reported = self.0.reported.lock().unwrap_or_else(|e| e.into_inner());
            for key in &busy {
                match reported.get(key) {
                    Some(r) => now.insert(key.clone(), r.clone()),
                    None => now.remove(key),
                };
            }
            let new = now
                .iter()
                .filter(|(k, r)| reported.get(*k) != Some(r))
                .map(|(k, r)| (k.clone(), r.clone()))
                .collect();
            *reported = now;
            new
        };
        for (key, reasons) in new {
            self.drifted(applied, observed, &key, &reasons);
        }
    }

    /// [`Healer::report_all`] for one service (a heal's scoped check).
    fn report_one(&self, observed: &Observed<'_>, key: &str, plan: &Plan) {
        let reasons: Vec<String> = plan
            .actions
            .iter()
            .filter(|a| a.service.is_some())
            .flat_map(|a| a.reasons.clone())
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect();
        let new = {
            let mut reported = self.0.reported.lock().unwrap_or_else(|e| e.into_inner());
            if reasons.is_empty() {
                reported.remove(key);
                false
            } else {
                reported.insert(key.to_string(), reasons.clone()).as_ref() != Some(&reasons)
            }
        };
        if let (true, Some(applied)) = (new, self.applied()) {
            self.drifted(&applied, observed, key, &reasons);
        }
    }

    fn drifted(&self, applied: &Applied, observed: &Observed<'_>, key: &str, reasons: &[String]) {
        let (stack, service) = key.split_once('/').expect("keys are stack/service");
        let paused = observed.paused.contains(stack);
        let message = format!(
            "{key} drifted: {}{}",
            reasons.join("; "),
            if paused { " (paused: not changed)" } else { "" }
        );
        tracing::warn!("{message}");
        self.notify(
            applied,
            NotificationEvent::DriftDetected,
            Some(stack),
            Some(service),
            message,
        );
    }

    /// Forgets that the drift of `keys` (`stack/service`) was reported, so
    /// that the next check reports it again (a silence over it expired).
    pub fn forget_reported(&self, keys: &[String]) {
        let mut reported = self.0.reported.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            reported.remove(key);
        }
    }

    /// The drift a full check found, handed to the heals (each service its own).
    pub fn heal_drift(&self, drift: &Drift) {
        let services = drift.services();
        if !services.is_empty() {
            self.request_all(&services);
        }
    }
}
