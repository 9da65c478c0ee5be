//! The remaining Compose service keys on the real engine: a stack that uses
//! namespaces (`network_mode`, `ipc`, `pid`, `uts` and `userns_mode`, shared
//! with another service or the host), devices, sysctls, DNS settings, a TTY,
//! `/dev/shm`, security options, extra groups, legacy CPU and memory limits,
//! links, `volumes_from`, annotations and a network with `ipam` is applied;
//! the engine holds what the file says; a second reconcile is a no-op; a
//! changed key recreates only its service; drift by `docker update` is named
//! and repaired, and a service that shares the replaced container's network
//! stack follows it.
//!
//! Values avoid what this kind of CI host refuses: a negative
//! `oom_score_adj` (not permitted inside the CI container), real-time CPU
//! settings (no real-time group scheduling) and `storage_opt` (needs overlay2
//! on XFS with quotas).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{
    Run, docker, docker_output, ensure_busybox, labelled_ids, quiet, stack_containers, temp_dir,
    unique_name,
};

const STACK_LABEL: &str = "io.plimsoll.stack";

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
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_plimsoll"));
        cmd.arg("--state-dir")
            .arg(self.state.path())
            .args(args)
            .current_dir(self.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        if let Some(host) = std::env::var_os("DOCKER_HOST") {
            cmd.env("DOCKER_HOST", host);
        }
        let out = cmd.output().expect("run plimsoll");
        Run {
            args: args.iter().map(|a| a.to_string()).collect(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
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
        docker(&["inspect", "--format", format, &self.container(service)])
    }
}

impl Drop for KeysStack {
    fn drop(&mut self) {
        let mine = format!("{STACK_LABEL}={}", self.name);
        let containers = labelled_ids("container", &mine);
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(containers.iter().map(String::as_str));
            quiet(&args);
        }
        for n in labelled_ids("network", &mine) {
            quiet(&["network", "rm", &n]);
        }
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
