//! `extends:` of a service, by Compose's rules (compose-go `loader/extends.go`).
//!
//! `extends: base` (or `{service: base}`) takes the service `base` of the same
//! file; `{file: other.yaml, service: base}` reads `other.yaml` (relative to
//! the extending file's directory; its relative paths resolve against its own
//! directory). The base, its own `extends` applied first, is the start; the
//! extending service is merged onto it by the rules of override files
//! ([`super::merge`]). A cycle is an error naming the chain. Applied to each
//! file on its own, before override files and includes are merged, as Compose does.

use std::path::{Path, PathBuf};

use super::diag::{Diag, Mark};
use super::include::{Includes, clean, resolve_paths};
use super::interpolate::interpolate;
use super::merge;
use super::yaml::{self, Node, Value};

type Vars<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Applies every service's `extends` in `root`, a file read from `file`
/// (absolute) with project directory `dir`. `false` when something failed.
pub fn apply(inc: &mut Includes<'_>, root: &mut Node, file: &Path, dir: &Path, vars: Vars) -> bool {
    let Some(services) = services_of(root) else {
        return true;
    };
    let names: Vec<String> = services
        .iter()
        .map(|(k, _)| k.scalar_string().unwrap_or_default())
        .collect();
    let mut ok = true;
    for name in names {
        ok &= resolve(inc, services, &name, file, dir, vars, &mut Vec::new()).is_some();
    }
    ok
}

fn services_of(root: &mut Node) -> Option<&mut Vec<(Node, Node)>> {
    let Value::Map(entries) = &mut root.value else {
        return None;
    };
    let (_, services) = entries
        .iter_mut()
        .find(|(k, _)| k.as_str() == Some("services"))?;
    match &mut services.value {
        Value::Map(m) => Some(m),
        _ => None,
    }
}

fn err(inc: &mut Includes<'_>, mark: Mark, key: String, msg: String, hint: &str) -> Option<Node> {
    let file = inc
        .sources
        .get(mark.file as usize)
        .cloned()
        .unwrap_or_default();
    inc.diags
        .push(Diag::error(&file, mark, key, msg).hint(hint.to_string()));
    None
}

/// Where the service `name` stands in `services`.
fn position(services: &[(Node, Node)], name: &str) -> Option<usize> {
    services
        .iter()
        .position(|(k, _)| k.scalar_string().as_deref() == Some(name))
}

/// The service `name` of `services` with its `extends` applied (and stored back).
fn resolve(
    inc: &mut Includes<'_>,
    services: &mut [(Node, Node)],
    name: &str,
    file: &Path,
    dir: &Path,
    vars: Vars,
    chain: &mut Vec<(PathBuf, String)>,
) -> Option<Node> {
    let at = position(services, name)?;
    let svc = services[at].1.clone();
    let Some(extends) = svc.get("extends").cloned() else {
        return Some(svc);
    };
    let key = format!("services.{name}.extends");
    let text = |n: &Node| -> Option<String> {
        let s = n.scalar_string()?;
        Some(interpolate(&s, vars).unwrap_or(s))
    };
    let (reference, other) = match &extends.value {
        Value::Map(_) => (
            extends.get("service").and_then(text),
            extends.get("file").and_then(text),
        ),
        Value::Str(_) => (text(&extends), None),
        _ => (None, None),
    };
    let fail = |inc: &mut Includes<'_>, msg: String, hint: &str| {
        err(inc, extends.mark, key.clone(), msg, hint)
    };
    let Some(reference) = reference else {
        return fail(
            inc,
            "`extends` needs the service to extend".into(),
            "write `extends: base` or `extends: {file: common.yaml, service: base}`",
        );
    };
    if chain.iter().any(|(f, s)| f == file && s == name) {
        let mut names: Vec<String> = chain.iter().map(|(_, s)| s.clone()).collect();
        names.push(name.to_string());
        return fail(
            inc,
            format!("extends cycle: {}", names.join(" extends ")),
            "remove one of the `extends` so that no service extends itself",
        );
    }
    chain.push((file.to_path_buf(), name.to_string()));
    let base = 'base: {
        let Some(other) = other else {
            if position(services, &reference).is_none() {
                break 'base fail(
                    inc,
                    format!(
                        "cannot extend service `{name}`: no service `{reference}` in this file"
                    ),
                    "name a service of this file, or add `file:` to extend a service of another file",
                );
            }
            break 'base resolve(inc, services, &reference, file, dir, vars, chain);
        };
        let path = clean(&file.parent().unwrap_or(dir).join(&other));
        let mut tree = read(inc, &path, extends.mark, &key)?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        resolve_paths(&mut tree, &base_dir);
        let Some(theirs) = services_of(&mut tree) else {
            break 'base fail(
                inc,
                format!(
                    "cannot extend service `{name}`: {} has no services",
                    path.display()
                ),
                "name a file with a `services:` section",
            );
        };
        if position(theirs, &reference).is_none() {
            break 'base fail(
                inc,
                format!(
                    "cannot extend service `{name}`: no service `{reference}` in {}",
                    path.display()
                ),
                "fix the service name or the file",
            );
        }
        resolve(inc, theirs, &reference, &path, &base_dir, vars, chain)
    };
    chain.pop();
    let base = base?;
    let mut own = svc;
    if let Value::Map(m) = &mut own.value {
        m.retain(|(k, _)| k.as_str() != Some("extends"));
    }
    let merged = extend(base, own, vars);
    services[at].1 = merged.clone();
    Some(merged)
}

/// Merges a service onto its base (compose-go's `override.ExtendService`).
fn extend(base: Node, own: Node, vars: Vars) -> Node {
    let wrap = |n: Node| {
        let mark = n.mark;
        let x = Node::new(
            Value::Map(vec![(Node::new(Value::Str("x".into()), mark), n)]),
            mark,
        );
        Node::new(
            Value::Map(vec![(Node::new(Value::Str("services".into()), mark), x)]),
            mark,
        )
    };
    let mark = own.mark;
    let mut merged = merge::merge(wrap(base), wrap(own), vars);
    let mut svc = services_of(&mut merged)
        .and_then(|s| s.pop())
        .map(|(_, v)| v)
        .unwrap_or_else(|| Node::new(Value::Null, mark));
    // The service is reported where the extending service stands.
    svc.mark = mark;
    if let Value::Map(m) = &mut svc.value {
        m.retain(|(k, _)| k.as_str() != Some("extends"));
    }
    svc
}

fn read(inc: &mut Includes<'_>, path: &Path, mark: Mark, key: &str) -> Option<Node> {
    let bytes = match inc.files.read(path) {
        Ok(Some(b)) => b,
        Ok(None) => {
            return err(
                inc,
                mark,
                key.to_string(),
                format!("extended file {} not found", path.display()),
                "fix `file:` (relative to the extending file's directory)",
            );
        }
        Err(e) => {
            return err(
                inc,
                mark,
                key.to_string(),
                format!("cannot read {}: {e}", path.display()),
                crate::source::read_hint(&e, "check that the file exists and is readable"),
            );
        }
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return err(
            inc,
            mark,
            key.to_string(),
            format!("{} is not valid UTF-8 text", path.display()),
            "save the file as UTF-8",
        );
    };
    match yaml::parse(&text, path) {
        Ok(mut n) => {
            inc.sources.push(path.to_path_buf());
            merge::set_file(
                &mut n,
                u32::try_from(inc.sources.len() - 1).unwrap_or(u32::MAX),
            );
            merge::strip_tags(&mut n);
            Some(n)
        }
        Err(d) => {
            inc.diags.push(d);
            None
        }
    }
}
