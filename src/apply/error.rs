//! The errors of an apply: [`ApplyError`] for the whole run (what `reconcile`
//! and the agent see), [`StepError`] for one engine step (a network, a volume,
//! an image, a container, a hook) and [`ServiceError`] for one service of a wave.
//!
//! Each variant keeps its cause (the engine's error as `#[source]`) and the
//! context (stack, service, container, network). The text (`Display`) is the
//! message users read, cause included, exactly as plimsoll always printed it:
//! print these with `{}`, their chain repeats the cause. A failure becomes text
//! only where it leaves an apply: a progress step, an [`super::ActionOutcome`],
//! the failure lines of [`ApplyError::Services`].

use thiserror::Error;

use super::Report;
use crate::live::EngineError;

/// Why an apply stopped or which services failed.
#[derive(Debug, Error)]
pub enum ApplyError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A pull failed: nothing was changed. `message` is the cause's text,
    /// with the stack's secrets masked.
    #[error("pulling {image} failed: {message}; nothing was changed")]
    Pull {
        image: String,
        message: String,
        #[source]
        source: Box<StepError>,
    },
    /// A build failed: nothing was changed. `message` as for `Pull`.
    #[error("building {image} for {stack}/{service} failed: {message}\n    nothing was changed")]
    Build {
        stack: String,
        service: String,
        image: String,
        message: String,
        #[source]
        source: Box<StepError>,
    },
    /// A `pre` job failed: no container of any stack was changed (images
    /// pulled, networks and volumes created for the jobs stay). `message`
    /// is the job's error with its last log lines, masked.
    #[error("pre job {stack}/{job} failed: {message}\n    no container was changed")]
    PreJob {
        stack: String,
        job: String,
        message: String,
        /// What ran before and after (the jobs, `on-failure` ones included).
        report: Report,
        #[source]
        source: Box<JobError>,
    },
    /// The apply failed (`failure`), and the stacks whose `post` jobs
    /// failed went back to their last good revision (`reconcile` does
    /// this): one line each, masked.
    #[error("{failure}\n{}", back.join("\n"))]
    WentBack {
        failure: Box<ApplyError>,
        back: Vec<String>,
    },
    /// Services failed (conflicts included), one masked line each as
    /// `stack/service: why`; the others were applied.
    #[error("{}", failure_text(failures))]
    Services {
        failures: Vec<String>,
        /// What was done before and despite the failures.
        report: Report,
    },
}

impl ApplyError {
    /// What was done before the apply stopped, when it got that far.
    pub fn report(&self) -> Option<&Report> {
        match self {
            ApplyError::Services { report, .. } | ApplyError::PreJob { report, .. } => Some(report),
            ApplyError::WentBack { failure, .. } => failure.report(),
            _ => None,
        }
    }
}

fn failure_text(failures: &[String]) -> String {
    let n = if failures.len() == 1 {
        "1 service".to_string()
    } else {
        format!("{} services", failures.len())
    };
    let lines: Vec<String> = failures.iter().map(|f| format!("  {f}")).collect();
    format!("{n} failed:\n{}", lines.join("\n"))
}

/// The engine's message of a failed call: the text of its answer when it
/// answered, else the client's error.
pub(super) fn engine_text(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Why a gate (a container running, healthy or completed) was not met.
#[derive(Debug, Error)]
pub enum GateError {
    #[error("{name} has no health check, but a dependent waits for it to be healthy")]
    NoHealthCheck { name: String },
    #[error("interrupted while waiting for {name} to be {word}")]
    Interrupted { name: String, word: &'static str },
    /// `last` is the last health check's output (`; last health check: ...`) or nothing.
    #[error("{name} was not {word} within {}s{last}", timeout.as_secs())]
    TimedOut {
        name: String,
        word: &'static str,
        timeout: std::time::Duration,
        last: String,
    },
    #[error("{}", engine_text(.0))]
    Engine(#[source] bollard::errors::Error),
    /// The container ended or went away (the verdict's words), or the engine could not be reached.
    /// Boxed: it holds the last state seen.
    #[error(transparent)]
    Wait(Box<super::WaitError>),
}

/// Why one step of an apply failed.
#[derive(Debug, Error)]
pub enum StepError {
    /// An engine call failed; the engine's message says what.
    #[error("{}", engine_text(.0))]
    Engine(#[source] bollard::errors::Error),
    /// An engine call failed while `doing` something the engine's message
    /// would not name ("disconnecting web-1", "connecting to network front").
    #[error("{doing}: {}", engine_text(source))]
    EngineDoing {
        doing: String,
        #[source]
        source: bollard::errors::Error,
    },
    /// The engine's pull stream reported an error (its text: no error object).
    #[error("{message}")]
    PullReported { image: String, message: String },
    /// A build failed; the builder's message ends with the build's last lines.
    #[error("{source}")]
    Build {
        image: String,
        /// Boxed: a build error is large and rare.
        #[source]
        source: Box<crate::build::BuildError>,
    },
    #[error("service {service} has no build section")]
    NoBuild { service: String },
    #[error("{kind} {name} is not declared")]
    NotDeclared { kind: &'static str, name: String },
    /// An object plimsoll was about to change is not its own.
    #[error("refusing to {verb} {object}: it does not carry plimsoll's labels for stack {stack}")]
    NotOurs {
        verb: &'static str,
        /// `network NAME`, `volume NAME`, or a container's name.
        object: String,
        stack: String,
    },
    #[error(
        "refusing to recreate network {network}: {container} is attached and was not created by plimsoll; disconnect it (docker network disconnect {network} {container})"
    )]
    ForeignAttached { network: String, container: String },
    #[error(
        "connecting {container} to the recreated network {network} failed: {}; it is off that network until the next reconcile replaces it",
        engine_text(source)
    )]
    Reattach {
        container: String,
        network: String,
        #[source]
        source: bollard::errors::Error,
    },
    /// The container a service wants cannot be expressed on this host.
    #[error("{0}")]
    Desired(#[source] crate::hostpath::Unmappable),
    #[error(
        "mac_address needs Docker API 1.44 (Docker 25) or later; this engine speaks API {major}.{minor}"
    )]
    MacAddress { major: usize, minor: usize },
    /// Packing the secrets and configs copied into a container.
    #[error("{0}")]
    Pack(#[source] std::io::Error),
    /// A gate (running, healthy, completed) was not met; `why` is the gate's
    /// message, `logs` the container's last log lines (or nothing).
    #[error("{why}{logs}")]
    Gate {
        container: String,
        #[source]
        why: Box<GateError>,
        logs: String,
    },
    #[error(transparent)]
    Hook(#[from] HookError),
    /// A `post_start` hook failed and its container was stopped again.
    #[error(
        "{0}\n    the container was stopped again; the next apply starts it and runs its post_start hooks again"
    )]
    PostStartStopped(#[source] HookError),
    #[error(
        "{hook}\n    stopping the container again failed: {}",
        engine_text(source)
    )]
    PostStartNotStopped {
        hook: HookError,
        #[source]
        source: bollard::errors::Error,
    },
}

impl From<bollard::errors::Error> for StepError {
    fn from(e: bollard::errors::Error) -> Self {
        StepError::Engine(e)
    }
}

impl StepError {
    /// An engine error while doing something its message would not name.
    pub(super) fn doing(doing: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> Self {
        let doing = doing.into();
        move |source| StepError::EngineDoing { doing, source }
    }
}

/// Why a `post_start` or `pre_stop` hook failed; `hook` names it
/// (`post_start[0] hook`).
#[derive(Debug, Error)]
pub enum HookError {
    /// `last` holds the hook's last output lines (or nothing).
    #[error("the {hook} exited with code {code}{last}")]
    Exited {
        hook: String,
        code: i64,
        last: String,
    },
    #[error("the {hook} could not run: {source}")]
    CouldNotRun {
        hook: String,
        #[source]
        source: Box<StepError>,
    },
    #[error(
        "the {hook} did not finish within {seconds}s (x-plimsoll.health_timeout sets the bound)"
    )]
    TimedOut { hook: String, seconds: u64 },
}

/// Why a job's run failed (or did not run). The texts carry the run's last
/// log lines, masked by the apply.
#[derive(Debug, Error)]
pub enum JobError {
    /// `last` holds its last log lines (or nothing).
    #[error("exited with code {code}{last}")]
    Exited { code: i64, last: String },
    #[error(
        "did not finish within {}s and was killed (x-plimsoll.timeout sets the bound){last}",
        timeout.as_secs()
    )]
    TimedOut {
        timeout: std::time::Duration,
        last: String,
    },
    #[error("not run: dependency {dependency}: {why}")]
    DependencyGate {
        dependency: String,
        #[source]
        why: Box<GateError>,
    },
    #[error("not run: job {dependency} failed")]
    DependencyFailed { dependency: String },
    #[error("could not run: {0}")]
    CouldNotRun(#[source] Box<StepError>),
    #[error("its container {container} was removed while it ran")]
    Gone { container: String },
    #[error("interrupted; the run was killed")]
    Interrupted,
}

/// Why one service of a wave failed.
#[derive(Debug, Error)]
pub enum ServiceError {
    #[error("not changed: interrupted")]
    Interrupted,
    #[error("not changed: dependency {dependency} failed")]
    DependencyFailed { dependency: String },
    /// A dependency's replica did not meet the condition; `why` is the gate's message.
    #[error("not changed: dependency {dependency}: {why}")]
    DependencyGate {
        dependency: String,
        #[source]
        why: Box<GateError>,
    },
    #[error(transparent)]
    Step(#[from] StepError),
    /// A replacement failed and the old container runs again as `container`.
    #[error("{failure}\n    rolled back: the old container runs again as {container}")]
    RolledBack {
        container: String,
        #[source]
        failure: Box<StepError>,
    },
    #[error("{failure}; rolling back failed: {source}")]
    RollbackFailed {
        failure: Box<StepError>,
        #[source]
        source: Box<StepError>,
    },
    /// The service failed, and connecting its kept containers to the
    /// networks recreated under them failed too.
    #[error("{failure}\n    {source}")]
    NotReattached {
        failure: Box<ServiceError>,
        #[source]
        source: Box<StepError>,
    },
}

impl ServiceError {
    /// Whether the service's old container is serving again.
    pub fn rolled_back(&self) -> bool {
        match self {
            ServiceError::RolledBack { .. } => true,
            ServiceError::NotReattached { failure, .. } => failure.rolled_back(),
            _ => false,
        }
    }
}
