//! Pins what the engine boundary produces for every service of every
//! conformance case (`tests/fixtures/conformance/*`): the serialized
//! [`ContainerConfig`] (its bytes are the spec hash stored on every running
//! container), its field lines before and after image defaults are
//! stripped, and the create request. Snapshots in `src/keys/snapshots/`;
//! they must not move when the mapping is reorganized.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::Digest;

use crate::apply::create_body;
use crate::diff::{ContainerConfig, Health, ImageDefaults, MountDesc, desired_config, spec_hash};

/// Object keys sorted (the create body holds hash maps, whose order is not
/// part of the request's meaning).
pub(crate) fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        v => v,
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Machine paths replaced by placeholders.
fn scrub(text: &str) -> String {
    let mut t = text.replace(&repo().display().to_string(), "[REPO]");
    if let Ok(home) = std::env::var("HOME")
        && home.len() > 1
    {
        t = t.replace(&home, "[HOME]");
    }
    t
}

fn scrubbed(v: &Value) -> Value {
    serde_json::from_str(&scrub(&v.to_string())).expect("json")
}

/// What an image supplies, overlapping the keys the fixtures use.
fn image() -> ImageDefaults {
    ImageDefaults {
        id: "sha256:feed".into(),
        cmd: Some(vec!["sh".into()]),
        entrypoint: Some(vec!["/docker-entrypoint.sh".into()]),
        env: BTreeMap::from([("PATH".into(), "/usr/bin:/bin".into())]),
        labels: BTreeMap::from([("org.opencontainers.image.title".into(), "x".into())]),
        user: Some("nobody".into()),
        working_dir: Some("/app".into()),
        healthcheck: Some(Health {
            test: vec!["CMD".into(), "true".into()],
            interval: 5_000_000_000,
            ..Health::default()
        }),
        volumes: ["/data".to_string()].into(),
        stop_signal: Some("SIGQUIT".into()),
    }
}

/// The pinned outputs of one service.
fn pin(stack: &crate::spec::model::Stack, service: &str) -> Value {
    let svc = &stack.services[service];
    let config = desired_config(stack, service, svc, 1, Some("sha256:0123456789ab".into()));
    let serialized = serde_json::to_string(&ContainerConfig {
        image_id: None,
        ..config.clone()
    })
    .expect("config serializes");
    // The spec hash, or with the checkout's path in it, a digest of the
    // serialized config with that path scrubbed (equal bytes, equal hash).
    let hash = if scrub(&serialized) == serialized {
        spec_hash(&config, &[])
    } else {
        let digest = sha2::Sha256::digest(scrub(&serialized).as_bytes());
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        format!("scrubbed {hex}")
    };
    let mut stripped = config.clone();
    stripped.strip_defaults(&image());
    let carry = BTreeMap::from([("/data".to_string(), "f".repeat(64))]);
    let (body, networks) = create_body(stack, service, &config, &carry);
    json!({
        "hash": hash,
        "fields": scrubbed(&serde_json::to_value(config.fields()).unwrap()),
        "stripped fields": scrubbed(&serde_json::to_value(stripped.fields()).unwrap()),
        "create": scrubbed(&sorted(serde_json::to_value(&body).unwrap())),
        "connect": scrubbed(&sorted(serde_json::to_value(&networks).unwrap())),
    })
}

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path(repo().join("src/keys/snapshots"));
    s.set_prepend_module_to_snapshot(false);
    s.set_sort_maps(false);
    s
}

/// Every conformance case that loads: its services' configs, field lines
/// and create requests, pinned.
#[test]
fn conformance_cases_keep_their_config_hash_fields_and_requests() {
    let dir = repo().join("tests/fixtures/conformance");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && !p.join("cli.args").exists() && !p.join("process.env").exists())
        .collect();
    cases.sort();
    let mut pinned = 0;
    for case in cases {
        let Ok(layout) = crate::source::discover(&case) else {
            continue;
        };
        let Ok(desired) =
            crate::spec::load(&layout, &crate::source::LocalFs, &BTreeMap::new(), &[])
        else {
            continue;
        };
        let mut out = serde_json::Map::new();
        for stack in &desired.stacks {
            for service in stack.services.keys() {
                out.insert(format!("{}/{service}", stack.name), pin(stack, service));
            }
        }
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        settings().bind(|| insta::assert_json_snapshot!(format!("pin-{name}"), out));
        pinned += 1;
    }
    assert!(pinned > 30, "only {pinned} cases pinned");
}

/// The spec hash of a config that sets every field, as the current code
/// computes it: containers running today carry it.
#[test]
fn the_spec_hash_of_a_rich_config_is_pinned() {
    let mut c = ContainerConfig {
        name: "s-web-1".into(),
        image: "busybox:1".into(),
        image_id: Some("sha256:feed".into()),
        command: Some(vec!["sh".into(), "-c".into(), "sleep 1".into()]),
        entrypoint: Some(vec!["/init".into()]),
        env: BTreeMap::from([("A".into(), "1".into())]),
        labels: BTreeMap::from([("team".into(), "web".into())]),
        ports: BTreeMap::from([("80/tcp".into(), vec!["127.0.0.1:8080".into()])]),
        mounts: BTreeMap::from([(
            "/data".into(),
            MountDesc {
                kind: "volume",
                source: Some("s_data".into()),
                read_only: true,
            },
        )]),
        tmpfs: BTreeMap::from([("/tmp".into(), "size=1m".into())]),
        networks: BTreeMap::from([("s_default".into(), ["web".to_string()].into())]),
        restart: "always".into(),
        memory: 1 << 27,
        memory_reservation: 1 << 26,
        nano_cpus: 500_000_000,
        pids_limit: 100,
        healthcheck: Some(Health {
            test: vec!["CMD".into(), "true".into()],
            interval: 1,
            timeout: 2,
            retries: 3,
            start_period: 4,
            start_interval: 5,
        }),
        user: Some("1000".into()),
        working_dir: Some("/app".into()),
        hostname: Some("web".into()),
        stop_signal: Some("SIGINT".into()),
        stop_timeout: Some(3),
        privileged: true,
        init: true,
        read_only: true,
        cap_add: ["NET_ADMIN".to_string()].into(),
        cap_drop: ["ALL".to_string()].into(),
        ulimits: BTreeMap::from([("nofile".into(), (1024, 2048))]),
        extra_hosts: ["db:10.0.0.2".to_string()].into(),
        log: Some((
            "local".into(),
            BTreeMap::from([("max-size".into(), "1m".into())]),
        )),
        network_mode: Some("bridge".into()),
        ipc: Some("shareable".into()),
        pid: Some("host".into()),
        uts: Some("host".into()),
        userns: Some("host".into()),
        cgroupns: Some("private".into()),
        cgroup_parent: Some("/k".into()),
        runtime: Some("runc".into()),
        platform: Some("linux/amd64".into()),
        shm_size: 1 << 26,
        sysctls: BTreeMap::from([("net.core.somaxconn".into(), "1024".into())]),
        tty: true,
        stdin_open: true,
        devices: BTreeMap::from([("/dev/f".into(), "/dev/fuse rwm".into())]),
        device_cgroup_rules: ["c 1:3 mr".to_string()].into(),
        dns: vec!["1.1.1.1".into()],
        dns_search: vec!["example.com".into()],
        dns_options: vec!["ndots:2".into()],
        security_opt: ["no-new-privileges:true".to_string()].into(),
        group_add: ["44".to_string()].into(),
        domainname: Some("example.com".into()),
        mac_address: Some("02:42:ac:11:00:02".into()),
        oom_score_adj: -500,
        oom_kill_disable: true,
        storage_opt: BTreeMap::from([("size".into(), "1G".into())]),
        cpu_shares: 512,
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_rt_period: 1,
        cpu_rt_runtime: 2,
        cpuset: Some("0-1".into()),
        memory_swap: 1 << 28,
        memory_swappiness: Some(30),
        links: ["s-db-1:db".to_string()].into(),
        volumes_from: ["s-data-1:ro".to_string()].into(),
        annotations: Some(BTreeMap::from([("a".into(), "b".into())])),
        blkio_weight: 300,
        blkio_devices: BTreeMap::from([("read bps /dev/sda".into(), "1048576".into())]),
        device_requests: vec![crate::spec::model::DeviceRequest {
            capabilities: vec!["gpu".into()],
            driver: Some("nvidia".into()),
            count: Some(-1),
            device_ids: vec![],
            options: BTreeMap::new(),
        }],
        endpoints: BTreeMap::from([("s_default".into(), "ipv4 10.0.0.5".into())]),
        endpoint_macs: BTreeMap::new(),
    };
    assert_eq!(
        spec_hash(&c, &["secret"]),
        "aff53ff12c280f33407d1e3fc7c85866"
    );
    c.endpoints.clear();
    c.image_id = None;
    assert_eq!(
        spec_hash(&c, &["secret"]),
        "aff53ff12c280f33407d1e3fc7c85866",
        "endpoints and the image id are out of the hash"
    );
}

/// Every saved inspect (`tests/fixtures/inspect/*.json`) read back: the
/// live container as `live::normalize` makes it, with and without the
/// image's defaults.
#[test]
fn saved_inspects_read_back_the_same() {
    let dir = repo().join("tests/fixtures/inspect");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let raw: Value = serde_json::from_str(&text).unwrap();
        let containers: Vec<bollard::models::ContainerInspectResponse> =
            serde_json::from_value(raw["containers"].clone()).unwrap();
        let images: Vec<bollard::models::ImageInspect> =
            serde_json::from_value(raw["images"].clone()).unwrap();
        let mut out = String::new();
        for c in containers {
            let image = images
                .iter()
                .find(|i| i.id == c.image)
                .cloned()
                .map(crate::keys::image_defaults)
                .unwrap();
            let bare = crate::live::normalize(&c, &Default::default());
            let stripped = crate::live::normalize(&c, &image);
            out.push_str(&format!(
                "{:#?}\n{:#?}\n{:#?}\n{:#?}\n{:#?}\n",
                bare.config, bare.state, bare.anonymous_volumes, stripped.config, image
            ));
        }
        let name = file.file_stem().unwrap().to_string_lossy().to_string();
        let out = out.replace(raw["dir"].as_str().unwrap(), "[DIR]");
        settings().bind(|| insta::assert_snapshot!(format!("read-{name}"), out));
    }
}
