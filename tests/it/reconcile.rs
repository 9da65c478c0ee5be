//! `plimsoll reconcile` and `plimsoll status` against the real engine: dry-run
//! changes nothing, apply follows the dependency graph and its health gates,
//! a second run is a no-op, one change recreates one container, drift by hand
//! is named and repaired, foreign containers are never touched, Compose still
//! sees the stacks, secrets never reach any output, the JSON plan matches its
//! schema, the renderers are snapshotted, and a recreate that cannot become
//! healthy is rolled back.
//!
//! Every engine test writes its stack (with a unique `name:`) into a tempdir
//! through [`stack`], passes its own `--state-dir`, and owns a [`TempStack`]
//! whose drop removes everything labelled with that stack name (containers,
//! the `-plimsoll-old` ones included, networks, volumes) plus whatever the test
//! made by hand (foreign containers, image tags), panics included. Services use
//! the offline busybox image with 1 s health checks and `stop_signal: SIGKILL`
//! (busybox as PID 1 ignores SIGTERM); PostgreSQL is only in the three-tier test.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use plimsoll::plan::{Action, ActionKind, Conflict, Orphan, OrphanKind, Plan};
use serde_json::Value;

use crate::support::{
    BUSYBOX_IMAGE, DEBIAN_IMAGE, Run, compose_or_skip, docker, docker_output, ensure_busybox,
    ensure_debian, ensure_postgres, health_status, repo_root, unique_name, wait_for, wait_healthy,
};
use crate::support::{files_under, labelled_ids, plan_actions, quiet, stack_containers};

// -- helpers -------------------------------------------------------------------

/// The label every object of a stack carries.
const STACK_LABEL: &str = "io.plimsoll.stack";

/// A stack in a tempdir, with its own state directory; dropping it removes
/// everything the stack and the test created on the engine.
struct TempStack {
    name: String,
    dir: tempfile::TempDir,
    state: tempfile::TempDir,
    /// Containers the test made by hand (IDs), removed on drop.
    foreign: Vec<String>,
    /// Image tags the test made, untagged on drop.
    tags: Vec<String>,
}

/// Writes `yaml` as `compose.yaml` in a fresh tempdir, with a unique `name:`
/// (`plimsoll-it-<what>-<pid>-<nanos>-<n>`) prepended.
fn stack(what: &str, yaml: &str) -> TempStack {
    ensure_busybox();
    let s = TempStack {
        name: unique_name(what),
        dir: tempfile::Builder::new()
            .prefix("plimsoll-it-stack-")
            .tempdir()
            .expect("create a stack tempdir"),
        state: tempfile::Builder::new()
            .prefix("plimsoll-it-state-")
            .tempdir()
            .expect("create a state tempdir"),
        foreign: Vec::new(),
        tags: Vec::new(),
    };
    s.set_compose(yaml);
    s
}

impl TempStack {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn path_str(&self) -> String {
        self.path().display().to_string()
    }

    /// Writes a file of the stack (`.env`, an env_file, a secret).
    fn write(&self, file: &str, content: &str) {
        fs::write(self.path().join(file), content).expect("write a stack file");
    }

    /// Replaces the Compose file (the unique `name:` is kept).
    fn set_compose(&self, yaml: &str) {
        self.write("compose.yaml", &format!("name: {}\n{yaml}", self.name));
    }

    /// Runs `plimsoll --state-dir <state> ARGS` in the stack directory with a
    /// clean environment (interpolation reads the process environment).
    fn plimsoll(&self, args: &[&str]) -> Run {
        self.plimsoll_env(args, &[])
    }

    /// Like [`TempStack::plimsoll`], with extra environment variables.
    fn plimsoll_env(&self, args: &[&str], envs: &[(&str, &str)]) -> Run {
        Run::of(args, &mut self.command(args, envs))
    }

    /// The command that runs plimsoll for this stack, with a clean environment.
    fn command(&self, args: &[&str], envs: &[(&str, &str)]) -> Command {
        let mut cmd = crate::support::plimsoll_command(self.state.path(), self.path(), args);
        cmd.env(
            "HOME",
            std::env::var_os("HOME").unwrap_or("/nonexistent".into()),
        );
        cmd.envs(envs.iter().copied());
        cmd
    }

    fn dry_run(&self, format: &str) -> Run {
        let path = self.path_str();
        self.plimsoll(&["reconcile", &path, "--dry-run", "--format", format])
    }

    fn apply(&self) -> Run {
        let path = self.path_str();
        self.plimsoll(&["reconcile", &path])
    }

    fn status(&self) -> Run {
        let path = self.path_str();
        self.plimsoll(&["status", &path])
    }

    /// The container name of a service.
    fn container(&self, service: &str) -> String {
        format!("{}-{service}-1", self.name)
    }

    /// Containers carrying this stack's label: name -> full ID.
    fn containers(&self) -> BTreeMap<String, String> {
        stack_containers(&self.name)
    }

    /// The containers of one service of this stack, by name.
    fn service_containers(&self, service: &str) -> Vec<String> {
        let stack = format!("label={STACK_LABEL}={}", self.name);
        let svc = format!("label=io.plimsoll.service={service}");
        docker(&[
            "ps",
            "-a",
            "--filter",
            &stack,
            "--filter",
            &svc,
            "--format",
            "{{.Names}}",
        ])
        .lines()
        .map(str::to_string)
        .collect()
    }

    /// Every object on the engine that carries this stack's label, or that
    /// holds one of `names` (containers, networks, volumes).
    fn engine_view(&self, names: &[(&str, String)]) -> Vec<String> {
        let filter = format!("label={STACK_LABEL}={}", self.name);
        let mut seen = Vec::new();
        for kind in ["container", "network", "volume"] {
            let mut args = vec![kind, "ls", "-q", "--filter", filter.as_str()];
            if kind == "container" {
                args.insert(2, "-a");
            }
            seen.extend(docker(&args).lines().map(|l| format!("{kind} {l}")));
        }
        for (kind, name) in names {
            if docker_output(&[kind, "inspect", name]).status.success() {
                seen.push(format!("{kind} {name}"));
            }
        }
        seen
    }
}

impl Drop for TempStack {
    fn drop(&mut self) {
        let mine = format!("{STACK_LABEL}={}", self.name);
        let compose = format!("com.docker.compose.project={}", self.name);
        let mut containers = self.foreign.clone();
        containers.extend(labelled_ids("container", &mine));
        containers.extend(labelled_ids("container", &compose));
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(containers.iter().map(String::as_str));
            quiet(&args);
        }
        for label in [&mine, &compose] {
            for n in labelled_ids("network", label) {
                quiet(&["network", "rm", &n]);
            }
            let volumes = labelled_ids("volume", label);
            if !volumes.is_empty() {
                let mut args = vec!["volume", "rm", "-f"];
                args.extend(volumes.iter().map(String::as_str));
                quiet(&args);
            }
        }
        for tag in &self.tags {
            quiet(&["rmi", tag]);
        }
    }
}

/// `docker inspect -f FORMAT NAME`, or `None` when it does not exist.
fn inspect(name: &str, format: &str) -> Option<String> {
    let out = docker_output(&["inspect", "--format", format, name]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn is_running(name: &str) -> bool {
    inspect(name, "{{.State.Running}}").as_deref() == Some("true")
}

fn container_id(name: &str) -> String {
    inspect(name, "{{.Id}}").unwrap_or_else(|| panic!("container {name} does not exist"))
}

/// `.State.StartedAt` as (date, nanoseconds of the day): Go's RFC 3339 with
/// trimmed nanoseconds does not compare as a string.
fn started_at(name: &str) -> (String, u128) {
    let s = inspect(name, "{{.State.StartedAt}}").expect("container exists");
    let (date, time) = s.split_once('T').expect("RFC 3339 time");
    let time = time.trim_end_matches('Z');
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut secs = 0u128;
    for part in hms.split(':') {
        secs = secs * 60 + part.parse::<u128>().expect("a number");
    }
    let frac: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    (
        date.to_string(),
        secs * 1_000_000_000 + frac.parse::<u128>().expect("nanoseconds"),
    )
}

/// The checked-in JSON Schema of the plan.
fn plan_schema() -> jsonschema::Validator {
    let text =
        fs::read_to_string(repo_root().join("schemas/plan.json")).expect("schemas/plan.json");
    let schema: Value = serde_json::from_str(&text).expect("plan.json is JSON");
    jsonschema::validator_for(&schema).expect("plan.json is a valid JSON Schema")
}

/// Parses a `--format json` stdout: nothing but one JSON document, valid
/// against `schemas/plan.json`.
#[track_caller]
fn plan_json(run: &Run) -> Value {
    let plan: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not exactly one JSON document ({e}):\n{run}"));
    assert!(run.stdout.ends_with("}\n"), "{run}");
    let validator = plan_schema();
    let errors: Vec<String> = validator
        .iter_errors(&plan)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "the plan does not match schemas/plan.json:\n{}\n{run}",
        errors.join("\n")
    );
    plan
}

/// The reasons of the one action for `service`.
#[track_caller]
fn reasons_of(plan: &Value, service: &str) -> Vec<String> {
    let found: Vec<&Value> = plan["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .filter(|a| a["service"].as_str() == Some(service))
        .collect();
    assert_eq!(found.len(), 1, "one action for {service} in {plan:#}");
    found[0]["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .map(|r| r.as_str().unwrap_or_default().to_string())
        .collect()
}

/// Busybox httpd serving `/health`, healthy within a second or two.
const WEB: &str = r#"
    image: plimsoll-example/busybox:1
    command: ["sh", "-c", "mkdir -p /www && echo ok > /www/health && exec httpd -f -p 8080 -h /www"]
    stop_signal: SIGKILL
    healthcheck:
      test: wget -q -O /dev/null http://127.0.0.1:8080/health
      interval: 1s
      timeout: 2s
      retries: 5
"#;

/// A busybox process that just runs.
const SLEEPER: &str = r#"
    image: plimsoll-example/busybox:1
    command: ["sleep", "600"]
    stop_signal: SIGKILL
"#;

/// `web` (healthy httpd) and `worker` (depends on web being healthy).
fn web_and_worker() -> String {
    format!(
        "services:\n  web:{WEB}  worker:{SLEEPER}    depends_on:\n      web:\n        condition: service_healthy\n"
    )
}

/// Applies and checks that the host is then in sync.
#[track_caller]
fn apply_in_sync(s: &TempStack) {
    s.apply().expect(0);
    let check = s.dry_run("text");
    check.expect(0);
    assert!(check.stdout.contains("no changes"), "{check}");
}

// -- 1. dry-run changes nothing --------------------------------------------------

#[test]
fn reconcile_dry_run_on_an_empty_engine_changes_nothing() {
    let yaml = format!(
        "services:\n  web:{WEB}  worker:{SLEEPER}    depends_on: [web]\n    networks: [default, back]\n    volumes:\n      - data:/data\nnetworks:\n  back:\nvolumes:\n  data:\n"
    );
    let s = stack("dry-run-empty", &yaml);
    let names = [
        ("container", s.container("web")),
        ("container", s.container("worker")),
        ("network", format!("{}_default", s.name)),
        ("network", format!("{}_back", s.name)),
        ("volume", format!("{}_data", s.name)),
    ];
    let before = s.engine_view(&names);
    assert_eq!(before, Vec::<String>::new(), "a fresh stack owns nothing");

    let text = s.dry_run("text");
    text.expect(2);
    for service in ["web", "worker"] {
        assert!(
            text.stdout.contains(&format!("{}/{service} ", s.name)),
            "{service} is not listed:\n{text}"
        );
    }
    let json = s.dry_run("json");
    json.expect(2);
    let plan = plan_json(&json);
    let got: BTreeSet<(String, String)> = plan_actions(&plan).into_iter().collect();
    for service in ["web", "worker"] {
        assert!(
            got.contains(&("create".to_string(), service.to_string())),
            "{got:?}"
        );
    }
    s.dry_run("markdown").expect(2);

    assert_eq!(
        s.engine_view(&names),
        before,
        "a dry-run changed the engine"
    );
    insta::assert_snapshot!(
        "dry_run_empty_engine_text",
        text.stdout.replace(&s.name, "[STACK]")
    );
}

// -- 2. three tiers in dependency order (and 3. a second run is a no-op) --------

#[test]
fn reconcile_applies_three_tiers_in_dependency_order() {
    ensure_postgres();
    let fixture = repo_root().join("tests/fixtures/reconcile/three-tier");
    let yaml = fs::read_to_string(fixture.join("compose.yaml")).expect("fixture");
    let s = stack("three-tier", &yaml);
    s.write(
        ".env",
        &fs::read_to_string(fixture.join(".env")).expect("fixture .env"),
    );

    s.apply().expect(0);
    let (db, api, worker) = (s.container("db"), s.container("api"), s.container("worker"));
    for c in [&db, &api, &worker] {
        assert!(is_running(c), "{c} is not running");
    }
    assert_eq!(
        health_status(&db).as_deref(),
        Some("healthy"),
        "the gate waited for db"
    );
    wait_healthy(&api, Duration::from_secs(30));
    let (t_db, t_api, t_worker) = (started_at(&db), started_at(&api), started_at(&worker));
    assert!(t_db < t_api, "db {t_db:?} must start before api {t_api:?}");
    assert!(
        t_api < t_worker,
        "api {t_api:?} must start before worker {t_worker:?}"
    );

    // Right after an apply the host is in sync, and a second apply touches nothing.
    let check = s.dry_run("text");
    check.expect(0);
    assert!(check.stdout.contains("no changes"), "{check}");
    let ids = s.containers();
    assert_eq!(ids.len(), 3, "{ids:?}");
    let again = s.apply();
    again.expect(0);
    assert!(again.stdout.contains("no changes"), "{again}");
    assert_eq!(s.containers(), ids, "a no-op apply changed containers");
}

// -- 3. a second run is a no-op ----------------------------------------------------

#[test]
fn reconcile_after_apply_is_a_noop() {
    let yaml = format!(
        "services:\n  web:{WEB}    volumes:\n      - data:/data\n  worker:{SLEEPER}    depends_on:\n      web:\n        condition: service_healthy\n    networks: [default, back]\n    environment:\n      MODE: batch\n    labels:\n      team: it\nnetworks:\n  back:\nvolumes:\n  data:\n"
    );
    let s = stack("noop", &yaml);
    s.apply().expect(0);
    let ids = s.containers();
    assert_eq!(ids.len(), 2, "{ids:?}");

    let text = s.dry_run("text");
    text.expect(0);
    assert!(text.stdout.contains("no changes"), "{text}");
    let json = s.dry_run("json");
    json.expect(0);
    let plan = plan_json(&json);
    assert_eq!(plan["actions"], serde_json::json!([]), "{json}");
    assert_eq!(plan["in_sync"].as_array().map(Vec::len), Some(2), "{json}");
    let md = s.dry_run("markdown");
    md.expect(0);
    assert!(md.stdout.contains("No changes"), "{md}");
    let status = s.status();
    status.expect(0);
    assert_eq!(status.stdout.matches("in sync").count(), 2, "{status}");

    let again = s.apply();
    again.expect(0);
    assert!(again.stdout.contains("no changes"), "{again}");
    assert_eq!(s.containers(), ids, "a no-op apply changed containers");
}

// -- 4. one changed value recreates one container -----------------------------------

#[test]
fn reconcile_recreates_exactly_the_changed_service() {
    let yaml = |foo: &str| {
        format!(
            "services:\n  web:{WEB}    environment:\n      FOO: \"{foo}\"\n  api:{SLEEPER}    environment:\n      FOO: \"1\"\n  worker:{SLEEPER}    depends_on:\n      web:\n        condition: service_healthy\n"
        )
    };
    let s = stack("one-change", &yaml("1"));
    apply_in_sync(&s);
    let before = s.containers();
    assert_eq!(before.len(), 3, "{before:?}");

    s.set_compose(&yaml("2"));
    let json = s.dry_run("json");
    json.expect(2);
    let plan = plan_json(&json);
    assert_eq!(
        plan_actions(&plan),
        vec![("recreate".to_string(), "web".to_string())],
        "{json}"
    );
    let reasons = reasons_of(&plan, "web");
    assert!(
        reasons.iter().any(|r| r == "env FOO changed: 1 → 2"),
        "{reasons:?}"
    );
    let text = s.dry_run("text");
    text.expect(2);
    assert!(text.stdout.contains("env FOO changed: 1 → 2"), "{text}");

    s.apply().expect(0);
    let after = s.containers();
    let web = s.container("web");
    assert_ne!(before[&web], after[&web], "web was not recreated");
    for other in ["api", "worker"] {
        let name = s.container(other);
        assert_eq!(before[&name], after[&name], "{other} was touched");
    }
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "no -plimsoll-old container may be left"
    );
    assert!(is_running(&web));
    let check = s.dry_run("text");
    check.expect(0);
}

// -- 5. drift by hand ---------------------------------------------------------------

/// Checks that drift on `service` is planned as `kind` with a reason
/// containing `reason`, shown by `status`, and repaired by an apply; the other
/// containers of the stack are not touched.
#[track_caller]
fn drift_is_named_and_repaired(s: &TempStack, service: &str, kind: &str, reason: &str) {
    let before = s.containers();
    let json = s.dry_run("json");
    json.expect(2);
    let plan = plan_json(&json);
    assert_eq!(
        plan_actions(&plan),
        vec![(kind.to_string(), service.to_string())],
        "{json}"
    );
    let reasons = reasons_of(&plan, service);
    assert!(
        reasons.iter().any(|r| r.contains(reason)),
        "no reason contains {reason:?}: {reasons:?}"
    );
    let status = s.status();
    status.expect(0);
    assert!(
        status.stdout.contains(reason),
        "status does not say {reason:?}:\n{status}"
    );

    s.apply().expect(0);
    let check = s.dry_run("text");
    check.expect(0);
    assert!(check.stdout.contains("no changes"), "{check}");
    let name = s.container(service);
    assert!(is_running(&name), "{name} is not running after the repair");
    assert_eq!(
        s.service_containers(service),
        vec![name.clone()],
        "exactly one container for {service}"
    );
    let after = s.containers();
    for (n, id) in &before {
        if !n.starts_with(&format!("{}-{service}", s.name)) {
            assert_eq!(after.get(n), Some(id), "{n} was touched");
        }
    }
    let status = s.status();
    status.expect(0);
    assert!(!status.stdout.contains(reason), "{status}");
}

#[test]
fn reconcile_drift_stopped_by_hand_is_started() {
    let s = stack("drift-stop", &web_and_worker());
    apply_in_sync(&s);
    let id = container_id(&s.container("worker"));
    docker(&["stop", "-t", "1", &s.container("worker")]);
    drift_is_named_and_repaired(&s, "worker", "start", "stopped by hand");
    assert_eq!(
        container_id(&s.container("worker")),
        id,
        "a start keeps the container"
    );
}

#[test]
fn reconcile_drift_removed_by_hand_is_created() {
    let s = stack("drift-rm", &web_and_worker());
    apply_in_sync(&s);
    docker(&["rm", "-f", &s.container("worker")]);
    let reason = format!("container {} does not exist", s.container("worker"));
    drift_is_named_and_repaired(&s, "worker", "create", &reason);
}

#[test]
fn reconcile_drift_renamed_by_hand_is_replaced() {
    let s = stack("drift-rename", &web_and_worker());
    apply_in_sync(&s);
    let renamed = format!("{}-renamed", s.container("worker"));
    docker(&["rename", &s.container("worker"), &renamed]);
    drift_is_named_and_repaired(&s, "worker", "recreate", "renamed by hand");
    assert!(inspect(&renamed, "{{.Id}}").is_none(), "{renamed} is left");
}

#[test]
fn reconcile_drift_docker_update_is_reverted() {
    let s = stack("drift-update", &web_and_worker());
    apply_in_sync(&s);
    docker(&[
        "update",
        "--memory",
        "64m",
        "--memory-swap",
        "128m",
        &s.container("worker"),
    ]);
    drift_is_named_and_repaired(
        &s,
        "worker",
        "recreate",
        "memory limit 64 MiB on the host, none in git",
    );
    assert_eq!(
        inspect(&s.container("worker"), "{{.HostConfig.Memory}}").as_deref(),
        Some("0")
    );
}

#[test]
fn reconcile_drift_network_disconnect_is_reconnected() {
    let s = stack("drift-net", &web_and_worker());
    apply_in_sync(&s);
    let network = format!("{}_default", s.name);
    docker(&["network", "disconnect", &network, &s.container("web")]);
    let reason = format!("network {network} disconnected on the host");
    drift_is_named_and_repaired(&s, "web", "recreate", &reason);
    let nets = inspect(
        &s.container("web"),
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
    );
    assert_eq!(nets.as_deref(), Some(network.as_str()));
}

#[test]
fn reconcile_drift_image_tag_repointed_is_followed() {
    ensure_debian();
    let tag = format!("{}:1", unique_name("retag"));
    let yaml = format!(
        "services:\n  web:{WEB}  app:\n    image: {tag}\n    command: [\"sleep\", \"600\"]\n    stop_signal: SIGKILL\n"
    );
    docker(&["tag", BUSYBOX_IMAGE, &tag]);
    let mut s = stack("drift-retag", &yaml);
    s.tags.push(tag.clone());
    apply_in_sync(&s);
    let busybox_id = inspect(BUSYBOX_IMAGE, "{{.Id}}").expect("busybox image");
    assert_eq!(
        inspect(&s.container("app"), "{{.Image}}").as_deref(),
        Some(busybox_id.as_str())
    );

    docker(&["tag", DEBIAN_IMAGE, &tag]);
    drift_is_named_and_repaired(&s, "app", "recreate", "image re-pointed");
    let debian_id = inspect(DEBIAN_IMAGE, "{{.Id}}").expect("debian image");
    assert_eq!(
        inspect(&s.container("app"), "{{.Image}}").as_deref(),
        Some(debian_id.as_str()),
        "the new container runs what the tag names now"
    );
}

// -- 6. a foreign container holding a name ------------------------------------------

#[test]
fn reconcile_never_touches_a_foreign_container_with_a_needed_name() {
    let yaml = format!("services:\n  web:{WEB}  api:{SLEEPER}");
    let mut s = stack("foreign", &yaml);
    let web = s.container("web");
    let foreign = docker(&["run", "-d", "--name", &web, BUSYBOX_IMAGE, "sleep", "600"]);
    s.foreign.push(foreign.clone());

    let text = s.dry_run("text");
    text.expect(1);
    assert!(
        text.stdout.contains("conflict") && text.stdout.contains(&web),
        "the conflict is not named:\n{text}"
    );
    let json = s.dry_run("json");
    json.expect(1);
    let plan = plan_json(&json);
    let conflicts = plan["conflicts"].as_array().expect("conflicts");
    assert_eq!(conflicts.len(), 1, "{json}");
    assert_eq!(conflicts[0]["target"].as_str(), Some(web.as_str()));
    assert_eq!(conflicts[0]["service"].as_str(), Some("web"));

    let apply = s.apply();
    apply.expect(1);
    assert!(
        apply.stderr.contains(&web) && apply.stderr.contains("not created by plimsoll"),
        "no clear error:\n{apply}"
    );
    assert_eq!(
        container_id(&web),
        foreign,
        "the foreign container was replaced"
    );
    assert!(is_running(&web), "the foreign container was stopped");
    assert_eq!(
        inspect(&web, "{{index .Config.Labels \"io.plimsoll.stack\"}}").as_deref(),
        Some(""),
        "the foreign container was relabelled"
    );
    let api = s.container("api");
    assert!(
        is_running(&api),
        "the other services were not applied:\n{apply}"
    );
    assert_eq!(s.containers().keys().collect::<Vec<_>>(), vec![&api]);

    let status = s.status();
    status.expect(0);
    assert!(status.stdout.contains("conflict"), "{status}");
    assert!(status.stdout.contains(&web), "{status}");
}

// -- 7. docker compose still sees the stack -----------------------------------------

#[test]
fn reconcile_stacks_are_visible_to_docker_compose() {
    let Some(compose) = compose_or_skip() else {
        return;
    };
    let yaml = format!(
        "services:\n  web:{WEB}  talker:\n    image: plimsoll-example/busybox:1\n    command: [\"sh\", \"-c\", \"echo hello-from-talker; exec sleep 600\"]\n    stop_signal: SIGKILL\n"
    );
    let s = stack("compose-visible", &yaml);
    s.apply().expect(0);
    let talker = s.container("talker");
    wait_for(
        "the talker's first log line",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            crate::support::container_logs(&talker)
                .contains("hello-from-talker")
                .then_some(())
        },
    );

    let neutral = tempfile::tempdir().expect("tempdir");
    let run_compose = |args: &[&str]| {
        let out = Command::new(&compose)
            .arg("-p")
            .arg(&s.name)
            .args(args)
            .current_dir(neutral.path())
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROJECT_NAME")
            .stdin(Stdio::null())
            .output()
            .expect("run docker compose");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "docker compose {args:?} failed: {text}"
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ps = run_compose(&["ps", "-a", "--format", "{{.Name}}"]);
    let listed: BTreeSet<&str> = ps
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let want: BTreeSet<String> = s.containers().into_keys().collect();
    assert_eq!(
        listed,
        want.iter().map(String::as_str).collect(),
        "docker compose ps lists what plimsoll created"
    );
    let logs = run_compose(&["logs", "--no-color", "talker"]);
    assert!(logs.contains("hello-from-talker"), "{logs}");
}

// -- 8. secrets never printed -----------------------------------------------------------

fn canary() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("canary-{:x}{:x}", nanos, std::process::id())
}

#[test]
fn reconcile_never_prints_secrets() {
    let yaml = r#"
services:
  db:
    image: plimsoll-example/busybox:1
    command: ["sleep", "600"]
    stop_signal: SIGKILL
    environment:
      DB_PASSWORD: ${DB_PASSWORD}
    secrets:
      - db_password
  api:
    image: plimsoll-example/busybox:1
    command: ["sleep", "600"]
    stop_signal: SIGKILL
    environment:
      DATABASE_URL: postgres://app:${DB_PASSWORD}@db:5432/app
    env_file: [api.env]
    depends_on: [db]
secrets:
  db_password:
    file: ./db_password.txt
"#;
    let s = stack("secrets", yaml);
    let set_secret = |value: &str| {
        s.write(".env", &format!("DB_PASSWORD={value}\n"));
        s.write("api.env", &format!("API_TOKEN={value}\n"));
        s.write("db_password.txt", &format!("{value}\n"));
    };
    let first = canary();
    let second = format!("{first}-rotated");
    // The second canary contains the first: check both by the first.
    let mut runs: Vec<Run> = Vec::new();

    set_secret(&first);
    for format in ["text", "json", "markdown"] {
        runs.push(s.dry_run(format));
        runs.last().unwrap().expect(2);
    }
    runs.push(s.apply());
    runs.last().unwrap().expect(0);
    runs.push(s.status());
    assert!(
        inspect(&s.container("api"), "{{range .Config.Env}}{{.}} {{end}}")
            .unwrap_or_default()
            .contains(&format!("API_TOKEN={first}")),
        "the secret reaches the container"
    );

    set_secret(&second);
    for format in ["text", "json", "markdown"] {
        let run = s.dry_run(format);
        run.expect(2);
        runs.push(run);
    }
    let plan = plan_json(&runs[runs.len() - 2]);
    let kinds: BTreeSet<(String, String)> = plan_actions(&plan).into_iter().collect();
    assert!(
        kinds.contains(&("recreate".into(), "api".into()))
            && kinds.contains(&("recreate".into(), "db".into())),
        "changed secrets recreate both services: {plan:#}"
    );
    // Both sides read the same once masked: said as hidden values only.
    assert_eq!(
        reasons_of(&plan, "api"),
        vec!["only hidden values changed: env API_TOKEN, env DATABASE_URL"],
        "{plan:#}"
    );
    runs.push(s.status());
    runs.push(s.apply());
    runs.last().unwrap().expect(0);
    runs.push(s.status());
    runs.push(s.dry_run("json"));
    runs.last().unwrap().expect(0);

    for run in &runs {
        assert!(
            !run.all().contains(&first),
            "a secret was printed by `plimsoll {}`:\n{run}",
            run.args.join(" ")
        );
    }
    for (path, bytes) in files_under(s.state.path()) {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&first),
            "a secret was written to {}",
            path.display()
        );
    }
}

// -- 9. the JSON plan is only JSON, and matches its schema ----------------------------

#[test]
fn reconcile_json_plan_matches_the_schema() {
    let yaml = |tag: &str| {
        format!(
            "services:\n  web:{WEB}    environment:\n      VERSION: \"{tag}\"\n  worker:{SLEEPER}    depends_on: [web]\n"
        )
    };
    let s = stack("json-schema", &yaml("1"));
    // Creates, on an empty engine.
    let run = s.dry_run("json");
    run.expect(2);
    let plan = plan_json(&run);
    assert!(!plan["actions"].as_array().expect("actions").is_empty());
    apply_in_sync(&s);

    // A recreate with a diff, and a start.
    s.set_compose(&yaml("2"));
    docker(&["stop", "-t", "1", &s.container("worker")]);
    let run = s.dry_run("json");
    run.expect(2);
    let plan = plan_json(&run);
    assert_eq!(
        plan_actions(&plan),
        vec![
            ("recreate".to_string(), "web".to_string()),
            ("start".to_string(), "worker".to_string())
        ],
        "{run}"
    );
    let diff = plan["actions"][0]["diff"]
        .as_str()
        .expect("a recreate has a diff");
    assert!(
        diff.contains("-env VERSION: 1") && diff.contains("+env VERSION: 2"),
        "{diff}"
    );

    // No changes.
    apply_in_sync(&s);
    let run = s.dry_run("json");
    run.expect(0);
    plan_json(&run);
}

// -- 10. renderer snapshots -------------------------------------------------------------

/// A plan with an action of every kind, reasons, a diff, a conflict and
/// objects to prune, built by hand so that the snapshots are stable.
fn representative_plan() -> Plan {
    let action = |action, service: Option<&str>, target: &str, reasons: &[&str]| Action {
        action,
        stack: "shop".into(),
        service: service.map(str::to_string),
        target: target.into(),
        reasons: reasons.iter().map(|r| r.to_string()).collect(),
        diff: None,
        replica: None,
    };
    let mut recreate = action(
        ActionKind::Recreate,
        Some("db"),
        "shop-db-1",
        &[
            "image changed: plimsoll-example/postgres:15 → plimsoll-example/postgres:16",
            "env POSTGRES_PASSWORD changed (value hidden)",
            "memory limit 256 MiB on the host, 512 MiB in git",
        ],
    );
    recreate.diff = Some(
        "--- live\n+++ git\n@@ -1,7 +1,7 @@\n env POSTGRES_DB: shop\n-env POSTGRES_PASSWORD: ********\n+env POSTGRES_PASSWORD: ********\n-image: plimsoll-example/postgres:15\n-image id: e4f2deafee46\n+image: plimsoll-example/postgres:16\n+image id: (not on this host)\n label io.plimsoll.service: db\n-memory limit: 256 MiB\n+memory limit: 512 MiB\n"
            .into(),
    );
    Plan {
        actions: vec![
            action(
                ActionKind::PullImage,
                None,
                "plimsoll-example/postgres:16",
                &["not on this host; used by db"],
            ),
            action(
                ActionKind::CreateNetwork,
                None,
                "shop_default",
                &["network does not exist"],
            ),
            action(
                ActionKind::RecreateNetwork,
                None,
                "shop_backend",
                &[
                    "internal false → true",
                    "ipam subnet 10.1.0.0/24 → 10.2.0.0/24",
                ],
            ),
            action(
                ActionKind::CreateVolume,
                None,
                "shop_db-data",
                &["volume does not exist"],
            ),
            recreate,
            action(
                ActionKind::Create,
                Some("api"),
                "shop-api-1",
                &["container shop-api-1 does not exist"],
            ),
            action(
                ActionKind::Start,
                Some("worker"),
                "shop-worker-1",
                &["stopped by hand (exit code 137)"],
            ),
            action(
                ActionKind::Restart,
                Some("cache"),
                "shop-cache-1",
                &["dependency db is replaced (depends_on restart: true)"],
            ),
            action(
                ActionKind::Remove,
                Some("worker"),
                "shop-worker-2",
                &["a second container for this service (keeping shop-worker-1)"],
            ),
        ],
        in_sync: vec!["shop/proxy".into()],
        conflicts: vec![Conflict {
            stack: "shop".into(),
            service: Some("web".into()),
            target: "shop-web-1".into(),
            reason: "container `shop-web-1` exists and was not created by plimsoll; plimsoll never touches it: remove or rename it (docker rm -f shop-web-1), or set container_name".into(),
        }],
        would_prune: vec![
            Orphan {
                kind: OrphanKind::Container,
                stack: "shop".into(),
                service: Some("legacy".into()),
                target: "shop-legacy-1".into(),
            },
            Orphan {
                kind: OrphanKind::Network,
                stack: "shop".into(),
                service: None,
                target: "shop_old".into(),
            },
        ],
        jobs: Vec::new(),
    }
}

#[test]
fn reconcile_plan_renderers_snapshot() {
    let plan = representative_plan();
    insta::assert_snapshot!("plan_text", plimsoll::plan::to_text(&plan, false));
    insta::assert_snapshot!("plan_markdown", plimsoll::plan::to_markdown(&plan));
    let json = serde_json::to_string_pretty(&plan).expect("the plan serializes");
    insta::assert_snapshot!("plan_json", json);

    // The same JSON matches the schema and reads back to the same plan.
    let value: Value = serde_json::from_str(&json).expect("JSON");
    let errors: Vec<String> = plan_schema()
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let back: Plan = serde_json::from_str(&json).expect("the plan deserializes");
    assert_eq!(back, plan);

    // An empty plan says so in every format.
    let empty = Plan::default();
    assert!(plimsoll::plan::to_text(&empty, false).contains("no changes"));
    assert!(plimsoll::plan::to_markdown(&empty).contains("No changes"));
}

// -- 11. rollback of a recreate that cannot become healthy -----------------------------

#[test]
fn reconcile_rolls_back_a_recreate_that_never_becomes_healthy() {
    let yaml = |version: &str, health: &str| {
        format!(
            r#"services:
  app:
    image: plimsoll-example/busybox:1
    command: ["sh", "-c", "mkdir -p /www && echo ok > /www/health && exec httpd -f -p 8080 -h /www"]
    stop_signal: SIGKILL
    environment:
      VERSION: "{version}"
    healthcheck:
      test: {health}
      interval: 1s
      timeout: 2s
      retries: 2
    x-plimsoll:
      health_timeout: 5s
  client:
    image: plimsoll-example/busybox:1
    command: ["sleep", "600"]
    stop_signal: SIGKILL
    depends_on:
      app:
        condition: service_healthy
"#
        )
    };
    let good = "wget -q -O /dev/null http://127.0.0.1:8080/health";
    let s = stack("rollback", &yaml("1", good));
    apply_in_sync(&s);
    let app = s.container("app");
    let before = s.containers();
    assert_eq!(before.len(), 2, "{before:?}");

    s.set_compose(&yaml("2", "[\"CMD-SHELL\", \"exit 1\"]"));
    let apply = s.apply();
    apply.expect(1);
    assert!(apply.stderr.contains("rolled back"), "{apply}");
    assert!(apply.stderr.contains("app"), "{apply}");

    assert_eq!(
        s.containers(),
        before,
        "the old containers serve again, nothing else is left"
    );
    assert_eq!(
        container_id(&app),
        before[&app],
        "the old container is back under its name"
    );
    assert!(is_running(&app), "the old container runs again");
    assert!(
        inspect(&format!("{app}-plimsoll-old"), "{{.Id}}").is_none(),
        "a -plimsoll-old container is left"
    );
    assert!(
        inspect(&app, "{{range .Config.Env}}{{.}} {{end}}")
            .unwrap_or_default()
            .contains("VERSION=1"),
        "the old version serves"
    );
    assert!(
        is_running(&s.container("client")),
        "the dependent was stopped"
    );
    wait_healthy(&app, Duration::from_secs(20));
}

// -- crash safety --------------------------------------------------------------

/// A stack of `n` services that all depend on a health-checked `db` with a
/// named volume; `version` goes into every service's environment, so changing
/// it replaces every container.
fn crash_stack(version: u32, services: usize, failing: bool) -> String {
    // The failing variant gives up quickly; the good one has room for a loaded machine.
    let (health, timeout) = if failing {
        ("test -f /nope", "3s")
    } else {
        ("true", "60s")
    };
    let mut y = format!(
        "services:\n  db:\n    image: plimsoll-example/busybox:1\n    command: [\"sh\", \"-c\", \"echo v{version} >> /data/log; exec sleep 600\"]\n    stop_signal: SIGKILL\n    environment: {{V: \"{version}\"}}\n    volumes: [data:/data]\n    healthcheck: {{test: \"{health}\", interval: 1s, retries: 1}}\n    x-plimsoll: {{health_timeout: {timeout}}}\n"
    );
    for i in 1..services {
        y.push_str(&format!(
            "  s{i}:\n    image: plimsoll-example/busybox:1\n    command: sleep 600\n    stop_signal: SIGKILL\n    environment: {{V: \"{version}\"}}\n    depends_on: {{db: {{condition: service_healthy}}}}\n"
        ));
    }
    y.push_str("volumes:\n  data: {}\n");
    y
}

/// After a run killed at any point, one normal reconcile converges: exactly
/// one running container per service, no kept `-plimsoll-old` container, an
/// empty plan, and the volume's data intact.
#[track_caller]
fn assert_converges(s: &TempStack, services: usize, marker: &str) {
    s.apply().expect(0);
    let containers = s.containers();
    assert_eq!(
        containers.len(),
        services,
        "one container per service: {containers:?}"
    );
    assert!(
        containers.keys().all(|n| !n.ends_with("-plimsoll-old")),
        "leftover: {containers:?}"
    );
    assert!(
        containers.keys().all(|n| is_running(n)),
        "all running: {containers:?}"
    );
    s.dry_run("text").expect(0);
    let log = docker(&["exec", &s.container("db"), "cat", "/data/log"]);
    assert!(log.contains(marker), "volume data lost: {log}");
}

#[test]
fn reconcile_killed_at_every_step_of_a_replacement_converges() {
    const SERVICES: usize = 5;
    let s = stack("crash", &crash_stack(0, SERVICES, false));
    s.apply().expect(0);
    const MAX_POINTS: u32 = 80;
    // The first point the run never reached: that run completed unkilled.
    let mut completed_at = None;
    for n in 1..=MAX_POINTS {
        s.set_compose(&crash_stack(n, SERVICES, false));
        let run = s.plimsoll_env(
            &["reconcile", &s.path_str()],
            &[("PLIMSOLL_FAULT_KILL_AFTER", &n.to_string())],
        );
        if run.code == Some(0) {
            // The whole replacement has fewer changing engine calls than n: every point was hit.
            completed_at = Some(n);
            assert_converges(&s, SERVICES, "v0");
            break;
        }
        assert_eq!(run.code, None, "killed by a signal at point {n}:\n{run}");
        assert_converges(&s, SERVICES, "v0");
    }
    let completed_at = completed_at.unwrap_or_else(|| {
        panic!("the run was still killed at point {MAX_POINTS}: not every kill point was tried")
    });
    let kill_points = completed_at - 1;
    eprintln!("{kill_points} kill points, then a run with no kill");
    assert!(
        kill_points >= 20,
        "only {kill_points} kill points were exercised"
    );
}

#[test]
fn reconcile_killed_while_rolling_back_converges() {
    const SERVICES: usize = 2;
    let s = stack("crashrb", &crash_stack(0, SERVICES, false));
    s.apply().expect(0);
    const MAX_POINTS: u32 = 40;
    // The first point the run never reached: that run rolled back unkilled.
    let mut completed_at = None;
    for n in 1..=MAX_POINTS {
        // A replacement that never becomes healthy: it is rolled back.
        s.set_compose(&crash_stack(1, SERVICES, true));
        let run = s.plimsoll_env(
            &["reconcile", &s.path_str()],
            &[("PLIMSOLL_FAULT_KILL_AFTER", &n.to_string())],
        );
        if run.code == Some(1) {
            completed_at = Some(n);
        } else {
            assert_eq!(run.code, None, "killed by a signal at point {n}:\n{run}");
        }
        // Back to the good revision: the host converges to it.
        s.set_compose(&crash_stack(0, SERVICES, false));
        assert_converges(&s, SERVICES, "v0");
        if completed_at.is_some() {
            break;
        }
    }
    let completed_at = completed_at.unwrap_or_else(|| {
        panic!("the run was still killed at point {MAX_POINTS}: not every kill point was tried")
    });
    let kill_points = completed_at - 1;
    eprintln!("{kill_points} kill points, then a run with no kill");
    assert!(
        kill_points >= 5,
        "only {kill_points} kill points were exercised"
    );
}

#[test]
fn reconcile_interrupted_by_sigterm_rolls_back_and_exits_1() {
    let yaml = |v: &str, delay: &str| {
        format!(
            "services:\n  web:\n    image: plimsoll-example/busybox:1\n    command: [\"sh\", \"-c\", \"sleep {delay}; touch /tmp/ok; exec sleep 600\"]\n    stop_signal: SIGKILL\n    environment: {{V: \"{v}\"}}\n    healthcheck: {{test: \"test -f /tmp/ok\", interval: 1s}}\n    x-plimsoll: {{health_timeout: 60s}}\n"
        )
    };
    let s = stack("sigterm", &yaml("1", "0"));
    s.apply().expect(0);
    let old_id = container_id(&s.container("web"));
    // The replacement takes 30 s to become healthy; SIGTERM arrives while plimsoll waits.
    s.set_compose(&yaml("2", "30"));
    let path = s.path_str();
    let child = s
        .command(&["reconcile", &path], &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start plimsoll");
    let parked = format!("{}-plimsoll-old", s.container("web"));
    wait_for(
        "the old container to be parked",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || inspect(&parked, "{{.Id}}").map(|_| ()),
    );
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().expect("wait for plimsoll");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(stderr.contains("rolled back"), "{stderr}");
    // The old container serves again under its own name; nothing is left over.
    assert_eq!(container_id(&s.container("web")), old_id);
    assert!(is_running(&s.container("web")));
    let containers = s.containers();
    assert_eq!(containers.len(), 1, "{containers:?}");
}

// -- engine cache (live::cache): drift found through it ---------------------------

/// The engine cache in a stack's state directory, as plimsoll reads it.
fn engine_cache(s: &TempStack) -> plimsoll::live::cache::EngineCache {
    let bytes = plimsoll::state::read_sealed_at(s.state.path(), plimsoll::state::ENGINE_CACHE)
        .expect("the state directory holds a readable engine cache");
    let host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    plimsoll::live::cache::EngineCache::parse(&bytes, &host)
        .expect("an engine cache of this engine")
}

/// Applies, then reconciles again (a no-op through the cache), and checks
/// that the cache holds every container of the stack and a watermark.
#[track_caller]
fn apply_with_warm_cache(s: &TempStack) {
    apply_in_sync(s);
    let again = s.apply();
    again.expect(0);
    assert!(again.stdout.contains("no changes"), "{again}");
    let cache = engine_cache(s);
    for (name, id) in s.containers() {
        assert!(cache.containers.contains_key(&id), "{name} is not cached");
    }
    assert!(
        cache.watermark.is_some(),
        "no watermark: {:?}",
        cache.watermark
    );
    assert!(cache.lists.is_some(), "the engine's lists are not cached");
    let mode = fs::metadata(s.state.path().join(plimsoll::state::ENGINE_CACHE))
        .expect("engine cache")
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
}

/// The cached inspect of `name`, by its current ID.
fn cached_inspect(s: &TempStack, name: &str) -> bollard::models::ContainerInspectResponse {
    engine_cache(s)
        .containers
        .get(&container_id(name))
        .map(|c| (**c).clone())
        .unwrap_or_else(|| panic!("{name} is not in the engine cache"))
}

#[test]
fn reconcile_engine_cache_finds_docker_update() {
    let s = stack("cache-update", &web_and_worker());
    apply_with_warm_cache(&s);
    docker(&[
        "update",
        "--memory",
        "64m",
        "--memory-swap",
        "128m",
        &s.container("worker"),
    ]);
    drift_is_named_and_repaired(
        &s,
        "worker",
        "recreate",
        "memory limit 64 MiB on the host, none in git",
    );
    // The replacement is cached by the next run (dry runs never write).
    s.apply().expect(0);
    let cached = cached_inspect(&s, &s.container("worker"));
    assert_eq!(cached.host_config.and_then(|h| h.memory), Some(0));
}

#[test]
fn reconcile_engine_cache_finds_network_disconnect() {
    let s = stack("cache-net", &web_and_worker());
    apply_with_warm_cache(&s);
    let network = format!("{}_default", s.name);
    docker(&["network", "disconnect", &network, &s.container("worker")]);
    let reason = format!("network {network} disconnected on the host");
    drift_is_named_and_repaired(&s, "worker", "recreate", &reason);
}

#[test]
fn reconcile_engine_cache_sees_a_restart() {
    let s = stack("cache-restart", &web_and_worker());
    apply_with_warm_cache(&s);
    let worker = s.container("worker");
    let before = cached_inspect(&s, &worker);
    docker(&["restart", "-t", "0", &worker]);
    // Stopped by hand and started again: in sync, and the cache has the new run.
    let run = s.apply();
    run.expect(0);
    assert!(run.stdout.contains("no changes"), "{run}");
    let after = cached_inspect(&s, &worker);
    let started = |c: &bollard::models::ContainerInspectResponse| {
        c.state.as_ref().and_then(|st| st.started_at.clone())
    };
    assert_ne!(started(&after), started(&before), "the restart is not seen");
    assert_eq!(
        started(&after),
        inspect(&worker, "{{.State.StartedAt}}"),
        "the cached inspect is not the current one"
    );
    // Stopped by hand: the list's state differs from the cache's.
    docker(&["stop", "-t", "0", &worker]);
    drift_is_named_and_repaired(&s, "worker", "start", "stopped by hand");
}

#[test]
fn reconcile_engine_cache_sees_a_container_removed_by_hand() {
    let s = stack("cache-rm", &web_and_worker());
    apply_with_warm_cache(&s);
    let worker = s.container("worker");
    let id = container_id(&worker);
    // One `destroy` event: the cached list is kept but for that container,
    // which the engine no longer lists.
    docker(&["rm", "-f", &worker]);
    let reason = format!("container {worker} does not exist");
    drift_is_named_and_repaired(&s, "worker", "create", &reason);
    let cache = engine_cache(&s);
    let listed = cache.lists.expect("the lists are cached");
    assert!(
        !listed
            .containers
            .iter()
            .any(|c| c.id.as_deref() == Some(&id)),
        "the removed container is still in the cached list"
    );
    assert!(!cache.containers.contains_key(&id));
}

/// Sends `POST <path>` to the engine's API over its unix socket, without a
/// process per request (hundreds of events in a second or two).
fn engine_post(path: &str) {
    use std::io::{Read as _, Write as _};
    let host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let socket = host
        .strip_prefix("unix://")
        .expect("the event gap test talks to a unix socket (DOCKER_HOST=unix://...)");
    let mut conn = std::os::unix::net::UnixStream::connect(socket).expect("the engine's socket");
    write!(
        conn,
        "POST {path} HTTP/1.0\r\nHost: docker\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("send a request");
    let mut reply = String::new();
    conn.read_to_string(&mut reply).expect("read the reply");
    assert!(
        reply.starts_with("HTTP/1.0 204") || reply.starts_with("HTTP/1.1 204"),
        "{path}: {reply}"
    );
}

#[test]
fn reconcile_engine_cache_gap_in_the_event_log_means_a_full_inspect() {
    let mut s = stack("cache-gap", &web_and_worker());
    apply_with_warm_cache(&s);
    let foreign = docker(&[
        "run",
        "-d",
        "--name",
        &unique_name("cache-gap-noise"),
        BUSYBOX_IMAGE,
        "sleep",
        "600",
    ]);
    s.foreign.push(foreign.clone());
    // The drift's event, then more events than the engine keeps (256), none
    // naming the worker: its `update` is rotated out of the log. Each
    // `kill -s CONT` is one `kill` event and changes no state (pause/unpause
    // raced: the engine records "paused" after the call returns).
    docker(&[
        "update",
        "--memory",
        "64m",
        "--memory-swap",
        "128m",
        &s.container("worker"),
    ]);
    for _ in 0..300 {
        engine_post(&format!("/containers/{foreign}/kill?signal=SIGCONT"));
    }
    drift_is_named_and_repaired(
        &s,
        "worker",
        "recreate",
        "memory limit 64 MiB on the host, none in git",
    );
}

#[test]
fn reconcile_engine_cache_unreadable_means_a_full_inspect() {
    let s = stack("cache-corrupt", &web_and_worker());
    apply_with_warm_cache(&s);
    docker(&[
        "update",
        "--memory",
        "64m",
        "--memory-swap",
        "128m",
        &s.container("worker"),
    ]);
    fs::write(
        s.state.path().join(plimsoll::state::ENGINE_CACHE),
        b"not a cache",
    )
    .expect("spoil the cache");
    drift_is_named_and_repaired(
        &s,
        "worker",
        "recreate",
        "memory limit 64 MiB on the host, none in git",
    );
    // Rewritten whole by the apply.
    engine_cache(&s);
}

#[test]
fn reconcile_dry_run_without_a_state_directory_writes_nothing() {
    let s = stack("cache-dry", &web_and_worker());
    apply_in_sync(&s);
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let missing = elsewhere.path().join("state");
    let path = s.path_str();
    let mut cmd =
        crate::support::plimsoll_command(&missing, s.path(), &["reconcile", &path, "--dry-run"]);
    let run = Run::of(&["reconcile", "--dry-run"], &mut cmd);
    run.expect(0);
    assert!(run.stdout.contains("no changes"), "{run}");
    assert!(!missing.exists(), "a dry run created {}", missing.display());
}
