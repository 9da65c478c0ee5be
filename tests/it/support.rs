//! Shared helpers for tests that drive the real Docker engine through the
//! `docker` CLI: unique names, cleanup guards, and the offline test images.
//!
//! Every test names its containers (and networks, volumes) with
//! [`unique_name`], so that tests can run in parallel under cargo nextest and
//! next to anything else on the engine, and registers them with a [`Cleanup`]
//! guard that removes them when the test ends, by panic too.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The images that `scripts/test-images.sh` builds, with the argument that
/// selects each one.
pub const BUSYBOX_IMAGE: &str = "plimsoll-example/busybox:1";
pub const POSTGRES_IMAGE: &str = "plimsoll-example/postgres:15";
pub const DEBIAN_IMAGE: &str = "plimsoll-example/debian:bookworm";

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A name no other test (in this process or another) uses:
/// `plimsoll-it-<what>-<pid>-<nanos>-<counter>`. Valid as a container,
/// network, volume or Compose project name (lowercase, digits, dashes).
pub fn unique_name(what: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let what: String = what
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!(
        "plimsoll-it-{what}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `docker ARGS` and returns its output, whatever the exit status.
pub fn docker_output(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `docker {}`: {e}", args.join(" ")))
}

/// Runs `docker ARGS`, panics unless it exits 0, returns its trimmed stdout.
pub fn docker(args: &[&str]) -> String {
    let out = docker_output(args);
    assert!(
        out.status.success(),
        "`docker {}` failed ({}):\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether the engine has an image with this tag.
pub fn image_exists(image: &str) -> bool {
    docker_output(&["image", "inspect", "--format", "{{.Id}}", image])
        .status
        .success()
}

/// The lock file that serialises image builds and tool fetches across test
/// processes: `target/.test-images.lock` (or under `CARGO_TARGET_DIR`).
fn lock_file() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    std::fs::create_dir_all(&target).expect("create the target directory");
    target.join(".test-images.lock")
}

/// Makes sure `image` exists, building it with `scripts/test-images.sh
/// <which>` when it does not. The build is serialised across test processes
/// with `flock` on `target/.test-images.lock`, and the script skips images that
/// another process built meanwhile.
pub fn ensure_image(image: &str, which: &str) {
    if image_exists(image) {
        return;
    }
    let root = repo_root();
    let lock = lock_file();
    let script = root.join("scripts/test-images.sh");
    eprintln!(
        "{image} is missing: building it with {} {which}",
        script.display()
    );
    let status = Command::new("flock")
        .arg(&lock)
        .arg(&script)
        .arg(which)
        .current_dir(&root)
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run flock {}: {e}", script.display()));
    assert!(
        status.success(),
        "{} {which} failed: {status}",
        script.display()
    );
    assert!(
        image_exists(image),
        "{image} still missing after {}",
        script.display()
    );
}

pub fn ensure_busybox() {
    ensure_image(BUSYBOX_IMAGE, "busybox");
}

pub fn ensure_postgres() {
    ensure_image(POSTGRES_IMAGE, "postgres");
}

pub fn ensure_debian() {
    ensure_image(DEBIAN_IMAGE, "debian");
}

/// Removes what a test created when it goes out of scope, panics included:
/// containers (`docker rm -f -v`), then networks, then volumes.
#[derive(Default)]
pub struct Cleanup {
    containers: Vec<String>,
    networks: Vec<String>,
    volumes: Vec<String>,
    projects: Vec<String>,
    stacks: Vec<String>,
}

impl Cleanup {
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh unique container name, removed on drop.
    pub fn container(&mut self, what: &str) -> String {
        let name = unique_name(what);
        self.containers.push(name.clone());
        name
    }

    /// A fresh unique network name, removed on drop.
    pub fn network(&mut self, what: &str) -> String {
        let name = unique_name(what);
        self.networks.push(name.clone());
        name
    }

    /// A fresh unique volume name, removed on drop.
    pub fn volume(&mut self, what: &str) -> String {
        let name = unique_name(what);
        self.volumes.push(name.clone());
        name
    }

    /// A fresh unique Compose project name: on drop every container, network
    /// and volume labelled `com.docker.compose.project=<name>` is removed.
    pub fn project(&mut self, what: &str) -> String {
        let name = unique_name(what);
        self.projects.push(name.clone());
        name
    }

    /// A fresh unique plimsoll stack name: on drop every container, network
    /// and volume labelled `io.plimsoll.stack=<name>` is removed.
    pub fn stack(&mut self, what: &str) -> String {
        let name = unique_name(what);
        self.stacks.push(name.clone());
        name
    }

    /// Registers an existing container name for removal.
    pub fn add_container(&mut self, name: impl Into<String>) {
        self.containers.push(name.into());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let mut containers = self.containers.clone();
        let mut networks = self.networks.clone();
        let mut volumes = self.volumes.clone();
        let labels = self
            .projects
            .iter()
            .map(|p| format!("com.docker.compose.project={p}"))
            .chain(self.stacks.iter().map(|s| format!("io.plimsoll.stack={s}")));
        for label in labels {
            containers.extend(labelled_ids("container", &label));
            networks.extend(labelled_ids("network", &label));
            volumes.extend(labelled_ids("volume", &label));
        }
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(containers.iter().map(String::as_str));
            quiet(&args);
        }
        for n in &networks {
            quiet(&["network", "rm", n]);
        }
        if !volumes.is_empty() {
            let mut args = vec!["volume", "rm", "-f"];
            args.extend(volumes.iter().map(String::as_str));
            quiet(&args);
        }
    }
}

/// Polls `check` every `every` until it returns `Some`, or panics with `what`
/// after `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        sleep(every);
    }
}

/// A container's health status (`starting`, `healthy`, `unhealthy`), or
/// `None` when it has no healthcheck or does not exist.
pub fn health_status(container: &str) -> Option<String> {
    let out = docker_output(&[
        "inspect",
        "--format",
        "{{if .State.Health}}{{.State.Health.Status}}{{end}}",
        container,
    ]);
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

/// Waits until the container's healthcheck reports `healthy`; panics with its
/// logs and last health probes if it stops running or `timeout` passes.
///
/// An `unhealthy` status on the way is waited through, as the engine does: a
/// healthcheck with a short interval and no start period (say
/// `pg_isready`, every 1s) fails its first probes while the service
/// initialises, then turns healthy.
pub fn wait_healthy(container: &str, timeout: Duration) {
    let start = Instant::now();
    loop {
        let status = health_status(container);
        if status.as_deref() == Some("healthy") {
            return;
        }
        let running = docker_output(&["inspect", "--format", "{{.State.Running}}", container]);
        let running = String::from_utf8_lossy(&running.stdout).trim() == "true";
        if !running || start.elapsed() > timeout {
            let why = if running {
                format!("not healthy after {timeout:?}")
            } else {
                "is not running".to_string()
            };
            let probes = docker_output(&[
                "inspect",
                "--format",
                "{{if .State.Health}}{{range .State.Health.Log}}exit {{.ExitCode}}: {{.Output}}\n{{end}}{{end}}",
                container,
            ]);
            panic!(
                "{container} {why} (health {status:?})\nlast probes:\n{}\nlogs:\n{}",
                String::from_utf8_lossy(&probes.stdout),
                container_logs(container)
            );
        }
        sleep(Duration::from_millis(250));
    }
}

/// The container's stdout and stderr, for failure messages.
pub fn container_logs(container: &str) -> String {
    let out = docker_output(&["logs", "--tail", "200", container]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The path of the Docker Compose v2 binary for tests: `PLIMSOLL_COMPOSE_BIN`,
/// else `.tools/docker-compose` (made by `scripts/fetch-compose.sh`).
pub fn compose_bin() -> PathBuf {
    std::env::var_os("PLIMSOLL_COMPOSE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tools/docker-compose"))
}

/// [`compose_bin`] when it is there; else a missing precondition
/// ([`missing_precondition`]): `None` outside CI, a failure under `CI=true`.
#[track_caller]
pub fn compose_or_skip() -> Option<PathBuf> {
    let bin = compose_bin();
    if bin.is_file() {
        return Some(bin);
    }
    missing_precondition(&format!(
        "no Compose v2 binary at {} (run scripts/fetch-compose.sh or set PLIMSOLL_COMPOSE_BIN)",
        bin.display()
    ));
    None
}

/// Whether this is a CI run (`CI=true`, as `.ci/run` runs): then every
/// precondition of a test must hold, and a missing one fails the test.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A test cannot run here: `why` says what is missing and how to get it.
/// Under `CI=true` this panics, so that a green CI run means every test ran
/// (`scripts/test.sh` provides every precondition); elsewhere it prints
/// `skipped: WHY` and returns, and the caller returns too.
#[track_caller]
pub fn missing_precondition(why: &str) {
    if in_ci() {
        panic!(
            "{why}\n(CI=true: a test whose precondition is missing fails instead of skipping; \
             scripts/test.sh installs what the tests need)"
        );
    }
    eprintln!("skipped: {why} (scripts/test.sh, as root, installs what the tests need)");
}

/// [`compose_bin`], fetched first with `scripts/fetch-compose.sh` (under the
/// same lock as the images) when it is missing.
pub fn ensure_compose() -> PathBuf {
    let bin = compose_bin();
    if bin.is_file() {
        return bin;
    }
    let root = repo_root();
    let script = root.join("scripts/fetch-compose.sh");
    let status = Command::new("flock")
        .arg(lock_file())
        .arg(&script)
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run flock {}: {e}", script.display()));
    assert!(status.success(), "{} failed: {status}", script.display());
    assert!(
        bin.is_file(),
        "{} missing after {}",
        bin.display(),
        script.display()
    );
    bin
}

/// What one run of plimsoll printed, and how it exited.
pub struct Run {
    pub args: Vec<String>,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "plimsoll {}\nexit code {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }
}

impl Run {
    /// Asserts the exit code, printing everything when it differs.
    #[track_caller]
    pub fn expect(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "unexpected exit code:\n{self}");
        self
    }

    /// stdout and stderr together.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// stdout as one JSON document.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{self}"))
    }

    /// stdout as a JSON plan, valid against the checked-in `schemas/plan.json`.
    #[track_caller]
    pub fn plan_json(&self) -> serde_json::Value {
        let plan = self.json();
        let text = std::fs::read_to_string(crate::support::repo_root().join("schemas/plan.json"))
            .expect("schemas/plan.json");
        let schema: serde_json::Value = serde_json::from_str(&text).expect("plan.json is JSON");
        let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
        let errors: Vec<String> = validator
            .iter_errors(&plan)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "the plan does not match schemas/plan.json:\n{}\n{self}",
            errors.join("\n")
        );
        plan
    }
}

/// Full IDs of the engine objects of `kind` carrying `label`.
pub fn labelled_ids(kind: &str, label: &str) -> Vec<String> {
    let filter = format!("label={label}");
    let mut args = vec![kind, "ls", "-q", "--filter", filter.as_str()];
    if kind == "container" {
        args.insert(2, "-a");
    }
    if kind != "volume" {
        args.push("--no-trunc");
    }
    let out = docker_output(&args);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Runs a docker command, ignoring its output and outcome (cleanup).
pub fn quiet(args: &[&str]) {
    let _ = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Every file under `dir`, recursively, with its bytes ("never stored" checks).
pub fn files_under(dir: &std::path::Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.push((p, bytes));
        }
    }
    out
}

/// The containers carrying `io.plimsoll.stack=<stack>`: name -> full ID.
pub fn stack_containers(stack: &str) -> std::collections::BTreeMap<String, String> {
    let filter = format!("label=io.plimsoll.stack={stack}");
    docker(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &filter,
        "--format",
        "{{.Names}} {{.ID}}",
    ])
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(n, id)| (n.to_string(), id.to_string()))
    .collect()
}

/// The actions of a JSON plan as (action, service or target) pairs, in order.
pub fn plan_actions(plan: &serde_json::Value) -> Vec<(String, String)> {
    plan["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| {
            let who = a["service"].as_str().or(a["target"].as_str()).unwrap_or("");
            (
                a["action"].as_str().unwrap_or("").to_string(),
                who.to_string(),
            )
        })
        .collect()
}

/// Runs plimsoll in `dir` with a clean environment (PATH, a HOME that does
/// not exist, and `env`), whatever the exit status.
pub fn plimsoll_output(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plimsoll"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent-home")
        .envs(env.iter().copied())
        .output()
        .expect("run plimsoll")
}

/// A fresh temporary directory named `<prefix>…`, removed on drop.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a tempdir {prefix}: {e}"))
}

/// Removes every container (with its anonymous volumes) and network labelled
/// `io.plimsoll.stack=<stack>`: a test stack's cleanup, also on failure.
pub fn remove_stack(stack: &str) {
    let mine = format!("io.plimsoll.stack={stack}");
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

/// `plimsoll --state-dir STATE ARGS` run in `dir` with a clean environment:
/// PATH, NO_COLOR, the engine's `DOCKER_HOST` and TLS variables, no stdin.
/// Callers add what their test needs (`HOME`, more variables).
pub fn plimsoll_command(state: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plimsoll"));
    cmd.arg("--state-dir")
        .arg(state)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    for var in ["DOCKER_HOST", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY"] {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    cmd
}

impl Run {
    /// Runs `cmd` (plimsoll with `args`) to the end.
    pub fn of(args: &[&str], cmd: &mut Command) -> Run {
        let out = cmd.output().expect("run plimsoll");
        Run {
            args: args.iter().map(|a| a.to_string()).collect(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}
