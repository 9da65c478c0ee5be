//! The live state of the engine: containers, networks, volumes and images
//! that belong to the stacks, read in one pass and normalized into the same
//! [`ContainerConfig`] model as the desired state.
//!
//! One list call per kind of object (label filters where the engine has
//! them), one inspect per managed container, run concurrently. The engine is
//! the one `DOCKER_HOST` names, as for the docker CLI; the API version is
//! negotiated (engines from API 1.41, Docker 20.10, on).
//!
//! Invariant: this module, `apply`, `build` and `images` are the only ones
//! that talk to the engine.

use std::collections::{BTreeMap, BTreeSet};

use std::path::Path;

use bollard::models::{ContainerInspectResponse, ImageConfig};
use bollard::{ClientVersion, Docker};
use thiserror::Error;

use crate::state::StateDir;

pub mod cache;
pub mod heartbeat;
mod jobs;
mod snapshot;

pub use jobs::LiveJobRun;

use crate::diff::network::NetworkConfig;
use crate::diff::{ContainerConfig, ImageDefaults};
use crate::hostpath::{self, Candidate, PathMap};
use crate::names::labels;
use crate::spec::model::{Ipam, IpamPool};

/// How many inspect calls run at once.
const CONCURRENCY: usize = 16;
/// The client's request timeout, bollard's default (seconds).
const CLIENT_TIMEOUT: u64 = 120;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("cannot connect to the Docker engine at {host}: {source}")]
    Connect {
        host: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error(
        "the Docker engine at {host} does not answer: {source}; is dockerd running and may this user use its socket?"
    )]
    Unreachable {
        host: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("{what}: {source}")]
    Call {
        what: String,
        #[source]
        source: bollard::errors::Error,
    },
}

impl EngineError {
    pub fn call(what: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> EngineError {
        let what = what.into();
        move |source| EngineError::Call { what, source }
    }
}

/// A connection to the engine.
#[derive(Debug, Clone)]
pub struct Engine {
    pub docker: Docker,
    pub host: String,
    /// Where paths of this process are on the engine's host, found once.
    paths: std::sync::Arc<tokio::sync::OnceCell<PathMap>>,
    /// The engine cache ([`cache`]); without one, a snapshot inspects every
    /// managed container.
    cache: Option<std::sync::Arc<cache::Slot>>,
}

/// Where a connection keeps its engine cache ([`cache`]).
#[derive(Debug, Clone, Copy)]
pub enum CacheAt<'a> {
    /// Read from the state directory at this path, never written (a dry
    /// run: the directory may not exist, and nothing is created there).
    ReadOnly(&'a Path),
    /// Read and written.
    ReadWrite(&'a StateDir),
}

/// The seconds the engine's event log may take to answer before a snapshot
/// gives up on the cache and inspects everything.
const EVENTS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Engine {
    /// Connects as the docker CLI does: `DOCKER_HOST` (unix socket by
    /// default; `tcp://` with TLS when `DOCKER_TLS_VERIFY` or `DOCKER_CERT_PATH`
    /// is set), then negotiates the API version.
    pub async fn connect() -> Result<Engine, EngineError> {
        Self::connect_with(None).await
    }

    /// [`Engine::connect`] with an engine cache: the API version it knows
    /// is used without asking the engine (negotiated again if the engine
    /// refuses it), and snapshots inspect only what may have changed.
    pub async fn connect_cached(at: CacheAt<'_>) -> Result<Engine, EngineError> {
        Self::connect_with(Some(at)).await
    }

    async fn connect_with(at: Option<CacheAt<'_>>) -> Result<Engine, EngineError> {
        let host =
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        let tls = host.starts_with("tcp://")
            && (std::env::var_os("DOCKER_TLS_VERIFY").is_some_and(|v| !v.is_empty())
                || std::env::var_os("DOCKER_CERT_PATH").is_some());
        let slot = at.map(|at| match at {
            CacheAt::ReadOnly(root) => cache::Slot::open(root, None, &host),
            CacheAt::ReadWrite(state) => {
                cache::Slot::open(state.path(), Some(state.clone()), &host)
            }
        });
        let known = slot
            .as_ref()
            .and_then(cache::Slot::api_version)
            .map(|(major_version, minor_version)| ClientVersion {
                major_version,
                minor_version,
            })
            .filter(|_| !tls);
        let connect_err = |source| EngineError::Connect {
            host: host.clone(),
            source,
        };
        let docker = match &known {
            Some(v) if host.starts_with("unix://") => {
                Docker::connect_with_unix(&host, CLIENT_TIMEOUT, v).map_err(connect_err)?
            }
            Some(v) if host.starts_with("tcp://") || host.starts_with("http://") => {
                Docker::connect_with_http(&host, CLIENT_TIMEOUT, v).map_err(connect_err)?
            }
            _ => {
                let docker = if tls {
                    Docker::connect_with_ssl_defaults()
                } else {
                    Docker::connect_with_defaults()
                }
                .map_err(connect_err)?;
                docker
                    .negotiate_version()
                    .await
                    .map_err(|source| EngineError::Unreachable {
                        host: host.clone(),
                        source,
                    })?
            }
        };
        Ok(Engine {
            docker,
            host,
            paths: Default::default(),
            cache: slot.map(std::sync::Arc::new),
        })
    }

    /// Where paths of this process are on the engine's host: the mounts of
    /// its own container when it runs in one of this engine's containers,
    /// else the identity. Found on the first call (one inspect), then kept.
    pub async fn paths(&self) -> Result<PathMap, EngineError> {
        self.paths
            .get_or_try_init(|| self.find_own_container())
            .await
            .cloned()
    }

    /// The digest `image` (`repo:tag`) resolves to in its registry now,
    /// asked through the engine (its registry settings and the docker CLI's
    /// credentials, as a pull would): `sha256:…`, the manifest list's
    /// digest for a multi-platform image; `None` when the answer has none.
    pub async fn registry_digest(&self, image: &str) -> Result<Option<String>, EngineError> {
        let answer = self
            .docker
            .inspect_registry_image(image, crate::registry::credentials_for(image))
            .await
            .map_err(EngineError::call(format!(
                "cannot resolve {image} in its registry (is it pushed, and may this host pull it? `docker login` first)"
            )))?;
        Ok(answer.descriptor.digest)
    }

    async fn find_own_container(&self) -> Result<PathMap, EngineError> {
        for candidate in hostpath::own_container_candidates() {
            let (Candidate::Id(key) | Candidate::Hostname(key)) = &candidate;
            match self.docker.inspect_container(key, None).await {
                Ok(c) => {
                    let same = match &candidate {
                        Candidate::Id(id) => c.id.as_deref() == Some(id),
                        Candidate::Hostname(h) => {
                            c.config.as_ref().and_then(|c| c.hostname.as_deref())
                                == Some(h.as_str())
                                && c.id.as_deref().is_some_and(|id| id.starts_with(h.as_str()))
                        }
                    };
                    if same {
                        return Ok(PathMap::from_inspect(&c, hostpath::local_mounts()));
                    }
                }
                // Not a container of this engine (another engine, or not in a container).
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404 | 400,
                    ..
                }) => {}
                Err(e) => {
                    return Err(EngineError::call("inspecting plimsoll's own container")(e));
                }
            }
        }
        Ok(PathMap::identity())
    }
}

pub use crate::health::RunState;

/// `GET path` over the engine's unix socket with HTTP/1.0 (the answer ends
/// with the connection, never chunked): the body of a 200 answer. For the
/// few calls whose old format bollard's types no longer read.
async fn unix_get(socket: &str, path: &str) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::UnixStream::connect(socket).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").as_bytes())
        .await?;
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(CLIENT_TIMEOUT),
        stream.read_to_end(&mut raw),
    )
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP answer"))?;
    if !raw.starts_with(b"HTTP/1.0 200") && !raw.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other("the engine did not answer 200"));
    }
    Ok(raw.split_off(end + 4))
}

/// `docker inspect` of a container, `None` when it does not exist: the one
/// inspect of a single container (gates, heals, recovery and setup use it).
pub async fn inspect_container(
    docker: &Docker,
    name: &str,
) -> Result<Option<ContainerInspectResponse>, EngineError> {
    match docker
        .inspect_container(
            name,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
    {
        Ok(c) => Ok(Some(c)),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(e) => Err(EngineError::call(format!("inspecting container {name}"))(e)),
    }
}

impl Engine {
    /// The engine's name (`docker info`).
    pub async fn name(&self) -> Result<String, EngineError> {
        let info = self
            .docker
            .info()
            .await
            .map_err(EngineError::call("reading the engine's name"))?;
        Ok(info.name.unwrap_or_default())
    }

    /// The typed state of container `name`, `None` when it does not exist.
    pub async fn inspect_if_there(&self, name: &str) -> Result<Option<RunState>, EngineError> {
        Ok(inspect_container(&self.docker, name)
            .await?
            .map(|c| run_state(c.state.unwrap_or_default())))
    }
}

/// The engine's `State` of a container, typed.
pub fn run_state(st: bollard::models::ContainerState) -> RunState {
    use crate::health::{Health, Status};
    let health_state = st.health.as_ref();
    RunState {
        status: st
            .status
            .map_or(Status::Created, |s| Status::parse(s.as_ref())),
        exit_code: st.exit_code.unwrap_or(0),
        oom_killed: st.oom_killed.unwrap_or(false),
        health: health_state
            .and_then(|h| h.status)
            .and_then(|s| Health::parse(s.as_ref())),
        health_log: health_state
            .and_then(|h| h.log.as_ref())
            .and_then(|l| l.last())
            .map(|r| {
                format!(
                    "exit {}: {}",
                    r.exit_code.unwrap_or(0),
                    r.output.clone().unwrap_or_default().trim()
                )
            }),
    }
}

/// A container plimsoll manages (it carries plimsoll's labels).
#[derive(Debug, Clone)]
pub struct LiveContainer {
    pub id: String,
    pub name: String,
    pub stack: String,
    pub service: String,
    /// The replica number (`com.docker.compose.container-number`, else 1).
    pub number: u32,
    pub labels: BTreeMap<String, String>,
    pub state: RunState,
    /// Normalized like the desired side, image defaults stripped.
    pub config: ContainerConfig,
    /// Anonymous volumes by target, carried over to a replacement container.
    pub anonymous_volumes: BTreeMap<String, String>,
}

/// A container without plimsoll's labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignContainer {
    pub id: String,
    pub name: String,
    pub image: String,
    /// `com.docker.compose.project`, when Compose made it.
    pub compose_project: Option<String>,
    pub compose_service: Option<String>,
    pub status: String,
    /// A plimsoll agent (`io.plimsoll.agent` on its image): plimsoll's own, not unknown.
    pub agent: bool,
}

/// A network on the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveNetwork {
    pub name: String,
    /// Its settings and labels, in the compared model.
    pub config: NetworkConfig,
    /// Every container (plimsoll's or not, running or not) with an endpoint on it, by name.
    pub attached: BTreeSet<String>,
}

impl LiveNetwork {
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.config.labels
    }

    pub fn stack(&self) -> Option<&str> {
        self.config.labels.get(labels::STACK).map(String::as_str)
    }
}

/// A volume on the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveObject {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl LiveObject {
    pub fn stack(&self) -> Option<&str> {
        self.labels.get(labels::STACK).map(String::as_str)
    }
}

/// Everything plimsoll needs to know about the engine for some stacks.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// Managed containers of the stacks asked about.
    pub containers: Vec<LiveContainer>,
    /// The runs of the jobs of the stacks asked about, oldest first per job
    /// (never among [`Live::containers`]: no service's).
    pub jobs: Vec<LiveJobRun>,
    /// Every other container on the engine (never touched).
    pub foreign: Vec<ForeignContainer>,
    pub networks: BTreeMap<String, LiveNetwork>,
    pub volumes: BTreeMap<String, LiveObject>,
    /// Image reference or ID -> what it supplies; `None` when not on the host.
    pub images: BTreeMap<String, Option<ImageDefaults>>,
    /// The repository whose every stack was read (not only the asked ones), if any.
    pub repository: Option<String>,
    /// Every image plimsoll built on this engine (it carries `io.plimsoll.build`), newest first per service.
    pub built: Vec<BuiltImage>,
    /// Where paths of plimsoll's own container are on the engine's host
    /// (the identity outside a container): repository files a service
    /// bind-mounts are given to the engine as host paths.
    pub paths: PathMap,
}

/// An image plimsoll built, by its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    pub id: String,
    /// `repo:tag` references pointing at it (none when a newer build took its tag).
    pub tags: Vec<String>,
    pub stack: String,
    pub service: String,
    /// What it was built from (the hash of its `io.plimsoll.build` label).
    pub hash: String,
    /// Creation time, seconds since the epoch.
    pub created: i64,
}

impl Engine {
    /// When the image a reference names was last pulled (or tagged) on this
    /// host, else when it was built; `None` when it is not on the host.
    pub async fn image_pulled_at(
        &self,
        reference: &str,
    ) -> Result<Option<jiff::Timestamp>, EngineError> {
        match self.docker.inspect_image(reference).await {
            Ok(img) => {
                let parse = |t: Option<String>| {
                    t.and_then(|t| t.parse::<jiff::Timestamp>().ok())
                        .filter(|t| t.as_second() > 0)
                };
                let tagged = parse(img.metadata.and_then(|m| m.last_tag_time));
                Ok(tagged.or_else(|| parse(img.created)))
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(EngineError::call(format!("inspecting image {reference}"))(
                e,
            )),
        }
    }

    /// What an image supplies, or `None` when it is not on the host.
    pub async fn image_defaults(
        &self,
        reference: &str,
    ) -> Result<Option<ImageDefaults>, EngineError> {
        Ok(self
            .image_config(reference, None)
            .await?
            .map(|(id, cfg, _)| defaults_of(id, cfg)))
    }

    /// The ID and config of the image a reference (or ID) names, from
    /// `reuse` when it knows them, else inspected (then `true`); `None`
    /// when it is not on the host.
    async fn image_config(
        &self,
        reference: &str,
        reuse: Option<&cache::EngineCache>,
    ) -> Result<Option<(String, ImageConfig, bool)>, EngineError> {
        if let Some(reuse) = reuse {
            let id = reuse
                .references
                .get(reference)
                .map_or(reference, String::as_str);
            if let Some(cfg) = reuse.images.get(id) {
                return Ok(Some((id.to_string(), cfg.clone(), false)));
            }
        }
        match self.docker.inspect_image(reference).await {
            Ok(img) => Ok(Some((
                img.id.unwrap_or_default(),
                img.config.unwrap_or_default(),
                true,
            ))),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(EngineError::call(format!("inspecting image {reference}"))(
                e,
            )),
        }
    }
}

/// What an image supplies, from its ID and config.
fn defaults_of(id: String, cfg: ImageConfig) -> ImageDefaults {
    crate::keys::image_defaults(bollard::models::ImageInspect {
        id: Some(id),
        config: Some(cfg),
        ..Default::default()
    })
}

/// A network as the engine lists it, in the compared model.
pub fn network_config(n: bollard::models::Network) -> NetworkConfig {
    let ipam = n.ipam.unwrap_or_default();
    NetworkConfig {
        driver: n.driver.unwrap_or_default(),
        options: n.options.unwrap_or_default().into_iter().collect(),
        internal: n.internal.unwrap_or(false),
        attachable: n.attachable.unwrap_or(false),
        enable_ipv6: n.enable_ipv6.unwrap_or(false),
        ipam: Ipam {
            driver: ipam.driver,
            config: ipam
                .config
                .unwrap_or_default()
                .into_iter()
                .map(|p| IpamPool {
                    subnet: p.subnet.filter(|s| !s.is_empty()),
                    gateway: p.gateway.filter(|g| !g.is_empty()),
                    ip_range: p.ip_range.filter(|r| !r.is_empty()),
                    aux_addresses: p
                        .auxiliary_addresses
                        .unwrap_or_default()
                        .into_iter()
                        .collect(),
                })
                .collect(),
            options: ipam.options.unwrap_or_default().into_iter().collect(),
        },
        labels: n.labels.unwrap_or_default().into_iter().collect(),
    }
}

/// `docker inspect` output to the compared model, image defaults stripped
/// (the mapping is [`crate::keys::read`]'s). Namespaces that name a
/// container keep `container:<id>`; [`container_refs_to_names`] names them.
pub fn normalize(c: &ContainerInspectResponse, image: &ImageDefaults) -> LiveContainer {
    let mut config = crate::keys::read(c);
    config.strip_defaults(image);
    let anonymous_volumes = crate::keys::mounts::anonymous_volumes(c);
    let id = c.id.clone().unwrap_or_default();
    let st = c.state.clone().unwrap_or_default();
    let state = run_state(st);
    let labels = config_labels(&c.config);
    LiveContainer {
        id,
        name: config.name.clone(),
        stack: labels.get(labels::STACK).cloned().unwrap_or_default(),
        service: labels.get(labels::SERVICE).cloned().unwrap_or_default(),
        number: labels
            .get(labels::COMPOSE_NUMBER)
            .and_then(|n| n.parse().ok())
            .unwrap_or(1),
        labels,
        state,
        config,
        anonymous_volumes,
    }
}

/// A container's labels as the engine reports them (image labels included).
fn config_labels(cfg: &Option<bollard::models::ContainerConfig>) -> BTreeMap<String, String> {
    cfg.as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

pub use crate::keys::namespaces::refs_to_names as container_refs_to_names;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// A container as `docker inspect` shows it, with the given parts.
    fn inspect(
        config: serde_json::Value,
        host: serde_json::Value,
        networks: serde_json::Value,
    ) -> ContainerConfig {
        let c: ContainerInspectResponse = serde_json::from_value(json!({
            "Id": ID,
            "Name": "/s-web-1",
            "Image": "sha256:feed",
            "Config": config,
            "HostConfig": host,
            "NetworkSettings": {"Networks": networks},
            "State": {"Status": "running"},
        }))
        .expect("an inspect response");
        normalize(&c, &ImageDefaults::default()).config
    }

    #[test]
    fn reads_namespaces_devices_and_limits() {
        let c = inspect(
            json!({"Image": "busybox", "Hostname": "0123456789ab", "Domainname": "example.com",
                   "Tty": true, "OpenStdin": true}),
            json!({
                "NetworkMode": "host", "IpcMode": "shareable", "PidMode": "host", "UTSMode": "host",
                "UsernsMode": "host", "CgroupnsMode": "private", "CgroupParent": "/k",
                "Runtime": "runc", "ShmSize": 33554432,
                "Sysctls": {"net.core.somaxconn": "1024"},
                "Devices": [{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/f", "CgroupPermissions": "r"}],
                "DeviceCgroupRules": ["c 1:3 mr"],
                "Dns": ["1.1.1.1"], "DnsSearch": ["example.com"], "DnsOptions": ["ndots:2"],
                "SecurityOpt": ["no-new-privileges:true"], "GroupAdd": ["44"],
                "OomScoreAdj": 100, "OomKillDisable": true, "StorageOpt": {"size": "1G"},
                "CpuShares": 512, "CpuPeriod": 100000, "CpuQuota": 50000,
                "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "0-1",
                "Memory": 134217728, "MemorySwap": 268435456, "MemorySwappiness": 30,
                "Links": ["/s-db-1:/s-web-1/database"], "VolumesFrom": ["s-data-1:ro"],
                "MaskedPaths": [],
            }),
            json!({"host": {"Aliases": null, "MacAddress": ""}}),
        );
        assert_eq!(c.network_mode.as_deref(), Some("host"));
        assert!(
            c.networks.is_empty(),
            "the host network is the mode: {:?}",
            c.networks
        );
        assert_eq!(
            (
                c.ipc.as_deref(),
                c.pid.as_deref(),
                c.uts.as_deref(),
                c.userns.as_deref()
            ),
            (Some("shareable"), Some("host"), Some("host"), Some("host"))
        );
        assert_eq!(c.cgroupns.as_deref(), Some("private"));
        assert_eq!(c.shm_size, 32 << 20);
        assert_eq!(c.devices["/dev/f"], "/dev/fuse r");
        assert_eq!(c.links, BTreeSet::from(["s-db-1:database".to_string()]));
        assert_eq!(c.volumes_from, BTreeSet::from(["s-data-1:ro".to_string()]));
        assert!(c.security_opt.contains("systempaths=unconfined"));
        assert_eq!(
            (c.cpu_shares, c.cpu_period, c.cpu_quota),
            (512, 100000, 50000)
        );
        assert_eq!(c.memory_swappiness, Some(30));
        assert!(c.tty && c.stdin_open && c.oom_kill_disable);
        assert_eq!(c.domainname.as_deref(), Some("example.com"));
        let f = c.fields();
        assert_eq!(f["dns options"], "ndots:2");
        assert_eq!(f["memory swap"], "256 MiB");
        assert_eq!(f["storage opt size"], "1G");
    }

    /// A container made before these keys existed reads as declaring none of them.
    #[test]
    fn a_plain_container_declares_none_of_the_new_keys() {
        let c = inspect(
            json!({"Image": "busybox", "Hostname": "0123456789ab"}),
            json!({
                "NetworkMode": "s_default", "IpcMode": "private", "CgroupnsMode": "host",
                "Runtime": "runc", "ShmSize": 67108864, "Dns": [], "DnsOptions": [],
                "DnsSearch": [], "MemorySwappiness": null, "PidsLimit": null,
                "MaskedPaths": ["/proc/kcore"], "OomScoreAdj": 0,
            }),
            json!({"s_default": {"Aliases": ["web", "0123456789ab"], "MacAddress": "02:42:ac:11:00:02",
                                 "Links": null}}),
        );
        assert_eq!(c.network_mode, None);
        assert_eq!(
            c.networks,
            BTreeMap::from([("s_default".to_string(), BTreeSet::from(["web".to_string()]))])
        );
        let want = ContainerConfig {
            name: c.name.clone(),
            image: c.image.clone(),
            image_id: c.image_id.clone(),
            networks: c.networks.clone(),
            restart: c.restart.clone(),
            ..ContainerConfig::default()
        };
        let mut live = c.clone();
        live.align_to(&want);
        assert_eq!(crate::diff::compare(&live.fields(), &want.fields()), vec![]);
    }

    #[test]
    fn joined_containers_are_named() {
        let mut c = inspect(
            json!({"Image": "busybox"}),
            json!({"NetworkMode": format!("container:{ID}"), "IpcMode": format!("container:{ID}"),
                   "PidMode": "container:gone"}),
            json!({}),
        );
        let names = BTreeMap::from([(ID.to_string(), "s-db-1".to_string())]);
        container_refs_to_names(&mut c, &names);
        assert_eq!(c.network_mode.as_deref(), Some("container:s-db-1"));
        assert_eq!(c.ipc.as_deref(), Some("container:s-db-1"));
        assert_eq!(c.pid.as_deref(), Some("container:gone"));
    }
}
