//! Building a service's image on the host (`build:`).
//!
//! Three steps, kept apart so that only the last one talks to the engine:
//!
//! - [`scan`] walks the build context (I/O: the file system) and returns what
//!   the docker CLI would send: every file, directory and symlink that
//!   `.dockerignore` does not exclude ([`ignore`], Docker's rules), the
//!   Dockerfile and `.dockerignore` always, and a Dockerfile that lives
//!   outside the context or inline (`dockerfile_inline`) added under a
//!   generated name.
//! - [`BuildHash::of`] is a pure function of that scan and the build
//!   settings: the content of the context and the settings that shape the
//!   image. The built image carries it in its label `io.plimsoll.build`,
//!   so the plan can tell "built from this content" from "needs a build"
//!   without building, and a no-op reconcile never builds.
//! - [`build`] tars the scan and builds through the engine's build API
//!   (bollard's `build_image`), streaming the output as progress.
//!
//! Invariant: `scan`, `hash` and `build` are the only functions here that
//! do I/O.

pub mod ignore;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use bollard::query_parameters::{BuildImageOptionsBuilder, TagImageOptionsBuilder};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::events::{Outcome, Progress};
use crate::live::{BuiltImage, Engine};
use crate::names::labels;
use crate::spec::compose::normalize_path;
use crate::spec::model::Build;

use ignore::Ignore;

/// How many lines of build output a failure message keeps.
const TAIL: usize = 12;

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

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> ContextError + '_ {
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

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The content address of a build: what was sent (the context after
/// `.dockerignore`, the Dockerfile) and the settings that shape the image.
/// Its text form, `<context>.<settings>` (16 hex digits each), is the
/// hash in the `io.plimsoll.build` label of the built image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BuildHash {
    pub context: String,
    pub settings: String,
}

impl BuildHash {
    /// Pure: the hash of a scanned context and the build settings. Paths on
    /// the host (where the repository is checked out) and settings that only
    /// say how to build (`cache_from`, `no_cache`, `pull`) do not count.
    pub fn of(context: &Context, build: &Build) -> BuildHash {
        let mut h = Sha256::new();
        for e in &context.entries {
            h.update(e.path.as_bytes());
            h.update([0]);
            match &e.kind {
                EntryKind::File { digest, .. } => h.update(format!("f {:o} {digest}", e.mode)),
                EntryKind::Dir => h.update(format!("d {:o}", e.mode)),
                EntryKind::Symlink(t) => h.update(format!("l {t}")),
            }
            h.update([b'\n']);
        }
        if let Some((name, bytes)) = &context.added {
            h.update(format!("+{name}\0{}\n", sha256_hex(bytes)));
        }
        let ctx = hex::encode(h.finalize());
        let mut settings = serde_json::json!({
            "dockerfile": context.dockerfile,
            "args": build.args,
            "labels": build.labels,
            "extra_hosts": build.extra_hosts,
            "network": build.network,
            "target": build.target,
            "shm_size": build.shm_size.map(|b| b.0),
        });
        // Only when set, so images built before `tags` existed keep their hash.
        if !build.tags.is_empty() {
            settings["tags"] = serde_json::json!(build.tags);
        }
        let settings = sha256_hex(&serde_json::to_vec(&settings).expect("JSON serializes"));
        BuildHash {
            context: ctx[..16].to_string(),
            settings: settings[..16].to_string(),
        }
    }

    /// Reads the label form back.
    pub fn parse(label: &str) -> Option<BuildHash> {
        let (c, s) = label.split_once('.')?;
        Some(BuildHash {
            context: c.to_string(),
            settings: s.to_string(),
        })
    }

    /// Why an image built as `old` needs building again for `self`, in words.
    pub fn reason(&self, old: &BuildHash) -> &'static str {
        match (self.context != old.context, self.settings != old.settings) {
            (true, true) => "build: context and build settings changed",
            (true, false) => "build: context changed",
            (false, true) => "build: build settings changed",
            (false, false) => "build: up to date",
        }
    }
}

impl std::fmt::Display for BuildHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.context, self.settings)
    }
}

/// Reads an `io.plimsoll.build` label: `<stack>/<service>@<hash>`.
pub fn parse_label(label: &str) -> Option<(String, String, BuildHash)> {
    let (who, hash) = label.rsplit_once('@')?;
    let (stack, service) = who.split_once('/')?;
    Some((
        stack.to_string(),
        service.to_string(),
        BuildHash::parse(hash)?,
    ))
}

/// Scans a context and hashes it (I/O: reads the context).
pub fn hash(build: &Build) -> Result<BuildHash, ContextError> {
    scan(build).map(|c| BuildHash::of(&c, build))
}

/// Writes the context as a tar archive (owner root, as the docker CLI sends it).
pub fn write_tar<W: Write>(context: &Context, out: W) -> Result<W, ContextError> {
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    for e in &context.entries {
        let abs = context.dir.join(&e.path);
        let meta = fs::symlink_metadata(&abs).map_err(read_err(&abs))?;
        let mut header = tar::Header::new_gnu();
        header.set_mode(e.mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(
            meta.modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs()),
        );
        let result = match &e.kind {
            EntryKind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                tar.append_data(&mut header, format!("{}/", e.path), io::empty())
            }
            EntryKind::Symlink(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                tar.append_link(&mut header, &e.path, target)
            }
            EntryKind::File { size, .. } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(*size);
                let f = fs::File::open(&abs).map_err(read_err(&abs))?;
                // A file that changed size since the scan is sent as scanned.
                tar.append_data(&mut header, &e.path, f.take(*size))
            }
        };
        result.map_err(read_err(&abs))?;
    }
    if let Some((name, bytes)) = &context.added {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(bytes.len() as u64);
        tar.append_data(&mut header, name, bytes.as_slice())
            .map_err(read_err(&context.dir))?;
    }
    tar.into_inner().map_err(read_err(&context.dir))
}

/// What one build needs: the service's `build:`, the image to tag, and the
/// labels that tie the image to its stack and service.
#[derive(Debug, Clone)]
pub struct Request {
    pub stack: String,
    pub service: String,
    pub image: String,
    pub build: Build,
    /// A rollback: the image built for the stored revision, by its hash
    /// (tagged again, never built from the context as it is now).
    pub pinned: Option<BuildHash>,
}

/// Builds an image and gives it the `build.tags` too; returns its ID. An
/// image in `known` built from the same content is tagged instead. Progress
/// goes to `progress` line by line (subject `stack/service`); a failure's
/// message ends with the last lines of the build output.
pub async fn build(
    engine: &Engine,
    req: &Request,
    known: &[BuiltImage],
    progress: &dyn Progress,
) -> Result<String, String> {
    let id = build_or_reuse(engine, req, known, progress).await?;
    for extra in &req.build.tags {
        tag_as(engine, &id, extra).await.inspect_err(|m| {
            progress.step(
                &format!("{}/{}", req.stack, req.service),
                m,
                Outcome::Failed,
            )
        })?;
    }
    Ok(id)
}

async fn build_or_reuse(
    engine: &Engine,
    req: &Request,
    known: &[BuiltImage],
    progress: &dyn Progress,
) -> Result<String, String> {
    let subject = format!("{}/{}", req.stack, req.service);
    progress.step(
        &subject,
        &format!("building {}", req.image),
        Outcome::Working,
    );
    let same = |hash: &BuildHash| {
        let hash = hash.to_string();
        known
            .iter()
            .find(|k| k.hash == hash && k.stack == req.stack && k.service == req.service)
            .cloned()
    };
    if let Some(pinned) = &req.pinned {
        let Some(old) = same(pinned) else {
            let m = format!(
                "the image built for this revision ({pinned}) is no longer on this host, and a rollback does not build from the context as it is now; apply the revision from git instead"
            );
            progress.step(&subject, &m, Outcome::Failed);
            return Err(m);
        };
        return tag(engine, &old, req, progress).await;
    }
    let b = req.build.clone();
    // Scanning and packing read the whole context: off the async threads.
    let (context, hash) = tokio::task::spawn_blocking(move || {
        scan(&b).map(|c| {
            let h = BuildHash::of(&c, &b);
            (c, h)
        })
    })
    .await
    .map_err(|e| format!("scanning the build context failed: {e}"))?
    .map_err(|e| e.to_string())?;
    if let Some(old) = same(&hash) {
        return tag(engine, &old, req, progress).await;
    }
    let packed = tokio::task::spawn_blocking(move || -> Result<_, ContextError> {
        let file = temp_file().map_err(read_err(&std::env::temp_dir()))?;
        let mut file = write_tar(&context, file)?;
        file.flush().map_err(read_err(&context.dir))?;
        file.rewind().map_err(read_err(&context.dir))?;
        let dockerfile_text = match &context.added {
            Some((_, bytes)) => String::from_utf8_lossy(bytes).into_owned(),
            None => fs::read_to_string(context.dir.join(&context.dockerfile)).unwrap_or_default(),
        };
        Ok((context.dockerfile, hash, file, dockerfile_text))
    })
    .await
    .map_err(|e| format!("packing the build context failed: {e}"))?;
    let (dockerfile, hash, file, dockerfile_text) = packed.map_err(|e| e.to_string())?;

    let mut image_labels: HashMap<String, String> = req.build.labels.clone().into_iter().collect();
    image_labels.insert(
        labels::BUILD.into(),
        format!("{}/{}@{hash}", req.stack, req.service),
    );
    let args: HashMap<String, String> = req.build.args.clone().into_iter().collect();
    let mut opts = BuildImageOptionsBuilder::default()
        .dockerfile(&dockerfile)
        .t(&req.image)
        .rm(true)
        .forcerm(true)
        .buildargs(&args)
        .labels(&image_labels)
        .nocache(req.build.no_cache);
    if let Some(t) = &req.build.target {
        opts = opts.target(t);
    }
    if let Some(n) = &req.build.network {
        opts = opts.networkmode(n);
    }
    // The loader allows at most one: the query parameter is sent once.
    if let Some(h) = req.build.extra_hosts.first() {
        opts = opts.extrahosts(&h.replacen('=', ":", 1));
    }
    if let Some(s) = req.build.shm_size {
        opts = opts.shmsize(i32::try_from(s.0).unwrap_or(i32::MAX));
    }
    if !req.build.cache_from.is_empty() {
        opts = opts.cachefrom(&req.build.cache_from);
    }
    if req.build.pull {
        opts = opts.pull("1");
    }
    let creds = credentials(&dockerfile_text, &req.build.cache_from);
    let body = bollard::body_try_stream(futures_util::stream::unfold(
        Some(tokio::fs::File::from_std(file)),
        |file| async move {
            use tokio::io::AsyncReadExt;
            let mut file = file?;
            let mut buf = vec![0u8; 256 * 1024];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(buf.into()), Some(file)))
                }
                Err(e) => Some((Err(e), None)),
            }
        },
    ));
    let mut stream = engine.docker.build_image(opts.build(), creds, Some(body));
    let mut tail: Vec<String> = Vec::new();
    let mut id = None;
    let fail = |tail: &[String], why: String| {
        let mut m = why;
        if !tail.is_empty() {
            m.push_str("\n    last build output:\n      ");
            m.push_str(&tail.join("\n      "));
        }
        m
    };
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(text) = info.stream.as_deref().or(info.status.as_deref()) {
                    for line in text
                        .lines()
                        .map(str::trim_end)
                        .filter(|l| !l.trim().is_empty())
                    {
                        progress.step(&subject, line, Outcome::Working);
                        tail.push(line.to_string());
                        if tail.len() > TAIL {
                            tail.remove(0);
                        }
                    }
                }
                if let Some(err) = info.error_detail.and_then(|d| d.message) {
                    let m = fail(&tail, err);
                    progress.step(&subject, &m, Outcome::Failed);
                    return Err(m);
                }
                if let Some(aux) = info.aux.and_then(|a| a.id) {
                    id = Some(aux);
                }
            }
            Err(e) => {
                let why = match e {
                    bollard::errors::Error::DockerResponseServerError { message, .. } => message,
                    bollard::errors::Error::DockerStreamError { error } => error,
                    other => other.to_string(),
                };
                let m = fail(&tail, why);
                progress.step(&subject, &m, Outcome::Failed);
                return Err(m);
            }
        }
    }
    let id = match id {
        Some(id) => id,
        // An engine that reports no ID: read it from the tag.
        None => engine
            .docker
            .inspect_image(&req.image)
            .await
            .ok()
            .and_then(|i| i.id)
            .ok_or_else(|| {
                fail(
                    &tail,
                    format!("the build finished but {} does not exist", req.image),
                )
            })?,
    };
    progress.step(
        &subject,
        &format!("built {} ({})", req.image, short(&id)),
        Outcome::Done,
    );
    Ok(id)
}

/// Tags an image built earlier from the same content as `req.image`.
async fn tag(
    engine: &Engine,
    old: &BuiltImage,
    req: &Request,
    progress: &dyn Progress,
) -> Result<String, String> {
    let subject = format!("{}/{}", req.stack, req.service);
    if let Err(m) = tag_as(engine, &old.id, &req.image).await {
        progress.step(&subject, &m, Outcome::Failed);
        return Err(m);
    }
    progress.step(
        &subject,
        &format!(
            "tagged {} ({}, built earlier from the same content)",
            req.image,
            short(&old.id)
        ),
        Outcome::Done,
    );
    Ok(old.id.clone())
}

/// Tags image `id` as `image`.
async fn tag_as(engine: &Engine, id: &str, image: &str) -> Result<(), String> {
    let (repo, tag) = split_tag(image);
    let opts = TagImageOptionsBuilder::default()
        .repo(repo)
        .tag(tag)
        .build();
    engine
        .docker
        .tag_image(id, Some(opts))
        .await
        .map_err(|e| format!("tagging {} as {image}: {e}", short(id)))
}

/// `repo:tag` of an image reference (`latest` when it has none).
fn split_tag(image: &str) -> (&str, &str) {
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(i) => (&image[..last_slash + i], &image[last_slash + i + 1..]),
        None => (image, "latest"),
    }
}

fn short(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// An anonymous temporary file: created, then unlinked at once.
fn temp_file() -> io::Result<fs::File> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "plimsoll-context-{}-{}.tar",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    let _ = fs::remove_file(&path);
    Ok(file)
}

/// The images a Dockerfile starts `FROM` (not stages, not `scratch`, not
/// ones built from `ARG`s).
pub fn base_images(dockerfile: &str) -> Vec<String> {
    let mut stages: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in dockerfile.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if !words
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case("FROM"))
        {
            continue;
        }
        let rest: Vec<&str> = words[1..]
            .iter()
            .copied()
            .filter(|w| !w.starts_with("--"))
            .collect();
        let Some(image) = rest.first() else { continue };
        let lower = image.to_ascii_lowercase();
        if lower != "scratch" && !image.contains('$') && !stages.contains(&lower) {
            out.push(image.to_string());
        }
        if let [_, kw, name, ..] = rest.as_slice()
            && kw.eq_ignore_ascii_case("AS")
        {
            stages.push(name.to_ascii_lowercase());
        }
    }
    out
}

/// Registry credentials for the base images and cache sources, keyed by
/// registry (`X-Registry-Config`), from the docker CLI's configuration.
fn credentials(
    dockerfile: &str,
    cache_from: &[String],
) -> Option<HashMap<String, bollard::auth::DockerCredentials>> {
    let mut by_registry: BTreeMap<String, bollard::auth::DockerCredentials> = BTreeMap::new();
    for image in base_images(dockerfile).iter().chain(cache_from) {
        if let Some(c) = crate::registry::credentials_for(image) {
            let key = c
                .serveraddress
                .clone()
                .unwrap_or_else(|| crate::spec::policy::registry_of(image).to_string());
            by_registry.insert(key, c);
        }
    }
    (!by_registry.is_empty()).then(|| by_registry.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_of(dir: &Path) -> Build {
        Build {
            context: dir.display().to_string(),
            dockerfile: Some("Dockerfile".into()),
            ..Build::default()
        }
    }

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (p, text) in files {
            let path = dir.join(p);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
    }

    fn paths(c: &Context) -> Vec<&str> {
        c.entries.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn scan_respects_dockerignore_and_always_sends_the_build_files() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                ("Dockerfile", "FROM scratch\n"),
                (".dockerignore", "*\n!app\n**/cache\nnode_modules\n"),
                ("app/main.js", "x"),
                // Patterns are relative to the root: `node_modules` is only the top one.
                ("app/node_modules/dep.js", "y"),
                ("app/cache/x", "w"),
                ("secret.env", "z"),
            ],
        );
        let c = scan(&build_of(dir.path())).unwrap();
        assert_eq!(
            paths(&c),
            [
                ".dockerignore",
                "Dockerfile",
                "app",
                "app/main.js",
                "app/node_modules",
                "app/node_modules/dep.js"
            ]
        );
        assert_eq!(c.dockerfile, "Dockerfile");
    }

    #[test]
    fn exceptions_reach_into_excluded_directories() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                ("Dockerfile", "FROM scratch\n"),
                (".dockerignore", "vendor\n!vendor/keep.txt\n"),
                ("vendor/keep.txt", "k"),
                ("vendor/drop.txt", "d"),
            ],
        );
        let c = scan(&build_of(dir.path())).unwrap();
        assert_eq!(
            paths(&c),
            [".dockerignore", "Dockerfile", "vendor/keep.txt"]
        );
    }

    #[test]
    fn hash_follows_content_and_settings_not_ignored_files() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                ("Dockerfile", "FROM scratch\nCOPY a /a\n"),
                (".dockerignore", "*.log\n"),
                ("a", "1"),
            ],
        );
        let b = build_of(dir.path());
        let h0 = hash(&b).unwrap();
        assert_eq!(hash(&b).unwrap(), h0, "stable");
        write(dir.path(), &[("debug.log", "noise")]);
        assert_eq!(hash(&b).unwrap(), h0, "an ignored file does not count");
        write(dir.path(), &[("a", "2")]);
        let h1 = hash(&b).unwrap();
        assert_ne!(h1.context, h0.context);
        assert_eq!(h1.settings, h0.settings);
        assert_eq!(h1.reason(&h0), "build: context changed");
        let mut b2 = b.clone();
        b2.args.insert("V".into(), "1".into());
        let h2 = hash(&b2).unwrap();
        assert_eq!(
            (h2.context.as_str(), h2.reason(&h1)),
            (h1.context.as_str(), "build: build settings changed")
        );
        b2.cache_from.push("x".into());
        b2.no_cache = true;
        assert_eq!(hash(&b2).unwrap(), h2, "how to build is not what is built");
        assert_eq!(BuildHash::parse(&h2.to_string()), Some(h2.clone()));
        assert_eq!(
            parse_label(&format!("shop/web@{h2}")),
            Some(("shop".into(), "web".into(), h2))
        );
    }

    #[test]
    fn the_hash_does_not_depend_on_where_the_context_is() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for d in [a.path(), b.path()] {
            write(d, &[("Dockerfile", "FROM scratch\n"), ("x/y", "1")]);
        }
        assert_eq!(
            hash(&build_of(a.path())).unwrap(),
            hash(&build_of(b.path())).unwrap()
        );
    }

    #[test]
    fn inline_and_outside_dockerfiles_are_added() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[("ctx/a", "1"), ("Other.Dockerfile", "FROM scratch\n")],
        );
        let mut b = build_of(&dir.path().join("ctx"));
        b.dockerfile = Some("../Other.Dockerfile".into());
        let c = scan(&b).unwrap();
        let (name, bytes) = c.added.clone().unwrap();
        assert_eq!(
            (c.dockerfile.as_str(), bytes.as_slice()),
            (name.as_str(), b"FROM scratch\n".as_slice())
        );
        b.dockerfile = None;
        b.dockerfile_inline = Some("FROM scratch\nCOPY a /\n".into());
        let c2 = scan(&b).unwrap();
        assert_ne!(BuildHash::of(&c2, &b), BuildHash::of(&c, &b));
        let tar_bytes = write_tar(&c2, Vec::new()).unwrap();
        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["a".to_string(), c2.dockerfile.clone()]);
        b.dockerfile_inline = None;
        b.dockerfile = Some("Missing".into());
        assert!(matches!(scan(&b), Err(ContextError::NoDockerfile(_))));
    }

    fn load(
        dir: &Path,
        env: &[(&str, &str)],
    ) -> Result<crate::spec::Desired, crate::spec::LoadError> {
        let layout = crate::source::discover(dir).unwrap();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        crate::spec::load(&layout, &crate::source::LocalFs, &env, &[])
    }

    /// `build:` loads in both forms with Compose's defaults and names.
    #[test]
    fn build_sections_load_like_compose() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                ("ctx/Dockerfile", "FROM scratch\n"),
                ("other.Dockerfile", "FROM scratch\n"),
                (
                    "compose.yaml",
                    "name: s\nservices:\n  a:\n    build: ./ctx\n  b:\n    image: x/b:1\n    build:\n      context: ctx\n      dockerfile: ../other.Dockerfile\n      args: [A=1, FROM_ENV, UNSET]\n      shm_size: 1k\n      labels: {team: web}\n  c:\n    build:\n      dockerfile_inline: FROM scratch\n    pull_policy: never\n",
                ),
            ],
        );
        let d = load(dir.path(), &[("FROM_ENV", "e")]).unwrap();
        let stack = &d.stacks[0];
        let (a, b, c) = (
            &stack.services["a"],
            &stack.services["b"],
            &stack.services["c"],
        );
        let ab = a.build.as_ref().unwrap();
        assert_eq!(ab.context, dir.path().join("ctx").display().to_string());
        assert_eq!(ab.dockerfile.as_deref(), Some("Dockerfile"));
        assert_eq!(a.image_ref("s", "a"), "s-a");
        assert!(a.builds());
        let bb = b.build.as_ref().unwrap();
        assert_eq!(
            bb.args,
            BTreeMap::from([("A".into(), "1".into()), ("FROM_ENV".into(), "e".into())])
        );
        assert_eq!(bb.shm_size.map(|s| s.0), Some(1024));
        assert_eq!(b.image_ref("s", "b"), "x/b:1");
        let cb = c.build.as_ref().unwrap();
        assert_eq!(
            (cb.dockerfile.as_deref(), cb.context.as_str()),
            (None, dir.path().to_str().unwrap())
        );
        assert!(!c.builds(), "pull_policy: never neither pulls nor builds");
        // Both Dockerfiles are found, inside and outside the context.
        assert_ne!(hash(ab).unwrap(), hash(bb).unwrap());
    }

    #[test]
    fn missing_contexts_and_dockerfiles_fail_the_load() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[(
                "compose.yaml",
                "services:\n  a:\n    build: ./nope\n  b:\n    build:\n      context: .\n      dockerfile: Nope\n",
            )],
        );
        let e = load(dir.path(), &[]).unwrap_err();
        let keys: Vec<(&str, usize)> = e
            .diags
            .iter()
            .map(|d| (d.key.as_str(), d.mark.line))
            .collect();
        assert_eq!(
            keys,
            [
                ("services.a.build.context", 3),
                ("services.b.build.dockerfile", 7)
            ]
        );
    }

    #[test]
    fn a_stored_revision_keeps_its_build_hashes() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                ("Dockerfile", "FROM scratch\n"),
                ("compose.yaml", "name: s\nservices:\n  a:\n    build: .\n"),
            ],
        );
        let d = load(dir.path(), &[]).unwrap();
        let h = hash(d.stacks[0].services["a"].build.as_ref().unwrap()).unwrap();
        let builds = BTreeMap::from([("a".to_string(), h.to_string())]);
        let bytes = crate::spec::render::to_stored_built(&d.stacks[0], &d.masker, &builds);
        // The repository may be gone by the time of a rollback.
        drop(dir);
        let (back, _) = crate::spec::load_stored(&bytes, &crate::source::LocalFs).unwrap();
        assert_eq!(back.source.pinned_builds, builds);
        assert_eq!(back.services["a"].build, d.stacks[0].services["a"].build);
        // Stored again, it is the same revision.
        assert_eq!(crate::spec::render::to_stored(&back, &d.masker), bytes);
        // Without builds, nothing changes in what is stored.
        assert!(
            !String::from_utf8_lossy(&crate::spec::render::to_stored(&d.stacks[0], &d.masker))
                .contains("\"builds\"")
        );
    }

    /// The plan is a function of the hashes and the labels on the host:
    /// only an image whose label differs is built, before anything else.
    #[test]
    fn the_plan_builds_only_what_changed() {
        use crate::plan::{ActionKind, Builds, plan};
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                ("a/Dockerfile", "FROM scratch\n"),
                ("b/Dockerfile", "FROM scratch\nCOPY x /\n"),
                ("b/x", "1"),
                (
                    "compose.yaml",
                    "name: s\nservices:\n  a:\n    build: ./a\n  b:\n    build: ./b\n  c:\n    build: ./b\n    image: s/c\n    pull_policy: missing\n",
                ),
            ],
        );
        let d = load(dir.path(), &[]).unwrap();
        let stack = &d.stacks[0];
        let h = |svc: &str| hash(stack.services[svc].build.as_ref().unwrap()).unwrap();
        let image = |id: &str, label: Option<String>| {
            Some(crate::diff::ImageDefaults {
                id: id.into(),
                labels: label
                    .map(|l| BTreeMap::from([(labels::BUILD.to_string(), l)]))
                    .unwrap_or_default(),
                ..Default::default()
            })
        };
        let mut live = crate::live::Live::default();
        live.images.insert(
            "s-a".into(),
            image("sha256:a", Some(format!("s/a@{}", h("a")))),
        );
        let old = BuildHash {
            context: "0".repeat(16),
            settings: h("b").settings,
        };
        live.images
            .insert("s-b".into(), image("sha256:b", Some(format!("s/b@{old}"))));
        // Not plimsoll's build, but `pull_policy: missing` only builds a missing image.
        live.images.insert("s/c".into(), image("sha256:c", None));
        let builds: Builds = ["a", "b", "c"]
            .iter()
            .map(|svc| (("s".to_string(), svc.to_string()), Ok(h(svc))))
            .collect();
        let p = plan(
            &[stack],
            &live,
            &builds,
            &crate::mounts::Mounts::new(),
            &d.masker,
        );
        let built: Vec<(ActionKind, &str, &str)> = p
            .actions
            .iter()
            .map(|a| (a.action, a.target.as_str(), a.reasons[0].as_str()))
            .collect();
        assert_eq!(
            built[0],
            (ActionKind::Build, "s-b", "build: context changed")
        );
        assert!(
            built[1..].iter().all(|a| a.0 != ActionKind::Build),
            "{built:?}"
        );
        // A context that cannot be read is a conflict of its service, not a build.
        let mut broken = builds.clone();
        broken.insert(("s".into(), "a".into()), Err("cannot read x".into()));
        live.images.remove("s-a");
        let p = plan(
            &[stack],
            &live,
            &broken,
            &crate::mounts::Mounts::new(),
            &d.masker,
        );
        assert_eq!(p.conflicts.len(), 1);
        assert_eq!(p.conflicts[0].reason, "cannot build s-a: cannot read x");
        assert!(!p.actions.iter().any(|a| a.action == ActionKind::PullImage));
    }

    #[test]
    fn base_images_skip_stages_scratch_and_args() {
        let df = "ARG V=1\nFROM golang:1.22 AS build\nRUN x\nFROM build AS test\nFROM --platform=linux/amd64 scratch\nFROM registry.example.com/base:${V}\nFROM alpine:3\nCOPY --from=build /x /x\n";
        assert_eq!(base_images(df), ["golang:1.22", "alpine:3"]);
    }
}
