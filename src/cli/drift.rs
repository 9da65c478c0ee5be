//! `plimsoll drift`: the drift of this host's services (exit 2 when there is
//! some not silenced), and what to do about each: `--revert` (the normal
//! plan and apply, under the lock), `--silence`/`--unsilence`, `--patch`
//! (accept into git). The review itself is [`crate::drift`].

use std::collections::BTreeSet;

use anyhow::{Context as _, Result, bail};

use super::args::{DriftArgs, StatusFormat};
use super::load::{load, load_from};
use super::reconcile::{Run, apply_and_report, observe_to_apply, render_plan, take_lock};
use super::{Exit, Global, print, runtime};
use crate::drift::{self, Drifted, Silence, Silences};
use crate::reconcile;
use crate::spec::Desired;
use crate::state::StateDir;

/// `plimsoll drift`.
pub(super) fn run(a: DriftArgs, global: &Global) -> Result<Exit> {
    let desired = load(&a.path, &a.stacks, &global.loading)?;
    if a.silence || a.unsilence {
        return silences(&a, &desired, global);
    }
    let rt = runtime()?;
    if a.revert {
        return rt.block_on(revert(&a, &desired, global));
    }
    rt.block_on(look(&a, &desired, global))
}

/// The drifted services of `observed` that `a` selects.
fn selected(a: &DriftArgs, plan: &crate::plan::Plan, silences: &Silences) -> Vec<Drifted> {
    drift::review(plan, silences, jiff::Timestamp::now())
        .into_iter()
        .filter(|d| a.service.as_ref().is_none_or(|s| &d.service == s))
        .collect()
}

/// The review (text or JSON), or with `--patch` the patch; exit 2 on drift not silenced.
async fn look(a: &DriftArgs, desired: &Desired, global: &Global) -> Result<Exit> {
    let masker = &desired.masker;
    let cache = crate::live::CacheAt::ReadOnly(&global.state_dir);
    let mut observed = reconcile::observe_cached(desired, None, cache).await?;
    // Read as it is: looking creates nothing in the state directory.
    let applied = crate::state::applied_mounts_at(&global.state_dir)?;
    reconcile::with_applied_mounts(&mut observed, &applied, masker);
    let silences = Silences::load_at(&global.state_dir)?;
    let drifted = selected(a, &observed.plan, &silences);
    let pending = drifted.iter().any(|d| d.silenced.is_none());
    if a.patch {
        let files = global.loading.host.files(&a.path)?;
        let accept = drift::accept(
            &observed.stacks,
            &observed.live,
            &observed.mounts,
            &drifted,
            masker,
            &files,
            |patched| load_from(patched, &a.path, &a.stacks, &global.loading),
        );
        for u in &accept.patch.unwritten {
            eprintln!("not in the patch: {u}");
        }
        print(&masker.mask(&accept.patch.to_text()))?;
        if let Err(e) = &accept.accepted {
            eprintln!("warning: the repository with this patch applied does not load:\n{e:#}");
        }
        // So that once the patch is in git the plan finds the containers
        // in sync instead of replacing them (`docker update` does not
        // change the label a container was created with).
        if accept.accepted.as_ref().is_ok_and(|m| !m.is_empty()) {
            accept.record(&StateDir::open(&global.state_dir)?)?;
        }
        return Ok(if drifted.is_empty() {
            Exit::Success
        } else {
            Exit::Pending
        });
    }
    let out = match a.format {
        StatusFormat::Json => {
            serde_json::to_string_pretty(&serde_json::json!({ "drifted": drifted }))? + "\n"
        }
        StatusFormat::Text => to_text(&drifted),
    };
    print(&masker.mask(&out))?;
    Ok(if pending {
        Exit::Pending
    } else {
        Exit::Success
    })
}

/// The review for people: per service its kind, silence, reasons and diff.
fn to_text(drifted: &[Drifted]) -> String {
    let mut out = String::new();
    for d in drifted {
        out.push_str(&format!("{}/{}: {}", d.stack, d.service, d.kind.as_str()));
        if let Some(s) = &d.silenced {
            out.push_str(&format!(
                " (silenced until {} by {}: {})",
                s.until, s.by, s.reason
            ));
        }
        out.push('\n');
        for action in &d.actions {
            out.push_str(&format!(
                "  {}: {}\n",
                action.container,
                action.kind.as_str()
            ));
            for r in &action.reasons {
                out.push_str(&format!("    {r}\n"));
            }
            if let Some(diff) = &action.diff {
                for line in diff.lines() {
                    out.push_str(&format!("    {line}\n"));
                }
            }
        }
    }
    let silenced = drifted.iter().filter(|d| d.silenced.is_some()).count();
    out.push_str(&match (drifted.len(), silenced) {
        (0, _) => "no drift: every service is as git says\n".to_string(),
        (n, 0) => format!("{n} drifted service{}\n", plural(n)),
        (n, s) => format!("{n} drifted service{} ({s} silenced)\n", plural(n)),
    });
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `--revert`: the drifted services (of stacks not paused) put back to git
/// through the normal plan and apply.
async fn revert(a: &DriftArgs, desired: &Desired, global: &Global) -> Result<Exit> {
    let masker = &desired.masker;
    let run = Run::new(
        global,
        crate::plan::Format::Text,
        a.lock_timeout,
        a.parallel.n,
    );
    let (state, _lock) = take_lock(&run)?;
    let observed = observe_to_apply(desired, &run, &state).await?;
    for p in &observed.paused {
        eprintln!("{p}: paused; its drift is shown, not reverted");
    }
    let applicable = observed.applicable_plan();
    let drifted = selected(a, &applicable, &Silences::default());
    let services: BTreeSet<(String, String)> = drifted
        .iter()
        .map(|d| (d.stack.clone(), d.service.clone()))
        .collect();
    let plan = drift::revert_plan(&applicable, &observed.stacks, &services);
    print(&masker.mask(&render_plan(&plan, run.format)?))?;
    if plan.is_noop() {
        return Ok(if plan.conflicts.is_empty() {
            Exit::Success
        } else {
            Exit::Failure
        });
    }
    let origin = reconcile::Origin {
        revision: String::new(),
        source: format!("drift --revert {}", a.path.display()),
        rollback: false,
        audit: desired.config.audit,
        images: desired.config.images,
    };
    apply_and_report(&run, &observed, &plan, masker, &state, &origin).await
}

/// `--silence` and `--unsilence`.
fn silences(a: &DriftArgs, desired: &Desired, global: &Global) -> Result<Exit> {
    let [stack] = a.stacks.as_slice() else {
        bail!("--silence and --unsilence need one --stack");
    };
    let Some(found) = desired.stacks.iter().find(|s| &s.name == stack) else {
        bail!("no stack `{stack}` in {}", a.path.display());
    };
    if let Some(service) = &a.service
        && !found.services.contains_key(service)
    {
        bail!("stack `{stack}` has no service `{service}`");
    }
    let state = StateDir::open(&global.state_dir)?;
    if a.unsilence {
        let gone = Silences::remove(&state, stack, a.service.as_deref())?;
        if gone.is_empty() {
            eprintln!("{stack}: no silence to lift");
        }
        for s in gone {
            eprintln!("{}/{}: silence lifted", s.stack, s.service);
        }
        return Ok(Exit::Success);
    }
    let Some(service) = &a.service else {
        bail!("--silence needs --service");
    };
    let span = a.silence_for.context("--silence needs --for")?;
    let now = jiff::Timestamp::now();
    let until = now
        .checked_add(jiff::SignedDuration::try_from(span)?)
        .context("--for is too long")?;
    let silence = Silence {
        stack: stack.clone(),
        service: service.clone(),
        fields: a.fields.clone(),
        until,
        reason: desired
            .masker
            .mask(a.reason.as_deref().unwrap_or_default())
            .into_owned(),
        by: crate::state::invoking_user(),
        created: now,
    };
    Silences::add(&state, silence)?;
    let what = if a.fields.is_empty() {
        String::new()
    } else {
        format!(" ({})", a.fields.join(", "))
    };
    eprintln!("{stack}/{service}{what}: drift silenced until {until}");
    Ok(Exit::Success)
}
