//! Promotion between environments (`plimsoll promote --from stage --to
//! prod`): a patch for `git apply` that pins, in the `to` environment's
//! variant of each stack, the image digests the `from` variant resolves to,
//! so that a reviewer sees the promotion as a pull request and production
//! runs exactly what staging ran.
//!
//! The pins are written in the `to` environment's override file
//! (`compose.<to>.yaml`, created when the stack has none), where they win
//! over the base by Compose's merge rules; the line edits are those of
//! `drift --patch` ([`crate::drift::Text`]), so comments and the rest of
//! the file stay as written. Pure: the digests come in resolved (the CLI
//! asks the registry through the engine), files are read through
//! [`crate::source::Files`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::drift::{Patch, Text, Unwritten, Why};
use crate::source::Files;
use crate::spec::Desired;
use crate::spec::model::Stack;

/// A promotion that cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error(
        "environment `{name}` is not in plimsoll.yaml's `environments:` ({known}); name one of them with --from and --to"
    )]
    UnknownEnvironment { name: String, known: String },
    #[error("--from and --to are both `{0}`: promote from one environment to another")]
    SameEnvironment(String),
}

/// One image to promote: a service (or job) that both environments run
/// from a registry image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Promoted {
    pub stack: String,
    pub service: String,
    /// The image as the `from` environment has it.
    pub from: String,
    /// The image as the `to` environment has it now.
    pub to: String,
}

/// The images to promote from environment `from` to `to`: every service
/// and job with an image (built images are the host's own: nothing to
/// promote) of the stacks that hosts of both environments run, limited to
/// `stacks` when it names some.
pub fn images(
    desired: &Desired,
    from: &str,
    to: &str,
    stacks: &[String],
) -> Result<Vec<Promoted>, PromoteError> {
    for name in [from, to] {
        if !desired.config.environments.contains_key(name) {
            let known: Vec<&str> = desired
                .config
                .environments
                .keys()
                .map(String::as_str)
                .collect();
            return Err(PromoteError::UnknownEnvironment {
                name: name.to_string(),
                known: if known.is_empty() {
                    "it has none".into()
                } else {
                    format!("it has {}", known.join(", "))
                },
            });
        }
    }
    if from == to {
        return Err(PromoteError::SameEnvironment(from.to_string()));
    }
    let mut out = Vec::new();
    for base in &desired.stacks {
        let config = &desired.config;
        let chosen = stacks.is_empty() || stacks.contains(&base.name);
        if !chosen || !config.runs_in(&base.name, from) || !config.runs_in(&base.name, to) {
            continue;
        }
        let source = desired.stack_in(base, from).whole();
        let target = desired.stack_in(base, to).whole();
        for (name, service) in &target.services {
            let Some(theirs) = source.services.get(name) else {
                continue;
            };
            let (Some(from_image), Some(to_image)) = (&theirs.image, &service.image) else {
                continue;
            };
            if theirs.build.is_some() || service.build.is_some() {
                continue;
            }
            out.push(Promoted {
                stack: base.name.clone(),
                service: name.clone(),
                from: from_image.clone(),
                to: to_image.clone(),
            });
        }
    }
    Ok(out)
}

/// The digest a reference pins (`repo@sha256:…`, `repo:tag@sha256:…`), if any.
pub fn pinned_digest(image: &str) -> Option<&str> {
    image
        .split_once('@')
        .map(|(_, d)| d)
        .filter(|d| !d.is_empty())
}

/// `image` pinned at `digest`: its name and tag (the tag says where the
/// digest came from; the engine pulls by the digest).
pub fn pin(image: &str, digest: &str) -> String {
    let name = image.split_once('@').map_or(image, |(n, _)| n);
    format!("{name}@{digest}")
}

/// A pin the patch writes: environment `to` runs `image` for this service once it is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pin {
    pub stack: String,
    pub service: String,
    pub image: String,
}

/// The patch of a promotion, and the pins it writes.
#[derive(Debug, Clone, Default)]
pub struct Promotion {
    pub patch: Patch,
    pub pins: Vec<Pin>,
}

/// The patch that pins, in environment `to`'s files, the digest each of
/// `images` resolves to in `from` (`digests`: the `from` reference → its
/// digest; a reference that already pins one needs no entry). An image
/// `to` already pins at that digest is left as it is.
pub fn patch(
    desired: &Desired,
    to: &str,
    images: &[Promoted],
    digests: &BTreeMap<String, String>,
    files: &dyn Files,
) -> Promotion {
    let mut p = Patch::default();
    let mut pins = Vec::new();
    let mut edits: BTreeMap<PathBuf, Edit> = BTreeMap::new();
    for image in images {
        let Some(digest) =
            pinned_digest(&image.from).or(digests.get(&image.from).map(String::as_str))
        else {
            p.unwritten.push(unwritten(
                image,
                format!("no digest was found for {}", image.from),
            ));
            continue;
        };
        if pinned_digest(&image.to) == Some(digest) {
            continue;
        }
        let Some(stack) = desired.stacks.iter().find(|s| s.name == image.stack) else {
            continue;
        };
        let path = override_file(stack, to, files);
        let edit = match edits.entry(path) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let before = match read(files, e.key()) {
                    Ok(before) => before,
                    Err(why) => {
                        let why = format!("{} cannot be read ({why})", e.key().display());
                        p.unwritten.push(unwritten(image, why));
                        continue;
                    }
                };
                let text = Text::new(before.as_deref().unwrap_or(""));
                let shown = shown_path(stack, e.key());
                e.insert(Edit {
                    before,
                    text,
                    shown,
                })
            }
        };
        let pinned = pin(&image.from, digest);
        match edit
            .text
            .set_service_scalar(&image.service, "image", &pinned)
        {
            Ok(()) => {
                p.written
                    .push(format!("{}/{}: image {pinned}", image.stack, image.service));
                pins.push(Pin {
                    stack: image.stack.clone(),
                    service: image.service.clone(),
                    image: pinned,
                });
            }
            Err(e) => {
                let why = format!("{e}: set `image: {pinned}` in {}", edit.shown.display());
                p.unwritten.push(unwritten(image, why));
            }
        }
    }
    for (path, e) in &edits {
        let after = e.text.render();
        p.add_file(path, e.before.as_deref(), &after, &e.shown, &desired.masker);
    }
    Promotion { patch: p, pins }
}

/// A file being edited: its text as read (`None`: a new file) and as edited.
struct Edit {
    before: Option<String>,
    text: Text,
    shown: PathBuf,
}

fn unwritten(image: &Promoted, reason: String) -> Unwritten {
    Unwritten {
        stack: image.stack.clone(),
        service: image.service.clone(),
        field: "image".into(),
        why: Why::ByHand { reason },
    }
}

/// The stack's override file for environment `env`: `compose.<env>.yaml`,
/// or the `.yml` the stack has instead.
fn override_file(stack: &Stack, env: &str, files: &dyn Files) -> PathBuf {
    let dir = &stack.source.abs_dir;
    let yml = dir.join(format!("compose.{env}.yml"));
    let yaml = dir.join(format!("compose.{env}.yaml"));
    let exists = |p: &Path| files.kind(p).ok().flatten().is_some();
    if !exists(&yaml) && exists(&yml) {
        yml
    } else {
        yaml
    }
}

/// A file's text, `None` when it does not exist.
fn read(files: &dyn Files, path: &Path) -> std::io::Result<Option<String>> {
    files
        .read(path)?
        .map(String::from_utf8)
        .transpose()
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"))
}

/// `path` as the diff names it: relative to the repository root.
fn shown_path(stack: &Stack, path: &Path) -> PathBuf {
    let src = &stack.source;
    let base = src.root.as_deref().unwrap_or(&src.abs_dir);
    path.strip_prefix(base).unwrap_or(path).to_path_buf()
}

#[cfg(test)]
mod tests;
