//! The policy of `plimsoll.yaml`, checked on the desired state before any
//! change: privileged containers, registries, pinned images, host ports,
//! required labels and variables, restart policies.
//!
//! A violation names the Compose file, line and key that break the rule, and
//! the rule with its own line in `plimsoll.yaml`. Invariant: pure.

use std::path::Path;

use regex::Regex;

use super::config::{Config, PortSpec};
use super::diag::{Diag, Mark};
use super::model::Stack;
use super::yaml::Node;

/// Where the rules were written, to cite them.
pub struct RuleSource<'a> {
    pub file: &'a Path,
    pub node: Option<&'a Node>,
}

impl RuleSource<'_> {
    fn cite(&self, rule: &str) -> String {
        let line = self
            .node
            .and_then(|n| n.lookup_key(&["policy", rule]))
            .map(|n| n.mark.line)
            .unwrap_or(0);
        if line > 0 {
            format!("policy `{rule}` ({}:{line})", self.file.display())
        } else {
            format!("policy `{rule}`")
        }
    }

    /// Where the value at `path` (under `policy`) was written.
    fn mark(&self, path: &[&str]) -> Mark {
        let path: Vec<&str> = ["policy"].iter().chain(path).copied().collect();
        self.node
            .and_then(|n| n.lookup(&path))
            .map(|n| n.mark)
            .unwrap_or_default()
    }
}

/// Checks the rules that do not depend on any stack (e.g. that patterns compile).
pub fn check_config(
    config: &Config,
    rules: &RuleSource<'_>,
    diags: &mut Vec<Diag>,
) -> Option<Regex> {
    let pattern = config
        .policy
        .pinned_images
        .as_ref()?
        .immutable_tag
        .as_ref()?;
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
                    "policy.pinned_images.immutable_tag",
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

/// Checks one stack against the policy; violations go to `diags`.
pub fn check_stack(
    config: &Config,
    immutable: Option<&Regex>,
    rules: &RuleSource<'_>,
    stack: &Stack,
    diags: &mut Vec<Diag>,
) {
    let policy = &config.policy;
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
    for (name, svc) in &stack.services {
        let qualified = format!("{}/{name}", stack.name);
        if let Some(rule) = &policy.privileged
            && svc.privileged
            && !rule.allow.contains(&qualified)
        {
            violation(
                name,
                "privileged",
                "privileged",
                "privileged container".into(),
                format!(
                    "remove `privileged: true`, or allow it by name in plimsoll.yaml: policy.privileged.allow: [{qualified}]"
                ),
            );
        }
        // An image built on the host comes from the repository, not a registry.
        if let Some(image) = svc.image.as_ref().filter(|_| !svc.builds()) {
            if let Some(rule) = &policy.registries {
                let reg = registry_of(image);
                if !rule.allow.iter().any(|r| r == reg) {
                    violation(
                        name,
                        "image",
                        "registries",
                        format!("image `{image}` comes from registry `{reg}`"),
                        format!(
                            "use an image from {}, or add `{reg}` to policy.registries.allow",
                            rule.allow.join(", ")
                        ),
                    );
                }
            }
            if let Some(rule) = &policy.pinned_images
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
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries() {
        assert_eq!(registry_of("nginx:1.27"), "docker.io");
        assert_eq!(registry_of("library/nginx"), "docker.io");
        assert_eq!(registry_of("ghcr.io/org/app:1"), "ghcr.io");
        assert_eq!(registry_of("localhost:5000/app"), "localhost:5000");
        assert_eq!(registry_of("localhost/app"), "localhost");
    }

    #[test]
    fn pinning() {
        let re = Regex::new(r"^v\d+\.\d+\.\d+$").unwrap();
        assert!(is_pinned("app@sha256:abc", None));
        assert!(is_pinned("reg:5000/app:v1.2.3", Some(&re)));
        assert!(!is_pinned("reg:5000/app", Some(&re)));
        assert!(!is_pinned("app:latest", Some(&re)));
        assert!(!is_pinned("app:v1.2.3", None));
    }

    #[test]
    fn ports() {
        let allow = vec![PortSpec::One(80), PortSpec::Range("8000-8099".into())];
        assert!(port_allowed(80, &allow));
        assert!(port_allowed(8050, &allow));
        assert!(!port_allowed(8100, &allow));
    }
}
