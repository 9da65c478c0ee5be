//! YAML to a positioned node tree.
//!
//! Every node keeps the line and column where it starts, through interpolation
//! and normalization, so every later error can name its place. This module owns
//! the YAML rules Compose relies on: anchors and aliases (expansion is bounded
//! by a node budget and a byte budget, so an alias bomb fails in microseconds),
//! `<<` merge keys,
//! duplicate keys (an error), and the core-schema typing of plain scalars that
//! Compose's YAML library (go-yaml v3) uses.
//!
//! Budgets (each an error naming the file, line and key, never an
//! out-of-memory or a stack overflow): a document is at most [`MAX_YAML_BYTES`]
//! long, nests lists and mappings at most [`MAX_DEPTH`] deep, and expands to at
//! most [`NODE_BUDGET`] nodes holding at most [`BYTE_BUDGET`] bytes of scalar
//! text, aliases included.
//!
//! Invariant: no I/O; the input is a `&str` the caller has read.
//!
//! This module holds the tree ([`Node`], [`Value`]) and [`parse`]; `builder`
//! builds the tree from the parser's events (budgets, anchors, merge keys,
//! scalar typing), `de` is the serde `Deserializer` over a tree ([`from_node`]).

mod builder;
mod de;
#[cfg(test)]
mod tests;

use std::path::Path;

use super::diag::{Diag, Mark};

pub use de::{DeError, from_node};

/// At most this many nodes may exist after alias expansion.
///
/// A real Compose file has a few thousand; a "billion laughs" file asks for
/// hundreds of millions and is refused before any of them is built.
pub const NODE_BUDGET: usize = 1_000_000;

/// At most this many bytes of scalar text may exist after alias expansion
/// (32 MiB): one 64 KiB scalar aliased 100,000 times asks for 6.4 GB.
pub const BYTE_BUDGET: usize = 32 << 20;

/// The longest YAML document read (4 MiB); a real Compose file is a few KiB.
pub const MAX_YAML_BYTES: usize = 4 << 20;

/// How deep lists and mappings may nest (a Compose file nests about six
/// levels). Deeper documents are refused before the recursive builder, the
/// recursive walks of later stages or dropping the tree could run out of stack.
pub const MAX_DEPTH: usize = 64;

/// A YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub mark: Mark,
    /// Compose's merge tag on the node, if any (`spec::merge` applies it).
    pub tag: Tag,
}

/// The YAML tags Compose gives a meaning when files are merged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Tag {
    #[default]
    None,
    /// `!reset`: drop the value the base file set (and this one).
    Reset,
    /// `!override`: replace the base file's value instead of merging with it.
    Override,
}

/// The value of a node, typed by the YAML core schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys in document order; duplicates were rejected and merge keys resolved.
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn new(value: Value, mark: Mark) -> Self {
        Node {
            value,
            mark,
            tag: Tag::None,
        }
    }

    /// The name of this node's type as a user would say it.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "a number",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// A scalar rendered as Compose renders it when a string is expected
    /// (`8080` -> "8080", `true` -> "true"); `None` for lists and mappings.
    pub fn scalar_string(&self) -> Option<String> {
        match &self.value {
            Value::Null => Some(String::new()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(format_float(*f)),
            Value::Str(s) => Some(s.clone()),
            Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// The value under `key` of a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.scalar_string().as_deref() == Some(key))
            .map(|(_, v)| v)
    }

    /// The node at a path of mapping keys, for finding where a setting was written.
    pub fn lookup(&self, path: &[&str]) -> Option<&Node> {
        path.iter().try_fold(self, |node, key| node.get(key))
    }

    /// The key node of the entry at a path of mapping keys: where a setting's name was written.
    pub fn lookup_key(&self, path: &[&str]) -> Option<&Node> {
        let (last, parent) = path.split_last()?;
        self.lookup(parent)?
            .as_map()?
            .iter()
            .find(|(k, _)| k.scalar_string().as_deref() == Some(*last))
            .map(|(k, _)| k)
    }

    /// How many nodes this tree holds (itself included).
    pub fn size(&self) -> usize {
        1 + match &self.value {
            Value::Seq(items) => items.iter().map(Node::size).sum(),
            Value::Map(entries) => entries.iter().map(|(k, v)| k.size() + v.size()).sum(),
            _ => 0,
        }
    }
}

/// Formats a float the way Go's `%v` does for ordinary values (`1.5`, `2`).
pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        let s = f.to_string();
        s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
    }
}

/// Parses one YAML document into a node tree. An empty document is `Null`.
pub fn parse(src: &str, file: &Path) -> Result<Node, Diag> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    if src.len() > MAX_YAML_BYTES {
        return Err(Diag::error(
            file,
            Mark::new(1, 1),
            "",
            format!(
                "the YAML file is {} bytes, more than the {MAX_YAML_BYTES} bytes (4 MiB) plimsoll reads",
                src.len()
            ),
        )
        .hint("a Compose or plimsoll.yaml file this large is not a real one: split it, or remove what was generated into it"));
    }
    if let Some(d) = forbidden_character(src, file) {
        return Err(d);
    }
    builder::Builder::new(src, file).document()
}

/// The first character YAML does not allow in a stream (a control character
/// other than tab, line feed and carriage return), as go-yaml rejects it.
fn forbidden_character(src: &str, file: &Path) -> Option<Diag> {
    let (mut line, mut col) = (1, 0);
    for c in src.chars() {
        col += 1;
        let allowed = match c {
            '\t' | '\r' | '\u{85}' => true,
            '\n' => {
                line += 1;
                col = 0;
                true
            }
            '\u{fffe}' | '\u{ffff}' => false,
            _ => !c.is_control(),
        };
        if !allowed {
            let msg = format!(
                "invalid YAML: control character U+{:04X} is not allowed",
                c as u32
            );
            return Some(Diag::error(file, Mark::new(line, col), "", msg).hint(
                "delete it (an editor may show it as ^A or a box); YAML allows tab, line feed and carriage return only",
            ));
        }
    }
    None
}
