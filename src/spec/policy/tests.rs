//! Tests of the policy checks: each rule, every way to root, base images.

use super::*;

#[test]
fn registries() {
    assert_eq!(registry_of("nginx:1.27"), "docker.io");
    assert_eq!(registry_of("library/nginx"), "docker.io");
    assert_eq!(registry_of("ghcr.io/org/app:1"), "ghcr.io");
    assert_eq!(registry_of("localhost:5000/app"), "localhost:5000");
    assert_eq!(registry_of("localhost/app"), "localhost");
}

#[test]
fn pinning() {
    let re = Regex::new(r"^v\d+\.\d+\.\d+$").unwrap();
    assert!(is_pinned("app@sha256:abc", None));
    assert!(is_pinned("reg:5000/app:v1.2.3", Some(&re)));
    assert!(!is_pinned("reg:5000/app", Some(&re)));
    assert!(!is_pinned("app:latest", Some(&re)));
    assert!(!is_pinned("app:v1.2.3", None));
}

/// Loads `compose` as stack `s` in a temporary directory with `plimsoll.yaml`
/// (and `extra` files), and a host policy when given; the error text, or "ok".
fn check(config: &str, compose: &str, extra: &[(&str, &str)], host: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plimsoll.yaml"), config).unwrap();
    let stack = dir.path().join("stacks/s");
    std::fs::create_dir_all(&stack).unwrap();
    std::fs::write(stack.join("compose.yaml"), compose).unwrap();
    for (f, t) in extra {
        std::fs::write(stack.join(f), t).unwrap();
    }
    let layout = crate::source::discover(dir.path()).unwrap();
    let options = crate::spec::LoadOptions {
        host_policy: host.map(|h| {
            std::sync::Arc::new(
                HostPolicy::parse(Path::new("/etc/plimsoll/policy.yaml"), h).unwrap(),
            )
        }),
        ..Default::default()
    };
    match crate::spec::load_with(
        &layout,
        &crate::source::LocalFs,
        &BTreeMap::new(),
        &[],
        &options,
    ) {
        Ok(_) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

const STRICT: &str = "policy:\n  privileged:\n    allow: []\n";

fn service(body: &str) -> String {
    format!("services:\n  web:\n    image: busybox\n{body}")
}

#[test]
fn every_way_to_root_is_refused() {
    let cases = [
        (
            "    privileged: true\n",
            "privileged",
            "privileged container",
        ),
        (
            "    volumes: [/var/run/docker.sock:/var/run/docker.sock]\n",
            "volumes",
            "socket",
        ),
        (
            "    volumes: [/run/user/1000/docker.sock:/s]\n",
            "volumes",
            "socket",
        ),
        ("    volumes: [/:/host]\n", "volumes", "root file system"),
        ("    volumes: [/etc:/x]\n", "volumes", "protected"),
        ("    volumes: [/proc/1/root:/x]\n", "volumes", "protected"),
        ("    volumes: [/sys:/x]\n", "volumes", "protected"),
        (
            "    volumes: [/var/lib/docker/volumes:/x]\n",
            "volumes",
            "protected",
        ),
        (
            "    volumes: [/var/run:/x]\n",
            "volumes",
            "holds a protected path",
        ),
        (
            "    volumes: [../../../../../../../../../:/x]\n",
            "volumes",
            "root file system",
        ),
        ("    volumes: [/tmp/../etc:/x]\n", "volumes", "protected"),
        (
            "    volumes:\n      - {type: bind, source: /, target: /host}\n",
            "volumes",
            "root file system",
        ),
        ("    cap_add: [SYS_ADMIN]\n", "cap_add", "SYS_ADMIN"),
        ("    cap_add: [cap_sys_ptrace]\n", "cap_add", "SYS_PTRACE"),
        ("    cap_add: [ALL]\n", "cap_add", "ALL"),
        ("    pid: host\n", "pid", "pid: host"),
        ("    ipc: host\n", "ipc", "ipc: host"),
        ("    uts: host\n", "uts", "uts: host"),
        (
            "    userns_mode: host\n",
            "userns_mode",
            "userns_mode: host",
        ),
        ("    cgroup: host\n", "cgroup", "cgroup: host"),
        (
            "    network_mode: host\n",
            "network_mode",
            "network_mode: host",
        ),
        ("    devices: [/dev/sda:/dev/sda]\n", "devices", "/dev/sda"),
        (
            "    device_cgroup_rules: ['b 8:* rmw']\n",
            "device_cgroup_rules",
            "b 8:*",
        ),
        (
            "    security_opt: [seccomp=unconfined]\n",
            "security_opt",
            "unconfined",
        ),
        (
            "    security_opt: ['apparmor:unconfined']\n",
            "security_opt",
            "unconfined",
        ),
        (
            "    security_opt: [label=disable]\n",
            "security_opt",
            "label=disable",
        ),
        (
            "    security_opt: [systempaths=unconfined]\n",
            "security_opt",
            "unconfined",
        ),
    ];
    for (body, key, what) in cases {
        let out = check(STRICT, &service(body), &[], None);
        assert!(
            out.contains(&format!("compose.yaml:4:5: services.web.{key}")),
            "{body}: {out}"
        );
        assert!(out.contains(what), "{body}: {out}");
        assert!(
            out.contains("violates policy `privileged` ("),
            "{body}: {out}"
        );
        assert!(out.contains("plimsoll.yaml:2)"), "{body}: {out}");
        // Exempted by name, it passes.
        let exempt = "policy:\n  privileged:\n    allow: [s/web]\n";
        assert_eq!(check(exempt, &service(body), &[], None), "ok", "{body}");
    }
    // Harmless settings pass.
    for body in [
        "    volumes: [./data:/data, /etc/localtime:/etc/localtime:ro, /srv/x:/x]\n",
        "    cap_add: [NET_BIND_SERVICE, chown]\n    cap_drop: [ALL]\n",
        "    security_opt: [no-new-privileges:true]\n    network_mode: bridge\n",
    ] {
        assert_eq!(check(STRICT, &service(body), &[], None), "ok", "{body}");
    }
    // A capability the rule allows passes; ALL never does.
    let caps = "policy:\n  privileged:\n    capabilities: [NET_ADMIN, ALL]\n";
    assert_eq!(
        check(caps, &service("    cap_add: [NET_ADMIN]\n"), &[], None),
        "ok"
    );
    assert!(check(caps, &service("    cap_add: [ALL]\n"), &[], None).contains("every capability"));
}

#[test]
fn bind_volumes_and_links_are_seen_through() {
    let named = "services:\n  web:\n    image: busybox\n    volumes: [root:/host]\nvolumes:\n  root:\n    driver_opts: {type: none, o: bind, device: /}\n";
    assert!(check(STRICT, named, &[], None).contains("driver_opts o: bind"));
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/", dir.path().join("link")).unwrap();
    let linked = service(&format!(
        "    volumes: ['{}/link:/x']\n",
        dir.path().display()
    ));
    assert!(check(STRICT, &linked, &[], None).contains("root file system"));
    assert_eq!(root_bind(Path::new("/srv/data"), false), None);
    assert!(root_bind(Path::new("/var"), true).is_some());
    assert!(root_bind(Path::new("/home/u/.docker/run/docker.sock"), true).is_some());
    // Writable binds where root reads or runs files; read-only ones pass, but
    // for the host's own secrets.
    for writable in [
        "/etc/cron.d",
        "/etc/sudoers.d",
        "/root/.ssh",
        "/home/u/.ssh",
        "/usr/local/bin",
        "/var/spool/cron/crontabs",
    ] {
        assert!(
            root_bind(Path::new(writable), false).is_some(),
            "{writable}"
        );
    }
    assert_eq!(root_bind(Path::new("/etc/localtime"), true), None);
    assert_eq!(root_bind(Path::new("/etc/ssl/certs"), true), None);
    for secret in [
        "/etc/shadow",
        "/etc/ssh/ssh_host_ed25519_key",
        "/root/.docker/config.json",
    ] {
        assert!(root_bind(Path::new(secret), true).is_some(), "{secret}");
    }
}

#[test]
fn dockerfile_from_lines() {
    let args = BTreeMap::from([("REG".to_string(), "ghcr.io".to_string())]);
    let text = "# syntax=docker/dockerfile:1\nARG BASE=evil.example.com/x:1\nARG REG\nFROM --platform=$BUILDPLATFORM ${BASE} AS build\nFROM build AS again\nFROM $REG/org/app \\\n  AS second\nFROM scratch\nCOPY --from=build /a /a\nCOPY --from=quay.io/other:1 /b /b\nRUN --mount=type=bind,from=docker.io/library/alpine,target=/m true\nFROM ${MISSING:-busybox}\n";
    let froms = parse_froms(text, &args);
    assert_eq!(
        froms,
        vec![
            (4, "evil.example.com/x:1".to_string()),
            (6, "ghcr.io/org/app".to_string()),
            (10, "quay.io/other:1".to_string()),
            (11, "docker.io/library/alpine".to_string()),
            (12, "busybox".to_string()),
        ]
    );
    let policy = "policy:\n  registries:\n    allow: [docker.io]\n";
    let build = "services:\n  web:\n    build: .\n";
    let out = check(
        policy,
        build,
        &[("Dockerfile", "FROM evil.example.com/x\n")],
        None,
    );
    assert!(out.contains("services.web.build"), "{out}");
    assert!(out.contains("evil.example.com/x` (FROM in "), "{out}");
    assert!(out.contains("Dockerfile:1)"), "{out}");
    assert_eq!(
        check(policy, build, &[("Dockerfile", "FROM busybox\n")], None),
        "ok"
    );
    let inline = "services:\n  web:\n    build:\n      context: .\n      dockerfile_inline: |\n        FROM evil.example.com/x\n";
    let out = check(policy, inline, &[], None);
    assert!(
        out.contains("services.web.build.dockerfile_inline"),
        "{out}"
    );
    assert!(out.contains("dockerfile_inline:1"), "{out}");
}

#[test]
fn the_host_policy_cannot_be_relaxed() {
    let host =
        "privileged:\n  allow: []\nregistries:\n  allow: [docker.io]\nunknown_containers: fail\n";
    // The repository exempts the service, or says nothing: the host's rule holds.
    let relaxed = "policy:\n  privileged:\n    allow: [s/web]\n  registries:\n    allow: [docker.io, evil.example.com]\n";
    for config in [relaxed, "agent: {}\n", "policy: {}\n"] {
        let out = check(config, &service("    pid: host\n"), &[], Some(host));
        assert!(
            out.contains("violates host policy `privileged` (/etc/plimsoll/policy.yaml:1)"),
            "{out}"
        );
        assert!(
            out.contains("in the host policy /etc/plimsoll/policy.yaml: privileged.allow: [s/web]"),
            "{out}"
        );
        let image = "services:\n  web:\n    image: evil.example.com/x\n";
        let out = check(config, image, &[], Some(host));
        assert!(out.contains("violates host policy `registries`"), "{out}");
    }
    // The host's own allow list exempts; the repository can still add rules.
    let host_allows = "privileged:\n  allow: [s/web]\n";
    assert_eq!(
        check(
            "agent: {}\n",
            &service("    pid: host\n"),
            &[],
            Some(host_allows)
        ),
        "ok"
    );
    assert!(
        check(STRICT, &service("    pid: host\n"), &[], Some(host_allows))
            .contains("violates policy `privileged`")
    );
    // The stricter of single settings.
    let mut c = Config::default();
    apply_host_settings(&mut c, &HostPolicy::parse(Path::new("p"), host).unwrap());
    assert_eq!(
        c.policy.unknown_containers,
        crate::spec::config::UnknownContainers::Fail
    );
    // A bad host policy names its file and line.
    let e = HostPolicy::parse(Path::new("/etc/p.yaml"), "privileged:\n  alow: []\n").unwrap_err();
    assert!(e.to_string().contains("/etc/p.yaml:2"), "{e}");
}

#[test]
fn audit_minimums() {
    let audit = AuditConfig {
        max_size_mib: Some(0),
        keep: Some(1),
    };
    assert_eq!(audit.max_bytes(), AuditConfig::MIN_SIZE_MIB << 20);
    assert_eq!(audit.keep(), AuditConfig::MIN_KEEP);
    let more = AuditConfig {
        max_size_mib: Some(100),
        keep: Some(20),
    };
    assert_eq!((more.max_bytes(), more.keep()), (100 << 20, 20));
    let mut diags = Vec::new();
    let config = Config {
        audit,
        ..Config::default()
    };
    let rules = RuleSource {
        file: Path::new("plimsoll.yaml"),
        node: None,
        root: &["policy"],
    };
    check_config(&config, &rules, &mut diags);
    assert_eq!(diags.len(), 2);
    assert!(diags.iter().all(|d| !d.is_error()));
}

#[test]
fn ports() {
    let allow = vec![PortSpec::One(80), PortSpec::Range("8000-8099".into())];
    assert!(port_allowed(80, &allow));
    assert!(port_allowed(8050, &allow));
    assert!(!port_allowed(8100, &allow));
}
