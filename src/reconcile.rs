//! The orchestrator: wires the pipeline stages together for one host.
//! desired (loaded) -> which stacks run here -> live -> plan -> (apply).
//!
//! The CLI and (later) the agent call this; the reason a reconcile runs is
//! not its business, so it always converges from whatever is there.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::live::{Engine, EngineError, Live};
use crate::plan::{self, ActionKind, Plan};
use crate::spec::Desired;
use crate::spec::model::Stack;

/// What the engine looks like for this host's stacks, and the plan.
pub struct Observed<'a> {
    pub engine: Engine,
    /// The host name (the engine's name) that `plimsoll.yaml` assigns stacks to.
    pub host: String,
    /// Stacks assigned to this host.
    pub stacks: Vec<&'a Stack>,
    /// Names of assigned stacks whose changes are frozen (`paused`).
    pub paused: BTreeSet<String>,
    pub live: Live,
    pub plan: Plan,
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
        }
    }
}

/// Connects to the engine, reads the live state of this host's stacks and plans.
pub async fn observe<'a>(
    desired: &'a Desired,
    host: Option<&str>,
) -> Result<Observed<'a>, EngineError> {
    let engine = Engine::connect().await?;
    let host = match host {
        Some(h) => h.to_string(),
        None => engine
            .docker
            .info()
            .await
            .map_err(EngineError::call("reading the engine's name"))?
            .name
            .unwrap_or_default(),
    };
    let stacks: Vec<&Stack> = desired
        .stacks
        .iter()
        .filter(|s| desired.config.runs_on(&s.name, &host))
        .collect();
    let paused = stacks
        .iter()
        .filter(|s| desired.config.is_paused(&s.name, &host))
        .map(|s| s.name.clone())
        .collect();
    let names: BTreeSet<String> = stacks.iter().map(|s| s.name.clone()).collect();
    let images: BTreeSet<String> = stacks
        .iter()
        .flat_map(|s| s.services.values())
        .filter_map(|s| s.image.clone())
        .collect();
    let live = engine.snapshot(&names, &images).await?;
    let plan = plan::plan(&stacks, &live, &desired.masker);
    Ok(Observed {
        engine,
        host,
        stacks,
        paused,
        live,
        plan,
    })
}

/// One service's state for `plimsoll status`.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub stack: String,
    pub service: String,
    /// `in sync`, `drifted`, `missing`, `stopped`, `conflict`, `paused`.
    pub state: String,
    pub reasons: Vec<String>,
    pub container: String,
    /// `healthy`, `unhealthy`, `starting`, or `null` without a health check.
    pub health: Option<String>,
    pub running: bool,
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
        for (name, svc) in &stack.services {
            let container = crate::diff::container_name(stack, name, svc);
            let live = o
                .live
                .containers
                .iter()
                .find(|c| c.stack == stack.name && &c.service == name);
            let action = o.plan.actions.iter().find(|a| {
                a.stack == stack.name
                    && a.service.as_deref() == Some(name)
                    && a.action != ActionKind::Remove
            });
            let conflict = o
                .plan
                .conflicts
                .iter()
                .find(|c| c.stack == stack.name && c.service.as_deref() == Some(name));
            let (state, reasons) = match (conflict, action) {
                (Some(c), _) => ("conflict".to_string(), vec![c.reason.clone()]),
                (None, Some(a)) => {
                    let state = match a.action {
                        ActionKind::Create => "missing",
                        ActionKind::Start => "stopped",
                        _ => "drifted",
                    };
                    (state.to_string(), a.reasons.clone())
                }
                (None, None) => ("in sync".to_string(), Vec::new()),
            };
            let state = if o.paused.contains(&stack.name) && state != "in sync" {
                format!("{state} (paused)")
            } else {
                state
            };
            services.push(ServiceStatus {
                stack: stack.name.clone(),
                service: name.clone(),
                state,
                reasons,
                container: live.map_or(container, |c| c.name.clone()),
                health: live.and_then(|c| c.state.health.clone()),
                running: live.is_some_and(|c| c.state.is_running()),
            });
        }
    }
    let unknown = o.live.foreign.iter().map(|f| f.name.clone()).collect();
    Status {
        host: o.host.clone(),
        services,
        unknown,
    }
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
        let health = svc.health.clone().unwrap_or_else(|| {
            if svc.running {
                "running".into()
            } else {
                "-".into()
            }
        });
        rows.push([
            svc.stack.clone(),
            svc.service.clone(),
            svc.state.clone(),
            health,
            svc.container.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
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
