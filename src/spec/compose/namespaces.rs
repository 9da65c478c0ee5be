//! The namespace keys of a service: `network_mode`, `ipc`, `pid`, `uts`,
//! `cgroup`, `userns_mode`, and `cgroup_parent` and `runtime` (as the
//! engine's `namespaces` group has them). What cannot go with a
//! `network_mode` is checked in `networking`.

use super::Cx;
use crate::spec::model::*;
use crate::spec::yaml::Node;

impl Cx<'_, '_> {
    /// Loads a namespace key. `false` for a key of another group.
    pub(super) fn namespace_key(
        &mut self,
        key: &str,
        n: &Node,
        p: &str,
        svc: &mut Service,
    ) -> bool {
        match key {
            "cgroup" => svc.cgroup = self.namespace(n, p, &["host", "private"], false),
            "cgroup_parent" => svc.cgroup_parent = self.opt_string(n, p),
            "ipc" => {
                let modes = ["private", "shareable", "host", "none"];
                svc.ipc = self.namespace(n, p, &modes, true);
            }
            "network_mode" => {
                let modes = ["host", "none", "bridge", "default"];
                svc.network_mode = self.namespace(n, p, &modes, true);
            }
            "pid" => svc.pid = self.namespace(n, p, &["host"], true),
            "runtime" => svc.runtime = self.opt_string(n, p),
            "userns_mode" => svc.userns_mode = self.namespace(n, p, &["host"], false),
            "uts" => svc.uts = self.namespace(n, p, &["host"], false),
            _ => return false,
        }
        true
    }

    /// A namespace mode (`ipc`, `pid`, `uts`, `cgroup`, `userns_mode`,
    /// `network_mode`): one of `modes`, or with `refs` also `service:NAME`
    /// and `container:NAME`.
    pub(super) fn namespace(
        &mut self,
        node: &Node,
        key: &str,
        modes: &[&str],
        refs: bool,
    ) -> Option<String> {
        let v = self.opt_string(node, key)?;
        let reference = ["service:", "container:"]
            .iter()
            .any(|p| v.strip_prefix(p).is_some_and(|name| !name.is_empty()));
        if modes.contains(&v.as_str()) || refs && reference {
            return Some(v);
        }
        let mut allowed: Vec<String> = modes.iter().map(|m| format!("`{m}`")).collect();
        if refs {
            allowed.push("`service:NAME`".into());
            allowed.push("`container:NAME`".into());
        }
        let name = key.rsplit('.').next().unwrap_or(key);
        let hint = if name == "network_mode" {
            format!(
                "use {}; to join a network, list it under `networks:` instead",
                allowed.join(", ")
            )
        } else {
            format!("use {}", allowed.join(", "))
        };
        self.err(node.mark, key, format!("invalid {name} `{v}`"))
            .hint(hint);
        None
    }
}
