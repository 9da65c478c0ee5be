//! `plimsoll agent` as a process on the real engine: the binary is started
//! against a git repository (or a directory) the test makes, and the tests
//! assert on its HTTP endpoint (`/status`, `/metrics`, `/webhook`, `/sync`),
//! on the engine, on the audit log (`plimsoll history`) and on the
//! notifications a local receiver gets.
//!
//! Covered: the first sync and polled commits; webhooks (GitHub HMAC, form
//! bodies, GitLab token, refusals, a burst that applies once) and `POST
//! /sync`; drift healed (stopped, removed, `docker update`); self-heal that
//! gives up, survives a restart and is reset; broken revisions (bad YAML,
//! policy) rejected while the last good one keeps running; an unreachable
//! remote; an engine outage and a lost event stream; pause and resume; a secret that
//! appears in no output; age-encrypted secrets decrypted with the host's identity
//! (and a revision encrypted to another host rejected); a local directory watched for edits.
//!
//! Each test has its own stack (unique name), state directory and agent, and
//! kills the agent and removes its stack's containers, networks and volumes
//! when it ends, by panic too. Other tests' containers on the engine are
//! never touched (the agent does not prune unless asked).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit as _, Mac as _};
use serde_json::Value;
use sha2::Sha256;

use crate::gitserve::run;
use crate::support::{BUSYBOX_IMAGE, Cleanup, docker, docker_output, ensure_busybox, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_plimsoll");
const POLL: Duration = Duration::from_millis(100);

// ---- the agent process ---------------------------------------------------------

/// A running `plimsoll agent`; killed (SIGKILL) on drop unless stopped before.
/// Declare it after the test's [`Scenario`] (its [`Cleanup`]), so that it is
/// dropped first and cannot heal what the cleanup removes.
pub(crate) struct Agent {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    pub(crate) addr: String,
    state: PathBuf,
}

impl Agent {
    /// `plimsoll --state-dir STATE [GLOBAL..] agent --repo REPO --listen
    /// 127.0.0.1:0 ARGS..` with `env` added; waits until it listens.
    pub(crate) fn start(state: &Path, repo: &str, args: &[&str], env: &[(&str, &str)]) -> Agent {
        Agent::start_with(state, &[], repo, args, env)
    }

    fn start_with(
        state: &Path,
        global: &[&str],
        repo: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Agent {
        let mut cmd = Command::new(BIN);
        cmd.arg("--state-dir").arg(state).args(global);
        cmd.args(["agent", "--repo", repo, "--listen", "127.0.0.1:0"]);
        cmd.args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("PLIMSOLL_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("NO_COLOR", "1");
        cmd.envs(env.iter().copied());
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start plimsoll agent");
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let mut agent = Agent {
            child,
            lines,
            addr: String::new(),
            state: state.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        agent.addr = loop {
            let found = agent.log_lines().iter().find_map(|l| {
                let rest = &l[l.find("listening on http://")? + "listening on http://".len()..];
                Some(rest.split_whitespace().next()?.to_string())
            });
            if let Some(addr) = found {
                break addr;
            }
            if let Ok(Some(status)) = agent.child.try_wait() {
                panic!(
                    "the agent exited ({status}) before listening:\n{}",
                    agent.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not listen within 30 s:\n{}",
                agent.log()
            );
            thread::sleep(Duration::from_millis(20));
        };
        agent
    }

    fn log_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Everything the agent wrote on stderr so far.
    pub(crate) fn log(&self) -> String {
        self.log_lines().join("\n")
    }

    pub(crate) fn get(&self, path: &str) -> Response {
        http(&self.addr, "GET", path, &[], b"")
    }

    pub(crate) fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        http(&self.addr, "POST", path, headers, body)
    }

    #[track_caller]
    pub(crate) fn status(&self) -> Value {
        let r = self.get("/status");
        assert_eq!(r.code, 200, "GET /status: {r:?}");
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("/status is not JSON ({e}): {r:?}"))
    }

    #[track_caller]
    pub(crate) fn metrics(&self) -> String {
        let r = self.get("/metrics");
        assert_eq!(r.code, 200, "GET /metrics: {r:?}");
        assert!(
            r.head.to_ascii_lowercase().contains("openmetrics-text"),
            "the Prometheus content type: {r:?}"
        );
        r.body
    }

    /// Polls `/status` until `check` holds; panics with the last status and the log.
    #[track_caller]
    pub(crate) fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status();
            if check(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}\nlast /status: {s:#}\nagent log:\n{}",
                self.log()
            );
            thread::sleep(POLL);
        }
    }

    /// Waits until `revision` is the one applied.
    #[track_caller]
    pub(crate) fn wait_revision(&self, revision: &str, timeout: Duration) -> Value {
        self.wait_status(&format!("revision {revision} applied"), timeout, |s| {
            s["revision"] == revision
        })
    }

    /// SIGTERM, then waits (20 s at most) for the exit.
    pub(crate) fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the agent") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not exit within 20 s of SIGTERM:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (`timeout` at most) for the agent to exit by itself.
    #[track_caller]
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the agent") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not exit within {timeout:?}:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `plimsoll --state-dir <this agent's> ARGS` (the CLI next to the agent).
    pub(crate) fn cli(&self, args: &[&str]) -> crate::support::Run {
        plimsoll(&self.state, args)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            let lines = self.log_lines();
            let tail = &lines[lines.len().saturating_sub(80)..];
            eprintln!(
                "--- agent log (last {} lines)\n{}",
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

/// Runs `plimsoll --state-dir STATE ARGS` to the end.
fn plimsoll(state: &Path, args: &[&str]) -> crate::support::Run {
    let out = Command::new(BIN)
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run plimsoll");
    crate::support::Run {
        args: args.iter().map(|s| s.to_string()).collect(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The audit log as JSON records.
fn history(state: &Path) -> Vec<Value> {
    let run = plimsoll(state, &["history", "--format", "json"]);
    run.expect(0);
    match run.json() {
        Value::Array(records) => records,
        other => panic!("history is not a JSON array: {other}"),
    }
}

/// How many audit records of `revision` have this `outcome` (applied, failed, rejected).
fn audited(state: &Path, revision: &str, outcome: &str) -> usize {
    history(state)
        .iter()
        .filter(|r| r["revision"] == revision && r["outcome"] == outcome)
        .count()
}

// ---- a minimal HTTP/1.1 client and receiver -----------------------------------

#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) code: u16,
    pub(crate) head: String,
    pub(crate) body: String,
}

/// One request with `Connection: close`. The body is written from another
/// thread while the answer is read, so an early answer (413) is seen even
/// when the server stops reading.
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut writer = stream.try_clone().unwrap();
    let body = body.to_vec();
    let w = thread::spawn(move || {
        let _ = writer.write_all(head.as_bytes());
        let _ = writer.write_all(&body);
    });
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if raw.is_empty() => panic!("{method} {addr}{path}: {e}"),
            Err(_) => break,
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    let _ = w.join();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no HTTP answer: {text:?}"));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: bad status line: {head:?}"));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Response {
        code,
        head: head.to_string(),
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A notification receiver on 127.0.0.1: answers 200 to every POST and keeps
/// the bodies (JSON, or the raw text).
pub(crate) struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    pub(crate) fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let port = listener.local_addr().unwrap().port();
        let got: Arc<Mutex<Vec<Value>>> = Arc::default();
        let sink = got.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let sink = sink.clone();
                thread::spawn(move || receive(conn, &sink));
            }
        });
        Receiver { port, got }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// The `notifications:` of a `plimsoll.yaml` that sends JSON here.
    pub(crate) fn notifications(&self) -> String {
        format!(
            "notifications:\n  - {{url: \"{}\", format: json}}\n",
            self.url()
        )
    }

    pub(crate) fn all(&self) -> Vec<Value> {
        self.got.lock().unwrap().clone()
    }

    /// Waits for a notification of `event` for which `check` holds.
    #[track_caller]
    pub(crate) fn wait_event(
        &self,
        event: &str,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        wait_for(
            &format!("a `{event}` notification (got: {:?})", self.all()),
            timeout,
            POLL,
            || {
                self.all()
                    .into_iter()
                    .find(|n| n["event"] == event && check(n))
            },
        )
    }
}

/// Serves one keep-alive connection of the receiver.
fn receive(conn: TcpStream, sink: &Mutex<Vec<Value>>) {
    conn.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut out = conn.try_clone().expect("clone the connection");
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let text = String::from_utf8_lossy(&body).into_owned();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        sink.lock().unwrap().push(value);
        if out
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

// ---- the config repository -----------------------------------------------------

/// A git repository made with the `git` CLI, on branch `main`.
pub(crate) struct GitRepo {
    dir: PathBuf,
}

impl GitRepo {
    pub(crate) fn init(dir: PathBuf) -> GitRepo {
        std::fs::create_dir_all(&dir).unwrap();
        let repo = GitRepo { dir };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    fn git(&self, args: &[&str]) -> String {
        run(Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args([
                "-c",
                "user.name=plimsoll test",
                "-c",
                "user.email=test@plimsoll.invalid",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1"))
        .trim()
        .to_string()
    }

    pub(crate) fn write(&self, file: &str, text: &str) {
        write_file(&self.dir, file, text);
    }

    /// Commits everything and returns the full SHA.
    pub(crate) fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    pub(crate) fn url(&self) -> String {
        format!("file://{}", self.dir.display())
    }

    /// The work tree.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// `git apply PATCH` in the work tree (what a user does with a patch
    /// from `plimsoll drift --patch` or the dashboard).
    pub(crate) fn apply(&self, patch: &Path) {
        self.git(&["apply", patch.to_str().expect("a UTF-8 path")]);
    }
}

fn write_file(root: &Path, file: &str, text: &str) {
    let path = root.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// `stacks/<stack>/compose.yaml` of one busybox service `web` that sleeps
/// (init: quick to stop), with `env` and `extra` lines under the service.
fn web_stack(stack: &str, env: &[(&str, &str)], extra: &str) -> String {
    let mut s = format!(
        "name: {stack}\nservices:\n  web:\n    image: {BUSYBOX_IMAGE}\n    init: true\n    command: [\"sleep\", \"3600\"]\n    environment:\n"
    );
    for (k, v) in env {
        s.push_str(&format!("      {k}: \"{v}\"\n"));
    }
    s.push_str(extra);
    s
}

fn compose_path(stack: &str) -> String {
    format!("stacks/{stack}/compose.yaml")
}

// ---- one test's setup ----------------------------------------------------------------

/// What every test starts from: a unique stack (its containers, networks and
/// volumes removed at the end, by panic too), and a temporary directory with
/// an empty config repository (`repo/`) and the agent's state directory
/// (`state/`). Declare the test's [`Agent`] after it.
pub(crate) struct Scenario {
    pub(crate) stack: String,
    /// The container of the stack's service `web` (see [`web_stack`]).
    pub(crate) web: String,
    pub(crate) repo: GitRepo,
    pub(crate) state: PathBuf,
    tmp: tempfile::TempDir,
    _cleanup: Cleanup,
}

impl Scenario {
    pub(crate) fn new(what: &str) -> Scenario {
        ensure_busybox();
        let mut cleanup = Cleanup::new();
        let stack = cleanup.stack(what);
        let tmp = tempfile::tempdir().unwrap();
        let repo = GitRepo::init(tmp.path().join("repo"));
        Scenario {
            web: format!("{stack}-web-1"),
            state: tmp.path().join("state"),
            stack,
            repo,
            tmp,
            _cleanup: cleanup,
        }
    }

    /// `name` in the temporary directory.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Writes the stack's Compose file in the repository: [`web_stack`] with
    /// `env` and `extra`.
    pub(crate) fn write_web(&self, env: &[(&str, &str)], extra: &str) {
        self.repo.write(
            &compose_path(&self.stack),
            &web_stack(&self.stack, env, extra),
        );
    }

    /// Commits the web stack with `GREETING=<greeting>` (also the commit
    /// message); returns the SHA.
    pub(crate) fn commit_greeting(&self, greeting: &str) -> String {
        self.write_web(&[("GREETING", greeting)], "");
        self.repo.commit(greeting)
    }

    /// Starts the agent on the repository with `args` and `env`, and waits
    /// until `revision` is applied.
    pub(crate) fn deploy(&self, args: &[&str], env: &[(&str, &str)], revision: &str) -> Agent {
        let agent = Agent::start(&self.state, &self.repo.url(), args, env);
        agent.wait_revision(revision, Duration::from_secs(30));
        agent
    }
}

// ---- the engine ----------------------------------------------------------------------

/// `docker inspect -f FORMAT NAME`, `None` when there is no such container.
fn inspect(name: &str, format: &str) -> Option<String> {
    let out = docker_output(&["inspect", "--type", "container", "-f", format, name]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub(crate) fn running(name: &str) -> bool {
    inspect(name, "{{.State.Running}}").as_deref() == Some("true")
}

fn container_id(name: &str) -> Option<String> {
    inspect(name, "{{.Id}}")
}

fn env_of(name: &str) -> Vec<String> {
    inspect(name, "{{json .Config.Env}}")
        .and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default()
}

/// Whether the container has `GREETING=<greeting>` in its environment.
fn has_greeting(name: &str, greeting: &str) -> bool {
    env_of(name).contains(&format!("GREETING={greeting}"))
}

/// Waits until the container runs with `GREETING=<greeting>`.
#[track_caller]
pub(crate) fn wait_greeting(name: &str, greeting: &str, timeout: Duration) {
    wait_for(
        &format!("{name} running with GREETING={greeting}"),
        timeout,
        POLL,
        || (running(name) && has_greeting(name, greeting)).then_some(()),
    );
}

#[track_caller]
pub(crate) fn wait_running(name: &str, timeout: Duration) {
    wait_for(
        &format!("{name} running"),
        timeout,
        Duration::from_millis(50),
        || running(name).then_some(()),
    );
}

/// The value of one sample of `/metrics` (`name{labels}` exactly), or 0.
pub(crate) fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The `plimsoll_revision_info` sample of `revision` in `/metrics`, or 0.
fn revision_info(metrics: &str, revision: &str) -> f64 {
    sample(
        metrics,
        &format!("plimsoll_revision_info{{revision=\"{revision}\"}}"),
    )
}

/// The status of `service` in `stack` in a `/status` document.
fn service<'a>(status: &'a Value, stack: &str, service: &str) -> &'a Value {
    status["stacks"]
        .as_array()
        .and_then(|stacks| stacks.iter().find(|s| s["name"] == stack))
        .and_then(|s| s["services"].as_array())
        .and_then(|svcs| svcs.iter().find(|s| s["service"] == service))
        .unwrap_or(&Value::Null)
}

pub(crate) fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub(crate) fn push_payload(git_ref: &str, after: &str) -> String {
    serde_json::json!({
        "ref": git_ref,
        "before": "0".repeat(40),
        "after": after,
        "repository": {"full_name": "ops/hosts"},
    })
    .to_string()
}

// ---- tests --------------------------------------------------------------------------------

/// The first sync, a polled commit, drift healed three ways, metrics, and a
/// secret (a canary) that appears in no output: log (at debug level),
/// `/status`, `/metrics`, notifications, history.
#[test]
fn agent_polls_git_heals_drift_and_never_shows_a_secret() {
    let sc = Scenario::new("agent-poll");
    let (stack, web, repo, state) = (&sc.stack, &sc.web, &sc.repo, &sc.state);
    let receiver = Receiver::start();
    let canary1 = format!("canary-s3cr3t-{}", crate::support::unique_name("one"));
    let canary2 = format!("canary-s3cr3t-{}", crate::support::unique_name("two"));
    repo.write("plimsoll.yaml", &receiver.notifications());
    let limits = "    mem_limit: 128m\n";
    sc.write_web(&[("GREETING", "v1"), ("API_TOKEN", &canary1)], limits);
    let sha1 = repo.commit("one");

    let agent = Agent::start_with(state, &["-v"], &repo.url(), &["--interval", "1s"], &[]);
    let status = agent.wait_revision(&sha1, Duration::from_secs(30));
    assert_eq!(sha1.len(), 40);
    assert_eq!(status["source"], repo.url());
    let host = status["host"].as_str().unwrap_or_default().to_string();
    assert!(!host.is_empty(), "the engine's name: {status:#}");
    assert_eq!(status["last_sync"]["result"], "succeeded", "{status:#}");
    assert_eq!(
        service(&status, stack, "web")["state"],
        "in sync",
        "{status:#}"
    );
    assert!(running(web));
    assert!(has_greeting(web, "v1"));
    let metrics = agent.metrics();
    assert!(
        sample(&metrics, "plimsoll_sync_total{result=\"succeeded\"}") >= 1.0,
        "{metrics}"
    );
    assert_eq!(revision_info(&metrics, &sha1), 1.0, "{metrics}");
    receiver.wait_event("sync_succeeded", Duration::from_secs(10), |n| {
        n["revision"] == sha1
    });

    // A pushed commit (an ordinary and a secret value changed) is polled and applied.
    sc.write_web(&[("GREETING", "v2"), ("API_TOKEN", &canary2)], limits);
    let sha2 = repo.commit("two");
    agent.wait_revision(&sha2, Duration::from_secs(20));
    wait_running(web, Duration::from_secs(5));
    let env = env_of(web);
    assert!(env.contains(&"GREETING=v2".to_string()), "{env:?}");
    assert!(env.contains(&format!("API_TOKEN={canary2}")), "{env:?}");
    let metrics = agent.metrics();
    assert_eq!(revision_info(&metrics, &sha2), 1.0, "{metrics}");
    assert!(
        !metrics.contains(&format!("revision=\"{sha1}\"")),
        "one revision series: {metrics}"
    );
    // The change went through plan/apply and the audit log, value hidden.
    let record = history(state)
        .into_iter()
        .find(|r| r["revision"] == sha2)
        .expect("an audit record of the second revision");
    assert_eq!(record["outcome"], "applied", "{record:#}");
    assert!(
        record
            .to_string()
            .contains("API_TOKEN changed (value hidden)"),
        "{record:#}"
    );

    let drift = |kind: &str| {
        sample(
            &agent.metrics(),
            &format!("plimsoll_drift_detected_total{{kind=\"{kind}\"}}"),
        )
    };
    // Stopped by hand: started again.
    let id = container_id(web).unwrap();
    docker(&["stop", "-t", "0", web]);
    wait_running(web, Duration::from_secs(5));
    assert_eq!(container_id(web).unwrap(), id, "started, not recreated");
    assert!(drift("stopped") >= 1.0);

    // Removed by hand: created again from git. The default heal backoff
    // (10 s) is in force, so this also proves a removal is not a failed heal.
    docker(&["rm", "-f", web]);
    wait_for(
        "the removed container created again",
        Duration::from_secs(6),
        Duration::from_millis(50),
        || container_id(web).filter(|new| *new != id && running(web)),
    );
    assert!(has_greeting(web, "v2"));
    assert!(drift("missing") >= 1.0);

    // `docker update` of the memory limit: replaced with git's 128 MiB.
    docker(&["update", "--memory", "256m", "--memory-swap", "512m", web]);
    wait_for(
        "the memory limit back to 128 MiB",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            (inspect(web, "{{.HostConfig.Memory}}").as_deref() == Some("134217728") && running(web))
                .then_some(())
        },
    );
    assert!(drift("changed") >= 1.0);
    let status = agent.wait_status("web in sync", Duration::from_secs(10), |s| {
        service(s, stack, "web")["state"] == "in sync"
    });
    assert_eq!(status["revision"], sha2);
    let notification = receiver.wait_event("drift_detected", Duration::from_secs(10), |n| {
        n["stack"] == stack.as_str() && n["service"] == "web"
    });
    assert_eq!(notification["revision"], sha2);
    assert_eq!(notification["host"], host.as_str(), "{notification:#}");
    // The heal's audit record is written when its apply ends, which may be
    // after the status and the notification above: wait for it.
    wait_for(
        "the apply and three heals audited",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let heals = history(state)
                .into_iter()
                .filter(|r| r["revision"] == sha2)
                .count();
            (heals >= 4).then_some(())
        },
    );

    // The canaries appear nowhere.
    let status = agent.status().to_string();
    let metrics = agent.metrics();
    let notes = serde_json::to_string(&receiver.all()).unwrap();
    let history_json = plimsoll(state, &["history", "--format", "json"]);
    let history_text = plimsoll(state, &["history"]);
    let log = agent.log();
    assert!(log.contains("drifted"), "the log has the drift:\n{log}");
    for canary in [&canary1, &canary2] {
        for (what, text) in [
            ("the agent's log", &log),
            ("/status", &status),
            ("/metrics", &metrics),
            ("the notifications", &notes),
            ("history --format json", &history_json.all()),
            ("history", &history_text.all()),
        ] {
            assert!(
                !text.contains(canary.as_str()),
                "the secret appears in {what}:\n{text}"
            );
        }
    }
}

/// `POST /webhook` and `POST /sync`: refusals change nothing; signed pushes
/// of the followed branch (JSON, form-encoded, GitLab token) are applied at
/// once with a 1 h poll interval; a burst of pushes applies a commit once.
#[test]
fn agent_webhook_and_sync_are_authenticated_and_coalesced() {
    let sc = Scenario::new("agent-hook");
    let (web, state) = (&sc.web, &sc.state);
    let secret = "hook-secret-It's a Secret to Everybody";
    let token = "sync-token-7f0c1d";
    let secret_file = sc.path("secret");
    let token_file = sc.path("token");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    std::fs::write(&token_file, token).unwrap();
    let revise = |n: u32| sc.commit_greeting(&format!("v{n}"));
    let sha1 = revise(1);
    let agent = sc.deploy(
        &[
            "--interval",
            "1h",
            "--branch",
            "main",
            "--webhook-secret-file",
            secret_file.to_str().unwrap(),
            "--sync-token-file",
            token_file.to_str().unwrap(),
        ],
        &[],
        &sha1,
    );
    let greeting = |n: u32| has_greeting(web, &format!("v{n}"));
    assert!(greeting(1));

    let sha2 = revise(2);
    let body = push_payload("refs/heads/main", &sha2);
    let json = ("Content-Type", "application/json");
    let push = ("X-GitHub-Event", "push");
    // Refused: no signature, a wrong one, too large (even if signed).
    let r = agent.post("/webhook", &[json, push], body.as_bytes());
    assert_eq!(r.code, 401, "{r:?}");
    assert!(
        r.body.contains("X-Hub-Signature-256"),
        "says what is missing: {r:?}"
    );
    let wrong = sign("not the secret", body.as_bytes());
    let r = agent.post(
        "/webhook",
        &[json, push, ("X-Hub-Signature-256", &wrong)],
        body.as_bytes(),
    );
    assert_eq!(r.code, 401, "{r:?}");
    assert!(!r.body.contains(secret), "{r:?}");
    let r = agent.post(
        "/webhook",
        &[json, push, ("X-GitLab-Token", "not the secret")],
        body.as_bytes(),
    );
    assert_eq!(r.code, 401, "{r:?}");
    let big = vec![b' '; (1 << 20) + 1];
    let big_sig = sign(secret, &big);
    let r = agent.post(
        "/webhook",
        &[json, push, ("X-Hub-Signature-256", &big_sig)],
        &big,
    );
    assert_eq!(r.code, 413, "{r:?}");
    // A ping, and a push of a branch that is not followed: 200, nothing to do.
    let ping = r#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    let r = agent.post(
        "/webhook",
        &[
            json,
            ("X-GitHub-Event", "ping"),
            ("X-Hub-Signature-256", &sign(secret, ping.as_bytes())),
        ],
        ping.as_bytes(),
    );
    assert_eq!(r.code, 200, "{r:?}");
    let other = push_payload("refs/heads/feature", &sha2);
    let r = agent.post(
        "/webhook",
        &[
            json,
            push,
            ("X-Hub-Signature-256", &sign(secret, other.as_bytes())),
        ],
        other.as_bytes(),
    );
    assert_eq!(r.code, 200, "{r:?}");
    assert!(r.body.contains("not followed"), "{r:?}");
    // Nothing of that fetched or applied the new commit.
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        let s = agent.status();
        assert_eq!(s["revision"], sha1, "{s:#}");
        assert_eq!(s["fetched"], sha1, "no fetch without a valid push: {s:#}");
        thread::sleep(POLL);
    }
    assert!(greeting(1));

    // A signed GitHub push of main: 202, applied.
    let r = agent.post(
        "/webhook",
        &[
            json,
            push,
            ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("X-Hub-Signature-256", &sign(secret, body.as_bytes())),
        ],
        body.as_bytes(),
    );
    assert_eq!(r.code, 202, "{r:?}");
    agent.wait_revision(&sha2, Duration::from_secs(20));
    wait_greeting(web, "v2", Duration::from_secs(5));

    // GitHub's form-encoded body (`payload=<json>`).
    let sha3 = revise(3);
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &push_payload("refs/heads/main", &sha3))
        .finish();
    let r = agent.post(
        "/webhook",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            push,
            ("X-Hub-Signature-256", &sign(secret, form.as_bytes())),
        ],
        form.as_bytes(),
    );
    assert_eq!(r.code, 202, "{r:?}");
    agent.wait_revision(&sha3, Duration::from_secs(20));

    // GitLab: the token itself in X-Gitlab-Token.
    let sha4 = revise(4);
    let gitlab = serde_json::json!({
        "object_kind": "push", "ref": "refs/heads/main", "after": sha4,
        "checkout_sha": sha4,
    })
    .to_string();
    let r = agent.post(
        "/webhook",
        &[
            json,
            ("X-Gitlab-Event", "Push Hook"),
            ("X-Gitlab-Token", secret),
        ],
        gitlab.as_bytes(),
    );
    assert_eq!(r.code, 202, "{r:?}");
    agent.wait_revision(&sha4, Duration::from_secs(20));

    // A burst of 10 deliveries of one push: applied once.
    let sha5 = revise(5);
    let body = push_payload("refs/heads/main", &sha5);
    let sig = sign(secret, body.as_bytes());
    let burst: Vec<_> = (0..10)
        .map(|_| {
            let addr = agent.addr.clone();
            let (body, sig) = (body.clone(), sig.clone());
            thread::spawn(move || {
                http(
                    &addr,
                    "POST",
                    "/webhook",
                    &[json, push, ("X-Hub-Signature-256", &sig)],
                    body.as_bytes(),
                )
                .code
            })
        })
        .collect();
    let codes: Vec<u16> = burst.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(codes, [202; 10]);
    agent.wait_revision(&sha5, Duration::from_secs(20));

    // POST /sync: a wrong or missing token is refused; the right one queues a
    // sync, which runs after every queued push.
    let r = agent.post("/sync", &[("Authorization", "Bearer wrong")], b"");
    assert_eq!(r.code, 401, "{r:?}");
    let r = agent.post("/sync", &[], b"");
    assert_eq!(r.code, 401, "{r:?}");
    let before = agent.status()["last_sync"]["time"].clone();
    let r = agent.post(
        "/sync",
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    );
    assert_eq!(r.code, 202, "{r:?}");
    agent.wait_status("the POST /sync cycle", Duration::from_secs(20), |s| {
        s["last_sync"]["trigger"]
            .as_str()
            .is_some_and(|t| t.contains("POST /sync"))
            && s["last_sync"]["time"] != before
    });
    assert!(greeting(5) && running(web));
    for (n, sha) in [(2, &sha2), (3, &sha3), (4, &sha4), (5, &sha5)] {
        assert_eq!(
            audited(state, sha, "applied"),
            1,
            "v{n} ({sha}) is applied exactly once:\n{}",
            plimsoll(state, &["history"]).stdout
        );
    }
    let log = agent.log();
    assert!(log.contains("webhook refused"), "{log}");
    assert!(!log.contains(secret) && !log.contains(token), "{log}");
}

/// A service that cannot stay up: three failed heals (1 s backoff), then the
/// agent gives up, says so in `/status`, `/metrics` and a notification; the
/// counters survive a restart (SIGTERM exits 0); `heal --reset` clears them.
#[test]
fn agent_self_heal_gives_up_survives_a_restart_and_is_reset() {
    let sc = Scenario::new("agent-giveup");
    let (stack, repo, state) = (&sc.stack, &sc.repo, &sc.state);
    let receiver = Receiver::start();
    let token_file = sc.path("token");
    std::fs::write(&token_file, "sync-token-1").unwrap();
    repo.write(
        "plimsoll.yaml",
        &format!(
            "agent: {{heal_backoff: 1s, heal_attempts: 3}}\n{}",
            receiver.notifications()
        ),
    );
    // Runs the first time; every later start exits 3 (the marker survives a restart).
    repo.write(
        &compose_path(stack),
        &format!(
            "name: {stack}\nservices:\n  flaky:\n    image: {BUSYBOX_IMAGE}\n    init: true\n    command: [\"sh\", \"-c\", \"if [ -e /marker ]; then exit 3; fi; touch /marker; exec sleep 3600\"]\n    x-plimsoll: {{health_timeout: 3s}}\n"
        ),
    );
    let sha = repo.commit("flaky");
    let args = [
        "--interval",
        "1h",
        "--sync-token-file",
        token_file.to_str().unwrap(),
    ];
    let key = format!("{stack}/flaky");
    let flaky = format!("{stack}-flaky-1");
    let gave_up = |s: &Value| {
        s["gave_up"]
            .as_array()
            .is_some_and(|g| g.iter().any(|k| k == key.as_str()))
    };

    let mut agent = sc.deploy(&args, &[], &sha);
    assert!(running(&flaky));
    docker(&["stop", "-t", "0", &flaky]);
    let status = agent.wait_status("self-heal to give up", Duration::from_secs(40), gave_up);
    let heal = &service(&status, stack, "flaky")["heal"];
    assert_eq!(heal["gave_up"], true, "{status:#}");
    assert_eq!(heal["failures"], 3, "{status:#}");
    assert!(
        heal["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("exit code 3")),
        "{status:#}"
    );
    assert_eq!(service(&status, stack, "flaky")["running"], false);
    let note = receiver.wait_event("self_heal_gave_up", Duration::from_secs(10), |n| {
        n["stack"] == stack.as_str() && n["service"] == "flaky"
    });
    assert!(
        note["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("heal --reset {key}"))),
        "{note:#}"
    );
    let metrics = agent.metrics();
    assert_eq!(
        sample(&metrics, "plimsoll_self_heal_gave_up_services"),
        1.0,
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "plimsoll_self_heal_attempts_total{result=\"failed\"}"
        ) >= 3.0,
        "{metrics}"
    );
    // Given up means no more attempts.
    let attempts = heal["attempts"].clone();
    let quiet_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < quiet_until {
        let s = agent.status();
        assert_eq!(
            service(&s, stack, "flaky")["heal"]["attempts"],
            attempts,
            "{s:#}"
        );
        thread::sleep(Duration::from_millis(250));
    }

    // SIGTERM: exits 0; a new agent on the same state directory remembers.
    let healthy = plimsoll(state, &["healthcheck", "--listen", &agent.addr]);
    healthy.expect(0);
    let exit = agent.terminate();
    assert_eq!(exit.code(), Some(0), "{exit}\n{}", agent.log());
    assert!(agent.log().contains("stopped"), "{}", agent.log());
    plimsoll(state, &["healthcheck", "--listen", &agent.addr]).expect(1);
    drop(agent);
    let agent = Agent::start(state, &repo.url(), &args, &[]);
    let status = agent.wait_status(
        "the counters after a restart",
        Duration::from_secs(30),
        gave_up,
    );
    assert_eq!(status["revision"], sha);
    let heal = &service(&status, stack, "flaky")["heal"];
    assert_eq!(heal["gave_up"], true, "{status:#}");
    assert_eq!(heal["failures"], 3, "{status:#}");
    assert!(!running(&flaky), "the restart did not try again");

    // `heal --reset stack/service` clears them: the next check tries again.
    let reset = agent.cli(&["heal", "--reset", &key]);
    reset.expect(0);
    assert!(
        reset
            .stderr
            .contains("cleared the self-heal counters of 1 service"),
        "{reset}"
    );
    let book: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("heal.json")).unwrap()).unwrap();
    assert!(book["services"].get(&key).is_none(), "{book:#}");
    let r = agent.post("/sync", &[("Authorization", "Bearer sync-token-1")], b"");
    assert_eq!(r.code, 202, "{r:?}");
    agent.wait_status("healing to start over", Duration::from_secs(20), |s| {
        let heal = &service(s, stack, "flaky")["heal"];
        heal["gave_up"] == false
            && heal["failures"]
                .as_u64()
                .is_some_and(|f| (1..3).contains(&f))
            && s["gave_up"].as_array().is_some_and(|g| g.is_empty())
    });
}

/// Bad YAML, then a policy violation: rejected with file and line, the last
/// good revision keeps running untouched, a notification goes out; the next
/// good commit is applied.
#[test]
fn agent_rejects_broken_revisions_and_keeps_the_last_good_one() {
    let sc = Scenario::new("agent-reject");
    let (stack, web, repo, state) = (&sc.stack, &sc.web, &sc.repo, &sc.state);
    let receiver = Receiver::start();
    let config = format!(
        "policy: {{privileged: {{allow: []}}}}\n{}",
        receiver.notifications()
    );
    repo.write("plimsoll.yaml", &config);
    let good = sc.commit_greeting("v1");
    let agent = sc.deploy(&["--interval", "1s"], &[], &good);
    let id = container_id(web).unwrap();

    let broken = [
        (
            "bad YAML",
            format!("name: {stack}\nservices:\n  web:\n    image: [unclosed\n    init: true\n"),
            "invalid YAML",
        ),
        (
            "a policy violation",
            web_stack(stack, &[("GREETING", "v2")], "    privileged: true\n"),
            "privileged",
        ),
    ];
    for (what, compose, why) in broken {
        repo.write(&compose_path(stack), &compose);
        let bad = repo.commit(what);
        let status = agent.wait_status(&format!("{what} rejected"), Duration::from_secs(20), |s| {
            s["rejected"]["revision"] == bad
        });
        let reason = status["rejected"]["reason"].as_str().unwrap_or_default();
        let file = format!("{}:", compose_path(stack));
        let line = reason
            .split_once(&file)
            .and_then(|(_, rest)| rest.split(':').next()?.parse::<u32>().ok());
        assert!(
            line.is_some() && reason.contains(why),
            "{what}: the reason names the file, line and problem: {reason}"
        );
        assert!(
            !reason.contains("worktree"),
            "{what}: files are named as in the repository: {reason}"
        );
        assert_eq!(status["revision"], good, "{status:#}");
        assert_eq!(status["fetched"], bad, "{status:#}");
        let note = receiver.wait_event("revision_rejected", Duration::from_secs(10), |n| {
            n["message"].as_str().is_some_and(|m| m.contains(&bad))
        });
        assert!(note["message"].as_str().unwrap().contains(why), "{note:#}");
        assert_eq!(note["revision"], bad, "the rejected revision: {note:#}");
        // Not retried, nothing changed.
        thread::sleep(Duration::from_millis(1500));
        assert_eq!(container_id(web).as_deref(), Some(id.as_str()));
        assert!(running(web));
        assert!(has_greeting(web, "v1"));
        assert_eq!(agent.status()["revision"], good);
        assert_eq!(
            audited(state, &bad, "applied"),
            0,
            "{what} is never applied"
        );
        assert_eq!(
            audited(state, &bad, "rejected"),
            1,
            "{what} is audited once"
        );
    }
    let metrics = agent.metrics();
    assert!(
        sample(&metrics, "plimsoll_sync_total{result=\"rejected\"}") >= 2.0,
        "{metrics}"
    );
    assert_eq!(revision_info(&metrics, &good), 1.0, "{metrics}");

    // The next good commit is applied.
    let fixed = sc.commit_greeting("v3");
    agent.wait_revision(&fixed, Duration::from_secs(20));
    wait_greeting(web, "v3", Duration::from_secs(5));
    assert_eq!(agent.status()["last_sync"]["result"], "succeeded");
}

/// The remote disappears: `/status` says so, the containers keep running and
/// drift is still healed; it comes back: the agent recovers.
#[test]
fn agent_keeps_the_host_while_the_remote_is_unreachable() {
    let sc = Scenario::new("agent-offline");
    let (web, repo) = (&sc.web, &sc.repo);
    let sha = sc.commit_greeting("v1");
    let agent = sc.deploy(&["--interval", "1s"], &[], &sha);

    let moved = sc.path("moved");
    std::fs::rename(&repo.dir, &moved).unwrap();
    let status = agent.wait_status("a source error", Duration::from_secs(15), |s| {
        s["source_error"].is_string()
    });
    assert_eq!(status["revision"], sha);
    assert!(running(web));
    docker(&["stop", "-t", "0", web]);
    wait_running(web, Duration::from_secs(5));
    let status = agent.status();
    assert!(status["source_error"].is_string(), "{status:#}");
    assert!(agent.log().contains("keeping the last good revision"));

    std::fs::rename(&moved, &repo.dir).unwrap();
    let sha2 = sc.commit_greeting("v2");
    let status = agent.wait_revision(&sha2, Duration::from_secs(30));
    assert!(status["source_error"].is_null(), "{status:#}");
    wait_greeting(web, "v2", Duration::from_secs(5));
}

/// A unix-socket proxy to the engine that can drop every connection it
/// carries, and refuse new ones for a while (an engine outage).
struct Proxy {
    path: PathBuf,
    conns: Arc<Mutex<Vec<std::os::unix::net::UnixStream>>>,
    /// Connections proxied since the start.
    accepted: Arc<AtomicUsize>,
    /// While set, new connections are closed at once.
    refuse: Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    fn start(path: PathBuf) -> Proxy {
        use std::os::unix::net::{UnixListener, UnixStream};
        let upstream = match std::env::var("DOCKER_HOST") {
            Ok(h) if h.starts_with("unix://") => PathBuf::from(&h["unix://".len()..]),
            Ok(h) if !h.is_empty() => panic!("the proxy needs a unix socket engine, not {h}"),
            _ => PathBuf::from("/var/run/docker.sock"),
        };
        let listener = UnixListener::bind(&path).expect("bind the proxy socket");
        let conns: Arc<Mutex<Vec<UnixStream>>> = Arc::default();
        let accepted = Arc::new(AtomicUsize::new(0));
        let refuse: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let (c, a, r) = (conns.clone(), accepted.clone(), refuse.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if r.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = UnixStream::connect(&upstream) else {
                    continue;
                };
                a.fetch_add(1, Ordering::SeqCst);
                {
                    let mut c = c.lock().unwrap();
                    c.push(client.try_clone().unwrap());
                    c.push(server.try_clone().unwrap());
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy {
            path,
            conns,
            accepted,
            refuse,
        }
    }

    /// Drops every connection, refuses new ones for `outage`, then carries
    /// connections again.
    fn outage(&self, outage: Duration) {
        self.refuse.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        thread::sleep(outage);
        self.refuse.store(false, Ordering::SeqCst);
    }
}

/// The engine connection is lost for 1.5 s (every connection dropped, new
/// ones refused) right after a heal, while the agent checks that the heal
/// holds: that is no verdict on the service (no failed heal, no backoff); the
/// event stream breaks and reconnects, and a stop seen only through events
/// afterwards is healed.
#[test]
fn agent_survives_an_engine_outage_and_its_event_stream_reconnects() {
    let sc = Scenario::new("agent-stream");
    let (stack, web) = (&sc.stack, &sc.web);
    let proxy = Proxy::start(sc.path("proxy.sock"));
    let sha = sc.commit_greeting("v1");
    let host = format!("unix://{}", proxy.path.display());
    // No polling and no periodic resync during the test: only events heal.
    let agent = sc.deploy(
        &["--interval", "1h", "--resync", "1h"],
        &[("DOCKER_HOST", &host)],
        &sha,
    );

    // A heal through the proxy; the agent checks for a second that it holds
    // (no health check), and the engine goes away meanwhile.
    let lost = |l: &String| l.contains("event stream");
    let before = agent.log_lines().iter().filter(|l| lost(l)).count();
    docker(&["stop", "-t", "0", web]);
    wait_running(web, Duration::from_secs(5));
    let accepted = proxy.accepted.load(Ordering::SeqCst);
    proxy.outage(Duration::from_millis(1500));
    let status = agent.wait_status("the heal recorded", Duration::from_secs(10), |s| {
        service(s, stack, "web")["heal"]["attempts"] == 1
    });
    let heal = &service(&status, stack, "web")["heal"];
    assert_eq!(
        heal["failures"], 0,
        "a lost engine is no failed heal: {status:#}"
    );
    assert!(heal["not_before"].is_null(), "no backoff: {status:#}");
    wait_for(
        "the agent to notice the lost stream and reconnect",
        Duration::from_secs(10),
        POLL,
        || {
            let noticed = agent.log_lines().iter().filter(|l| lost(l)).count() > before;
            (noticed && proxy.accepted.load(Ordering::SeqCst) > accepted).then_some(())
        },
    );
    // The reconnection asks for a full check (events were missed).
    wait_for(
        "the resync after reconnecting",
        Duration::from_secs(10),
        POLL,
        || {
            agent
                .log_lines()
                .iter()
                .any(|l| l.contains("event stream re-opened, checking everything"))
                .then_some(())
        },
    );
    thread::sleep(Duration::from_millis(300));
    docker(&["stop", "-t", "0", web]);
    wait_running(web, Duration::from_secs(5));
    let status = agent.wait_status("the second heal recorded", Duration::from_secs(10), |s| {
        service(s, stack, "web")["heal"]["attempts"] == 2
    });
    assert_eq!(status["revision"], sha);
    assert_eq!(
        service(&status, stack, "web")["heal"]["failures"],
        0,
        "{status:#}"
    );
    let healthz = agent.get("/healthz");
    assert_eq!(healthz.code, 200, "{healthz:?}");
}

/// `plimsoll pause <stack>`: a stopped container stays stopped, `/status`
/// shows it stopped and paused; `resume`: healed at the next check.
#[test]
fn agent_pause_freezes_a_stack_and_resume_heals_it() {
    let sc = Scenario::new("agent-pause");
    let (stack, web) = (&sc.stack, &sc.web);
    let sha = sc.commit_greeting("v1");
    let agent = sc.deploy(&["--interval", "1h", "--resync", "1s"], &[], &sha);

    let paused = agent.cli(&["pause", stack]);
    paused.expect(0);
    assert!(paused.stderr.contains("paused"), "{paused}");
    docker(&["stop", "-t", "0", web]);
    let status = agent.wait_status(
        "the stack paused and stopped",
        Duration::from_secs(10),
        |s| {
            let stk = s["stacks"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["name"] == stack.as_str()));
            stk.is_some_and(|x| x["paused"] == true)
                && service(s, stack, "web")["state"] == "stopped (paused)"
        },
    );
    assert_eq!(service(&status, stack, "web")["running"], false);
    // Several checks (events and 1 s resyncs) later, still stopped.
    let seen = status["last_sync"]["time"].clone();
    agent.wait_status("two more checks", Duration::from_secs(10), |s| {
        s["last_sync"]["time"] != seen
    });
    let seen = agent.status()["last_sync"]["time"].clone();
    agent.wait_status("another check", Duration::from_secs(10), |s| {
        s["last_sync"]["time"] != seen
    });
    assert!(!running(web), "a paused stack is never changed");
    assert_eq!(
        service(&agent.status(), stack, "web")["state"],
        "stopped (paused)"
    );

    let resumed = agent.cli(&["resume", stack]);
    resumed.expect(0);
    wait_running(web, Duration::from_secs(10));
    agent.wait_status("in sync, not paused", Duration::from_secs(10), |s| {
        service(s, stack, "web")["state"] == "in sync"
    });
}

/// A plain directory as `--repo`: an edit of the Compose file is applied
/// within seconds (debounced watcher, no polling).
#[test]
fn agent_watches_a_local_directory() {
    let sc = Scenario::new("agent-dir");
    let (stack, web, state) = (&sc.stack, &sc.web, &sc.state);
    let dir = sc.path("config");
    let write_web = |greeting: &str| {
        write_file(
            &dir,
            &compose_path(stack),
            &web_stack(stack, &[("GREETING", greeting)], ""),
        );
    };
    write_web("v1");
    let agent = Agent::start(state, dir.to_str().unwrap(), &["--interval", "1h"], &[]);
    let first = agent.wait_status("the directory applied", Duration::from_secs(30), |s| {
        s["revision"]
            .as_str()
            .is_some_and(|r| r.starts_with("local:"))
    });
    assert_eq!(first["source"], dir.to_str().unwrap());
    wait_running(web, Duration::from_secs(5));
    assert!(has_greeting(web, "v1"));

    // With `--interval 1h`, only the watcher can bring the edit in: the
    // wait is a hang guard, not a measure.
    write_web("v2");
    wait_greeting(web, "v2", Duration::from_secs(60));
    let status = agent.wait_status("a new local revision", Duration::from_secs(5), |s| {
        s["revision"] != first["revision"]
            && s["revision"]
                .as_str()
                .is_some_and(|r| r.starts_with("local:"))
    });
    assert_eq!(status["last_sync"]["result"], "succeeded", "{status:#}");
}

/// An age-encrypted secret in the repository: the agent decrypts it with the
/// host's identity (`<state>/age.key`) from its checkout, delivers it into
/// the container and never shows it; a revision encrypted to another host is
/// rejected naming the file, and the last good one keeps running.
#[test]
fn agent_decrypts_age_secrets_with_the_host_identity() {
    let sc = Scenario::new("agent-age");
    let (stack, web, repo, state) = (&sc.stack, &sc.web, &sc.repo, &sc.state);
    let canary = format!("canary-age-{}", crate::support::unique_name("agent"));
    let keygen = plimsoll(state, &["secret", "keygen"]);
    keygen.expect(0);
    let recipient = keygen.stdout.trim().to_string();
    let other = sc.path("other.key");
    let other_key = other.display().to_string();
    plimsoll(state, &["secret", "keygen", "-o", &other_key]).expect(0);
    let other_recipient = std::fs::read_to_string(&other)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("# public key: ").map(str::to_string))
        .unwrap();
    // Encrypts `content` to `to` into the stack directory of the repository.
    let encrypt = |to: &str, content: &str| {
        let clear = sc.path("clear");
        std::fs::write(&clear, content).unwrap();
        let out = sc.path("db.age");
        let (clear_s, out_s) = (clear.display().to_string(), out.display().to_string());
        plimsoll(
            state,
            &["secret", "encrypt", "-r", to, "-o", &out_s, &clear_s],
        )
        .expect(0);
        std::fs::remove_file(&clear).unwrap();
        repo.write(
            &format!("stacks/{stack}/db.age"),
            &std::fs::read_to_string(&out).unwrap(),
        );
    };
    encrypt(&recipient, &canary);
    sc.write_web(
        &[("GREETING", "v1")],
        "    secrets: [db]\nsecrets:\n  db:\n    file: ./db.age\n",
    );
    let good = repo.commit("age");
    let agent = sc.deploy(&["--interval", "1s"], &[], &good);
    assert_eq!(docker(&["exec", web, "cat", "/run/secrets/db"]), canary);

    encrypt(&other_recipient, "canary-for-another-host");
    let bad = repo.commit("encrypted to another host");
    let status = agent.wait_status("rejected", Duration::from_secs(20), |s| {
        s["rejected"]["revision"] == bad
    });
    let reason = status["rejected"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("stacks/{stack}/db.age")),
        "{status:#}"
    );
    assert!(reason.contains("cannot decrypt"), "{status:#}");
    assert_eq!(
        status["revision"], good,
        "the last good revision stays: {status:#}"
    );
    assert_eq!(docker(&["exec", web, "cat", "/run/secrets/db"]), canary);
    let log = agent.log();
    for text in [&log, &status.to_string(), &agent.metrics()] {
        assert!(!text.contains(&canary), "the secret is shown:\n{text}");
        assert!(
            !text.contains("AGE-SECRET-KEY"),
            "the identity is shown:\n{text}"
        );
    }
}
