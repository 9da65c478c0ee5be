//! Applying a plan to the engine: networks and volumes first, then images,
//! then services wave by wave in dependency order (the services of one wave
//! in parallel, as many at once as [`Parallel`] allows: 64 by default), each
//! behind its dependencies' gates. A network whose settings
//! changed is recreated before the waves (its containers disconnected
//! first); the services on it are replaced in their waves.
//!
//! A recreate keeps the old container until the new one passes its gate:
//! the old one is stopped and renamed `<name>-plimsoll-old`, the new one is
//! created and started; if it does not become running (and healthy, where it
//! has a health check) in time, it is removed, the old one is renamed back
//! and started, and the service's dependents are not touched.
//!
//! Invariant: only this module, `live`, `build` and `images` talk to the
//! engine; every object created carries plimsoll's labels; nothing without
//! them is changed.

//! The module by concern: `setup` (networks, volumes, images), `waves` (one
//! service: its dependencies' gates, then its actions), `gates`, `hooks`,
//! `replace` (recreate and rollback), `remove` (prune, scale-down), `body`
//! (the engine's create body) and `recover` (after a killed run).

mod body;
mod error;
mod gates;
mod hooks;
mod jobs;
mod recover;
mod remove;
mod replace;
mod setup;
mod waves;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::events::Progress;
use crate::live::{Engine, Live};
use crate::mounts::Mounts;
use crate::plan::{Action, ActionKind, Plan};
use crate::spec::model::{JobKind, Stack};
use crate::spec::secrets::Masker;

pub use body::create_body;
pub use error::{ApplyError, GateError, HookError, JobError, ServiceError, StepError};
pub use gates::{Polling, WaitError, gate_timeout, wait_until};
pub use jobs::{JobOutcome, KEEP_RUNS};
pub use recover::recover;
pub use setup::{pull, pull_for};
pub use waves::{BadParallel, DEFAULT_PARALLEL, Parallel};

/// How often a gate looks at a container.
const POLL: Duration = Duration::from_millis(100);

/// What happened to one action.
#[derive(Debug, Clone)]
pub struct ActionOutcome {
    pub action: Action,
    pub result: Result<(), Failed>,
    pub duration: Duration,
    pub rolled_back: bool,
}

/// The message of a failed action, as an outcome keeps it (for the
/// history and the events): the error's text, without its type.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Failed(pub String);

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an apply did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub outcomes: Vec<ActionOutcome>,
    /// The jobs that ran (or failed to), in the order they ran.
    pub jobs: Vec<JobOutcome>,
}

struct Ctx<'a> {
    engine: &'a Engine,
    live: &'a Live,
    progress: &'a dyn Progress,
    cancel: &'a Cancel,
    /// Networks the plan recreates: containers a failed service keeps are
    /// connected to the new ones.
    renewed: BTreeSet<String>,
    /// The content hashes of the repository files services mount (labels of the containers created).
    mounts: &'a Mounts,
}

/// What a plan was computed from besides the stacks: the engine's state and
/// the content hashes of the repository files services mount.
#[derive(Clone, Copy)]
pub struct Observed<'a> {
    pub live: &'a Live,
    pub mounts: &'a Mounts,
}

/// Asks a running apply to stop: the current step finishes, a replacement
/// whose gate is being waited for is rolled back, nothing new starts.
#[derive(Debug, Clone, Default)]
pub struct Cancel(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Applies `plan` (computed from `stacks` and `live`), changing at most
/// `parallel` services of a wave at once. Services whose names conflict with
/// foreign containers are not in the plan and fail the apply.
// The arguments are what each caller has at hand; a struct for them would
// only be built to be taken apart here.
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    engine: &Engine,
    stacks: &[&Stack],
    plan: &Plan,
    seen: Observed<'_>,
    masker: &Masker,
    progress: &dyn Progress,
    cancel: &Cancel,
    parallel: Parallel,
) -> Result<Report, ApplyError> {
    let Observed { live, mounts } = seen;
    let cx = Ctx {
        engine,
        live,
        progress,
        cancel,
        mounts,
        renewed: plan
            .actions
            .iter()
            .filter(|a| a.action == ActionKind::RecreateNetwork)
            .map(|a| a.target.clone())
            .collect(),
    };
    let mut report = Report::default();
    let mut failures: Vec<String> = plan
        .conflicts
        .iter()
        .map(|c| {
            format!(
                "{}/{}: {}",
                c.stack,
                c.service.as_deref().unwrap_or(&c.target),
                c.reason
            )
        })
        .collect();

    // Conflicts fail only their own services (and dependents); the others still apply.
    let conflicts = failures.len();

    // Images, networks and volumes first, in plan order (pulls lead, then
    // builds, so a failed pull or build changes nothing).
    let mut built: Vec<String> = Vec::new();
    for a in &plan.actions {
        let stack = stacks.iter().find(|s| s.name == a.stack).copied();
        let started = Instant::now();
        let result = match (a.action, stack) {
            (ActionKind::Build, Some(s)) => {
                let service = a.service.clone().unwrap_or_default();
                if let Err(e) = cx.build(s, &service, &a.target).await {
                    return Err(ApplyError::Build {
                        stack: s.name.clone(),
                        service,
                        image: a.target.clone(),
                        message: masker.mask(&e.to_string()).into_owned(),
                        source: Box::new(e),
                    });
                }
                built.push(a.target.clone());
                Ok(())
            }
            (ActionKind::CreateNetwork, Some(s)) => cx.create_network(s, &a.target).await,
            (ActionKind::CreateVolume, Some(s)) => cx.create_volume(s, &a.target).await,
            (ActionKind::PullImage, _) => {
                // The platform a service of this stack asks for, if any.
                let platform = stack.and_then(|s| {
                    s.services
                        .iter()
                        .filter(|(n, svc)| svc.image_ref(&s.name, n) == a.target)
                        .find_map(|(_, svc)| svc.platform.as_deref())
                });
                if let Err(e) = cx.pull(&a.target, platform).await {
                    return Err(ApplyError::Pull {
                        image: a.target.clone(),
                        message: masker.mask(&e.to_string()).into_owned(),
                        source: Box::new(e),
                    });
                }
                Ok(())
            }
            _ => continue,
        };
        record(&mut report, &mut failures, a, result, started);
    }
    if failures.len() > conflicts {
        return Err(ApplyError::Services { failures, report });
    }
    // Containers (and jobs) are created from what the images built just now supply.
    let refreshed;
    let cx = if built.is_empty() {
        cx
    } else {
        let mut fresh = live.clone();
        for image in &built {
            fresh
                .images
                .insert(image.clone(), engine.image_defaults(image).await?);
        }
        refreshed = fresh;
        Ctx {
            live: &refreshed,
            ..cx
        }
    };

    // Pre jobs, before any container changes: one that fails stops the apply.
    cx.pre_jobs(stacks, plan, masker, &mut report).await?;
    // Networks recreated (their containers disconnected) after the pre jobs.
    for a in plan
        .actions
        .iter()
        .filter(|a| a.action == ActionKind::RecreateNetwork)
    {
        let Some(s) = stacks.iter().find(|s| s.name == a.stack) else {
            continue;
        };
        let started = Instant::now();
        let result = cx.recreate_network(s, &a.target).await;
        record(&mut report, &mut failures, a, result, started);
    }
    if failures.len() > conflicts {
        return Err(ApplyError::Services { failures, report });
    }

    for stack in stacks {
        cx.run_waves(stack, plan, masker, parallel, &mut report, &mut failures)
            .await;
    }
    cx.after_waves(stacks, plan, masker, &mut report, &mut failures)
        .await;
    // Prune runs last, and only when everything before it succeeded.
    if failures.is_empty() {
        for a in plan
            .actions
            .iter()
            .filter(|a| crate::plan::is_prune(a, stacks))
        {
            let started = Instant::now();
            let result = cx.prune(a).await;
            record(&mut report, &mut failures, a, result, started);
        }
    }
    if failures.is_empty() {
        Ok(report)
    } else {
        Err(ApplyError::Services { failures, report })
    }
}

impl Ctx<'_> {
    /// Runs the `pre` jobs of `stacks`; the first that fails runs its
    /// stack's `on-failure` jobs and stops the apply (the report so far in
    /// the error).
    async fn pre_jobs(
        &self,
        stacks: &[&Stack],
        plan: &Plan,
        masker: &Masker,
        report: &mut Report,
    ) -> Result<(), ApplyError> {
        for stack in stacks {
            if let Err((job, e)) = self
                .run_jobs(stack, plan, JobKind::Pre, masker, report)
                .await
            {
                let _ = self
                    .run_jobs(stack, plan, JobKind::OnFailure, masker, report)
                    .await;
                self.prune_all_runs(stacks, plan).await;
                return Err(ApplyError::PreJob {
                    stack: stack.name.clone(),
                    job,
                    message: masker.mask(&e.to_string()).into_owned(),
                    report: std::mem::take(report),
                    source: Box::new(e),
                });
            }
        }
        Ok(())
    }
    /// After the waves: the post jobs of each stack whose apply succeeded
    /// (a failure is the stack's), then the on-failure jobs of each stack
    /// that failed, then old runs removed.
    async fn after_waves(
        &self,
        stacks: &[&Stack],
        plan: &Plan,
        masker: &Masker,
        report: &mut Report,
        failures: &mut Vec<String>,
    ) {
        let failed = |failures: &[String], stack: &Stack| {
            let prefix = format!("{}/", stack.name);
            failures.iter().any(|f| f.starts_with(&prefix))
        };
        for stack in stacks {
            if failed(failures, stack) {
                continue;
            }
            // Interrupted: the tests do not start, and the apply is not a success
            // (nor a failed test: the stack does not go back).
            if self.cancel.is_cancelled()
                && let Some(first) = plan.jobs_of(&stack.name, JobKind::Post).next()
            {
                failures.push(format!(
                    "{}/{}: post job not run: interrupted",
                    stack.name, first.job
                ));
                continue;
            }
            if let Err((job, e)) = self
                .run_jobs(stack, plan, JobKind::Post, masker, report)
                .await
            {
                failures.push(format!(
                    "{}/{job}: post job failed: {}",
                    stack.name,
                    masker.mask(&e.to_string())
                ));
            }
        }
        for stack in stacks.iter().filter(|s| failed(failures, s)) {
            let _ = self
                .run_jobs(stack, plan, JobKind::OnFailure, masker, report)
                .await;
        }
        self.prune_all_runs(stacks, plan).await;
    }

    /// Old runs of the jobs of every stack whose jobs the plan runs, and
    /// the runs of jobs a stack no longer declares.
    async fn prune_all_runs(&self, stacks: &[&Stack], plan: &Plan) {
        for stack in stacks {
            let undeclared = self
                .live
                .jobs
                .iter()
                .any(|r| r.stack == stack.name && !stack.jobs.contains_key(&r.job));
            if undeclared || plan.jobs.iter().any(|j| j.stack == stack.name) {
                self.prune_runs(stack).await;
            }
        }
    }
}

/// Records the outcome of a setup or prune step.
fn record(
    report: &mut Report,
    failures: &mut Vec<String>,
    a: &Action,
    result: Result<(), StepError>,
    started: Instant,
) {
    // Text from here on: the failure line and the outcome.
    let result = result.map_err(|e| Failed(e.to_string()));
    if let Err(e) = &result {
        failures.push(format!("{}/{}: {e}", a.stack, a.target));
    }
    fault_point();
    report.outcomes.push(ActionOutcome {
        action: a.clone(),
        result,
        duration: started.elapsed(),
        rolled_back: false,
    });
}

impl Ctx<'_> {
    fn subject(stack: &Stack, what: &str) -> String {
        format!("{}/{what}", stack.name)
    }

    /// The progress subject of one replica: `stack/service`, or
    /// `stack/service.N` when the service runs several (as Swarm names tasks).
    fn replica_subject(stack: &Stack, service: &str, number: u32) -> String {
        if stack.services[service].replicas() > 1 {
            Self::subject(stack, &format!("{service}.{number}"))
        } else {
            Self::subject(stack, service)
        }
    }
}

/// `docker inspect` of a container, `None` when it does not exist.
async fn inspect_if_there(
    docker: &bollard::Docker,
    name: &str,
) -> Result<Option<bollard::models::ContainerInspectResponse>, StepError> {
    crate::live::inspect_container(docker, name)
        .await
        .map_err(|e| match e {
            crate::live::EngineError::Call { source, .. }
            | crate::live::EngineError::Connect { source, .. }
            | crate::live::EngineError::Unreachable { source, .. } => StepError::Engine(source),
        })
}

/// How long the engine waits for a service's container to stop before it
/// kills it: `stop_grace_period`, else 10 s.
fn stop_timeout(stack: &Stack, service: &str) -> i32 {
    stack.services[service]
        .stop_grace_period
        .map_or(10, |d| d.0.as_secs() as i32)
}

/// The last lines of `text` (a container's log, a hook's output) for a
/// failure message, under "last WHAT lines:"; nothing when it is empty.
fn last_lines(what: &str, text: &str) -> String {
    let lines: Vec<&str> = text.trim().lines().collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = &lines[lines.len().saturating_sub(5)..];
    format!("\n    last {what} lines:\n      {}", tail.join("\n      "))
}

/// The replica a container name of a service belongs to (1 for a name that
/// is none of them).
fn replica_number(stack: &Stack, service: &str, name: &str) -> u32 {
    let svc = &stack.services[service];
    (1..=svc.replicas())
        .find(|n| crate::names::replica_name(stack, service, svc, *n) == name)
        .unwrap_or(1)
}

/// Fault injection for the crash-safety tests: with `PLIMSOLL_FAULT_KILL_AFTER=N`
/// the process kills itself with SIGKILL right after its N-th changing engine
/// call, as a power cut or `kill -9` would.
fn fault_point() {
    static LIMIT: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let Some(limit) = *LIMIT.get_or_init(|| {
        std::env::var("PLIMSOLL_FAULT_KILL_AFTER")
            .ok()
            .and_then(|v| v.parse().ok())
    }) else {
        return;
    };
    if CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == limit {
        let _ = std::process::Command::new("kill")
            .args(["-9", &std::process::id().to_string()])
            .status();
        std::process::abort();
    }
}
