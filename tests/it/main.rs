//! plimsoll's integration tests: one test binary, one module per area.
//!
//! Modules:
//! - `cli`: the command-line contract (exit codes, stdout/stderr, formats).
//! - `images`: the offline test images (busybox, PostgreSQL) really work on the engine.
//! - `support`: shared helpers for tests that drive the engine (unique names,
//!   cleanup guards, building the offline test images on demand).

mod cli;
mod images;
mod support;
