//! The environment of a service: `environment:` and `env_file:` (plain or
//! age-encrypted), merged by Compose's rules; the values observed by the
//! masker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::service::Deferred;
use super::variables::Reference;
use super::{Cx, idx, join};
use crate::spec::diag::{Diag, Mark};
use crate::spec::dotenv;
use crate::spec::yaml::{Node, Value};

impl Cx<'_, '_> {
    /// Loads `environment` and `env_file`, read once every key is seen. `false` for a key of another group.
    pub(super) fn environment_key(
        &mut self,
        key: &str,
        n: &Node,
        p: &str,
        later: &mut Deferred,
    ) -> bool {
        match key {
            "env_file" => later.env_files = self.env_files(n, p),
            "environment" => later.environment = self.list_or_dict(n, p, true),
            _ => return false,
        }
        true
    }

    fn env_files(&mut self, node: &Node, path: &str) -> Vec<(PathBuf, bool, Mark, String)> {
        let items: Vec<(usize, &Node)> = match &node.value {
            Value::Seq(items) => items.iter().enumerate().collect(),
            Value::Null => Vec::new(),
            _ => vec![(0, node)],
        };
        let mut out = Vec::new();
        for (i, item) in items {
            let p = if node.as_seq().is_some() {
                idx(path, i)
            } else {
                path.to_string()
            };
            let (file, required) = match &item.value {
                Value::Map(_) => {
                    let (fields, _) = self.fields(item, &p, &["path", "required", "format"], &[]);
                    let mut file = None;
                    let mut required = true;
                    for (k, n, _) in fields {
                        match k {
                            "path" => file = self.string(n, &join(&p, "path")),
                            "required" => {
                                required = self.boolean(n, &join(&p, "required")).unwrap_or(true)
                            }
                            "format" => {
                                if self.string(n, &join(&p, "format")).as_deref() != Some("raw") {
                                    self.err(
                                        n.mark,
                                        &join(&p, "format"),
                                        "only `format: raw` is known besides the default",
                                    )
                                    .hint("remove `format:`, or write `format: raw`");
                                }
                            }
                            _ => unreachable!(),
                        }
                    }
                    let Some(file) = file else {
                        self.err(item.mark, &p, "an env_file entry needs `path:`")
                            .hint("add `path:` with the file, e.g. `path: ./web.env`");
                        continue;
                    };
                    (file, required)
                }
                _ => match self.string(item, &p) {
                    Some(f) => (f, true),
                    None => continue,
                },
            };
            out.push((PathBuf::from(self.host_path(&file)), required, item.mark, p));
        }
        out
    }

    /// env_file values, then `environment:` over them; `- NAME` entries take
    /// their value from the project environment (Compose's rule).
    pub(super) fn environment(
        &mut self,
        service: &str,
        env_files: Vec<(PathBuf, bool, Mark, String)>,
        environment: BTreeMap<String, Option<String>>,
    ) -> BTreeMap<String, Option<String>> {
        // `- NAME` entries take their value from the project environment.
        let environment: BTreeMap<String, Option<String>> = environment
            .into_iter()
            .map(|(k, v)| {
                let v = v.or_else(|| self.vars.get(&k).cloned());
                (k, v)
            })
            .collect();
        // Compose parses each env_file into a map that already holds the
        // service's environment and the earlier env_files; lookups go to the
        // project environment first, then the service's environment.
        let mut acc: indexmap::IndexMap<String, String> = environment
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
            .collect();
        for (file, required, mark, path) in env_files {
            match self.input.files.read(&file) {
                Ok(Some(bytes)) => {
                    self.env_file(service, &file, mark, &path, bytes, &environment, &mut acc);
                }
                Ok(None) if !required => {}
                Ok(None) => {
                    self.err(
                        mark,
                        &path,
                        format!("env file {} not found", file.display()),
                    )
                    .hint("create the file, or mark it optional with `required: false`");
                }
                Err(e) => {
                    let hint = crate::source::read_hint(
                        &e,
                        "point env_file at a readable file: not a directory, and check its permissions",
                    );
                    self.err(
                        mark,
                        &path,
                        format!("cannot read env file {}: {e}", file.display()),
                    )
                    .hint(hint);
                }
            }
        }
        // `environment:` wins over env_file values.
        let mut out: BTreeMap<String, Option<String>> =
            acc.into_iter().map(|(k, v)| (k, Some(v))).collect();
        out.extend(environment);
        for (k, v) in &out {
            if let Some(v) = v {
                self.masker.observe(k, v);
            }
        }
        out
    }

    /// One env file read (`bytes`): decrypted when it is `*.age`, parsed
    /// into `acc` by Compose's rules, its secret entries recorded; problems
    /// reported at `path`, its key.
    #[allow(clippy::too_many_arguments)] // the service, the file and where it is named, and the maps
    fn env_file(
        &mut self,
        service: &str,
        file: &Path,
        mark: Mark,
        path: &str,
        bytes: Vec<u8>,
        environment: &BTreeMap<String, Option<String>>,
        acc: &mut indexmap::IndexMap<String, String>,
    ) {
        let shown = self.shown(file);
        if let Some(why) = crate::spec::age::sops_marker(file, &bytes) {
            self.err(mark, path, format!("{shown}: {why}"))
                .hint(crate::spec::age::SOPS_HINT);
            return;
        }
        let encrypted = crate::spec::age::is_encrypted(file);
        let bytes = if encrypted {
            match crate::spec::age::decrypt_text(self.input.age, &bytes) {
                Ok(text) => text.into_bytes(),
                Err(e) => {
                    let hint = e.hint();
                    self.err(mark, path, format!("cannot decrypt env file {shown}: {e}"))
                        .hint(hint);
                    return;
                }
            }
        } else {
            bytes
        };
        let Ok(text) = String::from_utf8(bytes) else {
            self.err(
                mark,
                path,
                format!("env file {} is not UTF-8 text", file.display()),
            )
            .hint("save the env file as UTF-8");
            return;
        };
        let (vars, env) = (self.vars, environment);
        let lookup = |k: &str| {
            vars.get(k)
                .cloned()
                .or_else(|| env.get(k).cloned().flatten())
        };
        if encrypted {
            // Every variable of an encrypted env file is secret, whatever its name.
            if let Ok(vars) = dotenv::parse(&text, &lookup) {
                for (k, v) in &vars {
                    self.masker.add_name(k);
                    self.masker.add_value(v);
                }
            }
        }
        let parsed = dotenv::parse_into(&text, acc, &lookup);
        // A line that interpolates a variable: its entry may be built from a secret.
        for line in text.lines().filter(|_| parsed.is_ok()) {
            let names = crate::spec::interpolate::referenced_variables(line);
            let Some((key, _)) = line.split_once('=').filter(|_| !names.is_empty()) else {
                continue;
            };
            let key = key.trim().trim_start_matches("export ").trim();
            self.references.push(Reference {
                at: ["services", service, "environment", key]
                    .map(String::from)
                    .to_vec(),
                names,
                raw: line.to_string(),
                value: acc.get(key).cloned().unwrap_or_default(),
            });
        }
        if let Err(e) = parsed {
            // The line number only: the message of a decrypted file may quote it.
            let message = if encrypted {
                "invalid line in the decrypted env file".to_string()
            } else {
                e.message
            };
            self.diags.push(
                Diag::error(file, Mark::new(e.line, 1), "", message)
                    .hint(format!("fix this line of the env file (used by {path})")),
            );
        }
    }
}
