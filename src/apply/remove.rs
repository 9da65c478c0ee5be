//! Removing containers, networks and volumes (prune, scale-down): only plimsoll's own.

use bollard::query_parameters::{RemoveContainerOptionsBuilder, StopContainerOptionsBuilder};

use super::{Ctx, engine_msg, replica_number, stop_timeout};
use crate::events::Outcome;
use crate::names::labels;
use crate::plan::{Action, ActionKind};
use crate::spec::model::Stack;

impl Ctx<'_> {
    /// One prune step: a container (stopped gracefully first), a network or a volume.
    pub(super) async fn prune(&self, a: &Action) -> Result<(), String> {
        let subject = format!("{}/{}", a.stack, a.target);
        let why = a
            .reasons
            .first()
            .map_or("no longer declared in git", String::as_str);
        self.progress
            .step(&subject, &format!("removing ({why})"), Outcome::Working);
        let r = match a.action {
            ActionKind::Remove => {
                let opts = StopContainerOptionsBuilder::default().t(10).build();
                let _ = self
                    .engine
                    .docker
                    .stop_container(&a.target, Some(opts))
                    .await;
                self.remove_managed(&a.stack, &a.target).await
            }
            ActionKind::RemoveNetwork => {
                let n = self
                    .engine
                    .docker
                    .inspect_network(&a.target, None)
                    .await
                    .map_err(engine_msg)?;
                if n.labels.unwrap_or_default().get(labels::STACK) != Some(&a.stack) {
                    return Err(format!(
                        "refusing to remove network {}: it does not carry plimsoll's labels for stack {}",
                        a.target, a.stack
                    ));
                }
                self.engine
                    .docker
                    .remove_network(&a.target)
                    .await
                    .map_err(engine_msg)
            }
            ActionKind::RemoveVolume => {
                let v = self
                    .engine
                    .docker
                    .inspect_volume(&a.target)
                    .await
                    .map_err(engine_msg)?;
                if v.labels.get(labels::STACK) != Some(&a.stack) {
                    return Err(format!(
                        "refusing to remove volume {}: it does not carry plimsoll's labels for stack {}",
                        a.target, a.stack
                    ));
                }
                self.engine
                    .docker
                    .remove_volume(
                        &a.target,
                        None::<bollard::query_parameters::RemoveVolumeOptions>,
                    )
                    .await
                    .map_err(engine_msg)
            }
            _ => Ok(()),
        };
        match &r {
            Ok(()) => self.progress.step(&subject, "removed", Outcome::Done),
            Err(e) => self.progress.step(&subject, e, Outcome::Failed),
        }
        r
    }

    /// Stops a container of a declared service (its stop grace period, as
    /// for a replacement), then removes it: a replica scaled away, or an extra copy.
    pub(super) async fn stop_and_remove(
        &self,
        stack: &Stack,
        service: &str,
        name: &str,
    ) -> Result<(), String> {
        let subject = Self::replica_subject(stack, service, replica_number(stack, service, name));
        let running = self
            .live
            .containers
            .iter()
            .any(|c| c.name == name && c.state.is_running());
        self.pre_stop(stack, service, &subject, name, running).await;
        let opts = StopContainerOptionsBuilder::default()
            .t(stop_timeout(stack, service))
            .build();
        // A container that is already stopped (304) or gone is removed below or reported there.
        let _ = self.engine.docker.stop_container(name, Some(opts)).await;
        self.remove_managed(&stack.name, name).await
    }

    /// Removes a container after re-reading its labels: only plimsoll's own.
    pub(super) async fn remove_managed(&self, stack: &str, name: &str) -> Result<(), String> {
        let c = self
            .engine
            .docker
            .inspect_container(name, None)
            .await
            .map_err(engine_msg)?;
        let owner = c
            .config
            .and_then(|c| c.labels)
            .and_then(|l| l.get(labels::STACK).cloned());
        if owner.as_deref() != Some(stack) {
            return Err(format!(
                "refusing to remove {name}: it does not carry plimsoll's labels for stack {stack}"
            ));
        }
        let opts = RemoveContainerOptionsBuilder::default().force(true).build();
        self.engine
            .docker
            .remove_container(name, Some(opts))
            .await
            .map_err(engine_msg)
    }
}
