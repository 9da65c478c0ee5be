//! Round trips through the engine, one per group: a Compose snippet
//! (`tests/fixtures/inspect/<group>/compose.yaml`) loaded through `spec`,
//! the create request plimsoll makes of it, and what this engine reported
//! for the containers plimsoll created from that request
//! (`tests/fixtures/inspect/<group>.json`, saved by
//! `scripts/capture-inspect.sh`).
//!
//! Two directions are checked for every container: everything the create
//! request sets is what the engine holds (so the fixture was made by the
//! request the code makes today), and the inspect read back and normalized
//! compares equal to the desired config (so reading undoes creating).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bollard::models::{ContainerInspectResponse, ImageInspect};
use serde::Deserialize;
use serde_json::Value;

use crate::apply::create_body;
use crate::diff::{compare, desired_config};
use crate::keys::pins::sorted;

/// A saved capture.
#[derive(Deserialize)]
struct Capture {
    containers: Vec<ContainerInspectResponse>,
    images: Vec<ImageInspect>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inspect")
}

/// Parts of a create request the engine stores in another form, with why.
const REWRITTEN: &[(&str, &str)] = &[
    (
        "HostConfig.NetworkMode",
        "`container:<name>` is stored as `container:<id>` (compared after ids become names)",
    ),
    (
        "HostConfig.Links",
        "stored as `/<container>:/<self>/<alias>`, and on a user-defined network only on the endpoint",
    ),
    (
        "HostConfig.Annotations",
        "kept from API 1.43 on (read back as not reported before: see `diff::ContainerConfig::annotations`)",
    ),
    (
        "HostConfig.BlkioWeight",
        "discarded without a proportional I/O scheduler (aligned in `keys::resources`)",
    ),
    (
        "HostConfig.BlkioWeightDevice",
        "discarded without a proportional I/O scheduler (aligned in `keys::resources`)",
    ),
    (
        "EndpointsConfig.Links",
        "stored as `/<container>:/<self>/<alias>`",
    ),
];

/// Whether `want` (a part of the create request) is held by `got` (the
/// same part of the inspect): every key of an object, every element of a
/// list (the engine adds its own: the image's environment, the short id
/// as an alias), every other value equal. Differences are pushed as paths.
fn held(path: &str, want: &Value, got: &Value, out: &mut Vec<String>) {
    if rewritten(path) {
        return;
    }
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, v) in w {
                let p = format!("{path}.{k}");
                match g.get(k) {
                    Some(gv) => held(&p, v, gv, out),
                    None if is_zero(v) || rewritten(&p) => {}
                    None => out.push(format!("{p}: {v} not in the inspect")),
                }
            }
        }
        (Value::Array(w), Value::Array(g)) if is_ordered(path) => {
            if w != g {
                out.push(format!("{path}: {want} != {got}"));
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            for v in w {
                if !g.iter().any(|gv| {
                    let mut o = Vec::new();
                    held(path, v, gv, &mut o);
                    o.is_empty()
                }) {
                    out.push(format!("{path}: {v} not in {got}"));
                }
            }
        }
        (_, Value::Null) if is_zero(want) => {}
        (Value::Null, _) => {}
        _ if want == got => {}
        _ => out.push(format!("{path}: {want} != {got}")),
    }
}

fn rewritten(path: &str) -> bool {
    REWRITTEN.iter().any(|(p, _)| path.ends_with(p))
}

/// A value the engine leaves out of its answer (Go's `omitempty`).
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_zero),
    }
}

/// Lists whose order is part of their meaning.
fn is_ordered(path: &str) -> bool {
    [
        "Cmd",
        "Entrypoint",
        "Test",
        "Dns",
        "DnsSearch",
        "DnsOptions",
    ]
    .iter()
    .any(|k| path.ends_with(&format!(".{k}")))
}

/// One group's round trip.
fn check(group: &str) {
    let dir = fixtures().join(group);
    let text = std::fs::read_to_string(fixtures().join(format!("{group}.json")))
        .unwrap_or_else(|e| panic!("{group}.json: {e}; run scripts/capture-inspect.sh {group}"));
    // The capture's checkout path is this checkout's.
    let raw: Value = serde_json::from_str(&text).expect("a capture");
    let captured_dir = raw["dir"].as_str().expect("dir").to_string();
    let text = text.replace(&captured_dir, &dir.display().to_string());
    let capture: Capture = serde_json::from_str(&text).expect("a capture");
    let desired = crate::spec::load_path(&dir);
    let stack = &desired.stacks[0];
    let names: BTreeMap<String, String> = capture
        .containers
        .iter()
        .map(|c| {
            let id = c.id.clone().unwrap_or_default();
            (
                id,
                c.name
                    .clone()
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
            )
        })
        .collect();
    let mut seen = Vec::new();
    for inspect in &capture.containers {
        let labels = inspect
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let service = &labels[crate::names::labels::SERVICE];
        seen.push(service.clone());
        let image = capture
            .images
            .iter()
            .find(|i| i.id == inspect.image)
            .cloned()
            .map(crate::keys::image_defaults)
            .expect("the container's image in the capture");
        let svc = &stack.services[service];
        let mut want = desired_config(stack, service, svc, 1, Some(image.id.clone()));
        want.strip_defaults(&image);

        // Creating: what the request sets, the engine holds.
        // Created fresh: no anonymous volume carried over.
        let (body, extra) = create_body(stack, service, &want, &BTreeMap::new());
        let mut inspect_json = serde_json::to_string(inspect).unwrap();
        for (id, name) in &names {
            inspect_json = inspect_json.replace(id, name);
        }
        let inspect_json: Value = sorted(serde_json::from_str(&inspect_json).unwrap());
        let mut body = sorted(serde_json::to_value(&body).unwrap());
        let mut problems = Vec::new();
        let mut endpoints = body["NetworkingConfig"]["EndpointsConfig"].take();
        if let Value::Object(m) = &mut endpoints {
            for (net, e) in extra {
                m.insert(net, sorted(serde_json::to_value(e).unwrap()));
            }
        }
        let host = body["HostConfig"].take();
        body.as_object_mut().unwrap().remove("NetworkingConfig");
        held("Config", &body, &inspect_json["Config"], &mut problems);
        held(
            "HostConfig",
            &host,
            &inspect_json["HostConfig"],
            &mut problems,
        );
        held(
            "EndpointsConfig",
            &endpoints,
            &inspect_json["NetworkSettings"]["Networks"],
            &mut problems,
        );
        assert!(
            problems.is_empty(),
            "{group}/{service}: the engine does not hold the create request:\n{}",
            problems.join("\n")
        );

        // Reading back: normalized, the live config is the desired one.
        let mut live = crate::live::normalize(inspect, &image).config;
        crate::keys::namespaces::refs_to_names(&mut live, &names);
        live.align_to(&want);
        assert_eq!(
            compare(&live.fields(), &want.fields()),
            vec![],
            "{group}/{service}: read back differs from desired"
        );
        // Equal field lines are an equal config: what lets the plan skip the
        // field lines of an in-sync container. (The fixtures were created by
        // docker compose: its own labels are not plimsoll's, and have no lines.)
        live.labels.clone_from(&want.labels);
        let (a, b) = (format!("{live:#?}"), format!("{want:#?}"));
        let first = a.lines().zip(b.lines()).find(|(x, y)| x != y);
        assert!(
            first.is_none(),
            "{group}/{service}: equal fields but not an equal config: live {first:?}"
        );
    }
    seen.sort();
    let mut all: Vec<String> = stack.services.keys().cloned().collect();
    all.sort();
    assert_eq!(seen, all, "{group}: a service without a captured container");
}

macro_rules! groups {
    ($($group:ident),* $(,)?) => {
        $(
            #[test]
            fn $group() {
                check(stringify!($group));
            }
        )*
    };
}

groups!(
    basics, lifecycle, logging, namespaces, resources, devices, networking, security, mounts,
    health
);
