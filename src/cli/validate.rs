//! The commands that read only the desired state (no engine, no state
//! directory): `validate`, `render` and `graph`.

use std::path::Path;

use anyhow::Result;

use super::args::{GraphFormat, RenderFormat};
use super::load::load;
use super::{Exit, Global, print};
use crate::graph::{self, StackGraph};
use crate::spec::model::Stack;
use crate::spec::render;

/// `plimsoll validate`: the stacks and services that load, and where they run.
pub(super) fn validate(path: &Path, global: &Global) -> Result<Exit> {
    let desired = load(path, &[], &global.loading)?;
    let mut out = String::new();
    let services: usize = desired.stacks.iter().map(|s| s.services.len()).sum();
    out.push_str(&format!(
        "valid: {} stack{}, {services} service{}\n",
        desired.stacks.len(),
        if desired.stacks.len() == 1 { "" } else { "s" },
        if services == 1 { "" } else { "s" }
    ));
    for s in &desired.stacks {
        let names: Vec<&str> = s.services.keys().map(String::as_str).collect();
        out.push_str(&format!("  {}: {}\n", s.name, names.join(", ")));
        if !s.jobs.is_empty() {
            let jobs: Vec<String> = s
                .jobs
                .iter()
                .map(|(n, j)| match j.plimsoll.job {
                    Some(kind) => format!("{n} ({kind})"),
                    None => n.clone(),
                })
                .collect();
            out.push_str(&format!("    jobs: {}\n", jobs.join(", ")));
        }
    }
    if !desired.config.environments.is_empty() {
        out.push_str("environments:\n");
        for name in desired.config.environments.keys() {
            let hosts: Vec<String> = desired
                .config
                .host_names()
                .into_iter()
                .filter(|h| desired.config.environment_of(h) == Some(name.as_str()))
                .collect();
            let variants: Vec<&str> = desired
                .environments
                .get(name)
                .into_iter()
                .flatten()
                .map(|s| s.name.as_str())
                .collect();
            out.push_str(&format!(
                "  {name} ({}): {}\n",
                if hosts.is_empty() {
                    "no host".into()
                } else {
                    hosts.join(", ")
                },
                if variants.is_empty() {
                    "no stack differs".into()
                } else {
                    variants.join(", ")
                }
            ));
        }
    }
    if desired.config.assigns_hosts() {
        let names: Vec<&str> = desired.stacks.iter().map(|s| s.name.as_str()).collect();
        let assignment = desired.config.assignment(&names);
        out.push_str("hosts:\n");
        out.push_str(&assignment.to_text(&desired.config));
        for s in &assignment.nowhere {
            tracing::warn!(
                "stack {s} runs on no host: its `hosts`/`placement` in plimsoll.yaml match no host of `hosts:`; name a host, or give one the placement's labels"
            );
        }
    }
    print(&out)?;
    Ok(Exit::Success)
}

/// `plimsoll render`: the stacks as loaded, YAML or JSON.
pub(super) fn render(
    path: &Path,
    stacks: &[String],
    format: RenderFormat,
    (show_secrets, host): (bool, Option<&str>),
    global: &Global,
) -> Result<Exit> {
    let desired = load(path, stacks, &global.loading)?;
    let chosen: Vec<&Stack> = match host {
        Some(h) => desired.stacks_on(h),
        None => desired.stacks.iter().collect(),
    };
    let values: Vec<serde_json::Value> = chosen
        .iter()
        .map(|s| render::to_value(s, &desired.masker, show_secrets))
        .collect();
    let out = match (format, values.as_slice()) {
        (RenderFormat::Json, [one]) => serde_json::to_string_pretty(one)? + "\n",
        (RenderFormat::Json, many) => {
            let by_name: serde_json::Map<String, serde_json::Value> = chosen
                .iter()
                .zip(many)
                .map(|(s, v)| (s.name.clone(), v.clone()))
                .collect();
            serde_json::to_string_pretty(&by_name)? + "\n"
        }
        (RenderFormat::Yaml, many) => many
            .iter()
            .map(render::to_yaml)
            .collect::<Vec<_>>()
            .join("---\n"),
    };
    print(&out)?;
    Ok(Exit::Success)
}

/// `plimsoll graph`: the dependency graph of each stack, or of each host (`--hosts`).
pub(super) fn graph(
    path: &Path,
    format: GraphFormat,
    hosts: bool,
    global: &Global,
) -> Result<Exit> {
    let desired = load(path, &[], &global.loading)?;
    let graphs: Vec<StackGraph> = desired
        .stacks
        .iter()
        // Jobs are drawn with the services they depend on.
        .map(|s| StackGraph::build(&s.whole()).expect("validation rejected cycles"))
        .collect();
    let names: Vec<&str> = desired.stacks.iter().map(|s| s.name.as_str()).collect();
    let assignment = desired.config.assignment(&names);
    let variants = desired
        .environments
        .iter()
        .map(|(e, stacks)| {
            let g = stacks
                .iter()
                .map(|s| StackGraph::build(&s.whole()).expect("validation rejected cycles"))
                .collect();
            (e.clone(), g)
        })
        .collect();
    let view = graph::HostsView {
        assignment: &assignment,
        config: &desired.config,
        graphs: &graphs,
        variants: &variants,
    };
    let out = match (format, hosts) {
        (GraphFormat::Text, false) => graph::to_text(&graphs),
        (GraphFormat::Dot, false) => graph::to_dot(&graphs),
        (GraphFormat::Mermaid, false) => graph::to_mermaid(&graphs),
        (GraphFormat::Text, true) => view.to_text(),
        (GraphFormat::Dot, true) => view.to_dot(),
        (GraphFormat::Mermaid, true) => view.to_mermaid(),
    };
    print(&out)?;
    Ok(Exit::Success)
}
