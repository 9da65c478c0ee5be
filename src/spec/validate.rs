//! Checks that Compose leaves to run time, made at load: references between
//! services, networks, volumes, secrets and configs; dependency cycles;
//! container names; profiles; services without an image (and without `build:`).
//!
//! Invariant: pure; reports problems as diagnostics and never changes a stack
//! except to drop services that no active profile enables.

use std::collections::{BTreeMap, BTreeSet};

use super::deps::StackGraph;
use super::diag::Diag;
use super::model::{MountType, PullPolicy, Service, Stack};

/// Checks one stack; problems go to `diags`.
pub fn check_stack(stack: &Stack, diags: &mut Vec<Diag>) {
    for (name, svc) in &stack.services {
        check_service(stack, name, svc, diags);
        check_references(stack, name, svc, diags);
    }
    check_cycles(stack, diags);
}

/// A service's image, its dependencies and its legacy links.
fn check_service(stack: &Stack, name: &str, svc: &Service, diags: &mut Vec<Diag>) {
    let file = &stack.source.file;
    let at = |service: &str, key: &str| stack.source.mark(service, key);
    let path = format!("services.{name}");
    // A `build:` that failed to load was reported already.
    let has_build =
        svc.build.is_some() || stack.source.marks.contains_key(&format!("{path}.build"));
    if svc.image.as_deref().is_none_or(str::is_empty) && !has_build {
        diags.push(
            Diag::error(
                file,
                stack.source.mark(name, ""),
                path.clone(),
                format!("service `{name}` has no image"),
            )
            .hint(
                "set `image:` to the image this service runs, or `build:` to build it on the host",
            ),
        );
    }
    if svc.build.is_some() && svc.image.is_none() && svc.pull_policy == Some(PullPolicy::Always) {
        diags.push(
            Diag::error(
                file,
                at(name, "pull_policy"),
                format!("{path}.pull_policy"),
                format!("`pull_policy: always` pulls the image, but service `{name}` names none"),
            )
            .hint("set `image:` to the image to pull, or use `pull_policy: build` to build it on the host"),
        );
    }
    for dep in svc.depends_on.keys() {
        if !stack.services.contains_key(dep) {
            // A dependency Compose infers names the key it came from.
            let mark = at(name, &format!("depends_on.{dep}"));
            let key = implied_by(svc, dep)
                .filter(|k| stack.source.marks.get(&format!("{path}.{k}")) == Some(&mark))
                .unwrap_or("depends_on");
            let message = if key == "depends_on" {
                format!("depends on undefined service `{dep}`")
            } else {
                format!("`{key}` names undefined service `{dep}`")
            };
            diags.push(
                Diag::error(file, mark, format!("{path}.{key}"), message).hint(format!(
                    "declare `{dep}` under services, or remove it from {key}"
                )),
            );
        }
    }
    // Legacy links on the default bridge reach only containers on that bridge.
    if matches!(svc.network_mode.as_deref(), Some("bridge" | "default")) {
        for link in &svc.links {
            let target = link.split(':').next().unwrap_or(link);
            let on_bridge = stack
                .services
                .get(target)
                .is_none_or(|t| matches!(t.network_mode.as_deref(), Some("bridge" | "default")));
            if !on_bridge {
                diags.push(
                    Diag::error(
                        file,
                        at(name, "links"),
                        format!("{path}.links"),
                        format!("links to `{target}`, which is not on the default bridge network"),
                    )
                    .hint(format!(
                        "give `{target}` `network_mode: bridge` too, or drop `network_mode` here and use networks (services reach each other by name there)"
                    )),
                );
            }
        }
    }
}

/// The networks, volumes, secrets and configs a service uses are declared.
fn check_references(stack: &Stack, name: &str, svc: &Service, diags: &mut Vec<Diag>) {
    let file = &stack.source.file;
    let at = |service: &str, key: &str| stack.source.mark(service, key);
    let path = format!("services.{name}");
    for net in svc.networks.keys() {
        if !stack.networks.contains_key(net) && net != "default" {
            diags.push(
                Diag::error(
                    file,
                    at(name, &format!("networks.{net}")),
                    format!("{path}.networks"),
                    format!("refers to undefined network `{net}`"),
                )
                .hint(format!(
                    "declare it under the top-level `networks:` ({net}: {{}})"
                )),
            );
        }
    }
    for m in &svc.volumes {
        if m.kind == MountType::Volume
            && let Some(src) = &m.source
            && !stack.volumes.contains_key(src)
        {
            diags.push(
                Diag::error(
                    file,
                    at(name, &format!("volumes.{src}")),
                    format!("{path}.volumes"),
                    format!("refers to undefined volume `{src}`"),
                )
                .hint(format!(
                    "declare it under the top-level `volumes:` ({src}: {{}}), or write a path (./{src}) for a bind mount"
                )),
            );
        }
    }
    for (kind, refs, declared) in [
        ("secret", &svc.secrets, &stack.secrets),
        ("config", &svc.configs, &stack.configs),
    ] {
        for r in refs {
            if !declared.contains_key(&r.source) {
                diags.push(
                    Diag::error(
                        file,
                        at(name, &format!("{kind}s.{}", r.source)),
                        format!("{path}.{kind}s"),
                        format!("refers to undefined {kind} `{}`", r.source),
                    )
                    .hint(format!(
                        "declare it under the top-level `{kind}s:` with `file:`"
                    )),
                );
            }
        }
    }
}

/// No service depends on itself, directly or not.
fn check_cycles(stack: &Stack, diags: &mut Vec<Diag>) {
    let file = &stack.source.file;
    let at = |service: &str, key: &str| stack.source.mark(service, key);
    if let Err(cycles) = StackGraph::build(stack) {
        for c in cycles {
            let first = &c.0[0];
            let key = format!("services.{first}.depends_on");
            let d = if let [only] = c.0.as_slice() {
                Diag::error(
                    file,
                    at(only, &format!("depends_on.{only}")),
                    key,
                    format!("service `{only}` depends on itself"),
                )
                .hint(format!("remove `{only}` from its own depends_on"))
            } else {
                let names: Vec<String> = c.0.iter().map(|n| format!("`{n}`")).collect();
                let (last, rest) = names.split_last().expect("a cycle has services");
                Diag::error(
                    file,
                    at(first, "depends_on"),
                    key,
                    format!(
                        "dependency cycle: services {} and {last} depend on each other",
                        rest.join(", ")
                    ),
                )
                .hint("remove one of the depends_on entries between them so the services can start in order")
            };
            diags.push(d);
        }
    }
}

/// The key from which Compose infers a dependency on `dep`, if any:
/// `links`, a `service:` namespace, or `volumes_from`.
fn implied_by(svc: &Service, dep: &str) -> Option<&'static str> {
    let first = |s: &str| s.split(':').next().map(str::to_string);
    if svc.links.iter().any(|l| first(l).as_deref() == Some(dep)) {
        return Some("links");
    }
    if let Some((key, _)) = svc.service_namespaces().find(|&(_, name)| name == dep) {
        return Some(key);
    }
    svc.volumes_from
        .iter()
        .any(|v| !v.starts_with("container:") && first(v).as_deref() == Some(dep))
        .then_some("volumes_from")
}

/// Drops services that no active profile enables (Compose's rule: a service
/// without `profiles` is always enabled; `*` enables every profile). `profiles`
/// (`--profile`, or the stack's `profiles` in plimsoll.yaml) selects the
/// profiles, else `COMPOSE_PROFILES`. As in Compose, a profile does not pull in
/// the dependencies of the services it enables: a dependency of an enabled
/// service on a disabled one is an error.
pub fn apply_profiles(stack: &mut Stack, profiles: Option<&[String]>, diags: &mut Vec<Diag>) {
    let active: BTreeSet<String> = match profiles {
        Some(p) => p
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        None => stack
            .source
            .variables
            .get("COMPOSE_PROFILES")
            .map(|p| {
                p.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
    };
    let enabled = |profiles: &[String]| {
        profiles.is_empty() || active.contains("*") || profiles.iter().any(|p| active.contains(p))
    };
    let disabled: BTreeMap<String, Vec<String>> = stack
        .services
        .iter()
        .filter(|(_, s)| !enabled(&s.profiles))
        .map(|(n, s)| (n.clone(), s.profiles.clone()))
        .collect();
    for (name, svc) in &stack.services {
        if disabled.contains_key(name) {
            continue;
        }
        for (dep, d) in &svc.depends_on {
            if let Some(profiles) = disabled.get(dep)
                && d.required
            {
                diags.push(
                    Diag::error(
                        &stack.source.file,
                        stack.source.mark(name, &format!("depends_on.{dep}")),
                        format!("services.{name}.depends_on"),
                        format!("depends on `{dep}`, which no active profile enables (its profiles: {})", profiles.join(", ")),
                    )
                    .hint(format!("enable its profile: `--profile {}`, `profiles: [{0}]` for the stack in plimsoll.yaml, or COMPOSE_PROFILES={0} in the stack's .env", profiles[0])),
                );
            }
        }
    }
    stack.services.retain(|n, _| !disabled.contains_key(n));
    for svc in stack.services.values_mut() {
        svc.depends_on.retain(|dep, _| !disabled.contains_key(dep));
    }
}

/// Checks across stacks: unique stack names and container names (the engine
/// has one namespace for container names).
pub fn check_across(stacks: &[Stack], diags: &mut Vec<Diag>) {
    let mut names: BTreeMap<&str, &Stack> = BTreeMap::new();
    for s in stacks {
        if let Some(first) = names.insert(&s.name, s) {
            diags.push(
                Diag::error(
                    &s.source.file,
                    Default::default(),
                    "name",
                    format!("stack name `{}` is used twice", s.name),
                )
                .hint(format!(
                    "{} has the same name; set a different `name:` in one of them",
                    first.source.file.display()
                )),
            );
        }
    }
    let mut containers: BTreeMap<String, (String, String)> = BTreeMap::new();
    for s in stacks {
        for (name, svc) in &s.services {
            let cname = svc
                .container_name
                .clone()
                .unwrap_or_else(|| format!("{}-{name}-1", s.name));
            if let Some((stack, service)) =
                containers.insert(cname.clone(), (s.name.clone(), name.clone()))
            {
                diags.push(
                    Diag::error(
                        &s.source.file,
                        s.source.mark(name, "container_name"),
                        format!("services.{name}.container_name"),
                        format!("container name `{cname}` is also used by {stack}/{service}"),
                    )
                    .hint("give each service its own container_name, or remove container_name"),
                );
            }
        }
    }
}
