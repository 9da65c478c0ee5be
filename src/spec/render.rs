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

/// A stack as stored for `plimsoll rollback`: the canonical form with secrets
/// in clear and every `$` written `$$`, so loading it again gives the same
/// values (it is encrypted at rest by the state directory), plus the secret
/// values the masker knew.
pub fn to_stored(stack: &Stack, masker: &Masker) -> Vec<u8> {
    let mut value = to_value(stack, masker, true);
    escape_dollars(&mut value);
    let stored = serde_json::json!({
        "stack": value,
        "secrets": masker.values(),
        "dir": stack.source.dir,
        "file": stack.source.file,
        "repository": stack.source.repository,
    });
    serde_json::to_vec(&stored).expect("JSON serializes")
}

fn escape_dollars(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) if s.contains('$') => *s = s.replace('$', "$$"),
        Value::Array(items) => items.iter_mut().for_each(escape_dollars),
        Value::Object(map) => map.values_mut().for_each(escape_dollars),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::LocalFs;

    #[test]
    fn stored_stacks_load_back_identical() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("compose.yaml"),
            "name: s\nservices:\n  a:\n    image: busybox\n    command: [\"sh\", \"-c\", \"echo $$HOME\"]\n    environment:\n      DB_PASSWORD: ${PW}\n      URL: x:${PW}@db\n    ports: [\"8080:80\"]\n    volumes: [\"data:/data\", \"./conf:/conf:ro\"]\n    healthcheck: {test: \"true\", interval: 1m30s}\nvolumes:\n  data:\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(".env"), "PW=canary-pass-123\n").unwrap();
        let layout = crate::source::discover(dir.path()).unwrap();
        let desired = crate::spec::load(&layout, &LocalFs, &Default::default(), &[]).unwrap();
        let stack = &desired.stacks[0];
        let bytes = to_stored(stack, &desired.masker);
        let (back, masker) = crate::spec::load_stored(&bytes, &LocalFs).unwrap();
        assert_eq!(
            to_value(&back, &masker, true),
            to_value(stack, &desired.masker, true)
        );
        assert_eq!(
            back.services["a"].command.as_ref().unwrap()[2],
            "echo $HOME"
        );
        assert_eq!(masker.mask("x:canary-pass-123@db"), "x:********@db");
    }
}
