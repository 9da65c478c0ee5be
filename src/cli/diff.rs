//! `plimsoll diff`: what changes between two revisions of the repository
//! (per host with `--host`), without an engine; exit 2 when something does.

use std::path::Path;

use anyhow::Result;

use super::{Exit, Global, print, use_color};
use crate::plan;
use crate::range::{self, RangeError};

/// `plimsoll diff FROM TO`.
pub(super) fn run(
    path: &Path,
    (from, to): (&str, &str),
    host: Option<&str>,
    format: plan::Format,
    global: &Global,
) -> Result<Exit> {
    let loading = &global.loading;
    let env = loading.host.env();
    let loaded =
        range::load(path, (from, to), host, &env, &loading.options()?).map_err(|e| match e {
            RangeError::Load { rev, source } => {
                // `main` prints the located diagnostics of a LoadError as they are.
                eprintln!("error: {rev} does not load:");
                anyhow::Error::from(source)
            }
            e => e.into(),
        })?;
    for w in loaded
        .warnings
        .iter()
        .map(ToString::to_string)
        .chain(loaded.diff.warnings.iter().map(|w| format!("warning: {w}")))
    {
        eprintln!("{w}");
    }
    let d = &loaded.diff;
    print(&match format {
        plan::Format::Text => range::to_text(d, use_color()),
        plan::Format::Json => serde_json::to_string_pretty(d)? + "\n",
        plan::Format::Markdown => range::to_markdown(d),
    })?;
    Ok(if d.is_empty() {
        Exit::Success
    } else {
        Exit::Pending
    })
}
