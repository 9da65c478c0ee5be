//! Gates: waiting until a container runs, is healthy or completed.

use std::time::{Duration, Instant};

use bollard::query_parameters::LogsOptionsBuilder;
use futures_util::StreamExt;

use super::{Ctx, POLL, inspect_if_there, last_lines};
use crate::events::Outcome;
use crate::live::RunState;
use crate::spec::model::{Condition, Stack};

/// How long to wait for a service's gate: `x-plimsoll.health_timeout`, else
/// what its health check needs (start period + (interval + timeout) x (retries + 1)),
/// else 60 s.
pub fn gate_timeout(stack: &Stack, service: &str) -> Duration {
    let svc = &stack.services[service];
    if let Some(t) = svc.plimsoll.health_timeout {
        return t.0;
    }
    match &svc.healthcheck {
        Some(h) if h.is_enabled() => {
            let d = |v: Option<crate::spec::model::GoDuration>, default: u64| {
                v.map_or(Duration::from_secs(default), |d| d.0)
            };
            let per_try = d(h.interval, 30) + d(h.timeout, 30);
            let tries = h.retries.unwrap_or(3) as u32 + 1;
            (d(h.start_period, 0) + per_try * tries + Duration::from_secs(10))
                .max(Duration::from_secs(30))
        }
        _ => Duration::from_secs(60),
    }
}

impl Ctx<'_> {
    pub(super) async fn inspect_state(&self, name: &str) -> Result<Option<RunState>, String> {
        let c = inspect_if_there(&self.engine.docker, name).await?;
        Ok(c.map(|c| crate::live::normalize(c, &Default::default()).state))
    }

    /// Waits until the container `name` meets `condition`.
    pub(super) async fn gate(
        &self,
        subject: &str,
        name: &str,
        condition: Condition,
        timeout: Duration,
        has_health: bool,
    ) -> Result<(), String> {
        if condition == Condition::ServiceHealthy && !has_health {
            return Err(format!(
                "{name} has no health check, but a dependent waits for it to be healthy"
            ));
        }
        let deadline = Instant::now() + timeout;
        let word = match condition {
            Condition::ServiceStarted => "running",
            Condition::ServiceHealthy => "healthy",
            Condition::ServiceCompletedSuccessfully => "completed",
        };
        let started = Instant::now();
        loop {
            if self.cancel.is_cancelled() {
                return Err(format!("interrupted while waiting for {name} to be {word}"));
            }
            let state = self
                .inspect_state(name)
                .await?
                .ok_or_else(|| format!("container {name} disappeared"))?;
            let done = match condition {
                Condition::ServiceStarted => state.is_running(),
                Condition::ServiceHealthy => state.health.as_deref() == Some("healthy"),
                Condition::ServiceCompletedSuccessfully => {
                    state.status == "exited" && state.exit_code == 0
                }
            };
            if done {
                return Ok(());
            }
            if matches!(state.status.as_str(), "exited" | "dead")
                && condition != Condition::ServiceCompletedSuccessfully
            {
                return Err(format!(
                    "{name} exited with code {}{}",
                    state.exit_code,
                    if state.oom_killed {
                        " (out of memory)"
                    } else {
                        ""
                    }
                ));
            }
            if condition == Condition::ServiceCompletedSuccessfully && state.status == "exited" {
                return Err(format!("{name} exited with code {}", state.exit_code));
            }
            if condition == Condition::ServiceHealthy
                && state.health.as_deref() == Some("unhealthy")
            {
                return Err(format!(
                    "{name} is unhealthy: {}",
                    state.health_log.unwrap_or_default()
                ));
            }
            if Instant::now() >= deadline {
                let last = state
                    .health_log
                    .map(|l| format!("; last health check: {l}"))
                    .unwrap_or_default();
                return Err(format!(
                    "{name} was not {word} within {}s{last}",
                    timeout.as_secs()
                ));
            }
            let waited = started.elapsed().as_secs();
            self.progress.step(
                subject,
                &format!("waiting for {word} ({waited}s/{}s)", timeout.as_secs()),
                Outcome::Working,
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// The last lines a container logged, for failure messages.
    pub(super) async fn last_logs(&self, name: &str) -> String {
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail("5")
            .build();
        let mut out = String::new();
        let mut stream = self.engine.docker.logs(name, Some(opts));
        while let Some(Ok(chunk)) = stream.next().await {
            out.push_str(&chunk.to_string());
        }
        last_lines("log", &out)
    }

    /// Whether a service's containers have a health check (their own or the image's).
    pub(super) fn has_health(&self, stack: &Stack, service: &str) -> bool {
        let svc = &stack.services[service];
        svc.healthcheck.as_ref().is_some_and(|h| h.is_enabled())
            || self
                .live
                .images
                .get(&svc.image_ref(&stack.name, service))
                .cloned()
                .flatten()
                .is_some_and(|i| i.healthcheck.is_some())
    }
}
