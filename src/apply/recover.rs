//! Finishing or undoing replacements a killed run left half done.

use bollard::query_parameters::RemoveContainerOptionsBuilder;

use super::StepError;
use super::replace::restore;
use crate::events::{Outcome, Progress};
use crate::health::Health;
use crate::live::{Engine, Live};
use crate::names::OLD_SUFFIX;

/// Finishes or undoes replacements a killed run left half done, before
/// planning: for every kept `<name>-plimsoll-old` container, a successor that
/// runs (and is healthy, where it has a health check) means the replacement
/// succeeded and the old one goes; otherwise the successor goes and the old
/// one is renamed back and started. Returns how many were repaired.
pub async fn recover(
    engine: &Engine,
    live: &Live,
    progress: &dyn Progress,
) -> Result<usize, StepError> {
    let mut repaired = 0;
    for parked in live
        .containers
        .iter()
        .filter(|c| c.name.ends_with(OLD_SUFFIX))
    {
        let name = parked.name.trim_end_matches(OLD_SUFFIX);
        let subject = format!("{}/{}", parked.stack, parked.service);
        let successor = live.containers.iter().find(|c| c.name == name);
        let proven = successor.is_some_and(|n| {
            n.state.is_running() && n.state.health.is_none_or(|h| h == Health::Healthy)
        });
        if proven {
            progress.step(
                &subject,
                "finishing an interrupted replacement: removing the old container",
                Outcome::Working,
            );
            let opts = RemoveContainerOptionsBuilder::default().force(true).build();
            engine
                .docker
                .remove_container(&parked.id, Some(opts))
                .await
                .map_err(StepError::Engine)?;
        } else {
            progress.step(
                &subject,
                "undoing an interrupted replacement: restoring the old container",
                Outcome::Working,
            );
            restore(&engine.docker, name, &parked.id, true).await?;
        }
        progress.step(&subject, "recovered", Outcome::Done);
        repaired += 1;
    }
    Ok(repaired)
}
