//! plimsoll's integration tests: one test binary, one module per area.
//!
//! Modules:
//! - `images`: the offline test images (busybox, PostgreSQL) really work on the engine.
//! - `support`: shared helpers for tests that drive the engine (unique names,
//!   cleanup guards, building the offline test images on demand).

mod images;
mod support;
