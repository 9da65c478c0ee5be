//! Scanning a build context (I/O: the file system): what the docker CLI
//! would send, every file, directory and symlink that `.dockerignore` does
//! not exclude ([`super::ignore`], Docker's rules), the Dockerfile and
//! `.dockerignore` always, and a Dockerfile that lives outside the context
//! or inline (`dockerfile_inline`) added under a generated name. File
//! digests are cached by their metadata stamp.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ignore::{self, Ignore};
use crate::spec::compose::normalize_path;
use crate::spec::model::Build;

/// What one entry of a context is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file: the sha256 of its content and its size.
    File {
        digest: String,
        size: u64,
    },
    Dir,
    Symlink(String),
}

/// One entry of a build context, as it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the context root, `/`-separated.
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u32,
}

/// A scanned build context: what the engine receives.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The context directory.
    pub dir: PathBuf,
    /// Entries from the directory, sorted by path.
    pub entries: Vec<Entry>,
    /// A Dockerfile added to the archive (inline, or from outside the
    /// context): its name in the archive and its content.
    pub added: Option<(String, Vec<u8>)>,
    /// The Dockerfile's path in the archive.
    pub dockerfile: String,
}

/// Why a context cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{dir}/{0}", dir = .1.display())]
    Ignore(ignore::PatternError, PathBuf),
    #[error("the Dockerfile {0} does not exist")]
    NoDockerfile(PathBuf),
}

pub(super) fn read_err(path: &Path) -> impl FnOnce(io::Error) -> ContextError + '_ {
    move |source| ContextError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// Walks a build context the way the docker CLI does before a build.
pub fn scan(build: &Build) -> Result<Context, ContextError> {
    let dir = PathBuf::from(&build.context);
    let ignore_path = dir.join(".dockerignore");
    let mut ignore = match fs::read(&ignore_path) {
        Ok(bytes) => Ignore::parse(&String::from_utf8_lossy(&bytes))
            .map_err(|e| ContextError::Ignore(e, dir.clone()))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ignore::default(),
        Err(e) => return Err(read_err(&ignore_path)(e)),
    };
    let mut added = None;
    let dockerfile = match (&build.dockerfile_inline, &build.dockerfile) {
        (Some(text), _) => {
            let name = format!(
                ".plimsoll-dockerfile-{}",
                &sha256_hex(text.as_bytes())[..12]
            );
            added = Some((name.clone(), text.clone().into_bytes()));
            name
        }
        (None, df) => {
            let df = df.as_deref().unwrap_or("Dockerfile");
            let abs = normalize_path(&dir.join(df));
            match abs.strip_prefix(&dir) {
                Ok(rel) if !rel.as_os_str().is_empty() => {
                    if !abs.is_file() {
                        return Err(ContextError::NoDockerfile(abs));
                    }
                    rel.to_string_lossy().replace('\\', "/")
                }
                // Outside the context: the docker CLI adds it under a generated name.
                _ => {
                    let bytes = fs::read(&abs).map_err(|e| {
                        if e.kind() == io::ErrorKind::NotFound {
                            ContextError::NoDockerfile(abs.clone())
                        } else {
                            read_err(&abs)(e)
                        }
                    })?;
                    let name = format!(".plimsoll-dockerfile-{}", &sha256_hex(&bytes)[..12]);
                    added = Some((name.clone(), bytes));
                    name
                }
            }
        }
    };
    // The Dockerfile and .dockerignore are always sent (the docker CLI's rule).
    for always in [".dockerignore", dockerfile.as_str()] {
        if ignore.excludes(always) {
            ignore.push_exception(always);
        }
    }
    let mut entries = Vec::new();
    walk(&dir, "", &ignore, &mut entries)?;
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Context {
        dir,
        entries,
        added,
        dockerfile,
    })
}

fn walk(dir: &Path, rel: &str, ignore: &Ignore, out: &mut Vec<Entry>) -> Result<(), ContextError> {
    let here = if rel.is_empty() {
        dir.to_path_buf()
    } else {
        dir.join(rel)
    };
    let mut names: Vec<String> = fs::read_dir(&here)
        .map_err(read_err(&here))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(read_err(&here))?;
    names.sort();
    for name in names {
        let path = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let abs = dir.join(&path);
        let meta = fs::symlink_metadata(&abs).map_err(read_err(&abs))?;
        let excluded = ignore.excludes(&path);
        if meta.is_dir() {
            if !excluded {
                out.push(Entry {
                    path: path.clone(),
                    kind: EntryKind::Dir,
                    mode: mode_of(&meta),
                });
            }
            if !excluded || (ignore.has_exceptions() && ignore.may_include_below(&path)) {
                walk(dir, &path, ignore, out)?;
            }
            continue;
        }
        if excluded {
            continue;
        }
        let kind = if meta.file_type().is_symlink() {
            let target = fs::read_link(&abs).map_err(read_err(&abs))?;
            EntryKind::Symlink(target.to_string_lossy().into_owned())
        } else if meta.is_file() {
            let (digest, size) = cached_digest(&abs, &meta).map_err(read_err(&abs))?;
            EntryKind::File { digest, size }
        } else {
            // Sockets, fifos and devices have no content to send.
            continue;
        };
        out.push(Entry {
            path,
            kind,
            mode: mode_of(&meta),
        });
    }
    Ok(())
}

#[cfg(unix)]
fn mode_of(meta: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn mode_of(meta: &fs::Metadata) -> u32 {
    if meta.is_dir() { 0o755 } else { 0o644 }
}

/// What a file's digest was computed from: it is read again when any changes.
#[derive(PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    #[cfg(unix)]
    ctime: (i64, i64),
    #[cfg(unix)]
    ino: u64,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            ctime: (meta.ctime(), meta.ctime_nsec()),
            #[cfg(unix)]
            ino: meta.ino(),
        }
    }
}

type DigestCache = std::collections::HashMap<PathBuf, (Stamp, String, u64)>;

/// A file's digest, remembered per process: the agent hashes every build
/// context on each check, and reads again only the files whose size, times
/// or inode changed since.
fn cached_digest(path: &Path, meta: &fs::Metadata) -> io::Result<(String, u64)> {
    static CACHE: std::sync::Mutex<Option<DigestCache>> = std::sync::Mutex::new(None);
    const MAX_ENTRIES: usize = 200_000;
    let stamp = Stamp::of(meta);
    {
        let cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((s, digest, size)) = cache.as_ref().and_then(|c| c.get(path))
            && *s == stamp
        {
            return Ok((digest.clone(), *size));
        }
    }
    let (digest, size) = file_digest(path)?;
    // Written while being read: do not remember a digest that may be torn.
    if size == stamp.len {
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        let cache = cache.get_or_insert_with(Default::default);
        if cache.len() >= MAX_ENTRIES {
            cache.clear();
        }
        cache.insert(path.to_path_buf(), (stamp, digest.clone(), size));
    }
    Ok((digest, size))
}

fn file_digest(path: &Path) -> io::Result<(String, u64)> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex::encode(h.finalize()), size))
}

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
