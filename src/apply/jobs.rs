//! Running a plan's jobs (`x-plimsoll.job`): each run is a one-off
//! container (`<stack>-<job>-run-<id>`, `com.docker.compose.oneoff=True`,
//! [`labels::JOB`]) created from the job's settings as a service's would be,
//! on the stack's networks and volumes, started, waited for until it exits
//! (killed after its timeout), its last log lines kept (masked). A job
//! first waits for the services it depends on; a `post` job also for every
//! service of its stack to run (healthy, where it has a health check). Old
//! runs are removed past the newest [`KEEP_RUNS`] of each job.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bollard::models::NetworkConnectRequest;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;

use super::{
    Cancel, Ctx, Failed, GateError, JobError, POLL, Polling, Report, StepError, WaitError,
    create_body, fault_point, gate_timeout, last_lines, wait_until,
};
use crate::events::Outcome;
use crate::health::{self, Status, Verdict};
use crate::live::RunState;
use crate::names::labels;
use crate::plan::{Plan, desired_job};
use crate::spec::model::{Condition, JobKind, Stack};
use crate::spec::secrets::Masker;

/// The runs of each job kept on the engine (the newest; older ones are
/// removed after an apply that ran the job). Their logs stay in the audit log.
pub const KEEP_RUNS: usize = 3;

/// How many log lines of a run are kept in the history.
const LOG_LINES: usize = 20;

/// How often a running job is looked at.
const JOB_POLL: Duration = Duration::from_millis(250);

/// What happened to one run of a job.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobOutcome {
    pub when: JobKind,
    pub stack: String,
    pub job: String,
    /// Its container, or empty when it never got one.
    pub container: String,
    /// Its exit code, when it ran to the end (or was killed).
    pub exit_code: Option<i64>,
    /// `null` when it exited 0; else why, masked.
    pub error: Option<Failed>,
    /// Its last log lines, masked.
    pub logs: Vec<String>,
    pub seconds: f64,
    /// Stopped by an interrupt (SIGTERM, Ctrl-C), not failed by itself.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

impl JobOutcome {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

impl Ctx<'_> {
    /// Runs the planned `when` jobs of `stack` in order; stops at the first
    /// that fails (the jobs after it are not run), and returns its error
    /// (masked text). `on-failure` jobs all run, whatever one does.
    pub(super) async fn run_jobs(
        &self,
        stack: &Stack,
        plan: &Plan,
        when: JobKind,
        masker: &Masker,
        report: &mut Report,
    ) -> Result<(), (String, JobError)> {
        // Interrupted (SIGTERM, Ctrl-C): no alert starts now.
        if when == JobKind::OnFailure && self.cancel.is_cancelled() {
            return Ok(());
        }
        let mut failed: BTreeSet<String> = BTreeSet::new();
        let mut first: Option<(String, JobError)> = None;
        for planned in plan.jobs_of(&stack.name, when) {
            let job = planned.job.as_str();
            let started = Instant::now();
            let mut outcome = JobOutcome {
                when,
                stack: stack.name.clone(),
                job: job.to_string(),
                container: String::new(),
                exit_code: None,
                error: None,
                logs: Vec::new(),
                seconds: 0.0,
                interrupted: false,
            };
            let run = match self.job_dependencies(stack, job, when, &failed).await {
                Ok(()) => self.run_job(stack, job, when, masker, &mut outcome).await,
                Err(e) => Err(e),
            };
            outcome.seconds = started.elapsed().as_secs_f64();
            let subject = Self::subject(stack, job);
            if let Err(e) = run {
                let text = masker.mask(&e.to_string()).into_owned();
                self.progress.step(
                    &subject,
                    &format!("{when} job failed: {text}"),
                    Outcome::Failed,
                );
                outcome.error = Some(Failed(text));
                outcome.interrupted = matches!(e, JobError::Interrupted);
                failed.insert(job.to_string());
                report.jobs.push(outcome);
                if when == JobKind::OnFailure {
                    continue;
                }
                first = Some((job.to_string(), e));
                break;
            }
            self.progress
                .step(&subject, &format!("{when} job done"), Outcome::Done);
            report.jobs.push(outcome);
        }
        match first {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// Waits for what job `job` depends on: the jobs of its kind before it
    /// (failed: it does not run), the services it names (a `pre` job does
    /// not wait for one that has no container yet, as on a stack's first
    /// apply), and, for a `post` job, every service of the stack running,
    /// and healthy where it has a health check.
    async fn job_dependencies(
        &self,
        stack: &Stack,
        job: &str,
        when: JobKind,
        failed: &BTreeSet<String>,
    ) -> Result<(), JobError> {
        if self.cancel.is_cancelled() {
            return Err(JobError::Interrupted);
        }
        let svc = &stack.jobs[job];
        if let Some(dep) = svc.depends_on.keys().find(|d| failed.contains(*d)) {
            return Err(JobError::DependencyFailed {
                dependency: dep.clone(),
            });
        }
        if when == JobKind::OnFailure {
            return Ok(());
        }
        let mut gates: BTreeMap<&str, Option<Condition>> = svc
            .depends_on
            .iter()
            .filter(|(d, _)| stack.services.contains_key(*d))
            .map(|(d, dep)| (d.as_str(), Some(dep.condition)))
            .collect();
        if when == JobKind::Post {
            for s in stack.services.keys() {
                gates.entry(s).or_insert(None);
            }
        }
        let subject = Self::subject(stack, job);
        for (dep, condition) in gates {
            let dep_svc = &stack.services[dep];
            let has_health = self.has_health(stack, dep);
            for n in 1..=dep_svc.replicas() {
                let name = crate::names::replica_name(stack, dep, dep_svc, n);
                if when == JobKind::Pre
                    && self
                        .engine
                        .inspect_if_there(&name)
                        .await
                        .ok()
                        .flatten()
                        .is_none()
                {
                    self.progress.step(
                        &subject,
                        &format!("{dep} has no container yet: not waited for"),
                        Outcome::Working,
                    );
                    continue;
                }
                self.progress
                    .step(&subject, &format!("waiting for {dep}"), Outcome::Working);
                let timeout = gate_timeout(stack, dep);
                let r = match condition {
                    Some(c) => self.gate(&subject, &name, c, timeout, has_health).await,
                    None => self.settled(&name, timeout).await,
                };
                r.map_err(|why| JobError::DependencyGate {
                    dependency: dep.to_string(),
                    why: Box::new(why),
                })?;
            }
        }
        Ok(())
    }

    /// Waits until a service's container runs (healthy, where it has a
    /// health check), or has completed successfully.
    async fn settled(&self, name: &str, timeout: Duration) -> Result<(), GateError> {
        let polling = Polling {
            timeout,
            every: POLL,
            retry_engine_errors: false,
        };
        let verdict = |s: &RunState| {
            if s.status == Status::Exited && s.exit_code == 0 {
                Verdict::Done
            } else {
                health::gate(s, health::heal_condition(s))
            }
        };
        match wait_until(self.engine, name, verdict, polling, self.cancel, |_| {}).await {
            Ok(_) => Ok(()),
            Err(WaitError::Cancelled { .. }) => Err(GateError::Interrupted {
                name: name.into(),
                word: "running",
            }),
            Err(WaitError::TimedOut { last, .. }) => Err(GateError::TimedOut {
                name: name.into(),
                word: "running and healthy",
                timeout,
                last: last
                    .and_then(|s| s.health_log)
                    .map(|l| format!("; last health check: {l}"))
                    .unwrap_or_default(),
            }),
            Err(e) => Err(GateError::Wait(Box::new(e))),
        }
    }

    /// One run of job `job`: created, started, waited for (killed after
    /// its timeout), its last log lines read and masked into `outcome`.
    async fn run_job(
        &self,
        stack: &Stack,
        job: &str,
        when: JobKind,
        masker: &Masker,
        outcome: &mut JobOutcome,
    ) -> Result<(), JobError> {
        let subject = Self::subject(stack, job);
        let timeout = stack.jobs[job]
            .plimsoll
            .timeout
            .map_or(JobKind::DEFAULT_TIMEOUT, |t| t.0);
        // A run an interrupted plimsoll left running finishes first (killed
        // at the timeout): two runs of one job never overlap.
        for r in self
            .live
            .jobs
            .iter()
            .filter(|r| r.stack == stack.name && r.job == job && r.running)
        {
            self.progress.step(
                &subject,
                &format!("waiting for the earlier run {} to end", r.name),
                Outcome::Working,
            );
            match self.wait_job(&subject, &r.name, timeout).await {
                Ok(_) | Err(Ended::TimedOut) | Err(Ended::Gone) => {}
                Err(Ended::Interrupted) => return Err(JobError::Interrupted),
                Err(Ended::Engine(e)) => return Err(JobError::CouldNotRun(Box::new(e))),
            }
        }
        self.progress
            .step(&subject, &format!("running {when} job"), Outcome::Working);
        let name = self
            .create_job(stack, job, when)
            .await
            .map_err(|e| JobError::CouldNotRun(Box::new(e)))?;
        outcome.container = name.clone();
        let waited = self.wait_job(&subject, &name, timeout).await;
        let logs = self.job_logs(&name, masker).await;
        let last = last_lines("log", &logs.join("\n"));
        outcome.logs = logs;
        match waited {
            Ok(state) => {
                outcome.exit_code = Some(state.exit_code);
                if state.exit_code == 0 && state.status == Status::Exited {
                    Ok(())
                } else {
                    Err(JobError::Exited {
                        code: state.exit_code,
                        last,
                    })
                }
            }
            Err(Ended::TimedOut) => {
                outcome.exit_code = Some(137);
                Err(JobError::TimedOut { timeout, last })
            }
            Err(Ended::Interrupted) => Err(JobError::Interrupted),
            Err(Ended::Gone) => Err(JobError::Gone { container: name }),
            Err(Ended::Engine(e)) => Err(JobError::CouldNotRun(Box::new(e))),
        }
    }

    /// Waits until the run's container ends; past `timeout`, or when the
    /// apply is interrupted, kills it.
    async fn wait_job(
        &self,
        subject: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<RunState, Ended> {
        let polling = Polling {
            timeout,
            every: JOB_POLL,
            retry_engine_errors: true,
        };
        let verdict = |s: &RunState| {
            if s.status.is_ended() {
                Verdict::Done
            } else {
                Verdict::Wait
            }
        };
        let waiting = |waited: Duration| {
            self.progress.step(
                subject,
                &format!("running ({}s/{}s)", waited.as_secs(), timeout.as_secs()),
                Outcome::Working,
            );
        };
        let never = Cancel::default();
        let cancel = self.cancel;
        let ended = wait_until(self.engine, name, verdict, polling, cancel, waiting).await;
        let kill = |why| async move {
            let opts = KillContainerOptionsBuilder::default()
                .signal("SIGKILL")
                .build();
            let _ = self.engine.docker.kill_container(name, Some(opts)).await;
            fault_point();
            // Until it is down, so its logs are complete.
            let polling = Polling {
                timeout: Duration::from_secs(10),
                every: POLL,
                retry_engine_errors: true,
            };
            let _ = wait_until(self.engine, name, verdict, polling, &never, |_| {}).await;
            Err(why)
        };
        match ended {
            Ok(state) => Ok(state),
            Err(WaitError::TimedOut { .. }) => kill(Ended::TimedOut).await,
            Err(WaitError::Cancelled { .. }) => kill(Ended::Interrupted).await,
            Err(WaitError::Engine(e)) => Err(Ended::Engine(StepError::EngineDoing {
                doing: format!("waiting for {name}"),
                source: match e {
                    crate::live::EngineError::Call { source, .. }
                    | crate::live::EngineError::Connect { source, .. }
                    | crate::live::EngineError::Unreachable { source, .. } => source,
                },
            })),
            Err(WaitError::Gone { .. }) | Err(WaitError::Failed { .. }) => Err(Ended::Gone),
        }
    }

    /// The last [`LOG_LINES`] lines a run logged (stdout and stderr), masked.
    async fn job_logs(&self, name: &str, masker: &Masker) -> Vec<String> {
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&LOG_LINES.to_string())
            .build();
        let mut out = String::new();
        let mut stream = self.engine.docker.logs(name, Some(opts));
        while let Some(Ok(chunk)) = stream.next().await {
            out.push_str(&chunk.to_string());
        }
        masker
            .mask(&out)
            .lines()
            .map(|l| l.trim_end().to_string())
            .collect()
    }

    /// Creates and starts a run of job `job`; its container's name.
    async fn create_job(
        &self,
        stack: &Stack,
        job: &str,
        when: JobKind,
    ) -> Result<String, StepError> {
        let view = stack.job_view(job).ok_or_else(|| StepError::NotDeclared {
            kind: "job",
            name: job.to_string(),
        })?;
        let mounted = self
            .mounts
            .get(&(stack.name.clone(), job.to_string()))
            .and_then(|r| r.as_ref().ok())
            .cloned()
            .unwrap_or_default();
        // Created from the paths of the checkout at hand (not re-rooted).
        let mut want = desired_job(stack, job, self.live, &mounted, None)
            .unwrap_or_else(|| unreachable!("the view holds the job"))
            .map_err(StepError::Desired)?;
        let name = crate::names::job_run_name(&stack.name, job, &run_id());
        want.config.name = name.clone();
        let l = &mut want.config.labels;
        l.insert(labels::COMPOSE_ONEOFF.into(), "True".into());
        l.insert(labels::JOB.into(), when.as_str().into());
        let (body, extra_networks) = create_body(&view, job, &want.config, &BTreeMap::new());
        let mut opts = CreateContainerOptionsBuilder::default().name(&name);
        if let Some(platform) = &want.config.platform {
            opts = opts.platform(platform);
        }
        let docker = &self.engine.docker;
        let created = docker.create_container(Some(opts.build()), body).await?;
        fault_point();
        for (net, endpoint) in extra_networks {
            let req = NetworkConnectRequest {
                container: created.id.clone(),
                endpoint_config: Some(endpoint),
            };
            docker
                .connect_network(&net, req)
                .await
                .map_err(StepError::doing(format!("connecting to network {net}")))?;
            fault_point();
        }
        self.copy_contents(&view, job, &created.id).await?;
        docker.start_container(&created.id, None).await?;
        fault_point();
        Ok(name)
    }

    /// Removes the runs of `stack`'s jobs past the newest [`KEEP_RUNS`] of
    /// each, and every run of a job the stack no longer declares (finished
    /// runs only). A failure is a warning: the runs stay until the next time.
    pub(super) async fn prune_runs(&self, stack: &Stack) {
        let filters = std::collections::HashMap::from([(
            "label",
            vec![
                labels::JOB.to_string(),
                format!("{}={}", labels::STACK, stack.name),
            ],
        )]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let listed = match self.engine.docker.list_containers(Some(opts)).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("listing the runs of {}'s jobs failed: {e}", stack.name);
                return;
            }
        };
        let mut by_job: BTreeMap<String, Vec<(i64, String, String, bool)>> = BTreeMap::new();
        for c in listed {
            let labels_of = c.labels.unwrap_or_default();
            let job = labels_of.get(labels::SERVICE).cloned().unwrap_or_default();
            let name = c
                .names
                .and_then(|n| n.first().cloned())
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string();
            let ended = matches!(
                c.state.map(|s| s.to_string()).as_deref(),
                Some("exited" | "dead" | "created")
            );
            by_job.entry(job).or_default().push((
                c.created.unwrap_or_default(),
                name,
                c.id.unwrap_or_default(),
                ended,
            ));
        }
        for (job, mut runs) in by_job {
            runs.sort();
            let keep = if stack.jobs.contains_key(&job) {
                KEEP_RUNS
            } else {
                0
            };
            let old = runs.len().saturating_sub(keep);
            for (_, name, id, _) in runs.into_iter().take(old).filter(|r| r.3) {
                let opts = RemoveContainerOptionsBuilder::default().v(true).build();
                match self.engine.docker.remove_container(&id, Some(opts)).await {
                    Ok(()) => {
                        fault_point();
                        tracing::debug!("removed the old run {name} of {}/{job}", stack.name);
                    }
                    Err(e) => tracing::warn!("removing the old run {name} failed: {e}"),
                }
            }
        }
    }
}

/// How a wait for a run ended other than by the run's own exit.
enum Ended {
    TimedOut,
    Interrupted,
    /// Removed while it ran (by hand).
    Gone,
    Engine(StepError),
}

/// A run's id: 12 hex digits, different for each run.
fn run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    format!("{:012x}", h.finish() & 0xffff_ffff_ffff)
}
