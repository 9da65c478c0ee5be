//! The orchestrator: wires the pipeline stages together for one host.
//! desired (loaded) -> which stacks run here -> live -> plan -> (apply).
//!
//! The CLI and (later) the agent call this; the reason a reconcile runs is
//! not its business, so it always converges from whatever is there.

mod applied;
mod back;
mod record;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::live::{CacheAt, Engine, EngineError, Live};
use crate::plan::{self, ActionKind, Plan};
use crate::spec::Desired;
use crate::spec::model::{PullPolicy, Stack};

use applied::{overlay_applied_mounts, record_restarted_mounts};
pub use applied::{restarted_mounts, with_applied_mounts};
pub use record::{Origin, apply_recorded, note_in_sync, rollback_target};

/// What the engine looks like for this host's stacks, and the plan.
pub struct Observed<'a> {
    pub engine: Engine,
    /// The host name (the engine's name) that `plimsoll.yaml` assigns stacks to.
    pub host: String,
    /// Stacks assigned to this host.
    pub stacks: Vec<&'a Stack>,
    /// Names of assigned stacks whose changes are frozen (`paused`).
    pub paused: BTreeSet<String>,
    /// Stacks git declares for other hosts only: their containers here were
    /// moved away in `plimsoll.yaml`, not lost from the repository.
    pub elsewhere: BTreeSet<String>,
    pub live: Live,
    pub plan: Plan,
    /// What each service that builds would build from (`plan`'s input), kept
    /// with the revisions so a rollback reuses the image built for it.
    pub builds: plan::Builds,
    /// The content hashes of the repository files services mount (`plan`'s input).
    pub mounts: crate::mounts::Mounts,
}

impl Observed<'_> {
    /// The stacks an apply may change (assigned here and not paused).
    pub fn changeable(&self) -> Vec<&Stack> {
        self.stacks
            .iter()
            .copied()
            .filter(|s| !self.paused.contains(&s.name))
            .collect()
    }

    /// The plan restricted to stacks that may change.
    pub fn applicable_plan(&self) -> Plan {
        let keep = |stack: &String| !self.paused.contains(stack);
        Plan {
            actions: self
                .plan
                .actions
                .iter()
                .filter(|a| keep(&a.stack))
                .cloned()
                .collect(),
            in_sync: self.plan.in_sync.clone(),
            conflicts: self
                .plan
                .conflicts
                .iter()
                .filter(|c| keep(&c.stack))
                .cloned()
                .collect(),
            would_prune: self.plan.would_prune.clone(),
            jobs: self
                .plan
                .jobs
                .iter()
                .filter(|j| keep(&j.stack))
                .cloned()
                .collect(),
        }
    }
}

/// Why [`pull_first`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum PullFirstError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("pulling {image} (pull_policy: always) failed: {source}")]
    Always {
        image: String,
        #[source]
        source: crate::apply::StepError,
    },
}

/// The services and jobs with an image from a registry and a
/// `pull_policy`, of every stack and environment variant (whichever host
/// runs them).
fn pulled_by_policy(desired: &Desired) -> impl Iterator<Item = (&str, &PullPolicy)> {
    desired
        .stacks
        .iter()
        .chain(desired.environments.values().flatten())
        .flat_map(|s| s.services.values().chain(s.jobs.values()))
        .filter(|s| !s.builds())
        .filter_map(|s| Some((s.image.as_deref()?, s.pull_policy.as_ref()?)))
}

/// Whether [`pull_first`] has anything to look at: an image whose
/// `pull_policy` is `always` or a refresh policy.
pub fn pulls_first(desired: &Desired) -> bool {
    pulled_by_policy(desired)
        .any(|(_, p)| matches!(p, PullPolicy::Always | PullPolicy::Refresh { .. }))
}

/// Pulls what `pull_policy` wants pulled before planning, so that a tag
/// moved in the registry is followed: `always` images (when `always` is
/// set: for a new revision), and `daily`/`weekly`/`every_<duration>` images
/// whose copy on the host was pulled longer ago than their period. Images
/// that are not on the host are left to the plan. A failed `always` pull is
/// an error; a failed refresh is a warning (the copy on the host stays in
/// use, and the next cycle tries again). Returns what was pulled.
pub async fn pull_first(
    engine: &Engine,
    desired: &Desired,
    always: bool,
    progress: &dyn crate::events::Progress,
) -> Result<Vec<String>, PullFirstError> {
    let now = jiff::Timestamp::now();
    let mut due: BTreeMap<&str, &PullPolicy> = BTreeMap::new();
    for (image, policy) in pulled_by_policy(desired) {
        let pull = match policy {
            PullPolicy::Always => always,
            PullPolicy::Refresh { period, .. } if !due.contains_key(image) => {
                let pulled = engine.image_pulled_at(image).await?;
                pulled.is_some_and(|at| refresh_due(at, now, *period))
            }
            _ => false,
        };
        if pull && due.get(image) != Some(&&PullPolicy::Always) {
            due.insert(image, policy);
        }
    }
    let mut pulled = Vec::new();
    for (image, policy) in due {
        match crate::apply::pull(engine, image, progress).await {
            Ok(()) => pulled.push(image.to_string()),
            Err(source) if *policy == PullPolicy::Always => {
                return Err(PullFirstError::Always {
                    image: image.to_string(),
                    source,
                });
            }
            Err(e) => progress.step(
                image,
                &format!(
                    "pulling again (pull_policy: {}) failed: {e}; the copy on this host stays in use",
                    policy.as_str()
                ),
                crate::events::Outcome::Warning,
            ),
        }
    }
    Ok(pulled)
}

/// Whether an image pulled at `pulled` is due again after `period`.
fn refresh_due(pulled: jiff::Timestamp, now: jiff::Timestamp, period: std::time::Duration) -> bool {
    let age = now.as_second().saturating_sub(pulled.as_second());
    age >= 0 && age as u64 >= period.as_secs()
}

/// Connects to the engine, reads the live state of this host's stacks and plans.
pub async fn observe<'a>(
    desired: &'a Desired,
    host: Option<&str>,
) -> Result<Observed<'a>, EngineError> {
    observe_on(Engine::connect().await?, desired, host).await
}

/// [`observe`] with the engine cache of a state directory
/// ([`crate::live::cache`]): only the containers that may have changed since
/// the last run are inspected.
pub async fn observe_cached<'a>(
    desired: &'a Desired,
    host: Option<&str>,
    at: CacheAt<'_>,
) -> Result<Observed<'a>, EngineError> {
    observe_on(Engine::connect_cached(at).await?, desired, host).await
}

/// [`observe`] over an existing connection (the agent keeps one).
pub async fn observe_on<'a>(
    engine: Engine,
    desired: &'a Desired,
    host: Option<&str>,
) -> Result<Observed<'a>, EngineError> {
    // The engine's name matters only when plimsoll.yaml assigns stacks or pauses hosts.
    let config = &desired.config;
    let assigns = config.assigns_hosts();
    let host = match host {
        Some(h) => h.to_string(),
        None if !assigns => String::new(),
        None => engine
            .docker
            .info()
            .await
            .map_err(EngineError::call("reading the engine's name"))?
            .name
            .unwrap_or_default(),
    };
    // Each as this host runs it: its environment's variant (plimsoll.yaml `environments:`).
    let stacks: Vec<&Stack> = desired.stacks_on(&host);
    let paused = stacks
        .iter()
        .filter(|s| desired.config.is_paused(&s.name, &host))
        .map(|s| s.name.clone())
        .collect();
    let names: BTreeSet<String> = stacks.iter().map(|s| s.name.clone()).collect();
    let elsewhere = desired
        .stacks
        .iter()
        .map(|s| s.name.clone())
        .filter(|s| !names.contains(s))
        .collect();
    // The images of jobs too: whether a job must run again depends on its image.
    let images: BTreeSet<String> = stacks
        .iter()
        .flat_map(|s| {
            s.services
                .iter()
                .chain(&s.jobs)
                .map(|(n, svc)| svc.image_ref(&s.name, n))
        })
        .filter(|i| !i.is_empty())
        .collect();
    let live = engine
        .snapshot(&names, desired.complete.as_deref(), &images)
        .await?;
    let builds = build_hashes(&stacks).await;
    // What jobs mount too (a changed migration runs again).
    let wholes: Vec<std::borrow::Cow<'_, Stack>> = stacks.iter().map(|s| s.whole()).collect();
    let mounts = mount_hashes(&wholes.iter().map(|s| &**s).collect::<Vec<_>>()).await;
    let plan = plan::plan(&stacks, &live, &builds, &mounts, &desired.masker);
    Ok(Observed {
        engine,
        host,
        stacks,
        paused,
        elsewhere,
        live,
        plan,
        builds,
        mounts,
    })
}

/// [`observe_on`] narrowed to one service of one stack (`Some`: the agent's
/// heal of the service an engine event named), or to one stack (`None`):
/// only those containers and images are inspected, instead of every managed
/// container on the host. The plan holds their actions, the pulls of their
/// images and the creation of the stack's missing networks and volumes;
/// nothing else (nothing is pruned). A stack that does not run on `host`
/// (or a service it does not declare) gives an empty plan.
pub async fn observe_scoped<'a>(
    engine: Engine,
    desired: &'a Desired,
    host: &str,
    stack: &str,
    service: Option<&str>,
    applied: &crate::state::AppliedMounts,
) -> Result<Observed<'a>, EngineError> {
    let config = &desired.config;
    let chosen = |name: &str| service.is_none_or(|s| s == name);
    let found = desired
        .stacks
        .iter()
        .find(|s| s.name == stack && config.runs_on(&s.name, host))
        .map(|s| desired.stack_on(s, host))
        .filter(|s| service.is_none_or(|svc| s.services.contains_key(svc)));
    let stacks: Vec<&Stack> = found.into_iter().collect();
    let images: BTreeSet<String> = found
        .iter()
        .flat_map(|s| {
            s.services
                .iter()
                .filter(|(n, _)| chosen(n))
                .map(|(n, svc)| svc.image_ref(stack, n))
        })
        .filter(|i| !i.is_empty())
        .collect();
    let names: BTreeSet<String> = stacks.iter().map(|s| s.name.clone()).collect();
    let mut live = if stacks.is_empty() {
        Live::default()
    } else {
        engine
            .snapshot_of(&names, None, &images, service.map(|s| (stack, s)))
            .await?
    };
    let builds = match found {
        Some(s) if s.services.iter().any(|(n, svc)| chosen(n) && svc.builds()) => {
            build_hashes(&stacks).await
        }
        _ => plan::Builds::default(),
    };
    let mounts = mount_hashes_of(&stacks, service).await;
    overlay_applied_mounts(&mut live, applied, &stacks, &mounts);
    let mut plan = plan::plan(&stacks, &live, &builds, &mounts, &desired.masker);
    plan.actions
        .retain(|a| match (a.service.as_deref(), a.action) {
            (Some(s), _) => chosen(s),
            (None, ActionKind::PullImage) => images.contains(&a.target),
            (None, ActionKind::CreateNetwork | ActionKind::CreateVolume) => true,
            (None, _) => false,
        });
    plan.conflicts
        .retain(|c| service.is_none() || c.service.as_deref() == service);
    // A heal runs no job: jobs run with a revision's changes only.
    plan.jobs.clear();
    plan.in_sync.retain(|k| {
        k.split_once('/')
            .is_some_and(|(st, sv)| st == stack && chosen(sv))
    });
    plan.would_prune.clear();
    let paused = names
        .iter()
        .filter(|s| config.is_paused(s, host))
        .cloned()
        .collect();
    Ok(Observed {
        engine,
        host: host.to_string(),
        stacks,
        paused,
        elsewhere: BTreeSet::new(),
        live,
        plan,
        builds,
        mounts,
    })
}

/// The content hashes of the repository files and directories services
/// bind-mount, read confined to each stack's root, off the async threads.
pub async fn mount_hashes(stacks: &[&Stack]) -> crate::mounts::Mounts {
    mount_hashes_of(stacks, None).await
}

/// [`mount_hashes`] of one service only (`Some`), or of every service.
async fn mount_hashes_of(stacks: &[&Stack], only: Option<&str>) -> crate::mounts::Mounts {
    let jobs: Vec<crate::mounts::Job> = stacks
        .iter()
        .flat_map(|s| crate::mounts::jobs(s))
        .filter(|j| only.is_none_or(|s| j.service == s))
        .collect();
    if jobs.is_empty() {
        return crate::mounts::Mounts::new();
    }
    tokio::task::spawn_blocking(move || {
        crate::mounts::run(jobs, &|root| {
            let confine = crate::source::Confine::new(root, &[]).map_err(|e| e.to_string())?;
            Ok(Box::new(crate::source::ConfinedFs::new(confine)) as Box<dyn crate::source::Files>)
        })
    })
    .await
    .unwrap_or_default()
}

/// What each service that builds its image would build now: its context is
/// scanned (after `.dockerignore`) and hashed with its build settings, off
/// the async threads.
pub async fn build_hashes(stacks: &[&Stack]) -> plan::Builds {
    let mut pinned = plan::Builds::new();
    let mut todo: Vec<((String, String), crate::spec::model::Build)> = Vec::new();
    for s in stacks {
        for (n, svc) in s.services.iter().filter(|(_, svc)| svc.builds()) {
            let key = (s.name.clone(), n.clone());
            // A stored revision (rollback) names what it was built from.
            if let Some(h) = s.source.pinned_builds.get(n) {
                let h = crate::build::BuildHash::parse(h)
                    .ok_or_else(|| plan::BuildInputError::StoredHash(h.clone()));
                pinned.insert(key, h);
            } else if let Some(b) = &svc.build {
                todo.push((key, b.clone()));
            }
        }
    }
    if todo.is_empty() {
        return pinned;
    }
    let hashed: plan::Builds = tokio::task::spawn_blocking(move || {
        todo.into_iter()
            .map(|(key, b)| {
                let h = crate::build::hash(&b)
                    .map_err(|e| plan::BuildInputError::Context(std::sync::Arc::new(e)));
                (key, h)
            })
            .collect()
    })
    .await
    .unwrap_or_default();
    pinned.extend(hashed);
    pinned
}

/// The build hashes of one stack's services, as stored with its revision.
pub fn stack_builds(builds: &plan::Builds, stack: &str) -> BTreeMap<String, String> {
    builds
        .iter()
        .filter(|((s, _), _)| s == stack)
        .filter_map(|((_, service), h)| Some((service.clone(), h.as_ref().ok()?.to_string())))
        .collect()
}

/// The prune flags of `reconcile` (the agent sets them from its settings).
pub struct Pruning {
    pub flag: bool,
    pub allow_empty: bool,
    pub volumes: bool,
}

/// The plan with prune decided: the flag, else the stack's `prune:` in
/// plimsoll.yaml, else the agent default; volumes need the flag and the stack's opt-in.
pub fn pruned(
    plan: Plan,
    observed: &Observed<'_>,
    config: &crate::spec::config::Config,
    pruning: &Pruning,
) -> Plan {
    let enabled = |stack: &str| {
        pruning.flag
            || config
                .stacks
                .get(stack)
                .and_then(|s| s.prune)
                .or(config.agent.prune)
                .unwrap_or(false)
    };
    let volumes =
        |stack: &str| pruning.volumes && config.stacks.get(stack).is_some_and(|s| s.prune_volumes);
    let opts = crate::plan::PruneOptions {
        enabled: &enabled,
        allow_empty: pruning.allow_empty,
        volumes: &volumes,
        elsewhere: &observed.elsewhere,
    };
    crate::plan::with_prune(plan, &observed.changeable(), &observed.live, &opts)
}

/// Containers on this host without plimsoll's labels, by name; those that
/// `docker compose` made for a stack about to be adopted do not count.
pub fn unknown<'o>(observed: &'o Observed<'_>) -> Vec<&'o str> {
    let adoptable = |f: &&crate::live::ForeignContainer| {
        f.compose_project
            .as_ref()
            .is_some_and(|p| observed.stacks.iter().any(|s| &s.name == p))
    };
    observed
        .live
        .foreign
        .iter()
        .filter(|f| !adoptable(f) && !f.agent)
        .map(|f| f.name.as_str())
        .collect()
}

/// Where a service stands against git.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SyncState {
    InSync,
    /// Its container differs from git (changed by hand, or a new revision).
    Drifted,
    /// No container.
    Missing,
    /// Its container exists but is not running.
    Stopped,
    /// In sync, and its health check fails (the agent's status).
    Unhealthy,
    /// A container plimsoll does not own holds a name it needs.
    Conflict,
    /// It differs from git, and a silence says to leave it be for now
    /// (`plimsoll drift --silence`; the agent's status).
    Silenced,
}

impl SyncState {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::InSync => "in sync",
            SyncState::Drifted => "drifted",
            SyncState::Missing => "missing",
            SyncState::Stopped => "stopped",
            SyncState::Unhealthy => "unhealthy",
            SyncState::Conflict => "conflict",
            SyncState::Silenced => "silenced",
        }
    }
}

/// A service's [`SyncState`], and whether its stack is paused (a paused stack's
/// differences wait). In JSON and text: `drifted`, `stopped (paused)`, ….
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceState {
    pub sync: SyncState,
    pub paused: bool,
}

impl ServiceState {
    pub fn in_sync(self) -> bool {
        self.sync == SyncState::InSync
    }
}

impl std::fmt::Display for ServiceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.sync.as_str())?;
        if self.paused {
            f.write_str(" (paused)")?;
        }
        Ok(())
    }
}

impl Serialize for ServiceState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One service's state for `plimsoll status`.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub stack: String,
    pub service: String,
    /// `in sync`, `drifted`, `missing`, `stopped`, `conflict`, with
    /// ` (paused)` when its stack is paused and it is not in sync.
    pub state: ServiceState,
    pub reasons: Vec<String>,
    pub container: String,
    /// `healthy`, `unhealthy`, `starting`, or `null` without a health check.
    pub health: Option<crate::health::Health>,
    pub running: bool,
    /// The image its container runs (`None` without a container).
    pub image: Option<String>,
}

/// `plimsoll status`: per service, and the containers plimsoll does not know.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub host: String,
    pub services: Vec<ServiceStatus>,
    /// Containers without plimsoll's labels, by name.
    pub unknown: Vec<String>,
}

/// Builds the status from an observation.
pub fn status(o: &Observed<'_>) -> Status {
    let mut services = Vec::new();
    for stack in &o.stacks {
        // One row per replica.
        for (name, svc, container) in stack.services.iter().flat_map(|(name, svc)| {
            (1..=svc.replicas())
                .map(move |n| (name, svc, crate::names::replica_name(stack, name, svc, n)))
        }) {
            let mine = || {
                o.live
                    .containers
                    .iter()
                    .filter(|c| c.stack == stack.name && &c.service == name)
            };
            let live = mine()
                .find(|c| c.name == container)
                .or_else(|| mine().find(|_| svc.replicas() == 1));
            let action = o.plan.actions.iter().find(|a| {
                a.stack == stack.name
                    && a.service.as_deref() == Some(name)
                    && a.target == container
                    && a.action != ActionKind::Remove
            });
            let conflict = o
                .plan
                .conflicts
                .iter()
                .find(|c| c.stack == stack.name && c.service.as_deref() == Some(name));
            let (sync, reasons) = match (conflict, action) {
                (Some(c), _) => (SyncState::Conflict, vec![c.reason.clone()]),
                (None, Some(a)) => {
                    let sync = match a.action {
                        ActionKind::Create => SyncState::Missing,
                        ActionKind::Start => SyncState::Stopped,
                        _ => SyncState::Drifted,
                    };
                    (sync, a.reasons.clone())
                }
                (None, None) => (SyncState::InSync, Vec::new()),
            };
            let state = ServiceState {
                sync,
                paused: o.paused.contains(&stack.name) && sync != SyncState::InSync,
            };
            services.push(ServiceStatus {
                stack: stack.name.clone(),
                service: name.clone(),
                state,
                reasons,
                container: live.map_or(container, |c| c.name.clone()),
                health: live.and_then(|c| c.state.health),
                running: live.is_some_and(|c| c.state.is_running()),
                image: live.map(|c| c.config.image.clone()),
            });
        }
    }
    // A plimsoll agent's own container (`io.plimsoll.agent`) is plimsoll's.
    let unknown = o
        .live
        .foreign
        .iter()
        .filter(|f| !f.agent)
        .map(|f| f.name.clone())
        .collect();
    Status {
        host: o.host.clone(),
        services,
        unknown,
    }
}

/// Rows as a table with left-aligned columns two spaces apart.
pub fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The status as a table for people.
pub fn status_text(s: &Status) -> String {
    let mut rows = vec![[
        "STACK".to_string(),
        "SERVICE".into(),
        "STATE".into(),
        "HEALTH".into(),
        "CONTAINER".into(),
    ]];
    for svc in &s.services {
        let health = svc.health.map(|h| h.to_string()).unwrap_or_else(|| {
            if svc.running {
                "running".into()
            } else {
                "-".into()
            }
        });
        rows.push([
            svc.stack.clone(),
            svc.service.clone(),
            svc.state.to_string(),
            health,
            svc.container.clone(),
        ]);
    }
    let mut out = table(&rows);
    for svc in s.services.iter().filter(|s| !s.reasons.is_empty()) {
        out.push_str(&format!(
            "{}/{}: {}\n",
            svc.stack,
            svc.service,
            svc.reasons.join("; ")
        ));
    }
    if !s.unknown.is_empty() {
        out.push_str(&format!(
            "unknown containers (not managed by plimsoll, never touched): {}\n",
            s.unknown.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_is_due_once_the_copy_is_as_old_as_the_period() {
        let at = |s: i64| jiff::Timestamp::from_second(s).unwrap();
        let hour = std::time::Duration::from_secs(3600);
        assert!(!refresh_due(at(1_000_000), at(1_000_000 + 3599), hour));
        assert!(refresh_due(at(1_000_000), at(1_000_000 + 3600), hour));
        // A clock behind the image's time is never "due".
        assert!(!refresh_due(at(1_000_000), at(999_000), hour));
    }
}
