//! Drift review: what drifted on this host and what to do about it — see it
//! ([`review`]), silence it for a while ([`Silences`]), accept it into git
//! ([`accept`]: the [`patch()`] and the hashes to record) or revert it
//! ([`revert_plan`], applied through the normal apply by the caller).
//!
//! The drift is the plan's service actions (a plan *is* the difference
//! between git and the host, its reasons already in words and masked); the
//! review groups them per service and says which are silenced. The CLI
//! (`plimsoll drift`) and the agent (its dashboard, its heal and
//! notification choices in `agent::choose`) call these.
//!
//! Invariant: pure, except [`Silences`] and [`Accept::record`], which read
//! and write the state directory through [`crate::state::StateDir`].

mod patch;
mod silence;
mod text;

use std::collections::BTreeSet;

use serde::Serialize;

pub use patch::{Patch, ServiceDrift, Unwritten, Why, patch};
pub use silence::{
    BOUNDS as SILENCE_BOUNDS, FILE as SILENCES_FILE, InvalidDuration, Silence, SilenceError,
    Silences, parse_duration as parse_silence_duration,
};
pub(crate) use text::Text;
pub use text::TextError;

use crate::live::Live;
use crate::mounts::Mounts;
use crate::plan::{Action, ActionKind, Plan};
use crate::spec::model::Stack;

/// What kind of drift an action of a service undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// Settings differ (`docker update`, a recreate by hand): git's container replaces it.
    Changed,
    /// Stopped, killed or paused: started again.
    Stopped,
    /// The container is gone (removed, renamed away): created again.
    Missing,
    /// A container too many (scaled by hand, a copy): removed.
    Extra,
    /// Restarted (unhealthy, or after a dependency).
    Restart,
}

impl DriftKind {
    fn of(action: ActionKind) -> Option<DriftKind> {
        Some(match action {
            ActionKind::Recreate => DriftKind::Changed,
            ActionKind::Start => DriftKind::Stopped,
            ActionKind::Create => DriftKind::Missing,
            ActionKind::Remove => DriftKind::Extra,
            ActionKind::Restart => DriftKind::Restart,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::Changed => "changed",
            DriftKind::Stopped => "stopped",
            DriftKind::Missing => "missing",
            DriftKind::Extra => "extra container",
            DriftKind::Restart => "restart",
        }
    }
}

/// One container's drift: what reverting it does, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriftAction {
    pub kind: DriftKind,
    pub container: String,
    /// The drift in words, secrets masked.
    pub reasons: Vec<String>,
    /// Unified diff of the field lines, live -> git, secrets masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// A drifted service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drifted {
    pub stack: String,
    pub service: String,
    /// The first kind of its actions (changed before stopped before missing …).
    pub kind: DriftKind,
    pub actions: Vec<DriftAction>,
    /// The silence in force that covers all of it, if one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silenced: Option<Silence>,
}

impl Drifted {
    /// Its reasons, all actions together.
    pub fn reasons(&self) -> Vec<String> {
        self.actions
            .iter()
            .flat_map(|a| a.reasons.iter().cloned())
            .collect()
    }
}

/// The drifted services of a plan (observed as `reconcile --dry-run` does),
/// in plan order, with the silences in force at `now`.
pub fn review(plan: &Plan, silences: &Silences, now: jiff::Timestamp) -> Vec<Drifted> {
    let mut out: Vec<Drifted> = Vec::new();
    let mut covered: Vec<bool> = Vec::new();
    for a in &plan.actions {
        let (Some(service), Some(kind)) = (&a.service, DriftKind::of(a.action)) else {
            continue;
        };
        let silence = silences.covering(a, now);
        let action = DriftAction {
            kind,
            container: a.target.clone(),
            reasons: a.reasons.clone(),
            diff: a.diff.clone(),
        };
        match out
            .iter()
            .position(|d| d.stack == a.stack && &d.service == service)
        {
            Some(i) => {
                let d = &mut out[i];
                d.kind = d.kind.min(kind);
                d.actions.push(action);
                covered[i] &= silence.is_some();
            }
            None => {
                out.push(Drifted {
                    stack: a.stack.clone(),
                    service: service.clone(),
                    kind,
                    actions: vec![action],
                    silenced: silence.cloned(),
                });
                covered.push(silence.is_some());
            }
        }
    }
    for (d, all) in out.iter_mut().zip(covered) {
        if !all {
            d.silenced = None;
        }
    }
    out
}

/// The actions of a plan minus those a silence in force covers, and those
/// (for the agent: not notified, not healed, shown as silenced).
pub fn without_silenced(
    plan: &Plan,
    silences: &Silences,
    now: jiff::Timestamp,
) -> (Plan, Vec<Action>) {
    let (silenced, kept): (Vec<Action>, Vec<Action>) = plan
        .actions
        .iter()
        .cloned()
        .partition(|a| silences.covering(a, now).is_some());
    (
        Plan {
            actions: kept,
            ..plan.clone()
        },
        silenced,
    )
}

/// What the patch of each drifted service is made from: its first live
/// container's config (aligned to git's) and git's, and its drift that is
/// a state rather than a setting.
pub fn service_drifts<'a>(
    stacks: &[&'a Stack],
    live: &Live,
    mounts: &Mounts,
    drifted: &[Drifted],
) -> Vec<ServiceDrift<'a>> {
    let mut out = Vec::new();
    for d in drifted {
        let Some(stack) = stacks.iter().copied().find(|s| s.name == d.stack) else {
            continue;
        };
        if !stack.services.contains_key(&d.service) {
            continue;
        }
        let mut mine: Vec<_> = live
            .containers
            .iter()
            .filter(|c| c.stack == d.stack && c.service == d.service)
            .filter(|c| !c.name.ends_with(crate::names::OLD_SUFFIX))
            .collect();
        mine.sort_by_key(|c| c.number);
        let mounted = match mounts.get(&(d.stack.clone(), d.service.clone())) {
            Some(Ok(m)) => m.clone(),
            _ => Default::default(),
        };
        let contents = crate::plan::hashed_contents(stack, &d.service);
        let number = mine.first().map_or(1, |c| c.number);
        let Ok(want) = crate::plan::desired_container(
            stack, &d.service, number, live, &contents, &mounted, None,
        ) else {
            continue;
        };
        let live_config = mine.first().map(|c| {
            let mut seen = c.config.clone();
            seen.align_to(&want.config);
            seen
        });
        let states = d
            .actions
            .iter()
            .filter(|a| {
                matches!(
                    a.kind,
                    DriftKind::Stopped | DriftKind::Missing | DriftKind::Restart
                )
            })
            .map(|a| format!("{}: {}", a.container, a.reasons.join("; ")))
            .collect();
        out.push(ServiceDrift {
            stack,
            service: stack
                .services
                .get_key_value(&d.service)
                .map(|(k, _)| k.as_str())
                .unwrap_or_default(),
            live: live_config,
            desired: want.config,
            running: mine.len() as u32,
            states,
        });
    }
    out
}

/// The files of the desired state as a patch leaves them: `edited` over `base`.
pub struct Patched<'a> {
    pub base: &'a dyn crate::source::Files,
    pub edited: &'a std::collections::BTreeMap<std::path::PathBuf, String>,
}

impl crate::source::Files for Patched<'_> {
    fn read(&self, path: &std::path::Path) -> std::io::Result<Option<Vec<u8>>> {
        let absolute = self.base.absolute(path).ok();
        let edited = self
            .edited
            .get(path)
            .or_else(|| absolute.and_then(|p| self.edited.get(&p)));
        match edited {
            Some(text) => Ok(Some(text.as_bytes().to_vec())),
            None => self.base.read(path),
        }
    }

    fn kind(&self, path: &std::path::Path) -> std::io::Result<Option<crate::source::Kind>> {
        self.base.kind(path)
    }

    fn list(&self, dir: &std::path::Path) -> std::io::Result<Vec<String>> {
        self.base.list(dir)
    }

    fn absolute(&self, path: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
        self.base.absolute(path)
    }

    fn link(&self, path: &std::path::Path) -> std::io::Result<Option<std::path::PathBuf>> {
        self.base.link(path)
    }

    fn root(&self) -> Option<std::path::PathBuf> {
        self.base.root()
    }
}

/// Accepting drift into git: the patch, and what to record so that the
/// plan finds the containers in sync once git has it ([`accepted`]).
#[derive(Debug)]
pub struct Accept<E> {
    pub patch: Patch,
    /// Container ID -> the hash it stands for with the patch in git; `Err`:
    /// the repository does not load with the patch applied (nothing to record).
    pub accepted: Result<std::collections::BTreeMap<String, crate::state::Accepted>, E>,
}

/// The patch for the `drifted` services of an observation (`stacks`,
/// `live`, `mounts`), reading the repository through `files`; and, loading
/// the repository with the patch applied through `load` (given the patched
/// files, it loads as the caller does), the hashes to record. What
/// `plimsoll drift --patch` and the dashboard's download both do.
pub fn accept<E>(
    stacks: &[&Stack],
    live: &Live,
    mounts: &Mounts,
    drifted: &[Drifted],
    masker: &crate::spec::secrets::Masker,
    files: &dyn crate::source::Files,
    load: impl FnOnce(&dyn crate::source::Files) -> Result<crate::spec::Desired, E>,
) -> Accept<E> {
    let services = service_drifts(stacks, live, mounts, drifted);
    let patch = patch(&services, masker, files);
    if patch.edited.is_empty() {
        return Accept {
            patch,
            accepted: Ok(Default::default()),
        };
    }
    let patched = Patched {
        base: files,
        edited: &patch.edited,
    };
    let accepted = load(&patched).map(|desired| {
        let stacks: Vec<&Stack> = desired.stacks.iter().collect();
        accepted(&stacks, live, mounts, drifted)
    });
    Accept { patch, accepted }
}

impl<E> Accept<E> {
    /// Records the accepted hashes in the state directory (`mounts.json`);
    /// whether there were any. Inert until git has the patch.
    pub fn record(&self, state: &crate::state::StateDir) -> Result<bool, crate::state::StateError> {
        let Ok(accepted) = &self.accepted else {
            return Ok(false);
        };
        if accepted.is_empty() {
            return Ok(false);
        }
        state.update_applied_mounts(|m| m.accepted.extend(accepted.clone()))
    }
}

/// For each live container of the `drifted` services, the spec hash its
/// service has in `patched` (the repository loaded with a patch applied),
/// with the label it carries: what [`crate::state::AppliedMounts::accepted`]
/// records so that, once the patch is in git, the plan finds it in sync
/// instead of replacing it for a changed hash. Containers whose label is
/// already that hash are left out.
pub fn accepted(
    patched: &[&Stack],
    live: &Live,
    mounts: &Mounts,
    drifted: &[Drifted],
) -> std::collections::BTreeMap<String, crate::state::Accepted> {
    let mut out = std::collections::BTreeMap::new();
    for d in drifted {
        let Some(stack) = patched.iter().copied().find(|s| s.name == d.stack) else {
            continue;
        };
        if !stack.services.contains_key(&d.service) {
            continue;
        }
        let mounted = match mounts.get(&(d.stack.clone(), d.service.clone())) {
            Some(Ok(m)) => m.clone(),
            _ => Default::default(),
        };
        for c in live
            .containers
            .iter()
            .filter(|c| c.stack == d.stack && c.service == d.service)
        {
            let Some(label) = c.labels.get(crate::names::labels::SPEC_HASH) else {
                continue;
            };
            // As the plan will compare it: from the checkout the container was made from.
            let Some(hash) = crate::plan::compared_hash(stack, &d.service, live, c, &mounted)
            else {
                continue;
            };
            if &hash != label {
                out.insert(
                    c.id.clone(),
                    crate::state::Accepted {
                        label: label.clone(),
                        hash,
                    },
                );
            }
        }
    }
    out
}

/// The part of `plan` that puts `services` (stack, service) back to git:
/// their actions, the pulls of their images and the networks and volumes
/// their stacks lack; nothing is pruned. Applied like any plan (the CLI's
/// `drift --revert` hands it to the normal apply, under the lock, audited).
pub fn revert_plan(plan: &Plan, stacks: &[&Stack], services: &BTreeSet<(String, String)>) -> Plan {
    let picked =
        |stack: &str, service: &str| services.contains(&(stack.to_string(), service.to_string()));
    let images: BTreeSet<String> = stacks
        .iter()
        .flat_map(|s| {
            s.services
                .iter()
                .filter(|(n, _)| picked(&s.name, n))
                .map(|(n, svc)| svc.image_ref(&s.name, n))
        })
        .collect();
    let their_stacks: BTreeSet<&str> = services.iter().map(|(s, _)| s.as_str()).collect();
    Plan {
        actions: plan
            .actions
            .iter()
            .filter(|a| match (a.service.as_deref(), a.action) {
                (Some(s), _) => picked(&a.stack, s),
                (None, ActionKind::PullImage) => images.contains(&a.target),
                (None, ActionKind::CreateNetwork | ActionKind::CreateVolume) => {
                    their_stacks.contains(a.stack.as_str())
                }
                (None, _) => false,
            })
            .cloned()
            .collect(),
        in_sync: Vec::new(),
        conflicts: plan
            .conflicts
            .iter()
            .filter(|c| c.service.as_deref().is_some_and(|s| picked(&c.stack, s)))
            .cloned()
            .collect(),
        would_prune: Vec::new(),
        // A revert puts services back: it runs no job.
        jobs: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(kind: ActionKind, service: &str, reasons: &[&str]) -> Action {
        Action {
            action: kind,
            stack: "shop".into(),
            service: Some(service.into()),
            target: format!("shop-{service}-1"),
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            diff: None,
            replica: None,
        }
    }

    #[test]
    fn review_groups_per_service_and_marks_silences() {
        let plan = Plan {
            actions: vec![
                Action {
                    action: ActionKind::PullImage,
                    service: None,
                    target: "nginx:1".into(),
                    ..action(ActionKind::PullImage, "x", &[])
                },
                action(ActionKind::Start, "web", &["stopped by hand (exit code 0)"]),
                action(
                    ActionKind::Recreate,
                    "api",
                    &["memory limit 64 MiB on the host, 128 MiB in git"],
                ),
                action(ActionKind::Remove, "web", &["scaled down to 1 replica"]),
            ],
            ..Plan::default()
        };
        let now: jiff::Timestamp = "2026-01-01T10:00:00Z".parse().unwrap();
        let silence = Silence {
            stack: "shop".into(),
            service: "api".into(),
            fields: vec!["memory limit".into()],
            until: "2026-01-01T11:00:00Z".parse().unwrap(),
            reason: "testing".into(),
            by: "ops".into(),
            created: now,
        };
        let silences = Silences {
            silences: vec![silence.clone()],
        };
        let r = review(&plan, &silences, now);
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].service.as_str(), r[0].kind),
            ("web", DriftKind::Stopped)
        );
        assert_eq!(r[0].actions.len(), 2);
        assert_eq!(r[0].silenced, None);
        assert_eq!(r[1].silenced, Some(silence));
        let later: jiff::Timestamp = "2026-01-01T11:00:00Z".parse().unwrap();
        assert_eq!(review(&plan, &silences, later)[1].silenced, None);
        let (kept, silenced) = without_silenced(&plan, &silences, now);
        assert_eq!((kept.actions.len(), silenced.len()), (3, 1));
    }

    #[test]
    fn a_revert_plan_holds_only_the_services_asked_for() {
        let plan = Plan {
            actions: vec![
                action(ActionKind::Start, "web", &["stopped by hand (exit code 0)"]),
                action(ActionKind::Recreate, "api", &["image changed"]),
            ],
            in_sync: vec!["shop/db".into()],
            ..Plan::default()
        };
        let services = BTreeSet::from([("shop".to_string(), "web".to_string())]);
        let p = revert_plan(&plan, &[], &services);
        assert_eq!(p.actions.len(), 1);
        assert_eq!(p.actions[0].target, "shop-web-1");
        assert!(p.in_sync.is_empty());
    }
}
