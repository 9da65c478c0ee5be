//! Git servers for the `git` tests, on 127.0.0.1 with free ports and unique
//! temp directories, stopped and removed on drop (panics included):
//!
//! - [`TestRepo`]: a local repository (work tree) the tests commit to with
//!   git2, served by the servers below or read directly (`file://`).
//! - [`SshServer`]: Debian's `/usr/sbin/sshd` (openssh-server) as the current
//!   user, with its own ed25519 host key and an authorized client key, serving
//!   any absolute path with `git-upload-pack` (git).
//! - [`HttpsServer`]: `git http-backend` (git) as a CGI of lighttpd
//!   (lighttpd, lighttpd-mod-openssl) with TLS from a test CA made with the
//!   openssl CLI, behind a wrapper script that wants HTTP basic auth with one
//!   token (401 otherwise, 403 for a "forbidden" token).
//!
//! A missing binary fails the test with the Debian package to install
//! (`scripts/test.sh` installs them all); these tests never skip.

use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use base64::Engine as _;
use git2::{IndexAddOption, Repository, Signature};

/// Panics unless `path` exists, naming the package that provides it.
#[track_caller]
pub fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install it with `apt-get install {package}` (scripts/test.sh installs it)"
    );
}

/// The path of `bin` on PATH, or a panic naming the package to install.
#[track_caller]
pub fn require_on_path(bin: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(bin))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "{bin} is not on PATH: install it with `apt-get install {package}` \
             (scripts/test.sh installs it)"
        )
    })
}

/// Runs a command, panics with its output unless it succeeds; returns stdout.
#[track_caller]
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}

/// A local git repository with a work tree at `<tmp>/repo`, branch `main`.
pub struct TestRepo {
    pub repo: Repository,
    tmp: tempfile::TempDir,
}

impl TestRepo {
    pub fn new() -> TestRepo {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("repo");
        let repo = Repository::init(&path).expect("git init");
        repo.set_head("refs/heads/main").expect("HEAD -> main");
        TestRepo { repo, tmp }
    }

    /// The work tree (an absolute path).
    pub fn path(&self) -> PathBuf {
        self.tmp.path().join("repo")
    }

    /// The directory holding the repository (`repo`), for GIT_PROJECT_ROOT.
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    pub fn file_url(&self) -> String {
        format!("file://{}", self.path().display())
    }

    /// Writes (`Some`) or deletes (`None`) files, commits on the current
    /// branch, returns the new commit's SHA.
    pub fn commit(&self, changes: &[(&str, Option<&str>)], message: &str) -> String {
        let work = self.path();
        let mut index = self.repo.index().expect("index");
        for (file, content) in changes {
            let p = work.join(file);
            match content {
                Some(c) => {
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    std::fs::write(&p, c).unwrap();
                }
                None => std::fs::remove_file(&p).unwrap(),
            }
        }
        index
            .add_all(["*"], IndexAddOption::DEFAULT, None)
            .expect("git add");
        index.update_all(["*"], None).expect("git add -u");
        index.write().unwrap();
        let tree = self.repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = Signature::now("plimsoll test", "test@plimsoll.invalid").unwrap();
        let parent = self.repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        self.repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .expect("git commit")
            .to_string()
    }

    /// Switches to `branch` (created at the current commit if new).
    pub fn switch(&self, branch: &str) {
        let head = self.repo.head().unwrap().peel_to_commit().unwrap();
        if self
            .repo
            .find_branch(branch, git2::BranchType::Local)
            .is_err()
        {
            self.repo.branch(branch, &head, false).unwrap();
        }
        self.repo.set_head(&format!("refs/heads/{branch}")).unwrap();
        self.repo
            .checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
            .unwrap();
    }

    /// An annotated tag on `sha`; returns the tag object's id.
    pub fn tag(&self, name: &str, sha: &str) -> String {
        let target = self
            .repo
            .find_object(git2::Oid::from_str(sha).unwrap(), None)
            .unwrap();
        let sig = Signature::now("plimsoll test", "test@plimsoll.invalid").unwrap();
        self.repo
            .tag(name, &target, &sig, &format!("release {name}"), false)
            .unwrap()
            .to_string()
    }
}

/// The current user's login name.
fn current_user() -> String {
    run(Command::new("id").arg("-un")).trim().to_string()
}

fn is_root() -> bool {
    run(Command::new("id").arg("-u")).trim() == "0"
}

/// Generates an unencrypted ed25519 key pair at `path` (and `path.pub`).
pub fn keygen(path: &Path) {
    let keygen = require_on_path("ssh-keygen", "openssh-client");
    run(Command::new(keygen)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "plimsoll-test", "-f"])
        .arg(path));
}

/// `<type> <base64>` of a public key file.
pub fn public_key(path: &Path) -> String {
    let text = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Waits until `port` accepts connections and sends something first (the
/// ssh banner) when `banner` is set. `Err` with the reason when the process
/// exits or `timeout` passes.
fn wait_listening(
    child: &mut Child,
    port: u16,
    banner: bool,
    timeout: Duration,
) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited early ({status})"));
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            if !banner {
                return Ok(());
            }
            s.set_read_timeout(Some(Duration::from_secs(2))).ok();
            let mut buf = [0u8; 8];
            if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"SSH-") {
                return Ok(());
            }
        }
        if start.elapsed() > timeout {
            return Err(format!("not listening on {port} after {timeout:?}"));
        }
        sleep(Duration::from_millis(25));
    }
}

/// A server process, killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// sshd on 127.0.0.1 serving this machine's paths to the current user.
pub struct SshServer {
    pub port: u16,
    pub user: String,
    /// The authorized client key (private; `.pub` beside it).
    pub client_key: PathBuf,
    /// `ssh-ed25519 AAAA…` of the host key.
    pub host_key: String,
    _proc: Proc,
    tmp: tempfile::TempDir,
}

impl SshServer {
    pub fn start() -> SshServer {
        require("/usr/sbin/sshd", "openssh-server");
        require_on_path("git-upload-pack", "git");
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path();
        let host_key_path = dir.join("host_ed25519");
        keygen(&host_key_path);
        let client_key = dir.join("client_ed25519");
        keygen(&client_key);
        std::fs::write(
            dir.join("authorized_keys"),
            format!("{}\n", public_key(&client_key)),
        )
        .unwrap();
        if is_root() {
            // sshd's privilege separation directory (the package creates it
            // only when the service starts).
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        let log = dir.join("sshd.log");
        for _attempt in 0..5 {
            let port = free_port();
            let config = dir.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\n\
                     ListenAddress 127.0.0.1\n\
                     HostKey {host}\n\
                     PidFile none\n\
                     AuthorizedKeysFile {dir}/authorized_keys\n\
                     StrictModes no\n\
                     UsePAM no\n\
                     PubkeyAuthentication yes\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     PermitRootLogin prohibit-password\n\
                     AllowTcpForwarding no\n\
                     X11Forwarding no\n\
                     PrintMotd no\n\
                     LogLevel VERBOSE\n",
                    host = host_key_path.display(),
                    dir = dir.display(),
                ),
            )
            .unwrap();
            let child = Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("start /usr/sbin/sshd");
            let mut proc = Proc(child);
            match wait_listening(&mut proc.0, port, true, Duration::from_secs(10)) {
                Ok(()) => {
                    return SshServer {
                        port,
                        user: current_user(),
                        client_key,
                        host_key: public_key(&host_key_path),
                        _proc: proc,
                        tmp,
                    };
                }
                Err(why) => {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    if text.contains("Address already in use") {
                        continue;
                    }
                    panic!("sshd {why}:\n{text}");
                }
            }
        }
        panic!("sshd found no free port in 5 attempts");
    }

    /// `ssh://user@127.0.0.1:PORT/abs/path`.
    pub fn url(&self, path: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            path.display()
        )
    }

    /// A file in the server's temp dir.
    pub fn file(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// A known_hosts file trusting this server's host key.
    pub fn known_hosts(&self) -> PathBuf {
        let path = self.file("known_hosts");
        std::fs::write(
            &path,
            format!("[127.0.0.1]:{} {}\n", self.port, self.host_key),
        )
        .unwrap();
        path
    }

    /// sshd's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.file("sshd.log")).unwrap_or_default()
    }
}

/// lighttpd + TLS + git http-backend behind a token check.
pub struct HttpsServer {
    pub port: u16,
    /// The test CA's certificate (PEM).
    pub ca_file: PathBuf,
    _proc: Proc,
    tmp: tempfile::TempDir,
}

/// The token [`HttpsServer`] answers 403 to (authenticated, not allowed).
pub const FORBIDDEN_TOKEN: &str = "forbidden-token-0000";

impl HttpsServer {
    /// Serves the repositories under `root` at `/git/<name>`; the basic-auth
    /// password must be `token` (any user).
    pub fn start(root: &Path, token: &str) -> HttpsServer {
        let lighttpd = "/usr/sbin/lighttpd";
        require(lighttpd, "lighttpd");
        require("/usr/lib/lighttpd/mod_openssl.so", "lighttpd-mod-openssl");
        let openssl = require_on_path("openssl", "openssl");
        let exec_path = run(Command::new(require_on_path("git", "git")).arg("--exec-path"));
        let backend = Path::new(exec_path.trim()).join("git-http-backend");
        assert!(
            backend.is_file(),
            "{} is missing: install git",
            backend.display()
        );
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path();
        let ca_file = dir.join("ca.pem");
        make_certificates(&openssl, dir);

        std::fs::create_dir_all(dir.join("www")).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let script = dir.join("auth.cgi");
        // The user must be `plimsoll` (the agent's default) and the password
        // the token; `$HTTP_AUTHORIZATION` is the header as sent.
        let good = b64.encode(format!("plimsoll:{token}"));
        let forbidden = b64.encode(format!("plimsoll:{FORBIDDEN_TOKEN}"));
        let text = r#"#!/bin/sh
export GIT_PROJECT_ROOT='@ROOT@'
export GIT_HTTP_EXPORT_ALL=1
deny() {
    printf 'Status: %s\r\n%bContent-Type: text/plain\r\n\r\n%s\n' "$1" "$2" "$1"
    exit 0
}
case "$HTTP_AUTHORIZATION" in
'Basic @GOOD@') exec '@BACKEND@' ;;
'Basic @FORBIDDEN@') deny '403 Forbidden' '' ;;
esac
deny '401 Unauthorized' 'WWW-Authenticate: Basic realm="plimsoll-test"\r\n'
"#;
        std::fs::write(
            &script,
            text.replace("@ROOT@", &root.display().to_string())
                .replace("@BACKEND@", &backend.display().to_string())
                .replace("@GOOD@", &good)
                .replace("@FORBIDDEN@", &forbidden),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

        let log = dir.join("error.log");
        let stderr_log = dir.join("stderr.log");
        for _attempt in 0..5 {
            let port = free_port();
            let config = dir.join("lighttpd.conf");
            std::fs::write(
                &config,
                format!(
                    "server.document-root = \"{dir}/www\"\n\
                     server.bind = \"127.0.0.1\"\n\
                     server.port = {port}\n\
                     server.errorlog = \"{log}\"\n\
                     server.modules = (\"mod_alias\", \"mod_cgi\", \"mod_openssl\")\n\
                     ssl.engine = \"enable\"\n\
                     ssl.pemfile = \"{dir}/server.pem\"\n\
                     ssl.privkey = \"{dir}/server.key\"\n\
                     alias.url = (\"/git\" => \"{script}\")\n\
                     cgi.assign = (\".cgi\" => \"\")\n",
                    dir = dir.display(),
                    log = log.display(),
                    script = script.display(),
                ),
            )
            .unwrap();
            let child = Command::new(lighttpd)
                .args(["-D", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&stderr_log).unwrap())
                .spawn()
                .expect("start lighttpd");
            let mut proc = Proc(child);
            match wait_listening(&mut proc.0, port, false, Duration::from_secs(10)) {
                Ok(()) => {
                    return HttpsServer {
                        port,
                        ca_file,
                        _proc: proc,
                        tmp,
                    };
                }
                Err(why) => {
                    let text = format!(
                        "{}{}",
                        std::fs::read_to_string(&stderr_log).unwrap_or_default(),
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                    if text.contains("Address already in use") {
                        continue;
                    }
                    panic!("lighttpd {why}:\n{text}");
                }
            }
        }
        panic!("lighttpd found no free port in 5 attempts");
    }

    /// `https://127.0.0.1:PORT/git/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("https://127.0.0.1:{}/git/{name}", self.port)
    }

    /// lighttpd's error log, for failure messages.
    pub fn log(&self) -> String {
        let dir = self.tmp.path();
        format!(
            "{}{}",
            std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        )
    }
}

/// A test CA (`ca.pem`) and a server certificate for IP 127.0.0.1
/// (`server.pem`, `server.key`) in `dir`: EC P-256, valid two days.
fn make_certificates(openssl: &Path, dir: &Path) {
    let p256 = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new(openssl)
        .current_dir(dir)
        .args(["req", "-x509"])
        .args(p256)
        .args(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"])
        .args(["-subj", "/CN=plimsoll test CA"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]));
    run(Command::new(openssl)
        .current_dir(dir)
        .arg("req")
        .args(p256)
        .args(["-keyout", "server.key", "-out", "server.csr"])
        .args(["-subj", "/CN=127.0.0.1"]));
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\n\
         basicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new(openssl)
        .current_dir(dir)
        .args(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem"])
        .args(["-CAkey", "ca.key", "-CAcreateserial", "-days", "2"])
        .args(["-out", "server.pem", "-extfile", "server.ext"]));
}
