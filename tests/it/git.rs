//! The agent's git source (`plimsoll::agent::git`) against real
//! repositories: local ones (`file://`, paths), sshd and lighttpd + git
//! http-backend over TLS, all on 127.0.0.1 (see `gitserve`).
//!
//! Covered: following the default branch, a branch, an annotated tag and a
//! pinned commit; shallow fetches over ssh and https; checkouts that add,
//! change and delete files and go back to an older commit; the record of the
//! checked-out commit across a restart; strict known_hosts (changed key,
//! unknown host, hashed entries); authentication failures that say so and
//! never show the token; TLS trust through a CA file; unreachable servers.

use std::path::Path;

use git2::Repository;
use plimsoll::agent::git::{GitAuth, GitError, GitRef, GitSource, RepoKind, classify};

use crate::gitserve::{FORBIDDEN_TOKEN, HttpsServer, SshServer, TestRepo, free_port, keygen, run};

const TOKEN: &str = "tok-6f1d2c9e-right";

#[track_caller]
fn open(url: &str, reference: GitRef, auth: GitAuth, dir: &Path) -> GitSource {
    GitSource::open(url, reference, auth, dir).unwrap_or_else(|e| panic!("open {url}: {e}"))
}

fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok()
}

/// The local clone inside a state directory.
fn clone_of(state: &Path) -> Repository {
    Repository::open_bare(state.join("repo")).expect("the local clone")
}

/// Asserts that the local clone in `state` was fetched with depth 1: it is
/// shallow and lacks `parent`.
#[track_caller]
fn assert_shallow(state: &Path, parent: &str) {
    let clone = clone_of(state);
    assert!(clone.is_shallow(), "a depth-1 fetch");
    assert!(
        clone
            .find_commit(git2::Oid::from_str(parent).unwrap())
            .is_err(),
        "the parent was not fetched"
    );
}

/// A repository with one commit (a file `a`).
fn one_commit() -> TestRepo {
    let repo = TestRepo::new();
    repo.commit(&[("a", Some("1"))], "one");
    repo
}

/// Fetches the default branch of `url` into `state`, which must fail: the error.
#[track_caller]
fn fetch_err(url: &str, auth: GitAuth, state: &Path) -> GitError {
    open(url, GitRef::Default, auth, state).fetch().unwrap_err()
}

/// Asserts that the error text `text` says every one of `wants`.
#[track_caller]
fn assert_says(text: &str, wants: &[&str]) {
    for want in wants {
        assert!(text.contains(want), "missing {want:?} in: {text}");
    }
}

#[test]
fn git_local_repository_follows_the_default_branch_and_checks_out() {
    let repo = TestRepo::new();
    let c1 = repo.commit(
        &[
            ("stacks/web/compose.yaml", Some("v1")),
            ("stacks/old/compose.yaml", Some("old")),
        ],
        "one",
    );
    let state = tempfile::tempdir().unwrap();
    let src = open(
        &repo.file_url(),
        GitRef::Default,
        GitAuth::default(),
        state.path(),
    );
    assert_eq!(src.display_url(), repo.file_url());
    assert_eq!(src.checked_out(), None);
    assert_eq!(src.fetch().unwrap(), c1);
    assert_eq!(src.checked_out(), None, "fetch does not check out");

    let wt = src.checkout(&c1).unwrap();
    assert_eq!(wt, state.path().join("worktree"));
    assert_eq!(read(&wt, "stacks/web/compose.yaml").as_deref(), Some("v1"));
    assert_eq!(src.checked_out().as_deref(), Some(c1.as_str()));
    std::fs::write(wt.join("stray.txt"), "not in git").unwrap();

    let c2 = repo.commit(
        &[
            ("stacks/web/compose.yaml", Some("v2")),
            ("stacks/old/compose.yaml", None),
            ("stacks/new/compose.yaml", Some("new")),
        ],
        "two",
    );
    assert_eq!(src.fetch().unwrap(), c2);
    assert_eq!(src.checked_out().as_deref(), Some(c1.as_str()));
    assert_eq!(
        read(&wt, "stacks/web/compose.yaml").as_deref(),
        Some("v1"),
        "fetch leaves the work tree alone"
    );
    assert_eq!(src.checkout(&c2).unwrap(), wt);
    assert_eq!(read(&wt, "stacks/web/compose.yaml").as_deref(), Some("v2"));
    assert_eq!(read(&wt, "stacks/new/compose.yaml").as_deref(), Some("new"));
    assert!(
        !wt.join("stacks/old/compose.yaml").exists(),
        "deleted in git"
    );
    assert!(!wt.join("stacks/old").exists(), "its empty directory too");
    assert!(!wt.join("stray.txt").exists(), "stray files are removed");
    assert_eq!(src.fetch().unwrap(), c2, "nothing new");

    // A restart: the clone and the record of the checkout survive.
    drop(src);
    let src = open(
        &repo.file_url(),
        GitRef::Default,
        GitAuth::default(),
        state.path(),
    );
    assert_eq!(src.checked_out().as_deref(), Some(c2.as_str()));
    assert_eq!(src.fetch().unwrap(), c2);

    // Back to the older commit (the last good one after a broken new one).
    src.checkout(&c1).unwrap();
    assert_eq!(read(&wt, "stacks/web/compose.yaml").as_deref(), Some("v1"));
    assert_eq!(read(&wt, "stacks/old/compose.yaml").as_deref(), Some("old"));
    assert!(!wt.join("stacks/new").exists());
    assert_eq!(src.checked_out().as_deref(), Some(c1.as_str()));

    let err = src.checkout(&"0".repeat(40)).unwrap_err();
    assert!(matches!(err, GitError::NotFetched { .. }), "{err}");
    assert!(err.to_string().contains("fetch it first"), "{err}");
}

#[test]
fn git_plain_local_path_is_classified_and_fetched() {
    let repo = TestRepo::new();
    let c1 = repo.commit(&[("plimsoll.yaml", Some("stacks: {}\n"))], "one");
    let RepoKind::Git(url) = classify(repo.path().to_str().unwrap()).unwrap() else {
        panic!("a work tree is a git repository");
    };
    assert!(url.starts_with("file:///"), "{url}");
    let state = tempfile::tempdir().unwrap();
    let src = open(&url, GitRef::Default, GitAuth::default(), state.path());
    assert_eq!(src.fetch().unwrap(), c1);
    let wt = src.checkout(&c1).unwrap();
    assert_eq!(read(&wt, "plimsoll.yaml").as_deref(), Some("stacks: {}\n"));

    let plain = tempfile::tempdir().unwrap();
    assert_eq!(
        classify(plain.path().to_str().unwrap()).unwrap(),
        RepoKind::Directory(plain.path().canonicalize().unwrap())
    );
}

#[test]
fn git_local_branch_annotated_tag_and_pinned_rev() {
    let repo = TestRepo::new();
    let c0 = repo.commit(&[("a", Some("0"))], "zero");
    let c1 = repo.commit(&[("a", Some("1"))], "one");
    let tag = repo.tag("v1", &c1);
    let c2 = repo.commit(&[("a", Some("2"))], "two");
    repo.switch("dev");
    let d1 = repo.commit(&[("a", Some("dev"))], "dev");
    repo.switch("main");
    let url = repo.file_url();
    let states = tempfile::tempdir().unwrap();
    let mut n = 0;
    let mut follow = |reference: GitRef| {
        n += 1;
        let src = open(
            &url,
            reference,
            GitAuth::default(),
            &states.path().join(n.to_string()),
        );
        let got = src.fetch();
        (src, got)
    };

    assert_eq!(follow(GitRef::Default).1.unwrap(), c2);
    assert_eq!(follow(GitRef::Branch("dev".into())).1.unwrap(), d1);
    assert_eq!(follow(GitRef::Branch("main".into())).1.unwrap(), c2);
    let (src, got) = follow(GitRef::Tag("v1".into()));
    assert_eq!(got.unwrap(), c1, "the annotated tag {tag} peeled");
    assert_eq!(read(&src.checkout(&c1).unwrap(), "a").as_deref(), Some("1"));

    // Pinned: a commit no ref points to, full and abbreviated; one a tag
    // points to, abbreviated.
    let (src, got) = follow(GitRef::Rev(c0.clone()));
    assert_eq!(got.unwrap(), c0);
    assert_eq!(read(&src.checkout(&c0).unwrap(), "a").as_deref(), Some("0"));
    assert_eq!(src.fetch().unwrap(), c0, "a pinned commit stays");
    assert_eq!(follow(GitRef::Rev(c0[..8].to_uppercase())).1.unwrap(), c0);
    assert_eq!(follow(GitRef::Rev(c1[..7].into())).1.unwrap(), c1);

    let err = follow(GitRef::Branch("nope".into())).1.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, GitError::RefNotFound { .. }), "{text}");
    assert!(
        text.contains(&format!("branch \"nope\" not found in {url}")) && text.contains("dev, main"),
        "{text}"
    );
    let text = follow(GitRef::Tag("v9".into())).1.unwrap_err().to_string();
    assert!(
        text.contains("tag \"v9\" not found") && text.contains("v1"),
        "{text}"
    );
    let err = follow(GitRef::Rev("deadbeef".into())).1.unwrap_err();
    assert!(matches!(err, GitError::CommitNotFound { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("commit deadbeef not found in {url}")),
        "{err}"
    );
    let err = GitSource::open(
        &url,
        GitRef::Rev("main".into()),
        GitAuth::default(),
        states.path(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("--rev wants a commit SHA"),
        "{err}"
    );
}

/// An auth for `ssh` with its client key and a known_hosts trusting it.
fn ssh_auth(ssh: &SshServer) -> GitAuth {
    GitAuth {
        ssh_key: Some(ssh.client_key.clone()),
        known_hosts: Some(ssh.known_hosts()),
        ..GitAuth::default()
    }
}

/// `SHA256:…` of the server's host key, as ssh-keygen prints it.
fn host_fingerprint(ssh: &SshServer) -> String {
    let pubkey = ssh.file("host.pub");
    std::fs::write(&pubkey, format!("{}\n", ssh.host_key)).unwrap();
    let out = run(std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&pubkey));
    out.split_whitespace().nth(1).unwrap().to_string()
}

#[test]
fn git_ssh_fetch_is_shallow_with_a_hashed_known_hosts() {
    let repo = TestRepo::new();
    let c1 = repo.commit(&[("a", Some("1"))], "one");
    let c2 = repo.commit(&[("a", Some("2")), ("b", Some("b"))], "two");
    let ssh = SshServer::start();
    let mut auth = ssh_auth(&ssh);
    let kh = auth.known_hosts.clone().unwrap();
    run(std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&kh));
    let hashed = std::fs::read_to_string(&kh).unwrap();
    assert!(hashed.starts_with("|1|"), "{hashed}");
    auth.known_hosts = Some(kh);

    let state = tempfile::tempdir().unwrap();
    let url = ssh.url(&repo.path());
    let src = open(&url, GitRef::Default, auth, state.path());
    let got = src
        .fetch()
        .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", ssh.log()));
    assert_eq!(got, c2);
    assert_shallow(state.path(), &c1);

    let c3 = repo.commit(&[("b", None), ("c", Some("c"))], "three");
    assert_eq!(src.fetch().unwrap(), c3);
    let wt = src.checkout(&c3).unwrap();
    assert_eq!(read(&wt, "c").as_deref(), Some("c"));
    assert!(!wt.join("b").exists());
    src.checkout(&c2).unwrap();
    assert_eq!(read(&wt, "b").as_deref(), Some("b"));
}

#[test]
fn git_ssh_pinned_older_commit_is_fetched_in_full() {
    let repo = TestRepo::new();
    let c1 = repo.commit(&[("a", Some("1"))], "one");
    let c2 = repo.commit(&[("a", Some("2"))], "two");
    let ssh = SshServer::start();
    let state = tempfile::tempdir().unwrap();
    let url = ssh.url(&repo.path());
    // A shallow clone of the tip first, then the pin to its parent in the
    // same clone: the server refuses a commit no ref points to ("not our
    // ref"), so every head and tag is fetched, unshallowing the clone.
    let tip = open(&url, GitRef::Default, ssh_auth(&ssh), state.path());
    assert_eq!(
        tip.fetch()
            .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", ssh.log())),
        c2
    );
    assert!(clone_of(state.path()).is_shallow());
    let pinned = open(&url, GitRef::Rev(c1.clone()), ssh_auth(&ssh), state.path());
    assert_eq!(pinned.fetch().unwrap(), c1);
    let wt = pinned.checkout(&c1).unwrap();
    assert_eq!(read(&wt, "a").as_deref(), Some("1"));
}

#[test]
fn git_ssh_refuses_a_changed_host_key() {
    let repo = one_commit();
    let ssh = SshServer::start();
    let other = ssh.file("other_host_key");
    keygen(&other);
    let kh = ssh.file("known_hosts_changed");
    std::fs::write(
        &kh,
        format!(
            "[127.0.0.1]:{} {}\n",
            ssh.port,
            crate::gitserve::public_key(&other)
        ),
    )
    .unwrap();
    let auth = GitAuth {
        known_hosts: Some(kh.clone()),
        ..ssh_auth(&ssh)
    };
    let state = tempfile::tempdir().unwrap();
    let src = open(&ssh.url(&repo.path()), GitRef::Default, auth, state.path());
    let err = src.fetch().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, GitError::HostKey { .. }), "{text}");
    assert!(!err.is_unreachable());
    let name = format!("[127.0.0.1]:{}", ssh.port);
    assert_says(
        &text,
        &[
            "ssh host key verification failed",
            &ssh.url(&repo.path()),
            &format!("the host key of {name} has CHANGED"),
            "ssh-ed25519",
            &host_fingerprint(&ssh),
            &kh.display().to_string(),
            "man-in-the-middle",
            &format!("ssh-keyscan -t ssh-ed25519 -p {} 127.0.0.1", ssh.port),
        ],
    );
    assert_eq!(src.checked_out(), None);
}

#[test]
fn git_ssh_refuses_an_unknown_host() {
    let repo = one_commit();
    let ssh = SshServer::start();
    let empty = ssh.file("known_hosts_empty");
    std::fs::write(&empty, "").unwrap();
    let url = ssh.url(&repo.path());
    let fp = host_fingerprint(&ssh);
    let name = format!("[127.0.0.1]:{}", ssh.port);
    let keyscan = format!("ssh-keyscan -p {} 127.0.0.1", ssh.port);

    let state = tempfile::tempdir().unwrap();
    let auth = GitAuth {
        known_hosts: Some(empty.clone()),
        ..ssh_auth(&ssh)
    };
    let err = fetch_err(&url, auth, state.path());
    let text = err.to_string();
    assert!(matches!(err, GitError::HostKey { .. }), "{text}");
    assert_says(
        &text,
        &[
            &format!("{name} is not in the known_hosts file {}", empty.display()),
            &fp,
            &keyscan,
        ],
    );

    // No known_hosts at all: refused too.
    let auth = GitAuth {
        known_hosts: None,
        ..ssh_auth(&ssh)
    };
    let err = fetch_err(&url, auth, state.path());
    let text = err.to_string();
    assert!(matches!(err, GitError::HostKey { .. }), "{text}");
    assert_says(&text, &["no known_hosts file is configured", &fp, &keyscan]);
}

#[test]
fn git_ssh_wrong_client_key_is_an_auth_error() {
    let repo = one_commit();
    let ssh = SshServer::start();
    let wrong = ssh.file("wrong_client_key");
    keygen(&wrong);
    let url = ssh.url(&repo.path());
    let state = tempfile::tempdir().unwrap();
    let auth = GitAuth {
        ssh_key: Some(wrong.clone()),
        ..ssh_auth(&ssh)
    };
    let err = fetch_err(&url, auth, state.path());
    let text = err.to_string();
    assert!(matches!(err, GitError::Auth { .. }), "{text}");
    assert!(!err.is_unreachable());
    assert_says(
        &text,
        &[
            &format!("authentication failed for {url}"),
            &format!("rejected the ssh key {}", wrong.display()),
            &format!("for user \"{}\"", ssh.user),
            "authorized",
        ],
    );

    let auth = GitAuth {
        ssh_key: None,
        ..ssh_auth(&ssh)
    };
    let err = fetch_err(&url, auth, state.path());
    let text = err.to_string();
    assert!(matches!(err, GitError::Auth { .. }), "{text}");
    assert!(text.contains("none is configured"), "{text}");
}

fn https_auth(server: &HttpsServer, token: Option<&str>) -> GitAuth {
    GitAuth {
        token: token.map(str::to_string),
        ca_file: Some(server.ca_file.clone()),
        ..GitAuth::default()
    }
}

#[test]
fn git_https_fetch_with_token_and_ca_file_is_shallow() {
    let repo = TestRepo::new();
    let c1 = repo.commit(&[("a", Some("1"))], "one");
    let c2 = repo.commit(&[("a", Some("2"))], "two");
    repo.tag("v2", &c2);
    let server = HttpsServer::start(repo.root(), TOKEN);
    let url = server.url("repo");
    let state = tempfile::tempdir().unwrap();
    let src = open(
        &url,
        GitRef::Default,
        https_auth(&server, Some(TOKEN)),
        state.path(),
    );
    let got = src
        .fetch()
        .unwrap_or_else(|e| panic!("{e}\nlighttpd log:\n{}", server.log()));
    assert_eq!(got, c2);
    assert_shallow(state.path(), &c1);

    let c3 = repo.commit(&[("a", Some("3"))], "three");
    assert_eq!(src.fetch().unwrap(), c3);
    assert_eq!(read(&src.checkout(&c3).unwrap(), "a").as_deref(), Some("3"));

    // A tag, and the token given in the URL instead.
    let state = tempfile::tempdir().unwrap();
    let in_url = url.replace("https://", &format!("https://plimsoll:{TOKEN}@"));
    let src = open(
        &in_url,
        GitRef::Tag("v2".into()),
        https_auth(&server, None),
        state.path(),
    );
    assert_eq!(src.display_url(), url);
    assert_eq!(src.fetch().unwrap(), c2);
}

#[test]
fn git_https_wrong_token_is_an_auth_error_without_the_token() {
    let repo = one_commit();
    let server = HttpsServer::start(repo.root(), TOKEN);
    let url = server.url("repo");
    let wrong = "wrong-7c41b5e0-secret";
    let state = tempfile::tempdir().unwrap();

    let err = fetch_err(&url, https_auth(&server, Some(wrong)), state.path());
    let text = err.to_string();
    assert!(
        matches!(err, GitError::Auth { .. }),
        "{text}\n{}",
        server.log()
    );
    assert!(!err.is_unreachable());
    assert_says(
        &text,
        &[
            &format!("authentication failed for {url}"),
            "rejected the token",
            "401",
            "check the token",
        ],
    );
    assert!(
        !text.contains(wrong) && !format!("{err:?}").contains(wrong),
        "{err:?}"
    );

    // The same token in the URL: not shown either.
    let in_url = url.replace("https://", &format!("https://plimsoll:{wrong}@"));
    let src = open(
        &in_url,
        GitRef::Default,
        https_auth(&server, None),
        state.path(),
    );
    let err = src.fetch().unwrap_err();
    assert!(matches!(err, GitError::Auth { .. }), "{err}");
    assert!(!format!("{err} {err:?} {src:?}").contains(wrong), "{err:?}");

    let err = fetch_err(&url, https_auth(&server, None), state.path());
    assert!(matches!(err, GitError::Auth { .. }), "{err}");
    assert!(err.to_string().contains("none is configured"), "{err}");

    let err = fetch_err(
        &url,
        https_auth(&server, Some(FORBIDDEN_TOKEN)),
        state.path(),
    );
    assert!(matches!(err, GitError::Auth { .. }), "{err}");
    assert!(err.to_string().contains("HTTP 403"), "{err}");
    assert!(!err.to_string().contains(FORBIDDEN_TOKEN), "{err}");
}

#[test]
fn git_https_without_ca_file_is_a_tls_error() {
    let repo = one_commit();
    let server = HttpsServer::start(repo.root(), TOKEN);
    let url = server.url("repo");
    let state = tempfile::tempdir().unwrap();
    let auth = GitAuth {
        token: Some(TOKEN.into()),
        ..GitAuth::default()
    };
    let err = fetch_err(&url, auth, state.path());
    let text = err.to_string();
    assert!(
        matches!(err, GitError::Tls { .. }),
        "{text}\n{}",
        server.log()
    );
    assert!(!err.is_unreachable());
    assert_says(
        &text,
        &[
            &format!("TLS certificate of {url} is not trusted"),
            "not signed by a CA this host trusts",
            "--ca-file",
        ],
    );
    assert!(!text.contains(TOKEN));
}

#[test]
fn git_unreachable_server_is_retryable() {
    let port = free_port();
    let state = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("key");
    keygen(&key);
    for url in [
        format!("https://127.0.0.1:{port}/git/repo"),
        format!("ssh://git@127.0.0.1:{port}/srv/repo.git"),
    ] {
        let auth = GitAuth {
            token: Some(TOKEN.into()),
            ssh_key: Some(key.clone()),
            ..GitAuth::default()
        };
        let err = fetch_err(&url, auth, state.path());
        let text = err.to_string();
        assert!(err.is_unreachable(), "{text}");
        assert_says(
            &text,
            &[&format!("cannot reach {url}"), "127.0.0.1", "retries"],
        );
    }
}
