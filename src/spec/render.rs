//! `plimsoll render`: a stack in Compose's canonical form, as `docker compose
//! config` prints it, with secrets masked unless asked otherwise.
//!
//! Invariant: pure; the output is the model serialized, never a second
//! hand-written rendering of it.

use super::model::Stack;
use super::secrets::Masker;

/// The stack as Compose's canonical JSON value.
pub fn to_value(stack: &Stack, masker: &Masker, show_secrets: bool) -> serde_json::Value {
    let mut value = serde_json::to_value(stack).expect("the model serializes to JSON");
    if !show_secrets {
        masker.mask_json(&mut value);
    }
    value
}

/// A JSON value as YAML text.
pub fn to_yaml(value: &serde_json::Value) -> String {
    serde_saphyr::to_string(value).expect("a JSON value serializes to YAML")
}
