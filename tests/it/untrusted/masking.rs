//! See `untrusted` (mod.rs): this module's part of the threat model.
