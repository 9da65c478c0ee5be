//! Names and labels: what plimsoll calls the things it creates on the engine
//! and the labels it marks them with (an API boundary: other tools and older
//! plimsoll versions read them). Pure; every module that names a container,
//! a network or a label takes the name from here.

use std::collections::BTreeMap;

use crate::spec::model::{Service, Stack};

/// The suffix of a container parked during a recreate (renamed out of the
/// way, kept until its replacement is up, renamed back on rollback).
pub const OLD_SUFFIX: &str = "-plimsoll-old";

/// Labels plimsoll puts on everything it creates.
pub mod labels {
    pub const STACK: &str = "io.plimsoll.stack";
    pub const SERVICE: &str = "io.plimsoll.service";
    pub const SPEC_HASH: &str = "io.plimsoll.spec-hash";
    /// On an image plimsoll built: `<stack>/<service>@<build hash>`, who it
    /// was built for and the content address of what it was built from. (Not
    /// `io.plimsoll.stack`: a container inherits its image's labels, and one
    /// run by hand from the image must not look like plimsoll's.)
    pub const BUILD: &str = "io.plimsoll.build";
    pub const REVISION: &str = "io.plimsoll.revision";
    pub const NETWORK: &str = "io.plimsoll.network";
    pub const VOLUME: &str = "io.plimsoll.volume";
    /// `false` on a container whose service says `x-plimsoll: {prune: false}`.
    pub const PRUNE: &str = "io.plimsoll.prune";
    /// The repository a container was created from (whole-stack prune stays within it).
    pub const REPOSITORY: &str = "io.plimsoll.repository";
    /// On the agent's image (so on its container): plimsoll's own, never an unknown container.
    pub const AGENT: &str = "io.plimsoll.agent";
    /// A digest of the `post_start` hooks a container was created with (the
    /// engine does not keep them); only on containers of services that have some.
    pub const POST_START: &str = "io.plimsoll.post-start";
    /// A digest of the `pre_stop` hooks, as for [`POST_START`].
    pub const PRE_STOP: &str = "io.plimsoll.pre-stop";
    pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
    pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
    pub const COMPOSE_NUMBER: &str = "com.docker.compose.container-number";
    pub const COMPOSE_ONEOFF: &str = "com.docker.compose.oneoff";
    pub const COMPOSE_CONFIG_HASH: &str = "com.docker.compose.config-hash";
    pub const COMPOSE_WORKING_DIR: &str = "com.docker.compose.project.working_dir";
    pub const COMPOSE_CONFIG_FILES: &str = "com.docker.compose.project.config_files";
    pub const COMPOSE_NETWORK: &str = "com.docker.compose.network";
    pub const COMPOSE_VOLUME: &str = "com.docker.compose.volume";
    /// `io.plimsoll.mount.<target>`: the content hash of the repository file
    /// or directory bind-mounted at `<target>` when the container was created
    /// (see `crate::mounts`); not in the spec hash.
    pub const MOUNT_PREFIX: &str = "io.plimsoll.mount.";
    /// On the one-off container of a job's run: when the job runs (`pre`,
    /// `post`, `on-failure`). Such a container is plimsoll's (never an
    /// unknown container) and no service's: never paired, healed or pruned
    /// as one (see `crate::spec::jobs`).
    pub const JOB: &str = "io.plimsoll.job";

    /// Labels whose change is reported through the spec hash (or, for
    /// hooks, by [`crate::diff::hook_changes`], for mounted content by
    /// `crate::mounts::changes`), not as a field.
    pub fn is_bookkeeping(key: &str) -> bool {
        matches!(
            key,
            SPEC_HASH | REVISION | COMPOSE_CONFIG_HASH | REPOSITORY | POST_START | PRE_STOP
        ) || key.starts_with(MOUNT_PREFIX)
    }
}

/// The engine's name of a network a service joins: its `name`, else `<stack>_<key>`.
pub fn network_name(stack: &Stack, key: &str) -> String {
    stack
        .networks
        .get(key)
        .map_or_else(|| format!("{}_{key}", stack.name), |n| n.name.clone())
}

/// The container of one run of a job: `<stack>-<job>-run-<id>`, as Compose
/// names the containers of `docker compose run`.
pub fn job_run_name(stack: &str, job: &str, id: &str) -> String {
    format!("{stack}-{job}-run-{id}")
}

/// The container name of a service (of its first replica): `container_name`,
/// else `<stack>-<service>-1`.
pub fn container_name(stack: &Stack, service: &str, svc: &Service) -> String {
    replica_name(stack, service, svc, 1)
}

/// The container name of replica `number` of a service: `container_name`
/// (one replica only), else `<stack>-<service>-<number>`, as Compose names them.
pub fn replica_name(stack: &Stack, service: &str, svc: &Service, number: u32) -> String {
    svc.container_name
        .clone()
        .unwrap_or_else(|| format!("{}-{service}-{number}", stack.name))
}

/// The ownership labels of a replica's container: plimsoll's and Compose's,
/// so `docker compose -p <stack> ps|logs` work.
pub fn managed_labels(stack: &Stack, service: &str, number: u32) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert(labels::STACK.into(), stack.name.clone());
    l.insert(labels::SERVICE.into(), service.into());
    l.insert(labels::COMPOSE_PROJECT.into(), stack.name.clone());
    l.insert(labels::COMPOSE_SERVICE.into(), service.into());
    l.insert(labels::COMPOSE_NUMBER.into(), number.to_string());
    l.insert(labels::COMPOSE_ONEOFF.into(), "False".into());
    l.insert(
        labels::COMPOSE_WORKING_DIR.into(),
        stack.source.dir.display().to_string(),
    );
    l.insert(
        labels::COMPOSE_CONFIG_FILES.into(),
        stack.source.file.display().to_string(),
    );
    l
}

/// The content address of a build: what was sent (the context after
/// `.dockerignore`, the Dockerfile) and the settings that shape the image.
/// Its text form, `<context>.<settings>` (16 hex digits each), is the
/// hash in the [`labels::BUILD`] label of the built image; computed by
/// `crate::build::hash` (`BuildHash::of`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BuildHash {
    pub context: String,
    pub settings: String,
}

impl BuildHash {
    /// Reads the label form back.
    pub fn parse(label: &str) -> Option<BuildHash> {
        let (c, s) = label.split_once('.')?;
        Some(BuildHash {
            context: c.to_string(),
            settings: s.to_string(),
        })
    }

    /// Why an image built as `old` needs building again for `self`, in words.
    pub fn reason(&self, old: &BuildHash) -> &'static str {
        match (self.context != old.context, self.settings != old.settings) {
            (true, true) => "build: context and build settings changed",
            (true, false) => "build: context changed",
            (false, true) => "build: build settings changed",
            (false, false) => "build: up to date",
        }
    }
}

impl std::fmt::Display for BuildHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.context, self.settings)
    }
}

/// The [`labels::BUILD`] label of an image built for a service: `<stack>/<service>@<hash>`.
pub fn build_label(stack: &str, service: &str, hash: &BuildHash) -> String {
    format!("{stack}/{service}@{hash}")
}

/// Reads a [`labels::BUILD`] label: (stack, service, hash).
pub fn parse_build_label(label: &str) -> Option<(String, String, BuildHash)> {
    let (who, hash) = label.rsplit_once('@')?;
    let (stack, service) = who.split_once('/')?;
    Some((
        stack.to_string(),
        service.to_string(),
        BuildHash::parse(hash)?,
    ))
}
