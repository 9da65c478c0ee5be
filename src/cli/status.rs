//! `plimsoll status`: how the host compares with git, per service, without
//! changing anything; the unknown-container policy applies.

use std::path::Path;

use anyhow::Result;

use super::args::StatusFormat;
use super::load::load;
use super::reconcile::{check_unknown, frozen};
use super::{Exit, Global, print, runtime};
use crate::reconcile;
use crate::state::StateDir;

/// `plimsoll status`.
pub(super) fn run(
    path: &Path,
    stacks: &[String],
    format: StatusFormat,
    global: &Global,
) -> Result<Exit> {
    let desired = load(path, stacks, &global.loading)?;
    let state = StateDir::open(&global.state_dir).ok();
    let (status, unknown_ok) = runtime()?.block_on(async {
        let mut observed = reconcile::observe(&desired, None).await?;
        if let Some(state) = &state {
            observed = frozen(observed, state)?;
            let applied = state.applied_mounts()?;
            reconcile::with_applied_mounts(&mut observed, &applied, &desired.masker);
        }
        Ok::<_, anyhow::Error>((
            reconcile::status(&observed),
            check_unknown(&desired, &observed),
        ))
    })?;
    let out = match format {
        StatusFormat::Text => reconcile::status_text(&status),
        StatusFormat::Json => serde_json::to_string_pretty(&status)? + "\n",
    };
    print(&desired.masker.mask(&out))?;
    unknown_ok?;
    Ok(Exit::Success)
}
