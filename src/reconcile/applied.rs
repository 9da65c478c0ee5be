//! What the state directory knows about containers beyond their labels
//! ([`crate::state::AppliedMounts`]): the content hashes of the files a
//! restarted container was restarted with, and the spec hash a container
//! stands for once a drift accepted into git is in git. Laid over the live
//! containers before planning; recorded after an apply.

use std::collections::BTreeSet;

use super::Observed;
use crate::live::Live;
use crate::plan::{self, ActionKind};
use crate::spec::model::Stack;

/// Lays the content hashes containers were last restarted with (see
/// [`crate::state::AppliedMounts`]) over their labels and plans again when
/// any applies. Only the same container (by ID) takes them.
pub fn with_applied_mounts(
    observed: &mut Observed<'_>,
    applied: &crate::state::AppliedMounts,
    masker: &crate::spec::secrets::Masker,
) {
    if overlay_applied_mounts(
        &mut observed.live,
        applied,
        &observed.stacks,
        &observed.mounts,
    ) {
        observed.plan = plan::plan(
            &observed.stacks,
            &observed.live,
            &observed.builds,
            &observed.mounts,
            masker,
        );
    }
}

/// Lays the hashes of `applied` over the labels of the same containers;
/// whether any label changed. An accepted drift counts only once git has
/// it (its service's hash is the one recorded): until then the record
/// changes nothing.
pub(super) fn overlay_applied_mounts(
    live: &mut Live,
    applied: &crate::state::AppliedMounts,
    stacks: &[&Stack],
    mounts: &crate::mounts::Mounts,
) -> bool {
    let in_git: BTreeSet<String> = live
        .containers
        .iter()
        .filter(|c| {
            applied.accepted.get(&c.id).is_some_and(|a| {
                c.labels.get(crate::names::labels::SPEC_HASH) == Some(&a.label)
                    && a.label != a.hash
                    && accepted_in_git(stacks, live, mounts, c, &a.hash)
            })
        })
        .map(|c| c.id.clone())
        .collect();
    let mut changed = false;
    for c in &mut live.containers {
        // A drift accepted into git: the container stands for the config with it.
        if let Some(a) = applied.accepted.get(&c.id)
            && in_git.contains(&c.id)
        {
            for label in [
                crate::names::labels::SPEC_HASH,
                crate::names::labels::COMPOSE_CONFIG_HASH,
            ] {
                c.labels.insert(label.into(), a.hash.clone());
                c.config.labels.insert(label.into(), a.hash.clone());
            }
            changed = true;
        }
        let Some(hashes) = applied.containers.get(&c.id) else {
            continue;
        };
        for (target, hash) in hashes {
            let label = crate::mounts::label(target);
            if c.labels.get(&label) == Some(hash) {
                continue;
            }
            c.labels.insert(label.clone(), hash.clone());
            c.config.labels.insert(label, hash.clone());
            changed = true;
        }
    }
    changed
}

/// Whether git's config of the service of `c` has the spec hash `hash` (a
/// drift accepted into git that git now holds), as the plan compares it.
fn accepted_in_git(
    stacks: &[&Stack],
    live: &Live,
    mounts: &crate::mounts::Mounts,
    c: &crate::live::LiveContainer,
    hash: &str,
) -> bool {
    let Some(stack) = stacks.iter().find(|s| s.name == c.stack) else {
        return false;
    };
    if !stack.services.contains_key(&c.service) {
        return false;
    }
    let mounted = match mounts.get(&(c.stack.clone(), c.service.clone())) {
        Some(Ok(m)) => m.clone(),
        _ => Default::default(),
    };
    plan::compared_hash(stack, &c.service, live, c, &mounted).as_deref() == Some(hash)
}

/// What an apply's restarts brought into the containers: `applied` with
/// the hashes of every container restarted successfully, and without the
/// containers the apply replaced or removed.
pub fn restarted_mounts(
    observed: &Observed<'_>,
    outcomes: &[crate::apply::ActionOutcome],
    mut applied: crate::state::AppliedMounts,
) -> crate::state::AppliedMounts {
    let replaced: BTreeSet<&str> = outcomes
        .iter()
        .filter(|o| matches!(o.action.action, ActionKind::Recreate | ActionKind::Remove))
        .map(|o| o.action.target.as_str())
        .collect();
    let id_of = |name: &str| {
        observed
            .live
            .containers
            .iter()
            .find(|c| c.name == name && !replaced.contains(name))
            .map(|c| c.id.clone())
    };
    // A heal observes one service: containers not seen are not gone.
    let gone: BTreeSet<&str> = observed
        .live
        .containers
        .iter()
        .filter(|c| replaced.contains(c.name.as_str()))
        .map(|c| c.id.as_str())
        .collect();
    applied
        .containers
        .retain(|id, _| !gone.contains(id.as_str()));
    applied.accepted.retain(|id, _| !gone.contains(id.as_str()));
    for o in outcomes
        .iter()
        .filter(|o| o.action.action == ActionKind::Restart && o.result.is_ok())
    {
        let service = o.action.service.clone().unwrap_or_default();
        let Some(Ok(hashes)) = observed.mounts.get(&(o.action.stack.clone(), service)) else {
            continue;
        };
        if let Some(id) = id_of(&o.action.target).filter(|_| !hashes.is_empty()) {
            applied.containers.insert(
                id,
                hashes
                    .iter()
                    .map(|(t, m)| (t.clone(), m.hash.clone()))
                    .collect(),
            );
        }
    }
    applied
}

/// Records in the state directory the hashes of the files restarted
/// containers now see (one read-modify-write at a time: heals run
/// concurrently). A failure is logged: the container may be restarted again.
pub(super) fn record_restarted_mounts(
    observed: &Observed<'_>,
    outcomes: &[crate::apply::ActionOutcome],
    state: &crate::state::StateDir,
) {
    let update = state.update_applied_mounts(|applied| {
        *applied = restarted_mounts(observed, outcomes, std::mem::take(applied));
    });
    if let Err(e) = update {
        tracing::error!(
            "the apply ran, but recording the files restarted containers mount failed: {e}; they may be restarted again"
        );
    }
}
