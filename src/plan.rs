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

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::build::BuildHash;
use crate::diff::{self, Change, ContainerConfig};
use crate::graph::StackGraph;
use crate::health::Status;
use crate::hostpath::{self, Unmappable};
use crate::live::{Live, LiveContainer};
use crate::mounts::{self, Mounts, ServiceMounts};
use crate::names::{self, labels};
use crate::spec::model::{Condition, OnMountChange, PullPolicy, Stack};
use crate::spec::secrets::Masker;

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
    pub kind: String,
    pub stack: String,
    pub service: Option<String>,
    pub target: String,
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
}

impl Plan {
    /// Whether applying this plan would change nothing.
    pub fn is_noop(&self) -> bool {
        self.actions.is_empty()
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

/// A service's desired container, ready to create: its config and hash.
#[derive(Debug, Clone)]
pub struct DesiredContainer {
    pub config: ContainerConfig,
    pub hash: String,
}

/// The desired container of replica `number` of a service, normalized
/// against its image, with repository paths as the engine's host sees them
/// ([`crate::hostpath`]; an error when one is on no mount the engine sees).
/// `mounted` holds the content hashes of the repository files it mounts
/// (kept as labels); with `reroot` (from, to: see [`mounts::live_mapping`]),
/// paths under the repository are then moved to where a live container was
/// created from, to compare with it ([`mounts::reroot`]). A container is
/// created from the config without.
pub fn desired_container(
    stack: &Stack,
    service: &str,
    number: u32,
    live: &Live,
    masker_values: &[String],
    mounted: &ServiceMounts,
    reroot: Option<(&Path, &Path)>,
) -> Result<DesiredContainer, Unmappable> {
    let svc = &stack.services[service];
    let image_ref = svc.image_ref(&stack.name, service);
    let image = live.images.get(&image_ref).cloned().flatten();
    let mut raw = diff::desired_config(
        stack,
        service,
        svc,
        number,
        image.as_ref().map(|i| i.id.clone()),
    );
    live.paths.apply(&mut raw, &hostpath::stack_root(stack))?;
    if let Some((from, to)) = reroot {
        mounts::reroot(&mut raw, from, to);
    }
    // The hash sees the spec before image defaults are stripped, and the
    // content of secrets (as part of `extra`), so changing either changes it.
    let extra: Vec<&str> = masker_values.iter().map(String::as_str).collect();
    let hash = diff::spec_hash(&raw, &extra);
    let mut config = raw;
    config.labels.insert(labels::SPEC_HASH.into(), hash.clone());
    config
        .labels
        .insert(labels::COMPOSE_CONFIG_HASH.into(), hash.clone());
    for (target, m) in mounted {
        config.labels.insert(mounts::label(target), m.hash.clone());
    }
    if let Some(image) = &image {
        config.strip_defaults(image);
    }
    Ok(DesiredContainer { config, hash })
}

/// A stack whose repository files cannot be given to the engine (plimsoll
/// runs in a container whose checkout is on no volume or bind mount): a
/// conflict, so that nothing of that stack changes.
fn unmappable(stack: &Stack, live: &Live) -> Option<Conflict> {
    if live.paths.is_identity() {
        return None;
    }
    stack.services.keys().find_map(|service| {
        let e =
            desired_container(stack, service, 1, live, &[], &ServiceMounts::new(), None).err()?;
        Some(Conflict {
            stack: stack.name.clone(),
            service: Some(service.clone()),
            target: e.path.display().to_string(),
            reason: e.to_string(),
        })
    })
}

/// Contents the spec hash must see for a service: secrets and configs that
/// are copied in rather than bind-mounted.
pub fn hashed_contents(stack: &Stack, service: &str) -> Vec<String> {
    let svc = &stack.services[service];
    let mut out = Vec::new();
    for (refs, objects) in [
        (&svc.secrets, &stack.secrets),
        (&svc.configs, &stack.configs),
    ] {
        for r in refs {
            if let Some(o) = objects.get(&r.source) {
                if let Some(var) = &o.environment {
                    out.push(stack.source.variables.get(var).cloned().unwrap_or_default());
                }
                if let Some(c) = &o.content {
                    out.push(c.clone());
                }
            }
        }
    }
    out
}

/// What changed between a live container and git's, as shown: the reasons
/// in words and the unified diff (`None` when only hidden values changed).
fn shown_changes(
    shown: &diff::Shown<'_>,
    changes: &[Change],
    live: &ContainerConfig,
    desired: &ContainerConfig,
) -> (Vec<String>, Option<String>) {
    let old = shown.live_lines(
        &live.fields_with(&|w| shown.masker.mask(w).into_owned()),
        &desired.fields_with(&|w| shown.masker.mask(w).into_owned()),
    );
    let new = shown.config(desired);
    let changes = shown.changes(changes, &old, &new);
    let reasons = diff::reasons_for(&changes, |c| diff::reason(c, shown.masker));
    (reasons, diff::unified(&old, &new, ("live", "git")))
}

/// Which live container each replica keeps (`names[i]` is replica i + 1's
/// name): the one under its name, else one carrying its number under no
/// replica's name (renamed by hand), else, for a single replica, the
/// service's only container.
fn assign_replicas<'l>(
    names: &[&str],
    mine: &[&'l LiveContainer],
) -> Vec<Option<&'l LiveContainer>> {
    let mut taken: BTreeSet<&str> = BTreeSet::new();
    let mut out: Vec<Option<&LiveContainer>> = names
        .iter()
        .map(|name| {
            let c = mine.iter().copied().find(|c| c.name == *name);
            if let Some(c) = c {
                taken.insert(&c.id);
            }
            c
        })
        .collect();
    for (n, slot) in (1..).zip(out.iter_mut()) {
        if slot.is_some() {
            continue;
        }
        *slot = mine
            .iter()
            .copied()
            .filter(|c| !taken.contains(c.id.as_str()) && !names.contains(&c.name.as_str()))
            .find(|c| c.number == n || (names.len() == 1 && mine.len() == 1));
        if let Some(c) = slot {
            taken.insert(&c.id);
        }
    }
    out
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Why a container that should run does not, in words.
fn not_running_reason(c: &LiveContainer) -> String {
    let s = &c.state;
    match s.status {
        Status::Created => "created but never started".into(),
        Status::Paused => "paused by hand".into(),
        _ if s.oom_killed => "killed: out of memory".into(),
        _ if matches!(s.exit_code, 0 | 137 | 143) => {
            format!("stopped by hand (exit code {})", s.exit_code)
        }
        _ => format!("exited with code {}", s.exit_code),
    }
}

/// What each service that builds its image should be built from, by (stack,
/// service): the hash of its context and settings, or why it cannot be read.
pub type Builds = BTreeMap<(String, String), Result<BuildHash, String>>;

/// The images of a stack that need building before its services change:
/// image reference -> (the service that builds it, reasons).
fn builds_needed(
    stack: &Stack,
    live: &Live,
    builds: &Builds,
    conflicts: &mut Vec<Conflict>,
) -> BTreeMap<String, (String, Vec<String>)> {
    let mut out: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (service, svc) in stack.services.iter().filter(|(_, s)| s.builds()) {
        let image_ref = svc.image_ref(&stack.name, service);
        // Two services building one image: the first (by name) builds it.
        if !seen.insert(image_ref.clone()) {
            continue;
        }
        let want = match builds.get(&(stack.name.clone(), service.clone())) {
            Some(Ok(h)) => h,
            Some(Err(why)) => {
                conflicts.push(Conflict {
                    stack: stack.name.clone(),
                    service: Some(service.clone()),
                    target: image_ref.clone(),
                    reason: format!("cannot build {image_ref}: {why}"),
                });
                continue;
            }
            None => continue,
        };
        let image = live.images.get(&image_ref).cloned().flatten();
        let have = image
            .as_ref()
            .and_then(|i| i.labels.get(labels::BUILD))
            .and_then(|l| crate::build::parse_label(l))
            .map(|(_, _, h)| h);
        let reason = match (&image, have) {
            (None, _) => format!("image {image_ref} not built yet"),
            // `pull_policy: missing`: built once, never rebuilt.
            (Some(_), _) if svc.pull_policy == Some(PullPolicy::Missing) => continue,
            (Some(_), None) => format!("image {image_ref} was not built by plimsoll"),
            (Some(_), Some(h)) if h == *want => continue,
            (Some(_), Some(h)) => want.reason(&h).to_string(),
        };
        let mut reasons = vec![reason];
        if let Some(old) = live
            .built
            .iter()
            .find(|b| b.hash == want.to_string() && b.stack == stack.name && &b.service == service)
        {
            let id = old.id.strip_prefix("sha256:").unwrap_or(&old.id);
            reasons.push(format!(
                "an image built from the same content is on this host ({}): tagged, not built",
                &id[..id.len().min(12)]
            ));
        }
        out.insert(image_ref, (service.clone(), reasons));
    }
    out
}

/// Networks whose settings differ from git, to recreate: network name ->
/// (its stack, reasons). Only a network plimsoll created for that stack is
/// recreated, and only when every container attached to it is plimsoll's
/// and is recreated with it (or no longer declared: it is disconnected);
/// otherwise the difference is a conflict naming the network's owner or the
/// containers in the way, and the network is left alone.
fn networks_to_recreate(
    stacks: &[&Stack],
    live: &Live,
    masker: &Masker,
    conflicts: &mut Vec<Conflict>,
) -> BTreeMap<String, (String, Vec<String>)> {
    let declared = |c: &LiveContainer| {
        stacks
            .iter()
            .any(|s| s.name == c.stack && s.services.contains_key(&c.service))
    };
    let mut out = BTreeMap::new();
    for stack in stacks {
        for net in stack.networks.values().filter(|n| !n.external) {
            let Some(have) = live.networks.get(&net.name) else {
                continue;
            };
            let changes = diff::network::changes(net, &have.config);
            if changes.is_empty() {
                continue;
            }
            let mut reasons: Vec<String> = changes
                .iter()
                .map(|c| diff::network::reason(c, masker))
                .collect();
            let name = &net.name;
            let conflict = |reason: String| Conflict {
                stack: stack.name.clone(),
                service: None,
                target: name.clone(),
                reason,
            };
            if have.stack() != Some(stack.name.as_str()) {
                let owner = match have.stack() {
                    Some(other) => format!("belongs to stack {other}"),
                    None => "was not created by plimsoll".into(),
                };
                conflicts.push(conflict(format!(
                    "network `{name}` differs from git ({}) but {owner}, so plimsoll leaves it alone: remove it once no container uses it (docker network rm {name}) and plimsoll creates it as git says",
                    reasons.join("; ")
                )));
                continue;
            }
            let mut blocking = Vec::new();
            for attached in &have.attached {
                match live.containers.iter().find(|c| &c.name == attached) {
                    Some(c) if declared(c) => {}
                    Some(_) => reasons.push(format!(
                        "disconnects {attached} (no longer declared in git)"
                    )),
                    None if live.foreign.iter().any(|f| &f.name == attached) => {
                        blocking.push(format!("{attached} (not created by plimsoll)"));
                    }
                    None => blocking.push(format!(
                        "{attached} (of a stack this run does not reconcile)"
                    )),
                }
            }
            if !blocking.is_empty() {
                conflicts.push(conflict(format!(
                    "network `{name}` differs from git ({}) and must be recreated, but containers plimsoll does not change are attached to it: {}; disconnect them (docker network disconnect {name} CONTAINER) and plimsoll recreates it",
                    reasons.join("; "),
                    blocking.join(", ")
                )));
                continue;
            }
            out.insert(name.clone(), (stack.name.clone(), reasons));
        }
    }
    out
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
    let foreign_by_name: BTreeMap<&str, _> =
        live.foreign.iter().map(|f| (f.name.as_str(), f)).collect();
    let renewed = networks_to_recreate(stacks, live, masker, &mut p.conflicts);
    for stack in stacks {
        let sname = stack.name.clone();
        if let Some(c) = unmappable(stack, live) {
            p.conflicts.push(c);
            continue;
        }
        let mut images_to_pull: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for net in stack.networks.values() {
            if live.networks.contains_key(&net.name) {
                continue;
            }
            if net.external {
                p.conflicts.push(Conflict {
                    stack: sname.clone(),
                    service: None,
                    target: net.name.clone(),
                    reason: format!("external network `{}` does not exist; create it (docker network create {})", net.name, net.name),
                });
                continue;
            }
            if stack.services.values().any(|s| {
                s.networks
                    .keys()
                    .any(|k| stack.networks.get(k).is_some_and(|n| n.name == net.name))
            }) {
                p.actions.push(Action {
                    action: ActionKind::CreateNetwork,
                    stack: sname.clone(),
                    service: None,
                    target: net.name.clone(),
                    reasons: vec!["network does not exist".into()],
                    diff: None,
                    replica: None,
                });
            }
        }
        for (net, (_, reasons)) in renewed.iter().filter(|(_, (s, _))| *s == sname) {
            p.actions.push(Action {
                action: ActionKind::RecreateNetwork,
                stack: sname.clone(),
                service: None,
                target: net.clone(),
                reasons: reasons.clone(),
                diff: None,
                replica: None,
            });
        }
        for vol in stack.volumes.values() {
            if live.volumes.contains_key(&vol.name) {
                continue;
            }
            if vol.external {
                p.conflicts.push(Conflict {
                    stack: sname.clone(),
                    service: None,
                    target: vol.name.clone(),
                    reason: format!(
                        "external volume `{}` does not exist; create it (docker volume create {})",
                        vol.name, vol.name
                    ),
                });
                continue;
            }
            p.actions.push(Action {
                action: ActionKind::CreateVolume,
                stack: sname.clone(),
                service: None,
                target: vol.name.clone(),
                reasons: vec!["volume does not exist".into()],
                diff: None,
                replica: None,
            });
        }

        let to_build = builds_needed(stack, live, builds, &mut p.conflicts);
        // Images some service of this stack builds are never pulled.
        let built_here: BTreeSet<String> = stack
            .services
            .iter()
            .filter(|(_, s)| s.builds())
            .map(|(n, s)| s.image_ref(&sname, n))
            .collect();
        for (image, (service, reasons)) in &to_build {
            p.actions.push(Action {
                action: ActionKind::Build,
                stack: sname.clone(),
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
        let mut service_actions: Vec<Action> = Vec::new();
        let mut recreated: BTreeSet<String> = BTreeSet::new();
        let completed_deps: BTreeSet<&str> = stack
            .services
            .values()
            .flat_map(|s| s.depends_on.iter())
            .filter(|(_, d)| d.condition == Condition::ServiceCompletedSuccessfully)
            .map(|(n, _)| n.as_str())
            .collect();
        for wave in graph.waves() {
            for service in wave {
                let svc = &stack.services[&service];
                let replicas = svc.replicas();
                let contents = hashed_contents(stack, &service);
                let mounted = match mounts.get(&(sname.clone(), service.clone())) {
                    Some(Err(why)) => {
                        p.conflicts.push(Conflict {
                            stack: sname.clone(),
                            service: Some(service.clone()),
                            target: names::container_name(stack, &service, svc),
                            reason: format!("cannot compare the files it mounts: {why}"),
                        });
                        continue;
                    }
                    Some(Ok(m)) => m.clone(),
                    None => ServiceMounts::new(),
                };
                // Checked for the whole stack by `unmappable` above.
                let Ok(wants) = (1..=replicas)
                    .map(|n| desired_container(stack, &service, n, live, &contents, &mounted, None))
                    .collect::<Result<Vec<DesiredContainer>, _>>()
                else {
                    continue;
                };
                let mine: Vec<&LiveContainer> = live
                    .containers
                    .iter()
                    .filter(|c| c.stack == sname && c.service == service)
                    .collect();
                let image_ref = svc.image_ref(&sname, &service);
                // An image reference built from a secret variable is shown masked.
                let image_shown = if masker.hides_field(&sname, &["services", &service, "image"]) {
                    crate::spec::secrets::MASK.to_string()
                } else {
                    image_ref.clone()
                };
                let image_missing = live.images.get(&image_ref).cloned().flatten().is_none();
                let rebuilt = to_build.get(&image_ref).map(|(_, r)| r[0].as_str());
                let fetch = if built_here.contains(&image_ref) {
                    "built"
                } else {
                    "pulled"
                };
                if image_missing && replicas > 0 && !built_here.contains(&image_ref) {
                    images_to_pull
                        .entry(image_ref.clone())
                        .or_default()
                        .push(service.clone());
                }
                let names: Vec<&str> = wants.iter().map(|w| w.config.name.as_str()).collect();
                let assigned = assign_replicas(&names, &mine);
                let before = (service_actions.len(), p.conflicts.len());
                // Containers no replica keeps: scaled down, a crash mid-apply, a copy by hand.
                for e in mine
                    .iter()
                    .filter(|c| !assigned.iter().flatten().any(|a| a.id == c.id))
                {
                    let why = if e.number > replicas && !e.name.ends_with(crate::names::OLD_SUFFIX)
                    {
                        format!("scaled down to {replicas} replica{}", plural(replicas))
                    } else {
                        format!(
                            "a second container for this service (keeping {})",
                            names.first().copied().unwrap_or_default()
                        )
                    };
                    service_actions.push(Action {
                        action: ActionKind::Remove,
                        stack: sname.clone(),
                        service: Some(service.clone()),
                        target: e.name.clone(),
                        reasons: vec![why],
                        diff: None,
                        replica: (e.number != 1 || replicas > 1).then_some(e.number),
                    });
                }
                for (n, (want, keep)) in (1..).zip(wants.iter().zip(assigned)) {
                    let name = want.config.name.clone();
                    let replica = (replicas > 1).then_some(n);
                    if let Some(f) = foreign_by_name.get(name.as_str())
                        && keep.is_none_or(|k| k.name != name)
                        && f.compose_project.as_deref() == Some(sname.as_str())
                        && f.compose_service.as_deref() == Some(service.as_str())
                    {
                        // `docker compose` made it for this very stack and service: adopt it.
                        service_actions.push(Action {
                            action: ActionKind::Recreate,
                            stack: sname.clone(),
                            service: Some(service.clone()),
                            target: name.clone(),
                            reasons: vec![format!(
                                "replace (adopt from compose): {name} was created by docker compose; named volumes keep their data"
                            )],
                            diff: None,
                            replica,
                        });
                        recreated.insert(service.clone());
                        continue;
                    }
                    if let Some(f) = foreign_by_name.get(name.as_str())
                        && keep.is_none_or(|k| k.name != name)
                    {
                        let who = match &f.compose_project {
                            Some(project) => {
                                format!("created by docker compose for project `{project}`")
                            }
                            None => "not created by plimsoll".into(),
                        };
                        p.conflicts.push(Conflict {
                            stack: sname.clone(),
                            service: Some(service.clone()),
                            target: name.clone(),
                            reason: format!(
                                "container `{name}` exists and was {who}; plimsoll never touches it: remove or rename it (docker rm -f {name}), or set container_name"
                            ),
                        });
                        continue;
                    }
                    let Some(current) = keep else {
                        let mut reasons = vec![format!("container {name} does not exist")];
                        if replicas > 1 {
                            reasons.push(format!("replica {n} of {replicas}"));
                        }
                        if image_missing {
                            reasons.push(format!(
                                "image {image_shown} is not on this host: it will be {fetch}"
                            ));
                        }
                        service_actions.push(Action {
                            action: ActionKind::Create,
                            stack: sname.clone(),
                            service: Some(service.clone()),
                            target: name,
                            reasons,
                            diff: None,
                            replica,
                        });
                        recreated.insert(service.clone());
                        continue;
                    };
                    // Compared as if created from the checkout the live container was.
                    let rerooted;
                    let working_dir = current.labels.get(labels::COMPOSE_WORKING_DIR);
                    let mapping =
                        mounts::live_mapping(stack, working_dir.map(String::as_str), &live.paths);
                    // A restart re-reads the checkout the container was created from.
                    let same_checkout = mapping.is_none();
                    let want = match mapping.and_then(|(from, to)| {
                        desired_container(
                            stack,
                            &service,
                            n,
                            live,
                            &contents,
                            &mounted,
                            Some((&from, &to)),
                        )
                        .ok()
                    }) {
                        Some(r) => {
                            rerooted = r;
                            &rerooted
                        }
                        None => want,
                    };
                    let mut seen = current.config.clone();
                    seen.align_to(&want.config);
                    let mut changes = diff::compare(&seen.fields(), &want.config.fields());
                    let image_changed = changes
                        .iter()
                        .any(|c| matches!(c, Change::Changed { key, .. } if key == "image"));
                    changes.retain(|c| match c {
                        // A new reference explains a new ID; an unknown ID (not pulled yet) is no reason by itself.
                        Change::Changed { key, .. } if key == "image id" => {
                            !image_changed && !image_missing
                        }
                        Change::Changed { key, .. } if key == "name" => false,
                        _ => true,
                    });
                    let shown = diff::Shown {
                        masker,
                        stack: &sname,
                        service: &service,
                    };
                    let (mut reasons, unified) =
                        shown_changes(&shown, &changes, &seen, &want.config);
                    reasons.extend(diff::hook_changes(&current.labels, &want.config.labels));
                    if current.name != name {
                        reasons.insert(0, format!("renamed by hand: {name} → {}", current.name));
                    }
                    // Its endpoint goes with the network.
                    for net in current
                        .config
                        .networks
                        .keys()
                        .filter(|n| renewed.contains_key(*n))
                    {
                        reasons.push(format!("network {net} is recreated"));
                    }
                    // A container that joined a replaced container's namespace must follow it.
                    for (what, mode) in [
                        ("network stack", &svc.network_mode),
                        ("IPC namespace", &svc.ipc),
                        ("PID namespace", &svc.pid),
                    ] {
                        if let Some(dep) = mode.as_deref().and_then(|m| m.strip_prefix("service:"))
                            && recreated.contains(dep)
                        {
                            reasons.push(format!("uses the {what} of {dep}, which is replaced"));
                        }
                    }
                    if let Some(why) = rebuilt.filter(|_| !image_missing) {
                        reasons.push(format!("image {image_shown} is built again ({why})"));
                    }
                    let live_hash = current.labels.get(labels::SPEC_HASH).map(String::as_str);
                    if reasons.is_empty() && live_hash != Some(want.hash.as_str()) {
                        reasons.push(match live_hash {
                            Some(_) => "settings changed in git (secret or config content, platform, or a removed key the engine fills in)".into(),
                            None => "container has no spec hash (created by an older plimsoll)".into(),
                        });
                    }
                    let content = mounts::changes(&current.labels, &mounted);
                    let restart_for_content = !content.is_empty()
                        && reasons.is_empty()
                        && same_checkout
                        && svc.plimsoll.on_mount_change == Some(OnMountChange::Restart);
                    if !restart_for_content {
                        reasons.extend(content.iter().cloned());
                        if !content.is_empty()
                            && !same_checkout
                            && svc.plimsoll.on_mount_change == Some(OnMountChange::Restart)
                        {
                            reasons.push(
                                "it mounts them from another checkout, which a restart would read again"
                                    .into(),
                            );
                        }
                    }
                    if image_missing && (!reasons.is_empty() || rebuilt.is_some()) {
                        reasons.push(format!(
                            "image {image_shown} is not on this host: it will be {fetch}"
                        ));
                    }
                    if !reasons.is_empty() {
                        service_actions.push(Action {
                            action: ActionKind::Recreate,
                            stack: sname.clone(),
                            service: Some(service.clone()),
                            target: name,
                            reasons,
                            diff: unified,
                            replica,
                        });
                        recreated.insert(service.clone());
                        continue;
                    }
                    if image_missing {
                        images_to_pull.remove(&image_ref);
                    }
                    if restart_for_content {
                        // x-plimsoll: {on_mount_change: restart}; apply records the new hashes.
                        service_actions.push(Action {
                            action: ActionKind::Restart,
                            stack: sname.clone(),
                            service: Some(service.clone()),
                            target: name,
                            reasons: content,
                            diff: None,
                            replica,
                        });
                        continue;
                    }
                    let done_ok = current.state.status == Status::Exited
                        && current.state.exit_code == 0
                        && completed_deps.contains(service.as_str());
                    if !current.state.is_running()
                        && current.state.status != Status::Restarting
                        && !done_ok
                    {
                        service_actions.push(Action {
                            action: ActionKind::Start,
                            stack: sname.clone(),
                            service: Some(service.clone()),
                            target: name,
                            reasons: vec![not_running_reason(current)],
                            diff: None,
                            replica,
                        });
                        continue;
                    }
                    let restart_for: Vec<&String> = svc
                        .depends_on
                        .iter()
                        .filter(|(d, dep)| dep.restart && recreated.contains(*d))
                        .map(|(d, _)| d)
                        .collect();
                    if let Some(dep) = restart_for.first() {
                        service_actions.push(Action {
                            action: ActionKind::Restart,
                            stack: sname.clone(),
                            service: Some(service.clone()),
                            target: name,
                            reasons: vec![format!(
                                "dependency {dep} is replaced (depends_on restart: true)"
                            )],
                            diff: None,
                            replica,
                        });
                    }
                }
                if (service_actions.len(), p.conflicts.len()) == before {
                    p.in_sync.push(format!("{sname}/{service}"));
                }
            }
        }
        for (image, services) in images_to_pull {
            let never = services
                .iter()
                .any(|s| stack.services[s].pull_policy == Some(PullPolicy::Never));
            if never {
                p.conflicts.push(Conflict {
                    stack: sname.clone(),
                    service: services.first().cloned(),
                    target: image.clone(),
                    reason: format!("image {image} is not on this host and pull_policy is never: load or build it on the host"),
                });
                continue;
            }
            p.actions.push(Action {
                action: ActionKind::PullImage,
                stack: sname.clone(),
                service: None,
                target: image,
                reasons: vec![format!("not on this host; used by {}", services.join(", "))],
                diff: None,
                replica: None,
            });
        }
        p.actions.extend(service_actions);
        for c in live
            .containers
            .iter()
            .filter(|c| c.stack == sname && !stack.services.contains_key(&c.service))
        {
            p.would_prune.push(Orphan {
                kind: "container".into(),
                stack: sname.clone(),
                service: Some(c.service.clone()),
                target: c.name.clone(),
            });
        }
        let declared_nets: BTreeSet<&str> =
            stack.networks.values().map(|n| n.name.as_str()).collect();
        for n in live
            .networks
            .values()
            .filter(|n| n.stack() == Some(&sname) && !declared_nets.contains(n.name.as_str()))
        {
            p.would_prune.push(Orphan {
                kind: "network".into(),
                stack: sname.clone(),
                service: None,
                target: n.name.clone(),
            });
        }
    }
    // Stacks plimsoll manages on the engine that git no longer declares here.
    let declared: BTreeSet<&str> = stacks.iter().map(|s| s.name.as_str()).collect();
    for c in live
        .containers
        .iter()
        .filter(|c| !declared.contains(c.stack.as_str()))
    {
        p.would_prune.push(Orphan {
            kind: "container".into(),
            stack: c.stack.clone(),
            service: Some(c.service.clone()),
            target: c.name.clone(),
        });
    }
    for n in live.networks.values() {
        let same_repo = live.repository.is_some()
            && n.labels().get(labels::REPOSITORY) == live.repository.as_ref();
        if let Some(s) = n.stack().filter(|s| same_repo && !declared.contains(s)) {
            p.would_prune.push(Orphan {
                kind: "network".into(),
                stack: s.to_string(),
                service: None,
                target: n.name.clone(),
            });
        }
    }
    for v in live.volumes.values() {
        let Some(s) = v.stack() else { continue };
        let declared_here = stacks
            .iter()
            .find(|st| st.name == s)
            .is_some_and(|st| st.volumes.values().any(|d| d.name == v.name));
        let stack_known = declared.contains(s)
            || live.repository.is_some()
                && v.labels.get(labels::REPOSITORY) == live.repository.as_ref();
        if !declared_here && stack_known {
            p.would_prune.push(Orphan {
                kind: "volume".into(),
                stack: s.to_string(),
                service: None,
                target: v.name.clone(),
            });
        }
    }
    // Pulls lead the plan, then builds: a pull or a build that fails must
    // come before any other change.
    p.actions.sort_by_key(|a| match a.action {
        ActionKind::PullImage => 0,
        ActionKind::Build => 1,
        _ => 2,
    });
    p
}

/// Output formats of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Markdown,
}

const RESET: &str = "\x1b[0m";

pub(crate) fn paint(color: bool, code: &str, text: &str) -> String {
    if color {
        format!("\x1b[{code}m{text}{RESET}")
    } else {
        text.to_string()
    }
}

fn symbol(kind: ActionKind) -> (&'static str, &'static str) {
    match kind {
        ActionKind::CreateNetwork | ActionKind::CreateVolume | ActionKind::Create => ("+", "32"),
        ActionKind::PullImage => ("↓", "36"),
        ActionKind::Build => ("⚒", "36"),
        ActionKind::Start | ActionKind::Restart => ("▶", "36"),
        ActionKind::Recreate | ActionKind::RecreateNetwork => ("~", "33"),
        ActionKind::Stop
        | ActionKind::Remove
        | ActionKind::RemoveNetwork
        | ActionKind::RemoveVolume => ("-", "31"),
    }
}

/// `stack/service`, `stack/service.N` for a replica, `stack/target` for the rest.
fn subject(a: &Action) -> String {
    match (&a.service, a.replica) {
        (Some(s), Some(n)) => format!("{}/{s}.{n}", a.stack),
        (Some(s), None) => format!("{}/{s}", a.stack),
        (None, _) => format!("{}/{}", a.stack, a.target),
    }
}

/// The one-line summary: `2 to create, 1 to recreate; 3 in sync.`
pub fn summary_line(plan: &Plan) -> String {
    let mut parts: Vec<String> = plan
        .summary()
        .into_iter()
        .map(|(k, n)| format!("{n} to {}", k.as_str()))
        .collect();
    if parts.is_empty() {
        parts.push("no changes".into());
    }
    let mut line = format!("Plan: {}; {} in sync", parts.join(", "), plan.in_sync.len());
    if !plan.conflicts.is_empty() {
        line.push_str(&format!(
            "; {} conflict{}",
            plan.conflicts.len(),
            if plan.conflicts.len() == 1 { "" } else { "s" }
        ));
    }
    if !plan.would_prune.is_empty() {
        line.push_str(&format!(
            "; {} to prune with --prune",
            plan.would_prune.len()
        ));
    }
    line.push('.');
    line
}

/// Appends a unified diff, each line indented, colored on a terminal.
pub(crate) fn push_diff(out: &mut String, diff: &str, indent: &str, color: bool) {
    for line in diff.lines() {
        let styled = match line.chars().next() {
            Some('+') if !line.starts_with("+++") => paint(color, "32", line),
            Some('-') if !line.starts_with("---") => paint(color, "31", line),
            Some('@') => paint(color, "36", line),
            _ => line.to_string(),
        };
        out.push_str(&format!("{indent}{styled}\n"));
    }
}

/// The plan for people: one line per action, a unified diff per recreated service.
pub fn to_text(plan: &Plan, color: bool) -> String {
    let mut out = String::new();
    for a in &plan.actions {
        let (sym, code) = symbol(a.action);
        out.push_str(&format!(
            "{} {:<16} {:<24} {}\n",
            paint(color, code, sym),
            paint(color, code, a.action.as_str()),
            subject(a),
            a.reasons.first().map(String::as_str).unwrap_or_default()
        ));
        for r in a.reasons.iter().skip(1) {
            out.push_str(&format!("  {:<16} {:<24} {r}\n", "", ""));
        }
        if let Some(d) = &a.diff {
            push_diff(&mut out, d, "      ", color);
        }
    }
    for c in &plan.conflicts {
        let who = c.service.as_ref().map_or_else(
            || format!("{}/{}", c.stack, c.target),
            |s| format!("{}/{s}", c.stack),
        );
        out.push_str(&format!(
            "{} {:<16} {who:<24} {}\n",
            paint(color, "31;1", "!"),
            paint(color, "31;1", "conflict"),
            c.reason
        ));
    }
    for o in &plan.would_prune {
        out.push_str(&format!(
            "{} {:<16} {:<24} {} {} is no longer declared in git ({})\n",
            paint(color, "35", "?"),
            paint(color, "35", "would prune"),
            format!("{}/{}", o.stack, o.service.as_deref().unwrap_or(&o.target)),
            o.kind,
            o.target,
            if o.kind == "volume" {
                "kept: volumes go only with --prune-volumes and the stack's prune_volumes: true"
            } else {
                "removed only with --prune"
            }
        ));
    }
    out.push_str(&summary_line(plan));
    out.push('\n');
    out
}

/// Text from the repository (names, values, reasons) as inert Markdown for
/// a pull-request comment, in prose and in table cells: the characters that
/// open links, images, emphasis, code, entities and table cells are
/// backslash-escaped, `<` and `>` written as entities (no HTML), a mention
/// (`@org/team`) broken by a zero-width space, a line break made a space.
pub(crate) fn md_escape(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in chars.iter().enumerate() {
        let inside_word = |i: usize| {
            i > 0
                && chars[i - 1].is_alphanumeric()
                && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric())
        };
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            // Inside a word (`DB_PASSWORD`), `_` emphasizes nothing.
            '_' if inside_word(i) => out.push(c),
            // `(` and `!` mean something only after `]` or before `[`, both escaped.
            '\\' | '`' | '*' | '_' | '[' | ']' | '~' | '|' | '&' => {
                out.push('\\');
                out.push(c);
            }
            '@' => out.push_str("@&#8203;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `s` as an inline code span in a table cell (inert: no link, HTML or
/// mention inside code): delimited by more backticks than any run inside,
/// pipes escaped as GitHub's tables need even in code.
pub(crate) fn md_code(s: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let ticks = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    let body = s.replace('|', "\\|").replace(['\n', '\r'], " ");
    format!("{ticks}{pad}{body}{pad}{ticks}")
}

/// Text inside an HTML element of a pull-request comment (`<summary>`),
/// where Markdown's backslash escapes do not apply: HTML-escaped, mentions broken.
pub(crate) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '@' => out.push_str("@&#8203;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `text` as a fenced code block of `lang`: the fence is longer than any
/// run of backticks inside, so a value holding ```` ``` ```` cannot close it.
pub(crate) fn md_fence(lang: &str, text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest.max(2) + 1);
    let body = if text.ends_with('\n') || text.is_empty() {
        text.to_string()
    } else {
        format!("{text}\n")
    };
    format!("{fence}{lang}\n{body}{fence}")
}

/// The plan as a pull-request comment: a table, and each diff in a collapsible section.
pub fn to_markdown(plan: &Plan) -> String {
    let mut out = String::from("### plimsoll plan\n\n");
    if plan.actions.is_empty() && plan.conflicts.is_empty() {
        out.push_str("No changes: the host matches git.\n\n");
    } else {
        out.push_str(
            "| | action | stack | service | target | reasons |\n|---|---|---|---|---|---|\n",
        );
        for a in &plan.actions {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                symbol(a.action).0,
                a.action.as_str(),
                md_escape(&a.stack),
                md_escape(a.service.as_deref().unwrap_or("")),
                md_code(&a.target),
                md_escape(&a.reasons.join("; "))
            ));
        }
        for c in &plan.conflicts {
            out.push_str(&format!(
                "| ! | **conflict** | {} | {} | {} | {} |\n",
                md_escape(&c.stack),
                md_escape(c.service.as_deref().unwrap_or("")),
                md_code(&c.target),
                md_escape(&c.reason)
            ));
        }
        out.push('\n');
    }
    for a in plan.actions.iter().filter(|a| a.diff.is_some()) {
        out.push_str(&format!(
            "<details><summary>{} {}</summary>\n\n{}\n\n</details>\n\n",
            a.action.as_str(),
            html_escape(&subject(a)),
            md_fence("diff", a.diff.as_deref().unwrap_or_default())
        ));
    }
    if !plan.would_prune.is_empty() {
        out.push_str("Would prune (no longer in git; removed only with `--prune`): ");
        let items: Vec<String> = plan
            .would_prune
            .iter()
            .map(|o| format!("{} {}", o.kind, md_code(&o.target)))
            .collect();
        out.push_str(&items.join(", "));
        out.push_str("\n\n");
    }
    out.push_str(&format!("**{}**\n", summary_line(plan)));
    out
}

/// How prune is decided for each stack.
pub struct PruneOptions<'a> {
    /// Prune is on for this stack (the flag, `plimsoll.yaml`, the agent default).
    pub enabled: &'a dyn Fn(&str) -> bool,
    /// Removing every container of a stack is allowed (`--allow-empty`).
    pub allow_empty: bool,
    /// Named volumes of this stack may go (`--prune-volumes` and the stack's opt-in).
    pub volumes: &'a dyn Fn(&str) -> bool,
    /// Stacks git assigns to other hosts only: removing all of a stack's
    /// containers here is then a move, not a likely mistake.
    pub elsewhere: &'a BTreeSet<String>,
}

/// Turns "would prune" entries into removal actions where prune is on, at the
/// end of the plan. Guardrails: containers whose service says
/// `x-plimsoll: {prune: false}` stay; a stack that would lose every
/// container (no longer in git, or declared with no services) is refused
/// unless `allow_empty`; volumes go only where `volumes` allows.
pub fn with_prune(mut plan: Plan, stacks: &[&Stack], live: &Live, opts: &PruneOptions<'_>) -> Plan {
    let orphan_stacks: BTreeSet<String> =
        plan.would_prune.iter().map(|o| o.stack.clone()).collect();
    let mut kept = Vec::new();
    let mut removals = Vec::new();
    for stack in orphan_stacks {
        let mine: Vec<Orphan> = plan
            .would_prune
            .iter()
            .filter(|o| o.stack == stack)
            .cloned()
            .collect();
        if !(opts.enabled)(&stack) {
            kept.extend(mine);
            continue;
        }
        let exempt = |o: &Orphan| {
            live.containers.iter().any(|c| {
                c.name == o.target && c.labels.get(labels::PRUNE).is_some_and(|v| v == "false")
            })
        };
        let declared = stacks.iter().find(|s| s.name == stack);
        let moved = opts.elsewhere.contains(&stack);
        let empties = !moved && declared.is_none_or(|s| s.services.is_empty());
        let containers: Vec<&Orphan> = mine.iter().filter(|o| o.kind == "container").collect();
        if empties && !containers.is_empty() && !opts.allow_empty {
            let why = if declared.is_some() {
                "declares no services"
            } else {
                "is no longer in the repository"
            };
            plan.conflicts.push(Conflict {
                stack: stack.clone(),
                service: None,
                target: stack.clone(),
                reason: format!(
                    "refusing to remove all {} containers of stack {stack}: it {why}, which is more often a mistake (an empty or truncated file) than intended; run with --allow-empty to remove them",
                    containers.len()
                ),
            });
            kept.extend(mine);
            continue;
        }
        for o in mine {
            let gone = if moved {
                "assigned to another host in plimsoll.yaml"
            } else {
                "no longer declared in git"
            };
            let (action, allowed, reason) = match o.kind.as_str() {
                "container" => (ActionKind::Remove, !exempt(&o), gone),
                "network" => (ActionKind::RemoveNetwork, true, gone),
                _ => (
                    ActionKind::RemoveVolume,
                    (opts.volumes)(&stack),
                    "no longer declared in git (--prune-volumes)",
                ),
            };
            if allowed {
                removals.push(Action {
                    action,
                    stack: stack.clone(),
                    service: o.service.clone(),
                    target: o.target.clone(),
                    reasons: vec![reason.into()],
                    diff: None,
                    replica: None,
                });
            } else {
                kept.push(o);
            }
        }
    }
    // Containers before the networks they use, volumes last.
    removals.sort_by_key(|a| match a.action {
        ActionKind::Remove => 0,
        ActionKind::RemoveNetwork => 1,
        _ => 2,
    });
    plan.actions.extend(removals);
    plan.would_prune = kept;
    plan
}

/// Whether an action is a prune step (it removes something git no longer declares).
pub fn is_prune(a: &Action, stacks: &[&Stack]) -> bool {
    match a.action {
        ActionKind::RemoveNetwork | ActionKind::RemoveVolume => true,
        ActionKind::Remove => {
            let declared = stacks.iter().find(|s| s.name == a.stack);
            declared.is_none_or(|s| {
                a.service
                    .as_ref()
                    .is_none_or(|svc| !s.services.contains_key(svc))
            })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    /// Text from the repository is inert in the pull-request comment.
    #[test]
    fn markdown_from_the_repository_is_escaped() {
        let evil = "[x](http://evil) ![i](http://evil/p.png) <img src=x> @org/team ``` a|b";
        assert_eq!(
            md_escape(evil),
            "\\[x\\](http://evil) !\\[i\\](http://evil/p.png) &lt;img src=x&gt; @&#8203;org/team \\`\\`\\` a\\|b"
        );
        assert_eq!(md_escape("a_b@c _x_"), "a_b@&#8203;c \\_x\\_");
        assert_eq!(html_escape("<b>@x"), "&lt;b&gt;@&#8203;x");
        // A fence longer than any run of backticks inside.
        let f = md_fence("diff", "+label a: ```\n");
        assert!(f.starts_with("````diff\n") && f.ends_with("\n````"), "{f}");
        assert_eq!(md_code("a`b|c"), "``a`b\\|c``");
    }

    use super::*;
    use crate::live::RunState;

    fn container(id: &str, name: &str, number: u32) -> LiveContainer {
        LiveContainer {
            id: id.into(),
            name: name.into(),
            stack: "s".into(),
            service: "web".into(),
            number,
            labels: BTreeMap::new(),
            state: RunState {
                status: crate::health::Status::Running,
                exit_code: 0,
                oom_killed: false,
                health: None,
                health_log: None,
            },
            config: ContainerConfig::default(),
            anonymous_volumes: BTreeMap::new(),
        }
    }

    /// The stack `shop` in `dir`: `web` on network `backend` with `net` as
    /// its settings, loaded as `reconcile` loads it.
    fn shop(dir: &tempfile::TempDir, net: &str) -> crate::spec::Desired {
        let compose = format!(
            "name: shop\nservices:\n  web:\n    image: busybox:1\n    networks: [backend]\nnetworks:\n  backend:\n{net}"
        );
        std::fs::write(dir.path().join("compose.yaml"), compose).unwrap();
        crate::spec::load_path(dir.path())
    }

    /// The engine after applying `applied`: network `shop_backend` as the
    /// engine made it, `web` running in sync and attached to it, and `others`
    /// attached too.
    fn applied(d: &crate::spec::Desired, others: &[&str]) -> Live {
        use crate::diff::network::NetworkConfig;
        let stack = &d.stacks[0];
        let mut live = Live::default();
        live.images.insert(
            "busybox:1".into(),
            Some(crate::diff::ImageDefaults {
                id: "sha256:b".into(),
                ..Default::default()
            }),
        );
        let want =
            desired_container(stack, "web", 1, &live, &[], &ServiceMounts::new(), None).unwrap();
        let mut web = container("id-web", "shop-web-1", 1);
        web.stack = "shop".into();
        web.labels = want.config.labels.clone();
        web.config = want.config;
        live.containers.push(web);
        let net = &stack.networks["backend"];
        let mut ipam = net.ipam.clone().unwrap_or_default();
        if ipam.config.is_empty() {
            ipam.config.push(crate::spec::model::IpamPool {
                subnet: Some("172.18.0.0/16".into()),
                gateway: Some("172.18.0.1".into()),
                ..Default::default()
            });
        }
        ipam.driver = Some("default".into());
        let mut net_labels = net.labels.clone();
        net_labels.insert(labels::STACK.into(), "shop".into());
        live.networks.insert(
            net.name.clone(),
            crate::live::LiveNetwork {
                name: net.name.clone(),
                config: NetworkConfig {
                    driver: "bridge".into(),
                    internal: net.internal,
                    ipam,
                    labels: net_labels,
                    ..Default::default()
                },
                attached: std::iter::once("shop-web-1")
                    .chain(others.iter().copied())
                    .map(String::from)
                    .collect(),
            },
        );
        live
    }

    const SUBNET_1: &str = "    ipam:\n      config:\n        - subnet: 10.1.0.0/24\n";
    const SUBNET_2: &str =
        "    internal: true\n    ipam:\n      config:\n        - subnet: 10.2.0.0/24\n";

    #[test]
    fn a_changed_network_is_recreated_with_its_services() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (shop(&dir, SUBNET_1), shop(&dir, SUBNET_2));
        let live = applied(&old, &[]);
        let plan_of = |d: &crate::spec::Desired, live: &Live| {
            let stacks: Vec<&Stack> = d.stacks.iter().collect();
            plan(&stacks, live, &Builds::new(), &Mounts::new(), &d.masker)
        };
        // In sync as applied, with or without a declared subnet.
        assert!(plan_of(&old, &live).is_noop());
        let plain = shop(&dir, "    labels: {team: shop}\n");
        assert!(plan_of(&plain, &applied(&plain, &[])).is_noop());

        let p = plan_of(&new, &live);
        assert_eq!(
            to_text(&p, false),
            "\
~ recreate network shop/shop_backend        internal false → true
                                            ipam subnet 10.1.0.0/24 → 10.2.0.0/24
~ recreate         shop/web                 network shop_backend is recreated
Plan: 1 to recreate network, 1 to recreate; 0 in sync.
"
        );
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["actions"][0]["action"], "recreate_network");
        assert!(
            to_markdown(&p).contains(
                "| ~ | recreate network | shop |  | `shop_backend` | internal false → true; ipam subnet 10.1.0.0/24 → 10.2.0.0/24 |"
            ),
            "{}",
            to_markdown(&p)
        );

        // A container plimsoll does not own on it: a conflict naming it, nothing recreated.
        let mut held = applied(&old, &["by-hand"]);
        held.foreign.push(crate::live::ForeignContainer {
            id: "id-hand".into(),
            name: "by-hand".into(),
            image: "busybox:1".into(),
            compose_project: None,
            compose_service: None,
            status: "running".into(),
            agent: false,
        });
        let p = plan_of(&new, &held);
        assert!(p.is_noop(), "{p:?}");
        assert_eq!(p.conflicts.len(), 1);
        assert!(
            p.conflicts[0]
                .reason
                .contains("by-hand (not created by plimsoll)")
                && p.conflicts[0]
                    .reason
                    .contains("docker network disconnect shop_backend CONTAINER"),
            "{}",
            p.conflicts[0].reason
        );

        // A network plimsoll did not create is left alone, and the plan says so.
        let mut foreign = live.clone();
        let n = foreign.networks.get_mut("shop_backend").unwrap();
        n.config.labels.clear();
        let p = plan_of(&new, &foreign);
        assert!(p.is_noop(), "{p:?}");
        assert!(
            p.conflicts[0]
                .reason
                .contains("was not created by plimsoll, so plimsoll leaves it alone"),
            "{}",
            p.conflicts[0].reason
        );
        // Nor is an external one compared.
        let external = shop(&dir, "    external: true\n    name: shop_backend\n");
        assert!(plan_of(&external, &live).is_noop());
        assert!(plan_of(&external, &live).conflicts.is_empty());
    }

    /// Which container each replica keeps, as IDs.
    fn check(names: &[&str], live: &[LiveContainer], want: &[Option<&str>]) {
        let mine: Vec<&LiveContainer> = live.iter().collect();
        let got: Vec<Option<&str>> = assign_replicas(names, &mine)
            .into_iter()
            .map(|c| c.map(|c| c.id.as_str()))
            .collect();
        assert_eq!(got, want, "names {names:?}");
    }

    /// A hook that changes replaces the container, with the hook named in
    /// the reason (the engine does not show hooks: their labels do); an
    /// unchanged one is in sync.
    #[test]
    fn changed_hooks_recreate_with_their_reason() {
        use crate::spec::model::{Hook, Service};
        let hook = |cmd: &str| Hook {
            command: vec!["sh".into(), "-c".into(), cmd.into()],
            ..Hook::default()
        };
        let stack_with = |post_start: Vec<Hook>, pre_stop: Vec<Hook>| Stack {
            name: "s".into(),
            services: BTreeMap::from([(
                "web".to_string(),
                Service {
                    image: Some("busybox:1".into()),
                    post_start,
                    pre_stop,
                    ..Service::default()
                },
            )]),
            networks: BTreeMap::new(),
            volumes: BTreeMap::new(),
            secrets: BTreeMap::new(),
            configs: BTreeMap::new(),
            extensions: BTreeMap::new(),
            source: Default::default(),
        };
        let mut live = Live::default();
        live.images.insert(
            "busybox:1".into(),
            Some(diff::ImageDefaults {
                id: "sha256:1".into(),
                ..Default::default()
            }),
        );
        let applied = stack_with(vec![hook("echo a")], vec![]);
        let want =
            desired_container(&applied, "web", 1, &live, &[], &ServiceMounts::new(), None).unwrap();
        let mut c = container("a", "s-web-1", 1);
        c.labels = want.config.labels.clone();
        c.config = want.config;
        live.containers.push(c);
        let reasons = |stack: &Stack| -> Vec<Vec<String>> {
            plan(
                &[stack],
                &live,
                &Builds::new(),
                &Mounts::new(),
                &Masker::default(),
            )
            .actions
            .into_iter()
            .map(|a| a.reasons)
            .collect()
        };
        assert_eq!(reasons(&applied), Vec::<Vec<String>>::new());
        assert_eq!(
            reasons(&stack_with(vec![hook("echo b")], vec![hook("echo bye")])),
            vec![vec![
                "post_start hooks changed".to_string(),
                "pre_stop hooks added".to_string()
            ]]
        );
        assert_eq!(
            reasons(&stack_with(vec![], vec![])),
            vec![vec!["post_start hooks removed".to_string()]]
        );
    }

    #[test]
    fn replicas_keep_their_containers() {
        let three = ["s-web-1", "s-web-2", "s-web-3"];
        // Scale up: existing replicas kept, new ones missing.
        let live = [container("a", "s-web-1", 1), container("b", "s-web-2", 2)];
        check(&three, &live, &[Some("a"), Some("b"), None]);
        // Scale down: replica 3 is kept by no one (removed).
        let live = [
            container("a", "s-web-1", 1),
            container("b", "s-web-2", 2),
            container("c", "s-web-3", 3),
        ];
        check(&three[..2], &live, &[Some("a"), Some("b")]);
        check(&[], &live, &[]);
        // Renamed by hand: found by its number, not taken by another replica.
        let live = [container("a", "s-web-1", 1), container("b", "oops", 2)];
        check(&three[..2], &live, &[Some("a"), Some("b")]);
        // One replica: its only container, whatever its name and number.
        let live = [container("a", "renamed", 7)];
        check(&three[..1], &live, &[Some("a")]);
        // A second container under replica 1's number is not kept twice.
        let live = [container("a", "s-web-1", 1), container("b", "copy", 1)];
        check(&three[..1], &live, &[Some("a")]);
        check(&three[..2], &live, &[Some("a"), None]);
    }

    /// Under a container whose checkout is on no mount the engine sees, a
    /// stack that bind-mounts a repository file is one conflict with the
    /// hint and nothing else; a stack that does not still plans.
    #[test]
    fn a_stack_whose_repository_files_cannot_be_mapped_is_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        for (stack, volumes) in [
            (
                "files",
                "    volumes: [\"./www:/www:ro\"]\n    networks: [back]\nnetworks:\n  back: {}\n",
            ),
            ("plain", "    volumes: [\"/etc/ssl:/etc/ssl:ro\"]\n"),
        ] {
            let d = dir.path().join("stacks").join(stack);
            std::fs::create_dir_all(d.join("www")).unwrap();
            std::fs::write(
                d.join("compose.yaml"),
                format!("services:\n  web:\n    image: busybox:1\n{volumes}"),
            )
            .unwrap();
        }
        let d = crate::spec::load_path(dir.path());
        assert_eq!(d.stacks.len(), 2);
        let stacks: Vec<&Stack> = d.stacks.iter().collect();
        let live = Live {
            paths: crate::hostpath::PathMap::new(
                "agent",
                vec![crate::hostpath::HostMount {
                    destination: "/var/lib/plimsoll".into(),
                    kind: "volume".into(),
                    source: Some("/var/lib/docker/volumes/s/_data".into()),
                    name: Some("s".into()),
                }],
                None,
            ),
            ..Live::default()
        };
        let p = plan(&stacks, &live, &Builds::new(), &Mounts::new(), &d.masker);
        assert_eq!(p.conflicts.len(), 1, "{p:#?}");
        let c = &p.conflicts[0];
        assert_eq!(
            (c.stack.as_str(), c.service.as_deref()),
            ("files", Some("web"))
        );
        assert!(c.target.ends_with("stacks/files/www"), "{c:?}");
        assert!(c.reason.contains("state:/var/lib/plimsoll"), "{c:?}");
        assert!(p.actions.iter().all(|a| a.stack == "plain"), "{p:#?}");
        assert!(
            p.actions
                .iter()
                .any(|a| a.action == ActionKind::Create && a.stack == "plain"),
            "{p:#?}"
        );
        // Outside a container the same stacks plan as before.
        let p = plan(
            &stacks,
            &Live::default(),
            &Builds::new(),
            &Mounts::new(),
            &d.masker,
        );
        assert!(p.conflicts.is_empty(), "{p:#?}");
        assert!(p.actions.iter().any(|a| a.stack == "files"), "{p:#?}");
    }
}
