//! `plimsoll rollback`: applies a stack's last good revision (or `--to`
//! one) from the state directory, each checked against the host policy.

use anyhow::Result;

use super::args::ParallelArg;
use super::reconcile::{Run, apply_and_report, render_plan, take_lock};
use super::{Exit, Global, print, runtime};
use crate::reconcile;
use crate::source::LocalFs;
use crate::spec::{self, Desired};

/// `plimsoll rollback`.
pub(super) fn run(
    stack: Option<&str>,
    to: Option<&str>,
    lock_timeout: std::time::Duration,
    parallel: ParallelArg,
    global: &Global,
) -> Result<Exit> {
    let run = Run::new(global, crate::plan::Format::Text, lock_timeout, parallel.n);
    runtime()?.block_on(rollback_cmd(
        stack,
        to,
        &run,
        global.loading.host_policy.as_deref(),
    ))
}

pub(super) async fn rollback_cmd(
    stack: Option<&str>,
    to: Option<&str>,
    run: &Run,
    host_policy: Option<&spec::policy::HostPolicy>,
) -> Result<Exit> {
    let (state, _lock) = take_lock(run)?;
    let records = state.revisions()?;
    let stacks: Vec<String> = match stack {
        Some(s) => vec![s.to_string()],
        None => records
            .iter()
            .map(|r| r.stack.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    if stacks.is_empty() {
        anyhow::bail!(
            "no revision has been applied with the state directory {} yet; nothing to roll back to",
            run.state_dir.display()
        );
    }
    let mut code = Exit::Success;
    for name in stacks {
        let Some(target) = reconcile::rollback_target(&records, &name, to) else {
            anyhow::bail!(
                "stack {name}: no earlier good revision in {} (see `plimsoll history`)",
                run.state_dir.display()
            );
        };
        let bytes = state.load_revision(&target.hash)?;
        let (stack, masker) = spec::load_stored(&bytes, &LocalFs)?;
        if let Some(host) = host_policy {
            spec::check_host_policy(&stack, host, &LocalFs).map_err(|e| {
                anyhow::anyhow!(
                    "{}\nstack {name}: revision {} violates the host policy; roll back to another \
                     revision (--to REV, see `plimsoll history`) or fix the stack in git",
                    masker.mask(&e.to_string()),
                    target.revision
                )
            })?;
        }
        eprintln!(
            "{name}: rolling back to {} (applied {})",
            target.revision, target.time
        );
        let desired = Desired::stored(run.state_dir.clone(), stack, masker.clone());
        let mut observed = reconcile::observe(&desired, None).await?;
        let applied = crate::state::applied_mounts_at(&run.state_dir)?;
        reconcile::with_applied_mounts(&mut observed, &applied, &masker);
        print(&masker.mask(&render_plan(&observed.plan, run.format)?))?;
        if observed.plan.is_noop() && observed.plan.conflicts.is_empty() {
            continue;
        }
        let origin = reconcile::Origin {
            revision: target.revision.clone(),
            source: format!("rollback of {name}"),
            rollback: true,
            audit: Default::default(),
            images: Default::default(),
        };
        if apply_and_report(run, &observed, &observed.plan, &masker, &state, &origin).await?
            != Exit::Success
        {
            code = Exit::Failure;
        }
    }
    Ok(code)
}
