//! The basic keys of a service: `image`, `command`, `entrypoint`, `labels`,
//! `label_file`, `annotations`, the container's name, platform, working
//! directory and terminal (the engine's `basics` group, whose environment
//! is loaded in `environment`); and the keys that shape no container:
//! `profiles`, `pull_policy`, `scale`, `attach` and `x-plimsoll`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::service::Deferred;
use super::{Cx, join};
use crate::spec::diag::{Diag, Mark};
use crate::spec::dotenv;
use crate::spec::model::*;
use crate::spec::yaml::{self, Node, Value};

impl Cx<'_, '_> {
    /// Loads a basic key: what the service runs, how it is named and
    /// labelled, its terminal; and the keys that shape no container
    /// (`profiles`, `pull_policy`, `scale`, `attach`). `false` for a key of
    /// another group.
    pub(super) fn basic_key(
        &mut self,
        key: &str,
        n: &Node,
        p: &str,
        svc: &mut Service,
        later: &mut Deferred,
    ) -> bool {
        match key {
            "annotations" => svc.annotations = self.string_map(n, p),
            "attach" => svc.attach = self.boolean(n, p),
            "command" => svc.command = self.command(n, p),
            "container_name" => svc.container_name = self.opt_string(n, p),
            "entrypoint" => svc.entrypoint = self.command(n, p),
            "image" => svc.image = self.opt_string(n, p),
            "label_file" => {
                let files = self.string_or_list(n, p);
                later
                    .label_files
                    .extend(files.into_iter().map(|f| (f, n.mark, p.to_string())));
            }
            "labels" => svc.labels = self.string_map(n, p),
            "platform" => svc.platform = self.opt_string(n, p),
            "profiles" => svc.profiles = self.string_list(n, p),
            "pull_policy" => svc.pull_policy = self.pull_policy(n, p),
            "scale" => svc.scale = self.replicas(n, p),
            "stdin_open" => svc.stdin_open = self.boolean(n, p).unwrap_or(false),
            "tty" => svc.tty = self.boolean(n, p).unwrap_or(false),
            "working_dir" => svc.working_dir = self.opt_string(n, p),
            _ => return false,
        }
        true
    }

    /// `x-plimsoll:`, read into [`PlimsollService`] and taken out of the
    /// service's other `x-` fields.
    pub(super) fn plimsoll_extension(&mut self, node: &Node, path: &str, svc: &mut Service) {
        if let Some(x) = node.get("x-plimsoll") {
            match yaml::from_node::<PlimsollService>(x) {
                Ok(p) => svc.plimsoll = p,
                Err(e) => {
                    let path = if e.path.is_empty() {
                        join(path, "x-plimsoll")
                    } else {
                        format!("{path}.x-plimsoll.{}", e.path)
                    };
                    let mark = if e.mark == Mark::default() {
                        x.mark
                    } else {
                        e.mark
                    };
                    self.err(mark, &path, e.message)
                        .hint("see `plimsoll schema stack` for the fields x-plimsoll takes");
                }
            }
            svc.extensions.remove("x-plimsoll");
        }
    }

    pub(super) fn command(&mut self, node: &Node, path: &str) -> Option<Vec<String>> {
        match &node.value {
            Value::Null => None,
            Value::Seq(_) => Some(self.string_list(node, path)),
            _ => {
                let s = self.string(node, path)?;
                match shlex::split(&s) {
                    Some(words) => Some(words),
                    None => {
                        self.err(
                            node.mark,
                            path,
                            format!("cannot split `{s}` into words: unbalanced quotes"),
                        )
                        .hint("close the quote, or write the command as a list");
                        None
                    }
                }
            }
        }
    }

    fn pull_policy(&mut self, node: &Node, path: &str) -> Option<PullPolicy> {
        let s = self.string(node, path)?;
        let policy = match s.as_str() {
            "always" => PullPolicy::Always,
            "never" => PullPolicy::Never,
            "missing" | "if_not_present" => PullPolicy::Missing,
            "build" => PullPolicy::Build,
            "refresh" => {
                self.err(node.mark, path, "`pull_policy: refresh` names no period")
                    .hint("use daily, weekly or every_<duration> (e.g. every_12h) to pull again after that long");
                return None;
            }
            _ => match PullPolicy::refresh(&s) {
                Some(p @ PullPolicy::Refresh { period, .. }) if !period.is_zero() => p,
                _ => {
                    self.err(node.mark, path, format!("invalid pull_policy `{s}`"))
                        .hint("use always, never, missing, build, daily, weekly or every_<duration> (e.g. every_12h, every_1w2d)");
                    return None;
                }
            },
        };
        Some(policy)
    }

    /// Reads `label_file` entries (dotenv syntax) under the service's `labels`.
    pub(super) fn label_files(&mut self, svc: &mut Service, files: Vec<(String, Mark, String)>) {
        let mut from_files: BTreeMap<String, String> = BTreeMap::new();
        for (file, mark, path) in files {
            let host = PathBuf::from(self.host_path(&file));
            match self.input.files.read(&host) {
                Ok(Some(bytes)) => {
                    let Ok(text) = String::from_utf8(bytes) else {
                        self.err(
                            mark,
                            &path,
                            format!("label file {} is not UTF-8 text", host.display()),
                        )
                        .hint("save the label file as UTF-8");
                        continue;
                    };
                    match dotenv::parse(&text, &|_| None) {
                        Ok(map) => from_files.extend(map),
                        Err(e) => self.diags.push(
                            Diag::error(&host, Mark::new(e.line, 1), "", e.message)
                                .hint(format!("fix this line of the label file (used by {path})")),
                        ),
                    }
                }
                Ok(None) => {
                    self.err(
                        mark,
                        &path,
                        format!("label file {} not found", host.display()),
                    )
                    .hint("create the file, or remove it from label_file");
                }
                Err(e) => {
                    let hint = crate::source::read_hint(&e, "point label_file at a readable file");
                    self.err(
                        mark,
                        &path,
                        format!("cannot read label file {}: {e}", host.display()),
                    )
                    .hint(hint);
                }
            }
        }
        // `labels:` wins over the files; a later file over an earlier one.
        for (k, v) in from_files {
            svc.labels.entry(k).or_insert(v);
        }
    }
}
