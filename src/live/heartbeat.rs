//! What the agent's heartbeat reads from the engine (and the file systems
//! the engine keeps its data on): disk use of the data root and of each
//! managed named volume (`statvfs`), reclaimable space (`/system/df`),
//! restart counts and stop times of the managed containers; and the log
//! stream of one container, for the scanner of secret values.
//!
//! Plain facts: deciding what is an alert is the agent's pure
//! `heartbeat::alerts`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::query_parameters::{ListContainersOptionsBuilder, ListVolumesOptionsBuilder};
use futures_util::{Stream, StreamExt as _};
use serde::{Deserialize, Serialize};

use super::{CONCURRENCY, Engine, EngineError, inspect_container};
use crate::names::labels;

/// Everything one heartbeat reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HostFacts {
    /// When the facts were read (Unix seconds).
    pub time: i64,
    /// The engine's data root (`docker info`: DockerRootDir).
    pub data_root: String,
    /// One entry per file system: the data root's, and each managed named volume's.
    pub disks: Vec<DiskFacts>,
    /// What `docker system df` says could be freed; `None` when the engine did not say.
    pub reclaimable: Option<Reclaimable>,
    /// The managed containers of the stacks asked about.
    pub containers: Vec<ContainerFacts>,
    /// What could not be read (a path the agent cannot see, `/system/df` failing), in words.
    pub problems: Vec<String>,
}

/// One file system and what lives on it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiskFacts {
    /// The path looked at (the data root, or the first volume's mount point).
    pub path: String,
    /// What is on it: `data root`, `volume shop_data`, …
    pub holds: Vec<String>,
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub available_bytes: u64,
}

impl DiskFacts {
    /// Used over used + available, as `df` computes its percentage (blocks
    /// reserved for root are neither).
    pub fn use_ratio(&self) -> f64 {
        let all = self.used_bytes + self.available_bytes;
        if all == 0 {
            0.0
        } else {
            self.used_bytes as f64 / all as f64
        }
    }
}

/// Space `docker system prune` could free, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Reclaimable {
    /// Images no container uses.
    pub images: u64,
    /// Build cache not in use.
    pub build_cache: u64,
    /// The writable layers of stopped containers.
    pub containers: u64,
}

impl Reclaimable {
    pub fn total(&self) -> u64 {
        self.images + self.build_cache + self.containers
    }
}

/// A managed container as the heartbeat sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerFacts {
    pub id: String,
    pub name: String,
    pub stack: String,
    pub service: String,
    /// The engine's word: running, exited, restarting, …
    pub status: String,
    pub running: bool,
    pub exit_code: i64,
    /// Restarts by Docker's restart policy (`RestartCount`).
    pub restart_count: u64,
    /// The restart policy's name (`no`, `always`, `on-failure`, `unless-stopped`).
    pub restart_policy: String,
    /// When it last stopped (Unix seconds), if it ever did.
    pub finished_at: Option<i64>,
}

/// Why a path's disk use could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the disk use of {path}: {source}")]
struct DiskUnreadable {
    path: String,
    #[source]
    source: rustix::io::Errno,
}

/// `statvfs` and `stat` of a path: its file system's sizes and device.
fn filesystem(path: &str) -> Result<(u64, u64, u64, u64), DiskUnreadable> {
    let unreadable = |source| DiskUnreadable {
        path: path.to_string(),
        source,
    };
    let vfs = rustix::fs::statvfs(path).map_err(unreadable)?;
    let dev = rustix::fs::stat(path).map_err(unreadable)?.st_dev;
    let unit = vfs.f_frsize.max(1);
    let total = vfs.f_blocks * unit;
    let used = (vfs.f_blocks.saturating_sub(vfs.f_bfree)) * unit;
    let available = vfs.f_bavail * unit;
    Ok((dev, total, used, available))
}

/// Groups `paths` (path, what lives there) by file system, in order.
fn disks(paths: Vec<(String, String)>, problems: &mut Vec<String>) -> Vec<DiskFacts> {
    let mut by_dev: Vec<(u64, DiskFacts)> = Vec::new();
    for (path, what) in paths {
        match filesystem(&path) {
            Ok((dev, total, used, available)) => {
                if let Some((_, d)) = by_dev.iter_mut().find(|(d, _)| *d == dev) {
                    d.holds.push(what);
                } else {
                    by_dev.push((
                        dev,
                        DiskFacts {
                            path,
                            holds: vec![what],
                            total_bytes: total,
                            used_bytes: used,
                            available_bytes: available,
                        },
                    ));
                }
            }
            Err(e) => problems.push(format!(
                "{e} ({what}; when the agent runs in a container, mount the engine's data root at the same path, read-only)"
            )),
        }
    }
    by_dev.into_iter().map(|(_, d)| d).collect()
}

fn unix(time: &str) -> Option<i64> {
    let t: jiff::Timestamp = time.parse().ok()?;
    // The engine's zero time (never stopped) is year 1.
    (t.as_second() > 0).then_some(t.as_second())
}

impl Engine {
    /// Reads the heartbeat's facts for the managed containers and volumes
    /// of `stacks`: one `info`, one `/system/df`, one list of containers and
    /// of volumes, one inspect per managed container (concurrently).
    pub async fn heartbeat(&self, stacks: &BTreeSet<String>) -> Result<HostFacts, EngineError> {
        let mut facts = HostFacts {
            time: jiff::Timestamp::now().as_second(),
            ..HostFacts::default()
        };
        let label = HashMap::from([("label", vec![labels::STACK])]);
        let (info, containers, volumes) = tokio::join!(
            self.docker.info(),
            self.docker.list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&label)
                    .build()
            )),
            self.docker.list_volumes(Some(
                ListVolumesOptionsBuilder::default().filters(&label).build()
            )),
        );
        let info = info.map_err(EngineError::call("reading the engine's data root"))?;
        let containers = containers.map_err(EngineError::call("listing containers"))?;
        let volumes = volumes.map_err(EngineError::call("listing volumes"))?;
        facts.data_root = info.docker_root_dir.unwrap_or_default();
        let mut paths = vec![(facts.data_root.clone(), "data root".to_string())];
        let mut mine: Vec<_> = volumes
            .volumes
            .unwrap_or_default()
            .into_iter()
            .filter(|v| {
                v.labels
                    .get(labels::STACK)
                    .is_some_and(|s| stacks.contains(s))
            })
            .collect();
        mine.sort_by(|a, b| a.name.cmp(&b.name));
        paths.extend(
            mine.into_iter()
                .map(|v| (v.mountpoint, format!("volume {}", v.name))),
        );
        let (disks, problems) = tokio::task::spawn_blocking(move || {
            let mut problems = Vec::new();
            (disks(paths, &mut problems), problems)
        })
        .await
        .unwrap_or_default();
        facts.disks = disks;
        facts.problems.extend(problems);
        match self.reclaimable().await {
            Ok(r) => facts.reclaimable = r,
            Err(e) => facts.problems.push(e.to_string()),
        }
        let ids: Vec<String> = containers
            .into_iter()
            .filter(|c| {
                c.labels.as_ref().is_some_and(|l| {
                    // A job's run ends by design: not a container that is down.
                    !l.contains_key(labels::JOB)
                        && l.get(labels::STACK).is_some_and(|s| stacks.contains(s))
                })
            })
            .filter_map(|c| c.id)
            .collect();
        let inspected: Vec<_> = futures_util::stream::iter(ids)
            .map(|id| async move { inspect_container(&self.docker, &id).await })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for c in inspected {
            // Removed between the list and the inspect: not there.
            let Some(c) = c? else { continue };
            facts.containers.push(container_facts(c));
        }
        facts.containers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(facts)
    }

    /// `/system/df`'s reclaimable space: the newer API's summary when the
    /// engine gives it, else the legacy lists (API < 1.52) summed as
    /// `docker system df` does.
    async fn reclaimable(&self) -> Result<Option<Reclaimable>, EngineError> {
        let raw = self.df_legacy().await;
        if let Some(r) = raw {
            return Ok(Some(r));
        }
        let df = self
            .docker
            .df(None::<bollard::query_parameters::DataUsageOptions>)
            .await
            .map_err(EngineError::call(
                "reading the engine's disk usage (/system/df)",
            ))?;
        let n = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
        let images = df.image_usage.as_ref().and_then(|u| u.reclaimable);
        let containers = df.container_usage.as_ref().and_then(|u| u.reclaimable);
        let cache = df.build_cache_usage.as_ref().and_then(|u| u.reclaimable);
        if images.is_none() && containers.is_none() && cache.is_none() {
            return Ok(None);
        }
        Ok(Some(Reclaimable {
            images: n(images),
            containers: n(containers),
            build_cache: n(cache),
        }))
    }

    /// `/system/df` in the legacy format (engines before API 1.52), read
    /// over the unix socket; `None` on another transport or format.
    async fn df_legacy(&self) -> Option<Reclaimable> {
        let socket = self.host.strip_prefix("unix://")?;
        let version = self.docker.client_version();
        let path = format!(
            "/v{}.{}/system/df",
            version.major_version, version.minor_version
        );
        let body = super::unix_get(socket, &path).await.ok()?;
        let df: LegacyDf = serde_json::from_slice(&body).ok()?;
        df.images.as_ref()?;
        Some(df.reclaimable())
    }

    /// The log stream (stdout and stderr, from now on) of container `id`,
    /// as chunks of bytes, until the container stops or the stream breaks.
    pub fn follow_logs(
        &self,
        id: &str,
    ) -> impl Stream<Item = Result<Vec<u8>, EngineError>> + Send + 'static {
        // The stream is long-lived: no request timeout.
        let docker = self
            .docker
            .clone()
            .with_timeout(std::time::Duration::from_secs(10 * 365 * 86_400));
        let opts = bollard::query_parameters::LogsOptionsBuilder::default()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .tail("0")
            .build();
        let what = format!("following the logs of {id}");
        docker.logs(id, Some(opts)).map(move |r| {
            r.map(|o| o.into_bytes().to_vec())
                .map_err(EngineError::call(what.clone()))
        })
    }
}

fn container_facts(c: bollard::models::ContainerInspectResponse) -> ContainerFacts {
    let labels_of = c
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    let st = c.state.clone().unwrap_or_default();
    let status = st.status.map(|s| s.to_string()).unwrap_or_default();
    ContainerFacts {
        id: c.id.clone().unwrap_or_default(),
        name: c
            .name
            .clone()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        stack: labels_of.get(labels::STACK).cloned().unwrap_or_default(),
        service: labels_of.get(labels::SERVICE).cloned().unwrap_or_default(),
        running: st.running.unwrap_or(false),
        status,
        exit_code: st.exit_code.unwrap_or(0),
        restart_count: c.restart_count.unwrap_or(0).max(0) as u64,
        restart_policy: c
            .host_config
            .as_ref()
            .and_then(|h| h.restart_policy.as_ref())
            .and_then(|p| p.name)
            .map(|n| n.to_string())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "no".into()),
        finished_at: st.finished_at.as_deref().and_then(unix),
    }
}

/// `/system/df` before API 1.52: lists of images, containers and build cache.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LegacyDf {
    #[serde(default)]
    layers_size: i64,
    #[serde(default)]
    images: Option<Vec<LegacyImage>>,
    #[serde(default)]
    containers: Vec<LegacyContainer>,
    #[serde(default)]
    build_cache: Option<Vec<LegacyCache>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LegacyImage {
    #[serde(default)]
    size: i64,
    #[serde(default)]
    shared_size: i64,
    #[serde(default)]
    containers: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LegacyContainer {
    #[serde(default)]
    size_rw: i64,
    #[serde(default)]
    state: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LegacyCache {
    #[serde(default)]
    size: i64,
    #[serde(default)]
    in_use: bool,
    #[serde(default)]
    shared: bool,
}

impl LegacyDf {
    /// As `docker system df` computes RECLAIMABLE: the layers' size less
    /// what images in use hold; stopped containers' writable layers; build
    /// cache neither in use nor shared.
    fn reclaimable(&self) -> Reclaimable {
        let used: i64 = self
            .images
            .iter()
            .flatten()
            .filter(|i| i.containers > 0)
            .map(|i| {
                if i.shared_size >= 0 {
                    i.size - i.shared_size
                } else {
                    i.size
                }
            })
            .sum();
        let images = (self.layers_size - used).max(0) as u64;
        let containers = self
            .containers
            .iter()
            .filter(|c| c.state != "running")
            .map(|c| c.size_rw.max(0) as u64)
            .sum();
        let build_cache = self
            .build_cache
            .iter()
            .flatten()
            .filter(|c| !c.in_use && !c.shared)
            .map(|c| c.size.max(0) as u64)
            .sum();
        Reclaimable {
            images,
            build_cache,
            containers,
        }
    }
}

/// Container facts by stack/service (the key of per-service alerts and metrics).
pub fn by_service(containers: &[ContainerFacts]) -> BTreeMap<String, Vec<&ContainerFacts>> {
    let mut out: BTreeMap<String, Vec<&ContainerFacts>> = BTreeMap::new();
    for c in containers {
        out.entry(format!("{}/{}", c.stack, c.service))
            .or_default()
            .push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_df_reclaimable_as_docker_computes_it() {
        let df: LegacyDf = serde_json::from_str(
            r#"{"LayersSize": 1000,
                "Images": [{"Size": 600, "SharedSize": 100, "Containers": 1},
                           {"Size": 300, "SharedSize": 100, "Containers": 0}],
                "Containers": [{"SizeRw": 50, "State": "exited"}, {"SizeRw": 7, "State": "running"}],
                "BuildCache": [{"Size": 20, "InUse": false, "Shared": false},
                               {"Size": 30, "InUse": true, "Shared": false}]}"#,
        )
        .unwrap();
        let r = df.reclaimable();
        assert_eq!(
            r,
            Reclaimable {
                images: 1000 - 500,
                build_cache: 20,
                containers: 50
            }
        );
        assert_eq!(r.total(), 570);
    }

    #[test]
    fn zero_time_is_never() {
        assert_eq!(unix("0001-01-01T00:00:00Z"), None);
        assert_eq!(unix("2024-05-01T10:00:00.123456789Z"), Some(1_714_557_600));
    }
}
