//! `plimsoll reconcile` (and its `--dry-run`, the plan alone), with what
//! the commands that change the engine share: their settings ([`Run`]),
//! the lock, progress, interrupts, the unknown-container policy and the
//! way an apply's result becomes an exit status.

use std::path::PathBuf;

use anyhow::Result;

use super::args::{LogFormat, ParallelArg};
use super::load::load;
use super::{Exit, Global, print, runtime, use_color};
use crate::events::{LogProgress, Progress, TerminalProgress};
use crate::plan;
use crate::reconcile;
use crate::spec::Desired;
use crate::state::StateDir;

/// The flags of `plimsoll reconcile`.
pub(super) struct ReconcileArgs {
    pub path: PathBuf,
    pub dry_run: bool,
    pub stacks: Vec<String>,
    pub format: plan::Format,
    pub lock_timeout: std::time::Duration,
    pub pruning: reconcile::Pruning,
    pub parallel: ParallelArg,
}

/// `plimsoll reconcile`: loads, plans and (without `--dry-run`) applies.
pub(super) fn run(a: ReconcileArgs, global: &Global) -> Result<Exit> {
    let desired = load(&a.path, &a.stacks, &global.loading)?;
    let run = Run::new(global, a.format, a.lock_timeout, a.parallel.n);
    runtime()?.block_on(reconcile_cmd(
        &desired,
        a.dry_run,
        &run,
        &a.pruning,
        &a.path.display().to_string(),
    ))
}

pub(super) fn render_plan(plan: &plan::Plan, format: plan::Format) -> Result<String> {
    Ok(match format {
        plan::Format::Text => plan::to_text(plan, use_color()),
        plan::Format::Json => serde_json::to_string_pretty(plan)? + "\n",
        plan::Format::Markdown => plan::to_markdown(plan),
    })
}

/// Settings of a run that changes the engine.
pub(super) struct Run {
    pub format: plan::Format,
    pub log_format: LogFormat,
    pub state_dir: PathBuf,
    pub lock_timeout: std::time::Duration,
    /// How many services of a wave an apply changes at once.
    pub parallel: crate::apply::Parallel,
}

impl Run {
    pub(super) fn new(
        global: &Global,
        format: plan::Format,
        lock_timeout: std::time::Duration,
        parallel: crate::apply::Parallel,
    ) -> Run {
        Run {
            format,
            log_format: global.log_format,
            state_dir: global.state_dir.clone(),
            lock_timeout,
            parallel,
        }
    }
}

pub(super) fn progress_for(
    log_format: LogFormat,
    masker: &crate::spec::secrets::Masker,
) -> Box<dyn Progress> {
    use std::io::IsTerminal as _;
    if std::io::stderr().is_terminal() && log_format == LogFormat::Text {
        Box::new(TerminalProgress::new(masker.clone()))
    } else {
        Box::new(LogProgress::new(masker.clone()))
    }
}

/// SIGINT and SIGTERM ask a running apply to stop: the current step
/// finishes, what is half done is rolled back, and the run exits 1.
pub(super) fn interrupts() -> crate::apply::Cancel {
    let cancel = crate::apply::Cancel::default();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("interrupted: finishing the current step and rolling back what is half done");
        on_signal.cancel();
    });
    cancel
}

pub(super) fn take_lock(run: &Run) -> Result<(StateDir, crate::state::Lock)> {
    let state = StateDir::open(&run.state_dir)?;
    let lock = state.lock(run.lock_timeout, &|holder| {
        eprintln!(
            "waiting for the lock on {} (held by {holder})",
            run.state_dir.display()
        );
    })?;
    Ok((state, lock))
}

/// The policy on containers plimsoll does not manage: `report` lists them in
/// `status`, `warn` also prints a warning, `fail` fails `reconcile` and `status`
/// before anything changes. Containers `docker compose` made for a stack
/// plimsoll is about to adopt are not unknown.
pub(super) fn check_unknown(desired: &Desired, observed: &reconcile::Observed<'_>) -> Result<()> {
    use crate::spec::config::UnknownContainers;
    let unknown = reconcile::unknown(observed);
    if unknown.is_empty() {
        return Ok(());
    }
    let list = unknown.join(", ");
    match desired.config.policy.unknown_containers {
        UnknownContainers::Report => Ok(()),
        UnknownContainers::Warn => {
            eprintln!(
                "warning: {} container(s) not managed by plimsoll run on this host: {list}",
                unknown.len()
            );
            Ok(())
        }
        UnknownContainers::Fail => anyhow::bail!(
            "policy unknown_containers is `fail` and {} container(s) not managed by plimsoll run on this host: {list}; remove them, or declare them in git",
            unknown.len()
        ),
    }
}

pub(super) async fn reconcile_cmd(
    desired: &Desired,
    dry_run: bool,
    run: &Run,
    pruning: &reconcile::Pruning,
    source: &str,
) -> Result<Exit> {
    let masker = &desired.masker;
    if dry_run {
        let cache = crate::live::CacheAt::ReadOnly(&run.state_dir);
        let mut observed = reconcile::observe_cached(desired, None, cache).await?;
        // Read as it is: a dry run creates nothing in the state directory.
        let applied = crate::state::applied_mounts_at(&run.state_dir)?;
        reconcile::with_applied_mounts(&mut observed, &applied, masker);
        check_unknown(desired, &observed)?;
        let plan = reconcile::pruned(observed.plan.clone(), &observed, &desired.config, pruning);
        print(&masker.mask(&render_plan(&plan, run.format)?))?;
        return Ok(if !plan.conflicts.is_empty() {
            Exit::Failure
        } else if plan.is_noop() {
            Exit::Success
        } else {
            Exit::Pending
        });
    }
    // Plan under the lock, so two applies never plan from the same live state.
    let (state, _lock) = take_lock(run)?;
    // `pull_policy: always` and the refresh policies: pull before planning, so a moved tag is followed.
    if reconcile::pulls_first(desired) {
        let engine = crate::live::Engine::connect().await?;
        let progress = progress_for(run.log_format, masker);
        reconcile::pull_first(&engine, desired, true, progress.as_ref())
            .await
            .map_err(|e| anyhow::anyhow!("{e}; nothing was changed"))?;
    }
    let observed = observe_to_apply(desired, run, &state).await?;
    for p in &observed.paused {
        eprintln!("{p}: paused; changes are shown, not applied");
    }
    let plan = reconcile::pruned(
        observed.applicable_plan(),
        &observed,
        &desired.config,
        pruning,
    );
    print(&masker.mask(&render_plan(&plan, run.format)?))?;
    if plan.is_noop() && plan.conflicts.is_empty() {
        reconcile::note_in_sync(&observed, masker, &state)?;
        return Ok(Exit::Success);
    }
    let origin = reconcile::Origin {
        revision: String::new(),
        source: source.to_string(),
        rollback: false,
        audit: desired.config.audit,
        images: desired.config.images,
    };
    apply_and_report(run, &observed, &plan, masker, &state, &origin).await
}

/// What an apply plans from, observed under the lock: through the engine
/// cache, the stacks `plimsoll pause` froze marked paused, a run killed
/// mid-replacement finished or undone first, the hashes restarted
/// containers run with laid over, and the unknown-container policy checked.
pub(super) async fn observe_to_apply<'a>(
    desired: &'a Desired,
    run: &Run,
    state: &StateDir,
) -> Result<reconcile::Observed<'a>> {
    let masker = &desired.masker;
    let cache = crate::live::CacheAt::ReadWrite(state);
    let mut observed = frozen(
        reconcile::observe_cached(desired, None, cache).await?,
        state,
    )?;
    // A run killed mid-replacement left a kept old container: finish or undo that first.
    let repaired = crate::apply::recover(
        &observed.engine,
        &observed.live,
        progress_for(run.log_format, masker).as_ref(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("recovering from an interrupted run failed: {e}"))?;
    if repaired > 0 {
        observed = frozen(
            reconcile::observe_cached(desired, None, cache).await?,
            state,
        )?;
    }
    reconcile::with_applied_mounts(&mut observed, &state.applied_mounts()?, masker);
    check_unknown(desired, &observed)?;
    Ok(observed)
}

/// The observation with the stacks `plimsoll pause` froze marked paused.
pub(super) fn frozen<'a>(
    mut observed: reconcile::Observed<'a>,
    state: &StateDir,
) -> Result<reconcile::Observed<'a>> {
    let paused = state.paused()?;
    let names: Vec<String> = observed
        .stacks
        .iter()
        .map(|s| s.name.clone())
        .filter(|s| paused.contains(s))
        .collect();
    observed.paused.extend(names);
    Ok(observed)
}

/// Applies `plan` (recorded in the state directory's history), with
/// progress on stderr and SIGTERM/SIGINT rolling back, and says how it
/// ended: "applied N actions", or the (masked) error and exit 1.
pub(super) async fn apply_and_report(
    run: &Run,
    observed: &reconcile::Observed<'_>,
    plan: &crate::plan::Plan,
    masker: &crate::spec::secrets::Masker,
    state: &StateDir,
    origin: &reconcile::Origin,
) -> Result<Exit> {
    let progress = progress_for(run.log_format, masker);
    let result = reconcile::apply_recorded(
        observed,
        plan,
        masker,
        state,
        origin,
        progress.as_ref(),
        &interrupts(),
        run.parallel,
    )
    .await;
    match result {
        Ok(report) => {
            let jobs = match report.jobs.len() {
                0 => String::new(),
                1 => ", ran 1 job".into(),
                n => format!(", ran {n} jobs"),
            };
            eprintln!(
                "applied {} action{}{jobs}",
                report.outcomes.len(),
                if report.outcomes.len() == 1 { "" } else { "s" }
            );
            Ok(Exit::Success)
        }
        Err(e) => {
            eprintln!("error: {}", masker.mask(&e.to_string()));
            Ok(Exit::Failure)
        }
    }
}
