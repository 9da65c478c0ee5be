//! Building a service's image on the host (`build:`).
//!
//! Three steps, kept apart so that only the last one talks to the engine:
//!
//! - [`scan`] (`scan.rs`) walks the build context (I/O: the file system)
//!   and returns what the docker CLI would send: every file, directory and
//!   symlink that `.dockerignore` does not exclude ([`ignore`], Docker's
//!   rules), the Dockerfile and `.dockerignore` always, and a Dockerfile
//!   that lives outside the context or inline (`dockerfile_inline`) added
//!   under a generated name.
//! - [`BuildHash::of`] (`hash.rs`) is a pure function of that scan and the
//!   build settings: the content of the context and the settings that
//!   shape the image. The built image carries it in its label
//!   `io.plimsoll.build` ([`crate::names::build_label`]), so the plan can
//!   tell "built from this content" from "needs a build" without building,
//!   and a no-op reconcile never builds. The type lives in
//!   [`crate::names`], so that `plan` and `live` read it without depending
//!   on this module.
//! - [`build`] (`engine.rs`) tars the scan and builds through the engine's
//!   build API (bollard's `build_image`), streaming the output as progress.
//!
//! Invariant: `scan.rs` and `engine.rs` do the I/O; `hash.rs` does none.

mod engine;
mod hash;
pub mod ignore;
mod scan;
#[cfg(test)]
mod tests;

pub use crate::names::BuildHash;
pub use engine::{BuildError, Request, build, write_tar};
pub use hash::base_images;
pub use scan::{Context, ContextError, Entry, EntryKind, scan};

use crate::spec::model::Build;

/// Scans a context and hashes it (I/O: reads the context).
pub fn hash(build: &Build) -> Result<BuildHash, ContextError> {
    scan(build).map(|c| BuildHash::of(&c, build))
}
