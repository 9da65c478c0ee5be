//! Several hosts from one repository, on two real Docker engines: this
//! machine's, and a second `dockerd` the test starts in a network namespace
//! of its own (in the host namespace it would take the first engine's
//! bridge down; DESIGN.md, last section). One agent per host follows the
//! same git repository with `--host`; each engine ends up with exactly the
//! stacks `plimsoll.yaml` assigns to its host (by name, by labels, and
//! "every host"), and moving a stack in git moves it: the new host creates
//! it, the old host removes it (its `prune: true`), in whatever order the
//! two agents poll. One stack with two environments (`environments:`,
//! `.env.<env>`, `compose.prod.yaml`) runs each engine's environment's
//! values, a change to `compose.prod.yaml` changes production only, and
//! `plimsoll promote --from stage --to prod` (staging follows a tag of a
//! registry on loopback, forwarded into the second engine's namespace)
//! writes the patch that, committed, makes production run staging's image.
//!
//! The second engine needs root, `ip netns` (iproute2), `nsenter`
//! (util-linux) and `dockerd`; where the machine cannot start one, the test
//! says why and passes, except under `CI=true`, where it fails
//! (`scripts/test.sh` installs the packages; CI runs as root).

use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::agent::{Agent, GitRepo};
use crate::registry::Registry;
use crate::support::{
    BUSYBOX_IMAGE, Cleanup, ensure_busybox, missing_precondition, plimsoll_output, temp_dir,
    unique_name,
};

/// A second Docker engine in its own network namespace, stopped and removed on drop.
struct SecondEngine {
    netns: String,
    dir: tempfile::TempDir,
    daemon: Child,
}

impl SecondEngine {
    /// Starts it, or says why this machine cannot.
    fn start() -> Result<SecondEngine, String> {
        for tool in ["ip", "nsenter", "dockerd"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success());
            if !found {
                return Err(format!(
                    "`{tool}` is not installed (apt-get install iproute2 util-linux, and a Docker engine)"
                ));
            }
        }
        let netns = format!("plimsoll-{}", std::process::id());
        let netns = format!(
            "{netns}-{}",
            unique_name("h").rsplit('-').next().unwrap_or("0")
        );
        let add = Command::new("ip").args(["netns", "add", &netns]).output();
        match add {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return Err(format!(
                    "`ip netns add` failed (not root?): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
            }
            Err(e) => return Err(format!("`ip netns add`: {e}")),
        }
        let quiet = |args: &[&str]| {
            let _ = Command::new(args[0]).args(&args[1..]).output();
        };
        quiet(&[
            "ip", "netns", "exec", &netns, "ip", "link", "set", "lo", "up",
        ]);
        let dir = temp_dir("plimsoll-it-engine-");
        let d = dir.path();
        // An empty config file: the machine's /etc/docker/daemon.json may set data-root.
        std::fs::write(d.join("daemon.json"), "{}").expect("write daemon.json");
        let daemon = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{netns}"))
            .arg("dockerd")
            .arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("pid"))
            .arg("-H")
            .arg(format!("unix://{}", d.join("sock").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("log")).expect("dockerd log file"))
            .spawn();
        let daemon = match daemon {
            Ok(c) => c,
            Err(e) => {
                quiet(&["ip", "netns", "del", &netns]);
                return Err(format!("starting dockerd: {e}"));
            }
        };
        let engine = SecondEngine { netns, dir, daemon };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !engine.docker(&["info"]).status.success() {
            if Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(engine.dir.path().join("log")).unwrap_or_default();
                panic!("the second dockerd did not answer within 60 s:\n{log}");
            }
            thread::sleep(Duration::from_millis(200));
        }
        // No registry: the test image moves over with save | load.
        let copied = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "docker save {BUSYBOX_IMAGE} | DOCKER_HOST={} docker load -q",
                engine.host()
            ))
            .output()
            .expect("run docker save | docker load");
        assert!(
            copied.status.success(),
            "copying {BUSYBOX_IMAGE}: {}",
            String::from_utf8_lossy(&copied.stderr)
        );
        Ok(engine)
    }

    /// [`SecondEngine::start`], or, when this machine cannot, a missing
    /// precondition reported (a failure under `CI=true`) and `None`.
    fn start_or_report() -> Option<SecondEngine> {
        match SecondEngine::start() {
            Ok(e) => Some(e),
            Err(why) => {
                missing_precondition(&format!(
                    "this machine cannot start a second Docker engine: {why}"
                ));
                None
            }
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    /// Its `DOCKER_HOST`.
    fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", self.host())
            .output()
            .expect("run docker")
    }
}

impl SecondEngine {
    /// Forwards 127.0.0.1:`port` inside the engine's network namespace to
    /// 127.0.0.1:`port` here, so that the engine reaches a registry on this
    /// machine's loopback at the same address as this machine's engine
    /// (one image reference for both). Stops listening on drop.
    fn forward(&self, port: u16) -> Forward {
        let stop = Arc::new(AtomicBool::new(false));
        let (accepted, inbound) = mpsc::channel::<TcpStream>();
        let (ready, listening) = mpsc::channel::<std::io::Result<()>>();
        let netns = format!("/var/run/netns/{}", self.netns);
        let stopped = stop.clone();
        // setns moves the calling thread only: this one listens in the
        // engine's namespace; the connections out are made from another.
        thread::spawn(move || {
            let listen = || {
                let ns = std::fs::File::open(&netns)?;
                // SAFETY: setns on a valid namespace descriptor changes this thread's namespace only.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let listener = TcpListener::bind(("127.0.0.1", port))?;
                listener.set_nonblocking(true)?;
                Ok(listener)
            };
            let listener = match listen() {
                Ok(l) => {
                    let _ = ready.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        if accepted.send(stream).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => return,
                }
            }
        });
        listening
            .recv_timeout(Duration::from_secs(10))
            .expect("the forwarder answers")
            .unwrap_or_else(|e| {
                panic!("a forwarder on 127.0.0.1:{port} in the engine's namespace (open, setns, listen): {e}")
            });
        thread::spawn(move || {
            for from in inbound {
                if let Ok(to) = TcpStream::connect(("127.0.0.1", port)) {
                    pump(from, to);
                }
            }
        });
        Forward { stop }
    }
}

/// Copies bytes both ways between two connections until each side closes.
fn pump(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    for (mut from, mut to) in [(a, b2), (b, a2)] {
        thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    }
}

/// A port forwarded into an engine's namespace ([`SecondEngine::forward`]).
struct Forward {
    stop: Arc<AtomicBool>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        let ids = self.docker(&["ps", "-aq"]);
        let ids = String::from_utf8_lossy(&ids.stdout).to_string();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids);
            let _ = self.docker(&args);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.daemon.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.daemon.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(100));
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

/// Names of the running containers of `stack` on an engine (`DOCKER_HOST` = `host`, or this machine's).
fn running(host: Option<&str>, stack: &str) -> Vec<String> {
    let mut cmd = Command::new("docker");
    cmd.args([
        "ps",
        "--filter",
        &format!("label=io.plimsoll.stack={stack}"),
        "--format",
        "{{.Names}}",
    ]);
    if let Some(h) = host {
        cmd.env("DOCKER_HOST", h);
    }
    let out = cmd.output().expect("run docker ps");
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

#[track_caller]
fn wait_until(what: &str, timeout: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        thread::sleep(Duration::from_millis(200));
    }
}

fn stack_file(stack: &str) -> String {
    format!(
        "name: {stack}\nservices:\n  app:\n    image: {BUSYBOX_IMAGE}\n    init: true\n    command: [\"sleep\", \"3600\"]\n"
    )
}

/// plimsoll.yaml: `front` on hosts labelled role=web, `jobs` on `jobs_host`
/// by name, `probe` on every host.
fn config(front: &str, jobs: &str, probe: &str, jobs_host: &str) -> String {
    format!(
        "hosts:\n  alpha: {{labels: {{role: web}}}}\n  beta: {{labels: {{role: batch}}}}\n\
         stacks:\n  {front}: {{placement: {{labels: {{role: web}}}}, prune: true}}\n  \
         {jobs}: {{hosts: [{jobs_host}], prune: true}}\n  {probe}: {{prune: true}}\n"
    )
}

fn write_repo(repo: &GitRepo, stacks: &[&str], cfg: &str) {
    repo.write("plimsoll.yaml", cfg);
    for s in stacks {
        repo.write(&format!("stacks/{s}/compose.yaml"), &stack_file(s));
    }
}

#[test]
fn hosts_each_engine_runs_exactly_its_stacks_and_a_moved_stack_moves() {
    // The image is copied into the second engine as it starts.
    ensure_busybox();
    let Some(engine) = SecondEngine::start_or_report() else {
        return;
    };
    let mut cleanup = Cleanup::new();
    let (front, jobs, probe) = (
        cleanup.stack("front"),
        cleanup.stack("jobs"),
        cleanup.stack("probe"),
    );
    let work = temp_dir("plimsoll-it-hosts-");
    let repo = GitRepo::init(work.path().join("repo"));
    write_repo(
        &repo,
        &[&front, &jobs, &probe],
        &config(&front, &jobs, &probe, "beta"),
    );
    let first = repo.commit("three stacks over two hosts");

    // `validate` says which host runs what.
    let validate = Command::new(env!("CARGO_BIN_EXE_plimsoll"))
        .args(["validate"])
        .arg(work.path().join("repo"))
        .output()
        .expect("run plimsoll validate");
    let out = String::from_utf8_lossy(&validate.stdout);
    assert!(validate.status.success(), "{out}");
    assert!(
        out.contains(&format!("alpha (role=web): {front}, {probe}"))
            && out.contains(&format!("beta (role=batch): {jobs}, {probe}")),
        "{out}"
    );

    // Both engines call themselves by the machine's name: --host tells them apart.
    let timeout = Duration::from_secs(60);
    let agents = TwoAgents::start(&repo, &engine, &first, timeout);
    let (agent_a, agent_b) = (&agents.a, &agents.b);
    let b = engine.host();
    let on = |host: Option<&str>, stack: &str| running(host, stack).len();
    wait_until("each engine runs its stacks", timeout, || {
        on(None, &front) == 1
            && on(None, &probe) == 1
            && on(Some(&b), &jobs) == 1
            && on(Some(&b), &probe) == 1
    });
    assert_eq!(on(None, &jobs), 0, "jobs is beta's only");
    assert_eq!(on(Some(&b), &front), 0, "front is for role=web only");

    // `jobs` moves from beta to alpha: alpha creates it, beta removes it.
    write_repo(&repo, &[], &config(&front, &jobs, &probe, "alpha"));
    let moved = repo.commit("move jobs to alpha");
    agent_a.wait_revision(&moved, timeout);
    agent_b.wait_revision(&moved, timeout);
    wait_until("jobs runs on alpha only", timeout, || {
        on(None, &jobs) == 1 && on(Some(&b), &jobs) == 0
    });
    assert_eq!(on(Some(&b), &probe), 1, "probe stays on every host");
    assert_eq!(on(None, &front), 1);
    let removed = agent_b.log();
    assert!(
        removed.contains("assigned to another host in plimsoll.yaml"),
        "{removed}"
    );
    drop(agents);
    drop(engine);
}

/// An agent per engine, each with its own state directory: `a` is host
/// `alpha` on the main engine, `b` host `beta` on the second one.
struct TwoAgents {
    // Fields drop in order: the agents stop before their state directories go.
    a: Agent,
    b: Agent,
    _states: [tempfile::TempDir; 2],
}

impl TwoAgents {
    /// Starts both agents on `repo` (1 s interval) and waits until each
    /// applied `revision`.
    fn start(repo: &GitRepo, engine: &SecondEngine, revision: &str, timeout: Duration) -> Self {
        let states = [
            temp_dir("plimsoll-it-state-"),
            temp_dir("plimsoll-it-state-"),
        ];
        let args = |host| ["--interval", "1s", "--host", host];
        let a = Agent::start(states[0].path(), &repo.url(), &args("alpha"), &[]);
        let b = Agent::start(
            states[1].path(),
            &repo.url(),
            &args("beta"),
            &[("DOCKER_HOST", engine.host().as_str())],
        );
        a.wait_revision(revision, timeout);
        b.wait_revision(revision, timeout);
        TwoAgents {
            a,
            b,
            _states: states,
        }
    }
}

/// The image IDs of the running containers of `stack` on an engine.
fn images_run(host: Option<&str>, stack: &str) -> Vec<String> {
    running(host, stack)
        .iter()
        .map(|name| {
            let mut cmd = Command::new("docker");
            cmd.args(["inspect", "--format", "{{.Image}}", name]);
            if let Some(h) = host {
                cmd.env("DOCKER_HOST", h);
            }
            let out = cmd.output().expect("run docker inspect");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
        .collect()
}

/// `MODE` in the environment of the running containers of `stack` on an engine.
fn modes(host: Option<&str>, stack: &str) -> Vec<String> {
    running(host, stack)
        .iter()
        .map(|name| {
            let mut cmd = Command::new("docker");
            cmd.args([
                "inspect",
                "--format",
                "{{range .Config.Env}}{{println .}}{{end}}",
                name,
            ]);
            if let Some(h) = host {
                cmd.env("DOCKER_HOST", h);
            }
            let out = cmd.output().expect("run docker inspect");
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("MODE=").map(str::to_string))
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn hosts_each_engine_runs_its_environments_values_and_promote_pins_what_stage_runs() {
    ensure_busybox();
    let Some(engine) = SecondEngine::start_or_report() else {
        return;
    };
    let Some(mut registry) = Registry::start(None) else {
        return;
    };
    let port: u16 = registry
        .host
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the registry's port");
    let _forward = engine.forward(port);
    // Production pins release v1 by digest; staging follows the tag `main`.
    let v1 = registry.variant(BUSYBOX_IMAGE);
    let release = registry.digest_of(&registry.push(&v1, "app:v1"));
    let v2 = registry.variant(BUSYBOX_IMAGE);
    let main = registry.push(&v2, "app:main");

    let mut cleanup = Cleanup::new();
    let shop = cleanup.stack("envshop");
    let work = temp_dir("plimsoll-it-envs-");
    let repo = GitRepo::init(work.path().join("repo"));
    repo.write(
        "plimsoll.yaml",
        "hosts:\n  alpha: {labels: {env: stage}}\n  beta: {labels: {env: prod}}\n\
         environments:\n  stage: {labels: {env: stage}}\n  \
         prod: {labels: {env: prod}, policy: {pinned_images: {}}}\n",
    );
    repo.write(
        &format!("stacks/{shop}/compose.yaml"),
        &format!(
            "name: {shop}\nservices:\n  app:\n    image: {}\n    init: true\n    \
             command: [\"sleep\", \"3600\"]\n    environment: {{MODE: \"${{MODE}}\"}}\n",
            registry.image("app:v1")
        ),
    );
    repo.write(&format!("stacks/{shop}/.env"), "MODE=base\n");
    repo.write(&format!("stacks/{shop}/.env.stage"), "MODE=staging\n");
    repo.write(&format!("stacks/{shop}/.env.prod"), "MODE=production\n");
    repo.write(
        &format!("stacks/{shop}/compose.stage.yaml"),
        &format!("services:\n  app:\n    image: {main}\n"),
    );
    let prod_file = format!("stacks/{shop}/compose.prod.yaml");
    repo.write(
        &prod_file,
        &format!("services:\n  app:\n    image: {release}  # the release\n    scale: 2\n"),
    );
    let first = repo.commit("one stack, two environments");

    let timeout = Duration::from_secs(60);
    let agents = TwoAgents::start(&repo, &engine, &first, timeout);
    let (agent_a, agent_b) = (&agents.a, &agents.b);
    let b = engine.host();
    wait_until("each engine runs its environment's values", timeout, || {
        modes(None, &shop) == ["staging"] && modes(Some(&b), &shop) == ["production", "production"]
    });
    assert_eq!(images_run(None, &shop), [v2.as_str()]);
    assert_eq!(images_run(Some(&b), &shop), [v1.as_str(), v1.as_str()]);

    // A change to compose.prod.yaml changes production only.
    repo.write(
        &prod_file,
        &format!("services:\n  app:\n    image: {release}  # the release\n    scale: 1\n"),
    );
    let second = repo.commit("production: one replica");
    agent_a.wait_revision(&second, timeout);
    agent_b.wait_revision(&second, timeout);
    wait_until("production runs one replica", timeout, || {
        modes(Some(&b), &shop) == ["production"]
    });
    assert_eq!(modes(None, &shop), ["staging"]);

    // Promotion: the digest `main` resolves to in the registry, pinned in
    // compose.prod.yaml by a patch; committed, production runs what
    // staging runs.
    let promote = |expect: i32| {
        let out = plimsoll_output(
            repo.dir(),
            &["promote", "--from", "stage", "--to", "prod"],
            &[],
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(
            out.status.code(),
            Some(expect),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let patch = promote(2);
    let pinned = format!(
        "{main}@{}",
        registry.digest_of(&main).rsplit('@').next().unwrap()
    );
    assert!(
        patch.contains(&format!("# pins {shop}/app: image {pinned}\n"))
            && patch.contains(&format!("+    image: {pinned}  # the release\n")),
        "{patch}"
    );
    let patch_file = work.path().join("promote.patch");
    std::fs::write(&patch_file, &patch).expect("write the patch");
    repo.apply(&patch_file);
    let third = repo.commit("promote stage to prod");
    agent_b.wait_revision(&third, timeout);
    wait_until("production runs the image staging runs", timeout, || {
        images_run(Some(&b), &shop) == [v2.as_str()]
    });
    assert_eq!(modes(Some(&b), &shop), ["production"]);
    assert_eq!(images_run(None, &shop), [v2.as_str()]);
    assert!(promote(0).contains("# nothing to write\n"));
    drop(agents);
    drop(engine);
}
