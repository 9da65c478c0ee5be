//! The engine mapping of container settings, one file per concern.
//!
//! Every Compose key that shapes a container belongs to one group (a file
//! here), and the group owns all four directions of it: the desired value
//! from the model ([`Group::desired`]), its part of the engine's create
//! request ([`Group::create`]), its value read back from `docker inspect`
//! ([`Group::read`]) and its `key: value` lines for the diff
//! ([`Group::fields`]), with what the engine or the image fills in taken
//! out ([`Group::strip`], [`Group::align`]). [`desired_config`],
//! [`create_body`], [`read`] and [`ContainerConfig::fields`] are drivers
//! that call every group of [`GROUPS`] in turn.
//!
//! Round trips (`roundtrip`) check, per group, that the engine holds what
//! the create request says and that reading it back undoes creating it,
//! against inspects of this engine saved by `scripts/capture-inspect.sh`.
//!
//! Invariant: pure (bollard's model types only, no engine calls); knows
//! nothing of plans.

use std::collections::{BTreeMap, BTreeSet};

use bollard::models::{
    ContainerConfig as EngineConfig, ContainerCreateBody, ContainerInspectResponse,
    EndpointSettings, HostConfig, ImageInspect, NetworkingConfig,
};

use crate::spec::model::{Service, Stack};

pub mod basics;
pub mod config;
pub mod devices;
pub mod health;
pub mod lifecycle;
pub mod logging;
pub mod mounts;
pub mod namespaces;
pub mod networking;
pub mod resources;
pub mod security;

#[cfg(test)]
mod pins;
#[cfg(test)]
mod roundtrip;

pub use config::{ContainerConfig, Health, ImageDefaults, MountDesc};

/// One concern's keys in every direction. Groups are unit structs listed in
/// [`GROUPS`]; a method a group has nothing for keeps its default.
pub trait Group: Sync {
    /// Sets the group's fields of `c` from the service.
    fn desired(&self, cx: &Desire<'_>, c: &mut ContainerConfig);
    /// Sets the group's part of the create request.
    fn create(&self, cx: &Create<'_>, r: &mut Request);
    /// Sets the group's fields of `c` from a container's inspect.
    fn read(&self, i: &Inspect<'_>, c: &mut ContainerConfig);
    /// The group's `key: value` lines.
    fn fields(&self, c: &ContainerConfig, f: &mut Fields<'_>);
    /// Removes what the image supplies anyway (both sides).
    fn strip(&self, _c: &mut ContainerConfig, _image: &ImageDefaults) {}
    /// Projects a live config onto what the desired one declares, where
    /// the engine fills in its own values.
    fn align(&self, _live: &mut ContainerConfig, _desired: &ContainerConfig) {}
    /// The inverse of [`Group::desired`]: for each of the group's changed
    /// lines (`cx.changed`), how the live value is written in Compose. A
    /// changed line no group claims has no Compose form ([`compose_edits`]).
    fn compose(&self, _cx: &Inverse<'_>, _out: &mut Vec<ComposeEdit>) {}
}

/// What the inverse mapping is made from: a live config and its changed lines.
pub struct Inverse<'a> {
    pub live: &'a ContainerConfig,
    /// The keys of the lines that differ between live and git.
    pub changed: &'a BTreeSet<String>,
}

/// How one changed line is written back in Compose, so git says what the host runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeEdit {
    /// The field line it writes (`memory limit`, `env FOO`).
    pub field: String,
    /// Where, relative to the service: the first path written in the file,
    /// else the first path (inserted).
    pub at: Vec<Vec<&'static str>>,
    pub op: ComposeOp,
}

/// What a [`ComposeEdit`] does at its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComposeOp {
    /// Set a scalar (quoted as the file quotes it).
    Set(String),
    /// Remove the key.
    Unset,
    /// Set (or, with `None`, remove) one entry of a mapping that Compose
    /// also writes as a `NAME=value` list (`environment`, `labels`).
    Entry { name: String, value: Option<String> },
    /// Replace the short-syntax items of one container port (`80/tcp`) of
    /// `ports` by `items` (none: the port is removed).
    Port {
        container: String,
        items: Vec<String>,
    },
}

/// The Compose edits for the lines `changed` of a live config, from every
/// group; the changed lines no group writes are returned beside them (they
/// have no Compose form).
pub fn compose_edits(
    live: &ContainerConfig,
    changed: &BTreeSet<String>,
) -> (Vec<ComposeEdit>, Vec<String>) {
    let cx = Inverse { live, changed };
    let mut edits = Vec::new();
    for g in GROUPS {
        g.compose(&cx, &mut edits);
    }
    let claimed: BTreeSet<&str> = edits.iter().map(|e| e.field.as_str()).collect();
    let rest = changed
        .iter()
        .filter(|k| !claimed.contains(k.as_str()))
        .cloned()
        .collect();
    (edits, rest)
}

/// Every group, in the order they run. Order matters where two groups set
/// the same part of the request: `networking` names the primary network as
/// the network mode, `namespaces` then replaces it by a declared mode.
pub const GROUPS: &[&dyn Group] = &[
    &basics::Basics,
    &lifecycle::Lifecycle,
    &logging::Logging,
    &health::Healthcheck,
    &networking::Networking,
    &namespaces::Namespaces,
    &resources::Resources,
    &devices::Devices,
    &security::Security,
    &mounts::Mounts,
];

/// What the desired side is made from.
pub struct Desire<'a> {
    pub stack: &'a Stack,
    pub service: &'a str,
    pub svc: &'a Service,
    pub number: u32,
}

impl Desire<'_> {
    /// The container of another service of the stack, by its name.
    pub fn container_of(&self, service: &str) -> String {
        self.stack.services.get(service).map_or_else(
            || format!("{}-{service}-1", self.stack.name),
            |other| crate::names::container_name(self.stack, service, other),
        )
    }
}

/// What a create request is made from.
pub struct Create<'a> {
    pub stack: &'a Stack,
    pub svc: &'a Service,
    pub config: &'a ContainerConfig,
    /// Anonymous volumes of the replaced container, by target.
    pub carry: &'a BTreeMap<String, String>,
}

/// The create request being built: the body, its host config, and the
/// networks by priority (the first is given at create, the others connected
/// after: API 1.41 takes one network at create).
#[derive(Default)]
pub struct Request {
    pub body: ContainerCreateBody,
    pub host: HostConfig,
    pub networks: Vec<(String, EndpointSettings)>,
}

/// A container's inspect, its parts unwrapped.
pub struct Inspect<'a> {
    pub raw: &'a ContainerInspectResponse,
    pub id: &'a str,
    /// The first 12 characters of the id (the engine's default hostname and alias).
    pub short_id: String,
    pub cfg: &'a EngineConfig,
    pub host: &'a HostConfig,
}

/// The lines of a config being built.
pub struct Fields<'a> {
    map: BTreeMap<String, String>,
    word: &'a dyn Fn(&str) -> String,
}

impl Fields<'_> {
    pub fn put(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.map.insert(key.into(), value.into());
    }

    /// A line for a value that is set.
    pub fn opt(&mut self, key: &str, value: &Option<String>) {
        if let Some(v) = value {
            self.put(key, v.clone());
        }
    }

    /// `key: true` for a switch that is on.
    pub fn flag(&mut self, key: &str, on: bool) {
        if on {
            self.put(key, "true");
        }
    }

    /// `<prefix> <item>: yes` for each item of a set.
    pub fn each(&mut self, prefix: &str, items: &BTreeSet<String>) {
        for i in items {
            self.put(format!("{prefix} {i}"), "yes");
        }
    }

    /// `<prefix> <key>: <value>` for each entry of a map.
    pub fn map(&mut self, prefix: &str, entries: &BTreeMap<String, String>) {
        for (k, v) in entries {
            self.put(format!("{prefix} {k}"), v.clone());
        }
    }

    /// Words joined and quoted as a shell would (each passed through the
    /// word filter first, see [`ContainerConfig::fields_with`]).
    pub fn words(&self, words: &[String]) -> String {
        let words: Vec<String> = words.iter().map(|w| (self.word)(w)).collect();
        shlex::try_join(words.iter().map(String::as_str)).unwrap_or_else(|_| words.join(" "))
    }
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
    let cx = Desire {
        stack,
        service,
        svc,
        number,
    };
    let mut c = ContainerConfig {
        image_id,
        ..ContainerConfig::default()
    };
    for g in GROUPS {
        g.desired(&cx, &mut c);
    }
    c
}

/// The engine's create body for a service, and the networks to connect after
/// create (API 1.41 takes one network at create). `carry`: anonymous volumes
/// of the container it replaces, by target.
pub fn create_body(
    stack: &Stack,
    service: &str,
    config: &ContainerConfig,
    carry: &BTreeMap<String, String>,
) -> (ContainerCreateBody, Vec<(String, EndpointSettings)>) {
    let cx = Create {
        stack,
        svc: &stack.services[service],
        config,
        carry,
    };
    let mut r = Request::default();
    for g in GROUPS {
        g.create(&cx, &mut r);
    }
    let mut networks = r.networks;
    let first = (!networks.is_empty()).then(|| networks.remove(0));
    let mut body = r.body;
    body.host_config = Some(r.host);
    body.networking_config = first.map(|(n, e)| NetworkingConfig {
        endpoints_config: Some(std::collections::HashMap::from([(n, e)])),
    });
    (body, networks)
}

/// `docker inspect` output in the compared model (image defaults not yet
/// stripped). Namespaces that name a container keep `container:<id>`; see
/// [`namespaces::refs_to_names`].
pub fn read(c: &ContainerInspectResponse) -> ContainerConfig {
    let cfg = c.config.clone().unwrap_or_default();
    let host = c.host_config.clone().unwrap_or_default();
    let id = c.id.as_deref().unwrap_or_default();
    let i = Inspect {
        raw: c,
        id,
        short_id: id.chars().take(12).collect(),
        cfg: &cfg,
        host: &host,
    };
    let mut config = ContainerConfig::default();
    for g in GROUPS {
        g.read(&i, &mut config);
    }
    config
}

impl ContainerConfig {
    /// Removes what the image supplies anyway, so a value equal to the
    /// image's default counts as "not declared" on both sides.
    pub fn strip_defaults(&mut self, image: &ImageDefaults) {
        for g in GROUPS {
            g.strip(self, image);
        }
    }

    /// Projects a live config onto what the desired one declares, for fields
    /// the engine fills in or merges its own defaults into (the daemon's
    /// `log-opts`, namespaces and sizes it picks, swap it doubles, weights
    /// it discards, aliases it adds): those are compared only as declared.
    /// A key removed from git still changes the spec hash, so the container
    /// is replaced.
    pub fn align_to(&mut self, desired: &ContainerConfig) {
        for g in GROUPS {
            g.align(self, desired);
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
        let mut f = Fields {
            map: BTreeMap::new(),
            word,
        };
        for g in GROUPS {
            g.fields(self, &mut f);
        }
        f.map
    }
}

/// What an image supplies, from `docker image inspect`.
pub fn image_defaults(img: ImageInspect) -> ImageDefaults {
    let cfg = img.config.unwrap_or_default();
    ImageDefaults {
        id: img.id.unwrap_or_default(),
        cmd: cfg.cmd,
        entrypoint: cfg.entrypoint,
        env: basics::env_map(cfg.env.unwrap_or_default()),
        labels: cfg.labels.unwrap_or_default().into_iter().collect(),
        user: cfg.user.filter(|u| !u.is_empty()),
        working_dir: cfg.working_dir.filter(|w| !w.is_empty()),
        healthcheck: cfg.healthcheck.map(health::from_engine),
        volumes: cfg.volumes.unwrap_or_default().into_iter().collect(),
        stop_signal: cfg.stop_signal.filter(|s| !s.is_empty()),
    }
}

/// A string the engine reports, `None` when empty.
fn nonempty(s: &Option<String>) -> Option<String> {
    s.clone().filter(|s| !s.is_empty())
}

/// A list for the request: `None` when empty.
fn list<T: Clone>(v: &[T]) -> Option<Vec<T>> {
    (!v.is_empty()).then(|| v.to_vec())
}

/// A set for the request: `None` when empty.
fn set(v: &BTreeSet<String>) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.iter().cloned().collect())
}

/// A map for the request: `None` when empty.
fn map(m: &BTreeMap<String, String>) -> Option<std::collections::HashMap<String, String>> {
    (!m.is_empty()).then(|| m.clone().into_iter().collect())
}

/// A number for the request: `None` when zero.
fn nonzero(v: i64) -> Option<i64> {
    (v != 0).then_some(v)
}
