//! Desired versus live, field by field, on one normalized container model.
//!
//! Both sides become a [`ContainerConfig`]: the desired one from the spec,
//! the live one from `docker inspect` (in `live`). Values the image supplies
//! (its command, environment, labels, user, volumes, health check) and values
//! the engine fills in (hostname, default log driver) are stripped from both
//! sides by [`ContainerConfig::strip_defaults`], so they are never drift.
//! Fields plimsoll always owns (restart policy, networks, ports, resources,
//! labels in its namespace) are always compared. The config flattens into
//! `key: value` lines ([`ContainerConfig::fields`]); changes, their reasons
//! in words and the unified diff all come from those lines. Networks are
//! compared the same way in [`network`].
//!
//! Invariant: pure; knows nothing about bollard.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::names::{container_name, labels, managed_labels, network_name, replica_name};
use crate::spec::model::{Bytes, DeviceRequest, MountType, RestartPolicy, Service, Stack, Ulimit};
use crate::spec::secrets::Masker;

pub mod network;

/// What an image supplies when the container does not say otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageDefaults {
    pub id: String,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub healthcheck: Option<Health>,
    pub volumes: BTreeSet<String>,
    pub stop_signal: Option<String>,
}

/// A health check as the engine stores it (durations in nanoseconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Health {
    pub test: Vec<String>,
    pub interval: i64,
    pub timeout: i64,
    pub retries: i64,
    pub start_period: i64,
    pub start_interval: i64,
}

/// A mount as compared: kind and source (volume name, host path, or `None`
/// for an anonymous volume or a tmpfs) and whether it is read-only.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct MountDesc {
    pub kind: &'static str,
    pub source: Option<String>,
    pub read_only: bool,
}

/// The settings of one container that plimsoll compares. `None` and empty
/// mean "not declared": the image's or the engine's default is in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContainerConfig {
    pub name: String,
    /// The image reference as written.
    pub image: String,
    /// The image ID the reference resolves to (`None` when it is not on the host).
    pub image_id: Option<String>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// `"8080/tcp"` -> host bindings like `"127.0.0.1:8080"` (`":"` for any).
    pub ports: BTreeMap<String, Vec<String>>,
    /// Target path -> mount.
    pub mounts: BTreeMap<String, MountDesc>,
    pub tmpfs: BTreeMap<String, String>,
    /// Network (engine name) -> aliases.
    pub networks: BTreeMap<String, BTreeSet<String>>,
    pub restart: String,
    pub memory: i64,
    pub memory_reservation: i64,
    pub nano_cpus: i64,
    pub pids_limit: i64,
    pub healthcheck: Option<Health>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub hostname: Option<String>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    pub privileged: bool,
    pub init: bool,
    pub read_only: bool,
    pub cap_add: BTreeSet<String>,
    pub cap_drop: BTreeSet<String>,
    pub ulimits: BTreeMap<String, (i64, i64)>,
    pub extra_hosts: BTreeSet<String>,
    pub log: Option<(String, BTreeMap<String, String>)>,
    // The keys below are left out of the serialized form (and so of the spec
    // hash) while unset, so containers made before they existed keep their hash.
    /// `host`, `none`, `bridge`, `default` or `container:<name>`; `None`: the
    /// networks above.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// `private`, `shareable`, `host`, `none` or `container:<name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userns: Option<String>,
    /// The cgroup namespace (Compose's `cgroup`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroupns: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// The platform the image was asked for; in the spec hash, not compared
    /// field by field (the engine does not report it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub shm_size: i64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stdin_open: bool,
    /// Container path -> `"<host path> <permissions>"`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub devices: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub device_cgroup_rules: BTreeSet<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_options: Vec<String>,
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub security_opt: BTreeSet<String>,
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub group_add: BTreeSet<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domainname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub oom_score_adj: i64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub oom_kill_disable: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub storage_opt: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub cpu_shares: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub cpu_period: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub cpu_quota: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub cpu_rt_period: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub cpu_rt_runtime: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuset: Option<String>,
    /// Memory plus swap; -1 unlimited, 0 the engine's default (twice the memory limit).
    #[serde(skip_serializing_if = "is_zero")]
    pub memory_swap: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_swappiness: Option<i64>,
    /// `<container>:<alias>`, for `links` and `external_links`.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub links: BTreeSet<String>,
    /// `<container>[:ro|:rw]`.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub volumes_from: BTreeSet<String>,
    /// `None` on the live side when the engine does not report annotations
    /// (API before 1.43): then they are not compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// `blkio_config.weight`; 0: the engine's default.
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub blkio_weight: u16,
    /// `"weight <device>"`, `"read bps <device>"`, ... -> the value.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub blkio_devices: BTreeMap<String, String>,
    /// `gpus` and `deploy.resources.reservations.devices`, as the engine takes them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_requests: Vec<DeviceRequest>,
    /// Network (engine name) -> the endpoint settings declared for it in
    /// words (fixed addresses, link-local addresses, driver options).
    /// Compared field by field only: the engine reports them all, and
    /// leaving them out of the spec hash keeps the hash of containers
    /// made before they were compared.
    #[serde(skip)]
    pub endpoints: BTreeMap<String, String>,
    /// Live only: the MAC address of each network endpoint, to compare a declared `mac_address`.
    #[serde(skip)]
    pub endpoint_macs: BTreeMap<String, String>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn is_zero_u16(v: &u16) -> bool {
    *v == 0
}

/// The `blkio_devices` key of a throttle list (`device_read_bps` -> `read bps`).
pub fn blkio_kind(key: &str) -> String {
    key.trim_start_matches("device_").replace('_', " ")
}

/// A device request in words, as `fields` shows it.
pub fn device_request_words(r: &DeviceRequest) -> String {
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

/// Declared endpoint settings in words; `None` when there are none.
pub fn endpoint_words(
    ipv4: Option<&str>,
    ipv6: Option<&str>,
    link_local: &[String],
    driver_opts: &BTreeMap<String, String>,
) -> Option<String> {
    let mut words = Vec::new();
    if let Some(a) = ipv4.filter(|a| !a.is_empty()) {
        words.push(format!("ipv4 {a}"));
    }
    if let Some(a) = ipv6.filter(|a| !a.is_empty()) {
        words.push(format!("ipv6 {a}"));
    }
    if !link_local.is_empty() {
        let mut l = link_local.to_vec();
        l.sort();
        words.push(format!("link-local {}", l.join(" ")));
    }
    for (k, v) in driver_opts {
        words.push(format!("driver opt {k}={v}"));
    }
    (!words.is_empty()).then(|| words.join(", "))
}

/// The engine's default `/dev/shm` size (64 MiB).
pub const DEFAULT_SHM_SIZE: i64 = 64 << 20;

/// The engine's default log driver; a container with it has "no logging settings".
pub const DEFAULT_LOG_DRIVER: &str = "json-file";

impl ContainerConfig {
    /// Removes what the image supplies anyway, so a value equal to the
    /// image's default counts as "not declared" on both sides.
    pub fn strip_defaults(&mut self, image: &ImageDefaults) {
        // Setting an entrypoint drops the image's command (the engine's rule).
        let image_cmd = if self.entrypoint.is_some() && self.entrypoint != image.entrypoint {
            None
        } else {
            image.cmd.clone()
        };
        if self
            .command
            .as_ref()
            .is_some_and(|c| Some(c) == image_cmd.as_ref() || c.is_empty() && image_cmd.is_none())
        {
            self.command = None;
        }
        if self.entrypoint.is_some() && self.entrypoint == image.entrypoint {
            self.entrypoint = None;
        }
        self.env.retain(|k, v| image.env.get(k) != Some(v));
        self.labels.retain(|k, v| image.labels.get(k) != Some(v));
        if self.user.is_some()
            && (self.user == image.user || self.user.as_deref() == Some("") && image.user.is_none())
        {
            self.user = None;
        }
        if self.working_dir.is_some()
            && (self.working_dir == image.working_dir
                || self.working_dir.as_deref() == Some("") && image.working_dir.is_none())
        {
            self.working_dir = None;
        }
        if self.healthcheck.is_some() && self.healthcheck == image.healthcheck {
            self.healthcheck = None;
        }
        self.mounts.retain(|target, m| {
            !(m.kind == "volume" && m.source.is_none() && image.volumes.contains(target))
        });
        if self.stop_signal.is_some()
            && (self.stop_signal == image.stop_signal
                || self.stop_signal.as_deref() == Some("SIGTERM"))
        {
            self.stop_signal = None;
        }
        if self
            .log
            .as_ref()
            .is_some_and(|(d, o)| d == DEFAULT_LOG_DRIVER && o.is_empty())
        {
            self.log = None;
        }
    }

    /// Projects a live config onto what the desired one declares, for fields
    /// the engine merges its own defaults into: the daemon's `log-opts` join
    /// a container's log options, so only the driver and the declared options
    /// are compared.
    pub fn align_to(&mut self, desired: &ContainerConfig) {
        match (&mut self.log, &desired.log) {
            (Some((_, live_opts)), Some((_, want))) => {
                live_opts.retain(|k, _| want.contains_key(k))
            }
            (Some((driver, opts)), None) => {
                opts.clear();
                if driver == DEFAULT_LOG_DRIVER {
                    self.log = None;
                }
            }
            _ => {}
        }
        self.align_engine_defaults(desired);
    }

    /// The settings the engine fills in when a container does not declare
    /// them and that `docker update` cannot change: when git does not
    /// declare one, the engine's value is not compared (a key removed from
    /// git still changes the spec hash, so the container is replaced).
    fn align_engine_defaults(&mut self, desired: &ContainerConfig) {
        if desired.ipc.is_none()
            && matches!(self.ipc.as_deref(), Some("private" | "shareable" | ""))
        {
            self.ipc = None;
        }
        if desired.cgroupns.is_none() {
            self.cgroupns = None;
        }
        if desired.runtime.is_none() {
            self.runtime = None;
        }
        if desired.shm_size == 0 {
            self.shm_size = 0;
        }
        // Without `memswap_limit` the engine allows twice the memory limit.
        if desired.memory_swap == 0 && self.memory > 0 && self.memory_swap == 2 * self.memory {
            self.memory_swap = 0;
        }
        // Settings the engine discards where the kernel or cgroup version
        // lacks them (swap accounting; swappiness and the OOM killer switch on
        // cgroup v2), so a host without them does not recreate forever.
        if self.memory_swap == -1 && desired.memory_swap != -1 {
            self.memory_swap = desired.memory_swap;
        }
        if self.memory_swappiness.is_none() {
            self.memory_swappiness = desired.memory_swappiness;
        }
        if desired.oom_kill_disable {
            self.oom_kill_disable = true;
        }
        // Without a proportional I/O scheduler the engine discards weights.
        if self.blkio_weight == 0 {
            self.blkio_weight = desired.blkio_weight;
        }
        for (k, v) in &desired.blkio_devices {
            if k.starts_with("weight ") && !self.blkio_devices.contains_key(k) {
                self.blkio_devices.insert(k.clone(), v.clone());
            }
        }
        // Added by the engine for host namespaces and privileged containers.
        if !desired.security_opt.contains("label=disable") {
            self.security_opt.remove("label=disable");
        }
        // With another container's (or the host's) network stack, the engine
        // copies its host and domain names.
        let shared_net = self
            .network_mode
            .as_deref()
            .is_some_and(|m| m == "host" || m.starts_with("container:"));
        if shared_net && desired.hostname.is_none() {
            self.hostname = None;
        }
        if shared_net && desired.domainname.is_none() {
            self.domainname = None;
        }
        // Docker 20.10 adds a declared hostname to the aliases of every
        // user-defined network: not drift unless git declares it an alias.
        if let Some(h) = &self.hostname {
            for (net, aliases) in &mut self.networks {
                if !desired.networks.get(net).is_some_and(|a| a.contains(h)) {
                    aliases.remove(h);
                }
            }
        }
        self.mac_address = desired.mac_address.as_ref().map(|want| {
            if self
                .endpoint_macs
                .values()
                .any(|m| m.eq_ignore_ascii_case(want))
            {
                want.clone()
            } else {
                let macs: Vec<&str> = self.endpoint_macs.values().map(String::as_str).collect();
                if macs.is_empty() {
                    "(none)".into()
                } else {
                    macs.join(", ")
                }
            }
        });
        // `volumes_from` brings the other container's mounts along.
        if !desired.volumes_from.is_empty() {
            self.mounts
                .retain(|target, _| desired.mounts.contains_key(target));
        }
        if self.annotations.is_none() {
            self.annotations = desired.annotations.clone();
        }
    }

    /// The config as `key: value` lines, the unit of comparison and of the diff.
    pub fn fields(&self) -> BTreeMap<String, String> {
        self.fields_with(&|w| w.to_string())
    }

    /// [`ContainerConfig::fields`] with each word of the command, the
    /// entrypoint and the health check's test passed through `word` before
    /// they are joined and quoted (to mask a secret before quoting can change it).
    pub fn fields_with(&self, word: &dyn Fn(&str) -> String) -> BTreeMap<String, String> {
        let join_words = |words: &[String]| {
            let words: Vec<String> = words.iter().map(|w| word(w)).collect();
            join_words(&words)
        };
        let mut f = BTreeMap::new();
        let mut put = |k: String, v: String| {
            f.insert(k, v);
        };
        put("name".into(), self.name.clone());
        put("image".into(), self.image.clone());
        put(
            "image id".into(),
            self.image_id
                .as_deref()
                .map_or_else(|| "(not on this host)".into(), short_id),
        );
        if let Some(c) = &self.command {
            put("command".into(), join_words(c));
        }
        if let Some(e) = &self.entrypoint {
            put("entrypoint".into(), join_words(e));
        }
        for (k, v) in &self.env {
            put(format!("env {k}"), v.clone());
        }
        for (k, v) in &self.labels {
            if !labels::is_bookkeeping(k) {
                put(format!("label {k}"), v.clone());
            }
        }
        for (k, v) in &self.ports {
            put(format!("port {k}"), v.join(", "));
        }
        for (target, m) in &self.mounts {
            let src = m.source.as_deref().unwrap_or("(anonymous)");
            let mode = if m.read_only { "ro" } else { "rw" };
            put(
                format!("mount {target}"),
                format!("{} {src} {mode}", m.kind),
            );
        }
        for (k, v) in &self.tmpfs {
            put(format!("tmpfs {k}"), v.clone());
        }
        for (net, aliases) in &self.networks {
            let a: Vec<&str> = aliases.iter().map(String::as_str).collect();
            put(
                format!("network {net}"),
                format!("aliases {}", a.join(", ")),
            );
        }
        put("restart".into(), self.restart.clone());
        for (key, value) in [
            ("memory limit", self.memory),
            ("memory reservation", self.memory_reservation),
        ] {
            if value > 0 {
                put(key.into(), Bytes(value as u64).to_string());
            }
        }
        if self.nano_cpus > 0 {
            put("cpus".into(), format_cpus(self.nano_cpus));
        }
        if self.pids_limit > 0 {
            put("pids limit".into(), self.pids_limit.to_string());
        }
        if let Some(h) = &self.healthcheck {
            put("healthcheck".into(), join_words(&h.test));
            for (k, v) in health_parts(h) {
                put(format!("healthcheck {k}"), v);
            }
        }
        let optional = [
            ("user", &self.user),
            ("working dir", &self.working_dir),
            ("hostname", &self.hostname),
            ("stop signal", &self.stop_signal),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                put(key.into(), v.clone());
            }
        }
        if let Some(t) = self.stop_timeout {
            put("stop grace period".into(), format!("{t}s"));
        }
        for (key, on) in [
            ("privileged", self.privileged),
            ("init", self.init),
            ("read only", self.read_only),
        ] {
            if on {
                put(key.into(), "true".into());
            }
        }
        for c in &self.cap_add {
            put(format!("cap add {c}"), "yes".into());
        }
        for c in &self.cap_drop {
            put(format!("cap drop {c}"), "yes".into());
        }
        for (k, (soft, hard)) in &self.ulimits {
            put(format!("ulimit {k}"), format!("{soft}:{hard}"));
        }
        for h in &self.extra_hosts {
            put(format!("extra host {h}"), "yes".into());
        }
        if let Some((driver, opts)) = &self.log {
            let o: Vec<String> = opts.iter().map(|(k, v)| format!("{k}={v}")).collect();
            put(
                "logging".into(),
                format!("{driver} {}", o.join(" ")).trim_end().to_string(),
            );
        }
        self.more_fields(&mut f);
        f
    }

    /// The lines of the settings added with issue 7's remaining Compose keys.
    fn more_fields(&self, f: &mut BTreeMap<String, String>) {
        let mut put = |k: String, v: String| {
            f.insert(k, v);
        };
        let optional = [
            ("network mode", &self.network_mode),
            ("ipc", &self.ipc),
            ("pid", &self.pid),
            ("uts", &self.uts),
            ("userns mode", &self.userns),
            ("cgroup", &self.cgroupns),
            ("cgroup parent", &self.cgroup_parent),
            ("runtime", &self.runtime),
            ("cpuset", &self.cpuset),
            ("domainname", &self.domainname),
            ("mac address", &self.mac_address),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                put(key.into(), v.clone());
            }
        }
        if self.shm_size > 0 {
            put("shm size".into(), Bytes(self.shm_size as u64).to_string());
        }
        for (k, v) in &self.sysctls {
            put(format!("sysctl {k}"), v.clone());
        }
        for (key, on) in [
            ("tty", self.tty),
            ("stdin open", self.stdin_open),
            ("oom kill disable", self.oom_kill_disable),
        ] {
            if on {
                put(key.into(), "true".into());
            }
        }
        for (target, d) in &self.devices {
            put(format!("device {target}"), d.clone());
        }
        for r in &self.device_cgroup_rules {
            put(format!("device cgroup rule {r}"), "yes".into());
        }
        for (key, list) in [
            ("dns", &self.dns),
            ("dns search", &self.dns_search),
            ("dns options", &self.dns_options),
        ] {
            if !list.is_empty() {
                put(key.into(), list.join(", "));
            }
        }
        for o in &self.security_opt {
            match o.strip_prefix("seccomp={") {
                // A profile from a file: its digest stands for it.
                Some(_) => {
                    let digest = Sha256::digest(o.as_bytes());
                    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
                    put(
                        "security opt seccomp".into(),
                        format!("profile sha256:{hex}"),
                    );
                }
                None => put(format!("security opt {o}"), "yes".into()),
            }
        }
        for g in &self.group_add {
            put(format!("group add {g}"), "yes".into());
        }
        for (k, v) in &self.storage_opt {
            put(format!("storage opt {k}"), v.clone());
        }
        for (key, value) in [
            ("oom score adj", self.oom_score_adj),
            ("cpu shares", self.cpu_shares),
            ("cpu period", self.cpu_period),
            ("cpu quota", self.cpu_quota),
            ("cpu rt period", self.cpu_rt_period),
            ("cpu rt runtime", self.cpu_rt_runtime),
        ] {
            if value != 0 {
                put(key.into(), value.to_string());
            }
        }
        match self.memory_swap {
            0 => {}
            -1 => put("memory swap".into(), "unlimited".into()),
            v => put("memory swap".into(), Bytes(v.max(0) as u64).to_string()),
        }
        if let Some(v) = self.memory_swappiness {
            put("memory swappiness".into(), v.to_string());
        }
        for l in &self.links {
            put(format!("link {l}"), "yes".into());
        }
        for v in &self.volumes_from {
            put(format!("volumes from {v}"), "yes".into());
        }
        for (k, v) in self.annotations.iter().flatten() {
            put(format!("annotation {k}"), v.clone());
        }
        if self.blkio_weight != 0 {
            put("blkio weight".into(), self.blkio_weight.to_string());
        }
        for (k, v) in &self.blkio_devices {
            put(format!("blkio {k}"), v.clone());
        }
        for (i, r) in self.device_requests.iter().enumerate() {
            put(format!("device request {}", i + 1), device_request_words(r));
        }
        for (net, words) in &self.endpoints {
            put(format!("network {net} endpoint"), words.clone());
        }
    }
}

fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

fn join_words(words: &[String]) -> String {
    shlex::try_join(words.iter().map(String::as_str)).unwrap_or_else(|_| words.join(" "))
}

fn format_cpus(nano: i64) -> String {
    let s = format!("{:.3}", nano as f64 / 1e9);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The settings of a health check beside its test, as lines
/// (`healthcheck interval: 5s`), so a change names the part that changed.
fn health_parts(h: &Health) -> Vec<(&'static str, String)> {
    let d = |ns: i64| {
        crate::spec::model::GoDuration(std::time::Duration::from_nanos(ns.max(0) as u64))
            .to_string()
    };
    let mut parts = Vec::new();
    for (k, v) in [
        ("interval", h.interval),
        ("timeout", h.timeout),
        ("start period", h.start_period),
    ] {
        if v > 0 {
            parts.push((k, d(v)));
        }
    }
    if h.retries > 0 {
        parts.push(("retries", h.retries.to_string()));
    }
    parts
}

/// The desired container of replica `number` (1-based) of a service: the
/// config plimsoll creates it with. `image_id` is the resolved image (if
/// present on the host).
pub fn desired_config(
    stack: &Stack,
    service: &str,
    svc: &Service,
    number: u32,
    image_id: Option<String>,
) -> ContainerConfig {
    let mut c = ContainerConfig {
        name: replica_name(stack, service, svc, number),
        image: svc.image_ref(&stack.name, service),
        image_id,
        command: svc.command.clone(),
        entrypoint: svc.entrypoint.clone(),
        env: svc
            .environment
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
            .collect(),
        labels: svc.labels.clone(),
        restart: svc.restart.unwrap_or(RestartPolicy::No).to_string(),
        user: svc.user.clone(),
        working_dir: svc.working_dir.clone(),
        hostname: svc.hostname.clone(),
        stop_signal: svc.stop_signal.clone(),
        stop_timeout: svc.stop_grace_period.map(|d| d.0.as_secs() as i64),
        privileged: svc.privileged,
        init: svc.init.unwrap_or(false),
        read_only: svc.read_only,
        cap_add: svc.cap_add.iter().cloned().collect(),
        cap_drop: svc.cap_drop.iter().cloned().collect(),
        extra_hosts: svc
            .extra_hosts
            .iter()
            .map(|h| h.replacen('=', ":", 1))
            .collect(),
        ..ContainerConfig::default()
    };
    c.labels.extend(managed_labels(stack, service, number));
    c.labels.extend(hook_labels(svc));
    if let Some(repo) = &stack.source.repository {
        c.labels.insert(labels::REPOSITORY.into(), repo.clone());
    }
    if svc.plimsoll.prune == Some(false) {
        c.labels.insert(labels::PRUNE.into(), "false".into());
    }
    for p in &svc.ports {
        let key = format!("{}/{}", p.target, p.protocol);
        let bind = format!(
            "{}:{}",
            p.host_ip.as_deref().unwrap_or(""),
            p.published.as_deref().unwrap_or("")
        );
        c.ports.entry(key).or_default().push(bind);
    }
    for binds in c.ports.values_mut() {
        binds.sort();
    }
    for m in &svc.volumes {
        let (kind, source) = match m.kind {
            MountType::Volume => (
                "volume",
                m.source.as_ref().map(|s| {
                    stack
                        .volumes
                        .get(s)
                        .map_or_else(|| s.clone(), |v| v.name.clone())
                }),
            ),
            MountType::Bind => ("bind", m.source.clone()),
            MountType::Tmpfs => ("tmpfs", None),
        };
        c.mounts.insert(
            m.target.clone(),
            MountDesc {
                kind,
                source,
                read_only: m.read_only,
            },
        );
    }
    for (kind, refs, objects, default_dir) in [
        ("secret", &svc.secrets, &stack.secrets, "/run/secrets/"),
        ("config", &svc.configs, &stack.configs, "/"),
    ] {
        for r in refs {
            let target = r
                .target
                .clone()
                .unwrap_or_else(|| format!("{default_dir}{}", r.source));
            let target = if target.starts_with('/') {
                target
            } else {
                format!("{default_dir}{target}")
            };
            if let Some(file) = objects.get(&r.source).and_then(|o| o.file.clone()) {
                c.mounts.insert(
                    target,
                    MountDesc {
                        kind: "bind",
                        source: Some(file),
                        read_only: true,
                    },
                );
            } else {
                // Content from a variable or inline is copied into the container; the spec hash tracks it.
                c.labels
                    .insert(format!("io.plimsoll.{kind}.{}", r.source), target);
            }
        }
    }
    for t in &svc.tmpfs {
        let (path, opts) = t.split_once(':').unwrap_or((t, ""));
        c.tmpfs.insert(path.to_string(), opts.to_string());
    }
    for (net, settings) in &svc.networks {
        let engine_name = network_name(stack, net);
        let mut aliases: BTreeSet<String> = BTreeSet::from([service.to_string()]);
        if let Some(s) = settings {
            aliases.extend(s.aliases.iter().cloned());
        }
        c.networks.insert(engine_name, aliases);
    }
    let limits = svc
        .deploy
        .as_ref()
        .and_then(|d| d.resources.limits.as_ref());
    let reservations = svc
        .deploy
        .as_ref()
        .and_then(|d| d.resources.reservations.as_ref());
    c.memory = svc
        .mem_limit
        .or(limits.and_then(|l| l.memory))
        .map_or(0, |b| b.0 as i64);
    c.memory_reservation = svc
        .mem_reservation
        .or(reservations.and_then(|r| r.memory))
        .map_or(0, |b| b.0 as i64);
    c.nano_cpus = limits
        .and_then(|l| l.cpus)
        .map_or(0, |cpus| (cpus * 1e9).round() as i64);
    c.pids_limit = limits.and_then(|l| l.pids).unwrap_or(0);
    if let Some(h) = &svc.healthcheck {
        let ns = |d: Option<crate::spec::model::GoDuration>| d.map_or(0, |d| d.0.as_nanos() as i64);
        c.healthcheck = Some(if h.is_enabled() {
            Health {
                test: h.test.clone(),
                interval: ns(h.interval),
                timeout: ns(h.timeout),
                retries: h.retries.map_or(0, |r| r as i64),
                start_period: ns(h.start_period),
                start_interval: ns(h.start_interval),
            }
        } else {
            Health {
                test: vec!["NONE".into()],
                ..Health::default()
            }
        });
    }
    for (k, u) in &svc.ulimits {
        let (soft, hard) = match u {
            Ulimit::Single(v) => (*v, *v),
            Ulimit::Pair { soft, hard } => (*soft, *hard),
        };
        c.ulimits.insert(k.clone(), (soft, hard));
    }
    if let Some(l) = &svc.logging {
        c.log = Some((
            l.driver
                .clone()
                .unwrap_or_else(|| DEFAULT_LOG_DRIVER.into()),
            l.options.clone(),
        ));
    }
    if let Some(cpus) = svc.cpus {
        c.nano_cpus = (cpus * 1e9).round() as i64;
    }
    if let Some(pids) = svc.pids_limit {
        c.pids_limit = pids;
    }
    more_desired(stack, svc, &mut c);
    c
}

/// `service:NAME` as the engine takes it: `container:<NAME's container>`.
fn container_ref(stack: &Stack, mode: &str) -> String {
    match mode.strip_prefix("service:") {
        Some(name) => match stack.services.get(name) {
            Some(other) => format!("container:{}", container_name(stack, name, other)),
            None => format!("container:{}-{name}-1", stack.name),
        },
        None => mode.to_string(),
    }
}

/// The desired side of the settings added with issue 7's remaining Compose keys.
fn more_desired(stack: &Stack, svc: &Service, c: &mut ContainerConfig) {
    let service_container = |name: &str| {
        stack.services.get(name).map_or_else(
            || format!("{}-{name}-1", stack.name),
            |other| container_name(stack, name, other),
        )
    };
    c.network_mode = svc.network_mode.as_deref().map(|m| container_ref(stack, m));
    c.ipc = svc.ipc.as_deref().map(|m| container_ref(stack, m));
    c.pid = svc.pid.as_deref().map(|m| container_ref(stack, m));
    c.uts = svc.uts.clone();
    c.userns = svc.userns_mode.clone();
    c.cgroupns = svc.cgroup.clone();
    c.cgroup_parent = svc.cgroup_parent.clone();
    c.runtime = svc.runtime.clone();
    c.platform = svc.platform.clone();
    c.shm_size = svc.shm_size.map_or(0, |b| b.0 as i64);
    c.sysctls = svc.sysctls.clone();
    c.tty = svc.tty;
    c.stdin_open = svc.stdin_open;
    c.devices = svc
        .devices
        .iter()
        .map(|d| {
            let perm = d.permissions.as_deref().unwrap_or("rwm");
            (d.target.clone(), format!("{} {perm}", d.source))
        })
        .collect();
    c.device_cgroup_rules = svc.device_cgroup_rules.iter().cloned().collect();
    c.dns = svc.dns.clone();
    c.dns_search = svc.dns_search.clone();
    c.dns_options = svc.dns_opt.clone();
    c.security_opt = svc
        .security_opt
        .iter()
        .map(|o| svc.seccomp_profiles.get(o).unwrap_or(o).clone())
        .collect();
    c.group_add = svc.group_add.iter().cloned().collect();
    c.domainname = svc.domainname.clone();
    c.mac_address = svc.mac_address.clone();
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
    for link in &svc.links {
        let (name, alias) = link.split_once(':').unwrap_or((link, link));
        c.links
            .insert(format!("{}:{alias}", service_container(name)));
    }
    for link in &svc.external_links {
        let (name, alias) = link.split_once(':').unwrap_or((link, link));
        c.links.insert(format!("{name}:{alias}"));
    }
    for v in &svc.volumes_from {
        let (container, rest) = match v.strip_prefix("container:") {
            Some(rest) => {
                let (name, mode) = rest
                    .split_once(':')
                    .map_or((rest, None), |(n, m)| (n, Some(m)));
                (name.to_string(), mode)
            }
            None => {
                let (name, mode) = v
                    .split_once(':')
                    .map_or((v.as_str(), None), |(n, m)| (n, Some(m)));
                (service_container(name), mode)
            }
        };
        c.volumes_from.insert(match rest {
            Some(mode) => format!("{container}:{mode}"),
            None => container,
        });
    }
    c.annotations = (!svc.annotations.is_empty()).then(|| svc.annotations.clone());
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
    for (net, settings) in &svc.networks {
        let Some(s) = settings else { continue };
        let words = endpoint_words(
            s.ipv4_address.as_deref(),
            s.ipv6_address.as_deref(),
            &s.link_local_ips,
            &s.driver_opts,
        );
        if let Some(words) = words {
            c.endpoints.insert(network_name(stack, net), words);
        }
    }
}

/// The labels that record a service's lifecycle hooks on its containers: a
/// digest of its `post_start` and of its `pre_stop` hooks, each only when
/// there are some (so containers without hooks keep their spec hash). The
/// hooks themselves are not visible on a container; the labels put them in
/// the spec hash and let [`hook_changes`] say which of them changed.
pub fn hook_labels(svc: &Service) -> BTreeMap<String, String> {
    [
        (labels::POST_START, &svc.post_start),
        (labels::PRE_STOP, &svc.pre_stop),
    ]
    .into_iter()
    .filter(|(_, hooks)| !hooks.is_empty())
    .map(|(label, hooks)| {
        let json = serde_json::to_vec(hooks).expect("hooks serialize");
        let digest = Sha256::digest(json);
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        (label.to_string(), hex)
    })
    .collect()
}

/// Which hooks differ between two containers' labels (live, desired), in
/// words: `post_start hooks changed`, `pre_stop hooks added`. The digests
/// are never shown (they are derived from hook environments, which may hold secrets).
pub fn hook_changes(
    live: &BTreeMap<String, String>,
    desired: &BTreeMap<String, String>,
) -> Vec<String> {
    [
        (labels::POST_START, "post_start"),
        (labels::PRE_STOP, "pre_stop"),
    ]
    .into_iter()
    .filter_map(|(label, key)| {
        let what = match (live.get(label), desired.get(label)) {
            (None, Some(_)) => "added",
            (Some(_), None) => "removed",
            (Some(a), Some(b)) if a != b => "changed",
            _ => return None,
        };
        Some(format!("{key} hooks {what}"))
    })
    .collect()
}

/// The spec hash: changes whenever anything that shapes the container
/// changes, including secret contents (only a digest of them is kept).
pub fn spec_hash(config: &ContainerConfig, extra: &[&str]) -> String {
    let mut h = Sha256::new();
    let mut c = config.clone();
    c.image_id = None;
    h.update(serde_json::to_vec(&c).expect("config serializes"));
    for e in extra {
        h.update([0]);
        h.update(e.as_bytes());
    }
    let digest = h.finalize();
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// One changed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added {
        key: String,
        value: String,
    },
    Removed {
        key: String,
        value: String,
    },
    Changed {
        key: String,
        live: String,
        desired: String,
    },
}

/// The lines that differ between live and desired.
pub fn compare(live: &BTreeMap<String, String>, desired: &BTreeMap<String, String>) -> Vec<Change> {
    let keys: BTreeSet<&String> = live.keys().chain(desired.keys()).collect();
    keys.into_iter()
        .filter_map(|k| match (live.get(k), desired.get(k)) {
            (Some(l), Some(d)) if l != d => Some(Change::Changed {
                key: k.clone(),
                live: l.clone(),
                desired: d.clone(),
            }),
            (None, Some(d)) => Some(Change::Added {
                key: k.clone(),
                value: d.clone(),
            }),
            (Some(l), None) => Some(Change::Removed {
                key: k.clone(),
                value: l.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// The reason for one change, in words, with secret values hidden.
pub fn reason(change: &Change, masker: &Masker) -> String {
    // Limits `docker update` changes: said as host versus git.
    let limit = |key: &str| {
        matches!(
            key,
            "memory limit"
                | "memory reservation"
                | "cpus"
                | "cpu shares"
                | "cpu period"
                | "cpu quota"
                | "cpu rt period"
                | "cpu rt runtime"
                | "cpuset"
                | "memory swap"
        )
    };
    match change {
        Change::Changed { key, live, desired } if limit(key) || key == "restart" => {
            format!("{key} {live} on the host, {desired} in git")
        }
        Change::Changed { key, live, desired } if key == "image id" => {
            format!("image re-pointed: the container runs {live}, the tag now names {desired}")
        }
        Change::Changed { .. } => change_words(change, masker),
        Change::Added { key, value } if limit(key) => {
            format!("{key} {value} in git, none on the host")
        }
        Change::Removed { key, value } if limit(key) => {
            format!("{key} {value} on the host, none in git")
        }
        Change::Added { key, .. } if key.starts_with("network ") => {
            format!("{key} disconnected on the host")
        }
        Change::Removed { key, .. } if key.starts_with("network ") => {
            format!("{key} connected on the host, not in git")
        }
        Change::Added { .. } | Change::Removed { .. } => change_words(change, masker),
    }
}

/// One change in words without saying where each side is (`env FOO changed:
/// 1 → 2`, `env DB_PASSWORD changed (value hidden)`, `cpus added: 0.5`,
/// `healthcheck interval 5s → 10s`): the words of [`reason`] that fit two
/// revisions of git as well as live and git. Values already shown (see
/// [`Shown`]) pass through unchanged.
pub fn change_words(change: &Change, masker: &Masker) -> String {
    let show = |key: &str, value: &str| match key.strip_prefix("env ") {
        Some(name) => masker.mask_var(name, value).into_owned(),
        None => masker.mask(value).into_owned(),
    };
    // A value that holds a secret hides both sides: the live one may hold an
    // old secret the masker never saw (`DATABASE_URL=postgres://u:<old>@db`).
    let hidden = |key: &str, a: &str, b: &str| {
        let (x, y) = (show(key, a), show(key, b));
        x != a || y != b || x == y || x.contains(MASK) || y.contains(MASK)
    };
    match change {
        Change::Changed { key, live, desired } if hidden(key, live, desired) => {
            format!("{key} changed (value hidden)")
        }
        // A part of a setting: the part is named, its two values follow.
        Change::Changed { key, live, desired } if names_its_part(key) => {
            format!("{key} {} → {}", show(key, live), show(key, desired))
        }
        Change::Changed { key, live, desired } => format!(
            "{key} changed: {} → {}",
            show(key, live),
            show(key, desired)
        ),
        Change::Added { key, value } => format!("{key} added: {}", show(key, value)),
        Change::Removed { key, .. } => format!("{key} removed"),
    }
}

/// Lines whose change reads `key old → new` (`restart on-failure:3 → always`).
fn names_its_part(key: &str) -> bool {
    (key.starts_with("healthcheck ") && key != "healthcheck")
        || matches!(
            key,
            "restart"
                | "memory limit"
                | "memory reservation"
                | "memory swap"
                | "cpus"
                | "pids limit"
        )
}

use crate::spec::secrets::MASK;

/// How the settings of one service are shown: the masker, and which of the
/// service's fields were built from secret variables (masked whole, both sides).
#[derive(Clone, Copy)]
pub struct Shown<'a> {
    pub masker: &'a Masker,
    pub stack: &'a str,
    pub service: &'a str,
}

/// Lines whose key carries a value of the field (`extra host db:10.0.0.2`):
/// when the field is hidden, the key is shown as `<prefix> ********`.
const VALUE_KEYS: &[&str] = &[
    "extra host ",
    "cap add ",
    "cap drop ",
    "group add ",
    "security opt ",
    "device cgroup rule ",
    "device ",
    "tmpfs ",
    "mount ",
    "port ",
    "network ",
    "ulimit ",
];

impl Shown<'_> {
    /// The Compose keys (relative to the service) a line comes from.
    fn compose_keys(key: &str) -> Vec<Vec<&str>> {
        let entry = |prefix: &str, of: &'static str| {
            key.strip_prefix(prefix).map(|name| vec![vec![of, name]])
        };
        if let Some(k) = entry("env ", "environment")
            .or_else(|| entry("label ", "labels"))
            .or_else(|| entry("sysctl ", "sysctls"))
            .or_else(|| entry("storage opt ", "storage_opt"))
        {
            return k;
        }
        let whole: &[&str] = match key {
            k if k.starts_with("healthcheck") => &["healthcheck"],
            "image" | "image id" => &["image"],
            "restart" => &["restart", "deploy"],
            "replicas" => &["scale", "deploy"],
            "memory limit" => &["mem_limit", "deploy"],
            "memory reservation" => &["mem_reservation", "deploy"],
            "cpus" => &["cpus", "deploy"],
            "pids limit" => &["pids_limit", "deploy"],
            "working dir" => &["working_dir"],
            "stop grace period" => &["stop_grace_period"],
            "logging" => &["logging"],
            k if k.starts_with("extra host ") => &["extra_hosts"],
            k if k.starts_with("cap add ") => &["cap_add"],
            k if k.starts_with("cap drop ") => &["cap_drop"],
            k if k.starts_with("group add ") => &["group_add"],
            k if k.starts_with("security opt") => &["security_opt"],
            k if k.starts_with("device cgroup rule ") => &["device_cgroup_rules"],
            k if k.starts_with("device request") => &["gpus", "deploy"],
            k if k.starts_with("device ") => &["devices"],
            k if k.starts_with("mount ") => &["volumes", "tmpfs"],
            k if k.starts_with("tmpfs ") => &["tmpfs"],
            k if k.starts_with("port ") => &["ports"],
            k if k.starts_with("network ") => &["networks", "network_mode"],
            k if k.starts_with("ulimit ") => &["ulimits"],
            k if k.starts_with("blkio ") => &["blkio_config"],
            k if k.starts_with("dns") => &["dns", "dns_search", "dns_opt"],
            _ => return vec![vec![key]],
        };
        whole.iter().map(|k| vec![*k]).collect()
    }

    /// Whether line `key` shows a field built from a secret variable.
    pub fn hides(&self, key: &str) -> bool {
        let simple = key.replace(' ', "_");
        let mut candidates = Self::compose_keys(key);
        candidates.push(vec![simple.as_str()]);
        candidates.iter().any(|k| {
            let path: Vec<&str> = ["services", self.service]
                .into_iter()
                .chain(k.iter().copied())
                .collect();
            self.masker.hides_field(self.stack, &path)
        })
    }

    /// The key line `key` is shown under.
    pub fn key(&self, key: &str) -> String {
        match VALUE_KEYS.iter().find(|p| key.starts_with(*p)) {
            Some(prefix) if self.hides(key) => format!("{prefix}{MASK}"),
            _ => key.to_string(),
        }
    }

    /// One line's value as shown: hidden whole when built from a secret
    /// variable, by name for a secret variable, else masked by value.
    pub fn value(&self, key: &str, value: &str) -> String {
        if self.hides(key) {
            return MASK.into();
        }
        match key.strip_prefix("env ") {
            Some(name) => self.masker.mask_var(name, value).into_owned(),
            None => self.masker.mask(value).into_owned(),
        }
    }

    /// A container's lines as shown: words masked before they are joined,
    /// then each line by [`Shown::value`].
    pub fn config(&self, config: &ContainerConfig) -> BTreeMap<String, String> {
        self.lines(&config.fields_with(&|w| self.masker.mask(w).into_owned()))
    }

    /// Lines as shown (see [`Shown::config`] for a container's, whose words
    /// are masked before they are joined).
    pub fn lines(&self, fields: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        fields
            .iter()
            .map(|(k, v)| (self.key(k), self.value(k, v)))
            .collect()
    }

    /// The live side's lines as shown beside git's (`desired`, real values):
    /// a live value that differs from a git value holding a masked secret most
    /// likely holds the old secret, which the masker never saw; it is shown
    /// like git's where the text around the secret matches, else hidden.
    pub fn live_lines(
        &self,
        live: &BTreeMap<String, String>,
        desired: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let shown = self.lines(desired);
        let mut out = self.lines(live);
        for (k, v) in live {
            let (Some(want), Some(want_shown)) = (desired.get(k), shown.get(&self.key(k))) else {
                continue;
            };
            if want != v && want_shown != want {
                out.insert(self.key(k), self.masker.mask_like(v, want, want_shown));
            }
        }
        out
    }

    /// The changes (computed on real values) as shown: keys and values of
    /// both sides taken from the shown lines.
    pub fn changes(
        &self,
        changes: &[Change],
        old: &BTreeMap<String, String>,
        new: &BTreeMap<String, String>,
    ) -> Vec<Change> {
        let get = |m: &BTreeMap<String, String>, k: &str| m.get(k).cloned().unwrap_or(MASK.into());
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for c in changes {
            let key = match c {
                Change::Added { key, .. }
                | Change::Removed { key, .. }
                | Change::Changed { key, .. } => self.key(key),
            };
            if !seen.insert(key.clone()) {
                continue;
            }
            out.push(match c {
                Change::Added { .. } => Change::Added {
                    value: get(new, &key),
                    key,
                },
                Change::Removed { .. } => Change::Removed {
                    value: get(old, &key),
                    key,
                },
                Change::Changed { .. } => Change::Changed {
                    live: get(old, &key),
                    desired: get(new, &key),
                    key,
                },
            });
        }
        out
    }
}

/// Changes (as shown) that show nothing: a value that changed where only
/// hidden parts differ.
pub fn hidden_only(change: &Change) -> bool {
    matches!(change, Change::Changed { live, desired, .. } if live == desired)
}

/// The reasons for shown `changes`, worded by `words`; when every change
/// is a hidden value, one reason says so and names them
/// (`only hidden values changed: env DB_PASSWORD`).
pub fn reasons_for(changes: &[Change], words: impl Fn(&Change) -> String) -> Vec<String> {
    if !changes.is_empty() && changes.iter().all(hidden_only) {
        let keys: Vec<&str> = changes
            .iter()
            .map(|c| match c {
                Change::Added { key, .. }
                | Change::Removed { key, .. }
                | Change::Changed { key, .. } => key.as_str(),
            })
            .collect();
        return vec![format!("only hidden values changed: {}", keys.join(", "))];
    }
    changes.iter().map(words).collect()
}

/// A unified diff of two sets of lines already shown (`old` → `new`,
/// headed by `names`); `None` when they read the same.
pub fn unified(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    names: (&str, &str),
) -> Option<String> {
    let text = |fields: &BTreeMap<String, String>| {
        fields
            .iter()
            .map(|(k, v)| format!("{k}: {v}\n"))
            .collect::<String>()
    };
    let (a, b) = (text(old), text(new));
    (a != b).then(|| {
        similar::TextDiff::from_lines(&a, &b)
            .unified_diff()
            .context_radius(2)
            .header(names.0, names.1)
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ContainerConfig {
        ContainerConfig {
            name: "s-a-1".into(),
            image: "busybox:1".into(),
            image_id: Some("sha256:0123456789abcdef".into()),
            restart: "no".into(),
            ..ContainerConfig::default()
        }
    }

    #[test]
    fn device_requests_blkio_and_endpoints_read_as_field_lines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("compose.yaml"),
            "name: s\nservices:\n  a:\n    image: busybox\n    gpus: all\n    blkio_config:\n      weight: 300\n      device_read_bps: [{path: /dev/sda, rate: 1mb}]\n    networks:\n      back: {ipv4_address: 10.1.0.5, link_local_ips: [169.254.1.2]}\n    deploy:\n      resources:\n        reservations:\n          devices: [{capabilities: [tpu], driver: acme, count: 1}]\nnetworks:\n  back: {}\n",
        )
        .unwrap();
        let desired = crate::spec::load_path(dir.path());
        let stack = &desired.stacks[0];
        let svc = &stack.services["a"];
        let fields = desired_config(stack, "a", svc, 1, None).fields();
        let get = |k: &str| fields.get(k).map(String::as_str);
        assert_eq!(
            get("device request 1"),
            Some("all devices, capabilities gpu")
        );
        assert_eq!(
            get("device request 2"),
            Some("driver acme, 1 device, capabilities tpu")
        );
        assert_eq!(get("blkio weight"), Some("300"));
        assert_eq!(get("blkio read bps /dev/sda"), Some("1048576"));
        assert_eq!(
            get("network s_back endpoint"),
            Some("ipv4 10.1.0.5, link-local 169.254.1.2")
        );
    }

    #[test]
    fn a_discarded_blkio_weight_is_not_drift() {
        let mut desired = cfg();
        desired.blkio_weight = 300;
        desired
            .blkio_devices
            .insert("weight /dev/sda".into(), "400".into());
        desired
            .blkio_devices
            .insert("read bps /dev/sda".into(), "1048576".into());
        let mut live = cfg();
        live.blkio_devices
            .insert("read bps /dev/sda".into(), "1048576".into());
        live.align_to(&desired);
        assert_eq!(compare(&live.fields(), &desired.fields()), vec![]);
        // A throttle the engine dropped is drift.
        live.blkio_devices.remove("read bps /dev/sda");
        assert_ne!(compare(&live.fields(), &desired.fields()), vec![]);
    }

    #[test]
    fn image_defaults_are_not_drift() {
        let image = ImageDefaults {
            cmd: Some(vec!["sh".into()]),
            env: BTreeMap::from([("PATH".into(), "/bin".into())]),
            volumes: BTreeSet::from(["/data".into()]),
            ..ImageDefaults::default()
        };
        let mut live = cfg();
        live.command = Some(vec!["sh".into()]);
        live.env.insert("PATH".into(), "/bin".into());
        live.env.insert("A".into(), "1".into());
        live.mounts.insert(
            "/data".into(),
            MountDesc {
                kind: "volume",
                source: None,
                read_only: false,
            },
        );
        live.log = Some((DEFAULT_LOG_DRIVER.into(), BTreeMap::new()));
        live.strip_defaults(&image);
        let mut desired = cfg();
        desired.env.insert("A".into(), "1".into());
        desired.strip_defaults(&image);
        assert_eq!(compare(&live.fields(), &desired.fields()), vec![]);
    }

    #[test]
    fn entrypoint_drops_the_image_command() {
        let image = ImageDefaults {
            cmd: Some(vec!["sh".into()]),
            ..ImageDefaults::default()
        };
        let mut c = cfg();
        c.entrypoint = Some(vec!["/init".into()]);
        c.command = Some(vec![]);
        c.strip_defaults(&image);
        assert_eq!(c.command, None);
    }

    #[test]
    fn reasons_in_words_with_secrets_hidden() {
        let mut m = Masker::new(Default::default());
        m.observe("DB_PASSWORD", "s3cret-canary");
        let mut live = cfg();
        live.env.insert("FOO".into(), "1".into());
        live.env
            .insert("DB_PASSWORD".into(), "old-canary-value".into());
        live.memory = 256 << 20;
        let mut desired = cfg();
        desired.env.insert("FOO".into(), "2".into());
        desired
            .env
            .insert("DB_PASSWORD".into(), "s3cret-canary".into());
        desired.memory = 128 << 20;
        let reasons: Vec<String> = compare(&live.fields(), &desired.fields())
            .iter()
            .map(|c| reason(c, &m))
            .collect();
        assert_eq!(
            reasons,
            vec![
                "env DB_PASSWORD changed (value hidden)",
                "env FOO changed: 1 → 2",
                "memory limit 256 MiB on the host, 128 MiB in git",
            ]
        );
    }

    /// A field built from a secret variable is hidden whole on both sides,
    /// however short; words are masked before quoting could change them.
    #[test]
    fn secret_fields_are_hidden_whole_on_both_sides() {
        let mut m = Masker::new(Default::default());
        m.add_field("s", ["services", "a", "command"].map(String::from).to_vec());
        m.add_field(
            "s",
            ["services", "a", "labels", "pin"]
                .map(String::from)
                .to_vec(),
        );
        m.add_field(
            "s",
            ["services", "a", "extra_hosts"].map(String::from).to_vec(),
        );
        m.observe("API_TOKEN", "it's-a-long-secret");
        let shown = Shown {
            masker: &m,
            stack: "s",
            service: "a",
        };
        let mut live = cfg();
        live.command = Some(vec!["run".into(), "Zq".into()]);
        live.labels.insert("pin".into(), "Wx".into());
        live.labels.insert("team".into(), "web".into());
        live.entrypoint = Some(vec![
            "sh".into(),
            "-c".into(),
            "echo it's-a-long-secret".into(),
        ]);
        let mut desired = live.clone();
        desired.command = Some(vec!["run".into(), "Kv".into()]);
        desired.labels.insert("pin".into(), "Yy".into());
        desired.extra_hosts.insert("Q1:10.0.0.2".into());
        let (old, new) = (
            shown.live_lines(&live.fields(), &desired.fields()),
            shown.config(&desired),
        );
        assert_eq!(new["command"], MASK);
        assert_eq!(old["command"], MASK);
        assert_eq!(new["label pin"], MASK);
        assert_eq!(new["label team"], "web");
        assert_eq!(new["extra host ********"], MASK);
        // Quoting would have turned the secret into `'it'"'"'s-a-long-secret'`.
        assert_eq!(new["entrypoint"], "sh -c 'echo ********'");
        let changes = shown.changes(&compare(&live.fields(), &desired.fields()), &old, &new);
        let reasons = reasons_for(&changes, |c| change_words(c, &m));
        assert_eq!(
            reasons,
            vec![
                "command changed (value hidden)",
                "extra host ******** added: ********",
                "label pin changed (value hidden)",
            ]
        );
        let text = format!("{reasons:?}{:?}", unified(&old, &new, ("live", "git")));
        for leak in ["Zq", "Kv", "Wx", "Yy", "Q1", "long-secret"] {
            assert!(!text.contains(leak), "{leak} in {text}");
        }
    }

    /// Only hidden values changed: said so, and no diff to show.
    #[test]
    fn only_hidden_values_changed_is_said() {
        let mut m = Masker::new(Default::default());
        m.observe("DB_PASSWORD", "new-secret-1");
        m.observe("DB_PASSWORD", "old-secret-1");
        let shown = Shown {
            masker: &m,
            stack: "s",
            service: "a",
        };
        let mut old = cfg();
        old.env.insert("DB_PASSWORD".into(), "old-secret-1".into());
        old.env
            .insert("URL".into(), "postgres://u:old-secret-1@db/x".into());
        let mut new = cfg();
        new.env.insert("DB_PASSWORD".into(), "new-secret-1".into());
        new.env
            .insert("URL".into(), "postgres://u:new-secret-1@db/x".into());
        let (a, b) = (shown.config(&old), shown.config(&new));
        assert_eq!(a["env URL"], "postgres://u:********@db/x");
        assert_eq!(a["env URL"], b["env URL"]);
        let changes = shown.changes(&compare(&old.fields(), &new.fields()), &a, &b);
        assert_eq!(
            reasons_for(&changes, |c| change_words(c, &m)),
            vec!["only hidden values changed: env DB_PASSWORD, env URL"]
        );
        assert_eq!(unified(&a, &b, ("a", "b")), None);
        // The live side's old secret, which the masker never saw, is shown like git's.
        let mut seen = Masker::new(Default::default());
        seen.observe("DB_PASSWORD", "new-secret-1");
        let shown = Shown {
            masker: &seen,
            ..shown
        };
        let live = shown.live_lines(&old.fields(), &new.fields());
        assert_eq!(live["env URL"], "postgres://u:********@db/x");
    }

    /// A health check, restart policy or limit names the part that changed.
    #[test]
    fn changed_parts_are_named() {
        let m = Masker::new(Default::default());
        let mut a = cfg();
        a.healthcheck = Some(Health {
            test: vec!["CMD".into(), "true".into()],
            interval: 5_000_000_000,
            retries: 3,
            ..Health::default()
        });
        a.restart = "on-failure:3".into();
        a.memory = 256 << 20;
        let mut b = a.clone();
        b.healthcheck.as_mut().unwrap().interval = 10_000_000_000;
        b.restart = "always".into();
        b.memory = 512 << 20;
        let words: Vec<String> = compare(&a.fields(), &b.fields())
            .iter()
            .map(|c| change_words(c, &m))
            .collect();
        assert_eq!(
            words,
            vec![
                "healthcheck interval 5s → 10s",
                "memory limit 256 MiB → 512 MiB",
                "restart on-failure:3 → always",
            ]
        );
    }

    fn stack_of(services: &[(&str, Service)]) -> Stack {
        Stack {
            name: "s".into(),
            services: services
                .iter()
                .map(|(n, s)| (n.to_string(), s.clone()))
                .collect(),
            networks: BTreeMap::new(),
            volumes: BTreeMap::new(),
            secrets: BTreeMap::new(),
            configs: BTreeMap::new(),
            extensions: BTreeMap::new(),
            source: Default::default(),
        }
    }

    /// What the engine fills in for a container that does not declare these
    /// keys (and `docker update` cannot change) is not drift.
    #[test]
    fn engine_defaults_of_namespaces_and_sizes_are_not_drift() {
        let mut live = cfg();
        live.ipc = Some("private".into());
        live.cgroupns = Some("host".into());
        live.runtime = Some("runc".into());
        live.shm_size = DEFAULT_SHM_SIZE;
        live.security_opt.insert("label=disable".into());
        live.memory = 128 << 20;
        live.memory_swap = 256 << 20;
        live.endpoint_macs
            .insert("s_default".into(), "02:42:ac:11:00:02".into());
        let mut desired = cfg();
        desired.memory = 128 << 20;
        // Discarded by an engine on cgroup v2 or without swap accounting.
        desired.memory_swappiness = Some(30);
        desired.oom_kill_disable = true;
        live.align_to(&desired);
        assert_eq!(compare(&live.fields(), &desired.fields()), vec![]);
    }

    /// Declared keys are compared; limits `docker update` changes read as host versus git.
    #[test]
    fn declared_keys_are_compared() {
        let m = Masker::new(Default::default());
        let mut desired = cfg();
        desired.shm_size = 32 << 20;
        desired.ipc = Some("shareable".into());
        desired.cpu_shares = 512;
        desired.memory = 128 << 20;
        desired.memory_swap = 256 << 20;
        desired
            .sysctls
            .insert("net.core.somaxconn".into(), "1024".into());
        desired.dns = vec!["1.1.1.1".into()];
        let mut live = desired.clone();
        live.shm_size = DEFAULT_SHM_SIZE;
        live.cpu_shares = 256;
        live.memory_swap = 512 << 20;
        live.sysctls.clear();
        live.dns.clear();
        live.align_to(&desired);
        let reasons: Vec<String> = compare(&live.fields(), &desired.fields())
            .iter()
            .map(|c| reason(c, &m))
            .collect();
        assert_eq!(
            reasons,
            vec![
                "cpu shares 256 on the host, 512 in git",
                "dns added: 1.1.1.1",
                "memory swap 512 MiB on the host, 256 MiB in git",
                "shm size changed: 64 MiB → 32 MiB",
                "sysctl net.core.somaxconn added: 1024",
            ]
        );
    }

    /// `service:NAME` namespaces, links and volumes_from name the other
    /// service's container, as the engine takes them.
    #[test]
    fn desired_config_names_the_containers_of_services() {
        let db = Service {
            container_name: Some("the-db".into()),
            ..Service::default()
        };
        let web = Service {
            network_mode: Some("service:db".into()),
            ipc: Some("service:db".into()),
            pid: Some("host".into()),
            links: vec!["db:database".into(), "cache".into()],
            external_links: vec!["redis_1".into(), "legacy_db_1:mysql".into()],
            volumes_from: vec![
                "db:ro".into(),
                "container:outside:rw".into(),
                "cache".into(),
            ],
            devices: vec![crate::spec::model::Device {
                source: "/dev/fuse".into(),
                target: "/dev/fuse".into(),
                permissions: None,
            }],
            cpus: Some(1.5),
            pids_limit: Some(-1),
            ..Service::default()
        };
        let cache = Service::default();
        let stack = stack_of(&[("db", db), ("web", web.clone()), ("cache", cache)]);
        let c = desired_config(&stack, "web", &web, 1, None);
        assert_eq!(c.network_mode.as_deref(), Some("container:the-db"));
        assert_eq!(c.ipc.as_deref(), Some("container:the-db"));
        assert_eq!(c.pid.as_deref(), Some("host"));
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(
            c.links,
            set(&[
                "the-db:database",
                "s-cache-1:cache",
                "redis_1:redis_1",
                "legacy_db_1:mysql"
            ])
        );
        assert_eq!(
            c.volumes_from,
            set(&["the-db:ro", "outside:rw", "s-cache-1"])
        );
        assert_eq!(c.devices["/dev/fuse"], "/dev/fuse rwm");
        assert_eq!(c.nano_cpus, 1_500_000_000);
        assert!(c.fields().contains_key("cpus") && !c.fields().contains_key("pids limit"));
    }

    /// Mounts a container gets through `volumes_from`, a MAC address the
    /// engine assigned, and annotations an older engine does not report are
    /// not drift; a declared MAC address that differs is.
    #[test]
    fn inherited_mounts_assigned_macs_and_unreported_annotations() {
        let mut desired = cfg();
        desired.volumes_from.insert("s-data-1:ro".into());
        desired.annotations = Some(BTreeMap::from([("a".into(), "b".into())]));
        let mut live = desired.clone();
        live.annotations = None;
        live.mounts.insert(
            "/data".into(),
            MountDesc {
                kind: "volume",
                source: None,
                read_only: true,
            },
        );
        live.endpoint_macs
            .insert("s_default".into(), "02:42:ac:11:00:05".into());
        live.align_to(&desired);
        assert_eq!(compare(&live.fields(), &desired.fields()), vec![]);

        desired.mac_address = Some("02:42:ac:11:00:02".into());
        let mut live2 = desired.clone();
        live2.mac_address = None;
        live2
            .endpoint_macs
            .insert("s_default".into(), "02:42:ac:11:00:05".into());
        live2.align_to(&desired);
        assert_eq!(
            compare(&live2.fields(), &desired.fields()),
            vec![Change::Changed {
                key: "mac address".into(),
                live: "02:42:ac:11:00:05".into(),
                desired: "02:42:ac:11:00:02".into(),
            }]
        );
    }

    /// Hooks are in the spec hash (through their labels) but no field line:
    /// the engine does not show them. A service without hooks gets no hook
    /// label, so its containers keep the hash they had before hooks existed.
    #[test]
    fn hooks_change_the_spec_hash_only_when_set() {
        use crate::spec::model::Hook;
        let plain = Service::default();
        let hooked = Service {
            post_start: vec![Hook {
                command: vec!["touch".into(), "/ready".into()],
                environment: BTreeMap::from([("API_TOKEN".into(), Some("tok-canary-1".into()))]),
                ..Hook::default()
            }],
            ..Service::default()
        };
        let stack = stack_of(&[("web", plain.clone())]);
        let config = |svc: &Service| desired_config(&stack, "web", svc, 1, None);
        let json = serde_json::to_string(&config(&plain)).unwrap();
        assert!(!json.contains("post-start") && !json.contains("pre-stop"));
        assert_eq!(hook_labels(&plain), BTreeMap::new());
        assert_ne!(
            spec_hash(&config(&plain), &[]),
            spec_hash(&config(&hooked), &[])
        );
        assert_eq!(config(&plain).fields(), config(&hooked).fields());
        let mut other_secret = hooked.clone();
        other_secret.post_start[0].environment =
            BTreeMap::from([("API_TOKEN".into(), Some("tok-canary-2".into()))]);
        let (a, b) = (config(&hooked).labels, config(&other_secret).labels);
        assert_eq!(hook_changes(&a, &b), vec!["post_start hooks changed"]);
        assert!(!b[labels::POST_START].contains("canary"));
        assert_eq!(hook_changes(&a, &a), Vec::<String>::new());
    }

    /// The keys added later stay out of the serialized config while unset, so
    /// the spec hash of a container that uses none of them does not change.
    #[test]
    fn unset_new_keys_keep_the_spec_hash() {
        let json = serde_json::to_value(cfg()).unwrap();
        let keys: BTreeSet<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for new in [
            "network_mode",
            "ipc",
            "shm_size",
            "sysctls",
            "tty",
            "devices",
            "dns",
            "links",
            "volumes_from",
            "annotations",
            "memory_swap",
            "cpu_shares",
            "platform",
        ] {
            assert!(!keys.contains(new), "{new} is serialized while unset");
        }
        assert!(keys.contains("log") && keys.contains("extra_hosts"));
    }
}
