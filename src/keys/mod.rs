//! The engine mapping of container settings, one file per concern.

#[cfg(test)]
mod pins;
