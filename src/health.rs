//! Typed container state and health, and the gate verdict: the pure half of
//! "is this container where a dependent (or a heal) wants it?".
//!
//! [`RunState`] is what the engine reports about a running container
//! (`State` of `docker inspect`), typed: a [`Status`], an ordered [`Health`],
//! the exit code. `live` converts bollard's inspect into it
//! (`live::run_state`); nothing here knows Docker's API. [`gate`] is the one
//! function from a state and a dependency [`Condition`] to a [`Verdict`]:
//! `apply`'s dependency gates and the agent's heal watch both poll it
//! (`apply::gates::wait_until`), the agent asking for the condition
//! [`heal_condition`] picks.
//!
//! Tested against saved `docker inspect` output of real containers
//! (`tests/fixtures/inspect/state/`, captured by `scripts/capture-state.sh`)
//! beside the expected verdict for each condition (`expected.txt`).

use std::fmt;

use serde::Serialize;

use crate::spec::model::Condition;

/// A container's health, ordered from best to worst, as Argo CD orders its
/// health statuses (`IsWorse`): `Healthy < Starting < Unhealthy`. A check
/// still starting is worse than a passing one (not ready yet) and better than
/// a failing one (it may still pass). No health check at all is `None` in
/// [`RunState::health`], not a variant: it says nothing either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Healthy,
    Starting,
    Unhealthy,
}

impl Health {
    /// Docker's word for it (`docker inspect`, `/status`).
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Starting => "starting",
            Health::Unhealthy => "unhealthy",
        }
    }

    /// Docker's word to a health; `None` for no health check (`none`, empty).
    pub fn parse(word: &str) -> Option<Health> {
        match word {
            "healthy" => Some(Health::Healthy),
            "starting" => Some(Health::Starting),
            "unhealthy" => Some(Health::Unhealthy),
            _ => None,
        }
    }

    /// `self` is worse than `other` (Argo's `IsWorse`).
    pub fn is_worse(self, other: Health) -> bool {
        self > other
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A container's state as the engine names it (`State.Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Created, never started (also what an engine reporting no status gives).
    Created,
    Running,
    /// Frozen by `docker pause`.
    Paused,
    /// Between two runs under a restart policy.
    Restarting,
    /// Being stopped (newer engines).
    Stopping,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Stopping => "stopping",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }

    /// Docker's word to a status; an unknown or empty word is `Created`.
    pub fn parse(word: &str) -> Status {
        match word {
            "running" => Status::Running,
            "paused" => Status::Paused,
            "restarting" => Status::Restarting,
            "stopping" => Status::Stopping,
            "removing" => Status::Removing,
            "exited" => Status::Exited,
            "dead" => Status::Dead,
            _ => Status::Created,
        }
    }

    /// Ran and ended: it will not run again by itself.
    pub fn is_ended(self) -> bool {
        matches!(self, Status::Exited | Status::Dead)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of a container as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunState {
    pub status: Status,
    pub exit_code: i64,
    pub oom_killed: bool,
    /// `None` without a health check.
    pub health: Option<Health>,
    /// Output of the last health check, for error messages.
    pub health_log: Option<String>,
}

impl RunState {
    /// Runs now (not paused, not between restarts).
    pub fn is_running(&self) -> bool {
        self.status == Status::Running
    }

    /// Has a process the engine keeps up: running, paused or between two
    /// restarts (the engine's `State.Running`).
    pub fn is_up(&self) -> bool {
        matches!(
            self.status,
            Status::Running | Status::Paused | Status::Restarting
        )
    }

    /// "exited with code N", with " (out of memory)" when the kernel killed it.
    pub fn exit_words(&self) -> String {
        format!(
            "exited with code {}{}",
            self.exit_code,
            if self.oom_killed {
                " (out of memory)"
            } else {
                ""
            }
        )
    }
}

/// Whether a container meets what is waited for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It does.
    Done,
    /// Not yet; it still may.
    Wait,
    /// It will not by itself; why, in words following the container's name
    /// ("exited with code 1", "is unhealthy: exit 1: ...").
    Failed(String),
}

/// The verdict on a container in `state` for a dependent waiting for `condition`:
///
/// - `service_started`: running is done; ended (exited, dead) failed.
/// - `service_healthy`: a passing health check is done; an ended container
///   (whatever its last check said), or a failing check, failed. Without a health check it waits (the gate
///   refuses that case before it waits, knowing the image's health check).
/// - `service_completed_successfully`: exited with 0 is done; exited
///   otherwise, or dead, failed.
///
/// Everything else (created, paused, restarting, stopping, removing, a health
/// check still starting) waits: the caller's timeout decides.
pub fn gate(state: &RunState, condition: Condition) -> Verdict {
    match condition {
        Condition::ServiceStarted if state.is_running() => Verdict::Done,
        Condition::ServiceHealthy if state.health == Some(Health::Healthy) => Verdict::Done,
        Condition::ServiceStarted | Condition::ServiceHealthy if state.status.is_ended() => {
            Verdict::Failed(state.exit_words())
        }
        Condition::ServiceHealthy if state.health == Some(Health::Unhealthy) => {
            Verdict::Failed(format!(
                "is unhealthy: {}",
                state.health_log.clone().unwrap_or_default()
            ))
        }
        Condition::ServiceCompletedSuccessfully if state.status == Status::Exited => {
            if state.exit_code == 0 {
                Verdict::Done
            } else {
                Verdict::Failed(state.exit_words())
            }
        }
        Condition::ServiceCompletedSuccessfully if state.status == Status::Dead => {
            Verdict::Failed(state.exit_words())
        }
        _ => Verdict::Wait,
    }
}

/// What a heal waits for on a container it started: healthy where the
/// container has a health check, else running (the agent then checks that it
/// stays up a moment later).
pub fn heal_condition(state: &RunState) -> Condition {
    if state.health.is_some() {
        Condition::ServiceHealthy
    } else {
        Condition::ServiceStarted
    }
}

#[cfg(test)]
mod tests;
