//! `plimsoll render`: a stack in Compose's canonical form, as `docker compose
//! config` prints it, with secrets masked unless asked otherwise.
//!
//! Invariant: pure; the output is the model serialized, never a second
//! hand-written rendering of it.

use super::model::Stack;
use super::secrets::Masker;

/// The stack as Compose's canonical JSON value (its jobs among its services).
pub fn to_value(stack: &Stack, masker: &Masker, show_secrets: bool) -> serde_json::Value {
    let stack = &*stack.whole();
    let mut value = serde_json::to_value(stack).expect("the model serializes to JSON");
    if !show_secrets {
        masker.mask_json(&mut value);
        // Fields built from secret variables are masked whole, however short.
        for path in masker.fields_of(&stack.name) {
            if let Some(v) = path
                .iter()
                .try_fold(&mut value, |v, k| v.get_mut(k.as_str()))
            {
                mask_whole(v);
            }
        }
        // Decrypted content is masked whole, even when too short to mask by value.
        for (kind, objects) in [("secrets", &stack.secrets), ("configs", &stack.configs)] {
            for (key, _) in objects.iter().filter(|(_, o)| o.encrypted) {
                if let Some(content) = value[kind][key].get_mut("content") {
                    *content = serde_json::Value::String(super::secrets::MASK.into());
                }
            }
        }
    }
    value
}

/// Every string (and number, boolean) of a JSON value replaced by the mask.
fn mask_whole(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Array(items) => items.iter_mut().for_each(mask_whole),
        Value::Object(map) => map.values_mut().for_each(mask_whole),
        Value::Null => {}
        v => *v = Value::String(super::secrets::MASK.into()),
    }
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
    to_stored_built(stack, masker, &stack.source.pinned_builds)
}

/// [`to_stored`] with what each service that builds was built from (its
/// build hash), so a rollback tags that image again instead of building
/// from whatever the context holds by then. Stacks without builds store
/// exactly what `to_stored` stores.
pub fn to_stored_built(
    stack: &Stack,
    masker: &Masker,
    builds: &std::collections::BTreeMap<String, String>,
) -> Vec<u8> {
    let mut value = to_value(stack, masker, true);
    inline_seccomp_profiles(&stack.whole(), &mut value);
    escape_dollars(&mut value);
    let mut stored = serde_json::json!({
        "stack": value,
        "secrets": masker.values(),
        "secret_fields": masker.fields_of(&stack.name).collect::<Vec<_>>(),
        "dir": stack.source.dir,
        "file": stack.source.file,
        "repository": stack.source.repository,
    });
    if let Some(root) = &stack.source.root {
        stored["root"] = serde_json::json!(root);
        stored["abs_dir"] = serde_json::json!(stack.source.abs_dir);
    }
    if !builds.is_empty() {
        stored["builds"] = serde_json::json!(builds);
    }
    serde_json::to_vec(&stored).expect("JSON serializes")
}

/// A stored revision loads without the repository: seccomp profiles read
/// from files are stored inline (`seccomp={...}`), as the engine takes them.
fn inline_seccomp_profiles(stack: &Stack, value: &mut serde_json::Value) {
    for (name, svc) in &stack.services {
        let Some(opts) = value["services"][name]["security_opt"].as_array_mut() else {
            continue;
        };
        for opt in opts {
            if let Some(inline) = opt.as_str().and_then(|o| svc.seccomp_profiles.get(o)) {
                *opt = serde_json::Value::String(inline.clone());
            }
        }
    }
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
        let desired = crate::spec::load_path(dir.path());
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

    /// A field built from a short secret stays masked whole after a rollback.
    #[test]
    fn stored_stacks_keep_their_secret_fields() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("compose.yaml"),
            "name: s\nservices:\n  a:\n    image: busybox\n    labels: {pin: \"${PIN_TOKEN}\"}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(".env"), "PIN_TOKEN=Zq\n").unwrap();
        let desired = crate::spec::load_path(dir.path());
        let bytes = to_stored(&desired.stacks[0], &desired.masker);
        let (back, masker) = crate::spec::load_stored(&bytes, &LocalFs).unwrap();
        assert_eq!(
            to_value(&back, &masker, false)["services"]["a"]["labels"]["pin"],
            super::super::secrets::MASK
        );
        assert_eq!(
            to_value(&back, &masker, true)["services"]["a"]["labels"]["pin"],
            "Zq"
        );
    }

    /// Hooks load back from a stored revision (a rollback runs them too),
    /// their secret values still secret.
    #[test]
    fn stored_stacks_keep_hooks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("compose.yaml"),
            "name: s\nservices:\n  a:\n    image: busybox\n    post_start:\n      - command: echo $$HOME\n        environment: [DB_PASSWORD=canary-pass-123]\n    pre_stop:\n      - command: [\"true\"]\n        privileged: true\n",
        )
        .unwrap();
        let desired = crate::spec::load_path(dir.path());
        let stack = &desired.stacks[0];
        let (back, masker) =
            crate::spec::load_stored(&to_stored(stack, &desired.masker), &LocalFs).unwrap();
        assert_eq!(
            back.services["a"].post_start,
            stack.services["a"].post_start
        );
        assert_eq!(back.services["a"].pre_stop, stack.services["a"].pre_stop);
        assert_eq!(back.services["a"].post_start[0].command, ["echo", "$HOME"]);
        assert_eq!(masker.mask("canary-pass-123"), "********");
    }

    /// A stored revision holds seccomp profiles inline, so it loads (and
    /// gives the same containers) without the profile file.
    #[test]
    fn stored_stacks_keep_seccomp_profiles() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("compose.yaml"),
            "name: s\nservices:\n  a:\n    image: busybox\n    security_opt: [\"seccomp:./p.json\", no-new-privileges]\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("p.json"),
            "{ \"defaultAction\": \"SCMP_ACT_ALLOW\" }",
        )
        .unwrap();
        let desired = crate::spec::load_path(dir.path());
        let stack = &desired.stacks[0];
        let bytes = to_stored(stack, &desired.masker);
        std::fs::remove_file(dir.path().join("p.json")).unwrap();
        let (back, _) = crate::spec::load_stored(&bytes, &LocalFs).unwrap();
        let config =
            |s: &Stack| crate::diff::desired_config(s, "a", &s.services["a"], 1, None).security_opt;
        assert_eq!(config(&back), config(stack));
        assert!(config(stack).contains(r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW"}"#));
    }
}
