//! Watching a heal: which drift a service shows (stopped, unhealthy), and
//! whether the container a heal started runs (and is healthy) and stays up.
//! The verdict goes to the heal's bookkeeping ([`super::healer`]). The
//! engine is read through `live` and polled through `apply::wait_until`.

use std::time::{Duration, Instant};

use thiserror::Error;

use crate::apply::{Cancel, Polling, WaitError, wait_until};
use crate::health::{self, Health, RunState, Status, Verdict};
use crate::live::Engine;
use crate::plan::{Action, ActionKind};

/// How a healed service turned out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub stack: String,
    pub service: String,
    /// Why it was healed.
    pub reasons: Vec<String>,
    pub verdict: HealVerdict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealVerdict {
    /// Running (and healthy) and staying up.
    Healed,
    Failed(String),
    /// Removed by hand meanwhile: new drift, not a failed heal.
    Gone,
    /// The agent is stopping: no verdict.
    Interrupted,
}

/// The drift kind an action stands for.
pub fn drift_kind(a: &Action) -> &'static str {
    match a.action {
        ActionKind::Create => "missing",
        ActionKind::Start => "stopped",
        ActionKind::Restart if a.reasons.iter().any(|r| r.starts_with("unhealthy")) => "unhealthy",
        _ => "changed",
    }
}

/// Why a healed container did not settle.
#[derive(Debug, Error)]
pub enum NotSettled {
    #[error("{name} is unhealthy")]
    Unhealthy { name: String },
    #[error("{name} is not running (exit code {code})")]
    NotRunning { name: String, code: i64 },
    #[error("{name} stopped again right after it was started (exit code {code})")]
    StoppedAgain { name: String, code: i64 },
    #[error("{name} did not become healthy within {}s", timeout.as_secs())]
    TimedOut { name: String, timeout: Duration },
    /// Interrupted, gone, or the engine failed until the timeout.
    #[error(transparent)]
    Wait(WaitError),
}

/// The pause between two inspects of a healed container.
const POLL: Duration = Duration::from_millis(250);

/// Whether container `name` is gone or being removed.
async fn removed(engine: &Engine, name: &str) -> bool {
    match engine.inspect_if_there(name).await {
        Ok(None) => true,
        Ok(Some(s)) => s.status == Status::Removing,
        Err(_) => false,
    }
}

/// The verdict on a heal that started (or restarted, or replaced) the
/// containers `names`: each runs (and is healthy) within `timeout` and stays up.
pub async fn verdict(
    engine: &Engine,
    names: &[String],
    timeout: Duration,
    cancel: &Cancel,
) -> HealVerdict {
    for name in names {
        match settled(engine, name, timeout, cancel).await {
            Ok(()) => {}
            // `docker rm -f` sends kill and die before destroy.
            Err(_) if removed(engine, name).await => return HealVerdict::Gone,
            Err(_) if cancel.is_cancelled() => return HealVerdict::Interrupted,
            Err(e) => return HealVerdict::Failed(e.to_string()),
        }
    }
    HealVerdict::Healed
}

/// Whether container `name` runs (and, with a health check, is healthy)
/// within `timeout` and stays up: [`health::gate`] on the condition
/// [`health::heal_condition`] picks, polled by [`wait_until`]. A failed call to
/// the engine (a dropped connection, the engine restarting) is no verdict on
/// the container: it is retried until the timeout.
pub async fn settled(
    engine: &Engine,
    name: &str,
    timeout: Duration,
    cancel: &Cancel,
) -> Result<(), NotSettled> {
    let deadline = Instant::now() + timeout;
    let polling = Polling {
        timeout,
        every: POLL,
        retry_engine_errors: true,
    };
    let verdict = |s: &RunState| health::gate(s, health::heal_condition(s));
    let state = wait_until(engine, name, verdict, polling, cancel, |_| {})
        .await
        .map_err(|e| match e {
            WaitError::Failed { state, .. } if state.health == Some(Health::Unhealthy) => {
                NotSettled::Unhealthy { name: name.into() }
            }
            WaitError::Failed { state, .. } => NotSettled::NotRunning {
                name: name.into(),
                code: state.exit_code,
            },
            WaitError::TimedOut { .. } => NotSettled::TimedOut {
                name: name.into(),
                timeout,
            },
            other => NotSettled::Wait(other),
        })?;
    if state.health.is_some() {
        return Ok(());
    }
    // Without a health check, running (up: the engine restarts it) a moment later counts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = Polling {
        timeout: deadline
            .max(Instant::now() + Duration::from_secs(5))
            .saturating_duration_since(Instant::now()),
        ..polling
    };
    let up = |s: &RunState| {
        if s.is_up() {
            Verdict::Done
        } else {
            Verdict::Failed(format!("exit code {}", s.exit_code))
        }
    };
    match wait_until(engine, name, up, again, cancel, |_| {}).await {
        Ok(_) => Ok(()),
        Err(WaitError::Failed { state, .. }) => Err(NotSettled::StoppedAgain {
            name: name.into(),
            code: state.exit_code,
        }),
        Err(e) => Err(NotSettled::Wait(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_kinds_from_actions() {
        let action = |kind, reason: &str| Action {
            action: kind,
            stack: "s".into(),
            service: Some("a".into()),
            target: "s-a-1".into(),
            reasons: vec![reason.into()],
            diff: None,
            replica: None,
        };
        assert_eq!(
            drift_kind(&action(ActionKind::Create, "missing")),
            "missing"
        );
        assert_eq!(
            drift_kind(&action(ActionKind::Start, "stopped by hand")),
            "stopped"
        );
        assert_eq!(drift_kind(&action(ActionKind::Recreate, "env")), "changed");
        assert_eq!(
            drift_kind(&action(ActionKind::Restart, "unhealthy: exit 1")),
            "unhealthy"
        );
    }
}
