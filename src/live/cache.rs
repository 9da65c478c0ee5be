//! The engine cache: what the last run read from the engine (container
//! inspects, image configs by image ID, which ID each image reference
//! named, the negotiated API version), kept encrypted in the state
//! directory (`engine-cache.bin`) so that a run inspects only the
//! containers that can have changed since.
//!
//! What can have changed is read from the engine's event log. The daemon
//! keeps its last 256 events in memory (moby `daemon/events`, `eventsLimit`;
//! lost when the engine restarts), and `GET /events?since=T&until=now` replays
//! those at or after `T`. The cache records as its watermark the newest event
//! the engine had logged before the run that wrote it started inspecting.
//! The next run asks for the events since that watermark and trusts the log
//! only if the watermark event itself is among them: the buffer still
//! reaches back that far, so no event in between was rotated out, and the
//! engine was not restarted (a restarted engine starts with an empty
//! buffer, and it cannot log an event with the same nanosecond, type,
//! action and actor again). Otherwise, or without a cache, every managed
//! container is inspected, as without a cache.
//!
//! With a complete log, a container is inspected again when any event names
//! it (a container event by its ID; a network or volume event through its
//! `container` attribute: connect, disconnect, mount...), when the list
//! shows it in another state than its cached inspect, or when it is not in
//! the cache. An image event (pull, tag, untag, delete, load...) makes every
//! reference be resolved again; image configs by ID are content addressed
//! and never go stale.
//!
//! The cache is only ever an optimization: a missing, torn, unreadable or
//! foreign file (another `DOCKER_HOST`, another format) means a full
//! inspect, never an error, and a failed write is a warning.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bollard::models::{
    ContainerInspectResponse, ContainerSummary, EventMessage, EventMessageTypeEnum, ImageConfig,
    ImageSummary, Network, Volume,
};
use serde::{Deserialize, Serialize};

use crate::state::{ENGINE_CACHE, StateDir};

/// The cache's format; another one is ignored (full inspect).
const FORMAT: u32 = 2;

/// The cache file's content.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineCache {
    pub format: u32,
    /// The `DOCKER_HOST` it describes; another engine's cache is ignored.
    pub host: String,
    /// The API version negotiated with that engine (`major.minor`); `None`
    /// after the log had a gap (the engine may have been upgraded): the
    /// next run negotiates again.
    pub api_version: Option<String>,
    /// The newest event the engine had logged before the inspects were read.
    pub watermark: Option<Mark>,
    /// Raw inspects of the containers, by ID (shared with the snapshot
    /// that read or reused them: never copied).
    pub containers: BTreeMap<String, Arc<ContainerInspectResponse>>,
    /// Image configs by image ID.
    pub images: BTreeMap<String, ImageConfig>,
    /// Image reference -> image ID, as last resolved.
    pub references: BTreeMap<String, String>,
    /// The engine's lists as the run that wrote the cache read them.
    pub lists: Option<Lists>,
}

/// The engine's lists, as it returns them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lists {
    /// Every container (`GET /containers/json?all=true`), newest first.
    pub containers: Vec<ContainerSummary>,
    pub networks: Vec<Network>,
    pub volumes: Vec<Volume>,
    /// The images plimsoll built (they carry `io.plimsoll.build`).
    pub built: Vec<ImageSummary>,
}

/// An inspect without what plimsoll never reads (the storage driver's
/// paths, exec IDs, log and resolver file paths, health probes but the
/// last): a smaller cache to read on every run.
pub fn slim_inspect(mut c: ContainerInspectResponse) -> ContainerInspectResponse {
    c.graph_driver = None;
    c.exec_ids = None;
    c.log_path = None;
    c.resolv_conf_path = None;
    c.hosts_path = None;
    c.hostname_path = None;
    if let Some(log) = c
        .state
        .as_mut()
        .and_then(|s| s.health.as_mut())
        .and_then(|h| h.log.as_mut())
    {
        let keep = log.len().saturating_sub(1);
        log.drain(..keep);
    }
    c
}

/// The lists without what a snapshot never reads from them (a container's
/// mounts, ports, command, host config and sizes, its endpoints' settings:
/// only the names of its networks are read).
pub fn slim_lists(mut lists: Lists) -> Lists {
    for s in &mut lists.containers {
        s.mounts = None;
        s.ports = None;
        s.command = None;
        s.host_config = None;
        s.size_rw = None;
        s.size_root_fs = None;
        if let Some(nets) = s
            .network_settings
            .as_mut()
            .and_then(|n| n.networks.as_mut())
        {
            nets.values_mut().for_each(|e| *e = Default::default());
        }
    }
    lists
}

/// One event, identified well enough to be found again in the engine's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub time_nano: i64,
    pub kind: String,
    pub action: String,
    pub actor: String,
}

impl Mark {
    pub fn of(e: &EventMessage) -> Option<Mark> {
        Some(Mark {
            time_nano: e.time_nano?,
            kind: e.typ.map(|t| t.to_string()).unwrap_or_default(),
            action: e.action.clone().unwrap_or_default(),
            actor: e
                .actor
                .as_ref()
                .and_then(|a| a.id.clone())
                .unwrap_or_default(),
        })
    }

    /// The `since` query value that replays this event and what followed it.
    pub fn since(&self) -> String {
        let (s, ns) = (
            self.time_nano.div_euclid(1_000_000_000),
            self.time_nano.rem_euclid(1_000_000_000),
        );
        format!("{s}.{ns:09}")
    }
}

/// What the engine's log says changed since the watermark.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Containers an event named: inspected again.
    pub containers: BTreeSet<String>,
    /// Containers whose list entry an event may have changed (every event
    /// naming a container but an exec's, which changes neither its state
    /// nor its networks): listed again.
    pub listed: BTreeSet<String>,
    /// Whether a network event happened (the network list is read again).
    pub networks: bool,
    /// Whether a volume event happened (the volume list is read again).
    pub volumes: bool,
    /// Whether an image event happened (references may name other images;
    /// the built images are listed again).
    pub images: bool,
}

/// The newest event of `events` (the engine returns them oldest first).
pub fn newest(events: &[EventMessage]) -> Option<Mark> {
    events.iter().rev().find_map(Mark::of)
}

/// What changed since `watermark`, from the events at or after it (as
/// `GET /events?since=` returns them); `None` when the log may have a gap:
/// the watermark event is not among them.
pub fn changes(watermark: &Mark, events: &[EventMessage]) -> Option<Changes> {
    let mut found = false;
    let mut out = Changes::default();
    for e in events {
        let mark = Mark::of(e);
        if mark.as_ref() == Some(watermark) {
            // Seen by the run that wrote the cache.
            found = true;
            continue;
        }
        let actor = e.actor.as_ref();
        let attributes = actor.and_then(|a| a.attributes.as_ref());
        let action = e.action.as_deref().unwrap_or_default();
        let mut named = |id: &String, listed: bool| {
            out.containers.insert(id.clone());
            if listed {
                out.listed.insert(id.clone());
            }
        };
        if let Some(id) = attributes.and_then(|a| a.get("container")) {
            named(id, true);
        }
        match e.typ {
            Some(EventMessageTypeEnum::CONTAINER) => {
                if let Some(id) = actor.and_then(|a| a.id.as_ref()) {
                    named(id, !action.starts_with("exec_"));
                }
            }
            Some(EventMessageTypeEnum::NETWORK) => out.networks = true,
            Some(EventMessageTypeEnum::VOLUME) => out.volumes = true,
            Some(EventMessageTypeEnum::IMAGE) => out.images = true,
            // The daemon's own events (a configuration reload): nothing of
            // the cache is trusted, as for a gap.
            Some(EventMessageTypeEnum::DAEMON) => return None,
            _ => {}
        }
    }
    found.then_some(out)
}

impl EngineCache {
    /// Parses a cache file's plaintext; `None` when it is not this format or
    /// not this engine's.
    pub fn parse(bytes: &[u8], host: &str) -> Option<EngineCache> {
        let cache: EngineCache = serde_json::from_slice(bytes).ok()?;
        (cache.format == FORMAT && cache.host == host).then_some(cache)
    }

    /// An empty cache of `host`'s engine, in this format.
    pub fn new(host: &str) -> EngineCache {
        EngineCache {
            format: FORMAT,
            host: host.to_string(),
            ..EngineCache::default()
        }
    }

    /// The parts still valid after `changes` (`None`: the log had a gap, or
    /// there was no watermark; nothing is reused but image configs by ID).
    pub fn reusable(&self, changes: Option<&Changes>) -> EngineCache {
        let mut out = EngineCache {
            images: self.images.clone(),
            ..EngineCache::new(&self.host)
        };
        let Some(changes) = changes else {
            return out;
        };
        out.containers = self
            .containers
            .iter()
            .filter(|(id, _)| !changes.containers.contains(*id))
            .map(|(id, c)| (id.clone(), c.clone()))
            .collect();
        if !changes.images {
            out.references = self.references.clone();
        }
        out
    }

    /// Drops image configs no container or reference of the cache uses.
    pub fn prune_images(&mut self) {
        let used: BTreeSet<&String> = self
            .containers
            .values()
            .filter_map(|c| c.image.as_ref())
            .chain(self.references.values())
            .collect();
        self.images.retain(|id, _| used.contains(id));
    }
}

/// Where a connection keeps its cache.
#[derive(Debug)]
pub struct Slot {
    /// The state directory the cache is read from.
    root: PathBuf,
    /// Writes go there too (`None`: read only, as for a dry run).
    state: Option<StateDir>,
    /// What was read at connection time (taken by the first snapshot).
    pub loaded: Mutex<Option<EngineCache>>,
}

impl Slot {
    /// Reads the cache of `host`'s engine from the state directory at `root`
    /// (nothing is created there); `state` makes it writable.
    pub fn open(root: &Path, state: Option<StateDir>, host: &str) -> Slot {
        let loaded = crate::state::read_sealed_at(root, ENGINE_CACHE)
            .and_then(|b| EngineCache::parse(&b, host));
        if loaded.is_none() {
            tracing::debug!(state_dir = %root.display(), "no usable engine cache: full inspect");
        }
        Slot {
            root: root.to_path_buf(),
            state,
            loaded: Mutex::new(loaded),
        }
    }

    /// The API version the cache knows, if any.
    pub fn api_version(&self) -> Option<(usize, usize)> {
        let loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let (major, minor) = loaded.as_ref()?.api_version.as_ref()?.split_once('.')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    }

    /// Keeps `cache`, unchanged, for the next snapshot of this connection
    /// (nothing is written).
    pub fn keep(&self, cache: EngineCache) {
        *self.loaded.lock().unwrap_or_else(|e| e.into_inner()) = Some(cache);
    }

    /// Stores `cache` (when writable); a failure is a warning.
    pub fn store(&self, cache: EngineCache) {
        if let Some(state) = &self.state {
            let bytes = serde_json::to_vec(&cache).expect("the engine cache serializes");
            if let Err(e) = state.write_sealed(ENGINE_CACHE, &bytes) {
                tracing::warn!(
                    "cannot write the engine cache in {}: {e}; the next run inspects every container",
                    self.root.display()
                );
            }
        }
        self.keep(cache);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    fn event(t: i64, kind: EventMessageTypeEnum, action: &str, id: &str) -> EventMessage {
        EventMessage {
            typ: Some(kind),
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some(id.into()),
                attributes: None,
            }),
            time_nano: Some(t),
            ..Default::default()
        }
    }

    #[test]
    fn since_keeps_nanoseconds() {
        let m = Mark::of(&event(
            1_796_659_335_043_181_431,
            EventMessageTypeEnum::CONTAINER,
            "die",
            "c",
        ))
        .unwrap();
        assert_eq!(m.since(), "1796659335.043181431");
        let m = Mark { time_nano: 5, ..m };
        assert_eq!(m.since(), "0.000000005");
    }

    #[test]
    fn changes_name_containers_and_images_and_need_the_watermark() {
        let w = event(10, EventMessageTypeEnum::CONTAINER, "start", "a");
        let mark = Mark::of(&w).unwrap();
        let mut disconnect = event(11, EventMessageTypeEnum::NETWORK, "disconnect", "net1");
        disconnect.actor.as_mut().unwrap().attributes =
            Some([("container".to_string(), "b".to_string())].into());
        let events = vec![
            w.clone(),
            event(11, EventMessageTypeEnum::CONTAINER, "update", "c"),
            disconnect,
            event(12, EventMessageTypeEnum::NETWORK, "create", "net2"),
        ];
        let c = changes(&mark, &events).unwrap();
        let set = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(c.containers, set(&["b", "c"]));
        assert_eq!(c.listed, set(&["b", "c"]));
        assert!(c.networks && !c.volumes && !c.images);
        // An exec (a health probe) is inspected again, not listed again.
        let exec = event(11, EventMessageTypeEnum::CONTAINER, "exec_start: true", "d");
        let mount = event(12, EventMessageTypeEnum::VOLUME, "create", "v");
        let c = changes(&mark, &[w.clone(), exec, mount]).unwrap();
        assert_eq!(c.containers, set(&["d"]));
        assert!(c.listed.is_empty() && !c.networks && c.volumes);
        // Nothing since the watermark: nothing to read again.
        assert_eq!(
            changes(&mark, std::slice::from_ref(&w)),
            Some(Changes::default())
        );
        // A daemon event (a configuration reload) trusts nothing cached.
        let reload = event(11, EventMessageTypeEnum::DAEMON, "reload", "daemon");
        assert_eq!(changes(&mark, &[w.clone(), reload]), None);
        // The watermark event is rotated out (or the engine restarted): a gap.
        assert_eq!(changes(&mark, &events[1..]), None);
        // Another event at the same nanosecond is not the watermark.
        let other = event(10, EventMessageTypeEnum::CONTAINER, "stop", "a");
        assert_eq!(changes(&mark, &[other]), None);
        let tag = event(13, EventMessageTypeEnum::IMAGE, "tag", "sha256:x");
        assert!(changes(&mark, &[w, tag]).unwrap().images);
        assert_eq!(newest(&events).unwrap().time_nano, 12);
    }

    #[test]
    fn reusable_drops_what_changed() {
        let mut cache = EngineCache::new("unix:///x");
        for id in ["a", "b"] {
            cache.containers.insert(
                id.into(),
                Arc::new(ContainerInspectResponse {
                    image: Some(format!("sha256:{id}")),
                    ..Default::default()
                }),
            );
            cache
                .images
                .insert(format!("sha256:{id}"), ImageConfig::default());
        }
        cache
            .images
            .insert("sha256:old".into(), ImageConfig::default());
        cache.references.insert("busybox".into(), "sha256:a".into());
        let gap = cache.reusable(None);
        assert!(gap.containers.is_empty() && gap.references.is_empty());
        assert_eq!(gap.images.len(), 3);
        let changes = Changes {
            containers: ["b".to_string()].into(),
            images: true,
            ..Changes::default()
        };
        let mut kept = cache.reusable(Some(&changes));
        assert_eq!(kept.containers.keys().collect::<Vec<_>>(), ["a"]);
        assert!(kept.references.is_empty());
        kept.prune_images();
        assert_eq!(kept.images.keys().collect::<Vec<_>>(), ["sha256:a"]);
        assert!(EngineCache::parse(b"not json", "unix:///x").is_none());
        let bytes = serde_json::to_vec(&cache).unwrap();
        assert_eq!(EngineCache::parse(&bytes, "unix:///x"), Some(cache));
        assert!(EngineCache::parse(&bytes, "unix:///other").is_none());
    }
}
