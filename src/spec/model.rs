//! The normalized desired state: one typed model for every short and long
//! Compose syntax.
//!
//! Serializing a [`Stack`] gives Compose's canonical form, the shape `docker
//! compose config --format json` prints (environment and labels as maps,
//! command as a list, ports and volumes in long form), so `plimsoll render` is
//! this model serialized and masked. Later stages (diff, plan) compare this
//! model with the live one; the JSON Schema in `schemas/stack.json` is
//! generated from these types.
//!
//! Invariant: values here are final: interpolated, `$$` turned into `$`,
//! relative paths resolved, defaults that Compose fills in filled in.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Serialize, Serializer};

use super::diag::Mark;

/// One stack: a Compose project.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Stack {
    /// The project name: Compose's `name:`, else the directory name normalized.
    pub name: String,
    pub services: BTreeMap<String, Service>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, Network>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, Volume>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, FileObject>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, FileObject>,
    /// `x-` fields at the top level, kept as written.
    #[serde(flatten)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub extensions: BTreeMap<String, serde_json::Value>,
    /// Where this stack came from; not part of the rendered form.
    #[serde(skip)]
    pub source: StackSource,
}

/// Where a stack was loaded from.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StackSource {
    /// The stack directory (Compose's project directory).
    pub dir: PathBuf,
    /// The Compose file.
    pub file: PathBuf,
    /// Where each service and each of its keys was written, by key path:
    /// `"services.api"`, `"services.api.ports"`, `"services.api.depends_on.db"`.
    pub marks: BTreeMap<String, Mark>,
    /// The variables interpolation saw (process environment over `.env`).
    pub variables: BTreeMap<String, String>,
    /// The repository this stack was loaded from as part of (its canonical
    /// root), when PATH was a whole repository.
    pub repository: Option<String>,
    /// For a stack loaded from a stored revision: the build hash each
    /// service that builds was built from (`io.plimsoll.build`), so the
    /// image built for that revision is used again instead of building.
    pub pinned_builds: BTreeMap<String, String>,
    /// The stack directory, absolute (what relative paths resolved against).
    pub abs_dir: PathBuf,
    /// The repository root the stack was read from: the root reads were
    /// confined to (the git work tree holding PATH, else PATH's directory).
    /// Paths under it are compared relative to it (`crate::mounts`).
    pub root: Option<PathBuf>,
}

impl StackSource {
    /// The place a service key was written (`key` is relative to the service,
    /// e.g. `depends_on.db`), or the service itself, or the file.
    pub fn mark(&self, service: &str, key: &str) -> Mark {
        self.marks
            .get(&format!("services.{service}.{key}"))
            .or_else(|| self.marks.get(&format!("services.{service}")))
            .copied()
            .unwrap_or_default()
    }
}

/// One service of a stack.
#[derive(Debug, Clone, PartialEq, Default, Serialize, JsonSchema)]
pub struct Service {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Accepted for Compose compatibility; a detached host attaches to no logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attach: Option<bool>,
    /// Build the image on the host (`build:`); see [`Build`].
    /// Block I/O weight and throttles (`blkio_config`).
    #[serde(skip_serializing_if = "BlkioConfig::is_empty")]
    pub blkio_config: BlkioConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// The cgroup namespace: `host` or `private`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_period: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_rt_period: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_rt_runtime: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<i64>,
    /// Number of CPUs, like `deploy.resources.limits.cpus`.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_cpus"
    )]
    pub cpus: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuset: Option<String>,
    /// Dependencies, including the ones Compose infers from `links`,
    /// `volumes_from` and `service:` namespaces.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub depends_on: BTreeMap<String, Dependency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy: Option<Deploy>,
    /// cgroup rules for devices created later, like `c 1:3 mr`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_cgroup_rules: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_opt: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domainname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// The final environment; `None` for a `- NAME` entry with no value anywhere.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, Option<String>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<String>,
    /// Containers outside the stack, `NAME` or `NAME:ALIAS`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_links: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    /// GPUs to hand to the container (`gpus: all` is one request of every GPU).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<DeviceRequest>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    /// The IPC namespace: `private`, `shareable`, `host`, `service:NAME` or `container:NAME`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    /// Labels, `label_file` entries merged in under them.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Services of the stack, `SERVICE` or `SERVICE:ALIAS`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_limit: Option<Bytes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_reservation: Option<Bytes>,
    /// 0 to 100; printed as a string, as Compose prints it.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_as_string"
    )]
    #[schemars(with = "Option<String>")]
    pub mem_swappiness: Option<i64>,
    /// Memory plus swap in bytes, `-1` for unlimited; printed as a string.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_as_string"
    )]
    #[schemars(with = "Option<String>")]
    pub memswap_limit: Option<i64>,
    /// `host`, `none`, `bridge`, `service:NAME` or `container:NAME`; excludes `networks`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// Networks and their per-service settings; `null` settings mean "defaults".
    /// Empty only with `network_mode`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, Option<ServiceNetwork>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub oom_kill_disable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i64>,
    /// The PID namespace: `host`, `service:NAME` or `container:NAME`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// Commands run in each container right after plimsoll starts it, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub post_start: Vec<Hook>,
    /// Commands run in a running container before plimsoll stops it, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pre_stop: Vec<Hook>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// How many containers run this service (like `deploy.replicas`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<FileRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    /// `seccomp=<file>` entries of `security_opt` with the profile read
    /// from the file (compact JSON), as the engine takes them; not rendered.
    #[serde(skip)]
    pub seccomp_profiles: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<Bytes>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stdin_open: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<FileRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<GoDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub storage_opt: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tmpfs: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ulimits: BTreeMap<String, Ulimit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userns_mode: Option<String>,
    /// The UTS namespace: `host`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uts: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Mount>,
    /// `SERVICE[:ro|rw]` or `container:NAME[:ro|rw]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// plimsoll's own per-service settings.
    #[serde(
        rename = "x-plimsoll",
        skip_serializing_if = "PlimsollService::is_default"
    )]
    pub plimsoll: PlimsollService,
    /// Other `x-` fields, kept as written.
    #[serde(flatten)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub extensions: BTreeMap<String, serde_json::Value>,
}

impl Service {
    /// The namespaces joined with another service (`service:NAME`): the
    /// key (`network_mode`, `ipc`, `pid`, `uts`, `cgroup`) and that service.
    pub fn service_namespaces(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("network_mode", &self.network_mode),
            ("ipc", &self.ipc),
            ("pid", &self.pid),
            ("uts", &self.uts),
            ("cgroup", &self.cgroup),
        ]
        .into_iter()
        .filter_map(|(key, mode)| Some((key, mode.as_deref()?.strip_prefix("service:")?)))
    }

    /// How many containers run this service: `scale`, else
    /// `deploy.replicas`, else 1. Containers are `<stack>-<service>-1..N`.
    pub fn replicas(&self) -> u32 {
        self.scale
            .or(self.deploy.as_ref().and_then(|d| d.replicas))
            .unwrap_or(1)
    }

    /// The image reference this service runs: `image:`, else, for a service
    /// that builds, Compose's name for the built image: `<stack>-<service>`.
    pub fn image_ref(&self, stack: &str, service: &str) -> String {
        match (&self.image, &self.build) {
            (Some(image), _) => image.clone(),
            (None, Some(_)) => format!("{stack}-{service}"),
            (None, None) => String::new(),
        }
    }

    /// Whether plimsoll builds this service's image on the host: it has
    /// `build:`, and `pull_policy` is not `always` (pull instead) or `never`.
    pub fn builds(&self) -> bool {
        self.build.is_some()
            && !matches!(
                self.pull_policy,
                Some(PullPolicy::Always) | Some(PullPolicy::Never)
            )
    }
}

/// A lifecycle hook (`post_start`, `pre_stop`): a command run inside the
/// container through the engine's exec API.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
pub struct Hook {
    /// The command and its arguments (a string is split into words, as for `command:`).
    pub command: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Variables set for the command; `None` for a `- NAME` entry (passed as
    /// `NAME`, not looked up in the project environment, as in Compose).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, Option<String>>,
}

/// `build:` in long form, as `docker compose config` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
pub struct Build {
    /// The build context: an absolute directory (relative ones resolve against the stack directory).
    pub context: String,
    /// The Dockerfile, relative to the context (or absolute); `Dockerfile`
    /// unless `dockerfile_inline` is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// The Dockerfile's text, instead of a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dockerfile_inline: Option<String>,
    /// Build arguments; a name without a value takes it from the environment
    /// (and is left out when the environment has none), as in Compose.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cache_from: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_cache: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pull: bool,
    /// `HOST=IP`, sorted, as Compose prints them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    /// The network `RUN` instructions use (`host`, `none`, a network name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The stage of a multi-stage Dockerfile to build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<Bytes>,
    /// More tags for the built image, besides the service's image name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// `depends_on` in long form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Dependency {
    pub condition: Condition,
    /// Compose's `restart: true`: restart this service when the dependency is recreated.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub restart: bool,
    pub required: bool,
}

/// What a dependent waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    ServiceStarted,
    ServiceHealthy,
    ServiceCompletedSuccessfully,
}

impl Condition {
    pub const ALL: [(&'static str, Condition); 3] = [
        ("service_started", Condition::ServiceStarted),
        ("service_healthy", Condition::ServiceHealthy),
        (
            "service_completed_successfully",
            Condition::ServiceCompletedSuccessfully,
        ),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Condition::ServiceStarted => "service_started",
            Condition::ServiceHealthy => "service_healthy",
            Condition::ServiceCompletedSuccessfully => "service_completed_successfully",
        }
    }
}

/// `deploy:`; `replicas` and `resources` are honoured on a single host.
#[derive(Debug, Clone, PartialEq, Default, Serialize, JsonSchema)]
pub struct Deploy {
    /// How many containers run this service (like `scale`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    #[serde(skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, JsonSchema)]
pub struct Resources {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceSet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservations: Option<ResourceSet>,
}

impl Resources {
    pub fn is_empty(&self) -> bool {
        self.limits.is_none() && self.reservations.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, JsonSchema)]
pub struct ResourceSet {
    /// Number of CPUs (`0.5`, `2`; a whole number prints without a fraction, as in Compose).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_cpus"
    )]
    pub cpus: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Bytes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
    /// `reservations.devices`: devices (GPUs, ...) the engine's device drivers hand over.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceRequest>,
}

/// A request for devices of a device driver: an entry of `gpus` or of
/// `deploy.resources.reservations.devices`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
pub struct DeviceRequest {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// How many devices; `-1` (`all`) for every one. Unset with `device_ids`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_ids: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// `blkio_config`: the cgroup block I/O weight and per-device limits.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
pub struct BlkioConfig {
    /// Relative weight, 10 to 1000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub weight_device: Vec<WeightDevice>,
    /// Bytes per second read from a device.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_read_bps: Vec<ThrottleDevice>,
    /// Operations per second read from a device.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_read_iops: Vec<ThrottleDevice>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_write_bps: Vec<ThrottleDevice>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_write_iops: Vec<ThrottleDevice>,
}

impl BlkioConfig {
    pub fn is_empty(&self) -> bool {
        *self == BlkioConfig::default()
    }

    /// The four throttle lists with their keys.
    pub fn throttles(&self) -> [(&'static str, &[ThrottleDevice]); 4] {
        [
            ("device_read_bps", &self.device_read_bps),
            ("device_read_iops", &self.device_read_iops),
            ("device_write_bps", &self.device_write_bps),
            ("device_write_iops", &self.device_write_iops),
        ]
    }
}

/// A device's block I/O weight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct WeightDevice {
    pub path: String,
    pub weight: u16,
}

/// A device's block I/O limit: bytes or operations per second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ThrottleDevice {
    pub path: String,
    /// Printed as a string, as Compose prints it.
    pub rate: Bytes,
}

/// A health check in long form.
#[derive(Debug, Clone, PartialEq, Default, Serialize, JsonSchema)]
pub struct Healthcheck {
    /// `["CMD", ...]`, `["CMD-SHELL", "..."]` or `["NONE"]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GoDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<GoDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_period: Option<GoDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<GoDuration>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disable: bool,
}

impl Healthcheck {
    /// Whether this check runs (not disabled, not `NONE`, has a test or inherits one).
    pub fn is_enabled(&self) -> bool {
        !self.disable && self.test.first().map(String::as_str) != Some("NONE")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
pub struct Logging {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// A service's settings on one network.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
pub struct ServiceNetwork {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub link_local_ips: Vec<String>,
    /// Options of the network driver for this endpoint.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
}

/// A host device mapped into the container, in long form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Device {
    pub source: String,
    pub target: String,
    /// cgroup permissions: some of `r`, `w`, `m`; the engine's default is
    /// `rwm` (the short syntax writes it out, as Compose does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
}

/// A published or exposed port in long form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Port {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    pub target: u16,
    /// A port or a range (`"8000-8010"`); `None` lets the engine choose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    pub protocol: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

impl Port {
    /// The published host ports as an inclusive range, if any.
    pub fn published_range(&self) -> Option<(u16, u16)> {
        let p = self.published.as_deref()?;
        match p.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => p.parse().ok().map(|n| (n, n)),
        }
    }
}

/// The kind of a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MountType {
    Volume,
    Bind,
    Tmpfs,
}

/// A mount in long form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Mount {
    #[serde(rename = "type")]
    pub kind: MountType,
    /// Named volume, absolute host path, or `None` for an anonymous volume / tmpfs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub target: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<BindOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<TmpfsOptions>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
pub struct BindOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub propagation: Option<String>,
    /// Create a missing host directory: implied by the short syntax, off by
    /// default in the long syntax (Compose's rule).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub create_host_path: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selinux: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
pub struct VolumeOptions {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub nocopy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
pub struct TmpfsOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<Bytes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

/// A restart policy, as Compose spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(with = "String")]
pub enum RestartPolicy {
    No,
    Always,
    UnlessStopped,
    /// `on-failure` or `on-failure:N`.
    OnFailure(Option<u32>),
}

impl RestartPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "no" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => RestartPolicy::OnFailure(None),
            _ => RestartPolicy::OnFailure(Some(s.strip_prefix("on-failure:")?.parse().ok()?)),
        })
    }

    /// The policy name without a retry count, as policy rules name it.
    pub fn name(self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
            RestartPolicy::OnFailure(_) => "on-failure",
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartPolicy::OnFailure(Some(n)) => write!(f, "on-failure:{n}"),
            other => f.write_str(other.name()),
        }
    }
}

impl Serialize for RestartPolicy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `pull_policy`.
#[derive(Debug, Clone, PartialEq, Eq, JsonSchema)]
#[schemars(with = "String")]
pub enum PullPolicy {
    Always,
    Never,
    Missing,
    Build,
    /// `daily`, `weekly` or `every_<duration>`: pulled again when the copy on
    /// the host was pulled longer ago than `period`.
    Refresh {
        /// As written (`daily`, `every_12h`), which is what Compose prints.
        written: String,
        period: Duration,
    },
}

impl PullPolicy {
    pub fn as_str(&self) -> &str {
        match self {
            PullPolicy::Always => "always",
            PullPolicy::Never => "never",
            PullPolicy::Missing => "missing",
            PullPolicy::Build => "build",
            PullPolicy::Refresh { written, .. } => written,
        }
    }

    /// Compose's refresh policies: `daily`, `weekly`, `every_<N><w|d|h|m|s>...`.
    pub fn refresh(written: &str) -> Option<PullPolicy> {
        let period = match written {
            "daily" => Duration::from_secs(86_400),
            "weekly" => Duration::from_secs(7 * 86_400),
            _ => {
                let mut rest = written.strip_prefix("every_").filter(|r| !r.is_empty())?;
                let mut secs = 0u64;
                while !rest.is_empty() {
                    let digits = rest.find(|c: char| !c.is_ascii_digit())?;
                    let n: u64 = rest[..digits].parse().ok()?;
                    let unit = match rest[digits..].chars().next()? {
                        'w' => 7 * 86_400,
                        'd' => 86_400,
                        'h' => 3_600,
                        'm' => 60,
                        's' => 1,
                        _ => return None,
                    };
                    secs = secs.checked_add(n.checked_mul(unit)?)?;
                    rest = &rest[digits + 1..];
                }
                Duration::from_secs(secs)
            }
        };
        Some(PullPolicy::Refresh {
            written: written.to_string(),
            period,
        })
    }
}

impl Serialize for PullPolicy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A ulimit: one value for both soft and hard, or each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Ulimit {
    Single(i64),
    Pair { soft: i64, hard: i64 },
}

/// A service's use of a top-level secret or config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct FileRef {
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    /// File mode, printed in octal as Compose prints it: `"0440"`.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_octal_mode"
    )]
    #[schemars(with = "Option<String>")]
    pub mode: Option<u32>,
}

impl FileRef {
    /// A use of `source` with nothing else said.
    pub fn named(source: &str) -> Self {
        Self {
            source: source.to_string(),
            target: None,
            uid: None,
            gid: None,
            mode: None,
        }
    }
}

fn serialize_octal_mode<S: Serializer>(mode: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
    match mode {
        Some(m) => s.collect_str(&format_args!("0{m:o}")),
        None => s.serialize_none(),
    }
}

fn serialize_as_string<S: Serializer>(v: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

fn serialize_cpus<S: Serializer>(cpus: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match cpus {
        // A whole number prints without a fraction, as Go prints a float32.
        Some(c) if c.fract() == 0.0 && c.abs() < 1e15 => s.serialize_i64(*c as i64),
        Some(c) => s.serialize_f64(*c),
        None => s.serialize_none(),
    }
}

/// A top-level secret or config: content from a file, an environment variable or inline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct FileObject {
    pub name: String,
    /// Absolute path of the file holding the content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Name of the variable holding the content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Inline content (configs; a secret or config whose `file:` is
    /// age-encrypted holds its decrypted content here, copied into the container).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// The content was decrypted from an age file: it is secret (masked
    /// whole by `render`, even when short). Not part of the rendered form.
    #[serde(skip)]
    pub encrypted: bool,
}

/// A top-level network.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
pub struct Network {
    /// The engine-side name: `<stack>_<key>` unless `name:` or `external`.
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Ipam>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub attachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_ipv6: Option<bool>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A network's IP address management.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
pub struct Ipam {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<IpamPool>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// One address pool of a network.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
pub struct IpamPool {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub aux_addresses: BTreeMap<String, String>,
}

/// A top-level named volume.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
pub struct Volume {
    /// The engine-side name: `<stack>_<key>` unless `name:` or `external`.
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// `x-plimsoll:` on a service.
#[derive(Debug, Clone, PartialEq, Default, Serialize, serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlimsollService {
    /// Revert drift of this service automatically (default: the stack's / agent's setting).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_heal: Option<bool>,
    /// `false` exempts this service from prune.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune: Option<bool>,
    /// Fields whose drift is expected and not reverted, e.g. `["environment.BUILD_ID"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
    /// How long to wait for this service's gate (default: from its health check).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_timeout: Option<GoDuration>,
    /// How a change of this service is rolled out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// Variables of this service whose values are secret, whatever their names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<String>,
    /// What a change to the content of a repository file or directory this
    /// service bind-mounts does: `recreate` the container (the default) or
    /// `restart` it, when nothing else changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_mount_change: Option<OnMountChange>,
}

/// `x-plimsoll.on_mount_change`: how a changed mounted file reaches a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnMountChange {
    /// Replace the container (it is created with the new content).
    #[default]
    Recreate,
    /// Restart the container: its bind mounts are set up again, so it sees
    /// the new content, and nothing else about it changes.
    Restart,
}

impl PlimsollService {
    fn is_default(&self) -> bool {
        *self == PlimsollService::default()
    }
}

/// How a changed service is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Rollout {
    /// Keep the old container (stopped, renamed) until the new one passes its gate.
    StartFirst,
    /// Stop the old container first (needed when it holds a host port or a fixed name).
    StopFirst,
}

/// A size in bytes, printed as a decimal string as Compose prints it
/// (`"268435456"`); a Compose file may write `128m`, `1g`, `512MiB` or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[schemars(with = "String")]
pub struct Bytes(pub u64);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl Bytes {
    /// Parses Docker's RAM notation (binary multiples: `k` = 1024).
    pub fn parse(s: &str) -> Option<Bytes> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let num: f64 = num.parse().ok()?;
        let unit = unit.trim().to_ascii_lowercase();
        let unit = unit.strip_suffix('b').unwrap_or(&unit);
        let unit = unit.strip_suffix('i').unwrap_or(unit);
        let mult: u64 = match unit {
            "" => 1,
            "k" => 1 << 10,
            "m" => 1 << 20,
            "g" => 1 << 30,
            "t" => 1 << 40,
            "p" => 1 << 50,
            _ => return None,
        };
        (num >= 0.0).then_some(Bytes((num * mult as f64) as u64))
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
            ("B", 1),
        ];
        for (name, size) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{} {name}", self.0 / size);
            }
        }
        write!(f, "{} B", self.0)
    }
}

/// A duration written and printed the way Go's `time.Duration` is (`1m30s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, JsonSchema)]
#[schemars(with = "String")]
pub struct GoDuration(pub Duration);

impl GoDuration {
    /// Parses Go's duration syntax: a sequence of decimal numbers with units
    /// `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`, e.g. `1m30s`, `1.5h`, `300ms`, `0`.
    pub fn parse(s: &str) -> Option<GoDuration> {
        let s = s.trim();
        if s == "0" {
            return Some(GoDuration(Duration::ZERO));
        }
        if s.is_empty() || s.starts_with('-') {
            return None;
        }
        let mut rest = s.strip_prefix('+').unwrap_or(s);
        let mut total = 0f64;
        while !rest.is_empty() {
            let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
            if num_end == 0 {
                return None;
            }
            let num: f64 = rest[..num_end].parse().ok()?;
            rest = &rest[num_end..];
            let unit_end = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let nanos = match &rest[..unit_end] {
                "ns" => 1e0,
                "us" | "µs" | "μs" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                "m" => 60e9,
                "h" => 3600e9,
                _ => return None,
            };
            total += num * nanos;
            rest = &rest[unit_end..];
        }
        Some(GoDuration(Duration::from_nanos(total.round() as u64)))
    }
}

impl fmt::Display for GoDuration {
    /// Go's `Duration.String()`: `1m30s`, `1h0m0s`, `300ms`, `1.5s`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        if nanos < 1_000_000_000 {
            let (div, unit) = match nanos {
                n if n < 1_000 => (1u128, "ns"),
                n if n < 1_000_000 => (1_000, "µs"),
                _ => (1_000_000, "ms"),
            };
            return write!(f, "{}{unit}", trim_fraction(nanos, div));
        }
        let secs_total = nanos / 1_000_000_000;
        let (h, m) = (secs_total / 3600, (secs_total % 3600) / 60);
        let secs = trim_fraction(nanos % 60_000_000_000, 1_000_000_000);
        if h > 0 {
            write!(f, "{h}h{m}m{secs}s")
        } else if m > 0 {
            write!(f, "{m}m{secs}s")
        } else {
            write!(f, "{secs}s")
        }
    }
}

fn trim_fraction(value: u128, div: u128) -> String {
    let (whole, frac) = (value / div, value % div);
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let frac = format!("{frac:0width$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for GoDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        GoDuration::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid duration `{s}`: use a number with a unit, like 30s, 1m30s or 500ms"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_pull_policies_parse_compose_durations() {
        let period = |s: &str| match PullPolicy::refresh(s) {
            Some(PullPolicy::Refresh { period, written }) => {
                assert_eq!(written, s);
                Some(period.as_secs())
            }
            _ => None,
        };
        assert_eq!(period("daily"), Some(86_400));
        assert_eq!(period("weekly"), Some(604_800));
        assert_eq!(period("every_12h"), Some(43_200));
        assert_eq!(period("every_1w2d"), Some(9 * 86_400));
        assert_eq!(period("every_1h30m15s"), Some(5_415));
        for bad in [
            "every_",
            "every_12",
            "every_12x",
            "every_h",
            "hourly",
            "every_1.5h",
        ] {
            assert_eq!(period(bad), None, "{bad}");
        }
        let p = PullPolicy::refresh("every_1d").unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"every_1d\"");
    }

    #[test]
    fn durations_parse_and_print_like_go() {
        for (input, printed) in [
            ("1m30s", "1m30s"),
            ("90s", "1m30s"),
            ("1h", "1h0m0s"),
            ("1.5s", "1.5s"),
            ("300ms", "300ms"),
            ("0", "0s"),
            ("10us", "10µs"),
            ("2h3m4s", "2h3m4s"),
            ("1m0.5s", "1m0.5s"),
        ] {
            let d = GoDuration::parse(input).unwrap_or_else(|| panic!("{input}"));
            assert_eq!(d.to_string(), printed, "{input}");
        }
        for bad in ["", "30", "1x", "-1s", "s", "1m30"] {
            assert!(GoDuration::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn bytes_parse_binary_units() {
        assert_eq!(Bytes::parse("128m"), Some(Bytes(128 << 20)));
        assert_eq!(Bytes::parse("1g"), Some(Bytes(1 << 30)));
        assert_eq!(Bytes::parse("512MiB"), Some(Bytes(512 << 20)));
        assert_eq!(Bytes::parse("1.5k"), Some(Bytes(1536)));
        assert_eq!(Bytes::parse("1024"), Some(Bytes(1024)));
        assert_eq!(Bytes::parse("12x"), None);
        assert_eq!(Bytes(256 << 20).to_string(), "256 MiB");
    }

    /// Sizes, CPUs and file modes print the way `docker compose config --format json` does.
    #[test]
    fn serializes_like_compose() {
        assert_eq!(
            serde_json::to_value(Bytes(268_435_456)).unwrap(),
            serde_json::json!("268435456")
        );
        let set = |cpus| {
            serde_json::to_value(ResourceSet {
                cpus: Some(cpus),
                ..ResourceSet::default()
            })
            .unwrap()
        };
        assert_eq!(set(2.0), serde_json::json!({"cpus": 2}));
        assert_eq!(set(0.5), serde_json::json!({"cpus": 0.5}));
        let file = |mode| FileRef {
            source: "s".into(),
            target: None,
            uid: None,
            gid: None,
            mode,
        };
        assert_eq!(
            serde_json::to_value(file(Some(0o440))).unwrap(),
            serde_json::json!({"source": "s", "mode": "0440"})
        );
        assert_eq!(serde_json::to_value(file(Some(0))).unwrap()["mode"], "00");
        assert_eq!(
            serde_json::to_value(file(None)).unwrap(),
            serde_json::json!({"source": "s"})
        );
        let bind = BindOptions {
            create_host_path: false,
            ..BindOptions::default()
        };
        assert_eq!(serde_json::to_value(bind).unwrap(), serde_json::json!({}));
    }

    #[test]
    fn restart_policies() {
        assert_eq!(
            RestartPolicy::parse("on-failure:3"),
            Some(RestartPolicy::OnFailure(Some(3)))
        );
        assert_eq!(
            RestartPolicy::parse("unless-stopped").unwrap().to_string(),
            "unless-stopped"
        );
        assert_eq!(RestartPolicy::parse("sometimes"), None);
        assert_eq!(RestartPolicy::parse("on-failure:x"), None);
    }
}
