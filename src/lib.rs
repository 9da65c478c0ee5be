//! plimsoll: keeps plain Docker hosts exactly where git says they should be.
//!
//! The pipeline: source -> spec -> graph -> plan (-> apply -> events).
//! See ARCHITECTURE.md for the code map and the invariants of each module.

pub mod agent;
pub mod apply;
pub mod build;
pub mod cli;
pub mod diff;
pub mod drift;
pub mod events;
#[doc(hidden)]
pub mod fuzzing;
pub mod graph;
pub mod health;
pub mod hostpath;
pub mod images;
pub mod keys;
pub mod live;
pub mod mounts;
pub mod names;
pub mod plan;
pub mod promote;
pub mod range;
pub mod reconcile;
pub mod registry;
pub mod schema;
pub mod source;
pub mod spec;
pub mod state;
