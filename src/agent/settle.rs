//! Watching a heal: which drift a service shows (stopped, unhealthy), and
//! whether the container a heal started runs (and is healthy) and stays up.
//! The verdict goes to the heal's bookkeeping ([`super::healer`]).

use std::time::{Duration, Instant};

use crate::apply::Cancel;
use crate::live::Engine;
use crate::plan::{Action, ActionKind, Plan};
use crate::reconcile::Observed;

/// How a healed service turned out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub stack: String,
    pub service: String,
    /// Why it was healed.
    pub reasons: Vec<String>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
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

/// Restarts for running, in-sync containers that Docker reports unhealthy.
pub fn unhealthy_restarts(observed: &Observed<'_>, plan: &Plan) -> Vec<Action> {
    observed
        .live
        .containers
        .iter()
        .filter(|c| c.state.is_running() && c.state.health.as_deref() == Some("unhealthy"))
        .filter(|c| !observed.paused.contains(&c.stack))
        .filter_map(|c| {
            let svc = observed
                .stacks
                .iter()
                .find(|s| s.name == c.stack)?
                .services
                .get(&c.service)?;
            Some((c, (svc.replicas() > 1).then_some(c.number)))
        })
        .filter(|(c, _)| {
            !plan
                .actions
                .iter()
                .any(|a| a.stack == c.stack && a.target == c.name)
        })
        .map(|(c, replica)| Action {
            action: ActionKind::Restart,
            stack: c.stack.clone(),
            service: Some(c.service.clone()),
            target: c.name.clone(),
            reasons: vec![format!(
                "unhealthy: {}",
                c.state
                    .health_log
                    .clone()
                    .unwrap_or_else(|| "health check failing".into())
            )],
            diff: None,
            replica,
        })
        .collect()
}

/// Whether container `name` is gone or being removed.
async fn removed(engine: &Engine, name: &str) -> bool {
    use bollard::models::ContainerStateStatusEnum;
    match engine
        .docker
        .inspect_container(
            name,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
    {
        Ok(c) => c
            .state
            .and_then(|s| s.status)
            .is_some_and(|s| s == ContainerStateStatusEnum::REMOVING),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => true,
        Err(_) => false,
    }
}

/// The state of container `name`. A failed call to the engine (a dropped
/// connection, the engine restarting) is no verdict on the container: it is
/// retried until `deadline`; "no such container" is returned at once.
async fn inspect_state(
    engine: &Engine,
    name: &str,
    deadline: Instant,
    cancel: &Cancel,
) -> Result<bollard::models::ContainerState, String> {
    loop {
        match engine
            .docker
            .inspect_container(
                name,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
        {
            Ok(c) => return Ok(c.state.unwrap_or_default()),
            Err(
                e @ bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                },
            ) => {
                return Err(format!("{name}: {e}"));
            }
            Err(e) if Instant::now() >= deadline || cancel.is_cancelled() => {
                return Err(format!("{name}: {e}"));
            }
            Err(e) => {
                tracing::debug!("inspecting {name} failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// The verdict on a heal that started (or restarted, or replaced) the
/// containers `names`: each runs (and is healthy) within `timeout` and stays up.
pub async fn verdict(
    engine: &Engine,
    names: &[String],
    timeout: Duration,
    cancel: &Cancel,
) -> Verdict {
    for name in names {
        match settled(engine, name, timeout, cancel).await {
            Ok(()) => {}
            // `docker rm -f` sends kill and die before destroy.
            Err(_) if removed(engine, name).await => return Verdict::Gone,
            Err(_) if cancel.is_cancelled() => return Verdict::Interrupted,
            Err(e) => return Verdict::Failed(e),
        }
    }
    Verdict::Healed
}

/// Whether container `name` runs (and, with a health check, is healthy)
/// within `timeout` and stays up; Err says why not.
pub async fn settled(
    engine: &Engine,
    name: &str,
    timeout: Duration,
    cancel: &Cancel,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let state = inspect_state(engine, name, deadline, cancel).await?;
        let running = state.running.unwrap_or(false);
        let restarting = state.restarting.unwrap_or(false);
        let health = state
            .health
            .as_ref()
            .and_then(|h| h.status)
            .map(|s| s.to_string());
        match health.as_deref() {
            Some("healthy") if running => return Ok(()),
            Some("unhealthy") => return Err(format!("{name} is unhealthy")),
            None | Some("none") | Some("") if running => {
                // Without a health check, running a moment later counts.
                tokio::time::sleep(Duration::from_secs(1)).await;
                let retry_until = deadline.max(Instant::now() + Duration::from_secs(5));
                let state = inspect_state(engine, name, retry_until, cancel).await?;
                return if state.running.unwrap_or(false) {
                    Ok(())
                } else {
                    Err(format!(
                        "{name} stopped again right after it was started (exit code {})",
                        state.exit_code.unwrap_or_default()
                    ))
                };
            }
            _ if !running
                && !restarting
                && state.status.map(|s| s.to_string()).as_deref() != Some("created") =>
            {
                return Err(format!(
                    "{name} is not running (exit code {})",
                    state.exit_code.unwrap_or_default()
                ));
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{name} did not become healthy within {}s",
                timeout.as_secs()
            ));
        }
        if cancel.is_cancelled() {
            return Err(format!("interrupted while waiting for {name}"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
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
