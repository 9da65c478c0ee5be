//! Top-level `include:`, by Compose's rules (compose-go `loader/include.go`).
//!
//! Each entry (a path, or `{path, project_directory, env_file}` where `path`
//! may list override files after the first) is read through
//! [`crate::source::Files`], its own includes applied, interpolated with its
//! own variables (the including project's over the included `env_file`s,
//! default `<project_directory>/.env`), its relative paths made absolute
//! against its project directory (default: the directory of its first file),
//! and its services, networks, volumes, secrets and configs imported. A
//! service defined twice is an error; another resource defined twice must be
//! the same. An include cycle is an error naming the chain.
//!
//! The included tree is interpolated here, then every `$` is escaped again as
//! `$$`, because the converter interpolates the whole merged tree once more
//! with the including project's variables.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::diag::{Diag, Mark};
use super::interpolate::interpolate;
use super::merge;
use super::yaml::{self, Node, Value};
use crate::source::Files;

/// What resolving includes needs.
pub struct Includes<'a> {
    pub files: &'a dyn Files,
    /// Every file read for the stack; a mark's `file` indexes it. Index 0 is
    /// the stack's Compose file.
    pub sources: &'a mut Vec<PathBuf>,
    pub diags: &'a mut Vec<Diag>,
    /// The variables read from included env files, for the masker.
    pub seen: Vec<(String, String)>,
}

/// One entry of `include:`, read.
struct Entry {
    /// The files to include, absolute: the first, then those merged onto it.
    paths: Vec<PathBuf>,
    /// Their project directory: `project_directory`, else the first file's directory.
    project: PathBuf,
    /// Whether `project_directory` was given.
    project_dir_given: bool,
    /// `env_file` as written (interpolated); `None`: `<project>/.env`.
    env_files: Option<Vec<String>>,
}

impl Includes<'_> {
    /// Applies the `include:` of `root` (written in `sources[file]`, with
    /// `dir` its project directory, `vars` its variables, `chain` the files
    /// including it) and removes the key. `false` when something failed.
    pub fn apply(
        &mut self,
        root: &mut Node,
        dir: &Path,
        vars: &BTreeMap<String, String>,
        chain: &[PathBuf],
    ) -> bool {
        let Value::Map(entries) = &mut root.value else {
            return true;
        };
        let Some(at) = entries
            .iter()
            .position(|(k, _)| k.as_str() == Some("include"))
        else {
            return true;
        };
        let (_, include) = entries.remove(at);
        let file = self.file_of(include.mark);
        let items: Vec<Node> = match include.value {
            Value::Seq(items) => items,
            Value::Null => Vec::new(),
            _ => {
                self.diags.push(
                    Diag::error(&file, include.mark, "include", format!("expected a list, found {}", include.type_name()))
                        .hint("list the files to include: `include: [../common/compose.yaml]` or `- path: …`"),
                );
                return false;
            }
        };
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let key = format!("include[{i}]");
            ok &= self.one(root, item, &key, &file, dir, vars, chain);
        }
        ok
    }

    fn file_of(&self, mark: Mark) -> PathBuf {
        self.sources
            .get(mark.file as usize)
            .cloned()
            .unwrap_or_default()
    }

    /// [`Includes::err`] for a step that returns what it read.
    fn fail<T>(
        &mut self,
        file: &Path,
        mark: Mark,
        key: &str,
        msg: String,
        hint: &str,
    ) -> Option<T> {
        self.err(file, mark, key, msg, hint);
        None
    }

    /// "<what> <path> not found" (`error` is None) or "cannot read <what>
    /// <path>: <error>", reported at `at` (the including file, mark, key).
    fn fail_to_read<T>(
        &mut self,
        (file, mark, key): (&Path, Mark, &str),
        what: &str,
        path: &Path,
        error: Option<std::io::Error>,
        missing_hint: &str,
    ) -> Option<T> {
        match error {
            None => self.fail(
                file,
                mark,
                key,
                format!("{what} {} not found", path.display()),
                missing_hint,
            ),
            Some(e) => self.fail(
                file,
                mark,
                key,
                format!("cannot read {what} {}: {e}", path.display()),
                crate::source::read_hint(&e, "check that the file exists and is readable"),
            ),
        }
    }

    fn err(&mut self, file: &Path, mark: Mark, key: &str, msg: String, hint: &str) -> bool {
        self.diags
            .push(Diag::error(file, mark, key, msg).hint(hint.to_string()));
        false
    }

    #[allow(clippy::too_many_arguments)]
    fn one(
        &mut self,
        root: &mut Node,
        item: &Node,
        key: &str,
        file: &Path,
        dir: &Path,
        vars: &BTreeMap<String, String>,
        chain: &[PathBuf],
    ) -> bool {
        let Some(entry) = self.entry(item, key, file, dir, vars, chain) else {
            return false;
        };
        let Some(own) = self.own_vars(&entry, item, key, file, dir, vars) else {
            return false;
        };
        // Read, stamp and merge the included files.
        let Some(included) = self.read_included(&entry.paths, &own, item, key, file) else {
            return false;
        };
        let (main, project) = (&entry.paths[0], &entry.project);
        let mut included = included.unwrap_or_else(|| Node::new(Value::Null, item.mark));
        merge::strip_tags(&mut included);
        if !super::extends::apply(self, &mut included, main, project, &|k| own.get(k).cloned()) {
            return false;
        }
        let mut inner = chain.to_vec();
        inner.push(main.clone());
        if !self.apply(&mut included, project, &own, &inner) {
            return false;
        }
        let before = self.diags.len();
        self.interpolate(
            &mut included,
            "",
            &own,
            &mut super::interpolate::MAX_TOTAL_BYTES.clone(),
        );
        if self.diags.len() > before {
            return false;
        }
        resolve_paths(&mut included, project);
        self.import(root, included, key, file, item.mark)
    }

    /// Reads an entry of `include:` (a path, or `{path, project_directory,
    /// env_file}`); refuses a remote include and an include cycle.
    fn entry(
        &mut self,
        item: &Node,
        key: &str,
        file: &Path,
        dir: &Path,
        vars: &BTreeMap<String, String>,
        chain: &[PathBuf],
    ) -> Option<Entry> {
        let text = |n: &Node| -> Option<String> {
            let s = n.scalar_string()?;
            Some(interpolate(&s, &|k| vars.get(k).cloned()).unwrap_or(s))
        };
        let list = |n: Option<&Node>| -> Vec<String> {
            match n {
                None => Vec::new(),
                Some(n) => match &n.value {
                    Value::Seq(items) => items.iter().filter_map(text).collect(),
                    _ => text(n).into_iter().collect(),
                },
            }
        };
        let (paths, project_dir, env_files) = match &item.value {
            Value::Map(_) => {
                for (k, _) in item.as_map().unwrap_or_default() {
                    let name = k.scalar_string().unwrap_or_default();
                    if !["path", "project_directory", "env_file"].contains(&name.as_str()) {
                        return self.fail(
                            file,
                            k.mark,
                            &format!("{key}.{name}"),
                            format!("unknown key `{name}` in an include"),
                            "an include takes `path`, `project_directory` and `env_file`",
                        );
                    }
                }
                (
                    list(item.get("path")),
                    item.get("project_directory").and_then(text),
                    item.get("env_file").map(|n| list(Some(n))),
                )
            }
            _ => (list(Some(item)), None, None),
        };
        let Some(first) = paths.first() else {
            return self.fail(
                file,
                item.mark,
                key,
                "an include needs a path".into(),
                "write the file to include: `- ../common/compose.yaml` or `- path: ../common/compose.yaml`",
            );
        };
        if first.contains("://") || first.starts_with("git@") || first.starts_with("oci:") {
            return self.fail(
                file,
                item.mark,
                key,
                format!("a remote include (`{first}`) is not supported"),
                "keep the included file in the repository and include it by path",
            );
        }
        let paths: Vec<PathBuf> = paths.iter().map(|p| clean(&dir.join(p))).collect();
        let main = paths[0].clone();
        if chain.contains(&main) {
            let mut names: Vec<String> = chain.iter().map(|p| p.display().to_string()).collect();
            names.push(main.display().to_string());
            return self.fail(
                file,
                item.mark,
                key,
                format!("include cycle: {}", names.join(" includes ")),
                "remove one of the includes so that no file includes itself",
            );
        }
        let project = match &project_dir {
            Some(p) => clean(&dir.join(p)),
            None => main.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        Some(Entry {
            paths,
            project,
            project_dir_given: project_dir.is_some(),
            env_files,
        })
    }

    /// The included project's variables: the including project's win over
    /// its env files (`env_file`, else `<project_directory>/.env`).
    fn own_vars(
        &mut self,
        entry: &Entry,
        item: &Node,
        key: &str,
        file: &Path,
        dir: &Path,
        vars: &BTreeMap<String, String>,
    ) -> Option<BTreeMap<String, String>> {
        let mut own = vars.clone();
        let env_files: Vec<PathBuf> = match &entry.env_files {
            Some(list) => list
                .iter()
                .filter(|f| *f != "/dev/null")
                .map(|f| clean(&dir.join(f)))
                .collect(),
            None => vec![entry.project.join(".env")],
        };
        for env_file in &env_files {
            match self.files.read(env_file) {
                Ok(Some(bytes)) => {
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    match super::dotenv::parse(&text, &|k| vars.get(k).cloned()) {
                        Ok(map) => {
                            for (k, v) in map {
                                self.seen.push((k.clone(), v.clone()));
                                own.entry(k).or_insert(v);
                            }
                        }
                        Err(e) => {
                            return self.fail(
                                env_file,
                                Mark::new(e.line, 1),
                                "",
                                e.message.clone(),
                                "fix this line of the env file (KEY=value)",
                            );
                        }
                    }
                }
                Ok(None) if !entry.project_dir_given && env_files.len() == 1 => {}
                Ok(None) => {
                    return self.fail_to_read(
                        (file, item.mark, key),
                        "env file",
                        env_file,
                        None,
                        "fix the path of `env_file` (relative to the including file's directory)",
                    );
                }
                Err(e) => {
                    return self.fail_to_read(
                        (file, item.mark, key),
                        "env file",
                        env_file,
                        Some(e),
                        "",
                    );
                }
            }
        }
        Some(own)
    }

    /// Reads the files of an include, each stamped with its index in
    /// `sources`, merged in order.
    fn read_included(
        &mut self,
        paths: &[PathBuf],
        own: &BTreeMap<String, String>,
        item: &Node,
        key: &str,
        file: &Path,
    ) -> Option<Option<Node>> {
        let mut included: Option<Node> = None;
        for path in paths {
            let bytes = match self.files.read(path) {
                Ok(Some(b)) => b,
                Ok(None) => {
                    return self.fail_to_read(
                        (file, item.mark, key),
                        "included file",
                        path,
                        None,
                        "fix the path (relative to the including file's directory)",
                    );
                }
                Err(e) => {
                    return self.fail_to_read(
                        (file, item.mark, key),
                        "included file",
                        path,
                        Some(e),
                        "",
                    );
                }
            };
            let Ok(text) = String::from_utf8(bytes) else {
                return self.fail(
                    path,
                    Mark::default(),
                    "",
                    "the file is not valid UTF-8 text".into(),
                    "save the file as UTF-8",
                );
            };
            let mut node = match yaml::parse(&text, path) {
                Ok(n) => n,
                Err(d) => {
                    self.diags.push(d);
                    return None;
                }
            };
            self.sources.push(path.clone());
            merge::set_file(
                &mut node,
                u32::try_from(self.sources.len() - 1).unwrap_or(u32::MAX),
            );
            included = Some(match included {
                None => node,
                Some(base) => merge::merge(base, node, &|k| own.get(k).cloned()),
            });
        }
        Some(included)
    }

    /// Interpolates every string value and escapes `$` again (see the module docs).
    /// `budget`: the bytes the strings may still grow to together
    /// ([`super::interpolate::MAX_TOTAL_BYTES`]); past it, one error and no more.
    fn interpolate(
        &mut self,
        node: &mut Node,
        path: &str,
        vars: &BTreeMap<String, String>,
        budget: &mut usize,
    ) {
        match &mut node.value {
            Value::Str(s) => match interpolate(s, &|k| vars.get(k).cloned()) {
                Ok(v) if v.len() > *budget => {
                    *budget = 0;
                    let file = self.file_of(node.mark);
                    self.diags.push(
                        Diag::error(
                            &file,
                            node.mark,
                            path,
                            format!(
                                "the file's values interpolate to more than {} bytes (64 MiB) together",
                                super::interpolate::MAX_TOTAL_BYTES
                            ),
                        )
                        .hint("use long variables in fewer places: this looks like an attempt to exhaust memory"),
                    );
                }
                Ok(v) => {
                    *budget -= v.len();
                    *s = v.replace('$', "$$");
                }
                Err(e) => {
                    let file = self.file_of(node.mark);
                    self.diags.push(
                        Diag::error(&file, node.mark, path, e.to_string()).hint(
                            "set the variable in the included project's .env (or env_file) or the environment, or give it a default: ${VAR:-default}",
                        ),
                    );
                }
            },
            Value::Seq(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    if *budget == 0 {
                        return;
                    }
                    self.interpolate(item, &format!("{path}[{i}]"), vars, budget);
                }
            }
            Value::Map(entries) => {
                for (k, v) in entries.iter_mut() {
                    if *budget == 0 {
                        return;
                    }
                    let name = k.scalar_string().unwrap_or_default();
                    let p = if path.is_empty() {
                        name
                    } else {
                        format!("{path}.{name}")
                    };
                    self.interpolate(v, &p, vars, budget);
                }
            }
            _ => {}
        }
    }

    /// Adds the included resources to `root`.
    fn import(
        &mut self,
        root: &mut Node,
        included: Node,
        key: &str,
        file: &Path,
        mark: Mark,
    ) -> bool {
        let Value::Map(from) = included.value else {
            return true;
        };
        if !matches!(root.value, Value::Map(_)) {
            root.value = Value::Map(Vec::new());
        }
        let mut ok = true;
        for (k, section) in from {
            let name = k.scalar_string().unwrap_or_default();
            if !["services", "networks", "volumes", "secrets", "configs"].contains(&name.as_str()) {
                continue;
            }
            let Value::Map(items) = section.value else {
                continue;
            };
            let Value::Map(entries) = &mut root.value else {
                unreachable!()
            };
            let target = match entries
                .iter()
                .position(|(ek, _)| ek.as_str() == Some(&name))
            {
                Some(i) => &mut entries[i].1,
                None => {
                    entries.push((k.clone(), Node::new(Value::Map(Vec::new()), k.mark)));
                    &mut entries.last_mut().expect("just pushed").1
                }
            };
            if target.is_null() {
                target.value = Value::Map(Vec::new());
            }
            let Value::Map(existing) = &mut target.value else {
                continue;
            };
            for (ik, iv) in items {
                let item = ik.scalar_string().unwrap_or_default();
                match existing
                    .iter()
                    .find(|(ek, _)| ek.scalar_string().as_deref() == Some(&item))
                {
                    None => existing.push((ik, iv)),
                    Some((_, ev))
                        if name != "services"
                            && super::compose::to_json(ev) == super::compose::to_json(&iv) => {}
                    Some((ek, _)) => {
                        let kind = &name[..name.len() - 1];
                        let at = self.file_of(ik.mark);
                        let first = self.file_of(ek.mark);
                        self.diags.push(
                            Diag::error(
                                &at,
                                ik.mark,
                                format!("{name}.{item}"),
                                format!(
                                    "included by {}:{}:{} ({key}), this file defines {kind} `{item}` that {}:{} already defines",
                                    file.display(),
                                    mark.line,
                                    mark.col,
                                    first.display(),
                                    ek.mark.line
                                ),
                            )
                            .hint(format!("rename one of the two, or define the {kind} in one file only")),
                        );
                        ok = false;
                    }
                }
            }
        }
        ok
    }
}

/// A path with `.` and `..` components resolved lexically.
pub fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn is_relative(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('/') && !s.starts_with('~') && !s.contains("://")
}

fn absolute(node: &mut Node, dir: &Path) {
    if let Value::Str(s) = &mut node.value
        && is_relative(s)
    {
        *s = clean(&dir.join(&*s)).display().to_string();
    }
}

/// Makes the relative paths of an included file absolute against its project
/// directory (compose-go's `paths.ResolveRelativePaths`): build contexts, env
/// and label files, bind mount sources, secret and config files.
pub fn resolve_paths(root: &mut Node, dir: &Path) {
    let Value::Map(entries) = &mut root.value else {
        return;
    };
    for (k, section) in entries.iter_mut() {
        match k.as_str() {
            Some("services") => {
                for (_, svc) in section_items(section) {
                    resolve_service(svc, dir);
                }
            }
            Some("secrets" | "configs") => {
                for (_, obj) in section_items(section) {
                    if let Value::Map(fields) = &mut obj.value {
                        for (fk, fv) in fields.iter_mut() {
                            if fk.as_str() == Some("file") {
                                absolute(fv, dir);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

fn section_items(section: &mut Node) -> impl Iterator<Item = (&mut Node, &mut Node)> {
    let items: &mut [(Node, Node)] = match &mut section.value {
        Value::Map(m) => m,
        _ => &mut [],
    };
    items.iter_mut().map(|(k, v)| (k, v))
}

fn resolve_service(svc: &mut Node, dir: &Path) {
    let Value::Map(fields) = &mut svc.value else {
        return;
    };
    for (k, v) in fields.iter_mut() {
        match k.as_str() {
            Some("build") => match &mut v.value {
                Value::Str(_) => absolute(v, dir),
                Value::Map(b) => {
                    for (bk, bv) in b.iter_mut() {
                        if bk.as_str() == Some("context") {
                            absolute(bv, dir);
                        }
                    }
                }
                _ => {}
            },
            Some("env_file" | "label_file") => match &mut v.value {
                Value::Str(_) => absolute(v, dir),
                Value::Seq(items) => {
                    for item in items {
                        match &mut item.value {
                            Value::Str(_) => absolute(item, dir),
                            Value::Map(e) => {
                                for (ek, ev) in e.iter_mut() {
                                    if ek.as_str() == Some("path") {
                                        absolute(ev, dir);
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            },
            Some("volumes") => {
                if let Value::Seq(items) = &mut v.value {
                    for item in items {
                        match &mut item.value {
                            Value::Str(s) if s.starts_with('.') => {
                                let (source, rest) = s.split_once(':').unwrap_or((s.as_str(), ""));
                                let source = clean(&dir.join(source)).display().to_string();
                                *s = if rest.is_empty() {
                                    source
                                } else {
                                    format!("{source}:{rest}")
                                };
                            }
                            Value::Map(m) => {
                                let bind = m.iter().any(|(mk, mv)| {
                                    mk.as_str() == Some("type") && mv.as_str() == Some("bind")
                                });
                                if bind {
                                    for (mk, mv) in m.iter_mut() {
                                        if mk.as_str() == Some("source") {
                                            absolute(mv, dir);
                                        }
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_resolves_dots() {
        assert_eq!(clean(Path::new("/a/b/../c/./d")), PathBuf::from("/a/c/d"));
    }

    #[test]
    fn included_relative_paths_become_absolute() {
        let mut n = yaml::parse(
            "services:\n  a:\n    build: ./app\n    env_file: [a.env, {path: b.env}]\n    volumes: ['./data:/data:ro', 'named:/n', {type: bind, source: ../x, target: /x}]\nsecrets:\n  s: {file: ./s.txt}\n",
            Path::new("t.yaml"),
        )
        .unwrap();
        resolve_paths(&mut n, Path::new("/repo/common"));
        let j = super::super::compose::to_json(&n);
        let a = &j["services"]["a"];
        assert_eq!(a["build"], "/repo/common/app");
        assert_eq!(a["env_file"][0], "/repo/common/a.env");
        assert_eq!(a["env_file"][1]["path"], "/repo/common/b.env");
        assert_eq!(a["volumes"][0], "/repo/common/data:/data:ro");
        assert_eq!(a["volumes"][1], "named:/n");
        assert_eq!(a["volumes"][2]["source"], "/repo/x");
        assert_eq!(j["secrets"]["s"]["file"], "/repo/common/s.txt");
    }
}
