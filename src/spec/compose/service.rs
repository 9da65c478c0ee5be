//! One service: [`SERVICE_KEYS`], each key dispatched to the group that
//! loads it (`Cx::load_key`), then what needs the whole service: its
//! environment and label files, seccomp profiles, implied dependencies and
//! the checks of keys that conflict (`network_mode`, limits, replicas).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{Cx, MODELS, join};
use crate::spec::diag::Mark;
use crate::spec::model::*;
use crate::spec::yaml::Node;

/// Keys of a service that plimsoll implements.
pub const SERVICE_KEYS: &[&str] = &[
    "build",
    "cap_add",
    "cap_drop",
    "command",
    "configs",
    "container_name",
    "depends_on",
    "deploy",
    "entrypoint",
    "env_file",
    "environment",
    "expose",
    "extra_hosts",
    "healthcheck",
    "hostname",
    "image",
    "init",
    "labels",
    "logging",
    "mem_limit",
    "mem_reservation",
    "networks",
    "ports",
    "privileged",
    "profiles",
    "pull_policy",
    "read_only",
    "restart",
    "secrets",
    "stop_grace_period",
    "stop_signal",
    "tmpfs",
    "ulimits",
    "user",
    "volumes",
    "working_dir",
    "annotations",
    "attach",
    "blkio_config",
    "cgroup",
    "cgroup_parent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpus",
    "cpuset",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "external_links",
    "gpus",
    "group_add",
    "ipc",
    "label_file",
    "links",
    "mac_address",
    "mem_swappiness",
    "memswap_limit",
    "network_mode",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "post_start",
    "pre_stop",
    "runtime",
    "scale",
    "security_opt",
    "shm_size",
    "stdin_open",
    "storage_opt",
    "sysctls",
    "tty",
    "userns_mode",
    "uts",
    "volumes_from",
];

/// Keys of a service that Compose defines and plimsoll does not implement, with why.
pub const SERVICE_UNSUPPORTED: &[(&str, &str)] = &[
    ("cpu_count", "a Windows-only setting"),
    ("cpu_percent", "a Windows-only setting"),
    ("credential_spec", "a Windows-only setting"),
    (
        "develop",
        "a setting for local development (`docker compose watch`), not for deployed hosts",
    ),
    ("isolation", "a Windows-only setting"),
    ("models", MODELS),
    (
        "provider",
        "a provider service runs an external plugin instead of a container; plimsoll runs containers only",
    ),
    (
        "pull_refresh_after",
        "Compose 2.40 reads it and ignores it; use `pull_policy: every_<duration>` (e.g. every_12h), which plimsoll implements",
    ),
    (
        "use_api_socket",
        "it would hand the engine socket and the registry credentials of whoever runs plimsoll to the container, unseen in git; mount /var/run/docker.sock as a volume instead, so the grant is written down and `policy` can see it",
    ),
];

/// What the keys of a service leave to read once every key is seen: the
/// environment (`env_file` values under `environment:`) and the label files.
#[derive(Default)]
pub(super) struct Deferred {
    /// Each `env_file` entry: the file, whether it is required, where and
    /// under which key it is written.
    pub(super) env_files: Vec<(PathBuf, bool, Mark, String)>,
    pub(super) environment: BTreeMap<String, Option<String>>,
    /// Each `label_file` entry: the file as written, where and under which key.
    pub(super) label_files: Vec<(String, Mark, String)>,
}

impl Cx<'_, '_> {
    pub(super) fn service(&mut self, name: &str, node: &Node) -> Option<Service> {
        let path = join("services", name);
        if node.as_map().is_none() && !node.is_null() {
            self.err(
                node.mark,
                &path,
                format!("expected a mapping of settings, found {}", node.type_name()),
            )
            .hint(format!(
                "put the settings on the lines under `{name}:`, indented, e.g. `image: nginx:1.27`"
            ));
            return None;
        }
        let (fields, extensions) = self.fields(node, &path, SERVICE_KEYS, SERVICE_UNSUPPORTED);
        let mut svc = Service {
            extensions,
            ..Service::default()
        };
        let mut later = Deferred::default();
        for (key, n, mark) in &fields {
            self.marks.insert(join(&path, key), *mark);
            let p = join(&path, key);
            let loaded = self.load_key(key, n, &p, &mut svc, &mut later);
            if !loaded {
                unreachable!("`{key}` is listed in SERVICE_KEYS but no group loads it");
            }
        }
        self.plimsoll_extension(node, &path, &mut svc);
        for var in &svc.plimsoll.secret_env {
            self.masker.add_name(var);
        }
        svc.environment = self.environment(name, later.env_files, later.environment);
        self.label_files(&mut svc, later.label_files);
        self.seccomp_profiles(&path, &mut svc);
        self.implied_dependencies(&path, &mut svc);
        self.network_mode_conflicts(&path, &svc, &fields);
        self.limit_conflicts(&path, &svc);
        self.replica_conflicts(&path, &svc);
        // A service with `network_mode` joins no network (Compose's rule).
        if svc.networks.is_empty() && svc.network_mode.is_none() {
            svc.networks.insert("default".into(), None);
        }
        Some(svc)
    }

    /// Loads one key of a service through the group that owns it; `false`
    /// when no group does.
    fn load_key(
        &mut self,
        key: &str,
        n: &Node,
        p: &str,
        svc: &mut Service,
        later: &mut Deferred,
    ) -> bool {
        self.basic_key(key, n, p, svc, later)
            || self.environment_key(key, n, p, later)
            || self.logging_key(key, n, p, svc)
            || self.namespace_key(key, n, p, svc)
            || self.resource_key(key, n, p, svc)
            || self.device_key(key, n, p, svc)
            || self.networking_key(key, n, p, svc)
            || self.security_key(key, n, p, svc)
            || self.mount_key(key, n, p, svc)
            || self.health_key(key, n, p, svc)
            || self.lifecycle_key(key, n, p, svc)
            || self.build_key(key, n, p, svc)
    }

    /// A number of replicas (`scale`, `deploy.replicas`): a whole number, 0 or more.
    pub(super) fn replicas(&mut self, node: &Node, key: &str) -> Option<u32> {
        let n = self.int(node, key)?;
        match u32::try_from(n) {
            Ok(n) => Some(n),
            Err(_) => {
                self.err(node.mark, key, format!("`{n}` replicas: must be 0 or more"))
                    .hint("write how many containers this service runs, like 3 (0 runs none)");
                None
            }
        }
    }

    /// `scale` against `deploy.replicas` and `container_name` (Compose's
    /// rules), and a fixed published port on more than one replica (the
    /// engine would refuse the second container when it starts).
    fn replica_conflicts(&mut self, path: &str, svc: &Service) {
        let replicas = svc.deploy.as_ref().and_then(|d| d.replicas);
        if let (Some(scale), Some(replicas)) = (svc.scale, replicas)
            && scale != replicas
        {
            self.err_at(
                path,
                "scale",
                format!("`scale: {scale}` and `deploy.replicas: {replicas}` have different values"),
            )
            .hint("keep one of them, or give both the same value");
        }
        let n = svc.replicas();
        if n <= 1 {
            return;
        }
        if let Some(name) = &svc.container_name {
            self.err_at(
                path,
                "container_name",
                format!("`container_name: {name}` cannot be used with {n} replicas: container names are unique"),
            )
            .hint("remove container_name (replicas are named <stack>-<service>-1..N), or run one replica");
        }
        for p in &svc.ports {
            if let Some(port) = p.published.as_deref().filter(|p| !p.contains('-')) {
                self.err_at(
                    path,
                    "ports",
                    format!("published port {port} cannot be bound by {n} replicas: the second would fail to start"),
                )
                .hint("publish a range with one port per replica (like 8000-8002:80), leave the host port out, or run one replica");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;
    use crate::spec::secrets::{Masker, SecretNames};
    use crate::spec::yaml::Value;

    /// Every key of [`SERVICE_KEYS`] is loaded by exactly one key group, and
    /// [`Cx::load_key`] loads it.
    #[test]
    fn every_service_key_has_one_group() {
        let (dir, env, names) = (Path::new("/s"), BTreeMap::new(), SecretNames::default());
        let input = super::super::StackInput {
            dir,
            abs_dir: dir,
            file: Path::new("/s/compose.yaml"),
            text: "",
            dotenv: None,
            env: &env,
            secret_env: &BTreeSet::new(),
            files: &crate::source::LocalFs,
            secret_names: &names,
            overrides: &[],
            secret_dotenv: None,
            env_dotenv: None,
            age: None,
            stored: false,
        };
        let (mut diags, mut masker) = (Vec::new(), Masker::new(names.clone()));
        let mut cx = Cx {
            file: input.file,
            input: &input,
            diags: &mut diags,
            vars: &env,
            masker: &mut masker,
            marks: BTreeMap::new(),
            references: Vec::new(),
        };
        let null = Node::new(Value::Null, Mark::default());
        let mut seen = BTreeSet::new();
        for key in SERVICE_KEYS {
            assert!(seen.insert(key), "`{key}` is listed twice in SERVICE_KEYS");
            let owners = owners(&mut cx, key, &null);
            assert_eq!(owners.len(), 1, "`{key}` is loaded by {owners:?}");
            let loaded = cx.load_key(
                key,
                &null,
                key,
                &mut Service::default(),
                &mut Deferred::default(),
            );
            assert!(loaded, "`{key}`");
        }
    }

    /// The key groups that load `key`.
    fn owners(cx: &mut Cx<'_, '_>, key: &str, n: &Node) -> Vec<&'static str> {
        let svc = &mut Service::default();
        let later = &mut Deferred::default();
        [
            ("basics", cx.basic_key(key, n, key, svc, later)),
            ("environment", cx.environment_key(key, n, key, later)),
            ("logging", cx.logging_key(key, n, key, svc)),
            ("namespaces", cx.namespace_key(key, n, key, svc)),
            ("resources", cx.resource_key(key, n, key, svc)),
            ("devices", cx.device_key(key, n, key, svc)),
            ("networking", cx.networking_key(key, n, key, svc)),
            ("security", cx.security_key(key, n, key, svc)),
            ("mounts", cx.mount_key(key, n, key, svc)),
            ("health", cx.health_key(key, n, key, svc)),
            ("lifecycle", cx.lifecycle_key(key, n, key, svc)),
            ("build", cx.build_key(key, n, key, svc)),
        ]
        .into_iter()
        .filter_map(|(group, loaded)| loaded.then_some(group))
        .collect()
    }
}
