//! Line edits on the text of a Compose file in block style, so that an
//! accepted drift changes only the lines concerned: comments, blank lines,
//! quoting and indentation of everything else stay as written.
//!
//! The editor finds a key by indentation (the service under `services:`,
//! then each part of a key path); it edits block mappings and block lists,
//! and refuses (with [`TextError`]) what it cannot edit line by line: a
//! value in flow style (`{…}`, `[…]`), a multi-line scalar, a port in long
//! syntax. Pure.

/// Why an edit could not be made on the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("`services.{0}` is not written in this file")]
    NoService(String),
    #[error("`{0}` is written in flow style or over several lines; edit it by hand")]
    NotBlock(String),
    #[error("`{0}` holds an entry in long syntax; edit it by hand")]
    LongSyntax(String),
}

/// A file's text as lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    lines: Vec<String>,
    trailing_newline: bool,
}

/// The parts of a `key: value  # comment` line.
struct KeyLine<'a> {
    key: String,
    /// The value as written (quotes kept), without the comment.
    value: &'a str,
    /// Byte range of `value` in the line.
    span: (usize, usize),
}

impl Text {
    pub fn new(s: &str) -> Text {
        let trailing_newline = s.ends_with('\n');
        let body = s.strip_suffix('\n').unwrap_or(s);
        Text {
            lines: if s.is_empty() {
                Vec::new()
            } else {
                body.split('\n').map(str::to_string).collect()
            },
            trailing_newline,
        }
    }

    pub fn render(&self) -> String {
        let mut s = self.lines.join("\n");
        if self.trailing_newline || !self.lines.is_empty() {
            s.push('\n');
        }
        s
    }

    fn indent(&self, i: usize) -> usize {
        let l = &self.lines[i];
        l.len() - l.trim_start_matches(' ').len()
    }

    /// A line with content (not blank, not only a comment).
    fn content(&self, i: usize) -> bool {
        let t = self.lines[i].trim();
        !t.is_empty() && !t.starts_with('#') && t != "---"
    }

    /// The end (exclusive) of the block that the line `i` opens.
    fn block_end(&self, i: usize) -> usize {
        let base = self.indent(i);
        let mut end = i + 1;
        for j in i + 1..self.lines.len() {
            if !self.content(j) {
                continue;
            }
            // A list under a key may sit at the key's own indentation.
            let item = self.lines[j].trim_start().starts_with("- ") || self.lines[j].trim() == "-";
            // A line at the same indentation ends the block, unless it is a
            // list item under a key (not under another item).
            let inside = item && !self.is_item(i);
            if self.indent(j) < base || (self.indent(j) == base && !inside) {
                break;
            }
            end = j + 1;
        }
        end
    }

    fn is_item(&self, i: usize) -> bool {
        let t = self.lines[i].trim_start();
        t.starts_with("- ") || t == "-"
    }

    /// The content lines directly inside the block of `i` (all top-level
    /// lines for `None`), with their indentation.
    fn children(&self, parent: Option<usize>) -> Vec<usize> {
        let (from, to) = match parent {
            Some(p) => (p + 1, self.block_end(p)),
            None => (0, self.lines.len()),
        };
        let mut indent = None;
        let mut out = Vec::new();
        for j in from..to {
            if !self.content(j) {
                continue;
            }
            let ind = self.indent(j);
            match indent {
                None => {
                    indent = Some(ind);
                    out.push(j);
                }
                Some(i) if i == ind => out.push(j),
                _ => {}
            }
        }
        out
    }

    fn key_line(&self, i: usize) -> Option<KeyLine<'_>> {
        parse_key_line(&self.lines[i])
    }

    fn find_child(&self, parent: Option<usize>, key: &str) -> Option<usize> {
        self.children(parent)
            .into_iter()
            .find(|&j| self.key_line(j).is_some_and(|k| k.key == key))
    }

    /// The line of `services.<service>`.
    pub fn service(&self, service: &str) -> Result<usize, TextError> {
        self.find_child(None, "services")
            .and_then(|s| self.find_child(Some(s), service))
            .ok_or_else(|| TextError::NoService(service.to_string()))
    }

    fn find_path(&self, from: usize, path: &[&str]) -> Option<usize> {
        path.iter()
            .try_fold(from, |at, key| self.find_child(Some(at), key))
    }

    /// The indentation of the children of `i` (its first child's, else the
    /// file's step below `i`).
    fn child_indent(&self, i: usize) -> usize {
        match self.children(Some(i)).first() {
            Some(&c) => self.indent(c),
            None => self.indent(i) + self.step(),
        }
    }

    /// The file's indentation step (2 when it shows none).
    fn step(&self) -> usize {
        (0..self.lines.len())
            .filter(|&i| self.content(i) && self.indent(i) > 0)
            .map(|i| self.indent(i))
            .min()
            .unwrap_or(2)
    }

    /// The last content line of the block of `i` (or `i` itself).
    fn last_in_block(&self, i: usize) -> usize {
        (i..self.block_end(i))
            .rev()
            .find(|&j| self.content(j))
            .unwrap_or(i)
    }

    /// The raw value written at `path` under the service line `svc`, if any.
    pub fn value_at(&self, svc: usize, path: &[&str]) -> Option<String> {
        let at = self.find_path(svc, path)?;
        Some(self.key_line(at)?.value.to_string())
    }

    /// The raw value of entry `name` of the mapping or `NAME=value` list at
    /// `path` (for a list item, the text after `=`).
    pub fn entry_raw(&self, svc: usize, path: &[&str], name: &str) -> Option<String> {
        let at = self.find_path(svc, path)?;
        if let Some(j) = self.find_child(Some(at), name) {
            return Some(self.key_line(j)?.value.to_string());
        }
        self.children(Some(at)).into_iter().find_map(|j| {
            if !self.is_item(j) {
                return None;
            }
            let text = unquote(item_value(&self.lines[j]).0);
            let (n, v) = text.split_once('=')?;
            (n == name).then(|| v.to_string())
        })
    }

    /// Replaces the first line `f` gives a new text for; `None` when it gives none.
    pub fn replace_line(&mut self, f: impl Fn(&str) -> Option<String>) -> Option<()> {
        let (i, new) = self
            .lines
            .iter()
            .enumerate()
            .find_map(|(i, l)| Some((i, f(l)?)))?;
        self.lines[i] = new;
        Some(())
    }

    /// Which of `paths` (relative to the service) is written, if any.
    pub fn written<'p>(
        &self,
        svc: usize,
        paths: &'p [Vec<&'static str>],
    ) -> Option<&'p [&'static str]> {
        paths
            .iter()
            .find(|p| self.find_path(svc, p).is_some())
            .map(Vec::as_slice)
    }

    /// Sets a scalar at `path` under the service line `svc`, inserting the
    /// keys that are missing.
    pub fn set_scalar(&mut self, svc: usize, path: &[&str], value: &str) -> Result<(), TextError> {
        let (at, rest) = self.deepest(svc, path);
        if rest.is_empty() {
            let line = &self.lines[at];
            let k = parse_key_line(line).expect("found as a key");
            if k.value.is_empty() && self.block_end(at) > at + 1 {
                return Err(TextError::NotBlock(path.join(".")));
            }
            if is_multiline(k.value) {
                return Err(TextError::NotBlock(path.join(".")));
            }
            let new = scalar_like(value, k.value);
            let (a, b) = k.span;
            let mut l = line.clone();
            l.replace_range(a..b, &new);
            self.lines[at] = l;
            return Ok(());
        }
        self.insert_path(at, rest, &scalar_like(value, ""));
        Ok(())
    }

    /// Sets the scalar `services.<service>.<key>`, writing the service (and
    /// `services:`) at the end when the file has none (an override file
    /// that did not change the service yet).
    pub fn set_service_scalar(
        &mut self,
        service: &str,
        key: &str,
        value: &str,
    ) -> Result<(), TextError> {
        if let Ok(svc) = self.service(service) {
            if self.key_line(svc).is_some_and(|k| !k.value.is_empty()) {
                return Err(TextError::NotBlock(format!("services.{service}")));
            }
            return self.set_scalar(svc, &[key], value);
        }
        let services = match self.find_child(None, "services") {
            Some(at) if self.key_line(at).is_some_and(|k| !k.value.is_empty()) => {
                return Err(TextError::NotBlock("services".into()));
            }
            Some(at) => at,
            None => {
                self.lines.push("services:".into());
                self.lines.len() - 1
            }
        };
        self.insert_path(services, &[service, key], &scalar_like(value, ""));
        Ok(())
    }

    /// Removes the key at `path` (and its block); nothing when it is not there.
    pub fn unset(&mut self, svc: usize, path: &[&str]) {
        if let Some(at) = self.find_path(svc, path) {
            let end = self.block_end(at);
            self.lines.drain(at..end);
        }
    }

    /// The deepest existing line of `path` under `from`, and the parts missing below it.
    fn deepest<'p>(&self, from: usize, path: &'p [&'p str]) -> (usize, &'p [&'p str]) {
        let mut at = from;
        for (n, key) in path.iter().enumerate() {
            match self.find_child(Some(at), key) {
                Some(j) => at = j,
                None => return (at, &path[n..]),
            }
        }
        (at, &[])
    }

    /// Inserts `rest` (nested keys) under the line `at`, the last holding `value`.
    fn insert_path(&mut self, at: usize, rest: &[&str], value: &str) {
        let indent = self.child_indent(at);
        let step = self.step();
        let pos = self.last_in_block(at) + 1;
        let lines: Vec<String> = rest
            .iter()
            .enumerate()
            .map(|(n, key)| {
                let pad = " ".repeat(indent + n * step);
                if n + 1 == rest.len() {
                    format!("{pad}{key}: {value}")
                } else {
                    format!("{pad}{key}:")
                }
            })
            .collect();
        self.lines.splice(pos..pos, lines);
    }

    /// Sets (or removes) entry `name` of the mapping or `NAME=value` list at
    /// `path`, in the form the file uses (a new key is written as a mapping).
    pub fn set_entry(
        &mut self,
        svc: usize,
        path: &[&str],
        name: &str,
        value: Option<&str>,
    ) -> Result<(), TextError> {
        let Some(at) = self.find_path(svc, path) else {
            if let Some(v) = value {
                let (at, rest) = self.deepest(svc, path);
                let quoted = quote_key(name);
                let mut keys: Vec<&str> = rest.to_vec();
                keys.push(&quoted);
                self.insert_path(at, &keys, &string_like(v, ""));
            }
            return Ok(());
        };
        let k = self.key_line(at).expect("found as a key");
        if !k.value.is_empty() {
            return Err(TextError::NotBlock(path.join(".")));
        }
        let children = self.children(Some(at));
        let list = children.first().is_some_and(|&c| self.is_item(c));
        if !list {
            return match (self.find_child(Some(at), name), value) {
                (Some(j), Some(v)) => {
                    let line = self.lines[j].clone();
                    let k = parse_key_line(&line).expect("found as a key");
                    let mut l = line.clone();
                    l.replace_range(k.span.0..k.span.1, &string_like(v, k.value));
                    self.lines[j] = l;
                    Ok(())
                }
                (Some(j), None) => {
                    let end = self.block_end(j);
                    self.lines.drain(j..end);
                    Ok(())
                }
                (None, Some(v)) => {
                    self.insert_path(at, &[&quote_key(name)], &string_like(v, ""));
                    Ok(())
                }
                (None, None) => Ok(()),
            };
        }
        let item = children.iter().copied().find(|&j| {
            let (raw, _) = item_value(&self.lines[j]);
            let text = unquote(raw);
            text.split_once('=').map_or(text.as_str(), |(n, _)| n) == name
        });
        match (item, value) {
            (Some(j), Some(v)) => {
                let line = self.lines[j].clone();
                let (raw, start) = item_value(&line);
                let new = scalar_like(&format!("{name}={v}"), raw);
                let mut l = line.clone();
                l.replace_range(start..start + raw.len(), &new);
                self.lines[j] = l;
            }
            (Some(j), None) => {
                self.lines.remove(j);
            }
            (None, Some(v)) => {
                let last = *children.last().expect("a list has items");
                let pad = " ".repeat(self.indent(last));
                let new = scalar_like(&format!("{name}={v}"), "");
                self.lines
                    .insert(self.last_in_block(last) + 1, format!("{pad}- {new}"));
            }
            (None, None) => {}
        }
        Ok(())
    }

    /// Replaces the short-syntax items of `ports` that publish `container`
    /// (`80/tcp`) by `items`.
    pub fn set_port(
        &mut self,
        svc: usize,
        container: &str,
        items: &[String],
    ) -> Result<(), TextError> {
        let Some(at) = self.find_child(Some(svc), "ports") else {
            if !items.is_empty() {
                let indent = self.child_indent(svc);
                let pos = self.last_in_block(svc) + 1;
                let pad = " ".repeat(indent);
                let mut lines = vec![format!("{pad}ports:")];
                let inner = " ".repeat(indent + self.step());
                lines.extend(items.iter().map(|i| format!("{inner}- \"{i}\"")));
                self.lines.splice(pos..pos, lines);
            }
            return Ok(());
        };
        if !self.key_line(at).expect("a key").value.is_empty() {
            return Err(TextError::NotBlock("ports".into()));
        }
        let children = self.children(Some(at));
        let mut matching = Vec::new();
        for &j in &children {
            let (raw, _) = item_value(&self.lines[j]);
            if parse_key_line(raw).is_some() {
                return Err(TextError::LongSyntax("ports".into()));
            }
            if port_of(&unquote(raw)) == normal_port(container) {
                matching.push(j);
            }
        }
        let (pad, quote_like) = match children.first() {
            Some(&c) => (
                " ".repeat(self.indent(c)),
                item_value(&self.lines[c]).0.to_string(),
            ),
            None => (" ".repeat(self.child_indent(at)), "\"\"".to_string()),
        };
        let new: Vec<String> = items
            .iter()
            .map(|i| format!("{pad}- {}", scalar_like(i, &quote_like)))
            .collect();
        let pos = match matching.first() {
            Some(&first) => first,
            None => self.last_in_block(at) + 1,
        };
        for j in matching.iter().rev() {
            self.lines.remove(*j);
        }
        self.lines.splice(pos..pos, new);
        Ok(())
    }
}

/// `key: value # comment` split; `None` for a line that is not a key.
fn parse_key_line(line: &str) -> Option<KeyLine<'_>> {
    let start = line.len() - line.trim_start().len();
    let rest = &line[start..];
    let (key, after) = if let Some(q) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let close = rest[1..].find(q)? + 1;
        (rest[1..close].to_string(), start + close + 1)
    } else {
        let colon = rest
            .char_indices()
            .find(|&(i, c)| c == ':' && rest[i + 1..].chars().next().is_none_or(|n| n == ' '))?
            .0;
        (rest[..colon].to_string(), start + colon)
    };
    if key.starts_with("- ") || key.starts_with('#') {
        return None;
    }
    let tail = line.get(after..)?.strip_prefix(':')?;
    let vstart = after + 1 + (tail.len() - tail.trim_start().len());
    let value_and_comment = &line[vstart..];
    let vlen = comment_start(value_and_comment).unwrap_or(value_and_comment.len());
    let value = value_and_comment[..vlen].trim_end();
    Some(KeyLine {
        key,
        value,
        span: (vstart, vstart + value.len()),
    })
}

/// Where a ` # comment` starts in a value, outside quotes.
fn comment_start(s: &str) -> Option<usize> {
    let mut quote = None;
    let mut prev = ' ';
    for (i, c) in s.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if (c == '"' || c == '\'') && i == 0 => quote = Some(c),
            None if c == '#' && (prev == ' ' || i == 0) => return Some(i),
            None => {}
        }
        prev = c;
    }
    None
}

/// A list item's value (without `- ` and the comment), and where it starts.
fn item_value(line: &str) -> (&str, usize) {
    let start = line.len() - line.trim_start().len() + 2;
    let rest = line.get(start..).unwrap_or("");
    let end = comment_start(rest).unwrap_or(rest.len());
    (rest[..end].trim_end(), start.min(line.len()))
}

fn is_multiline(value: &str) -> bool {
    value.starts_with('|')
        || value.starts_with('>')
        || value.starts_with('{')
        || value.starts_with('[')
        || (value.starts_with('"') && !(value.len() > 1 && value.ends_with('"')))
        || (value.starts_with('\'') && !(value.len() > 1 && value.ends_with('\'')))
}

/// A scalar's text without its quotes (escapes of double quotes undone for `\"` and `\\`).
pub fn unquote(raw: &str) -> String {
    if raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"') {
        raw[1..raw.len() - 1]
            .replace("\\\"", "\"")
            .replace("\\\\", "\\")
    } else if raw.len() >= 2 && raw.starts_with('\'') && raw.ends_with('\'') {
        raw[1..raw.len() - 1].replace("''", "'")
    } else {
        raw.to_string()
    }
}

/// `value` written as YAML, quoted like `like` (the value it replaces):
/// the same quotes, else plain where plain reads back the same string.
pub fn scalar_like(value: &str, like: &str) -> String {
    let double = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
    if like.starts_with('"') {
        return double(value);
    }
    if like.starts_with('\'') {
        return format!("'{}'", value.replace('\'', "''"));
    }
    if plain_safe(value) {
        value.to_string()
    } else {
        double(value)
    }
}

/// A value that must read back as a string (an `environment` or `labels`
/// entry): like [`scalar_like`], and a plain number quoted.
fn string_like(value: &str, like: &str) -> String {
    let plain = !(like.starts_with('"') || like.starts_with('\''));
    if plain && value.parse::<f64>().is_ok() {
        scalar_like(value, "\"")
    } else {
        scalar_like(value, like)
    }
}

/// Whether `v` reads back as the same string when written plain.
fn plain_safe(v: &str) -> bool {
    let special_start = |c: char| "-?:,[]{}#&*!|>'\"%@`~ ".contains(c);
    let words = [
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
    ];
    !v.is_empty()
        && !v.starts_with(special_start)
        && !v.ends_with(' ')
        && !v.contains(": ")
        && !v.contains(" #")
        && !v.ends_with(':')
        && !v.contains('\n')
        && !v.contains('$')
        && !words.contains(&v.to_ascii_lowercase().as_str())
}

/// A mapping key as written (quoted when plain would not read back).
fn quote_key(k: &str) -> String {
    if plain_safe(k) && !k.contains(':') {
        k.to_string()
    } else {
        scalar_like(k, "\"")
    }
}

/// The container port of a short-syntax port (`127.0.0.1:8080:80/udp` -> `80/udp`).
fn port_of(item: &str) -> String {
    let container = item.rsplit(':').next().unwrap_or(item);
    normal_port(container)
}

/// `80` -> `80/tcp`.
fn normal_port(p: &str) -> String {
    if p.contains('/') {
        p.to_string()
    } else {
        format!("{p}/tcp")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# the shop
services:
  web:
    image: nginx:1.25 # pinned
    environment:
      A: \"1\"
      # a comment kept
      B: two
    ports:
      - \"8080:80\"
  api:
    image: 'api:1'
    environment:
      - A=1
      - B=2
";

    fn edit(f: impl FnOnce(&mut Text, usize), service: &str) -> String {
        let mut t = Text::new(FILE);
        let svc = t.service(service).unwrap();
        f(&mut t, svc);
        t.render()
    }

    #[test]
    fn a_scalar_keeps_its_comment_and_quotes() {
        let out = edit(
            |t, s| t.set_scalar(s, &["image"], "nginx:1.27").unwrap(),
            "web",
        );
        assert!(out.contains("    image: nginx:1.27 # pinned\n"), "{out}");
        let out = edit(|t, s| t.set_scalar(s, &["image"], "api:2").unwrap(), "api");
        assert!(out.contains("    image: 'api:2'\n"), "{out}");
        assert_eq!(out.lines().count(), FILE.lines().count());
    }

    #[test]
    fn a_missing_key_is_inserted_with_its_siblings_indentation() {
        let out = edit(
            |t, s| {
                t.set_scalar(s, &["deploy", "resources", "limits", "memory"], "64m")
                    .unwrap()
            },
            "web",
        );
        assert!(
            out.contains(
                "      - \"8080:80\"\n    deploy:\n      resources:\n        limits:\n          memory: 64m\n  api:"
            ),
            "{out}"
        );
        let out = edit(|t, s| t.set_scalar(s, &["restart"], "no").unwrap(), "api");
        assert!(out.ends_with("      - B=2\n    restart: \"no\"\n"), "{out}");
    }

    #[test]
    fn environment_as_a_mapping_and_as_a_list() {
        let out = edit(
            |t, s| {
                t.set_entry(s, &["environment"], "A", Some("3")).unwrap();
                t.set_entry(s, &["environment"], "B", None).unwrap();
                t.set_entry(s, &["environment"], "C", Some("x y")).unwrap();
            },
            "web",
        );
        assert!(
            out.contains("      A: \"3\"\n      C: x y\n      # a comment kept\n    ports:"),
            "{out}"
        );
        let out = edit(
            |t, s| {
                t.set_entry(s, &["environment"], "B", Some("5")).unwrap();
                t.set_entry(s, &["environment"], "C", Some("6")).unwrap();
                t.set_entry(s, &["environment"], "A", None).unwrap();
            },
            "api",
        );
        assert!(
            out.ends_with("    environment:\n      - B=5\n      - C=6\n"),
            "{out}"
        );
        let out = edit(
            |t, s| t.set_entry(s, &["labels"], "team", Some("web")).unwrap(),
            "api",
        );
        assert!(
            out.ends_with("      - B=2\n    labels:\n      team: web\n"),
            "{out}"
        );
    }

    #[test]
    fn ports_by_container_port() {
        let out = edit(
            |t, s| {
                t.set_port(s, "80/tcp", &["127.0.0.1:9090:80".into()])
                    .unwrap()
            },
            "web",
        );
        assert!(
            out.contains("    ports:\n      - \"127.0.0.1:9090:80\"\n  api:"),
            "{out}"
        );
        let out = edit(|t, s| t.set_port(s, "80/tcp", &[]).unwrap(), "web");
        assert!(out.contains("    ports:\n  api:"), "{out}");
        let out = edit(
            |t, s| t.set_port(s, "53/udp", &["53:53/udp".into()]).unwrap(),
            "api",
        );
        assert!(
            out.ends_with("      - B=2\n    ports:\n      - \"53:53/udp\"\n"),
            "{out}"
        );
    }

    #[test]
    fn flow_style_is_refused() {
        let mut t = Text::new("services:\n  a:\n    environment: {A: 1}\n");
        let svc = t.service("a").unwrap();
        assert_eq!(
            t.set_entry(svc, &["environment"], "A", Some("2")),
            Err(TextError::NotBlock("environment".into()))
        );
        assert_eq!(t.service("b"), Err(TextError::NoService("b".into())));
    }
}
