//! The engine's create body of a service's container.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::models::{
    ContainerCreateBody, DeviceMapping, DeviceRequest, EndpointIpamConfig, EndpointSettings,
    HealthConfig, HostConfig, HostConfigLogConfig, Mount, MountBindOptions, MountTmpfsOptions,
    MountType as EngineMountType, MountVolumeOptions, NetworkingConfig, PortBinding,
    ResourcesBlkioWeightDevice, ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum,
    ThrottleDevice,
};

use crate::diff::ContainerConfig;
use crate::spec::model::{MountType, Stack};

/// The engine's create body for a service, and the networks to connect after
/// create (API 1.41 takes one network at create).
pub fn create_body(
    stack: &Stack,
    service: &str,
    config: &ContainerConfig,
    carry: &BTreeMap<String, String>,
) -> (ContainerCreateBody, Vec<(String, EndpointSettings)>) {
    let svc = &stack.services[service];
    let mut binds = Vec::new();
    let mut mounts = Vec::new();
    // A bind mount's source as the desired config has it: a repository path
    // mapped onto the engine's host (`hostpath`).
    let bind_source = |m: &crate::spec::model::Mount| {
        config
            .mounts
            .get(&m.target)
            .filter(|d| d.kind == "bind")
            .and_then(|d| d.source.clone())
            .or_else(|| m.source.clone())
    };
    for m in &svc.volumes {
        match m.kind {
            MountType::Bind if m.bind.as_ref().is_none_or(|b| b.create_host_path) => {
                let mut opts: Vec<&str> = Vec::new();
                if m.read_only {
                    opts.push("ro");
                }
                if let Some(b) = &m.bind {
                    opts.extend(b.selinux.as_deref());
                    opts.extend(b.propagation.as_deref());
                }
                let src = bind_source(m).unwrap_or_default();
                binds.push(if opts.is_empty() {
                    format!("{src}:{}", m.target)
                } else {
                    format!("{src}:{}:{}", m.target, opts.join(","))
                });
            }
            MountType::Bind => mounts.push(Mount {
                target: Some(m.target.clone()),
                source: bind_source(m),
                typ: Some(EngineMountType::BIND),
                read_only: Some(m.read_only),
                bind_options: m.bind.as_ref().map(|b| MountBindOptions {
                    propagation: b.propagation.as_deref().and_then(|p| p.parse().ok()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            MountType::Volume => {
                let source = match &m.source {
                    Some(s) => Some(
                        stack
                            .volumes
                            .get(s)
                            .map_or_else(|| s.clone(), |v| v.name.clone()),
                    ),
                    None => carry.get(&m.target).cloned(),
                };
                mounts.push(Mount {
                    target: Some(m.target.clone()),
                    source,
                    typ: Some(EngineMountType::VOLUME),
                    read_only: Some(m.read_only),
                    volume_options: m.volume.as_ref().map(|v| MountVolumeOptions {
                        no_copy: Some(v.nocopy),
                        subpath: v.subpath.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
            }
            MountType::Tmpfs => mounts.push(Mount {
                target: Some(m.target.clone()),
                typ: Some(EngineMountType::TMPFS),
                read_only: Some(m.read_only),
                tmpfs_options: m.tmpfs.as_ref().map(|t| MountTmpfsOptions {
                    size_bytes: t.size.map(|s| s.0 as i64),
                    mode: t.mode.map(i64::from),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }
    // Anonymous volumes the image declares keep their data across a recreate too.
    for (target, name) in carry {
        if !svc.volumes.iter().any(|m| &m.target == target) {
            mounts.push(Mount {
                target: Some(target.clone()),
                source: Some(name.clone()),
                typ: Some(EngineMountType::VOLUME),
                ..Default::default()
            });
        }
    }
    for (target, m) in &config.mounts {
        if m.kind == "bind" && m.read_only && !svc.volumes.iter().any(|v| &v.target == target) {
            // Secrets and configs from files.
            binds.push(format!(
                "{}:{target}:ro",
                m.source.clone().unwrap_or_default()
            ));
        }
    }
    let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = config
        .ports
        .iter()
        .map(|(port, binds)| {
            let b = binds
                .iter()
                .map(|hb| {
                    let (ip, port) = hb.rsplit_once(':').unwrap_or(("", hb));
                    PortBinding {
                        host_ip: Some(ip.to_string()),
                        host_port: Some(port.to_string()),
                    }
                })
                .collect();
            (port.clone(), Some(b))
        })
        .collect();
    let mut exposed: BTreeSet<String> = config.ports.keys().cloned().collect();
    for e in &svc.expose {
        exposed.insert(if e.contains('/') {
            e.clone()
        } else {
            format!("{e}/tcp")
        });
    }
    let restart = svc.restart.unwrap_or(crate::spec::model::RestartPolicy::No);
    let restart_policy = RestartPolicy {
        name: Some(match restart {
            crate::spec::model::RestartPolicy::No => RestartPolicyNameEnum::NO,
            crate::spec::model::RestartPolicy::Always => RestartPolicyNameEnum::ALWAYS,
            crate::spec::model::RestartPolicy::UnlessStopped => {
                RestartPolicyNameEnum::UNLESS_STOPPED
            }
            crate::spec::model::RestartPolicy::OnFailure(_) => RestartPolicyNameEnum::ON_FAILURE,
        }),
        maximum_retry_count: match restart {
            crate::spec::model::RestartPolicy::OnFailure(Some(n)) => Some(i64::from(n)),
            _ => None,
        },
    };
    // The network with the highest priority (then by name) is the one given at create.
    let mut by_priority: Vec<(i64, String, EndpointSettings)> = svc
        .networks
        .iter()
        .map(|(key, settings)| {
            let engine_name = crate::names::network_name(stack, key);
            let aliases = config
                .networks
                .get(&engine_name)
                .map(|a| a.iter().cloned().collect());
            let ipam = settings
                .as_ref()
                .filter(|s| {
                    s.ipv4_address.is_some()
                        || s.ipv6_address.is_some()
                        || !s.link_local_ips.is_empty()
                })
                .map(|s| EndpointIpamConfig {
                    ipv4_address: s.ipv4_address.clone(),
                    ipv6_address: s.ipv6_address.clone(),
                    link_local_ips: (!s.link_local_ips.is_empty())
                        .then(|| s.link_local_ips.clone()),
                });
            let driver_opts = settings
                .as_ref()
                .filter(|s| !s.driver_opts.is_empty())
                .map(|s| s.driver_opts.clone().into_iter().collect());
            let priority = settings.as_ref().and_then(|s| s.priority).unwrap_or(0);
            (
                priority,
                engine_name,
                EndpointSettings {
                    aliases,
                    ipam_config: ipam,
                    driver_opts,
                    // Legacy links act as aliases on user-defined networks.
                    links: (!config.links.is_empty())
                        .then(|| config.links.iter().cloned().collect()),
                    ..Default::default()
                },
            )
        })
        .collect();
    by_priority.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut networks: Vec<(String, EndpointSettings)> =
        by_priority.into_iter().map(|(_, n, e)| (n, e)).collect();
    let mut first = if networks.is_empty() {
        None
    } else {
        Some(networks.remove(0))
    };
    // A declared MAC address belongs to the primary network (API 1.44 and later).
    if let Some((_, endpoint)) = &mut first {
        endpoint.mac_address = config.mac_address.clone();
    }
    let mut host_config = HostConfig {
        binds: (!binds.is_empty()).then_some(binds),
        mounts: (!mounts.is_empty()).then_some(mounts),
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
        restart_policy: Some(restart_policy),
        memory: (config.memory > 0).then_some(config.memory),
        memory_reservation: (config.memory_reservation > 0).then_some(config.memory_reservation),
        nano_cpus: (config.nano_cpus > 0).then_some(config.nano_cpus),
        pids_limit: (config.pids_limit > 0).then_some(config.pids_limit),
        privileged: Some(config.privileged),
        init: svc.init,
        readonly_rootfs: Some(config.read_only),
        cap_add: (!config.cap_add.is_empty()).then(|| config.cap_add.iter().cloned().collect()),
        cap_drop: (!config.cap_drop.is_empty()).then(|| config.cap_drop.iter().cloned().collect()),
        tmpfs: (!config.tmpfs.is_empty()).then(|| config.tmpfs.clone().into_iter().collect()),
        ulimits: (!config.ulimits.is_empty()).then(|| {
            config
                .ulimits
                .iter()
                .map(|(n, (s, h))| ResourcesUlimits {
                    name: Some(n.clone()),
                    soft: Some(*s),
                    hard: Some(*h),
                })
                .collect()
        }),
        extra_hosts: (!config.extra_hosts.is_empty())
            .then(|| config.extra_hosts.iter().cloned().collect()),
        log_config: svc.logging.as_ref().map(|l| HostConfigLogConfig {
            typ: Some(
                l.driver
                    .clone()
                    .unwrap_or_else(|| crate::diff::DEFAULT_LOG_DRIVER.into()),
            ),
            config: Some(l.options.clone().into_iter().collect()),
        }),
        network_mode: first.as_ref().map(|(n, _)| n.clone()),
        ..Default::default()
    };
    more_host_config(svc, config, &mut host_config);
    let healthcheck = config.healthcheck.as_ref().map(|h| HealthConfig {
        test: Some(h.test.clone()),
        interval: Some(h.interval),
        timeout: Some(h.timeout),
        retries: Some(h.retries),
        start_period: Some(h.start_period),
        start_interval: (h.start_interval > 0).then_some(h.start_interval),
    });
    let body = ContainerCreateBody {
        image: Some(config.image.clone()),
        cmd: config.command.clone(),
        entrypoint: config.entrypoint.clone(),
        env: Some(config.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(config.labels.clone().into_iter().collect()),
        exposed_ports: (!exposed.is_empty()).then(|| exposed.into_iter().collect()),
        healthcheck,
        user: config.user.clone(),
        working_dir: config.working_dir.clone(),
        hostname: config.hostname.clone(),
        stop_signal: config.stop_signal.clone(),
        stop_timeout: config.stop_timeout,
        domainname: config.domainname.clone(),
        tty: Some(config.tty),
        open_stdin: Some(config.stdin_open),
        host_config: Some(host_config),
        networking_config: first.map(|(n, e)| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(n, e)])),
        }),
        ..Default::default()
    };
    (body, networks)
}

/// The host-config settings of issue 7's remaining Compose keys.
fn more_host_config(
    svc: &crate::spec::model::Service,
    config: &ContainerConfig,
    h: &mut HostConfig,
) {
    let list = |v: &[String]| (!v.is_empty()).then(|| v.to_vec());
    let set = |v: &BTreeSet<String>| (!v.is_empty()).then(|| v.iter().cloned().collect());
    let map =
        |m: &BTreeMap<String, String>| (!m.is_empty()).then(|| m.clone().into_iter().collect());
    let nonzero = |v: i64| (v != 0).then_some(v);
    if let Some(mode) = &config.network_mode {
        h.network_mode = Some(mode.clone());
    }
    h.ipc_mode = config.ipc.clone();
    h.pid_mode = config.pid.clone();
    h.uts_mode = config.uts.clone();
    h.userns_mode = config.userns.clone();
    h.cgroupns_mode = config.cgroupns.as_deref().and_then(|m| m.parse().ok());
    h.cgroup_parent = config.cgroup_parent.clone();
    h.runtime = config.runtime.clone();
    h.shm_size = nonzero(config.shm_size);
    h.sysctls = map(&config.sysctls);
    h.devices = (!svc.devices.is_empty()).then(|| {
        svc.devices
            .iter()
            .map(|d| DeviceMapping {
                path_on_host: Some(d.source.clone()),
                path_in_container: Some(d.target.clone()),
                cgroup_permissions: Some(d.permissions.clone().unwrap_or_else(|| "rwm".into())),
            })
            .collect()
    });
    h.device_cgroup_rules = set(&config.device_cgroup_rules);
    h.dns = list(&config.dns);
    h.dns_search = list(&config.dns_search);
    h.dns_options = list(&config.dns_options);
    // `systempaths=unconfined` is Compose's: it unmasks /proc and /sys paths
    // rather than being an engine security option.
    let mut security: Vec<String> = Vec::new();
    for opt in &config.security_opt {
        if opt == "systempaths=unconfined" {
            h.masked_paths = Some(Vec::new());
            h.readonly_paths = Some(Vec::new());
        } else {
            security.push(opt.clone());
        }
    }
    h.security_opt = (!security.is_empty()).then_some(security);
    h.group_add = set(&config.group_add);
    h.oom_score_adj = nonzero(config.oom_score_adj);
    h.oom_kill_disable = config.oom_kill_disable.then_some(true);
    h.storage_opt = map(&config.storage_opt);
    h.cpu_shares = nonzero(config.cpu_shares);
    h.cpu_period = nonzero(config.cpu_period);
    h.cpu_quota = nonzero(config.cpu_quota);
    h.cpu_realtime_period = nonzero(config.cpu_rt_period);
    h.cpu_realtime_runtime = nonzero(config.cpu_rt_runtime);
    h.cpuset_cpus = config.cpuset.clone();
    h.memory_swap = nonzero(config.memory_swap);
    h.memory_swappiness = config.memory_swappiness;
    // On the default bridge, links are the engine's legacy links; on
    // user-defined networks the endpoints carry them (see the networks above).
    h.links = set(&config.links);
    h.volumes_from = set(&config.volumes_from);
    h.annotations = config
        .annotations
        .as_ref()
        .map(|a| a.clone().into_iter().collect());
    h.blkio_weight = (config.blkio_weight != 0).then_some(config.blkio_weight);
    let blkio = &svc.blkio_config;
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
    h.device_requests = (!config.device_requests.is_empty()).then(|| {
        config
            .device_requests
            .iter()
            .map(|r| DeviceRequest {
                driver: r.driver.clone(),
                count: r.count,
                device_ids: (!r.device_ids.is_empty()).then(|| r.device_ids.clone()),
                capabilities: Some(vec![r.capabilities.clone()]),
                options: map(&r.options),
            })
            .collect()
    });
}
