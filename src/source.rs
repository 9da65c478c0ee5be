//! Where the desired state comes from: finding the stacks under a PATH and
//! reading their files.
//!
//! PATH is a config repository root (`plimsoll.yaml`, `stacks/<name>/`), one
//! stack directory, or one Compose file. This module and its [`Files`]
//! implementations are the only readers of the file system for the desired
//! state; `spec` reads through [`Files`], so the same loader can later read a
//! git tree instead of a checkout.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

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

/// The name of the repository-level configuration file.
pub const CONFIG_FILE: &str = "plimsoll.yaml";

/// Read access to the files of the desired state.
pub trait Files: Sync {
    /// The bytes of a file, `Ok(None)` when it does not exist.
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>>;
}

/// The local file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalFs;

impl Files for LocalFs {
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
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

/// Finds the stacks under PATH.
pub fn discover(path: &Path) -> Result<Layout, SourceError> {
    let meta = fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => SourceError::NotFound {
            path: path.to_path_buf(),
        },
        _ => SourceError::Io {
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    if meta.is_file() {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut stack = stack_files(&dir, path.to_path_buf())?;
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
    let config = config.is_file().then_some(config);
    let stacks_dir = path.join("stacks");
    if config.is_some() || stacks_dir.is_dir() {
        let mut stacks = Vec::new();
        if stacks_dir.is_dir() {
            let mut entries: Vec<PathBuf> = fs::read_dir(&stacks_dir)
                .map_err(io_err(&stacks_dir))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect();
            entries.sort();
            for dir in entries {
                if let Some(compose) = find_compose(&dir) {
                    stacks.push(stack_files(&dir, compose)?);
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
    match find_compose(path) {
        Some(compose) => Ok(Layout {
            root: path.to_path_buf(),
            config: None,
            stacks: vec![stack_files(path, compose)?],
            repository: false,
        }),
        None => Err(SourceError::NothingToLoad {
            path: path.to_path_buf(),
        }),
    }
}

fn find_compose(dir: &Path) -> Option<PathBuf> {
    COMPOSE_FILE_NAMES
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

fn stack_files(dir: &Path, compose: PathBuf) -> Result<StackFiles, SourceError> {
    let abs_dir = fs::canonicalize(dir).map_err(io_err(dir))?;
    let overrides = OVERRIDE_FILE_NAMES
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
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
}
