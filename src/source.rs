//! Where the desired state comes from: finding the stacks under a PATH and
//! reading their files.
//!
//! PATH is a config repository root (`plimsoll.yaml`, `stacks/<name>/`), one
//! stack directory, or one Compose file. This module and its [`Files`]
//! implementations are the only readers of the file system for the desired
//! state; `spec` and [`discover_in`] read through [`Files`], so the same
//! loader reads a checkout ([`LocalFs`]) or a commit's tree ([`GitTree`],
//! for `plimsoll diff`) without checking it out.
//!
//! Reads are confined to the repository ([`Confine`]): [`ConfinedFs`] (the
//! file system, for every command and the agent) and [`GitTree`] resolve a
//! path, symlinks included, and refuse one that lies outside the repository
//! root (or the host directories an operator allows with `--allow-read`) or
//! under `/proc`, `/sys` or `/dev`, with a [`Refused`] error the loaders turn
//! into a diagnostic naming the file, line, key and the resolved path.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use thiserror::Error;

/// The override file names Compose merges onto the Compose file of a stack
/// directory, in Compose's order of preference (the first that exists).
pub const OVERRIDE_FILE_NAMES: [&str; 4] = [
    "compose.override.yml",
    "compose.override.yaml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

/// The Compose file names a stack directory may hold, in Compose's order of preference.
pub const COMPOSE_FILE_NAMES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// The largest file the desired state reads (16 MiB): Compose files, `.env`,
/// env files, secret and config files, `plimsoll.yaml`. [`Files::read`] of a
/// larger file is an error of kind [`io::ErrorKind::FileTooLarge`] (a
/// [`TooLarge`]), found from the size before the bytes are read. YAML and
/// `.env` bodies have lower limits of their own (`spec::yaml::MAX_YAML_BYTES`).
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// A file larger than [`MAX_FILE_BYTES`], the error inside the `io::Error`.
#[derive(Debug, Error)]
#[error(
    "the file is {size} bytes, more than the {limit} bytes (16 MiB) plimsoll reads for the desired state; keep large files out of the repository"
)]
pub struct TooLarge {
    pub size: u64,
    pub limit: u64,
}

fn too_large(size: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        TooLarge {
            size,
            limit: MAX_FILE_BYTES,
        },
    )
}

/// Reads at most [`MAX_FILE_BYTES`] of `path`, refusing a larger file before
/// reading it (and one that grows while it is read, or reports no size, like
/// the files of `/proc`).
fn read_bounded(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let file = fs::File::open(path)?;
    let size = file.metadata()?.len();
    if size > MAX_FILE_BYTES {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// The name of the repository-level configuration file.
pub const CONFIG_FILE: &str = "plimsoll.yaml";

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// Read access to the files of the desired state.
pub trait Files: Sync {
    /// The bytes of a file, `Ok(None)` when it does not exist. Reading a
    /// directory is an error, and so is a file above [`MAX_FILE_BYTES`].
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>>;
    /// Whether `path` is a file or a directory, `Ok(None)` when it does not exist.
    fn kind(&self, path: &Path) -> io::Result<Option<Kind>>;
    /// The names of the entries of a directory.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// The absolute, canonical form of an existing path (what relative paths
    /// in a stack resolve against).
    fn absolute(&self, path: &Path) -> io::Result<PathBuf>;
    /// The target of the symbolic link at `path` (the link itself, not
    /// followed), `Ok(None)` when it is no link or does not exist.
    fn link(&self, path: &Path) -> io::Result<Option<PathBuf>>;
    /// The repository root reads are confined to (canonical), when there is one.
    fn root(&self) -> Option<PathBuf> {
        None
    }
}

/// The local file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalFs;

impl Files for LocalFs {
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match read_bounded(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn kind(&self, path: &Path) -> io::Result<Option<Kind>> {
        match fs::metadata(path) {
            Ok(m) if m.is_dir() => Ok(Some(Kind::Dir)),
            Ok(_) => Ok(Some(Kind::File)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect()
    }

    fn absolute(&self, path: &Path) -> io::Result<PathBuf> {
        fs::canonicalize(path)
    }

    fn link(&self, path: &Path) -> io::Result<Option<PathBuf>> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => fs::read_link(path).map(Some),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Directories plimsoll never reads for the desired state, not even with `--allow-read`.
pub const NEVER_READ: [&str; 3] = ["/proc", "/sys", "/dev"];

/// The hint of a read refused because it lies outside the repository.
pub const OUTSIDE_HINT: &str = "plimsoll reads only files inside the repository; keep the file in the repository, or an operator can allow a host directory with --allow-read DIR (PLIMSOLL_ALLOW_READ)";

/// The hint of a read refused because it lies under `/proc`, `/sys` or `/dev`.
pub const NEVER_HINT: &str =
    "plimsoll never reads /proc, /sys or /dev for the desired state, not even with --allow-read";

/// How many symlinks one path may pass through (Linux's `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// A read of the desired state that would leave the repository.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refused {
    /// Resolved (symlinks followed) outside the repository and every allowed directory.
    #[error("resolves to {}, outside the repository {}", resolved.display(), root.display())]
    Outside { resolved: PathBuf, root: PathBuf },
    /// Resolved under `/proc`, `/sys` or `/dev`.
    #[error("resolves to {}, under {never}, which plimsoll never reads", resolved.display())]
    Never {
        resolved: PathBuf,
        never: &'static str,
    },
    /// More symlinks than [`MAX_SYMLINKS`] (a loop).
    #[error("too many levels of symbolic links")]
    Loop,
}

impl Refused {
    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            Refused::Outside { .. } => OUTSIDE_HINT,
            Refused::Never { .. } => NEVER_HINT,
            Refused::Loop => "fix the symbolic links of the repository: one points back at itself",
        }
    }
}

impl From<Refused> for io::Error {
    fn from(r: Refused) -> io::Error {
        io::Error::new(io::ErrorKind::PermissionDenied, r)
    }
}

/// The refusal inside an I/O error of a confined [`Files`], if that is what it is.
pub fn refused(e: &io::Error) -> Option<&Refused> {
    e.get_ref()?.downcast_ref::<Refused>()
}

/// The hint for a failed read: the refusal's when the read was refused, else `otherwise`.
pub fn read_hint<'a>(e: &io::Error, otherwise: &'a str) -> &'a str {
    match refused(e) {
        Some(r) => r.hint(),
        None => otherwise,
    }
}

/// Where the desired state may be read from: the repository root, and the
/// host directories the operator allows (`--allow-read`). Never anything
/// under [`NEVER_READ`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confine {
    root: PathBuf,
    allowed: Vec<PathBuf>,
}

/// The top of the git work tree that holds `dir`: the nearest ancestor with a
/// `.git` entry (a directory, or the file of a linked worktree or submodule),
/// as git finds it. Found by looking, not through libgit2, whose first call
/// loads the system's CA certificates (most of a `validate`'s time).
fn work_tree_of(dir: &Path) -> Option<PathBuf> {
    let dir = fs::canonicalize(dir).ok()?;
    dir.ancestors()
        .find(|d| fs::symlink_metadata(d.join(".git")).is_ok())
        .map(Path::to_path_buf)
}

impl Confine {
    /// Confines to `root` and the `allowed` directories (each made absolute and
    /// canonical: they must exist).
    pub fn new(root: &Path, allowed: &[PathBuf]) -> Result<Confine, SourceError> {
        let allowed = allowed
            .iter()
            .map(|p| {
                fs::canonicalize(p).map_err(|source| SourceError::AllowRead {
                    path: p.clone(),
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Confine {
            root: fs::canonicalize(root).map_err(io_err(root))?,
            allowed,
        })
    }

    /// The repository root of PATH: the top of the git work tree that holds
    /// it; without git, the directory PATH names, or a Compose file's directory.
    pub fn for_path(path: &Path, allowed: &[PathBuf]) -> Result<Confine, SourceError> {
        let dir = match fs::metadata(path) {
            Ok(m) if m.is_dir() => path.to_path_buf(),
            Ok(_) => match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SourceError::NotFound {
                    path: path.to_path_buf(),
                });
            }
            Err(e) => return Err(io_err(path)(e)),
        };
        let root = work_tree_of(&dir).unwrap_or(dir);
        Confine::new(&root, allowed)
    }

    /// The repository root (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether a resolved (absolute, symlink-free) path may be read.
    pub fn check(&self, resolved: &Path) -> Result<(), Refused> {
        if let Some(never) = NEVER_READ.iter().find(|n| resolved.starts_with(n)) {
            return Err(Refused::Never {
                resolved: resolved.to_path_buf(),
                never,
            });
        }
        if resolved.starts_with(&self.root) || self.allowed.iter().any(|a| resolved.starts_with(a))
        {
            return Ok(());
        }
        Err(Refused::Outside {
            resolved: resolved.to_path_buf(),
            root: self.root.clone(),
        })
    }
}

/// Resolves `path` as the kernel would, symlinks followed one component at a
/// time through `link` (`Ok(Some(target))` for a symlink, `Ok(None)`
/// otherwise; a missing component is not a symlink). Pure but for `link`.
/// Past a missing component the rest is appended as written, `..` included,
/// so the result names what a later create would name.
fn resolve_with(
    path: &Path,
    mut link: impl FnMut(&Path) -> io::Result<Option<PathBuf>>,
) -> io::Result<PathBuf> {
    let mut todo: std::collections::VecDeque<std::ffi::OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut cur = PathBuf::from("/");
    let mut hops = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&name);
        match link(&next)? {
            Some(target) => {
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return Err(Refused::Loop.into());
                }
                if target.is_absolute() {
                    cur = PathBuf::from("/");
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => todo.push_front(n.to_os_string()),
                        Component::ParentDir => todo.push_front("..".into()),
                        _ => {}
                    }
                }
            }
            None => cur = next,
        }
    }
    Ok(cur)
}

/// The local file system, confined to a repository ([`Confine`]): every path
/// is resolved (symlinks followed) and read only when the result may be read.
#[derive(Debug, Clone)]
pub struct ConfinedFs {
    confine: Confine,
}

impl ConfinedFs {
    pub fn new(confine: Confine) -> ConfinedFs {
        ConfinedFs { confine }
    }

    /// The confinement (root and allowed directories).
    pub fn confine(&self) -> &Confine {
        &self.confine
    }

    /// `path` (relative to the current directory) resolved and checked.
    pub fn resolve(&self, path: &Path) -> io::Result<PathBuf> {
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()?.join(path)
        };
        let resolved = resolve_with(&abs, |p| match fs::symlink_metadata(p) {
            Ok(m) if m.file_type().is_symlink() => fs::read_link(p).map(Some),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => Ok(None),
            Err(e) => Err(e),
        })?;
        self.confine.check(&resolved)?;
        Ok(resolved)
    }
}

impl Files for ConfinedFs {
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        LocalFs.read(&self.resolve(path)?)
    }

    fn kind(&self, path: &Path) -> io::Result<Option<Kind>> {
        LocalFs.kind(&self.resolve(path)?)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        LocalFs.list(&self.resolve(dir)?)
    }

    fn absolute(&self, path: &Path) -> io::Result<PathBuf> {
        LocalFs.absolute(&self.resolve(path)?)
    }

    fn link(&self, path: &Path) -> io::Result<Option<PathBuf>> {
        // The directory holding the link is resolved and checked; the link is not followed.
        match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => {
                LocalFs.link(&self.resolve(parent)?.join(name))
            }
            _ => LocalFs.link(&self.resolve(path)?),
        }
    }

    fn root(&self) -> Option<PathBuf> {
        Some(self.confine.root().to_path_buf())
    }
}

/// The tree of one git commit, read from the object database (no checkout).
///
/// Paths are those of a checkout at `root` (the repository's work tree, or
/// the directory of a bare repository): absolute ones under `root`, or
/// relative to it. Symlinks committed in the tree are followed inside it; a
/// path that resolves outside the repository is [`Refused`].
pub struct GitTree {
    /// `git2::Repository` is `Send` but not `Sync`; [`Files`] must be `Sync`.
    repo: Mutex<git2::Repository>,
    tree: git2::Oid,
    root: PathBuf,
}

/// A revision resolved in the repository holding a PATH.
pub struct Revision {
    pub files: GitTree,
    /// The commit's full SHA.
    pub commit: String,
    /// PATH relative to the repository root (empty for the root itself).
    pub path: PathBuf,
}

impl GitTree {
    /// Resolves `rev` as git does (`main`, `v1.2`, a SHA, `HEAD~1`,
    /// `origin/main`) in the repository containing `path`.
    pub fn resolve(path: &Path, rev: &str) -> Result<Revision, SourceError> {
        let git = |source: git2::Error| SourceError::Git {
            path: path.to_path_buf(),
            message: source.message().to_string(),
        };
        // PATH need not exist in the work tree (a stack added or removed by
        // the range): the repository is found from its nearest existing parent.
        let mut existing = path;
        let mut rest = Vec::new();
        while fs::symlink_metadata(existing).is_err() {
            match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name);
                    existing = if parent.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        parent
                    };
                }
                _ => break,
            }
        }
        let repo = git2::Repository::discover(existing).map_err(git)?;
        let root = match repo.workdir() {
            Some(w) => w.to_path_buf(),
            None => repo.path().to_path_buf(),
        };
        let root = fs::canonicalize(&root).map_err(io_err(&root))?;
        let abs = fs::canonicalize(existing).map_err(io_err(existing))?;
        let mut rel = abs
            .strip_prefix(&root)
            .unwrap_or(Path::new(""))
            .to_path_buf();
        rel.extend(rest.iter().rev());
        let commit = repo
            .revparse_single(rev)
            .and_then(|o| o.peel_to_commit())
            .map_err(|e| SourceError::Git {
                path: path.to_path_buf(),
                message: format!("revision `{rev}`: {}", e.message()),
            })?;
        let (sha, tree) = (commit.id().to_string(), commit.tree_id());
        drop(commit);
        Ok(Revision {
            files: GitTree {
                repo: Mutex::new(repo),
                tree,
                root,
            },
            commit: sha,
            path: rel,
        })
    }

    /// The tree of commit `sha` of the repository (or bare clone) at `repo`,
    /// read as if checked out at `root` (a work tree of it: the agent's
    /// clone reads the revision it runs even while a newer one is checked out).
    pub fn at_commit(repo: &Path, sha: &str, root: &Path) -> Result<GitTree, SourceError> {
        let git = |source: git2::Error| SourceError::Git {
            path: repo.to_path_buf(),
            message: source.message().to_string(),
        };
        let opened = git2::Repository::open(repo).map_err(git)?;
        let tree = {
            let oid = git2::Oid::from_str(sha).map_err(git)?;
            opened.find_commit(oid).map_err(git)?.tree_id()
        };
        let root = fs::canonicalize(root).map_err(io_err(root))?;
        Ok(GitTree {
            repo: Mutex::new(opened),
            tree,
            root,
        })
    }

    /// The repository-relative form of `path` (absolute under the root, or
    /// relative to it), symlinks of the commit followed; refused when it
    /// resolves outside the repository.
    fn relative(&self, path: &Path) -> io::Result<PathBuf> {
        let abs = self.root.join(path);
        let resolved = resolve_with(&abs, |p| Ok(self.link_at(p)))?;
        match resolved.strip_prefix(&self.root) {
            Ok(rel) => Ok(rel.to_path_buf()),
            Err(_) => Err(Refused::Outside {
                resolved,
                root: self.root.clone(),
            }
            .into()),
        }
    }

    /// The target of the symlink at `path` in the commit, `None` when it is
    /// no symlink (or absent, or outside the repository).
    fn link_at(&self, path: &Path) -> Option<PathBuf> {
        let rel = path.strip_prefix(&self.root).ok()?;
        if rel.as_os_str().is_empty() {
            return None;
        }
        let repo = self.repo.lock().unwrap_or_else(|e| e.into_inner());
        let tree = repo.find_tree(self.tree).ok()?;
        let entry = tree.get_path(rel).ok()?;
        if entry.filemode() != i32::from(git2::FileMode::Link) {
            return None;
        }
        let blob = repo.find_blob(entry.id()).ok()?;
        Some(PathBuf::from(
            String::from_utf8_lossy(blob.content()).into_owned(),
        ))
    }

    /// The object id of the entry at `path` (a tree for a directory), `None` when absent.
    pub fn entry_id(&self, path: &Path) -> Option<String> {
        let rel = self.relative(path).ok()?;
        let repo = self.repo.lock().unwrap_or_else(|e| e.into_inner());
        let tree = repo.find_tree(self.tree).ok()?;
        if rel.as_os_str().is_empty() {
            return Some(tree.id().to_string());
        }
        tree.get_path(&rel).ok().map(|e| e.id().to_string())
    }

    /// The entry at `path`: its object id and kind.
    fn entry(&self, path: &Path) -> io::Result<Option<(git2::Oid, Kind)>> {
        let rel = self.relative(path)?;
        let repo = self.repo.lock().unwrap_or_else(|e| e.into_inner());
        let tree = repo.find_tree(self.tree).map_err(io::Error::other)?;
        if rel.as_os_str().is_empty() {
            return Ok(Some((tree.id(), Kind::Dir)));
        }
        match tree.get_path(&rel) {
            Ok(e) => Ok(Some(match e.kind() {
                Some(git2::ObjectType::Tree) => (e.id(), Kind::Dir),
                _ => (e.id(), Kind::File),
            })),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(io::Error::other(e)),
        }
    }
}

impl Files for GitTree {
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match self.entry(path)? {
            None => Ok(None),
            Some((_, Kind::Dir)) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            )),
            Some((id, Kind::File)) => {
                let repo = self.repo.lock().unwrap_or_else(|e| e.into_inner());
                // The size from the object's header, before it is inflated.
                let (size, _) = repo
                    .odb()
                    .and_then(|odb| odb.read_header(id))
                    .map_err(io::Error::other)?;
                if size as u64 > MAX_FILE_BYTES {
                    return Err(too_large(size as u64));
                }
                let blob = repo.find_blob(id).map_err(io::Error::other)?;
                Ok(Some(blob.content().to_vec()))
            }
        }
    }

    fn kind(&self, path: &Path) -> io::Result<Option<Kind>> {
        Ok(self.entry(path)?.map(|(_, k)| k))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let Some((id, Kind::Dir)) = self.entry(dir)? else {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        };
        let repo = self.repo.lock().unwrap_or_else(|e| e.into_inner());
        let tree = repo.find_tree(id).map_err(io::Error::other)?;
        Ok(tree
            .iter()
            .filter_map(|e| e.name().ok().map(str::to_string))
            .collect())
    }

    fn absolute(&self, path: &Path) -> io::Result<PathBuf> {
        let rel = self.relative(path)?;
        // `root.join("")` would end with a slash: the root is named as is.
        Ok(if rel.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        })
    }

    fn link(&self, path: &Path) -> io::Result<Option<PathBuf>> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Ok(None);
        };
        let parent = self.relative(parent)?;
        Ok(self.link_at(&self.root.join(parent).join(name)))
    }

    fn root(&self) -> Option<PathBuf> {
        Some(self.root.clone())
    }
}

/// What a PATH holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The repository root (the directory of `plimsoll.yaml`), or the stack directory.
    pub root: PathBuf,
    /// `plimsoll.yaml`, when the PATH is a repository that has one.
    pub config: Option<PathBuf>,
    pub stacks: Vec<StackFiles>,
    /// Whether PATH is a whole repository, so a stack missing from it was removed from git.
    pub repository: bool,
}

/// The files of one stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackFiles {
    /// The stack directory as the user named it (for messages).
    pub dir: PathBuf,
    /// The stack directory, absolute (for resolving relative paths).
    pub abs_dir: PathBuf,
    /// The Compose file, under `dir`.
    pub compose: PathBuf,
    /// The override file merged onto it (`compose.override.yaml`, …), when
    /// the stack directory holds one and PATH did not name a Compose file.
    pub overrides: Vec<PathBuf>,
    /// PATH named the Compose file (as `docker compose -f`): no override file,
    /// no `COMPOSE_FILE`.
    pub named: bool,
    /// `.env` under `dir`, whether or not it exists.
    pub dotenv: PathBuf,
}

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("{path}: no such file or directory")]
    NotFound { path: PathBuf },
    #[error(
        "{path}: no Compose file and no stacks/ directory here; expected plimsoll.yaml, stacks/<name>/compose.yaml, a stack directory with compose.yaml, or a Compose file"
    )]
    NothingToLoad { path: PathBuf },
    #[error("--allow-read {path}: {source}\n  hint: give an existing directory of the host")]
    AllowRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: git: {message}")]
    Git { path: PathBuf, message: String },
    #[error("{path}: cannot read: {source}{}", refused(source).map(|r| format!("\n  hint: {}", r.hint())).unwrap_or_default())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SourceError + '_ {
    move |source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Finds the stacks under PATH on the local file system.
pub fn discover(path: &Path) -> Result<Layout, SourceError> {
    discover_in(&LocalFs, path)
}

/// Finds the stacks under PATH in `files` (a checkout or a git tree).
pub fn discover_in(files: &dyn Files, path: &Path) -> Result<Layout, SourceError> {
    let kind = files.kind(path).map_err(io_err(path))?;
    let Some(kind) = kind else {
        return Err(SourceError::NotFound {
            path: path.to_path_buf(),
        });
    };
    let is = |p: &Path, want: Kind| files.kind(p).ok().flatten() == Some(want);
    if kind == Kind::File {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut stack = stack_files(files, &dir, path.to_path_buf())?;
        // A Compose file named on its own is read alone, as `docker compose -f FILE` does.
        stack.overrides.clear();
        stack.named = true;
        return Ok(Layout {
            root: dir,
            config: None,
            stacks: vec![stack],
            repository: false,
        });
    }
    let config = path.join(CONFIG_FILE);
    let config = match files.kind(&config) {
        Ok(Some(Kind::File)) => Some(config),
        // plimsoll.yaml a symlink out of the repository.
        Err(e) if refused(&e).is_some() => return Err(io_err(&config)(e)),
        _ => None,
    };
    let stacks_dir = path.join("stacks");
    // `stacks/` a symlink out of the repository.
    if let Err(e) = files.kind(&stacks_dir)
        && refused(&e).is_some()
    {
        return Err(io_err(&stacks_dir)(e));
    }
    if config.is_some() || is(&stacks_dir, Kind::Dir) {
        let mut stacks = Vec::new();
        if is(&stacks_dir, Kind::Dir) {
            let mut entries: Vec<PathBuf> = Vec::new();
            for name in files.list(&stacks_dir).map_err(io_err(&stacks_dir))? {
                let dir = stacks_dir.join(name);
                match files.kind(&dir) {
                    Ok(Some(Kind::Dir)) => entries.push(dir),
                    // A stack directory that is a symlink out of the repository.
                    Err(e) if refused(&e).is_some() => return Err(io_err(&dir)(e)),
                    _ => {}
                }
            }
            entries.sort();
            for dir in entries {
                if let Some(compose) = find_compose(files, &dir) {
                    stacks.push(stack_files(files, &dir, compose)?);
                }
            }
        }
        return Ok(Layout {
            root: path.to_path_buf(),
            config,
            stacks,
            repository: true,
        });
    }
    match find_compose(files, path) {
        Some(compose) => Ok(Layout {
            root: path.to_path_buf(),
            config: None,
            stacks: vec![stack_files(files, path, compose)?],
            repository: false,
        }),
        None => Err(SourceError::NothingToLoad {
            path: path.to_path_buf(),
        }),
    }
}

fn find_compose(files: &dyn Files, dir: &Path) -> Option<PathBuf> {
    COMPOSE_FILE_NAMES
        .iter()
        .map(|n| dir.join(n))
        .find(|p| files.kind(p).ok().flatten() == Some(Kind::File))
}

fn stack_files(files: &dyn Files, dir: &Path, compose: PathBuf) -> Result<StackFiles, SourceError> {
    let abs_dir = files.absolute(dir).map_err(io_err(dir))?;
    let overrides = OVERRIDE_FILE_NAMES
        .iter()
        .map(|n| dir.join(n))
        .find(|p| files.kind(p).ok().flatten() == Some(Kind::File))
        .into_iter()
        .collect();
    Ok(StackFiles {
        dir: dir.to_path_buf(),
        abs_dir,
        dotenv: dir.join(".env"),
        compose,
        overrides,
        named: false,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Commits every file of the repository's work tree as one commit on
    /// HEAD (a test's fixture).
    pub(crate) fn commit_all(repo: &git2::Repository) {
        let mut index = repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        repo.commit(Some("HEAD"), &sig, &sig, "one", &tree, &[])
            .unwrap();
    }

    #[test]
    fn discovers_repository_stack_dir_and_file() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("stacks/b")).unwrap();
        fs::create_dir_all(root.join("stacks/a")).unwrap();
        fs::create_dir_all(root.join("stacks/empty")).unwrap();
        fs::write(root.join("stacks/a/compose.yaml"), "services: {}").unwrap();
        fs::write(root.join("stacks/b/docker-compose.yml"), "services: {}").unwrap();
        let layout = discover(root).unwrap();
        let names: Vec<_> = layout
            .stacks
            .iter()
            .map(|s| s.compose.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["compose.yaml", "docker-compose.yml"]);
        assert!(layout.config.is_none());

        let layout = discover(&root.join("stacks/a")).unwrap();
        assert_eq!(layout.stacks.len(), 1);
        let layout = discover(&root.join("stacks/b/docker-compose.yml")).unwrap();
        assert_eq!(layout.stacks[0].dir, root.join("stacks/b"));
        assert!(matches!(
            discover(&root.join("stacks/empty")),
            Err(SourceError::NothingToLoad { .. })
        ));
        assert!(matches!(
            discover(&root.join("nope")),
            Err(SourceError::NotFound { .. })
        ));
    }

    #[test]
    fn reads_a_commit_without_a_checkout() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("stacks/a")).unwrap();
        fs::write(root.join("stacks/a/compose.yaml"), "services: {}").unwrap();
        fs::write(root.join(CONFIG_FILE), "{}").unwrap();
        let repo = git2::Repository::init(root).unwrap();
        commit_all(&repo);
        // Gone from the work tree: read from git objects only.
        fs::remove_dir_all(root.join("stacks")).unwrap();
        let rev = GitTree::resolve(root, "HEAD").unwrap();
        assert_eq!(rev.path, Path::new(""));
        let layout = discover_in(&rev.files, &rev.path).unwrap();
        assert_eq!(layout.stacks.len(), 1);
        assert_eq!(layout.stacks[0].compose, Path::new("stacks/a/compose.yaml"));
        let abs = fs::canonicalize(root).unwrap();
        assert_eq!(layout.stacks[0].abs_dir, abs.join("stacks/a"));
        let files = &rev.files;
        let read = |p: &Path| files.read(p).map_err(|e| e.kind());
        assert_eq!(
            read(&abs.join("stacks/a/compose.yaml")),
            Ok(Some(b"services: {}".to_vec()))
        );
        assert_eq!(
            read(Path::new("stacks/a/x/../compose.yaml"))
                .unwrap()
                .map(|b| b.len()),
            Some(12)
        );
        assert_eq!(
            read(Path::new("stacks/a")),
            Err(io::ErrorKind::IsADirectory)
        );
        assert_eq!(
            read(Path::new("../outside")),
            Err(io::ErrorKind::PermissionDenied)
        );
        assert_eq!(
            read(Path::new("/etc/passwd")),
            Err(io::ErrorKind::PermissionDenied)
        );
        // The root is named as the file system names it (no trailing slash):
        // it is the repository plimsoll labels objects with.
        assert_eq!(files.absolute(Path::new("")).unwrap(), abs);
        assert_eq!(files.absolute(&abs).unwrap(), abs);
        let at = GitTree::at_commit(root, &rev.commit, root).unwrap();
        assert_eq!(
            at.read(&abs.join("stacks/a/compose.yaml")).unwrap(),
            Some(b"services: {}".to_vec())
        );
        // A PATH that no longer exists on disk is still found in the commit.
        let rev = GitTree::resolve(&root.join("stacks/a"), "HEAD").unwrap();
        assert_eq!(rev.path, Path::new("stacks/a"));
        assert!(matches!(
            GitTree::resolve(root, "nope"),
            Err(SourceError::Git { .. })
        ));
    }
}

#[cfg(test)]
mod confine_tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// `repo/` (with `a/file`, `a/inside -> ../b`, `a/out -> ../../outside`,
    /// `a/file-out -> ../../outside/secret.txt`, `b/x`) beside `outside/secret.txt`.
    fn tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(t.path()).unwrap();
        let (repo, outside) = (base.join("repo"), base.join("outside"));
        fs::create_dir_all(repo.join("a")).unwrap();
        fs::create_dir_all(repo.join("b")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(repo.join("a/file"), "in").unwrap();
        fs::write(repo.join("b/x"), "x").unwrap();
        fs::write(outside.join("secret.txt"), "secret").unwrap();
        symlink("../b", repo.join("a/inside")).unwrap();
        symlink("../../outside", repo.join("a/out")).unwrap();
        symlink("../../outside/secret.txt", repo.join("a/file-out")).unwrap();
        symlink("loop", repo.join("a/loop")).unwrap();
        (t, repo, outside)
    }

    fn kind_of(r: io::Result<impl std::fmt::Debug>) -> Result<String, Refused> {
        match r {
            Ok(v) => Ok(format!("{v:?}")),
            Err(e) => Err(refused(&e)
                .cloned()
                .unwrap_or_else(|| panic!("not refused: {e}"))),
        }
    }

    #[test]
    fn resolve_follows_symlinks_one_component_at_a_time() {
        let links: BTreeMapLinks = [("/r/l", "../o"), ("/r/abs", "/etc"), ("/r/d/up", "..")]
            .into_iter()
            .collect();
        let resolve = |p: &str| resolve_with(Path::new(p), |q| Ok(links.get(q))).unwrap();
        assert_eq!(resolve("/r/l/x"), Path::new("/o/x"));
        assert_eq!(resolve("/r/abs/passwd"), Path::new("/etc/passwd"));
        assert_eq!(resolve("/r/d/up/up/x"), Path::new("/r/up/x"));
        assert_eq!(resolve("/r/missing/../l"), Path::new("/o"));
        assert_eq!(resolve("/r/./a/../../../x"), Path::new("/x"));
        let looping = resolve_with(Path::new("/x"), |_| Ok(Some(PathBuf::from("x"))));
        assert_eq!(refused(&looping.unwrap_err()), Some(&Refused::Loop));
    }

    /// Symlink targets by path, for [`resolve_with`].
    struct BTreeMapLinks(std::collections::BTreeMap<PathBuf, PathBuf>);

    impl BTreeMapLinks {
        fn get(&self, p: &Path) -> Option<PathBuf> {
            self.0.get(p).cloned()
        }
    }

    impl<'a> FromIterator<(&'a str, &'a str)> for BTreeMapLinks {
        fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(it: I) -> Self {
            BTreeMapLinks(
                it.into_iter()
                    .map(|(a, b)| (PathBuf::from(a), PathBuf::from(b)))
                    .collect(),
            )
        }
    }

    #[test]
    fn confined_fs_reads_inside_and_refuses_outside() {
        let (_t, repo, outside) = tree();
        let files = ConfinedFs::new(Confine::new(&repo, &[]).unwrap());
        assert_eq!(
            files.read(&repo.join("a/file")).unwrap(),
            Some(b"in".to_vec())
        );
        // A symlink inside the repository is followed.
        assert_eq!(
            files.read(&repo.join("a/inside/x")).unwrap(),
            Some(b"x".to_vec())
        );
        assert_eq!(files.read(&repo.join("a/none")).unwrap(), None);
        let outside_secret = outside.join("secret.txt");
        for p in [
            outside_secret.clone(),
            repo.join("a/out/secret.txt"),
            repo.join("a/file-out"),
            repo.join("a/../../outside/secret.txt"),
            repo.join("a/none/../../../outside/secret.txt"),
        ] {
            assert_eq!(
                kind_of(files.read(&p)),
                Err(Refused::Outside {
                    resolved: outside_secret.clone(),
                    root: repo.clone(),
                }),
                "{}",
                p.display()
            );
        }
        assert!(matches!(
            kind_of(files.kind(&repo.join("a/out"))),
            Err(Refused::Outside { .. })
        ));
        assert!(matches!(
            kind_of(files.list(&repo.join("a/out"))),
            Err(Refused::Outside { .. })
        ));
        assert!(matches!(
            kind_of(files.absolute(&repo.join("a/out"))),
            Err(Refused::Outside { .. })
        ));
        assert_eq!(
            kind_of(files.read(&repo.join("a/loop"))),
            Err(Refused::Loop)
        );
        let err = files.read(&outside_secret).unwrap_err();
        assert!(
            err.to_string()
                .contains(&outside_secret.display().to_string()),
            "{err}"
        );
        assert_eq!(read_hint(&err, "other"), OUTSIDE_HINT);
    }

    #[test]
    fn allowed_directories_are_readable_but_proc_sys_dev_never() {
        let (_t, repo, outside) = tree();
        let files = ConfinedFs::new(Confine::new(&repo, std::slice::from_ref(&outside)).unwrap());
        assert_eq!(
            files.read(&repo.join("a/file-out")).unwrap(),
            Some(b"secret".to_vec())
        );
        let files = ConfinedFs::new(
            Confine::new(&repo, &[PathBuf::from("/proc"), PathBuf::from("/")]).unwrap(),
        );
        for p in [
            "/proc/self/environ",
            "/sys/kernel",
            "/dev/null",
            "/proc/1/status",
        ] {
            let r = kind_of(files.read(Path::new(p)));
            assert!(matches!(r, Err(Refused::Never { .. })), "{p}: {r:?}");
        }
        let err = files.read(Path::new("/proc/self/environ")).unwrap_err();
        assert_eq!(read_hint(&err, "other"), NEVER_HINT);
        // A missing allowed directory is the host's mistake: an error at start.
        assert!(Confine::new(&repo, &[repo.join("nope")]).is_err());
    }

    #[test]
    fn the_root_is_the_git_work_tree_else_the_directory() {
        let (_t, repo, _) = tree();
        let c = Confine::for_path(&repo.join("a"), &[]).unwrap();
        assert_eq!(c.root(), repo.join("a"));
        let c = Confine::for_path(&repo.join("a/file"), &[]).unwrap();
        assert_eq!(c.root(), repo.join("a"));
        git2::Repository::init(&repo).unwrap();
        let c = Confine::for_path(&repo.join("a/file"), &[]).unwrap();
        assert_eq!(c.root(), repo);
        // A linked worktree or a submodule: `.git` is a file.
        fs::write(repo.join("a/.git"), "gitdir: /elsewhere/.git/worktrees/a\n").unwrap();
        let c = Confine::for_path(&repo.join("a/file"), &[]).unwrap();
        assert_eq!(c.root(), repo.join("a"));
    }

    #[test]
    fn a_commit_s_symlinks_are_followed_inside_and_refused_outside() {
        let (_t, repo, outside) = tree();
        symlink(outside.join("secret.txt"), repo.join("abs")).unwrap();
        fs::remove_file(repo.join("a/loop")).unwrap();
        let g = git2::Repository::init(&repo).unwrap();
        super::tests::commit_all(&g);
        let rev = GitTree::resolve(&repo, "HEAD").unwrap();
        let files = &rev.files;
        assert_eq!(
            files.read(Path::new("a/inside/x")).unwrap(),
            Some(b"x".to_vec())
        );
        assert_eq!(files.kind(Path::new("a/inside")).unwrap(), Some(Kind::Dir));
        let secret = outside.join("secret.txt");
        for p in [
            "a/out/secret.txt",
            "a/file-out",
            "abs",
            "../outside/secret.txt",
        ] {
            assert_eq!(
                kind_of(files.read(Path::new(p))),
                Err(Refused::Outside {
                    resolved: secret.clone(),
                    root: repo.clone(),
                }),
                "{p}"
            );
        }
        assert!(matches!(
            kind_of(files.read(Path::new("/proc/self/environ"))),
            Err(Refused::Outside { .. })
        ));
    }
}
