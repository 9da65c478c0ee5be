//! A Compose file to a [`Stack`]: interpolation, then every short and long
//! syntax normalized into the typed model, with Compose's defaults.
//!
//! Every key Compose defines is either implemented here or reported as not
//! supported (with why); an unknown key is reported with a suggestion. Every
//! problem found becomes a [`Diag`] and conversion goes on, so one run reports
//! all of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::diag::{Diag, Mark};
use super::dotenv;
use super::interpolate::{InterpolateError, interpolate};
use super::model::*;
use super::secrets::{Masker, SecretNames};
use super::yaml::{self, Node, Value};
use crate::source::Files;

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

const MODELS: &str = "AI models run by Docker Model Runner, a Docker Desktop and `docker model` plugin feature with no engine API; plimsoll runs containers only";
const SWARM: &str = "a Swarm-only setting with no meaning on a single Docker host";

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

/// Top-level keys plimsoll implements (besides `x-` fields).
pub const TOP_KEYS: &[&str] = &[
    "name", "version", "services", "networks", "volumes", "secrets", "configs",
];

const TOP_UNSUPPORTED: &[(&str, &str)] = &[("models", MODELS)];

/// Keys of `build:` that plimsoll implements.
const BUILD_KEYS: &[&str] = &[
    "context",
    "dockerfile",
    "dockerfile_inline",
    "args",
    "labels",
    "cache_from",
    "no_cache",
    "pull",
    "extra_hosts",
    "network",
    "target",
    "shm_size",
    "tags",
];

const BUILDKIT: &str = "a BuildKit feature; plimsoll builds with the engine's own builder (the build API every engine from API 1.41 on has)";

const BUILD_UNSUPPORTED: &[(&str, &str)] = &[
    ("additional_contexts", BUILDKIT),
    ("cache_to", BUILDKIT),
    ("entitlements", BUILDKIT),
    ("isolation", "a Windows-only setting"),
    ("no_cache_filter", BUILDKIT),
    ("platforms", BUILDKIT),
    ("privileged", BUILDKIT),
    ("provenance", BUILDKIT),
    ("sbom", BUILDKIT),
    ("secrets", BUILDKIT),
    ("ssh", BUILDKIT),
    (
        "ulimits",
        "the engine API client plimsoll uses (bollard 0.21) cannot send build ulimits; set them with `RUN ulimit` in the Dockerfile",
    ),
];

const NETWORK_KEYS: &[&str] = &[
    "name",
    "driver",
    "driver_opts",
    "external",
    "internal",
    "labels",
    "ipam",
    "attachable",
    "enable_ipv6",
];
const NETWORK_UNSUPPORTED: &[(&str, &str)] = &[(
    "enable_ipv4",
    "needs Docker API 1.47 (Docker 28); plimsoll supports engines from API 1.41 on, where every network has IPv4",
)];
const VOLUME_KEYS: &[&str] = &["name", "driver", "driver_opts", "external", "labels"];

/// Keys of one `post_start` / `pre_stop` hook.
const HOOK_KEYS: &[&str] = &[
    "command",
    "user",
    "privileged",
    "working_dir",
    "environment",
];
const HOOK_COMMAND_HINT: &str =
    "give the command to run in the container, e.g. `command: [sh, -c, \"echo started\"]`";

/// The inputs of one stack.
pub struct StackInput<'a> {
    /// The stack directory as the user named it; messages use it.
    pub dir: &'a Path,
    /// The stack directory, absolute; relative paths in the file resolve against it.
    pub abs_dir: &'a Path,
    /// The Compose file (under `dir`).
    pub file: &'a Path,
    pub text: &'a str,
    /// `.env` of the stack directory and its text, when it exists.
    pub dotenv: Option<(&'a Path, &'a str)>,
    /// The variables of the process environment the host passes
    /// (`--pass-env`); they override `.env`, and are masked as `.env`'s are.
    pub env: &'a BTreeMap<String, String>,
    /// Passed variables the host marks secret (`--pass-secret-env`).
    pub secret_env: &'a std::collections::BTreeSet<String>,
    pub files: &'a dyn Files,
    pub secret_names: &'a SecretNames,
    /// Override files (`compose.override.yaml`) and their text, merged onto
    /// `text` in order by Compose's rules (`super::merge`).
    pub overrides: &'a [(std::path::PathBuf, String)],
    /// `.env.age` of the stack directory, decrypted: read after `.env`, every
    /// variable in it secret.
    pub secret_dotenv: Option<(&'a Path, &'a str)>,
    /// The host's age identities, for `*.age` env files, secrets and configs.
    pub age: Option<&'a super::age::Identities>,
    /// A stored revision (`load_stored`): a secret may hold its content inline
    /// (an age-encrypted secret file, decrypted when it was applied).
    pub stored: bool,
}

/// A loaded stack and the secrets found while loading it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub stack: Stack,
    pub masker: Masker,
    /// Every file read for the stack (the Compose file, override and included
    /// files); a mark's `file` indexes it.
    pub sources: Vec<std::path::PathBuf>,
}

/// Converts one Compose file; problems go to `diags`. `None` when the file
/// cannot be read as a stack at all.
pub fn load_stack(input: &StackInput<'_>, diags: &mut Vec<Diag>) -> Option<Loaded> {
    let mut masker = Masker::new(input.secret_names.clone());
    // The project environment: `.env`, then the process environment over it.
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    if let Some((path, text)) = input.dotenv {
        match dotenv::parse(text, &|k| input.env.get(k).cloned()) {
            Ok(map) => {
                for (k, v) in map {
                    masker.observe(&k, &v);
                    vars.insert(k, v);
                }
            }
            Err(e) => {
                diags.push(
                    Diag::error(path, Mark::new(e.line, 1), "", e.message.clone())
                        .hint("fix this line of the .env file (KEY=value)"),
                );
                return None;
            }
        }
    }
    if let Some((path, text)) = input.secret_dotenv {
        let lookup = |k: &str| input.env.get(k).or_else(|| vars.get(k)).cloned();
        match dotenv::parse(text, &lookup) {
            Ok(map) => {
                for (k, v) in map {
                    masker.add_name(&k);
                    masker.add_value(&v);
                    vars.insert(k, v);
                }
            }
            Err(e) => {
                // The line number only: the message could quote the decrypted line.
                diags.push(
                    Diag::error(
                        path,
                        Mark::new(e.line, 1),
                        "",
                        "invalid line in the decrypted file",
                    )
                    .hint("fix this line with `plimsoll secret edit` (KEY=value)"),
                );
                return None;
            }
        }
    }
    for (k, v) in input.env {
        if input.secret_env.contains(k) {
            masker.add_name(k);
            masker.add_value(v);
        } else {
            masker.observe(k, v);
        }
        vars.insert(k.clone(), v.clone());
    }

    let root = match yaml::parse(input.text, input.file) {
        Ok(n) => n,
        Err(d) => {
            diags.push(d);
            return None;
        }
    };
    let mut sources: Vec<std::path::PathBuf> = std::iter::once(input.file.to_path_buf())
        .chain(input.overrides.iter().map(|(p, _)| p.clone()))
        .collect();
    let start = diags.len();
    let main = input
        .abs_dir
        .join(input.file.file_name().unwrap_or_default());
    let mut includes = super::include::Includes {
        files: input.files,
        sources: &mut sources,
        diags,
        seen: Vec::new(),
    };
    let lookup = |k: &str| vars.get(k).cloned();
    // As Compose: each file's `extends` first, then the override files merged, then `include:`.
    let mut root = root;
    let merged = if super::extends::apply(&mut includes, &mut root, &main, input.abs_dir, &lookup) {
        super::merge::overlay(root, input.overrides, &lookup, &mut includes, input.abs_dir)
    } else {
        None
    };
    let (included, root) = match merged {
        Some(mut root) => (
            includes.apply(&mut root, input.abs_dir, &vars, &[main]),
            root,
        ),
        None => (false, Node::new(Value::Null, Mark::default())),
    };
    for (k, v) in std::mem::take(&mut includes.seen) {
        masker.observe(&k, &v);
    }
    let stack = if included {
        let mut cx = Cx {
            file: input.file,
            input,
            diags,
            vars: &vars,
            masker: &mut masker,
            marks: BTreeMap::new(),
            references: Vec::new(),
        };
        cx.stack(root)
    } else {
        None
    };
    // Included and extended files are read by absolute path: name those under
    // the stack directory as the user named it, like the Compose file.
    let read = sources.clone();
    for path in sources.iter_mut().skip(1) {
        if let Ok(rest) = path.strip_prefix(input.abs_dir) {
            *path = input.dir.join(rest);
        }
    }
    // A place in another file than `input.file` is marked with its index: name that file.
    for d in &mut diags[start..] {
        if d.mark.file > 0
            && d.file == input.file
            && let Some(path) = sources.get(d.mark.file as usize)
        {
            d.file = path.clone();
        } else if let Some(i) = read.iter().skip(1).position(|p| *p == d.file) {
            d.file = sources[i + 1].clone();
        }
    }
    Some(Loaded {
        stack: stack?,
        masker,
        sources,
    })
}

/// The implemented entries of a mapping (key, value, where the key stands) and its `x-` fields.
type Fields<'n> = (
    Vec<(&'n str, &'n Node, Mark)>,
    BTreeMap<String, serde_json::Value>,
);

/// A diagnostic just recorded, to add a hint to.
struct Recorded<'a>(&'a mut Diag);

impl Recorded<'_> {
    fn hint(self, hint: impl Into<String>) {
        self.0.hint = Some(hint.into());
    }
}

struct Cx<'a, 'i> {
    file: &'a Path,
    input: &'a StackInput<'i>,
    diags: &'a mut Vec<Diag>,
    vars: &'a BTreeMap<String, String>,
    masker: &'a mut Masker,
    marks: BTreeMap<String, Mark>,
    /// Strings that referenced variables, for [`Cx::secret_fields`].
    references: Vec<Reference>,
}

/// A string of the Compose file that referenced variables.
struct Reference {
    /// Where it stands: map keys, and `[i]` for sequence items.
    at: Vec<String>,
    names: Vec<String>,
    /// As written.
    raw: String,
    /// Interpolated.
    value: String,
}

/// Keys whose list form is `KEY=value` items and map form `KEY: value`: a
/// secret in one entry hides that entry only.
const ENTRY_KEYS: &[&str] = &["environment", "labels", "annotations", "sysctls"];

/// The key path of the field a string built from a secret variable hides,
/// in Compose's canonical form (as `render` prints it): an entry of
/// `environment`, `labels`, `annotations` or `sysctls` (by its name, in
/// list form too), else the whole key of the service (`command`,
/// `healthcheck`, `image`, `extra_hosts`, `deploy`, ...), or the top-level
/// object (`networks.x`).
fn field_path(at: &[String], raw: &str, value: &str) -> Vec<String> {
    let is_index = |s: &str| s.starts_with('[');
    let mut path: Vec<String> = Vec::new();
    if at.first().map(String::as_str) == Some("services") && at.len() >= 3 {
        path.extend(at[..3].iter().cloned());
        let key = at[2].as_str();
        if ENTRY_KEYS.contains(&key) {
            match at.get(3) {
                Some(entry) if !is_index(entry) => path.push(entry.clone()),
                // `- NAME=value`: the name as written, unless the name itself holds a variable.
                Some(_) if at.len() == 4 => {
                    let name = raw.split('=').next().unwrap_or_default();
                    if !name.contains('$') {
                        path.push(value.split('=').next().unwrap_or_default().to_string());
                    }
                }
                _ => {}
            }
        }
    } else {
        path.extend(at.iter().take(2).filter(|c| !is_index(c)).cloned());
    }
    path
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn idx(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

impl Cx<'_, '_> {
    /// Records an error; `.hint(...)` on the result adds what to do.
    fn err(&mut self, mark: Mark, key: &str, msg: impl Into<String>) -> Recorded<'_> {
        self.diags.push(Diag::error(self.file, mark, key, msg));
        Recorded(self.diags.last_mut().expect("just pushed"))
    }

    fn type_err(&mut self, node: &Node, key: &str, expected: &str) {
        let what = if key.is_empty() {
            "this value".to_string()
        } else {
            format!("`{key}`")
        };
        self.err(
            node.mark,
            key,
            format!("expected {expected}, found {}", node.type_name()),
        )
        .hint(format!(
            "write {what} as {expected} (`plimsoll schema stack` shows the shape of every key)"
        ));
    }

    // -- interpolation ------------------------------------------------------

    /// Interpolates every string value of the tree (keys are left as written).
    /// `at` is `path` as key components; a string that references a variable
    /// is remembered with them, to record the fields built from secret
    /// variables once every secret name is known ([`Cx::secret_fields`]).
    /// `budget`: the bytes the strings may still grow to together
    /// ([`super::interpolate::MAX_TOTAL_BYTES`]); past it, one error and no more.
    fn interpolate(
        &mut self,
        node: &mut Node,
        path: &str,
        at: &mut Vec<String>,
        budget: &mut usize,
    ) {
        match &mut node.value {
            Value::Str(s) => {
                let vars = self.vars;
                let raw = s.contains('$').then(|| s.clone());
                let done = match interpolate(s, &|k| vars.get(k).cloned()) {
                    Ok(v) if v.len() > *budget => {
                        *budget = 0;
                        self.err(
                            node.mark,
                            path,
                            format!(
                                "the file's values interpolate to more than {} bytes (64 MiB) together",
                                super::interpolate::MAX_TOTAL_BYTES
                            ),
                        )
                        .hint("use long variables in fewer places: this looks like an attempt to exhaust memory");
                        false
                    }
                    Ok(v) => {
                        *budget -= v.len();
                        *s = v;
                        true
                    }
                    Err(e) => {
                        let hint = match e {
                            InterpolateError::Invalid { .. } => {
                                "write ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message} or ${VAR:+alternative}, and $$ for a literal $"
                            }
                            InterpolateError::Budget { .. } => {
                                "nest fewer ${...} expressions in one value, and keep values under 1 MiB"
                            }
                            InterpolateError::Required { .. } => {
                                "set the variable in the stack's .env file, pass it from the environment (--pass-env NAME), or give it a default: ${VAR:-default}"
                            }
                        };
                        self.err(node.mark, path, e.to_string()).hint(hint);
                        false
                    }
                };
                // Only once interpolation accepted the string (and its depth).
                let names = raw
                    .as_deref()
                    .filter(|_| done)
                    .map(super::interpolate::referenced_variables)
                    .unwrap_or_default();
                if let Some(raw) = raw.filter(|_| !names.is_empty()) {
                    self.references.push(Reference {
                        at: at.clone(),
                        names,
                        raw,
                        value: s.clone(),
                    });
                }
            }
            Value::Seq(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    if *budget == 0 {
                        return;
                    }
                    at.push(format!("[{i}]"));
                    self.interpolate(item, &idx(path, i), at, budget);
                    at.pop();
                }
            }
            Value::Map(entries) => {
                for (k, v) in entries.iter_mut() {
                    if *budget == 0 {
                        return;
                    }
                    let name = k.scalar_string().unwrap_or_default();
                    let key = join(path, &name);
                    at.push(name);
                    self.interpolate(v, &key, at, budget);
                    at.pop();
                }
            }
            _ => {}
        }
    }

    /// Records in the masker every field built from a secret variable whose
    /// value masking by value would not hide (see [`field_path`]): one that
    /// interpolates a secret shorter than [`super::secrets::MIN_MASKED_LEN`],
    /// or uses a secret without holding it (`${TOKEN:+on}`). Such a field is
    /// masked whole wherever it is shown, and its whole value, when long
    /// enough, by value too. A field that holds long secrets only keeps
    /// the rest of its text visible (`postgres://shop:********@db/shop`).
    fn secret_fields(&mut self, stack: &str) {
        for r in std::mem::take(&mut self.references) {
            let values: Vec<&String> = r
                .names
                .iter()
                .filter(|n| self.masker.is_secret_name(n))
                .filter_map(|n| self.vars.get(n))
                .filter(|v| !v.is_empty())
                .collect();
            let masked_by_value = values.iter().all(|v| {
                v.chars().count() >= super::secrets::MIN_MASKED_LEN && r.value.contains(v.as_str())
            });
            if masked_by_value {
                continue;
            }
            self.masker
                .add_field(stack, field_path(&r.at, &r.raw, &r.value));
            if values.iter().any(|v| r.value.contains(v.as_str())) {
                self.masker.add_value(&r.value);
            }
        }
    }

    // -- scalar helpers -----------------------------------------------------

    fn string(&mut self, node: &Node, key: &str) -> Option<String> {
        match &node.value {
            Value::Seq(_) | Value::Map(_) | Value::Null => {
                self.type_err(node, key, "a string");
                None
            }
            _ => node.scalar_string(),
        }
    }

    fn opt_string(&mut self, node: &Node, key: &str) -> Option<String> {
        if node.is_null() {
            None
        } else {
            self.string(node, key)
        }
    }

    fn boolean(&mut self, node: &Node, key: &str) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            Value::Str(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "y" => Some(true),
                "false" | "no" | "off" | "n" => Some(false),
                _ => {
                    self.type_err(node, key, "true or false");
                    None
                }
            },
            _ => {
                self.type_err(node, key, "true or false");
                None
            }
        }
    }

    fn int(&mut self, node: &Node, key: &str) -> Option<i64> {
        match &node.value {
            Value::Int(i) => Some(*i),
            Value::Str(s) if s.trim().parse::<i64>().is_ok() => s.trim().parse().ok(),
            _ => {
                self.type_err(node, key, "a whole number");
                None
            }
        }
    }

    fn duration(&mut self, node: &Node, key: &str) -> Option<GoDuration> {
        let s = self.string(node, key)?;
        let d = GoDuration::parse(&s);
        if d.is_none() {
            self.err(node.mark, key, format!("invalid duration `{s}`"))
                .hint("write a number with a unit, like 30s, 1m30s or 500ms");
        }
        d
    }

    fn bytes(&mut self, node: &Node, key: &str) -> Option<Bytes> {
        if let Value::Int(i) = node.value
            && i >= 0
        {
            return Some(Bytes(i as u64));
        }
        let s = self.string(node, key)?;
        let b = Bytes::parse(&s);
        if b.is_none() {
            self.err(node.mark, key, format!("invalid size `{s}`"))
                .hint("write a number of bytes with an optional unit: 512m, 1g, 256MiB");
        }
        b
    }

    /// The items of a list; nothing (and an error unless null) for anything else.
    fn seq<'n>(&mut self, node: &'n Node, path: &str, expected: &str) -> &'n [Node] {
        match &node.value {
            Value::Seq(items) => items,
            Value::Null => &[],
            _ => {
                self.type_err(node, path, expected);
                &[]
            }
        }
    }

    fn string_list(&mut self, node: &Node, key: &str) -> Vec<String> {
        match &node.value {
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, n)| self.string(n, &idx(key, i)))
                .collect(),
            Value::Null => Vec::new(),
            _ => {
                self.type_err(node, key, "a list of strings");
                Vec::new()
            }
        }
    }

    fn string_or_list(&mut self, node: &Node, key: &str) -> Vec<String> {
        match &node.value {
            Value::Seq(_) => self.string_list(node, key),
            _ => self.string(node, key).into_iter().collect(),
        }
    }

    /// `KEY=value` list or mapping. A list entry without `=` and a mapping
    /// entry with a null value map to `None`.
    fn list_or_dict(
        &mut self,
        node: &Node,
        key: &str,
        allow_none: bool,
    ) -> BTreeMap<String, Option<String>> {
        let mut out = BTreeMap::new();
        match &node.value {
            Value::Map(entries) => {
                for (k, v) in entries {
                    let name = k.scalar_string().unwrap_or_default();
                    let value = match &v.value {
                        Value::Null if allow_none => None,
                        Value::Null => Some(String::new()),
                        _ => self.string(v, &join(key, &name)),
                    };
                    out.insert(name, value);
                }
            }
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let Some(s) = self.string(item, &idx(key, i)) else {
                        continue;
                    };
                    match s.split_once('=') {
                        Some((k, v)) => out.insert(k.to_string(), Some(v.to_string())),
                        None if allow_none => out.insert(s, None),
                        None => out.insert(s, Some(String::new())),
                    };
                }
            }
            Value::Null => {}
            _ => self.type_err(node, key, "a mapping or a list of KEY=value"),
        }
        out
    }

    fn string_map(&mut self, node: &Node, key: &str) -> BTreeMap<String, String> {
        self.list_or_dict(node, key, false)
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect()
    }

    /// The entries of a mapping, with unknown and unsupported keys reported.
    /// Returns the implemented entries and the `x-` extensions.
    fn fields<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        known: &[&str],
        unsupported: &[(&str, &str)],
    ) -> Fields<'n> {
        let mut out = Vec::new();
        let mut ext = BTreeMap::new();
        let Some(entries) = node.as_map() else {
            if !node.is_null() {
                self.type_err(node, path, "a mapping");
            }
            return (out, ext);
        };
        for (k, v) in entries {
            let Some(name) = k.as_str() else {
                self.err(
                    k.mark,
                    path,
                    format!(
                        "`{}` is not a valid key here",
                        k.scalar_string().unwrap_or_default()
                    ),
                )
                .hint("keys are names such as `image`; quote a key that only looks like a number or a boolean");
                continue;
            };
            let key_path = join(path, name);
            if name.starts_with("x-") {
                ext.insert(name.to_string(), to_json(v));
            } else if known.contains(&name) {
                out.push((name, v, k.mark));
            } else if let Some((_, why)) = unsupported.iter().find(|(u, _)| *u == name) {
                self.err(
                    k.mark,
                    &key_path,
                    format!("`{name}` is not supported: {why}"),
                )
                .hint(format!(
                    "remove `{name}` from the file, or run this stack with docker compose"
                ));
            } else {
                let suggestion = known
                    .iter()
                    .map(|c| (strsim::jaro_winkler(name, c), c))
                    .filter(|(score, _)| *score > 0.85)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, c)| *c);
                let d = self.err(k.mark, &key_path, format!("unknown key `{name}`"));
                match suggestion {
                    Some(s) => d.hint(format!("did you mean `{s}`?")),
                    None => d.hint("remove it; extension fields must start with `x-`"),
                }
            }
        }
        (out, ext)
    }

    // -- the file -----------------------------------------------------------

    fn stack(&mut self, mut root: Node) -> Option<Stack> {
        if root.is_null() {
            self.err(Mark::new(1, 1), "", "the file is empty")
                .hint("a Compose file needs a `services:` section");
            return None;
        }
        if root.as_map().is_none() {
            self.err(
                root.mark,
                "",
                format!(
                    "expected a mapping at the top level, found {}",
                    root.type_name()
                ),
            )
            .hint("a Compose file is a mapping with a `services:` key at the top, e.g. `services:` then `  web:` then `    image: nginx`");
            return None;
        }
        self.interpolate(
            &mut root,
            "",
            &mut Vec::new(),
            &mut super::interpolate::MAX_TOTAL_BYTES.clone(),
        );
        let (fields, extensions) = self.fields(&root, "", TOP_KEYS, TOP_UNSUPPORTED);
        let mut name = None;
        let mut services_node = None;
        let mut stack = Stack {
            name: String::new(),
            services: BTreeMap::new(),
            networks: BTreeMap::new(),
            volumes: BTreeMap::new(),
            secrets: BTreeMap::new(),
            configs: BTreeMap::new(),
            extensions,
            source: StackSource::default(),
        };
        for (key, node, mark) in &fields {
            match *key {
                "version" => {
                    self.diags.push(
                        Diag::warning(
                            self.file,
                            *mark,
                            "version",
                            "the attribute `version` is obsolete, it will be ignored, please remove it to avoid potential confusion",
                        ),
                    );
                }
                "name" => name = self.string(node, "name").map(|n| (n, node.mark)),
                "services" => services_node = Some(*node),
                _ => {}
            }
        }
        stack.name = match name {
            Some((n, mark)) => {
                if !valid_project_name(&n) {
                    self.err(mark, "name", format!("invalid project name `{n}`"))
                        .hint("a project name has only lowercase letters, digits, `-` and `_`, and starts with a letter or digit");
                }
                n
            }
            None => {
                let dir = self
                    .input
                    .abs_dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let n = normalize_project_name(&dir);
                if n.is_empty() {
                    self.err(
                        Mark::default(),
                        "name",
                        format!("the directory name `{dir}` gives no valid project name"),
                    )
                    .hint("set `name:` at the top of the Compose file");
                }
                n
            }
        };
        let project = stack.name.clone();
        for (key, node, _) in &fields {
            match *key {
                "networks" => stack.networks = self.networks(node, &project),
                "volumes" => stack.volumes = self.volumes(node, &project),
                "secrets" => stack.secrets = self.file_objects(node, "secrets", &project),
                "configs" => stack.configs = self.file_objects(node, "configs", &project),
                _ => {}
            }
        }
        match services_node {
            None => {
                self.err(root.mark, "services", "no `services:` section")
                    .hint("declare at least one service");
            }
            Some(node) => match node.as_map() {
                Some(entries) => {
                    for (k, v) in entries {
                        let name = k.scalar_string().unwrap_or_default();
                        if !valid_service_name(&name) {
                            self.err(k.mark, &join("services", &name), format!("invalid service name `{name}`"))
                                .hint("service names use letters, digits, `.`, `_` and `-`, starting with a letter or digit");
                            continue;
                        }
                        self.marks.insert(join("services", &name), k.mark);
                        if let Some(svc) = self.service(&name, v) {
                            stack.services.insert(name, svc);
                        }
                    }
                }
                None if node.is_null() => {}
                None => self.type_err(node, "services", "a mapping of service names to services"),
            },
        }
        self.decrypt_file_objects(&mut stack);
        self.secret_files(&stack);
        let name = stack.name.clone();
        self.secret_fields(&name);
        stack.source = StackSource {
            dir: self.input.dir.to_path_buf(),
            file: self.file.to_path_buf(),
            marks: std::mem::take(&mut self.marks),
            variables: self.vars.clone(),
            repository: None,
            pinned_builds: BTreeMap::new(),
            abs_dir: self.input.abs_dir.to_path_buf(),
            root: None,
        };
        if stack
            .services
            .values()
            .any(|s| s.networks.contains_key("default"))
            && !stack.networks.contains_key("default")
        {
            stack.networks.insert(
                "default".into(),
                Network {
                    name: format!("{project}_default"),
                    ..Network::default()
                },
            );
        }
        Some(stack)
    }

    fn networks(&mut self, node: &Node, project: &str) -> BTreeMap<String, Network> {
        let mut out = BTreeMap::new();
        let Some(entries) = self.entries(node, "networks") else {
            return out;
        };
        for (k, v) in entries {
            let key = k.scalar_string().unwrap_or_default();
            let path = join("networks", &key);
            let mut net = Network::default();
            let (fields, _) = self.fields(v, &path, NETWORK_KEYS, NETWORK_UNSUPPORTED);
            let mut name = None;
            for (f, n, _) in fields {
                let p = join(&path, f);
                match f {
                    "name" => name = self.string(n, &p),
                    "driver" => net.driver = self.opt_string(n, &p),
                    "driver_opts" => net.driver_opts = self.string_map(n, &p),
                    "external" => net.external = self.external(n, &p, &mut name),
                    "internal" => net.internal = self.boolean(n, &p).unwrap_or(false),
                    "labels" => net.labels = self.string_map(n, &p),
                    "ipam" => net.ipam = Some(self.ipam(n, &p)).filter(|i| *i != Ipam::default()),
                    "attachable" => net.attachable = self.boolean(n, &p).unwrap_or(false),
                    "enable_ipv6" => net.enable_ipv6 = self.boolean(n, &p),
                    _ => unreachable!("listed in NETWORK_KEYS"),
                }
            }
            net.name = resolve_name(name, net.external, project, &key);
            out.insert(key, net);
        }
        out
    }

    fn volumes(&mut self, node: &Node, project: &str) -> BTreeMap<String, Volume> {
        let mut out = BTreeMap::new();
        let Some(entries) = self.entries(node, "volumes") else {
            return out;
        };
        for (k, v) in entries {
            let key = k.scalar_string().unwrap_or_default();
            let path = join("volumes", &key);
            let mut vol = Volume::default();
            let (fields, _) = self.fields(v, &path, VOLUME_KEYS, &[]);
            let mut name = None;
            for (f, n, _) in fields {
                let p = join(&path, f);
                match f {
                    "name" => name = self.string(n, &p),
                    "driver" => vol.driver = self.opt_string(n, &p),
                    "driver_opts" => vol.driver_opts = self.string_map(n, &p),
                    "external" => vol.external = self.external(n, &p, &mut name),
                    "labels" => vol.labels = self.string_map(n, &p),
                    _ => unreachable!("listed in VOLUME_KEYS"),
                }
            }
            vol.name = resolve_name(name, vol.external, project, &key);
            out.insert(key, vol);
        }
        out
    }

    /// `external: true`, or the legacy `external: {name: x}`.
    fn external(&mut self, node: &Node, path: &str, name: &mut Option<String>) -> bool {
        if let Some(n) = node.get("name") {
            *name = self.string(n, &join(path, "name"));
            return true;
        }
        self.boolean(node, path).unwrap_or(false)
    }

    fn entries<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [(Node, Node)]> {
        match &node.value {
            Value::Map(m) => Some(m),
            Value::Null => None,
            _ => {
                self.type_err(node, path, "a mapping");
                None
            }
        }
    }

    fn file_objects(
        &mut self,
        node: &Node,
        kind: &str,
        project: &str,
    ) -> BTreeMap<String, FileObject> {
        let mut out = BTreeMap::new();
        let Some(entries) = self.entries(node, kind) else {
            return out;
        };
        let known: &[&str] = if kind == "configs" || self.input.stored {
            &["name", "file", "environment", "content"]
        } else {
            &["name", "file", "environment"]
        };
        let unsupported = [
            (
                "external",
                "external secrets and configs live in Swarm; use `file:` or `environment:`",
            ),
            ("driver", SWARM),
            ("driver_opts", SWARM),
            ("template_driver", SWARM),
            ("labels", SWARM),
        ];
        for (k, v) in entries {
            let key = k.scalar_string().unwrap_or_default();
            let path = join(kind, &key);
            let (fields, _) = self.fields(v, &path, known, &unsupported);
            let mut obj = FileObject {
                name: format!("{project}_{key}"),
                file: None,
                environment: None,
                content: None,
                encrypted: false,
            };
            for (f, n, _) in fields {
                let p = join(&path, f);
                match f {
                    "name" => obj.name = self.string(n, &p).unwrap_or_default(),
                    "file" => {
                        self.marks.insert(p.clone(), n.mark);
                        obj.file = self.string(n, &p).map(|f| self.host_path(&f));
                    }
                    "environment" => obj.environment = self.string(n, &p),
                    "content" => obj.content = self.string(n, &p),
                    _ => unreachable!("listed in known"),
                }
            }
            let sources = [
                obj.file.is_some(),
                obj.environment.is_some(),
                obj.content.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() != 1 {
                let what = if kind == "configs" {
                    "`file`, `environment` or `content`"
                } else {
                    "`file` or `environment`"
                };
                self.err(v.mark, &path, format!("needs exactly one of {what}"))
                    .hint(format!("give `{key}` one source, e.g. `file: ./{key}.txt`"));
            }
            out.insert(key, obj);
        }
        out
    }

    /// A file of the stack as the user names it: under the stack directory as
    /// given (`stacks/shop/db.age`), else as it is.
    fn shown(&self, path: &Path) -> String {
        match path.strip_prefix(self.input.abs_dir) {
            Ok(rest) => self.input.dir.join(rest).display().to_string(),
            Err(_) => path.display().to_string(),
        }
    }

    /// Secrets and configs whose `file:` is age-encrypted (`*.age`): read and
    /// decrypted here, their content kept in the model (copied into the
    /// container, never bind-mounted: that would need the clear file on disk).
    fn decrypt_file_objects(&mut self, stack: &mut Stack) {
        for (kind, objects) in [
            ("secrets", &mut stack.secrets),
            ("configs", &mut stack.configs),
        ] {
            for (key, obj) in objects.iter_mut() {
                let Some(file) = obj.file.clone() else {
                    continue;
                };
                let path = format!("{kind}.{key}.file");
                let mark = self.marks.get(&path).copied().unwrap_or_default();
                let bytes = match self.input.files.read(Path::new(&file)) {
                    Ok(Some(bytes)) => bytes,
                    // Reported by `secret_files` (secrets) or at apply (configs, as before).
                    _ => continue,
                };
                let shown = self.shown(Path::new(&file));
                if let Some(why) = super::age::sops_marker(Path::new(&file), &bytes) {
                    self.err(mark, &path, format!("{shown}: {why}"))
                        .hint(super::age::SOPS_HINT);
                    continue;
                }
                if !super::age::is_encrypted(Path::new(&file)) {
                    continue;
                }
                match super::age::decrypt_text(self.input.age, &bytes) {
                    Ok(text) => {
                        self.masker.add_value(&text);
                        obj.content = Some(text);
                        obj.file = None;
                        obj.encrypted = true;
                    }
                    Err(e) => {
                        let hint = e.hint();
                        self.err(mark, &path, format!("cannot decrypt {shown}: {e}"))
                            .hint(hint);
                        // So `secret_files` does not read the ciphertext as the secret.
                        obj.file = None;
                    }
                }
            }
        }
    }

    /// Reads secret files and secret variables so their values are masked
    /// everywhere; refuses config files outside the repository (read at apply).
    fn secret_files(&mut self, stack: &Stack) {
        for (key, obj) in &stack.configs {
            if let Some(file) = &obj.file
                && let Err(e) = self.input.files.kind(Path::new(file))
                && crate::source::refused(&e).is_some()
            {
                let path = format!("configs.{key}.file");
                let mark = self.marks.get(&path).copied().unwrap_or_default();
                let hint = crate::source::read_hint(&e, "");
                self.err(mark, &path, format!("cannot read config file {file}: {e}"))
                    .hint(hint);
            }
        }
        for (key, obj) in &stack.secrets {
            if let Some(file) = &obj.file {
                match self.input.files.read(Path::new(file)) {
                    Ok(Some(bytes)) => self.masker.add_value(&String::from_utf8_lossy(&bytes)),
                    Ok(None) => {
                        let path = format!("secrets.{key}.file");
                        let mark = self.marks.get(&path).copied().unwrap_or_default();
                        self.err(mark, &path, format!("secret file {file} does not exist"))
                            .hint(
                                "create the file on the host, or point `file:` at the right path",
                            );
                    }
                    Err(e) => {
                        let path = format!("secrets.{key}.file");
                        let mark = self.marks.get(&path).copied().unwrap_or_default();
                        let hint = crate::source::read_hint(
                            &e,
                            "point `file:` at a readable file (not a directory)",
                        );
                        self.err(mark, &path, format!("cannot read secret file {file}: {e}"))
                            .hint(hint);
                    }
                }
            }
            if let Some(var) = &obj.environment {
                if let Some(value) = self.vars.get(var) {
                    self.masker.add_value(value);
                }
                self.masker.add_name(var);
            }
        }
    }

    /// A host path from the file, resolved against the stack directory; `~` is the home directory.
    fn host_path(&self, p: &str) -> String {
        let path = if let Some(rest) =
            p.strip_prefix("~/")
                .or(if p == "~" { Some("") } else { None })
        {
            let home = self
                .vars
                .get("HOME")
                .cloned()
                .unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(rest)
        } else {
            self.input.abs_dir.join(p)
        };
        normalize_path(&path).to_string_lossy().into_owned()
    }

    // -- services -----------------------------------------------------------

    fn service(&mut self, name: &str, node: &Node) -> Option<Service> {
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
        let mut env_files: Vec<(PathBuf, bool, Mark, String)> = Vec::new();
        let mut environment = BTreeMap::new();
        let mut label_files: Vec<(String, Mark, String)> = Vec::new();
        for (key, n, mark) in &fields {
            self.marks.insert(join(&path, key), *mark);
            let p = join(&path, key);
            match *key {
                "build" => svc.build = self.build(n, &p),
                "cap_add" => svc.cap_add = self.string_list(n, &p),
                "cap_drop" => svc.cap_drop = self.string_list(n, &p),
                "command" => svc.command = self.command(n, &p),
                "configs" => svc.configs = self.file_refs(n, &p),
                "container_name" => svc.container_name = self.opt_string(n, &p),
                "depends_on" => svc.depends_on = self.depends_on(n, &p),
                "deploy" => svc.deploy = self.deploy(n, &p),
                "entrypoint" => svc.entrypoint = self.command(n, &p),
                "env_file" => env_files = self.env_files(n, &p),
                "environment" => environment = self.list_or_dict(n, &p, true),
                "expose" => svc.expose = self.expose(n, &p),
                "extra_hosts" => svc.extra_hosts = self.extra_hosts(n, &p),
                "healthcheck" => svc.healthcheck = self.healthcheck(n, &p),
                "hostname" => svc.hostname = self.opt_string(n, &p),
                "image" => svc.image = self.opt_string(n, &p),
                "init" => svc.init = self.boolean(n, &p),
                "labels" => svc.labels = self.string_map(n, &p),
                "logging" => svc.logging = self.logging(n, &p),
                "mem_limit" => svc.mem_limit = self.bytes(n, &p),
                "mem_reservation" => svc.mem_reservation = self.bytes(n, &p),
                "networks" => svc.networks = self.service_networks(n, &p),
                "ports" => svc.ports = self.ports(n, &p),
                "privileged" => svc.privileged = self.boolean(n, &p).unwrap_or(false),
                "profiles" => svc.profiles = self.string_list(n, &p),
                "pull_policy" => svc.pull_policy = self.pull_policy(n, &p),
                "read_only" => svc.read_only = self.boolean(n, &p).unwrap_or(false),
                "restart" => svc.restart = self.restart(n, &p),
                "secrets" => {
                    svc.secrets = self.file_refs(n, &p);
                    // Compose mounts a secret at /run/secrets/<source> unless told otherwise.
                    for r in &mut svc.secrets {
                        r.target
                            .get_or_insert_with(|| format!("/run/secrets/{}", r.source));
                    }
                }
                "stop_grace_period" => svc.stop_grace_period = self.duration(n, &p),
                "stop_signal" => svc.stop_signal = self.opt_string(n, &p),
                "tmpfs" => svc.tmpfs = self.string_or_list(n, &p),
                "ulimits" => svc.ulimits = self.ulimits(n, &p),
                "user" => svc.user = self.opt_string(n, &p),
                "volumes" => svc.volumes = self.mounts(n, &p),
                "working_dir" => svc.working_dir = self.opt_string(n, &p),
                "annotations" => svc.annotations = self.string_map(n, &p),
                "attach" => svc.attach = self.boolean(n, &p),
                "blkio_config" => svc.blkio_config = self.blkio_config(n, &p),
                "cgroup" => svc.cgroup = self.namespace(n, &p, &["host", "private"], false),
                "cgroup_parent" => svc.cgroup_parent = self.opt_string(n, &p),
                "cpu_period" => svc.cpu_period = self.nonzero_int(n, &p),
                "cpu_quota" => svc.cpu_quota = self.nonzero_int(n, &p),
                "cpu_rt_period" => svc.cpu_rt_period = self.nonzero_int(n, &p),
                "cpu_rt_runtime" => svc.cpu_rt_runtime = self.nonzero_int(n, &p),
                "cpu_shares" => svc.cpu_shares = self.nonzero_int(n, &p),
                "cpus" => svc.cpus = self.cpus(n, &p).filter(|c| *c != 0.0),
                "cpuset" => svc.cpuset = self.opt_string(n, &p),
                "device_cgroup_rules" => svc.device_cgroup_rules = self.string_list(n, &p),
                "devices" => svc.devices = self.devices(n, &p),
                "dns" => svc.dns = self.string_or_list(n, &p),
                "dns_opt" => svc.dns_opt = self.string_list(n, &p),
                "dns_search" => svc.dns_search = self.string_or_list(n, &p),
                "domainname" => svc.domainname = self.opt_string(n, &p),
                "external_links" => svc.external_links = self.string_list(n, &p),
                "gpus" => svc.gpus = self.gpus(n, &p),
                "group_add" => svc.group_add = self.string_list(n, &p),
                "ipc" => {
                    let modes = ["private", "shareable", "host", "none"];
                    svc.ipc = self.namespace(n, &p, &modes, true)
                }
                "label_file" => {
                    let files = self.string_or_list(n, &p);
                    label_files.extend(files.into_iter().map(|f| (f, n.mark, p.clone())));
                }
                "links" => svc.links = self.string_list(n, &p),
                "mac_address" => svc.mac_address = self.opt_string(n, &p),
                "mem_swappiness" => {
                    svc.mem_swappiness = self.int_in(n, &p, 0, 100).filter(|v| *v != 0)
                }
                "memswap_limit" => svc.memswap_limit = self.swap_bytes(n, &p),
                "network_mode" => {
                    let modes = ["host", "none", "bridge", "default"];
                    svc.network_mode = self.namespace(n, &p, &modes, true)
                }
                "oom_kill_disable" => svc.oom_kill_disable = self.boolean(n, &p).unwrap_or(false),
                "oom_score_adj" => {
                    svc.oom_score_adj = self.int_in(n, &p, -1000, 1000).filter(|v| *v != 0)
                }
                "pid" => svc.pid = self.namespace(n, &p, &["host"], true),
                "pids_limit" => svc.pids_limit = self.nonzero_int(n, &p),
                "scale" => svc.scale = self.replicas(n, &p),
                "platform" => svc.platform = self.opt_string(n, &p),
                "post_start" => svc.post_start = self.hooks(n, &p),
                "pre_stop" => svc.pre_stop = self.hooks(n, &p),
                "runtime" => svc.runtime = self.opt_string(n, &p),
                "security_opt" => svc.security_opt = self.string_list(n, &p),
                "shm_size" => svc.shm_size = self.bytes(n, &p).filter(|b| b.0 != 0),
                "stdin_open" => svc.stdin_open = self.boolean(n, &p).unwrap_or(false),
                "storage_opt" => svc.storage_opt = self.string_map(n, &p),
                "sysctls" => svc.sysctls = self.string_map(n, &p),
                "tty" => svc.tty = self.boolean(n, &p).unwrap_or(false),
                "userns_mode" => svc.userns_mode = self.namespace(n, &p, &["host"], false),
                "uts" => svc.uts = self.namespace(n, &p, &["host"], false),
                "volumes_from" => svc.volumes_from = self.volumes_from(n, &p),
                _ => unreachable!("listed in SERVICE_KEYS"),
            }
        }
        if let Some(x) = node.get("x-plimsoll") {
            match yaml::from_node::<PlimsollService>(x) {
                Ok(p) => svc.plimsoll = p,
                Err(e) => {
                    let path = if e.path.is_empty() {
                        join(&path, "x-plimsoll")
                    } else {
                        format!("{path}.x-plimsoll.{}", e.path)
                    };
                    let mark = if e.mark == Mark::default() {
                        x.mark
                    } else {
                        e.mark
                    };
                    self.err(mark, &path, e.message)
                        .hint("see `plimsoll schema stack` for the fields x-plimsoll takes");
                }
            }
            svc.extensions.remove("x-plimsoll");
        }
        for var in &svc.plimsoll.secret_env {
            self.masker.add_name(var);
        }
        svc.environment = self.environment(name, env_files, environment);
        self.label_files(&mut svc, label_files);
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

    /// `build:`: a context path, or the long form. The context resolves
    /// against the stack directory; a remote (git or URL) context is refused.
    fn build(&mut self, node: &Node, path: &str) -> Option<Build> {
        let mut b = Build::default();
        let mut context = None;
        let mut context_mark = node.mark;
        match &node.value {
            Value::Map(_) => {
                let (fields, _) = self.fields(node, path, BUILD_KEYS, BUILD_UNSUPPORTED);
                for (f, n, _) in fields {
                    let p = join(path, f);
                    match f {
                        "context" => {
                            context = self.string(n, &p);
                            context_mark = n.mark;
                        }
                        "dockerfile" => b.dockerfile = self.opt_string(n, &p),
                        "dockerfile_inline" => b.dockerfile_inline = self.opt_string(n, &p),
                        "args" => {
                            for (k, v) in self.list_or_dict(n, &p, true) {
                                // A name without a value comes from the environment, or is left out.
                                if let Some(v) = v.or_else(|| self.vars.get(&k).cloned()) {
                                    self.masker.observe(&k, &v);
                                    b.args.insert(k, v);
                                }
                            }
                        }
                        "labels" => b.labels = self.string_map(n, &p),
                        "cache_from" => b.cache_from = self.string_list(n, &p),
                        "no_cache" => b.no_cache = self.boolean(n, &p).unwrap_or(false),
                        "pull" => b.pull = self.boolean(n, &p).unwrap_or(false),
                        "extra_hosts" => {
                            b.extra_hosts = self.extra_hosts(n, &p);
                            if b.extra_hosts.len() > 1 {
                                self.err(n.mark, &p, "more than one build extra host is not supported: the engine API client plimsoll uses (bollard 0.21) sends one")
                                    .hint("keep one entry, or add the hosts in the Dockerfile");
                            }
                        }
                        "network" => b.network = self.opt_string(n, &p),
                        "target" => b.target = self.opt_string(n, &p),
                        "shm_size" => b.shm_size = self.bytes(n, &p),
                        "tags" => b.tags = self.string_list(n, &p),
                        _ => unreachable!("listed in BUILD_KEYS"),
                    }
                }
            }
            Value::Null => {}
            Value::Seq(_) => {
                self.type_err(node, path, "a context path or a mapping");
                return None;
            }
            _ => context = self.string(node, path),
        }
        let context = context
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| ".".into());
        let key = if node.as_map().is_some() {
            join(path, "context")
        } else {
            path.to_string()
        };
        if is_remote_context(&context) {
            self.err(
                context_mark,
                &key,
                format!("a remote build context (`{context}`) is not supported: plimsoll builds from the repository it deploys"),
            )
            .hint("put the sources in the config repository and give `context:` as a path, or build the image in CI and name it with `image:`");
            return None;
        }
        b.context = self.host_path(&context);
        if b.dockerfile_inline.is_some() && b.dockerfile.is_some() {
            let mark = node.get("dockerfile").map_or(node.mark, |n| n.mark);
            self.err(
                mark,
                &join(path, "dockerfile"),
                "`dockerfile` and `dockerfile_inline` are both set",
            )
            .hint("keep one of them");
            return None;
        }
        if b.dockerfile_inline.is_none() && b.dockerfile.is_none() {
            b.dockerfile = Some("Dockerfile".into());
        }
        // Where the context and the Dockerfile were written, for `check_builds`.
        self.marks.insert(format!("{path}.context"), context_mark);
        if let Some(n) = node.get("dockerfile") {
            self.marks.insert(format!("{path}.dockerfile"), n.mark);
        }
        Some(b)
    }

    fn command(&mut self, node: &Node, path: &str) -> Option<Vec<String>> {
        match &node.value {
            Value::Null => None,
            Value::Seq(_) => Some(self.string_list(node, path)),
            _ => {
                let s = self.string(node, path)?;
                match shlex::split(&s) {
                    Some(words) => Some(words),
                    None => {
                        self.err(
                            node.mark,
                            path,
                            format!("cannot split `{s}` into words: unbalanced quotes"),
                        )
                        .hint("close the quote, or write the command as a list");
                        None
                    }
                }
            }
        }
    }

    /// `post_start` / `pre_stop`: a list of hooks, each a mapping with a
    /// `command` and optionally `user`, `privileged`, `working_dir` and
    /// `environment`. Environment values are secret by the usual rules.
    fn hooks(&mut self, node: &Node, path: &str) -> Vec<Hook> {
        let mut out = Vec::new();
        for (i, item) in self.seq(node, path, "a list of hooks").iter().enumerate() {
            let p = idx(path, i);
            if item.as_map().is_none() {
                self.type_err(item, &p, "a mapping with `command:`");
                continue;
            }
            let (fields, _) = self.fields(item, &p, HOOK_KEYS, &[]);
            let mut hook = Hook::default();
            let mut has_command = false;
            for (f, n, _) in fields {
                let fp = join(&p, f);
                match f {
                    "command" => {
                        has_command = true;
                        let words = if n.is_null() {
                            Some(Vec::new())
                        } else {
                            self.command(n, &fp)
                        };
                        match words {
                            Some(w) if w.is_empty() => {
                                self.err(n.mark, &fp, "the hook's command is empty")
                                    .hint(HOOK_COMMAND_HINT);
                            }
                            Some(w) => hook.command = w,
                            // Unbalanced quotes, reported by `command`.
                            None => {}
                        }
                    }
                    "user" => hook.user = self.opt_string(n, &fp),
                    "privileged" => hook.privileged = self.boolean(n, &fp).unwrap_or(false),
                    "working_dir" => hook.working_dir = self.opt_string(n, &fp),
                    "environment" => hook.environment = self.list_or_dict(n, &fp, true),
                    _ => unreachable!("listed in HOOK_KEYS"),
                }
            }
            if !has_command {
                self.err(item.mark, &p, "a hook needs `command:`")
                    .hint(HOOK_COMMAND_HINT);
            }
            for (k, v) in &hook.environment {
                if let Some(v) = v {
                    self.masker.observe(k, v);
                }
            }
            if !hook.command.is_empty() {
                out.push(hook);
            }
        }
        out
    }

    fn env_files(&mut self, node: &Node, path: &str) -> Vec<(PathBuf, bool, Mark, String)> {
        let items: Vec<(usize, &Node)> = match &node.value {
            Value::Seq(items) => items.iter().enumerate().collect(),
            Value::Null => Vec::new(),
            _ => vec![(0, node)],
        };
        let mut out = Vec::new();
        for (i, item) in items {
            let p = if node.as_seq().is_some() {
                idx(path, i)
            } else {
                path.to_string()
            };
            let (file, required) = match &item.value {
                Value::Map(_) => {
                    let (fields, _) = self.fields(item, &p, &["path", "required", "format"], &[]);
                    let mut file = None;
                    let mut required = true;
                    for (k, n, _) in fields {
                        match k {
                            "path" => file = self.string(n, &join(&p, "path")),
                            "required" => {
                                required = self.boolean(n, &join(&p, "required")).unwrap_or(true)
                            }
                            "format" => {
                                if self.string(n, &join(&p, "format")).as_deref() != Some("raw") {
                                    self.err(
                                        n.mark,
                                        &join(&p, "format"),
                                        "only `format: raw` is known besides the default",
                                    )
                                    .hint("remove `format:`, or write `format: raw`");
                                }
                            }
                            _ => unreachable!(),
                        }
                    }
                    let Some(file) = file else {
                        self.err(item.mark, &p, "an env_file entry needs `path:`")
                            .hint("add `path:` with the file, e.g. `path: ./web.env`");
                        continue;
                    };
                    (file, required)
                }
                _ => match self.string(item, &p) {
                    Some(f) => (f, true),
                    None => continue,
                },
            };
            out.push((PathBuf::from(self.host_path(&file)), required, item.mark, p));
        }
        out
    }

    /// env_file values, then `environment:` over them; `- NAME` entries take
    /// their value from the project environment (Compose's rule).
    fn environment(
        &mut self,
        service: &str,
        env_files: Vec<(PathBuf, bool, Mark, String)>,
        environment: BTreeMap<String, Option<String>>,
    ) -> BTreeMap<String, Option<String>> {
        // `- NAME` entries take their value from the project environment.
        let environment: BTreeMap<String, Option<String>> = environment
            .into_iter()
            .map(|(k, v)| {
                let v = v.or_else(|| self.vars.get(&k).cloned());
                (k, v)
            })
            .collect();
        // Compose parses each env_file into a map that already holds the
        // service's environment and the earlier env_files; lookups go to the
        // project environment first, then the service's environment.
        let mut acc: indexmap::IndexMap<String, String> = environment
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
            .collect();
        for (file, required, mark, path) in env_files {
            match self.input.files.read(&file) {
                Ok(Some(bytes)) => {
                    let shown = self.shown(&file);
                    if let Some(why) = super::age::sops_marker(&file, &bytes) {
                        self.err(mark, &path, format!("{shown}: {why}"))
                            .hint(super::age::SOPS_HINT);
                        continue;
                    }
                    let encrypted = super::age::is_encrypted(&file);
                    let bytes = if encrypted {
                        match super::age::decrypt_text(self.input.age, &bytes) {
                            Ok(text) => text.into_bytes(),
                            Err(e) => {
                                let hint = e.hint();
                                self.err(
                                    mark,
                                    &path,
                                    format!("cannot decrypt env file {shown}: {e}"),
                                )
                                .hint(hint);
                                continue;
                            }
                        }
                    } else {
                        bytes
                    };
                    let Ok(text) = String::from_utf8(bytes) else {
                        self.err(
                            mark,
                            &path,
                            format!("env file {} is not UTF-8 text", file.display()),
                        )
                        .hint("save the env file as UTF-8");
                        continue;
                    };
                    let (vars, env) = (self.vars, &environment);
                    let lookup = |k: &str| {
                        vars.get(k)
                            .cloned()
                            .or_else(|| env.get(k).cloned().flatten())
                    };
                    if encrypted {
                        // Every variable of an encrypted env file is secret, whatever its name.
                        if let Ok(vars) = dotenv::parse(&text, &lookup) {
                            for (k, v) in &vars {
                                self.masker.add_name(k);
                                self.masker.add_value(v);
                            }
                        }
                    }
                    let parsed = dotenv::parse_into(&text, &mut acc, &lookup);
                    // A line that interpolates a variable: its entry may be built from a secret.
                    for line in text.lines().filter(|_| parsed.is_ok()) {
                        let names = super::interpolate::referenced_variables(line);
                        let Some((key, _)) = line.split_once('=').filter(|_| !names.is_empty())
                        else {
                            continue;
                        };
                        let key = key.trim().trim_start_matches("export ").trim();
                        self.references.push(Reference {
                            at: ["services", service, "environment", key]
                                .map(String::from)
                                .to_vec(),
                            names,
                            raw: line.to_string(),
                            value: acc.get(key).cloned().unwrap_or_default(),
                        });
                    }
                    if let Err(e) = parsed {
                        // The line number only: the message of a decrypted file may quote it.
                        let message = if encrypted {
                            "invalid line in the decrypted env file".to_string()
                        } else {
                            e.message
                        };
                        self.diags.push(
                            Diag::error(&file, Mark::new(e.line, 1), "", message)
                                .hint(format!("fix this line of the env file (used by {path})")),
                        );
                    }
                }
                Ok(None) if !required => {}
                Ok(None) => {
                    self.err(
                        mark,
                        &path,
                        format!("env file {} not found", file.display()),
                    )
                    .hint("create the file, or mark it optional with `required: false`");
                }
                Err(e) => {
                    let hint = crate::source::read_hint(
                        &e,
                        "point env_file at a readable file: not a directory, and check its permissions",
                    );
                    self.err(
                        mark,
                        &path,
                        format!("cannot read env file {}: {e}", file.display()),
                    )
                    .hint(hint);
                }
            }
        }
        // `environment:` wins over env_file values.
        let mut out: BTreeMap<String, Option<String>> =
            acc.into_iter().map(|(k, v)| (k, Some(v))).collect();
        out.extend(environment);
        for (k, v) in &out {
            if let Some(v) = v {
                self.masker.observe(k, v);
            }
        }
        out
    }

    fn depends_on(&mut self, node: &Node, path: &str) -> BTreeMap<String, Dependency> {
        let mut out = BTreeMap::new();
        match &node.value {
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(name) = self.string(item, &idx(path, i)) {
                        self.marks.insert(format!("{path}.{name}"), item.mark);
                        out.insert(
                            name,
                            Dependency {
                                condition: Condition::ServiceStarted,
                                restart: false,
                                required: true,
                            },
                        );
                    }
                }
            }
            Value::Map(entries) => {
                for (k, v) in entries {
                    let name = k.scalar_string().unwrap_or_default();
                    let p = join(path, &name);
                    self.marks.insert(p.clone(), k.mark);
                    let mut dep = Dependency {
                        condition: Condition::ServiceStarted,
                        restart: false,
                        required: true,
                    };
                    let (fields, _) =
                        self.fields(v, &p, &["condition", "required", "restart"], &[]);
                    for (f, n, _) in fields {
                        let fp = join(&p, f);
                        match f {
                            "condition" => {
                                let Some(c) = self.string(n, &fp) else {
                                    continue;
                                };
                                match Condition::ALL.iter().find(|(s, _)| *s == c) {
                                    Some((_, cond)) => dep.condition = *cond,
                                    None => {
                                        self.err(n.mark, &fp, format!("invalid condition `{c}`")).hint(
                                            "use service_started, service_healthy or service_completed_successfully",
                                        );
                                    }
                                }
                            }
                            "required" => dep.required = self.boolean(n, &fp).unwrap_or(true),
                            "restart" => dep.restart = self.boolean(n, &fp).unwrap_or(false),
                            _ => unreachable!(),
                        }
                    }
                    out.insert(name, dep);
                }
            }
            Value::Null => {}
            _ => self.type_err(node, path, "a list of services or a mapping"),
        }
        out
    }

    fn deploy(&mut self, node: &Node, path: &str) -> Option<Deploy> {
        let unsupported = [
            ("mode", SWARM),
            ("labels", SWARM),
            ("placement", SWARM),
            (
                "restart_policy",
                "use the service's `restart:` on a single host",
            ),
            ("rollback_config", SWARM),
            ("update_config", "use `x-plimsoll.rollout` on a single host"),
            ("endpoint_mode", SWARM),
        ];
        let (fields, _) = self.fields(node, path, &["replicas", "resources"], &unsupported);
        let mut deploy = Deploy::default();
        for (key, n, mark) in fields {
            if key == "replicas" {
                let rp = join(path, key);
                self.marks.insert(rp.clone(), mark);
                deploy.replicas = self.replicas(n, &rp);
                continue;
            }
            let rp = join(path, "resources");
            let (res, _) = self.fields(n, &rp, &["limits", "reservations"], &[]);
            for (k, set, _) in res {
                let sp = join(&rp, k);
                let unsupported: &[(&str, &str)] = &[("generic_resources", SWARM)];
                let known: &[&str] = if k == "limits" {
                    &["cpus", "memory", "pids"]
                } else {
                    &["cpus", "memory", "devices"]
                };
                let (entries, _) = self.fields(set, &sp, known, unsupported);
                let mut rs = ResourceSet::default();
                for (f, v, _) in entries {
                    let fp = join(&sp, f);
                    match f {
                        "cpus" => rs.cpus = self.cpus(v, &fp),
                        "memory" => rs.memory = self.bytes(v, &fp),
                        "pids" => rs.pids = self.int(v, &fp),
                        "devices" => {
                            let items = self.seq(v, &fp, "a list of device requests");
                            rs.devices = (0..items.len())
                                .filter_map(|i| self.device_request(&items[i], &idx(&fp, i), true))
                                .collect();
                        }
                        _ => unreachable!(),
                    }
                }
                if k == "limits" {
                    deploy.resources.limits = Some(rs);
                } else {
                    deploy.resources.reservations = Some(rs);
                }
            }
        }
        Some(deploy)
    }

    fn expose(&mut self, node: &Node, path: &str) -> Vec<String> {
        let list = self.string_list(node, path);
        self.check_entries(
            node,
            path,
            &list,
            |e| {
                let (port, proto) = e.split_once('/').unwrap_or((e, "tcp"));
                parse_port_range(port).is_some() && valid_protocol(proto)
            },
            "port",
            "write a container port or range, optionally with /tcp, /udp or /sctp",
        );
        list
    }

    /// Reports each entry of the list at `node` that `valid` rejects, at the
    /// entry's own line: "invalid WHAT `entry`".
    fn check_entries(
        &mut self,
        node: &Node,
        path: &str,
        list: &[String],
        valid: impl Fn(&str) -> bool,
        what: &str,
        hint: &str,
    ) {
        for (i, e) in list.iter().enumerate().filter(|(_, e)| !valid(e)) {
            let mark = node
                .as_seq()
                .and_then(|s| s.get(i))
                .map_or(node.mark, |n| n.mark);
            self.err(mark, &idx(path, i), format!("invalid {what} `{e}`"))
                .hint(hint);
        }
    }

    fn extra_hosts(&mut self, node: &Node, path: &str) -> Vec<String> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        match &node.value {
            Value::Map(entries) => {
                for (k, v) in entries {
                    let host = k.scalar_string().unwrap_or_default();
                    let p = join(path, &host);
                    let ips = match &v.value {
                        Value::Seq(_) => self.string_list(v, &p),
                        _ => self.string(v, &p).into_iter().collect(),
                    };
                    pairs.extend(ips.into_iter().map(|ip| (host.clone(), ip)));
                }
            }
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let Some(s) = self.string(item, &idx(path, i)) else {
                        continue;
                    };
                    match s.split_once('=').or_else(|| s.split_once(':')) {
                        Some((h, ip)) => pairs.push((h.to_string(), ip.to_string())),
                        None => self
                            .err(
                                item.mark,
                                &idx(path, i),
                                format!("invalid extra host `{s}`"),
                            )
                            .hint("write HOST=IP or HOST:IP"),
                    }
                }
            }
            Value::Null => {}
            _ => self.type_err(node, path, "a list or a mapping"),
        }
        // Compose prints them sorted, with `=` and IPv6 addresses without brackets.
        let mut hosts: Vec<String> = pairs
            .into_iter()
            .map(|(h, ip)| format!("{h}={}", ip.trim_start_matches('[').trim_end_matches(']')))
            .collect();
        hosts.sort();
        hosts
    }

    fn healthcheck(&mut self, node: &Node, path: &str) -> Option<Healthcheck> {
        let known = [
            "test",
            "interval",
            "timeout",
            "retries",
            "start_period",
            "start_interval",
            "disable",
        ];
        let (fields, _) = self.fields(node, path, &known, &[]);
        let mut hc = Healthcheck::default();
        for (f, n, _) in fields {
            let p = join(path, f);
            match f {
                "test" => {
                    hc.test = match &n.value {
                        Value::Seq(_) => {
                            let t = self.string_list(n, &p);
                            match t.first().map(String::as_str) {
                                Some("CMD" | "CMD-SHELL" | "NONE") => {}
                                _ => {
                                    self.err(n.mark, &p, "a health check test list starts with CMD, CMD-SHELL or NONE")
                                        .hint("write [\"CMD\", \"prog\", \"arg\"], [\"CMD-SHELL\", \"command line\"], or a plain string");
                                }
                            }
                            t
                        }
                        _ => match self.string(n, &p) {
                            Some(s) if s.is_empty() => Vec::new(),
                            Some(s) => vec!["CMD-SHELL".into(), s],
                            None => Vec::new(),
                        },
                    }
                }
                "interval" => hc.interval = self.duration(n, &p),
                "timeout" => hc.timeout = self.duration(n, &p),
                "start_period" => hc.start_period = self.duration(n, &p),
                "start_interval" => hc.start_interval = self.duration(n, &p),
                "retries" => {
                    hc.retries = self.int(n, &p).and_then(|r| {
                        let r = u64::try_from(r).ok();
                        if r.is_none() {
                            self.err(n.mark, &p, "retries cannot be negative")
                                .hint("write 0 or a positive number of retries");
                        }
                        r
                    })
                }
                "disable" => hc.disable = self.boolean(n, &p).unwrap_or(false),
                _ => unreachable!(),
            }
        }
        Some(hc)
    }

    fn logging(&mut self, node: &Node, path: &str) -> Option<Logging> {
        let (fields, _) = self.fields(node, path, &["driver", "options"], &[]);
        let mut l = Logging::default();
        for (f, n, _) in fields {
            let p = join(path, f);
            match f {
                "driver" => l.driver = self.opt_string(n, &p),
                "options" => l.options = self.string_map(n, &p),
                _ => unreachable!(),
            }
        }
        Some(l)
    }

    fn service_networks(
        &mut self,
        node: &Node,
        path: &str,
    ) -> BTreeMap<String, Option<ServiceNetwork>> {
        let mut out = BTreeMap::new();
        match &node.value {
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(name) = self.string(item, &idx(path, i)) {
                        self.marks.insert(format!("{path}.{name}"), item.mark);
                        out.insert(name, None);
                    }
                }
            }
            Value::Map(entries) => {
                for (k, v) in entries {
                    let name = k.scalar_string().unwrap_or_default();
                    let p = join(path, &name);
                    self.marks.insert(p.clone(), k.mark);
                    if v.is_null() {
                        out.insert(name, None);
                        continue;
                    }
                    let unsupported = [
                        (
                            "mac_address",
                            "a MAC address per network needs engine API 1.44 (Docker 25); set the service's `mac_address` for its first network",
                        ),
                        (
                            "gw_priority",
                            "needs engine API 1.48 (Docker 28.1); plimsoll supports engines from API 1.41",
                        ),
                        (
                            "interface_name",
                            "needs engine API 1.49 (Docker 28.2); plimsoll supports engines from API 1.41",
                        ),
                    ];
                    let known = [
                        "aliases",
                        "ipv4_address",
                        "ipv6_address",
                        "link_local_ips",
                        "driver_opts",
                        "priority",
                    ];
                    let (fields, _) = self.fields(v, &p, &known, &unsupported);
                    let mut sn = ServiceNetwork::default();
                    for (f, n, _) in fields {
                        let fp = join(&p, f);
                        match f {
                            "aliases" => sn.aliases = self.string_list(n, &fp),
                            "ipv4_address" => sn.ipv4_address = self.opt_string(n, &fp),
                            "ipv6_address" => sn.ipv6_address = self.opt_string(n, &fp),
                            "link_local_ips" => sn.link_local_ips = self.string_list(n, &fp),
                            "driver_opts" => sn.driver_opts = self.string_map(n, &fp),
                            "priority" => sn.priority = self.int(n, &fp),
                            _ => unreachable!(),
                        }
                    }
                    out.insert(name, Some(sn));
                }
            }
            Value::Null => {}
            _ => self.type_err(node, path, "a list or a mapping of networks"),
        }
        out
    }

    /// The items of a list, each read by `long` when it is a mapping and by
    /// `short` from its string otherwise; an item either refuses is left out.
    fn long_or_short<T>(
        &mut self,
        node: &Node,
        path: &str,
        expected: &str,
        mut long: impl FnMut(&mut Self, &Node, &str) -> Option<T>,
        mut short: impl FnMut(&mut Self, &Node, &str, &str) -> Option<T>,
    ) -> Vec<T> {
        let items = self.seq(node, path, expected);
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let p = idx(path, i);
            let read = if item.as_map().is_some() {
                long(self, item, &p)
            } else {
                let Some(s) = self.string(item, &p) else {
                    continue;
                };
                short(self, item, &p, &s)
            };
            out.extend(read);
        }
        out
    }

    fn ports(&mut self, node: &Node, path: &str) -> Vec<Port> {
        let ports = self.long_or_short(
            node,
            path,
            "a list of ports",
            |this, item, p| this.long_port(item, p).map(|port| vec![port]),
            |this, item, p, s| match parse_short_port(s) {
                Ok(ports) => Some(ports),
                Err(why) => {
                    this.err(item.mark, p, format!("invalid port `{s}`: {why}")).hint(
                        "write [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL], e.g. 8080:80 or 127.0.0.1:5432:5432/tcp",
                    );
                    None
                }
            },
        );
        ports.into_iter().flatten().collect()
    }

    fn long_port(&mut self, node: &Node, path: &str) -> Option<Port> {
        let known = [
            "target",
            "published",
            "host_ip",
            "protocol",
            "mode",
            "name",
            "app_protocol",
        ];
        let (fields, _) = self.fields(node, path, &known, &[]);
        let mut port = Port {
            name: None,
            mode: "ingress".into(),
            host_ip: None,
            target: 0,
            published: None,
            protocol: "tcp".into(),
            app_protocol: None,
        };
        let mut target = None;
        for (f, n, _) in fields {
            let p = join(path, f);
            match f {
                "target" => {
                    target = self.string(n, &p).and_then(|t| {
                        let v = t.parse::<u16>().ok().filter(|v| *v > 0);
                        if v.is_none() {
                            self.err(n.mark, &p, format!("invalid container port `{t}`"))
                                .hint("use a port from 1 to 65535");
                        }
                        v
                    })
                }
                "published" => {
                    port.published = self.opt_string(n, &p).filter(|s| !s.is_empty());
                    if let Some(pubd) = &port.published
                        && parse_port_range(pubd).is_none()
                    {
                        self.err(n.mark, &p, format!("invalid published port `{pubd}`"))
                            .hint("use a port from 1 to 65535 or a range like 8000-8010");
                    }
                }
                "host_ip" => port.host_ip = self.opt_string(n, &p),
                "protocol" => {
                    let proto = self.string(n, &p).unwrap_or_default().to_ascii_lowercase();
                    if !valid_protocol(&proto) {
                        self.err(n.mark, &p, format!("invalid protocol `{proto}`"))
                            .hint("use tcp, udp or sctp");
                    }
                    port.protocol = proto;
                }
                "mode" => {
                    let mode = self.string(n, &p).unwrap_or_default();
                    if mode != "ingress" && mode != "host" {
                        self.err(n.mark, &p, format!("invalid port mode `{mode}`"))
                            .hint("use host or ingress");
                    }
                    port.mode = mode;
                }
                "name" => port.name = self.opt_string(n, &p),
                "app_protocol" => port.app_protocol = self.opt_string(n, &p),
                _ => unreachable!(),
            }
        }
        match target {
            Some(t) => {
                port.target = t;
                Some(port)
            }
            None => {
                if node.get("target").is_none() {
                    self.err(node.mark, path, "a port in long form needs `target:`")
                        .hint("add `target:` with the container port, e.g. `target: 80`");
                }
                None
            }
        }
    }

    fn pull_policy(&mut self, node: &Node, path: &str) -> Option<PullPolicy> {
        let s = self.string(node, path)?;
        let policy = match s.as_str() {
            "always" => PullPolicy::Always,
            "never" => PullPolicy::Never,
            "missing" | "if_not_present" => PullPolicy::Missing,
            "build" => PullPolicy::Build,
            "refresh" => {
                self.err(node.mark, path, "`pull_policy: refresh` names no period")
                    .hint("use daily, weekly or every_<duration> (e.g. every_12h) to pull again after that long");
                return None;
            }
            _ => match PullPolicy::refresh(&s) {
                Some(p @ PullPolicy::Refresh { period, .. }) if !period.is_zero() => p,
                _ => {
                    self.err(node.mark, path, format!("invalid pull_policy `{s}`"))
                        .hint("use always, never, missing, build, daily, weekly or every_<duration> (e.g. every_12h, every_1w2d)");
                    return None;
                }
            },
        };
        Some(policy)
    }

    fn restart(&mut self, node: &Node, path: &str) -> Option<RestartPolicy> {
        let s = self.string(node, path)?;
        let r = RestartPolicy::parse(&s);
        if r.is_none() {
            self.err(node.mark, path, format!("invalid restart policy `{s}`"))
                .hint("use no, always, unless-stopped, on-failure or on-failure:N");
        }
        r
    }

    fn file_refs(&mut self, node: &Node, path: &str) -> Vec<FileRef> {
        self.long_or_short(
            node,
            path,
            "a list",
            |this, item, p| {
                let r = this.long_file_ref(item, p)?;
                this.marks.insert(format!("{path}.{}", r.source), item.mark);
                Some(r)
            },
            |this, item, _, s| {
                this.marks.insert(format!("{path}.{s}"), item.mark);
                Some(FileRef::named(s))
            },
        )
    }

    fn long_file_ref(&mut self, node: &Node, path: &str) -> Option<FileRef> {
        let mut r = FileRef::named("");
        let (fields, _) = self.fields(node, path, &["source", "target", "uid", "gid", "mode"], &[]);
        for (f, n, _) in fields {
            let fp = join(path, f);
            match f {
                "source" => r.source = self.string(n, &fp).unwrap_or_default(),
                "target" => r.target = self.opt_string(n, &fp),
                "uid" => r.uid = self.opt_string(n, &fp),
                "gid" => r.gid = self.opt_string(n, &fp),
                "mode" => {
                    r.mode = match &n.value {
                        Value::Int(m) => u32::try_from(*m).ok(),
                        Value::Str(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8).ok(),
                        _ => None,
                    };
                    if r.mode.is_none() {
                        self.err(n.mark, &fp, "invalid file mode")
                            .hint("write an octal mode such as 0440");
                    }
                }
                _ => unreachable!(),
            }
        }
        if r.source.is_empty() {
            self.err(node.mark, path, "needs `source:`")
                .hint("name the top-level secret or config with `source:`");
            return None;
        }
        Some(r)
    }

    fn ulimits(&mut self, node: &Node, path: &str) -> BTreeMap<String, Ulimit> {
        let mut out = BTreeMap::new();
        let Some(entries) = self.entries(node, path) else {
            return out;
        };
        for (k, v) in entries {
            let name = k.scalar_string().unwrap_or_default();
            let p = join(path, &name);
            let limit = if v.as_map().is_some() {
                let (fields, _) = self.fields(v, &p, &["soft", "hard"], &[]);
                let (mut soft, mut hard) = (None, None);
                for (f, n, _) in fields {
                    let x = self.int(n, &join(&p, f));
                    if f == "soft" { soft = x } else { hard = x }
                }
                match (soft, hard) {
                    (Some(soft), Some(hard)) if soft <= hard => Some(Ulimit::Pair { soft, hard }),
                    (Some(_), Some(_)) => {
                        self.err(v.mark, &p, "soft limit is above the hard limit")
                            .hint("make `soft` less than or equal to `hard`");
                        None
                    }
                    _ => {
                        self.err(v.mark, &p, "a ulimit mapping needs both `soft` and `hard`")
                            .hint("write both `soft:` and `hard:`, or a single number for both");
                        None
                    }
                }
            } else {
                self.int(v, &p).map(Ulimit::Single)
            };
            if let Some(l) = limit {
                out.insert(name, l);
            }
        }
        out
    }

    fn mounts(&mut self, node: &Node, path: &str) -> Vec<Mount> {
        self.long_or_short(
            node,
            path,
            "a list of volumes",
            |this, item, p| {
                let m = this.long_mount(item, p)?;
                Some(this.mark_volume(path, item, m))
            },
            |this, item, p, s| match parse_short_volume(s) {
                Ok(mut m) => {
                    if m.kind == MountType::Bind {
                        m.source = m.source.map(|s| this.host_path(&s));
                    }
                    Some(this.mark_volume(path, item, m))
                }
                Err(why) => {
                    this.err(item.mark, p, format!("invalid volume `{s}`: {why}"))
                        .hint("write [SOURCE:]TARGET[:ro|rw], e.g. data:/var/lib/data or ./conf:/etc/app:ro");
                    None
                }
            },
        )
    }

    /// Notes where a mount of a named volume stands, for diagnostics about that volume.
    fn mark_volume(&mut self, path: &str, item: &Node, m: Mount) -> Mount {
        if let Some(src) = &m.source
            && m.kind == MountType::Volume
        {
            self.marks.insert(format!("{path}.{src}"), item.mark);
        }
        m
    }

    fn long_mount(&mut self, node: &Node, path: &str) -> Option<Mount> {
        let known = [
            "type",
            "source",
            "target",
            "read_only",
            "bind",
            "volume",
            "tmpfs",
            "consistency",
        ];
        let (fields, _) = self.fields(
            node,
            path,
            &known,
            &[
                (
                    "image",
                    "an image mount needs engine API 1.47 (Docker 28); plimsoll supports engines from API 1.41",
                ),
                ("cluster", SWARM),
                ("npipe", "a Windows-only setting"),
            ],
        );
        let mut kind = None;
        let mut m = Mount {
            kind: MountType::Volume,
            source: None,
            target: String::new(),
            read_only: false,
            bind: None,
            volume: None,
            tmpfs: None,
        };
        for (f, n, _) in fields {
            let p = join(path, f);
            match f {
                "type" => {
                    let t = self.string(n, &p).unwrap_or_default();
                    kind = match t.as_str() {
                        "volume" => Some(MountType::Volume),
                        "bind" => Some(MountType::Bind),
                        "tmpfs" => Some(MountType::Tmpfs),
                        _ => {
                            let why = match t.as_str() {
                                "image" => {
                                    ": an image mount needs engine API 1.47 (Docker 28); plimsoll supports engines from API 1.41"
                                }
                                "npipe" => ": a Windows-only mount type",
                                "cluster" => ": a Swarm-only mount type",
                                _ => "",
                            };
                            self.err(n.mark, &p, format!("unsupported mount type `{t}`{why}"))
                                .hint("use volume, bind or tmpfs");
                            return None;
                        }
                    }
                }
                "source" => m.source = self.opt_string(n, &p).filter(|s| !s.is_empty()),
                "target" => m.target = self.string(n, &p).unwrap_or_default(),
                "read_only" => m.read_only = self.boolean(n, &p).unwrap_or(false),
                "consistency" => {}
                "bind" => {
                    let (bf, _) =
                        self.fields(n, &p, &["propagation", "create_host_path", "selinux"], &[]);
                    // The long syntax does not imply create_host_path (Compose's rule).
                    let mut b = BindOptions::default();
                    for (k, v, _) in bf {
                        let kp = join(&p, k);
                        match k {
                            "propagation" => b.propagation = self.opt_string(v, &kp),
                            "create_host_path" => {
                                b.create_host_path = self.boolean(v, &kp).unwrap_or(false)
                            }
                            "selinux" => b.selinux = self.opt_string(v, &kp),
                            _ => unreachable!(),
                        }
                    }
                    m.bind = Some(b);
                }
                "volume" => {
                    let (vf, _) = self.fields(n, &p, &["nocopy", "subpath"], &[]);
                    let mut o = VolumeOptions::default();
                    for (k, v, _) in vf {
                        let kp = join(&p, k);
                        match k {
                            "nocopy" => o.nocopy = self.boolean(v, &kp).unwrap_or(false),
                            "subpath" => o.subpath = self.opt_string(v, &kp),
                            _ => unreachable!(),
                        }
                    }
                    m.volume = Some(o);
                }
                "tmpfs" => {
                    let (tf, _) = self.fields(n, &p, &["size", "mode"], &[]);
                    let mut o = TmpfsOptions::default();
                    for (k, v, _) in tf {
                        let kp = join(&p, k);
                        match k {
                            "size" => o.size = self.bytes(v, &kp),
                            "mode" => o.mode = self.int(v, &kp).and_then(|x| u32::try_from(x).ok()),
                            _ => unreachable!(),
                        }
                    }
                    m.tmpfs = Some(o);
                }
                _ => unreachable!(),
            }
        }
        let Some(kind) = kind else {
            self.err(node.mark, path, "a volume in long form needs `type:`")
                .hint("use type: volume, bind or tmpfs");
            return None;
        };
        m.kind = kind;
        if m.target.is_empty() {
            self.err(node.mark, path, "a volume in long form needs `target:`")
                .hint("add `target:` with the absolute path in the container");
            return None;
        }
        if !m.target.starts_with('/') {
            let mark = node.get("target").map_or(node.mark, |t| t.mark);
            let target = m.target.clone();
            self.err(
                mark,
                &join(path, "target"),
                format!("the container path `{target}` must be absolute"),
            )
            .hint(format!(
                "write the path from the container's root, e.g. `/{target}`"
            ));
            return None;
        }
        if kind == MountType::Bind {
            match &m.source {
                Some(s) => m.source = Some(self.host_path(s)),
                None => {
                    self.err(node.mark, path, "a bind mount needs `source:`")
                        .hint("add `source:` with the host path, e.g. `source: ./conf`");
                    return None;
                }
            }
        }
        Some(m)
    }
}

/// Checks that each build context is a directory and its Dockerfile exists
/// (through `files`, at load; a stored revision is not checked: rollback
/// reuses the image built for it).
pub fn check_builds(stack: &Stack, files: &dyn Files, diags: &mut Vec<Diag>) {
    for (name, svc) in &stack.services {
        let Some(b) = &svc.build else { continue };
        let file = &stack.source.file;
        let key = |k: &str| format!("services.{name}.build.{k}");
        let context_mark = stack.source.mark(name, "build.context");
        let dir = Path::new(&b.context);
        match files.read(dir) {
            Ok(None) => {
                diags.push(
                    Diag::error(
                        file,
                        context_mark,
                        key("context"),
                        format!("the build context {} does not exist", b.context),
                    )
                    .hint("create the directory, or point `context:` at it (relative to the stack directory)"),
                );
                continue;
            }
            Ok(Some(_)) => {
                diags.push(
                    Diag::error(
                        file,
                        context_mark,
                        key("context"),
                        format!("the build context {} is a file, not a directory", b.context),
                    )
                    .hint("point `context:` at the directory that holds the sources and the Dockerfile"),
                );
                continue;
            }
            Err(e) if crate::source::refused(&e).is_some() => {
                diags.push(
                    Diag::error(
                        file,
                        context_mark,
                        key("context"),
                        format!("the build context {}: {e}", b.context),
                    )
                    .hint(crate::source::read_hint(&e, "")),
                );
                continue;
            }
            // Reading a directory fails: it exists.
            Err(_) => {}
        }
        // The build reads the context's `.dockerignore` and its Dockerfile
        // from the file system (`build::scan`): neither may lead out of the
        // repository through a symlink.
        let ignore = dir.join(".dockerignore");
        if let Err(e) = files.kind(&ignore) {
            diags.push(
                Diag::error(
                    file,
                    context_mark,
                    key("context"),
                    format!("{}: {e}", ignore.display()),
                )
                .hint(crate::source::read_hint(
                    &e,
                    "check that the file is readable",
                )),
            );
        }
        // The Dockerfile: reported at `dockerfile:` where it is written, else at `context:`.
        let written = stack
            .source
            .marks
            .contains_key(&format!("services.{name}.build.dockerfile"));
        let (mark, k) = if written {
            (
                stack.source.mark(name, "build.dockerfile"),
                key("dockerfile"),
            )
        } else {
            (context_mark, key("context"))
        };
        if b.dockerfile_inline.is_none() {
            let path = normalize_path(&dir.join(b.dockerfile.as_deref().unwrap_or("Dockerfile")));
            if let Err(e) = files.kind(&path)
                && crate::source::refused(&e).is_some()
            {
                diags.push(
                    Diag::error(
                        file,
                        mark,
                        k.clone(),
                        format!("the Dockerfile {}: {e}", path.display()),
                    )
                    .hint(crate::source::read_hint(&e, "")),
                );
            }
        }
        if let Some(df) = &b.dockerfile {
            let path = normalize_path(&dir.join(df));
            if let Ok(None) = files.read(&path) {
                diags.push(
                    Diag::error(
                        file,
                        mark,
                        k,
                        format!("the Dockerfile {} does not exist", path.display()),
                    )
                    .hint(
                        "create it, or name it with `dockerfile:` (relative to the build context)",
                    ),
                );
            }
        }
    }
}

/// A build context Compose would fetch: a git repository or a URL.
fn is_remote_context(context: &str) -> bool {
    context.contains("://") || context.starts_with("git@") || context.starts_with("github.com/")
}

/// The service keys of issue 7's second part: namespaces, devices, DNS,
/// legacy resource limits, links and label files.
impl Cx<'_, '_> {
    /// A whole number; Compose leaves 0 out (Go's `omitempty`), and so does plimsoll.
    fn nonzero_int(&mut self, node: &Node, key: &str) -> Option<i64> {
        self.int(node, key).filter(|v| *v != 0)
    }

    fn int_in(&mut self, node: &Node, key: &str, lo: i64, hi: i64) -> Option<i64> {
        let v = self.int(node, key)?;
        if v < lo || v > hi {
            self.err(node.mark, key, format!("`{v}` is out of range"))
                .hint(format!("write a whole number from {lo} to {hi}"));
            return None;
        }
        Some(v)
    }

    /// A number of CPUs: `0.5`, `2`, `"1.5"`.
    fn cpus(&mut self, node: &Node, key: &str) -> Option<f64> {
        let cpus = match &node.value {
            Value::Int(i) => Some(*i as f64),
            Value::Float(x) => Some(*x),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        };
        match cpus {
            Some(c) if c >= 0.0 && c.is_finite() => Some(c),
            _ => {
                self.err(node.mark, key, "invalid cpus value")
                    .hint("write a number of CPUs, like 0.5 or 2");
                None
            }
        }
    }

    /// `memswap_limit`: a size, or `-1` for unlimited swap; 0 is left out.
    fn swap_bytes(&mut self, node: &Node, key: &str) -> Option<i64> {
        let minus_one = match &node.value {
            Value::Int(i) => *i == -1,
            Value::Str(s) => s.trim() == "-1",
            _ => false,
        };
        if minus_one {
            return Some(-1);
        }
        self.bytes(node, key)
            .map(|b| b.0 as i64)
            .filter(|b| *b != 0)
    }

    /// A namespace mode (`ipc`, `pid`, `uts`, `cgroup`, `userns_mode`,
    /// `network_mode`): one of `modes`, or with `refs` also `service:NAME`
    /// and `container:NAME`.
    fn namespace(&mut self, node: &Node, key: &str, modes: &[&str], refs: bool) -> Option<String> {
        let v = self.opt_string(node, key)?;
        let reference = ["service:", "container:"]
            .iter()
            .any(|p| v.strip_prefix(p).is_some_and(|name| !name.is_empty()));
        if modes.contains(&v.as_str()) || refs && reference {
            return Some(v);
        }
        let mut allowed: Vec<String> = modes.iter().map(|m| format!("`{m}`")).collect();
        if refs {
            allowed.push("`service:NAME`".into());
            allowed.push("`container:NAME`".into());
        }
        let name = key.rsplit('.').next().unwrap_or(key);
        let hint = if name == "network_mode" {
            format!(
                "use {}; to join a network, list it under `networks:` instead",
                allowed.join(", ")
            )
        } else {
            format!("use {}", allowed.join(", "))
        };
        self.err(node.mark, key, format!("invalid {name} `{v}`"))
            .hint(hint);
        None
    }

    /// `devices`: `HOST[:CONTAINER[:PERMISSIONS]]` or the long form.
    fn devices(&mut self, node: &Node, path: &str) -> Vec<Device> {
        self.long_or_short(
            node,
            path,
            "a list of devices",
            |this, item, p| {
                let d = this.long_device(item, p)?;
                this.checked_device(item, p, d)
            },
            |this, item, p, s| {
                let parts: Vec<&str> = s.split(':').collect();
                let (source, target, permissions) = match parts.as_slice() {
                    [src] => (*src, *src, "rwm"),
                    [src, dst] => (*src, *dst, "rwm"),
                    [src, dst, perm] => (*src, *dst, *perm),
                    _ => {
                        this.err(item.mark, p, format!("invalid device `{s}`: too many `:`"))
                            .hint("write HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]], e.g. /dev/fuse or /dev/sda:/dev/xvda:rwm, or use the long form");
                        return None;
                    }
                };
                let d = Device {
                    source: source.to_string(),
                    target: target.to_string(),
                    permissions: Some(permissions.to_string()),
                };
                this.checked_device(item, p, d)
            },
        )
    }

    /// `gpus`: `all`, or a list of device requests (`capabilities` optional,
    /// `gpu` is implied).
    fn gpus(&mut self, node: &Node, path: &str) -> Vec<DeviceRequest> {
        if let Some(s) = node.as_str() {
            if s == "all" {
                return vec![DeviceRequest {
                    count: Some(-1),
                    ..DeviceRequest::default()
                }];
            }
            self.err(node.mark, path, format!("invalid gpus `{s}`"))
                .hint("write `gpus: all`, or a list of requests such as `- driver: nvidia` with `count:` or `device_ids:`");
            return Vec::new();
        }
        let items = self.seq(node, path, "`all` or a list of device requests");
        (0..items.len())
            .filter_map(|i| self.device_request(&items[i], &idx(path, i), false))
            .collect()
    }

    /// One device request. `count` is a number or `all` (-1); without
    /// `count` and `device_ids` it is all of them, as in Compose. Entries of
    /// `reservations.devices` must name their `capabilities`.
    fn device_request(
        &mut self,
        node: &Node,
        path: &str,
        needs_capabilities: bool,
    ) -> Option<DeviceRequest> {
        let keys = ["capabilities", "driver", "count", "device_ids", "options"];
        if node.as_map().is_none() {
            self.type_err(
                node,
                path,
                "a mapping with `driver`, `count`, `device_ids`, `capabilities`",
            );
            return None;
        }
        let (fields, _) = self.fields(node, path, &keys, &[]);
        let mut r = DeviceRequest::default();
        let mut count_mark = None;
        for (f, n, _) in fields {
            let fp = join(path, f);
            match f {
                "capabilities" => r.capabilities = self.string_list(n, &fp),
                "driver" => r.driver = self.opt_string(n, &fp),
                "count" => {
                    count_mark = Some(n.mark);
                    r.count = if n.as_str() == Some("all") {
                        Some(-1)
                    } else {
                        match self.int(n, &fp) {
                            Some(c) if c >= -1 => Some(c),
                            Some(c) => {
                                self.err(n.mark, &fp, format!("invalid count `{c}`"))
                                    .hint("write a number of devices, or `all`");
                                None
                            }
                            None => None,
                        }
                    }
                }
                "device_ids" => r.device_ids = self.string_list(n, &fp),
                "options" => r.options = self.string_map(n, &fp),
                _ => unreachable!(),
            }
        }
        if let Some(mark) = count_mark.filter(|_| r.count.is_some() && !r.device_ids.is_empty()) {
            self.err(
                mark,
                &join(path, "count"),
                "`count` and `device_ids` are both set",
            )
            .hint("give either how many devices (`count`) or which ones (`device_ids`)");
            return None;
        }
        if needs_capabilities && r.capabilities.is_empty() {
            self.err(node.mark, path, "a device reservation needs `capabilities`")
                .hint("name what the devices must offer, e.g. `capabilities: [gpu]`");
            return None;
        }
        if r.count.is_none() && r.device_ids.is_empty() {
            r.count = Some(-1);
        }
        Some(r)
    }

    /// `blkio_config`: `weight`, `weight_device` and the four throttle lists.
    fn blkio_config(&mut self, node: &Node, path: &str) -> BlkioConfig {
        let throttles = [
            "device_read_bps",
            "device_read_iops",
            "device_write_bps",
            "device_write_iops",
        ];
        let mut keys = vec!["weight", "weight_device"];
        keys.extend(throttles);
        let (fields, _) = self.fields(node, path, &keys, &[]);
        let mut b = BlkioConfig::default();
        for (f, n, _) in fields {
            let fp = join(path, f);
            match f {
                "weight" => b.weight = self.blkio_weight(n, &fp).filter(|w| *w != 0),
                "weight_device" => {
                    let list = self.device_values(n, &fp, "weight", Self::blkio_weight);
                    b.weight_device = list
                        .into_iter()
                        .map(|(path, weight)| WeightDevice { path, weight })
                        .collect();
                }
                _ => {
                    let list: Vec<ThrottleDevice> = self
                        .device_values(n, &fp, "rate", Self::bytes)
                        .into_iter()
                        .map(|(path, rate)| ThrottleDevice { path, rate })
                        .collect();
                    match f {
                        "device_read_bps" => b.device_read_bps = list,
                        "device_read_iops" => b.device_read_iops = list,
                        "device_write_bps" => b.device_write_bps = list,
                        _ => b.device_write_iops = list,
                    }
                }
            }
        }
        b
    }

    /// A block I/O weight: 10 to 1000 (0, Compose's "unset", is let through).
    fn blkio_weight(&mut self, node: &Node, key: &str) -> Option<u16> {
        let w = self.int(node, key)?;
        if w != 0 && !(10..=1000).contains(&w) {
            self.err(
                node.mark,
                key,
                format!("block I/O weight `{w}` is out of range"),
            )
            .hint("write a whole number from 10 to 1000");
            return None;
        }
        Some(w as u16)
    }

    /// A list of `{path: DEVICE, <what>: VALUE}` entries, each value read by
    /// `read`; a missing `path` or value is reported (an invalid one by `read`).
    fn device_values<V>(
        &mut self,
        node: &Node,
        path: &str,
        what: &str,
        mut read: impl FnMut(&mut Self, &Node, &str) -> Option<V>,
    ) -> Vec<(String, V)> {
        let items = self.seq(node, path, &format!("a list of `path` and `{what}`"));
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ip = idx(path, i);
            let (entry, _) = self.fields(item, &ip, &["path", what], &[]);
            let (mut dev, mut value) = (None, None);
            for (k, v, _) in entry {
                let kp = join(&ip, k);
                if k == "path" {
                    dev = self.string(v, &kp);
                } else {
                    value = read(self, v, &kp);
                }
            }
            let missing = item.get("path").is_none() || item.get(what).is_none();
            match (dev, value) {
                (Some(dev), Some(value)) => out.push((dev, value)),
                _ if missing && item.as_map().is_some() => {
                    self.err(item.mark, &ip, format!("needs `path:` and `{what}:`"))
                        .hint(format!(
                            "write the device as `path: /dev/sda` and its `{what}:`"
                        ));
                }
                _ => {}
            }
        }
        out
    }

    fn long_device(&mut self, node: &Node, path: &str) -> Option<Device> {
        let (fields, _) = self.fields(node, path, &["source", "target", "permissions"], &[]);
        let mut d = Device {
            source: String::new(),
            target: String::new(),
            permissions: None,
        };
        for (f, n, _) in fields {
            let fp = join(path, f);
            match f {
                "source" => d.source = self.string(n, &fp).unwrap_or_default(),
                "target" => d.target = self.string(n, &fp).unwrap_or_default(),
                "permissions" => d.permissions = self.opt_string(n, &fp),
                _ => unreachable!(),
            }
        }
        if d.source.is_empty() || d.target.is_empty() {
            self.err(
                node.mark,
                path,
                "a device in long form needs `source:` and `target:`",
            )
            .hint("write the host device as `source:` and its path in the container as `target:`");
            return None;
        }
        Some(d)
    }

    /// `device` if its container path is absolute and its permissions valid.
    fn checked_device(&mut self, node: &Node, path: &str, device: Device) -> Option<Device> {
        if !device.target.starts_with('/') {
            self.err(
                node.mark,
                path,
                format!(
                    "the container path `{}` of a device must be absolute",
                    device.target
                ),
            )
            .hint("write HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]], e.g. /dev/sda:/dev/xvda:rwm");
            return None;
        }
        if let Some(perm) = &device.permissions
            && (perm.is_empty() || !perm.chars().all(|c| matches!(c, 'r' | 'w' | 'm')))
        {
            self.err(
                node.mark,
                path,
                format!("invalid device permissions `{perm}`"),
            )
            .hint("use some of r (read), w (write) and m (mknod), e.g. rwm or r");
            return None;
        }
        Some(device)
    }

    /// `volumes_from`: `SERVICE` or `container:NAME`, each optionally `:ro` or `:rw`.
    fn volumes_from(&mut self, node: &Node, path: &str) -> Vec<String> {
        let list = self.string_list(node, path);
        self.check_entries(
            node,
            path,
            &list,
            |v| {
                let rest = v.strip_prefix("container:").unwrap_or(v);
                let (name, mode) = match rest.split_once(':') {
                    Some((n, m)) => (n, Some(m)),
                    None => (rest, None),
                };
                !name.is_empty() && mode.is_none_or(|m| m == "ro" || m == "rw")
            },
            "volumes_from",
            "write SERVICE or container:NAME, optionally followed by :ro or :rw",
        );
        list
    }

    /// Reads `label_file` entries (dotenv syntax) under the service's `labels`.
    fn label_files(&mut self, svc: &mut Service, files: Vec<(String, Mark, String)>) {
        let mut from_files: BTreeMap<String, String> = BTreeMap::new();
        for (file, mark, path) in files {
            let host = PathBuf::from(self.host_path(&file));
            match self.input.files.read(&host) {
                Ok(Some(bytes)) => {
                    let Ok(text) = String::from_utf8(bytes) else {
                        self.err(
                            mark,
                            &path,
                            format!("label file {} is not UTF-8 text", host.display()),
                        )
                        .hint("save the label file as UTF-8");
                        continue;
                    };
                    match dotenv::parse(&text, &|_| None) {
                        Ok(map) => from_files.extend(map),
                        Err(e) => self.diags.push(
                            Diag::error(&host, Mark::new(e.line, 1), "", e.message)
                                .hint(format!("fix this line of the label file (used by {path})")),
                        ),
                    }
                }
                Ok(None) => {
                    self.err(
                        mark,
                        &path,
                        format!("label file {} not found", host.display()),
                    )
                    .hint("create the file, or remove it from label_file");
                }
                Err(e) => {
                    let hint = crate::source::read_hint(&e, "point label_file at a readable file");
                    self.err(
                        mark,
                        &path,
                        format!("cannot read label file {}: {e}", host.display()),
                    )
                    .hint(hint);
                }
            }
        }
        // `labels:` wins over the files; a later file over an earlier one.
        for (k, v) in from_files {
            svc.labels.entry(k).or_insert(v);
        }
    }

    /// Reads the seccomp profiles `security_opt` names by file, as Compose
    /// does (the engine takes the profile itself, not a path).
    fn seccomp_profiles(&mut self, path: &str, svc: &mut Service) {
        let key = join(path, "security_opt");
        let mark = self.marks.get(&key).copied().unwrap_or_default();
        for opt in svc.security_opt.clone() {
            let (name, value) = match opt.split_once('=') {
                Some(kv) => kv,
                None => match opt.split_once(':') {
                    Some(kv) => kv,
                    None => continue,
                },
            };
            if name != "seccomp" || value == "unconfined" || value == "builtin" {
                continue;
            }
            // A profile given inline (a stored revision holds them so).
            if value.starts_with('{') {
                match serde_json::from_str::<serde_json::Value>(value) {
                    Ok(profile) => {
                        svc.seccomp_profiles
                            .insert(opt.clone(), format!("seccomp={profile}"));
                    }
                    Err(e) => {
                        self.err(
                            mark,
                            &key,
                            format!("the inline seccomp profile is not JSON: {e}"),
                        )
                        .hint("write seccomp=<file> with a JSON profile, or seccomp=unconfined");
                    }
                }
                continue;
            }
            let file = PathBuf::from(self.host_path(value));
            let text = match self.input.files.read(&file) {
                Ok(Some(bytes)) => bytes,
                Ok(None) => {
                    self.err(
                        mark,
                        &key,
                        format!("seccomp profile {} not found", file.display()),
                    )
                    .hint("point seccomp= at a JSON profile file, or use seccomp=unconfined");
                    continue;
                }
                Err(e) => {
                    let hint = crate::source::read_hint(
                        &e,
                        "point seccomp= at a readable JSON profile file",
                    );
                    self.err(
                        mark,
                        &key,
                        format!("cannot read seccomp profile {}: {e}", file.display()),
                    )
                    .hint(hint);
                    continue;
                }
            };
            match serde_json::from_slice::<serde_json::Value>(&text) {
                Ok(profile) => {
                    svc.seccomp_profiles
                        .insert(opt.clone(), format!("seccomp={profile}"));
                }
                Err(e) => {
                    self.err(
                        mark,
                        &key,
                        format!("seccomp profile {} is not JSON: {e}", file.display()),
                    )
                    .hint(
                        "a seccomp profile is a JSON document (see the engine's default profile)",
                    );
                }
            }
        }
    }

    /// Compose's implied dependencies: `links` and `service:` namespaces
    /// (restarted with the service they use), `volumes_from` services.
    fn implied_dependencies(&mut self, path: &str, svc: &mut Service) {
        let mut implied: Vec<(String, bool, &str)> = Vec::new();
        for link in &svc.links {
            let name = link.split(':').next().unwrap_or(link);
            implied.push((name.to_string(), true, "links"));
        }
        for (key, name) in svc.service_namespaces() {
            implied.push((name.to_string(), true, key));
        }
        for v in &svc.volumes_from {
            if !v.starts_with("container:") {
                let name = v.split(':').next().unwrap_or(v);
                implied.push((name.to_string(), false, "volumes_from"));
            }
        }
        for (name, restart, key) in implied {
            if svc.depends_on.contains_key(&name) {
                continue;
            }
            if let Some(mark) = self.marks.get(&join(path, key)).copied() {
                self.marks
                    .entry(format!("{path}.depends_on.{name}"))
                    .or_insert(mark);
            }
            svc.depends_on.insert(
                name,
                Dependency {
                    condition: Condition::ServiceStarted,
                    restart,
                    required: true,
                },
            );
        }
    }

    /// Settings that cannot go with the service's `network_mode`: Compose
    /// rejects `networks`; the engine rejects the rest when the container starts.
    fn network_mode_conflicts(
        &mut self,
        path: &str,
        svc: &Service,
        fields: &[(&str, &Node, Mark)],
    ) {
        let Some(mode) = svc.network_mode.as_deref() else {
            return;
        };
        if matches!(mode, "bridge" | "default") {
            return;
        }
        let shared = mode.starts_with("service:") || mode.starts_with("container:");
        let mut conflicting = vec!["networks", "ports"];
        if shared {
            conflicting.extend([
                "expose",
                "hostname",
                "dns",
                "dns_search",
                "dns_opt",
                "extra_hosts",
                "mac_address",
                "links",
            ]);
        } else if mode == "host" {
            conflicting.push("mac_address");
        }
        for (key, node, mark) in fields {
            if !conflicting.contains(key) || node.is_null() {
                continue;
            }
            let why = if *key == "networks" {
                "Compose rejects the two together".to_string()
            } else if shared {
                format!(
                    "the container uses the network stack of `{}`",
                    mode.split_once(':').map_or(mode, |(_, n)| n)
                )
            } else {
                format!("the container has the {mode} network stack")
            };
            self.err(
                *mark,
                &join(path, key),
                format!("`{key}` cannot be used with `network_mode: {mode}`: {why}"),
            )
            .hint(format!("remove `{key}`, or remove `network_mode`"));
        }
    }

    /// A network's `ipam:`: driver, address pools, driver options.
    fn ipam(&mut self, node: &Node, path: &str) -> Ipam {
        let (fields, _) = self.fields(node, path, &["driver", "config", "options"], &[]);
        let mut ipam = Ipam::default();
        for (f, n, _) in fields {
            let p = join(path, f);
            match f {
                "driver" => ipam.driver = self.opt_string(n, &p),
                "options" => ipam.options = self.string_map(n, &p),
                "config" => {
                    let items = self.seq(n, &p, "a list of address pools");
                    for (i, item) in items.iter().enumerate() {
                        let ip = idx(&p, i);
                        let known = ["subnet", "gateway", "ip_range", "aux_addresses"];
                        let (pf, _) = self.fields(item, &ip, &known, &[]);
                        let mut pool = IpamPool::default();
                        for (k, v, _) in pf {
                            let kp = join(&ip, k);
                            match k {
                                "subnet" => pool.subnet = self.cidr(v, &kp, true),
                                "ip_range" => pool.ip_range = self.cidr(v, &kp, true),
                                "gateway" => pool.gateway = self.cidr(v, &kp, false),
                                "aux_addresses" => pool.aux_addresses = self.string_map(v, &kp),
                                _ => unreachable!(),
                            }
                        }
                        ipam.config.push(pool);
                    }
                }
                _ => unreachable!(),
            }
        }
        ipam
    }

    /// An IP address (`prefix: false`) or a subnet in CIDR notation.
    fn cidr(&mut self, node: &Node, key: &str, prefix: bool) -> Option<String> {
        let s = self.opt_string(node, key)?;
        let ok = if prefix {
            s.split_once('/').is_some_and(|(ip, len)| {
                let max = if ip.contains(':') { 128 } else { 32 };
                ip.parse::<std::net::IpAddr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= max)
            })
        } else {
            s.parse::<std::net::IpAddr>().is_ok()
        };
        if !ok {
            let what = if prefix { "subnet" } else { "IP address" };
            let example = if prefix {
                "172.28.0.0/16"
            } else {
                "172.28.0.1"
            };
            self.err(node.mark, key, format!("invalid {what} `{s}`"))
                .hint(format!("write it like {example}"));
        }
        Some(s)
    }

    /// A number of replicas (`scale`, `deploy.replicas`): a whole number, 0 or more.
    fn replicas(&mut self, node: &Node, key: &str) -> Option<u32> {
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
        let mark = |s: &Self, key: &str| s.marks.get(&join(path, key)).copied().unwrap_or_default();
        let replicas = svc.deploy.as_ref().and_then(|d| d.replicas);
        if let (Some(scale), Some(replicas)) = (svc.scale, replicas)
            && scale != replicas
        {
            let m = mark(self, "scale");
            self.err(
                m,
                &join(path, "scale"),
                format!("`scale: {scale}` and `deploy.replicas: {replicas}` have different values"),
            )
            .hint("keep one of them, or give both the same value");
        }
        let n = svc.replicas();
        if n <= 1 {
            return;
        }
        if let Some(name) = &svc.container_name {
            let m = mark(self, "container_name");
            self.err(
                m,
                &join(path, "container_name"),
                format!("`container_name: {name}` cannot be used with {n} replicas: container names are unique"),
            )
            .hint("remove container_name (replicas are named <stack>-<service>-1..N), or run one replica");
        }
        for p in &svc.ports {
            if let Some(port) = p.published.as_deref().filter(|p| !p.contains('-')) {
                let m = mark(self, "ports");
                self.err(
                    m,
                    &join(path, "ports"),
                    format!("published port {port} cannot be bound by {n} replicas: the second would fail to start"),
                )
                .hint("publish a range with one port per replica (like 8000-8002:80), leave the host port out, or run one replica");
            }
        }
    }

    /// `cpus` and `pids_limit` against `deploy.resources.limits` (Compose's
    /// rule: not two different values); `cpus` against `cpu_period` and
    /// `cpu_quota` (the engine's: it makes the quota from `cpus` itself).
    fn limit_conflicts(&mut self, path: &str, svc: &Service) {
        let limits = svc
            .deploy
            .as_ref()
            .and_then(|d| d.resources.limits.as_ref());
        let any_cpus =
            svc.cpus.is_some() || limits.is_some_and(|l| l.cpus.is_some_and(|c| c != 0.0));
        for key in ["cpu_period", "cpu_quota"] {
            let set = if key == "cpu_period" {
                svc.cpu_period
            } else {
                svc.cpu_quota
            };
            if any_cpus && set.is_some() {
                let mark = self
                    .marks
                    .get(&join(path, key))
                    .copied()
                    .unwrap_or_default();
                self.err(
                    mark,
                    &join(path, key),
                    format!("`{key}` cannot be combined with `cpus`: the engine derives the CPU quota from `cpus`"),
                )
                .hint("use either `cpus`, or `cpu_period` with `cpu_quota`");
            }
        }
        let Some(limits) = limits else {
            return;
        };
        let cpus = matches!((svc.cpus, limits.cpus), (Some(a), Some(b)) if a != b);
        let pids = matches!((svc.pids_limit, limits.pids), (Some(a), Some(b)) if a != b);
        for (clash, key, deploy_key) in [(cpus, "cpus", "cpus"), (pids, "pids_limit", "pids")] {
            if clash {
                let mark = self
                    .marks
                    .get(&join(path, key))
                    .copied()
                    .unwrap_or_default();
                self.err(
                    mark,
                    &join(path, key),
                    format!(
                        "`{key}` and `deploy.resources.limits.{deploy_key}` have different values"
                    ),
                )
                .hint("keep one of them, or give both the same value");
            }
        }
    }
}

fn resolve_name(name: Option<String>, external: bool, project: &str, key: &str) -> String {
    match name {
        Some(n) => n,
        None if external => key.to_string(),
        None => format!("{project}_{key}"),
    }
}

/// Converts a node to JSON for `x-` fields, which are kept as written.
pub fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &node.value {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::Str(s) => J::String(s.clone()),
        Value::Seq(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| (k.scalar_string().unwrap_or_default(), to_json(v)))
                .collect(),
        ),
    }
}

/// Compose's rule for a project name from a directory: lowercase, keep only
/// `a-z0-9_-`, trim leading `_` and `-`.
pub fn normalize_project_name(dir: &str) -> String {
    let lower = dir.to_lowercase();
    let kept: String = lower
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    kept.trim_start_matches(['_', '-']).to_string()
}

fn valid_project_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn valid_service_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn valid_protocol(p: &str) -> bool {
    matches!(p, "tcp" | "udp" | "sctp")
}

fn parse_port(s: &str) -> Option<u16> {
    s.parse::<u16>().ok().filter(|p| *p > 0)
}

/// `80` or `8000-8010` as an inclusive range.
pub fn parse_port_range(s: &str) -> Option<(u16, u16)> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse_port(a)?, parse_port(b)?);
            (a <= b).then_some((a, b))
        }
        None => parse_port(s).map(|p| (p, p)),
    }
}

/// Parses Compose's short port syntax `[[HOST_IP:]HOST_PORT:]CONTAINER_PORT[/PROTO]`
/// into long-form ports; container port ranges expand to one port each.
pub fn parse_short_port(spec: &str) -> Result<Vec<Port>, String> {
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !valid_protocol(&proto) {
        return Err(format!("unknown protocol `{proto}`"));
    }
    // An IPv6 host address is written in brackets.
    let (host_ip, rest) = if let Some(after) = rest.strip_prefix('[') {
        let (ip, tail) = after
            .split_once(']')
            .ok_or("unclosed `[` in host address")?;
        let tail = tail
            .strip_prefix(':')
            .ok_or("expected `:` after the host address")?;
        (Some(ip.to_string()), tail.to_string())
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.len() {
            1 | 2 => (None, rest.to_string()),
            3 => (
                Some(parts[0].to_string()),
                format!("{}:{}", parts[1], parts[2]),
            ),
            _ => return Err("too many `:`".into()),
        }
    };
    let (published, target) = match rest.split_once(':') {
        Some((p, t)) => (Some(p), t),
        None => (None, rest.as_str()),
    };
    let (t0, t1) =
        parse_port_range(target).ok_or_else(|| format!("invalid container port `{target}`"))?;
    let published = match published {
        Some("") | None => None,
        Some(p) => Some(parse_port_range(p).ok_or_else(|| format!("invalid host port `{p}`"))?),
    };
    let host_ip = host_ip.filter(|ip| !ip.is_empty());
    let port = |target: u16, published: Option<String>| Port {
        name: None,
        mode: "ingress".into(),
        host_ip: host_ip.clone(),
        target,
        published,
        protocol: proto.clone(),
        app_protocol: None,
    };
    let fmt_range = |(a, b): (u16, u16)| {
        if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        }
    };
    if t0 == t1 {
        return Ok(vec![port(t0, published.map(fmt_range))]);
    }
    // A container range maps onto a host range of the same length, port by port.
    match published {
        Some((p0, p1)) if p0 == p1 => {
            Err("a container port range needs a host range of the same size".into())
        }
        Some((p0, p1)) if p1 - p0 != t1 - t0 => {
            Err("host and container ranges differ in size".into())
        }
        Some((p0, _)) => Ok((t0..=t1)
            .map(|t| port(t, Some((p0 + (t - t0)).to_string())))
            .collect()),
        None => Ok((t0..=t1).map(|t| port(t, None)).collect()),
    }
}

/// Parses Compose's short volume syntax `[SOURCE:]TARGET[:MODE]`. A source
/// starting with `.`, `/` or `~` is a bind mount (left relative; the caller
/// resolves it), any other source a named volume, none an anonymous volume.
pub fn parse_short_volume(spec: &str) -> Result<Mount, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => (None, *t, None),
        [s, t] if t.starts_with('/') => (Some(*s), *t, None),
        // `/cache:ro`: an anonymous volume with a mode; any other pair is
        // SOURCE:TARGET, as in Compose, so a relative target is named as such.
        [t, m] if t.starts_with('/') => (None, *t, Some(*m)),
        [s, t] => (Some(*s), *t, None),
        [s, t, m] => (Some(*s), *t, Some(*m)),
        _ => return Err("too many `:`".into()),
    };
    if !target.starts_with('/') {
        return Err(format!("the container path `{target}` must be absolute"));
    }
    let mut m = Mount {
        kind: MountType::Volume,
        source: source.filter(|s| !s.is_empty()).map(str::to_string),
        target: target.to_string(),
        read_only: false,
        bind: None,
        volume: None,
        tmpfs: None,
    };
    let is_path = |s: &str| s.starts_with('.') || s.starts_with('/') || s.starts_with('~');
    // Compose fills in the options of the type (`bind: {create_host_path: true}`, `volume: {}`).
    if m.source.as_deref().is_some_and(is_path) {
        m.kind = MountType::Bind;
        m.bind = Some(BindOptions {
            create_host_path: true,
            ..BindOptions::default()
        });
    } else {
        m.volume = Some(VolumeOptions::default());
    }
    for opt in mode.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => m.read_only = true,
            "rw" => m.read_only = false,
            "z" | "Z" if m.kind == MountType::Bind => {
                m.bind.get_or_insert_with(BindOptions::default).selinux = Some(opt.to_string());
            }
            "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate"
                if m.kind == MountType::Bind =>
            {
                m.bind.get_or_insert_with(BindOptions::default).propagation = Some(opt.to_string());
            }
            "nocopy" if m.kind == MountType::Volume => {
                m.volume.get_or_insert_with(VolumeOptions::default).nocopy = true;
            }
            "consistent" | "cached" | "delegated" => {}
            other => return Err(format!("unknown mode `{other}`")),
        }
    }
    Ok(m)
}

/// Lexically normalizes a path (`a/./b/../c` -> `a/c`) without touching the file system.
pub(crate) fn normalize_path(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hooks as Compose reads them: a string command split into words,
    /// interpolated; environment as a list or a map (`- NAME` stays without
    /// a value); booleans as strings. Their secret values are masked.
    #[test]
    fn lifecycle_hooks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("compose.yaml"),
            "name: s\nservices:\n  a:\n    image: busybox\n    post_start:\n      - command: echo \"hi there\" ${TAG}\n        user: root\n        privileged: \"true\"\n        working_dir: /tmp\n        environment: [A=b, C]\n    pre_stop:\n      - command: [sh, -c, \"echo bye\"]\n        environment: {API_TOKEN: tok-canary-1}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(".env"), "TAG=v1\nC=not-used\n").unwrap();
        let desired = crate::spec::load_path(dir.path());
        let a = &desired.stacks[0].services["a"];
        assert_eq!(
            a.post_start,
            vec![Hook {
                command: vec!["echo".into(), "hi there".into(), "v1".into()],
                user: Some("root".into()),
                privileged: true,
                working_dir: Some("/tmp".into()),
                environment: BTreeMap::from([("A".into(), Some("b".into())), ("C".into(), None)]),
            }]
        );
        assert_eq!(a.pre_stop[0].command, ["sh", "-c", "echo bye"]);
        assert_eq!(desired.masker.mask("got tok-canary-1"), "got ********");
    }

    #[test]
    fn short_ports() {
        let p = parse_short_port("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(
            (
                p[0].target,
                p[0].published.as_deref(),
                p[0].protocol.as_str()
            ),
            (80, Some("8080"), "udp")
        );
        let p = parse_short_port("8000-8002:9000-9002").unwrap();
        assert_eq!(
            p.iter()
                .map(|p| (p.target, p.published.clone().unwrap()))
                .collect::<Vec<_>>(),
            [
                (9000, "8000".to_string()),
                (9001, "8001".to_string()),
                (9002, "8002".to_string())
            ]
        );
        let p = parse_short_port("8000-8010:80").unwrap();
        assert_eq!(p[0].published.as_deref(), Some("8000-8010"));
        let p = parse_short_port("[::1]:5432:5432").unwrap();
        assert_eq!(p[0].host_ip.as_deref(), Some("::1"));
        let p = parse_short_port("127.0.0.1::80").unwrap();
        assert_eq!((p[0].published.as_deref(), p[0].target), (None, 80));
        assert_eq!(parse_short_port("3000-3002").unwrap().len(), 3);
        for bad in [
            "80/http",
            "0",
            "70000",
            "a:b",
            "1:2:3:4",
            "8000-8001:90-95",
            "9-8",
        ] {
            assert!(parse_short_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn short_volumes() {
        let m = parse_short_volume("data:/var/lib/data").unwrap();
        assert_eq!(
            (m.kind, m.source.as_deref()),
            (MountType::Volume, Some("data"))
        );
        let m = parse_short_volume("./conf:/etc/app:ro").unwrap();
        assert_eq!((m.kind, m.read_only), (MountType::Bind, true));
        let m = parse_short_volume("/cache").unwrap();
        assert_eq!((m.kind, m.source), (MountType::Volume, None));
        let m = parse_short_volume("data:/x:nocopy").unwrap();
        assert!(m.volume.unwrap().nocopy);
        assert!(parse_short_volume("data:relative").is_err());
        assert!(parse_short_volume("a:/b:bogus").is_err());
    }

    /// Compose fills the type's options in the short syntax (`docker compose config`).
    #[test]
    fn short_volumes_fill_compose_defaults() {
        let m = parse_short_volume("data:/data").unwrap();
        assert_eq!((m.volume, m.bind), (Some(VolumeOptions::default()), None));
        let m = parse_short_volume("/anonymous").unwrap();
        assert_eq!(m.volume, Some(VolumeOptions::default()));
        let m = parse_short_volume("./conf:/conf").unwrap();
        assert_eq!(m.volume, None);
        assert!(m.bind.unwrap().create_host_path);
    }

    #[test]
    fn project_names() {
        assert_eq!(normalize_project_name("My.Shop_2"), "myshop_2");
        assert_eq!(normalize_project_name("__x"), "x");
        assert!(valid_project_name("shop-1"));
        assert!(!valid_project_name("Shop"));
        assert!(!valid_project_name("-x"));
    }

    /// A string that interpolates a secret variable records its field, by
    /// the key `render` prints it under; other strings record nothing.
    #[test]
    fn fields_built_from_secret_variables_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".env"),
            "PIN_TOKEN=Zq\nPORT=80\nLONG_TOKEN=long-secret-1\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("compose.yaml"),
            "name: s\nservices:\n  a:\n    image: busybox:${PIN_TOKEN}\n    command: \"echo ${PIN_TOKEN}\"\n    ports: [\"${PORT}:80\"]\n    labels: [\"pin=${PIN_TOKEN}\", \"port=${PORT}\"]\n    environment: {X: \"a${PIN_TOKEN}\", Y: \"u:${LONG_TOKEN}@h\"}\n    healthcheck: {test: [CMD, \"${PIN_TOKEN}\"]}\n",
        )
        .unwrap();
        let desired = crate::spec::load_path(dir.path());
        let fields: Vec<String> = desired.masker.fields_of("s").map(|p| p.join(".")).collect();
        assert_eq!(
            fields,
            vec![
                "services.a.command",
                "services.a.environment.X",
                "services.a.healthcheck",
                "services.a.image",
                "services.a.labels.pin",
            ]
        );
        // A long secret is masked by value, the rest of its field shown.
        let render = crate::spec::render::to_value(&desired.stacks[0], &desired.masker, false);
        assert_eq!(render["services"]["a"]["environment"]["Y"], "u:********@h");
        // Long enough, the whole value is masked by value too.
        assert_eq!(desired.masker.mask("pull busybox:Zq"), "pull ********");
        assert_eq!(desired.masker.mask("Zq"), "Zq");
    }
}
