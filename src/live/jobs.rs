//! The runs of jobs (`io.plimsoll.job`), read from the container list.

use std::collections::{BTreeMap, BTreeSet};

use bollard::models::ContainerSummary;

use crate::names::labels;

/// One run of a job: a one-off container with [`labels::JOB`], read from
/// the container list alone (no inspect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveJobRun {
    pub id: String,
    pub name: String,
    pub stack: String,
    /// The job (its service name in the Compose file).
    pub job: String,
    pub labels: BTreeMap<String, String>,
    /// The image ID it ran.
    pub image_id: String,
    /// Creation time, seconds since the epoch.
    pub created: i64,
    /// Still running (or created, restarting): not finished.
    pub running: bool,
    /// The exit code of a finished run, from the list's status (`Exited (1) …`).
    pub exit_code: Option<i64>,
}

impl LiveJobRun {
    /// The run a listed container is, when it belongs to one of `stacks`.
    pub(super) fn listed(
        s: &ContainerSummary,
        name: String,
        state: &str,
        stacks: &BTreeSet<String>,
    ) -> Option<LiveJobRun> {
        let labels = s.labels.as_ref()?;
        let stack = labels.get(labels::STACK).filter(|s| stacks.contains(*s))?;
        Some(LiveJobRun {
            id: s.id.clone().unwrap_or_default(),
            name,
            stack: stack.clone(),
            job: labels.get(labels::SERVICE).cloned().unwrap_or_default(),
            labels: labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            image_id: s.image_id.clone().unwrap_or_default(),
            created: s.created.unwrap_or_default(),
            running: state != "exited" && state != "dead",
            exit_code: s.status.as_deref().and_then(listed_exit_code),
        })
    }

    /// Whether the run finished with exit code 0.
    pub fn succeeded(&self) -> bool {
        !self.running && self.exit_code == Some(0)
    }
}

/// The exit code in a container list's status, `Exited (137) 2 minutes ago`.
fn listed_exit_code(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest[..rest.find(')')?].parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_exit_code_of_a_listed_run() {
        assert_eq!(super::listed_exit_code("Exited (0) 3 seconds ago"), Some(0));
        assert_eq!(
            super::listed_exit_code("Exited (137) About a minute ago"),
            Some(137)
        );
        assert_eq!(super::listed_exit_code("Up 2 seconds"), None);
    }
}
