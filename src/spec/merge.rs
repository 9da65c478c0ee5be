//! Merging Compose files on the positioned node tree, by Compose's rules.
//!
//! A port of compose-go's `override.Merge` and `override.EnforceUnicity`
//! (`override/merge.go`, `override/uncity.go`), the rules `docker compose`
//! uses to merge `compose.override.yaml` (and every further `-f` file) onto
//! the Compose file:
//!
//! - mappings merge key by key, recursively; a key only in the override is
//!   added; an `x-` key is replaced whole;
//! - scalars are replaced; `null` in the override keeps the base value;
//! - sequences are appended, then entries with the same identity are folded
//!   into one (the later wins, in the place of the first): `ports` by
//!   `host_ip:published:target/protocol` of their long form (a short port is
//!   read as its long form, so `80:80` and `80:80/tcp` are one), `volumes` and
//!   `devices` by target, `secrets` and `configs` by target (default
//!   `/run/secrets/<source>`, `/<source>`), `environment`, `labels`,
//!   `annotations`, `sysctls`, `dns*`, `cap_add`, `cap_drop`, `links`,
//!   `profiles`, `tmpfs`, network `aliases` by their text up to `=`,
//!   `env_file` by path, `expose` by value;
//! - `environment`, `labels`, `annotations`, `sysctls`, `tmpfs`, `dns*`,
//!   `env_file`, `build.args`, `build.labels`, `deploy.labels` and network and
//!   volume `labels` become lists (`KEY=value`, a mapping sorted by key) and
//!   are appended, so both syntaxes mix and a key set twice keeps the later;
//! - `command`, `entrypoint`, `healthcheck.test` and each `ulimits` entry are
//!   replaced whole; `build` as a string is `{context: …}`; `depends_on` and
//!   service `networks` as lists become mappings; `extra_hosts` are appended
//!   without duplicates; `logging` merges only when both name the same driver
//!   (or one names none), else the override's replaces it.
//!
//! The `!reset` tag drops the base's value (and its own); `!override`
//! replaces the base's value instead of merging with it.
//!
//! Every node keeps its mark, and [`set_file`] stamps each file's marks with
//! its index, so an error after merging still names the file and line where
//! the offending value was written.

use std::collections::HashMap;
use std::path::PathBuf;

use super::diag::{Diag, Mark};
use super::interpolate::interpolate;
use super::yaml::{self, Node, Tag, Value};

/// Stamps every mark of a tree with the index of the file it was read from.
pub fn set_file(node: &mut Node, file: u32) {
    node.mark.file = file;
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| set_file(n, file)),
        Value::Map(entries) => {
            for (k, v) in entries {
                set_file(k, file);
                set_file(v, file);
            }
        }
        _ => {}
    }
}

/// Parses each override file (stamping its marks with its index, from 1),
/// applies its `extends` and merges it onto `root`, in order. `vars` interpolates the values that
/// identify sequence entries (a volume's target), as Compose merges
/// interpolated files. `None` when an override file cannot be read as one.
pub fn overlay(
    mut root: Node,
    overrides: &[(PathBuf, String)],
    vars: &dyn Fn(&str) -> Option<String>,
    inc: &mut super::include::Includes<'_>,
    dir: &std::path::Path,
) -> Option<Node> {
    for (i, (path, text)) in overrides.iter().enumerate() {
        let mut over = match yaml::parse(text, path) {
            Ok(n) => n,
            Err(d) => {
                inc.diags.push(d);
                return None;
            }
        };
        if !matches!(over.value, Value::Map(_) | Value::Null) {
            inc.diags.push(
                Diag::error(
                    path,
                    over.mark,
                    "",
                    format!("expected a mapping, found {}", over.type_name()),
                )
                .hint("an override file is a Compose file: a mapping with `services:` and the other top-level keys"),
            );
            return None;
        }
        set_file(&mut over, u32::try_from(i + 1).unwrap_or(u32::MAX));
        // Each file's `extends` is applied on its own, before the files merge.
        let file = dir.join(path.file_name().unwrap_or_default());
        if !super::extends::apply(inc, &mut over, &file, dir, vars) {
            return None;
        }
        root = merge(root, over, vars);
    }
    strip_tags(&mut root);
    Some(root)
}

/// Applies what is left of the merge tags once no file is merged onto a
/// tree any more: a `!reset` value is dropped, `!override` is a plain value.
pub fn strip_tags(node: &mut Node) {
    node.tag = Tag::None;
    match &mut node.value {
        Value::Seq(items) => {
            items.retain(|n| n.tag != Tag::Reset);
            items.iter_mut().for_each(strip_tags);
        }
        Value::Map(entries) => {
            entries.retain(|(_, v)| v.tag != Tag::Reset);
            entries.iter_mut().for_each(|(_, v)| strip_tags(v));
        }
        _ => {}
    }
}

/// Merges `over` onto `base` (Compose's `override.Merge`, then `EnforceUnicity`).
pub fn merge(base: Node, over: Node, vars: &dyn Fn(&str) -> Option<String>) -> Node {
    let mut path = Vec::new();
    let mut merged = merge_at(base, over, &mut path);
    unique(&mut merged, &mut path, vars);
    merged
}

/// Whether a key path matches a pattern of dotted keys where `*` is any one key.
fn matches(path: &[String], pattern: &str) -> bool {
    let parts: Vec<&str> = pattern.split('.').collect();
    parts.len() == path.len() && parts.iter().zip(path).all(|(p, k)| *p == "*" || p == k)
}

const TO_SEQUENCE: &[&str] = &[
    "networks.*.labels",
    "volumes.*.labels",
    "services.*.annotations",
    "services.*.build.args",
    "services.*.build.additional_contexts",
    "services.*.build.labels",
    "services.*.deploy.labels",
    "services.*.dns",
    "services.*.dns_opt",
    "services.*.dns_search",
    "services.*.env_file",
    "services.*.label_file",
    "services.*.environment",
    "services.*.labels",
    "services.*.sysctls",
    "services.*.tmpfs",
];

const REPLACED: &[&str] = &[
    "services.*.command",
    "services.*.entrypoint",
    "services.*.healthcheck.test",
    "services.*.ulimits.*",
];

fn merge_at(base: Node, over: Node, path: &mut Vec<String>) -> Node {
    let m = |p: &str| matches(path, p);
    if REPLACED.iter().any(|p| m(p)) {
        return over;
    }
    if TO_SEQUENCE.iter().any(|p| m(p)) {
        let mark = base.mark;
        let mut items = to_sequence(base);
        items.extend(to_sequence(over));
        return Node::new(Value::Seq(items), mark);
    }
    if m("services.*.extra_hosts") || m("services.*.build.extra_hosts") {
        let mark = base.mark;
        let mut items = to_sequence(base);
        for item in to_sequence(over) {
            if !items.iter().any(|i| i.value == item.value) {
                items.push(item);
            }
        }
        return Node::new(Value::Seq(items), mark);
    }
    if m("services.*.build") {
        return merge_maps(context_map(base), context_map(over), path);
    }
    if m("services.*.depends_on") {
        let defaults = |mark: Mark| {
            Node::new(
                Value::Map(vec![
                    (
                        Node::new(Value::Str("condition".into()), mark),
                        Node::new(Value::Str("service_started".into()), mark),
                    ),
                    (
                        Node::new(Value::Str("required".into()), mark),
                        Node::new(Value::Bool(true), mark),
                    ),
                ]),
                mark,
            )
        };
        return merge_maps(
            to_mapping(base, &defaults),
            to_mapping(over, &defaults),
            path,
        );
    }
    if m("services.*.networks") {
        let null = |mark: Mark| Node::new(Value::Null, mark);
        return merge_maps(to_mapping(base, &null), to_mapping(over, &null), path);
    }
    if m("services.*.logging")
        && let (Some(_), Some(_)) = (base.as_map(), over.as_map())
    {
        let (b, o) = (base.get("driver").cloned(), over.get("driver").cloned());
        let same = match (&b, &o) {
            (Some(b), Some(o)) => b.value == o.value,
            _ => true,
        };
        return if same {
            merge_maps(base, over, path)
        } else {
            over
        };
    }
    if m("networks.*.ipam.config")
        && let (Value::Seq(_), Value::Seq(_)) = (&base.value, &over.value)
    {
        // By subnet: an override entry replaces the base entry of its subnet.
        let (Value::Seq(mut items), Value::Seq(more)) = (base.value, over.value) else {
            unreachable!()
        };
        for item in more {
            let subnet = item.get("subnet").map(|s| s.value.clone());
            match items.iter().position(|i| {
                subnet.is_some() && i.get("subnet").map(|s| &s.value) == subnet.as_ref()
            }) {
                Some(at) => items[at] = item,
                None => items.push(item),
            }
        }
        return Node::new(Value::Seq(items), base.mark);
    }
    if over.is_null() {
        return base;
    }
    match (&base.value, &over.value) {
        (Value::Map(_), Value::Map(_)) => merge_maps(base, over, path),
        (Value::Seq(_), Value::Seq(_)) => {
            let (Value::Seq(mut items), Value::Seq(more)) = (base.value, over.value) else {
                unreachable!()
            };
            items.extend(more);
            Node::new(Value::Seq(items), base.mark)
        }
        _ => over,
    }
}

/// Merges two mappings key by key (compose-go's `mergeMappings`); a value that
/// is not a mapping on either side is replaced by the override's.
fn merge_maps(base: Node, over: Node, path: &mut Vec<String>) -> Node {
    let mark = base.mark;
    let (Value::Map(mut entries), Value::Map(more)) = (base.value, over.value) else {
        return Node::new(Value::Null, mark);
    };
    for (k, mut v) in more {
        let name = k.scalar_string().unwrap_or_default();
        let at = entries
            .iter()
            .position(|(ek, _)| ek.scalar_string().as_deref() == Some(name.as_str()));
        match v.tag {
            // `!reset`: neither the base's value nor this one.
            Tag::Reset => {
                if let Some(i) = at {
                    entries.remove(i);
                }
                continue;
            }
            // `!override`: this value, not merged with the base's.
            Tag::Override => {
                v.tag = Tag::None;
                match at {
                    Some(i) => entries[i] = (k, v),
                    None => entries.push((k, v)),
                }
                continue;
            }
            Tag::None => {}
        }
        match at {
            Some(i) if !name.starts_with("x-") => {
                let (ek, ev) = std::mem::replace(
                    &mut entries[i],
                    (Node::new(Value::Null, mark), Node::new(Value::Null, mark)),
                );
                path.push(name);
                let merged = merge_at(ev, v, path);
                path.pop();
                entries[i] = (ek, merged);
            }
            Some(i) => entries[i] = (k, v),
            None => entries.push((k, v)),
        }
    }
    Node::new(Value::Map(entries), mark)
}

/// `build: ./dir` as `{context: ./dir}`.
fn context_map(node: Node) -> Node {
    match node.value {
        Value::Map(_) => node,
        Value::Null => Node::new(Value::Map(Vec::new()), node.mark),
        _ => {
            let mark = node.mark;
            Node::new(
                Value::Map(vec![(Node::new(Value::Str("context".into()), mark), node)]),
                mark,
            )
        }
    }
}

/// A list of names as a mapping of each name to `value(mark)`; a mapping as it is.
fn to_mapping(node: Node, value: &dyn Fn(Mark) -> Node) -> Node {
    match node.value {
        Value::Seq(items) => Node::new(
            Value::Map(
                items
                    .into_iter()
                    .map(|item| {
                        let mark = item.mark;
                        (item, value(mark))
                    })
                    .collect(),
            ),
            node.mark,
        ),
        Value::Map(_) => node,
        _ => Node::new(Value::Map(Vec::new()), node.mark),
    }
}

/// A mapping as `KEY=value` strings sorted by key (`KEY` alone for null); a
/// string as a one-item list; a list as it is.
fn to_sequence(node: Node) -> Vec<Node> {
    match node.value {
        Value::Seq(items) => items,
        Value::Map(entries) => {
            let mut items: Vec<Node> = entries
                .into_iter()
                .map(|(k, v)| {
                    let key = k.scalar_string().unwrap_or_default();
                    let text = match &v.value {
                        Value::Null => key,
                        _ => format!("{key}={}", v.scalar_string().unwrap_or_default()),
                    };
                    Node::new(Value::Str(text), v.mark)
                })
                .collect();
            items.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            items
        }
        Value::Null => Vec::new(),
        _ => vec![node],
    }
}

/// How the entries of a sequence are identified, for folding duplicates.
#[derive(Clone, Copy)]
enum Index {
    KeyValue,
    Volume,
    Port,
    Mount(&'static str),
    EnvFile,
    Expose,
}

const UNIQUE: &[(&str, Index)] = &[
    ("networks.*.labels", Index::KeyValue),
    ("networks.*.ipam.options", Index::KeyValue),
    ("services.*.annotations", Index::KeyValue),
    ("services.*.build.args", Index::KeyValue),
    ("services.*.build.additional_contexts", Index::KeyValue),
    ("services.*.build.platform", Index::KeyValue),
    ("services.*.build.tags", Index::KeyValue),
    ("services.*.build.labels", Index::KeyValue),
    ("services.*.cap_add", Index::KeyValue),
    ("services.*.cap_drop", Index::KeyValue),
    ("services.*.devices", Index::Volume),
    ("services.*.configs", Index::Mount("")),
    ("services.*.deploy.labels", Index::KeyValue),
    ("services.*.dns", Index::KeyValue),
    ("services.*.dns_opt", Index::KeyValue),
    ("services.*.dns_search", Index::KeyValue),
    ("services.*.environment", Index::KeyValue),
    ("services.*.env_file", Index::EnvFile),
    ("services.*.expose", Index::Expose),
    ("services.*.labels", Index::KeyValue),
    ("services.*.links", Index::KeyValue),
    ("services.*.networks.*.aliases", Index::KeyValue),
    ("services.*.networks.*.link_local_ips", Index::KeyValue),
    ("services.*.ports", Index::Port),
    ("services.*.profiles", Index::KeyValue),
    ("services.*.secrets", Index::Mount("/run/secrets")),
    ("services.*.sysctls", Index::KeyValue),
    ("services.*.tmpfs", Index::KeyValue),
    ("services.*.volumes", Index::Volume),
];

/// Folds entries of the same identity in the sequences of [`UNIQUE`]: the
/// later entry takes the place of the first (compose-go's `EnforceUnicity`).
fn unique(node: &mut Node, path: &mut Vec<String>, vars: &dyn Fn(&str) -> Option<String>) {
    match &mut node.value {
        Value::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                path.push(k.scalar_string().unwrap_or_default());
                unique(v, path, vars);
                path.pop();
            }
        }
        Value::Seq(items) => {
            let Some((_, index)) = UNIQUE.iter().find(|(p, _)| matches(path, p)) else {
                return;
            };
            let mut out: Vec<Node> = Vec::with_capacity(items.len());
            let mut seen: HashMap<String, usize> = HashMap::new();
            for item in std::mem::take(items) {
                match key_of(&item, *index, vars) {
                    Some(key) => match seen.get(&key) {
                        Some(&at) => out[at] = item,
                        None => {
                            seen.insert(key, out.len());
                            out.push(item);
                        }
                    },
                    None => out.push(item),
                }
            }
            *items = out;
        }
        _ => {}
    }
}

/// The identity of a sequence entry; `None` when it has none (left as it is,
/// for the converter to report).
fn key_of(item: &Node, index: Index, vars: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let text = |n: &Node| -> Option<String> {
        let s = n.scalar_string()?;
        Some(interpolate(&s, vars).unwrap_or(s))
    };
    match index {
        Index::KeyValue => {
            let s = text(item)?;
            Some(s.split_once('=').map_or(s.clone(), |(k, _)| k.to_string()))
        }
        Index::Expose => text(item),
        Index::Volume => match &item.value {
            Value::Map(_) => item.get("target").and_then(text),
            _ => {
                let s = text(item)?;
                Some(
                    super::compose::parse_short_volume(&s)
                        .map(|m| m.target)
                        .unwrap_or(s),
                )
            }
        },
        Index::Port => match &item.value {
            Value::Map(_) => {
                let target = item.get("target").and_then(text)?;
                let published = item.get("published").and_then(text);
                let host = item.get("host_ip").and_then(text);
                let protocol = item.get("protocol").and_then(text);
                Some(port_key(&target, published, host, protocol))
            }
            // Compose folds the long form of a short port (`80:80` is
            // `80:80/tcp`); a range stands for all of its ports.
            _ => {
                let s = text(item)?;
                match super::compose::parse_short_port(&s) {
                    Ok(ports) => Some(
                        ports
                            .into_iter()
                            .map(|p| {
                                port_key(
                                    &p.target.to_string(),
                                    p.published,
                                    p.host_ip,
                                    Some(p.protocol),
                                )
                            })
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                    Err(_) => Some(s),
                }
            }
        },
        Index::Mount(default) => match &item.value {
            Value::Map(_) => item
                .get("target")
                .and_then(text)
                .or_else(|| Some(format!("{default}/{}", item.get("source").and_then(text)?))),
            _ => Some(format!("{default}/{}", text(item)?)),
        },
        Index::EnvFile => match &item.value {
            Value::Map(_) => item.get("path").and_then(text),
            _ => text(item),
        },
    }
}

/// compose-go's identity of a port: `host_ip:published:target/protocol`,
/// or the target alone when nothing is published.
fn port_key(
    target: &str,
    published: Option<String>,
    host: Option<String>,
    protocol: Option<String>,
) -> String {
    match published {
        None => target.to_string(),
        Some(published) => format!(
            "{}:{published}:{target}/{}",
            host.unwrap_or_else(|| "0.0.0.0".into()),
            protocol.unwrap_or_else(|| "tcp".into())
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(src: &str) -> Node {
        yaml::parse(src, Path::new("t.yaml")).unwrap()
    }

    /// Merges `over` onto `base` and compares with `want` (all YAML), marks aside.
    fn check(base: &str, over: &str, want: &str) {
        let vars = |k: &str| (k == "DATA").then(|| "/data".to_string());
        let got = merge(parse(base), parse(over), &vars);
        assert_eq!(
            super::super::compose::to_json(&got),
            super::super::compose::to_json(&parse(want)),
            "\nbase: {base}\nover: {over}"
        );
    }

    #[test]
    fn mappings_merge_and_scalars_are_replaced() {
        check(
            "services: {a: {image: x, user: u}}\nname: p",
            "services: {a: {image: y}, b: {image: z}}",
            "services: {a: {image: y, user: u}, b: {image: z}}\nname: p",
        );
        // null keeps the base value; an x- key is replaced whole.
        check(
            "x-a: {k: 1, l: 2}\nservices: {a: {image: x}}",
            "x-a: {k: 3}\nservices: {a: {image: null}}",
            "x-a: {k: 3}\nservices: {a: {image: x}}",
        );
    }

    #[test]
    fn command_entrypoint_and_healthcheck_test_are_replaced() {
        check(
            "services: {a: {command: [a, b], entrypoint: [sh], healthcheck: {test: [CMD, a], interval: 5s}}}",
            "services: {a: {command: [c], entrypoint: [bash], healthcheck: {test: [CMD, b]}}}",
            "services: {a: {command: [c], entrypoint: [bash], healthcheck: {test: [CMD, b], interval: 5s}}}",
        );
    }

    #[test]
    fn environment_and_labels_merge_by_key_in_any_syntax() {
        check(
            "services: {a: {environment: {A: 1, B: 2}, labels: [x=1, y=2]}}",
            "services: {a: {environment: [B=3, C], labels: {y: 3, z: null}}}",
            "services: {a: {environment: [A=1, B=3, C], labels: [x=1, y=3, z]}}",
        );
    }

    #[test]
    fn sequences_append_and_fold_by_identity() {
        check(
            "services: {a: {ports: ['80:80', {target: 443, published: 443}], expose: [1, '2'], dns: [1.1.1.1], cap_add: [A]}}",
            "services: {a: {ports: ['80:80', '81:81', {target: 443, published: 443, host_ip: 0.0.0.0, protocol: tcp}], expose: ['1', 3], dns: [1.1.1.1, 8.8.8.8], cap_add: [A, B]}}",
            "services: {a: {ports: ['80:80', {target: 443, published: 443, host_ip: 0.0.0.0, protocol: tcp}, '81:81'], expose: ['1', '2', 3], dns: [1.1.1.1, 8.8.8.8], cap_add: [A, B]}}",
        );
        // A sequence not listed for unicity just appends.
        check(
            "services: {a: {security_opt: [x]}}",
            "services: {a: {security_opt: [x]}}",
            "services: {a: {security_opt: [x, x]}}",
        );
    }

    #[test]
    fn volumes_and_secrets_merge_by_target() {
        // `${DATA}:/y` is identified by its interpolated target, so `/y:/y` replaces it.
        check(
            "services: {a: {volumes: ['d:/data', './x:/x:ro', '${DATA}:/y'], secrets: [s, {source: t, target: /t}]}}",
            "services: {a: {volumes: [{type: volume, source: e, target: /data}, '/y:/y'], secrets: [{source: s, target: /run/secrets/s, mode: 0400}, u]}}",
            "services: {a: {volumes: [{type: volume, source: e, target: /data}, './x:/x:ro', '/y:/y'], secrets: [{source: s, target: /run/secrets/s, mode: 0400}, {source: t, target: /t}, u]}}",
        );
    }

    #[test]
    fn build_depends_on_networks_logging_ulimits() {
        check(
            "services: {a: {build: ., depends_on: [db], networks: [front], logging: {driver: local, options: {a: '1'}}, ulimits: {nofile: {soft: 1, hard: 2}}}}",
            "services: {a: {build: {dockerfile: D}, depends_on: {db: {condition: service_healthy}}, networks: {back: {aliases: [x]}}, logging: {options: {b: '2'}}, ulimits: {nofile: {soft: 3}}}}",
            "services: {a: {build: {context: ., dockerfile: D}, depends_on: {db: {condition: service_healthy, required: true}}, networks: {front: null, back: {aliases: [x]}}, logging: {driver: local, options: {a: '1', b: '2'}}, ulimits: {nofile: {soft: 3}}}}",
        );
        // Another logging driver replaces the whole logging section.
        check(
            "services: {a: {logging: {driver: local, options: {a: '1'}}}}",
            "services: {a: {logging: {driver: json-file}}}",
            "services: {a: {logging: {driver: json-file}}}",
        );
    }

    #[test]
    fn extra_hosts_append_without_duplicates() {
        check(
            "services: {a: {extra_hosts: ['h=1.1.1.1']}}",
            "services: {a: {extra_hosts: ['h=1.1.1.1', 'i=2.2.2.2']}}",
            "services: {a: {extra_hosts: ['h=1.1.1.1', 'i=2.2.2.2']}}",
        );
    }

    #[test]
    fn reset_and_override_tags() {
        check(
            "services: {a: {image: x, ports: ['80:80'], environment: {A: '1'}, labels: {l: '1'}}}",
            "services: {a: {ports: !reset [], environment: !override {B: '2'}, labels: !reset null, user: !override u}}",
            "services: {a: {image: x, environment: {B: '2'}, user: u}}",
        );
        let mut n = parse("services: {a: {image: x, ports: !reset ['80:80'], user: !override u}}");
        strip_tags(&mut n);
        assert_eq!(
            super::super::compose::to_json(&n),
            super::super::compose::to_json(&parse("services: {a: {image: x, user: u}}"))
        );
    }

    #[test]
    fn marks_name_the_file_each_value_came_from() {
        let mut over = parse("services:\n  a:\n    user: root\n");
        set_file(&mut over, 1);
        let got = merge(parse("services:\n  a:\n    image: x\n"), over, &|_| None);
        assert_eq!(
            got.lookup(&["services", "a", "image"]).unwrap().mark.file,
            0
        );
        let user = got.lookup(&["services", "a", "user"]).unwrap().mark;
        assert_eq!((user.file, user.line), (1, 3));
    }
}
