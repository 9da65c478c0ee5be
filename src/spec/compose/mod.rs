//! A Compose file to a [`Stack`]: interpolation, then every short and long
//! syntax normalized into the typed model, with Compose's defaults.
//!
//! Every key Compose defines is either implemented here or reported as not
//! supported (with why); an unknown key is reported with a suggestion. Every
//! problem found becomes a [`Diag`] and conversion goes on, so one run reports
//! all of them.
//!
//! This module is the loader's driver: the project environment, `extends`,
//! override files and `include:` ([`load_stack`]), then the top level of the
//! file (`Cx::stack`). `service` dispatches each key of a service to the
//! child module that loads it; those are the groups of the engine mapping
//! (`crate::keys`), so a key is loaded and mapped under the same name:
//!
//! | module | keys |
//! |---|---|
//! | `basics` | `image`, `command`, `entrypoint`, `labels`, `label_file`, `annotations`, name, platform, working directory, terminal; `profiles`, `pull_policy`, `scale`, `attach`, `x-plimsoll` |
//! | `environment` | `environment`, `env_file` (the engine's `basics`) |
//! | `lifecycle` | `restart`, stop settings, `init`, hooks, `depends_on` |
//! | `logging` | `logging` |
//! | `health` | `healthcheck` |
//! | `networking` | `networks`, `ports`, `expose`, DNS, hosts, links |
//! | `namespaces` | `network_mode`, `ipc`, `pid`, `uts`, `cgroup`, `userns_mode`, `cgroup_parent`, `runtime` |
//! | `resources` | memory, CPU, pids, ulimits, block I/O, OOM, `deploy` |
//! | `devices` | `devices`, `device_cgroup_rules`, `gpus` |
//! | `security` | capabilities, `privileged`, `user`, `sysctls`, `security_opt` |
//! | `mounts` | `volumes`, `tmpfs`, `volumes_from`, `secrets`, `configs` |
//! | `build` | `build` (loader only: the image is built, not mapped) |
//! | `objects` | the top-level `networks`, `volumes`, `secrets`, `configs` |
//!
//! `values` holds the readers every group shares (a node as a string, a
//! size, a list, the entries of a mapping...), `variables` the
//! interpolation of the file and the fields built from secret variables.

mod basics;
mod build;
mod devices;
mod environment;
mod health;
mod lifecycle;
mod logging;
mod mounts;
mod namespaces;
mod networking;
mod objects;
mod resources;
mod security;
mod service;
mod values;
mod variables;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::diag::{Diag, Mark};
use super::dotenv;
use super::model::{Network, Stack, StackSource};
use super::secrets::{Masker, SecretNames};
use super::yaml::{self, Node, Value};
use crate::source::Files;

pub use build::check_builds;
pub use mounts::{ShortVolumeError, parse_short_volume};
pub use networking::{ShortPortError, parse_port_range, parse_short_port};
pub use service::{SERVICE_KEYS, SERVICE_UNSUPPORTED};
pub(crate) use values::normalize_path;
pub use values::to_json;
use variables::Reference;

const MODELS: &str = "AI models run by Docker Model Runner, a Docker Desktop and `docker model` plugin feature with no engine API; plimsoll runs containers only";

const SWARM: &str = "a Swarm-only setting with no meaning on a single Docker host";

/// Top-level keys plimsoll implements (besides `x-` fields).
pub const TOP_KEYS: &[&str] = &[
    "name", "version", "services", "networks", "volumes", "secrets", "configs",
];

const TOP_UNSUPPORTED: &[(&str, &str)] = &[("models", MODELS)];

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
    /// The environment's env file (`.env.prod`): read after `.env`, before `.env.age`.
    pub env_dotenv: Option<(&'a Path, &'a str)>,
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
    let vars = project_vars(input, &mut masker, diags)?;
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
    name_sources(input, &mut sources, &mut diags[start..]);
    Some(Loaded {
        stack: stack?,
        masker,
        sources,
    })
}

/// A plain (not encrypted) dotenv file's variables; a line that does not
/// parse is an error at that line with `hint`.
fn plain_dotenv(
    path: &Path,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    hint: &str,
    diags: &mut Vec<Diag>,
) -> Option<impl IntoIterator<Item = (String, String)> + use<>> {
    match dotenv::parse(text, lookup) {
        Ok(map) => Some(map),
        Err(e) => {
            diags.push(Diag::error(path, Mark::new(e.line, 1), "", e.message.clone()).hint(hint));
            None
        }
    }
}

/// Adds a dotenv file's variables to `vars`, each value observed by `masker`.
fn add_vars(
    map: impl IntoIterator<Item = (String, String)>,
    masker: &mut Masker,
    vars: &mut BTreeMap<String, String>,
) {
    for (k, v) in map {
        masker.observe(&k, &v);
        vars.insert(k, v);
    }
}

/// The project environment: `.env`, then `.env.age` (every variable of it
/// secret), then the passed process environment over them; each value
/// observed by `masker`. `None` when a dotenv file does not parse.
fn project_vars(
    input: &StackInput<'_>,
    masker: &mut Masker,
    diags: &mut Vec<Diag>,
) -> Option<BTreeMap<String, String>> {
    // The project environment: `.env`, then the process environment over it.
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    if let Some((path, text)) = input.dotenv {
        let lookup = |k: &str| input.env.get(k).cloned();
        let hint = "fix this line of the .env file (KEY=value)";
        let map = plain_dotenv(path, text, &lookup, hint, diags)?;
        add_vars(map, masker, &mut vars);
    }
    if let Some((path, text)) = input.env_dotenv {
        let lookup = |k: &str| input.env.get(k).or_else(|| vars.get(k)).cloned();
        let hint = "fix this line of the environment's .env file (KEY=value)";
        let map = plain_dotenv(path, text, &lookup, hint, diags)?;
        add_vars(map, masker, &mut vars);
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
    Some(vars)
}

/// Names the files other than the Compose file in `sources` and in `diags`
/// as the user named the stack directory: included and extended files are
/// read by absolute path, and a place in another file than `input.file` is
/// marked with its index.
fn name_sources(input: &StackInput<'_>, sources: &mut [PathBuf], diags: &mut [Diag]) {
    // Included and extended files are read by absolute path: name those under
    // the stack directory as the user named it, like the Compose file.
    let read = sources.to_vec();
    for path in sources.iter_mut().skip(1) {
        if let Ok(rest) = path.strip_prefix(input.abs_dir) {
            *path = input.dir.join(rest);
        }
    }
    // A place in another file than `input.file` is marked with its index: name that file.
    for d in diags {
        if d.mark.file > 0
            && d.file == input.file
            && let Some(path) = sources.get(d.mark.file as usize)
        {
            d.file = path.clone();
        } else if let Some(i) = read.iter().skip(1).position(|p| *p == d.file) {
            d.file = sources[i + 1].clone();
        }
    }
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

/// The loading of one Compose file (its merged tree): every key group is a
/// set of methods on it, in the child modules.
struct Cx<'a, 'i> {
    /// The Compose file, which diagnostics name.
    file: &'a Path,
    input: &'a StackInput<'i>,
    /// Where every problem found goes.
    diags: &'a mut Vec<Diag>,
    /// The project environment, for interpolation and `- NAME` entries.
    vars: &'a BTreeMap<String, String>,
    /// Learns the secret values and fields met while loading.
    masker: &'a mut Masker,
    /// Where keys stand (`services.web.ports`), kept in the stack for later
    /// diagnostics ([`StackSource::marks`]).
    marks: BTreeMap<String, Mark>,
    /// Strings that referenced variables, for [`Cx::secret_fields`].
    references: Vec<Reference>,
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

    /// An error at `key` of the mapping at `path`, where it is written (the
    /// document's start when it is not).
    fn err_at(&mut self, path: &str, key: &str, msg: impl Into<String>) -> Recorded<'_> {
        let at = join(path, key);
        let mark = self.marks.get(&at).copied().unwrap_or_default();
        self.err(mark, &at, msg)
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
            extensions,
            ..Stack::default()
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
        stack.name = self.project_name(name);
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
        self.services(root.mark, services_node, &mut stack);
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

    /// The project's name: `name:` (checked), else the stack directory's
    /// name normalized as Compose does.
    fn project_name(&mut self, name: Option<(String, Mark)>) -> String {
        match name {
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
        }
    }

    /// The `services:` section: each service by its name (checked).
    fn services(&mut self, mark: Mark, node: Option<&Node>, stack: &mut Stack) {
        match node {
            None => {
                self.err(mark, "services", "no `services:` section")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names() {
        assert_eq!(normalize_project_name("My.Shop_2"), "myshop_2");
        assert_eq!(normalize_project_name("__x"), "x");
        assert!(valid_project_name("shop-1"));
        assert!(!valid_project_name("Shop"));
        assert!(!valid_project_name("-x"));
    }
}
