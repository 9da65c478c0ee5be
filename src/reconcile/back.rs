//! Going back after a failed `post` job: the revision failed, so each stack
//! whose post job failed is applied again as its last good revision (the
//! newest one recorded as applied before this attempt, from the state
//! directory's revision store), planned against the engine as it is now and
//! applied without jobs: the containers the failed revision replaced are
//! created again from the good revision's settings (named volumes, and so
//! the data, are kept), recorded as a rollback in the history.

use super::{Observed, Origin, observe_on, with_applied_mounts};
use crate::apply::{ApplyError, Cancel, Parallel, Report};
use crate::events::Progress;
use crate::spec::secrets::Masker;
use crate::spec::{self, Desired};
use crate::state::{RevisionRecord, StateDir};

/// How an apply runs and is recorded ([`super::record::record_apply`]), and
/// where [`go_back`] works after one failed.
pub(super) struct Back<'a> {
    pub observed: &'a Observed<'a>,
    pub masker: &'a Masker,
    pub state: &'a StateDir,
    pub origin: &'a Origin,
    pub progress: &'a dyn Progress,
    pub cancel: &'a Cancel,
    pub parallel: Parallel,
}

/// The stacks whose post jobs failed in `report`.
pub(super) fn failed_post(report: &Report) -> Vec<String> {
    let mut out: Vec<String> = report
        .jobs
        .iter()
        // An interrupted test is no verdict on the revision.
        .filter(|j| j.when == crate::spec::model::JobKind::Post && !j.ok() && !j.interrupted)
        .map(|j| j.stack.clone())
        .collect();
    out.dedup();
    out
}

/// Why a stack has no revision to go back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum NoGoodRevision {
    #[error("nothing recorded for it")]
    NothingRecorded,
    #[error("its last good revision is the one that failed")]
    IsTheAttempt,
    #[error("no earlier good revision")]
    NoneEarlier,
}

/// The revision `stack` goes back to: the newest applied before the last
/// record (this attempt), unless it is the attempt's own.
fn last_good<'r>(
    records: &'r [RevisionRecord],
    stack: &str,
) -> Result<&'r RevisionRecord, NoGoodRevision> {
    let mine: Vec<&RevisionRecord> = records.iter().filter(|r| r.stack == stack).collect();
    let Some((attempt, before)) = mine.split_last() else {
        return Err(NoGoodRevision::NothingRecorded);
    };
    match before.iter().rev().find(|r| r.outcome == "applied") {
        Some(good) if good.hash == attempt.hash => Err(NoGoodRevision::IsTheAttempt),
        Some(good) => Ok(good),
        None => Err(NoGoodRevision::NoneEarlier),
    }
}

/// Sends each of `stacks` back to its last good revision; one line per
/// stack saying what happened (masked).
pub(super) async fn go_back(b: &Back<'_>, stacks: &[String]) -> Vec<String> {
    let records = match b.state.revisions() {
        Ok(r) => r,
        Err(e) => return vec![format!("  going back failed: reading the history: {e}")],
    };
    let mut lines = Vec::new();
    for name in stacks {
        let line = match last_good(&records, name) {
            Err(why) => format!("  {name}: {why}: it stays as applied"),
            Ok(good) => match back_to(b, good).await {
                Ok(()) => format!(
                    "  {name}: went back to revision {} (applied {})",
                    good.revision, good.time
                ),
                Err(e) => format!(
                    "  {name}: going back to revision {} failed: {e}",
                    good.revision
                ),
            },
        };
        lines.push(b.masker.mask(&line).into_owned());
    }
    lines
}

/// Why going back to a revision did not happen.
#[derive(Debug, thiserror::Error)]
enum BackError {
    #[error("{0}")]
    State(#[from] crate::state::StateError),
    #[error("{0}")]
    Load(#[from] spec::LoadError),
    #[error("{0}")]
    Engine(#[from] crate::live::EngineError),
    #[error("{0}")]
    Apply(#[from] ApplyError),
}

async fn back_to(b: &Back<'_>, good: &RevisionRecord) -> Result<(), BackError> {
    let bytes = b.state.load_revision(&good.hash)?;
    let (stack, mut masker) = spec::load_stored(&bytes, &crate::source::LocalFs)?;
    masker.extend(b.masker);
    let desired = Desired::stored(b.state.path().to_path_buf(), stack, masker.clone());
    let engine = b.observed.engine.clone();
    let mut back = observe_on(engine, &desired, Some(&b.observed.host)).await?;
    with_applied_mounts(&mut back, &b.state.applied_mounts()?, &masker);
    let mut plan = back.plan.clone();
    // Going back runs no job: the good revision's ran when it was applied.
    plan.jobs.clear();
    if plan.is_noop() && plan.conflicts.is_empty() {
        return Ok(());
    }
    let origin = Origin {
        revision: good.revision.clone(),
        source: format!(
            "back to the last good revision after a failed post job ({})",
            b.origin.source
        ),
        rollback: true,
        audit: b.origin.audit,
        images: b.origin.images,
    };
    let b = Back {
        observed: &back,
        masker: &masker,
        origin: &origin,
        ..*b
    };
    super::record::record_apply(&b, &plan).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(hash: &str, outcome: &str) -> RevisionRecord {
        RevisionRecord {
            time: String::new(),
            stack: "s".into(),
            revision: format!("local:{hash}"),
            hash: hash.into(),
            outcome: outcome.into(),
        }
    }

    #[test]
    fn the_last_good_revision_is_the_one_before_the_attempt() {
        let r = [rec("a", "applied"), rec("b", "failed"), rec("c", "failed")];
        assert_eq!(last_good(&r, "s").unwrap().hash, "a");
        // The attempt re-applied the last good revision itself: nowhere to go.
        let r = [rec("a", "applied"), rec("a", "failed")];
        assert_eq!(last_good(&r, "s").err(), Some(NoGoodRevision::IsTheAttempt));
        let r = [rec("a", "failed")];
        assert_eq!(last_good(&r, "s").err(), Some(NoGoodRevision::NoneEarlier));
        assert_eq!(
            last_good(&[], "s").err(),
            Some(NoGoodRevision::NothingRecorded)
        );
    }
}
