//! `post_start` and `pre_stop` hooks, run through the exec API.

use bollard::exec::StartExecResults;
use bollard::models::ExecConfig;
use bollard::query_parameters::StopContainerOptionsBuilder;
use futures_util::StreamExt;

use super::{Ctx, HookError, POLL, StepError, gate_timeout, last_lines, stop_timeout};
use crate::events::Outcome;
use crate::spec::model::{Hook, Stack};

impl Ctx<'_> {
    /// Runs a service's `post_start` hooks in the container `id` it just
    /// started. When one fails, the container is stopped again (without its
    /// `pre_stop` hooks), so the next apply starts it and runs them again.
    pub(super) async fn post_start(
        &self,
        stack: &Stack,
        service: &str,
        number: u32,
        id: &str,
    ) -> Result<(), StepError> {
        let subject = Self::replica_subject(stack, service, number);
        let hooks = &stack.services[service].post_start;
        let Err(e) = self
            .run_hooks(stack, service, &subject, "post_start", hooks, id)
            .await
        else {
            return Ok(());
        };
        let opts = StopContainerOptionsBuilder::default()
            .t(stop_timeout(stack, service))
            .build();
        match self.engine.docker.stop_container(id, Some(opts)).await {
            Ok(()) => Err(StepError::PostStartStopped(e)),
            Err(source) => Err(StepError::PostStartNotStopped { hook: e, source }),
        }
    }

    /// Runs a service's `pre_stop` hooks in its container `container`
    /// before plimsoll stops it, if it is `running`. A failing hook is a
    /// warning: the stop goes on.
    pub(super) async fn pre_stop(
        &self,
        stack: &Stack,
        service: &str,
        subject: &str,
        container: &str,
        running: bool,
    ) {
        let hooks = &stack.services[service].pre_stop;
        if hooks.is_empty() || !running {
            return;
        }
        if let Err(e) = self
            .run_hooks(stack, service, subject, "pre_stop", hooks, container)
            .await
        {
            self.progress.step(
                subject,
                &format!("stopping the container anyway: {e}"),
                Outcome::Warning,
            );
        }
    }

    /// Runs `hooks` (`key`: `post_start` or `pre_stop`) one after another in
    /// `container` through the exec API, each within the service's gate
    /// timeout. The error names the hook, its exit code and its last output lines.
    pub(super) async fn run_hooks(
        &self,
        stack: &Stack,
        service: &str,
        subject: &str,
        key: &str,
        hooks: &[Hook],
        container: &str,
    ) -> Result<(), HookError> {
        let timeout = gate_timeout(stack, service);
        for (i, hook) in hooks.iter().enumerate() {
            let what = format!("{key}[{i}] hook");
            self.progress
                .step(subject, &format!("running the {what}"), Outcome::Working);
            match tokio::time::timeout(timeout, exec(&self.engine.docker, container, hook)).await {
                Ok(Ok((0, _))) => {}
                Ok(Ok((code, output))) => {
                    return Err(HookError::Exited {
                        hook: what,
                        code,
                        last: last_lines("output", &output),
                    });
                }
                Ok(Err(e)) => {
                    return Err(HookError::CouldNotRun {
                        hook: what,
                        source: Box::new(e),
                    });
                }
                Err(_) => {
                    return Err(HookError::TimedOut {
                        hook: what,
                        seconds: timeout.as_secs(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Runs one hook in a container through the exec API and waits for it to
/// end: its exit code and what it printed (stdout and stderr, the last 64 KiB).
pub(super) async fn exec(
    docker: &bollard::Docker,
    container: &str,
    hook: &Hook,
) -> Result<(i64, String), StepError> {
    let config = ExecConfig {
        cmd: Some(hook.command.clone()),
        user: hook.user.clone(),
        privileged: Some(hook.privileged),
        working_dir: hook.working_dir.clone(),
        // `- NAME` without a value goes as `NAME`, as Compose sends it.
        env: Some(
            hook.environment
                .iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}={v}"),
                    None => k.clone(),
                })
                .collect(),
        ),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..ExecConfig::default()
    };
    let created = docker.create_exec(container, config).await?;
    let mut output: Vec<u8> = Vec::new();
    if let StartExecResults::Attached {
        output: mut stream, ..
    } = docker.start_exec(&created.id, None).await?
    {
        const KEEP: usize = 64 << 10;
        while let Some(chunk) = stream.next().await {
            output.extend_from_slice(&chunk?.into_bytes());
            if output.len() > 2 * KEEP {
                output.drain(..output.len() - KEEP);
            }
        }
    }
    // The exit code is set a moment after the output ends.
    loop {
        let inspected = docker.inspect_exec(&created.id).await?;
        match (inspected.running, inspected.exit_code) {
            (Some(true), _) | (_, None) => tokio::time::sleep(POLL).await,
            (_, Some(code)) => return Ok((code, String::from_utf8_lossy(&output).into_owned())),
        }
    }
}
