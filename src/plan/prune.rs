//! Pruning: what carries plimsoll's labels but git no longer declares
//! ([`stack_orphans`], [`undeclared_orphans`]: the plan's `would_prune`),
//! and, where prune is on, the removals that take it away ([`with_prune`]),
//! behind its guardrails. Pure.

use std::collections::BTreeSet;

use super::{Action, ActionKind, Conflict, Orphan, OrphanKind, Plan};
use crate::live::Live;
use crate::names::labels;
use crate::spec::model::Stack;

/// Objects of a declared stack that it no longer declares: containers of
/// services it lost, networks it created and no longer names.
pub(super) fn stack_orphans(stack: &Stack, live: &Live, out: &mut Vec<Orphan>) {
    let sname = &stack.name;
    for c in live
        .containers
        .iter()
        .filter(|c| &c.stack == sname && !stack.services.contains_key(&c.service))
    {
        out.push(Orphan {
            kind: OrphanKind::Container,
            stack: sname.clone(),
            service: Some(c.service.clone()),
            target: c.name.clone(),
        });
    }
    let declared_nets: BTreeSet<&str> = stack.networks.values().map(|n| n.name.as_str()).collect();
    for n in live
        .networks
        .values()
        .filter(|n| n.stack() == Some(sname) && !declared_nets.contains(n.name.as_str()))
    {
        out.push(Orphan {
            kind: OrphanKind::Network,
            stack: sname.clone(),
            service: None,
            target: n.name.clone(),
        });
    }
}

/// Stacks plimsoll manages on the engine that git no longer declares here:
/// their containers; their networks and their volumes when they come from
/// this repository; volumes declared stacks no longer name.
pub(super) fn undeclared_orphans(stacks: &[&Stack], live: &Live, out: &mut Vec<Orphan>) {
    let declared: BTreeSet<&str> = stacks.iter().map(|s| s.name.as_str()).collect();
    for c in live
        .containers
        .iter()
        .filter(|c| !declared.contains(c.stack.as_str()))
    {
        out.push(Orphan {
            kind: OrphanKind::Container,
            stack: c.stack.clone(),
            service: Some(c.service.clone()),
            target: c.name.clone(),
        });
    }
    for n in live.networks.values() {
        let same_repo = live.repository.is_some()
            && n.labels().get(labels::REPOSITORY) == live.repository.as_ref();
        if let Some(s) = n.stack().filter(|s| same_repo && !declared.contains(s)) {
            out.push(Orphan {
                kind: OrphanKind::Network,
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
            out.push(Orphan {
                kind: OrphanKind::Volume,
                stack: s.to_string(),
                service: None,
                target: v.name.clone(),
            });
        }
    }
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
        let containers: Vec<&Orphan> = mine
            .iter()
            .filter(|o| o.kind == OrphanKind::Container)
            .collect();
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
            let (action, allowed, reason) = match o.kind {
                OrphanKind::Container => (ActionKind::Remove, !exempt(&o), gone),
                OrphanKind::Network => (ActionKind::RemoveNetwork, true, gone),
                OrphanKind::Volume => (
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
