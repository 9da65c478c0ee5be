//! `statedir`: the state directory is 0700 and its files 0600 (an older,
//! looser directory is tightened); a symbolic link planted at a state file is
//! refused, never followed; revision files are named by a keyed HMAC, not a
//! hash anyone can recompute; the audit log says who applied and on which engine.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use super::{Attack, MARKER};
use crate::support::{docker, ensure_busybox, files_under, stack_containers};

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

/// A repository with one harmless busybox service, applied with `env`.
fn applied(what: &str, env: &[(&str, &str)], prepare: impl FnOnce(&Attack)) -> Attack {
    ensure_busybox();
    let attack = Attack::new(what);
    prepare(&attack);
    let run = attack.run(&["reconcile"], env);
    run.expect(0);
    attack
}

#[test]
fn after_a_reconcile_the_directory_is_0700_and_every_file_0600() {
    let attack = applied("state-modes", &[], |a| {
        // A directory an older plimsoll made, or an operator: world-readable.
        std::fs::set_permissions(a.state(), std::fs::Permissions::from_mode(0o755)).unwrap();
    });
    let state = attack.state();
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("revisions")), 0o700);
    let files = files_under(&state);
    assert!(
        files.iter().any(|(p, _)| p.ends_with("host.key")),
        "{files:?}"
    );
    assert!(files.iter().any(|(p, _)| p.ends_with("audit.jsonl")));
    for (path, _) in &files {
        assert_eq!(mode(path), 0o600, "{}", path.display());
    }
    // A looser file left by an older version is tightened on the next run.
    std::fs::set_permissions(
        state.join("audit.jsonl"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    attack.run(&["history"], &[]).expect(0);
    assert_eq!(mode(&state.join("audit.jsonl")), 0o600);
}

#[test]
fn a_symlink_planted_at_a_state_file_is_refused_not_followed() {
    for name in ["audit.jsonl", "host.key"] {
        ensure_busybox();
        let attack = Attack::new("state-link");
        let target = attack.outside().join("marker.txt");
        let before = std::fs::read(&target).unwrap();
        std::os::unix::fs::symlink(&target, attack.state().join(name)).unwrap();
        let run = attack.run(&["reconcile"], &[]);
        run.expect(1);
        assert!(run.all().contains("is a symbolic link"), "{run}");
        assert!(run.all().contains(name), "{run}");
        assert_eq!(
            std::fs::read(&target).unwrap(),
            before,
            "{name}: the target was written"
        );
        // Nothing was applied (files_under would follow the link: the engine is checked alone).
        assert!(
            stack_containers(&attack.stack).is_empty(),
            "{name}: applied"
        );
        attack.run(&["history"], &[]).expect(1);
        assert_eq!(std::fs::read_to_string(&target).unwrap().trim(), MARKER);
    }
}

#[test]
fn revision_names_are_keyed_and_history_says_who_and_where() {
    let attack = applied(
        "state-who",
        &[("SUDO_USER", "alice"), ("USER", "root")],
        |_| {},
    );
    // Revision files: not the SHA-256 of what they hold.
    let state = plimsoll::state::StateDir::open(&attack.state()).unwrap();
    let stored: Vec<String> = std::fs::read_dir(attack.state().join("revisions"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".bin")
                .to_string()
        })
        .collect();
    assert!(!stored.is_empty());
    for name in &stored {
        let plain = state.load_revision(name).unwrap();
        assert_ne!(
            name,
            &plimsoll::state::content_hash(&plain),
            "a plain hash names the revision"
        );
        assert_eq!(name, &state.revision_name(&plain).unwrap());
    }
    // The audit record: the invoking user and the engine's name and id.
    let info = docker(&["info", "--format", "{{.Name}}\t{{.ID}}"]);
    let (engine, id) = info.trim().split_once('\t').unwrap();
    let history = attack.run(&["history", "--format", "json"], &[]);
    history.expect(0);
    let records = history.json();
    let last = records.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["user"], "alice", "{history}");
    assert_eq!(last["engine"], engine, "{history}");
    assert_eq!(last["engine_id"], id, "{history}");
    assert!(!id.is_empty());
    // Without SUDO_USER or USER: the numeric user id, never `unknown`.
    attack.compose(
        "services:\n  web:\n    image: plimsoll-example/busybox:1\n    command: [sleep, infinity]\n  other:\n    image: plimsoll-example/busybox:1\n    command: [sleep, infinity]\n",
    );
    attack.commit("change");
    attack.run(&["reconcile"], &[]).expect(0);
    let records = attack.run(&["history", "--format", "json"], &[]).json();
    let user = records.as_array().unwrap().last().unwrap()["user"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(user.starts_with("uid "), "{user}");
}
