//! Pairing: the desired side of a service (one [`DesiredContainer`] per
//! replica, normalized as the engine would report it) and its live
//! containers, lined up Argo-style as aligned `(desired?, live?)` pairs
//! ([`pairs`]): no live side means create, no desired side means remove.
//! Pure.

use std::collections::BTreeSet;
use std::path::Path;

use super::Conflict;
use crate::diff::{self, ContainerConfig};
use crate::hostpath::Unmappable;
use crate::live::{Live, LiveContainer};
use crate::mounts::{self, ServiceMounts};
use crate::names::labels;
use crate::spec::model::Stack;

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
    live.paths
        .apply(&mut raw, &crate::mounts::stack_root(stack))?;
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
pub(super) fn unmappable(stack: &Stack, live: &Live) -> Option<Conflict> {
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

/// The spec hash the plan compares the label of `current` (a container of
/// `service`) with: its replica's desired container moved to the checkout
/// `current` was created from, as the plan's comparison does. `None` when
/// it cannot be made (a path the engine does not see).
pub fn compared_hash(
    stack: &Stack,
    service: &str,
    live: &Live,
    current: &LiveContainer,
    mounted: &ServiceMounts,
) -> Option<String> {
    let contents = hashed_contents(stack, service);
    let working_dir = current.labels.get(labels::COMPOSE_WORKING_DIR);
    let mapping = mounts::live_mapping(stack, working_dir.map(String::as_str), &live.paths);
    let reroot = mapping.as_ref().map(|(f, t)| (f.as_path(), t.as_path()));
    desired_container(
        stack,
        service,
        current.number,
        live,
        &contents,
        mounted,
        reroot,
    )
    .ok()
    .map(|d| d.hash)
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

/// Which live container each replica keeps (`names[i]` is replica i + 1's
/// name): the one under its name, else one carrying its number under no
/// replica's name (renamed by hand), else, for a single replica, the
/// service's only container.
pub(super) fn assign_replicas<'l>(
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

/// One desired replica and the live container it keeps, or a live
/// container no replica keeps.
pub(super) struct Pair<'d, 'l> {
    /// The replica number (1-based) of the desired side.
    pub number: u32,
    pub desired: Option<&'d DesiredContainer>,
    pub live: Option<&'l LiveContainer>,
}

/// Pairs the desired replicas of a service (`wants[i]` is replica i + 1)
/// with its live containers (`mine`) by [`assign_replicas`]: first the live
/// containers no replica keeps (no desired side), then each replica in
/// order with the container it keeps, if any.
pub(super) fn pairs<'d, 'l>(
    wants: &'d [DesiredContainer],
    mine: &[&'l LiveContainer],
) -> Vec<Pair<'d, 'l>> {
    let names: Vec<&str> = wants.iter().map(|w| w.config.name.as_str()).collect();
    let assigned = assign_replicas(&names, mine);
    let unpaired: Vec<Pair<'d, 'l>> = mine
        .iter()
        .filter(|c| !assigned.iter().flatten().any(|a| a.id == c.id))
        .map(|c| Pair {
            number: c.number,
            desired: None,
            live: Some(*c),
        })
        .collect();
    let paired = (1..)
        .zip(wants.iter().zip(assigned))
        .map(|(n, (w, keep))| Pair {
            number: n,
            desired: Some(w),
            live: keep,
        });
    unpaired.into_iter().chain(paired).collect()
}
