//! Where the desired state comes from: finding the stacks under a PATH and
//! reading their files.
//!
//! PATH is a config repository root (`plimsoll.yaml`, `stacks/<name>/`), one
//! stack directory, or one Compose file. This module and its [`Files`]
//! implementations are the only readers of the file system for the desired
//! state; `spec` and [`discover_in`] read through [`Files`], so the same
//! loader reads a checkout ([`LocalFs`]) or a commit's tree ([`GitTree`],
//! for `plimsoll diff`) without checking it out.

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
}

/// The tree of one git commit, read from the object database (no checkout).
///
/// Paths are those of a checkout at `root` (the repository's work tree, or
/// the directory of a bare repository): absolute ones under `root`, or
/// relative to it. A path outside the repository does not exist.
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

    /// The repository-relative form of `path`, `None` outside the repository.
    fn relative(&self, path: &Path) -> Option<PathBuf> {
        let rel = match path.strip_prefix(&self.root) {
            Ok(r) => r,
            Err(_) if path.is_absolute() => return None,
            Err(_) => path,
        };
        let mut out = PathBuf::new();
        for c in rel.components() {
            match c {
                Component::Normal(n) => out.push(n),
                Component::CurDir => {}
                Component::ParentDir if out.pop() => {}
                _ => return None,
            }
        }
        Some(out)
    }

    /// The object id of the entry at `path` (a tree for a directory), `None` when absent.
    pub fn entry_id(&self, path: &Path) -> Option<String> {
        let rel = self.relative(path)?;
        let repo = self.repo.lock().unwrap_or_else(|e| e.into_inner());
        let tree = repo.find_tree(self.tree).ok()?;
        if rel.as_os_str().is_empty() {
            return Some(tree.id().to_string());
        }
        tree.get_path(&rel).ok().map(|e| e.id().to_string())
    }

    /// The entry at `path`: its object id and kind.
    fn entry(&self, path: &Path) -> io::Result<Option<(git2::Oid, Kind)>> {
        let Some(rel) = self.relative(path) else {
            return Ok(None);
        };
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
        match self.relative(path) {
            Some(rel) => Ok(self.root.join(rel)),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "outside the repository",
            )),
        }
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
    #[error("{path}: git: {message}")]
    Git { path: PathBuf, message: String },
    #[error("{path}: cannot read: {source}")]
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
    let config = is(&config, Kind::File).then_some(config);
    let stacks_dir = path.join("stacks");
    if config.is_some() || is(&stacks_dir, Kind::Dir) {
        let mut stacks = Vec::new();
        if is(&stacks_dir, Kind::Dir) {
            let mut entries: Vec<PathBuf> = files
                .list(&stacks_dir)
                .map_err(io_err(&stacks_dir))?
                .into_iter()
                .map(|n| stacks_dir.join(n))
                .filter(|p| is(p, Kind::Dir))
                .collect();
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
mod tests {
    use super::*;

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
        let mut index = repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        repo.commit(Some("HEAD"), &sig, &sig, "one", &tree, &[])
            .unwrap();
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
        assert_eq!(read(Path::new("../outside")), Ok(None));
        assert_eq!(read(Path::new("/etc/passwd")), Ok(None));
        // A PATH that no longer exists on disk is still found in the commit.
        let rev = GitTree::resolve(&root.join("stacks/a"), "HEAD").unwrap();
        assert_eq!(rev.path, Path::new("stacks/a"));
        assert!(matches!(
            GitTree::resolve(root, "nope"),
            Err(SourceError::Git { .. })
        ));
    }
}
