//! The compared model of one container: [`ContainerConfig`], both sides of
//! the diff (the desired one from the spec, the live one from `docker
//! inspect`), and what an image supplies ([`ImageDefaults`]).
//!
//! Its serialized form is the spec hash stored on every container plimsoll
//! made: fields keep their order, and a field added later is left out while
//! unset (pinned by `keys::pins`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::spec::model::DeviceRequest;

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
