//! The node tree built from the YAML parser's events: anchors and aliases
//! (charged against the node and byte budgets before they are copied), `<<`
//! merge keys, duplicate keys, the nesting limit, Compose's merge tags, the
//! core-schema typing of plain scalars, and scanner errors located at the
//! quote or bracket left open.

use std::collections::HashMap;
use std::path::Path;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span};

use super::{BYTE_BUDGET, MAX_DEPTH, NODE_BUDGET, Node, Tag, Value};
use crate::spec::diag::{Diag, Mark};

fn merge_tag(tag: Option<&str>) -> Tag {
    match tag {
        Some("!reset") => Tag::Reset,
        Some("!override") => Tag::Override,
        _ => Tag::None,
    }
}

pub(super) struct Builder<'a> {
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
    /// A builder for the document `src` of `file`, with the full budgets.
    pub(super) fn new(src: &'a str, file: &'a Path) -> Self {
        Builder {
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
        }
    }

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

    pub(super) fn document(&mut self) -> Result<Node, Diag> {
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
