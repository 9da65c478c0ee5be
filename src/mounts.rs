//! Repository files and directories that services bind-mount.
//!
//! Where the repository is checked out is not desired state, and what such
//! a file holds is:
//!
//! * **Re-rooting.** Each stack has a root, the repository root it was read
//!   from ([`desired_root`]). A live container's root is its
//!   `com.docker.compose.project.working_dir` label with the stack
//!   directory's path under the root stripped as a suffix ([`live_root`]).
//!   Before a desired container is compared with its live one (fields and
//!   spec hash), [`reroot`] moves every bind-mount source under the desired
//!   root, Compose's two path labels and `io.plimsoll.repository`, onto the live root
//!   ([`live_mapping`]; where the label does not end so, the stack
//!   directory onto the label: a stack directory applied on its own). The same
//!   repository checked out elsewhere then compares equal, and so does a
//!   container created by an older plimsoll from another checkout. A
//!   container is created from the paths of the checkout at hand.
//! * **Content.** Each bind-mount source inside the root that exists is
//!   hashed through [`Files`] ([`hash`]): a file is the SHA-256 of its
//!   bytes; a directory covers its files and symbolic links (path relative
//!   to the mount source, kind, content hash or link target), not empty
//!   directories or modes (git has neither), so a checkout and a commit of
//!   the same content give the same hash. The hashes are computed during
//!   observe (I/O, off the async threads), passed to `plan` as data
//!   ([`Mounts`]), and kept on a container as `io.plimsoll.mount.<target>`
//!   labels (bookkeeping: not in the spec hash). Only hashes are kept or
//!   shown, never content.
//!
//! Invariant: hashing reads only through [`Files`] and within [`MAX_ENTRIES`]
//! and [`MAX_BYTES`]; everything else here is pure.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::diff::ContainerConfig;
use crate::hostpath::PathMap;
use crate::names::labels;
use crate::source::{Files, Kind};
use crate::spec::diag::{Diag, Mark};
use crate::spec::model::Stack;

/// At most this many files, symbolic links and directories are hashed per
/// mounted directory (a repository is untrusted input).
pub const MAX_ENTRIES: usize = 20_000;
/// At most this many bytes are hashed per mounted file or directory.
pub const MAX_BYTES: u64 = 512 << 20;

/// The content of one mounted file or directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountHash {
    /// A directory (else a file).
    pub dir: bool,
    /// The content hash (hex), as in the `io.plimsoll.mount.<target>` label.
    pub hash: String,
    /// The source as written, relative to the stack directory (`nginx.conf`, `www`).
    pub shown: String,
    /// Mounted through `volumes:` (else a `secrets:`/`configs:` `file:`).
    pub volume: bool,
}

/// The files of a root, for [`run`] (an error: the root is gone; whatever
/// the caller's error, nothing under that root is compared).
pub type FilesFor<'a, 'f> = &'a dyn Fn(&Path) -> Result<Box<dyn Files + 'f>, RootGone>;

/// Why the files of a root cannot be read (a stored revision's checkout
/// removed): the caller's error, kept as the cause.
pub type RootGone = Box<dyn std::error::Error + Send + Sync>;

/// Mount target -> what is mounted there, for one service.
pub type ServiceMounts = BTreeMap<String, MountHash>;

/// By (stack, service): the content of the repository files its containers
/// mount, or why it cannot be read.
pub type Mounts = BTreeMap<(String, String), Result<ServiceMounts, MountError>>;

/// Why a service's mounted files cannot be compared: the hash error and
/// where the mount is written. The text is a located diagnostic (file,
/// line, key, hint), without its `error: ` prefix.
#[derive(Debug, Clone, Error)]
#[error("{}", self.diagnostic())]
pub struct MountError {
    /// The Compose file, place and key (`services.web.volumes`) of the mount.
    pub file: PathBuf,
    pub mark: Mark,
    pub key: String,
    /// Shared: one source mounted by several services fails once.
    #[source]
    pub source: std::sync::Arc<HashError>,
}

impl MountError {
    fn diagnostic(&self) -> String {
        let d = Diag::error(&self.file, self.mark, &self.key, self.source.to_string()).hint(
            format!("bind-mount a smaller directory (at most {MAX_ENTRIES} entries, {} MiB), or keep bulk data in a named volume", MAX_BYTES >> 20),
        );
        d.to_string().trim_start_matches("error: ").to_string()
    }
}

/// The desired side's root: the repository root a stack was read from. The
/// one place it is decided (a mapping to host paths replaces it here).
pub fn desired_root(stack: &Stack) -> Option<&Path> {
    stack.source.root.as_deref()
}

/// The root a stack's repository paths are mapped under: the root its reads
/// were confined to ([`desired_root`]), else its repository,
/// else its directory (absolute: bind sources are).
pub fn stack_root(stack: &crate::spec::model::Stack) -> std::borrow::Cow<'_, Path> {
    let root = desired_root(stack).unwrap_or_else(|| {
        stack
            .source
            .repository
            .as_deref()
            .map_or(stack.source.dir.as_path(), Path::new)
    });
    if root.is_absolute() {
        std::borrow::Cow::Borrowed(root)
    } else {
        std::borrow::Cow::Owned(std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf()))
    }
}

/// `path` without `suffix` at its end (component-wise), `None` when it does not end so.
fn strip_suffix(path: &Path, suffix: &Path) -> Option<PathBuf> {
    let p: Vec<Component> = path.components().collect();
    let s: Vec<Component> = suffix.components().collect();
    if s.len() > p.len() || p[p.len() - s.len()..] != s[..] {
        return None;
    }
    Some(p[..p.len() - s.len()].iter().collect())
}

/// The root a live container of `stack` was created from: its working-dir
/// label (`working_dir`) with the stack directory's path relative to the
/// repository root stripped as a suffix. `None` (compare paths as they are)
/// without a desired root, or when the label does not end so.
pub fn live_root(stack: &Stack, working_dir: Option<&str>) -> Option<PathBuf> {
    let rel = stack_in_root(stack)?;
    let wd = Path::new(working_dir?);
    if !wd.is_absolute() {
        return None;
    }
    strip_suffix(wd, &rel)
}

/// The stack directory relative to the root it was read from.
fn stack_in_root(stack: &Stack) -> Option<PathBuf> {
    let root = stack.source.root.as_deref()?;
    Some(stack.source.abs_dir.strip_prefix(root).ok()?.to_path_buf())
}

/// How to move the desired side's paths onto a live container's, as
/// (from, to) for [`reroot`]: the desired root onto the [`live_root`]; where
/// the label does not end with the stack's place in the repository (a stack
/// directory applied on its own, `plimsoll reconcile /srv/ops/big`, then from
/// a repository's `stacks/big`), the stack directory onto the working
/// directory. `None`: nothing to move (no root, no absolute label, or the
/// same place).
///
/// `paths` maps the checkout onto the engine's host (identity outside a
/// container): the desired config's paths are already mapped, so `from` is
/// the root as the engine sees it.
pub fn live_mapping(
    stack: &Stack,
    working_dir: Option<&str>,
    paths: &PathMap,
) -> Option<(PathBuf, PathBuf)> {
    let checkout = desired_root(stack)?;
    let root = paths
        .map(checkout)
        .unwrap_or_else(|_| checkout.to_path_buf());
    let rel = stack_in_root(stack)?;
    let wd = Path::new(working_dir?);
    if !wd.is_absolute() {
        return None;
    }
    let (from, to) = match strip_suffix(wd, &rel) {
        Some(live) => (root.to_path_buf(), live),
        None => (root.join(&rel), wd.to_path_buf()),
    };
    (from != to).then_some((from, to))
}

/// `path` moved from under `from` to under `to`, `None` when it is not under `from`.
fn moved(path: &str, from: &Path, to: &Path) -> Option<String> {
    let rest = Path::new(path).strip_prefix(from).ok()?;
    Some(if rest.as_os_str().is_empty() {
        to.display().to_string()
    } else {
        to.join(rest).display().to_string()
    })
}

/// Moves what `config` says about the repository from root `from` to root
/// `to`: bind-mount sources under `from`, Compose's path labels and the
/// repository plimsoll labels its objects with. Sources elsewhere (host
/// paths) stay as they are.
pub fn reroot(config: &mut ContainerConfig, from: &Path, to: &Path) {
    if from == to {
        return;
    }
    for m in config.mounts.values_mut().filter(|m| m.kind == "bind") {
        if let Some(s) = m.source.as_deref().and_then(|s| moved(s, from, to)) {
            m.source = Some(s);
        }
    }
    for key in [
        labels::COMPOSE_WORKING_DIR,
        labels::COMPOSE_CONFIG_FILES,
        labels::REPOSITORY,
    ] {
        if let Some(v) = config.labels.get_mut(key) {
            *v = v
                .split(',')
                .map(|p| moved(p, from, to).unwrap_or_else(|| p.to_string()))
                .collect::<Vec<_>>()
                .join(",");
        }
    }
}

/// Why a mounted file or directory cannot be hashed.
#[derive(Debug, Error)]
pub enum HashError {
    #[error(
        "{path}: more than {MAX_ENTRIES} files and directories to compare; plimsoll hashes what a service bind-mounts from the repository"
    )]
    TooManyEntries { path: PathBuf },
    #[error(
        "{path}: more than {} MiB to compare; plimsoll hashes what a service bind-mounts from the repository",
        MAX_BYTES >> 20
    )]
    TooManyBytes { path: PathBuf },
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What hashing one mount has used so far.
struct Budget {
    top: PathBuf,
    entries: usize,
    bytes: u64,
}

impl Budget {
    fn entry(&mut self) -> Result<(), HashError> {
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            return Err(HashError::TooManyEntries {
                path: self.top.clone(),
            });
        }
        Ok(())
    }

    /// The content hash of the file at `path`; a file over
    /// [`crate::source::MAX_FILE_BYTES`] (a GeoIP database, a model) is not
    /// read: it is compared by its size.
    fn file(&mut self, files: &dyn Files, path: &Path) -> Result<Option<String>, HashError> {
        let bytes = match files.read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
                let size = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<crate::source::TooLarge>())
                    .map(|t| t.size);
                if let Some(size) = size {
                    return Ok(Some(format!("size {size}")));
                }
                return Err(HashError::Read {
                    path: path.to_path_buf(),
                    source: e,
                });
            }
            Err(source) => {
                return Err(HashError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        self.bytes += bytes.as_ref().map_or(0, |b| b.len() as u64);
        if self.bytes > MAX_BYTES {
            return Err(HashError::TooManyBytes {
                path: self.top.clone(),
            });
        }
        Ok(bytes.map(|b| hex(&Sha256::digest(b))))
    }
}

fn hex(digest: &[u8]) -> String {
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The content hash of the file or directory at `path` (symbolic links to
/// it followed, as the engine does), `Ok(None)` when it does not exist or
/// resolves outside the repository.
/// Returns whether it is a directory, and the hash.
pub fn hash(files: &dyn Files, path: &Path) -> Result<Option<(bool, String)>, HashError> {
    let read_err = |source| HashError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut budget = Budget {
        top: path.to_path_buf(),
        entries: 0,
        bytes: 0,
    };
    let kind = match files.kind(path) {
        // A link out of the repository (`./certs` -> /etc/letsencrypt): a host
        // path, compared by path only.
        Err(e) if crate::source::refused(&e).is_some() => return Ok(None),
        other => other.map_err(read_err)?,
    };
    match kind {
        None => Ok(None),
        Some(Kind::File) => Ok(budget.file(files, path)?.map(|hash| (false, hash))),
        Some(Kind::Dir) => Ok(Some((true, hash_dir(files, path, &mut budget)?))),
    }
}

/// A directory's hash: its files and symbolic links, sorted by path.
fn hash_dir(files: &dyn Files, top: &Path, budget: &mut Budget) -> Result<String, HashError> {
    // (relative path, kind, content hash or link target)
    let mut entries: Vec<(String, &str, String)> = Vec::new();
    let mut todo: Vec<(PathBuf, String)> = vec![(top.to_path_buf(), String::new())];
    while let Some((dir, rel)) = todo.pop() {
        let names = files.list(&dir).map_err(|source| HashError::Read {
            path: dir.clone(),
            source,
        })?;
        for name in names {
            // A checkout has `.git`, a commit does not.
            if name == ".git" {
                continue;
            }
            budget.entry()?;
            let path = dir.join(&name);
            let rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let read_err = |source| HashError::Read {
                path: path.clone(),
                source,
            };
            if let Some(target) = files.link(&path).map_err(read_err)? {
                entries.push((rel, "symlink", target.display().to_string()));
                continue;
            }
            match files.kind(&path).map_err(read_err)? {
                Some(Kind::Dir) => todo.push((path, rel)),
                Some(Kind::File) => {
                    if let Some(hash) = budget.file(files, &path)? {
                        entries.push((rel, "file", hash));
                    }
                }
                None => {}
            }
        }
    }
    entries.sort();
    let mut h = Sha256::new();
    h.update(b"plimsoll mount v1\n");
    for (rel, kind, value) in &entries {
        h.update(rel.as_bytes());
        h.update([0]);
        h.update(kind.as_bytes());
        h.update([0]);
        h.update(value.as_bytes());
        h.update(b"\n");
    }
    Ok(hex(&h.finalize()))
}

/// One mount to hash, owned (hashing runs on a blocking thread).
#[derive(Debug, Clone)]
pub struct Job {
    pub stack: String,
    pub service: String,
    pub target: String,
    pub source: PathBuf,
    /// The repository root reads are confined to.
    pub root: PathBuf,
    shown: String,
    /// Where the mount is written, for errors: the Compose file, place, key.
    file: PathBuf,
    mark: Mark,
    key: String,
}

/// The mounts of `stack` to hash: bind-mount sources of its services
/// (`volumes`, `secrets`/`configs` with `file:`) inside its root.
pub fn jobs(stack: &Stack) -> Vec<Job> {
    let Some(root) = desired_root(stack) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (service, svc) in &stack.services {
        let config = crate::diff::desired_config(stack, service, svc, 1, None);
        for (target, m) in config.mounts.iter().filter(|(_, m)| m.kind == "bind") {
            let Some(source) = m.source.as_deref().map(PathBuf::from) else {
                continue;
            };
            if !source.starts_with(root) {
                continue;
            }
            let is_file = |objects: &BTreeMap<String, crate::spec::model::FileObject>| {
                objects
                    .values()
                    .any(|o| o.file.as_deref() == Some(m.source.as_deref().unwrap_or_default()))
            };
            let key = if svc.volumes.iter().any(|v| &v.target == target) {
                "volumes"
            } else if is_file(&stack.secrets) {
                // A hash of a secret's content on the container (labels reach
                // `docker inspect` and label exporters) would let a weak secret
                // be guessed offline: secret files are not hashed.
                continue;
            } else {
                "configs"
            };
            let shown = source
                .strip_prefix(&stack.source.abs_dir)
                .or_else(|_| source.strip_prefix(root))
                .unwrap_or(&source)
                .display()
                .to_string();
            out.push(Job {
                stack: stack.name.clone(),
                service: service.clone(),
                target: target.clone(),
                source,
                root: root.to_path_buf(),
                shown,
                file: stack.source.file.clone(),
                mark: stack.source.mark(service, key),
                key: format!("services.{service}.{key}"),
            });
        }
    }
    out
}

/// Hashes `jobs` with `files_for` (the files of a root; an error: the root
/// is gone, nothing under it is compared), each source once.
pub fn run<'f>(jobs: Vec<Job>, files_for: FilesFor<'_, 'f>) -> Mounts {
    let mut out = Mounts::new();
    let mut done: BTreeMap<PathBuf, Result<Option<(bool, String)>, MountError>> = BTreeMap::new();
    let mut roots: BTreeMap<PathBuf, Result<Box<dyn Files + 'f>, RootGone>> = BTreeMap::new();
    for job in jobs {
        let hashed = done
            .entry(job.source.clone())
            .or_insert_with(|| {
                let files = roots
                    .entry(job.root.clone())
                    .or_insert_with(|| files_for(&job.root));
                // A root that is gone (a stored revision's checkout): nothing to compare.
                let Ok(files) = files.as_ref() else {
                    return Ok(None);
                };
                hash(files.as_ref(), &job.source).map_err(|e| MountError {
                    file: job.file.clone(),
                    mark: job.mark,
                    key: job.key.clone(),
                    source: std::sync::Arc::new(e),
                })
            })
            .clone();
        let slot = out
            .entry((job.stack.clone(), job.service.clone()))
            .or_insert_with(|| Ok(ServiceMounts::new()));
        match (hashed, slot) {
            (Ok(Some((dir, hash))), Ok(m)) => {
                m.insert(
                    job.target,
                    MountHash {
                        dir,
                        hash,
                        volume: job.key.ends_with(".volumes"),
                        shown: job.shown,
                    },
                );
            }
            (Ok(None), _) | (_, Err(_)) => {}
            (Err(e), slot) => *slot = Err(e),
        }
    }
    out
}

/// The mounts of `stacks`, read through `files` (a commit's tree, or one checkout).
pub fn stack_mounts(stacks: &[&Stack], files: &dyn Files) -> Mounts {
    let jobs = stacks.iter().flat_map(|s| jobs(s)).collect();
    run(jobs, &|_| {
        Ok(Box::new(Borrowed(files)) as Box<dyn Files + '_>)
    })
}

/// The mounts of one service of `stack`, read through `files`.
pub fn service_mounts(
    stack: &Stack,
    service: &str,
    files: &dyn Files,
) -> Result<ServiceMounts, MountError> {
    let jobs = jobs(stack)
        .into_iter()
        .filter(|j| j.service == service)
        .collect();
    run(jobs, &|_| {
        Ok(Box::new(Borrowed(files)) as Box<dyn Files + '_>)
    })
    .remove(&(stack.name.clone(), service.to_string()))
    .unwrap_or_else(|| Ok(ServiceMounts::new()))
}

/// [`Files`] through a reference (so [`run`] can hand out one it does not own).
struct Borrowed<'a>(&'a dyn Files);

impl Files for Borrowed<'_> {
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        self.0.read(path)
    }
    fn kind(&self, path: &Path) -> io::Result<Option<Kind>> {
        self.0.kind(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.0.list(dir)
    }
    fn absolute(&self, path: &Path) -> io::Result<PathBuf> {
        self.0.absolute(path)
    }
    fn link(&self, path: &Path) -> io::Result<Option<PathBuf>> {
        self.0.link(path)
    }
    fn root(&self) -> Option<PathBuf> {
        self.0.root()
    }
}

/// The label that keeps the content hash of what is mounted at `target`.
pub fn label(target: &str) -> String {
    format!("{}{target}", labels::MOUNT_PREFIX)
}

/// A content change in words: `mounted file nginx.conf changed`.
pub fn reason(m: &MountHash) -> String {
    let what = if m.dir { "directory" } else { "file" };
    format!("mounted {what} {} changed", m.shown)
}

/// Mounted contents that differ from those a live container (its labels)
/// was created or last restarted with, in words. A container without the
/// label (created by an older plimsoll) is not compared.
pub fn changes(live: &BTreeMap<String, String>, want: &ServiceMounts) -> Vec<String> {
    want.iter()
        .filter(|(target, m)| live.get(&label(target)).is_some_and(|h| *h != m.hash))
        .map(|(_, m)| reason(m))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::diff::MountDesc;
    use crate::source::{Confine, ConfinedFs, GitTree, LocalFs};

    fn bind(source: &str) -> MountDesc {
        MountDesc {
            kind: "bind",
            source: Some(source.into()),
            read_only: true,
        }
    }

    #[test]
    fn reroot_moves_paths_under_the_root_only() {
        let mut c = ContainerConfig::default();
        c.mounts
            .insert("/etc/app.conf".into(), bind("/a/repo/stacks/shop/app.conf"));
        c.mounts.insert("/etc/ssl".into(), bind("/etc/ssl"));
        c.mounts.insert("/x".into(), bind("/a/repo2/x"));
        c.mounts.insert(
            "/data".into(),
            MountDesc {
                kind: "volume",
                source: Some("/a/repo/data".into()),
                read_only: false,
            },
        );
        c.labels.insert(
            labels::COMPOSE_WORKING_DIR.into(),
            "/a/repo/stacks/shop".into(),
        );
        c.labels.insert(
            labels::COMPOSE_CONFIG_FILES.into(),
            "/a/repo/stacks/shop/compose.yaml,/a/repo/stacks/shop/compose.override.yaml".into(),
        );
        c.labels.insert("other".into(), "/a/repo/x".into());
        c.labels.insert(labels::REPOSITORY.into(), "/a/repo".into());
        reroot(
            &mut c,
            Path::new("/a/repo"),
            Path::new("/var/lib/plimsoll/git/worktree"),
        );
        let src = |t: &str| c.mounts[t].source.clone().unwrap();
        assert_eq!(
            src("/etc/app.conf"),
            "/var/lib/plimsoll/git/worktree/stacks/shop/app.conf"
        );
        assert_eq!(src("/etc/ssl"), "/etc/ssl", "host paths stay");
        assert_eq!(
            src("/x"),
            "/a/repo2/x",
            "a sibling directory is not under the root"
        );
        assert_eq!(src("/data"), "/a/repo/data", "volumes are names, not paths");
        assert_eq!(
            c.labels[labels::COMPOSE_WORKING_DIR],
            "/var/lib/plimsoll/git/worktree/stacks/shop"
        );
        assert_eq!(
            c.labels[labels::COMPOSE_CONFIG_FILES],
            "/var/lib/plimsoll/git/worktree/stacks/shop/compose.yaml,/var/lib/plimsoll/git/worktree/stacks/shop/compose.override.yaml"
        );
        assert_eq!(c.labels["other"], "/a/repo/x");
        assert_eq!(
            c.labels[labels::REPOSITORY],
            "/var/lib/plimsoll/git/worktree",
            "the repository the containers were applied from"
        );
    }

    fn stack_at(root: &str, dir: &str) -> Stack {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("compose.yaml"), "name: s\nservices: {}\n").unwrap();
        let mut s = crate::spec::load_path(t.path()).stacks.remove(0);
        s.source.root = Some(root.into());
        s.source.abs_dir = dir.into();
        s
    }

    #[test]
    fn the_live_root_is_the_working_dir_without_the_stack_s_place() {
        let s = stack_at("/a/repo", "/a/repo/stacks/shop");
        let live = |wd: &str| live_root(&s, Some(wd));
        assert_eq!(
            live("/var/lib/plimsoll/git/worktree/stacks/shop"),
            Some("/var/lib/plimsoll/git/worktree".into())
        );
        assert_eq!(live("/a/repo/stacks/shop"), Some("/a/repo".into()));
        assert_eq!(
            live("/srv/other/shop"),
            None,
            "no suffix match: compared as they are"
        );
        assert_eq!(
            live("stacks/shop"),
            None,
            "a relative label is not re-rooted"
        );
        assert_eq!(live_root(&s, None), None);
        // A stack at the root: the whole label is the root.
        let s = stack_at("/a/shop", "/a/shop");
        assert_eq!(live_root(&s, Some("/b/shop")), Some("/b/shop".into()));
        let mut none = stack_at("/a", "/a");
        none.source.root = None;
        assert_eq!(live_root(&none, Some("/b")), None);
    }

    #[test]
    fn a_stack_applied_from_elsewhere_maps_its_directory() {
        let s = stack_at("/a/repo", "/a/repo/stacks/big");
        let map = |wd: &str| live_mapping(&s, Some(wd), &PathMap::identity());
        assert_eq!(
            map("/var/lib/plimsoll/git/worktree/stacks/big"),
            Some(("/a/repo".into(), "/var/lib/plimsoll/git/worktree".into()))
        );
        assert_eq!(
            map("/srv/ops/big"),
            Some(("/a/repo/stacks/big".into(), "/srv/ops/big".into()))
        );
        assert_eq!(map("/a/repo/stacks/big"), None, "the same place");
        assert_eq!(map("big"), None);
    }

    /// A tree with a file, a nested file, an empty directory and a symlink,
    /// committed; returns (tempdir, canonical root).
    fn tree() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(t.path()).unwrap();
        fs::create_dir_all(root.join("www/css")).unwrap();
        fs::create_dir_all(root.join("www/empty")).unwrap();
        fs::write(root.join("www/index.html"), "<p>hi</p>").unwrap();
        fs::write(root.join("www/css/site.css"), "p {}").unwrap();
        std::os::unix::fs::symlink("index.html", root.join("www/home.html")).unwrap();
        fs::write(root.join("nginx.conf"), "events {}").unwrap();
        let repo = git2::Repository::init(&root).unwrap();
        crate::source::tests::commit_all(&repo);
        (t, root)
    }

    #[test]
    fn a_checkout_and_its_commit_hash_the_same() {
        let (_t, root) = tree();
        let confined = ConfinedFs::new(Confine::new(&root, &[]).unwrap());
        let git = GitTree::resolve(&root, "HEAD").unwrap().files;
        for path in ["www", "nginx.conf"] {
            let p = root.join(path);
            let local = hash(&LocalFs, &p).unwrap();
            assert!(local.is_some());
            assert_eq!(hash(&confined, &p).unwrap(), local, "{path}");
            assert_eq!(hash(&git, &p).unwrap(), local, "{path}");
        }
        assert!(hash(&LocalFs, &root.join("www")).unwrap().unwrap().0);
        assert_eq!(hash(&LocalFs, &root.join("missing")).unwrap(), None);
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("certs")).unwrap();
        assert_eq!(
            hash(&confined, &root.join("certs")).unwrap(),
            None,
            "a host path"
        );
        // Modes and empty directories are not content; a changed byte or link is.
        let before = hash(&LocalFs, &root.join("www")).unwrap();
        fs::create_dir_all(root.join("www/more/empty")).unwrap();
        assert_eq!(hash(&LocalFs, &root.join("www")).unwrap(), before);
        fs::remove_file(root.join("www/home.html")).unwrap();
        std::os::unix::fs::symlink("css/site.css", root.join("www/home.html")).unwrap();
        assert_ne!(hash(&LocalFs, &root.join("www")).unwrap(), before);
        let file = hash(&LocalFs, &root.join("nginx.conf")).unwrap();
        fs::write(root.join("nginx.conf"), "events { }").unwrap();
        assert_ne!(hash(&LocalFs, &root.join("nginx.conf")).unwrap(), file);
    }

    #[test]
    fn a_tree_beyond_the_budget_is_an_error_naming_the_mount() {
        let t = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(t.path()).unwrap();
        let big = root.join("big");
        fs::create_dir_all(&big).unwrap();
        for i in 0..=MAX_ENTRIES {
            fs::write(big.join(i.to_string()), "").unwrap();
        }
        fs::write(
            root.join("compose.yaml"),
            "name: s\nservices:\n  web:\n    image: busybox\n    volumes:\n      - ./big:/big\n",
        )
        .unwrap();
        let d = crate::spec::load_path(&root);
        let m = stack_mounts(&[&d.stacks[0]], &LocalFs);
        let err = m[&("s".to_string(), "web".to_string())]
            .clone()
            .unwrap_err()
            .to_string();
        assert!(err.contains("compose.yaml:"), "{err}");
        assert!(err.contains("services.web.volumes"), "{err}");
        assert!(err.contains(&format!("more than {MAX_ENTRIES}")), "{err}");
        assert!(err.contains("hint:"), "{err}");
    }

    #[test]
    fn a_file_over_the_read_limit_is_compared_by_its_size_and_secrets_are_not_hashed() {
        let t = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(t.path()).unwrap();
        fs::create_dir_all(root.join("data")).unwrap();
        let large = root.join("data/geo.db");
        let size = crate::source::MAX_FILE_BYTES + 1;
        fs::File::create(&large).unwrap().set_len(size).unwrap();
        fs::write(root.join("token"), "s3cret-canary").unwrap();
        fs::write(
            root.join("compose.yaml"),
            "name: s\nservices:\n  web:\n    image: busybox\n    volumes: [\"./data:/data\"]\n    secrets: [token]\nsecrets:\n  token:\n    file: ./token\n",
        )
        .unwrap();
        let d = crate::spec::load_path(&root);
        let hashes = || {
            stack_mounts(&[&d.stacks[0]], &LocalFs)[&("s".to_string(), "web".to_string())]
                .clone()
                .unwrap()
        };
        let first = hashes();
        assert_eq!(first.keys().collect::<Vec<_>>(), ["/data"], "{first:?}");
        fs::File::options()
            .write(true)
            .open(&large)
            .unwrap()
            .set_len(size + 1)
            .unwrap();
        assert_ne!(first["/data"].hash, hashes()["/data"].hash);
    }

    #[test]
    fn services_get_the_hashes_of_what_they_mount_inside_the_root() {
        let (_t, root) = tree();
        fs::write(
            root.join("compose.yaml"),
            "name: s\nservices:\n  web:\n    image: busybox\n    volumes:\n      - ./www:/www:ro\n      - ./nginx.conf:/etc/nginx.conf\n      - /etc/hostname:/h:ro\n      - ./absent:/absent\n    configs: [site]\nconfigs:\n  site:\n    file: ./nginx.conf\n",
        )
        .unwrap();
        let d = crate::spec::load_path(&root);
        let m = stack_mounts(&[&d.stacks[0]], &LocalFs);
        let web = m[&("s".to_string(), "web".to_string())].clone().unwrap();
        let keys: Vec<&str> = web.keys().map(String::as_str).collect();
        assert_eq!(keys, ["/etc/nginx.conf", "/site", "/www"]);
        assert_eq!(web["/www"].shown, "www");
        assert!(web["/www"].dir);
        assert_eq!(web["/site"].hash, web["/etc/nginx.conf"].hash);
        assert_eq!(
            reason(&web["/etc/nginx.conf"]),
            "mounted file nginx.conf changed"
        );
        assert_eq!(reason(&web["/www"]), "mounted directory www changed");
        let mut live = BTreeMap::new();
        assert!(changes(&live, &web).is_empty(), "no label: not compared");
        live.insert(label("/www"), web["/www"].hash.clone());
        live.insert(label("/etc/nginx.conf"), "0".into());
        assert_eq!(changes(&live, &web), ["mounted file nginx.conf changed"]);
    }
}
