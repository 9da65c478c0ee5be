//! One service of a wave: its dependencies' gates, then its actions in order.

use std::collections::BTreeSet;

use super::{Ctx, ServiceFailure, engine_msg, fault_point, gate_timeout, replica_number};
use crate::events::Outcome;
use crate::graph::StackGraph;
use crate::plan::{Action, ActionKind};
use crate::spec::model::Stack;

impl Ctx<'_> {
    /// Runs a service's actions; when they fail, the containers the service
    /// keeps (rolled back, or not reached) are connected again to the
    /// networks recreated under them, so it is not left cut off.
    pub(super) async fn run_service(
        &self,
        stack: &Stack,
        graph: &StackGraph,
        service: &str,
        actions: &[&Action],
        failed: &BTreeSet<String>,
    ) -> Result<(), ServiceFailure> {
        let mut r = self
            .run_actions(stack, graph, service, actions, failed)
            .await;
        if let Err(f) = &mut r
            && let Err(e) = self.reattach(stack, service).await
        {
            f.message = format!("{}\n    {e}", f.message);
        }
        r
    }

    pub(super) async fn run_actions(
        &self,
        stack: &Stack,
        graph: &StackGraph,
        service: &str,
        actions: &[&Action],
        failed: &BTreeSet<String>,
    ) -> Result<(), ServiceFailure> {
        let subject = Self::subject(stack, service);
        if self.cancel.is_cancelled() {
            let m = "not changed: interrupted".to_string();
            self.progress.step(&subject, &m, Outcome::Failed);
            return Err(m.into());
        }
        for (dep, condition) in graph.dependencies(service) {
            if failed.contains(&dep) {
                let m = format!("not changed: dependency {dep} failed");
                self.progress.step(&subject, &m, Outcome::Failed);
                return Err(m.into());
            }
            let dep_svc = &stack.services[&dep];
            let has_health = self.has_health(stack, &dep);
            self.progress
                .step(&subject, &format!("waiting for {dep}"), Outcome::Working);
            // Every replica of the dependency meets the condition.
            for n in 1..=dep_svc.replicas() {
                let dep_name = crate::diff::replica_name(stack, &dep, dep_svc, n);
                if let Err(e) = self
                    .gate(
                        &subject,
                        &dep_name,
                        condition,
                        gate_timeout(stack, &dep),
                        has_health,
                    )
                    .await
                {
                    let m = format!("not changed: dependency {dep}: {e}");
                    self.progress.step(&subject, &m, Outcome::Failed);
                    return Err(m.into());
                }
            }
        }
        // One container at a time: a replica whose replacement fails is
        // rolled back and the replicas after it are not touched.
        for a in actions {
            let r = match a.action {
                ActionKind::Create => {
                    let number = replica_number(stack, service, &a.target);
                    match self.create_and_start(stack, service, number, None).await {
                        Ok(id) => self.post_start(stack, service, number, &id).await,
                        Err(e) => Err(e),
                    }
                    .map_err(ServiceFailure::from)
                }
                ActionKind::Recreate => self.recreate(stack, service, &a.target).await,
                ActionKind::Start => {
                    self.progress.step(&subject, "starting", Outcome::Working);
                    let number = replica_number(stack, service, &a.target);
                    match self.engine.docker.start_container(&a.target, None).await {
                        Ok(()) => self.post_start(stack, service, number, &a.target).await,
                        Err(e) => Err(engine_msg(e)),
                    }
                    .map_err(ServiceFailure::from)
                }
                ActionKind::Restart => {
                    self.progress.step(&subject, "restarting", Outcome::Working);
                    let number = replica_number(stack, service, &a.target);
                    match self.engine.docker.restart_container(&a.target, None).await {
                        Ok(()) => self.post_start(stack, service, number, &a.target).await,
                        Err(e) => Err(engine_msg(e)),
                    }
                    .map_err(ServiceFailure::from)
                }
                ActionKind::Remove => {
                    self.progress.step(
                        &subject,
                        &format!("removing {}", a.target),
                        Outcome::Working,
                    );
                    self.stop_and_remove(stack, service, &a.target)
                        .await
                        .map_err(ServiceFailure::from)
                }
                _ => Ok(()),
            };
            fault_point();
            if let Err(f) = r {
                self.progress.step(&subject, &f.message, Outcome::Failed);
                return Err(f);
            }
        }
        self.progress.step(&subject, "done", Outcome::Done);
        Ok(())
    }
}
