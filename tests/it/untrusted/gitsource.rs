//! `gitsource`: the network between the agent and its git server, and who may
//! write the commits it applies.
//!
//! - `http://` and `git://` remotes are refused when the agent starts, unless
//!   the host passes `--allow-insecure-transport` (then a `git://` remote
//!   served by `git daemon` works);
//! - a credential in the URL (the token as the https user, or as the
//!   password) reaches no message: not the authentication error in
//!   `/status`, not the log, the audit log, the state directory or a
//!   notification;
//! - with `--allowed-signers` (SSH keys, git's `gpg.ssh.allowedSignersFile`
//!   format) or `--trusted-keys` (OpenPGP), only commits `git` itself signed
//!   with a trusted key are applied: an unsigned commit and one signed by
//!   another key are rejected (recorded, audited, notified, the last good
//!   revision kept), and the next good signed commit applies.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Attack, CANARY};
use crate::agent::{Agent, Receiver};
use crate::gitserve::{HttpsServer, keygen, public_key, require_on_path, run};
use crate::support::{ensure_busybox, files_under};

const WAIT: Duration = Duration::from_secs(30);

/// A compose file for the attack's stack whose `GREETING` is `greeting`.
fn web(greeting: &str) -> String {
    format!(
        "services:\n  web:\n    image: plimsoll-example/busybox:1\n    init: true\n    \
         command: [sleep, \"3600\"]\n    environment:\n      GREETING: \"{greeting}\"\n"
    )
}

/// `plimsoll history --format json` of the attack's state directory.
fn history(attack: &Attack) -> Vec<Value> {
    let run = attack.run(&["history", "--format", "json"], &[]);
    run.expect(0);
    match run.json() {
        Value::Array(records) => records,
        other => panic!("history is not a JSON array: {other}"),
    }
}

fn audited(attack: &Attack, revision: &str, outcome: &str) -> usize {
    history(attack)
        .iter()
        .filter(|r| r["revision"] == revision && r["outcome"] == outcome)
        .count()
}

/// Asserts that `needle` is in no output the agent made: its log, `/status`,
/// the audit log, the notifications and every file of the state directory.
#[track_caller]
fn assert_nowhere(needle: &str, attack: &Attack, agent: &Agent, receiver: Option<&Receiver>) {
    let status = agent.status().to_string();
    assert!(!status.contains(needle), "{needle:?} in /status: {status}");
    let log = agent.log();
    assert!(
        !log.contains(needle),
        "{needle:?} in the agent's log:\n{log}"
    );
    let history = attack.run(&["history", "--format", "json"], &[]);
    assert!(
        !history.all().contains(needle),
        "{needle:?} in the history:\n{history}"
    );
    if let Some(receiver) = receiver {
        let notes = serde_json::to_string(&receiver.all()).unwrap();
        assert!(
            !notes.contains(needle),
            "{needle:?} in a notification: {notes}"
        );
    }
    for (path, bytes) in files_under(&attack.state()) {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(needle),
            "{needle:?} in {}",
            path.display()
        );
    }
}

// ---- servers ----------------------------------------------------------------------

/// `git daemon` serving the directories under `base` over git:// on 127.0.0.1;
/// killed on drop.
struct GitDaemon {
    child: Child,
    port: u16,
}

impl GitDaemon {
    fn start(base: &Path) -> GitDaemon {
        let git = require_on_path("git", "git");
        for _attempt in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            let mut child = Command::new(&git)
                .args([
                    "daemon",
                    "--export-all",
                    "--reuseaddr",
                    "--listen=127.0.0.1",
                ])
                .arg(format!("--port={port}"))
                .arg(format!("--base-path={}", base.display()))
                .arg(base)
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start git daemon");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if child.try_wait().ok().flatten().is_some() {
                    break; // the port was taken meanwhile: another one
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return GitDaemon { child, port };
                }
                assert!(
                    Instant::now() < deadline,
                    "git daemon did not listen on {port}"
                );
                thread::sleep(Duration::from_millis(25));
            }
        }
        panic!("git daemon found no free port in 5 attempts");
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bare clone of the attack's repository in `dir/r.git` (served by a git
/// server); [`push`] updates it.
fn bare_clone(attack: &Attack, dir: &Path) -> PathBuf {
    let bare = dir.join("r.git");
    attack.git(&["clone", "-q", "--bare", ".", bare.to_str().unwrap()]);
    bare
}

fn push(attack: &Attack, bare: &Path) {
    attack.git(&["push", "-q", "-f", bare.to_str().unwrap(), "HEAD:main"]);
}

// ---- transports ---------------------------------------------------------------------

/// `http://` and `git://` remotes are refused when the agent starts, with
/// the flag that allows them named, and no credential of the URL shown.
#[test]
fn insecure_transports_are_refused_at_start() {
    let attack = Attack::new("git-insecure");
    let mut runs = Vec::new();
    for (url, scheme) in [
        (
            format!("http://{CANARY}:x-oauth-basic@127.0.0.1:9/r.git"),
            "http://",
        ),
        (
            format!("http://x-oauth-basic:{CANARY}@127.0.0.1:9/r.git"),
            "http://",
        ),
        ("git://127.0.0.1:9/r.git".to_string(), "git://"),
    ] {
        let run = attack.run(&["agent", "--repo", &url, "--listen", "127.0.0.1:0"], &[]);
        run.expect(1);
        let text = run.all();
        assert!(
            text.contains("--allow-insecure-transport")
                && text.contains(&format!("refusing {scheme}127.0.0.1:9/r.git")),
            "the refusal names the URL and the flag:\n{run}"
        );
        assert!(
            !text.contains("listening on"),
            "refused before it starts:\n{run}"
        );
        runs.push(run);
    }
    attack.assert_contained(&runs, &["x-oauth-basic"]);
}

/// With `--allow-insecure-transport` (here its variable), a `git://`
/// remote is followed, and the log says it is unencrypted.
#[test]
fn a_git_daemon_remote_works_with_allow_insecure_transport() {
    ensure_busybox();
    let attack = Attack::new("git-daemon");
    attack.compose(&web("over git://"));
    let sha = attack.commit("over git://");
    let served = tempfile::tempdir().unwrap();
    bare_clone(&attack, served.path());
    let daemon = GitDaemon::start(served.path());
    let url = format!("git://127.0.0.1:{}/r.git", daemon.port);
    let agent = Agent::start(
        &attack.state(),
        &url,
        &["--interval", "1s"],
        &[("PLIMSOLL_ALLOW_INSECURE_TRANSPORT", "true")],
    );
    let status = agent.wait_revision(&sha, WAIT);
    assert_eq!(status["source"], url, "{status:#}");
    assert!(
        agent
            .log()
            .contains("allowed by --allow-insecure-transport"),
        "the log warns:\n{}",
        agent.log()
    );
}

/// A token in the URL: as the https user (`https://<token>:x-oauth-basic@`,
/// the server rejects it: 401) and as the password (the server accepts it,
/// then a revision is rejected and notified). Neither the token nor the
/// URL's other half appears in `/status`, the log, the audit log, the
/// notifications or the state directory.
#[test]
fn a_credential_in_the_url_reaches_no_message() {
    ensure_busybox();
    let attack = Attack::new("git-userinfo");
    let receiver = Receiver::start();
    attack.write("/plimsoll.yaml", &receiver.notifications());
    attack.compose(&web("v1"));
    let good = attack.commit("v1");
    let served = tempfile::tempdir().unwrap();
    let bare = bare_clone(&attack, served.path());
    // The server wants user `plimsoll` and the password CANARY.
    let server = HttpsServer::start(served.path(), CANARY);
    let ca = server.ca_file.display().to_string();
    let args = ["--interval", "1s", "--ca-file", ca.as_str()];

    // The token as the user: 401.
    let url = format!(
        "https://{CANARY}:x-oauth-basic@127.0.0.1:{}/git/r.git",
        server.port
    );
    let agent = Agent::start(&attack.state(), &url, &args, &[]);
    let status = agent.wait_status("the authentication error", WAIT, |s| {
        s["source_error"].is_string()
    });
    let error = status["source_error"].as_str().unwrap();
    assert!(
        error.contains("authentication failed") && error.contains("HTTP 401"),
        "{status:#}\n{}",
        server.log()
    );
    assert_eq!(status["source"], server.url("r.git"), "{status:#}");
    assert_nowhere(CANARY, &attack, &agent, None);
    assert_nowhere("x-oauth-basic", &attack, &agent, None);
    drop(agent);

    // The token as the password: it works; a broken revision is rejected
    // and notified, and still nothing shows the token.
    let url = format!(
        "https://plimsoll:{CANARY}@127.0.0.1:{}/git/r.git",
        server.port
    );
    let agent = Agent::start(&attack.state(), &url, &args, &[]);
    agent.wait_revision(&good, WAIT);
    attack.compose("services: [unclosed\n");
    let bad = attack.commit("broken");
    push(&attack, &bare);
    agent.wait_status("the broken revision rejected", WAIT, |s| {
        s["rejected"]["revision"] == bad
    });
    receiver.wait_event("revision_rejected", WAIT, |n| n["revision"] == bad);
    assert_eq!(agent.status()["revision"], good);
    assert_nowhere(CANARY, &attack, &agent, Some(&receiver));
}

// ---- signed commits -------------------------------------------------------------------

/// How a test commit is signed.
enum Signer<'a> {
    None,
    /// `gpg.format=ssh` with this private key file.
    Ssh(&'a Path),
    /// OpenPGP with this key (fingerprint) of the keyring in `home`.
    Gpg {
        home: &'a Path,
        key: &'a str,
    },
}

/// Commits everything in the attack's repository, signed by `git` itself as
/// `signer` says; returns the SHA.
fn commit_signed(attack: &Attack, message: &str, signer: &Signer<'_>) -> String {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(attack.repo());
    cmd.args([
        "-c",
        "user.name=ops",
        "-c",
        "user.email=ops@plimsoll.invalid",
    ]);
    cmd.env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1");
    match signer {
        Signer::None => {
            cmd.args(["-c", "commit.gpgsign=false"]);
        }
        Signer::Ssh(key) => {
            cmd.args(["-c", "gpg.format=ssh", "-c"])
                .arg(format!("user.signingkey={}", key.display()));
        }
        Signer::Gpg { home, key } => {
            cmd.args(["-c", "gpg.format=openpgp", "-c"])
                .arg(format!("user.signingkey={key}"))
                .env("GNUPGHOME", home);
        }
    }
    attack.git(&["add", "-A"]);
    cmd.args(["commit", "-q", "--allow-empty", "-m", message]);
    if !matches!(signer, Signer::None) {
        cmd.arg("-S");
    }
    run(&mut cmd);
    attack.git(&["rev-parse", "HEAD"])
}

/// The agent with `args` (the trusted keys) applies the good signed commit,
/// rejects `bad` commits (each with the text its reason must hold) as
/// broken revisions, and applies the next good signed commit.
fn enforces_signatures(
    attack: &Attack,
    args: &[&str],
    good: &Signer<'_>,
    bad: &[(&str, &Signer<'_>, &str)],
) {
    let receiver = Receiver::start();
    attack.write("/plimsoll.yaml", &receiver.notifications());
    attack.compose(&web("v1"));
    let first = commit_signed(attack, "v1", good);
    let repo = format!("file://{}", attack.repo().display());
    let mut all_args = vec!["--interval", "1s"];
    all_args.extend_from_slice(args);
    let agent = Agent::start(&attack.state(), &repo, &all_args, &[]);
    agent.wait_revision(&first, WAIT);
    assert!(
        agent.log().contains("signature verified"),
        "{}",
        agent.log()
    );

    for (i, (what, signer, why)) in bad.iter().enumerate() {
        attack.compose(&web(&format!("bad {i}")));
        let sha = commit_signed(attack, what, signer);
        let status = agent.wait_status(&format!("{what} rejected"), WAIT, |s| {
            s["rejected"]["revision"] == sha
        });
        let reason = status["rejected"]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(why), "{what}: {reason}");
        assert_eq!(
            status["revision"], first,
            "{what}: the last good one stays: {status:#}"
        );
        let note = receiver.wait_event("revision_rejected", WAIT, |n| n["revision"] == sha);
        assert!(
            note["message"].as_str().unwrap_or_default().contains(why),
            "{note:#}"
        );
        // Not retried: audited once, never applied, however many polls pass.
        thread::sleep(Duration::from_millis(1500));
        assert_eq!(audited(attack, &sha, "rejected"), 1, "{what}");
        assert_eq!(audited(attack, &sha, "applied"), 0, "{what}");
        assert_eq!(agent.status()["revision"], first);
    }

    attack.compose(&web("v2"));
    let next = commit_signed(attack, "v2", good);
    agent.wait_revision(&next, WAIT);
    assert_eq!(audited(attack, &next, "applied"), 1);
}

/// SSH signatures against an allowed_signers file.
#[test]
fn only_commits_signed_by_an_allowed_ssh_key_are_applied() {
    ensure_busybox();
    let attack = Attack::new("git-signed-ssh");
    let keys = tempfile::tempdir().unwrap();
    let (trusted, other) = (keys.path().join("trusted"), keys.path().join("other"));
    keygen(&trusted);
    keygen(&other);
    let allowed = keys.path().join("allowed_signers");
    std::fs::write(
        &allowed,
        format!(
            "# the ops team\nops@plimsoll.invalid namespaces=\"git\" {}\n",
            public_key(&trusted)
        ),
    )
    .unwrap();
    let allowed = allowed.display().to_string();
    enforces_signatures(
        &attack,
        &["--allowed-signers", &allowed],
        &Signer::Ssh(&trusted),
        &[
            ("unsigned", &Signer::None, "is not signed"),
            (
                "signed by another key",
                &Signer::Ssh(&other),
                "does not list",
            ),
        ],
    );
}

/// A GnuPG home with two keys; its gpg-agent is stopped on drop.
struct GnuPg {
    home: tempfile::TempDir,
}

impl GnuPg {
    fn new() -> GnuPg {
        require_on_path("gpg", "gnupg");
        // Short: gpg-agent's socket path must fit in a sockaddr_un.
        let home = tempfile::Builder::new()
            .prefix("gpg")
            .tempdir_in("/tmp")
            .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        GnuPg { home }
    }

    fn gpg(&self, args: &[&str]) -> String {
        run(Command::new("gpg")
            .args([
                "--batch",
                "--quiet",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args)
            .env("GNUPGHOME", self.home.path()))
    }

    /// A new ed25519 signing key for `uid`; returns its fingerprint.
    fn key(&self, uid: &str) -> String {
        self.gpg(&["--quick-gen-key", uid, "ed25519", "sign", "never"]);
        let listing = self.gpg(&["--with-colons", "--list-keys", uid]);
        listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|l| l.split(':').find(|f| !f.is_empty()))
            .expect("the new key's fingerprint")
            .to_string()
    }
}

impl Drop for GnuPg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .env("GNUPGHOME", self.home.path())
            .status();
    }
}

/// OpenPGP signatures against an armored public key (and an SSH-signed
/// commit is refused when only OpenPGP keys are trusted).
#[test]
fn only_commits_signed_by_a_trusted_openpgp_key_are_applied() {
    ensure_busybox();
    let attack = Attack::new("git-signed-gpg");
    let gpg = GnuPg::new();
    let trusted = gpg.key("Ops <ops@plimsoll.invalid>");
    let other = gpg.key("Mallory <mallory@plimsoll.invalid>");
    let file = gpg.home.path().join("trusted.asc");
    std::fs::write(&file, gpg.gpg(&["--armor", "--export", &trusted])).unwrap();
    let ssh_key = gpg.home.path().join("ssh");
    keygen(&ssh_key);
    let file = file.display().to_string();
    let home = gpg.home.path();
    enforces_signatures(
        &attack,
        &["--trusted-keys", &file],
        &Signer::Gpg {
            home,
            key: &trusted,
        },
        &[
            ("unsigned", &Signer::None, "is not signed"),
            (
                "signed by another key",
                &Signer::Gpg { home, key: &other },
                "does not verify",
            ),
            (
                "signed with ssh",
                &Signer::Ssh(&ssh_key),
                "no --allowed-signers file",
            ),
        ],
    );
}
