//! The agent as a controller, in the shape of kube-rs's: triggers (timers,
//! webhooks, `/sync`, Docker events, the directory watcher) are coalesced
//! into one [`Work`] and decide only *when* a cycle runs; the cycle
//! reconciles the source (fetch, load: [`Object::Source`]) and then the host
//! (observe, plan, apply or hand drift to the heals: [`Object::Host`]), each
//! returning an [`Action`]. A failure goes through [`error_policy`], the one
//! place every backoff is decided: fetch retries, a busy lock, a failed
//! apply, failed heals and crash loops (the heals of one service,
//! [`Object::Service`], are reconciled by [`super::healer`]). Reconciling is
//! idempotent — it converges from whatever is there — so a cycle run for
//! the wrong reason, or twice, does no harm; a periodic resync catches
//! missed events.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::heal::HealPolicy;
use super::*;

/// What the loop does after reconciling an object (kube-rs's `Action`).
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    /// Reconcile the object again after `after`.
    pub fn requeue(after: Duration) -> Action {
        Action {
            requeue_after: Some(after),
        }
    }

    /// Nothing to do until something changes: a trigger, or the periodic
    /// timer (the poll for the source, the resync for the host).
    pub fn await_change() -> Action {
        Action {
            requeue_after: None,
        }
    }

    pub fn requeue_after(self) -> Option<Duration> {
        self.requeue_after
    }
}

/// What is reconciled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    /// The source: fetch the newest revision and load it.
    Source,
    /// The host: converge it to the target revision.
    Host,
    /// One service's heal.
    Service,
}

/// Why reconciling an object failed.
#[derive(Debug, Error)]
pub enum Error {
    /// The source cannot be reached; the last good revision keeps running.
    #[error("{source}")]
    Unreachable {
        #[source]
        source: git::GitError,
    },
    /// The new revision does not load (or its signature is refused): not
    /// retried until a new commit arrives.
    #[error("{reason}")]
    Rejected { revision: String, reason: String },
    /// The host's lock is held by someone else for too long.
    #[error("{source}")]
    LockBusy {
        #[source]
        source: StateError,
    },
    /// Observing the host failed.
    #[error("{source}")]
    Engine {
        #[source]
        source: EngineError,
    },
    /// Reading the state directory failed.
    #[error("{source}")]
    State {
        #[source]
        source: StateError,
    },
    /// Policy `unknown_containers: fail` and such containers run.
    #[error(
        "policy unknown_containers is `fail` and containers not managed by plimsoll run on this host: {list}; remove them, or declare them in git"
    )]
    UnknownContainers { list: String },
    /// The sync failed (the message masked); the next resync tries again.
    #[error("{message}")]
    Sync { message: String },
    /// Applying a new revision failed: it is rejected; when the last good
    /// revision was loaded again, the host converges back to it at once.
    #[error("{message}")]
    ApplyFailed { message: String, reloaded: bool },
    /// A heal could not look at its service (the lock, the engine).
    #[error("{message}")]
    HealBlocked { message: String },
    /// A heal failed (the message masked).
    #[error("{message}")]
    HealFailed { message: String },
    /// A heal succeeded, but the service keeps drifting.
    #[error("healed again, but it keeps drifting (crash loop)")]
    CrashLoop,
    /// The container was removed while it was being healed: new drift.
    #[error("removed while it was being healed")]
    Gone,
}

/// The first wait when the source cannot be reached; doubled per failure.
const FETCH_BACKOFF: Duration = Duration::from_secs(5);
/// The longest wait between two fetches of an unreachable source.
const FETCH_BACKOFF_MAX: Duration = Duration::from_secs(300);
/// The wait before trying a busy lock again, or a heal that could not look.
const BLOCKED_RETRY: Duration = Duration::from_secs(5);
/// The wait before checking a container removed during its heal again.
const GONE_RETRY: Duration = Duration::from_secs(1);
/// The longest wait a heal backs off.
const HEAL_BACKOFF_MAX: Duration = Duration::from_secs(3600);

/// What to do after `error`, the `attempts`-th failure in a row of `object`
/// (1-based): every backoff of the agent.
///
/// - fetches of an unreachable source: 5 s, doubling, at most 5 min;
/// - a busy lock, a heal that could not look: 5 s;
/// - a failed apply whose last good revision is loaded again: at once;
/// - a failed heal: `agent.heal_backoff` (10 s), doubling per failure in a
///   row, at most an hour; a crash loop (more than `agent.crash_loop_heals`
///   heals within `agent.crash_loop_window`) the same, counted from the heals
///   over the limit;
/// - a container removed during its heal: 1 s;
/// - a rejected revision, a failed sync: nothing until something changes
///   (the next poll, a new commit, the periodic resync).
pub fn error_policy(object: Object, error: &Error, attempts: u32, heal: &HealPolicy) -> Action {
    let doubling = |first: Duration, max: Duration| {
        let factor = 1u32 << attempts.saturating_sub(1).min(12);
        Action::requeue((first * factor).min(max))
    };
    match (object, error) {
        (_, Error::Unreachable { .. }) => doubling(FETCH_BACKOFF, FETCH_BACKOFF_MAX),
        (_, Error::LockBusy { .. } | Error::HealBlocked { .. }) => Action::requeue(BLOCKED_RETRY),
        (_, Error::ApplyFailed { reloaded: true, .. }) => Action::requeue(Duration::ZERO),
        (_, Error::HealFailed { .. } | Error::CrashLoop) => {
            doubling(heal.backoff, HEAL_BACKOFF_MAX)
        }
        (_, Error::Gone) => Action::requeue(GONE_RETRY),
        (
            _,
            Error::Rejected { .. }
            | Error::Engine { .. }
            | Error::State { .. }
            | Error::UnknownContainers { .. }
            | Error::Sync { .. }
            | Error::ApplyFailed {
                reloaded: false, ..
            },
        ) => Action::await_change(),
    }
}

/// When the loop reconciles next. Only [`Agent::requeue`] changes it, from
/// the [`Action`]s reconciling returns; the resync timer is the loop's.
#[derive(Debug)]
pub(super) struct Schedule {
    /// The next fetch (git sources).
    pub fetch_at: Instant,
    /// The next periodic check of the host.
    pub resync_at: Instant,
    /// A check sooner than the resync (a retry).
    pub check_at: Option<Instant>,
    /// The end of the next silence to expire (`plimsoll drift --silence`,
    /// the dashboard): its drift is reported and healed again from then.
    pub silence_at: Option<Instant>,
    /// Silences that ended up to this time are dealt with.
    pub silences_seen: jiff::Timestamp,
}

/// The work one cycle does, coalesced from triggers.
#[derive(Debug, Default)]
pub(super) struct Work {
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
            // The loop hands reverts to the healer; one that reaches a cycle
            // (no revision applied yet) is a check.
            Trigger::Revert { stack, service } => {
                self.check = true;
                self.reasons.insert(format!("revert of {stack}/{service}"));
            }
            Trigger::Publish(why) => {
                self.publish = true;
                self.reasons.insert(why);
            }
            Trigger::SilenceEnded(keys) => {
                self.check = true;
                for key in keys {
                    self.reasons.insert(format!("silence of {key} expired"));
                }
            }
        }
    }
}

impl Agent {
    pub(super) fn interval(&self) -> Duration {
        self.opts
            .interval
            .or_else(|| {
                self.target
                    .as_ref()
                    .and_then(|t| t.desired.config.agent.interval.map(|d| d.0))
            })
            .unwrap_or(DEFAULT_INTERVAL)
    }

    pub(super) fn resync(&self) -> Duration {
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
    pub(super) fn jittered(&self, d: Duration) -> Duration {
        let spread = d.as_millis() as u64 / 5;
        if spread == 0 {
            return d;
        }
        d - Duration::from_millis(spread / 2) + Duration::from_millis(random_u64() % spread)
    }

    /// The wait before the first poll after the start: a random part of the
    /// interval, so agents started together (a fleet rollout, a power cut)
    /// spread their polls over the interval instead of polling in step.
    pub(super) fn splayed(&self, d: Duration) -> Duration {
        let ms = (d.as_millis() as u64).max(1);
        Duration::from_millis(1 + random_u64() % ms)
    }

    /// Waits for triggers and timers, coalesces what arrived and runs one
    /// cycle, until `shutdown`. Decides when, never what.
    pub(super) async fn main_loop(
        &mut self,
        mut rx: UnboundedReceiver<Trigger>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
        tx: UnboundedSender<Trigger>,
    ) {
        let _ = tx.send(Trigger::Fetch("start"));
        self.schedule.resync_at = Instant::now() + self.resync();
        self.schedule.silence_at = self.next_silence_end();
        loop {
            let polling = matches!(self.opts.source, Source::Git { .. });
            let fetch_at = if polling {
                self.schedule.fetch_at
            } else {
                Instant::now() + Duration::from_secs(86_400)
            };
            let resync_at = self.schedule.resync_at;
            let check_at = self
                .schedule
                .check_at
                .map_or(resync_at, |c| c.min(resync_at));
            let silence_at = self
                .schedule
                .silence_at
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
            let first = tokio::select! {
                t = rx.recv() => match t { Some(t) => t, None => return },
                _ = tokio::time::sleep_until(fetch_at.into()) => Trigger::Fetch("poll"),
                _ = tokio::time::sleep_until(check_at.into()) => Trigger::Resync,
                _ = tokio::time::sleep_until(silence_at.into()) => self.silences_ended(),
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
                    Trigger::Revert { stack, service } => {
                        if self.healer.is_active() && self.concerns(&stack) {
                            self.healer.revert(&stack, &service);
                        } else {
                            tracing::warn!(
                                "revert of {stack}/{service}: no revision of it is applied on this host; nothing to revert to"
                            );
                        }
                    }
                    t => work.add(t),
                }
            }
            if work.reasons.is_empty() {
                continue;
            }
            if work.reasons.contains("resync") {
                self.schedule.resync_at = Instant::now() + self.resync();
                self.schedule.check_at = None;
            }
            // Events that arrive meanwhile (plimsoll's own changes among them)
            // are checked by the next cycle: a check that finds nothing is cheap.
            self.cycle(work).await;
            if *shutdown.borrow() || self.cancel.is_cancelled() {
                return;
            }
            // A cycle follows every silence added or lifted on the dashboard.
            self.schedule.silence_at = self.next_silence_end();
        }
    }

    /// When the next silence ends (one that ended unseen: now).
    fn next_silence_end(&self) -> Option<Instant> {
        let silences = crate::drift::Silences::load(&self.state)
            .inspect_err(|e| tracing::error!("{e}: silences are not followed"))
            .ok()?;
        let end = silences.next_end(self.schedule.silences_seen)?;
        let wait = jiff::Timestamp::now().duration_until(end);
        // A few milliseconds after: at the end itself it is still in force.
        let wait = Duration::try_from(wait).unwrap_or_default() + Duration::from_millis(5);
        Some(Instant::now() + wait)
    }

    /// A silence ended: audited, its drift to be reported again (it was
    /// reported, if at all, before the silence) and healed as any, by a
    /// check of the host; which also publishes the status.
    fn silences_ended(&mut self) -> Trigger {
        let now = jiff::Timestamp::now();
        let silences = crate::drift::Silences::load(&self.state).unwrap_or_default();
        let ended = silences.ended(self.schedule.silences_seen, now);
        self.schedule.silences_seen = now;
        self.schedule.silence_at = None;
        let mut keys = Vec::new();
        for s in ended {
            let key = heal::key(&s.stack, &s.service);
            tracing::info!(
                "{key}: the silence of its drift expired ({}); it is reported and healed again",
                s.reason
            );
            if let Err(e) = crate::drift::Silences::audit_expired(&self.state, s) {
                tracing::error!("{key}: {e}");
            }
            keys.push(key);
        }
        if keys.is_empty() {
            // Lifted before it ended; the status may still say silenced.
            return Trigger::Publish("a silence ended".into());
        }
        self.healer.forget_reported(&keys);
        Trigger::SilenceEnded(keys)
    }

    /// Schedules the next reconcile of `object` from `action`: the one place
    /// the loop's timers follow a reconcile. Waiting for a change means the
    /// next poll (the interval with jitter; a random part of it at the
    /// start) for the source, the periodic resync for the host.
    fn requeue(&mut self, object: Object, action: Action, start: bool) {
        let now = Instant::now();
        match (object, action.requeue_after()) {
            (Object::Source, Some(after)) => self.schedule.fetch_at = now + after,
            (Object::Source, None) => {
                let interval = self.interval();
                let wait = if start {
                    self.splayed(interval)
                } else {
                    self.jittered(interval)
                };
                self.schedule.fetch_at = now + wait;
            }
            (Object::Host, Some(after)) => self.schedule.check_at = Some(now + after),
            (Object::Host, None) => {}
            (Object::Service, _) => unreachable!("heals schedule themselves"),
        }
    }

    /// Reconciles the source, then schedules its next fetch.
    async fn reconcile_source(&mut self, start: bool) -> Result<(), Error> {
        let result = self.refresh().await;
        let action = match &result {
            Ok(()) | Err(Error::Rejected { .. }) => {
                self.fetch_failures = 0;
                Action::await_change()
            }
            Err(e) => {
                self.fetch_failures += 1;
                let policy = self.heal_policy();
                error_policy(Object::Source, e, self.fetch_failures, &policy)
            }
        };
        if let Err(e @ Error::Unreachable { .. }) = &result {
            let wait = action.requeue_after().unwrap_or_default();
            let message = e.to_string();
            tracing::warn!(
                "{message}; keeping the last good revision, retrying in {}s",
                wait.as_secs()
            );
            self.set_status(|s| s.source_error = Some(message));
        }
        self.requeue(Object::Source, action, start);
        result
    }

    /// The heal policy of the target revision (`agent:` in plimsoll.yaml).
    pub(super) fn heal_policy(&self) -> HealPolicy {
        self.target.as_ref().map_or_else(HealPolicy::default, |t| {
            HealPolicy::from_config(&t.desired.config.agent)
        })
    }

    /// Events of stacks this agent does not manage (another agent's, a test's) are not its business.
    pub(super) fn concerns(&self, stack: &str) -> bool {
        self.target
            .as_ref()
            .is_none_or(|t| t.desired.stacks.iter().any(|s| s.name == stack))
    }

    pub(super) fn notify(
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

    pub(super) fn set_status(&self, f: impl FnOnce(&mut AgentStatus)) {
        self.shared.set_status(f);
    }

    pub(super) fn finish(
        &self,
        started: Instant,
        result: &str,
        trigger: &str,
        error: Option<String>,
    ) {
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

    /// One cycle: the source when a fetch is due, then the host.
    pub(super) async fn cycle(&mut self, work: Work) {
        let started = Instant::now();
        let trigger = work.reasons.iter().cloned().collect::<Vec<_>>().join(", ");
        if work.fetch
            && let Err(Error::Rejected { reason, .. }) =
                self.reconcile_source(work.reasons.contains("start")).await
        {
            self.finish(started, "rejected", &trigger, Some(reason));
            if self.target.is_none() {
                return;
            }
        }
        let Some(target) = self.target.clone() else {
            return;
        };
        if self.target_rejected() {
            return;
        }
        if !self.is_deploy() && !work.check && !work.fetch {
            if work.publish {
                self.refresh_status().await;
                self.finish(started, "succeeded", &trigger, None);
            }
            return;
        }
        let result = self.reconcile(&target).await;
        let action = match &result {
            Ok(action) => {
                self.host_failures = 0;
                *action
            }
            Err(e) => {
                self.host_failures += 1;
                let policy = self.heal_policy();
                error_policy(Object::Host, e, self.host_failures, &policy)
            }
        };
        self.requeue(Object::Host, action, false);
        match result {
            Ok(_) => self.finish(started, "succeeded", &trigger, None),
            Err(e) => self.finish(started, "failed", &trigger, Some(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn after(object: Object, error: &Error, attempts: u32) -> Option<Duration> {
        error_policy(object, error, attempts, &HealPolicy::default()).requeue_after()
    }

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    #[test]
    fn unreachable_sources_back_off_from_5s_doubling_to_5min() {
        let unreachable = || Error::Unreachable {
            source: git::GitError::Unreachable {
                url: "u".into(),
                detail: "down".into(),
            },
        };
        let waits: Vec<Option<Duration>> = (1..=8)
            .map(|n| after(Object::Source, &unreachable(), n))
            .collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300].map(secs).to_vec());
    }

    #[test]
    fn heals_back_off_by_their_policy_and_blocked_work_retries_in_5s() {
        let failed = Error::HealFailed {
            message: "x".into(),
        };
        let waits: Vec<Option<Duration>> = (1..=3)
            .map(|n| after(Object::Service, &failed, n))
            .collect();
        assert_eq!(waits, [10, 20, 40].map(secs).to_vec());
        assert_eq!(after(Object::Service, &Error::CrashLoop, 2), secs(20));
        assert_eq!(
            after(Object::Service, &failed, 20),
            secs(3600),
            "an hour at most"
        );
        let busy = Error::HealBlocked {
            message: "busy".into(),
        };
        assert_eq!(after(Object::Service, &busy, 1), secs(5));
        assert_eq!(after(Object::Service, &Error::Gone, 1), secs(1));
    }

    #[test]
    fn a_failed_apply_converges_back_at_once_and_other_failures_await_change() {
        let reloaded = Error::ApplyFailed {
            message: "x".into(),
            reloaded: true,
        };
        assert_eq!(after(Object::Host, &reloaded, 1), Some(Duration::ZERO));
        let stuck = Error::ApplyFailed {
            message: "x".into(),
            reloaded: false,
        };
        assert_eq!(after(Object::Host, &stuck, 1), None);
        let sync = Error::Sync {
            message: "x".into(),
        };
        assert_eq!(after(Object::Host, &sync, 3), None, "the resync retries");
        let rejected = Error::Rejected {
            revision: "r".into(),
            reason: "bad".into(),
        };
        assert_eq!(after(Object::Source, &rejected, 1), None, "a new commit");
        assert_eq!(
            Action::requeue(Duration::ZERO).requeue_after(),
            Some(Duration::ZERO)
        );
        assert_eq!(Action::await_change().requeue_after(), None);
    }
}
