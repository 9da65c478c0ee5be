//! The state directory: what plimsoll remembers on a host between runs.
//!
//! ```text
//! <state>/VERSION                 format version (migrated on upgrade)
//! <state>/lock                    advisory lock: one apply at a time per host
//! <state>/host.key                key that encrypts stored revisions (0600)
//! <state>/audit.jsonl[.N]         append-only audit log, rotated by size
//! <state>/revisions/<hash>.bin    applied desired states, content-addressed, encrypted
//! <state>/revisions.jsonl         which revision of which stack was applied when, and how it went
//! <state>/paused.json             `plimsoll pause`: stacks (or the whole host) frozen by hand
//! <state>/agent.json              the agent's last good and rejected revisions
//! <state>/heal.json               the agent's self-heal counters
//! <state>/git/                    the agent's clone of the repository
//! ```
//!
//! The CLI and the agent share one state directory per host, so the lock
//! serializes both. Invariants: the audit log and revision index are only
//! appended to; a record is one line, so a crash mid-write leaves at most one
//! unreadable last line, which readers skip; secrets never reach these files
//! in clear (records are masked, stored revisions are encrypted).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chacha20poly1305::aead::{Aead, Generate, Key, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The format version this build writes.
pub const FORMAT_VERSION: u32 = 1;
/// The audit log rotates when it grows past this.
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
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

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
    /// Opens (creating it if needed) and migrates the state directory.
    pub fn open(root: &Path) -> Result<StateDir, StateError> {
        fs::create_dir_all(root.join("revisions")).map_err(io_err(root))?;
        let version_file = root.join("VERSION");
        match fs::read_to_string(&version_file) {
            Ok(text) => {
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
            Err(e) if e.kind() == io::ErrorKind::NotFound => migrate(root, 0)?,
            Err(e) => return Err(io_err(&version_file)(e)),
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
        let path = self.root.join(name);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StateError::Io {
                path: path.clone(),
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(T::default()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Replaces a JSON document atomically (written aside, then renamed).
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StateError> {
        let path = self.root.join(name);
        let tmp = self.root.join(format!(".{name}.tmp"));
        let bytes = serde_json::to_vec_pretty(value).expect("state documents serialize");
        write_private(&tmp, &bytes)?;
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
        let path = self.root.join("lock");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let started = Instant::now();
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) => {
                    let holder = fs::read_to_string(&path)
                        .unwrap_or_default()
                        .trim()
                        .to_string();
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
        file.set_len(0).map_err(io_err(&path))?;
        let host = hostname();
        writeln!(file, "pid {} on {host}", std::process::id()).map_err(io_err(&path))?;
        Ok(Lock { _file: file })
    }

    fn key(&self) -> Result<Key<ChaCha20Poly1305>, StateError> {
        let path = self.root.join("host.key");
        match fs::read(&path) {
            Ok(bytes) if bytes.len() == 32 => {
                Ok(Key::<ChaCha20Poly1305>::try_from(bytes.as_slice()).expect("32 bytes"))
            }
            Ok(_) => Err(StateError::Revision {
                hash: String::new(),
                why: format!("{} is not a 32-byte key", path.display()),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let key = Key::<ChaCha20Poly1305>::generate();
                write_private(&path, key.as_slice())?;
                Ok(key)
            }
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Stores a desired state (its canonical bytes) encrypted; returns its content hash.
    pub fn store_revision(&self, plaintext: &[u8]) -> Result<String, StateError> {
        let hash = content_hash(plaintext);
        let path = self.root.join("revisions").join(format!("{hash}.bin"));
        if path.exists() {
            return Ok(hash);
        }
        let cipher = ChaCha20Poly1305::new(&self.key()?);
        let nonce = Nonce::generate();
        let sealed = cipher
            .encrypt(&nonce, plaintext)
            .map_err(|_| StateError::Revision {
                hash: hash.clone(),
                why: "encryption failed".into(),
            })?;
        let mut out = nonce.to_vec();
        out.extend(sealed);
        let tmp = path.with_extension("tmp");
        write_private(&tmp, &out)?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        Ok(hash)
    }

    /// Reads a stored desired state back.
    pub fn load_revision(&self, hash: &str) -> Result<Vec<u8>, StateError> {
        let path = self.root.join("revisions").join(format!("{hash}.bin"));
        let bytes = fs::read(&path).map_err(|e| StateError::Revision {
            hash: hash.into(),
            why: e.to_string(),
        })?;
        if bytes.len() < 12 {
            return Err(StateError::Revision {
                hash: hash.into(),
                why: "file is truncated".into(),
            });
        }
        let (nonce, sealed) = bytes.split_at(12);
        let cipher = ChaCha20Poly1305::new(&self.key()?);
        let nonce = Nonce::try_from(nonce).expect("12 bytes");
        cipher
            .decrypt(&nonce, sealed)
            .map_err(|_| StateError::Revision {
                hash: hash.into(),
                why: "it does not decrypt with this host's key".into(),
            })
    }

    /// Appends a record to the revision index.
    pub fn record_revision(&self, rec: &RevisionRecord) -> Result<(), StateError> {
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
        let path = self.root.join("audit.jsonl");
        if fs::metadata(&path).is_ok_and(|m| m.len() > max_bytes) {
            rotate(&path, keep.max(1))?;
        }
        append_line(&path, rec)
    }

    /// Audit records, oldest first, across rotated files; unreadable lines are skipped.
    pub fn audit_records(&self) -> Result<Vec<serde_json::Value>, StateError> {
        let mut out = Vec::new();
        let rotated = (1..)
            .take_while(|i| self.root.join(format!("audit.jsonl.{i}")).exists())
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
    // Version 0 is "no VERSION file": a new or pre-release directory; nothing to convert.
    let _ = from;
    let path = root.join("VERSION");
    fs::write(&path, format!("{FORMAT_VERSION}\n")).map_err(io_err(&path))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io_err(path))
}

fn append_line<T: Serialize>(path: &Path, rec: &T) -> Result<(), StateError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut line = serde_json::to_string(rec).expect("records serialize");
    line.push('\n');
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    // A torn last line from a crash would glue onto this record: start on a fresh line.
    let len = f.metadata().map_err(io_err(path))?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        use std::os::unix::fs::FileExt as _;
        let read = File::open(path)
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
    let f = match File::open(path) {
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
        if name(i).exists() {
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
            "1"
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
        assert_eq!(hash, content_hash(secret));
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
