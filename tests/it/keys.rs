//! The remaining Compose service keys on the real engine: a stack that uses
//! namespaces (`network_mode`, `ipc`, `pid`, `uts` and `userns_mode`, shared
//! with another service or the host), devices, sysctls, DNS settings, a TTY,
//! `/dev/shm`, security options, extra groups, legacy CPU and memory limits,
//! links, `volumes_from`, annotations and a network with `ipam` is applied;
//! the engine holds what the file says; a second reconcile is a no-op; a
//! changed key recreates only its service; drift by `docker update` is named
//! and repaired, and a service that shares the replaced container's network
//! stack follows it. Lifecycle hooks run in the container with their own
//! user, directory and environment: `post_start` after a start (a failing
//! one rolls a replacement back), `pre_stop` before a replaced container stops.
//! A network whose settings change is recreated with the services attached to
//! it (also when a replacement is rolled back, and when the run is killed half
//! way); one that git leaves alone stays in sync.
//!
//! Values avoid what this kind of CI host refuses: a negative
//! `oom_score_adj` (not permitted inside the CI container), real-time CPU
//! settings (no real-time group scheduling) and `storage_opt` (needs overlay2
//! on XFS with quotas).

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::{
    Run, docker, docker_output, ensure_busybox, quiet, stack_containers, temp_dir, unique_name,
};

/// A stack in a tempdir with its own state directory; dropping it removes
/// every container and network carrying the stack's label.
struct KeysStack {
    name: String,
    dir: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl KeysStack {
    fn new(what: &str) -> Self {
        ensure_busybox();
        KeysStack {
            name: unique_name(what),
            dir: temp_dir("plimsoll-it-keys-"),
            state: temp_dir("plimsoll-it-state-"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn set_compose(&self, yaml: &str) {
        std::fs::write(
            self.path().join("compose.yaml"),
            format!("name: {}\n{yaml}", self.name),
        )
        .expect("write compose.yaml");
    }

    fn plimsoll(&self, args: &[&str]) -> Run {
        self.plimsoll_env(args, &[])
    }

    /// Like [`KeysStack::plimsoll`], with extra environment variables.
    fn plimsoll_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = crate::support::plimsoll_command(self.state.path(), self.path(), args);
        Run::of(args, cmd.envs(env.iter().copied()))
    }

    fn apply(&self) -> Run {
        let path = self.path().display().to_string();
        self.plimsoll(&["reconcile", &path])
    }

    fn dry_run(&self) -> Run {
        let path = self.path().display().to_string();
        self.plimsoll(&["reconcile", &path, "--dry-run"])
    }

    fn container(&self, service: &str) -> String {
        format!("{}-{service}-1", self.name)
    }

    /// Containers of the stack: name -> full ID.
    fn ids(&self) -> BTreeMap<String, String> {
        stack_containers(&self.name)
    }

    /// `docker inspect -f FORMAT` of a service's container.
    fn inspect(&self, service: &str, format: &str) -> String {
        self.inspect_container(&self.container(service), format)
    }

    /// `docker inspect -f FORMAT` of a container.
    fn inspect_container(&self, name: &str, format: &str) -> String {
        docker(&["inspect", "--format", format, name])
    }
}

impl Drop for KeysStack {
    fn drop(&mut self) {
        crate::support::remove_stack(&self.name);
    }
}

/// The stack: `db` holds most keys and lends its namespaces and volumes to
/// `sidecar`; `hostnet` and `isolated` use the host's and no network;
/// `linker` reaches `db` by a link alias on a network with its own subnet.
fn compose(subnet_octet: u8, linker_somaxconn: u32) -> String {
    format!(
        r#"services:
  db:
    image: plimsoll-example/busybox:1
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    networks: [back]
    ipc: shareable
    sysctls:
      net.core.somaxconn: 1024
    stdin_open: true
    tty: true
    runtime: runc
    devices: ["/dev/null:/dev/plimsoll-null:rw"]
    device_cgroup_rules: ["c 1:3 mr"]
    dns: [192.0.2.53]
    dns_search: [example.com]
    dns_opt: ["ndots:2"]
    shm_size: 32m
    security_opt: ["no-new-privileges:true"]
    group_add: ["44"]
    domainname: example.com
    oom_score_adj: 100
    oom_kill_disable: true
    cpus: 0.5
    cpu_shares: 512
    cpuset: "0"
    mem_limit: 128m
    memswap_limit: 256m
    mem_swappiness: 30
    pids_limit: 64
    cgroup: private
    annotations:
      com.example.owner: plimsoll-tests
    volumes: [/data]
  sidecar:
    image: plimsoll-example/busybox:1
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    network_mode: "service:db"
    ipc: "service:db"
    pid: "service:db"
    volumes_from: ["db:ro"]
  hostnet:
    image: plimsoll-example/busybox:1
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    network_mode: host
    pid: host
    uts: host
  isolated:
    image: plimsoll-example/busybox:1
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    network_mode: none
    userns_mode: host
    security_opt: [systempaths=unconfined]
  linker:
    image: plimsoll-example/busybox:1
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    networks: [back]
    links: ["db:database"]
    sysctls:
      - net.core.somaxconn={linker_somaxconn}
networks:
  back:
    attachable: true
    ipam:
      config:
        - subnet: 10.213.{subnet_octet}.0/24
          gateway: 10.213.{subnet_octet}.1
"#
    )
}

#[test]
fn remaining_compose_keys_apply_hold_and_converge() {
    let s = KeysStack::new("keys");
    // A subnet of its own, so parallel runs rarely meet.
    let octet = (std::process::id() % 200 + 20) as u8;
    s.set_compose(&compose(octet, 512));

    s.apply().expect(0);
    let ids = s.ids();
    assert_eq!(ids.len(), 5, "{ids:?}");
    for svc in ["db", "sidecar", "hostnet", "isolated", "linker"] {
        assert_eq!(s.inspect(svc, "{{.State.Status}}"), "running", "{svc}");
    }

    // The engine holds what the file says.
    let db_id = &ids[&s.container("db")];
    assert_eq!(
        s.inspect(
            "db",
            "{{.HostConfig.IpcMode}} {{.HostConfig.ShmSize}} {{.HostConfig.CpuShares}} {{.HostConfig.NanoCpus}} {{.HostConfig.MemorySwap}} {{.HostConfig.MemorySwappiness}} {{.HostConfig.PidsLimit}} {{.HostConfig.OomScoreAdj}} {{.HostConfig.OomKillDisable}} {{.HostConfig.CgroupnsMode}} {{.Config.Tty}} {{.Config.OpenStdin}} {{.Config.Domainname}}"
        ),
        "shareable 33554432 512 500000000 268435456 30 64 100 true private true true example.com"
    );
    assert_eq!(
        s.inspect(
            "db",
            "{{json .HostConfig.Sysctls}} {{json .HostConfig.Dns}} {{json .HostConfig.DnsSearch}} {{json .HostConfig.DnsOptions}} {{json .HostConfig.GroupAdd}} {{json .HostConfig.SecurityOpt}} {{json .HostConfig.DeviceCgroupRules}}"
        ),
        r#"{"net.core.somaxconn":"1024"} ["192.0.2.53"] ["example.com"] ["ndots:2"] ["44"] ["no-new-privileges:true"] ["c 1:3 mr"]"#
    );
    assert_eq!(
        s.inspect("db", "{{range .HostConfig.Devices}}{{.PathOnHost}}:{{.PathInContainer}}:{{.CgroupPermissions}}{{end}}"),
        "/dev/null:/dev/plimsoll-null:rw"
    );
    assert_eq!(
        s.inspect(
            "sidecar",
            "{{.HostConfig.NetworkMode}} {{.HostConfig.IpcMode}} {{.HostConfig.PidMode}} {{json .HostConfig.VolumesFrom}}"
        ),
        format!(
            "container:{db_id} container:{db_id} container:{db_id} [\"{}:ro\"]",
            s.container("db")
        )
    );
    assert_eq!(
        s.inspect(
            "hostnet",
            "{{.HostConfig.NetworkMode}} {{.HostConfig.PidMode}} {{.HostConfig.UTSMode}}"
        ),
        "host host host"
    );
    assert_eq!(
        s.inspect("isolated", "{{.HostConfig.NetworkMode}} {{.HostConfig.UsernsMode}} {{json .HostConfig.MaskedPaths}}"),
        "none host []"
    );
    // The sidecar sees db's volume and db's network stack.
    let mounts = s.inspect(
        "sidecar",
        "{{range .Mounts}}{{.Destination}} {{.RW}}{{end}}",
    );
    assert_eq!(mounts, "/data false");
    // The link alias resolves on the user-defined network.
    let ping = docker_output(&[
        "exec",
        &s.container("linker"),
        "ping",
        "-c1",
        "-W2",
        "database",
    ]);
    assert!(
        ping.status.success(),
        "ping database from linker: {}",
        String::from_utf8_lossy(&ping.stderr)
    );
    let net = format!("{}_back", s.name);
    assert_eq!(
        docker(&[
            "network",
            "inspect",
            "--format",
            "{{.Attachable}} {{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}",
            &net
        ]),
        format!("true 10.213.{octet}.0/24 10.213.{octet}.1")
    );

    // A second reconcile has nothing to do.
    let again = s.dry_run();
    again.expect(0);
    assert!(again.stdout.contains("5 in sync"), "{again}");

    // One changed key recreates only its service.
    s.set_compose(&compose(octet, 256));
    let plan = s.dry_run();
    plan.expect(2);
    assert!(
        plan.stdout
            .contains("sysctl net.core.somaxconn changed: 512 → 256"),
        "{plan}"
    );
    assert!(plan.stdout.contains("1 to recreate; 4 in sync"), "{plan}");
    s.apply().expect(0);
    let after = s.ids();
    for (name, id) in &ids {
        if *name == s.container("linker") {
            assert_ne!(&after[name], id, "linker is recreated");
        } else {
            assert_eq!(&after[name], id, "{name} is left alone");
        }
    }
    assert_eq!(
        s.inspect(
            "linker",
            "{{index .HostConfig.Sysctls \"net.core.somaxconn\"}}"
        ),
        "256"
    );
    s.dry_run().expect(0);

    // Drift by `docker update` is seen, named, and repaired; the sidecar
    // follows db's new network stack.
    docker(&["update", "--cpu-shares", "256", &s.container("db")]);
    let drift = s.dry_run();
    drift.expect(2);
    assert!(
        drift
            .stdout
            .contains("cpu shares 256 on the host, 512 in git"),
        "{drift}"
    );
    assert!(
        drift
            .stdout
            .contains("uses the network stack of db, which is replaced"),
        "{drift}"
    );
    s.apply().expect(0);
    let healed = s.ids();
    let new_db = &healed[&s.container("db")];
    assert_ne!(new_db, db_id);
    assert_eq!(
        s.inspect("sidecar", "{{.HostConfig.NetworkMode}} {{.State.Status}}"),
        format!("container:{new_db} running")
    );
    assert_eq!(s.inspect("db", "{{.HostConfig.CpuShares}}"), "512");
    let settled = s.dry_run();
    settled.expect(0);
    assert!(settled.stdout.contains("5 in sync"), "{settled}");
}

/// A replicated service (`scale`, `deploy.replicas`) gated by a health
/// check that passes when the container wrote `/tmp/ok`; `client` waits
/// for every replica to be healthy.
fn replicated(replicas: &str, version: &str, healthy: bool) -> String {
    let ok = if healthy { "touch /tmp/ok; " } else { "" };
    format!(
        r#"services:
  web:
    image: plimsoll-example/busybox:1
    command: ["sh", "-c", "{ok}exec sleep 3600"]
    stop_signal: SIGKILL
    environment:
      VERSION: "{version}"
    {replicas}
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ok"]
      interval: 1s
      timeout: 1s
      retries: 2
    x-plimsoll:
      health_timeout: 8s
  client:
    image: plimsoll-example/busybox:1
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    depends_on:
      web:
        condition: service_healthy
"#
    )
}

/// Replica containers of `web`: name -> ID.
fn web_replicas(s: &KeysStack) -> BTreeMap<String, String> {
    s.ids()
        .into_iter()
        .filter(|(n, _)| n.starts_with(&format!("{}-web-", s.name)))
        .collect()
}

#[test]
fn replicas_scale_up_down_and_roll_one_at_a_time() {
    let s = KeysStack::new("replicas");
    let web = |n: u32| format!("{}-web-{n}", s.name);

    // Three replicas, numbered as Compose numbers them; `client` waited for all.
    s.set_compose(&replicated("scale: 3", "1", true));
    s.apply().expect(0);
    let v1 = web_replicas(&s);
    assert_eq!(
        v1.keys().cloned().collect::<Vec<_>>(),
        [web(1), web(2), web(3)],
        "{v1:?}"
    );
    for n in 1..=3 {
        let label = docker(&[
            "inspect",
            "--format",
            "{{index .Config.Labels \"com.docker.compose.container-number\"}} {{.State.Health.Status}}",
            &web(n),
        ]);
        assert_eq!(label.trim(), format!("{n} healthy"));
    }
    s.dry_run().expect(0);

    // Scaled down with `deploy.replicas`: the highest number goes, the others stay.
    s.set_compose(&replicated("deploy: {replicas: 2}", "1", true));
    let plan = s.plimsoll(&[
        "reconcile",
        s.path().to_str().unwrap(),
        "--dry-run",
        "--format",
        "json",
    ]);
    plan.expect(2);
    let plan = plan.plan_json();
    let actions: Vec<(String, String)> = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap().into(),
                a["target"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(actions, [("remove".to_string(), web(3))], "{plan:#}");
    assert!(
        plan.to_string().contains("scaled down to 2 replicas"),
        "{plan:#}"
    );
    s.apply().expect(0);
    let v1: BTreeMap<_, _> = v1.into_iter().filter(|(n, _)| *n != web(3)).collect();
    assert_eq!(web_replicas(&s), v1);

    // A change rolls the replicas one at a time, in order.
    s.set_compose(&replicated("deploy: {replicas: 2}", "2", true));
    let run = s.apply();
    run.expect(0);
    let v2 = web_replicas(&s);
    assert_eq!(v2.len(), 2);
    assert!(
        v2.values().all(|id| !v1.values().any(|old| old == id)),
        "{v2:?}"
    );
    // Progress lines name replicas `stack/web.N`: replica 2 stops only after
    // replica 1's replacement passed its gate.
    let out = run.all();
    let line = |n: u32, what: &str| {
        out.lines()
            .position(|l| l.contains(&format!("{}/web.{n}", s.name)) && l.contains(what))
    };
    let one_ready = line(1, "starting");
    let two_stops = line(2, "stopping the old container");
    assert!(
        one_ready.is_some() && two_stops.is_some() && one_ready < two_stops,
        "{out}"
    );

    // A replacement that never turns healthy: replica 1 is rolled back, replica 2 is not touched.
    s.set_compose(&replicated("deploy: {replicas: 2}", "3", false));
    let run = s.apply();
    run.expect(1);
    assert!(run.all().contains("rolled back"), "{}", run.all());
    assert_eq!(web_replicas(&s), v2, "both replicas keep their containers");
    for n in 1..=2 {
        let env = s.inspect_container(
            &web(n),
            "{{.State.Running}} {{range .Config.Env}}{{.}} {{end}}",
        );
        assert!(
            env.starts_with("true") && env.contains("VERSION=2"),
            "{env}"
        );
    }

    // Scaled up again: only the new replicas are created.
    s.set_compose(&replicated("scale: 4", "2", true));
    s.apply().expect(0);
    let v4 = web_replicas(&s);
    assert_eq!(v4.len(), 4);
    for (name, id) in &v2 {
        assert_eq!(v4.get(name), Some(id), "{name} kept");
    }
    s.dry_run().expect(0);
    // `status` has a row per replica.
    let status = s.plimsoll(&["status", s.path().to_str().unwrap()]);
    let rows = status
        .stdout
        .lines()
        .filter(|l| l.contains(&format!("{}-web-", s.name)));
    assert_eq!(
        rows.filter(|l| l.contains("in sync")).count(),
        4,
        "{status}"
    );

    // Replicas stopped and removed by hand are drift, each named.
    quiet(&["stop", "-t", "0", &web(2)]);
    quiet(&["rm", "-f", &web(4)]);
    let run = s.dry_run();
    run.expect(2);
    let out = run.all();
    assert!(
        out.contains(&format!("{}/web.2 ", s.name)) && out.contains(&format!("{}/web.4 ", s.name)),
        "{out}"
    );
    s.apply().expect(0);
    assert_eq!(web_replicas(&s).len(), 4);

    // Zero replicas: none run; the dependent no longer waits for any.
    s.set_compose(&replicated("scale: 0", "2", true));
    s.apply().expect(0);
    assert!(web_replicas(&s).is_empty());
    s.dry_run().expect(0);
}

/// A stack whose `web` (health-checked: healthy when `OK` is 1) and `client`
/// (waits for `web` to be healthy) are on network `back` with `subnet`;
/// `apart` is on the default network.
fn networked(subnet: &str, internal: bool, ok: &str) -> String {
    format!(
        r#"services:
  web:
    image: plimsoll-example/busybox:1
    command: ["sh", "-c", "test $$OK = 1 && touch /tmp/ok; exec sleep 3600"]
    stop_signal: SIGKILL
    environment:
      OK: "{ok}"
    networks: [back]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ok"]
      interval: 1s
      timeout: 1s
      retries: 2
    x-plimsoll:
      health_timeout: 8s
  client:
    image: plimsoll-example/busybox:1
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    networks: [back]
    depends_on:
      web:
        condition: service_healthy
  apart:
    image: plimsoll-example/busybox:1
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
networks:
  back:
    internal: {internal}
    ipam:
      config:
        - subnet: {subnet}
"#
    )
}

/// A /24 of its own per test and process: `10.<second>.<pid-based>.0/24`.
fn subnet(second: u8) -> (String, String) {
    let third = std::process::id() % 200 + 20;
    (
        format!("10.{second}.{third}.0/24"),
        format!("10.{second}.{third}."),
    )
}

impl KeysStack {
    /// `docker network inspect` of the stack's network `back`: `internal subnet`.
    fn back(&self) -> String {
        docker(&[
            "network",
            "inspect",
            "--format",
            "{{.Internal}} {{range .IPAM.Config}}{{.Subnet}}{{end}}",
            &format!("{}_back", self.name),
        ])
    }

    /// A container's address and aliases on `back`, or `none` when it is not attached.
    fn on_back(&self, container: &str) -> String {
        let net = format!("{}_back", self.name);
        self.inspect_container(
            container,
            &format!(
                "{{{{with index .NetworkSettings.Networks \"{net}\"}}}}{{{{.IPAddress}}}} {{{{json .Aliases}}}}{{{{else}}}}none{{{{end}}}}"
            ),
        )
    }
}

#[test]
fn a_changed_network_is_recreated_with_the_services_on_it() {
    let s = KeysStack::new("netchange");
    let ((old_subnet, _), (new_subnet, new_prefix)) = (subnet(214), subnet(215));
    s.set_compose(&networked(&old_subnet, false, "1"));
    s.apply().expect(0);
    let before = s.ids();
    assert_eq!(s.back(), format!("false {old_subnet}"));
    s.dry_run().expect(0);

    // A new subnet and `internal`: the network and both services on it.
    s.set_compose(&networked(&new_subnet, true, "1"));
    let net = format!("{}_back", s.name);
    let plan = s.dry_run();
    plan.expect(2);
    for want in [
        format!("~ recreate network {}/{net}", s.name),
        "internal false → true".to_string(),
        format!("ipam subnet {old_subnet} → {new_subnet}"),
        format!("network {net} is recreated"),
        "1 to recreate network, 2 to recreate; 1 in sync".to_string(),
    ] {
        assert!(plan.stdout.contains(&want), "{want}\n{plan}");
    }
    let path = s.path().display().to_string();
    let json = s.plimsoll(&["reconcile", &path, "--dry-run", "--format", "json"]);
    json.expect(2);
    let actions = crate::support::plan_actions(&json.plan_json());
    assert_eq!(actions[0], ("recreate_network".to_string(), net.clone()));
    let mut services: Vec<_> = actions[1..].to_vec();
    services.sort();
    assert_eq!(
        services,
        [
            ("recreate".to_string(), "client".to_string()),
            ("recreate".to_string(), "web".to_string())
        ]
    );
    // A dry run changes nothing.
    assert_eq!(s.back(), format!("false {old_subnet}"));
    assert_eq!(s.ids(), before);

    s.apply().expect(0);
    assert_eq!(s.back(), format!("true {new_subnet}"));
    let after = s.ids();
    for svc in ["web", "client"] {
        let name = s.container(svc);
        assert_ne!(after[&name], before[&name], "{svc} is recreated");
        assert_eq!(s.inspect(svc, "{{.State.Status}}"), "running", "{svc}");
        let on = s.on_back(&name);
        assert!(on.starts_with(&new_prefix), "{svc}: {on}");
        assert!(
            on.contains(&format!("\"{svc}\"")),
            "{svc} keeps its alias: {on}"
        );
    }
    assert_eq!(after[&s.container("apart")], before[&s.container("apart")]);
    // The alias resolves on the new (internal) network.
    let ping = docker_output(&["exec", &s.container("client"), "ping", "-c1", "-W2", "web"]);
    assert!(
        ping.status.success(),
        "ping web from client: {}",
        String::from_utf8_lossy(&ping.stderr)
    );
    let again = s.dry_run();
    again.expect(0);
    assert!(again.stdout.contains("3 in sync"), "{again}");
}

#[test]
fn a_network_git_leaves_alone_stays_in_sync() {
    let s = KeysStack::new("netsteady");
    s.set_compose(
        r#"services:
  web:
    image: plimsoll-example/busybox:1
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    networks: [plain]
  apart:
    image: plimsoll-example/busybox:1
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
networks:
  plain:
    labels:
      com.example.team: shop
    driver_opts:
      com.docker.network.driver.mtu: "1400"
"#,
    );
    s.apply().expect(0);
    let ids = s.ids();
    let network_id = |key: &str| {
        docker(&[
            "network",
            "inspect",
            "--format",
            "{{.Id}}",
            &format!("{}_{key}", s.name),
        ])
    };
    let (plain, default) = (network_id("plain"), network_id("default"));
    // The engine assigned the subnets, gateways and IPAM driver: no difference.
    for _ in 0..2 {
        let again = s.dry_run();
        again.expect(0);
        assert!(again.stdout.contains("2 in sync"), "{again}");
        s.apply().expect(0);
    }
    assert_eq!(network_id("plain"), plain);
    assert_eq!(network_id("default"), default);
    assert_eq!(s.ids(), ids);
}

#[test]
fn a_rolled_back_replacement_is_connected_to_the_recreated_network() {
    let s = KeysStack::new("netrollback");
    let ((old_subnet, _), (new_subnet, new_prefix)) = (subnet(216), subnet(217));
    s.set_compose(&networked(&old_subnet, false, "1"));
    s.apply().expect(0);
    let before = s.ids();

    // The new subnet, and a `web` that never turns healthy: it is rolled
    // back, and `client`, which waits for it, is not touched.
    s.set_compose(&networked(&new_subnet, false, "0"));
    let run = s.apply();
    run.expect(1);
    assert!(run.all().contains("rolled back"), "{run}");
    assert!(run.all().contains("dependency web failed"), "{run}");
    assert_eq!(s.back(), format!("false {new_subnet}"));
    // Both old containers serve again, on the new network, under their aliases.
    assert_eq!(s.ids(), before);
    for svc in ["web", "client"] {
        assert_eq!(s.inspect(svc, "{{.State.Status}}"), "running", "{svc}");
        let on = s.on_back(&s.container(svc));
        assert!(on.starts_with(&new_prefix), "{svc}: {on}");
        assert!(on.contains(&format!("\"{svc}\"")), "{svc}: {on}");
    }
    let ping = docker_output(&["exec", &s.container("client"), "ping", "-c1", "-W2", "web"]);
    assert!(
        ping.status.success(),
        "ping web from client: {}",
        String::from_utf8_lossy(&ping.stderr)
    );
    // Back to a good revision: it converges.
    s.set_compose(&networked(&new_subnet, false, "1"));
    s.apply().expect(0);
    s.dry_run().expect(0);
}

#[test]
fn a_network_recreate_killed_at_every_step_converges() {
    let s = KeysStack::new("netcrash");
    let subnets = [subnet(218), subnet(219)];
    s.set_compose(&networked(&subnets[0].0, false, "1"));
    s.apply().expect(0);
    let path = s.path().display().to_string();
    const MAX_POINTS: u32 = 60;
    // The first point the run never reached: that run completed unkilled.
    let mut completed_at = None;
    for n in 1..=MAX_POINTS {
        // Every round changes the subnet: the network and its services are replaced.
        let (subnet, prefix) = &subnets[n as usize % 2];
        s.set_compose(&networked(subnet, false, "1"));
        let run = s.plimsoll_env(
            &["reconcile", &path],
            &[("PLIMSOLL_FAULT_KILL_AFTER", &n.to_string())],
        );
        if run.code == Some(0) {
            completed_at = Some(n);
        } else {
            assert_eq!(run.code, None, "killed by a signal at point {n}:\n{run}");
            // Killed between removing and creating the network too: one run converges.
            s.apply().expect(0);
        }
        assert_eq!(s.back(), format!("false {subnet}"), "after point {n}");
        let ids = s.ids();
        assert_eq!(ids.len(), 3, "one container per service: {ids:?}");
        for svc in ["web", "client"] {
            let on = s.on_back(&s.container(svc));
            assert!(
                on.starts_with(prefix.as_str()),
                "{svc} after point {n}: {on}"
            );
        }
        s.dry_run().expect(0);
        if completed_at.is_some() {
            break;
        }
    }
    // The loop must end on a run that was never killed: every point of the
    // replacement was hit, none left untried beyond MAX_POINTS.
    let completed_at = completed_at.unwrap_or_else(|| {
        panic!("the run was still killed at point {MAX_POINTS}: not every kill point was tried")
    });
    let kill_points = completed_at - 1;
    eprintln!("{kill_points} kill points, then a run with no kill");
    assert!(
        kill_points >= 8,
        "only {kill_points} kill points were exercised"
    );
}

/// A service with `post_start` hooks: `v` goes into the first hook's
/// environment, `fail` makes the second hook fail after printing a secret.
fn hooked(v: &str, fail: bool) -> String {
    let second = if fail {
        r#"["sh", "-c", "echo about to fail with $$API_TOKEN; exit 3"]"#
    } else {
        r#"["sh", "-c", "cat /tmp/hook-out > /tmp/second"]"#
    };
    format!(
        r#"services:
  web:
    image: plimsoll-example/busybox:1
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    user: "1000"
    environment:
      VERSION: "{v}"
    post_start:
      - command: sh -c 'echo "$$GREETING from $$(pwd) as $$(id -u)" > /tmp/hook-out'
        user: root
        working_dir: /etc
        environment:
          GREETING: hello-{v}
      - command: {second}
        environment:
          API_TOKEN: tok-hook-canary-123
"#
    )
}

#[test]
fn post_start_hooks_run_with_their_settings_and_converge() {
    let s = KeysStack::new("hooks");
    s.set_compose(&hooked("1", false));
    s.apply().expect(0);
    let web = s.container("web");
    // The first hook ran as root in /etc with its variable; the second after it.
    assert_eq!(
        docker(&["exec", &web, "cat", "/tmp/hook-out"]),
        "hello-1 from /etc as 0"
    );
    assert_eq!(
        docker(&["exec", &web, "cat", "/tmp/second"]),
        "hello-1 from /etc as 0"
    );
    // The container itself runs as the service's user; hooks leave no trace in its config.
    assert_eq!(s.inspect("web", "{{.Config.User}}"), "1000");
    s.dry_run().expect(0);

    // A changed hook replaces the container, and the plan says why.
    let before = s.ids()[&web].clone();
    s.set_compose(&hooked("1", false).replace("hello-1", "hello-2"));
    let plan = s.dry_run();
    plan.expect(2);
    assert!(plan.stdout.contains("post_start hooks changed"), "{plan}");
    assert!(!plan.stdout.contains("settings changed in git"), "{plan}");
    s.apply().expect(0);
    assert_ne!(s.ids()[&web], before);
    assert_eq!(
        docker(&["exec", &web, "cat", "/tmp/hook-out"]),
        "hello-2 from /etc as 0"
    );
    s.dry_run().expect(0);
}

#[test]
fn failing_post_start_hook_rolls_back_to_the_old_container() {
    let s = KeysStack::new("hookfail");
    s.set_compose(&hooked("1", false));
    s.apply().expect(0);
    let web = s.container("web");
    let old = s.ids()[&web].clone();

    s.set_compose(&hooked("2", true));
    let run = s.apply();
    run.expect(1);
    let all = run.all();
    assert!(
        all.contains("post_start[1] hook exited with code 3"),
        "{run}"
    );
    assert!(all.contains("about to fail with ********"), "{run}");
    assert!(!all.contains("tok-hook-canary-123"), "{run}");
    assert!(all.contains("rolled back"), "{run}");
    // The old container serves again under its name; the new one is gone.
    let ids = s.ids();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(ids[&web], old);
    assert_eq!(s.inspect("web", "{{.State.Status}}"), "running");
    assert!(
        s.inspect("web", "{{range .Config.Env}}{{.}} {{end}}")
            .contains("VERSION=1")
    );
}

/// `pre_stop` writes to a bind-mounted host directory; `tail` is appended to
/// the service's settings (a change that replaces the container).
fn pre_stopping(out: &Path, version: &str, hook: &str) -> String {
    format!(
        r#"services:
  web:
    image: plimsoll-example/busybox:1
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    environment:
      VERSION: "{version}"
    volumes:
      - {}:/out
    pre_stop:
      - command: {hook}
"#,
        out.display()
    )
}

#[test]
fn pre_stop_hooks_run_before_a_replacement_stops_the_old_container() {
    let s = KeysStack::new("prestop");
    let out = temp_dir("plimsoll-it-prestop-");
    let hook = r#"["sh", "-c", "echo stopping $$VERSION >> /out/stopped"]"#;
    s.set_compose(&pre_stopping(out.path(), "1", hook));
    s.apply().expect(0);
    assert!(!out.path().join("stopped").exists());
    s.dry_run().expect(0);

    // The old container ran the hook (with its own environment) before it stopped.
    s.set_compose(&pre_stopping(out.path(), "2", hook));
    s.apply().expect(0);
    let written = std::fs::read_to_string(out.path().join("stopped")).expect("the hook's file");
    assert_eq!(written, "stopping 1\n");

    // A failing pre_stop hook is a warning: the replacement goes on.
    let failing = r#"["sh", "-c", "echo cannot flush; exit 5"]"#;
    s.set_compose(&pre_stopping(out.path(), "3", failing));
    let run = s.apply();
    run.expect(0);
    assert!(
        run.stderr.contains("pre_stop[0] hook exited with code 5"),
        "{run}"
    );
    assert!(
        run.stderr.contains("stopping the container anyway"),
        "{run}"
    );
    assert!(
        s.inspect("web", "{{range .Config.Env}}{{.}} {{end}}")
            .contains("VERSION=3")
    );
    s.dry_run().expect(0);
}

#[test]
fn failing_post_start_hook_on_create_stops_the_container_for_the_next_apply() {
    let s = KeysStack::new("hookcreate");
    s.set_compose(&hooked("1", true));
    let run = s.apply();
    run.expect(1);
    assert!(
        run.all().contains("post_start[1] hook exited with code 3"),
        "{run}"
    );
    assert!(run.all().contains("stopped again"), "{run}");
    assert_eq!(s.inspect("web", "{{.State.Running}}"), "false");
    // The next apply starts it and runs the hooks again.
    let path = s.path().display().to_string();
    let plan = s.plimsoll(&["reconcile", &path, "--dry-run", "--format", "json"]);
    plan.expect(2);
    assert_eq!(
        crate::support::plan_actions(&plan.plan_json()),
        vec![("start".to_string(), "web".to_string())]
    );
    s.set_compose(&hooked("1", false));
    s.apply().expect(0);
    assert_eq!(
        docker(&["exec", &s.container("web"), "cat", "/tmp/second"]),
        "hello-1 from /etc as 0"
    );
}

#[test]
fn pre_stop_hooks_run_before_a_scale_down() {
    let s = KeysStack::new("prestopscale");
    let out = temp_dir("plimsoll-it-prestop-");
    let hook = r#"["sh", "-c", "touch /out/$$HOSTNAME"]"#;
    let yaml = |scale: u32| {
        pre_stopping(out.path(), "1", hook).replace(
            "    stop_signal: SIGKILL\n",
            &format!("    stop_signal: SIGKILL\n    scale: {scale}\n"),
        )
    };
    s.set_compose(&yaml(2));
    s.apply().expect(0);
    let second = format!("{}-web-2", s.name);
    let short = s.ids()[&second][..12].to_string();
    s.set_compose(&yaml(1));
    s.apply().expect(0);
    let written: Vec<String> = std::fs::read_dir(out.path())
        .expect("the hook's directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(written, vec![short]);
    s.dry_run().expect(0);
}

/// A block device of this host (`/dev/vda`, `/dev/sda`, ...) for throttles.
fn block_device() -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/block")
        .ok()?
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .filter(|n| {
            !["loop", "ram", "zram", "nbd", "sr", "dm-"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| format!("/dev/{n}"))
        .find(|p| Path::new(p).exists())
}

fn io_compose(device: &str, read_bps: &str, octet: u8) -> String {
    format!(
        r#"services:
  io:
    image: plimsoll-example/busybox:1
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    blkio_config:
      weight: 300
      device_read_bps:
        - path: {device}
          rate: {read_bps}
      device_write_iops:
        - path: {device}
          rate: 120
    networks:
      back:
        ipv4_address: 10.214.{octet}.20
        link_local_ips: [169.254.{octet}.10]
        driver_opts:
          com.example.endpoint: "1"
networks:
  back:
    ipam:
      config:
        - subnet: 10.214.{octet}.0/24
"#
    )
}

#[test]
fn blkio_throttles_and_endpoint_settings_apply_converge_and_change() {
    let Some(device) = block_device() else {
        crate::support::missing_precondition(
            "this host shows no block device under /sys/block (the blkio throttles need one)",
        );
        return;
    };
    let s = KeysStack::new("blkio");
    let octet = (std::process::id() % 200 + 20) as u8;
    s.set_compose(&io_compose(&device, "1mb", octet));
    s.apply().expect(0);
    assert_eq!(
        s.inspect(
            "io",
            "{{range .HostConfig.BlkioDeviceReadBps}}{{.Path}} {{.Rate}}{{end}} {{range .HostConfig.BlkioDeviceWriteIOps}}{{.Path}} {{.Rate}}{{end}}"
        ),
        format!("{device} 1048576 {device} 120")
    );
    let net = format!("{}_back", s.name);
    assert_eq!(
        s.inspect(
            "io",
            &format!("{{{{with index .NetworkSettings.Networks \"{net}\"}}}}{{{{.IPAMConfig.IPv4Address}}}} {{{{json .IPAMConfig.LinkLocalIPs}}}} {{{{json .DriverOpts}}}}{{{{end}}}}")
        ),
        format!(r#"10.214.{octet}.20 ["169.254.{octet}.10"] {{"com.example.endpoint":"1"}}"#)
    );
    // A weight the kernel's I/O scheduler discards is no drift: a no-op.
    s.dry_run().expect(0);

    let before = s.ids()[&s.container("io")].clone();
    s.set_compose(&io_compose(&device, "2mb", octet));
    let plan = s.dry_run();
    plan.expect(2);
    assert!(
        plan.stdout.contains(&format!("blkio read bps {device}")),
        "the plan names the throttle: {plan}"
    );
    s.apply().expect(0);
    assert_ne!(s.ids()[&s.container("io")], before, "io was not replaced");
    assert_eq!(
        s.inspect(
            "io",
            "{{range .HostConfig.BlkioDeviceReadBps}}{{.Rate}}{{end}}"
        ),
        "2097152"
    );
    s.dry_run().expect(0);
}

#[test]
fn gpu_requests_reach_the_engine_and_a_host_without_gpus_fails_that_service() {
    let s = KeysStack::new("gpus");
    s.set_compose(
        "services:\n  gpu:\n    image: plimsoll-example/busybox:1\n    command: [\"sleep\", \"3600\"]\n    gpus: all\n",
    );
    let plan = s.dry_run();
    plan.expect(2);
    let run = s.apply();
    run.expect(1);
    // The engine was asked for GPUs (the driver answers) and nothing is left running.
    let all = run.all();
    assert!(all.contains("gpu"), "the failure names the service: {run}");
    assert!(
        all.contains("device driver") || all.contains("nvidia"),
        "the engine's device request error is shown: {run}"
    );
    let running = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=io.plimsoll.stack={}", s.name),
    ]);
    assert!(
        running.is_empty(),
        "a container runs without its GPUs: {running}"
    );
}
