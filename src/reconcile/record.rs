//! Recording an apply: the audit record (plan, outcome, timings, jobs;
//! masked), the stored revision of each stack with its outcome (what
//! `plimsoll rollback` and going back after a failed `post` job re-apply),
//! the hashes restarted containers run with, old images removed.

use std::collections::BTreeSet;

use super::{Observed, back, record_restarted_mounts, stack_builds};
use crate::plan::{ActionKind, Plan};
use crate::spec::model::Stack;

/// Where an apply's desired state came from, for the records.
pub struct Origin {
    /// A commit SHA; empty for a directory, whose revision becomes `local:<content hash>`.
    pub revision: String,
    /// The path or URL it was loaded from.
    pub source: String,
    /// Set when re-applying a stored revision.
    pub rollback: bool,
    /// How the audit log rotates (`audit:` in plimsoll.yaml).
    pub audit: crate::spec::config::AuditConfig,
    /// Which old images stay (`images:` in plimsoll.yaml).
    pub images: crate::spec::config::ImagesConfig,
}

/// Applies the plan and records it: one audit record (plan, outcome, per
/// action timings, rollbacks, jobs; masked) and, per stack, the stored
/// revision with its outcome, so `plimsoll rollback` can re-apply a good
/// one. A stack whose `post` job failed goes back to its last good
/// revision ([`back`]); the error then says so.
#[allow(clippy::too_many_arguments)]
pub async fn apply_recorded(
    observed: &Observed<'_>,
    plan: &Plan,
    masker: &crate::spec::secrets::Masker,
    state: &crate::state::StateDir,
    origin: &Origin,
    progress: &dyn crate::events::Progress,
    cancel: &crate::apply::Cancel,
    parallel: crate::apply::Parallel,
) -> Result<crate::apply::Report, crate::apply::ApplyError> {
    let b = back::Back {
        observed,
        masker,
        state,
        origin,
        progress,
        cancel,
        parallel,
    };
    let result = record_apply(&b, plan).await;
    // A failed post job fails the revision: its stacks go back to their last good one.
    let failed_post = match &result {
        Err(crate::apply::ApplyError::Services { report, .. }) => back::failed_post(report),
        _ => Vec::new(),
    };
    match result {
        Err(failure) if !failed_post.is_empty() => Err(crate::apply::ApplyError::WentBack {
            failure: Box::new(failure),
            back: back::go_back(&b, &failed_post).await,
        }),
        other => other,
    }
}

/// [`apply_recorded`] without going back after a failed `post` job (what
/// going back itself applies: a plan without jobs).
pub(super) async fn record_apply(
    b: &back::Back<'_>,
    plan: &Plan,
) -> Result<crate::apply::Report, crate::apply::ApplyError> {
    let back::Back {
        observed,
        masker,
        state,
        origin,
        progress,
        cancel,
        parallel,
    } = *b;
    let started = std::time::Instant::now();
    let stacks = observed.changeable();
    // A rollback re-applies a revision whose jobs ran when it was applied.
    let without_jobs;
    let plan = if origin.rollback && !plan.jobs.is_empty() {
        without_jobs = Plan {
            jobs: Vec::new(),
            ..plan.clone()
        };
        &without_jobs
    } else {
        plan
    };
    let result = crate::apply::apply(
        &observed.engine,
        &stacks,
        plan,
        crate::apply::Observed {
            live: &observed.live,
            mounts: &observed.mounts,
        },
        masker,
        progress,
        cancel,
        parallel,
    )
    .await;
    let outcomes = result
        .as_ref()
        .map_or_else(|e| e.report().cloned().unwrap_or_default(), Clone::clone)
        .outcomes;
    let failed_stacks: BTreeSet<String> = match &result {
        Err(crate::apply::ApplyError::Services {
            failures: lines, ..
        }) => lines
            .iter()
            .filter_map(|l| l.split('/').next())
            .map(str::to_string)
            .collect(),
        Err(_) => stacks.iter().map(|s| s.name.clone()).collect(),
        Ok(_) => BTreeSet::new(),
    };
    let engine = engine_identity(observed).await;
    let mut record = audit_record(&result, plan, origin, &engine);
    record["seconds"] = serde_json::json!(started.elapsed().as_secs_f64());
    masker.mask_json(&mut record);
    let mut write = || -> Result<(), crate::state::StateError> {
        let stored: Vec<(&Stack, String)> = stacks
            .iter()
            .map(|s| {
                Ok((
                    *s,
                    state.store_revision(&crate::spec::render::to_stored_built(
                        s,
                        masker,
                        &stack_builds(&observed.builds, &s.name),
                    ))?,
                ))
            })
            .collect::<Result<_, crate::state::StateError>>()?;
        // A directory has no commit: its revision is the hash of what was applied.
        let local = |hash: &str| format!("local:{}", &hash[..12]);
        let all: String = stored.iter().map(|(_, h)| h.as_str()).collect();
        let revision = if origin.revision.is_empty() {
            local(&crate::state::content_hash(all.as_bytes()))
        } else {
            origin.revision.clone()
        };
        record["revision"] = serde_json::json!(revision);
        // At least the minimums, whatever the repository says (`AuditConfig`).
        state.audit(&record, origin.audit.max_bytes(), origin.audit.keep())?;
        for (stack, hash) in stored {
            let outcome = if failed_stacks.contains(&stack.name) {
                "failed"
            } else {
                "applied"
            };
            state.record_revision(&crate::state::RevisionRecord {
                time: crate::state::now(),
                stack: stack.name.clone(),
                // The revision `plimsoll history` shows, so `rollback --to` takes it
                // (like a commit SHA, it names the whole apply; `hash` is this stack's).
                revision: revision.clone(),
                hash,
                outcome: outcome.into(),
            })?;
        }
        Ok(())
    };
    if let Err(e) = write() {
        tracing::error!("the apply ran, but recording it in the state directory failed: {e}");
    }
    record_restarted_mounts(observed, &outcomes, state);
    // Old images go only after everything succeeded. Starting or restarting
    // containers (most heals) changes no image: nothing to record or remove.
    let images_may_change = plan
        .actions
        .iter()
        .any(|a| !matches!(a.action, ActionKind::Start | ActionKind::Restart));
    if result.is_ok()
        && images_may_change
        && let Err(e) = crate::images::after_apply(
            &observed.engine,
            state,
            &stacks,
            plan,
            origin.images,
            progress,
        )
        .await
    {
        tracing::warn!("the apply succeeded, but removing old images failed: {e}");
    }
    result
}

/// The audit record of an apply (not yet masked, `seconds` not set): the
/// plan, the outcome, each action's result and each job's run.
fn audit_record(
    result: &Result<crate::apply::Report, crate::apply::ApplyError>,
    plan: &Plan,
    origin: &Origin,
    engine: &EngineIdentity,
) -> serde_json::Value {
    let report = match result {
        Ok(r) => Some(r),
        Err(e) => e.report(),
    };
    let actions: Vec<serde_json::Value> = report
        .iter()
        .flat_map(|r| &r.outcomes)
        .map(|o| {
            serde_json::json!({
                "action": o.action.action,
                "stack": o.action.stack,
                "service": o.action.service,
                "target": o.action.target,
                "ok": o.result.is_ok(),
                "error": o.result.as_ref().err(),
                "seconds": o.duration.as_secs_f64(),
                "rolled_back": o.rolled_back,
            })
        })
        .collect();
    let mut record = serde_json::json!({
        "time": crate::state::now(),
        "revision": origin.revision,
        "source": origin.source,
        "rollback": origin.rollback,
        "user": crate::state::invoking_user(),
        "host": crate::state::hostname(),
        "engine": engine.name,
        "engine_id": engine.id,
        "outcome": if result.is_ok() { "applied" } else { "failed" },
        "error": result.as_ref().err().map(|e| e.to_string()),
        "seconds": 0.0,
        "plan": plan,
        "actions": actions,
    });
    if let Some(r) = report.filter(|r| !r.jobs.is_empty()) {
        // Each run with its last log lines (masked when they were read).
        record["jobs"] = serde_json::json!(r.jobs);
    }
    record
}

/// Which engine an apply ran on, for the audit log.
struct EngineIdentity {
    name: String,
    id: String,
}

/// The engine's name and id from its `/info` (the host name plimsoll.yaml
/// knows it by when `/info` fails).
async fn engine_identity(observed: &Observed<'_>) -> EngineIdentity {
    match observed.engine.docker.info().await {
        Ok(info) => EngineIdentity {
            name: info.name.unwrap_or_else(|| observed.host.clone()),
            id: info.id.unwrap_or_default(),
        },
        Err(e) => {
            tracing::warn!("reading the engine's name and id for the audit log: {e}");
            EngineIdentity {
                name: observed.host.clone(),
                id: String::new(),
            }
        }
    }
}

/// The revision `plimsoll rollback` re-applies for `stack`: the one named by
/// `to` (a revision or a hash prefix), else the newest applied revision that
/// differs from the newest attempt.
pub fn rollback_target<'a>(
    records: &'a [crate::state::RevisionRecord],
    stack: &str,
    to: Option<&str>,
) -> Option<&'a crate::state::RevisionRecord> {
    let mine: Vec<&crate::state::RevisionRecord> =
        records.iter().filter(|r| r.stack == stack).collect();
    if let Some(to) = to {
        return mine
            .iter()
            .rev()
            .find(|r| r.revision == to || r.hash.starts_with(to) || r.revision.ends_with(to))
            .copied();
    }
    let latest = mine.last()?;
    mine.iter()
        .rev()
        .find(|r| r.outcome == "applied" && r.hash != latest.hash)
        .copied()
}

/// Records, for stacks already in sync, the revision the host is at (when it
/// is not the last one recorded), so `rollback` knows where it stands.
pub fn note_in_sync(
    observed: &Observed<'_>,
    masker: &crate::spec::secrets::Masker,
    state: &crate::state::StateDir,
) -> Result<(), crate::state::StateError> {
    let records = state.revisions()?;
    for stack in observed.changeable() {
        let hash = state.store_revision(&crate::spec::render::to_stored_built(
            stack,
            masker,
            &stack_builds(&observed.builds, &stack.name),
        ))?;
        let last = records.iter().rev().find(|r| r.stack == stack.name);
        if last.is_none_or(|r| r.hash != hash) {
            state.record_revision(&crate::state::RevisionRecord {
                time: crate::state::now(),
                stack: stack.name.clone(),
                revision: format!("local:{}", &hash[..12]),
                hash,
                outcome: "applied".into(),
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::RevisionRecord;

    fn rec(stack: &str, hash: &str, outcome: &str) -> RevisionRecord {
        RevisionRecord {
            time: String::new(),
            stack: stack.into(),
            revision: format!("local:{hash}"),
            hash: hash.into(),
            outcome: outcome.into(),
        }
    }

    #[test]
    fn rollback_picks_the_last_good_other_revision() {
        let r = vec![
            rec("s", "aaa", "applied"),
            rec("s", "bbb", "applied"),
            rec("t", "zzz", "applied"),
            rec("s", "ccc", "failed"),
        ];
        assert_eq!(rollback_target(&r, "s", None).unwrap().hash, "bbb");
        let r2 = vec![rec("s", "aaa", "applied"), rec("s", "bbb", "applied")];
        assert_eq!(rollback_target(&r2, "s", None).unwrap().hash, "aaa");
        assert_eq!(rollback_target(&r, "s", Some("aa")).unwrap().hash, "aaa");
        assert!(rollback_target(&r, "nope", None).is_none());
    }
}
