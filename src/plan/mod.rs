//! A plan: the ordered, typed actions that bring a host from its live state
//! to the desired state, each with its reasons in words.
//!
//! [`plan`] is the pure core: it pairs desired services with live containers
//! by identity (stack, service), diffs each pair and orders the actions:
//! image pulls, image builds (when the content a build-service's image was
//! built from differs from what git holds now), networks and volumes, then
//! services wave by wave in dependency order. A plan is a value: it prints, serializes (its JSON form is an API
//! boundary, `schemas/plan.json`), compares and applies. Invariant: pure;
//! applying a plan and planning again gives an empty plan.
//!
//! The parts: [`pairing`] lines desired replicas up with live containers,
//! [`actions`] turns each pair (and each network, volume and image) into
//! an action with its reasons, [`prune`] finds and removes what git no
//! longer declares, [`render`] prints a plan for people.

mod actions;
mod jobs;
mod pairing;
mod prune;
mod render;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::graph::StackGraph;
use crate::live::Live;
use crate::mounts::Mounts;
use crate::names::BuildHash;
use crate::spec::model::{JobKind, Stack};
use crate::spec::secrets::Masker;

pub use jobs::{desired_job, in_order};
pub use pairing::{DesiredContainer, compared_hash, desired_container, hashed_contents};
pub use prune::{PruneOptions, is_prune, with_prune};
pub use render::{Format, summary_line, to_markdown, to_text};
pub(crate) use render::{html_escape, md_code, md_escape, md_fence, paint, push_diff};

/// What one action does.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    CreateNetwork,
    /// Remove a network and create it again: git changed settings the
    /// engine cannot change in place; its containers are recreated.
    RecreateNetwork,
    RemoveNetwork,
    CreateVolume,
    RemoveVolume,
    PullImage,
    /// Build a service's image on the host (`build:`); `target` is the image.
    Build,
    Create,
    Start,
    Recreate,
    Restart,
    Stop,
    Remove,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::CreateNetwork => "create network",
            ActionKind::RecreateNetwork => "recreate network",
            ActionKind::RemoveNetwork => "remove network",
            ActionKind::CreateVolume => "create volume",
            ActionKind::RemoveVolume => "remove volume",
            ActionKind::PullImage => "pull image",
            ActionKind::Build => "build image",
            ActionKind::Create => "create",
            ActionKind::Start => "start",
            ActionKind::Recreate => "recreate",
            ActionKind::Restart => "restart",
            ActionKind::Stop => "stop",
            ActionKind::Remove => "remove",
        }
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Action {
    pub action: ActionKind,
    pub stack: String,
    /// The service, or `null` for networks, volumes and images.
    pub service: Option<String>,
    /// The engine object acted on: container, network, volume or image name.
    pub target: String,
    /// Why, in words: "image busybox:1 -> busybox:2", "stopped by hand".
    pub reasons: Vec<String>,
    /// For a recreate: unified diff of the container's settings, live -> git, secrets masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// The replica (1-based) of a service that runs several containers
    /// (`scale`, `deploy.replicas`); absent for a single container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<u32>,
}

/// A name plimsoll needs is held by a container it does not own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Conflict {
    pub stack: String,
    pub service: Option<String>,
    pub target: String,
    pub reason: String,
}

/// An object that carries plimsoll's labels but is no longer declared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Orphan {
    /// `container`, `network` or `volume`.
    #[schemars(with = "String")]
    pub kind: OrphanKind,
    pub stack: String,
    pub service: Option<String>,
    pub target: String,
}

/// What an [`Orphan`] is; serialized as `container`, `network` or `volume`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrphanKind {
    Container,
    Network,
    Volume,
}

impl OrphanKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OrphanKind::Container => "container",
            OrphanKind::Network => "network",
            OrphanKind::Volume => "volume",
        }
    }
}

impl std::fmt::Display for OrphanKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job the apply runs (`x-plimsoll.job`): a one-off container run to
/// completion before (`pre`) or after (`post`) the stack's changes, or once
/// if its apply fails (`on-failure`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PlannedJob {
    /// `pre`, `post` or `on-failure`.
    pub when: JobKind,
    pub stack: String,
    /// The job: its service name in the Compose file.
    pub job: String,
    /// The image it runs.
    pub image: String,
    /// Why it runs: "the stack changes", "it has not run yet", "it changed
    /// since its last run"; for `on-failure`, "only if the apply of the stack fails".
    pub reasons: Vec<String>,
}

/// The plan for one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Plan {
    /// Only changes, in the order they are applied; services in sync are not actions.
    pub actions: Vec<Action>,
    /// Services already in sync, as `stack/service`.
    #[serde(default)]
    pub in_sync: Vec<String>,
    /// Names held by containers plimsoll does not own: those services cannot be applied.
    #[serde(default)]
    pub conflicts: Vec<Conflict>,
    /// Objects no longer declared in git; removed only with `--prune`.
    #[serde(default)]
    pub would_prune: Vec<Orphan>,
    /// The jobs the apply runs, per stack: `pre` jobs in dependency order,
    /// then `post`, then `on-failure` (run only if the apply fails).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<PlannedJob>,
}

impl Plan {
    /// Whether applying this plan would change nothing (and run no job).
    pub fn is_noop(&self) -> bool {
        self.actions.is_empty() && !self.jobs.iter().any(|j| j.when != JobKind::OnFailure)
    }

    /// The planned `when` jobs of `stack`, in the order they run.
    pub fn jobs_of<'p>(
        &'p self,
        stack: &'p str,
        when: JobKind,
    ) -> impl Iterator<Item = &'p PlannedJob> + 'p {
        self.jobs
            .iter()
            .filter(move |j| j.stack == stack && j.when == when)
    }

    /// Counts of actions per kind, in kind order.
    pub fn summary(&self) -> BTreeMap<ActionKind, usize> {
        let mut m = BTreeMap::new();
        for a in &self.actions {
            *m.entry(a.action).or_insert(0) += 1;
        }
        m
    }
}
/// What each service that builds its image should be built from, by (stack,
/// service): the hash of its context and settings, or why it cannot be read.
pub type Builds = BTreeMap<(String, String), Result<BuildHash, BuildInputError>>;

/// Why what a service's image should be built from is not known; the plan
/// shows it as a conflict of that service.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BuildInputError {
    /// A stored revision (rollback) names a build hash that does not parse.
    #[error("the stored build hash `{0}` is not valid")]
    StoredHash(String),
    /// The build context cannot be read (`crate::build::ContextError`, shared).
    #[error(transparent)]
    Context(std::sync::Arc<dyn std::error::Error + Send + Sync>),
}

/// Computes the plan that brings `live` to `stacks`; `builds` says what the
/// images of services with `build:` should be built from.
pub fn plan(
    stacks: &[&Stack],
    live: &Live,
    builds: &Builds,
    mounts: &Mounts,
    masker: &Masker,
) -> Plan {
    let mut p = Plan::default();
    let foreign: BTreeMap<&str, _> = live.foreign.iter().map(|f| (f.name.as_str(), f)).collect();
    let renewed = actions::networks_to_recreate(stacks, live, masker, &mut p.conflicts);
    for stack in stacks {
        if let Some(c) = pairing::unmappable(stack, live) {
            p.conflicts.push(c);
            continue;
        }
        actions::stack_objects(stack, live, &renewed, &mut p);
        let to_build = actions::builds_needed(stack, live, builds, &mut p.conflicts);
        for (image, (service, reasons)) in &to_build {
            p.actions.push(Action {
                action: ActionKind::Build,
                stack: stack.name.clone(),
                service: Some(service.clone()),
                target: image.clone(),
                reasons: reasons.clone(),
                diff: None,
                replica: None,
            });
        }
        let Ok(graph) = StackGraph::build(stack) else {
            continue;
        };
        let mut services =
            actions::Services::new(stack, live, mounts, masker, &foreign, &renewed, &to_build);
        for wave in graph.waves() {
            for service in &wave {
                services.service(service, &mut p.conflicts, &mut p.in_sync);
            }
        }
        let pulled: std::collections::BTreeSet<String> =
            services.images_to_pull.keys().cloned().collect();
        actions::pulls(stack, services.images_to_pull, &mut p);
        p.actions.extend(services.actions);
        jobs::plan_jobs(stack, live, mounts, masker, &pulled, &mut p);
        prune::stack_orphans(stack, live, &mut p.would_prune);
    }
    prune::undeclared_orphans(stacks, live, &mut p.would_prune);
    // Pulls lead the plan, then builds: a pull or a build that fails must
    // come before any other change.
    p.actions.sort_by_key(|a| match a.action {
        ActionKind::PullImage => 0,
        ActionKind::Build => 1,
        _ => 2,
    });
    p
}
