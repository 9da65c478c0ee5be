//! The agent as a controller: triggers (timers, webhooks, `/sync`, Docker
//! events, the directory watcher) are coalesced into one [`Work`] and decide
//! only *when* a cycle runs; the cycle reconciles the source (fetch, load) and
//! the host (observe, plan, apply or hand drift to the heals) and returns an
//! [`Action`]; a failure goes through [`error_policy`], the one place every
//! backoff is decided.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::*;

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
            Trigger::Publish(why) => {
                self.publish = true;
                self.reasons.insert(why);
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

    pub(super) async fn main_loop(
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
        let mut s = self.shared.status.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s);
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

    pub(super) async fn cycle(&mut self, work: Work) {
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
}
