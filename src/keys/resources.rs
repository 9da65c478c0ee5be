//! Resources: CPU (`cpus`, shares, period, quota, real-time, cpuset),
//! memory (limit, reservation, swap, swappiness), pids, `/dev/shm`,
//! ulimits, the OOM killer, block I/O (`blkio_config`), storage options.

use bollard::models::{ResourcesBlkioWeightDevice, ResourcesUlimits, ThrottleDevice};

use super::{
    ComposeEdit, ComposeOp, ContainerConfig, Create, Desire, Fields, Group, Inspect, Inverse,
    Request, map, nonzero,
};
use crate::spec::model::{Bytes, Ulimit};

/// The engine's default `/dev/shm` size (64 MiB).
pub const DEFAULT_SHM_SIZE: i64 = 64 << 20;

pub struct Resources;

impl Group for Resources {
    fn desired(&self, cx: &Desire<'_>, c: &mut ContainerConfig) {
        let svc = cx.svc;
        let resources = svc.deploy.as_ref().map(|d| &d.resources);
        let limits = resources.and_then(|r| r.limits.as_ref());
        let reservations = resources.and_then(|r| r.reservations.as_ref());
        c.memory = svc
            .mem_limit
            .or(limits.and_then(|l| l.memory))
            .map_or(0, |b| b.0 as i64);
        c.memory_reservation = svc
            .mem_reservation
            .or(reservations.and_then(|r| r.memory))
            .map_or(0, |b| b.0 as i64);
        c.nano_cpus = svc
            .cpus
            .or(limits.and_then(|l| l.cpus))
            .map_or(0, |cpus| (cpus * 1e9).round() as i64);
        c.pids_limit = svc.pids_limit.or(limits.and_then(|l| l.pids)).unwrap_or(0);
        for (k, u) in &svc.ulimits {
            let (soft, hard) = match u {
                Ulimit::Single(v) => (*v, *v),
                Ulimit::Pair { soft, hard } => (*soft, *hard),
            };
            c.ulimits.insert(k.clone(), (soft, hard));
        }
        c.shm_size = svc.shm_size.map_or(0, |b| b.0 as i64);
        c.oom_score_adj = svc.oom_score_adj.unwrap_or(0);
        c.oom_kill_disable = svc.oom_kill_disable;
        c.storage_opt = svc.storage_opt.clone();
        c.cpu_shares = svc.cpu_shares.unwrap_or(0);
        c.cpu_period = svc.cpu_period.unwrap_or(0);
        c.cpu_quota = svc.cpu_quota.unwrap_or(0);
        c.cpu_rt_period = svc.cpu_rt_period.unwrap_or(0);
        c.cpu_rt_runtime = svc.cpu_rt_runtime.unwrap_or(0);
        c.cpuset = svc.cpuset.clone();
        c.memory_swap = svc.memswap_limit.unwrap_or(0);
        c.memory_swappiness = svc.mem_swappiness;
        let blkio = &svc.blkio_config;
        c.blkio_weight = blkio.weight.unwrap_or(0);
        for d in &blkio.weight_device {
            c.blkio_devices
                .insert(format!("weight {}", d.path), d.weight.to_string());
        }
        for (key, list) in blkio.throttles() {
            for d in list {
                c.blkio_devices.insert(
                    format!("{} {}", blkio_kind(key), d.path),
                    d.rate.0.to_string(),
                );
            }
        }
    }

    fn create(&self, cx: &Create<'_>, r: &mut Request) {
        let (c, h) = (cx.config, &mut r.host);
        let positive = |v: i64| (v > 0).then_some(v);
        h.memory = positive(c.memory);
        h.memory_reservation = positive(c.memory_reservation);
        h.nano_cpus = positive(c.nano_cpus);
        h.pids_limit = positive(c.pids_limit);
        h.ulimits = (!c.ulimits.is_empty()).then(|| {
            c.ulimits
                .iter()
                .map(|(n, (s, h))| ResourcesUlimits {
                    name: Some(n.clone()),
                    soft: Some(*s),
                    hard: Some(*h),
                })
                .collect()
        });
        h.shm_size = nonzero(c.shm_size);
        h.oom_score_adj = nonzero(c.oom_score_adj);
        h.oom_kill_disable = c.oom_kill_disable.then_some(true);
        h.storage_opt = map(&c.storage_opt);
        h.cpu_shares = nonzero(c.cpu_shares);
        h.cpu_period = nonzero(c.cpu_period);
        h.cpu_quota = nonzero(c.cpu_quota);
        h.cpu_realtime_period = nonzero(c.cpu_rt_period);
        h.cpu_realtime_runtime = nonzero(c.cpu_rt_runtime);
        h.cpuset_cpus = c.cpuset.clone();
        h.memory_swap = nonzero(c.memory_swap);
        h.memory_swappiness = c.memory_swappiness;
        h.blkio_weight = (c.blkio_weight != 0).then_some(c.blkio_weight);
        let blkio = &cx.svc.blkio_config;
        h.blkio_weight_device = (!blkio.weight_device.is_empty()).then(|| {
            blkio
                .weight_device
                .iter()
                .map(|d| ResourcesBlkioWeightDevice {
                    path: Some(d.path.clone()),
                    weight: Some(usize::from(d.weight)),
                })
                .collect()
        });
        let throttle = |list: &[crate::spec::model::ThrottleDevice]| {
            (!list.is_empty()).then(|| {
                list.iter()
                    .map(|d| ThrottleDevice {
                        path: Some(d.path.clone()),
                        rate: Some(d.rate.0 as i64),
                    })
                    .collect()
            })
        };
        h.blkio_device_read_bps = throttle(&blkio.device_read_bps);
        h.blkio_device_read_iops = throttle(&blkio.device_read_iops);
        h.blkio_device_write_bps = throttle(&blkio.device_write_bps);
        h.blkio_device_write_iops = throttle(&blkio.device_write_iops);
    }

    fn read(&self, i: &Inspect<'_>, c: &mut ContainerConfig) {
        let h = i.host;
        c.memory = h.memory.unwrap_or(0);
        c.memory_reservation = h.memory_reservation.unwrap_or(0);
        c.nano_cpus = h.nano_cpus.unwrap_or(0);
        c.pids_limit = h.pids_limit.unwrap_or(0).max(0);
        c.ulimits = h
            .ulimits
            .iter()
            .flatten()
            .map(|u| {
                (
                    u.name.clone().unwrap_or_default(),
                    (u.soft.unwrap_or(0), u.hard.unwrap_or(0)),
                )
            })
            .collect();
        c.shm_size = h.shm_size.unwrap_or(0);
        c.oom_score_adj = h.oom_score_adj.unwrap_or(0);
        c.oom_kill_disable = h.oom_kill_disable.unwrap_or(false);
        c.storage_opt = h
            .storage_opt
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        c.cpu_shares = h.cpu_shares.unwrap_or(0);
        c.cpu_period = h.cpu_period.unwrap_or(0);
        c.cpu_quota = h.cpu_quota.unwrap_or(0);
        c.cpu_rt_period = h.cpu_realtime_period.unwrap_or(0);
        c.cpu_rt_runtime = h.cpu_realtime_runtime.unwrap_or(0);
        c.cpuset = super::nonempty(&h.cpuset_cpus);
        c.memory_swap = h.memory_swap.unwrap_or(0);
        c.memory_swappiness = h.memory_swappiness.filter(|s| *s >= 0);
        c.blkio_weight = h.blkio_weight.unwrap_or(0);
        for d in h.blkio_weight_device.iter().flatten() {
            if let (Some(path), Some(weight)) = (&d.path, d.weight) {
                c.blkio_devices
                    .insert(format!("weight {path}"), weight.to_string());
            }
        }
        for (key, list) in [
            ("device_read_bps", &h.blkio_device_read_bps),
            ("device_read_iops", &h.blkio_device_read_iops),
            ("device_write_bps", &h.blkio_device_write_bps),
            ("device_write_iops", &h.blkio_device_write_iops),
        ] {
            for d in list.iter().flatten() {
                if let (Some(path), Some(rate)) = (&d.path, d.rate) {
                    c.blkio_devices
                        .insert(format!("{} {path}", blkio_kind(key)), rate.to_string());
                }
            }
        }
    }

    fn compose(&self, cx: &Inverse<'_>, out: &mut Vec<ComposeEdit>) {
        let live = cx.live;
        let limits = [
            (
                "memory limit",
                live.memory,
                vec![
                    vec!["mem_limit"],
                    vec!["deploy", "resources", "limits", "memory"],
                ],
            ),
            (
                "memory reservation",
                live.memory_reservation,
                vec![
                    vec!["mem_reservation"],
                    vec!["deploy", "resources", "reservations", "memory"],
                ],
            ),
            (
                "cpus",
                live.nano_cpus,
                vec![vec!["cpus"], vec!["deploy", "resources", "limits", "cpus"]],
            ),
            ("memory swap", live.memory_swap, vec![vec!["memswap_limit"]]),
            ("pids limit", live.pids_limit, vec![vec!["pids_limit"]]),
            ("cpu shares", live.cpu_shares, vec![vec!["cpu_shares"]]),
        ];
        for (key, value, at) in limits {
            if !cx.changed.contains(key) {
                continue;
            }
            let op = match (key, value) {
                // Unlimited swap.
                ("memory swap", -1) => ComposeOp::Set("-1".into()),
                (_, v) if v <= 0 => ComposeOp::Unset,
                ("cpus", v) => ComposeOp::Set(format_cpus(v)),
                ("memory limit" | "memory reservation" | "memory swap", v) => {
                    ComposeOp::Set(compose_size(v))
                }
                (_, v) => ComposeOp::Set(v.to_string()),
            };
            out.push(ComposeEdit {
                field: key.into(),
                at,
                op,
            });
        }
    }

    fn fields(&self, c: &ContainerConfig, f: &mut Fields<'_>) {
        for (key, value) in [
            ("memory limit", c.memory),
            ("memory reservation", c.memory_reservation),
        ] {
            if value > 0 {
                f.put(key, Bytes(value as u64).to_string());
            }
        }
        if c.nano_cpus > 0 {
            f.put("cpus", format_cpus(c.nano_cpus));
        }
        if c.pids_limit > 0 {
            f.put("pids limit", c.pids_limit.to_string());
        }
        for (k, (soft, hard)) in &c.ulimits {
            f.put(format!("ulimit {k}"), format!("{soft}:{hard}"));
        }
        f.opt("cpuset", &c.cpuset);
        if c.shm_size > 0 {
            f.put("shm size", Bytes(c.shm_size as u64).to_string());
        }
        f.flag("oom kill disable", c.oom_kill_disable);
        f.map("storage opt", &c.storage_opt);
        for (key, value) in [
            ("oom score adj", c.oom_score_adj),
            ("cpu shares", c.cpu_shares),
            ("cpu period", c.cpu_period),
            ("cpu quota", c.cpu_quota),
            ("cpu rt period", c.cpu_rt_period),
            ("cpu rt runtime", c.cpu_rt_runtime),
        ] {
            if value != 0 {
                f.put(key, value.to_string());
            }
        }
        match c.memory_swap {
            0 => {}
            -1 => f.put("memory swap", "unlimited"),
            v => f.put("memory swap", Bytes(v.max(0) as u64).to_string()),
        }
        if let Some(v) = c.memory_swappiness {
            f.put("memory swappiness", v.to_string());
        }
        if c.blkio_weight != 0 {
            f.put("blkio weight", c.blkio_weight.to_string());
        }
        f.map("blkio", &c.blkio_devices);
    }

    fn align(&self, live: &mut ContainerConfig, desired: &ContainerConfig) {
        if desired.shm_size == 0 {
            live.shm_size = 0;
        }
        // Without `memswap_limit` the engine allows twice the memory limit.
        if desired.memory_swap == 0 && live.memory > 0 && live.memory_swap == 2 * live.memory {
            live.memory_swap = 0;
        }
        // Settings the engine discards where the kernel or cgroup version
        // lacks them (swap accounting; swappiness and the OOM killer switch on
        // cgroup v2), so a host without them does not recreate forever.
        if live.memory_swap == -1 && desired.memory_swap != -1 {
            live.memory_swap = desired.memory_swap;
        }
        if live.memory_swappiness.is_none() {
            live.memory_swappiness = desired.memory_swappiness;
        }
        if desired.oom_kill_disable {
            live.oom_kill_disable = true;
        }
        // Without a proportional I/O scheduler the engine discards weights.
        if live.blkio_weight == 0 {
            live.blkio_weight = desired.blkio_weight;
        }
        for (k, v) in &desired.blkio_devices {
            if k.starts_with("weight ") && !live.blkio_devices.contains_key(k) {
                live.blkio_devices.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The `blkio_devices` key of a throttle list (`device_read_bps` -> `read bps`).
pub fn blkio_kind(key: &str) -> String {
    key.trim_start_matches("device_").replace('_', " ")
}

fn format_cpus(nano: i64) -> String {
    let s = format!("{:.3}", nano as f64 / 1e9);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A size as Compose writes it: the largest unit that divides it (`64m`, `1g`).
pub fn compose_size(bytes: i64) -> String {
    for (unit, shift) in [("g", 30), ("m", 20), ("k", 10)] {
        if bytes % (1 << shift) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}b")
}
