//! The desired state: Compose stacks and `plimsoll.yaml`, parsed, interpolated,
//! normalized, validated and checked against the policy.
//!
//! Invariant: knows nothing about Docker; reads files only through
//! [`crate::source::Files`]; collects every diagnostic instead of stopping at
//! the first.

pub mod age;
pub mod compose;
pub mod config;
pub mod deps;
pub mod diag;
pub mod dotenv;
mod environments;
pub mod extends;
pub mod include;
pub mod interpolate;
pub mod jobs;
pub mod merge;
pub mod model;
pub mod policy;
pub mod render;
pub mod secrets;
pub mod validate;
pub mod yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use config::Config;
use diag::{Diag, Mark};
use model::Stack;
use secrets::{Masker, SecretNames};
use yaml::Node;

use crate::source::{Files, Layout};

/// Everything loaded from a PATH.
#[derive(Debug, Clone)]
pub struct Desired {
    pub root: PathBuf,
    pub config: Config,
    pub config_file: Option<PathBuf>,
    pub stacks: Vec<Stack>,
    /// Per environment (plimsoll.yaml `environments:`), the stacks that differ
    /// there: loaded with the stack directory's `compose.<env>.yaml` and
    /// `.env.<env>`. A host in the environment runs these instead of `stacks`'.
    pub environments: BTreeMap<String, Vec<Stack>>,
    /// Every secret value seen while loading.
    pub masker: Masker,
    pub warnings: Vec<Diag>,
    /// Every stack of a repository was loaded: a managed stack on the engine
    /// created from the same repository but not among them was removed from
    /// git (and may be pruned). Holds the repository's identity.
    pub complete: Option<String>,
}

impl Desired {
    /// One stored stack (a revision read back from the state directory at
    /// `root`) as the whole desired state: no configuration, no environments.
    pub fn stored(root: PathBuf, stack: Stack, masker: Masker) -> Desired {
        Desired {
            root,
            config: Default::default(),
            config_file: None,
            stacks: vec![stack],
            environments: Default::default(),
            masker,
            warnings: Vec::new(),
            complete: None,
        }
    }
}

/// Loading failed: every problem found, masked.
#[derive(Debug, Clone, thiserror::Error)]
pub struct LoadError {
    pub diags: Vec<Diag>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors = self.diags.iter().filter(|d| d.is_error()).count();
        for d in &self.diags {
            writeln!(f, "{d}")?;
        }
        write!(
            f,
            "{errors} error{} found",
            if errors == 1 { "" } else { "s" }
        )
    }
}

/// Reads a file as UTF-8 text. A missing file is `Ok(None)`.
fn read_text(files: &dyn Files, path: &Path) -> Result<Option<String>, Diag> {
    let bytes = match files.read(path) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => {
            return Err(
                Diag::error(path, Mark::new(1, 1), "", format!("cannot read: {e}"))
                    .hint("a desired-state file this large is not a real one: remove it or keep it out of the repository"),
            );
        }
        Err(e) => {
            let hint = crate::source::read_hint(&e, "check that the file exists and is readable");
            return Err(
                Diag::error(path, Mark::default(), "", format!("cannot read: {e}")).hint(hint),
            );
        }
    };
    String::from_utf8(bytes).map(Some).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        let col = valid.iter().rev().take_while(|b| **b != b'\n').count() + 1;
        Diag::error(
            path,
            Mark::new(line, col),
            "",
            "the file is not valid UTF-8 text",
        )
        .hint("save the file as UTF-8")
    })
}

/// Where `key` is set in a dotenv text (its last assignment), for messages.
fn dotenv_mark(text: &str, key: &str) -> Mark {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let l = l.trim_start();
            let l = l.strip_prefix("export ").unwrap_or(l).trim_start();
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(['=', ':']))
        })
        .last()
        .map_or(Mark::default(), |(i, _)| Mark::new(i + 1, 1))
}

/// A problem reading a file that `key` of `file` names, reported at that key.
fn named_by(d: Diag, file: &Path, mark: Mark, key: &str) -> Diag {
    let message = format!("{}: {}", d.file.display(), d.message);
    let mut named = Diag::error(file, mark, key, message);
    named.hint = d.hint;
    named
}

/// How to load, beyond the files and the environment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadOptions {
    /// The active profiles (`--profile`, `PLIMSOLL_PROFILES`). `None`: each
    /// stack's `profiles` in plimsoll.yaml, else `COMPOSE_PROFILES` (process
    /// environment over the stack's `.env`), as Compose does without `--profile`.
    pub profiles: Option<Vec<String>>,
    /// The host's age identities, to decrypt `*.age` files (`None`: a `*.age`
    /// file is an error saying how to give one).
    pub age: Option<std::sync::Arc<age::Identities>>,
    /// Variables of the environment passed in that the host marks secret
    /// (`--pass-secret-env`): masked whatever their names look like.
    pub secret_env: std::collections::BTreeSet<String>,
    /// The host's policy (`--policy FILE`), checked besides the repository's.
    pub host_policy: Option<std::sync::Arc<policy::HostPolicy>>,
}

/// Loads the repository, stack or file that `layout` describes. `env` holds
/// the variables of the process environment the host passes to Compose files
/// (`--pass-env`; it overrides each stack's `.env`), never the whole
/// environment; `stack_filter` keeps only the named stacks.
pub fn load(
    layout: &Layout,
    files: &dyn Files,
    env: &BTreeMap<String, String>,
    stack_filter: &[String],
) -> Result<Desired, LoadError> {
    load_with(layout, files, env, stack_filter, &LoadOptions::default())
}

/// [`load`] with options (the active profiles).
pub fn load_with(
    layout: &Layout,
    files: &dyn Files,
    env: &BTreeMap<String, String>,
    stack_filter: &[String],
    options: &LoadOptions,
) -> Result<Desired, LoadError> {
    let mut diags: Vec<Diag> = Vec::new();
    let (mut config, config_node) = read_config(layout, files, &mut diags);
    let names = SecretNames::new(
        secrets::DEFAULT_PATTERNS
            .iter()
            .copied()
            .chain(config.secrets.patterns.iter().map(String::as_str)),
    );
    let mut masker = Masker::new(names.clone());
    let config_path = layout
        .config
        .clone()
        .unwrap_or_else(|| layout.root.join(crate::source::CONFIG_FILE));
    let rules = policy::RuleSource {
        file: &config_path,
        node: config_node.as_ref(),
        root: &["policy"],
    };
    let immutable = policy::check_config(&config, &rules, &mut diags);
    let host = options.host_policy.as_deref();
    if let Some(h) = host {
        policy::apply_host_settings(&mut config, h);
    }
    check_age_recipients(&config, config_node.as_ref(), &config_path, &mut diags);
    check_alerts(&config, config_node.as_ref(), &config_path, &mut diags);
    let checks = Checks {
        config: &config,
        rules: &rules,
        immutable: immutable.as_ref(),
        host,
        host_immutable: host.and_then(policy::HostPolicy::immutable_tag),
        options,
    };
    let mut stacks = Vec::new();
    let mut variants: BTreeMap<String, Vec<Stack>> = BTreeMap::new();
    for sf in &layout.stacks {
        let Some(read) = read_stack(sf, files, env, options, &mut diags) else {
            continue;
        };
        let cx = StackLoad {
            layout,
            files,
            env,
            names: &names,
            checks: &checks,
            stack_filter,
        };
        let Some(stack) = cx.load(&read, &mut masker, &mut diags) else {
            continue;
        };
        environments::check_unknown_variants(&read, &config, files, &mut diags);
        for name in config.environments.keys() {
            let Some(variant) = environments::read_variant(&read, name, files, &mut diags) else {
                continue;
            };
            let mut variant_diags = Vec::new();
            if let Some(v) = cx.load(&variant, &mut masker, &mut variant_diags) {
                variants.entry(name.clone()).or_default().push(v);
            }
            // The base's problems are reported once, with the base.
            variant_diags.retain(|d| !diags.contains(d));
            diags.extend(variant_diags);
        }
        for name in config.environments.keys() {
            let chosen = variants
                .get(name)
                .and_then(|v| v.iter().find(|s| s.name == stack.name))
                .unwrap_or(&stack);
            let mut variant_diags = Vec::new();
            environments::check_policy(
                &config,
                name,
                (config_node.as_ref(), &config_path),
                chosen,
                files,
                &mut variant_diags,
            );
            // The base's problems are reported once, with the base.
            variant_diags.retain(|d| !diags.contains(d));
            diags.extend(variant_diags);
        }
        stacks.push(stack);
    }
    environments::check_config(&config, config_node.as_ref(), &config_path, &mut diags);
    validate::check_across(&stacks, &mut diags);
    check_stack_names(
        layout,
        &config,
        config_node.as_ref(),
        &config_path,
        &stacks,
        stack_filter,
        &mut diags,
    );
    // Secrets may have turned up in messages (a value quoted in an error).
    for d in &mut diags {
        d.message = masker.mask(&d.message).into_owned();
    }
    let (errors, warnings): (Vec<Diag>, Vec<Diag>) = diags.into_iter().partition(Diag::is_error);
    if !errors.is_empty() {
        let mut all = errors;
        all.extend(warnings);
        return Err(LoadError { diags: all });
    }
    Ok(Desired {
        root: layout.root.clone(),
        config,
        config_file: layout.config.clone(),
        stacks,
        environments: variants,
        masker,
        warnings,
        complete: (layout.repository && stack_filter.is_empty()).then(|| {
            files
                .absolute(&layout.root)
                .unwrap_or_else(|_| layout.root.clone())
                .display()
                .to_string()
        }),
    })
}

/// `plimsoll.yaml`, read and parsed (the default when there is none, or on
/// an error, which goes to `diags`), and its node tree for marks.
fn read_config(
    layout: &Layout,
    files: &dyn Files,
    diags: &mut Vec<Diag>,
) -> (Config, Option<Node>) {
    let mut config = Config::default();
    let mut config_node = None;
    if let Some(path) = &layout.config {
        match read_text(files, path) {
            Ok(Some(text)) => match yaml::parse(&text, path) {
                Ok(node) => {
                    match yaml::from_node::<Config>(&node) {
                        Ok(c) => config = c,
                        Err(e) => diags.push(e.into_diag(path).hint(
                            "see `plimsoll schema plimsoll` for the keys plimsoll.yaml takes",
                        )),
                    }
                    config_node = Some(node);
                }
                Err(d) => diags.push(d),
            },
            Ok(None) => {}
            Err(d) => diags.push(d),
        }
    }
    (config, config_node)
}

/// `alerts:` in plimsoll.yaml: percentages from 1 to 100, the warning at or
/// below the alert, durations of at least a second.
fn check_alerts(config: &Config, node: Option<&Node>, config_path: &Path, diags: &mut Vec<Diag>) {
    for (key, message, hint) in config::Thresholds::problems(&config.alerts) {
        let path: Vec<&str> = std::iter::once("alerts")
            .chain(key.iter().copied())
            .collect();
        let mark = node
            .and_then(|n| n.lookup(&path))
            .map(|n| n.mark)
            .unwrap_or_default();
        diags.push(Diag::error(config_path, mark, path.join("."), message).hint(hint));
    }
}

/// Each of `secrets.age_recipients` in plimsoll.yaml is an age public key.
fn check_age_recipients(
    config: &Config,
    node: Option<&Node>,
    config_path: &Path,
    diags: &mut Vec<Diag>,
) {
    for (i, r) in config.secrets.age_recipients.iter().enumerate() {
        if let Err(e) = age::parse_recipients([r.as_str()]) {
            let mark = node
                .and_then(|n| n.lookup_key(&["secrets", "age_recipients"]))
                .map(|n| n.mark)
                .unwrap_or_default();
            diags.push(
                Diag::error(config_path, mark, format!("secrets.age_recipients[{i}]"), e.to_string())
                    .hint("list public keys (age1…), as `age-keygen -y KEYFILE` or `plimsoll secret keygen` prints them"),
            );
        }
    }
}

/// The files of one stack, read: its Compose file (the first of
/// `COMPOSE_FILE` when its `.env` sets one), `.env`, `.env.age` decrypted,
/// and the override files.
#[derive(Clone)]
struct StackText {
    /// The stack's files, with the Compose and override files `COMPOSE_FILE` names.
    sf: crate::source::StackFiles,
    text: String,
    dotenv: Option<String>,
    secret_dotenv_path: PathBuf,
    secret_dotenv: Option<String>,
    overrides: Vec<(PathBuf, String)>,
    /// The environment's env file and its text (`.env.prod`), when loading a variant.
    env_dotenv: Option<(PathBuf, String)>,
}

impl StackText {
    /// `COMPOSE_FILE` in the stack's `.env` lists its Compose files: the
    /// first, then files merged onto it (as `docker compose` without `-f`).
    /// The process environment's is not used: it would apply to every stack.
    /// Where `COMPOSE_FILE` is set, when it is (for messages about the files
    /// it lists); `None` when its first file cannot be read.
    fn compose_file(
        &mut self,
        files: &dyn Files,
        env: &BTreeMap<String, String>,
        diags: &mut Vec<Diag>,
    ) -> Option<Option<Mark>> {
        if !self.sf.named
            && let Some(vars) = self
                .dotenv
                .as_deref()
                .and_then(|t| dotenv::parse(t, &|k| env.get(k).cloned()).ok())
            && let Some(list) = vars.get("COMPOSE_FILE").filter(|l| !l.trim().is_empty())
        {
            let sep = vars
                .get("COMPOSE_PATH_SEPARATOR")
                .or_else(|| env.get("COMPOSE_PATH_SEPARATOR"))
                .filter(|s| !s.is_empty())
                .map_or(":", String::as_str);
            let paths: Vec<PathBuf> = list
                .split(sep)
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| self.sf.dir.join(p))
                .collect();
            let at = dotenv_mark(self.dotenv.as_deref().unwrap_or_default(), "COMPOSE_FILE");
            return match read_text(files, &paths[0]) {
                Ok(Some(t)) => {
                    self.text = t;
                    self.sf.compose = paths[0].clone();
                    self.sf.overrides = paths[1..].to_vec();
                    Some(Some(at))
                }
                Ok(None) => {
                    diags.push(
                        Diag::error(
                            &self.sf.dotenv,
                            at,
                            "COMPOSE_FILE",
                            format!("{}: no such file", paths[0].display()),
                        )
                        .hint("list the stack's Compose files in COMPOSE_FILE, separated by `:`, relative to the stack directory"),
                    );
                    None
                }
                Err(d) => {
                    diags.push(named_by(d, &self.sf.dotenv, at, "COMPOSE_FILE"));
                    None
                }
            };
        }
        Some(None)
    }

    /// Reads the override files (problems to `diags`).
    fn read_overrides(
        &mut self,
        files: &dyn Files,
        compose_file_at: Option<Mark>,
        diags: &mut Vec<Diag>,
    ) {
        for path in &self.sf.overrides {
            match read_text(files, path) {
                Ok(Some(t)) => self.overrides.push((path.clone(), t)),
                Ok(None) => diags.push(
                    Diag::error(path, Mark::default(), "", "file not found")
                        .hint("fix COMPOSE_FILE in the stack's .env: it lists files relative to the stack directory"),
                ),
                Err(d) => diags.push(match compose_file_at {
                    Some(at) => named_by(d, &self.sf.dotenv, at, "COMPOSE_FILE"),
                    None => d,
                }),
            }
        }
    }

    /// What `compose::load_stack` takes.
    fn input<'a>(
        &'a self,
        env: &'a BTreeMap<String, String>,
        files: &'a dyn Files,
        names: &'a SecretNames,
        options: &'a LoadOptions,
    ) -> compose::StackInput<'a> {
        let sf = &self.sf;
        compose::StackInput {
            dir: &sf.dir,
            abs_dir: &sf.abs_dir,
            file: &sf.compose,
            text: &self.text,
            dotenv: self.dotenv.as_deref().map(|t| (sf.dotenv.as_path(), t)),
            env,
            files,
            secret_names: names,
            overrides: &self.overrides,
            secret_dotenv: self
                .secret_dotenv
                .as_deref()
                .map(|t| (self.secret_dotenv_path.as_path(), t)),
            env_dotenv: self
                .env_dotenv
                .as_ref()
                .map(|(p, t)| (p.as_path(), t.as_str())),
            age: options.age.as_deref(),
            stored: false,
            secret_env: &options.secret_env,
        }
    }
}

/// Reads the files of one stack; `None` (problems in `diags`) when one
/// that must be read cannot be.
fn read_stack(
    sf: &crate::source::StackFiles,
    files: &dyn Files,
    env: &BTreeMap<String, String>,
    options: &LoadOptions,
    diags: &mut Vec<Diag>,
) -> Option<StackText> {
    let text = match read_text(files, &sf.compose) {
        Ok(Some(t)) => t,
        Ok(None) => {
            diags.push(Diag::error(
                &sf.compose,
                Mark::default(),
                "",
                "file not found",
            ));
            return None;
        }
        Err(d) => {
            diags.push(d);
            return None;
        }
    };
    let dotenv = match read_text(files, &sf.dotenv) {
        Ok(t) => t,
        Err(d) => {
            diags.push(d);
            return None;
        }
    };
    // `.env.age`: decrypted, read after `.env`; every variable in it is secret.
    let secret_dotenv_path = sf.dir.join(".env.age");
    let secret_dotenv = match files.read(&secret_dotenv_path) {
        Ok(None) => None,
        Ok(Some(bytes)) => match age::decrypt_text(options.age.as_deref(), &bytes) {
            Ok(text) => Some(text),
            Err(e) => {
                let message = format!("cannot decrypt {}: {e}", secret_dotenv_path.display());
                diags.push(
                    Diag::error(&secret_dotenv_path, Mark::default(), "", message).hint(e.hint()),
                );
                return None;
            }
        },
        Err(e) => {
            let hint = crate::source::read_hint(&e, "check that the file is readable");
            diags.push(
                Diag::error(
                    &secret_dotenv_path,
                    Mark::default(),
                    "",
                    format!("cannot read: {e}"),
                )
                .hint(hint),
            );
            return None;
        }
    };
    let mut read = StackText {
        sf: sf.clone(),
        text,
        dotenv,
        secret_dotenv_path,
        secret_dotenv,
        overrides: Vec::new(),
        env_dotenv: None,
    };
    let compose_file_at = read.compose_file(files, env, diags)?;
    read.read_overrides(files, compose_file_at, diags);
    Some(read)
}

/// What loading one stack's files needs.
struct StackLoad<'a> {
    layout: &'a Layout,
    files: &'a dyn Files,
    env: &'a BTreeMap<String, String>,
    names: &'a SecretNames,
    checks: &'a Checks<'a>,
    stack_filter: &'a [String],
}

impl StackLoad<'_> {
    /// Loads and checks one stack (`None`: it did not load, or the filter leaves it out).
    fn load(&self, read: &StackText, masker: &mut Masker, diags: &mut Vec<Diag>) -> Option<Stack> {
        let input = read.input(self.env, self.files, self.names, self.checks.options);
        let mut stack_diags = Vec::new();
        let mut sources = Vec::new();
        let mut out = None;
        if let Some(loaded) = compose::load_stack(&input, &mut stack_diags) {
            masker.extend(&loaded.masker);
            sources = loaded.sources.clone();
            let mut stack = loaded.stack;
            if !self.stack_filter.is_empty() && !self.stack_filter.contains(&stack.name) {
                return None;
            }
            self.checks
                .check(self.layout, self.files, &mut stack, &mut stack_diags);
            jobs::split(&mut stack, &mut stack_diags);
            out = Some(stack);
        }
        // A place in another file (override, include) is marked with its index: name that file.
        for d in &mut stack_diags {
            if d.mark.file > 0
                && d.file == read.sf.compose
                && let Some(path) = sources.get(d.mark.file as usize)
            {
                d.file = path.clone();
            }
        }
        diags.extend(stack_diags);
        out
    }
}

/// What checking each loaded stack needs: the repository's policy and the host's.
struct Checks<'a> {
    config: &'a Config,
    rules: &'a policy::RuleSource<'a>,
    immutable: Option<&'a regex::Regex>,
    host: Option<&'a policy::HostPolicy>,
    host_immutable: Option<regex::Regex>,
    options: &'a LoadOptions,
}

impl Checks<'_> {
    /// Completes a loaded stack (where it was read from, its active
    /// profiles) and checks it: services, builds, the policies.
    fn check(&self, layout: &Layout, files: &dyn Files, stack: &mut Stack, diags: &mut Vec<Diag>) {
        stack.source.root = files.root().or_else(|| files.absolute(&layout.root).ok());
        if layout.repository {
            let root = files
                .absolute(&layout.root)
                .unwrap_or_else(|_| layout.root.clone());
            stack.source.repository = Some(root.display().to_string());
        }
        let profiles = self.options.profiles.as_deref().or_else(|| {
            self.config
                .stacks
                .get(&stack.name)
                .and_then(|c| c.profiles.as_deref())
        });
        validate::apply_profiles(stack, profiles, diags);
        validate::check_stack(stack, diags);
        compose::check_builds(stack, files, diags);
        policy::check_stack(
            &self.config.policy,
            self.immutable,
            self.rules,
            stack,
            files,
            diags,
        );
        if let Some(h) = self.host {
            policy::check_stack(
                &h.policy,
                self.host_immutable.as_ref(),
                &h.rules(),
                stack,
                files,
                diags,
            );
        }
    }
}

/// Each stack plimsoll.yaml configures, and each stack asked for, is in the repository.
fn check_stack_names(
    layout: &Layout,
    config: &Config,
    config_node: Option<&Node>,
    config_path: &Path,
    stacks: &[Stack],
    stack_filter: &[String],
    diags: &mut Vec<Diag>,
) {
    for name in config.stacks.keys() {
        if !stacks.iter().any(|s| &s.name == name)
            && stack_filter.is_empty()
            && layout.config.is_some()
        {
            let mark = config_node
                .and_then(|n| n.lookup_key(&["stacks", name]))
                .map(|n| n.mark)
                .unwrap_or_default();
            let d = Diag::error(
                config_path,
                mark,
                format!("stacks.{name}"),
                format!("no stack named `{name}` in this repository"),
            );
            diags.push(d.hint("fix the name, or add stacks/<dir>/compose.yaml with that name"));
        }
    }
    for name in stack_filter {
        if !stacks.iter().any(|s| &s.name == name) && !diags.iter().any(Diag::is_error) {
            diags.push(
                Diag::error(
                    &layout.root,
                    Mark::default(),
                    "",
                    format!("no stack named `{name}` here"),
                )
                .hint("run `plimsoll validate` to list the stacks"),
            );
        }
    }
}

/// A stack stored by `render::to_stored`, loaded again (for `plimsoll rollback`).
/// Checks a stack against the host's policy alone: `rollback` re-applies a
/// stored revision, which passed the repository's policy when it was
/// applied, while the host's policy (`--policy`) may be newer and stricter.
pub fn check_host_policy(
    stack: &Stack,
    host: &policy::HostPolicy,
    files: &dyn Files,
) -> Result<(), LoadError> {
    let mut diags = Vec::new();
    policy::check_stack(
        &host.policy,
        host.immutable_tag().as_ref(),
        &host.rules(),
        &stack.whole(),
        files,
        &mut diags,
    );
    if diags.iter().any(Diag::is_error) {
        return Err(LoadError { diags });
    }
    Ok(())
}

pub fn load_stored(bytes: &[u8], files: &dyn Files) -> Result<(Stack, Masker), LoadError> {
    let fail = |message: String| LoadError {
        diags: vec![Diag::error(
            Path::new("(stored revision)"),
            Mark::default(),
            "",
            message,
        )],
    };
    let stored: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| fail(format!("not a stored revision: {e}")))?;
    let text = serde_json::to_string(&stored["stack"]).map_err(|e| fail(e.to_string()))?;
    let dir = PathBuf::from("/");
    let file = PathBuf::from("(stored revision)");
    let env = BTreeMap::new();
    let names = SecretNames::default();
    let input = compose::StackInput {
        dir: &dir,
        abs_dir: &dir,
        file: &file,
        text: &text,
        dotenv: None,
        env: &env,
        files,
        secret_names: &names,
        overrides: &[],
        secret_dotenv: None,
        env_dotenv: None,
        age: None,
        stored: true,
        secret_env: &Default::default(),
    };
    let mut diags = Vec::new();
    let loaded = compose::load_stack(&input, &mut diags);
    match loaded {
        Some(mut l) if !diags.iter().any(Diag::is_error) => {
            for v in stored["secrets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
            {
                l.masker.add_value(v);
            }
            for path in stored["secret_fields"].as_array().into_iter().flatten() {
                let path: Vec<String> = path
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.as_str().map(str::to_string))
                    .collect();
                let name = l.stack.name.clone();
                l.masker.add_field(&name, path);
            }
            // The labels that name the project directory and file stay those of the original.
            if let Some(d) = stored["dir"].as_str() {
                l.stack.source.dir = PathBuf::from(d);
            }
            if let Some(f) = stored["file"].as_str() {
                l.stack.source.file = PathBuf::from(f);
            }
            // So a rolled-back container keeps its repository label (whole-stack
            // prune is scoped by it) and the same spec hash as applying from git.
            if let Some(r) = stored["repository"].as_str() {
                l.stack.source.repository = Some(r.to_string());
            }
            // Where it was read from, so its paths compare relative to that root.
            if let Some(r) = stored["root"].as_str() {
                l.stack.source.root = Some(PathBuf::from(r));
            }
            if let Some(d) = stored["abs_dir"].as_str() {
                l.stack.source.abs_dir = PathBuf::from(d);
            }
            if let Some(builds) = stored["builds"].as_object() {
                l.stack.source.pinned_builds = builds
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect();
            }
            let mut diags = Vec::new();
            jobs::split(&mut l.stack, &mut diags);
            if diags.iter().any(Diag::is_error) {
                return Err(LoadError { diags });
            }
            Ok((l.stack, l.masker))
        }
        _ => Err(LoadError { diags }),
    }
}

/// Tests: loads the repository, stack directory or Compose file at `path`
/// from the file system with an empty process environment, as `reconcile`
/// would; panics with the diagnostics when it does not load.
#[cfg(test)]
pub(crate) fn load_path(path: &Path) -> Desired {
    let layout = crate::source::discover(path).unwrap_or_else(|e| panic!("{e}"));
    load(&layout, &crate::source::LocalFs, &BTreeMap::new(), &[]).unwrap_or_else(|e| panic!("{e}"))
}
