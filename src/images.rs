//! Old images: after a successful apply, images that plimsoll pulled or
//! built for a service and that no container uses any more are removed,
//! keeping the last N images of each service (`images.keep` in
//! `plimsoll.yaml`, default 3) so that `plimsoll rollback` needs no pull and
//! no build.
//!
//! The state directory remembers which images each service ran, newest
//! first, and whether plimsoll pulled or built them (`images.json`). An
//! image that was on the host before plimsoll used it ("found") is never
//! removed, nor is one that any container uses (plimsoll's or not), nor one
//! among the last N of any service.
//!
//! Invariant: [`History::removable`] is pure; [`after_apply`] is the only
//! function here that does I/O.

use std::collections::{BTreeMap, BTreeSet};

use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveImageOptionsBuilder};
use serde::{Deserialize, Serialize};

use crate::events::{Outcome, Progress};
use crate::live::Engine;
use crate::names::labels;
use crate::plan::{ActionKind, Plan};
use crate::spec::config::ImagesConfig;
use crate::spec::model::Stack;
use crate::state::StateDir;

/// Why recording or removing old images failed (never fails an apply: logged).
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("listing containers: {0}")]
    List(#[source] bollard::errors::Error),
    /// Reading an old image before removing it.
    #[error("{0}")]
    Inspect(#[source] bollard::errors::Error),
    /// The engine refused to remove an old image (its message).
    #[error("{}", engine_message(.0))]
    Remove(#[source] bollard::errors::Error),
}

/// The engine's own message of an error, without bollard's wrapping.
fn engine_message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// The file in the state directory.
pub const FILE: &str = "images.json";

/// How an image came to be on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// It was there before plimsoll used it: never removed.
    Found,
    Pulled,
    Built,
}

/// One image a service ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Used {
    pub id: String,
    /// The reference the service named it by.
    pub reference: String,
    pub origin: Origin,
    /// When the service started running it.
    pub since: String,
}

/// The images each service (`stack/service`) ran, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default)]
    pub services: BTreeMap<String, Vec<Used>>,
}

impl History {
    /// Records that `service` runs `used` now. Running an image again moves
    /// it to the front; pulled or built wins over found.
    pub fn record(&mut self, service: &str, used: Used) {
        let list = self.services.entry(service.to_string()).or_default();
        let origin = list
            .iter()
            .filter(|u| u.id == used.id)
            .map(|u| u.origin)
            .chain([used.origin])
            .max()
            .unwrap_or(used.origin);
        if list.first().is_some_and(|u| u.id == used.id) {
            list[0].origin = origin;
            list[0].reference = used.reference;
            return;
        }
        list.retain(|u| u.id != used.id);
        list.insert(0, Used { origin, ..used });
    }

    /// The images to remove: pulled or built by plimsoll, not among the last
    /// `keep` of any service, not used by any container (`in_use`: image
    /// IDs). Each image once, with every reference plimsoll knew it by.
    pub fn removable(&self, keep: usize, in_use: &BTreeSet<String>) -> Vec<(String, Vec<String>)> {
        let keep = keep.max(1);
        let kept: BTreeSet<&str> = self
            .services
            .values()
            .flat_map(|l| l.iter().take(keep))
            .map(|u| u.id.as_str())
            .collect();
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for u in self.services.values().flat_map(|l| l.iter().skip(keep)) {
            if u.origin != Origin::Found && !kept.contains(u.id.as_str()) && !in_use.contains(&u.id)
            {
                out.entry(u.id.clone())
                    .or_default()
                    .insert(u.reference.clone());
            }
        }
        // An image known by other references too: all of them go.
        for l in self.services.values() {
            for u in l {
                if let Some(refs) = out.get_mut(&u.id) {
                    refs.insert(u.reference.clone());
                }
            }
        }
        out.into_iter()
            .map(|(id, refs)| (id, refs.into_iter().collect()))
            .collect()
    }

    /// Drops an image from every service's list.
    pub fn forget(&mut self, id: &str) {
        for l in self.services.values_mut() {
            l.retain(|u| u.id != id);
        }
    }

    /// Drops entries that can never be removed and are past `keep`.
    pub fn trim(&mut self, keep: usize) {
        for l in self.services.values_mut() {
            let mut i = 0;
            l.retain(|u| {
                i += 1;
                i <= keep || u.origin != Origin::Found
            });
        }
    }
}

/// `busybox` and `busybox:latest` are one reference.
fn canonical(reference: &str) -> String {
    if reference.contains('@') {
        return reference.to_string();
    }
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if last.contains(':') {
        reference.to_string()
    } else {
        format!("{reference}:latest")
    }
}

/// After a successful apply: records the image each service of `stacks` runs
/// now, then (unless `images.prune: false`) removes the old ones the history
/// allows. Returns what was removed. A failure here never fails the apply:
/// the caller logs it.
pub async fn after_apply(
    engine: &Engine,
    state: &StateDir,
    stacks: &[&Stack],
    plan: &Plan,
    config: ImagesConfig,
    progress: &dyn Progress,
) -> Result<Vec<String>, ImagesError> {
    // The agent's heals apply concurrently: one read-modify-write of the history at a time.
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _serial = SERIAL.lock().await;
    let mut history: History = state.read_json(FILE)?;
    let pulled: BTreeSet<&str> = plan
        .actions
        .iter()
        .filter(|a| a.action == ActionKind::PullImage)
        .map(|a| a.target.as_str())
        .collect();
    let now = crate::state::now();
    for stack in stacks {
        for (name, svc) in &stack.services {
            let reference = svc.image_ref(&stack.name, name);
            let Ok(image) = engine.docker.inspect_image(&reference).await else {
                continue;
            };
            let built = image
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .is_some_and(|l| l.contains_key(labels::BUILD));
            let origin = if built {
                Origin::Built
            } else if pulled.contains(reference.as_str()) {
                // Missing, so plimsoll brought it. (`pull_policy: always`
                // pulls images that may have been here before: found.)
                Origin::Pulled
            } else {
                Origin::Found
            };
            history.record(
                &format!("{}/{name}", stack.name),
                Used {
                    id: image.id.unwrap_or_default(),
                    reference,
                    origin,
                    since: now.clone(),
                },
            );
        }
    }
    let mut removed = Vec::new();
    if config.prune != Some(false) {
        let opts = ListContainersOptionsBuilder::default().all(true).build();
        let in_use: BTreeSet<String> = engine
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(ImagesError::List)?
            .into_iter()
            .filter_map(|c| c.image_id)
            .collect();
        for (id, references) in history.removable(config.keep(), &in_use) {
            match remove(engine, &id, &references).await {
                Ok(true) => {
                    let short = id.strip_prefix("sha256:").unwrap_or(&id);
                    let what = format!(
                        "{} ({})",
                        references.join(", "),
                        &short[..short.len().min(12)]
                    );
                    progress.step(
                        &format!("image {}", references[0]),
                        &format!("removed {what}: no container uses it"),
                        Outcome::Done,
                    );
                    history.forget(&id);
                    removed.push(what);
                }
                // Gone already, or another tag keeps it: plimsoll's part is done.
                Ok(false) => history.forget(&id),
                Err(e) => tracing::warn!("keeping old image {id}: {e}"),
            }
        }
    }
    history.trim(config.keep());
    state.write_json(FILE, &history)?;
    Ok(removed)
}

/// Removes the references plimsoll knew an image by, then the image itself
/// when no tag is left. `Ok(false)`: it is gone already, or a tag plimsoll
/// did not make keeps it.
async fn remove(engine: &Engine, id: &str, references: &[String]) -> Result<bool, ImagesError> {
    let image = match engine.docker.inspect_image(id).await {
        Ok(i) => i,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => return Ok(false),
        Err(e) => return Err(ImagesError::Inspect(e)),
    };
    let ours: BTreeSet<String> = references.iter().map(|r| canonical(r)).collect();
    let tags = image.repo_tags.unwrap_or_default();
    if tags.iter().any(|t| !ours.contains(t)) {
        // A tag plimsoll did not make keeps the image; leave it be.
        return Ok(false);
    }
    // Never forced: each of our tags goes, the last one takes the image
    // with it; the engine refuses if a container uses it after all.
    let opts = || RemoveImageOptionsBuilder::default().force(false).build();
    let targets: Vec<&str> = if tags.is_empty() {
        vec![id]
    } else {
        tags.iter().map(String::as_str).collect()
    };
    for t in targets {
        engine
            .docker
            .remove_image(t, Some(opts()), None)
            .await
            .map_err(ImagesError::Remove)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(id: &str, origin: Origin) -> Used {
        Used {
            id: id.into(),
            reference: format!("ref-{id}"),
            origin,
            since: String::new(),
        }
    }

    /// `check(history of (service, [(id, origin)] oldest first), keep, in use, removable ids)`.
    fn check(runs: &[(&str, &[(&str, Origin)])], keep: usize, in_use: &[&str], want: &[&str]) {
        let mut h = History::default();
        for (service, ids) in runs {
            for (id, origin) in *ids {
                h.record(service, used(id, *origin));
            }
        }
        let in_use: BTreeSet<String> = in_use.iter().map(|s| s.to_string()).collect();
        let got: Vec<String> = h
            .removable(keep, &in_use)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(got, want, "{runs:?} keep {keep}");
    }

    use Origin::*;

    #[test]
    fn keeps_the_last_n_per_service() {
        let web: &[(&str, Origin)] = &[("a", Pulled), ("b", Pulled), ("c", Pulled), ("d", Pulled)];
        check(&[("s/web", web)], 3, &[], &["a"]);
        check(&[("s/web", web)], 2, &[], &["a", "b"]);
        check(&[("s/web", web)], 1, &[], &["a", "b", "c"]);
        check(&[("s/web", web)], 0, &[], &["a", "b", "c"]);
    }

    #[test]
    fn never_found_images_nor_ones_in_use_nor_kept_elsewhere() {
        let web: &[(&str, Origin)] = &[("a", Found), ("b", Built), ("c", Pulled), ("d", Built)];
        check(&[("s/web", web)], 1, &["c"], &["b"]);
        // `b` is what another service runs now.
        let api: &[(&str, Origin)] = &[("e", Built), ("b", Built)];
        check(&[("s/web", web), ("s/api", api)], 1, &[], &["c", "e"]);
    }

    #[test]
    fn running_an_image_again_moves_it_to_the_front() {
        let mut h = History::default();
        for id in ["a", "b", "a"] {
            h.record("s/web", used(id, Pulled));
        }
        let ids: Vec<&str> = h.services["s/web"].iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        // Found, then pulled: pulled wins (plimsoll pulled it at some point).
        h.record("s/web", used("b", Found));
        assert_eq!(h.services["s/web"][0].origin, Pulled);
    }

    #[test]
    fn trim_forgets_found_images_past_keep() {
        let mut h = History::default();
        for (id, o) in [("a", Found), ("b", Pulled), ("c", Found), ("d", Found)] {
            h.record("s/web", used(id, o));
        }
        h.trim(2);
        let ids: Vec<&str> = h.services["s/web"].iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids, ["d", "c", "b"]);
    }

    #[test]
    fn references_are_canonical() {
        assert_eq!(canonical("busybox"), "busybox:latest");
        assert_eq!(canonical("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(canonical("app:1"), "app:1");
        assert_eq!(canonical("app@sha256:ab"), "app@sha256:ab");
    }
}
