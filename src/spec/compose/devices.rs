//! The device keys of a service: `devices`, `device_cgroup_rules`, `gpus`
//! and the device requests of `deploy.resources.reservations.devices`.

use super::{Cx, idx, join};
use crate::spec::model::*;
use crate::spec::yaml::Node;

impl Cx<'_, '_> {
    /// Loads a device key. `false` for a key of another group.
    pub(super) fn device_key(&mut self, key: &str, n: &Node, p: &str, svc: &mut Service) -> bool {
        match key {
            "device_cgroup_rules" => svc.device_cgroup_rules = self.string_list(n, p),
            "devices" => svc.devices = self.devices(n, p),
            "gpus" => svc.gpus = self.gpus(n, p),
            _ => return false,
        }
        true
    }

    /// `devices`: `HOST[:CONTAINER[:PERMISSIONS]]` or the long form.
    fn devices(&mut self, node: &Node, path: &str) -> Vec<Device> {
        self.long_or_short(
            node,
            path,
            "a list of devices",
            |this, item, p| {
                let d = this.long_device(item, p)?;
                this.checked_device(item, p, d)
            },
            |this, item, p, s| {
                let parts: Vec<&str> = s.split(':').collect();
                let (source, target, permissions) = match parts.as_slice() {
                    [src] => (*src, *src, "rwm"),
                    [src, dst] => (*src, *dst, "rwm"),
                    [src, dst, perm] => (*src, *dst, *perm),
                    _ => {
                        this.err(item.mark, p, format!("invalid device `{s}`: too many `:`"))
                            .hint("write HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]], e.g. /dev/fuse or /dev/sda:/dev/xvda:rwm, or use the long form");
                        return None;
                    }
                };
                let d = Device {
                    source: source.to_string(),
                    target: target.to_string(),
                    permissions: Some(permissions.to_string()),
                };
                this.checked_device(item, p, d)
            },
        )
    }

    /// `gpus`: `all`, or a list of device requests (`capabilities` optional,
    /// `gpu` is implied).
    fn gpus(&mut self, node: &Node, path: &str) -> Vec<DeviceRequest> {
        if let Some(s) = node.as_str() {
            if s == "all" {
                return vec![DeviceRequest {
                    count: Some(-1),
                    ..DeviceRequest::default()
                }];
            }
            self.err(node.mark, path, format!("invalid gpus `{s}`"))
                .hint("write `gpus: all`, or a list of requests such as `- driver: nvidia` with `count:` or `device_ids:`");
            return Vec::new();
        }
        let items = self.seq(node, path, "`all` or a list of device requests");
        (0..items.len())
            .filter_map(|i| self.device_request(&items[i], &idx(path, i), false))
            .collect()
    }

    /// One device request. `count` is a number or `all` (-1); without
    /// `count` and `device_ids` it is all of them, as in Compose. Entries of
    /// `reservations.devices` must name their `capabilities`.
    pub(super) fn device_request(
        &mut self,
        node: &Node,
        path: &str,
        needs_capabilities: bool,
    ) -> Option<DeviceRequest> {
        let keys = ["capabilities", "driver", "count", "device_ids", "options"];
        if node.as_map().is_none() {
            self.type_err(
                node,
                path,
                "a mapping with `driver`, `count`, `device_ids`, `capabilities`",
            );
            return None;
        }
        let (fields, _) = self.fields(node, path, &keys, &[]);
        let mut r = DeviceRequest::default();
        let mut count_mark = None;
        for (f, n, _) in fields {
            let fp = join(path, f);
            match f {
                "capabilities" => r.capabilities = self.string_list(n, &fp),
                "driver" => r.driver = self.opt_string(n, &fp),
                "count" => {
                    count_mark = Some(n.mark);
                    r.count = if n.as_str() == Some("all") {
                        Some(-1)
                    } else {
                        match self.int(n, &fp) {
                            Some(c) if c >= -1 => Some(c),
                            Some(c) => {
                                self.err(n.mark, &fp, format!("invalid count `{c}`"))
                                    .hint("write a number of devices, or `all`");
                                None
                            }
                            None => None,
                        }
                    }
                }
                "device_ids" => r.device_ids = self.string_list(n, &fp),
                "options" => r.options = self.string_map(n, &fp),
                _ => unreachable!(),
            }
        }
        if let Some(mark) = count_mark.filter(|_| r.count.is_some() && !r.device_ids.is_empty()) {
            self.err(
                mark,
                &join(path, "count"),
                "`count` and `device_ids` are both set",
            )
            .hint("give either how many devices (`count`) or which ones (`device_ids`)");
            return None;
        }
        if needs_capabilities && r.capabilities.is_empty() {
            self.err(node.mark, path, "a device reservation needs `capabilities`")
                .hint("name what the devices must offer, e.g. `capabilities: [gpu]`");
            return None;
        }
        if r.count.is_none() && r.device_ids.is_empty() {
            r.count = Some(-1);
        }
        Some(r)
    }

    fn long_device(&mut self, node: &Node, path: &str) -> Option<Device> {
        let (fields, _) = self.fields(node, path, &["source", "target", "permissions"], &[]);
        let mut d = Device {
            source: String::new(),
            target: String::new(),
            permissions: None,
        };
        for (f, n, _) in fields {
            let fp = join(path, f);
            match f {
                "source" => d.source = self.string(n, &fp).unwrap_or_default(),
                "target" => d.target = self.string(n, &fp).unwrap_or_default(),
                "permissions" => d.permissions = self.opt_string(n, &fp),
                _ => unreachable!(),
            }
        }
        if d.source.is_empty() || d.target.is_empty() {
            self.err(
                node.mark,
                path,
                "a device in long form needs `source:` and `target:`",
            )
            .hint("write the host device as `source:` and its path in the container as `target:`");
            return None;
        }
        Some(d)
    }

    /// `device` if its container path is absolute and its permissions valid.
    fn checked_device(&mut self, node: &Node, path: &str, device: Device) -> Option<Device> {
        if !device.target.starts_with('/') {
            self.err(
                node.mark,
                path,
                format!(
                    "the container path `{}` of a device must be absolute",
                    device.target
                ),
            )
            .hint("write HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]], e.g. /dev/sda:/dev/xvda:rwm");
            return None;
        }
        if let Some(perm) = &device.permissions
            && (perm.is_empty() || !perm.chars().all(|c| matches!(c, 'r' | 'w' | 'm')))
        {
            self.err(
                node.mark,
                path,
                format!("invalid device permissions `{perm}`"),
            )
            .hint("use some of r (read), w (write) and m (mknod), e.g. rwm or r");
            return None;
        }
        Some(device)
    }
}
