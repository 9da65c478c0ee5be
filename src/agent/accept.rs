//! Accept into git from the dashboard (`GET /ui/patch`): the patch that
//! `plimsoll drift --patch` prints, for one service or a whole stack of the
//! revision this host runs.
//!
//! The service is observed as its heal observes it ([`Healer::look`]: the
//! agent's one edge for looking at a service), the patch and the hashes to
//! record come from [`crate::drift::accept`], reading the files of the
//! applied revision from its commit in the clone (not the work tree, where
//! a newer revision may be checked out), and loading it again with the patch
//! applied as the agent loads revisions. The record (`mounts.json`) is inert
//! until git has the patch: nothing on the host or in a plan changes.

use thiserror::Error;

use super::controller;
use super::healer::Healer;
use crate::drift::{self, Silences};
use crate::state::StateError;

/// A patch to download.
#[derive(Debug)]
pub struct Download {
    /// `plimsoll-drift-<stack>[-<service>].patch`.
    pub filename: String,
    /// The patch, secrets masked (a secret is never written: the patch
    /// says which variable to change).
    pub text: String,
}

/// Why there is no patch.
#[derive(Debug, Error)]
pub enum DownloadError {
    #[error("no revision is applied on this host yet: there is nothing to accept into")]
    NotApplied,
    #[error("{0}: no such service in the revision this host runs; reload the page")]
    Unknown(String),
    #[error("looking at {what} failed: {source}")]
    Observe {
        what: String,
        #[source]
        source: controller::Error,
    },
    #[error("reading the files of revision {revision}: {source}")]
    Files {
        revision: String,
        #[source]
        source: crate::source::SourceError,
    },
    #[error(
        "recording the accepted drift in the state directory failed: {source}; without it, the containers would be replaced once the patch is in git"
    )]
    Record {
        #[source]
        source: StateError,
    },
}

impl DownloadError {
    /// The HTTP status it answers with.
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            DownloadError::NotApplied => StatusCode::SERVICE_UNAVAILABLE,
            DownloadError::Unknown(_) => StatusCode::NOT_FOUND,
            DownloadError::Observe { .. } => StatusCode::BAD_GATEWAY,
            DownloadError::Files { .. } | DownloadError::Record { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

/// The patch accepting the drift of `stack` (its `service`, or all of it)
/// into git, as `plimsoll drift --patch --stack S [--service V]` prints it;
/// records the hashes the containers stand for once git has it.
pub async fn download(
    healer: &Healer,
    stack: &str,
    service: Option<&str>,
) -> Result<Download, DownloadError> {
    let applied = healer.applied().ok_or(DownloadError::NotApplied)?;
    let target = &applied.target;
    let desired = &target.desired;
    let what = match service {
        Some(s) => format!("{stack}/{s}"),
        None => stack.to_string(),
    };
    let declared = desired
        .stacks
        .iter()
        .find(|s| s.name == stack)
        .is_some_and(|s| service.is_none_or(|x| s.services.contains_key(x)));
    if !declared {
        return Err(DownloadError::Unknown(what));
    }
    let observed = healer
        .look(&applied, stack, service)
        .await
        .map_err(|source| DownloadError::Observe {
            what: what.clone(),
            source,
        })?;
    // Silenced drift is accepted too (as the command line does).
    let drifted = drift::review(&observed.plan, &Silences::default(), jiff::Timestamp::now());
    let checkout = &target.checkout;
    let files = checkout
        .files(&target.revision)
        .map_err(|source| DownloadError::Files {
            revision: target.revision.clone(),
            source,
        })?;
    let only = [stack.to_string()];
    let accept = drift::accept(
        &observed.stacks,
        &observed.live,
        &observed.mounts,
        &drifted,
        &desired.masker,
        &*files,
        |patched| checkout.loader.load(&checkout.root, patched, &only),
    );
    let masker = &desired.masker;
    if let Err(e) = &accept.accepted {
        tracing::warn!(
            "{what}: the repository with the patch applied does not load, so it is not recorded as accepted: {}",
            masker.mask(&e.to_string())
        );
    }
    accept
        .record(healer.state())
        .map_err(|source| DownloadError::Record { source })?;
    tracing::info!("{what}: patch accepting its drift into git downloaded from the dashboard");
    Ok(Download {
        filename: filename(stack, service),
        text: masker.mask(&accept.patch.to_text()).into_owned(),
    })
}

/// `plimsoll-drift-<stack>[-<service>].patch`, with only `[A-Za-z0-9._-]`.
fn filename(stack: &str, service: Option<&str>) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    match service {
        Some(s) => format!("plimsoll-drift-{}-{}.patch", clean(stack), clean(s)),
        None => format!("plimsoll-drift-{}.patch", clean(stack)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_are_safe_in_a_header() {
        assert_eq!(
            filename("shop", Some("web")),
            "plimsoll-drift-shop-web.patch"
        );
        assert_eq!(filename("a b\"c", None), "plimsoll-drift-a_b_c.patch");
    }
}
