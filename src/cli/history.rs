//! The commands on the state directory alone: `history`, `pause`,
//! `resume` and `heal --reset`.

use anyhow::Result;

use super::args::StatusFormat;
use super::reconcile::{Run, take_lock};
use super::{Exit, Global, print};
use crate::reconcile;
use crate::state::StateDir;

/// `plimsoll history`: the audit records, the last `limit` of them.
pub(super) fn history(limit: Option<usize>, format: StatusFormat, global: &Global) -> Result<Exit> {
    let state = StateDir::open(&global.state_dir)?;
    let mut records = state.audit_records()?;
    if let Some(n) = limit {
        records = records.split_off(records.len().saturating_sub(n));
    }
    let out = match format {
        StatusFormat::Json => serde_json::to_string_pretty(&records)? + "\n",
        StatusFormat::Text => history_text(&records),
    };
    print(&out)?;
    Ok(Exit::Success)
}

/// `plimsoll pause` and `plimsoll resume`: a stack (or the host) frozen or followed again.
pub(super) fn pause(stack: Option<&str>, paused: bool, global: &Global) -> Result<Exit> {
    let state = StateDir::open(&global.state_dir)?;
    state.set_paused(stack, paused)?;
    let who = stack.unwrap_or("this host");
    if paused {
        eprintln!(
            "{who}: paused; it is observed and reported, and nothing changes until `plimsoll resume{}`",
            stack.map(|s| format!(" {s}")).unwrap_or_default()
        );
    } else {
        eprintln!("{who}: resumed; the next check converges it");
    }
    Ok(Exit::Success)
}

/// `plimsoll heal --reset`: clears the self-heal counters of some services.
pub(super) fn heal(
    reset: &str,
    lock_timeout: std::time::Duration,
    global: &Global,
) -> Result<Exit> {
    let run = Run::new(
        global,
        crate::plan::Format::Text,
        lock_timeout,
        Default::default(),
    );
    let (state, _lock) = take_lock(&run)?;
    let mut book: crate::agent::heal::HealBook = state.read_json(crate::agent::heal::FILE)?;
    let n = book.reset(reset);
    state.write_json(crate::agent::heal::FILE, &book)?;
    eprintln!(
        "{reset}: cleared the self-heal counters of {n} service{}",
        if n == 1 { "" } else { "s" }
    );
    Ok(Exit::Success)
}

fn history_text(records: &[serde_json::Value]) -> String {
    let mut rows = vec![[
        "TIME".to_string(),
        "REVISION".into(),
        "OUTCOME".into(),
        "ACTIONS".into(),
        "SECONDS".into(),
        "USER".into(),
    ]];
    for r in records {
        let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
        let actions = r["actions"].as_array().map_or(0, Vec::len);
        let outcome = if r["rollback"].as_bool() == Some(true) {
            format!("{} (rollback)", s("outcome"))
        } else {
            s("outcome")
        };
        rows.push([
            s("time"),
            s("revision"),
            outcome,
            actions.to_string(),
            format!("{:.1}", r["seconds"].as_f64().unwrap_or(0.0)),
            s("user"),
        ]);
    }
    reconcile::table(&rows)
}
