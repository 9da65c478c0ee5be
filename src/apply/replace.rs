//! Replacing a container behind its gate, keeping the old one for a rollback.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bollard::models::{EndpointSettings, NetworkConnectRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, RenameContainerOptionsBuilder,
    StopContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};

use super::{
    Ctx, ServiceError, StepError, create_body, fault_point, gate_timeout, inspect_if_there,
    replica_number, stop_timeout,
};
use crate::events::Outcome;
use crate::live::LiveContainer;
use crate::names::OLD_SUFFIX;
use crate::plan::{desired_container, hashed_contents};
use crate::spec::model::{Condition, Stack};

impl Ctx<'_> {
    /// Connects the containers of a service that are still there to the
    /// networks recreated under them, with the aliases they had; those
    /// already connected (replacements) are left as they are.
    pub(super) async fn reattach(&self, stack: &Stack, service: &str) -> Result<(), StepError> {
        let docker = &self.engine.docker;
        for old in self
            .live
            .containers
            .iter()
            .filter(|c| c.stack == stack.name && c.service == service)
        {
            let lost: Vec<(&String, &BTreeSet<String>)> = old
                .config
                .networks
                .iter()
                .filter(|(n, _)| self.renewed.contains(*n))
                .collect();
            if lost.is_empty() {
                continue;
            }
            // Gone: replaced, and its successor is on the new network.
            let Some(now) = inspect_if_there(docker, &old.id).await? else {
                continue;
            };
            let connected = now
                .network_settings
                .and_then(|n| n.networks)
                .unwrap_or_default();
            for (net, aliases) in lost
                .into_iter()
                .filter(|(n, _)| !connected.contains_key(*n))
            {
                let req = NetworkConnectRequest {
                    container: old.id.clone(),
                    endpoint_config: Some(EndpointSettings {
                        aliases: Some(aliases.iter().cloned().collect()),
                        links: (!old.config.links.is_empty())
                            .then(|| old.config.links.iter().cloned().collect()),
                        ..Default::default()
                    }),
                };
                docker
                    .connect_network(net, req)
                    .await
                    .map_err(|source| StepError::Reattach {
                        container: old.name.trim_end_matches(OLD_SUFFIX).to_string(),
                        network: net.clone(),
                        source,
                    })?;
                fault_point();
            }
        }
        Ok(())
    }

    /// A container `docker compose` made for this stack and service under the
    /// name plimsoll needs: it is replaced like one of plimsoll's own.
    pub(super) async fn adoptable(
        &self,
        stack: &Stack,
        service: &str,
        name: &str,
    ) -> Result<Option<LiveContainer>, StepError> {
        let Some(f) = self.live.foreign.iter().find(|f| f.name == name) else {
            return Ok(None);
        };
        if f.compose_project.as_deref() != Some(stack.name.as_str())
            || f.compose_service.as_deref() != Some(service)
        {
            return Ok(None);
        }
        let c = self.engine.docker.inspect_container(&f.id, None).await?;
        Ok(Some(crate::live::normalize(&c, &Default::default())))
    }

    /// Creates replica `number` of the service under its name and starts it.
    /// `carry` holds anonymous volumes of an old container to reuse, by target.
    pub(super) async fn create_and_start(
        &self,
        stack: &Stack,
        service: &str,
        number: u32,
        carry: Option<&BTreeMap<String, String>>,
    ) -> Result<String, StepError> {
        let subject = Self::replica_subject(stack, service, number);
        let mounted = self
            .mounts
            .get(&(stack.name.clone(), service.to_string()))
            .and_then(|r| r.as_ref().ok())
            .cloned()
            .unwrap_or_default();
        // Created from the paths of the checkout at hand (not re-rooted).
        let want = desired_container(
            stack,
            service,
            number,
            self.live,
            &hashed_contents(stack, service),
            &mounted,
            None,
        )
        .map_err(StepError::Desired)?;
        let name = want.config.name.clone();
        self.progress.step(&subject, "creating", Outcome::Working);
        let (body, extra_networks) = create_body(
            stack,
            service,
            &want.config,
            carry.unwrap_or(&BTreeMap::new()),
        );
        if want.config.mac_address.is_some() {
            let v = self.engine.docker.client_version();
            if (v.major_version, v.minor_version) < (1, 44) {
                return Err(StepError::MacAddress {
                    major: v.major_version,
                    minor: v.minor_version,
                });
            }
        }
        let mut opts = CreateContainerOptionsBuilder::default().name(&name);
        if let Some(platform) = &want.config.platform {
            opts = opts.platform(platform);
        }
        let opts = opts.build();
        let created = self
            .engine
            .docker
            .create_container(Some(opts), body)
            .await?;
        fault_point();
        for (net, endpoint) in extra_networks {
            let req = NetworkConnectRequest {
                container: created.id.clone(),
                endpoint_config: Some(endpoint),
            };
            self.engine
                .docker
                .connect_network(&net, req)
                .await
                .map_err(StepError::doing(format!("connecting to network {net}")))?;
            fault_point();
        }
        self.copy_contents(stack, service, &created.id).await?;
        self.progress.step(&subject, "starting", Outcome::Working);
        self.engine
            .docker
            .start_container(&created.id, None)
            .await?;
        fault_point();
        Ok(created.id)
    }

    /// Copies secrets and configs whose content comes from a variable or inline.
    pub(super) async fn copy_contents(
        &self,
        stack: &Stack,
        service: &str,
        id: &str,
    ) -> Result<(), StepError> {
        let svc = &stack.services[service];
        let mut files: Vec<(String, Vec<u8>, u32)> = Vec::new();
        for (refs, objects, dir, default_mode) in [
            (&svc.secrets, &stack.secrets, "/run/secrets/", 0o444),
            (&svc.configs, &stack.configs, "/", 0o444),
        ] {
            for r in refs {
                let Some(o) = objects.get(&r.source) else {
                    continue;
                };
                let content = match (&o.environment, &o.content) {
                    (Some(var), _) => stack.source.variables.get(var).cloned().unwrap_or_default(),
                    (None, Some(c)) => c.clone(),
                    _ => continue,
                };
                let target = r
                    .target
                    .clone()
                    .unwrap_or_else(|| format!("{dir}{}", r.source));
                let target = if target.starts_with('/') {
                    target
                } else {
                    format!("{dir}{target}")
                };
                files.push((target, content.into_bytes(), r.mode.unwrap_or(default_mode)));
            }
        }
        if files.is_empty() {
            return Ok(());
        }
        let mut tar = tar::Builder::new(Vec::new());
        for (path, data, mode) in &files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(*mode);
            header.set_cksum();
            tar.append_data(&mut header, path.trim_start_matches('/'), data.as_slice())
                .map_err(StepError::Pack)?;
        }
        let bytes = tar.into_inner().map_err(StepError::Pack)?;
        let opts = UploadToContainerOptionsBuilder::default().path("/").build();
        self.engine
            .docker
            .upload_to_container(id, Some(opts), bollard::body_full(bytes.into()))
            .await
            .map_err(StepError::doing("copying secrets into the container"))
    }

    /// Replaces the container `name` of a service (one replica), keeping the
    /// old one until the new one passes its gate.
    pub(super) async fn recreate(
        &self,
        stack: &Stack,
        service: &str,
        name: &str,
    ) -> Result<(), ServiceError> {
        let svc = &stack.services[service];
        let number = replica_number(stack, service, name);
        let subject = Self::replica_subject(stack, service, number);
        let name = name.to_string();
        let mine = || {
            self.live
                .containers
                .iter()
                .filter(|c| c.stack == stack.name && c.service == service)
        };
        let old = match mine()
            .find(|c| c.name == name)
            .or_else(|| mine().find(|c| c.number == number))
            .or_else(|| mine().find(|_| svc.replicas() == 1))
        {
            Some(c) => Some(c.clone()),
            None => self.adoptable(stack, service, &name).await?,
        };
        let Some(old) = old else {
            let id = self.create_and_start(stack, service, number, None).await?;
            return Ok(self.post_start(stack, service, number, &id).await?);
        };
        let docker = &self.engine.docker;
        let old_was_running = old.state.is_running() || old.name.ends_with(OLD_SUFFIX);
        let parked = format!("{name}{OLD_SUFFIX}");
        self.pre_stop(stack, service, &subject, &old.id, old.state.is_running())
            .await;
        self.progress
            .step(&subject, "stopping the old container", Outcome::Working);
        let opts = StopContainerOptionsBuilder::default()
            .t(stop_timeout(stack, service))
            .build();
        match docker.stop_container(&old.id, Some(opts)).await {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => {}
            Err(e) => return Err(StepError::Engine(e).into()),
        }
        fault_point();
        if old.name != parked {
            let rename = RenameContainerOptionsBuilder::default()
                .name(&parked)
                .build();
            docker
                .rename_container(&old.id, rename)
                .await
                .map_err(StepError::Engine)?;
            fault_point();
        }

        let carry = old.anonymous_volumes.clone();
        let attempt = async {
            let id = self
                .create_and_start(stack, service, number, Some(&carry))
                .await?;
            let hooks = &svc.post_start;
            self.run_hooks(stack, service, &subject, "post_start", hooks, &id)
                .await?;
            let has_health = self.has_health(stack, service);
            let condition = if has_health {
                Condition::ServiceHealthy
            } else {
                Condition::ServiceStarted
            };
            if let Err(why) = self
                .gate(
                    &subject,
                    &id,
                    condition,
                    gate_timeout(stack, service),
                    has_health,
                )
                .await
            {
                let logs = self.last_logs(&id).await;
                return Err(StepError::Gate {
                    container: id,
                    why: Box::new(why),
                    logs,
                });
            }
            Ok(id)
        };
        match attempt.await {
            Ok(_) => {
                let opts = RemoveContainerOptionsBuilder::default().force(true).build();
                docker
                    .remove_container(&old.id, Some(opts))
                    .await
                    .map_err(StepError::Engine)?;
                fault_point();
                Ok(())
            }
            Err(why) => {
                self.progress.step(
                    &subject,
                    "new container failed: rolling back",
                    Outcome::Working,
                );
                match restore(docker, &name, &old.id, old_was_running).await {
                    Ok(()) => Err(ServiceError::RolledBack {
                        container: name,
                        failure: Box::new(why),
                    }),
                    Err(source) => Err(ServiceError::RollbackFailed {
                        failure: Box::new(why),
                        source: Box::new(source),
                    }),
                }
            }
        }
    }
}

/// Puts a kept old container back: removes whatever holds `name` now,
/// renames the old one back and starts it again.
pub(super) async fn restore(
    docker: &bollard::Docker,
    name: &str,
    old_id: &str,
    start: bool,
) -> Result<(), StepError> {
    // A create that a killed run had in flight can still finish in the daemon
    // after the remove; then the name is taken again: remove and retry.
    for attempt in 0..3 {
        let opts = RemoveContainerOptionsBuilder::default().force(true).build();
        match docker.remove_container(name, Some(opts)).await {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(StepError::doing("removing the new container")(e)),
        }
        fault_point();
        let rename = RenameContainerOptionsBuilder::default().name(name).build();
        match docker.rename_container(old_id, rename).await {
            Ok(()) => break,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) if attempt < 2 => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(StepError::Engine(e)),
        }
    }
    fault_point();
    if start {
        docker.start_container(old_id, None).await?;
        fault_point();
    }
    Ok(())
}
