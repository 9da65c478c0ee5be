//! One pass over the engine: the containers, networks, volumes and built
//! images the stacks need, normalized into [`Live`].
//!
//! Without an engine cache: one list call per kind of object and one
//! inspect per managed container, concurrently. With one ([`cache`]), the
//! engine's event log since the cache was written says what can have
//! changed, and only that is asked again: a list whose kind of object no
//! event names is the cached one, the containers an event names are listed
//! again by ID, and only those are inspected again. A no-op on a quiet host
//! is then one request (`/events`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bollard::Docker;
use bollard::models::{ContainerInspectResponse, ContainerSummary};
use bollard::query_parameters::{
    EventsOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder,
    ListNetworksOptions, ListVolumesOptions,
};
use futures_util::TryStreamExt as _;
use futures_util::future::join_all;

use super::{
    BuiltImage, CONCURRENCY, EVENTS_TIMEOUT, Engine, EngineError, ForeignContainer, Live,
    LiveJobRun, LiveNetwork, LiveObject, cache, container_refs_to_names, defaults_of,
    network_config, normalize,
};
use crate::names::labels;

/// More containers named by events than this: the whole list is read again.
const MAX_RELISTED: usize = 32;

impl Engine {
    /// Reads the live state of `stacks` (with `repository`, also of every
    /// other stack created from that repository, so removed ones show up);
    /// `images` are the references the desired state uses (resolved to IDs
    /// and defaults).
    pub async fn snapshot(
        &self,
        stacks: &BTreeSet<String>,
        repository: Option<&str>,
        images: &BTreeSet<String>,
    ) -> Result<Live, EngineError> {
        self.snapshot_of(stacks, repository, images, None).await
    }

    /// [`Engine::snapshot`], where `only` (stack, service) limits the
    /// containers inspected to that service's (the agent's heal of one
    /// service): the other managed containers are left out of
    /// [`Live::containers`]; foreign containers, networks, volumes and built
    /// images are listed as usual (one call each).
    ///
    /// With an engine cache (and no `only`), the engine's event log since
    /// the cache was written is read first; only the lists it says may have
    /// changed are read again, and only the containers it (or the list)
    /// says may have changed are inspected ([`cache`]).
    pub async fn snapshot_of(
        &self,
        stacks: &BTreeSet<String>,
        repository: Option<&str>,
        images: &BTreeSet<String>,
        only: Option<(&str, &str)>,
    ) -> Result<Live, EngineError> {
        // The log before the lists and inspects (the watermark precedes
        // what they read); where this process's paths are on the engine's
        // host, concurrently.
        let (logged, paths) = tokio::join!(
            async {
                match self.cache.as_deref().filter(|_| only.is_none()) {
                    Some(slot) => self.read_log(slot).await.map(Some),
                    None => Ok(None),
                }
            },
            self.paths()
        );
        let logged = logged?;
        let reuse = logged.as_ref().map(|l| &l.reuse);
        let cached = logged
            .as_ref()
            .and_then(|l| Some((l.old.lists.as_ref()?, l.changes.as_ref()?)));
        let lists = self.lists(cached).await?;
        let mut live = Live {
            repository: repository.map(str::to_string),
            paths: paths?,
            ..Live::default()
        };
        let listed = fill(&lists, &mut live);
        let managed = listed.managed(stacks, repository, only, &mut live);
        let Listed { states, names, .. } = listed;
        let inspected = self.inspect_managed(&managed, reuse).await?;

        let mut wanted: BTreeSet<String> = images.clone();
        wanted.extend(inspected.iter().filter_map(|(c, _)| c.image.clone()));
        let wanted: Vec<String> = wanted.into_iter().collect();
        let mut fresh_images = cache::EngineCache::default();
        for chunk in wanted.chunks(CONCURRENCY) {
            let calls = chunk.iter().map(|r| self.image_config(r, reuse));
            for (r, found) in chunk.iter().zip(join_all(calls).await) {
                let found = found?;
                if let Some((id, cfg, true)) = &found {
                    fresh_images.images.insert(id.clone(), cfg.clone());
                    if id != r {
                        fresh_images.references.insert(r.clone(), id.clone());
                    }
                }
                let defaults = found.map(|(id, cfg, _)| defaults_of(id, cfg));
                live.images.insert(r.clone(), defaults);
            }
        }
        if let (Some(slot), Some(logged)) = (self.cache.as_deref(), logged) {
            // Nothing logged, read or resolved since the cache: it stands as it is.
            let unchanged = logged.changes == Some(cache::Changes::default())
                && logged.old.api_version.is_some()
                && logged.old.lists.is_some()
                && inspected.iter().all(|(_, now)| !now)
                && fresh_images.images.is_empty()
                && fresh_images.references.is_empty();
            if unchanged {
                slot.keep(logged.old);
            } else {
                let next = logged.next(&self.docker, &states, &inspected, fresh_images, lists);
                slot.store(next);
            }
        }

        for (c, _) in inspected {
            let image_id = c.image.clone().unwrap_or_default();
            let defaults = live
                .images
                .get(&image_id)
                .cloned()
                .flatten()
                .unwrap_or_default();
            let mut container = normalize(&c, &defaults);
            container_refs_to_names(&mut container.config, &names);
            live.containers.push(container);
        }
        live.containers
            .sort_by(|a, b| (&a.stack, &a.service, &a.name).cmp(&(&b.stack, &b.service, &b.name)));
        live.jobs.sort_by(|a, b| {
            (&a.stack, &a.job, a.created, &a.name).cmp(&(&b.stack, &b.job, b.created, &b.name))
        });
        Ok(live)
    }

    /// Reads the engine's event log since the cache's watermark (or all of
    /// it without one): what of the cache is still valid, and the watermark
    /// for the next run. An API version the engine refuses is negotiated
    /// again; an engine that does not answer is an error as at connection;
    /// any other failure only costs the cache.
    async fn read_log(&self, slot: &cache::Slot) -> Result<Logged, EngineError> {
        let old = slot
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_else(|| cache::EngineCache::new(&self.host));
        let since = old
            .watermark
            .as_ref()
            .map_or_else(|| "0".into(), cache::Mark::since);
        let mut events = self.events_since(&since).await;
        if let Err(e) = &events
            && is_version_error(e)
        {
            tracing::debug!("the engine refuses the cached API version ({e}): negotiating");
            self.docker
                .clone()
                .negotiate_version()
                .await
                .map_err(|source| EngineError::Unreachable {
                    host: self.host.clone(),
                    source,
                })?;
            events = self.events_since(&since).await;
        }
        let events = match events {
            Ok(events) => events,
            Err(e @ bollard::errors::Error::DockerResponseServerError { .. }) => {
                tracing::debug!("reading the engine's events failed ({e}): full inspect");
                return Ok(Logged::gap(old, None));
            }
            Err(bollard::errors::Error::RequestTimeoutError) => {
                tracing::debug!("the engine's event log did not answer in time: full inspect");
                return Ok(Logged::gap(old, None));
            }
            Err(source) => {
                return Err(EngineError::Unreachable {
                    host: self.host.clone(),
                    source,
                });
            }
        };
        let changes = old
            .watermark
            .as_ref()
            .and_then(|w| cache::changes(w, &events));
        let newest = cache::newest(&events);
        let Some(changes) = changes else {
            if old.watermark.is_some() {
                tracing::debug!(
                    "the engine's event log may have a gap since the cache: full inspect"
                );
            }
            let first = old.watermark.is_none();
            let mut logged = Logged::gap(old, newest);
            // The version was negotiated by this run, or the engine may have
            // changed since (restarted, upgraded): the next run negotiates.
            logged.keep_version = first;
            return Ok(logged);
        };
        Ok(Logged {
            reuse: old.reusable(Some(&changes)),
            watermark: newest,
            keep_version: true,
            changes: Some(changes),
            old,
        })
    }

    /// The events of the engine's log from `since` (a `seconds.nanoseconds`
    /// time, inclusive) until now, oldest first.
    async fn events_since(
        &self,
        since: &str,
    ) -> Result<Vec<bollard::models::EventMessage>, bollard::errors::Error> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let until = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
        let opts = EventsOptionsBuilder::default()
            .since(since)
            .until(&until)
            .build();
        tokio::time::timeout(
            EVENTS_TIMEOUT,
            self.docker.events(Some(opts)).try_collect::<Vec<_>>(),
        )
        .await
        .unwrap_or(Err(bollard::errors::Error::RequestTimeoutError))
    }

    /// The engine's lists of containers, networks, volumes and built
    /// images: each read again (one call each, concurrently) unless
    /// `cached` (the cache's lists and what the event log says changed
    /// since) still holds it; containers that events name are listed again
    /// by ID and laid over the cached list.
    async fn lists(
        &self,
        cached: Option<(&cache::Lists, &cache::Changes)>,
    ) -> Result<cache::Lists, EngineError> {
        let kept = |dirty: fn(&cache::Changes) -> bool| cached.filter(|(_, c)| !dirty(c));
        let built_filter = ListImagesOptionsBuilder::default()
            .filters(&HashMap::from([("label", vec![labels::BUILD])]))
            .build();
        let (containers, networks, volumes, built) = tokio::join!(
            self.containers_now(cached),
            async {
                match kept(|c| c.networks) {
                    Some((l, _)) => Ok(l.networks.clone()),
                    None => self.docker.list_networks(None::<ListNetworksOptions>).await,
                }
            },
            async {
                match kept(|c| c.volumes) {
                    Some((l, _)) => Ok(l.volumes.clone()),
                    None => self
                        .docker
                        .list_volumes(None::<ListVolumesOptions>)
                        .await
                        .map(|v| v.volumes.unwrap_or_default()),
                }
            },
            async {
                match kept(|c| c.images) {
                    Some((l, _)) => Ok(l.built.clone()),
                    None => self.docker.list_images(Some(built_filter)).await,
                }
            },
        );
        Ok(cache::Lists {
            containers: containers?,
            networks: networks.map_err(EngineError::call("listing networks"))?,
            volumes: volumes.map_err(EngineError::call("listing volumes"))?,
            built: built.map_err(EngineError::call("listing built images"))?,
        })
    }

    /// Every container as the engine lists it now: the cached list with the
    /// containers events named listed again (by ID), or the whole list.
    async fn containers_now(
        &self,
        cached: Option<(&cache::Lists, &cache::Changes)>,
    ) -> Result<Vec<ContainerSummary>, EngineError> {
        let list = |ids: Option<Vec<&str>>| {
            let mut opts = ListContainersOptionsBuilder::default().all(true);
            if let Some(ids) = ids {
                opts = opts.filters(&HashMap::from([("id", ids)]));
            }
            let opts = opts.build();
            async move {
                self.docker
                    .list_containers(Some(opts))
                    .await
                    .map_err(EngineError::call("listing containers"))
            }
        };
        let Some((lists, changes)) = cached.filter(|(_, c)| c.listed.len() <= MAX_RELISTED) else {
            return list(None).await;
        };
        let stale =
            |s: &ContainerSummary| s.id.as_ref().is_some_and(|id| changes.listed.contains(id));
        let mut out: Vec<ContainerSummary> = lists
            .containers
            .iter()
            .filter(|s| !stale(s))
            .cloned()
            .collect();
        if !changes.listed.is_empty() {
            out.extend(list(Some(changes.listed.iter().map(String::as_str).collect())).await?);
            // The engine's order: newest first.
            out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        }
        Ok(out)
    }

    /// Inspects the `managed` containers (ID, listed state), 16 at a time,
    /// except those `reuse` holds in the same state; each with whether it
    /// was inspected now. One removed since the list is left out.
    async fn inspect_managed(
        &self,
        managed: &[(String, String)],
        reuse: Option<&cache::EngineCache>,
    ) -> Result<Vec<(Arc<ContainerInspectResponse>, bool)>, EngineError> {
        let mut out = Vec::with_capacity(managed.len());
        let mut todo = Vec::new();
        for (id, state) in managed {
            match reuse.and_then(|r| r.containers.get(id)) {
                Some(c) if inspect_status(c) == *state => out.push((c.clone(), false)),
                _ => todo.push(id),
            }
        }
        for chunk in todo.chunks(CONCURRENCY) {
            let calls = chunk
                .iter()
                .map(|id| self.docker.inspect_container(id, None));
            for (id, r) in chunk.iter().zip(join_all(calls).await) {
                match r {
                    Ok(c) => out.push((Arc::new(cache::slim_inspect(c)), true)),
                    // Removed between the list and the inspect: it is simply gone.
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 404,
                        ..
                    }) => {}
                    Err(e) => {
                        return Err(EngineError::call(format!("inspecting container {id}"))(e));
                    }
                }
            }
        }
        Ok(out)
    }
}

/// An inspect's state as the container list spells it (`running`, `exited`...).
fn inspect_status(c: &ContainerInspectResponse) -> String {
    c.state
        .as_ref()
        .and_then(|s| s.status)
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// Whether the engine refused the client's API version.
fn is_version_error(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 400, message }
        if message.contains("client version") || message.contains("API version"))
}

/// Lays `lists` into `live` (networks with who is attached, volumes,
/// built images); the container list is returned for [`Listed::managed`].
fn fill<'a>(lists: &'a cache::Lists, live: &mut Live) -> Listed<'a> {
    for i in &lists.built {
        let Some((stack, service, hash)) = i
            .labels
            .get(labels::BUILD)
            .and_then(|l| crate::names::parse_build_label(l))
        else {
            continue;
        };
        live.built.push(BuiltImage {
            stack,
            service,
            hash: hash.to_string(),
            id: i.id.clone(),
            tags: i
                .repo_tags
                .iter()
                .filter(|t| *t != "<none>:<none>")
                .cloned()
                .collect(),
            created: i.created,
        });
    }
    live.built
        .sort_by(|a, b| (&a.stack, &a.service, b.created).cmp(&(&b.stack, &b.service, a.created)));
    // The container list names each container's networks: who is attached
    // to a network needs no inspect of it.
    let summaries = &lists.containers;
    let mut attached: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for s in summaries {
        let Some(name) = s.names.as_ref().and_then(|n| n.first()) else {
            continue;
        };
        for net in s
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .into_iter()
            .flat_map(|n| n.keys())
        {
            attached
                .entry(net)
                .or_default()
                .insert(name.trim_start_matches('/').to_string());
        }
    }
    for n in &lists.networks {
        let name = n.name.clone().unwrap_or_default();
        let network = LiveNetwork {
            attached: attached.remove(name.as_str()).unwrap_or_default(),
            config: network_config(n.clone()),
            name: name.clone(),
        };
        live.networks.insert(name, network);
    }
    for v in &lists.volumes {
        let labels = v
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        live.volumes.insert(
            v.name.clone(),
            LiveObject {
                name: v.name.clone(),
                labels,
            },
        );
    }
    let states = summaries
        .iter()
        .map(|s| {
            let state = s.state.map(|st| st.to_string()).unwrap_or_default();
            (s.id.clone().unwrap_or_default(), state)
        })
        .collect();
    let names = summaries
        .iter()
        .filter_map(|s| {
            let name = s.names.as_ref()?.first()?;
            Some((
                s.id.clone().unwrap_or_default(),
                name.trim_start_matches('/').to_string(),
            ))
        })
        .collect();
    Listed {
        summaries,
        states,
        names,
    }
}

/// The container list of a snapshot.
struct Listed<'a> {
    summaries: &'a [ContainerSummary],
    /// Every container's listed state by ID.
    states: BTreeMap<String, String>,
    /// Every container's name by ID, for namespaces joined by ID (`container:<id>`).
    names: BTreeMap<String, String>,
}

impl Listed<'_> {
    /// The managed containers of `stacks` (and of `repository`'s other
    /// stacks; only `only`'s service when given) as (ID, listed state);
    /// containers without plimsoll's labels go to [`Live::foreign`].
    fn managed(
        &self,
        stacks: &BTreeSet<String>,
        repository: Option<&str>,
        only: Option<(&str, &str)>,
        live: &mut Live,
    ) -> Vec<(String, String)> {
        let mut managed = Vec::new();
        for s in self.summaries {
            let empty = Default::default();
            let labels = s.labels.as_ref().unwrap_or(&empty);
            let id = s.id.clone().unwrap_or_default();
            let wanted = |stack: &String| {
                only.is_none_or(|(s, svc)| {
                    stack == s && labels.get(labels::SERVICE).map(String::as_str) == Some(svc)
                })
            };
            let state = self.states.get(&id).cloned().unwrap_or_default();
            // A job's run: plimsoll's, and no service's.
            if labels.contains_key(labels::JOB) {
                let name = self.names.get(&id).cloned().unwrap_or_default();
                live.jobs
                    .extend(LiveJobRun::listed(s, name, &state, stacks));
                continue;
            }
            match labels.get(labels::STACK) {
                Some(stack) if stacks.contains(stack) => {
                    if wanted(stack) {
                        managed.push((id, state))
                    }
                }
                Some(_)
                    if repository.is_some()
                        && labels.get(labels::REPOSITORY).map(String::as_str) == repository =>
                {
                    managed.push((id, state))
                }
                Some(_) => {}
                None => live.foreign.push(ForeignContainer {
                    name: self.names.get(&id).cloned().unwrap_or_default(),
                    id,
                    image: s.image.clone().unwrap_or_default(),
                    compose_project: labels.get(labels::COMPOSE_PROJECT).cloned(),
                    compose_service: labels.get(labels::COMPOSE_SERVICE).cloned(),
                    status: state,
                    agent: labels.contains_key(labels::AGENT),
                }),
            }
        }
        managed
    }
}

/// What the event log said of the engine cache ([`Engine::read_log`]).
struct Logged {
    /// The cache as read.
    old: cache::EngineCache,
    /// What of it is still valid.
    reuse: cache::EngineCache,
    /// The newest event logged before this run inspected anything.
    watermark: Option<cache::Mark>,
    /// Whether the API version in use may be stored.
    keep_version: bool,
    /// What the log says changed since the cache (`None`: it may have a gap).
    changes: Option<cache::Changes>,
}

impl Logged {
    /// A log with a gap (or none): only image configs by ID are reused.
    fn gap(old: cache::EngineCache, watermark: Option<cache::Mark>) -> Logged {
        Logged {
            reuse: old.reusable(None),
            watermark,
            keep_version: false,
            changes: None,
            old,
        }
    }

    /// The cache to store after this run: what was reused and is still
    /// listed in the same state, what was inspected now, this run's lists,
    /// the watermark.
    fn next(
        &self,
        docker: &Docker,
        states: &BTreeMap<String, String>,
        inspected: &[(Arc<ContainerInspectResponse>, bool)],
        fresh: cache::EngineCache,
        lists: cache::Lists,
    ) -> cache::EngineCache {
        let mut next = cache::EngineCache::new(&self.old.host);
        next.lists = Some(cache::slim_lists(lists));
        next.containers = self
            .reuse
            .containers
            .iter()
            .filter(|(id, c)| states.get(*id) == Some(&inspect_status(c)))
            .map(|(id, c)| (id.clone(), c.clone()))
            .collect();
        for (c, _) in inspected.iter().filter(|(_, now)| *now) {
            if let Some(id) = &c.id {
                next.containers.insert(id.clone(), c.clone());
            }
        }
        next.references = self.reuse.references.clone();
        next.references.extend(fresh.references);
        next.images = self.reuse.images.clone();
        next.images.extend(fresh.images);
        next.prune_images();
        next.watermark = self.watermark.clone();
        if self.keep_version {
            let v = docker.client_version();
            next.api_version = Some(format!("{}.{}", v.major_version, v.minor_version));
        }
        next
    }
}
