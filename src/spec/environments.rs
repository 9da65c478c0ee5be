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
        self.config
            .environment_of(host)
            .and_then(|e| self.environments.get(e))
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
    let runs_here = config
        .host_names()
        .iter()
        .any(|h| config.environment_of(h) == Some(env) && config.runs_on(&stack.name, h));
    if !runs_here {
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
