//! Readers shared by every key group: a node read as a string, a boolean, a
//! number, a size, a duration, a list or a mapping, with a type error
//! recorded when it is not one; the entries of a mapping with unknown and
//! unsupported keys reported; host paths resolved against the stack
//! directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Cx, Fields, idx, join};
use crate::spec::model::*;
use crate::spec::yaml::{Node, Value};

impl Cx<'_, '_> {
    pub(super) fn string(&mut self, node: &Node, key: &str) -> Option<String> {
        match &node.value {
            Value::Seq(_) | Value::Map(_) | Value::Null => {
                self.type_err(node, key, "a string");
                None
            }
            _ => node.scalar_string(),
        }
    }

    pub(super) fn opt_string(&mut self, node: &Node, key: &str) -> Option<String> {
        if node.is_null() {
            None
        } else {
            self.string(node, key)
        }
    }

    pub(super) fn boolean(&mut self, node: &Node, key: &str) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            Value::Str(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "y" => Some(true),
                "false" | "no" | "off" | "n" => Some(false),
                _ => {
                    self.type_err(node, key, "true or false");
                    None
                }
            },
            _ => {
                self.type_err(node, key, "true or false");
                None
            }
        }
    }

    pub(super) fn int(&mut self, node: &Node, key: &str) -> Option<i64> {
        match &node.value {
            Value::Int(i) => Some(*i),
            Value::Str(s) if s.trim().parse::<i64>().is_ok() => s.trim().parse().ok(),
            _ => {
                self.type_err(node, key, "a whole number");
                None
            }
        }
    }

    /// A whole number; Compose leaves 0 out (Go's `omitempty`), and so does plimsoll.
    pub(super) fn nonzero_int(&mut self, node: &Node, key: &str) -> Option<i64> {
        self.int(node, key).filter(|v| *v != 0)
    }

    pub(super) fn int_in(&mut self, node: &Node, key: &str, lo: i64, hi: i64) -> Option<i64> {
        let v = self.int(node, key)?;
        if v < lo || v > hi {
            self.err(node.mark, key, format!("`{v}` is out of range"))
                .hint(format!("write a whole number from {lo} to {hi}"));
            return None;
        }
        Some(v)
    }

    pub(super) fn duration(&mut self, node: &Node, key: &str) -> Option<GoDuration> {
        let s = self.string(node, key)?;
        let d = GoDuration::parse(&s);
        if d.is_none() {
            self.err(node.mark, key, format!("invalid duration `{s}`"))
                .hint("write a number with a unit, like 30s, 1m30s or 500ms");
        }
        d
    }

    pub(super) fn bytes(&mut self, node: &Node, key: &str) -> Option<Bytes> {
        if let Value::Int(i) = node.value
            && i >= 0
        {
            return Some(Bytes(i as u64));
        }
        let s = self.string(node, key)?;
        let b = Bytes::parse(&s);
        if b.is_none() {
            self.err(node.mark, key, format!("invalid size `{s}`"))
                .hint("write a number of bytes with an optional unit: 512m, 1g, 256MiB");
        }
        b
    }

    /// The items of a list; nothing (and an error unless null) for anything else.
    pub(super) fn seq<'n>(&mut self, node: &'n Node, path: &str, expected: &str) -> &'n [Node] {
        match &node.value {
            Value::Seq(items) => items,
            Value::Null => &[],
            _ => {
                self.type_err(node, path, expected);
                &[]
            }
        }
    }

    pub(super) fn string_list(&mut self, node: &Node, key: &str) -> Vec<String> {
        match &node.value {
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, n)| self.string(n, &idx(key, i)))
                .collect(),
            Value::Null => Vec::new(),
            _ => {
                self.type_err(node, key, "a list of strings");
                Vec::new()
            }
        }
    }

    pub(super) fn string_or_list(&mut self, node: &Node, key: &str) -> Vec<String> {
        match &node.value {
            Value::Seq(_) => self.string_list(node, key),
            _ => self.string(node, key).into_iter().collect(),
        }
    }

    /// `KEY=value` list or mapping. A list entry without `=` and a mapping
    /// entry with a null value map to `None`.
    pub(super) fn list_or_dict(
        &mut self,
        node: &Node,
        key: &str,
        allow_none: bool,
    ) -> BTreeMap<String, Option<String>> {
        let mut out = BTreeMap::new();
        match &node.value {
            Value::Map(entries) => {
                for (k, v) in entries {
                    let name = k.scalar_string().unwrap_or_default();
                    let value = match &v.value {
                        Value::Null if allow_none => None,
                        Value::Null => Some(String::new()),
                        _ => self.string(v, &join(key, &name)),
                    };
                    out.insert(name, value);
                }
            }
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let Some(s) = self.string(item, &idx(key, i)) else {
                        continue;
                    };
                    match s.split_once('=') {
                        Some((k, v)) => out.insert(k.to_string(), Some(v.to_string())),
                        None if allow_none => out.insert(s, None),
                        None => out.insert(s, Some(String::new())),
                    };
                }
            }
            Value::Null => {}
            _ => self.type_err(node, key, "a mapping or a list of KEY=value"),
        }
        out
    }

    pub(super) fn string_map(&mut self, node: &Node, key: &str) -> BTreeMap<String, String> {
        self.list_or_dict(node, key, false)
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect()
    }

    /// The entries of a mapping, with unknown and unsupported keys reported.
    /// Returns the implemented entries and the `x-` extensions.
    pub(super) fn fields<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        known: &[&str],
        unsupported: &[(&str, &str)],
    ) -> Fields<'n> {
        let mut out = Vec::new();
        let mut ext = BTreeMap::new();
        let Some(entries) = node.as_map() else {
            if !node.is_null() {
                self.type_err(node, path, "a mapping");
            }
            return (out, ext);
        };
        for (k, v) in entries {
            let Some(name) = k.as_str() else {
                self.err(
                    k.mark,
                    path,
                    format!(
                        "`{}` is not a valid key here",
                        k.scalar_string().unwrap_or_default()
                    ),
                )
                .hint("keys are names such as `image`; quote a key that only looks like a number or a boolean");
                continue;
            };
            let key_path = join(path, name);
            if name.starts_with("x-") {
                ext.insert(name.to_string(), to_json(v));
            } else if known.contains(&name) {
                out.push((name, v, k.mark));
            } else if let Some((_, why)) = unsupported.iter().find(|(u, _)| *u == name) {
                self.err(
                    k.mark,
                    &key_path,
                    format!("`{name}` is not supported: {why}"),
                )
                .hint(format!(
                    "remove `{name}` from the file, or run this stack with docker compose"
                ));
            } else {
                let suggestion = known
                    .iter()
                    .map(|c| (strsim::jaro_winkler(name, c), c))
                    .filter(|(score, _)| *score > 0.85)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, c)| *c);
                let d = self.err(k.mark, &key_path, format!("unknown key `{name}`"));
                match suggestion {
                    Some(s) => d.hint(format!("did you mean `{s}`?")),
                    None => d.hint("remove it; extension fields must start with `x-`"),
                }
            }
        }
        (out, ext)
    }

    pub(super) fn entries<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [(Node, Node)]> {
        match &node.value {
            Value::Map(m) => Some(m),
            Value::Null => None,
            _ => {
                self.type_err(node, path, "a mapping");
                None
            }
        }
    }

    /// The items of a list, each read by `long` when it is a mapping and by
    /// `short` from its string otherwise; an item either refuses is left out.
    pub(super) fn long_or_short<T>(
        &mut self,
        node: &Node,
        path: &str,
        expected: &str,
        mut long: impl FnMut(&mut Self, &Node, &str) -> Option<T>,
        mut short: impl FnMut(&mut Self, &Node, &str, &str) -> Option<T>,
    ) -> Vec<T> {
        let items = self.seq(node, path, expected);
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let p = idx(path, i);
            let read = if item.as_map().is_some() {
                long(self, item, &p)
            } else {
                let Some(s) = self.string(item, &p) else {
                    continue;
                };
                short(self, item, &p, &s)
            };
            out.extend(read);
        }
        out
    }

    /// Reports each entry of the list at `node` that `valid` rejects, at the
    /// entry's own line: "invalid WHAT `entry`".
    pub(super) fn check_entries(
        &mut self,
        node: &Node,
        path: &str,
        list: &[String],
        valid: impl Fn(&str) -> bool,
        what: &str,
        hint: &str,
    ) {
        for (i, e) in list.iter().enumerate().filter(|(_, e)| !valid(e)) {
            let mark = node
                .as_seq()
                .and_then(|s| s.get(i))
                .map_or(node.mark, |n| n.mark);
            self.err(mark, &idx(path, i), format!("invalid {what} `{e}`"))
                .hint(hint);
        }
    }

    /// A host path from the file, resolved against the stack directory; `~` is the home directory.
    pub(super) fn host_path(&self, p: &str) -> String {
        let path = if let Some(rest) =
            p.strip_prefix("~/")
                .or(if p == "~" { Some("") } else { None })
        {
            let home = self
                .vars
                .get("HOME")
                .cloned()
                .unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(rest)
        } else {
            self.input.abs_dir.join(p)
        };
        normalize_path(&path).to_string_lossy().into_owned()
    }

    /// A file of the stack as the user names it: under the stack directory as
    /// given (`stacks/shop/db.age`), else as it is.
    pub(super) fn shown(&self, path: &Path) -> String {
        match path.strip_prefix(self.input.abs_dir) {
            Ok(rest) => self.input.dir.join(rest).display().to_string(),
            Err(_) => path.display().to_string(),
        }
    }
}

/// Converts a node to JSON for `x-` fields, which are kept as written.
pub fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &node.value {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::Str(s) => J::String(s.clone()),
        Value::Seq(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| (k.scalar_string().unwrap_or_default(), to_json(v)))
                .collect(),
        ),
    }
}

/// Lexically normalizes a path (`a/./b/../c` -> `a/c`) without touching the file system.
pub(crate) fn normalize_path(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
