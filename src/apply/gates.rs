//! Gates: waiting until a container runs, is healthy or completed. The one
//! polling loop over [`crate::health::gate`]'s verdict ([`wait_until`]), used
//! by the apply's dependency gates and the agent's heal watch.

use std::time::{Duration, Instant};

use bollard::query_parameters::LogsOptionsBuilder;
use futures_util::StreamExt;

use thiserror::Error;

use super::{Cancel, Ctx, GateError, POLL, last_lines};
use crate::events::Outcome;
use crate::health::{self, Verdict};
use crate::live::{Engine, EngineError, RunState};
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

/// How [`wait_until`] polls.
#[derive(Debug, Clone, Copy)]
pub struct Polling {
    /// Give up after this long (the verdict is then [`WaitError::TimedOut`]).
    pub timeout: Duration,
    /// The pause between two inspects.
    pub every: Duration,
    /// A failed engine call (a dropped connection, the engine restarting) is
    /// no verdict on the container: inspect again until the timeout. Without
    /// it, the first failed call ends the wait.
    pub retry_engine_errors: bool,
}

/// Why [`wait_until`] stopped without the container meeting the condition.
#[derive(Debug, Error)]
pub enum WaitError {
    /// The verdict says it will not by itself; why, after the container's name.
    #[error("{name} {why}")]
    Failed {
        name: String,
        why: String,
        state: RunState,
    },
    #[error("container {name} disappeared")]
    Gone { name: String },
    #[error("{name} did not meet its condition within {}s", timeout.as_secs())]
    TimedOut {
        name: String,
        timeout: Duration,
        /// The last state seen.
        last: Option<RunState>,
    },
    #[error("interrupted while waiting for {name}")]
    Cancelled { name: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Polls container `name` until `verdict` of its state is no longer
/// [`Verdict::Wait`], the timeout passes or `cancel` is set; `waiting` is
/// told how long it has waited after each inspect that said wait. The one
/// polling loop of gates (`apply`) and heals (the agent).
pub async fn wait_until(
    engine: &Engine,
    name: &str,
    verdict: impl Fn(&RunState) -> Verdict,
    polling: Polling,
    cancel: &Cancel,
    mut waiting: impl FnMut(Duration),
) -> Result<RunState, WaitError> {
    let started = Instant::now();
    let deadline = started + polling.timeout;
    let mut last = None;
    loop {
        if cancel.is_cancelled() {
            return Err(WaitError::Cancelled { name: name.into() });
        }
        match engine.inspect_if_there(name).await {
            Ok(None) => return Err(WaitError::Gone { name: name.into() }),
            Ok(Some(state)) => match verdict(&state) {
                Verdict::Done => return Ok(state),
                Verdict::Failed(why) => {
                    return Err(WaitError::Failed {
                        name: name.into(),
                        why,
                        state,
                    });
                }
                Verdict::Wait => last = Some(state),
            },
            Err(e) if !polling.retry_engine_errors || Instant::now() >= deadline => {
                return Err(e.into());
            }
            Err(e) => tracing::debug!("inspecting {name} failed, retrying: {e}"),
        }
        if Instant::now() >= deadline {
            return Err(WaitError::TimedOut {
                name: name.into(),
                timeout: polling.timeout,
                last,
            });
        }
        waiting(started.elapsed());
        tokio::time::sleep(polling.every).await;
    }
}

impl Ctx<'_> {
    /// Waits until the container `name` meets `condition`.
    pub(super) async fn gate(
        &self,
        subject: &str,
        name: &str,
        condition: Condition,
        timeout: Duration,
        has_health: bool,
    ) -> Result<(), GateError> {
        if condition == Condition::ServiceHealthy && !has_health {
            return Err(GateError::NoHealthCheck { name: name.into() });
        }
        let word = match condition {
            Condition::ServiceStarted => "running",
            Condition::ServiceHealthy => "healthy",
            Condition::ServiceCompletedSuccessfully => "completed",
        };
        let polling = Polling {
            timeout,
            every: POLL,
            retry_engine_errors: false,
        };
        let waiting = |waited: Duration| {
            self.progress.step(
                subject,
                &format!(
                    "waiting for {word} ({}s/{}s)",
                    waited.as_secs(),
                    timeout.as_secs()
                ),
                Outcome::Working,
            );
        };
        let verdict = |s: &RunState| health::gate(s, condition);
        match wait_until(self.engine, name, verdict, polling, self.cancel, waiting).await {
            Ok(_) => Ok(()),
            Err(WaitError::Cancelled { .. }) => Err(GateError::Interrupted {
                name: name.into(),
                word,
            }),
            Err(WaitError::TimedOut { last, .. }) => Err(GateError::TimedOut {
                name: name.into(),
                word,
                timeout,
                last: last
                    .and_then(|s| s.health_log)
                    .map(|l| format!("; last health check: {l}"))
                    .unwrap_or_default(),
            }),
            Err(WaitError::Engine(EngineError::Call { source, .. })) => {
                Err(GateError::Engine(source))
            }
            Err(e) => Err(GateError::Wait(Box::new(e))),
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
