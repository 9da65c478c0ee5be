//! Self-heal bookkeeping: per service, how many heals failed in a row, when
//! the next one may run, whether the agent gave up. Plain data with pure
//! decisions; the agent keeps it in `<state>/heal.json` so that counters
//! survive a restart, and resets it on a new revision or `plimsoll heal --reset`.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::controller::{Error, Object, error_policy};

/// The state file in the state directory.
pub const FILE: &str = "heal.json";

/// How healing backs off and when it gives up (`agent:` in plimsoll.yaml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealPolicy {
    /// Failed heals of one service in a row before giving up.
    pub attempts: u32,
    /// Wait after the first failure; doubles per failure.
    pub backoff: Duration,
    /// More successful heals than this within `crash_window` is a crash loop.
    pub crash_heals: u32,
    pub crash_window: Duration,
}

impl Default for HealPolicy {
    fn default() -> Self {
        HealPolicy {
            attempts: 3,
            backoff: Duration::from_secs(10),
            crash_heals: 5,
            crash_window: Duration::from_secs(600),
        }
    }
}

impl HealPolicy {
    pub fn from_config(c: &crate::spec::config::AgentConfig) -> HealPolicy {
        let d = HealPolicy::default();
        HealPolicy {
            attempts: c.heal_attempts.unwrap_or(d.attempts).max(1),
            backoff: c.heal_backoff.map_or(d.backoff, |g| g.0),
            crash_heals: c.crash_loop_heals.unwrap_or(d.crash_heals),
            crash_window: c.crash_loop_window.map_or(d.crash_window, |g| g.0),
        }
    }

    /// The wait after the `n`-th consecutive `error` (1-based): the agent's
    /// [`error_policy`] decides.
    fn delay(&self, error: &Error, n: u32) -> Duration {
        error_policy(Object::Service, error, n, self)
            .requeue_after()
            .unwrap_or_default()
    }
}

/// One service's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceHeal {
    /// Failed heals in a row (reset by a successful one).
    pub failures: u32,
    /// Heals attempted since the counters were last reset.
    pub attempts: u32,
    /// Unix times (seconds) of the recent heals, for crash-loop detection.
    #[serde(default)]
    pub recent: VecDeque<i64>,
    /// No heal before this Unix time.
    #[serde(default)]
    pub not_before: Option<i64>,
    /// The agent stopped healing this service; a new revision or `heal --reset` clears it.
    pub gave_up: bool,
    /// Why the last heal failed.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// What the agent may do about a drifted service now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Heal,
    /// Backing off until this Unix time.
    Wait(i64),
    GaveUp,
}

/// What a recorded heal led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Healed,
    /// Healed, but too often lately: the next heal waits.
    CrashLoop,
    Failed,
    /// This failure was the last allowed one.
    GaveUp,
}

/// The counters of every service, by `stack/service`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealBook {
    /// The revision the counters belong to; a new one starts from zero.
    #[serde(default)]
    pub revision: Option<String>,
    #[serde(default)]
    pub services: BTreeMap<String, ServiceHeal>,
}

pub fn key(stack: &str, service: &str) -> String {
    format!("{stack}/{service}")
}

impl HealBook {
    pub fn decide(&self, key: &str, now: i64) -> Decision {
        match self.services.get(key) {
            None => Decision::Heal,
            Some(s) if s.gave_up => Decision::GaveUp,
            Some(s) => match s.not_before {
                Some(t) if t > now => Decision::Wait(t),
                _ => Decision::Heal,
            },
        }
    }

    /// Records the outcome of one heal of `key` at `now`.
    pub fn record(
        &mut self,
        key: &str,
        now: i64,
        result: Result<(), String>,
        policy: &HealPolicy,
    ) -> Recorded {
        let s = self.services.entry(key.to_string()).or_default();
        s.attempts += 1;
        let window = policy.crash_window.as_secs() as i64;
        s.recent.push_back(now);
        while s.recent.front().is_some_and(|t| now - t > window) {
            s.recent.pop_front();
        }
        match result {
            Ok(()) => {
                s.failures = 0;
                s.last_error = None;
                let over = s.recent.len() as u32;
                if policy.crash_heals > 0 && over > policy.crash_heals {
                    let wait = policy.delay(&Error::CrashLoop, over - policy.crash_heals);
                    s.not_before = Some(now + wait.as_secs() as i64);
                    Recorded::CrashLoop
                } else {
                    s.not_before = None;
                    Recorded::Healed
                }
            }
            Err(message) => {
                s.failures += 1;
                let failed = Error::HealFailed {
                    message: message.clone(),
                };
                s.last_error = Some(message);
                if s.failures >= policy.attempts {
                    s.gave_up = true;
                    s.not_before = None;
                    Recorded::GaveUp
                } else {
                    s.not_before = Some(now + policy.delay(&failed, s.failures).as_secs() as i64);
                    Recorded::Failed
                }
            }
        }
    }

    /// Clears the counters of a stack, or of one service with `stack/service`.
    /// Returns how many services were cleared.
    pub fn reset(&mut self, target: &str) -> usize {
        let before = self.services.len();
        match target.split_once('/') {
            Some(_) => {
                self.services.remove(target);
            }
            None => self
                .services
                .retain(|k, _| k.split_once('/').is_none_or(|(s, _)| s != target)),
        }
        before - self.services.len()
    }

    /// Starts over for a new revision.
    pub fn new_revision(&mut self, revision: &str) {
        if self.revision.as_deref() != Some(revision) {
            self.services.clear();
            self.revision = Some(revision.to_string());
        }
    }

    pub fn gave_up(&self) -> impl Iterator<Item = &str> {
        self.services
            .iter()
            .filter(|(_, s)| s.gave_up)
            .map(|(k, _)| k.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HealPolicy {
        HealPolicy {
            attempts: 3,
            backoff: Duration::from_secs(10),
            crash_heals: 2,
            crash_window: Duration::from_secs(600),
        }
    }

    #[test]
    fn failures_back_off_exponentially_then_give_up() {
        let mut b = HealBook::default();
        let p = policy();
        assert_eq!(b.decide("s/a", 0), Decision::Heal);
        assert_eq!(b.record("s/a", 0, Err("x".into()), &p), Recorded::Failed);
        assert_eq!(b.decide("s/a", 5), Decision::Wait(10));
        assert_eq!(b.decide("s/a", 10), Decision::Heal);
        assert_eq!(b.record("s/a", 10, Err("x".into()), &p), Recorded::Failed);
        assert_eq!(b.decide("s/a", 20), Decision::Wait(30));
        assert_eq!(b.record("s/a", 30, Err("y".into()), &p), Recorded::GaveUp);
        assert_eq!(b.decide("s/a", 10_000), Decision::GaveUp);
        assert_eq!(b.gave_up().collect::<Vec<_>>(), ["s/a"]);
        assert_eq!(b.services["s/a"].last_error.as_deref(), Some("y"));
    }

    #[test]
    fn success_resets_failures_but_a_crash_loop_backs_off() {
        let mut b = HealBook::default();
        let p = policy();
        b.record("s/a", 0, Err("x".into()), &p);
        assert_eq!(b.record("s/a", 10, Ok(()), &p), Recorded::Healed);
        assert_eq!(b.services["s/a"].failures, 0);
        assert_eq!(b.decide("s/a", 11), Decision::Heal);
        // Three heals within the window, more than crash_heals (2): wait.
        assert_eq!(b.record("s/a", 20, Ok(()), &p), Recorded::CrashLoop);
        assert_eq!(b.decide("s/a", 21), Decision::Wait(30));
        assert_eq!(b.record("s/a", 30, Ok(()), &p), Recorded::CrashLoop);
        assert_eq!(b.decide("s/a", 31), Decision::Wait(50));
        // Outside the window the history is forgotten.
        assert_eq!(b.record("s/a", 2000, Ok(()), &p), Recorded::Healed);
    }

    #[test]
    fn reset_by_stack_or_service_and_new_revision() {
        let mut b = HealBook::default();
        let p = policy();
        for k in ["s/a", "s/b", "t/a"] {
            b.record(k, 0, Err("x".into()), &p);
        }
        assert_eq!(b.reset("s/a"), 1);
        assert_eq!(b.reset("s"), 1);
        assert_eq!(b.services.keys().collect::<Vec<_>>(), ["t/a"]);
        b.new_revision("abc");
        assert!(b.services.is_empty());
        b.record("t/a", 0, Err("x".into()), &p);
        b.new_revision("abc");
        assert_eq!(b.services.len(), 1, "the same revision keeps its counters");
    }
}
