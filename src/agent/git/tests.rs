use super::auth::secrets_of;
use super::known_hosts::{
    Verdict, check_host_key, fingerprint, hmac_sha1, key_type_name, parse_known_hosts, sha1,
};
use super::url::{Transport, pct_decode, same_server, server_name};
use super::*;
use base64::Engine as _;
use git2::ErrorClass;

const ED25519: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIPcSfbJ6RT+DAhG3rlcbpzlTbFu8A58WGoVl+aRD3qQc";
const OTHER_ED25519: &str = "AAAAC3NzaC1lZDI1NTE5AAAAICwKnoaIW4W2UTt/Tqee4CmepCX4GU/cm1l8Q7aXWBoC";

fn blob(b64: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

/// `check(known_hosts, host, port, key, expected)`.
fn check(known_hosts: &str, host: &str, port: u16, key: &str, expected: Verdict) {
    let entries = parse_known_hosts(known_hosts);
    assert_eq!(
        check_host_key(&entries, host, port, &blob(key)),
        expected,
        "{host}:{port} against\n{known_hosts}"
    );
}

#[test]
fn sha1_and_hmac_match_the_reference_vectors() {
    assert_eq!(
        hex::encode(sha1(b"abc")),
        "a9993e364706816aba3e25717850c26c9cd0d89d"
    );
    assert_eq!(
        hex::encode(sha1(b"")),
        "da39a3ee5e6b4b0d3255bfef95601890afd80709"
    );
    assert_eq!(
        hex::encode(sha1(
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        )),
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
    );
    // RFC 2202, test cases 1, 2 and 6 (a key longer than a block).
    assert_eq!(
        hex::encode(hmac_sha1(&[0x0b; 20], b"Hi There")),
        "b617318655057264e28bc0b6fb378c8ef146be00"
    );
    assert_eq!(
        hex::encode(hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
        "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
    );
    assert_eq!(
        hex::encode(hmac_sha1(
            &[0xaa; 80],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        )),
        "aa4ae5e15272d00e95705637ce8a3b55ed402112"
    );
}

#[test]
fn fingerprint_and_key_type_match_ssh_keygen() {
    // `ssh-keygen -lf` printed this for the key.
    assert_eq!(
        fingerprint(&blob(ED25519)),
        "SHA256:QmtQUJH2PvmVitBxqGSL4yVFs7lOK16GqbR/nrgnV1c"
    );
    assert_eq!(
        key_type_name(&blob(ED25519)).as_deref(),
        Some("ssh-ed25519")
    );
    assert_eq!(key_type_name(b"\0\0"), None);
}

#[test]
fn plain_entries_match_host_and_bracketed_port() {
    let kh = format!(
        "# comment\n\n\
         [127.0.0.1]:2222 ssh-ed25519 {ED25519}\n\
         example.com,Git.Example.org ssh-ed25519 {ED25519} c\n"
    );
    check(&kh, "127.0.0.1", 2222, ED25519, Verdict::Trusted);
    check(&kh, "example.com", 22, ED25519, Verdict::Trusted);
    check(&kh, "git.example.ORG", 22, ED25519, Verdict::Trusted);
    // The port is part of the name: 127.0.0.1 on 22 or 2223 is unknown.
    check(&kh, "127.0.0.1", 22, ED25519, Verdict::Unknown);
    check(&kh, "127.0.0.1", 2223, ED25519, Verdict::Unknown);
    check(&kh, "example.com", 2222, ED25519, Verdict::Unknown);
    check(
        &kh,
        "127.0.0.1",
        2222,
        OTHER_ED25519,
        Verdict::Changed {
            lines: vec![3],
            types: vec!["ssh-ed25519".into()],
        },
    );
}

#[test]
fn hashed_entries_from_ssh_keygen_match() {
    // `ssh-keygen -H` output for "[127.0.0.1]:2222" and "example.com".
    let kh = format!(
        "|1|kcFZts/R9luDOEPbP1Ki8/e/9LI=|gc1DYFFoT73hJ2ch6SzPI/zJxao= ssh-ed25519 {ED25519}\n\
         |1|UtJfFH7lT7W05J/zlxuZ1T8ao3g=|mPyPj8zau+fdxXoL540JYadS2u4= ssh-ed25519 {ED25519}\n"
    );
    check(&kh, "127.0.0.1", 2222, ED25519, Verdict::Trusted);
    check(&kh, "EXAMPLE.com", 22, ED25519, Verdict::Trusted);
    check(&kh, "example.org", 22, ED25519, Verdict::Unknown);
    check(&kh, "127.0.0.1", 22, ED25519, Verdict::Unknown);
    check(
        &kh,
        "example.com",
        22,
        OTHER_ED25519,
        Verdict::Changed {
            lines: vec![2],
            types: vec!["ssh-ed25519".into()],
        },
    );
}

#[test]
fn wildcards_negations_revocations_and_other_types() {
    let kh = format!(
        "*.example.com,!bad.example.com ssh-ed25519 {ED25519}\n\
         @revoked *.example.com ssh-ed25519 {OTHER_ED25519}\n\
         @cert-authority *.example.com ssh-ed25519 {OTHER_ED25519}\n\
         rsa.example.org ssh-rsa {ED25519}\n\
         garbage line\n\
         bad64 ssh-ed25519 !!!\n\
         [git?.example.net]:* ssh-ed25519 {ED25519}\n"
    );
    check(&kh, "git.example.com", 22, ED25519, Verdict::Trusted);
    check(&kh, "bad.example.com", 22, ED25519, Verdict::Unknown);
    check(
        &kh,
        "git.example.com",
        22,
        OTHER_ED25519,
        Verdict::Revoked { line: 2 },
    );
    check(&kh, "git1.example.net", 2200, ED25519, Verdict::Trusted);
    check(&kh, "git12.example.net", 2200, ED25519, Verdict::Unknown);
    check(
        &kh,
        "rsa.example.org",
        22,
        OTHER_ED25519,
        Verdict::Changed {
            lines: vec![4],
            types: vec!["ssh-rsa".into()],
        },
    );
    assert_eq!(parse_known_hosts(&kh).len(), 4);
}

#[test]
fn wildcard_match_cases() {
    for (p, t, want) in [
        ("*", "anything", true),
        ("a*c", "abbbc", true),
        ("a*c", "abbbd", false),
        ("a?c", "abc", true),
        ("a?c", "ac", false),
        ("*.x.com", "a.b.x.com", true),
        ("", "", true),
        ("", "a", false),
        ("**", "", true),
    ] {
        assert_eq!(
            wildcard_match(p.as_bytes(), t.as_bytes()),
            want,
            "{p} ~ {t}"
        );
    }
}

#[test]
fn urls_lose_their_credentials() {
    let e = parse_endpoint("https://alice:s3cret%21@git.example.com:8443/team/cfg.git").unwrap();
    assert_eq!(e.transport, Transport::Https);
    assert_eq!(e.url, "https://git.example.com:8443/team/cfg.git");
    assert_eq!(e.display, "https://git.example.com:8443/team/cfg.git");
    assert_eq!(e.user.as_deref(), Some("alice"));
    assert_eq!(e.password.as_deref(), Some("s3cret!"));
    assert_eq!((e.host.as_str(), e.port), ("git.example.com", Some(8443)));

    let e = parse_endpoint("https://ghp_tokenasuser@github.com/o/r").unwrap();
    assert_eq!(e.display, "https://github.com/o/r");
    assert_eq!(e.user.as_deref(), Some("ghp_tokenasuser"));

    let e = parse_endpoint("ssh://git:pw@[::1]:2222/srv/r.git").unwrap();
    assert_eq!(e.transport, Transport::Ssh);
    assert_eq!(e.url, "ssh://git@[::1]:2222/srv/r.git");
    assert_eq!(e.display, e.url);
    assert_eq!((e.host.as_str(), e.port), ("::1", Some(2222)));

    let e = parse_endpoint("git@github.com:o/r.git").unwrap();
    assert_eq!(e.transport, Transport::Ssh);
    assert_eq!(e.display, "git@github.com:o/r.git");
    assert_eq!((e.host.as_str(), e.port), ("github.com", None));
    assert_eq!(e.user.as_deref(), Some("git"));

    let e = parse_endpoint("file:///srv/repo").unwrap();
    assert_eq!(
        (e.transport, e.url.as_str()),
        (Transport::Local, "file:///srv/repo")
    );

    assert!(
        parse_endpoint("ftp://x/y")
            .unwrap_err()
            .to_string()
            .contains("ftp://")
    );
    assert!(parse_endpoint("https://h:notaport/").is_err());
    assert!(parse_endpoint("https:///path").is_err());
    assert_eq!(redact_userinfo("bogus://u:secret@h/x"), "bogus://***@h/x");
    assert_eq!(pct_decode("a%2Fb%zz%4"), "a/b%zz%4");
}

#[test]
fn classify_urls_paths_and_directories() {
    for url in [
        "https://example.com/r.git",
        "http://example.com/r.git",
        "ssh://git@example.com/r.git",
        "git@example.com:team/r.git",
        "file:///srv/r.git",
    ] {
        assert_eq!(classify(url).unwrap(), RepoKind::Git(url.into()), "{url}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain dir");
    std::fs::create_dir(&plain).unwrap();
    let plain = plain.canonicalize().unwrap();
    assert_eq!(
        classify(plain.to_str().unwrap()).unwrap(),
        RepoKind::Directory(plain.clone())
    );
    let work = tmp.path().join("work");
    Repository::init(&work).unwrap();
    let bare = tmp.path().join("bare.git");
    Repository::init_bare(&bare).unwrap();
    for repo in [&work, &bare] {
        let abs = repo.canonicalize().unwrap();
        assert_eq!(
            classify(repo.to_str().unwrap()).unwrap(),
            RepoKind::Git(format!("file://{}", abs.display())),
        );
    }
    assert_eq!(file_url(Path::new("/a b/%c")), "file:///a%20b/%25c");
    let file = tmp.path().join("f");
    std::fs::write(&file, "x").unwrap();
    let err = classify(file.to_str().unwrap()).unwrap_err().to_string();
    assert!(err.contains("it is a file"), "{err}");
    let err = classify("/no/such/dir").unwrap_err().to_string();
    assert!(
        err.contains("/no/such/dir") && err.contains("no such directory"),
        "{err}"
    );
    let err = classify("ftp://u:pw@host/x").unwrap_err().to_string();
    assert!(!err.contains("pw") && err.contains("ftp://"), "{err}");
    assert!(classify("  ").is_err());
}

#[test]
fn rev_must_be_hex_and_the_token_stays_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let err = GitSource::open(
        "https://example.com/r.git",
        GitRef::Rev("main".into()),
        GitAuth::default(),
        tmp.path(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("--rev wants a commit SHA"),
        "{err}"
    );

    let auth = GitAuth {
        token: Some("tok-3xample-value".into()),
        ..GitAuth::default()
    };
    assert!(!format!("{auth:?}").contains("tok-3xample-value"));
    let src = GitSource::open(
        "https://bob:urlpass-secret@example.com/r.git",
        GitRef::Default,
        GitAuth::default(),
        tmp.path(),
    )
    .unwrap();
    assert_eq!(src.display_url(), "https://example.com/r.git");
    assert_eq!(src.http_user, "bob");
    assert_eq!(src.token.as_deref(), Some("urlpass-secret"));
    assert!(!format!("{src:?}").contains("urlpass-secret"));
    let basic = base64::engine::general_purpose::STANDARD.encode("bob:urlpass-secret");
    assert_eq!(
        src.scrub(&format!("x urlpass-secret y {basic} z")),
        "x *** y *** z"
    );
    assert_eq!(src.checked_out(), None);
}

#[test]
fn a_clone_of_another_url_is_reinitialised() {
    let tmp = tempfile::tempdir().unwrap();
    let a = GitSource::open(
        "https://a.example/r.git",
        GitRef::Default,
        GitAuth::default(),
        tmp.path(),
    )
    .unwrap();
    let marker = a.repo_path().join("marker");
    std::fs::write(&marker, "x").unwrap();
    GitSource::open(
        "https://a.example/r.git",
        GitRef::Default,
        GitAuth::default(),
        tmp.path(),
    )
    .unwrap();
    assert!(marker.exists(), "the same URL keeps the clone");
    let b = GitSource::open(
        "https://b.example/r.git",
        GitRef::Default,
        GitAuth::default(),
        tmp.path(),
    )
    .unwrap();
    assert!(!marker.exists(), "another URL re-initialises the clone");
    let repo = Repository::open_bare(b.repo_path()).unwrap();
    assert_eq!(
        repo.config().unwrap().get_string(URL_KEY).unwrap(),
        "https://b.example/r.git"
    );
}

#[test]
fn http_and_git_urls_need_the_insecure_flag() {
    let tmp = tempfile::tempdir().unwrap();
    for url in [
        "http://u:pw-s3cret@example.com/r.git",
        "git://example.com/r.git",
    ] {
        let err =
            GitSource::open(url, GitRef::Default, GitAuth::default(), tmp.path()).unwrap_err();
        assert!(matches!(err, GitError::Insecure { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("--allow-insecure-transport") && !text.contains("pw-s3cret"),
            "{text}"
        );
        let allowed = GitAuth {
            allow_insecure: true,
            ..GitAuth::default()
        };
        GitSource::open(url, GitRef::Default, allowed, tmp.path()).unwrap();
        let err = check_transport(url, false).unwrap_err().to_string();
        assert!(
            err.contains("refusing") && !err.contains("pw-s3cret"),
            "{err}"
        );
        check_transport(url, true).unwrap();
    }
    for url in [
        "https://h/r.git",
        "ssh://git@h/r.git",
        "git@h:r.git",
        "file:///r",
    ] {
        check_transport(url, false).unwrap();
    }
}

#[test]
fn credentials_go_only_to_the_configured_server() {
    let https = parse_endpoint("https://tok@git.example.com/o/r.git").unwrap();
    assert!(same_server(&https, "https://git.example.com/o/r.git"));
    assert!(same_server(
        &https,
        "https://GIT.example.com:443/other/path"
    ));
    assert!(!same_server(&https, "https://evil.example.net/o/r.git"));
    assert!(!same_server(&https, "https://git.example.com:8443/o/r.git"));
    assert!(!same_server(&https, "http://git.example.com/o/r.git"));
    assert!(!same_server(
        &https,
        "https://git.example.com.evil.net/o/r.git"
    ));
    assert!(!same_server(&https, "not a url"));
    let ssh = parse_endpoint("git@github.com:o/r.git").unwrap();
    assert!(same_server(&ssh, "ssh://git@github.com:22/o/r.git"));
    assert!(same_server(&ssh, "git@github.com:o/r.git"));
    assert!(!same_server(&ssh, "ssh://git@gitlab.com/o/r.git"));
    let v6 = parse_endpoint("ssh://git@[::1]:2222/srv/r.git").unwrap();
    assert!(same_server(&v6, "ssh://git@[::1]:2222/srv/r.git"));
    assert_eq!(server_name(&v6), "ssh://[::1]:2222");
    assert_eq!(server_name(&https), "https://git.example.com:443");
}

#[test]
fn url_userinfo_is_scrubbed_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    // GitHub's form: the token is the user.
    let src = GitSource::open(
        "https://ghp_T0ken%2Bvalue:x-oauth-basic@example.com/r.git",
        GitRef::Default,
        GitAuth::default(),
        tmp.path(),
    )
    .unwrap();
    let text = "user ghp_T0ken+value raw ghp_T0ken%2Bvalue pass x-oauth-basic";
    assert_eq!(src.scrub(text), "user *** raw *** pass ***");
    assert!(!format!("{src:?}").contains("ghp_T0ken"));
    let basic = base64::engine::general_purpose::STANDARD.encode("ghp_T0ken+value:x-oauth-basic");
    assert_eq!(src.scrub(&basic), "***");
    // A token file wins over the URL's password; both are secret.
    let auth = GitAuth {
        token: Some("file-t0ken".into()),
        ..GitAuth::default()
    };
    let src = GitSource::open(
        "https://bob:url-pass@example.com/r.git",
        GitRef::Default,
        auth,
        tmp.path(),
    )
    .unwrap();
    assert_eq!(src.scrub("file-t0ken url-pass bob"), "*** *** bob");
    // Short users and ssh users are names, not secrets.
    let e = parse_endpoint("ssh://git@example.com/r.git").unwrap();
    assert!(secrets_of(&e, "ssh://git@example.com/r.git", None, "plimsoll").is_empty());
    let rejected = src.remote_err(
        git2::Error::new(ErrorCode::Auth, ErrorClass::Http, "status code: 401"),
        &Shared::default(),
    );
    assert!(!rejected.to_string().contains("bob"), "{rejected}");
    let session = Shared::default();
    session.borrow_mut().foreign = Some("https://evil.example.net:443".into());
    let redirected = src
        .remote_err(git2::Error::from_str("x"), &session)
        .to_string();
    assert!(
        redirected.contains("https://evil.example.net:443")
            && redirected.contains("gives them only to https://example.com:443"),
        "{redirected}"
    );
}

#[test]
fn git_source_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<GitSource>();
    assert_send_sync::<GitError>();
}
