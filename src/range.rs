//! `plimsoll diff`: what a commit range changes in the desired state, per
//! host, computed from the git repository alone (no checkout, no engine).
//!
//! Both revisions are loaded by `spec::load` through [`GitTree`]; [`compare`]
//! pairs them by host (the assignment in `plimsoll.yaml`), stack and service
//! and reuses `diff`'s lines: a service's replica-1 `ContainerConfig`
//! (without an image id: no engine), flattened by `fields()`, compared with
//! `diff::compare`, said with `diff::change_words` and shown as a unified
//! diff. A build context is compared by its git tree id; a secret's content
//! only as "changed". Every value passes through the union of both
//! revisions' maskers. The result is a value: its JSON form is an API
//! boundary (`schemas/diff.json`). Invariant: no I/O besides reading git
//! objects through [`GitTree`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::diff;
use crate::mounts;
use crate::names::{self, labels};
use crate::plan::{html_escape, md_code, md_escape, md_fence, paint, push_diff};
use crate::source::{self, Files, GitTree, SourceError};
use crate::spec::config::Config;
use crate::spec::model::{FileObject, Service, Stack};
use crate::spec::secrets::Masker;
use crate::spec::{self, Desired, LoadError, LoadOptions};

/// `plimsoll diff` failed.
#[derive(Debug, thiserror::Error)]
pub enum RangeError {
    #[error(transparent)]
    Source(#[from] SourceError),
    /// `--to` does not load: every problem, located in repository-relative files.
    #[error("{rev} does not load:\n{source}")]
    Load {
        rev: String,
        #[source]
        source: LoadError,
    },
}

/// The range, with the warnings to print (`--to`'s load warnings).
pub struct Loaded {
    pub diff: RangeDiff,
    pub warnings: Vec<spec::diag::Diag>,
}

/// Loads `from` and `to` from the git repository holding `path` (PATH as for
/// `validate`, at the same place in both revisions) and compares them.
///
/// A `--to` that does not load (bad YAML, a policy violation) is an error. A
/// `--from` that does not load (or has no desired state at PATH) is a
/// warning, and every stack at `--to` is new: the range repairs it, and what
/// it brings is the whole of `--to`.
pub fn load(
    path: &Path,
    (from, to): (&str, &str),
    host: Option<&str>,
    env: &BTreeMap<String, String>,
    options: &LoadOptions,
) -> Result<Loaded, RangeError> {
    let load_rev =
        |rev: &str| -> Result<(source::Revision, Result<Desired, LoadError>), RangeError> {
            let r = GitTree::resolve(path, rev)?;
            let desired = match source::discover_in(&r.files, &r.path) {
                Ok(layout) => spec::load_with(&layout, &r.files, env, &[], options),
                Err(e) => Err(LoadError {
                    diags: vec![spec::diag::Diag::error(
                        &r.path,
                        spec::diag::Mark::default(),
                        "",
                        e.to_string(),
                    )],
                }),
            };
            Ok((r, desired))
        };
    let (new_rev, new) = load_rev(to)?;
    let new = new.map_err(|source| RangeError::Load {
        rev: format!("--to {to}"),
        source,
    })?;
    let (old_rev, old) = load_rev(from)?;
    let mut warnings = Vec::new();
    let old = match old {
        Ok(d) => Some(d),
        Err(e) => {
            let errors = e.diags.iter().filter(|d| d.is_error()).count();
            warnings.push(format!(
                "--from {from} does not load ({errors} error{}); every stack at --to {to} is shown as new",
                if errors == 1 { "" } else { "s" }
            ));
            for d in &e.diags {
                warnings.push(format!("--from {from}: {d}"));
            }
            None
        }
    };
    let revs = (
        Rev {
            rev: from.to_string(),
            commit: old_rev.commit.clone(),
        },
        Rev {
            rev: to.to_string(),
            commit: new_rev.commit.clone(),
        },
    );
    let from_side = old.as_ref().map(|d| Side {
        desired: d,
        tree: &old_rev.files,
    });
    let to_side = Side {
        desired: &new,
        tree: &new_rev.files,
    };
    let mut diff = compare(from_side.as_ref(), &to_side, revs, host);
    let mut masker = new.masker.clone();
    if let Some(o) = &old {
        masker.extend(&o.masker);
    }
    diff.warnings = warnings
        .into_iter()
        .map(|w| masker.mask(&w).into_owned())
        .collect();
    Ok(Loaded {
        diff,
        warnings: new.warnings.clone(),
    })
}

/// One revision, loaded.
pub struct Side<'a> {
    pub desired: &'a Desired,
    pub tree: &'a GitTree,
}

/// What a commit range changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RangeDiff {
    /// `--from` as given, and the commit it names.
    pub from: Rev,
    /// `--to` as given, and the commit it names.
    pub to: Rev,
    /// Per host: `host: null` for the stacks that run on every host, then
    /// each named host (with `--host`, that host only, including the stacks
    /// that run everywhere). Only hosts with changes are listed.
    pub hosts: Vec<HostDiff>,
    /// Problems that did not stop the diff (a `--from` that does not load).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// A revision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Rev {
    /// As given on the command line (`main`, `HEAD~1`, a SHA).
    pub rev: String,
    /// The full commit SHA.
    pub commit: String,
}

/// The changes on one host (or on every host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HostDiff {
    /// The host name; `null`: the stacks without an assignment, which run on every host.
    pub host: Option<String>,
    pub stacks: Vec<StackDiff>,
}

/// Whether something was added, removed or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

impl ChangeKind {
    fn symbol(self) -> (&'static str, &'static str) {
        match self {
            ChangeKind::Added => ("+", "32"),
            ChangeKind::Removed => ("-", "31"),
            ChangeKind::Changed => ("~", "33"),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Changed => "changed",
        }
    }
}

/// One stack's changes on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StackDiff {
    pub stack: String,
    /// `added`/`removed` on this host (also when it moved between hosts), or `changed`.
    pub change: ChangeKind,
    /// For a stack in both revisions whose hosts changed: the named hosts it
    /// ran on and runs on (every host listed for a stack without assignment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved: Option<Moved>,
    /// Changes to the stack's settings in `plimsoll.yaml` (`paused`, `prune`, …);
    /// for a stack moved to this host, also what differs from where it ran before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// Services added, removed or changed (for an added stack: every service, as added).
    pub services: Vec<ServiceDiff>,
    /// Networks added, removed or changed, by their key in the Compose file.
    pub networks: Vec<ObjectDiff>,
    /// Volumes added, removed or changed, by their key in the Compose file.
    pub volumes: Vec<ObjectDiff>,
}

/// A stack's hosts before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Moved {
    pub from: Vec<String>,
    pub to: Vec<String>,
}

/// One service's changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceDiff {
    pub service: String,
    pub change: ChangeKind,
    /// The changes in words, secrets hidden: "image changed: busybox:1 → busybox:2".
    pub reasons: Vec<String>,
    /// Replicas before and after, when they changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<(u32, u32)>,
    /// The build context's content changed (its git tree differs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub build_context_changed: bool,
    /// Unified diff of the container's settings (replica 1), `--from` → `--to`, secrets masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// A network or volume added, removed or changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ObjectDiff {
    pub name: String,
    pub change: ChangeKind,
}

impl RangeDiff {
    /// Whether the range changes nothing (exit 0).
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Counts over every host: stacks and services added, removed, changed.
    fn counts(&self) -> [[usize; 3]; 2] {
        let idx = |c: ChangeKind| c as usize;
        let mut n = [[0; 3]; 2];
        for s in self.hosts.iter().flat_map(|h| &h.stacks) {
            n[0][idx(s.change)] += 1;
            for v in &s.services {
                n[1][idx(v.change)] += 1;
            }
        }
        n
    }
}

/// The variant of stack `name` that `host` runs (its environment's), if it has one.
fn variant<'d>(d: &'d Desired, name: &str, host: &str) -> Option<&'d Stack> {
    d.config
        .environment_of(host)
        .and_then(|e| d.environments.get(e))
        .and_then(|v| v.iter().find(|s| s.name == name))
}

/// Compares two revisions. `from` is `None` when it did not load: every
/// stack is new. `host` keeps one host's view.
pub fn compare(
    from: Option<&Side<'_>>,
    to: &Side<'_>,
    revs: (Rev, Rev),
    host: Option<&str>,
) -> RangeDiff {
    let mut masker = to.desired.masker.clone();
    if let Some(f) = from {
        masker.extend(&f.desired.masker);
    }
    let names = (revs.0.rev.as_str(), revs.1.rev.as_str());
    let stacks_of = |d: &Desired| -> BTreeMap<String, Stack> {
        d.stacks
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect()
    };
    let old = from.map(|f| stacks_of(f.desired)).unwrap_or_default();
    let new = stacks_of(to.desired);
    let old_config = from.map(|f| &f.desired.config);
    let new_config = &to.desired.config;
    let all: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut hosts: BTreeSet<String> = new_config.host_names();
    if let Some(c) = old_config {
        hosts.extend(c.host_names());
    }
    let everywhere_old = |s: &str| old_config.is_none_or(|c| c.runs_everywhere(s));
    let runs_old = |s: &str, h: &str| old_config.is_none_or(|c| c.runs_on(s, h));
    let placed = |s: &str, runs: &dyn Fn(&str, &str) -> bool| -> Vec<String> {
        hosts.iter().filter(|h| runs(s, h)).cloned().collect()
    };

    let mut groups: Vec<(Option<String>, Vec<StackDiff>)> = Vec::new();
    let group_hosts: Vec<Option<String>> = match host {
        Some(h) => vec![Some(h.to_string())],
        None => std::iter::once(None)
            .chain(hosts.iter().cloned().map(Some))
            .collect(),
    };
    for g in group_hosts {
        let mut entries = Vec::new();
        for &name in &all {
            let (mut o, mut n) = (old.get(name), new.get(name));
            let unassigned = (o.is_none() || everywhere_old(name))
                && (n.is_none() || new_config.runs_everywhere(name));
            // On a named host, the stack as that host runs it: its environment's variant.
            let (mut vo, mut vn) = (None, None);
            if let Some(h) = &g {
                vo = o.and(from.and_then(|f| variant(f.desired, name, h)));
                vn = n.and(variant(to.desired, name, h));
                (o, n) = (vo.or(o), vn.or(n));
            }
            let (was, is) = match (&g, host) {
                // The "every host" group: stacks without assignment on both sides.
                (None, _) if unassigned => (o.is_some(), n.is_some()),
                (None, _) => continue,
                // A named host of the full view: assigned stacks only, and
                // the variants of unassigned ones (its environment's).
                (Some(_), None) if unassigned && vo.is_none() && vn.is_none() => continue,
                (Some(h), _) => (
                    o.is_some() && runs_old(name, h),
                    n.is_some() && new_config.runs_on(name, h),
                ),
            };
            let moved = match (o, n) {
                (Some(_), Some(_)) => {
                    let (a, b) = (
                        placed(name, &runs_old),
                        placed(name, &|s, h| new_config.runs_on(s, h)),
                    );
                    (a != b).then_some(Moved { from: a, to: b })
                }
                _ => None,
            };
            // What changed in the stack itself, for a stack in both revisions.
            let changes = match (from, o, n) {
                (Some(f), Some(o), Some(n)) => stack_changes(o, n, (f, to), names, &masker),
                _ => None,
            };
            let settings = match (old_config, o, n) {
                (Some(c), Some(_), Some(_)) => settings_changes(c, new_config, name),
                _ => Vec::new(),
            };
            let entry = match (was, is, o, n) {
                (false, true, _, Some(n)) => {
                    let mut e = whole(n, ChangeKind::Added, names, &masker);
                    // Moved here: what differs from the stack where it ran before.
                    e.reasons = changes
                        .iter()
                        .flat_map(|c| &c.services)
                        .flat_map(|v| v.reasons.iter().map(move |r| format!("{}: {r}", v.service)))
                        .chain(settings)
                        .collect();
                    Some(e)
                }
                (true, false, Some(o), _) => Some(whole(o, ChangeKind::Removed, names, &masker)),
                (true, true, _, Some(n)) => match changes {
                    Some(mut e) => {
                        e.reasons = settings;
                        Some(e)
                    }
                    None if !settings.is_empty() => {
                        let mut e = whole(n, ChangeKind::Changed, names, &masker);
                        (e.services, e.networks, e.volumes) = Default::default();
                        e.reasons = settings;
                        Some(e)
                    }
                    None => None,
                },
                _ => None,
            };
            if let Some(mut e) = entry {
                e.moved = moved;
                entries.push(e);
            }
        }
        if !entries.is_empty() {
            groups.push((g, entries));
        }
    }
    RangeDiff {
        from: revs.0,
        to: revs.1,
        hosts: groups
            .into_iter()
            .map(|(host, stacks)| HostDiff { host, stacks })
            .collect(),
        warnings: Vec::new(),
    }
}

/// A stack's settings in `plimsoll.yaml` that changed, in words (its hosts
/// and placement are said as a move).
fn settings_changes(old: &Config, new: &Config, stack: &str) -> Vec<String> {
    let settings = |c: &Config| -> BTreeMap<String, String> {
        let mut sc = c.stacks.get(stack).cloned().unwrap_or_default();
        (sc.hosts, sc.placement) = (Vec::new(), None);
        match serde_json::to_value(sc) {
            Ok(serde_json::Value::Object(m)) => m
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (format!("plimsoll.yaml stacks.{stack}.{k}"), v.to_string()))
                .collect(),
            _ => BTreeMap::new(),
        }
    };
    diff::compare(&settings(old), &settings(new))
        .iter()
        .map(|c| diff::change_words(c, &Masker::default()))
        .collect()
}

/// The lines compared for a service: replica 1's settings without the labels
/// plimsoll derives from names and paths, its replicas and build settings.
/// `word` passes each word of the command, entrypoint and health check
/// test before they are joined (see [`diff::ContainerConfig::fields_with`]).
fn service_fields(
    stack: &Stack,
    name: &str,
    svc: &Service,
    word: &dyn Fn(&str) -> String,
) -> BTreeMap<String, String> {
    let mut c = diff::desired_config(stack, name, svc, 1, None);
    for k in names::managed_labels(stack, name, 1).keys() {
        c.labels.remove(k);
    }
    c.labels.remove(labels::REPOSITORY);
    let mut f = c.fields_with(word);
    // No engine: there is no image id to compare.
    f.remove("image id");
    if svc.replicas() != 1 {
        f.insert("replicas".into(), svc.replicas().to_string());
    }
    if let Some(b) = &svc.build {
        let mut b = b.clone();
        b.context = relative(&stack.source.dir, Path::new(&b.context));
        if let Ok(v) = serde_json::to_string(&b) {
            f.insert("build".into(), v);
        }
    }
    f
}

/// A path under the stack directory, relative to it (the checkout's place is not a change).
fn relative(dir: &Path, path: &Path) -> String {
    match path.strip_prefix(dir) {
        Ok(p) => format!("./{}", p.display()),
        Err(_) => path.display().to_string(),
    }
}

/// A whole stack added or removed on a host: each service as added or removed.
fn whole(stack: &Stack, change: ChangeKind, names: (&str, &str), masker: &Masker) -> StackDiff {
    // Jobs are compared as the services they are written as.
    let stack = &*stack.whole();
    let services = stack
        .services
        .iter()
        .map(|(name, svc)| match change {
            ChangeKind::Added => added_service(stack, name, svc, names, masker),
            _ => ServiceDiff {
                service: name.clone(),
                change,
                reasons: Vec::new(),
                replicas: None,
                build_context_changed: false,
                diff: None,
            },
        })
        .collect();
    let objects = |m: Vec<&String>| {
        m.into_iter()
            .map(|k| ObjectDiff {
                name: k.clone(),
                change,
            })
            .collect()
    };
    StackDiff {
        stack: stack.name.clone(),
        change,
        moved: None,
        reasons: Vec::new(),
        services,
        networks: objects(stack.networks.keys().collect()),
        volumes: objects(stack.volumes.keys().collect()),
    }
}

fn added_service(
    stack: &Stack,
    name: &str,
    svc: &Service,
    names: (&str, &str),
    masker: &Masker,
) -> ServiceDiff {
    let shown = diff::Shown {
        masker,
        stack: &stack.name,
        service: name,
    };
    let fields = shown.lines(&service_fields(stack, name, svc, &|w| {
        masker.mask(w).into_owned()
    }));
    ServiceDiff {
        service: name.to_string(),
        change: ChangeKind::Added,
        reasons: vec![format!(
            "image {}",
            shown.value("image", &svc.image_ref(&stack.name, name))
        )],
        replicas: None,
        build_context_changed: false,
        diff: diff::unified(&BTreeMap::new(), &fields, names),
    }
}

/// The content of the secrets and configs a service gets, by `secret NAME`
/// / `config NAME` (compared, never shown).
fn contents(stack: &Stack, svc: &Service, files: &dyn Files) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let read = |o: &FileObject| -> Vec<u8> {
        if let Some(var) = &o.environment {
            return stack
                .source
                .variables
                .get(var)
                .cloned()
                .unwrap_or_default()
                .into_bytes();
        }
        if let Some(c) = &o.content {
            return c.clone().into_bytes();
        }
        o.file
            .as_ref()
            .and_then(|f| files.read(Path::new(f)).ok().flatten())
            .unwrap_or_default()
    };
    for (kind, refs, objects) in [
        ("secret", &svc.secrets, &stack.secrets),
        ("config", &svc.configs, &stack.configs),
    ] {
        for r in refs {
            if let Some(o) = objects.get(&r.source) {
                out.insert(format!("{kind} {}", r.source), read(o));
            }
        }
    }
    out
}

fn stack_changes(
    old: &Stack,
    new: &Stack,
    sides: (&Side<'_>, &Side<'_>),
    names: (&str, &str),
    masker: &Masker,
) -> Option<StackDiff> {
    // Jobs are compared as the services they are written as.
    let (old, new) = (&*old.whole(), &*new.whole());
    let mut services = Vec::new();
    let keys: BTreeSet<&String> = old.services.keys().chain(new.services.keys()).collect();
    for name in keys {
        match (old.services.get(name), new.services.get(name)) {
            (None, Some(svc)) => services.push(added_service(new, name, svc, names, masker)),
            (Some(_), None) => services.push(ServiceDiff {
                service: name.clone(),
                change: ChangeKind::Removed,
                reasons: Vec::new(),
                replicas: None,
                build_context_changed: false,
                diff: None,
            }),
            (Some(a), Some(b)) => {
                if let Some(d) = service_changes(name, (old, a), (new, b), sides, names, masker) {
                    services.push(d);
                }
            }
            (None, None) => {}
        }
    }
    let networks = objects(&old.networks, &new.networks);
    let volumes = objects(&old.volumes, &new.volumes);
    (!services.is_empty() || !networks.is_empty() || !volumes.is_empty()).then(|| StackDiff {
        stack: new.name.clone(),
        change: ChangeKind::Changed,
        moved: None,
        reasons: Vec::new(),
        services,
        networks,
        volumes,
    })
}

fn service_changes(
    name: &str,
    (old_stack, a): (&Stack, &Service),
    (new_stack, b): (&Stack, &Service),
    (from, to): (&Side<'_>, &Side<'_>),
    names: (&str, &str),
    masker: &Masker,
) -> Option<ServiceDiff> {
    let real = |w: &str| w.to_string();
    let (fa, fb) = (
        service_fields(old_stack, name, a, &real),
        service_fields(new_stack, name, b, &real),
    );
    // Both revisions' secrets are known: each side is masked with both
    // maskers (the union), the same way.
    let shown = diff::Shown {
        masker,
        stack: &new_stack.name,
        service: name,
    };
    let word = |w: &str| masker.mask(w).into_owned();
    let (sa, sb) = (
        shown.lines(&service_fields(old_stack, name, a, &word)),
        shown.lines(&service_fields(new_stack, name, b, &word)),
    );
    let replicas = (a.replicas() != b.replicas()).then_some((a.replicas(), b.replicas()));
    let changes = shown.changes(&diff::compare(&fa, &fb), &sa, &sb);
    let mut reasons: Vec<String> = diff::reasons_for(&changes, |c| match (c, replicas) {
        (diff::Change::Added { key, .. } | diff::Change::Removed { key, .. }, Some((x, y)))
            if key == "replicas" =>
        {
            format!("replicas changed: {x} → {y}")
        }
        _ => diff::change_words(c, masker),
    });
    let context = |svc: &Service, side: &Side<'_>| {
        svc.build
            .as_ref()
            .map(|bd| side.tree.entry_id(Path::new(&bd.context)))
    };
    let build_context_changed = match (context(a, from), context(b, to)) {
        (Some(x), Some(y)) => x != y,
        _ => false,
    };
    if build_context_changed {
        reasons.push("build context changed".into());
    }
    reasons.extend(diff::hook_changes(
        &diff::hook_labels(a),
        &diff::hook_labels(b),
    ));
    let (ca, cb) = (
        contents(old_stack, a, from.tree),
        contents(new_stack, b, to.tree),
    );
    for (k, v) in &cb {
        if ca.get(k).is_some_and(|old| old != v) {
            reasons.push(format!("{k} content changed (value hidden)"));
        }
    }
    // Repository files and directories the service bind-mounts, by content hash.
    match (
        mounts::service_mounts(old_stack, name, from.tree),
        mounts::service_mounts(new_stack, name, to.tree),
    ) {
        (_, Err(e)) => reasons.push(format!("cannot compare the files it mounts: {e}")),
        (Ok(ma), Ok(mb)) => reasons.extend(
            mb.iter()
                // Secrets and configs say so above, by name.
                .filter(|(t, m)| m.volume && ma.get(*t).is_some_and(|o| o.hash != m.hash))
                .map(|(_, m)| mounts::reason(m)),
        ),
        (Err(_), Ok(_)) => {}
    }
    if reasons.is_empty() {
        return None;
    }
    let diff = diff::unified(&sa, &sb, names);
    Some(ServiceDiff {
        service: name.to_string(),
        change: ChangeKind::Changed,
        reasons,
        replicas,
        build_context_changed,
        diff,
    })
}

fn objects<T: Serialize>(old: &BTreeMap<String, T>, new: &BTreeMap<String, T>) -> Vec<ObjectDiff> {
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let value = |v: &T| serde_json::to_value(v).ok();
    keys.into_iter()
        .filter_map(|k| {
            let change = match (old.get(k), new.get(k)) {
                (None, Some(_)) => ChangeKind::Added,
                (Some(_), None) => ChangeKind::Removed,
                (Some(a), Some(b)) if value(a) != value(b) => ChangeKind::Changed,
                _ => return None,
            };
            Some(ObjectDiff {
                name: k.clone(),
                change,
            })
        })
        .collect()
}

fn host_title(h: &HostDiff) -> String {
    match &h.host {
        Some(name) => format!("host {name}"),
        None => "all hosts".into(),
    }
}

fn moved_words(m: &Moved) -> String {
    let list = |l: &[String]| {
        if l.is_empty() {
            "no host".to_string()
        } else {
            l.join(", ")
        }
    };
    format!("moved: {} → {}", list(&m.from), list(&m.to))
}

/// The one-line summary: `Diff: 1 stack added, 2 changed; 3 services changed.`
pub fn summary_line(d: &RangeDiff) -> String {
    let [stacks, services] = d.counts();
    let part = |what: &str, n: [usize; 3]| {
        let words: Vec<String> = [(n[0], "added"), (n[1], "removed"), (n[2], "changed")]
            .into_iter()
            .filter(|(k, _)| *k > 0)
            .map(|(k, w)| format!("{k} {w}"))
            .collect();
        (!words.is_empty()).then(|| format!("{what}: {}", words.join(", ")))
    };
    let parts: Vec<String> = [part("stacks", stacks), part("services", services)]
        .into_iter()
        .flatten()
        .collect();
    if parts.is_empty() {
        format!("Diff {}..{}: no changes.", d.from.rev, d.to.rev)
    } else {
        format!("Diff {}..{}: {}.", d.from.rev, d.to.rev, parts.join("; "))
    }
}

/// The diff for people (warnings are printed on stderr): per host, per stack, per service, unified diffs indented.
pub fn to_text(d: &RangeDiff, color: bool) -> String {
    let mut out = String::new();
    // Warnings go to stderr only.
    for h in &d.hosts {
        out.push_str(&paint(color, "1", &host_title(h)));
        out.push('\n');
        for s in &h.stacks {
            let (sym, code) = s.change.symbol();
            let mut notes = s.moved.iter().map(moved_words).chain(s.reasons.clone());
            out.push_str(
                format!(
                    "  {} {:<24} {:<8} {}",
                    paint(color, code, sym),
                    s.stack,
                    s.change.as_str(),
                    notes.next().unwrap_or_default()
                )
                .trim_end(),
            );
            out.push('\n');
            for r in notes {
                out.push_str(&format!("    {:<24} {:<8} {r}\n", "", ""));
            }
            for v in &s.services {
                let (sym, code) = v.change.symbol();
                let mut reasons = v.reasons.iter();
                out.push_str(
                    format!(
                        "    {} {:<22} {:<8} {}",
                        paint(color, code, sym),
                        format!("{}/{}", s.stack, v.service),
                        v.change.as_str(),
                        reasons.next().map(String::as_str).unwrap_or_default()
                    )
                    .trim_end(),
                );
                out.push('\n');
                for r in reasons {
                    out.push_str(&format!("      {:<22} {:<8} {r}\n", "", ""));
                }
                if let Some(diff) = &v.diff {
                    push_diff(&mut out, diff, "        ", color);
                }
            }
            for (kind, list) in [("network", &s.networks), ("volume", &s.volumes)] {
                for o in list {
                    let (sym, code) = o.change.symbol();
                    out.push_str(&format!(
                        "    {} {:<22} {}\n",
                        paint(color, code, sym),
                        format!("{kind} {}", o.name),
                        o.change.as_str()
                    ));
                }
            }
        }
    }
    out.push_str(&summary_line(d));
    out.push('\n');
    out
}

/// The diff as a pull-request comment: a summary table, then each service's
/// unified diff in a collapsible section.
pub fn to_markdown(d: &RangeDiff) -> String {
    let short = |c: &str| c.chars().take(12).collect::<String>();
    let mut out = format!(
        "### plimsoll diff {} → {}\n\n`{}` → `{}`\n\n",
        md_code(&d.from.rev),
        md_code(&d.to.rev),
        short(&d.from.commit),
        short(&d.to.commit)
    );
    for w in &d.warnings {
        out.push_str(&format!("> **Warning:** {}\n\n", md_escape(w)));
    }
    if d.hosts.is_empty() {
        out.push_str("No changes to the desired state.\n\n");
    } else {
        out.push_str(
            "| | host | stack | service | change | details |\n|---|---|---|---|---|---|\n",
        );
        for h in &d.hosts {
            let host = h
                .host
                .as_deref()
                .map_or_else(|| "*all hosts*".to_string(), md_escape);
            for s in &h.stacks {
                let notes: Vec<String> = s
                    .moved
                    .iter()
                    .map(moved_words)
                    .chain(s.reasons.clone())
                    .collect();
                let note = notes.join("; ");
                out.push_str(&format!(
                    "| {} | {host} | {} | | {} | {} |\n",
                    s.change.symbol().0,
                    md_escape(&s.stack),
                    s.change.as_str(),
                    md_escape(&note)
                ));
                for v in &s.services {
                    out.push_str(&format!(
                        "| {} | {host} | {} | {} | {} | {} |\n",
                        v.change.symbol().0,
                        md_escape(&s.stack),
                        md_escape(&v.service),
                        v.change.as_str(),
                        md_escape(&v.reasons.join("; "))
                    ));
                }
                for (kind, list) in [("network", &s.networks), ("volume", &s.volumes)] {
                    for o in list {
                        out.push_str(&format!(
                            "| {} | {host} | {} | {kind} {} | {} | |\n",
                            o.change.symbol().0,
                            md_escape(&s.stack),
                            md_code(&o.name),
                            o.change.as_str()
                        ));
                    }
                }
            }
        }
        out.push('\n');
    }
    for h in &d.hosts {
        for s in &h.stacks {
            for v in s.services.iter().filter(|v| v.diff.is_some()) {
                out.push_str(&format!(
                    "<details><summary>{} {}/{} ({})</summary>\n\n{}\n\n</details>\n\n",
                    v.change.as_str(),
                    html_escape(&s.stack),
                    html_escape(&v.service),
                    html_escape(&host_title(h)),
                    md_fence("diff", v.diff.as_deref().unwrap_or_default())
                ));
            }
        }
    }
    out.push_str(&format!("**{}**\n", summary_line(d)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        let node = crate::spec::yaml::parse(yaml, Path::new("plimsoll.yaml")).unwrap();
        crate::spec::yaml::from_node(&node).unwrap()
    }

    #[test]
    fn settings_changes_leave_the_move_to_moved() {
        let check = |a: &str, b: &str, want: &[&str]| {
            assert_eq!(
                settings_changes(&config(a), &config(b), "s"),
                want,
                "{a} -> {b}"
            );
        };
        check("{}", "{}", &[]);
        check(
            "stacks: {s: {hosts: [a]}}",
            "stacks: {s: {hosts: [b], placement: {labels: {x: y}}}}",
            &[],
        );
        check(
            "stacks: {s: {paused: false}}",
            "stacks: {s: {paused: true, prune: true}}",
            &[
                "plimsoll.yaml stacks.s.paused changed: false → true",
                "plimsoll.yaml stacks.s.prune added: true",
            ],
        );
    }

    #[test]
    fn objects_pair_by_key() {
        let map = |l: &[(&str, u8)]| -> BTreeMap<String, u8> {
            l.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        let got: Vec<(String, ChangeKind)> = objects(
            &map(&[("a", 1), ("b", 1), ("c", 1)]),
            &map(&[("b", 1), ("c", 2), ("d", 1)]),
        )
        .into_iter()
        .map(|o| (o.name, o.change))
        .collect();
        let want = [
            ("a", ChangeKind::Removed),
            ("c", ChangeKind::Changed),
            ("d", ChangeKind::Added),
        ]
        .map(|(n, c)| (n.to_string(), c));
        assert_eq!(got, want);
    }
}
