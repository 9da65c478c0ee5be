//! Environments (`environments:` in plimsoll.yaml): one stack, per-environment
//! values. A host's environment is chosen by its labels or name; on it, a
//! stack runs its variant: the stack directory's `compose.<env>.yaml` (or
//! `.yml`) merged onto the base by Compose's rules, after its override files,
//! and `.env.<env>` read after `.env` (as `docker compose -f compose.yaml -f
//! compose.prod.yaml --env-file .env --env-file .env.prod`).

use std::path::Path;

use super::config::Config;
use super::diag::Diag;
use super::model::Stack;
use super::yaml::Node;
use super::{Desired, StackText, read_text};
use crate::source::Files;

impl Desired {
    /// The stack `stack` as `host` runs it: its environment's variant when
    /// the host is in an environment for which the stack has files, else the base.
    pub fn stack_on<'a>(&'a self, stack: &'a Stack, host: &str) -> &'a Stack {
        match self.config.environment_of(host) {
            Some(env) => self.stack_in(stack, env),
            None => stack,
        }
    }

    /// The stack `stack` as the hosts of environment `env` run it: its
    /// variant when the stack has files for `env`, else the base.
    pub fn stack_in<'a>(&'a self, stack: &'a Stack, env: &str) -> &'a Stack {
        self.environments
            .get(env)
            .and_then(|v| v.iter().find(|s| s.name == stack.name))
            .unwrap_or(stack)
    }

    /// The stacks `host` runs (plimsoll.yaml's assignment), each as the host runs it.
    pub fn stacks_on(&self, host: &str) -> Vec<&Stack> {
        self.stacks
            .iter()
            .filter(|s| self.config.runs_on(&s.name, host))
            .map(|s| self.stack_on(s, host))
            .collect()
    }
}

/// The stack's files with environment `env`'s added; `None` when the stack
/// directory has none of them (the variant is the base), or one cannot be
/// read (problems in `diags`).
pub(super) fn read_variant(
    base: &StackText,
    env: &str,
    files: &dyn Files,
    diags: &mut Vec<Diag>,
) -> Option<StackText> {
    let dir = &base.sf.dir;
    let read = |path: &Path, diags: &mut Vec<Diag>| match read_text(files, path) {
        Ok(t) => t,
        Err(d) => {
            diags.push(d);
            None
        }
    };
    let compose = [format!("compose.{env}.yaml"), format!("compose.{env}.yml")]
        .iter()
        .map(|n| dir.join(n))
        .find_map(|p| read(&p, diags).map(|t| (p, t)));
    let dotenv_path = dir.join(format!(".env.{env}"));
    let dotenv = read(&dotenv_path, diags).map(|t| (dotenv_path, t));
    if compose.is_none() && dotenv.is_none() {
        return None;
    }
    let mut variant = base.clone();
    variant.overrides.extend(compose);
    variant.env_dotenv = dotenv;
    Some(variant)
}

/// Warns about a stack's `compose.<x>.yaml` (or `.yml`) for an environment
/// `x` that plimsoll.yaml does not name, when it names some: no host reads
/// that file (a typo, or an environment not declared yet). Compose's own
/// `compose.override.yaml` and files the stack reads anyway (`COMPOSE_FILE`)
/// are not variants.
pub(super) fn check_unknown_variants(
    read: &StackText,
    config: &Config,
    files: &dyn Files,
    diags: &mut Vec<Diag>,
) {
    if config.environments.is_empty() {
        return;
    }
    let dir = &read.sf.dir;
    let Ok(names) = files.list(dir) else {
        return;
    };
    let used: Vec<&std::ffi::OsStr> = std::iter::once(read.sf.compose.as_path())
        .chain(read.overrides.iter().map(|(p, _)| p.as_path()))
        .filter_map(Path::file_name)
        .collect();
    for name in names {
        let Some(env) = name
            .strip_prefix("compose.")
            .and_then(|n| n.strip_suffix(".yaml").or_else(|| n.strip_suffix(".yml")))
        else {
            continue;
        };
        let known = config.environments.contains_key(env);
        if known || env == "override" || used.contains(&std::ffi::OsStr::new(&name)) {
            continue;
        }
        let names: Vec<&str> = config.environments.keys().map(String::as_str).collect();
        diags.push(
            Diag::warning(
                &dir.join(&name),
                Default::default(),
                "",
                format!("no environment `{env}` in plimsoll.yaml: no host reads this file"),
            )
            .hint(format!(
                "name it after an environment ({}), or add `{env}` to `environments:` in plimsoll.yaml",
                names.join(", ")
            )),
        );
    }
}

/// Checks `stack` (as the environment's hosts run it) against the
/// environment's `policy:`, when it has one and the stack runs on one of its hosts.
pub(super) fn check_policy(
    config: &Config,
    env: &str,
    (node, config_path): (Option<&Node>, &Path),
    stack: &Stack,
    files: &dyn Files,
    diags: &mut Vec<Diag>,
) {
    let Some(policy) = config.environments.get(env).and_then(|e| e.policy.as_ref()) else {
        return;
    };
    if !config.runs_in(&stack.name, env) {
        return;
    }
    let root = ["environments", env, "policy"];
    let rules = super::policy::RuleSource {
        file: config_path,
        node,
        root: &root,
    };
    let immutable = super::policy::check_rules(policy, &rules, diags);
    super::policy::check_stack(
        policy,
        immutable.as_ref(),
        &rules,
        &stack.whole(),
        files,
        diags,
    );
}

/// `environments:`: names a file can carry (`compose.<env>.yaml`), a way to
/// choose hosts, and no host in two environments.
pub(super) fn check_config(
    config: &Config,
    node: Option<&Node>,
    config_path: &Path,
    diags: &mut Vec<Diag>,
) {
    let mark = |path: &[&str]| {
        node.and_then(|n| n.lookup_key(path))
            .map(|n| n.mark)
            .unwrap_or_default()
    };
    for (name, e) in &config.environments {
        let valid = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && !matches!(name.as_str(), "age" | "override");
        if !valid {
            diags.push(
                Diag::error(config_path, mark(&["environments", name]), format!("environments.{name}"), format!("invalid environment name `{name}`"))
                    .hint("name environments with letters, digits, `-` and `_` (not `age` or `override`): they name files such as compose.<env>.yaml and .env.<env>"),
            );
        }
        if e.labels.is_empty() && e.hosts.is_empty() {
            diags.push(
                Diag::error(
                    config_path,
                    mark(&["environments", name]),
                    format!("environments.{name}"),
                    "the environment chooses no host",
                )
                .hint("give it `labels: {env: prod}` (labels of hosts under `hosts:`) or `hosts: [name]`"),
            );
        }
    }
    for host in config.host_names() {
        let envs = config.environments_of(&host);
        if envs.len() > 1 {
            let key = if config.hosts.contains_key(&host) {
                vec!["hosts", host.as_str()]
            } else {
                vec!["environments", envs[1]]
            };
            diags.push(
                Diag::error(
                    config_path,
                    mark(&key),
                    key.join("."),
                    format!("host `{host}` is in more than one environment: {}", envs.join(", ")),
                )
                .hint("a host is in one environment: change its labels or the environments' `labels`/`hosts`"),
            );
        }
    }
}

#[cfg(test)]
mod tests;
