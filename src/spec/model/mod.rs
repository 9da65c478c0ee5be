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
//!
//! The scalar values written the way Compose writes them (sizes, durations,
//! restart and pull policies) are in `values`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Serialize, Serializer};

use super::diag::Mark;

#[cfg(test)]
mod tests;
mod values;

pub use values::{Bytes, GoDuration, PullPolicy, RestartPolicy};

/// One stack: a Compose project.
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
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
    /// The services marked as jobs (`x-plimsoll.job`), taken out of
    /// `services` once the stack is checked (`spec::jobs::split`): they run
    /// to completion around an apply, and nothing that keeps services
    /// running (plan, heals, status, drift, prune) sees them. Rendered with
    /// the services ([`Stack::whole`]), as Compose has them.
    #[serde(skip)]
    pub jobs: BTreeMap<String, Service>,
    /// Where this stack came from; not part of the rendered form.
    #[serde(skip)]
    pub source: StackSource,
}

impl Stack {
    /// The stack as written: its jobs back among its services (for
    /// `render`, stored revisions, `diff` and `graph`). Borrowed when it has none.
    pub fn whole(&self) -> std::borrow::Cow<'_, Stack> {
        if self.jobs.is_empty() {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut all = self.clone();
        all.services.extend(std::mem::take(&mut all.jobs));
        std::borrow::Cow::Owned(all)
    }

    /// A stack whose only service is job `job` (with the stack's networks,
    /// volumes, secrets and configs): what the engine mapping, which reads
    /// a service of a stack, builds the job's container from.
    pub fn job_view(&self, job: &str) -> Option<Stack> {
        let svc = self.jobs.get(job)?.clone();
        Some(Stack {
            services: BTreeMap::from([(job.to_string(), svc)]),
            jobs: BTreeMap::new(),
            ..self.clone()
        })
    }
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
    /// Makes the service a job: a one-off container run to completion
    /// `pre` (before any container of the stack changes), `post` (after its
    /// services pass their gates: a failure sends the stack back to its last
    /// good revision) or `on-failure` (once, after a failed apply). See the
    /// README, "Jobs".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<JobKind>,
    /// How long a job may run before it is killed and counts as failed
    /// (default 10m). Jobs only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GoDuration>,
}

/// `x-plimsoll.job`: when a job runs.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    serde::Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    /// Before any container of the stack changes (a backup, a migration);
    /// a failure stops the apply with nothing else changed.
    Pre,
    /// After the stack's services pass their gates (smoke and end-to-end
    /// tests); a failure fails the revision and sends the stack back.
    Post,
    /// Once, after the stack's apply failed (alerting, cleanup).
    OnFailure,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Pre => "pre",
            JobKind::Post => "post",
            JobKind::OnFailure => "on-failure",
        }
    }

    /// The default bound on how long a job runs.
    pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
