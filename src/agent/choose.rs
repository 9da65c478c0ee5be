//! What to heal: pure choices over an observation, shared by the loop's full
//! check (which reports drift and hands each drifted service to its heal)
//! and a service's heal (which applies it). No I/O; unit-tested.

use std::collections::BTreeSet;
use std::time::Duration;

use super::heal::Decision;
use crate::drift::{Silences, without_silenced};
use crate::health::Health;
use crate::live::LiveContainer;
use crate::plan::{Action, ActionKind, Plan};
use crate::spec::model::Stack;

/// The drift an observation shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Drift {
    /// Everything that drifted and is not silenced, restarts of unhealthy
    /// containers included: what is notified.
    pub reported: Plan,
    /// What healing may apply: the applicable plan (paused stacks left out,
    /// pruning decided) plus the same restarts, silenced drift left out.
    pub to_heal: Plan,
    /// The drift a silence in force covers: shown as silenced, neither
    /// notified nor healed until the silence expires.
    pub silenced: Vec<Action>,
}

impl Drift {
    /// The actions of services (not networks, volumes or orphans) to heal.
    pub fn heals(&self) -> Vec<Action> {
        self.to_heal
            .actions
            .iter()
            .filter(|a| a.service.is_some())
            .cloned()
            .collect()
    }

    /// The services to heal, each once.
    pub fn services(&self) -> Vec<(String, String)> {
        let services: BTreeSet<(String, String)> = self
            .to_heal
            .actions
            .iter()
            .filter_map(|a| Some((a.stack.clone(), a.service.clone()?)))
            .collect();
        services.into_iter().collect()
    }

    /// A service drifted (reported), whether or not it is healed.
    pub fn drifted(&self) -> bool {
        self.reported.actions.iter().any(|a| a.service.is_some())
    }
}

/// The drift of an observation whose plan is `plan`, `applicable` the part of
/// it that may be applied, `unhealthy` the restarts [`unhealthy_restarts`]
/// chose; what `silences` cover at `now` is set apart.
pub fn drift(
    plan: &Plan,
    applicable: Plan,
    unhealthy: Vec<Action>,
    silences: &Silences,
    now: jiff::Timestamp,
) -> Drift {
    let mut reported = plan.clone();
    reported.actions.extend(unhealthy.iter().cloned());
    let mut to_heal = applicable;
    to_heal.actions.extend(unhealthy);
    let (reported, silenced) = without_silenced(&reported, silences, now);
    let (to_heal, _) = without_silenced(&to_heal, silences, now);
    Drift {
        reported,
        to_heal,
        silenced,
    }
}

/// Restarts for running containers that Docker reports unhealthy, of stacks
/// not paused, that the plan does not change already.
pub fn unhealthy_restarts(
    containers: &[LiveContainer],
    stacks: &[&Stack],
    paused: &BTreeSet<String>,
    plan: &Plan,
) -> Vec<Action> {
    containers
        .iter()
        .filter(|c| c.state.is_running() && c.state.health == Some(Health::Unhealthy))
        .filter(|c| !paused.contains(&c.stack))
        .filter_map(|c| {
            let svc = stacks
                .iter()
                .find(|s| s.name == c.stack)?
                .services
                .get(&c.service)?;
            Some((c, (svc.replicas() > 1).then_some(c.number)))
        })
        .filter(|(c, _)| {
            !plan
                .actions
                .iter()
                .any(|a| a.stack == c.stack && a.target == c.name)
        })
        .map(|(c, replica)| Action {
            action: ActionKind::Restart,
            stack: c.stack.clone(),
            service: Some(c.service.clone()),
            target: c.name.clone(),
            reasons: vec![format!(
                "unhealthy: {}",
                c.state
                    .health_log
                    .clone()
                    .unwrap_or_else(|| "health check failing".into())
            )],
            diff: None,
            replica,
        })
        .collect()
}

/// When a service's heal runs, from its counters' decision at `now` (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Now,
    /// Backing off: check again after this long (at least a second).
    After(Duration),
    /// Gave up: not until a new revision or `plimsoll heal --reset`.
    Never,
}

pub fn when(decision: Decision, now: i64) -> When {
    match decision {
        Decision::Heal => When::Now,
        Decision::Wait(t) => When::After(Duration::from_secs((t - now).max(1) as u64)),
        Decision::GaveUp => When::Never,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::health::{RunState, Status};

    fn container(stack: &str, service: &str, name: &str, health: Option<Health>) -> LiveContainer {
        LiveContainer {
            id: format!("id-{name}"),
            name: name.into(),
            stack: stack.into(),
            service: service.into(),
            number: 1,
            labels: BTreeMap::new(),
            state: RunState {
                status: Status::Running,
                exit_code: 0,
                oom_killed: false,
                health,
                health_log: Some("exit 1: down".into()),
            },
            config: Default::default(),
            anonymous_volumes: BTreeMap::new(),
        }
    }

    fn action(kind: ActionKind, stack: &str, service: Option<&str>, target: &str) -> Action {
        Action {
            action: kind,
            stack: stack.into(),
            service: service.map(str::to_string),
            target: target.into(),
            reasons: vec!["drift".into()],
            diff: None,
            replica: None,
        }
    }

    fn shop() -> crate::spec::Desired {
        let dir = tempfile::tempdir().unwrap();
        let stack = dir.path().join("stacks/shop");
        std::fs::create_dir_all(&stack).unwrap();
        std::fs::write(
            stack.join("compose.yaml"),
            "services:\n  web: {image: x}\n  db: {image: x}\n  api: {image: x, deploy: {replicas: 2}}\n",
        )
        .unwrap();
        crate::spec::load_path(dir.path())
    }

    #[test]
    fn unhealthy_running_containers_are_restarted_unless_planned_or_paused() {
        let desired = shop();
        let stacks: Vec<&Stack> = desired.stacks.iter().collect();
        let containers = [
            container("shop", "web", "shop-web-1", Some(Health::Unhealthy)),
            container("shop", "db", "shop-db-1", Some(Health::Unhealthy)),
            container("shop", "api", "shop-api-2", Some(Health::Unhealthy)),
            container("shop", "db", "shop-db-healthy", Some(Health::Healthy)),
            container("shop", "gone", "shop-gone-1", Some(Health::Unhealthy)),
        ];
        let mut stopped = containers[1].clone();
        stopped.state.status = Status::Exited;
        let plan = Plan {
            actions: vec![action(
                ActionKind::Recreate,
                "shop",
                Some("db"),
                "shop-db-1",
            )],
            ..Plan::default()
        };
        let got = unhealthy_restarts(&containers, &stacks, &BTreeSet::new(), &plan);
        let targets: Vec<(&str, Option<u32>)> =
            got.iter().map(|a| (a.target.as_str(), a.replica)).collect();
        assert_eq!(targets, [("shop-web-1", None), ("shop-api-2", Some(1))]);
        assert_eq!(got[0].action, ActionKind::Restart);
        assert_eq!(got[0].reasons, ["unhealthy: exit 1: down"]);
        let paused = BTreeSet::from(["shop".to_string()]);
        assert!(unhealthy_restarts(&containers, &stacks, &paused, &plan).is_empty());
        assert!(
            unhealthy_restarts(&[stopped], &stacks, &BTreeSet::new(), &Plan::default()).is_empty()
        );
    }

    #[test]
    fn drift_reports_everything_and_heals_services_only() {
        let plan = Plan {
            actions: vec![
                action(ActionKind::Start, "shop", Some("web"), "shop-web-1"),
                action(ActionKind::Start, "paused", Some("web"), "paused-web-1"),
            ],
            ..Plan::default()
        };
        let applicable = Plan {
            actions: vec![
                action(ActionKind::Start, "shop", Some("web"), "shop-web-1"),
                action(ActionKind::Remove, "shop", None, "shop_old"),
            ],
            ..Plan::default()
        };
        let unhealthy = vec![action(ActionKind::Restart, "shop", Some("db"), "shop-db-1")];
        let d = drift(&plan, applicable, unhealthy, &Silences::default(), now());
        assert_eq!(d.reported.actions.len(), 3, "paused drift is reported");
        assert!(d.drifted());
        let heals = d.heals();
        let heals: Vec<&str> = heals.iter().map(|a| a.target.as_str()).collect();
        assert_eq!(
            heals,
            ["shop-web-1", "shop-db-1"],
            "no orphan, no paused stack"
        );
        assert_eq!(
            d.services(),
            [
                ("shop".to_string(), "db".to_string()),
                ("shop".into(), "web".into())
            ]
        );
        let none = drift(
            &Plan::default(),
            Plan::default(),
            vec![],
            &Silences::default(),
            now(),
        );
        assert!(!none.drifted() && none.heals().is_empty());
    }

    fn now() -> jiff::Timestamp {
        "2026-01-01T10:00:00Z".parse().unwrap()
    }

    /// A silenced drift is neither reported (notified) nor healed until its silence expires.
    #[test]
    fn silenced_drift_is_not_reported_nor_healed_until_it_expires() {
        let plan = Plan {
            actions: vec![
                action(ActionKind::Start, "shop", Some("web"), "shop-web-1"),
                action(ActionKind::Start, "shop", Some("api"), "shop-api-1"),
            ],
            ..Plan::default()
        };
        let unhealthy = vec![action(
            ActionKind::Restart,
            "shop",
            Some("web"),
            "shop-web-2",
        )];
        let silences = Silences {
            silences: vec![crate::drift::Silence {
                stack: "shop".into(),
                service: "web".into(),
                fields: vec![],
                until: "2026-01-01T11:00:00Z".parse().unwrap(),
                reason: "maintenance".into(),
                by: "ops".into(),
                created: now(),
            }],
        };
        let d = drift(&plan, plan.clone(), unhealthy.clone(), &silences, now());
        let targets = |p: &Plan| {
            p.actions
                .iter()
                .map(|a| a.target.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(targets(&d.reported), ["shop-api-1"]);
        assert_eq!(targets(&d.to_heal), ["shop-api-1"]);
        assert_eq!(d.silenced.len(), 2);
        let later: jiff::Timestamp = "2026-01-01T11:00:00Z".parse().unwrap();
        let d = drift(&plan, plan.clone(), unhealthy, &silences, later);
        assert_eq!(d.reported.actions.len(), 3);
        assert_eq!(d.heals().len(), 3);
        assert!(d.silenced.is_empty());
    }

    #[test]
    fn heals_run_now_back_off_or_never() {
        assert_eq!(when(Decision::Heal, 100), When::Now);
        assert_eq!(
            when(Decision::Wait(130), 100),
            When::After(Duration::from_secs(30))
        );
        assert_eq!(
            when(Decision::Wait(100), 100),
            When::After(Duration::from_secs(1)),
            "at least a second"
        );
        assert_eq!(when(Decision::GaveUp, 100), When::Never);
    }
}
