//! The safety guardrails of `plimsoll reconcile` on the real engine: prune only
//! when asked (flag, `plimsoll.yaml`, `x-plimsoll.prune: false` exemption),
//! never a whole stack without `--allow-empty`, volume data never lost
//! (recreate, prune, opt-in volume prune, anonymous volumes carried over),
//! adoption of a stack `docker compose` made, one apply at a time (the lock),
//! rollback of a bad revision and `plimsoll rollback` without the repository,
//! no secret in the state directory, malformed repositories change nothing,
//! and the unknown-containers policy.
//!
//! Isolation: prune of stacks removed from a repository reaches every stack
//! created from the same repository directory (`io.plimsoll.repository`), so
//! every test owns a [`Repo`]: its own temporary repository, unique stack
//! names, its own `--state-dir`, and a drop guard that removes everything
//! labelled with its stack names or its repository (containers, the
//! `-plimsoll-old` ones included, networks, volumes), the Compose projects of
//! the same names, and what the test made by hand, panics included. Services
//! are busybox with `stop_signal: SIGKILL`, 1 s health checks, no host ports.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::{
    BUSYBOX_IMAGE, Run, compose_or_skip, docker, docker_output, ensure_busybox, unique_name,
    wait_for,
};
use crate::support::{files_under, labelled_ids, quiet, stack_containers as containers};

const STACK_LABEL: &str = "io.plimsoll.stack";
const REPOSITORY_LABEL: &str = "io.plimsoll.repository";

// -- helpers -------------------------------------------------------------------

/// A config repository of its own (`<tmp>/repo`, with `stacks/`), a state
/// directory of its own, and everything the test made on the engine, removed
/// on drop.
struct Repo {
    tmp: tempfile::TempDir,
    state: tempfile::TempDir,
    /// The canonical repository root: the value of `io.plimsoll.repository`.
    canonical: String,
    /// Every stack name the test used.
    names: Vec<String>,
    /// Containers the test made by hand, by name.
    foreign: Vec<String>,
    /// Volumes to remove besides the labelled ones (anonymous volumes).
    volumes: Vec<String>,
}

fn repo() -> Repo {
    ensure_busybox();
    let tmp = tempfile::Builder::new()
        .prefix("plimsoll-it-safety-")
        .tempdir()
        .expect("create a repository tempdir");
    fs::create_dir_all(tmp.path().join("repo/stacks")).expect("create stacks/");
    let canonical = fs::canonicalize(tmp.path().join("repo"))
        .expect("canonical repository root")
        .display()
        .to_string();
    Repo {
        tmp,
        state: tempfile::Builder::new()
            .prefix("plimsoll-it-state-")
            .tempdir()
            .expect("create a state tempdir"),
        canonical,
        names: Vec::new(),
        foreign: Vec::new(),
        volumes: Vec::new(),
    }
}

impl Repo {
    fn root(&self) -> PathBuf {
        self.tmp.path().join("repo")
    }

    fn root_str(&self) -> String {
        self.root().display().to_string()
    }

    /// A fresh unique stack name, cleaned up on drop.
    fn stack(&mut self, what: &str) -> String {
        let name = unique_name(what);
        self.names.push(name.clone());
        name
    }

    /// Writes a file under the repository root, creating its directories.
    fn write(&self, rel: &str, content: &str) {
        let path = self.root().join(rel);
        fs::create_dir_all(path.parent().expect("a parent")).expect("create directories");
        fs::write(&path, content).expect("write a repository file");
    }

    /// Writes `stacks/<name>/compose.yaml` with `name: <name>` first.
    fn set_stack(&self, name: &str, yaml: &str) {
        self.write(
            &format!("stacks/{name}/compose.yaml"),
            &format!("name: {name}\n{yaml}"),
        );
    }

    fn set_config(&self, yaml: &str) {
        self.write("plimsoll.yaml", yaml);
    }

    /// Removes a whole stack directory from the repository.
    fn remove_stack(&self, name: &str) {
        fs::remove_dir_all(self.root().join("stacks").join(name)).expect("remove a stack dir");
    }

    /// Moves the repository away (`hide`) and back (`unhide`).
    fn hide(&self) {
        fs::rename(self.root(), self.tmp.path().join("moved")).expect("move the repository");
    }

    fn unhide(&self) {
        fs::rename(self.tmp.path().join("moved"), self.root()).expect("move it back");
    }

    /// `plimsoll --state-dir <state> ARGS`, run outside the repository with a
    /// clean environment (interpolation reads the process environment).
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = crate::support::plimsoll_command(self.state.path(), self.tmp.path(), args);
        cmd.env(
            "HOME",
            std::env::var_os("HOME").unwrap_or("/nonexistent".into()),
        );
        cmd
    }

    fn plimsoll(&self, args: &[&str]) -> Run {
        Run::of(args, &mut self.command(args))
    }

    /// `plimsoll reconcile <repo> EXTRA`.
    fn reconcile(&self, extra: &[&str]) -> Run {
        let root = self.root_str();
        let mut args = vec!["reconcile", root.as_str()];
        args.extend_from_slice(extra);
        self.plimsoll(&args)
    }

    /// `plimsoll reconcile <repo> --dry-run --format json EXTRA`.
    fn plan(&self, extra: &[&str]) -> (Run, Value) {
        let mut args = vec!["--dry-run", "--format", "json"];
        args.extend_from_slice(extra);
        let run = self.reconcile(&args);
        let plan = if run.code == Some(1) {
            Value::Null
        } else {
            run.plan_json()
        };
        (run, plan)
    }

    fn status(&self) -> Run {
        let root = self.root_str();
        self.plimsoll(&["status", &root])
    }

    /// `plimsoll history --format json`.
    #[track_caller]
    fn history(&self) -> Vec<Value> {
        let run = self.plimsoll(&["history", "--format", "json"]);
        run.expect(0);
        match run.json() {
            Value::Array(records) => records,
            other => panic!("history is not a JSON array: {other:#}"),
        }
    }

    /// Starts a container plimsoll does not manage; removed on drop.
    fn foreign_container(&mut self, what: &str) -> String {
        let name = unique_name(what);
        self.foreign.push(name.clone());
        docker(&["run", "-d", "--name", &name, BUSYBOX_IMAGE, "sleep", "600"]);
        name
    }

    /// The content of `file` in a volume, read by a throwaway container.
    fn read_volume(&mut self, volume: &str, file: &str) -> String {
        let name = unique_name("reader");
        self.foreign.push(name.clone());
        let mount = format!("{volume}:/v:ro");
        let path = format!("/v/{file}");
        docker(&[
            "run",
            "--rm",
            "--name",
            &name,
            "-v",
            &mount,
            BUSYBOX_IMAGE,
            "cat",
            &path,
        ])
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        let mut labels = vec![format!("{REPOSITORY_LABEL}={}", self.canonical)];
        for n in &self.names {
            labels.push(format!("{STACK_LABEL}={n}"));
            labels.push(format!("com.docker.compose.project={n}"));
        }
        let mut containers = self.foreign.clone();
        for l in &labels {
            containers.extend(labelled_ids("container", l));
        }
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(containers.iter().map(String::as_str));
            quiet(&args);
        }
        let mut volumes = self.volumes.clone();
        for l in &labels {
            for n in labelled_ids("network", l) {
                quiet(&["network", "rm", &n]);
            }
            volumes.extend(labelled_ids("volume", l));
        }
        if !volumes.is_empty() {
            let mut args = vec!["volume", "rm", "-f"];
            args.extend(volumes.iter().map(String::as_str));
            quiet(&args);
        }
    }
}

/// A background process, killed on drop if still running.
struct Background(Option<Child>);

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
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

fn env_of(name: &str) -> String {
    inspect(name, "{{range .Config.Env}}{{.}} {{end}}").unwrap_or_default()
}

fn volume_exists(name: &str) -> bool {
    docker_output(&["volume", "inspect", name]).status.success()
}

/// Runs a shell script in a container, returns its trimmed stdout.
fn exec(container: &str, script: &str) -> String {
    docker(&["exec", container, "sh", "-c", script])
}

/// The actions of a JSON plan as (action, target).
fn actions(plan: &Value) -> Vec<(String, String)> {
    plan["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap_or_default().to_string(),
                a["target"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The `would_prune` entries of a JSON plan as (kind, target).
fn would_prune(plan: &Value) -> BTreeSet<(String, String)> {
    plan["would_prune"]
        .as_array()
        .expect("would_prune")
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap_or_default().to_string(),
                o["target"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn pair(a: &str, b: impl Into<String>) -> (String, String) {
    (a.to_string(), b.into())
}

fn without(mut m: BTreeMap<String, String>, key: &str) -> BTreeMap<String, String> {
    assert!(m.remove(key).is_some(), "{key} not in {m:?}");
    m
}

/// A busybox process that runs until killed.
const SLEEPER: &str = r#"
    image: plimsoll-example/busybox:1
    command: ["sleep", "600"]
    stop_signal: SIGKILL
"#;

// -- 1. prune only with --prune ---------------------------------------------------

#[test]
fn safety_prune_only_with_the_flag() {
    let mut r = repo();
    let s = r.stack("prune-flag");
    r.set_stack(
        &s,
        &format!("services:\n  a:{SLEEPER}  b:{SLEEPER}  c:{SLEEPER}"),
    );
    r.reconcile(&[]).expect(0);
    let before = containers(&s);
    assert_eq!(before.len(), 3, "{before:?}");
    let b = format!("{s}-b-1");

    r.set_stack(&s, &format!("services:\n  a:{SLEEPER}  c:{SLEEPER}"));
    let dry = r.reconcile(&["--dry-run"]);
    dry.expect(0);
    assert!(
        dry.stdout.contains("would prune") && dry.stdout.contains(&b),
        "{dry}"
    );
    insta::assert_snapshot!(
        "prune_listed_without_the_flag",
        dry.stdout.replace(&s, "[STACK]")
    );
    let (run, plan) = r.plan(&[]);
    run.expect(0);
    assert_eq!(actions(&plan), vec![], "{run}");
    assert_eq!(
        would_prune(&plan),
        BTreeSet::from([pair("container", &b)]),
        "{run}"
    );

    let (run, plan) = r.plan(&["--prune"]);
    run.expect(2);
    assert_eq!(actions(&plan), vec![pair("remove", &b)], "{run}");
    assert_eq!(containers(&s), before, "a dry-run removed something");

    // An apply without the flag removes nothing.
    let apply = r.reconcile(&[]);
    apply.expect(0);
    assert!(apply.stdout.contains("would prune"), "{apply}");
    assert_eq!(containers(&s), before, "removed without --prune");

    r.reconcile(&["--prune"]).expect(0);
    let after = without(before, &b);
    assert_eq!(
        containers(&s),
        after,
        "exactly b goes; a and c are the same containers"
    );
    assert!(after.keys().all(|c| is_running(c)), "{after:?}");
    let (run, plan) = r.plan(&["--prune"]);
    run.expect(0);
    assert!(would_prune(&plan).is_empty(), "{run}");
}

// -- 2. prune: true in plimsoll.yaml, and x-plimsoll.prune: false ------------------

#[test]
fn safety_prune_from_plimsoll_yaml_and_the_service_exemption() {
    let mut r = repo();
    let s = r.stack("prune-config");
    let t = r.stack("prune-other");
    r.set_config(&format!("stacks:\n  {s}:\n    prune: true\n"));
    let keep = format!("{SLEEPER}    x-plimsoll:\n      prune: false\n");
    r.set_stack(
        &s,
        &format!("services:\n  a:{SLEEPER}  b:{SLEEPER}  keep:{keep}"),
    );
    r.set_stack(&t, &format!("services:\n  x:{SLEEPER}  y:{SLEEPER}"));
    r.reconcile(&[]).expect(0);
    let (s0, t0) = (containers(&s), containers(&t));
    assert_eq!((s0.len(), t0.len()), (3, 2), "{s0:?} {t0:?}");
    let (b, keep_c, y) = (
        format!("{s}-b-1"),
        format!("{s}-keep-1"),
        format!("{t}-y-1"),
    );

    // b leaves s (prune: true), y leaves t (no setting): without the flag, only b goes.
    r.set_stack(&s, &format!("services:\n  a:{SLEEPER}  keep:{keep}"));
    r.set_stack(&t, &format!("services:\n  x:{SLEEPER}"));
    let (run, plan) = r.plan(&[]);
    run.expect(2);
    assert_eq!(actions(&plan), vec![pair("remove", &b)], "{run}");
    assert!(would_prune(&plan).contains(&pair("container", &y)), "{run}");
    r.reconcile(&[]).expect(0);
    let s1 = without(s0, &b);
    assert_eq!(containers(&s), s1);
    assert_eq!(containers(&t), t0, "t has no prune setting");

    // keep leaves git: its container says prune: false and stays, even with --prune.
    r.set_stack(&s, &format!("services:\n  a:{SLEEPER}"));
    let (run, plan) = r.plan(&["--prune"]);
    run.expect(2);
    assert_eq!(actions(&plan), vec![pair("remove", &y)], "{run}");
    assert!(
        would_prune(&plan).contains(&pair("container", &keep_c)),
        "the exempt container is still reported: {run}"
    );
    r.reconcile(&["--prune"]).expect(0);
    assert_eq!(containers(&s), s1, "the exempt container was removed");
    assert!(is_running(&keep_c));
    assert_eq!(containers(&t), without(t0, &y));
}

// -- 3. never a whole stack without --allow-empty ------------------------------------

#[test]
fn safety_empty_stack_is_refused_without_allow_empty() {
    let mut r = repo();
    let s = r.stack("empty");
    r.set_stack(&s, &format!("services:\n  a:{SLEEPER}  b:{SLEEPER}"));
    r.reconcile(&[]).expect(0);
    let before = containers(&s);
    assert_eq!(before.len(), 2);

    r.set_stack(&s, "services: {}\n");
    let root = r.root_str();
    r.plimsoll(&["validate", &root]).expect(0);
    let dry = r.reconcile(&["--dry-run", "--prune"]);
    dry.expect(1);
    assert!(
        dry.stdout
            .contains(&format!("refusing to remove all 2 containers of stack {s}")),
        "{dry}"
    );
    insta::assert_snapshot!("empty_stack_refused", dry.stdout.replace(&s, "[STACK]"));
    let apply = r.reconcile(&["--prune"]);
    apply.expect(1);
    assert!(
        apply.all().contains("refusing to remove all") && apply.all().contains("--allow-empty"),
        "{apply}"
    );
    assert_eq!(containers(&s), before, "removed despite the refusal");
    assert!(before.keys().all(|c| is_running(c)));

    r.reconcile(&["--prune", "--allow-empty"]).expect(0);
    assert_eq!(containers(&s), BTreeMap::new());
    assert_eq!(
        labelled_ids("network", &format!("{STACK_LABEL}={s}")),
        Vec::<String>::new(),
        "the stack's network is left"
    );
}

#[test]
fn safety_stack_removed_from_the_repository_is_refused_per_stack() {
    let mut r = repo();
    let gone = r.stack("removed");
    let stays = r.stack("stays");
    r.set_stack(&gone, &format!("services:\n  a:{SLEEPER}  b:{SLEEPER}"));
    r.set_stack(&stays, &format!("services:\n  c:{SLEEPER}"));
    r.reconcile(&[]).expect(0);
    let (g0, s0) = (containers(&gone), containers(&stays));
    assert_eq!((g0.len(), s0.len()), (2, 1));

    r.remove_stack(&gone);
    let dry = r.reconcile(&["--dry-run", "--prune"]);
    dry.expect(1);
    assert!(
        dry.stdout.contains(&format!(
            "refusing to remove all 2 containers of stack {gone}: it is no longer in the repository"
        )),
        "{dry}"
    );
    assert!(
        !dry.stdout.contains(&format!("stack {stays}")),
        "the guard is per stack: {dry}"
    );
    r.reconcile(&["--prune"]).expect(1);
    assert_eq!(containers(&gone), g0, "removed despite the refusal");
    // Without --prune it is only listed.
    let apply = r.reconcile(&[]);
    apply.expect(0);
    assert!(apply.stdout.contains("would prune"), "{apply}");
    assert_eq!(containers(&gone), g0);

    r.reconcile(&["--prune", "--allow-empty"]).expect(0);
    assert_eq!(containers(&gone), BTreeMap::new());
    assert_eq!(
        labelled_ids("network", &format!("{STACK_LABEL}={gone}")),
        Vec::<String>::new()
    );
    assert_eq!(containers(&stays), s0, "the other stack was touched");
    assert!(is_running(&format!("{stays}-c-1")));
}

// -- 4. volumes never lost -------------------------------------------------------------

#[test]
fn safety_volume_data_is_never_lost() {
    let mut r = repo();
    let s = r.stack("volumes");
    let db = |v: &str| {
        format!(
            "{SLEEPER}    environment:\n      V: \"{v}\"\n    volumes:\n      - data:/data\n      - /cache\n"
        )
    };
    r.set_stack(
        &s,
        &format!(
            "services:\n  app:{SLEEPER}  db:{}volumes:\n  data:\n",
            db("1")
        ),
    );
    r.reconcile(&[]).expect(0);
    let (dbc, vol) = (format!("{s}-db-1"), format!("{s}_data"));
    exec(
        &dbc,
        "echo named-data > /data/f && echo anon-data > /cache/f",
    );
    let anon_of = |c: &str| {
        inspect(
            c,
            "{{range .Mounts}}{{if eq .Destination \"/cache\"}}{{.Name}}{{end}}{{end}}",
        )
        .unwrap_or_default()
    };
    let anon = anon_of(&dbc);
    assert_eq!(anon.len(), 64, "an anonymous volume at /cache: {anon:?}");
    r.volumes.push(anon.clone());
    let id1 = container_id(&dbc);

    // A recreate keeps both.
    r.set_stack(
        &s,
        &format!(
            "services:\n  app:{SLEEPER}  db:{}volumes:\n  data:\n",
            db("2")
        ),
    );
    let (run, plan) = r.plan(&[]);
    run.expect(2);
    assert_eq!(actions(&plan), vec![pair("recreate", &dbc)], "{run}");
    r.reconcile(&[]).expect(0);
    assert_ne!(container_id(&dbc), id1, "not recreated");
    assert!(env_of(&dbc).contains("V=2"));
    assert_eq!(exec(&dbc, "cat /data/f"), "named-data");
    assert_eq!(anon_of(&dbc), anon, "the anonymous volume is carried over");
    assert_eq!(exec(&dbc, "cat /cache/f"), "anon-data");

    // The service and the volume leave git: the container goes, the volume is kept.
    r.set_stack(&s, &format!("services:\n  app:{SLEEPER}"));
    let prune = r.reconcile(&["--prune"]);
    prune.expect(0);
    assert!(
        prune
            .stdout
            .lines()
            .any(|l| l.contains("would prune") && l.contains(&vol) && l.contains("kept")),
        "the volume is listed as kept:\n{prune}"
    );
    assert!(inspect(&dbc, "{{.Id}}").is_none(), "db was not pruned");
    assert!(volume_exists(&vol));
    assert_eq!(r.read_volume(&vol, "f"), "named-data");
    assert_eq!(r.read_volume(&anon, "f"), "anon-data");

    // --prune-volumes alone: the stack has not opted in.
    let run = r.reconcile(&["--prune", "--prune-volumes"]);
    run.expect(0);
    assert!(
        volume_exists(&vol),
        "removed without the stack's opt-in:\n{run}"
    );
    // The opt-in alone: the command has not said so.
    r.set_config(&format!("stacks:\n  {s}:\n    prune_volumes: true\n"));
    let run = r.reconcile(&["--prune"]);
    run.expect(0);
    assert!(
        volume_exists(&vol),
        "removed without --prune-volumes:\n{run}"
    );
    assert_eq!(r.read_volume(&vol, "f"), "named-data");

    // Both.
    let (run, plan) = r.plan(&["--prune", "--prune-volumes"]);
    run.expect(2);
    assert_eq!(actions(&plan), vec![pair("remove_volume", &vol)], "{run}");
    r.reconcile(&["--prune", "--prune-volumes"]).expect(0);
    assert!(!volume_exists(&vol), "the opted-in volume is still there");
    assert!(is_running(&format!("{s}-app-1")));
}

// -- 5. adoption of a stack docker compose made -------------------------------------

#[test]
fn safety_adopts_a_stack_docker_compose_made() {
    let Some(compose) = compose_or_skip() else {
        return;
    };
    let mut r = repo();
    let s = r.stack("adopt");
    r.set_stack(
        &s,
        &format!("services:\n  web:{SLEEPER}    volumes:\n      - data:/data\nvolumes:\n  data:\n"),
    );
    let file = r.root().join(format!("stacks/{s}/compose.yaml"));
    let run_compose = |args: &[&str]| {
        let out = Command::new(&compose)
            .arg("-p")
            .arg(&s)
            .args(args)
            .current_dir(r.tmp.path())
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROJECT_NAME")
            .stdin(Stdio::null())
            .output()
            .expect("run docker compose");
        assert!(
            out.status.success(),
            "docker compose {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let file_str = file.display().to_string();
    run_compose(&["-f", &file_str, "up", "-d"]);
    let web = format!("{s}-web-1");
    let by_compose = container_id(&web);
    exec(&web, "echo from-compose > /data/f");

    let dry = r.reconcile(&["--dry-run"]);
    dry.expect(2);
    assert!(dry.stdout.contains("replace (adopt from compose)"), "{dry}");
    r.reconcile(&[]).expect(0);
    let adopted = container_id(&web);
    assert_ne!(adopted, by_compose, "not replaced");
    assert!(
        inspect(&by_compose, "{{.Id}}").is_none(),
        "compose's container is left"
    );
    assert_eq!(
        inspect(
            &web,
            &format!("{{{{index .Config.Labels \"{STACK_LABEL}\"}}}}")
        )
        .as_deref(),
        Some(s.as_str())
    );
    assert_eq!(
        exec(&web, "cat /data/f"),
        "from-compose",
        "the volume data is lost"
    );
    let ps = run_compose(&["ps", "-a", "--format", "{{.Name}}"]);
    assert_eq!(
        ps.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>(),
        vec![web.as_str()],
        "docker compose ps lists the new container"
    );
    let again = r.reconcile(&["--dry-run"]);
    again.expect(0);
    assert_eq!(containers(&s).len(), 1, "a -plimsoll-old container is left");
}

// -- 6. one apply at a time ------------------------------------------------------------

#[test]
fn safety_lock_serializes_applies() {
    let mut r = repo();
    let s = r.stack("lock");
    r.set_stack(
        &s,
        r#"services:
  slow:
    image: plimsoll-example/busybox:1
    command: ["sh", "-c", "sleep 6; touch /tmp/ok; exec sleep 600"]
    stop_signal: SIGKILL
    healthcheck:
      test: ["CMD-SHELL", "test -f /tmp/ok"]
      interval: 1s
      timeout: 2s
      retries: 60
  waiter:
    image: plimsoll-example/busybox:1
    command: ["sleep", "600"]
    stop_signal: SIGKILL
    depends_on:
      slow:
        condition: service_healthy
"#,
    );
    let root = r.root_str();
    let first = r
        .command(&["reconcile", &root])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start plimsoll");
    let holder = format!("pid {}", first.id());
    let mut first = Background(Some(first));
    let lock = r.state.path().join("lock");
    wait_for(
        "the first reconcile to take the lock",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || {
            fs::read_to_string(&lock)
                .ok()
                .filter(|t| t.contains(&holder))
                .map(|_| ())
        },
    );

    let second = r.reconcile(&["--lock-timeout", "1s"]);
    second.expect(1);
    assert!(
        second.stderr.contains(&lock.display().to_string())
            && second.stderr.contains(&holder)
            && second.stderr.contains("--lock-timeout"),
        "the error names the lock and its holder:\n{second}"
    );
    let child = first.0.as_mut().expect("the first run");
    assert!(
        child.try_wait().expect("poll the first run").is_none(),
        "the first run finished too early for this test"
    );

    let third = r.reconcile(&[]);
    third.expect(0);
    assert!(
        third.stderr.contains("waiting for the lock") && third.stderr.contains(&holder),
        "{third}"
    );
    let out = first
        .0
        .take()
        .expect("the first run")
        .wait_with_output()
        .expect("wait");
    assert!(
        out.status.success(),
        "the first run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        third.stdout.contains("no changes"),
        "the third planned after the first applied:\n{third}"
    );
    assert!(is_running(&format!("{s}-slow-1")) && is_running(&format!("{s}-waiter-1")));
}

// -- 7. a bad revision rolls back; plimsoll rollback without the repository --------

#[test]
fn safety_bad_revision_rolls_back_and_rollback_needs_no_repository() {
    let mut r = repo();
    let s = r.stack("rollback");
    // The bad revision gets 4 s to become healthy; the good ones (which a
    // recreate also waits for) get more, so a busy engine does not fail them.
    let app = |version: &str, health: &str| {
        let timeout = if health == GOOD { "30s" } else { "4s" };
        format!(
            r#"services:
  app:
    image: plimsoll-example/busybox:1
    command: ["sh", "-c", "touch /tmp/ok; exec sleep 600"]
    stop_signal: SIGKILL
    environment:
      VERSION: "{version}"
    healthcheck:
      test: ["CMD-SHELL", "{health}"]
      interval: 1s
      timeout: 2s
      retries: 100
    x-plimsoll:
      health_timeout: {timeout}
"#
        )
    };
    const GOOD: &str = "test -f /tmp/ok";
    let c = format!("{s}-app-1");

    r.set_stack(&s, &app("A", GOOD));
    r.reconcile(&[]).expect(0);
    let a_id = container_id(&c);

    r.set_stack(&s, &app("B", "test -f /tmp/never"));
    let bad = r.reconcile(&[]);
    bad.expect(1);
    assert!(bad.stderr.contains("rolled back"), "{bad}");
    assert_eq!(container_id(&c), a_id, "the old container serves again");
    assert!(is_running(&c) && env_of(&c).contains("VERSION=A"));
    assert_eq!(containers(&s).len(), 1, "a -plimsoll-old container is left");

    let h = r.history();
    assert_eq!(h.len(), 2, "{h:#?}");
    assert_eq!(h[0]["outcome"], "applied", "{h:#?}");
    assert_eq!(h[1]["outcome"], "failed", "{h:#?}");
    assert_ne!(h[0]["revision"], h[1]["revision"]);
    assert!(
        h[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("rolled back")),
        "{h:#?}"
    );
    let rev_a = h[0]["revision"].as_str().expect("revision").to_string();

    r.set_stack(&s, &app("C", GOOD));
    r.reconcile(&[]).expect(0);
    assert!(env_of(&c).contains("VERSION=C"));
    let h = r.history();
    assert_eq!(h.len(), 3, "{h:#?}");
    assert_eq!(h[2]["outcome"], "applied");
    let rev_c = h[2]["revision"].as_str().expect("revision").to_string();

    // From here on, the repository is gone: rollback reads only the state directory.
    r.hide();
    let back = r.plimsoll(&["rollback", &s]);
    back.expect(0);
    assert!(back.stderr.contains(&rev_a), "back to A:\n{back}");
    assert!(env_of(&c).contains("VERSION=A"), "{back}");
    let h = r.history();
    assert_eq!(h.len(), 4, "{h:#?}");
    assert_eq!(
        (&h[3]["outcome"], &h[3]["rollback"], &h[3]["revision"]),
        (
            &Value::from("applied"),
            &Value::from(true),
            &Value::from(rev_a.as_str())
        ),
        "{h:#?}"
    );

    let to_c = r.plimsoll(&["rollback", &s, "--to", &rev_c]);
    to_c.expect(0);
    assert!(env_of(&c).contains("VERSION=C"), "{to_c}");
    r.plimsoll(&["rollback", &s, "--to", "local:000000000000"])
        .expect(1);

    // Rolled back to what git says: in sync, not "changed".
    r.unhide();
    let check = r.reconcile(&["--dry-run"]);
    check.expect(0);
    assert_eq!(
        inspect(
            &c,
            &format!("{{{{index .Config.Labels \"{REPOSITORY_LABEL}\"}}}}")
        )
        .as_deref(),
        Some(r.canonical.as_str()),
        "a rolled-back container keeps its repository"
    );
}

// -- 8. the state directory never holds a secret ------------------------------------

fn canary(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("canary-{what}-{nanos:x}{:x}", std::process::id())
}

#[test]
fn safety_state_dir_and_history_never_hold_a_secret() {
    let mut r = repo();
    let s = r.stack("canary");
    let (in_env, in_file) = (canary("env"), canary("file"));
    let yaml = |version: &str, health: &str| {
        format!(
            r#"services:
  db:
    image: plimsoll-example/busybox:1
    command: ["sleep", "600"]
    stop_signal: SIGKILL
    environment:
      DB_PASSWORD: ${{DB_PASSWORD}}
    secrets: [db_password]
  api:
    image: plimsoll-example/busybox:1
    command: ["sh", "-c", "echo \"url=$$DATABASE_URL\"; echo \"file=$$(cat /run/secrets/db_password)\"; exec sleep 600"]
    stop_signal: SIGKILL
    environment:
      DATABASE_URL: postgres://app:${{DB_PASSWORD}}@db:5432/app
      VERSION: "{version}"
    secrets: [db_password]
    depends_on: [db]
    healthcheck:
      test: ["CMD-SHELL", "{health}"]
      interval: 1s
      timeout: 2s
      retries: 100
    x-plimsoll:
      health_timeout: 4s
secrets:
  db_password:
    file: ./db_password.txt
"#
        )
    };
    r.write(
        &format!("stacks/{s}/.env"),
        &format!("DB_PASSWORD={in_env}\n"),
    );
    r.write(
        &format!("stacks/{s}/db_password.txt"),
        &format!("{in_file}\n"),
    );
    r.set_stack(&s, &yaml("1", "true"));
    let mut runs = vec![r.reconcile(&[])];
    runs[0].expect(0);
    let api = format!("{s}-api-1");
    let logs = wait_for(
        "api to print its secrets",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let l = crate::support::container_logs(&api);
            l.contains("file=canary").then_some(l)
        },
    );
    assert!(
        logs.contains(&in_env) && logs.contains(&in_file),
        "the secrets reach the container: {logs}"
    );

    // A failed apply: the new api never becomes healthy; its logs hold both canaries.
    r.set_stack(&s, &yaml("2", "exit 1"));
    let failed = r.reconcile(&[]);
    failed.expect(1);
    assert!(
        failed.stderr.contains("rolled back") && failed.stderr.contains("url=postgres://app:"),
        "the error quotes the last log lines:\n{failed}"
    );
    runs.push(failed);
    runs.push(r.plimsoll(&["history"]));
    runs.push(r.plimsoll(&["history", "--format", "json"]));
    let h = r.history();
    assert_eq!(
        h.iter().map(|x| x["outcome"].clone()).collect::<Vec<_>>(),
        vec![Value::from("applied"), Value::from("failed")]
    );

    for run in &runs {
        for secret in [&in_env, &in_file] {
            assert!(
                !run.all().contains(secret.as_str()),
                "a secret was printed by `plimsoll {}`:\n{run}",
                run.args.join(" ")
            );
        }
    }
    let files = files_under(r.state.path());
    let names: Vec<String> = files
        .iter()
        .filter_map(|(p, _)| p.strip_prefix(r.state.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        names.iter().any(|n| n == "audit.jsonl")
            && names.iter().filter(|n| n.starts_with("revisions/")).count() >= 2,
        "{names:?}"
    );
    for (path, bytes) in files {
        let text = String::from_utf8_lossy(&bytes);
        for secret in [&in_env, &in_file] {
            assert!(
                !text.contains(secret.as_str()),
                "a secret was written to {}",
                path.display()
            );
        }
    }
}

// -- 9. malformed repositories change nothing --------------------------------------------

/// Everything on the engine that belongs to the repository or its stacks:
/// containers with their state and start time, networks, volumes.
fn engine_state(r: &Repo) -> BTreeSet<String> {
    let mut labels = vec![format!("{REPOSITORY_LABEL}={}", r.canonical)];
    labels.extend(r.names.iter().map(|n| format!("{STACK_LABEL}={n}")));
    let mut out = BTreeSet::new();
    for l in &labels {
        let ids = labelled_ids("container", l);
        if !ids.is_empty() {
            let mut args = vec![
                "inspect",
                "--format",
                "container {{.Id}} {{.Name}} {{.State.Status}} {{.State.StartedAt}} {{.RestartCount}}",
            ];
            args.extend(ids.iter().map(String::as_str));
            out.extend(docker(&args).lines().map(str::to_string));
        }
        out.extend(
            labelled_ids("network", l)
                .into_iter()
                .map(|n| format!("network {n}")),
        );
        out.extend(
            labelled_ids("volume", l)
                .into_iter()
                .map(|v| format!("volume {v}")),
        );
    }
    out
}

#[test]
fn safety_malformed_repositories_change_nothing() {
    let mut r = repo();
    let s1 = r.stack("malformed");
    let s2 = r.stack("malformed-other");
    let good_s1 = format!(
        "services:\n  a:{SLEEPER}  b:{SLEEPER}    networks: [back]\n    volumes:\n      - data:/data\nnetworks:\n  back:\nvolumes:\n  data:\n"
    );
    let good_s2 = format!("services:\n  c:{SLEEPER}");
    let good_config = format!("stacks:\n  {s1}:\n    prune: true\n");
    let write_good = || {
        r.set_config(&good_config);
        r.set_stack(&s1, &good_s1);
        r.set_stack(&s2, &good_s2);
    };
    write_good();
    r.reconcile(&[]).expect(0);
    let before = engine_state(&r);
    assert_eq!(
        before
            .iter()
            .filter(|l| l.starts_with("container "))
            .count(),
        3,
        "{before:#?}"
    );

    let mut bomb = String::from(
        "x-a: &a [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n",
    );
    for level in b'b'..=b'j' {
        let (cur, prev) = (level as char, (level - 1) as char);
        let refs = vec![format!("*{prev}"); 9].join(", ");
        bomb.push_str(&format!("x-{cur}: &{cur} [{refs}]\n"));
    }
    bomb.push_str(&format!("services:\n  a:{SLEEPER}"));
    let s1_file = format!("stacks/{s1}/compose.yaml");
    let s2_file = format!("stacks/{s2}/compose.yaml");
    // (what, file, content): the content replaces the file in the good repository.
    let variants: Vec<(&str, &str, String)> = vec![
        ("bad YAML", &s1_file, "services:\n  a: [unclosed\n".into()),
        (
            "unknown key",
            &s1_file,
            format!("name: {s1}\nservices:\n  a:{SLEEPER}    frobnicate: true\n"),
        ),
        (
            "dependency cycle",
            &s1_file,
            format!(
                "name: {s1}\nservices:\n  a:{SLEEPER}    depends_on: [b]\n  b:{SLEEPER}    depends_on: [a]\n"
            ),
        ),
        (
            "missing required variable",
            &s1_file,
            format!(
                "name: {s1}\nservices:\n  a:\n    image: plimsoll-example/busybox:${{PLIMSOLL_IT_TAG:?set the tag}}\n    command: [\"sleep\", \"600\"]\n"
            ),
        ),
        (
            "undeclared volume",
            &s1_file,
            format!("name: {s1}\nservices:\n  a:{SLEEPER}    volumes:\n      - undeclared:/data\n"),
        ),
        (
            "policy violation",
            "plimsoll.yaml",
            format!("{good_config}policy:\n  required_labels: [team]\n"),
        ),
        (
            "duplicate key",
            &s1_file,
            format!("name: {s1}\nservices:\n  a:{SLEEPER}    command: [\"sleep\", \"1\"]\n"),
        ),
        ("empty file", &s1_file, String::new()),
        ("comments only", &s1_file, "# truncated\n".into()),
        (
            "unknown key in plimsoll.yaml",
            "plimsoll.yaml",
            format!("{good_config}prune_everything: true\n"),
        ),
        (
            "plimsoll.yaml names a missing stack",
            "plimsoll.yaml",
            "stacks:\n  no-such-stack:\n    prune: true\n".into(),
        ),
        (
            "bad YAML in plimsoll.yaml",
            "plimsoll.yaml",
            "stacks: [\n".into(),
        ),
        (
            "invalid x-plimsoll",
            &s1_file,
            format!("name: {s1}\nservices:\n  a:{SLEEPER}    x-plimsoll:\n      prune: maybe\n"),
        ),
        ("alias bomb", &s1_file, format!("name: {s1}\n{bomb}")),
        // The other stack is broken while this one would prune b: nothing at all changes.
        (
            "the other stack broken",
            &s2_file,
            "services:\n  c: [\n".into(),
        ),
    ];
    assert!(variants.len() >= 8);
    for (what, file, content) in &variants {
        write_good();
        if *what == "the other stack broken" {
            r.set_stack(&s1, &format!("services:\n  a:{SLEEPER}"));
        }
        r.write(file, content);
        let run = r.reconcile(&["--prune", "--allow-empty"]);
        assert_eq!(run.code, Some(1), "{what}: not refused:\n{run}");
        assert!(
            run.stdout.is_empty() && run.stderr.contains("error"),
            "{what}: a plan or no error:\n{run}"
        );
        assert_eq!(
            engine_state(&r),
            before,
            "{what}: the engine changed:\n{run}"
        );
    }
    // The good repository is still in sync: nothing was half-applied.
    write_good();
    r.reconcile(&["--dry-run", "--prune"]).expect(0);
}

// -- 10. unknown containers policy -----------------------------------------------------

#[test]
fn safety_unknown_containers_policy() {
    let mut r = repo();
    let s = r.stack("unknown");
    r.set_stack(&s, &format!("services:\n  a:{SLEEPER}"));
    r.set_config("policy:\n  unknown_containers: fail\n");
    let foreign = r.foreign_container("foreign");

    let dry = r.reconcile(&["--dry-run"]);
    dry.expect(1);
    assert!(
        dry.stderr.contains(&foreign) && dry.stderr.contains("unknown_containers"),
        "{dry}"
    );
    let apply = r.reconcile(&[]);
    apply.expect(1);
    assert!(apply.stderr.contains(&foreign), "{apply}");
    assert_eq!(
        containers(&s),
        BTreeMap::new(),
        "applied despite the policy"
    );
    let status = r.status();
    status.expect(1);
    assert!(status.stderr.contains(&foreign), "{status}");
    assert!(
        status.stdout.contains("STACK") && status.stdout.contains(&format!("{s}-a-1")),
        "status still prints its table:\n{status}"
    );
    assert!(
        status.stdout.contains("unknown containers") && status.stdout.contains(&foreign),
        "{status}"
    );
    assert!(is_running(&foreign), "the foreign container was touched");

    r.set_config("policy:\n  unknown_containers: warn\n");
    let dry = r.reconcile(&["--dry-run"]);
    dry.expect(2);
    assert!(
        dry.stderr.contains("warning") && dry.stderr.contains(&foreign),
        "{dry}"
    );
    let apply = r.reconcile(&[]);
    apply.expect(0);
    assert!(apply.stderr.contains(&foreign), "{apply}");
    assert!(is_running(&format!("{s}-a-1")));
    let status = r.status();
    status.expect(0);
    assert!(
        status.stderr.contains("warning") && status.stdout.contains(&foreign),
        "{status}"
    );
    r.reconcile(&["--dry-run"]).expect(0);
    assert!(is_running(&foreign), "the foreign container was touched");
}

/// Policy at apply: images pinned by digest and allowed registries, checked
/// against a real registry on loopback before anything changes.
#[test]
fn safety_policy_pins_images_by_digest_from_a_real_registry() {
    let Some(reg) = crate::registry::Registry::start(None) else {
        return;
    };
    crate::support::ensure_busybox();
    let tagged = reg.push(crate::support::BUSYBOX_IMAGE, "pinned:1");
    let digest = reg.digest_of(&tagged);
    let stack = crate::support::unique_name("pin");
    let repo = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    fs::create_dir_all(repo.path().join("stacks/app")).unwrap();
    fs::write(
        repo.path().join("plimsoll.yaml"),
        format!("policy:\n  registries:\n    allow: [\"{}\"]\n  pinned_images:\n    stacks: [{stack}]\n", reg.host),
    )
    .unwrap();
    let write = |image: &str| {
        fs::write(
            repo.path().join("stacks/app/compose.yaml"),
            format!("name: {stack}\nservices:\n  web:\n    image: {image}\n    command: sleep 600\n    stop_signal: SIGKILL\n"),
        )
        .unwrap();
    };
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_plimsoll"))
            .arg("--state-dir")
            .arg(state.path())
            .args(args)
            .arg(repo.path())
            .env("DOCKER_CONFIG", &reg.docker_config)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("run plimsoll")
    };
    let cleanup = Cleanup::for_stack(&stack);

    // A tag is not pinned: validate and reconcile refuse, naming file, line and rule.
    write(&tagged);
    for args in [
        &["validate"][..],
        &["reconcile", "--dry-run"],
        &["reconcile"],
    ] {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("compose.yaml:4:") && err.contains("policy `pinned_images`"),
            "{err}"
        );
    }
    // An image from another registry breaks the registries rule.
    write(crate::support::BUSYBOX_IMAGE);
    let err = String::from_utf8_lossy(&run(&["validate"]).stderr).into_owned();
    assert!(
        err.contains("registry `docker.io`") && err.contains("policy `registries`"),
        "{err}"
    );
    assert!(
        cleanup.containers().is_empty(),
        "nothing may change while the policy fails"
    );

    // Pinned by digest from the allowed registry: accepted and applied.
    write(&digest);
    let out = run(&["reconcile"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(cleanup.containers().len(), 1);
    assert_eq!(run(&["reconcile", "--dry-run"]).status.code(), Some(0));
}

/// Removes every container and network of one stack when dropped.
struct Cleanup {
    label: String,
}

impl Cleanup {
    fn for_stack(stack: &str) -> Cleanup {
        Cleanup {
            label: format!("{STACK_LABEL}={stack}"),
        }
    }

    fn containers(&self) -> Vec<String> {
        labelled_ids("container", &self.label)
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for id in self.containers() {
            quiet(&["rm", "-f", &id]);
        }
        for id in labelled_ids("network", &self.label) {
            quiet(&["network", "rm", &id]);
        }
    }
}
