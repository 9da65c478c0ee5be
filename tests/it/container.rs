//! The agent's container image and its Compose file, on the real engine.
//!
//! The image is built offline from `Dockerfile.runtime` with this test run's
//! plimsoll binary on `plimsoll-example/debian:bookworm` (imported by
//! `scripts/test-images.sh debian`), under a tag unique to the run that is
//! removed at the end. The agent container runs it as the image defines it
//! (its user, command, HEALTHCHECK and environment), with what
//! `deploy/agent/compose.yaml` adds (the Docker socket and its group, a state
//! volume, a read-only root, no capabilities), following a local repository
//! bind-mounted read-only; `--network host` and a free port on 127.0.0.1 keep
//! its endpoint on loopback and clear of parallel tests.
//!
//! Repository files a stack bind-mounts reach the engine as host paths: in
//! the state volume under the agent's container, as they are for the CLI
//! outside a container; with the state directory on a tmpfs such a stack is a
//! conflict that says how to mount it.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::gitserve::{TestRepo, free_port};
use crate::support::{
    self, Cleanup, DEBIAN_IMAGE, container_logs, docker, docker_output, ensure_busybox,
    ensure_debian, quiet, repo_root, unique_name, wait_for, wait_healthy,
};

/// The image's user and group.
const AGENT_UID: u32 = 10001;

/// An image built for this run; removed on drop (after the containers, which
/// are dropped first: declare it before them).
pub struct Image(pub String);

impl Drop for Image {
    fn drop(&mut self) {
        quiet(&["image", "rm", "-f", &self.0]);
    }
}

/// A running agent container, removed on drop before anything else of the
/// test, so that it cannot heal a stack container the cleanup removes.
pub struct Agent(pub String);

impl Drop for Agent {
    fn drop(&mut self) {
        quiet(&["rm", "-f", "-v", &self.0]);
    }
}

/// Builds `Dockerfile.runtime` with this run's plimsoll binary, offline.
pub fn build_runtime_image() -> Image {
    ensure_debian();
    let ctx = tempfile::tempdir().expect("temp dir");
    std::fs::copy(
        repo_root().join("Dockerfile.runtime"),
        ctx.path().join("Dockerfile.runtime"),
    )
    .expect("copy Dockerfile.runtime");
    // The debug binary is ~250 MB, nearly all debug info: a stripped copy
    // makes the same program and a tenth of the build context.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_plimsoll"));
    let dest = ctx.path().join("plimsoll");
    let stripped = Command::new("strip")
        .arg("-o")
        .arg(&dest)
        .arg(&bin)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(&bin, &dest).expect("copy the plimsoll binary");
    }
    let tag = format!("{}:test", unique_name("agent-image"));
    let image = Image(tag.clone());
    let dockerfile = ctx.path().join("Dockerfile.runtime");
    let base = format!("BASE={DEBIAN_IMAGE}");
    docker(&[
        "build",
        "-f",
        dockerfile.to_str().unwrap(),
        "--build-arg",
        &base,
        "--build-arg",
        "BINARY=plimsoll",
        "-t",
        &tag,
        ctx.path().to_str().unwrap(),
    ]);
    image
}

/// The Docker socket the tests' engine listens on (`DOCKER_HOST`, else the
/// default), to mount into the agent.
pub fn docker_socket() -> PathBuf {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.is_empty() => PathBuf::from(h.strip_prefix("unix://").unwrap_or_else(|| {
            panic!("DOCKER_HOST={h}: the container test needs a unix socket to mount")
        })),
        _ => PathBuf::from("/var/run/docker.sock"),
    }
}

/// `GET path` on 127.0.0.1:port: the status code and the body.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// The agent's `/status`, when it answers with JSON.
pub fn agent_status(port: u16) -> Option<Value> {
    match http_get(port, "/status")? {
        (200, body) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// Waits for `check`, failing early with the agent's logs when its container
/// stops running, and with its logs and last status on timeout.
#[track_caller]
pub fn wait_agent<T>(
    what: &str,
    agent: &str,
    port: u16,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    // The deadline is kept here rather than by `wait_for`, so that a timeout
    // reports the agent's status and logs too.
    wait_for(what, Duration::MAX, Duration::from_millis(250), || {
        if let Some(v) = check() {
            return Some(v);
        }
        let running = docker_output(&["inspect", "--format", "{{.State.Running}}", agent]);
        let running = String::from_utf8_lossy(&running.stdout).trim() == "true";
        if running && Instant::now() <= deadline {
            return None;
        }
        panic!(
            "{} while waiting for {what}\nstatus: {}\nagent logs:\n{}",
            if running {
                format!("timed out after {timeout:?}")
            } else {
                "the agent container stopped".to_string()
            },
            agent_status(port)
                .map(|s| serde_json::to_string_pretty(&s).unwrap())
                .unwrap_or_else(|| "(no answer)".into()),
            container_logs(agent)
        );
    })
}

/// `docker inspect` of one object as JSON.
pub fn inspect(what: &str) -> Value {
    let out = docker(&["inspect", what]);
    let v: Value = serde_json::from_str(&out).expect("docker inspect prints JSON");
    v[0].clone()
}

#[test]
fn container_agent_image_syncs_a_stack_is_healthy_and_stops_cleanly() {
    ensure_busybox();
    let image = build_runtime_image();

    let mut cleanup = Cleanup::new();
    let stack = cleanup.project("agent-stack");
    let volume = cleanup.volume("agent-state");
    let name = cleanup.container("agent");
    let repo = TestRepo::new();
    let compose = format!(
        "services:\n  web:\n    image: {}\n    command: [\"sleep\", \"3600\"]\n    init: true\n",
        support::BUSYBOX_IMAGE
    );
    let sha = repo.commit(
        &[(&format!("stacks/{stack}/compose.yaml"), Some(&compose))],
        "one stack",
    );

    let socket = docker_socket();
    let socket_gid = std::fs::metadata(&socket)
        .unwrap_or_else(|e| panic!("{}: {e}", socket.display()))
        .gid();
    let port = free_port();
    let started = Instant::now();
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        "-v",
        &format!("{}:/var/run/docker.sock", socket.display()),
        "--group-add",
        &socket_gid.to_string(),
        "-v",
        &format!("{volume}:/var/lib/plimsoll"),
        "-v",
        &format!("{}:/repo:ro", repo.path().display()),
        "-e",
        "PLIMSOLL_REPO=file:///repo",
        "-e",
        &format!("PLIMSOLL_LISTEN=127.0.0.1:{port}"),
        // What deploy/agent/compose.yaml adds.
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges:true",
        // The image's HEALTHCHECK, probed every second instead of 30 s.
        "--health-interval",
        "1s",
        "--stop-timeout",
        "30",
        &image.0,
    ]);
    let agent = Agent(name.clone());

    // The stack's container, made and labelled by the agent.
    let project_label = format!("label=com.docker.compose.project={stack}");
    let container = wait_agent(
        "the stack's container to run",
        &agent.0,
        port,
        Duration::from_secs(90),
        || {
            let out = docker_output(&["ps", "-q", "--no-trunc", "--filter", &project_label]);
            let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (!id.is_empty() && !id.contains('\n')).then_some(id)
        },
    );
    let c = inspect(&container);
    let labels = &c["Config"]["Labels"];
    assert_eq!(labels["io.plimsoll.stack"], stack.as_str(), "{labels:#}");
    assert_eq!(labels["io.plimsoll.service"], "web", "{labels:#}");
    assert!(labels["io.plimsoll.spec-hash"].is_string(), "{labels:#}");
    assert_eq!(labels["com.docker.compose.service"], "web", "{labels:#}");
    assert_eq!(c["State"]["Running"], true);

    // /status: the stack in sync at the commit.
    let status = wait_agent(
        "/status to show the stack in sync",
        &agent.0,
        port,
        Duration::from_secs(60),
        || {
            let s = agent_status(port)?;
            let web = s["stacks"]
                .as_array()?
                .iter()
                .find(|st| st["name"] == stack.as_str())?["services"]
                .as_array()?
                .iter()
                .find(|sv| sv["service"] == "web")?
                .clone();
            (s["revision"] == sha.as_str() && web["state"] == "in sync" && web["running"] == true)
                .then_some(s)
        },
    );
    assert_eq!(status["fetched"], sha.as_str(), "{status:#}");
    assert_eq!(status["source"], "file:///repo", "{status:#}");
    assert_eq!(status["last_sync"]["result"], "succeeded", "{status:#}");
    assert_eq!(sha.len(), 40, "the full commit SHA");

    // Healthy through the image's own HEALTHCHECK.
    wait_healthy(&agent.0, Duration::from_secs(60));
    let a = inspect(&agent.0);
    assert_eq!(
        a["Config"]["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "plimsoll", "healthcheck"]),
        "the image's HEALTHCHECK, only its interval overridden"
    );
    assert_eq!(a["Config"]["Cmd"], serde_json::json!(["agent"]));
    eprintln!(
        "agent image: stack in sync and agent healthy {:.1}s after docker run",
        started.elapsed().as_secs_f64()
    );

    // Non-root: uid 10001 with the socket's group added, as the image says.
    assert_eq!(a["Config"]["User"], "10001:10001");
    let proc_status = docker(&["exec", &agent.0, "cat", "/proc/1/status"]);
    let field = |key: &str| -> Vec<u32> {
        proc_status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in /proc/1/status:\n{proc_status}"))
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect()
    };
    assert_eq!(field("Uid:"), vec![AGENT_UID; 4], "{proc_status}");
    assert_eq!(field("Gid:"), vec![AGENT_UID; 4], "{proc_status}");
    assert!(
        field("Groups:").contains(&socket_gid),
        "the socket's group {socket_gid} is added:\n{proc_status}"
    );

    // Its logs are JSON lines.
    let logs = container_logs(&agent.0);
    let lines: Vec<Value> = logs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}\nlogs:\n{logs}"))
        })
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["timestamp"].is_string() && l["level"].is_string()),
        "{logs}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "revision applied"
                && l["fields"]["revision"] == sha.as_str()),
        "{logs}"
    );

    // docker stop: SIGTERM, a clean exit 0 within the stop timeout (after it
    // the engine kills: 137); the stack keeps running.
    let stopping = Instant::now();
    docker(&["stop", "-t", "30", &agent.0]);
    let took = stopping.elapsed();
    let a = inspect(&agent.0);
    assert_eq!(
        a["State"]["ExitCode"],
        0,
        "exit code after docker stop (137 = killed after the timeout)\nlogs:\n{}",
        container_logs(&agent.0)
    );
    let last: Value = serde_json::from_str(
        container_logs(&agent.0)
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(last["fields"]["message"], "stopped", "{last}");
    assert_eq!(inspect(&container)["State"]["Running"], true);
    eprintln!("agent image: docker stop took {:.1}s", took.as_secs_f64());
    drop(agent);
}

/// `docker compose config` of deploy/agent/compose.yaml with `vars` set and
/// every other PLIMSOLL_* and DOCKER_GID variable removed.
fn compose_config(file: &Path, vars: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(support::ensure_compose());
    cmd.arg("-f")
        .arg(file)
        .args(["config", "--format", "json"])
        .stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("PLIMSOLL_") || k == "DOCKER_GID" {
            cmd.env_remove(k);
        }
    }
    cmd.envs(vars.iter().copied());
    cmd.output().expect("run docker compose")
}

#[test]
fn container_compose_file_runs_the_agent_as_documented() {
    let file = repo_root().join("deploy/agent/compose.yaml");
    let repo_url = "https://git.example.com/ops/hosts.git";

    // DOCKER_GID and PLIMSOLL_REPO are required, with a hint.
    let out = compose_config(&file, &[("PLIMSOLL_REPO", repo_url)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("stat -c %g /var/run/docker.sock"), "{err}");
    let out = compose_config(&file, &[("DOCKER_GID", "999")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("PLIMSOLL_REPO"), "{err}");

    let out = compose_config(
        &file,
        &[
            ("DOCKER_GID", "999"),
            ("PLIMSOLL_REPO", repo_url),
            ("PLIMSOLL_BRANCH", "production"),
        ],
    );
    assert!(
        out.status.success(),
        "docker compose config failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let agent = &config["services"]["agent"];
    let env = &agent["environment"];
    assert_eq!(agent["image"], "plimsoll", "{agent:#}");
    assert_eq!(agent["command"], serde_json::json!(["agent"]));
    assert_eq!(agent["restart"], "unless-stopped");
    assert_eq!(agent["group_add"], serde_json::json!(["999"]));
    assert!(agent["user"].is_null(), "the image's uid 10001");
    assert_eq!(env["PLIMSOLL_REPO"], repo_url);
    assert_eq!(env["PLIMSOLL_BRANCH"], "production");
    assert!(
        env["PLIMSOLL_TAG"].is_null() && env["PLIMSOLL_INTERVAL"].is_null(),
        "unset variables are passed through only when set (an empty value is an error): {env:#}"
    );
    assert_eq!(env["PLIMSOLL_LISTEN"], "0.0.0.0:9300");
    assert_eq!(env["PLIMSOLL_LOG_FORMAT"], "json");

    // Secrets from files, under /run/secrets/, named by the *_FILE variables.
    let targets: Vec<&str> = agent["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["target"].as_str().unwrap())
        .collect();
    for (var, secret) in [
        ("PLIMSOLL_GIT_TOKEN_FILE", "git_token"),
        ("PLIMSOLL_WEBHOOK_SECRET_FILE", "webhook_secret"),
        ("PLIMSOLL_SYNC_TOKEN_FILE", "sync_token"),
    ] {
        let path = format!("/run/secrets/{secret}");
        assert_eq!(env[var], path.as_str(), "{env:#}");
        assert!(targets.contains(&path.as_str()), "{targets:?}");
        assert!(
            config["secrets"][secret]["file"]
                .as_str()
                .is_some_and(|f| f.ends_with(&format!("secrets/{}", secret.replace('_', "-")))),
            "{:#}",
            config["secrets"]
        );
    }

    // The socket and the state volume.
    let volumes = agent["volumes"].as_array().unwrap();
    assert!(
        volumes.iter().any(|v| v["type"] == "bind"
            && v["source"] == "/var/run/docker.sock"
            && v["target"] == "/var/run/docker.sock"),
        "{volumes:#?}"
    );
    assert!(
        volumes
            .iter()
            .any(|v| v["type"] == "volume" && v["target"] == "/var/lib/plimsoll"),
        "{volumes:#?}"
    );

    // The endpoint published on the host's loopback only.
    let ports = agent["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1, "{ports:#?}");
    assert_eq!(ports[0]["host_ip"], "127.0.0.1");
    assert_eq!(ports[0]["published"], "9300");
    assert_eq!(ports[0]["target"], 9300);

    // The hardening the container test runs the image with.
    assert_eq!(agent["read_only"], true);
    assert_eq!(agent["cap_drop"], serde_json::json!(["ALL"]));
    assert_eq!(
        agent["security_opt"],
        serde_json::json!(["no-new-privileges:true"])
    );
}

/// Runs the agent image as the first test does (`--network host`, the
/// socket and its group, the hardening of deploy/agent/compose.yaml),
/// following the local repository `repo` bind-mounted at /repo, with `state`
/// as the arguments that provide its state directory.
fn run_agent(image: &Image, name: &str, repo: &TestRepo, port: u16, state: &[&str]) -> Agent {
    let socket = docker_socket();
    let socket_gid = std::fs::metadata(&socket)
        .unwrap_or_else(|e| panic!("{}: {e}", socket.display()))
        .gid()
        .to_string();
    let mut args = vec![
        "run".to_string(),
        "-d".into(),
        "--name".into(),
        name.into(),
        "--network".into(),
        "host".into(),
        "-v".into(),
        format!("{}:/var/run/docker.sock", socket.display()),
        "--group-add".into(),
        socket_gid,
        "-v".into(),
        format!("{}:/repo:ro", repo.path().display()),
        "-e".into(),
        "PLIMSOLL_REPO=file:///repo".into(),
        "-e".into(),
        format!("PLIMSOLL_LISTEN=127.0.0.1:{port}"),
        "--read-only".into(),
        "--cap-drop".into(),
        "ALL".into(),
        "--security-opt".into(),
        "no-new-privileges:true".into(),
    ];
    args.extend(state.iter().map(|s| s.to_string()));
    args.push(image.0.clone());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    docker(&args);
    Agent(name.to_string())
}

/// The running container of a plimsoll stack's service, once there is one.
fn stack_container(stack: &str) -> Option<String> {
    let label = format!("label=io.plimsoll.stack={stack}");
    let out = docker_output(&["ps", "-q", "--no-trunc", "--filter", &label]);
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!id.is_empty() && !id.contains('\n')).then_some(id)
}

/// `plimsoll ARGS` inside the agent's container (`docker compose exec agent
/// plimsoll ...` in the README): its exit code and everything it printed.
fn plimsoll_in(agent: &str, args: &[&str]) -> (i32, String) {
    let mut all = vec!["exec", agent, "plimsoll"];
    all.extend_from_slice(args);
    let out = docker_output(&all);
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A stack that serves a directory of the repository, mounts a single file
/// and a `secrets:` `file:` from it: under the agent's container, the engine
/// gets their host paths (in the state volume), so the service turns healthy
/// and serves the repository's content.
#[test]
fn container_agent_mounts_repository_files_from_its_state_volume() {
    ensure_busybox();
    let image = build_runtime_image();
    let mut cleanup = Cleanup::new();
    let stack = cleanup.stack("agent-files");
    let volume = cleanup.volume("agent-state");
    let name = cleanup.container("agent");
    let web_port = free_port();
    let repo = TestRepo::new();
    let compose = format!(
        "services:\n  web:\n    image: {image}\n    command: httpd -f -p {web_port} -h /www\n    \
         ports: [\"127.0.0.1:{web_port}:{web_port}\"]\n    volumes:\n      - ./www:/www:ro\n      \
         - ./motd.txt:/etc/motd.txt:ro\n    secrets: [token]\n    healthcheck:\n      \
         test: [\"CMD-SHELL\", \"wget -q -O /dev/null http://127.0.0.1:{web_port}/ && grep -q motd-v1 /etc/motd.txt && grep -q token-v1 /run/secrets/token\"]\n      \
         interval: 1s\n      retries: 60\nsecrets:\n  token:\n    file: ./token.txt\n",
        image = support::BUSYBOX_IMAGE
    );
    let dir = format!("stacks/{stack}");
    repo.commit(
        &[
            (&format!("{dir}/compose.yaml"), Some(&compose)),
            (
                &format!("{dir}/www/index.html"),
                Some("<h1>from git</h1>\n"),
            ),
            (&format!("{dir}/motd.txt"), Some("motd-v1\n")),
            (&format!("{dir}/token.txt"), Some("token-v1\n")),
        ],
        "a stack with files",
    );
    let port = free_port();
    let agent = run_agent(
        &image,
        &name,
        &repo,
        port,
        &["-v", &format!("{volume}:/var/lib/plimsoll")],
    );
    let container = wait_agent(
        "the stack's container to run",
        &agent.0,
        port,
        Duration::from_secs(90),
        || stack_container(&stack),
    );
    // The engine got host paths in the state volume, Compose's labels too.
    let mountpoint = inspect(&volume)["Mountpoint"]
        .as_str()
        .expect("the volume's mountpoint")
        .to_string();
    let worktree = format!("{mountpoint}/git/worktree/{dir}");
    let c = inspect(&container);
    let mounts = c["Mounts"].as_array().unwrap();
    for (target, source) in [
        ("/www", format!("{worktree}/www")),
        ("/etc/motd.txt", format!("{worktree}/motd.txt")),
        ("/run/secrets/token", format!("{worktree}/token.txt")),
    ] {
        assert!(
            mounts
                .iter()
                .any(|m| m["Destination"] == target && m["Source"] == source.as_str()),
            "{target} from {source}: {mounts:#?}"
        );
    }
    let labels = &c["Config"]["Labels"];
    assert_eq!(
        labels["com.docker.compose.project.working_dir"],
        worktree.as_str()
    );
    assert_eq!(
        labels["com.docker.compose.project.config_files"],
        format!("{worktree}/compose.yaml").as_str()
    );

    wait_healthy(&container, Duration::from_secs(60));
    let (code, body) = http_get(web_port, "/index.html").expect("the service answers");
    assert_eq!((code, body.as_str()), (200, "<h1>from git</h1>\n"));

    // The CLI in the agent's container maps the same way: nothing to change.
    let (code, out) = plimsoll_in(
        &agent.0,
        &["reconcile", "--dry-run", "/var/lib/plimsoll/git/worktree"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("recreate"), "{out}");
    drop(agent);
}

/// The agent with its state directory on a tmpfs: a stack that mounts a
/// repository file is a conflict that says how to mount the state directory,
/// and nothing of it is created; a stack without such mounts still applies.
#[test]
fn container_agent_without_a_state_volume_refuses_stacks_that_mount_repository_files() {
    ensure_busybox();
    let image = build_runtime_image();
    let mut cleanup = Cleanup::new();
    let files = cleanup.stack("agent-tmpfs-files");
    let plain = cleanup.stack("agent-tmpfs-plain");
    let name = cleanup.container("agent");
    let repo = TestRepo::new();
    let busybox = support::BUSYBOX_IMAGE;
    let sleeper = "command: [\"sleep\", \"3600\"]\n    init: true\n";
    repo.commit(
        &[
            (
                &format!("stacks/{files}/compose.yaml"),
                Some(&format!(
                    "services:\n  web:\n    image: {busybox}\n    {sleeper}    volumes:\n      - ./www:/www:ro\n"
                )),
            ),
            (&format!("stacks/{files}/www/index.html"), Some("hello\n")),
            (
                &format!("stacks/{plain}/compose.yaml"),
                Some(&format!(
                    "services:\n  web:\n    image: {busybox}\n    {sleeper}    volumes:\n      - /etc/hostname:/host-name:ro\n"
                )),
            ),
        ],
        "two stacks",
    );
    let port = free_port();
    let agent = run_agent(
        &image,
        &name,
        &repo,
        port,
        &["--tmpfs", "/var/lib/plimsoll:uid=10001,gid=10001,mode=0750"],
    );
    // The other stack applies (its bind mount names a host path literally).
    wait_agent(
        "the stack without repository mounts to run",
        &agent.0,
        port,
        Duration::from_secs(90),
        || stack_container(&plain),
    );
    let status = wait_agent(
        "the sync to report the conflict",
        &agent.0,
        port,
        Duration::from_secs(60),
        || {
            let s = agent_status(port)?;
            let error = s["last_sync"]["error"].as_str()?.to_string();
            error.contains(&files).then_some(error)
        },
    );
    for hint in [
        "/var/lib/plimsoll/git/worktree/stacks/",
        "a tmpfs mounted at /var/lib/plimsoll",
        "state:/var/lib/plimsoll",
        "deploy/agent/compose.yaml",
    ] {
        assert!(status.contains(hint), "{hint:?} in {status}");
    }
    assert!(
        support::labelled_ids("container", &format!("io.plimsoll.stack={files}")).is_empty(),
        "nothing of the conflicting stack is created"
    );
    let logs = container_logs(&agent.0);
    assert!(
        logs.contains("stacks that mount files from the repository cannot be applied"),
        "{logs}"
    );
    // The CLI in the container says the same.
    let (code, out) = plimsoll_in(
        &agent.0,
        &["reconcile", "--dry-run", "/var/lib/plimsoll/git/worktree"],
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("state:/var/lib/plimsoll"), "{out}");
    drop(agent);
}

/// The CLI outside a container is unchanged: a stack's repository files
/// reach the engine at the paths they have here, and the Compose labels name
/// the stack's directory and file as they are.
#[test]
fn container_cli_outside_a_container_mounts_repository_files_as_they_are() {
    ensure_busybox();
    let mut cleanup = Cleanup::new();
    let stack = cleanup.stack("cli-files");
    let state = support::temp_dir("plimsoll-cli-files-state");
    let repo = support::temp_dir("plimsoll-cli-files-repo");
    let root = repo.path().canonicalize().unwrap();
    let dir = root.join("stacks").join(&stack);
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/index.html"), "hello\n").unwrap();
    std::fs::write(dir.join("motd.txt"), "motd\n").unwrap();
    std::fs::write(
        dir.join("compose.yaml"),
        format!(
            "services:\n  web:\n    image: {}\n    command: [\"sleep\", \"3600\"]\n    init: true\n    \
             volumes:\n      - ./www:/www:ro\n      - ./motd.txt:/etc/motd.txt:ro\n",
            support::BUSYBOX_IMAGE
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut cmd = support::plimsoll_command(state.path(), &root, args);
        support::Run::of(args, &mut cmd)
    };
    run(&["reconcile", "."]).expect(0);
    let container = stack_container(&stack).expect("the stack's container runs");
    let c = inspect(&container);
    let mounts = c["Mounts"].as_array().unwrap();
    for (target, source) in [
        ("/www", dir.join("www")),
        ("/etc/motd.txt", dir.join("motd.txt")),
    ] {
        assert!(
            mounts
                .iter()
                .any(|m| m["Destination"] == target && m["Source"] == source.to_str().unwrap()),
            "{target} from {}: {mounts:#?}",
            source.display()
        );
    }
    // As given on the command line (here relative to the working directory).
    let working_dir = c["Config"]["Labels"]["com.docker.compose.project.working_dir"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        working_dir.ends_with(&format!("stacks/{stack}")) && !working_dir.contains("/var/lib/"),
        "{working_dir}"
    );
    assert_eq!(
        docker(&["exec", &container, "cat", "/www/index.html"]).trim_end(),
        "hello"
    );
    run(&["reconcile", "--dry-run", "."]).expect(0);
}
