//! Devices: host devices mapped in, device cgroup rules, device requests
//! (`gpus`, `deploy.resources.reservations.devices`).

use bollard::models::{DeviceMapping, DeviceRequest as EngineRequest};

use super::{ContainerConfig, Create, Desire, Fields, Group, Inspect, Request};
use crate::spec::model::DeviceRequest;

pub struct Devices;

impl Group for Devices {
    fn desired(&self, cx: &Desire<'_>, c: &mut ContainerConfig) {
        let svc = cx.svc;
        c.devices = svc
            .devices
            .iter()
            .map(|d| {
                let perm = d.permissions.as_deref().unwrap_or("rwm");
                (d.target.clone(), format!("{} {perm}", d.source))
            })
            .collect();
        c.device_cgroup_rules = svc.device_cgroup_rules.iter().cloned().collect();
        // `gpus` asks for the `gpu` capability besides the ones it names (Compose's rule).
        c.device_requests = svc
            .gpus
            .iter()
            .map(|g| {
                let mut r = g.clone();
                if !r.capabilities.iter().any(|c| c == "gpu") {
                    r.capabilities.push("gpu".into());
                }
                r
            })
            .chain(
                svc.deploy
                    .iter()
                    .flat_map(|d| d.resources.reservations.iter())
                    .flat_map(|r| r.devices.iter().cloned()),
            )
            .collect();
    }

    fn create(&self, cx: &Create<'_>, r: &mut Request) {
        let (c, h) = (cx.config, &mut r.host);
        h.devices = (!cx.svc.devices.is_empty()).then(|| {
            cx.svc
                .devices
                .iter()
                .map(|d| DeviceMapping {
                    path_on_host: Some(d.source.clone()),
                    path_in_container: Some(d.target.clone()),
                    cgroup_permissions: Some(d.permissions.clone().unwrap_or_else(|| "rwm".into())),
                })
                .collect()
        });
        h.device_cgroup_rules = super::set(&c.device_cgroup_rules);
        h.device_requests = (!c.device_requests.is_empty()).then(|| {
            c.device_requests
                .iter()
                .map(|r| EngineRequest {
                    driver: r.driver.clone(),
                    count: r.count,
                    device_ids: (!r.device_ids.is_empty()).then(|| r.device_ids.clone()),
                    capabilities: Some(vec![r.capabilities.clone()]),
                    options: super::map(&r.options),
                })
                .collect()
        });
    }

    fn read(&self, i: &Inspect<'_>, c: &mut ContainerConfig) {
        let h = i.host;
        c.devices = h
            .devices
            .iter()
            .flatten()
            .map(|d| {
                let target = d.path_in_container.clone().unwrap_or_default();
                let source = d.path_on_host.clone().unwrap_or_default();
                let perm = d.cgroup_permissions.clone().filter(|p| !p.is_empty());
                (
                    target,
                    format!("{source} {}", perm.as_deref().unwrap_or("rwm")),
                )
            })
            .collect();
        c.device_cgroup_rules = h.device_cgroup_rules.iter().flatten().cloned().collect();
        c.device_requests = h
            .device_requests
            .iter()
            .flatten()
            .map(|r| DeviceRequest {
                capabilities: r.capabilities.iter().flatten().flatten().cloned().collect(),
                driver: r.driver.clone().filter(|d| !d.is_empty()),
                count: r.count.filter(|c| *c != 0),
                device_ids: r.device_ids.clone().unwrap_or_default(),
                options: r.options.clone().unwrap_or_default().into_iter().collect(),
            })
            .collect();
    }

    fn fields(&self, c: &ContainerConfig, f: &mut Fields<'_>) {
        f.map("device", &c.devices);
        f.each("device cgroup rule", &c.device_cgroup_rules);
        for (i, r) in c.device_requests.iter().enumerate() {
            f.put(format!("device request {}", i + 1), request_words(r));
        }
    }
}

/// A device request in words, as its field line shows it.
pub fn request_words(r: &DeviceRequest) -> String {
    let mut words = Vec::new();
    if let Some(d) = &r.driver {
        words.push(format!("driver {d}"));
    }
    match r.count {
        Some(-1) => words.push("all devices".into()),
        Some(n) => words.push(format!("{n} device{}", if n == 1 { "" } else { "s" })),
        None => {}
    }
    if !r.device_ids.is_empty() {
        words.push(format!("ids {}", r.device_ids.join(", ")));
    }
    if !r.capabilities.is_empty() {
        words.push(format!("capabilities {}", r.capabilities.join(", ")));
    }
    for (k, v) in &r.options {
        words.push(format!("option {k}={v}"));
    }
    words.join(", ")
}
