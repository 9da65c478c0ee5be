//! Applying a plan to the engine: networks and volumes first, then images,
//! then services wave by wave in dependency order (services of one wave in
//! parallel), each behind its dependencies' gates. A network whose settings
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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bollard::exec::StartExecResults;
use bollard::models::{
    ContainerCreateBody, DeviceMapping, DeviceRequest, EndpointIpamConfig, EndpointSettings,
    ExecConfig, HealthConfig, HostConfig, HostConfigLogConfig, Ipam, IpamConfig, Mount,
    MountBindOptions, MountTmpfsOptions, MountType as EngineMountType, MountVolumeOptions,
    NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest, NetworkingConfig,
    PortBinding, ResourcesBlkioWeightDevice, ResourcesUlimits, RestartPolicy,
    RestartPolicyNameEnum, ThrottleDevice, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, RenameContainerOptionsBuilder, StopContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;
use futures_util::future::join_all;
use thiserror::Error;

use crate::diff::{ContainerConfig, labels};
use crate::events::{Outcome, Progress};
use crate::graph::StackGraph;
use crate::live::{Engine, EngineError, Live, LiveContainer, RunState};
use crate::mounts::Mounts;
use crate::plan::{Action, ActionKind, Plan, desired_container, hashed_contents};
use crate::spec::model::{Condition, Hook, MountType, Stack};
use crate::spec::secrets::Masker;

/// How many services of one wave are changed at once.
const PARALLEL: usize = 4;
/// How often a gate looks at a container.
const POLL: Duration = Duration::from_millis(100);
/// The suffix of an old container kept during a recreate.
pub const OLD_SUFFIX: &str = "-plimsoll-old";

#[derive(Debug, Error)]
pub enum ApplyError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("pulling {image} failed: {message}; nothing was changed")]
    Pull { image: String, message: String },
    #[error("building {image} for {stack}/{service} failed: {message}\n    nothing was changed")]
    Build {
        stack: String,
        service: String,
        image: String,
        message: String,
    },
    #[error("{}", failure_text(failures))]
    Services {
        failures: Vec<String>,
        /// What was done before and despite the failures.
        report: Report,
    },
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

/// What happened to one action.
#[derive(Debug, Clone)]
pub struct ActionOutcome {
    pub action: Action,
    pub result: Result<(), String>,
    pub duration: Duration,
    pub rolled_back: bool,
}

/// What an apply did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub outcomes: Vec<ActionOutcome>,
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

/// What a plan was computed from besides the stacks: the engine's state and
/// the content hashes of the repository files services mount.
#[derive(Clone, Copy)]
pub struct Observed<'a> {
    pub live: &'a Live,
    pub mounts: &'a Mounts,
}

/// Applies `plan` (computed from `stacks` and `seen`). Services whose names
/// conflict with foreign containers are not in the plan and fail the apply.
pub async fn apply(
    engine: &Engine,
    stacks: &[&Stack],
    plan: &Plan,
    seen: Observed<'_>,
    masker: &Masker,
    progress: &dyn Progress,
    cancel: &Cancel,
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
                let r = cx.build(s, &service, &a.target).await;
                if let Err(message) = &r {
                    return Err(ApplyError::Build {
                        stack: s.name.clone(),
                        service,
                        image: a.target.clone(),
                        message: masker.mask(message).into_owned(),
                    });
                }
                built.push(a.target.clone());
                r
            }
            (ActionKind::CreateNetwork, Some(s)) => cx.create_network(s, &a.target).await,
            (ActionKind::RecreateNetwork, Some(s)) => cx.recreate_network(s, &a.target).await,
            (ActionKind::CreateVolume, Some(s)) => cx.create_volume(s, &a.target).await,
            (ActionKind::PullImage, _) => {
                // The platform a service of this stack asks for, if any.
                let platform = stack.and_then(|s| {
                    s.services
                        .iter()
                        .filter(|(n, svc)| svc.image_ref(&s.name, n) == a.target)
                        .find_map(|(_, svc)| svc.platform.as_deref())
                });
                let r = cx.pull(&a.target, platform).await;
                if let Err(message) = &r {
                    return Err(ApplyError::Pull {
                        image: a.target.clone(),
                        message: masker.mask(message).into_owned(),
                    });
                }
                r
            }
            _ => continue,
        };
        record(&mut report, &mut failures, a, result, started);
    }
    if failures.len() > conflicts {
        return Err(ApplyError::Services { failures, report });
    }
    // Containers are created from what the images built just now supply.
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

    for stack in stacks {
        let Ok(graph) = StackGraph::build(stack) else {
            continue;
        };
        let actions: BTreeMap<String, Vec<&Action>> = plan
            .actions
            .iter()
            .filter(|a| a.stack == stack.name && a.service.is_some())
            .filter(|a| a.action != ActionKind::Build)
            .fold(BTreeMap::new(), |mut m, a| {
                m.entry(a.service.clone().unwrap_or_default())
                    .or_default()
                    .push(a);
                m
            });
        let conflicted: BTreeSet<String> = plan
            .conflicts
            .iter()
            .filter(|c| c.stack == stack.name)
            .filter_map(|c| c.service.clone())
            .collect();
        let mut failed: BTreeSet<String> = conflicted.clone();
        for wave in graph.waves() {
            let todo: Vec<&String> = wave.iter().filter(|s| actions.contains_key(*s)).collect();
            for chunk in todo.chunks(PARALLEL) {
                let runs = chunk.iter().map(|service| {
                    let acts = actions[*service].clone();
                    let failed = &failed;
                    let graph = &graph;
                    let cx = &cx;
                    async move {
                        let started = Instant::now();
                        let r = cx.run_service(stack, graph, service, &acts, failed).await;
                        (service.to_string(), acts, r, started.elapsed())
                    }
                });
                for (service, acts, r, duration) in join_all(runs).await {
                    let (result, rolled_back) = match r {
                        Ok(()) => (Ok(()), false),
                        Err(ServiceFailure {
                            message,
                            rolled_back,
                        }) => {
                            failed.insert(service.clone());
                            failures.push(format!(
                                "{}/{service}: {}",
                                stack.name,
                                masker.mask(&message)
                            ));
                            (Err(message), rolled_back)
                        }
                    };
                    for a in acts {
                        report.outcomes.push(ActionOutcome {
                            action: a.clone(),
                            result: result.clone(),
                            duration,
                            rolled_back,
                        });
                    }
                }
            }
        }
    }
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

/// Records the outcome of a setup or prune step.
fn record(
    report: &mut Report,
    failures: &mut Vec<String>,
    a: &Action,
    result: Result<(), String>,
    started: Instant,
) {
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

/// Why one service failed, and whether its old container is serving again.
struct ServiceFailure {
    message: String,
    rolled_back: bool,
}

impl From<String> for ServiceFailure {
    fn from(message: String) -> Self {
        ServiceFailure {
            message,
            rolled_back: false,
        }
    }
}

fn engine_msg(e: bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message,
        other => other.to_string(),
    }
}

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

    async fn create_network(&self, stack: &Stack, name: &str) -> Result<(), String> {
        let Some((key, net)) = stack.networks.iter().find(|(_, n)| n.name == name) else {
            return Err(format!("network {name} is not declared"));
        };
        let subject = Self::subject(stack, &format!("network {name}"));
        self.progress.step(&subject, "creating", Outcome::Working);
        let mut l: HashMap<String, String> = net.labels.clone().into_iter().collect();
        l.insert(labels::STACK.into(), stack.name.clone());
        if let Some(repo) = &stack.source.repository {
            l.insert(labels::REPOSITORY.into(), repo.clone());
        }
        l.insert(labels::NETWORK.into(), key.clone());
        l.insert(labels::COMPOSE_PROJECT.into(), stack.name.clone());
        l.insert(labels::COMPOSE_NETWORK.into(), key.clone());
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: net.driver.clone(),
            internal: Some(net.internal),
            attachable: net.attachable.then_some(true),
            enable_ipv6: net.enable_ipv6,
            ipam: net.ipam.as_ref().map(|i| Ipam {
                driver: i.driver.clone(),
                config: Some(
                    i.config
                        .iter()
                        .map(|p| IpamConfig {
                            subnet: p.subnet.clone(),
                            ip_range: p.ip_range.clone(),
                            gateway: p.gateway.clone(),
                            auxiliary_addresses: (!p.aux_addresses.is_empty())
                                .then(|| p.aux_addresses.clone().into_iter().collect()),
                        })
                        .collect(),
                ),
                options: (!i.options.is_empty()).then(|| i.options.clone().into_iter().collect()),
            }),
            options: Some(net.driver_opts.clone().into_iter().collect()),
            labels: Some(l),
            ..Default::default()
        };
        match self.engine.docker.create_network(req).await {
            Ok(_) => {
                self.progress.step(&subject, "created", Outcome::Done);
                Ok(())
            }
            Err(e) => {
                let m = engine_msg(e);
                self.progress.step(&subject, &m, Outcome::Failed);
                Err(m)
            }
        }
    }

    /// Recreates a network whose settings changed in git (the engine cannot
    /// change them in place, nor remove a network with endpoints): every
    /// container attached is disconnected (only plimsoll's; labels re-read),
    /// the network removed and created as git says. The attached services
    /// are recreated in their waves; until then they are off this network.
    async fn recreate_network(&self, stack: &Stack, name: &str) -> Result<(), String> {
        let subject = Self::subject(stack, &format!("network {name}"));
        let docker = &self.engine.docker;
        let net = docker
            .inspect_network(name, None)
            .await
            .map_err(engine_msg)?;
        if net.labels.unwrap_or_default().get(labels::STACK) != Some(&stack.name) {
            return Err(format!(
                "refusing to recreate network {name}: it does not carry plimsoll's labels for stack {}",
                stack.name
            ));
        }
        // Running containers have endpoints; stopped ones only name the
        // network in their settings, as the snapshot saw them.
        let mut attached: BTreeSet<String> = net
            .containers
            .unwrap_or_default()
            .into_values()
            .filter_map(|c| c.name)
            .collect();
        if let Some(seen) = self.live.networks.get(name) {
            attached.extend(seen.attached.iter().cloned());
        }
        self.progress.step(
            &subject,
            &format!(
                "recreating: disconnecting {} container{}",
                attached.len(),
                if attached.len() == 1 { "" } else { "s" }
            ),
            Outcome::Working,
        );
        for container in &attached {
            let Some(c) = inspect_if_there(docker, container).await? else {
                continue;
            };
            let ours = c
                .config
                .and_then(|c| c.labels)
                .is_some_and(|l| l.contains_key(labels::STACK));
            if !ours {
                return Err(format!(
                    "refusing to recreate network {name}: {container} is attached and was not created by plimsoll; disconnect it (docker network disconnect {name} {container})"
                ));
            }
            let connected = c
                .network_settings
                .and_then(|n| n.networks)
                .is_some_and(|n| n.contains_key(name));
            if !connected {
                continue;
            }
            let req = NetworkDisconnectRequest {
                container: container.clone(),
                force: Some(true),
            };
            docker
                .disconnect_network(name, req)
                .await
                .map_err(|e| format!("disconnecting {container}: {}", engine_msg(e)))?;
            fault_point();
        }
        self.progress
            .step(&subject, "recreating: removing", Outcome::Working);
        docker.remove_network(name).await.map_err(engine_msg)?;
        fault_point();
        self.create_network(stack, name).await
    }

    async fn create_volume(&self, stack: &Stack, name: &str) -> Result<(), String> {
        let Some((key, vol)) = stack.volumes.iter().find(|(_, v)| v.name == name) else {
            return Err(format!("volume {name} is not declared"));
        };
        let subject = Self::subject(stack, &format!("volume {name}"));
        let mut l: HashMap<String, String> = vol.labels.clone().into_iter().collect();
        l.insert(labels::STACK.into(), stack.name.clone());
        if let Some(repo) = &stack.source.repository {
            l.insert(labels::REPOSITORY.into(), repo.clone());
        }
        l.insert(labels::VOLUME.into(), key.clone());
        l.insert(labels::COMPOSE_PROJECT.into(), stack.name.clone());
        l.insert(labels::COMPOSE_VOLUME.into(), key.clone());
        let req = VolumeCreateRequest {
            name: Some(name.to_string()),
            driver: vol.driver.clone(),
            driver_opts: Some(vol.driver_opts.clone().into_iter().collect()),
            labels: Some(l),
            ..Default::default()
        };
        self.engine
            .docker
            .create_volume(req)
            .await
            .map_err(engine_msg)?;
        self.progress.step(&subject, "created", Outcome::Done);
        Ok(())
    }

    async fn pull(&self, image: &str, platform: Option<&str>) -> Result<(), String> {
        pull_for(self.engine, image, platform, self.progress).await
    }

    /// Builds a service's image; an image built earlier from the same
    /// content (kept for rollback) is tagged instead.
    async fn build(&self, stack: &Stack, service: &str, image: &str) -> Result<(), String> {
        let Some(b) = stack.services.get(service).and_then(|s| s.build.clone()) else {
            return Err(format!("service {service} has no build section"));
        };
        let req = crate::build::Request {
            stack: stack.name.clone(),
            service: service.to_string(),
            image: image.to_string(),
            build: b,
            pinned: stack
                .source
                .pinned_builds
                .get(service)
                .and_then(|h| crate::build::BuildHash::parse(h)),
        };
        crate::build::build(self.engine, &req, &self.live.built, self.progress)
            .await
            .map(|_| ())
    }

    async fn inspect_state(&self, name: &str) -> Result<Option<RunState>, String> {
        let c = inspect_if_there(&self.engine.docker, name).await?;
        Ok(c.map(|c| crate::live::normalize(c, &Default::default()).state))
    }

    /// Waits until the container `name` meets `condition`.
    async fn gate(
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
    async fn last_logs(&self, name: &str) -> String {
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

    /// Runs a service's `post_start` hooks in the container `id` it just
    /// started. When one fails, the container is stopped again (without its
    /// `pre_stop` hooks), so the next apply starts it and runs them again.
    async fn post_start(
        &self,
        stack: &Stack,
        service: &str,
        number: u32,
        id: &str,
    ) -> Result<(), String> {
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
            Ok(()) => Err(format!(
                "{e}\n    the container was stopped again; the next apply starts it and runs its post_start hooks again"
            )),
            Err(stop) => Err(format!(
                "{e}\n    stopping the container again failed: {}",
                engine_msg(stop)
            )),
        }
    }

    /// Runs a service's `pre_stop` hooks in its container `container`
    /// before plimsoll stops it, if it is `running`. A failing hook is a
    /// warning: the stop goes on.
    async fn pre_stop(
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
    async fn run_hooks(
        &self,
        stack: &Stack,
        service: &str,
        subject: &str,
        key: &str,
        hooks: &[Hook],
        container: &str,
    ) -> Result<(), String> {
        let timeout = gate_timeout(stack, service);
        for (i, hook) in hooks.iter().enumerate() {
            let what = format!("{key}[{i}] hook");
            self.progress
                .step(subject, &format!("running the {what}"), Outcome::Working);
            match tokio::time::timeout(timeout, exec(&self.engine.docker, container, hook)).await {
                Ok(Ok((0, _))) => {}
                Ok(Ok((code, output))) => {
                    return Err(format!(
                        "the {what} exited with code {code}{}",
                        last_lines("output", &output)
                    ));
                }
                Ok(Err(e)) => return Err(format!("the {what} could not run: {e}")),
                Err(_) => {
                    return Err(format!(
                        "the {what} did not finish within {}s (x-plimsoll.health_timeout sets the bound)",
                        timeout.as_secs()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Runs a service's actions; when they fail, the containers the service
    /// keeps (rolled back, or not reached) are connected again to the
    /// networks recreated under them, so it is not left cut off.
    async fn run_service(
        &self,
        stack: &Stack,
        graph: &StackGraph,
        service: &str,
        actions: &[&Action],
        failed: &BTreeSet<String>,
    ) -> Result<(), ServiceFailure> {
        let mut r = self
            .run_actions(stack, graph, service, actions, failed)
            .await;
        if let Err(f) = &mut r
            && let Err(e) = self.reattach(stack, service).await
        {
            f.message = format!("{}\n    {e}", f.message);
        }
        r
    }

    /// Connects the containers of a service that are still there to the
    /// networks recreated under them, with the aliases they had; those
    /// already connected (replacements) are left as they are.
    async fn reattach(&self, stack: &Stack, service: &str) -> Result<(), String> {
        let docker = &self.engine.docker;
        for old in self
            .live
            .containers
            .iter()
            .filter(|c| c.stack == stack.name && c.service == service)
        {
            let lost: Vec<(&String, &BTreeSet<String>)> = old
                .config
                .networks
                .iter()
                .filter(|(n, _)| self.renewed.contains(*n))
                .collect();
            if lost.is_empty() {
                continue;
            }
            // Gone: replaced, and its successor is on the new network.
            let Some(now) = inspect_if_there(docker, &old.id).await? else {
                continue;
            };
            let connected = now
                .network_settings
                .and_then(|n| n.networks)
                .unwrap_or_default();
            for (net, aliases) in lost
                .into_iter()
                .filter(|(n, _)| !connected.contains_key(*n))
            {
                let req = NetworkConnectRequest {
                    container: old.id.clone(),
                    endpoint_config: Some(EndpointSettings {
                        aliases: Some(aliases.iter().cloned().collect()),
                        links: (!old.config.links.is_empty())
                            .then(|| old.config.links.iter().cloned().collect()),
                        ..Default::default()
                    }),
                };
                docker.connect_network(net, req).await.map_err(|e| {
                    format!(
                        "connecting {} to the recreated network {net} failed: {}; it is off that network until the next reconcile replaces it",
                        old.name.trim_end_matches(OLD_SUFFIX),
                        engine_msg(e)
                    )
                })?;
                fault_point();
            }
        }
        Ok(())
    }

    async fn run_actions(
        &self,
        stack: &Stack,
        graph: &StackGraph,
        service: &str,
        actions: &[&Action],
        failed: &BTreeSet<String>,
    ) -> Result<(), ServiceFailure> {
        let subject = Self::subject(stack, service);
        if self.cancel.is_cancelled() {
            let m = "not changed: interrupted".to_string();
            self.progress.step(&subject, &m, Outcome::Failed);
            return Err(m.into());
        }
        for (dep, condition) in graph.dependencies(service) {
            if failed.contains(&dep) {
                let m = format!("not changed: dependency {dep} failed");
                self.progress.step(&subject, &m, Outcome::Failed);
                return Err(m.into());
            }
            let dep_svc = &stack.services[&dep];
            let has_health = self.has_health(stack, &dep);
            self.progress
                .step(&subject, &format!("waiting for {dep}"), Outcome::Working);
            // Every replica of the dependency meets the condition.
            for n in 1..=dep_svc.replicas() {
                let dep_name = crate::diff::replica_name(stack, &dep, dep_svc, n);
                if let Err(e) = self
                    .gate(
                        &subject,
                        &dep_name,
                        condition,
                        gate_timeout(stack, &dep),
                        has_health,
                    )
                    .await
                {
                    let m = format!("not changed: dependency {dep}: {e}");
                    self.progress.step(&subject, &m, Outcome::Failed);
                    return Err(m.into());
                }
            }
        }
        // One container at a time: a replica whose replacement fails is
        // rolled back and the replicas after it are not touched.
        for a in actions {
            let r = match a.action {
                ActionKind::Create => {
                    let number = replica_number(stack, service, &a.target);
                    match self.create_and_start(stack, service, number, None).await {
                        Ok(id) => self.post_start(stack, service, number, &id).await,
                        Err(e) => Err(e),
                    }
                    .map_err(ServiceFailure::from)
                }
                ActionKind::Recreate => self.recreate(stack, service, &a.target).await,
                ActionKind::Start => {
                    self.progress.step(&subject, "starting", Outcome::Working);
                    let number = replica_number(stack, service, &a.target);
                    match self.engine.docker.start_container(&a.target, None).await {
                        Ok(()) => self.post_start(stack, service, number, &a.target).await,
                        Err(e) => Err(engine_msg(e)),
                    }
                    .map_err(ServiceFailure::from)
                }
                ActionKind::Restart => {
                    self.progress.step(&subject, "restarting", Outcome::Working);
                    let number = replica_number(stack, service, &a.target);
                    match self.engine.docker.restart_container(&a.target, None).await {
                        Ok(()) => self.post_start(stack, service, number, &a.target).await,
                        Err(e) => Err(engine_msg(e)),
                    }
                    .map_err(ServiceFailure::from)
                }
                ActionKind::Remove => {
                    self.progress.step(
                        &subject,
                        &format!("removing {}", a.target),
                        Outcome::Working,
                    );
                    self.stop_and_remove(stack, service, &a.target)
                        .await
                        .map_err(ServiceFailure::from)
                }
                _ => Ok(()),
            };
            fault_point();
            if let Err(f) = r {
                self.progress.step(&subject, &f.message, Outcome::Failed);
                return Err(f);
            }
        }
        self.progress.step(&subject, "done", Outcome::Done);
        Ok(())
    }

    /// A container `docker compose` made for this stack and service under the
    /// name plimsoll needs: it is replaced like one of plimsoll's own.
    async fn adoptable(
        &self,
        stack: &Stack,
        service: &str,
        name: &str,
    ) -> Result<Option<LiveContainer>, String> {
        let Some(f) = self.live.foreign.iter().find(|f| f.name == name) else {
            return Ok(None);
        };
        if f.compose_project.as_deref() != Some(stack.name.as_str())
            || f.compose_service.as_deref() != Some(service)
        {
            return Ok(None);
        }
        let c = self
            .engine
            .docker
            .inspect_container(&f.id, None)
            .await
            .map_err(engine_msg)?;
        Ok(Some(crate::live::normalize(c, &Default::default())))
    }

    /// One prune step: a container (stopped gracefully first), a network or a volume.
    async fn prune(&self, a: &Action) -> Result<(), String> {
        let subject = format!("{}/{}", a.stack, a.target);
        let why = a
            .reasons
            .first()
            .map_or("no longer declared in git", String::as_str);
        self.progress
            .step(&subject, &format!("removing ({why})"), Outcome::Working);
        let r = match a.action {
            ActionKind::Remove => {
                let opts = StopContainerOptionsBuilder::default().t(10).build();
                let _ = self
                    .engine
                    .docker
                    .stop_container(&a.target, Some(opts))
                    .await;
                self.remove_managed(&a.stack, &a.target).await
            }
            ActionKind::RemoveNetwork => {
                let n = self
                    .engine
                    .docker
                    .inspect_network(&a.target, None)
                    .await
                    .map_err(engine_msg)?;
                if n.labels.unwrap_or_default().get(labels::STACK) != Some(&a.stack) {
                    return Err(format!(
                        "refusing to remove network {}: it does not carry plimsoll's labels for stack {}",
                        a.target, a.stack
                    ));
                }
                self.engine
                    .docker
                    .remove_network(&a.target)
                    .await
                    .map_err(engine_msg)
            }
            ActionKind::RemoveVolume => {
                let v = self
                    .engine
                    .docker
                    .inspect_volume(&a.target)
                    .await
                    .map_err(engine_msg)?;
                if v.labels.get(labels::STACK) != Some(&a.stack) {
                    return Err(format!(
                        "refusing to remove volume {}: it does not carry plimsoll's labels for stack {}",
                        a.target, a.stack
                    ));
                }
                self.engine
                    .docker
                    .remove_volume(
                        &a.target,
                        None::<bollard::query_parameters::RemoveVolumeOptions>,
                    )
                    .await
                    .map_err(engine_msg)
            }
            _ => Ok(()),
        };
        match &r {
            Ok(()) => self.progress.step(&subject, "removed", Outcome::Done),
            Err(e) => self.progress.step(&subject, e, Outcome::Failed),
        }
        r
    }

    /// Stops a container of a declared service (its stop grace period, as
    /// for a replacement), then removes it: a replica scaled away, or an extra copy.
    async fn stop_and_remove(
        &self,
        stack: &Stack,
        service: &str,
        name: &str,
    ) -> Result<(), String> {
        let subject = Self::replica_subject(stack, service, replica_number(stack, service, name));
        let running = self
            .live
            .containers
            .iter()
            .any(|c| c.name == name && c.state.is_running());
        self.pre_stop(stack, service, &subject, name, running).await;
        let opts = StopContainerOptionsBuilder::default()
            .t(stop_timeout(stack, service))
            .build();
        // A container that is already stopped (304) or gone is removed below or reported there.
        let _ = self.engine.docker.stop_container(name, Some(opts)).await;
        self.remove_managed(&stack.name, name).await
    }

    /// Whether a service's containers have a health check (their own or the image's).
    fn has_health(&self, stack: &Stack, service: &str) -> bool {
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

    /// Removes a container after re-reading its labels: only plimsoll's own.
    async fn remove_managed(&self, stack: &str, name: &str) -> Result<(), String> {
        let c = self
            .engine
            .docker
            .inspect_container(name, None)
            .await
            .map_err(engine_msg)?;
        let owner = c
            .config
            .and_then(|c| c.labels)
            .and_then(|l| l.get(labels::STACK).cloned());
        if owner.as_deref() != Some(stack) {
            return Err(format!(
                "refusing to remove {name}: it does not carry plimsoll's labels for stack {stack}"
            ));
        }
        let opts = RemoveContainerOptionsBuilder::default().force(true).build();
        self.engine
            .docker
            .remove_container(name, Some(opts))
            .await
            .map_err(engine_msg)
    }

    /// Creates replica `number` of the service under its name and starts it.
    /// `carry` holds anonymous volumes of an old container to reuse, by target.
    async fn create_and_start(
        &self,
        stack: &Stack,
        service: &str,
        number: u32,
        carry: Option<&BTreeMap<String, String>>,
    ) -> Result<String, String> {
        let subject = Self::replica_subject(stack, service, number);
        let mounted = self
            .mounts
            .get(&(stack.name.clone(), service.to_string()))
            .and_then(|r| r.as_ref().ok())
            .cloned()
            .unwrap_or_default();
        // Created from the paths of the checkout at hand (not re-rooted).
        let want = desired_container(
            stack,
            service,
            number,
            self.live,
            &hashed_contents(stack, service),
            &mounted,
            None,
        );
        let name = want.config.name.clone();
        self.progress.step(&subject, "creating", Outcome::Working);
        let (body, extra_networks) = create_body(
            stack,
            service,
            &want.config,
            carry.unwrap_or(&BTreeMap::new()),
        );
        if want.config.mac_address.is_some() {
            let v = self.engine.docker.client_version();
            if (v.major_version, v.minor_version) < (1, 44) {
                return Err(format!(
                    "mac_address needs Docker API 1.44 (Docker 25) or later; this engine speaks API {}.{}",
                    v.major_version, v.minor_version
                ));
            }
        }
        let mut opts = CreateContainerOptionsBuilder::default().name(&name);
        if let Some(platform) = &want.config.platform {
            opts = opts.platform(platform);
        }
        let opts = opts.build();
        let created = self
            .engine
            .docker
            .create_container(Some(opts), body)
            .await
            .map_err(engine_msg)?;
        fault_point();
        for (net, endpoint) in extra_networks {
            let req = NetworkConnectRequest {
                container: created.id.clone(),
                endpoint_config: Some(endpoint),
            };
            self.engine
                .docker
                .connect_network(&net, req)
                .await
                .map_err(|e| format!("connecting to network {net}: {}", engine_msg(e)))?;
            fault_point();
        }
        self.copy_contents(stack, service, &created.id).await?;
        self.progress.step(&subject, "starting", Outcome::Working);
        self.engine
            .docker
            .start_container(&created.id, None)
            .await
            .map_err(engine_msg)?;
        fault_point();
        Ok(created.id)
    }

    /// Copies secrets and configs whose content comes from a variable or inline.
    async fn copy_contents(&self, stack: &Stack, service: &str, id: &str) -> Result<(), String> {
        let svc = &stack.services[service];
        let mut files: Vec<(String, Vec<u8>, u32)> = Vec::new();
        for (refs, objects, dir, default_mode) in [
            (&svc.secrets, &stack.secrets, "/run/secrets/", 0o444),
            (&svc.configs, &stack.configs, "/", 0o444),
        ] {
            for r in refs {
                let Some(o) = objects.get(&r.source) else {
                    continue;
                };
                let content = match (&o.environment, &o.content) {
                    (Some(var), _) => stack.source.variables.get(var).cloned().unwrap_or_default(),
                    (None, Some(c)) => c.clone(),
                    _ => continue,
                };
                let target = r
                    .target
                    .clone()
                    .unwrap_or_else(|| format!("{dir}{}", r.source));
                let target = if target.starts_with('/') {
                    target
                } else {
                    format!("{dir}{target}")
                };
                files.push((target, content.into_bytes(), r.mode.unwrap_or(default_mode)));
            }
        }
        if files.is_empty() {
            return Ok(());
        }
        let mut tar = tar::Builder::new(Vec::new());
        for (path, data, mode) in &files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(*mode);
            header.set_cksum();
            tar.append_data(&mut header, path.trim_start_matches('/'), data.as_slice())
                .map_err(|e| e.to_string())?;
        }
        let bytes = tar.into_inner().map_err(|e| e.to_string())?;
        let opts = UploadToContainerOptionsBuilder::default().path("/").build();
        self.engine
            .docker
            .upload_to_container(id, Some(opts), bollard::body_full(bytes.into()))
            .await
            .map_err(|e| format!("copying secrets into the container: {}", engine_msg(e)))
    }

    /// Replaces the container `name` of a service (one replica), keeping the
    /// old one until the new one passes its gate.
    async fn recreate(
        &self,
        stack: &Stack,
        service: &str,
        name: &str,
    ) -> Result<(), ServiceFailure> {
        let svc = &stack.services[service];
        let number = replica_number(stack, service, name);
        let subject = Self::replica_subject(stack, service, number);
        let name = name.to_string();
        let mine = || {
            self.live
                .containers
                .iter()
                .filter(|c| c.stack == stack.name && c.service == service)
        };
        let old = match mine()
            .find(|c| c.name == name)
            .or_else(|| mine().find(|c| c.number == number))
            .or_else(|| mine().find(|_| svc.replicas() == 1))
        {
            Some(c) => Some(c.clone()),
            None => self
                .adoptable(stack, service, &name)
                .await
                .map_err(ServiceFailure::from)?,
        };
        let Some(old) = old else {
            let id = self.create_and_start(stack, service, number, None).await?;
            return self
                .post_start(stack, service, number, &id)
                .await
                .map_err(ServiceFailure::from);
        };
        let docker = &self.engine.docker;
        let old_was_running = old.state.is_running() || old.name.ends_with(OLD_SUFFIX);
        let parked = format!("{name}{OLD_SUFFIX}");
        self.pre_stop(stack, service, &subject, &old.id, old.state.is_running())
            .await;
        self.progress
            .step(&subject, "stopping the old container", Outcome::Working);
        let opts = StopContainerOptionsBuilder::default()
            .t(stop_timeout(stack, service))
            .build();
        match docker.stop_container(&old.id, Some(opts)).await {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => {}
            Err(e) => return Err(engine_msg(e).into()),
        }
        fault_point();
        if old.name != parked {
            let rename = RenameContainerOptionsBuilder::default()
                .name(&parked)
                .build();
            docker
                .rename_container(&old.id, rename)
                .await
                .map_err(|e| ServiceFailure::from(engine_msg(e)))?;
            fault_point();
        }

        let carry = old.anonymous_volumes.clone();
        let attempt = async {
            let id = self
                .create_and_start(stack, service, number, Some(&carry))
                .await?;
            let hooks = &svc.post_start;
            self.run_hooks(stack, service, &subject, "post_start", hooks, &id)
                .await?;
            let has_health = self.has_health(stack, service);
            let condition = if has_health {
                Condition::ServiceHealthy
            } else {
                Condition::ServiceStarted
            };
            if let Err(e) = self
                .gate(
                    &subject,
                    &id,
                    condition,
                    gate_timeout(stack, service),
                    has_health,
                )
                .await
            {
                let logs = self.last_logs(&id).await;
                return Err(format!("{e}{logs}"));
            }
            Ok(id)
        };
        match attempt.await {
            Ok(_) => {
                let opts = RemoveContainerOptionsBuilder::default().force(true).build();
                docker
                    .remove_container(&old.id, Some(opts))
                    .await
                    .map_err(|e| ServiceFailure::from(engine_msg(e)))?;
                fault_point();
                Ok(())
            }
            Err(why) => {
                self.progress.step(
                    &subject,
                    "new container failed: rolling back",
                    Outcome::Working,
                );
                match restore(docker, &name, &old.id, old_was_running).await {
                    Ok(()) => Err(ServiceFailure {
                        message: format!(
                            "{why}\n    rolled back: the old container runs again as {name}"
                        ),
                        rolled_back: true,
                    }),
                    Err(e) => Err(format!("{why}; rolling back failed: {e}").into()),
                }
            }
        }
    }
}

/// `docker inspect` of a container, `None` when it does not exist.
async fn inspect_if_there(
    docker: &bollard::Docker,
    name: &str,
) -> Result<Option<bollard::models::ContainerInspectResponse>, String> {
    match docker.inspect_container(name, None).await {
        Ok(c) => Ok(Some(c)),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(e) => Err(engine_msg(e)),
    }
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

/// Runs one hook in a container through the exec API and waits for it to
/// end: its exit code and what it printed (stdout and stderr, the last 64 KiB).
async fn exec(
    docker: &bollard::Docker,
    container: &str,
    hook: &Hook,
) -> Result<(i64, String), String> {
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
    let created = docker
        .create_exec(container, config)
        .await
        .map_err(engine_msg)?;
    let mut output: Vec<u8> = Vec::new();
    if let StartExecResults::Attached {
        output: mut stream, ..
    } = docker
        .start_exec(&created.id, None)
        .await
        .map_err(engine_msg)?
    {
        const KEEP: usize = 64 << 10;
        while let Some(chunk) = stream.next().await {
            output.extend_from_slice(&chunk.map_err(engine_msg)?.into_bytes());
            if output.len() > 2 * KEEP {
                output.drain(..output.len() - KEEP);
            }
        }
    }
    // The exit code is set a moment after the output ends.
    loop {
        let inspected = docker.inspect_exec(&created.id).await.map_err(engine_msg)?;
        match (inspected.running, inspected.exit_code) {
            (Some(true), _) | (_, None) => tokio::time::sleep(POLL).await,
            (_, Some(code)) => return Ok((code, String::from_utf8_lossy(&output).into_owned())),
        }
    }
}

/// The replica a container name of a service belongs to (1 for a name that
/// is none of them).
fn replica_number(stack: &Stack, service: &str, name: &str) -> u32 {
    let svc = &stack.services[service];
    (1..=svc.replicas())
        .find(|n| crate::diff::replica_name(stack, service, svc, *n) == name)
        .unwrap_or(1)
}

/// Puts a kept old container back: removes whatever holds `name` now,
/// renames the old one back and starts it again.
async fn restore(
    docker: &bollard::Docker,
    name: &str,
    old_id: &str,
    start: bool,
) -> Result<(), String> {
    // A create that a killed run had in flight can still finish in the daemon
    // after the remove; then the name is taken again: remove and retry.
    for attempt in 0..3 {
        let opts = RemoveContainerOptionsBuilder::default().force(true).build();
        match docker.remove_container(name, Some(opts)).await {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(format!("removing the new container: {}", engine_msg(e))),
        }
        fault_point();
        let rename = RenameContainerOptionsBuilder::default().name(name).build();
        match docker.rename_container(old_id, rename).await {
            Ok(()) => break,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) if attempt < 2 => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(engine_msg(e)),
        }
    }
    fault_point();
    if start {
        docker
            .start_container(old_id, None)
            .await
            .map_err(engine_msg)?;
        fault_point();
    }
    Ok(())
}

/// Finishes or undoes replacements a killed run left half done, before
/// planning: for every kept `<name>-plimsoll-old` container, a successor that
/// runs (and is healthy, where it has a health check) means the replacement
/// succeeded and the old one goes; otherwise the successor goes and the old
/// one is renamed back and started. Returns how many were repaired.
pub async fn recover(
    engine: &Engine,
    live: &Live,
    progress: &dyn Progress,
) -> Result<usize, String> {
    let mut repaired = 0;
    for parked in live
        .containers
        .iter()
        .filter(|c| c.name.ends_with(OLD_SUFFIX))
    {
        let name = parked.name.trim_end_matches(OLD_SUFFIX);
        let subject = format!("{}/{}", parked.stack, parked.service);
        let successor = live.containers.iter().find(|c| c.name == name);
        let proven = successor.is_some_and(|n| {
            n.state.is_running() && n.state.health.as_deref().is_none_or(|h| h == "healthy")
        });
        if proven {
            progress.step(
                &subject,
                "finishing an interrupted replacement: removing the old container",
                Outcome::Working,
            );
            let opts = RemoveContainerOptionsBuilder::default().force(true).build();
            engine
                .docker
                .remove_container(&parked.id, Some(opts))
                .await
                .map_err(engine_msg)?;
        } else {
            progress.step(
                &subject,
                "undoing an interrupted replacement: restoring the old container",
                Outcome::Working,
            );
            restore(&engine.docker, name, &parked.id, true).await?;
        }
        progress.step(&subject, "recovered", Outcome::Done);
        repaired += 1;
    }
    Ok(repaired)
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

/// Pulls an image with the docker CLI's credentials, reporting progress.
pub async fn pull(engine: &Engine, image: &str, progress: &dyn Progress) -> Result<(), String> {
    pull_for(engine, image, None, progress).await
}

/// Pulls an image for a platform (`linux/arm64`), or the engine's own.
pub async fn pull_for(
    engine: &Engine,
    image: &str,
    platform: Option<&str>,
    progress: &dyn Progress,
) -> Result<(), String> {
    let subject = format!("image {image}");
    progress.step(&subject, "pulling", Outcome::Working);
    let (from, tag) = split_tag(image);
    let mut opts = CreateImageOptionsBuilder::default()
        .from_image(from)
        .tag(tag);
    if let Some(p) = platform {
        opts = opts.platform(p);
    }
    let opts = opts.build();
    let creds = crate::registry::credentials_for(image);
    let mut stream = engine.docker.create_image(Some(opts), None, creds);
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(err) = info.error_detail.and_then(|d| d.message) {
                    progress.step(&subject, &err, Outcome::Failed);
                    return Err(err);
                }
                if let Some(status) = info.status {
                    progress.step(&subject, &format!("pulling: {status}"), Outcome::Working);
                }
            }
            Err(e) => {
                let m = engine_msg(e);
                progress.step(&subject, &m, Outcome::Failed);
                return Err(m);
            }
        }
    }
    progress.step(&subject, "pulled", Outcome::Done);
    Ok(())
}

/// `repo:tag` split for a pull; a digest reference pulls by digest.
fn split_tag(image: &str) -> (&str, &str) {
    if let Some((repo, digest)) = image.split_once('@') {
        let _ = repo;
        return (image, if digest.is_empty() { "latest" } else { "" });
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(i) => (&image[..last_slash + i], &image[last_slash + i + 1..]),
        None => (image, "latest"),
    }
}

/// The engine's create body for a service, and the networks to connect after
/// create (API 1.41 takes one network at create).
pub fn create_body(
    stack: &Stack,
    service: &str,
    config: &ContainerConfig,
    carry: &BTreeMap<String, String>,
) -> (ContainerCreateBody, Vec<(String, EndpointSettings)>) {
    let svc = &stack.services[service];
    let mut binds = Vec::new();
    let mut mounts = Vec::new();
    for m in &svc.volumes {
        match m.kind {
            MountType::Bind if m.bind.as_ref().is_none_or(|b| b.create_host_path) => {
                let mut opts: Vec<&str> = Vec::new();
                if m.read_only {
                    opts.push("ro");
                }
                if let Some(b) = &m.bind {
                    opts.extend(b.selinux.as_deref());
                    opts.extend(b.propagation.as_deref());
                }
                let src = m.source.clone().unwrap_or_default();
                binds.push(if opts.is_empty() {
                    format!("{src}:{}", m.target)
                } else {
                    format!("{src}:{}:{}", m.target, opts.join(","))
                });
            }
            MountType::Bind => mounts.push(Mount {
                target: Some(m.target.clone()),
                source: m.source.clone(),
                typ: Some(EngineMountType::BIND),
                read_only: Some(m.read_only),
                bind_options: m.bind.as_ref().map(|b| MountBindOptions {
                    propagation: b.propagation.as_deref().and_then(|p| p.parse().ok()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            MountType::Volume => {
                let source = match &m.source {
                    Some(s) => Some(
                        stack
                            .volumes
                            .get(s)
                            .map_or_else(|| s.clone(), |v| v.name.clone()),
                    ),
                    None => carry.get(&m.target).cloned(),
                };
                mounts.push(Mount {
                    target: Some(m.target.clone()),
                    source,
                    typ: Some(EngineMountType::VOLUME),
                    read_only: Some(m.read_only),
                    volume_options: m.volume.as_ref().map(|v| MountVolumeOptions {
                        no_copy: Some(v.nocopy),
                        subpath: v.subpath.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
            }
            MountType::Tmpfs => mounts.push(Mount {
                target: Some(m.target.clone()),
                typ: Some(EngineMountType::TMPFS),
                read_only: Some(m.read_only),
                tmpfs_options: m.tmpfs.as_ref().map(|t| MountTmpfsOptions {
                    size_bytes: t.size.map(|s| s.0 as i64),
                    mode: t.mode.map(i64::from),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }
    // Anonymous volumes the image declares keep their data across a recreate too.
    for (target, name) in carry {
        if !svc.volumes.iter().any(|m| &m.target == target) {
            mounts.push(Mount {
                target: Some(target.clone()),
                source: Some(name.clone()),
                typ: Some(EngineMountType::VOLUME),
                ..Default::default()
            });
        }
    }
    for (target, m) in &config.mounts {
        if m.kind == "bind" && m.read_only && !svc.volumes.iter().any(|v| &v.target == target) {
            // Secrets and configs from files.
            binds.push(format!(
                "{}:{target}:ro",
                m.source.clone().unwrap_or_default()
            ));
        }
    }
    let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = config
        .ports
        .iter()
        .map(|(port, binds)| {
            let b = binds
                .iter()
                .map(|hb| {
                    let (ip, port) = hb.rsplit_once(':').unwrap_or(("", hb));
                    PortBinding {
                        host_ip: Some(ip.to_string()),
                        host_port: Some(port.to_string()),
                    }
                })
                .collect();
            (port.clone(), Some(b))
        })
        .collect();
    let mut exposed: BTreeSet<String> = config.ports.keys().cloned().collect();
    for e in &svc.expose {
        exposed.insert(if e.contains('/') {
            e.clone()
        } else {
            format!("{e}/tcp")
        });
    }
    let restart = svc.restart.unwrap_or(crate::spec::model::RestartPolicy::No);
    let restart_policy = RestartPolicy {
        name: Some(match restart {
            crate::spec::model::RestartPolicy::No => RestartPolicyNameEnum::NO,
            crate::spec::model::RestartPolicy::Always => RestartPolicyNameEnum::ALWAYS,
            crate::spec::model::RestartPolicy::UnlessStopped => {
                RestartPolicyNameEnum::UNLESS_STOPPED
            }
            crate::spec::model::RestartPolicy::OnFailure(_) => RestartPolicyNameEnum::ON_FAILURE,
        }),
        maximum_retry_count: match restart {
            crate::spec::model::RestartPolicy::OnFailure(Some(n)) => Some(i64::from(n)),
            _ => None,
        },
    };
    // The network with the highest priority (then by name) is the one given at create.
    let mut by_priority: Vec<(i64, String, EndpointSettings)> = svc
        .networks
        .iter()
        .map(|(key, settings)| {
            let engine_name = crate::diff::network_name(stack, key);
            let aliases = config
                .networks
                .get(&engine_name)
                .map(|a| a.iter().cloned().collect());
            let ipam = settings
                .as_ref()
                .filter(|s| {
                    s.ipv4_address.is_some()
                        || s.ipv6_address.is_some()
                        || !s.link_local_ips.is_empty()
                })
                .map(|s| EndpointIpamConfig {
                    ipv4_address: s.ipv4_address.clone(),
                    ipv6_address: s.ipv6_address.clone(),
                    link_local_ips: (!s.link_local_ips.is_empty())
                        .then(|| s.link_local_ips.clone()),
                });
            let driver_opts = settings
                .as_ref()
                .filter(|s| !s.driver_opts.is_empty())
                .map(|s| s.driver_opts.clone().into_iter().collect());
            let priority = settings.as_ref().and_then(|s| s.priority).unwrap_or(0);
            (
                priority,
                engine_name,
                EndpointSettings {
                    aliases,
                    ipam_config: ipam,
                    driver_opts,
                    // Legacy links act as aliases on user-defined networks.
                    links: (!config.links.is_empty())
                        .then(|| config.links.iter().cloned().collect()),
                    ..Default::default()
                },
            )
        })
        .collect();
    by_priority.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut networks: Vec<(String, EndpointSettings)> =
        by_priority.into_iter().map(|(_, n, e)| (n, e)).collect();
    let mut first = if networks.is_empty() {
        None
    } else {
        Some(networks.remove(0))
    };
    // A declared MAC address belongs to the primary network (API 1.44 and later).
    if let Some((_, endpoint)) = &mut first {
        endpoint.mac_address = config.mac_address.clone();
    }
    let mut host_config = HostConfig {
        binds: (!binds.is_empty()).then_some(binds),
        mounts: (!mounts.is_empty()).then_some(mounts),
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
        restart_policy: Some(restart_policy),
        memory: (config.memory > 0).then_some(config.memory),
        memory_reservation: (config.memory_reservation > 0).then_some(config.memory_reservation),
        nano_cpus: (config.nano_cpus > 0).then_some(config.nano_cpus),
        pids_limit: (config.pids_limit > 0).then_some(config.pids_limit),
        privileged: Some(config.privileged),
        init: svc.init,
        readonly_rootfs: Some(config.read_only),
        cap_add: (!config.cap_add.is_empty()).then(|| config.cap_add.iter().cloned().collect()),
        cap_drop: (!config.cap_drop.is_empty()).then(|| config.cap_drop.iter().cloned().collect()),
        tmpfs: (!config.tmpfs.is_empty()).then(|| config.tmpfs.clone().into_iter().collect()),
        ulimits: (!config.ulimits.is_empty()).then(|| {
            config
                .ulimits
                .iter()
                .map(|(n, (s, h))| ResourcesUlimits {
                    name: Some(n.clone()),
                    soft: Some(*s),
                    hard: Some(*h),
                })
                .collect()
        }),
        extra_hosts: (!config.extra_hosts.is_empty())
            .then(|| config.extra_hosts.iter().cloned().collect()),
        log_config: svc.logging.as_ref().map(|l| HostConfigLogConfig {
            typ: Some(
                l.driver
                    .clone()
                    .unwrap_or_else(|| crate::diff::DEFAULT_LOG_DRIVER.into()),
            ),
            config: Some(l.options.clone().into_iter().collect()),
        }),
        network_mode: first.as_ref().map(|(n, _)| n.clone()),
        ..Default::default()
    };
    more_host_config(svc, config, &mut host_config);
    let healthcheck = config.healthcheck.as_ref().map(|h| HealthConfig {
        test: Some(h.test.clone()),
        interval: Some(h.interval),
        timeout: Some(h.timeout),
        retries: Some(h.retries),
        start_period: Some(h.start_period),
        start_interval: (h.start_interval > 0).then_some(h.start_interval),
    });
    let body = ContainerCreateBody {
        image: Some(config.image.clone()),
        cmd: config.command.clone(),
        entrypoint: config.entrypoint.clone(),
        env: Some(config.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(config.labels.clone().into_iter().collect()),
        exposed_ports: (!exposed.is_empty()).then(|| exposed.into_iter().collect()),
        healthcheck,
        user: config.user.clone(),
        working_dir: config.working_dir.clone(),
        hostname: config.hostname.clone(),
        stop_signal: config.stop_signal.clone(),
        stop_timeout: config.stop_timeout,
        domainname: config.domainname.clone(),
        tty: Some(config.tty),
        open_stdin: Some(config.stdin_open),
        host_config: Some(host_config),
        networking_config: first.map(|(n, e)| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(n, e)])),
        }),
        ..Default::default()
    };
    (body, networks)
}

/// The host-config settings of issue 7's remaining Compose keys.
fn more_host_config(
    svc: &crate::spec::model::Service,
    config: &ContainerConfig,
    h: &mut HostConfig,
) {
    let list = |v: &[String]| (!v.is_empty()).then(|| v.to_vec());
    let set = |v: &BTreeSet<String>| (!v.is_empty()).then(|| v.iter().cloned().collect());
    let map =
        |m: &BTreeMap<String, String>| (!m.is_empty()).then(|| m.clone().into_iter().collect());
    let nonzero = |v: i64| (v != 0).then_some(v);
    if let Some(mode) = &config.network_mode {
        h.network_mode = Some(mode.clone());
    }
    h.ipc_mode = config.ipc.clone();
    h.pid_mode = config.pid.clone();
    h.uts_mode = config.uts.clone();
    h.userns_mode = config.userns.clone();
    h.cgroupns_mode = config.cgroupns.as_deref().and_then(|m| m.parse().ok());
    h.cgroup_parent = config.cgroup_parent.clone();
    h.runtime = config.runtime.clone();
    h.shm_size = nonzero(config.shm_size);
    h.sysctls = map(&config.sysctls);
    h.devices = (!svc.devices.is_empty()).then(|| {
        svc.devices
            .iter()
            .map(|d| DeviceMapping {
                path_on_host: Some(d.source.clone()),
                path_in_container: Some(d.target.clone()),
                cgroup_permissions: Some(d.permissions.clone().unwrap_or_else(|| "rwm".into())),
            })
            .collect()
    });
    h.device_cgroup_rules = set(&config.device_cgroup_rules);
    h.dns = list(&config.dns);
    h.dns_search = list(&config.dns_search);
    h.dns_options = list(&config.dns_options);
    // `systempaths=unconfined` is Compose's: it unmasks /proc and /sys paths
    // rather than being an engine security option.
    let mut security: Vec<String> = Vec::new();
    for opt in &config.security_opt {
        if opt == "systempaths=unconfined" {
            h.masked_paths = Some(Vec::new());
            h.readonly_paths = Some(Vec::new());
        } else {
            security.push(opt.clone());
        }
    }
    h.security_opt = (!security.is_empty()).then_some(security);
    h.group_add = set(&config.group_add);
    h.oom_score_adj = nonzero(config.oom_score_adj);
    h.oom_kill_disable = config.oom_kill_disable.then_some(true);
    h.storage_opt = map(&config.storage_opt);
    h.cpu_shares = nonzero(config.cpu_shares);
    h.cpu_period = nonzero(config.cpu_period);
    h.cpu_quota = nonzero(config.cpu_quota);
    h.cpu_realtime_period = nonzero(config.cpu_rt_period);
    h.cpu_realtime_runtime = nonzero(config.cpu_rt_runtime);
    h.cpuset_cpus = config.cpuset.clone();
    h.memory_swap = nonzero(config.memory_swap);
    h.memory_swappiness = config.memory_swappiness;
    // On the default bridge, links are the engine's legacy links; on
    // user-defined networks the endpoints carry them (see the networks above).
    h.links = set(&config.links);
    h.volumes_from = set(&config.volumes_from);
    h.annotations = config
        .annotations
        .as_ref()
        .map(|a| a.clone().into_iter().collect());
    h.blkio_weight = (config.blkio_weight != 0).then_some(config.blkio_weight);
    let blkio = &svc.blkio_config;
    h.blkio_weight_device = (!blkio.weight_device.is_empty()).then(|| {
        blkio
            .weight_device
            .iter()
            .map(|d| ResourcesBlkioWeightDevice {
                path: Some(d.path.clone()),
                weight: Some(usize::from(d.weight)),
            })
            .collect()
    });
    let throttle = |list: &[crate::spec::model::ThrottleDevice]| {
        (!list.is_empty()).then(|| {
            list.iter()
                .map(|d| ThrottleDevice {
                    path: Some(d.path.clone()),
                    rate: Some(d.rate.0 as i64),
                })
                .collect()
        })
    };
    h.blkio_device_read_bps = throttle(&blkio.device_read_bps);
    h.blkio_device_read_iops = throttle(&blkio.device_read_iops);
    h.blkio_device_write_bps = throttle(&blkio.device_write_bps);
    h.blkio_device_write_iops = throttle(&blkio.device_write_iops);
    h.device_requests = (!config.device_requests.is_empty()).then(|| {
        config
            .device_requests
            .iter()
            .map(|r| DeviceRequest {
                driver: r.driver.clone(),
                count: r.count,
                device_ids: (!r.device_ids.is_empty()).then(|| r.device_ids.clone()),
                capabilities: Some(vec![r.capabilities.clone()]),
                options: map(&r.options),
            })
            .collect()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_split_for_pulls() {
        assert_eq!(split_tag("busybox"), ("busybox", "latest"));
        assert_eq!(split_tag("busybox:1.36"), ("busybox", "1.36"));
        assert_eq!(
            split_tag("localhost:5000/app"),
            ("localhost:5000/app", "latest")
        );
        assert_eq!(
            split_tag("localhost:5000/app:v1"),
            ("localhost:5000/app", "v1")
        );
        assert_eq!(split_tag("app@sha256:abc").0, "app@sha256:abc");
    }
}
