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

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span};
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

use super::diag::{Diag, Mark};

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

fn merge_tag(tag: Option<&str>) -> Tag {
    match tag {
        Some("!reset") => Tag::Reset,
        Some("!override") => Tag::Override,
        _ => Tag::None,
    }
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
    let mut builder = Builder {
        parser: Parser::new_from_str(src),
        file,
        anchors: HashMap::new(),
        budget: NODE_BUDGET,
        bytes: BYTE_BUDGET,
        depth: 0,
        src,
        last_end: 0,
        flows: Vec::new(),
        path: Vec::new(),
        cursor: (0, 0),
    };
    builder.document()
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

struct Builder<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    file: &'a Path,
    /// Anchored nodes with their sizes (nodes, bytes of scalar text), so an
    /// alias is charged before it is copied.
    anchors: HashMap<usize, (Node, Size)>,
    /// Nodes left to build.
    budget: usize,
    /// Bytes of scalar text left to build.
    bytes: usize,
    /// Lists and mappings open around the node being built.
    depth: usize,
    src: &'a str,
    /// Where (in characters) the last event the parser returned ends.
    last_end: usize,
    /// Flow collections (`[`, `{`) open around the current event, with where they start.
    flows: Vec<(char, Mark)>,
    /// Key path of the node being built: map keys and `[i]` list indexes.
    path: Vec<String>,
    /// (character index, byte offset) of the last [`Builder::char_at`] lookup.
    cursor: (usize, usize),
}

/// What a subtree costs against the budgets: its nodes and its bytes of scalar text.
#[derive(Debug, Clone, Copy)]
struct Size {
    nodes: usize,
    bytes: usize,
    /// Levels of lists and mappings (0 for a scalar).
    height: usize,
}

impl Size {
    const ONE: Size = Size {
        nodes: 1,
        bytes: 0,
        height: 0,
    };

    fn of(node: &Node) -> Size {
        let mut size = Size {
            nodes: 1,
            height: usize::from(matches!(node.value, Value::Seq(_) | Value::Map(_))),
            bytes: match &node.value {
                Value::Str(s) => s.len(),
                // Typed scalars print in a few bytes; charge a word for them.
                Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) => 8,
                Value::Seq(_) | Value::Map(_) => 0,
            },
        };
        let mut add = |child: &Node| {
            let s = Size::of(child);
            size.nodes += s.nodes;
            size.bytes += s.bytes;
            size.height = size.height.max(s.height + 1);
        };
        match &node.value {
            Value::Seq(items) => items.iter().for_each(&mut add),
            Value::Map(entries) => entries.iter().for_each(|(k, v)| {
                add(k);
                add(v);
            }),
            _ => {}
        }
        size
    }
}

fn mark_of(span: &Span) -> Mark {
    Mark::new(span.start.line(), span.start.col() + 1)
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), Diag> {
        match self.parser.next_event() {
            Some(Ok(ev)) => {
                self.last_end = ev.1.end.index();
                Ok(ev)
            }
            Some(Err(e)) => Err(self.scan_error(&e)),
            None => Err(Diag::error(
                self.file,
                Mark::default(),
                "",
                "unexpected end of YAML stream",
            )),
        }
    }

    fn scan_error(&self, e: &ScanError) -> Diag {
        let m = e.marker();
        let info = e.info();
        let at = |mark: Mark, msg: String, hint: String| {
            Diag::error(self.file, mark, self.key(), msg).hint(hint)
        };
        // A quoted scalar that never closes is reported by the scanner where it
        // gave up (often at the end of the input); the useful place is the quote
        // that opened it, after the last event the parser returned.
        if info.contains("quoted scalar")
            && let Some(open) = opening_quote(self.src, self.last_end, m.index())
        {
            return at(
                open,
                format!("invalid YAML: the quoted string that starts here is not closed ({info})"),
                "add the closing quote; a quoted string that goes on over several lines must indent them more than its key".into(),
            );
        }
        let mark = Mark::new(m.line(), m.col() + 1);
        if info.contains("unknown anchor") {
            let alias: String = self
                .src
                .chars()
                .skip(m.index())
                .take_while(|c| !c.is_whitespace() && !",[]{}".contains(*c))
                .collect();
            if let Some(name) = alias.strip_prefix('*') {
                return at(
                    mark,
                    format!("invalid YAML: alias `{alias}` refers to no anchor defined before it"),
                    format!(
                        "define the anchor with `&{name}` on a value above this line, or fix the alias name"
                    ),
                );
            }
        }
        if info.contains("recursion limit") {
            return at(
                mark,
                format!("invalid YAML: lists and mappings are nested too deeply ({info})"),
                "nest fewer levels of lists and mappings".into(),
            );
        }
        if let Some((open, start)) = self.flows.last() {
            let close = if *open == '[' { ']' } else { '}' };
            return at(
                mark,
                format!(
                    "invalid YAML: {info}; the `{open}` at line {}, column {} is still open here",
                    start.line, start.col
                ),
                format!("close the `{open}` with `{close}`, and separate its items with `,`"),
            );
        }
        let hint = if info.contains("tab") {
            "indent with spaces: YAML does not allow tabs for indentation"
        } else if info.contains("expected key") || info.contains("indentation") {
            "check the indentation of this line and the one above: the keys of one mapping start in the same column"
        } else {
            "fix the YAML syntax at this line (quotes, indentation, ':' after keys)"
        };
        at(mark, format!("invalid YAML: {info}"), hint.into())
    }

    /// The key path of the node being built, with `last` appended when not empty.
    fn key_with(&self, last: &str) -> String {
        let mut out = String::new();
        for part in self
            .path
            .iter()
            .map(String::as_str)
            .chain((!last.is_empty()).then_some(last))
        {
            if !out.is_empty() && !part.starts_with('[') {
                out.push('.');
            }
            out.push_str(part);
        }
        out
    }

    fn key(&self) -> String {
        self.key_with("")
    }

    /// The character at character index `idx` of the source. Events come in
    /// source order, so the lookup resumes from the previous one.
    fn char_at(&mut self, idx: usize) -> Option<char> {
        if idx < self.cursor.0 {
            self.cursor = (0, 0);
        }
        let (mut ci, mut bi) = self.cursor;
        let mut chars = self.src[bi..].chars();
        while ci < idx {
            bi += chars.next()?.len_utf8();
            ci += 1;
        }
        self.cursor = (ci, bi);
        self.src[bi..].chars().next()
    }

    /// Notes a flow collection (`[` or `{`) opening at `span`; returns whether it is one.
    fn open_flow(&mut self, span: &Span) -> bool {
        match self.char_at(span.start.index()) {
            Some(c @ ('[' | '{')) => {
                self.flows.push((c, mark_of(span)));
                true
            }
            _ => false,
        }
    }

    fn document(&mut self) -> Result<Node, Diag> {
        let mut root = None;
        loop {
            let (ev, span) = self.next()?;
            match ev {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::DocumentStart(_) => {
                    if root.is_some() {
                        return Err(Diag::error(
                            self.file,
                            mark_of(&span),
                            "",
                            "more than one YAML document in this file",
                        )
                        .hint("a Compose file holds exactly one document: remove the extra `---` section"));
                    }
                    let (ev, span) = self.next()?;
                    if matches!(ev, Event::DocumentEnd) {
                        root = Some(Node::new(Value::Null, mark_of(&span)));
                    } else {
                        root = Some(self.node(ev, span)?);
                    }
                }
                Event::StreamEnd => {
                    return Ok(root.unwrap_or_else(|| Node::new(Value::Null, Mark::new(1, 1))));
                }
                other => {
                    let node = self.node(other, span)?;
                    root = Some(node);
                }
            }
        }
    }

    fn charge(&mut self, size: Size, mark: Mark) -> Result<(), Diag> {
        let Size {
            nodes: n, bytes, ..
        } = size;
        if bytes > self.bytes {
            return Err(Diag::error(
                self.file,
                mark,
                self.key(),
                format!("YAML aliases expand to more than {BYTE_BUDGET} bytes (32 MiB) of text"),
            )
            .hint(
                "this looks like an alias bomb; write the values out or alias fewer and shorter values",
            ));
        }
        self.bytes -= bytes;
        if n > self.budget {
            return Err(Diag::error(
                self.file,
                mark,
                self.key(),
                format!("YAML aliases expand to more than {NODE_BUDGET} nodes"),
            )
            .hint(
                "this looks like an alias bomb; write the values out or use fewer nested aliases",
            ));
        }
        self.budget -= n;
        Ok(())
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), Size::of(node)));
        }
    }

    /// Enters a list or mapping; refused beyond [`MAX_DEPTH`].
    fn enter(&mut self, mark: Mark) -> Result<(), Diag> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.too_deep(mark));
        }
        Ok(())
    }

    fn too_deep(&self, mark: Mark) -> Diag {
        Diag::error(
            self.file,
            mark,
            self.key(),
            format!(
                "invalid YAML: lists and mappings are nested more than {MAX_DEPTH} levels deep"
            ),
        )
        .hint("nest fewer levels of lists and mappings (a Compose file needs about six)")
    }

    fn node(&mut self, ev: Event<'a>, span: Span) -> Result<Node, Diag> {
        let mark = mark_of(&span);
        match ev {
            Event::Alias(id) => {
                let Some((_, size)) = self.anchors.get(&id) else {
                    return Err(Diag::error(
                        self.file,
                        mark,
                        self.key(),
                        "alias to an unknown anchor",
                    )
                    .hint("define the anchor (`&name`) on a value above the alias (`*name`)"));
                };
                let size = *size;
                self.charge(size, mark)?;
                if self.depth + size.height > MAX_DEPTH {
                    // The copy would nest deeper than the limit where it stands.
                    return Err(self.too_deep(mark));
                }
                let mut node = self.anchors[&id].0.clone();
                // The copy is reported where the alias stands.
                node.mark = mark;
                Ok(node)
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.charge(
                    Size {
                        nodes: 1,
                        bytes: text.len(),
                        height: 0,
                    },
                    mark,
                )?;
                let tag = tag.map(|t| format!("{}{}", t.handle, t.suffix));
                let merge = merge_tag(tag.as_deref());
                let value = match tag.as_deref() {
                    None | Some("!reset" | "!override") => resolve_scalar(&text, style),
                    Some("!!str" | "tag:yaml.org,2002:str") => Value::Str(text.into_owned()),
                    Some(other) => {
                        let typed = match other {
                            "!!int" | "tag:yaml.org,2002:int" => text.parse().ok().map(Value::Int),
                            "!!float" | "tag:yaml.org,2002:float" => {
                                text.parse().ok().map(Value::Float)
                            }
                            "!!bool" | "tag:yaml.org,2002:bool" => {
                                text.parse().ok().map(Value::Bool)
                            }
                            "!!null" | "tag:yaml.org,2002:null" => Some(Value::Null),
                            _ => None,
                        };
                        typed.ok_or_else(|| {
                            Diag::error(
                                self.file,
                                mark,
                                self.key(),
                                format!("YAML tag `{other}` is not supported here"),
                            )
                            .hint("remove the tag")
                        })?
                    }
                };
                let mut node = Node::new(value, mark);
                node.tag = merge;
                self.remember(anchor, &node);
                Ok(node)
            }
            Event::SequenceStart(anchor, tag) => {
                let tag = tag.map(|t| format!("{}{}", t.handle, t.suffix));
                let merge = merge_tag(tag.as_deref());
                self.reject_tag(tag.filter(|_| merge == Tag::None), "!!seq", mark)?;
                self.charge(Size::ONE, mark)?;
                self.enter(mark)?;
                let flow = self.open_flow(&span);
                let mut items = Vec::new();
                loop {
                    let (ev, span) = self.next()?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    self.path.push(format!("[{}]", items.len()));
                    items.push(self.node(ev, span)?);
                    self.path.pop();
                }
                if flow {
                    self.flows.pop();
                }
                self.depth -= 1;
                let mut node = Node::new(Value::Seq(items), mark);
                node.tag = merge;
                self.remember(anchor, &node);
                Ok(node)
            }
            Event::MappingStart(anchor, tag) => {
                let tag = tag.map(|t| format!("{}{}", t.handle, t.suffix));
                let merge = merge_tag(tag.as_deref());
                self.reject_tag(tag.filter(|_| merge == Tag::None), "!!map", mark)?;
                self.charge(Size::ONE, mark)?;
                self.enter(mark)?;
                let flow = self.open_flow(&span);
                let mut node = self.mapping(mark)?;
                node.tag = merge;
                if flow {
                    self.flows.pop();
                }
                self.depth -= 1;
                self.remember(anchor, &node);
                Ok(node)
            }
            _ => Err(Diag::error(self.file, mark, "", "unexpected YAML event")),
        }
    }

    fn reject_tag(&self, tag: Option<String>, allowed: &str, mark: Mark) -> Result<(), Diag> {
        match tag {
            Some(t) if t != allowed && !t.ends_with(&allowed[2..]) => Err(Diag::error(
                self.file,
                mark,
                self.key(),
                format!("YAML tag `{t}` is not supported here"),
            )
            .hint("remove the tag")),
            _ => Ok(()),
        }
    }

    fn mapping(&mut self, mark: Mark) -> Result<Node, Diag> {
        let mut entries: Vec<(Node, Node)> = Vec::new();
        let mut merged: Vec<(Node, Node)> = Vec::new();
        // Key name -> line of its first entry, so a large mapping is not quadratic.
        let mut seen: HashMap<String, usize> = HashMap::new();
        loop {
            let (ev, span) = self.next()?;
            if matches!(ev, Event::MappingEnd) {
                break;
            }
            let is_merge =
                matches!(&ev, Event::Scalar(t, ScalarStyle::Plain, _, None) if t == "<<");
            let key = self.node(ev, span)?;
            if matches!(key.value, Value::Seq(_) | Value::Map(_)) {
                return Err(Diag::error(
                    self.file,
                    key.mark,
                    self.key(),
                    "a mapping key must be a scalar",
                )
                .hint("write the key as a plain string (`name: value`), not as a list or mapping after `?`"));
            }
            let name = key.scalar_string().unwrap_or_default();
            self.path.push(name.clone());
            let (ev, span) = self.next()?;
            let value = self.node(ev, span)?;
            if is_merge {
                self.merge_sources(&value, &mut merged)?;
            }
            self.path.pop();
            if is_merge {
                continue;
            }
            if let Some(first_line) = seen.get(&name) {
                return Err(Diag::error(
                    self.file,
                    key.mark,
                    self.key_with(&name),
                    format!("duplicate key `{name}` (first defined at line {first_line})"),
                )
                .hint("remove one of the two entries"));
            }
            seen.insert(name, key.mark.line);
            entries.push((key, value));
        }
        // Explicit keys win over merged ones; among merge sources the first wins.
        for (k, v) in merged {
            if seen
                .insert(k.scalar_string().unwrap_or_default(), k.mark.line)
                .is_none()
            {
                entries.push((k, v));
            }
        }
        Ok(Node::new(Value::Map(entries), mark))
    }

    fn merge_sources(&self, value: &Node, merged: &mut Vec<(Node, Node)>) -> Result<(), Diag> {
        let sources: Vec<&Node> = match &value.value {
            Value::Map(_) => vec![value],
            Value::Seq(items) => items.iter().collect(),
            _ => {
                return Err(Diag::error(
                    self.file,
                    value.mark,
                    self.key(),
                    format!(
                        "a merge key `<<` takes a mapping or a list of mappings, found {}",
                        value.type_name()
                    ),
                )
                .hint("merge a mapping, e.g. `<<: *defaults` where `x-defaults: &defaults` is a mapping"));
            }
        };
        let mut names: std::collections::HashSet<Option<String>> =
            merged.iter().map(|(k, _)| k.scalar_string()).collect();
        for source in sources {
            let Some(entries) = source.as_map() else {
                return Err(Diag::error(
                    self.file,
                    source.mark,
                    self.key(),
                    format!(
                        "a merge key `<<` takes mappings, found {}",
                        source.type_name()
                    ),
                )
                .hint("list only mappings after `<<`, e.g. `<<: [*defaults, *logging]`"));
            };
            for (k, v) in entries {
                if names.insert(k.scalar_string()) {
                    merged.push((k.clone(), v.clone()));
                }
            }
        }
        Ok(())
    }
}

/// Where the quote opens that is still open at character `end_char`, looking
/// only from character `from_char` on (the end of the last complete event, so
/// quotes inside earlier scalars such as block scalars do not count).
fn opening_quote(src: &str, from_char: usize, end_char: usize) -> Option<Mark> {
    // Walk the text tracking quote state; the last quote opened and never closed is the culprit.
    let mut open: Option<(char, Mark)> = None;
    let (mut line, mut col) = (1usize, 0usize);
    // The scanner may stand on the opening quote itself: include that character.
    let mut chars = src.chars().enumerate().take(end_char + 1).peekable();
    let mut in_comment = false;
    let mut prev = '\n';
    while let Some((i, c)) = chars.next() {
        col += 1;
        if i < from_char {
            if c == '\n' {
                line += 1;
                col = 0;
            }
            prev = c;
            continue;
        }
        match (open, c) {
            (_, '\n') => {
                line += 1;
                col = 0;
                in_comment = false;
            }
            (None, '#') if prev == ' ' || prev == '\n' || prev == '\t' => in_comment = true,
            (None, '\'' | '"')
                if !in_comment
                    && matches!(prev, ' ' | ':' | '-' | '\n' | '[' | '{' | ',' | '\t') =>
            {
                open = Some((c, Mark::new(line, col)));
            }
            (Some(('"', _)), '\\') if chars.peek().is_some_and(|p| p.1 != '\n') => {
                chars.next();
                col += 1;
            }
            (Some(('\'', _)), '\'') if chars.peek().is_some_and(|p| p.1 == '\'') => {
                chars.next();
                col += 1;
            }
            (Some((q, _)), c) if c == q => open = None,
            _ => {}
        }
        prev = c;
    }
    open.map(|(_, m)| m)
}

/// Types a scalar by the YAML 1.2 core schema, as go-yaml v3 does for untyped values.
fn resolve_scalar(text: &str, style: ScalarStyle) -> Value {
    if style != ScalarStyle::Plain {
        return Value::Str(text.to_string());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let plain = text.replace('_', "");
    let (sign, digits) = match plain.strip_prefix('-') {
        Some(rest) => (-1i64, rest),
        None => (1, plain.strip_prefix('+').unwrap_or(&plain)),
    };
    let int = if let Some(hex) = digits.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()
    } else if let Some(oct) = digits.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()
    } else if let Some(bin) = digits.strip_prefix("0b") {
        i64::from_str_radix(bin, 2).ok()
    } else if digits.len() > 1
        && digits.starts_with('0')
        && digits.bytes().all(|b| matches!(b, b'0'..=b'7'))
    {
        // go-yaml v3 parses integers with Go's base prefix rules: a leading 0 is octal (`0440`).
        i64::from_str_radix(&digits[1..], 8).ok()
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse::<i64>().ok()
    } else {
        None
    };
    if let Some(i) = int {
        return Value::Int(sign * i);
    }
    let looks_float = text.bytes().any(|b| b.is_ascii_digit())
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-' | b'_'));
    if looks_float && let Ok(f) = plain.parse::<f64>() {
        return Value::Float(f);
    }
    Value::Str(text.to_string())
}

// ---------------------------------------------------------------------------
// serde: typed structs straight from a node, errors located at the node.

/// An error while turning a node into a typed value: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeError {
    pub mark: Mark,
    pub path: String,
    pub message: String,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            mark: Mark::default(),
            path: String::new(),
            message: msg.to_string(),
        }
    }
}

impl DeError {
    /// Turns this error into a diagnostic for `file`.
    pub fn into_diag(self, file: &Path) -> Diag {
        Diag::error(file, self.mark, self.path, self.message)
    }
}

/// Deserializes a typed value from a node; the error names the node's line and key path.
pub fn from_node<T: DeserializeOwned>(node: &Node) -> Result<T, DeError> {
    T::deserialize(NodeDe {
        node,
        path: String::new(),
    })
}

struct NodeDe<'a> {
    node: &'a Node,
    path: String,
}

impl<'a> NodeDe<'a> {
    fn locate(&self, mut e: DeError) -> DeError {
        if e.mark == Mark::default() {
            e.mark = self.node.mark;
            e.path = self.path.clone();
        }
        e
    }

    fn child(&self, node: &'a Node, key: &str) -> NodeDe<'a> {
        let path = if self.path.is_empty() {
            key.to_string()
        } else if key.starts_with('[') {
            format!("{}{key}", self.path)
        } else {
            format!("{}.{key}", self.path)
        };
        NodeDe { node, path }
    }

    fn invalid(&self, expected: &str) -> DeError {
        DeError {
            mark: self.node.mark,
            path: self.path.clone(),
            message: format!("expected {expected}, found {}", self.node.type_name()),
        }
    }
}

macro_rules! forward_scalar {
    ($($method:ident => $visit:ident : $ty:ty , $what:literal ;)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
                let v: $ty = match &self.node.value {
                    Value::Int(i) => <$ty>::try_from(*i).map_err(|_| self.invalid($what))?,
                    Value::Str(s) => s.trim().parse().map_err(|_| self.invalid($what))?,
                    _ => return Err(self.invalid($what)),
                };
                visitor.$visit(v).map_err(|e| self.locate(e))
            }
        )*
    };
}

impl<'de, 'a> de::Deserializer<'de> for NodeDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_str(s),
            Value::Seq(items) => visitor.visit_seq(SeqAccess {
                de: &self,
                items: items.iter().enumerate(),
            }),
            Value::Map(entries) => visitor.visit_map(MapAccess {
                de: &self,
                entries: entries.iter(),
                value: None,
            }),
        };
        r.map_err(|e| self.locate(e))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let b = match &self.node.value {
            Value::Bool(b) => *b,
            // go-yaml v3 still reads the YAML 1.1 words into a typed bool.
            Value::Str(s) => match s.as_str() {
                "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y" => true,
                "no" | "No" | "NO" | "off" | "Off" | "OFF" | "n" | "N" => false,
                _ => return Err(self.invalid("true or false")),
            },
            _ => return Err(self.invalid("true or false")),
        };
        visitor.visit_bool(b).map_err(|e| self.locate(e))
    }

    forward_scalar! {
        deserialize_i8 => visit_i8: i8, "a whole number";
        deserialize_i16 => visit_i16: i16, "a whole number";
        deserialize_i32 => visit_i32: i32, "a whole number";
        deserialize_i64 => visit_i64: i64, "a whole number";
        deserialize_u8 => visit_u8: u8, "a whole number from 0 to 255";
        deserialize_u16 => visit_u16: u16, "a whole number from 0 to 65535";
        deserialize_u32 => visit_u32: u32, "a non-negative whole number";
        deserialize_u64 => visit_u64: u64, "a non-negative whole number";
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let f = match &self.node.value {
            Value::Int(i) => *i as f64,
            Value::Float(f) => *f,
            Value::Str(s) => s.trim().parse().map_err(|_| self.invalid("a number"))?,
            _ => return Err(self.invalid("a number")),
        };
        visitor.visit_f64(f).map_err(|e| self.locate(e))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Seq(_) | Value::Map(_) | Value::Null => Err(self.invalid("a string")),
            _ => {
                let s = self.node.scalar_string().unwrap_or_default();
                visitor.visit_string(s).map_err(|e| self.locate(e))
            }
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            visitor.visit_none().map_err(|e| self.locate(e))
        } else {
            let path = self.path.clone();
            visitor.visit_some(NodeDe {
                node: self.node,
                path,
            })
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Seq(items) => visitor
                .visit_seq(SeqAccess {
                    de: &self,
                    items: items.iter().enumerate(),
                })
                .map_err(|e| self.locate(e)),
            _ => Err(self.invalid("a list")),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Map(entries) => visitor
                .visit_map(MapAccess {
                    de: &self,
                    entries: entries.iter(),
                    value: None,
                })
                .map_err(|e| self.locate(e)),
            // An empty section (`policy:` with nothing under it) reads as an empty mapping.
            Value::Null => visitor
                .visit_map(MapAccess {
                    de: &self,
                    entries: [].iter(),
                    value: None,
                })
                .map_err(|e| self.locate(e)),
            _ => Err(self.invalid("a mapping")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Str(s) => visitor
                .visit_enum(s.as_str().into_deserializer())
                .map_err(|e: DeError| self.locate(e)),
            _ => Err(self.invalid(&format!("one of {}", variants.join(", ")))),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i128 u128 bytes byte_buf unit_struct newtype_struct tuple tuple_struct identifier
    }
}

struct SeqAccess<'a, 'b> {
    de: &'b NodeDe<'a>,
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
}

impl<'de, 'a, 'b> de::SeqAccess<'de> for SeqAccess<'a, 'b> {
    type Error = DeError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some((i, node)) => {
                let child = self.de.child(node, &format!("[{i}]"));
                let at = NodeDe {
                    node,
                    path: child.path.clone(),
                };
                seed.deserialize(child).map(Some).map_err(|e| at.locate(e))
            }
            None => Ok(None),
        }
    }
}

struct MapAccess<'a, 'b> {
    de: &'b NodeDe<'a>,
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<(&'a Node, String)>,
}

impl<'de, 'a, 'b> de::MapAccess<'de> for MapAccess<'a, 'b> {
    type Error = DeError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((k, v)) = self.entries.next() else {
            return Ok(None);
        };
        let name = k.scalar_string().unwrap_or_default();
        self.value = Some((v, name.clone()));
        let key_de = self.de.child(k, &name);
        seed.deserialize(name.as_str().into_deserializer())
            .map(Some)
            .map_err(|e: DeError| key_de.locate(e))
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DeError> {
        let (node, name) = self.value.take().expect("value after key");
        let child = self.de.child(node, &name);
        // An error a `Deserialize` impl raises after reading the value (e.g. an
        // invalid duration) carries no place yet: it belongs to this value.
        let at = NodeDe {
            node,
            path: child.path.clone(),
        };
        seed.deserialize(child).map_err(|e| at.locate(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(src: &str) -> Result<Node, Diag> {
        parse(src, Path::new("t.yaml"))
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let n =
            p("a: 1\nb: '1'\nc: true\nd: yes\ne: ~\nf: 1.5\ng: 0x10\nh: 1.0.0\ni: 0440\nj: 0\n")
                .unwrap();
        assert_eq!(n.get("i").unwrap().value, Value::Int(0o440));
        assert_eq!(n.get("j").unwrap().value, Value::Int(0));
        assert_eq!(n.get("a").unwrap().value, Value::Int(1));
        assert_eq!(n.get("b").unwrap().value, Value::Str("1".into()));
        assert_eq!(n.get("c").unwrap().value, Value::Bool(true));
        assert_eq!(n.get("d").unwrap().value, Value::Str("yes".into()));
        assert_eq!(n.get("e").unwrap().value, Value::Null);
        assert_eq!(n.get("f").unwrap().value, Value::Float(1.5));
        assert_eq!(n.get("g").unwrap().value, Value::Int(16));
        assert_eq!(n.get("h").unwrap().value, Value::Str("1.0.0".into()));
    }

    #[test]
    fn marks_are_one_based() {
        let n = p("a:\n  b: x\n").unwrap();
        assert_eq!(n.lookup(&["a", "b"]).unwrap().mark, Mark::new(2, 6));
    }

    #[test]
    fn merge_keys_explicit_wins_first_source_wins() {
        let n = p("x: &x {a: 1, b: 1}\ny: &y {b: 2, c: 2}\nz:\n  <<: [*x, *y]\n  a: 0\n").unwrap();
        let z = n.get("z").unwrap();
        assert_eq!(z.get("a").unwrap().value, Value::Int(0));
        assert_eq!(z.get("b").unwrap().value, Value::Int(1));
        assert_eq!(z.get("c").unwrap().value, Value::Int(2));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = p("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.mark.line, 3);
        assert!(
            e.message
                .contains("duplicate key `a` (first defined at line 1)"),
            "{e}"
        );
    }

    #[test]
    fn alias_bomb_is_refused_quickly() {
        let mut src = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
        for i in 0..9u8 {
            let (prev, cur) = ((b'a' + i) as char, (b'b' + i) as char);
            src.push_str(&format!("{cur}: &{cur} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        // Stopped by the node budget (not by time): the message names it.
        let e = p(&src).unwrap_err();
        assert!(
            e.message
                .contains("aliases expand to more than 1000000 nodes"),
            "{e}"
        );
    }

    #[test]
    fn alias_bomb_in_bytes_is_refused() {
        // One 64 KiB scalar aliased 100,000 times: 6.4 GB of text, 100,001 nodes.
        let mut src = format!("x-big: &big \"{}\"\nx-bomb:\n", "a".repeat(64 << 10));
        for _ in 0..100_000 {
            src.push_str("  - *big\n");
        }
        let e = p(&src).unwrap_err();
        assert!(e.message.contains("more than 33554432 bytes"), "{e}");
        // The anchored scalar and 510 aliases fit in 32 MiB; the 511th does not.
        assert_eq!(e.key, "x-bomb[510]", "{e}");
        assert_eq!(e.mark.line, 3 + 510, "{e}");
    }

    #[test]
    fn deep_nesting_is_refused_at_its_line() {
        for src in [
            "[".repeat(100_000),
            "{a: ".repeat(100_000),
            "- ".repeat(100_000) + "x",
            (0..100).map(|i| format!("{}k:\n", " ".repeat(i))).collect(),
        ] {
            let e = p(&src).unwrap_err();
            assert!(e.message.contains("nested"), "{e}");
            assert!(e.mark.line >= 1, "{e}");
        }
        // Sixty-four levels are fine.
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(p(&ok).is_ok());
        // An alias does not nest a deep anchor deeper than the limit.
        let half = "[".repeat(40) + &"]".repeat(40);
        let e = p(&format!(
            "a: &a {half}\nb: {}*a{}\n",
            "[".repeat(30),
            "]".repeat(30)
        ))
        .unwrap_err();
        assert!(e.message.contains("nested"), "{e}");
        assert_eq!(e.mark.line, 2, "{e}");
    }

    #[test]
    fn a_huge_document_is_refused_before_parsing() {
        let src = format!("a: 1\n{}", "#".repeat(MAX_YAML_BYTES));
        let e = p(&src).unwrap_err();
        assert_eq!(e.mark.line, 1, "{e}");
        assert!(e.message.contains("4 MiB"), "{e}");
    }

    #[test]
    fn unterminated_quote_names_its_opening_line() {
        let e = p("services:\n  a:\n    image: \"nginx\n    x: 1\n    y: 2\n").unwrap_err();
        assert_eq!(e.mark.line, 3, "{e}");
    }

    #[test]
    fn several_documents_are_refused() {
        assert!(
            p("a: 1\n---\nb: 2\n")
                .unwrap_err()
                .message
                .contains("more than one")
        );
    }

    #[test]
    fn empty_document_is_null() {
        assert!(p("").unwrap().is_null());
        assert!(p("# only a comment\n").unwrap().is_null());
    }

    #[test]
    fn serde_errors_carry_place() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)] // the fields are only read through Debug
        struct T {
            a: u16,
            b: Option<Vec<String>>,
        }
        let n = p("a: 1\nb: [x, y]\n").unwrap();
        let t: T = from_node(&n).unwrap();
        assert_eq!(t.a, 1);
        let n = p("a: 1\nb:\n  - x\n  - {k: v}\n").unwrap();
        let e = from_node::<T>(&n).unwrap_err();
        assert_eq!((e.mark.line, e.path.as_str()), (4, "b[1]"));
        let n = p("a: 1\nc: 2\n").unwrap();
        let e = from_node::<T>(&n).unwrap_err();
        assert_eq!(e.mark.line, 2, "{e:?}");
        assert!(e.message.contains("unknown field `c`"));
    }
}
