//! Actions: what each pair of the plan needs and why, in words. The
//! engine objects of a stack (networks, volumes), the images to build
//! ([`builds_needed`]) and to pull, the networks to recreate
//! ([`networks_to_recreate`]), and for each `(desired?, live?)` pair of a
//! service the one action it needs (create, recreate, restart, start,
//! remove) or none, with names held by others as conflicts. Pure.

use std::collections::{BTreeMap, BTreeSet};

use super::pairing::{self, DesiredContainer, desired_container, hashed_contents};
use super::{Action, ActionKind, Builds, Conflict, Plan};
use crate::diff::{self, Change, ContainerConfig};
use crate::health::Status;
use crate::live::{ForeignContainer, Live, LiveContainer};
use crate::mounts::{self, Mounts, ServiceMounts};
use crate::names::{self, labels};
use crate::spec::model::{Condition, OnMountChange, PullPolicy, Service, Stack};
use crate::spec::secrets::Masker;

/// Images or networks to act on: name -> (its service or stack, reasons).
pub(super) type Targets = BTreeMap<String, (String, Vec<String>)>;

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

/// The images of a stack that need building before its services change:
/// image reference -> (the service that builds it, reasons).
pub(super) fn builds_needed(
    stack: &Stack,
    live: &Live,
    builds: &Builds,
    conflicts: &mut Vec<Conflict>,
) -> Targets {
    let mut out = Targets::new();
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
            .and_then(|l| names::parse_build_label(l))
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
pub(super) fn networks_to_recreate(
    stacks: &[&Stack],
    live: &Live,
    masker: &Masker,
    conflicts: &mut Vec<Conflict>,
) -> Targets {
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

/// The networks and volumes of a stack: those to create, the networks to
/// recreate (`renewed`), and missing external ones as conflicts.
pub(super) fn stack_objects(stack: &Stack, live: &Live, renewed: &Targets, p: &mut Plan) {
    let sname = &stack.name;
    let object = |action, target: &str, reasons: Vec<String>| Action {
        action,
        stack: sname.clone(),
        service: None,
        target: target.to_string(),
        reasons,
        diff: None,
        replica: None,
    };
    for net in stack.networks.values() {
        if live.networks.contains_key(&net.name) {
            continue;
        }
        if net.external {
            p.conflicts.push(Conflict {
                stack: sname.clone(),
                service: None,
                target: net.name.clone(),
                reason: format!(
                    "external network `{}` does not exist; create it (docker network create {})",
                    net.name, net.name
                ),
            });
            continue;
        }
        if stack.services.values().any(|s| {
            s.networks
                .keys()
                .any(|k| stack.networks.get(k).is_some_and(|n| n.name == net.name))
        }) {
            p.actions.push(object(
                ActionKind::CreateNetwork,
                &net.name,
                vec!["network does not exist".into()],
            ));
        }
    }
    for (net, (_, reasons)) in renewed.iter().filter(|(_, (s, _))| s == sname) {
        p.actions
            .push(object(ActionKind::RecreateNetwork, net, reasons.clone()));
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
        p.actions.push(object(
            ActionKind::CreateVolume,
            &vol.name,
            vec!["volume does not exist".into()],
        ));
    }
}

/// The pulls a stack needs (image -> the services that use it), or a
/// conflict where `pull_policy: never` forbids one.
pub(super) fn pulls(stack: &Stack, images_to_pull: BTreeMap<String, Vec<String>>, p: &mut Plan) {
    for (image, services) in images_to_pull {
        let never = services
            .iter()
            .any(|s| stack.services[s].pull_policy == Some(PullPolicy::Never));
        if never {
            p.conflicts.push(Conflict {
                stack: stack.name.clone(),
                service: services.first().cloned(),
                target: image.clone(),
                reason: format!("image {image} is not on this host and pull_policy is never: load or build it on the host"),
            });
            continue;
        }
        p.actions.push(Action {
            action: ActionKind::PullImage,
            stack: stack.name.clone(),
            service: None,
            target: image,
            reasons: vec![format!("not on this host; used by {}", services.join(", "))],
            diff: None,
            replica: None,
        });
    }
}

/// The service actions of one stack, wave by wave: what they read, and
/// what they collect (actions, services replaced, images to pull).
pub(super) struct Services<'a> {
    pub stack: &'a Stack,
    pub live: &'a Live,
    pub mounts: &'a Mounts,
    pub masker: &'a Masker,
    pub foreign: &'a BTreeMap<&'a str, &'a ForeignContainer>,
    /// Networks recreated (by name).
    pub renewed: &'a Targets,
    /// Images built (by reference).
    pub to_build: &'a Targets,
    /// Images some service of this stack builds: never pulled.
    pub built_here: BTreeSet<String>,
    /// Services others wait on to complete: exited 0 is done, not stopped.
    pub completed_deps: BTreeSet<&'a str>,
    pub actions: Vec<Action>,
    /// Services with a container created or replaced so far.
    pub recreated: BTreeSet<String>,
    pub images_to_pull: BTreeMap<String, Vec<String>>,
}

/// One service, as its replicas see it.
struct ServiceCx<'a> {
    name: &'a str,
    svc: &'a Service,
    replicas: u32,
    contents: Vec<String>,
    mounted: ServiceMounts,
    image_ref: String,
    /// The image reference as shown (masked when built from a secret variable).
    image_shown: String,
    image_missing: bool,
    /// Why the image is built again, when it is.
    rebuilt: Option<&'a str>,
    /// How a missing image arrives: "built" or "pulled".
    fetch: &'static str,
}

/// What comparing a live container with its desired one found.
struct Verdict {
    reasons: Vec<String>,
    unified: Option<String>,
    /// Changed content of mounted repository files.
    content: Vec<String>,
    /// A restart (`on_mount_change: restart`) is enough for `content`.
    restart_for_content: bool,
}

impl<'a> Services<'a> {
    pub(super) fn new(
        stack: &'a Stack,
        live: &'a Live,
        mounts: &'a Mounts,
        masker: &'a Masker,
        foreign: &'a BTreeMap<&'a str, &'a ForeignContainer>,
        renewed: &'a Targets,
        to_build: &'a Targets,
    ) -> Services<'a> {
        let built_here = stack
            .services
            .iter()
            .filter(|(_, s)| s.builds())
            .map(|(n, s)| s.image_ref(&stack.name, n))
            .collect();
        let completed_deps = stack
            .services
            .values()
            .flat_map(|s| s.depends_on.iter())
            .filter(|(_, d)| d.condition == Condition::ServiceCompletedSuccessfully)
            .map(|(n, _)| n.as_str())
            .collect();
        Services {
            stack,
            live,
            mounts,
            masker,
            foreign,
            renewed,
            to_build,
            built_here,
            completed_deps,
            actions: Vec::new(),
            recreated: BTreeSet::new(),
            images_to_pull: BTreeMap::new(),
        }
    }

    fn action(
        &self,
        action: ActionKind,
        service: &str,
        target: String,
        reasons: Vec<String>,
        replica: Option<u32>,
    ) -> Action {
        Action {
            action,
            stack: self.stack.name.clone(),
            service: Some(service.to_string()),
            target,
            reasons,
            diff: None,
            replica,
        }
    }

    /// The actions of one service (in sync when it needs none and has no
    /// conflict).
    pub(super) fn service(
        &mut self,
        service: &str,
        conflicts: &mut Vec<Conflict>,
        in_sync: &mut Vec<String>,
    ) {
        let stack = self.stack;
        let sname = &stack.name;
        let svc = &stack.services[service];
        let replicas = svc.replicas();
        let contents = hashed_contents(stack, service);
        let mounted = match self.mounts.get(&(sname.clone(), service.to_string())) {
            Some(Err(why)) => {
                conflicts.push(Conflict {
                    stack: sname.clone(),
                    service: Some(service.to_string()),
                    target: names::container_name(stack, service, svc),
                    reason: format!("cannot compare the files it mounts: {why}"),
                });
                return;
            }
            Some(Ok(m)) => m.clone(),
            None => ServiceMounts::new(),
        };
        // Checked for the whole stack by `unmappable`.
        let Ok(wants) = (1..=replicas)
            .map(|n| desired_container(stack, service, n, self.live, &contents, &mounted, None))
            .collect::<Result<Vec<DesiredContainer>, _>>()
        else {
            return;
        };
        let mine: Vec<&LiveContainer> = self
            .live
            .containers
            .iter()
            .filter(|c| &c.stack == sname && c.service == service)
            .collect();
        let image_ref = svc.image_ref(sname, service);
        let image_shown = if self
            .masker
            .hides_field(sname, &["services", service, "image"])
        {
            crate::spec::secrets::MASK.to_string()
        } else {
            image_ref.clone()
        };
        let image_missing = self
            .live
            .images
            .get(&image_ref)
            .cloned()
            .flatten()
            .is_none();
        let built_here = self.built_here.contains(&image_ref);
        if image_missing && replicas > 0 && !built_here {
            self.images_to_pull
                .entry(image_ref.clone())
                .or_default()
                .push(service.to_string());
        }
        let cx = ServiceCx {
            name: service,
            svc,
            replicas,
            contents,
            mounted,
            rebuilt: self.to_build.get(&image_ref).map(|(_, r)| r[0].as_str()),
            image_ref,
            image_shown,
            image_missing,
            fetch: if built_here { "built" } else { "pulled" },
        };
        let first = wants.first().map(|w| w.config.name.as_str());
        let before = (self.actions.len(), conflicts.len());
        for pair in pairing::pairs(&wants, &mine) {
            match (pair.desired, pair.live) {
                (Some(want), keep) => self.replica(&cx, pair.number, want, keep, conflicts),
                (None, Some(extra)) => self.remove_extra(&cx, extra, first),
                (None, None) => {}
            }
        }
        if (self.actions.len(), conflicts.len()) == before {
            in_sync.push(format!("{sname}/{service}"));
        }
    }

    /// A container no replica keeps: scaled down, a crash mid-apply, a copy by hand.
    fn remove_extra(&mut self, cx: &ServiceCx<'_>, e: &LiveContainer, first: Option<&str>) {
        let replicas = cx.replicas;
        let why = if e.number > replicas && !e.name.ends_with(names::OLD_SUFFIX) {
            format!("scaled down to {replicas} replica{}", plural(replicas))
        } else {
            format!(
                "a second container for this service (keeping {})",
                first.unwrap_or_default()
            )
        };
        let replica = (e.number != 1 || replicas > 1).then_some(e.number);
        let a = self.action(
            ActionKind::Remove,
            cx.name,
            e.name.clone(),
            vec![why],
            replica,
        );
        self.actions.push(a);
    }

    /// Replica `n`: its name held by a container plimsoll does not own
    /// (adopted from compose, else a conflict), created, or compared with
    /// the live container it keeps.
    fn replica(
        &mut self,
        cx: &ServiceCx<'_>,
        n: u32,
        want: &DesiredContainer,
        keep: Option<&LiveContainer>,
        conflicts: &mut Vec<Conflict>,
    ) {
        let sname = &self.stack.name;
        let service = cx.name;
        let name = want.config.name.clone();
        let replica = (cx.replicas > 1).then_some(n);
        if let Some(f) = self.foreign.get(name.as_str())
            && keep.is_none_or(|k| k.name != name)
        {
            if f.compose_project.as_deref() == Some(sname.as_str())
                && f.compose_service.as_deref() == Some(service)
            {
                // `docker compose` made it for this very stack and service: adopt it.
                let why = format!(
                    "replace (adopt from compose): {name} was created by docker compose; named volumes keep their data"
                );
                let a = self.action(ActionKind::Recreate, service, name, vec![why], replica);
                self.actions.push(a);
                self.recreated.insert(service.to_string());
                return;
            }
            let who = match &f.compose_project {
                Some(project) => format!("created by docker compose for project `{project}`"),
                None => "not created by plimsoll".into(),
            };
            conflicts.push(Conflict {
                stack: sname.clone(),
                service: Some(service.to_string()),
                target: name.clone(),
                reason: format!(
                    "container `{name}` exists and was {who}; plimsoll never touches it: remove or rename it (docker rm -f {name}), or set container_name"
                ),
            });
            return;
        }
        let Some(current) = keep else {
            let mut reasons = vec![format!("container {name} does not exist")];
            if cx.replicas > 1 {
                reasons.push(format!("replica {n} of {}", cx.replicas));
            }
            if cx.image_missing {
                reasons.push(format!(
                    "image {} is not on this host: it will be {}",
                    cx.image_shown, cx.fetch
                ));
            }
            let a = self.action(ActionKind::Create, service, name, reasons, replica);
            self.actions.push(a);
            self.recreated.insert(service.to_string());
            return;
        };
        let v = self.compare(cx, n, want, current);
        self.converge(cx, current, name, replica, v);
    }

    /// Compares a live container with its replica's desired container, as
    /// if created from the checkout the live container was.
    fn compare(
        &self,
        cx: &ServiceCx<'_>,
        n: u32,
        want: &DesiredContainer,
        current: &LiveContainer,
    ) -> Verdict {
        let stack = self.stack;
        let name = &want.config.name;
        let rerooted;
        let working_dir = current.labels.get(labels::COMPOSE_WORKING_DIR);
        let mapping =
            mounts::live_mapping(stack, working_dir.map(String::as_str), &self.live.paths);
        // A restart re-reads the checkout the container was created from.
        let same_checkout = mapping.is_none();
        let want = match mapping.and_then(|(from, to)| {
            desired_container(
                stack,
                cx.name,
                n,
                self.live,
                &cx.contents,
                &cx.mounted,
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
        // In sync (the common case): no field lines to build, compare or show.
        let same = seen == want.config;
        let mut changes = if same {
            Vec::new()
        } else {
            diff::compare(&seen.fields(), &want.config.fields())
        };
        let image_changed = changes
            .iter()
            .any(|c| matches!(c, Change::Changed { key, .. } if key == "image"));
        changes.retain(|c| match c {
            // A new reference explains a new ID; an unknown ID (not pulled yet) is no reason by itself.
            Change::Changed { key, .. } if key == "image id" => !image_changed && !cx.image_missing,
            Change::Changed { key, .. } if key == "name" => false,
            _ => true,
        });
        let shown = diff::Shown {
            masker: self.masker,
            stack: &stack.name,
            service: cx.name,
        };
        // Equal configurations show equal lines: no reason, no unified diff.
        let (mut reasons, unified) = if same {
            (Vec::new(), None)
        } else {
            shown_changes(&shown, &changes, &seen, &want.config)
        };
        reasons.extend(diff::hook_changes(&current.labels, &want.config.labels));
        if &current.name != name {
            reasons.insert(0, format!("renamed by hand: {name} → {}", current.name));
        }
        self.follow_reasons(cx, current, &mut reasons);
        let live_hash = current.labels.get(labels::SPEC_HASH).map(String::as_str);
        if reasons.is_empty() && live_hash != Some(want.hash.as_str()) {
            reasons.push(match live_hash {
                Some(_) => "settings changed in git (secret or config content, platform, or a removed key the engine fills in)".into(),
                None => "container has no spec hash (created by an older plimsoll)".into(),
            });
        }
        let content = mounts::changes(&current.labels, &cx.mounted);
        let on_restart = cx.svc.plimsoll.on_mount_change == Some(OnMountChange::Restart);
        let restart_for_content =
            !content.is_empty() && reasons.is_empty() && same_checkout && on_restart;
        if !restart_for_content {
            reasons.extend(content.iter().cloned());
            if !content.is_empty() && !same_checkout && on_restart {
                reasons.push(
                    "it mounts them from another checkout, which a restart would read again".into(),
                );
            }
        }
        if cx.image_missing && (!reasons.is_empty() || cx.rebuilt.is_some()) {
            reasons.push(format!(
                "image {} is not on this host: it will be {}",
                cx.image_shown, cx.fetch
            ));
        }
        Verdict {
            reasons,
            unified,
            content,
            restart_for_content,
        }
    }

    /// Reasons a container follows something else that changes: a network
    /// recreated, a namespace it joins replaced, its image built again.
    fn follow_reasons(
        &self,
        cx: &ServiceCx<'_>,
        current: &LiveContainer,
        reasons: &mut Vec<String>,
    ) {
        // Its endpoint goes with the network.
        for net in current
            .config
            .networks
            .keys()
            .filter(|n| self.renewed.contains_key(*n))
        {
            reasons.push(format!("network {net} is recreated"));
        }
        // A container that joined a replaced container's namespace must follow it.
        for (what, mode) in [
            ("network stack", &cx.svc.network_mode),
            ("IPC namespace", &cx.svc.ipc),
            ("PID namespace", &cx.svc.pid),
        ] {
            if let Some(dep) = mode.as_deref().and_then(|m| m.strip_prefix("service:"))
                && self.recreated.contains(dep)
            {
                reasons.push(format!("uses the {what} of {dep}, which is replaced"));
            }
        }
        if let Some(why) = cx.rebuilt.filter(|_| !cx.image_missing) {
            reasons.push(format!("image {} is built again ({why})", cx.image_shown));
        }
    }

    /// The one action a compared container needs, if any: recreate, restart
    /// for mounted content, start, or restart after a dependency.
    fn converge(
        &mut self,
        cx: &ServiceCx<'_>,
        current: &LiveContainer,
        name: String,
        replica: Option<u32>,
        v: Verdict,
    ) {
        let service = cx.name;
        if !v.reasons.is_empty() {
            let mut a = self.action(ActionKind::Recreate, service, name, v.reasons, replica);
            a.diff = v.unified;
            self.actions.push(a);
            self.recreated.insert(service.to_string());
            return;
        }
        if cx.image_missing {
            self.images_to_pull.remove(&cx.image_ref);
        }
        if v.restart_for_content {
            // x-plimsoll: {on_mount_change: restart}; apply records the new hashes.
            let a = self.action(ActionKind::Restart, service, name, v.content, replica);
            self.actions.push(a);
            return;
        }
        let done_ok = current.state.status == Status::Exited
            && current.state.exit_code == 0
            && self.completed_deps.contains(service);
        if !current.state.is_running() && current.state.status != Status::Restarting && !done_ok {
            let why = vec![not_running_reason(current)];
            let a = self.action(ActionKind::Start, service, name, why, replica);
            self.actions.push(a);
            return;
        }
        let restart_for = cx
            .svc
            .depends_on
            .iter()
            .find(|(d, dep)| dep.restart && self.recreated.contains(*d))
            .map(|(d, _)| d);
        if let Some(dep) = restart_for {
            let why = vec![format!(
                "dependency {dep} is replaced (depends_on restart: true)"
            )];
            let a = self.action(ActionKind::Restart, service, name, why, replica);
            self.actions.push(a);
        }
    }
}
