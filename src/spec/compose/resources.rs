//! The resource keys of a service: memory, CPU, pids, shm, ulimits, block
//! I/O, OOM settings, storage options and `deploy:` (`replicas` and
//! `resources`), and the conflicts between them.

use std::collections::BTreeMap;

use super::{Cx, SWARM, idx, join};
use crate::spec::model::*;
use crate::spec::yaml::{Node, Value};

impl Cx<'_, '_> {
    /// Loads a resource key. `false` for a key of another group.
    pub(super) fn resource_key(&mut self, key: &str, n: &Node, p: &str, svc: &mut Service) -> bool {
        match key {
            "blkio_config" => svc.blkio_config = self.blkio_config(n, p),
            "cpu_period" => svc.cpu_period = self.nonzero_int(n, p),
            "cpu_quota" => svc.cpu_quota = self.nonzero_int(n, p),
            "cpu_rt_period" => svc.cpu_rt_period = self.nonzero_int(n, p),
            "cpu_rt_runtime" => svc.cpu_rt_runtime = self.nonzero_int(n, p),
            "cpu_shares" => svc.cpu_shares = self.nonzero_int(n, p),
            "cpus" => svc.cpus = self.cpus(n, p).filter(|c| *c != 0.0),
            "cpuset" => svc.cpuset = self.opt_string(n, p),
            "deploy" => svc.deploy = self.deploy(n, p),
            "mem_limit" => svc.mem_limit = self.bytes(n, p),
            "mem_reservation" => svc.mem_reservation = self.bytes(n, p),
            "mem_swappiness" => svc.mem_swappiness = self.int_in(n, p, 0, 100).filter(|v| *v != 0),
            "memswap_limit" => svc.memswap_limit = self.swap_bytes(n, p),
            "oom_kill_disable" => svc.oom_kill_disable = self.boolean(n, p).unwrap_or(false),
            "oom_score_adj" => {
                svc.oom_score_adj = self.int_in(n, p, -1000, 1000).filter(|v| *v != 0);
            }
            "pids_limit" => svc.pids_limit = self.nonzero_int(n, p),
            "shm_size" => svc.shm_size = self.bytes(n, p).filter(|b| b.0 != 0),
            "storage_opt" => svc.storage_opt = self.string_map(n, p),
            "ulimits" => svc.ulimits = self.ulimits(n, p),
            _ => return false,
        }
        true
    }

    fn deploy(&mut self, node: &Node, path: &str) -> Option<Deploy> {
        let unsupported = [
            ("mode", SWARM),
            ("labels", SWARM),
            ("placement", SWARM),
            (
                "restart_policy",
                "use the service's `restart:` on a single host",
            ),
            ("rollback_config", SWARM),
            ("update_config", "use `x-plimsoll.rollout` on a single host"),
            ("endpoint_mode", SWARM),
        ];
        let (fields, _) = self.fields(node, path, &["replicas", "resources"], &unsupported);
        let mut deploy = Deploy::default();
        for (key, n, mark) in fields {
            if key == "replicas" {
                let rp = join(path, key);
                self.marks.insert(rp.clone(), mark);
                deploy.replicas = self.replicas(n, &rp);
                continue;
            }
            let rp = join(path, "resources");
            let (res, _) = self.fields(n, &rp, &["limits", "reservations"], &[]);
            for (k, set, _) in res {
                let sp = join(&rp, k);
                let unsupported: &[(&str, &str)] = &[("generic_resources", SWARM)];
                let known: &[&str] = if k == "limits" {
                    &["cpus", "memory", "pids"]
                } else {
                    &["cpus", "memory", "devices"]
                };
                let (entries, _) = self.fields(set, &sp, known, unsupported);
                let mut rs = ResourceSet::default();
                for (f, v, _) in entries {
                    let fp = join(&sp, f);
                    match f {
                        "cpus" => rs.cpus = self.cpus(v, &fp),
                        "memory" => rs.memory = self.bytes(v, &fp),
                        "pids" => rs.pids = self.int(v, &fp),
                        "devices" => {
                            let items = self.seq(v, &fp, "a list of device requests");
                            rs.devices = (0..items.len())
                                .filter_map(|i| self.device_request(&items[i], &idx(&fp, i), true))
                                .collect();
                        }
                        _ => unreachable!(),
                    }
                }
                if k == "limits" {
                    deploy.resources.limits = Some(rs);
                } else {
                    deploy.resources.reservations = Some(rs);
                }
            }
        }
        Some(deploy)
    }

    /// A number of CPUs: `0.5`, `2`, `"1.5"`.
    fn cpus(&mut self, node: &Node, key: &str) -> Option<f64> {
        let cpus = match &node.value {
            Value::Int(i) => Some(*i as f64),
            Value::Float(x) => Some(*x),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        };
        match cpus {
            Some(c) if c >= 0.0 && c.is_finite() => Some(c),
            _ => {
                self.err(node.mark, key, "invalid cpus value")
                    .hint("write a number of CPUs, like 0.5 or 2");
                None
            }
        }
    }

    /// `memswap_limit`: a size, or `-1` for unlimited swap; 0 is left out.
    fn swap_bytes(&mut self, node: &Node, key: &str) -> Option<i64> {
        let minus_one = match &node.value {
            Value::Int(i) => *i == -1,
            Value::Str(s) => s.trim() == "-1",
            _ => false,
        };
        if minus_one {
            return Some(-1);
        }
        self.bytes(node, key)
            .map(|b| b.0 as i64)
            .filter(|b| *b != 0)
    }

    fn ulimits(&mut self, node: &Node, path: &str) -> BTreeMap<String, Ulimit> {
        let mut out = BTreeMap::new();
        let Some(entries) = self.entries(node, path) else {
            return out;
        };
        for (k, v) in entries {
            let name = k.scalar_string().unwrap_or_default();
            let p = join(path, &name);
            let limit = if v.as_map().is_some() {
                let (fields, _) = self.fields(v, &p, &["soft", "hard"], &[]);
                let (mut soft, mut hard) = (None, None);
                for (f, n, _) in fields {
                    let x = self.int(n, &join(&p, f));
                    if f == "soft" { soft = x } else { hard = x }
                }
                match (soft, hard) {
                    (Some(soft), Some(hard)) if soft <= hard => Some(Ulimit::Pair { soft, hard }),
                    (Some(_), Some(_)) => {
                        self.err(v.mark, &p, "soft limit is above the hard limit")
                            .hint("make `soft` less than or equal to `hard`");
                        None
                    }
                    _ => {
                        self.err(v.mark, &p, "a ulimit mapping needs both `soft` and `hard`")
                            .hint("write both `soft:` and `hard:`, or a single number for both");
                        None
                    }
                }
            } else {
                self.int(v, &p).map(Ulimit::Single)
            };
            if let Some(l) = limit {
                out.insert(name, l);
            }
        }
        out
    }

    /// `blkio_config`: `weight`, `weight_device` and the four throttle lists.
    fn blkio_config(&mut self, node: &Node, path: &str) -> BlkioConfig {
        let throttles = [
            "device_read_bps",
            "device_read_iops",
            "device_write_bps",
            "device_write_iops",
        ];
        let mut keys = vec!["weight", "weight_device"];
        keys.extend(throttles);
        let (fields, _) = self.fields(node, path, &keys, &[]);
        let mut b = BlkioConfig::default();
        for (f, n, _) in fields {
            let fp = join(path, f);
            match f {
                "weight" => b.weight = self.blkio_weight(n, &fp).filter(|w| *w != 0),
                "weight_device" => {
                    let list = self.device_values(n, &fp, "weight", Self::blkio_weight);
                    b.weight_device = list
                        .into_iter()
                        .map(|(path, weight)| WeightDevice { path, weight })
                        .collect();
                }
                _ => {
                    let list: Vec<ThrottleDevice> = self
                        .device_values(n, &fp, "rate", Self::bytes)
                        .into_iter()
                        .map(|(path, rate)| ThrottleDevice { path, rate })
                        .collect();
                    match f {
                        "device_read_bps" => b.device_read_bps = list,
                        "device_read_iops" => b.device_read_iops = list,
                        "device_write_bps" => b.device_write_bps = list,
                        _ => b.device_write_iops = list,
                    }
                }
            }
        }
        b
    }

    /// A block I/O weight: 10 to 1000 (0, Compose's "unset", is let through).
    fn blkio_weight(&mut self, node: &Node, key: &str) -> Option<u16> {
        let w = self.int(node, key)?;
        if w != 0 && !(10..=1000).contains(&w) {
            self.err(
                node.mark,
                key,
                format!("block I/O weight `{w}` is out of range"),
            )
            .hint("write a whole number from 10 to 1000");
            return None;
        }
        Some(w as u16)
    }

    /// A list of `{path: DEVICE, <what>: VALUE}` entries, each value read by
    /// `read`; a missing `path` or value is reported (an invalid one by `read`).
    fn device_values<V>(
        &mut self,
        node: &Node,
        path: &str,
        what: &str,
        mut read: impl FnMut(&mut Self, &Node, &str) -> Option<V>,
    ) -> Vec<(String, V)> {
        let items = self.seq(node, path, &format!("a list of `path` and `{what}`"));
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ip = idx(path, i);
            let (entry, _) = self.fields(item, &ip, &["path", what], &[]);
            let (mut dev, mut value) = (None, None);
            for (k, v, _) in entry {
                let kp = join(&ip, k);
                if k == "path" {
                    dev = self.string(v, &kp);
                } else {
                    value = read(self, v, &kp);
                }
            }
            let missing = item.get("path").is_none() || item.get(what).is_none();
            match (dev, value) {
                (Some(dev), Some(value)) => out.push((dev, value)),
                _ if missing && item.as_map().is_some() => {
                    self.err(item.mark, &ip, format!("needs `path:` and `{what}:`"))
                        .hint(format!(
                            "write the device as `path: /dev/sda` and its `{what}:`"
                        ));
                }
                _ => {}
            }
        }
        out
    }

    /// `cpus` and `pids_limit` against `deploy.resources.limits` (Compose's
    /// rule: not two different values); `cpus` against `cpu_period` and
    /// `cpu_quota` (the engine's: it makes the quota from `cpus` itself).
    pub(super) fn limit_conflicts(&mut self, path: &str, svc: &Service) {
        let limits = svc
            .deploy
            .as_ref()
            .and_then(|d| d.resources.limits.as_ref());
        let any_cpus =
            svc.cpus.is_some() || limits.is_some_and(|l| l.cpus.is_some_and(|c| c != 0.0));
        for key in ["cpu_period", "cpu_quota"] {
            let set = if key == "cpu_period" {
                svc.cpu_period
            } else {
                svc.cpu_quota
            };
            if any_cpus && set.is_some() {
                self.err_at(
                    path,
                    key,
                    format!("`{key}` cannot be combined with `cpus`: the engine derives the CPU quota from `cpus`"),
                )
                .hint("use either `cpus`, or `cpu_period` with `cpu_quota`");
            }
        }
        let Some(limits) = limits else {
            return;
        };
        let cpus = matches!((svc.cpus, limits.cpus), (Some(a), Some(b)) if a != b);
        let pids = matches!((svc.pids_limit, limits.pids), (Some(a), Some(b)) if a != b);
        for (clash, key, deploy_key) in [(cpus, "cpus", "cpus"), (pids, "pids_limit", "pids")] {
            if clash {
                self.err_at(
                    path,
                    key,
                    format!(
                        "`{key}` and `deploy.resources.limits.{deploy_key}` have different values"
                    ),
                )
                .hint("keep one of them, or give both the same value");
            }
        }
    }
}
