//! Accept into git: a patch that `git apply` takes, editing the Compose file
//! of a stack (or the `.env` file a value came from) so that git says what
//! the host runs, changing only the lines concerned.
//!
//! Which Compose key a changed line goes to is the key groups' business
//! ([`crate::keys::compose_edits`]); this module finds the lines
//! ([`super::text`]), follows a value written as `${VAR}` to `.env`, keeps
//! secrets out (a value the masker hides is never written: the patch names
//! the variable to change instead) and lists what has no Compose form.
//! Pure: files are read through [`crate::source::Files`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::text::{Text, TextError, scalar_like, unquote};
use crate::diff::{self, ContainerConfig};
use crate::keys::{ComposeEdit, ComposeOp};
use crate::source::Files;
use crate::spec::model::Stack;
use crate::spec::secrets::Masker;

/// One service's drift, as the patch needs it.
pub struct ServiceDrift<'a> {
    pub stack: &'a Stack,
    pub service: &'a str,
    /// The live container's config, aligned to the desired one (`None`: no container).
    pub live: Option<ContainerConfig>,
    pub desired: ContainerConfig,
    /// How many containers of the service the host has.
    pub running: u32,
    /// Drift that is a state, not a setting (`stopped by hand`), in words.
    pub states: Vec<String>,
}

/// A field that the patch does not write, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unwritten {
    pub stack: String,
    pub service: String,
    /// The field line (`memory swap`, `env DB_PASSWORD`), or the state.
    pub field: String,
    pub why: Why,
}

/// Why a field is not in the patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Why {
    /// Compose has no key for it (or it is a state, like stopped).
    NotExpressible,
    /// Its value is secret: change this variable (or secret) instead.
    Secret { change: String },
    /// It must be edited by hand, for this reason.
    ByHand { reason: String },
}

impl std::fmt::Display for Unwritten {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = format!("{}/{}: {}", self.stack, self.service, self.field);
        match &self.why {
            Why::NotExpressible => write!(f, "{at}: not expressible in Compose"),
            Why::Secret { change } => write!(
                f,
                "{at}: the value on the host is secret and is not written; change {change} instead"
            ),
            Why::ByHand { reason } => write!(f, "{at}: {reason}"),
        }
    }
}

/// The patch for some drifted services.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Patch {
    /// `stack/service: field, field` for what the patch writes.
    pub written: Vec<String>,
    pub unwritten: Vec<Unwritten>,
    /// How to apply it, when not with a plain `git apply`.
    pub notes: Vec<String>,
    /// The unified diff of every file (`--- a/…`, `+++ b/…`), paths relative
    /// to the repository root; empty when nothing is written.
    pub diff: String,
    /// The files as the patch leaves them, by path (read them through
    /// [`super::Patched`] to load the repository as it will be).
    #[serde(skip)]
    pub edited: BTreeMap<PathBuf, String>,
}

impl Patch {
    /// The patch as `git apply` reads it: a comment header, then the diff.
    pub fn to_text(&self) -> String {
        self.to_text_as(
            "drift --patch: makes git say what this host runs",
            "accepts",
        )
    }

    /// The patch as `git apply` reads it, under `# plimsoll <title>`, each
    /// written change as `# <verb> stack/service: …`.
    pub fn to_text_as(&self, title: &str, verb: &str) -> String {
        let mut out = format!("# plimsoll {title}\n");
        for w in &self.written {
            out.push_str(&format!("# {verb} {w}\n"));
        }
        for u in &self.unwritten {
            out.push_str(&format!("# {u}\n"));
        }
        for n in &self.notes {
            out.push_str(&format!("# {n}\n"));
        }
        if self.diff.is_empty() {
            out.push_str("# nothing to write\n");
        }
        out.push_str(&self.diff);
        out
    }

    pub fn is_empty(&self) -> bool {
        self.diff.is_empty()
    }

    /// Adds the edit of one file (`before`: its text, `None` for a new
    /// file) to the diff, masked, and to [`Patch::edited`]; nothing when
    /// the text is unchanged. `shown` is its path in the diff.
    pub(crate) fn add_file(
        &mut self,
        path: &Path,
        before: Option<&str>,
        after: &str,
        shown: &Path,
        masker: &Masker,
    ) {
        if before == Some(after) {
            return;
        }
        self.edited.insert(path.to_path_buf(), after.to_string());
        let name = shown.display().to_string();
        let old = if before.is_some() {
            format!("a/{name}")
        } else {
            "/dev/null".to_string()
        };
        let diff = |radius| {
            let text = similar::TextDiff::from_lines(before.unwrap_or(""), after)
                .unified_diff()
                .context_radius(radius)
                .header(&old, &format!("b/{name}"))
                .to_string();
            match before {
                Some(_) => text,
                None => format!("diff --git a/{name} b/{name}\nnew file mode 100644\n{text}"),
            }
        };
        let mut text = diff(3);
        // Lines around an edit (an `.env` line beside a password) may hold
        // a secret: then the diff of that file goes without context.
        if masker.mask(&text) != text {
            text = diff(0);
            self.notes.push(format!(
                "the lines around the edits of {name} hold secret values, left out: apply with `git apply --unidiff-zero`"
            ));
        }
        let masked = masker.mask(&text).into_owned();
        if masked != text {
            self.unwritten.push(Unwritten {
                stack: String::new(),
                service: String::new(),
                field: name.clone(),
                why: Why::ByHand {
                    reason: "the lines edited hold secret values, masked here: this part of the patch does not apply; make the edits by hand".into(),
                },
            });
        }
        self.diff.push_str(&masked);
    }
}

/// A file being edited: its text as read and as edited.
struct Edited {
    before: String,
    text: Text,
    shown: PathBuf,
}

/// The patch for `services`, reading their files through `files`.
pub fn patch(services: &[ServiceDrift<'_>], masker: &Masker, files: &dyn Files) -> Patch {
    let mut p = Patch::default();
    let mut edited: BTreeMap<PathBuf, Edited> = BTreeMap::new();
    for s in services {
        let mut cx = Cx {
            s,
            masker,
            files,
            edited: &mut edited,
            unwritten: &mut p.unwritten,
            written: Vec::new(),
        };
        cx.service();
        if !cx.written.is_empty() {
            let w = cx.written.join(", ");
            p.written
                .push(format!("{}/{}: {w}", s.stack.name, s.service));
        }
    }
    for (path, e) in &edited {
        p.add_file(path, Some(&e.before), &e.text.render(), &e.shown, masker);
    }
    p
}

/// Building the patch of one service.
struct Cx<'a, 'b> {
    s: &'a ServiceDrift<'a>,
    masker: &'a Masker,
    files: &'a dyn Files,
    edited: &'b mut BTreeMap<PathBuf, Edited>,
    unwritten: &'b mut Vec<Unwritten>,
    written: Vec<String>,
}

impl Cx<'_, '_> {
    fn note(&mut self, field: &str, why: Why) {
        self.unwritten.push(Unwritten {
            stack: self.s.stack.name.clone(),
            service: self.s.service.to_string(),
            field: field.to_string(),
            why,
        });
    }

    fn service(&mut self) {
        let s = self.s;
        for state in &s.states {
            self.note(state, Why::NotExpressible);
        }
        let mut edits = Vec::new();
        if let Some(live) = &s.live {
            let changed: BTreeSet<String> = diff::compare(&live.fields(), &s.desired.fields())
                .into_iter()
                .map(|c| match c {
                    diff::Change::Added { key, .. }
                    | diff::Change::Removed { key, .. }
                    | diff::Change::Changed { key, .. } => key,
                })
                .filter(|k| k != "name" && !(k == "image id" && live.image != s.desired.image))
                .collect();
            let (e, rest) = crate::keys::compose_edits(live, &changed);
            edits = e;
            for field in rest {
                self.note(&field, Why::NotExpressible);
            }
        }
        if s.running > 0 && s.running != s.stack.services[s.service].replicas() {
            edits.push(crate::keys::basics::replicas_edit(s.running));
        }
        if edits.is_empty() {
            return;
        }
        if self.s.stack.source.mark(s.service, "").file != 0 {
            for e in &edits {
                self.note(
                    &e.field,
                    Why::ByHand {
                        reason: "the service is written in another file (override, include or extends): edit it by hand".into(),
                    },
                );
            }
            return;
        }
        for e in &edits {
            if let Err(why) = self.edit(e) {
                self.note(&e.field, why);
            } else {
                self.written.push(e.field.clone());
            }
        }
    }

    /// The value an edit writes, if any (`None`: a removal).
    fn value(e: &ComposeEdit) -> Option<String> {
        match &e.op {
            ComposeOp::Set(v) => Some(v.clone()),
            ComposeOp::Entry { value, .. } => value.clone(),
            ComposeOp::Unset => None,
            ComposeOp::Port { items, .. } => Some(items.join(" ")),
        }
    }

    /// Whether the value of `e` is secret: from a secret variable, or holding a known secret.
    fn secret(&self, e: &ComposeEdit, value: Option<&str>) -> bool {
        let shown = diff::Shown {
            masker: self.masker,
            stack: &self.s.stack.name,
            service: self.s.service,
        };
        if shown.hides(&e.field) {
            return true;
        }
        if let ComposeOp::Entry { name, .. } = &e.op
            && e.field.starts_with("env ")
            && self.masker.is_secret_name(name)
        {
            return true;
        }
        value.is_some_and(|v| self.masker.mask(v) != v)
    }

    fn compose_file(&self) -> PathBuf {
        let src = &self.s.stack.source;
        if src.file.is_absolute() {
            src.file.clone()
        } else {
            src.abs_dir
                .join(src.file.file_name().unwrap_or(src.file.as_os_str()))
        }
    }

    /// Reads a file for editing (once).
    fn open(&mut self, path: &Path) -> Result<&mut Edited, Why> {
        if !self.edited.contains_key(path) {
            let bytes = self
                .files
                .read(path)
                .ok()
                .flatten()
                .ok_or_else(|| Why::ByHand {
                    reason: format!("{} cannot be read", path.display()),
                })?;
            let before = String::from_utf8(bytes).map_err(|_| Why::ByHand {
                reason: format!("{} is not UTF-8", path.display()),
            })?;
            let src = &self.s.stack.source;
            let base = src.root.as_deref().unwrap_or(&src.abs_dir);
            let shown = path.strip_prefix(base).unwrap_or(path).to_path_buf();
            let text = Text::new(&before);
            self.edited.insert(
                path.to_path_buf(),
                Edited {
                    before,
                    text,
                    shown,
                },
            );
        }
        Ok(self.edited.get_mut(path).expect("inserted"))
    }

    /// Makes one edit, in the Compose file or the `.env` its value came from.
    fn edit(&mut self, e: &ComposeEdit) -> Result<(), Why> {
        let value = Self::value(e);
        let file = self.compose_file();
        let service = self.s.service;
        let by_hand = |t: TextError| Why::ByHand {
            reason: t.to_string(),
        };
        let doc = &self.open(&file)?.text;
        let svc = doc.service(service).map_err(by_hand)?;
        let at: Vec<&str> = doc.written(svc, &e.at).unwrap_or(&e.at[0]).to_vec();
        let raw = match &e.op {
            ComposeOp::Entry { name, .. } => doc.entry_raw(svc, &at, name),
            ComposeOp::Set(_) | ComposeOp::Unset => doc.value_at(svc, &at),
            ComposeOp::Port { .. } => None,
        };
        let reference = raw.as_deref().and_then(|r| one_reference(&unquote(r)));
        if self.secret(e, value.as_deref()) {
            let change = match (&reference, &e.op) {
                (Some((_, var, _)), _) => format!("the variable {var}"),
                (None, ComposeOp::Entry { name, .. })
                    if e.field.starts_with("env ") && self.masker.is_secret_name(name) =>
                {
                    format!("the variable {name} (or the secret it is set from)")
                }
                _ => "the secret it comes from".into(),
            };
            return Err(Why::Secret { change });
        }
        if let (Some((prefix, var, suffix)), Some(v)) = (reference, value.as_deref()) {
            return self.edit_variable(&prefix, &var, &suffix, v);
        }
        let doc = &mut self.open(&file)?.text;
        // Compose interpolates `$`: a literal one is written `$$`.
        let lit = |v: &str| v.replace('$', "$$");
        match &e.op {
            ComposeOp::Set(v) => doc.set_scalar(svc, &at, &lit(v)),
            ComposeOp::Unset => {
                doc.unset(svc, &at);
                Ok(())
            }
            ComposeOp::Entry { name, value } => {
                doc.set_entry(svc, &at, name, value.as_deref().map(lit).as_deref())
            }
            ComposeOp::Port { container, items } => doc.set_port(svc, container, items),
        }
        .map_err(by_hand)
    }

    /// A value written as `prefix${VAR}suffix`: VAR set in the stack's `.env`.
    fn edit_variable(
        &mut self,
        prefix: &str,
        var: &str,
        suffix: &str,
        value: &str,
    ) -> Result<(), Why> {
        let Some(inner) = value
            .strip_prefix(prefix)
            .and_then(|v| v.strip_suffix(suffix))
        else {
            return Err(Why::ByHand {
                reason: format!(
                    "written as `{prefix}${{{var}}}{suffix}`, which cannot read `{value}`: edit it by hand"
                ),
            });
        };
        if self.masker.is_secret_name(var) {
            return Err(Why::Secret {
                change: format!("the variable {var}"),
            });
        }
        let path = self.s.stack.source.abs_dir.join(".env");
        let edited = self.open(&path).ok();
        let Some(()) = edited.and_then(|e| set_dotenv(&mut e.text, var, inner)) else {
            return Err(Why::ByHand {
                reason: format!(
                    "comes from the variable {var}, which the stack's .env does not set: set {var}={inner} where this host sets it"
                ),
            });
        };
        Ok(())
    }
}

/// The one variable reference of a value (`nginx:${TAG:-1}` -> (`nginx:`,
/// `TAG`, ``)), when the rest is literal.
fn one_reference(raw: &str) -> Option<(String, String, String)> {
    let start = raw.find('$')?;
    let rest = &raw[start + 1..];
    let (name, end) = if let Some(body) = rest.strip_prefix('{') {
        let close = body.find('}')?;
        let inner = &body[..close];
        if inner.contains('$') || inner.contains('{') {
            return None;
        }
        let name_len = inner
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(inner.len());
        (&inner[..name_len], start + 2 + close + 1)
    } else {
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        (&rest[..len], start + 1 + len)
    };
    let suffix = &raw[end..];
    (!name.is_empty() && !suffix.contains('$')).then(|| {
        (
            raw[..start].to_string(),
            name.to_string(),
            suffix.to_string(),
        )
    })
}

/// Sets `VAR=value` on the line of `.env` that sets VAR (keeping `export `
/// and the quotes used); `None` when no line sets it.
fn set_dotenv(text: &mut Text, var: &str, value: &str) -> Option<()> {
    text.replace_line(|line| {
        let t = line.trim_start();
        let (export, body) = match t.strip_prefix("export ") {
            Some(b) => ("export ", b.trim_start()),
            None => ("", t),
        };
        let (name, old) = body.split_once('=')?;
        if name.trim_end() != var {
            return None;
        }
        let old = old.trim();
        let new = if old.starts_with('"') || old.starts_with('\'') {
            scalar_like(value, old)
        } else if value.contains([' ', '#', '"', '\'', '$']) {
            scalar_like(value, "'")
        } else {
            value.to_string()
        };
        Some(format!("{export}{var}={new}"))
    })
}

#[cfg(test)]
mod tests;
