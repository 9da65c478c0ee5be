//! The state directory: what plimsoll remembers on a host between runs.
//!
//! ```text
//! <state>/VERSION                 format version (migrated on upgrade)
//! <state>/lock                    advisory lock: one apply at a time per host
//! <state>/host.key                key that encrypts stored revisions and keys their names
//! <state>/audit.jsonl[.N]         append-only audit log, rotated by size
//! <state>/revisions/<name>.bin    applied desired states, encrypted, named by an HMAC of
//!                                 their content under a key derived from host.key
//! <state>/revisions.jsonl         which revision of which stack was applied when, and how it went
//! <state>/paused.json             `plimsoll pause`: stacks (or the whole host) frozen by hand
//! <state>/agent.json              the agent's last good and rejected revisions
//! <state>/heal.json               the agent's self-heal counters
//! <state>/git/                    the agent's clone of the repository
//! <state>/engine-cache.bin        what the last run read from the engine (container inspects,
//!                                 image configs, API version, event watermark), encrypted;
//!                                 a cache only: missing or unreadable means "inspect everything"
//! ```
//!
//! The CLI and the agent share one state directory per host, so the lock
//! serializes both. Invariants: the audit log and revision index are only
//! appended to; a record is one line, so a crash mid-write leaves at most one
//! unreadable last line, which readers skip; secrets never reach these files
//! in clear (records are masked, stored revisions are encrypted, and their
//! names are keyed so a guessed secret cannot be confirmed from a file name).
//! The directory is 0700 and every file plimsoll writes 0600 (tightened on
//! open, for directories made by older versions); no state file is opened
//! through a symbolic link: a link planted at one is refused, never followed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chacha20poly1305::aead::{Aead, Generate, Key, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The format version this build writes. 2: modes tightened (0700/0600),
/// revision files named by a keyed HMAC (version 1's SHA-256 names stay readable).
pub const FORMAT_VERSION: u32 = 2;
/// The engine cache (`live::cache`), sealed with `host.key` like revisions.
pub const ENGINE_CACHE: &str = "engine-cache.bin";
/// The audit log (rotated to `audit.jsonl.1`, `.2`, …).
pub const AUDIT_FILE: &str = "audit.jsonl";
/// Default size at which the audit log rotates.
pub const AUDIT_MAX_BYTES: u64 = 10 << 20;
/// How many rotated audit files are kept.
pub const AUDIT_KEEP: usize = 5;

#[derive(Debug, Error)]
pub enum StateError {
    #[error(
        "state directory {path}: {source}; check that it exists and this user may write it (or pass --state-dir)"
    )]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "state directory {path} has format version {found}, newer than this plimsoll understands ({FORMAT_VERSION}); upgrade plimsoll"
    )]
    TooNew { path: PathBuf, found: u32 },
    #[error(
        "another plimsoll holds the lock on {path} ({holder}); waited {waited}s (see --lock-timeout)"
    )]
    Locked {
        path: PathBuf,
        holder: String,
        waited: u64,
    },
    #[error("revision {hash} cannot be read: {why}")]
    Revision { hash: String, why: String },
    #[error(
        "{path} is a symbolic link: plimsoll never follows links in its state directory (one planted there could make it read or write another file); remove the link"
    )]
    Symlink { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| {
        if source.raw_os_error() == Some(libc::ELOOP) {
            StateError::Symlink {
                path: path.to_path_buf(),
            }
        } else {
            StateError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

/// Opens an existing file for reading, refusing a symbolic link (`O_NOFOLLOW`).
fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Reads a whole file without following a symbolic link; a missing file is `None`.
fn read_nofollow(path: &Path) -> Result<Option<Vec<u8>>, StateError> {
    let mut bytes = Vec::new();
    match open_nofollow(path).and_then(|mut f| f.read_to_end(&mut bytes)) {
        Ok(_) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Whether `name`, an entry of the state directory, is a file plimsoll writes
/// there (others, such as an operator's `age.key`, are left as they are).
fn is_state_file(name: &str) -> bool {
    matches!(
        name,
        "VERSION"
            | "lock"
            | "host.key"
            | "revisions"
            | "revisions.jsonl"
            | "paused.json"
            | "agent.json"
            | "heal.json"
            | "mounts.json"
            | ENGINE_CACHE
    ) || name.starts_with("audit.jsonl")
        || (name.starts_with('.') && name.ends_with(".tmp"))
}

/// Makes the directory 0700 and plimsoll's files in it (and in `revisions/`)
/// 0600; a symbolic link in place of one of them is refused.
fn tighten(root: &Path) -> Result<(), StateError> {
    let chmod = |path: &Path, meta: &fs::Metadata, mode: u32| {
        if meta.permissions().mode() & 0o777 != mode
            && let Err(e) = fs::set_permissions(path, fs::Permissions::from_mode(mode))
        {
            tracing::warn!(
                "cannot make {} mode {mode:o}: {e}; make it so by hand",
                path.display()
            );
        }
    };
    let meta = fs::metadata(root).map_err(io_err(root))?;
    chmod(root, &meta, 0o700);
    let revisions = root.join("revisions");
    for (dir, all) in [(root.to_path_buf(), false), (revisions, true)] {
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name();
            if !all && !is_state_file(&name.to_string_lossy()) {
                continue;
            }
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
            if meta.file_type().is_symlink() {
                return Err(StateError::Symlink { path });
            }
            let mode = if meta.is_dir() { 0o700 } else { 0o600 };
            chmod(&path, &meta, mode);
        }
    }
    Ok(())
}

/// Serializes this process's appends to the state directory's logs (the
/// agent's heals run concurrently under the shared lock).
static APPENDS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// An open state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

/// The held lock; released when dropped (and by the OS when the process dies).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl StateDir {
    /// Opens (creating it 0700 if needed), tightens and migrates the state directory.
    pub fn open(root: &Path) -> Result<StateDir, StateError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root.join("revisions"))
            .map_err(io_err(root))?;
        tighten(root)?;
        let version_file = root.join("VERSION");
        match read_nofollow(&version_file)
            .map(|b| b.map(|b| String::from_utf8_lossy(&b).into_owned()))
        {
            Ok(Some(text)) => {
                let found: u32 = text.trim().parse().unwrap_or(0);
                if found > FORMAT_VERSION {
                    return Err(StateError::TooNew {
                        path: root.to_path_buf(),
                        found,
                    });
                }
                if found < FORMAT_VERSION {
                    migrate(root, found)?;
                }
            }
            Ok(None) => migrate(root, 0)?,
            Err(e) => return Err(e),
        }
        Ok(StateDir {
            root: root.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Reads a JSON document of the state directory (`name` like `heal.json`);
    /// a missing file is the default value.
    pub fn read_json<T: DeserializeOwned + Default>(&self, name: &str) -> Result<T, StateError> {
        read_json_at(&self.root, name)
    }

    /// Replaces a JSON document atomically (written aside, then renamed).
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StateError> {
        let path = self.root.join(name);
        let tmp = self.root.join(format!(".{name}.tmp"));
        let bytes = serde_json::to_vec_pretty(value).expect("state documents serialize");
        write_private(&tmp, &bytes)?;
        fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    /// Replaces `name` with `plaintext` encrypted under the host key, 0600,
    /// atomically (written aside, then renamed). Not synced to disk: for
    /// caches, which a crash may tear and a reader then ignores.
    pub fn write_sealed(&self, name: &str, plaintext: &[u8]) -> Result<(), StateError> {
        let path = self.root.join(name);
        let tmp = self.root.join(format!(".{name}.tmp"));
        let sealed = seal(&self.key()?, plaintext).ok_or_else(|| StateError::Revision {
            hash: name.into(),
            why: "encryption failed".into(),
        })?;
        write_file(&tmp, &sealed, false)?;
        fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    /// What `plimsoll pause` froze.
    pub fn paused(&self) -> Result<Paused, StateError> {
        self.read_json("paused.json")
    }

    /// Freezes (or thaws) one stack, or the whole host with `None`.
    pub fn set_paused(&self, stack: Option<&str>, paused: bool) -> Result<(), StateError> {
        let mut p = self.paused()?;
        match stack {
            None => {
                p.host = paused;
                if !paused {
                    p.stacks.clear();
                }
            }
            Some(s) if paused => {
                p.stacks.insert(s.to_string());
            }
            Some(s) => {
                p.stacks.remove(s);
            }
        }
        self.write_json("paused.json", &p)
    }

    /// Takes the host's apply lock, waiting up to `timeout`; `waiting` is told once who holds it.
    pub fn lock(&self, timeout: Duration, waiting: &dyn Fn(&str)) -> Result<Lock, StateError> {
        self.lock_as(false, timeout, waiting)
    }

    /// Takes the host's lock shared (`flock(LOCK_SH)`): holders of shared
    /// locks run together (the agent's heals of different services), and
    /// exclude, and are excluded by, the exclusive lock of [`StateDir::lock`]
    /// (a `plimsoll reconcile`, the agent applying a new revision). A shared
    /// holder does not write its name in the lock file (several hold it).
    pub fn lock_shared(
        &self,
        timeout: Duration,
        waiting: &dyn Fn(&str),
    ) -> Result<Lock, StateError> {
        self.lock_as(true, timeout, waiting)
    }

    fn lock_as(
        &self,
        shared: bool,
        timeout: Duration,
        waiting: &dyn Fn(&str),
    ) -> Result<Lock, StateError> {
        let path = self.root.join("lock");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io_err(&path))?;
        let started = Instant::now();
        let mut told = false;
        loop {
            let attempt = if shared {
                file.try_lock_shared()
            } else {
                file.try_lock()
            };
            match attempt {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) => {
                    let holder = read_nofollow(&path)
                        .ok()
                        .flatten()
                        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
                        .unwrap_or_default();
                    let holder = if holder.is_empty() {
                        "unknown process".into()
                    } else {
                        holder
                    };
                    if started.elapsed() >= timeout {
                        return Err(StateError::Locked {
                            path,
                            holder,
                            waited: started.elapsed().as_secs(),
                        });
                    }
                    if !told {
                        waiting(&holder);
                        told = true;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(fs::TryLockError::Error(e)) => return Err(io_err(&path)(e)),
            }
        }
        if shared {
            return Ok(Lock { _file: file });
        }
        file.set_len(0).map_err(io_err(&path))?;
        let host = hostname();
        writeln!(file, "pid {} on {host}", std::process::id()).map_err(io_err(&path))?;
        Ok(Lock { _file: file })
    }

    /// The host's key, made on first use (`create_new`: never over an existing file).
    fn key(&self) -> Result<Key<ChaCha20Poly1305>, StateError> {
        let path = self.root.join("host.key");
        match read_nofollow(&path)? {
            Some(bytes) if bytes.len() == 32 => {
                Ok(Key::<ChaCha20Poly1305>::try_from(bytes.as_slice()).expect("32 bytes"))
            }
            Some(_) => Err(StateError::Revision {
                hash: String::new(),
                why: format!("{} is not a 32-byte key", path.display()),
            }),
            None => {
                let key = Key::<ChaCha20Poly1305>::generate();
                match create_private(&path, key.as_slice()) {
                    Ok(()) => Ok(key),
                    // Another process made it first: use theirs.
                    Err(StateError::Io { source, .. })
                        if source.kind() == io::ErrorKind::AlreadyExists =>
                    {
                        self.key()
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// The name a revision is stored under: an HMAC-SHA-256 of its content
    /// under a key derived from `host.key`, hex. Unlike a plain hash, it
    /// cannot confirm a guess of the content without the key.
    pub fn revision_name(&self, plaintext: &[u8]) -> Result<String, StateError> {
        let key = self.key()?;
        let mut derive = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key.as_slice())
            .expect("HMAC accepts keys of any length");
        derive.update(b"plimsoll revision names v1");
        let names = derive.finalize().into_bytes();
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&names)
            .expect("HMAC accepts keys of any length");
        mac.update(plaintext);
        Ok(mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }

    /// Stores a desired state (its canonical bytes) encrypted; returns its name
    /// ([`StateDir::revision_name`]).
    pub fn store_revision(&self, plaintext: &[u8]) -> Result<String, StateError> {
        let hash = self.revision_name(plaintext)?;
        let path = self.root.join("revisions").join(format!("{hash}.bin"));
        let _serial = APPENDS.lock().unwrap_or_else(|e| e.into_inner());
        if fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            return Ok(hash);
        }
        let out = seal(&self.key()?, plaintext).ok_or_else(|| StateError::Revision {
            hash: hash.clone(),
            why: "encryption failed".into(),
        })?;
        let tmp = path.with_extension("tmp");
        write_private(&tmp, &out)?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        Ok(hash)
    }

    /// Reads a stored desired state back.
    pub fn load_revision(&self, hash: &str) -> Result<Vec<u8>, StateError> {
        if hash.is_empty() || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StateError::Revision {
                hash: hash.into(),
                why: "a revision name is hexadecimal".into(),
            });
        }
        let path = self.root.join("revisions").join(format!("{hash}.bin"));
        let bytes = match read_nofollow(&path) {
            Ok(Some(b)) => b,
            Ok(None) => {
                return Err(StateError::Revision {
                    hash: hash.into(),
                    why: "it is not stored on this host".into(),
                });
            }
            Err(e) => {
                return Err(StateError::Revision {
                    hash: hash.into(),
                    why: e.to_string(),
                });
            }
        };
        if bytes.len() < 12 {
            return Err(StateError::Revision {
                hash: hash.into(),
                why: "file is truncated".into(),
            });
        }
        unseal(&self.key()?, &bytes).ok_or_else(|| StateError::Revision {
            hash: hash.into(),
            why: "it does not decrypt with this host's key".into(),
        })
    }

    /// Appends a record to the revision index.
    pub fn record_revision(&self, rec: &RevisionRecord) -> Result<(), StateError> {
        let _serial = APPENDS.lock().unwrap_or_else(|e| e.into_inner());
        append_line(&self.root.join("revisions.jsonl"), rec)
    }

    /// The revision index, oldest first.
    pub fn revisions(&self) -> Result<Vec<RevisionRecord>, StateError> {
        read_lines(&self.root.join("revisions.jsonl"))
    }

    /// Appends a record to the audit log, rotating it when it grows past
    /// `max_bytes` and keeping `keep` rotated files.
    pub fn audit(
        &self,
        rec: &serde_json::Value,
        max_bytes: u64,
        keep: usize,
    ) -> Result<(), StateError> {
        let path = self.root.join(AUDIT_FILE);
        // The agent's heals record concurrently (under the shared lock): one at a time.
        let _serial = APPENDS.lock().unwrap_or_else(|e| e.into_inner());
        if fs::symlink_metadata(&path).is_ok_and(|m| m.is_file() && m.len() > max_bytes) {
            rotate(&path, keep.max(1))?;
        }
        append_line(&path, rec)
    }

    /// The newest `n` audit records, oldest first: the rotated files are
    /// read only as far back as it takes.
    pub fn recent_audit_records(&self, n: usize) -> Result<Vec<serde_json::Value>, StateError> {
        let mut newest_first: Vec<Vec<serde_json::Value>> = Vec::new();
        let mut count = 0;
        for i in 0.. {
            let path = match i {
                0 => self.root.join(AUDIT_FILE),
                i => self.root.join(format!("{AUDIT_FILE}.{i}")),
            };
            if i > 0 && fs::symlink_metadata(&path).is_err() {
                break;
            }
            let records: Vec<serde_json::Value> = read_lines(&path)?;
            count += records.len();
            newest_first.push(records);
            if count >= n {
                break;
            }
        }
        let mut out: Vec<serde_json::Value> = newest_first.into_iter().rev().flatten().collect();
        Ok(out.split_off(out.len().saturating_sub(n)))
    }

    /// Audit records, oldest first, across rotated files; unreadable lines are skipped.
    pub fn audit_records(&self) -> Result<Vec<serde_json::Value>, StateError> {
        let mut out = Vec::new();
        let rotated = (1..)
            .take_while(|i| {
                fs::symlink_metadata(self.root.join(format!("audit.jsonl.{i}"))).is_ok()
            })
            .count();
        for i in (1..=rotated).rev() {
            out.extend(read_lines(&self.root.join(format!("audit.jsonl.{i}")))?);
        }
        out.extend(read_lines(&self.root.join("audit.jsonl"))?);
        Ok(out)
    }
}

/// One line of the revision index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionRecord {
    pub time: String,
    pub stack: String,
    /// The revision as the source names it: a commit SHA, or `local:<hash>` for a directory.
    pub revision: String,
    /// The content hash of the stored desired state.
    pub hash: String,
    /// `applied` or `failed`.
    pub outcome: String,
}

/// `mounts.json`: the content hashes of the repository files a container
/// was restarted with (`x-plimsoll: {on_mount_change: restart}`), newer than
/// its `io.plimsoll.mount.*` labels, which a restart cannot change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedMounts {
    /// The format of this document (1).
    #[serde(default)]
    pub version: u32,
    /// Container ID -> mount target -> content hash.
    #[serde(default)]
    pub containers: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    /// Container ID -> the spec hash of git's config once its drift is
    /// accepted into git (`plimsoll drift --patch`): a container changed by
    /// `docker update` keeps the label of the config it was created with,
    /// so the plan takes this hash for it while it still carries that label.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub accepted: std::collections::BTreeMap<String, Accepted>,
}

/// A drift accepted into git, for one container (see [`AppliedMounts::accepted`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The spec hash label the container carries.
    pub label: String,
    /// The spec hash git's config has with the drift accepted.
    pub hash: String,
}

/// The name of [`AppliedMounts`] in the state directory.
pub const MOUNTS_FILE: &str = "mounts.json";

/// Reads [`AppliedMounts`] from the state directory at `root` without
/// creating or migrating anything (for a dry run); missing: empty.
pub fn applied_mounts_at(root: &Path) -> Result<AppliedMounts, StateError> {
    read_json_at(root, MOUNTS_FILE)
}

/// Reads a JSON document of the state directory at `root` without creating
/// or migrating anything (for commands that only look); missing: the default.
pub fn read_json_at<T: DeserializeOwned + Default>(
    root: &Path,
    name: &str,
) -> Result<T, StateError> {
    let path = root.join(name);
    match read_nofollow(&path)? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StateError::Io {
            path,
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        }),
        None => Ok(T::default()),
    }
}

impl StateDir {
    /// What containers were restarted with ([`AppliedMounts`]).
    pub fn applied_mounts(&self) -> Result<AppliedMounts, StateError> {
        applied_mounts_at(&self.root)
    }

    /// Changes [`AppliedMounts`] with `f` (read, change, write: one at a
    /// time in this process, as heals run concurrently); whether it changed.
    pub fn update_applied_mounts(
        &self,
        f: impl FnOnce(&mut AppliedMounts),
    ) -> Result<bool, StateError> {
        static WRITES: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = WRITES.lock().unwrap_or_else(|e| e.into_inner());
        let before = self.applied_mounts()?;
        let mut after = before.clone();
        f(&mut after);
        if after == before {
            return Ok(false);
        }
        self.set_applied_mounts(&after)?;
        Ok(true)
    }

    /// Replaces [`AppliedMounts`] (atomically, 0600).
    pub fn set_applied_mounts(&self, m: &AppliedMounts) -> Result<(), StateError> {
        let m = AppliedMounts {
            version: 1,
            containers: m.containers.clone(),
            accepted: m.accepted.clone(),
        };
        self.write_json(MOUNTS_FILE, &m)
    }
}

/// Stacks frozen by `plimsoll pause` on this host, kept in the state directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paused {
    /// The whole host is frozen.
    #[serde(default)]
    pub host: bool,
    #[serde(default)]
    pub stacks: std::collections::BTreeSet<String>,
}

impl Paused {
    pub fn contains(&self, stack: &str) -> bool {
        self.host || self.stacks.contains(stack)
    }
}

/// The SHA-256 of some bytes, hex.
pub fn content_hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Who runs this process, for records: the user `sudo` ran it for
/// (`SUDO_USER`), else `USER`, else the numeric user id.
pub fn invoking_user() -> String {
    use std::os::unix::fs::MetadataExt as _;
    let named = |var: &str| std::env::var(var).ok().filter(|v| !v.trim().is_empty());
    named("SUDO_USER")
        .or_else(|| named("USER"))
        .or_else(|| named("LOGNAME"))
        .unwrap_or_else(|| match fs::metadata("/proc/self") {
            Ok(m) => format!("uid {}", m.uid()),
            Err(_) => "unknown".into(),
        })
}

/// This host's name, for records.
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The time now, RFC 3339.
pub fn now() -> String {
    jiff::Timestamp::now().to_string()
}

fn migrate(root: &Path, from: u32) -> Result<(), StateError> {
    // Version 0 is "no VERSION file": a new or pre-release directory. Version 1
    // had 0755/0644 modes (tightened by `open` on every run) and SHA-256
    // revision names, which stay readable: records name the file they wrote.
    let _ = from;
    let path = root.join("VERSION");
    let tmp = root.join(".VERSION.tmp");
    write_private(&tmp, format!("{FORMAT_VERSION}\n").as_bytes())?;
    fs::rename(&tmp, &path).map_err(io_err(&path))
}

/// `plaintext` encrypted under `key`: a random nonce, then the sealed bytes.
fn seal(key: &Key<ChaCha20Poly1305>, plaintext: &[u8]) -> Option<Vec<u8>> {
    let nonce = Nonce::generate();
    let sealed = ChaCha20Poly1305::new(key).encrypt(&nonce, plaintext).ok()?;
    let mut out = nonce.to_vec();
    out.extend(sealed);
    Some(out)
}

/// The plaintext of [`seal`]'s output; `None` when it is truncated or was
/// sealed under another key (or altered).
fn unseal(key: &Key<ChaCha20Poly1305>, bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() < 12 {
        return None;
    }
    let (nonce, sealed) = bytes.split_at(12);
    let nonce = Nonce::try_from(nonce).ok()?;
    ChaCha20Poly1305::new(key).decrypt(&nonce, sealed).ok()
}

/// Reads the sealed file `name` of the state directory at `root` without
/// creating or changing anything there (a dry run may have no state
/// directory): `None` when the directory, its key or the file is missing,
/// or the file does not open (torn, altered, another key).
pub fn read_sealed_at(root: &Path, name: &str) -> Option<Vec<u8>> {
    let key = read_nofollow(&root.join("host.key")).ok()??;
    let key = Key::<ChaCha20Poly1305>::try_from(key.as_slice()).ok()?;
    unseal(&key, &read_nofollow(&root.join(name)).ok()??)
}

/// Writes a file 0600, refusing a symbolic link at `path`.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    write_file(path, bytes, true)
}

/// [`write_private`], synced to disk only when `sync`.
fn write_file(path: &Path, bytes: &[u8], sync: bool) -> Result<(), StateError> {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(bytes)
        .and_then(|()| if sync { f.sync_all() } else { Ok(()) })
        .map_err(io_err(path))
}

/// Creates a new file 0600 (`O_EXCL`: never over an existing file or link).
fn create_private(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let mut f = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io_err(path))
}

fn append_line<T: Serialize>(path: &Path, rec: &T) -> Result<(), StateError> {
    let mut line = serde_json::to_string(rec).expect("records serialize");
    line.push('\n');
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err(path))?;
    // A torn last line from a crash would glue onto this record: start on a fresh line.
    let len = f.metadata().map_err(io_err(path))?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        use std::os::unix::fs::FileExt as _;
        let read = open_nofollow(path)
            .and_then(|r| r.read_at(&mut last, len - 1))
            .map_err(io_err(path))?;
        if read == 1 && last[0] != b'\n' {
            line.insert(0, '\n');
        }
    }
    f.write_all(line.as_bytes())
        .and_then(|()| f.sync_data())
        .map_err(io_err(path))
}

fn read_lines<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, StateError> {
    let f = match open_nofollow(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut out = Vec::new();
    for line in BufReader::new(f).lines() {
        let line = line.map_err(io_err(path))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(v) => out.push(v),
            Err(e) => tracing::warn!(
                "{}: skipping an unreadable line (a crash mid-write?): {e}",
                path.display()
            ),
        }
    }
    Ok(out)
}

fn rotate(path: &Path, keep: usize) -> Result<(), StateError> {
    let name = |i: usize| PathBuf::from(format!("{}.{i}", path.display()));
    let _ = fs::remove_file(name(keep));
    for i in (1..keep).rev() {
        if fs::symlink_metadata(name(i)).is_ok() {
            fs::rename(name(i), name(i + 1)).map_err(io_err(path))?;
        }
    }
    fs::rename(path, name(1)).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_and_refuses_newer() {
        let t = tempfile::tempdir().unwrap();
        StateDir::open(t.path()).unwrap();
        assert_eq!(
            fs::read_to_string(t.path().join("VERSION")).unwrap().trim(),
            FORMAT_VERSION.to_string()
        );
        fs::write(t.path().join("VERSION"), "99\n").unwrap();
        assert!(matches!(
            StateDir::open(t.path()),
            Err(StateError::TooNew { found: 99, .. })
        ));
    }

    #[test]
    fn revisions_are_encrypted_and_round_trip() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::open(t.path()).unwrap();
        let secret = b"{\"env\": \"canary-s3cret-value\"}";
        let hash = s.store_revision(secret).unwrap();
        // Keyed: the name does not confirm a guess of the content.
        assert_ne!(hash, content_hash(secret));
        assert_eq!(hash, s.revision_name(secret).unwrap());
        assert_eq!(hash.len(), 64);
        let raw = fs::read(t.path().join("revisions").join(format!("{hash}.bin"))).unwrap();
        assert!(!raw.windows(6).any(|w| w == b"canary"), "stored in clear");
        assert_eq!(s.load_revision(&hash).unwrap(), secret);
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            fs::metadata(t.path().join("host.key"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }

    #[test]
    fn audit_log_tolerates_a_torn_last_line_and_rotates() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::open(t.path()).unwrap();
        s.audit(&serde_json::json!({"n": 1}), AUDIT_MAX_BYTES, AUDIT_KEEP)
            .unwrap();
        // A crash mid-write leaves half a record.
        let mut f = OpenOptions::new()
            .append(true)
            .open(t.path().join("audit.jsonl"))
            .unwrap();
        f.write_all(b"{\"n\": 2, \"trunc").unwrap();
        s.audit(&serde_json::json!({"n": 3}), AUDIT_MAX_BYTES, AUDIT_KEEP)
            .unwrap();
        let recs = s.audit_records().unwrap();
        assert_eq!(
            recs,
            vec![serde_json::json!({"n": 1}), serde_json::json!({"n": 3})]
        );
        // A tiny limit rotates on every record; only `keep` rotated files stay.
        for n in 4..10 {
            s.audit(&serde_json::json!({"n": n}), 1, 2).unwrap();
        }
        let recs = s.audit_records().unwrap();
        assert_eq!(
            recs,
            vec![
                serde_json::json!({"n": 7}),
                serde_json::json!({"n": 8}),
                serde_json::json!({"n": 9})
            ]
        );
        assert!(!t.path().join("audit.jsonl.3").exists());
    }

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn modes_are_private_and_old_directories_are_tightened() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("state");
        let s = StateDir::open(&root).unwrap();
        s.store_revision(b"x").unwrap();
        s.audit(&serde_json::json!({"n": 1}), AUDIT_MAX_BYTES, AUDIT_KEEP)
            .unwrap();
        s.write_json("heal.json", &serde_json::json!({})).unwrap();
        drop(s.lock(Duration::from_secs(1), &|_| {}).unwrap());
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("revisions")), 0o700);
        for f in ["VERSION", "host.key", "audit.jsonl", "heal.json", "lock"] {
            assert_eq!(mode(&root.join(f)), 0o600, "{f}");
        }
        // A version-1 directory: world-readable, a SHA-256 revision name.
        let old = t.path().join("old");
        fs::create_dir_all(old.join("revisions")).unwrap();
        fs::write(old.join("VERSION"), "1\n").unwrap();
        fs::copy(root.join("host.key"), old.join("host.key")).unwrap();
        let sealed = fs::read(
            root.join("revisions")
                .join(format!("{}.bin", s.revision_name(b"x").unwrap())),
        )
        .unwrap();
        let sha = content_hash(b"x");
        fs::write(old.join("revisions").join(format!("{sha}.bin")), sealed).unwrap();
        fs::write(old.join("audit.jsonl"), "{}\n").unwrap();
        fs::write(old.join("age.key"), "operator's").unwrap();
        for p in [&old, &old.join("revisions")] {
            fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        for f in ["VERSION", "host.key", "audit.jsonl", "age.key"] {
            fs::set_permissions(old.join(f), fs::Permissions::from_mode(0o644)).unwrap();
        }
        let o = StateDir::open(&old).unwrap();
        assert_eq!(mode(&old), 0o700);
        assert_eq!(mode(&old.join("revisions")), 0o700);
        assert_eq!(mode(&old.join("audit.jsonl")), 0o600);
        assert_eq!(mode(&old.join("host.key")), 0o600);
        assert_eq!(
            mode(&old.join("revisions").join(format!("{sha}.bin"))),
            0o600
        );
        assert_eq!(mode(&old.join("age.key")), 0o644, "not plimsoll's file");
        assert_eq!(fs::read_to_string(old.join("VERSION")).unwrap().trim(), "2");
        assert_eq!(
            o.load_revision(&sha).unwrap(),
            b"x",
            "old names stay readable"
        );
        assert!(o.load_revision("../../etc/passwd").is_err());
    }

    #[test]
    fn symlinks_are_refused_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("outside");
        fs::write(&target, "untouched").unwrap();
        for name in [
            "audit.jsonl",
            "host.key",
            "revisions.jsonl",
            "lock",
            "agent.json",
        ] {
            let root = t.path().join(format!("state-{name}"));
            let s = StateDir::open(&root).unwrap();
            std::os::unix::fs::symlink(&target, root.join(name)).unwrap();
            let e = StateDir::open(&root).unwrap_err();
            assert!(matches!(e, StateError::Symlink { .. }), "{name}: {e}");
            assert!(e.to_string().contains("symbolic link"), "{e}");
            // Planted after open: each use refuses it too.
            let refused = match name {
                "audit.jsonl" => s
                    .audit(&serde_json::json!({}), AUDIT_MAX_BYTES, AUDIT_KEEP)
                    .err(),
                "host.key" => s.store_revision(b"y").err(),
                "revisions.jsonl" => s.revisions().err(),
                "lock" => s.lock(Duration::from_secs(1), &|_| {}).err(),
                _ => s.read_json::<serde_json::Value>(name).err(),
            };
            assert!(
                matches!(refused, Some(StateError::Symlink { .. })),
                "{name}: {refused:?}"
            );
            assert_eq!(fs::read_to_string(&target).unwrap(), "untouched", "{name}");
        }
    }

    #[test]
    fn host_key_is_never_written_over() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::open(t.path()).unwrap();
        let key = [7u8; 32];
        create_private(&t.path().join("host.key"), &key).unwrap();
        let e = create_private(&t.path().join("host.key"), &[8u8; 32]).unwrap_err();
        assert!(
            matches!(e, StateError::Io { ref source, .. } if source.kind() == io::ErrorKind::AlreadyExists),
            "{e}"
        );
        let name = s.store_revision(b"z").unwrap();
        assert_eq!(fs::read(t.path().join("host.key")).unwrap(), key);
        assert_eq!(s.load_revision(&name).unwrap(), b"z");
    }

    #[test]
    fn invoking_user_is_named() {
        let user = invoking_user();
        assert!(!user.is_empty() && user != "unknown", "{user}");
    }

    #[test]
    fn lock_is_exclusive_and_times_out() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::open(t.path()).unwrap();
        let held = s.lock(Duration::from_secs(1), &|_| {}).unwrap();
        let told = std::sync::Mutex::new(String::new());
        let err = s
            .lock(Duration::from_millis(300), &|h| {
                *told.lock().unwrap() = h.to_string()
            })
            .unwrap_err();
        assert!(matches!(err, StateError::Locked { .. }), "{err}");
        assert!(
            told.lock()
                .unwrap()
                .contains(&format!("pid {}", std::process::id()))
        );
        drop(held);
        s.lock(Duration::from_secs(1), &|_| {}).unwrap();
    }
}
