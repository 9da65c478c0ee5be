//! plimsoll: keeps plain Docker hosts exactly where git says they should be.
//!
//! The pipeline: source -> spec -> graph -> plan (-> apply -> events).
//! See ARCHITECTURE.md for the code map and the invariants of each module.

pub mod cli;
pub mod graph;
pub mod plan;
pub mod schema;
pub mod source;
pub mod spec;
