//! Networks, volumes and images: what the services need, set up before the waves.

use std::collections::{BTreeSet, HashMap};

use bollard::models::{
    Ipam, IpamConfig, NetworkCreateRequest, NetworkDisconnectRequest, VolumeCreateRequest,
};
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;

use super::{Ctx, engine_msg, fault_point, inspect_if_there};
use crate::events::{Outcome, Progress};
use crate::live::Engine;
use crate::names::labels;
use crate::spec::model::Stack;

impl Ctx<'_> {
    pub(super) async fn create_network(&self, stack: &Stack, name: &str) -> Result<(), String> {
        let Some((key, net)) = stack.networks.iter().find(|(_, n)| n.name == name) else {
            return Err(format!("network {name} is not declared"));
        };
        let subject = Self::subject(stack, &format!("network {name}"));
        self.progress.step(&subject, "creating", Outcome::Working);
        let mut l: HashMap<String, String> = net.labels.clone().into_iter().collect();
        l.insert(labels::STACK.into(), stack.name.clone());
        if let Some(repo) = &stack.source.repository {
            l.insert(labels::REPOSITORY.into(), repo.clone());
        }
        l.insert(labels::NETWORK.into(), key.clone());
        l.insert(labels::COMPOSE_PROJECT.into(), stack.name.clone());
        l.insert(labels::COMPOSE_NETWORK.into(), key.clone());
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: net.driver.clone(),
            internal: Some(net.internal),
            attachable: net.attachable.then_some(true),
            enable_ipv6: net.enable_ipv6,
            ipam: net.ipam.as_ref().map(|i| Ipam {
                driver: i.driver.clone(),
                config: Some(
                    i.config
                        .iter()
                        .map(|p| IpamConfig {
                            subnet: p.subnet.clone(),
                            ip_range: p.ip_range.clone(),
                            gateway: p.gateway.clone(),
                            auxiliary_addresses: (!p.aux_addresses.is_empty())
                                .then(|| p.aux_addresses.clone().into_iter().collect()),
                        })
                        .collect(),
                ),
                options: (!i.options.is_empty()).then(|| i.options.clone().into_iter().collect()),
            }),
            options: Some(net.driver_opts.clone().into_iter().collect()),
            labels: Some(l),
            ..Default::default()
        };
        match self.engine.docker.create_network(req).await {
            Ok(_) => {
                self.progress.step(&subject, "created", Outcome::Done);
                Ok(())
            }
            Err(e) => {
                let m = engine_msg(e);
                self.progress.step(&subject, &m, Outcome::Failed);
                Err(m)
            }
        }
    }

    /// Recreates a network whose settings changed in git (the engine cannot
    /// change them in place, nor remove a network with endpoints): every
    /// container attached is disconnected (only plimsoll's; labels re-read),
    /// the network removed and created as git says. The attached services
    /// are recreated in their waves; until then they are off this network.
    pub(super) async fn recreate_network(&self, stack: &Stack, name: &str) -> Result<(), String> {
        let subject = Self::subject(stack, &format!("network {name}"));
        let docker = &self.engine.docker;
        let net = docker
            .inspect_network(name, None)
            .await
            .map_err(engine_msg)?;
        if net.labels.unwrap_or_default().get(labels::STACK) != Some(&stack.name) {
            return Err(format!(
                "refusing to recreate network {name}: it does not carry plimsoll's labels for stack {}",
                stack.name
            ));
        }
        // Running containers have endpoints; stopped ones only name the
        // network in their settings, as the snapshot saw them.
        let mut attached: BTreeSet<String> = net
            .containers
            .unwrap_or_default()
            .into_values()
            .filter_map(|c| c.name)
            .collect();
        if let Some(seen) = self.live.networks.get(name) {
            attached.extend(seen.attached.iter().cloned());
        }
        self.progress.step(
            &subject,
            &format!(
                "recreating: disconnecting {} container{}",
                attached.len(),
                if attached.len() == 1 { "" } else { "s" }
            ),
            Outcome::Working,
        );
        for container in &attached {
            let Some(c) = inspect_if_there(docker, container).await? else {
                continue;
            };
            let ours = c
                .config
                .and_then(|c| c.labels)
                .is_some_and(|l| l.contains_key(labels::STACK));
            if !ours {
                return Err(format!(
                    "refusing to recreate network {name}: {container} is attached and was not created by plimsoll; disconnect it (docker network disconnect {name} {container})"
                ));
            }
            let connected = c
                .network_settings
                .and_then(|n| n.networks)
                .is_some_and(|n| n.contains_key(name));
            if !connected {
                continue;
            }
            let req = NetworkDisconnectRequest {
                container: container.clone(),
                force: Some(true),
            };
            docker
                .disconnect_network(name, req)
                .await
                .map_err(|e| format!("disconnecting {container}: {}", engine_msg(e)))?;
            fault_point();
        }
        self.progress
            .step(&subject, "recreating: removing", Outcome::Working);
        docker.remove_network(name).await.map_err(engine_msg)?;
        fault_point();
        self.create_network(stack, name).await
    }

    pub(super) async fn create_volume(&self, stack: &Stack, name: &str) -> Result<(), String> {
        let Some((key, vol)) = stack.volumes.iter().find(|(_, v)| v.name == name) else {
            return Err(format!("volume {name} is not declared"));
        };
        let subject = Self::subject(stack, &format!("volume {name}"));
        let mut l: HashMap<String, String> = vol.labels.clone().into_iter().collect();
        l.insert(labels::STACK.into(), stack.name.clone());
        if let Some(repo) = &stack.source.repository {
            l.insert(labels::REPOSITORY.into(), repo.clone());
        }
        l.insert(labels::VOLUME.into(), key.clone());
        l.insert(labels::COMPOSE_PROJECT.into(), stack.name.clone());
        l.insert(labels::COMPOSE_VOLUME.into(), key.clone());
        let req = VolumeCreateRequest {
            name: Some(name.to_string()),
            driver: vol.driver.clone(),
            driver_opts: Some(vol.driver_opts.clone().into_iter().collect()),
            labels: Some(l),
            ..Default::default()
        };
        self.engine
            .docker
            .create_volume(req)
            .await
            .map_err(engine_msg)?;
        self.progress.step(&subject, "created", Outcome::Done);
        Ok(())
    }

    pub(super) async fn pull(&self, image: &str, platform: Option<&str>) -> Result<(), String> {
        pull_for(self.engine, image, platform, self.progress).await
    }

    /// Builds a service's image; an image built earlier from the same
    /// content (kept for rollback) is tagged instead.
    pub(super) async fn build(
        &self,
        stack: &Stack,
        service: &str,
        image: &str,
    ) -> Result<(), String> {
        let Some(b) = stack.services.get(service).and_then(|s| s.build.clone()) else {
            return Err(format!("service {service} has no build section"));
        };
        let req = crate::build::Request {
            stack: stack.name.clone(),
            service: service.to_string(),
            image: image.to_string(),
            build: b,
            pinned: stack
                .source
                .pinned_builds
                .get(service)
                .and_then(|h| crate::build::BuildHash::parse(h)),
        };
        crate::build::build(self.engine, &req, &self.live.built, self.progress)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Pulls an image with the docker CLI's credentials, reporting progress.
pub async fn pull(engine: &Engine, image: &str, progress: &dyn Progress) -> Result<(), String> {
    pull_for(engine, image, None, progress).await
}

/// Pulls an image for a platform (`linux/arm64`), or the engine's own.
pub async fn pull_for(
    engine: &Engine,
    image: &str,
    platform: Option<&str>,
    progress: &dyn Progress,
) -> Result<(), String> {
    let subject = format!("image {image}");
    progress.step(&subject, "pulling", Outcome::Working);
    let (from, tag) = split_tag(image);
    let mut opts = CreateImageOptionsBuilder::default()
        .from_image(from)
        .tag(tag);
    if let Some(p) = platform {
        opts = opts.platform(p);
    }
    let opts = opts.build();
    let creds = crate::registry::credentials_for(image);
    let mut stream = engine.docker.create_image(Some(opts), None, creds);
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(err) = info.error_detail.and_then(|d| d.message) {
                    progress.step(&subject, &err, Outcome::Failed);
                    return Err(err);
                }
                if let Some(status) = info.status {
                    progress.step(&subject, &format!("pulling: {status}"), Outcome::Working);
                }
            }
            Err(e) => {
                let m = engine_msg(e);
                progress.step(&subject, &m, Outcome::Failed);
                return Err(m);
            }
        }
    }
    progress.step(&subject, "pulled", Outcome::Done);
    Ok(())
}

/// `repo:tag` split for a pull; a digest reference pulls by digest.
pub(super) fn split_tag(image: &str) -> (&str, &str) {
    if let Some((repo, digest)) = image.split_once('@') {
        let _ = repo;
        return (image, if digest.is_empty() { "latest" } else { "" });
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(i) => (&image[..last_slash + i], &image[last_slash + i + 1..]),
        None => (image, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_split_for_pulls() {
        assert_eq!(split_tag("busybox"), ("busybox", "latest"));
        assert_eq!(split_tag("busybox:1.36"), ("busybox", "1.36"));
        assert_eq!(
            split_tag("localhost:5000/app"),
            ("localhost:5000/app", "latest")
        );
        assert_eq!(
            split_tag("localhost:5000/app:v1"),
            ("localhost:5000/app", "v1")
        );
        assert_eq!(split_tag("app@sha256:abc").0, "app@sha256:abc");
    }
}
