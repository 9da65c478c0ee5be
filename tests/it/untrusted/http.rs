//! See `untrusted` (mod.rs): this module's part of the threat model.
//!
//! `http`: whoever reaches the agent's HTTP port (the network) cannot hold it
//! or the process's file descriptors: slow headers, slow bodies and idle
//! keep-alive connections are closed after their timeouts; connections beyond
//! the cap are refused while `/healthz` (on the metrics listener) and a
//! webhook-triggered sync keep working; a replayed webhook delivery triggers
//! nothing; `/status` and `/metrics` want `--status-token-file`'s token and
//! move to `--metrics-listen` when it is set.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::agent::{Agent, Scenario, http, push_payload, sign, wait_running};
use crate::support::docker;

const SECRET: &str = "webhook-secret-for-http-tests";
const TOKEN: &str = "status-token-8c1f3e";
/// The generous bound on anything the agent must close or answer.
const BOUND: Duration = Duration::from_secs(60);

/// The address of the agent's `--metrics-listen` listener, from its log.
fn metrics_addr(agent: &Agent) -> String {
    let marker = "/metrics on http://";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = agent.log();
        if let Some(at) = log.find(marker) {
            let rest = &log[at + marker.len()..];
            return rest.split_whitespace().next().unwrap().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no metrics listener logged:\n{log}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// `GET path` at `addr` with a bearer token; panics unless it answers.
fn get(addr: &str, path: &str, token: Option<&str>) -> crate::agent::Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    http(addr, "GET", path, &headers, b"")
}

/// Polls `/status` at `addr` (with `token`) until `check` holds.
fn wait_status_at(
    agent: &Agent,
    addr: &str,
    token: Option<&str>,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + BOUND;
    loop {
        let r = get(addr, "/status", token);
        assert_eq!(r.code, 200, "GET /status: {r:?}");
        let s: Value = serde_json::from_str(&r.body).unwrap();
        if check(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\nlast /status: {s:#}\nagent log:\n{}",
            agent.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Sends `raw` on a new connection and reads until the agent closes it.
/// `None` when the connection could not even be made or nothing came back.
fn exchange(addr: &str, raw: &[u8]) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(BOUND)).unwrap();
    stream.write_all(raw).ok()?;
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    (!out.is_empty()).then(|| String::from_utf8_lossy(&out).into_owned())
}

/// Blocks until the peer closes `stream` (EOF or reset); what it sent
/// meanwhile. Panics when it stays open for [`BOUND`].
fn wait_closed(stream: &mut TcpStream) -> String {
    stream.set_read_timeout(Some(BOUND)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the agent kept the connection open for {BOUND:?}")
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A signed GitHub push of `refs/heads/main` at `after`, with this delivery id.
fn push_request(addr: &str, after: &str, delivery: &str) -> Vec<u8> {
    let body = push_payload("refs/heads/main", after);
    format!(
        "POST /webhook HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nX-GitHub-Event: push\r\n\
         X-GitHub-Delivery: {delivery}\r\nX-Hub-Signature-256: {}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        sign(SECRET, body.as_bytes()),
        body.len()
    )
    .into_bytes()
}

fn code(answer: &str) -> Option<u16> {
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// Headers sent a byte at a time, a body that stops half way, and a
/// keep-alive connection left idle: each is closed by the agent after its
/// timeout (2 s here), and the agent keeps serving.
#[test]
fn slow_clients_are_closed_within_the_header_and_body_timeouts() {
    let s = Scenario::new("http-slow");
    let v1 = s.commit_greeting("v1");
    let agent = s.deploy(
        &["--http-header-timeout", "2s", "--http-body-timeout", "2s"],
        &[],
        &v1,
    );
    let addr = agent.addr.clone();

    // Five clients that send their headers a byte every 200 ms (the whole
    // head would take over 30 s).
    let head = format!(
        "GET /status HTTP/1.1\r\nHost: {addr}\r\nX-Slow: {}\r\n\r\n",
        "a".repeat(150)
    );
    let slow: Vec<_> = (0..5)
        .map(|_| {
            let mut stream = TcpStream::connect(&addr).unwrap();
            let mut writer = stream.try_clone().unwrap();
            let head = head.clone().into_bytes();
            let sent = thread::spawn(move || {
                let mut sent = 0;
                for byte in &head {
                    if writer.write_all(&[*byte]).is_err() {
                        break;
                    }
                    sent += 1;
                    thread::sleep(Duration::from_millis(200));
                }
                sent
            });
            thread::spawn(move || {
                let answer = wait_closed(&mut stream);
                let _ = stream.shutdown(std::net::Shutdown::Both);
                (answer, sent.join().unwrap())
            })
        })
        .collect();
    for client in slow {
        let (answer, sent) = client.join().unwrap();
        assert!(
            sent < head.len(),
            "the head was sent whole ({sent} bytes) before the agent closed"
        );
        assert!(
            !answer.contains(" 200 "),
            "a partial head was answered: {answer}"
        );
    }

    // A body that stops after 2 of 100 bytes: 408, closed.
    let mut body = TcpStream::connect(&addr).unwrap();
    body.write_all(
        format!(
            "POST /webhook HTTP/1.1\r\nHost: {addr}\r\nX-GitHub-Event: push\r\n\
             Content-Length: 100\r\n\r\nab"
        )
        .as_bytes(),
    )
    .unwrap();
    let answer = wait_closed(&mut body);
    assert_eq!(code(&answer), Some(408), "{answer}");

    // A keep-alive connection: answered, then closed once idle.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let answer = wait_closed(&mut idle);
    assert_eq!(code(&answer), Some(200), "{answer}");

    let r = agent.get("/healthz");
    assert_eq!(r.code, 200, "{r:?}");
    assert_eq!(agent.status()["revision"], v1.as_str());
}

/// 300 connections opened and held without a request, against a cap of 64:
/// the excess is refused with 503 at once; `/healthz` and `/status` on the
/// metrics listener answer meanwhile; the held ones are closed by the header
/// timeout, and then a signed webhook for a new commit gets it applied.
#[test]
fn held_connections_are_capped_and_stop_neither_healthz_nor_a_webhook_sync() {
    let s = Scenario::new("http-cap");
    let v1 = s.commit_greeting("v1");
    let secret = s.path("webhook.secret");
    std::fs::write(&secret, SECRET).unwrap();
    let agent = Agent::start(
        &s.state,
        &s.repo.url(),
        &[
            "--interval",
            "1h",
            "--webhook-secret-file",
            secret.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
            "--http-max-connections",
            "64",
            "--http-header-timeout",
            "2s",
        ],
        &[],
    );
    let addr = agent.addr.clone();
    let observe = metrics_addr(&agent);
    wait_status_at(&agent, &observe, None, "v1 applied", |s| {
        s["revision"] == v1.as_str()
    });

    // 300 connections held open (the test process's descriptor limit is
    // checked first: each costs one).
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    assert!(
        limit.is_none_or(|l| l > 400),
        "the descriptor limit {limit:?} is too low for this test"
    );
    let held: Vec<TcpStream> = (0..300)
        .map(|i| TcpStream::connect(&addr).unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect();

    // The metrics listener has its own connections: it answers meanwhile.
    let r = get(&observe, "/healthz", None);
    assert_eq!(r.code, 200, "{r:?}");
    let r = get(&observe, "/status", None);
    assert_eq!(r.code, 200, "{r:?}");
    let check = agent.cli(&["healthcheck", "--listen", &observe]);
    check.expect(0);

    // A new commit and its webhook: accepted once the held connections are
    // closed by the header timeout (until then the main port answers 503).
    let v2 = s.commit_greeting("v2");
    let deadline = Instant::now() + BOUND;
    let mut answers = Vec::new();
    let accepted = loop {
        let answer = exchange(&addr, &push_request(&addr, &v2, "cap-delivery"));
        match answer.as_deref().and_then(code) {
            Some(202) => break answer.unwrap(),
            other => answers.push(other),
        }
        assert!(
            Instant::now() < deadline,
            "the webhook never got through: {answers:?}"
        );
        thread::sleep(Duration::from_millis(100));
    };
    assert!(accepted.contains("sync queued"), "{accepted}");
    wait_status_at(&agent, &observe, None, "v2 applied", |s| {
        s["revision"] == v2.as_str()
    });

    // Of the 300, those beyond the cap were refused with a 503 at once; the
    // others were closed by the header timeout without an answer.
    let mut refused = 0;
    for mut stream in held {
        let answer = wait_closed(&mut stream);
        if code(&answer) == Some(503) {
            assert!(answer.contains("too many connections"), "{answer}");
            refused += 1;
        } else {
            assert!(
                answer.is_empty(),
                "a request-less connection was answered: {answer}"
            );
        }
    }
    eprintln!("{refused} of the 300 held connections were refused");
    assert!(
        refused >= 1,
        "no connection beyond the cap of 64 was refused"
    );
    let r = agent.get("/healthz");
    assert_eq!(r.code, 200, "{r:?}");
    let log = agent.log();
    assert!(
        log.contains("refusing new ones"),
        "the cap is logged:\n{log}"
    );
}

/// A delivery replayed after a new commit is answered "duplicate delivery"
/// and fetches nothing: an engine event handled after it finds the old
/// revision still the newest fetched; a new delivery then applies the commit.
#[test]
fn a_replayed_webhook_delivery_triggers_nothing() {
    let s = Scenario::new("http-replay");
    let v1 = s.commit_greeting("v1");
    let secret = s.path("webhook.secret");
    std::fs::write(&secret, SECRET).unwrap();
    let agent = s.deploy(
        &[
            "--interval",
            "1h",
            "--webhook-secret-file",
            secret.to_str().unwrap(),
        ],
        &[],
        &v1,
    );
    let addr = agent.addr.clone();
    let v2 = s.commit_greeting("v2");
    let first = push_request(&addr, &v2, "replayed-delivery-1");
    let answer = exchange(&addr, &first).unwrap();
    assert_eq!(code(&answer), Some(202), "{answer}");
    agent.wait_revision(&v2, BOUND);

    // v3 is committed, and the captured delivery is sent again, byte for byte.
    let v3 = s.commit_greeting("v3");
    let answer = exchange(&addr, &first).unwrap();
    assert_eq!(code(&answer), Some(200), "{answer}");
    assert!(answer.contains("duplicate delivery"), "{answer}");

    // Triggers are handled in order: the heal of a stopped container comes
    // after anything the replay could have queued.
    docker(&["stop", "-t", "0", &s.web]);
    wait_running(&s.web, BOUND);
    let status = agent.status();
    assert_eq!(status["revision"], v2.as_str(), "{status:#}");
    assert_ne!(
        status["fetched"],
        v3.as_str(),
        "the replay fetched: {status:#}"
    );

    // A new delivery of the same push is not a replay.
    let answer = exchange(&addr, &push_request(&addr, &v3, "replayed-delivery-2")).unwrap();
    assert_eq!(code(&answer), Some(202), "{answer}");
    agent.wait_revision(&v3, BOUND);
}

/// `--status-token-file`: `/status` and `/metrics` answer 401 without the
/// token (or with a wrong one) and 200 with it; `/healthz` and `plimsoll
/// healthcheck` need none. `--metrics-listen`: `/status` and `/metrics` are
/// 404 on the main port and served on the metrics port. SIGTERM exits 0.
#[test]
fn status_and_metrics_want_the_token_and_move_to_the_metrics_listener() {
    let s = Scenario::new("http-token");
    s.commit_greeting("v1");
    let token = s.path("status.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let token_arg = token.to_str().unwrap();

    let mut agent = Agent::start(
        &s.state,
        &s.repo.url(),
        &["--status-token-file", token_arg],
        &[],
    );
    let addr = agent.addr.clone();
    for path in ["/status", "/metrics"] {
        for wrong in [None, Some("wrong"), Some("")] {
            let r = get(&addr, path, wrong);
            assert_eq!(r.code, 401, "{path} with {wrong:?}: {r:?}");
            assert!(r.body.contains("--status-token-file"), "{r:?}");
            assert!(!r.body.contains(TOKEN) && !r.head.contains(TOKEN), "{r:?}");
        }
        let r = get(&addr, path, Some(TOKEN));
        assert_eq!(r.code, 200, "{path} with the token: {r:?}");
    }
    let r = get(&addr, "/healthz", None);
    assert_eq!(r.code, 200, "{r:?}");
    agent.cli(&["healthcheck", "--listen", &addr]).expect(0);
    assert!(!agent.log().contains(TOKEN));
    assert_eq!(agent.terminate().code(), Some(0), "{}", agent.log());

    let mut agent = Agent::start(
        &s.state,
        &s.repo.url(),
        &[
            "--status-token-file",
            token_arg,
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    let addr = agent.addr.clone();
    let observe = metrics_addr(&agent);
    for path in ["/status", "/metrics"] {
        let r = get(&addr, path, Some(TOKEN));
        assert_eq!(r.code, 404, "{path} on the main port: {r:?}");
        let r = get(&observe, path, None);
        assert_eq!(
            r.code, 401,
            "{path} on the metrics port without the token: {r:?}"
        );
        let r = get(&observe, path, Some(TOKEN));
        assert_eq!(r.code, 200, "{path} on the metrics port: {r:?}");
    }
    for a in [&addr, &observe] {
        let r = get(a, "/healthz", None);
        assert_eq!(r.code, 200, "/healthz on {a}: {r:?}");
    }
    let r = http(
        &observe,
        "POST",
        "/webhook",
        &[("X-GitHub-Event", "ping")],
        b"{}",
    );
    assert_eq!(r.code, 404, "no webhooks on the metrics port: {r:?}");
    agent.cli(&["healthcheck", "--listen", &addr]).expect(0);
    assert_eq!(agent.terminate().code(), Some(0), "{}", agent.log());
}
