//! The process: name, image, command, entrypoint, environment, labels,
//! working directory, TTY and stdin, annotations, platform.

use std::collections::BTreeMap;

use super::{
    ComposeEdit, ComposeOp, ContainerConfig, Create, Desire, Fields, Group, ImageDefaults, Inspect,
    Inverse, Request,
};
use crate::names::{labels, managed_labels, replica_name};

pub struct Basics;

impl Group for Basics {
    fn desired(&self, cx: &Desire<'_>, c: &mut ContainerConfig) {
        let (stack, svc) = (cx.stack, cx.svc);
        c.name = replica_name(stack, cx.service, svc, cx.number);
        c.image = svc.image_ref(&stack.name, cx.service);
        c.command = svc.command.clone();
        c.entrypoint = svc.entrypoint.clone();
        c.env = svc
            .environment
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
            .collect();
        c.labels = svc.labels.clone();
        c.labels
            .extend(managed_labels(stack, cx.service, cx.number));
        c.labels.extend(super::lifecycle::hook_labels(svc));
        if let Some(repo) = &stack.source.repository {
            c.labels.insert(labels::REPOSITORY.into(), repo.clone());
        }
        if svc.plimsoll.prune == Some(false) {
            c.labels.insert(labels::PRUNE.into(), "false".into());
        }
        c.working_dir = svc.working_dir.clone();
        c.platform = svc.platform.clone();
        c.tty = svc.tty;
        c.stdin_open = svc.stdin_open;
        c.annotations = (!svc.annotations.is_empty()).then(|| svc.annotations.clone());
    }

    fn create(&self, cx: &Create<'_>, r: &mut Request) {
        let c = cx.config;
        let b = &mut r.body;
        b.image = Some(c.image.clone());
        b.cmd = c.command.clone();
        b.entrypoint = c.entrypoint.clone();
        b.env = Some(c.env.iter().map(|(k, v)| format!("{k}={v}")).collect());
        b.labels = Some(c.labels.clone().into_iter().collect());
        b.working_dir = c.working_dir.clone();
        b.tty = Some(c.tty);
        b.open_stdin = Some(c.stdin_open);
        r.host.annotations = c
            .annotations
            .as_ref()
            .map(|a| a.clone().into_iter().collect());
    }

    fn read(&self, i: &Inspect<'_>, c: &mut ContainerConfig) {
        let cfg = i.cfg;
        c.name = i
            .raw
            .name
            .as_deref()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        c.image = cfg.image.clone().unwrap_or_default();
        c.image_id = i.raw.image.clone();
        c.command = cfg.cmd.clone();
        c.entrypoint = cfg.entrypoint.clone();
        c.env = env_map(cfg.env.clone().unwrap_or_default());
        c.labels = cfg.labels.clone().unwrap_or_default().into_iter().collect();
        c.working_dir = super::nonempty(&cfg.working_dir);
        c.tty = cfg.tty.unwrap_or(false);
        c.stdin_open = cfg.open_stdin.unwrap_or(false);
        c.annotations = i
            .host
            .annotations
            .clone()
            .filter(|a| !a.is_empty())
            .map(|a| a.into_iter().collect());
    }

    fn compose(&self, cx: &Inverse<'_>, out: &mut Vec<ComposeEdit>) {
        let live = cx.live;
        for key in cx.changed {
            let (at, name, values) = if key == "image" {
                out.push(ComposeEdit {
                    field: key.clone(),
                    at: vec![vec!["image"]],
                    op: ComposeOp::Set(live.image.clone()),
                });
                continue;
            } else if let Some(name) = key.strip_prefix("env ") {
                ("environment", name, &live.env)
            } else if let Some(name) = key.strip_prefix("label ") {
                ("labels", name, &live.labels)
            } else {
                continue;
            };
            out.push(ComposeEdit {
                field: key.clone(),
                at: vec![vec![at]],
                op: ComposeOp::Entry {
                    name: name.to_string(),
                    value: values.get(name).cloned(),
                },
            });
        }
    }

    fn fields(&self, c: &ContainerConfig, f: &mut Fields<'_>) {
        f.put("name", c.name.clone());
        f.put("image", c.image.clone());
        f.put(
            "image id",
            c.image_id
                .as_deref()
                .map_or_else(|| "(not on this host)".into(), short_id),
        );
        if let Some(cmd) = &c.command {
            let w = f.words(cmd);
            f.put("command", w);
        }
        if let Some(e) = &c.entrypoint {
            let w = f.words(e);
            f.put("entrypoint", w);
        }
        f.map("env", &c.env);
        for (k, v) in &c.labels {
            if !labels::is_bookkeeping(k) {
                f.put(format!("label {k}"), v.clone());
            }
        }
        f.opt("working dir", &c.working_dir);
        f.flag("tty", c.tty);
        f.flag("stdin open", c.stdin_open);
        for (k, v) in c.annotations.iter().flatten() {
            f.put(format!("annotation {k}"), v.clone());
        }
    }

    fn strip(&self, c: &mut ContainerConfig, image: &ImageDefaults) {
        // Setting an entrypoint drops the image's command (the engine's rule).
        let image_cmd = if c.entrypoint.is_some() && c.entrypoint != image.entrypoint {
            None
        } else {
            image.cmd.clone()
        };
        if c.command.as_ref().is_some_and(|cmd| {
            Some(cmd) == image_cmd.as_ref() || cmd.is_empty() && image_cmd.is_none()
        }) {
            c.command = None;
        }
        if c.entrypoint.is_some() && c.entrypoint == image.entrypoint {
            c.entrypoint = None;
        }
        c.env.retain(|k, v| image.env.get(k) != Some(v));
        c.labels.retain(|k, v| image.labels.get(k) != Some(v));
        if c.working_dir.is_some()
            && (c.working_dir == image.working_dir
                || c.working_dir.as_deref() == Some("") && image.working_dir.is_none())
        {
            c.working_dir = None;
        }
    }

    fn align(&self, live: &mut ContainerConfig, desired: &ContainerConfig) {
        // Not reported before API 1.43: then not compared.
        if live.annotations.is_none() {
            live.annotations = desired.annotations.clone();
        }
    }
}

/// `KEY=value` lines as a map.
pub fn env_map(env: Vec<String>) -> BTreeMap<String, String> {
    env.into_iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (e, String::new()),
        })
        .collect()
}

fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

/// How a service's number of containers on the host is written in Compose
/// (`scale`, or `deploy.replicas` where the file says it there).
pub fn replicas_edit(running: u32) -> ComposeEdit {
    ComposeEdit {
        field: "replicas".into(),
        at: vec![vec!["scale"], vec!["deploy", "replicas"]],
        op: ComposeOp::Set(running.to_string()),
    }
}
