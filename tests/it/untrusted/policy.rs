//! `policy`: every way to root is refused by `policy.privileged` (and only
//! the service named in `allow:` is exempt); `policy.registries` reads the
//! `FROM` lines of a build; the host policy (`--policy`) cannot be relaxed by
//! the repository, nor by a `rollback` to an older revision; `audit:` cannot
//! erase the history.

use super::{Attack, path_str};
use crate::support::ensure_busybox;

const STRICT: &str = "policy:\n  privileged:\n    allow: []\n";

/// One service per way to root: (service, its settings, the key named).
fn ways_to_root() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        (
            "sock",
            "volumes: [/var/run/docker.sock:/var/run/docker.sock]",
            "volumes",
        ),
        ("root", "volumes: ['/:/host']", "volumes"),
        ("etc", "volumes: ['/etc:/host-etc']", "volumes"),
        (
            "dots",
            "volumes: ['../../../../../../../../../../../../:/host']",
            "volumes",
        ),
        (
            "longbind",
            "volumes: [{type: bind, source: /, target: /host}]",
            "volumes",
        ),
        ("sysadmin", "cap_add: [SYS_ADMIN]", "cap_add"),
        ("allcaps", "cap_add: [ALL]", "cap_add"),
        ("pid", "pid: host", "pid"),
        ("ipc", "ipc: host", "ipc"),
        ("uts", "uts: host", "uts"),
        ("userns", "userns_mode: host", "userns_mode"),
        ("cgroup", "cgroup: host", "cgroup"),
        ("net", "network_mode: host", "network_mode"),
        ("devices", "devices: ['/dev/sda:/dev/sda']", "devices"),
        (
            "seccomp",
            "security_opt: ['seccomp=unconfined']",
            "security_opt",
        ),
        (
            "apparmor",
            "security_opt: ['apparmor=unconfined']",
            "security_opt",
        ),
    ]
}

/// A Compose file with one busybox service per way to root; each service's
/// setting is on line `5 + 4 * index`, column 5.
fn compose_of(ways: &[(&str, &str, &str)]) -> String {
    let mut text = String::from("services:\n");
    for (name, setting, _) in ways {
        text.push_str(&format!(
            "  {name}:\n    image: plimsoll-example/busybox:1\n    command: [sleep, infinity]\n    {setting}\n"
        ));
    }
    text
}

#[test]
fn every_way_to_root_is_refused_naming_file_line_key_and_rule() {
    let ways = ways_to_root();
    let attack = Attack::new("root-ways");
    attack.write("/plimsoll.yaml", STRICT);
    attack.compose(&compose_of(&ways));
    attack.commit("every way to root");
    let runs = attack.ci_commands(&[]);
    Attack::assert_refused(&runs, "violates policy `privileged` (");
    for run in &runs {
        let out = run.all();
        for (i, (name, _, key)) in ways.iter().enumerate() {
            let line = 5 + 4 * i;
            let place = format!("compose.yaml:{line}:5: services.{name}.{key}: ");
            assert!(out.contains(&place), "{place:?} not named in:\n{run}");
        }
        assert!(out.contains("plimsoll.yaml:2)"), "the rule's line:\n{run}");
    }
    attack.assert_contained(&runs, &[]);
}

#[test]
fn a_service_exempted_by_name_passes() {
    let ways = ways_to_root();
    let attack = Attack::new("root-exempt");
    let allow: Vec<String> = ways
        .iter()
        .map(|(n, _, _)| format!("{}/{n}", attack.stack))
        .collect();
    attack.write(
        "/plimsoll.yaml",
        &format!(
            "policy:\n  privileged:\n    allow: [{}]\n",
            allow.join(", ")
        ),
    );
    attack.compose(&compose_of(&ways));
    attack.commit("exempted");
    for args in [&["validate"][..], &["render"]] {
        attack.run(args, &[]).expect(0);
    }
    // Exempting one service leaves the others refused.
    attack.write(
        "/plimsoll.yaml",
        &format!(
            "policy:\n  privileged:\n    allow: [{}/pid]\n",
            attack.stack
        ),
    );
    attack.commit("one exempted");
    let run = attack.run(&["validate"], &[]);
    run.expect(1);
    assert!(!run.all().contains("services.pid.pid"), "{run}");
    assert!(run.all().contains("services.ipc.ipc"), "{run}");
}

#[test]
fn build_from_lines_name_only_allowed_registries() {
    let attack = Attack::new("from-evil");
    attack.write(
        "/plimsoll.yaml",
        "policy:\n  registries:\n    allow: [docker.io]\n",
    );
    attack.write(
        "app/Dockerfile",
        "ARG BASE=evil.example.com/x:1\nFROM ${BASE} AS build\nFROM build\n",
    );
    attack.compose(
        "services:\n  file:\n    build: ./app\n  inline:\n    build:\n      context: ./app\n      dockerfile_inline: |\n        FROM --platform=linux/amd64 evil.example.com/x AS base\n        FROM base\n",
    );
    attack.commit("FROM another registry");
    let runs = attack.ci_commands(&[]);
    Attack::assert_refused(&runs, "violates policy `registries` (");
    for run in &runs {
        let out = run.all();
        assert!(
            out.contains(
                "compose.yaml:3:5: services.file.build: image `evil.example.com/x:1` (FROM in "
            ),
            "{run}"
        );
        assert!(out.contains("app/Dockerfile:2)"), "{run}");
        assert!(out.contains("services.inline.build.dockerfile_inline: image `evil.example.com/x` (FROM in dockerfile_inline:1)"), "{run}");
    }
    attack.assert_contained(&runs, &[]);
}

#[test]
fn the_repository_cannot_relax_the_host_policy() {
    let host = tempfile::tempdir().unwrap();
    let file = host.path().join("policy.yaml");
    std::fs::write(
        &file,
        "privileged:\n  allow: []\nregistries:\n  allow: [docker.io]\n",
    )
    .unwrap();
    let attack = Attack::new("host-policy");
    let me = format!("{}/web", attack.stack);
    // The repository exempts its service and allows another registry.
    attack.write(
        "/plimsoll.yaml",
        &format!("policy:\n  privileged:\n    allow: [{me}]\n  registries:\n    allow: [docker.io, evil.example.com]\n"),
    );
    attack.compose(
        "services:\n  web:\n    image: plimsoll-example/busybox:1\n    command: [sleep, infinity]\n    pid: host\n  evil:\n    image: evil.example.com/x:1\n",
    );
    attack.commit("relax the host's rules");
    let policy = path_str(&file);
    let runs = attack.ci_commands(&[("PLIMSOLL_POLICY", &policy)]);
    Attack::assert_refused(
        &runs,
        &format!("violates host policy `privileged` ({policy}:1)"),
    );
    for run in &runs {
        assert!(
            run.all().contains("compose.yaml:5:5: services.web.pid"),
            "{run}"
        );
        assert!(
            run.all()
                .contains(&format!("violates host policy `registries` ({policy}:3)")),
            "{run}"
        );
    }
    attack.assert_contained(&runs, &[]);
    // The flag works as the variable does; without either, the repository's rules pass it.
    attack
        .run(&["--policy", &policy, "validate"], &[])
        .expect(1);
    attack.run(&["validate"], &[]).expect(0);
    // Only the host's own allow-list exempts.
    std::fs::write(&file, format!("privileged:\n  allow: [{me}]\n")).unwrap();
    attack
        .run(&["--policy", &policy, "validate"], &[])
        .expect(0);
}

#[test]
fn audit_settings_cannot_erase_the_history() {
    ensure_busybox();
    let attack = Attack::new("audit-erase");
    attack.write("/plimsoll.yaml", "audit: {max_size_mib: 0, keep: 1}\n");
    let rounds = 4;
    for round in 0..rounds {
        attack.compose(&format!(
            "services:\n  web:\n    image: plimsoll-example/busybox:1\n    command: [sleep, infinity]\n    stop_grace_period: 1s\n    environment: {{ROUND: '{round}'}}\n"
        ));
        attack.commit(&format!("round {round}"));
        let run = attack.run(&["reconcile"], &[]);
        run.expect(0);
        assert!(
            run.all()
                .contains("audit.max_size_mib: 0 is below the minimum 10"),
            "{run}"
        );
    }
    let history = attack.run(&["history", "--format", "json"], &[]);
    history.expect(0);
    let records = history.json();
    let applied = records
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "applied")
        .count();
    assert_eq!(
        applied, rounds,
        "every apply stays in the history:\n{history}"
    );
    assert!(
        !attack.state().join("audit.jsonl.1").exists(),
        "nothing rotated away"
    );
}

/// `rollback` re-applies a stored revision without git: the host's policy,
/// which may be newer than the revision, still refuses it.
#[test]
fn rollback_cannot_bring_back_what_the_host_policy_forbids() {
    ensure_busybox();
    let attack = Attack::new("rollback-host-policy");
    let web = |extra: &str| {
        format!(
            "services:\n  web:\n    image: plimsoll-example/busybox:1\n    command: [sleep, infinity]\n    stop_grace_period: 1s\n{extra}"
        )
    };
    attack.compose(&web("    cap_add: [SYS_ADMIN]\n"));
    attack.commit("a capability beyond the default set");
    attack.run(&["reconcile"], &[]).expect(0);
    attack.compose(&web(""));
    attack.commit("no extra capability");
    attack.run(&["reconcile"], &[]).expect(0);
    let before = crate::support::stack_containers(&attack.stack);
    let host = attack.outside().join("host-policy.yaml");
    std::fs::write(&host, "privileged:\n  allow: []\n").unwrap();
    let host = host.display().to_string();
    let run = attack.run(&["--policy", &host, "rollback", &attack.stack], &[]);
    run.expect(1);
    assert!(
        run.stderr.contains("SYS_ADMIN") && run.stderr.contains("violates the host policy"),
        "{run}"
    );
    assert_eq!(
        crate::support::stack_containers(&attack.stack),
        before,
        "a refused rollback changes nothing"
    );
    // Without the host policy the same rollback goes ahead.
    attack.run(&["rollback", &attack.stack], &[]).expect(0);
}
