//! Building through the engine: the scanned context packed as a tar
//! archive ([`write_tar`]) and streamed to the engine's build API
//! (bollard's `build_image`), its output reported as progress; an image
//! built earlier from the same content is tagged instead ([`build`]).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read, Seek, Write};

use bollard::query_parameters::{BuildImageOptionsBuilder, TagImageOptionsBuilder};
use futures_util::StreamExt;

use super::hash::base_images;
use super::scan::{Context, ContextError, EntryKind, read_err, scan};
use crate::events::{Outcome, Progress};
use crate::live::{BuiltImage, Engine};
use crate::names::{self, BuildHash, labels};
use crate::spec::model::Build;

/// How many lines of build output a failure message keeps.
const TAIL: usize = 12;

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

/// Why a build failed. The messages are shown to users as they are.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A rollback whose image is gone: it is never built from the context as it is now.
    #[error(
        "the image built for this revision ({0}) is no longer on this host, and a rollback does not build from the context as it is now; apply the revision from git instead"
    )]
    PinnedGone(BuildHash),
    #[error("scanning the build context failed: {0}")]
    ScanTask(#[source] tokio::task::JoinError),
    #[error("packing the build context failed: {0}")]
    PackTask(#[source] tokio::task::JoinError),
    #[error(transparent)]
    Context(#[from] ContextError),
    /// The engine failed the build (or lost its image): why, and the last
    /// lines of the build output.
    #[error("{}", with_tail(why, tail))]
    Failed { why: String, tail: Vec<String> },
    #[error("tagging {} as {image}: {source}", short(id))]
    Tag {
        id: String,
        image: String,
        #[source]
        source: bollard::errors::Error,
    },
}

/// A failure message ending with the last lines of the build output.
fn with_tail(why: &str, tail: &[String]) -> String {
    let mut m = why.to_string();
    if !tail.is_empty() {
        m.push_str("\n    last build output:\n      ");
        m.push_str(&tail.join("\n      "));
    }
    m
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
) -> Result<String, BuildError> {
    let id = build_or_reuse(engine, req, known, progress).await?;
    for extra in &req.build.tags {
        tag_as(engine, &id, extra).await.inspect_err(|e| {
            progress.step(
                &format!("{}/{}", req.stack, req.service),
                &e.to_string(),
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
) -> Result<String, BuildError> {
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
            let e = BuildError::PinnedGone(pinned.clone());
            progress.step(&subject, &e.to_string(), Outcome::Failed);
            return Err(e);
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
    .map_err(BuildError::ScanTask)??;
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
    .map_err(BuildError::PackTask)?;
    let (dockerfile, hash, file, dockerfile_text) = packed?;

    let mut image_labels: HashMap<String, String> = req.build.labels.clone().into_iter().collect();
    image_labels.insert(
        labels::BUILD.into(),
        names::build_label(&req.stack, &req.service, &hash),
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
    send(engine, req, opts.build(), creds, file, progress).await
}

/// Streams the packed context to the engine's build API; the ID of the
/// image built. Build output goes to `progress`, its last lines into a
/// failure.
async fn send(
    engine: &Engine,
    req: &Request,
    opts: bollard::query_parameters::BuildImageOptions,
    creds: Option<HashMap<String, bollard::auth::DockerCredentials>>,
    file: fs::File,
    progress: &dyn Progress,
) -> Result<String, BuildError> {
    let subject = format!("{}/{}", req.stack, req.service);
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
    let mut stream = engine.docker.build_image(opts, creds, Some(body));
    let mut tail: Vec<String> = Vec::new();
    let mut id = None;
    let fail = |tail: &[String], why: String| BuildError::Failed {
        why,
        tail: tail.to_vec(),
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
                    let e = fail(&tail, err);
                    progress.step(&subject, &e.to_string(), Outcome::Failed);
                    return Err(e);
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
                let e = fail(&tail, why);
                progress.step(&subject, &e.to_string(), Outcome::Failed);
                return Err(e);
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
) -> Result<String, BuildError> {
    let subject = format!("{}/{}", req.stack, req.service);
    if let Err(e) = tag_as(engine, &old.id, &req.image).await {
        progress.step(&subject, &e.to_string(), Outcome::Failed);
        return Err(e);
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
async fn tag_as(engine: &Engine, id: &str, image: &str) -> Result<(), BuildError> {
    let (repo, tag) = split_tag(image);
    let opts = TagImageOptionsBuilder::default()
        .repo(repo)
        .tag(tag)
        .build();
    engine
        .docker
        .tag_image(id, Some(opts))
        .await
        .map_err(|source| BuildError::Tag {
            id: id.to_string(),
            image: image.to_string(),
            source,
        })
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
