//! Pulls from a real registry: the reference registry 2.8 (Debian's
//! `docker-registry`) started per test on a free 127.0.0.1 port with a temp
//! storage directory (the engine trusts loopback registries without TLS),
//! optionally behind htpasswd auth (`htpasswd -B` from apache2-utils).
//!
//! The offline busybox image is pushed there, its local registry tag removed,
//! and `plimsoll reconcile` has to pull it: with progress, with the docker
//! CLI's credentials (`DOCKER_CONFIG`), failing cleanly before any container
//! changes on a wrong password or a missing image, noticing a re-pointed tag
//! once the local tag moves, and pulling a digest-pinned reference.
//!
//! By default plimsoll pulls only images that are missing on the host: a tag
//! re-pointed in the registry is not noticed until the host's tag moves
//! (`docker pull`); then the plan says "image re-pointed" and the apply
//! recreates the service. `pull_policy: always` pulls before planning and
//! follows a re-pointed tag itself; `plimsoll promote` asks the registry
//! which digest a tag names.
//!
//! Without `docker-registry` (or `htpasswd`, for the auth test) on PATH the
//! tests print `skipped: ...` and pass, except under `CI=true`, where they
//! fail; `scripts/test.sh` installs both.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::support::{
    BUSYBOX_IMAGE, docker, docker_output, ensure_busybox, missing_precondition, unique_name,
};

/// Whether `bin` is an executable on PATH.
fn on_path(bin: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            std::fs::metadata(dir.join(bin))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// User and password of a registry with htpasswd auth.
pub struct Auth {
    pub user: String,
    pub password: String,
}

/// A running `docker-registry serve` on 127.0.0.1, killed (and the images
/// tagged for it untagged) on drop, panics included.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// The repository namespace of this registry's images: `it-<unique>`.
    pub namespace: String,
    /// A docker CLI config directory, logged in when the registry has auth;
    /// use it as `docker --config` and as plimsoll's `DOCKER_CONFIG`.
    pub docker_config: PathBuf,
    child: Child,
    /// Local images made by [`Registry::variant`], removed on drop.
    variants: Vec<String>,
    /// Storage, config, htpasswd and the docker config: removed on drop.
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry, or, when `docker-registry` (or, with auth,
    /// `htpasswd`) is not installed, reports a missing precondition (a
    /// failure under `CI=true`) and returns `None`.
    pub fn start(auth: Option<&Auth>) -> Option<Registry> {
        if !on_path("docker-registry") {
            missing_precondition(
                "`docker-registry` is not installed (apt-get install docker-registry); \
                 registry tests need the reference registry on 127.0.0.1",
            );
            return None;
        }
        if auth.is_some() && !on_path("htpasswd") {
            missing_precondition(
                "`htpasswd` is not installed (apt-get install apache2-utils); \
                 the registry credential test needs it",
            );
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = dir.path().join("storage");
        let docker_config = dir.path().join("docker-config");
        std::fs::create_dir_all(&storage).unwrap();
        std::fs::create_dir_all(&docker_config).unwrap();
        let auth_section = match auth {
            Some(a) => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", &a.user, &a.password])
                    .stdin(Stdio::null())
                    .output()
                    .expect("run htpasswd");
                assert!(out.status.success(), "htpasswd -Bbn failed: {out:?}");
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, &out.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: plimsoll-test\n    path: {}\n",
                    file.display()
                )
            }
            None => String::new(),
        };
        let namespace = unique_name("reg")
            .trim_start_matches("plimsoll-")
            .to_string();

        // A free port can be taken between our probe and the registry's
        // bind: retry with another one.
        for attempt in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("find a free port")
                .port();
            let host = format!("127.0.0.1:{port}");
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     http:\n  addr: {host}\n  secret: plimsoll-it-{port}\n{auth_section}",
                    storage.display()
                ),
            )
            .unwrap();
            let log = dir.path().join(format!("registry-{attempt}.log"));
            let log_file = std::fs::File::create(&log).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().unwrap())
                .stderr(log_file)
                .spawn()
                .expect("start docker-registry");
            match wait_ready(&mut child, &host, Duration::from_secs(20)) {
                Ok(()) => {
                    let reg = Registry {
                        host,
                        namespace,
                        docker_config,
                        child,
                        variants: Vec::new(),
                        _dir: dir,
                    };
                    if let Some(a) = auth {
                        reg.login(a);
                    }
                    return Some(reg);
                }
                Err(exited) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    assert!(
                        exited && text.contains("address already in use"),
                        "docker-registry on {host} did not come up:\n{text}"
                    );
                }
            }
        }
        panic!("docker-registry: no free port after 5 attempts");
    }

    /// `docker --config DIR login HOST -u USER --password-stdin`.
    fn login(&self, auth: &Auth) {
        let mut child = self
            .docker_cmd(&["login", &self.host, "-u", &auth.user, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run docker login");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(auth.password.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "docker login {} failed: {}",
            self.host,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `docker --config <this registry's config> ARGS`.
    pub fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.arg("--config").arg(&self.docker_config).args(args);
        c
    }

    /// Runs `docker --config DIR ARGS` and panics unless it exits 0.
    pub fn docker(&self, args: &[&str]) -> String {
        let out = self
            .docker_cmd(args)
            .stdin(Stdio::null())
            .output()
            .expect("run docker");
        assert!(
            out.status.success(),
            "`docker {}` failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The full reference of `name_tag` in this registry:
    /// `127.0.0.1:PORT/it-<unique>/<name_tag>`.
    pub fn image(&self, name_tag: &str) -> String {
        format!("{}/{}/{name_tag}", self.host, self.namespace)
    }

    /// Tags the local image `local` as [`Registry::image`]`(name_tag)` and
    /// pushes it; returns the reference. The local tag stays.
    /// The `host/repo@sha256:...` reference of an image pushed here.
    pub fn digest_of(&self, tagged: &str) -> String {
        docker(&[
            "image",
            "inspect",
            "--format",
            "{{join .RepoDigests \"\\n\"}}",
            tagged,
        ])
        .lines()
        .find(|d| d.starts_with(&self.host))
        .unwrap_or_else(|| panic!("{tagged} has no digest from {}", self.host))
        .to_string()
    }

    pub fn push(&self, local: &str, name_tag: &str) -> String {
        let reference = self.image(name_tag);
        docker(&["tag", local, &reference]);
        self.docker(&["push", &reference]);
        reference
    }

    /// A new local image that differs from `base` only by a label (so it has
    /// another ID); returns its ID. Removed on drop.
    pub fn variant(&mut self, base: &str) -> String {
        let name = unique_name("reg-variant");
        docker(&["create", "--name", &name, base, "sh"]);
        let label = format!("LABEL io.plimsoll.it.variant={name}");
        let out = docker_output(&["commit", "--change", &label, &name]);
        docker(&["rm", "-f", &name]);
        assert!(out.status.success(), "docker commit failed: {out:?}");
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        self.variants.push(id.clone());
        id
    }
}

impl Registry {
    /// Stops the server (it is unreachable from then on); cleanup stays for drop.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
        // Untag every local reference into this registry (tags, and digests
        // left when a pull moved a tag away), then remove the variants.
        let out = docker_output(&[
            "image",
            "ls",
            "--digests",
            "--format",
            "{{.Repository}} {{.Tag}} {{.Digest}}",
        ]);
        let prefix = format!("{}/", self.host);
        let mut refs: Vec<String> = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut f = line.split_whitespace();
            let (Some(repo), Some(tag), Some(digest)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            if !repo.starts_with(&prefix) {
                continue;
            }
            if tag != "<none>" {
                refs.push(format!("{repo}:{tag}"));
            }
            if digest != "<none>" {
                refs.push(format!("{repo}@{digest}"));
            }
        }
        refs.extend(self.variants.iter().cloned());
        for r in refs {
            let _ = Command::new("docker")
                .args(["rmi", &r])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Waits until `GET /v2/` on `host` answers 200 or 401. `Err(true)` when
/// the process exited, `Err(false)` on timeout.
fn wait_ready(child: &mut Child, host: &str, timeout: Duration) -> Result<(), bool> {
    let start = Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return Err(true);
        }
        if let Some(200 | 401) = http_status(host, "/v2/") {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(false);
        }
        sleep(Duration::from_millis(50));
    }
}

/// The HTTP status of `GET path` on `host`, if it answers.
fn http_status(host: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A stack directory with a unique stack name; on drop (panics included)
/// removes every container, network and volume labelled with its name.
struct Stack {
    name: String,
    dir: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Stack {
    fn new(what: &str) -> Stack {
        Stack {
            name: unique_name(what),
            dir: tempfile::tempdir().unwrap(),
            state: tempfile::tempdir().unwrap(),
        }
    }

    /// Writes `compose.yaml`: `name: <stack>` followed by `body`.
    fn write(&self, body: &str) {
        std::fs::write(
            self.dir.path().join("compose.yaml"),
            format!("name: {}\n{body}", self.name),
        )
        .unwrap();
    }

    fn container(&self, service: &str) -> String {
        format!("{}-{service}-1", self.name)
    }

    /// Runs `plimsoll reconcile <dir> ARGS` with `DOCKER_CONFIG=docker_config`.
    fn reconcile(&self, docker_config: &Path, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_plimsoll"))
            .arg("reconcile")
            .arg(self.dir.path())
            .args(args)
            .env("DOCKER_CONFIG", docker_config)
            .env("PLIMSOLL_STATE_DIR", self.state.path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("run plimsoll")
    }

    /// IDs of the engine objects of `kind` labelled with this stack.
    fn objects(&self, kind: &str) -> Vec<String> {
        crate::support::labelled_ids(kind, &format!("io.plimsoll.stack={}", self.name))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let containers = self.objects("container");
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(containers.iter().map(String::as_str));
            let _ = docker_output(&args);
        }
        for n in self.objects("network") {
            let _ = docker_output(&["network", "rm", &n]);
        }
        for v in self.objects("volume") {
            let _ = docker_output(&["volume", "rm", "-f", &v]);
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn both(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

fn image_id(reference: &str) -> Option<String> {
    let out = docker_output(&["image", "inspect", "--format", "{{.Id}}", reference]);
    out.status
        .success()
        .then(|| text(&out.stdout).trim().to_string())
}

/// (container ID, image ID, running) of a container.
fn container_info(name: &str) -> Option<(String, String, bool)> {
    let out = docker_output(&[
        "inspect",
        "--format",
        "{{.Id}} {{.Image}} {{.State.Running}}",
        name,
    ]);
    if !out.status.success() {
        return None;
    }
    let s = text(&out.stdout);
    let mut it = s.split_whitespace();
    Some((
        it.next()?.to_string(),
        it.next()?.to_string(),
        it.next()? == "true",
    ))
}

const HTTPD: &str = r#"["sh", "-c", "exec httpd -f -p 8080 -h /"]"#;

#[test]
fn missing_image_is_pulled_during_apply() {
    let Some(reg) = Registry::start(None) else {
        return;
    };
    ensure_busybox();
    let image = reg.push(BUSYBOX_IMAGE, "busybox:1");
    docker(&["rmi", &image]);
    assert!(image_id(&image).is_none(), "{image} still tagged locally");
    let stack = Stack::new("reg-pull");
    stack.write(&format!(
        "services:\n  web:\n    image: {image}\n    command: {HTTPD}\n"
    ));

    // The plan names the pull, and a dry run does not pull.
    let out = stack.reconcile(&reg.docker_config, &["--dry-run", "--format", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    let actions = plan["actions"].as_array().unwrap();
    assert!(
        actions
            .iter()
            .any(|a| a["action"] == "pull_image" && a["target"] == image.as_str()),
        "no pull_image {image} in {plan:#}"
    );
    assert_eq!(actions[0]["action"], "pull_image", "pulls lead: {plan:#}");
    assert!(image_id(&image).is_none(), "a dry run pulled {image}");

    let out = stack.reconcile(&reg.docker_config, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("image {image}")) && stderr.contains("pulling"),
        "no pull progress in stderr:\n{stderr}"
    );
    assert!(stderr.contains("pulled"), "{stderr}");
    let pulled = image_id(&image).expect("image pulled");
    assert_eq!(Some(&pulled), image_id(BUSYBOX_IMAGE).as_ref());
    let (_, runs, running) = container_info(&stack.container("web")).expect("container");
    assert!(running, "{} is not running", stack.container("web"));
    assert_eq!(runs, pulled);

    let out = stack.reconcile(&reg.docker_config, &["--dry-run"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "not in sync after apply: {}",
        both(&out)
    );
}

#[test]
fn pull_uses_docker_config_credentials_and_fails_cleanly_without_them() {
    let canary = unique_name("pw").replace("plimsoll-it-", "");
    let auth = Auth {
        user: "plimsoll-it".into(),
        password: format!("right-{canary}-canary"),
    };
    let Some(reg) = Registry::start(Some(&auth)) else {
        return;
    };
    ensure_busybox();
    let image = reg.push(BUSYBOX_IMAGE, "private/web:1");
    docker(&["rmi", &image]);
    // A second service on a local image: nothing of the stack may be created
    // when the pull fails.
    let stack = Stack::new("reg-auth");
    stack.write(&format!(
        "services:\n  web:\n    image: {image}\n    command: {HTTPD}\n  \
         local:\n    image: {BUSYBOX_IMAGE}\n    command: {HTTPD}\n"
    ));
    let wrong = format!("wrong-{canary}-canary");
    let secrets = [
        auth.password.clone(),
        wrong.clone(),
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", auth.user, auth.password)),
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{wrong}", auth.user)),
    ];
    let leaks = |out: &Output| {
        let all = both(out);
        for s in &secrets {
            assert!(!all.contains(s.as_str()), "a secret leaked: {all}");
        }
    };

    // No credentials at all, then a wrong password: exit 1, the image is
    // named, nothing of the stack exists.
    let nothing = tempfile::tempdir().unwrap();
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(
        bad.path().join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{}"}}}}}}"#,
            reg.host, secrets[3]
        ),
    )
    .unwrap();
    for config in [nothing.path(), bad.path()] {
        let out = stack.reconcile(config, &[]);
        leaks(&out);
        assert_eq!(out.status.code(), Some(1), "{}", both(&out));
        let stderr = text(&out.stderr);
        let error = stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_else(|| panic!("no error line: {}", both(&out)));
        assert!(
            error.contains(&format!("pulling {image} failed")),
            "the error does not name the image: {error}"
        );
        assert!(
            error.contains("nothing was changed"),
            "the error does not say nothing changed: {error}"
        );
        assert_eq!(
            stack.objects("container"),
            Vec::<String>::new(),
            "containers created despite the failed pull"
        );
        assert_eq!(
            stack.objects("network"),
            Vec::<String>::new(),
            "network created despite the failed pull"
        );
        assert!(image_id(&image).is_none());
    }

    // The docker CLI's login: pulls, runs, and still no secret in the output.
    let out = stack.reconcile(&reg.docker_config, &[]);
    leaks(&out);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    assert!(image_id(&image).is_some(), "{image} not pulled");
    for service in ["web", "local"] {
        let (_, _, running) = container_info(&stack.container(service)).expect("container");
        assert!(running, "{service} is not running");
    }
}

#[test]
fn re_pointed_tag_is_recreated_once_the_local_tag_moves() {
    let Some(mut reg) = Registry::start(None) else {
        return;
    };
    ensure_busybox();
    let a = image_id(BUSYBOX_IMAGE).unwrap();
    let image = reg.push(BUSYBOX_IMAGE, "app:v1");
    docker(&["rmi", &image]);
    let stack = Stack::new("reg-repoint");
    stack.write(&format!(
        "services:\n  web:\n    image: {image}\n    command: {HTTPD}\n"
    ));
    let out = stack.reconcile(&reg.docker_config, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let (before, runs, _) = container_info(&stack.container("web")).unwrap();
    assert_eq!(runs, a);

    // Another host pushes image B under the same tag; this host's tag still
    // names A.
    let b = reg.variant(BUSYBOX_IMAGE);
    assert_ne!(a, b);
    reg.push(&b, "app:v1");
    docker(&["tag", BUSYBOX_IMAGE, &image]);
    assert_eq!(image_id(&image).as_ref(), Some(&a));

    // plimsoll pulls only missing images: the registry is not asked.
    let out = stack.reconcile(&reg.docker_config, &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));

    // Once the host's tag moves, the plan names the re-pointed image.
    reg.docker(&["pull", &image]);
    assert_eq!(image_id(&image).as_ref(), Some(&b));
    let out = stack.reconcile(&reg.docker_config, &["--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    let stdout = text(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains(&format!("{}/web", stack.name)))
        .unwrap_or_else(|| panic!("web not in the plan:\n{stdout}"));
    assert!(line.contains("recreate"), "{stdout}");
    assert!(stdout.contains("image re-pointed"), "{stdout}");

    let out = stack.reconcile(&reg.docker_config, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let (after, runs, running) = container_info(&stack.container("web")).unwrap();
    assert_ne!(before, after, "web was not recreated");
    assert_eq!(runs, b, "web does not run the re-pointed image");
    assert!(running);
    let out = stack.reconcile(&reg.docker_config, &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
}

#[test]
fn failed_pull_of_a_missing_image_changes_nothing() {
    let Some(reg) = Registry::start(None) else {
        return;
    };
    ensure_busybox();
    let stack = Stack::new("reg-missing");
    let web = |value: &str| {
        format!(
            "  web:\n    image: {BUSYBOX_IMAGE}\n    command: {HTTPD}\n    \
             environment:\n      VERSION: \"{value}\"\n"
        )
    };
    stack.write(&format!("services:\n{}", web("1")));
    let out = stack.reconcile(&reg.docker_config, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let (before, _, _) = container_info(&stack.container("web")).unwrap();

    // A change to web and a new service on an image the registry lacks.
    let missing = reg.image("nope:1");
    stack.write(&format!(
        "services:\n{}  app:\n    image: {missing}\n    command: {HTTPD}\n",
        web("2")
    ));
    let out = stack.reconcile(&reg.docker_config, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let stderr = text(&out.stderr);
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {}", both(&out)));
    assert!(
        error.contains(&format!("pulling {missing} failed")) && error.contains("not found"),
        "{error}"
    );
    let (after, _, running) = container_info(&stack.container("web")).unwrap();
    assert_eq!(before, after, "web was recreated despite the failed pull");
    assert!(running);
    let env = docker(&[
        "inspect",
        "--format",
        "{{range .Config.Env}}{{println .}}{{end}}",
        &stack.container("web"),
    ]);
    assert!(env.lines().any(|l| l == "VERSION=1"), "{env}");
    assert!(container_info(&stack.container("app")).is_none());
    assert_eq!(stack.objects("container").len(), 1);
}

#[test]
fn digest_pinned_image_is_pulled_and_stays_in_sync() {
    let Some(reg) = Registry::start(None) else {
        return;
    };
    ensure_busybox();
    let tagged = reg.push(BUSYBOX_IMAGE, "pinned:1");
    let digest = reg.digest_of(&tagged);
    // Untagging the only tag of the repository drops its digest reference too.
    docker(&["rmi", &tagged]);
    assert!(image_id(&digest).is_none(), "{digest} still on the host");
    let stack = Stack::new("reg-digest");
    stack.write(&format!(
        "services:\n  web:\n    image: {digest}\n    command: {HTTPD}\n"
    ));
    let out = stack.reconcile(&reg.docker_config, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let (_, runs, running) = container_info(&stack.container("web")).expect("container");
    assert!(running);
    assert_eq!(Some(runs), image_id(BUSYBOX_IMAGE));
    let out = stack.reconcile(&reg.docker_config, &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "not in sync: {}", both(&out));
}

#[test]
fn pull_policy_always_follows_a_re_pointed_tag() {
    let Some(mut reg) = Registry::start(None) else {
        return;
    };
    ensure_busybox();
    let a = image_id(BUSYBOX_IMAGE).unwrap();
    let image = reg.push(BUSYBOX_IMAGE, "always:v1");
    // A job's image follows its `pull_policy` too.
    let job_image = reg.push(BUSYBOX_IMAGE, "always-job:v1");
    let stack = Stack::new("reg-always");
    stack.write(&format!(
        "services:\n  web:\n    image: {image}\n    pull_policy: always\n    command: {HTTPD}\n  \
         migrate:\n    image: {job_image}\n    pull_policy: always\n    command: [\"true\"]\n    \
         x-plimsoll: {{job: pre}}\n"
    ));
    let out = stack.reconcile(&reg.docker_config, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let (before, runs, _) = container_info(&stack.container("web")).unwrap();
    assert_eq!(runs, a);

    // The tag moves in the registry only; the apply pulls it and follows.
    let b = reg.variant(BUSYBOX_IMAGE);
    reg.push(&b, "always:v1");
    reg.push(&b, "always-job:v1");
    docker(&["tag", BUSYBOX_IMAGE, &image]);
    docker(&["tag", BUSYBOX_IMAGE, &job_image]);
    let out = stack.reconcile(&reg.docker_config, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let (after, runs, running) = container_info(&stack.container("web")).unwrap();
    assert_ne!(before, after, "web was not recreated");
    assert_eq!(runs, b, "web does not run the re-pointed image");
    assert!(running);
    assert_eq!(
        image_id(&job_image),
        Some(b),
        "the job's image was not pulled"
    );
}

#[test]
fn pull_policy_every_pulls_again_only_once_the_copy_is_older_than_its_period() {
    let Some(mut reg) = Registry::start(None) else {
        return;
    };
    ensure_busybox();
    let a = image_id(BUSYBOX_IMAGE).unwrap();
    let image = reg.push(BUSYBOX_IMAGE, "refresh:v1");
    let stack = Stack::new("reg-refresh");
    let write = |policy: &str| {
        stack.write(&format!(
            "services:\n  web:\n    image: {image}\n    pull_policy: {policy}\n    command: {HTTPD}\n"
        ))
    };
    write("every_1h");
    let out = stack.reconcile(&reg.docker_config, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let (before, runs, _) = container_info(&stack.container("web")).unwrap();
    assert_eq!(runs, a);

    // The tag moves in the registry; the copy here was tagged just now, so
    // an hourly refresh leaves it alone.
    let b = reg.variant(BUSYBOX_IMAGE);
    reg.push(&b, "refresh:v1");
    docker(&["tag", BUSYBOX_IMAGE, &image]);
    let out = stack.reconcile(&reg.docker_config, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let (same, runs, _) = container_info(&stack.container("web")).unwrap();
    assert_eq!(
        (same.as_str(), runs.as_str()),
        (before.as_str(), a.as_str()),
        "a fresh copy was pulled again"
    );

    // Once the copy is older than the period, the apply pulls and follows.
    write("every_1s");
    std::thread::sleep(Duration::from_millis(2100));
    let out = stack.reconcile(&reg.docker_config, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let (after, runs, running) = container_info(&stack.container("web")).unwrap();
    assert_ne!(before, after, "web was not recreated");
    assert_eq!(runs, b, "web does not run the refreshed image");
    assert!(running);

    // With the registry gone, a due refresh is a warning: the copy here stays.
    reg.stop();
    std::thread::sleep(Duration::from_millis(1100));
    let out = stack.reconcile(&reg.docker_config, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    assert!(
        both(&out).contains("the copy on this host stays in use"),
        "no warning: {}",
        both(&out)
    );
    let (kept, runs, running) = container_info(&stack.container("web")).unwrap();
    assert_eq!((kept, runs), (after, b));
    assert!(running);
}

/// `promote` asks the registry for the staging tag's digest; a tag the
/// registry does not have is an error naming it, and no patch is printed.
#[test]
fn promote_of_an_image_the_registry_does_not_have_exits_1_and_prints_nothing() {
    let Some(reg) = Registry::start(None) else {
        return;
    };
    let dir = crate::support::temp_dir("plimsoll-it-promote-");
    let root = dir.path();
    let write = |path: &str, text: &str| {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "plimsoll.yaml",
        "hosts:\n  s-1: {labels: {env: stage}}\n  p-1: {labels: {env: prod}}\n\
         environments:\n  stage: {labels: {env: stage}}\n  prod: {labels: {env: prod}}\n",
    );
    let missing = reg.image("never-pushed:main");
    write(
        "stacks/shop/compose.yaml",
        &format!("services:\n  web:\n    image: {missing}\n"),
    );
    let out = crate::support::plimsoll_output(
        root,
        &["promote", "--from", "stage", "--to", "prod"],
        &[("DOCKER_CONFIG", reg.docker_config.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(out.stdout.is_empty(), "printed: {}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot resolve {missing} in its registry")),
        "{stderr}"
    );
    assert!(!root.join("stacks/shop/compose.prod.yaml").exists());
}
