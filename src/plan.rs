//! A plan: the ordered, typed actions that bring a host from its live state
//! to the desired state, each with its reasons in words.
//!
//! A plan is a value: it prints, serializes (its JSON form is an API boundary,
//! `schemas/plan.json`), compares and applies. Invariant: pure data; applying a
//! plan and planning again gives an empty plan.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What one action does.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    CreateNetwork,
    RemoveNetwork,
    CreateVolume,
    PullImage,
    Create,
    Start,
    Recreate,
    Stop,
    Remove,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Action {
    pub action: ActionKind,
    pub stack: String,
    /// The service, or `null` for networks, volumes and images.
    pub service: Option<String>,
    /// Why, in words: "image busybox:1 -> busybox:2", "stopped by hand".
    pub reasons: Vec<String>,
}

/// The plan for one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Plan {
    /// Only changes; services already in sync are not actions.
    pub actions: Vec<Action>,
}

impl Plan {
    /// Whether applying this plan would change nothing.
    pub fn is_noop(&self) -> bool {
        self.actions.is_empty()
    }
}
