//! The engine's create body of a service's container: built by the engine
//! mapping, one group of keys after the other ([`crate::keys::create_body`]).

pub use crate::keys::create_body;
