//! The policy, checked on the desired state before any change: privileged
//! containers and every other way to root on the host (`privileged`),
//! registries (of `image:` and of a build's `FROM` lines), pinned images,
//! host ports, required labels and variables, restart policies.
//!
//! Two policies apply: the repository's (`policy:` in `plimsoll.yaml`) and the
//! host's (`--policy FILE`, [`HostPolicy`]). Each is checked on its own, so a
//! service must pass both: the repository can add rules but never remove or
//! relax the host's, and only the host's own `allow:` lists exempt from a
//! host rule.
//!
//! A violation names the Compose file, line and key that break the rule, and
//! the rule with its own line in the file that set it. Invariant: pure (files
//! are read through [`Files`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;

use super::config::{AuditConfig, Config, Policy, PortSpec};
use super::diag::{Diag, Mark};
use super::model::{MountType, Service, Stack};
use super::yaml::Node;
use crate::source::Files;

/// Where the rules were written, to cite them.
pub struct RuleSource<'a> {
    pub file: &'a Path,
    pub node: Option<&'a Node>,
    /// The keys above the rules in that file: `["policy"]` in plimsoll.yaml,
    /// none in a host policy file.
    pub root: &'a [&'a str],
}

impl RuleSource<'_> {
    fn cite(&self, rule: &str) -> String {
        let path: Vec<&str> = self.root.iter().copied().chain([rule]).collect();
        let line = self
            .node
            .and_then(|n| n.lookup_key(&path))
            .map(|n| n.mark.line)
            .unwrap_or(0);
        let what = if self.root.is_empty() {
            "host policy"
        } else {
            "policy"
        };
        if line > 0 {
            format!("{what} `{rule}` ({}:{line})", self.file.display())
        } else {
            format!("{what} `{rule}` ({})", self.file.display())
        }
    }

    /// Where the value at `path` (under the rules) was written.
    fn mark(&self, path: &[&str]) -> Mark {
        let path: Vec<&str> = self.root.iter().chain(path).copied().collect();
        self.node
            .and_then(|n| n.lookup(&path))
            .map(|n| n.mark)
            .unwrap_or_default()
    }

    /// Where to exempt a service from `rule`, for hints:
    /// `plimsoll.yaml: policy.privileged.allow`.
    fn where_to_allow(&self, rule: &str) -> String {
        if self.root.is_empty() {
            format!("the host policy {}: {rule}.allow", self.file.display())
        } else {
            format!("plimsoll.yaml: policy.{rule}.allow")
        }
    }
}

/// The host's policy (`--policy FILE`): the schema of `policy:` in
/// plimsoll.yaml, applied on top of the repository's.
#[derive(Debug, Clone, PartialEq)]
pub struct HostPolicy {
    pub file: PathBuf,
    pub policy: Policy,
    node: Node,
}

impl HostPolicy {
    /// Parses a host policy file (its text; the caller reads it). An empty file is no rule.
    pub fn parse(file: &Path, text: &str) -> Result<HostPolicy, Diag> {
        let node = super::yaml::parse(text, file)?;
        let policy = if node.is_null() {
            Policy::default()
        } else {
            super::yaml::from_node::<Policy>(&node).map_err(|e| {
                e.into_diag(file).hint(
                    "a host policy has the keys of `policy:` in plimsoll.yaml (see `plimsoll schema plimsoll`)",
                )
            })?
        };
        let host = HostPolicy {
            file: file.to_path_buf(),
            policy,
            node,
        };
        let mut diags = Vec::new();
        check_rules(&host.policy, &host.rules(), &mut diags);
        match diags.into_iter().next() {
            Some(d) => Err(d),
            None => Ok(host),
        }
    }

    /// The compiled `pinned_images.immutable_tag` pattern (checked when parsed).
    pub fn immutable_tag(&self) -> Option<Regex> {
        self.policy
            .pinned_images
            .as_ref()?
            .immutable_tag
            .as_deref()
            .and_then(|t| Regex::new(t).ok())
    }

    /// Where its rules were written.
    pub fn rules(&self) -> RuleSource<'_> {
        RuleSource {
            file: &self.file,
            node: Some(&self.node),
            root: &[],
        }
    }
}

/// The stricter of the two policies' settings that are one value, not a
/// rule per service (`unknown_containers`), written into `config`.
pub fn apply_host_settings(config: &mut Config, host: &HostPolicy) {
    let p = &mut config.policy;
    p.unknown_containers = p.unknown_containers.max(host.policy.unknown_containers);
}

/// Checks the rules that do not depend on any stack (e.g. that patterns
/// compile) and warns about audit settings below the minimums.
pub fn check_config(
    config: &Config,
    rules: &RuleSource<'_>,
    diags: &mut Vec<Diag>,
) -> Option<Regex> {
    let audit = &config.audit;
    let low = [
        (
            "max_size_mib",
            audit
                .max_size_mib
                .filter(|m| *m < AuditConfig::MIN_SIZE_MIB)
                .map(|m| (m.to_string(), AuditConfig::MIN_SIZE_MIB.to_string())),
        ),
        (
            "keep",
            audit
                .keep
                .filter(|k| *k < AuditConfig::MIN_KEEP)
                .map(|k| (k.to_string(), AuditConfig::MIN_KEEP.to_string())),
        ),
    ];
    for (key, found) in low {
        if let Some((value, min)) = found {
            let mark = rules
                .node
                .and_then(|n| n.lookup(&["audit", key]))
                .map(|n| n.mark)
                .unwrap_or_default();
            diags.push(
                Diag::warning(
                    rules.file,
                    mark,
                    format!("audit.{key}"),
                    format!("{value} is below the minimum {min}: the audit log keeps at least that much history"),
                )
                .hint(format!("remove `audit.{key}` or set it to {min} or more")),
            );
        }
    }
    check_rules(&config.policy, rules, diags)
}

/// Compiles the policy's patterns; an invalid one is an error.
pub(crate) fn check_rules(
    policy: &Policy,
    rules: &RuleSource<'_>,
    diags: &mut Vec<Diag>,
) -> Option<Regex> {
    let pattern = policy.pinned_images.as_ref()?.immutable_tag.as_ref()?;
    match Regex::new(pattern) {
        Ok(r) => Some(r),
        Err(e) => {
            // The regex crate's message spans lines (pattern, caret, cause); the cause is its last line.
            let text = e.to_string();
            let why = text
                .lines()
                .last()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            diags.push(
                Diag::error(
                    rules.file,
                    rules.mark(&["pinned_images", "immutable_tag"]),
                    rules
                        .root
                        .iter()
                        .copied()
                        .chain(["pinned_images", "immutable_tag"])
                        .collect::<Vec<_>>()
                        .join("."),
                    format!("invalid regular expression `{pattern}`: {why}"),
                )
                .hint("write a regular expression, e.g. ^v\\d+\\.\\d+\\.\\d+$"),
            );
            None
        }
    }
}

/// The registry host of an image reference, as the Docker CLI reads it.
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

/// Whether an image reference is pinned: a digest, or a tag the pattern calls immutable.
pub fn is_pinned(image: &str, immutable_tag: Option<&Regex>) -> bool {
    if image.contains("@sha256:") {
        return true;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match (last.split_once(':'), immutable_tag) {
        (Some((_, tag)), Some(re)) => re.is_match(tag),
        _ => false,
    }
}

fn port_allowed(port: u16, allow: &[PortSpec]) -> bool {
    allow.iter().any(|spec| match spec {
        PortSpec::One(p) => *p == port,
        PortSpec::Range(r) => match r.split_once('-') {
            Some((a, b)) => matches!((a.trim().parse::<u16>(), b.trim().parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&port)),
            None => r.trim().parse::<u16>() == Ok(port),
        },
    })
}

/// Capabilities a container has unless `cap_drop` removes them (Docker's default set).
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Host paths whose bind mount gives root on the host, as are their ancestors
/// (a bind of `/var/run` holds the socket). Everything under the ones marked
/// `true` counts too.
const ROOT_PATHS: [(&str, bool); 11] = [
    ("/etc", false),
    ("/dev", false),
    ("/proc", true),
    ("/sys", true),
    ("/var/lib/docker", true),
    ("/var/lib/containerd", true),
    ("/run/containerd", true),
    ("/run/docker.sock", false),
    ("/var/run/docker.sock", false),
    ("/run/podman/podman.sock", false),
    ("/run/docker", true),
];

/// Host paths under which a *writable* bind mount gives root on the host
/// (cron, sudoers, systemd units, binaries and libraries root runs, a
/// sudoer's shell startup files or authorized keys). Read-only binds there
/// (`/etc/localtime:/etc/localtime:ro`, `/etc/ssl/certs:…:ro`) pass.
const WRITABLE_ROOT_PATHS: [&str; 10] = [
    "/etc",
    "/root",
    "/home",
    "/boot",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/var/spool/cron",
];

/// Host paths whose content is the host's own secrets: any bind of them or
/// under them counts, read-only too.
const SECRET_PATHS: [&str; 5] = [
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/sudoers",
    "/etc/ssh",
    "/root",
];

/// `path` with `.` and `..` resolved lexically (`..` at `/` stays at `/`).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// Why binding the host path `source` (absolute) into a container gives root, if it does.
pub fn root_bind(source: &Path, read_only: bool) -> Option<&'static str> {
    let path = lexical(source);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.ends_with("docker.sock")
        || name.ends_with("containerd.sock")
        || name.ends_with("podman.sock")
    {
        return Some("the container engine's socket");
    }
    if path == Path::new("/") {
        return Some("the host's root file system");
    }
    for (root, below) in ROOT_PATHS {
        let root = Path::new(root);
        if root.starts_with(&path) || (below && path.starts_with(root)) {
            return Some(if root.starts_with(&path) && root != path {
                "a host directory that holds a protected path"
            } else {
                "a protected host path"
            });
        }
    }
    if SECRET_PATHS.iter().any(|p| path.starts_with(p)) {
        return Some("the host's own secrets");
    }
    if !read_only && WRITABLE_ROOT_PATHS.iter().any(|p| path.starts_with(p)) {
        return Some("a host path root reads or runs (writable)");
    }
    None
}

/// A capability as Docker spells it (`sys_admin`, `CAP_SYS_ADMIN` → `SYS_ADMIN`).
fn capability(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    upper.strip_prefix("CAP_").unwrap_or(&upper).to_string()
}

/// Whether a `security_opt` entry turns confinement off.
fn unconfined(opt: &str) -> bool {
    let opt = opt.trim().to_ascii_lowercase();
    let Some((key, value)) = opt.split_once(['=', ':']) else {
        return false;
    };
    matches!(
        (key, value),
        ("seccomp" | "apparmor" | "systempaths", "unconfined") | ("label", "disable")
    )
}

/// One way to root a service takes: the key (relative to the service) and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootWay {
    pub key: &'static str,
    pub what: String,
}

/// Every way to root on the host that `svc` takes; `capabilities` are the
/// ones `cap_add` may add beyond Docker's default set. Relative bind sources
/// are already absolute (the loader resolved them); `resolve` gives a host
/// path's target when it is a symbolic link the repository holds.
pub fn root_ways(
    stack: &Stack,
    svc: &Service,
    capabilities: &[String],
    resolve: &dyn Fn(&Path) -> Option<PathBuf>,
) -> Vec<RootWay> {
    let mut ways = Vec::new();
    let mut way = |key: &'static str, what: String| ways.push(RootWay { key, what });
    if svc.privileged {
        way("privileged", "privileged container".into());
    }
    let bind = |source: &str, read_only: bool| -> Option<String> {
        let path = Path::new(source);
        let why = root_bind(path, read_only)
            .or_else(|| resolve(path).and_then(|p| root_bind(&p, read_only)))?;
        Some(format!("bind mount of {why} `{source}`"))
    };
    for m in &svc.volumes {
        let Some(source) = &m.source else { continue };
        let found = match m.kind {
            MountType::Bind => bind(source, m.read_only),
            // A named volume of the local driver with `o: bind` is a bind mount of `device`.
            MountType::Volume => stack.volumes.get(source).and_then(|v| {
                let binds = v
                    .driver_opts
                    .get("o")
                    .is_some_and(|o| o.split(',').any(|o| matches!(o.trim(), "bind" | "rbind")));
                let device = v.driver_opts.get("device").filter(|_| binds)?;
                let device = stack.source.dir.join(device);
                bind(&device.to_string_lossy(), m.read_only)
                    .map(|w| format!("volume `{source}` (driver_opts o: bind): {w}"))
            }),
            MountType::Tmpfs => None,
        };
        if let Some(what) = found {
            way("volumes", what);
        }
    }
    let default: BTreeSet<&str> = DEFAULT_CAPABILITIES.into_iter().collect();
    for cap in &svc.cap_add {
        let c = capability(cap);
        if c == "ALL" {
            way("cap_add", "`cap_add: ALL` (every capability)".into());
        } else if !default.contains(c.as_str()) && !capabilities.iter().any(|a| capability(a) == c)
        {
            way(
                "cap_add",
                format!("capability `{c}` beyond Docker's default set"),
            );
        }
    }
    let namespaces = [
        ("pid", &svc.pid),
        ("ipc", &svc.ipc),
        ("uts", &svc.uts),
        ("userns_mode", &svc.userns_mode),
        ("network_mode", &svc.network_mode),
        ("cgroup", &svc.cgroup),
    ];
    for (key, value) in namespaces {
        if value
            .as_deref()
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("host"))
        {
            way(key, format!("the host's namespace (`{key}: host`)"));
        }
    }
    if let Some(d) = svc.devices.first() {
        way("devices", format!("host device `{}`", d.source));
    }
    if let Some(r) = svc.device_cgroup_rules.first() {
        way("device_cgroup_rules", format!("device cgroup rule `{r}`"));
    }
    for opt in svc.security_opt.iter().filter(|o| unconfined(o)) {
        way(
            "security_opt",
            format!("`security_opt: {opt}` turns confinement off"),
        );
    }
    // A seccomp profile that allows every system call is no confinement either.
    for (file, profile) in &svc.seccomp_profiles {
        let allows_all = serde_json::from_str::<serde_json::Value>(profile)
            .is_ok_and(|p| p["defaultAction"] == "SCMP_ACT_ALLOW");
        if allows_all {
            way(
                "security_opt",
                format!("seccomp profile `{file}` allows every system call"),
            );
        }
    }
    for (key, hooks) in [("post_start", &svc.post_start), ("pre_stop", &svc.pre_stop)] {
        if hooks.iter().any(|h| h.privileged) {
            way(key, format!("a privileged `{key}` hook"));
        }
    }
    ways
}

/// Checks one stack against one policy (`rules` says where it was written);
/// violations go to `diags`. Run once with the repository's policy and once
/// with the host's: a service must pass both.
pub fn check_stack(
    policy: &Policy,
    immutable: Option<&Regex>,
    rules: &RuleSource<'_>,
    stack: &Stack,
    files: &dyn Files,
    diags: &mut Vec<Diag>,
) {
    let file = &stack.source.file;
    let mut violation = |service: &str, key: &str, rule: &str, msg: String, hint: String| {
        let path = if key.is_empty() {
            format!("services.{service}")
        } else {
            format!("services.{service}.{key}")
        };
        diags.push(
            Diag::error(
                file,
                stack.source.mark(service, key),
                path,
                format!("{msg}: violates {}", rules.cite(rule)),
            )
            .hint(hint),
        );
    };
    // A symbolic link in the repository that a bind source names: where it points.
    let resolve = |p: &Path| files.absolute(p).ok().filter(|a| a != p);
    for (name, svc) in &stack.services {
        let qualified = format!("{}/{name}", stack.name);
        if let Some(rule) = &policy.privileged
            && !rule.allow.contains(&qualified)
        {
            for way in root_ways(stack, svc, &rule.capabilities, &resolve) {
                violation(
                    name,
                    way.key,
                    "privileged",
                    way.what,
                    format!(
                        "remove `{}`, or allow the service by name in {}: [{qualified}]",
                        if way.key == "privileged" {
                            "privileged: true"
                        } else {
                            way.key
                        },
                        rules.where_to_allow("privileged")
                    ),
                );
            }
        }
        if let Some(rule) = &policy.registries {
            let mut images: Vec<(&'static str, String, String)> = Vec::new();
            // An image built on the host comes from its Dockerfile's `FROM` lines.
            match (svc.builds(), &svc.image, &svc.build) {
                (true, _, Some(b)) => match base_images(b, files) {
                    Ok(froms) => {
                        let key = if b.dockerfile_inline.is_some() {
                            "build.dockerfile_inline"
                        } else {
                            "build"
                        };
                        for f in froms {
                            images.push((
                                key,
                                f.image,
                                format!(" (FROM in {}:{})", f.file, f.line),
                            ));
                        }
                    }
                    Err(why) => violation(
                        name,
                        "build",
                        "registries",
                        format!("the base images of the build cannot be checked: {why}"),
                        "make the Dockerfile readable in the repository".into(),
                    ),
                },
                (false, Some(image), _) => images.push(("image", image.clone(), String::new())),
                _ => {}
            }
            for (key, image, place) in images {
                let reg = registry_of(&image);
                if !rule.allow.iter().any(|r| r == reg) {
                    violation(
                        name,
                        key,
                        "registries",
                        format!("image `{image}`{place} comes from registry `{reg}`"),
                        format!(
                            "use an image from {}, or add `{reg}` in {}",
                            rule.allow.join(", "),
                            rules.where_to_allow("registries")
                        ),
                    );
                }
            }
        }
        if let Some(image) = svc.image.as_ref().filter(|_| !svc.builds())
            && let Some(rule) = &policy.pinned_images
            && (rule.stacks.is_empty() || rule.stacks.contains(&stack.name))
            && !is_pinned(image, immutable)
        {
            let what = if rule.immutable_tag.is_some() {
                "a digest (@sha256:...) or an immutable tag"
            } else {
                "a digest (@sha256:...)"
            };
            violation(
                name,
                "image",
                "pinned_images",
                format!("image `{image}` is not pinned"),
                format!("pin it by {what}"),
            );
        }
        check_service_rules(policy, name, svc, &mut violation);
    }
    for var in &policy.required_variables {
        if stack.source.variables.get(var).is_none_or(|v| v.is_empty()) {
            diags.push(
                Diag::error(
                    file,
                    Mark::default(),
                    "",
                    format!(
                        "variable {var} is not set: violates {}",
                        rules.cite("required_variables")
                    ),
                )
                .hint(format!(
                    "set {var} in {}",
                    stack.source.dir.join(".env").display()
                )),
            );
        }
    }
}

/// Host ports, required labels and restart policies of one service.
fn check_service_rules(
    policy: &Policy,
    name: &str,
    svc: &Service,
    violation: &mut dyn FnMut(&str, &str, &str, String, String),
) {
    if let Some(rule) = &policy.host_ports {
        for p in &svc.ports {
            if let Some((a, b)) = p.published_range()
                && let Some(bad) = (a..=b).find(|port| !port_allowed(*port, &rule.allow))
            {
                violation(
                    name,
                    "ports",
                    "host_ports",
                    format!("host port {bad} is not allowed"),
                    "publish a port that policy.host_ports.allow lists, or add it there".into(),
                );
            }
        }
    }
    for label in &policy.required_labels {
        if !svc.labels.contains_key(label) {
            violation(
                name,
                "labels",
                "required_labels",
                format!("label `{label}` is missing"),
                format!("add `{label}` under the service's labels"),
            );
        }
    }
    if !policy.restart.is_empty() {
        match svc.restart {
            Some(r)
                if policy
                    .restart
                    .iter()
                    .any(|a| a == r.name() || *a == r.to_string()) => {}
            Some(r) => violation(
                name,
                "restart",
                "restart",
                format!("restart policy `{r}` is not allowed"),
                format!("use one of: {}", policy.restart.join(", ")),
            ),
            None => violation(
                name,
                "",
                "restart",
                "no restart policy".into(),
                format!("set `restart:` to one of: {}", policy.restart.join(", ")),
            ),
        }
    }
}

/// Why the Dockerfile of a build cannot be read for its base images.
#[derive(Debug, thiserror::Error)]
pub enum BaseImagesError {
    #[error("{} does not exist", path.display())]
    Missing { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An image a build starts from: a `FROM` (or `COPY --from`) that names no earlier stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    pub image: String,
    /// The Dockerfile (`dockerfile_inline` for an inline one) and the line.
    pub file: String,
    pub line: usize,
}

/// The images a build pulls: its Dockerfile (read through `files`, or the
/// inline one) parsed for `FROM` and `COPY --from=`. `scratch` and earlier
/// stages are not images; `ARG`s before the first `FROM` and the build's
/// `args` are substituted.
pub fn base_images(
    build: &super::model::Build,
    files: &dyn Files,
) -> Result<Vec<BaseImage>, BaseImagesError> {
    let (file, text) = match (&build.dockerfile_inline, &build.dockerfile) {
        (Some(inline), _) => ("dockerfile_inline".to_string(), inline.clone()),
        (None, Some(df)) => {
            let path = super::compose::normalize_path(&Path::new(&build.context).join(df));
            match files.read(&path) {
                Ok(Some(bytes)) => (
                    path.display().to_string(),
                    String::from_utf8_lossy(&bytes).into_owned(),
                ),
                Ok(None) => return Err(BaseImagesError::Missing { path }),
                Err(source) => return Err(BaseImagesError::Read { path, source }),
            }
        }
        (None, None) => return Ok(Vec::new()),
    };
    Ok(parse_froms(&text, &build.args)
        .into_iter()
        .map(|(line, image)| BaseImage {
            image,
            file: file.clone(),
            line,
        })
        .collect())
}

/// `(line, image)` of each image a Dockerfile pulls.
pub fn parse_froms(text: &str, args: &BTreeMap<String, String>) -> Vec<(usize, String)> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: BTreeSet<String> = BTreeSet::new();
    let mut stage_count = 0usize;
    let mut out = Vec::new();
    for (line, instruction) in instructions(text) {
        let mut words = instruction.split_whitespace();
        let Some(cmd) = words.next() else { continue };
        let rest: Vec<&str> = words.collect();
        match cmd.to_ascii_uppercase().as_str() {
            // Only the ARGs before the first FROM apply to FROM lines.
            "ARG" if stage_count == 0 => {
                for decl in &rest {
                    let (name, default) = match decl.split_once('=') {
                        Some((n, d)) => (n, Some(unquote(d))),
                        None => (*decl, None),
                    };
                    let value = args
                        .get(name)
                        .cloned()
                        .or(default.map(|d| substitute(&d, &vars)));
                    vars.insert(name.to_string(), value.unwrap_or_default());
                }
            }
            "FROM" => {
                stage_count += 1;
                let mut plain = rest.iter().filter(|w| !w.starts_with("--"));
                let Some(image) = plain.next() else { continue };
                let image = substitute(image, &vars);
                if let (Some(as_), Some(alias)) = (plain.next(), plain.next())
                    && as_.eq_ignore_ascii_case("as")
                {
                    stages.insert(alias.to_ascii_lowercase());
                }
                let lower = image.to_ascii_lowercase();
                if lower != "scratch" && !stages.contains(&lower) || image.is_empty() {
                    out.push((line, image));
                }
                // Registered after the check: `FROM x AS x` still pulls x.
            }
            "COPY" | "ADD" | "RUN" => {
                for flag in &rest {
                    let from = flag
                        .strip_prefix("--from=")
                        .or_else(|| flag.strip_prefix("--mount=").and_then(mount_from));
                    let Some(from) = from else { continue };
                    let from = substitute(from, &vars);
                    let lower = from.to_ascii_lowercase();
                    let index = from.parse::<usize>().is_ok_and(|i| i < stage_count);
                    if !index && !stages.contains(&lower) && lower != "scratch" {
                        out.push((line, from));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The `from=` of a `RUN --mount=…` value.
fn mount_from(value: &str) -> Option<&str> {
    value.split(',').find_map(|kv| kv.strip_prefix("from="))
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
        .unwrap_or(s)
        .to_string()
}

/// `$NAME`, `${NAME}`, `${NAME:-default}`, `${NAME:+alt}` as the Dockerfile reads them.
fn substitute(word: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut chars = word.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'{') {
            chars.next();
            let inner: String = chars.by_ref().take_while(|c| *c != '}').collect();
            let (name, op) = match inner.find(':') {
                Some(i) => (&inner[..i], Some(&inner[i..])),
                None => (inner.as_str(), None),
            };
            let value = vars.get(name).filter(|v| !v.is_empty());
            match (op, value) {
                (Some(op), None) if op.starts_with(":-") => {
                    out.push_str(&substitute(&op[2..], vars))
                }
                (Some(op), Some(_)) if op.starts_with(":+") => {
                    out.push_str(&substitute(&op[2..], vars))
                }
                (Some(op), None) if op.starts_with(":+") => {}
                (_, Some(v)) => out.push_str(v),
                (_, None) => {}
            }
        } else {
            let mut name = String::new();
            while let Some(c) = chars
                .peek()
                .filter(|c| c.is_ascii_alphanumeric() || **c == '_')
            {
                name.push(*c);
                chars.next();
            }
            if name.is_empty() {
                out.push('$');
            } else if let Some(v) = vars.get(&name) {
                out.push_str(v);
            }
        }
    }
    out
}

/// The instructions of a Dockerfile with the line each starts on: comments
/// dropped, `\` continuations joined.
fn instructions(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.starts_with('#') {
            continue;
        }
        let (body, more) = match trimmed.strip_suffix('\\') {
            Some(b) => (b, true),
            None => (trimmed, false),
        };
        let entry = current.get_or_insert_with(|| (i + 1, String::new()));
        entry.1.push(' ');
        entry.1.push_str(body);
        if !more && let Some(done) = current.take() {
            out.push(done);
        }
    }
    out.extend(current);
    out
}

#[cfg(test)]
mod tests;
