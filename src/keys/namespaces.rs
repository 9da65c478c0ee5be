//! Namespaces and isolation: network mode, IPC, PID, UTS, user and cgroup
//! namespaces, cgroup parent, runtime. A namespace may be another
//! service's (`service:NAME`), which the engine takes as its container.

use std::collections::BTreeMap;

use super::{ContainerConfig, Create, Desire, Fields, Group, Inspect, Request};

pub struct Namespaces;

impl Group for Namespaces {
    fn desired(&self, cx: &Desire<'_>, c: &mut ContainerConfig) {
        let svc = cx.svc;
        let container_ref = |mode: &str| match mode.strip_prefix("service:") {
            Some(name) => format!("container:{}", cx.container_of(name)),
            None => mode.to_string(),
        };
        c.network_mode = svc.network_mode.as_deref().map(container_ref);
        c.ipc = svc.ipc.as_deref().map(container_ref);
        c.pid = svc.pid.as_deref().map(container_ref);
        c.uts = svc.uts.clone();
        c.userns = svc.userns_mode.clone();
        c.cgroupns = svc.cgroup.clone();
        c.cgroup_parent = svc.cgroup_parent.clone();
        c.runtime = svc.runtime.clone();
    }

    fn create(&self, cx: &Create<'_>, r: &mut Request) {
        let (c, h) = (cx.config, &mut r.host);
        if let Some(mode) = &c.network_mode {
            h.network_mode = Some(mode.clone());
        }
        h.ipc_mode = c.ipc.clone();
        h.pid_mode = c.pid.clone();
        h.uts_mode = c.uts.clone();
        h.userns_mode = c.userns.clone();
        h.cgroupns_mode = c.cgroupns.as_deref().and_then(|m| m.parse().ok());
        h.cgroup_parent = c.cgroup_parent.clone();
        h.runtime = c.runtime.clone();
    }

    fn read(&self, i: &Inspect<'_>, c: &mut ContainerConfig) {
        let h = i.host;
        c.network_mode = h
            .network_mode
            .clone()
            .filter(|m| is_special_network_mode(m));
        c.ipc = super::nonempty(&h.ipc_mode);
        c.pid = super::nonempty(&h.pid_mode);
        c.uts = super::nonempty(&h.uts_mode);
        c.userns = super::nonempty(&h.userns_mode);
        c.cgroupns = h
            .cgroupns_mode
            .map(|m| m.to_string())
            .filter(|m| !m.is_empty());
        c.cgroup_parent = super::nonempty(&h.cgroup_parent);
        c.runtime = super::nonempty(&h.runtime);
    }

    fn fields(&self, c: &ContainerConfig, f: &mut Fields<'_>) {
        f.opt("network mode", &c.network_mode);
        f.opt("ipc", &c.ipc);
        f.opt("pid", &c.pid);
        f.opt("uts", &c.uts);
        f.opt("userns mode", &c.userns);
        f.opt("cgroup", &c.cgroupns);
        f.opt("cgroup parent", &c.cgroup_parent);
        f.opt("runtime", &c.runtime);
    }

    /// What the engine picks when git does not say (and `docker update`
    /// cannot change) is not compared.
    fn align(&self, live: &mut ContainerConfig, desired: &ContainerConfig) {
        if desired.ipc.is_none()
            && matches!(live.ipc.as_deref(), Some("private" | "shareable" | ""))
        {
            live.ipc = None;
        }
        if desired.cgroupns.is_none() {
            live.cgroupns = None;
        }
        if desired.runtime.is_none() {
            live.runtime = None;
        }
    }
}

/// A `NetworkMode` that is a mode rather than the name of a network.
pub fn is_special_network_mode(mode: &str) -> bool {
    matches!(mode, "host" | "none" | "bridge" | "default") || mode.starts_with("container:")
}

/// Turns `container:<id>` namespaces into `container:<name>`, as the desired
/// side names them (the engine stores the ID of the container it joined).
pub fn refs_to_names(config: &mut ContainerConfig, names: &BTreeMap<String, String>) {
    for mode in [&mut config.network_mode, &mut config.ipc, &mut config.pid] {
        if let Some(m) = mode
            && let Some(id) = m.strip_prefix("container:")
            && let Some(name) = names.get(id)
        {
            *m = format!("container:{name}");
        }
    }
}
