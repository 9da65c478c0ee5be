//! The dashboard (`/ui`) in a real headless Chromium against a running
//! agent and the real engine: a stopped container shows as drifted without
//! a reload (Server-Sent Events), the revert button brings it back through
//! a plan and apply recorded in the history, a silence hides a drift and
//! expires (the page shows the drift again, live), the patch downloaded for
//! a `docker update --memory` drift applies with `git apply` and then
//! `reconcile --dry-run` is in sync, actions need the sync token and refuse
//! cross-site requests, and the secret canary appears in no page, no event
//! and no patch. Screenshots of every page go to `target/dashboard-screenshots/`.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::agent::{Agent, Scenario, running};
use crate::browser::{Browser, Tab};
use crate::support::{BUSYBOX_IMAGE, docker, wait_for};

const CANARY: &str = "canary-dashboard-7f3a9c";
const SYNC_TOKEN: &str = "dashboard-sync-token-1";

/// The web stack with a secret and self-heal off (so drift waits for review).
fn deploy(sc: &Scenario) -> Agent {
    sc.write_web(&[("GREETING", "hello"), ("DB_PASSWORD", CANARY)], "");
    sc.repo.write(
        "plimsoll.yaml",
        &format!("stacks:\n  {}:\n    self_heal: false\n", sc.stack),
    );
    let rev = sc.repo.commit("web with a secret, self-heal off");
    let token = sc.path("sync-token");
    std::fs::write(&token, SYNC_TOKEN).unwrap();
    sc.deploy(&["--sync-token-file", token.to_str().unwrap()], &[], &rev)
}

#[test]
fn dashboard_shows_drift_live_and_reverts_it_from_the_page() {
    let sc = Scenario::new("dash");
    let agent = deploy(&sc);
    let Some(browser) = Browser::start() else {
        return;
    };
    let base = format!("http://{}", agent.addr);
    let tab = browser.open(&format!("{base}/ui"));
    tab.wait_for(
        "the stack listed",
        Duration::from_secs(10),
        &format!("document.body.innerText.includes({:?})", sc.stack),
    );
    assert!(tab.text().contains("Nothing drifted"), "{}", tab.text());
    tab.wait_for(
        "the heartbeat shown",
        Duration::from_secs(30),
        "document.querySelector('#heartbeat') && document.querySelector('#heartbeat').innerText.includes('Last check')",
    );
    assert!(
        !tab.text().contains("Revert to git"),
        "no actions before logging in with the sync token"
    );
    tab.screenshot("overview");

    drop(tab);

    // Log in with the sync token: the page may now act.
    let tab = login(&browser, &base);

    // Drift made by hand shows up without a reload.
    let before = Instant::now();
    docker(&["stop", "-t", "1", &sc.web]);
    agent.wait_status("web stopped in /status", Duration::from_secs(20), |s| {
        s["stacks"][0]["services"][0]["state"] == "stopped"
    });
    tab.wait_for(
        "the stopped container in the review queue",
        Duration::from_secs(20),
        "document.querySelector('#review .queue') && document.querySelector('#review').innerText.includes('stopped')",
    );
    eprintln!(
        "dashboard: drift shown {:?} after docker stop returned",
        before.elapsed()
    );
    tab.screenshot("drift-review");
    assert!(!running(&sc.web), "self-heal is off: nothing healed it");

    // Silence it from the page: shown as silenced (in /status too), audited;
    // lifted again, it is drifted again.
    tab.type_into(
        "#review form.silence input[name=reason]",
        "investigating the stop",
    );
    tab.click("#review form.silence button");
    tab.wait_for(
        "the service silenced",
        Duration::from_secs(20),
        "document.querySelector('#review').innerText.includes('Silenced until')",
    );
    agent.wait_status("web silenced in /status", Duration::from_secs(20), |s| {
        s["stacks"][0]["services"][0]["state"] == "silenced"
    });
    tab.screenshot("drift-silenced");
    tab.click("#review form[action='/ui/unsilence'] button");
    tab.wait_for(
        "the silence lifted",
        Duration::from_secs(20),
        "!document.querySelector('#review').innerText.includes('Silenced until') && document.querySelector('#review').innerText.includes('stopped')",
    );

    // Revert from the page: a plan and apply, recorded in the history.
    tab.click("#review form[action='/ui/revert'] button");
    tab.wait_for(
        "the revert notice",
        Duration::from_secs(10),
        "document.body.innerText.includes('Revert of')",
    );
    agent.wait_status("web back in sync", Duration::from_secs(30), |s| {
        s["stacks"][0]["services"][0]["state"] == "in sync"
    });
    assert!(running(&sc.web), "the revert started the container");
    tab.wait_for(
        "the queue empty again",
        Duration::from_secs(20),
        "document.body.innerText.includes('Nothing drifted')",
    );
    drop(tab);
    let tab = browser.open(&format!("{base}/ui/history"));
    let text = tab.text();
    assert!(text.contains("applied"), "{text}");
    assert!(
        text.contains("silenced") && text.contains("investigating the stop"),
        "{text}"
    );
    assert!(text.contains("unsilenced"), "{text}");
    tab.screenshot("history");
    drop(tab);

    // A phone.
    let tab = browser.open(&format!("{base}/ui"));
    tab.viewport(390, 844, true);
    tab.screenshot("overview-phone");
    drop(tab);

    // The canary: no page, no event.
    for path in ["/ui", "/ui/history", "/ui/login"] {
        let tab = browser.open(&format!("{base}{path}"));
        assert!(!tab.html().contains(CANARY), "{path} shows the secret");
    }
    let events = first_event(&agent.addr, "/ui/events?page=overview");
    assert!(events.contains("event: page"), "{events}");
    assert!(
        !events.contains(CANARY),
        "the event stream shows the secret"
    );
    let history = agent.get("/ui/history");
    assert!(history.body.contains("<main"), "{history:?}");
    assert!(!history.body.contains(CANARY));
}

/// Logs in with the sync token (the login page's screenshot kept); the
/// overview, its live stream open.
fn login<'b>(browser: &'b Browser, base: &str) -> Tab<'b> {
    let tab = browser.open(&format!("{base}/ui/login"));
    tab.screenshot("login");
    tab.type_into("#sync_token", SYNC_TOKEN);
    tab.click("button[type=submit]");
    tab.wait_for(
        "the overview after login",
        Duration::from_secs(10),
        "location.pathname === '/ui'",
    );
    tab.wait_for(
        "the live stream open",
        Duration::from_secs(10),
        "document.getElementById('live').textContent.startsWith('Live')",
    );
    tab
}

/// How many times the agent reported `key` (`stack/service`) drifted.
fn drift_reports(agent: &Agent, key: &str) -> usize {
    agent.log().matches(&format!("{key} drifted:")).count()
}

#[test]
fn dashboard_silence_expires_and_the_drift_is_back_live() {
    let sc = Scenario::new("dash-expiry");
    let agent = deploy(&sc);
    let Some(browser) = Browser::start() else {
        return;
    };
    let base = format!("http://{}", agent.addr);
    let tab = login(&browser, &base);
    docker(&["stop", "-t", "1", &sc.web]);
    tab.wait_for(
        "the stopped container in the review queue",
        Duration::from_secs(20),
        "document.querySelector('#review form.silence') && document.querySelector('#review').innerText.includes('stopped')",
    );
    let key = format!("{}/web", sc.stack);
    wait_for(
        "the drift reported",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || (drift_reports(&agent, &key) > 0).then_some(()),
    );

    // A short silence: the form takes any duration (it suggests 1h to 7d);
    // the test replaces the 1h it shows with 8s, typed as a user would.
    let duration = "#review form.silence input[name=for]";
    tab.eval(&format!(
        "(e => {{ e.focus(); e.select(); }})(document.querySelector({duration:?}))"
    ));
    tab.type_into(duration, "8s");
    assert_eq!(
        tab.eval(&format!("document.querySelector({duration:?}).value")),
        "8s"
    );
    tab.type_into("#review form.silence input[name=reason]", "a short silence");
    tab.click("#review form.silence button");
    tab.wait_for(
        "the service silenced",
        Duration::from_secs(6),
        "document.querySelector('#review').innerText.includes('Silenced until')",
    );
    let silenced = agent.status();
    assert_eq!(
        silenced["stacks"][0]["services"][0]["state"], "silenced",
        "{silenced}"
    );
    tab.screenshot("drift-silence-short");
    let reports = drift_reports(&agent, &key);
    // A navigation would drop this mark: what follows comes over the live stream.
    tab.eval("window.plimsollNoReload = true");

    tab.wait_for(
        "the drift back after the silence expired, without a reload",
        Duration::from_secs(30),
        "window.plimsollNoReload === true && !document.querySelector('#review').innerText.includes('Silenced until') && document.querySelector('#review').innerText.includes('stopped')",
    );
    tab.screenshot("drift-silence-expired");
    agent.wait_status(
        "web stopped again in /status",
        Duration::from_secs(10),
        |s| s["stacks"][0]["services"][0]["state"] == "stopped",
    );
    assert!(
        agent.log().contains("the silence of its drift expired"),
        "{}",
        agent.log()
    );
    // Alerted again (self-heal is off: not healed).
    wait_for(
        "the drift reported again",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || (drift_reports(&agent, &key) > reports).then_some(()),
    );
    assert!(!running(&sc.web), "self-heal is off: nothing healed it");
    drop(tab);
    let tab = browser.open(&format!("{base}/ui/history"));
    let text = tab.text();
    assert!(
        text.contains("silence expired") && text.contains("a short silence"),
        "{text}"
    );
    assert!(!tab.html().contains(CANARY));
}

/// A stack with a memory limit and a secret (from `.env`), self-heal off.
fn memory_stack(sc: &Scenario) -> String {
    sc.repo.write(
        &format!("stacks/{}/compose.yaml", sc.stack),
        &format!(
            "name: {}\nservices:\n  web:\n    image: {BUSYBOX_IMAGE}\n    init: true\n    command: [\"sleep\", \"3600\"]\n    # memory as agreed with the team\n    mem_limit: 128m # keep this comment\n    environment:\n      GREETING: hello\n      DB_PASSWORD: ${{DB_PASSWORD}}\n",
            sc.stack
        ),
    );
    sc.repo.write(
        &format!("stacks/{}/.env", sc.stack),
        &format!("DB_PASSWORD={CANARY}\n"),
    );
    sc.repo.write(
        "plimsoll.yaml",
        &format!("stacks:\n  {}:\n    self_heal: false\n", sc.stack),
    );
    sc.repo
        .commit("web with a memory limit and a secret, self-heal off")
}

fn container_id(name: &str) -> String {
    docker(&["inspect", "-f", "{{.Id}}", name])
        .trim()
        .to_string()
}

#[test]
fn dashboard_patch_download_accepts_a_memory_drift_into_git() {
    let sc = Scenario::new("dash-patch");
    let rev = memory_stack(&sc);
    let token = sc.path("sync-token");
    std::fs::write(&token, SYNC_TOKEN).unwrap();
    let agent = sc.deploy(&["--sync-token-file", token.to_str().unwrap()], &[], &rev);
    let Some(browser) = Browser::start() else {
        return;
    };
    let base = format!("http://{}", agent.addr);
    let tab = browser.open(&format!("{base}/ui"));
    let dry_run = || agent.cli(&["reconcile", "--dry-run", sc.repo.dir().to_str().unwrap()]);
    // Where the repository is checked out does not matter: the test's
    // clone plans against what the agent applied from its own.
    dry_run().expect(0);
    docker(&["update", "--memory", "64m", &sc.web]);
    let before = container_id(&sc.web);
    agent.wait_status("web drifted in /status", Duration::from_secs(20), |s| {
        s["stacks"][0]["services"][0]["state"] == "drifted"
    });
    // No login: whoever may see the page may download the patch.
    tab.wait_for(
        "the memory drift in the review queue, with its patch",
        Duration::from_secs(20),
        "document.querySelector('#review a.patch') && document.querySelector('#review').innerText.includes('memory limit 64 MiB on the host')",
    );
    tab.screenshot("drift-patch");

    // What the link serves, fetched by the page.
    let got = tab.eval(
        "fetch(document.querySelector('#review a.patch').href).then(async r => ({status: r.status, type: r.headers.get('content-type'), disposition: r.headers.get('content-disposition'), body: await r.text()}))",
    );
    let name = format!("plimsoll-drift-{}-web.patch", sc.stack);
    assert_eq!(got["status"], 200, "{got}");
    assert!(
        got["type"].as_str().unwrap().starts_with("text/x-diff"),
        "{got}"
    );
    assert_eq!(
        got["disposition"],
        format!("attachment; filename=\"{name}\""),
        "{got}"
    );
    let served = got["body"].as_str().unwrap().to_string();
    assert!(
        !served.contains(CANARY),
        "the patch shows the secret:\n{served}"
    );
    assert!(
        served.contains(
            "-    mem_limit: 128m # keep this comment\n+    mem_limit: 64m # keep this comment\n"
        ),
        "{served}"
    );

    // A click on the link: Chromium downloads it.
    let downloads = sc.path("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    browser.download_into(&downloads);
    tab.click("#review a.patch");
    let file = downloads.join(&name);
    wait_for(
        "the patch downloaded",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let partial = std::fs::read_dir(&downloads).unwrap().any(|e| {
                e.unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "crdownload")
            });
            (file.exists() && !partial).then_some(())
        },
    );
    let patch = std::fs::read_to_string(&file).unwrap();
    assert_eq!(patch, served, "the download is the patch the link serves");

    // Accepted into git: git apply, commit, and the repository is in sync.
    dry_run().expect(2);
    sc.repo.apply(&file);
    let accepted = sc.repo.commit("accept the memory limit of the host");
    let check = dry_run();
    check.expect(0);
    assert!(check.stdout.contains("no changes"), "{check}");
    assert!(!check.all().contains(CANARY), "{check}");

    // The agent takes that revision without replacing the container.
    let r = agent.post(
        "/sync",
        &[("Authorization", &format!("Bearer {SYNC_TOKEN}"))],
        b"",
    );
    assert_eq!(r.code, 202, "{r:?}");
    agent.wait_revision(&accepted, Duration::from_secs(30));
    agent.wait_status("web in sync", Duration::from_secs(20), |s| {
        s["stacks"][0]["services"][0]["state"] == "in sync"
    });
    assert_eq!(container_id(&sc.web), before, "the container was replaced");
    tab.wait_for(
        "the queue empty",
        Duration::from_secs(20),
        "document.body.innerText.includes('Nothing drifted')",
    );
    tab.screenshot("drift-patch-accepted");
}

#[test]
fn dashboard_actions_need_the_sync_token_and_the_same_origin() {
    let sc = Scenario::new("dash-csrf");
    let agent = deploy(&sc);
    let form = format!("csrf=x&stack={}&service=web", sc.stack);
    let plain = [("Content-Type", "application/x-www-form-urlencoded")];
    // No session.
    let r = agent.post("/ui/revert", &plain, form.as_bytes());
    assert_eq!(r.code, 403, "{r:?}");
    assert!(r.body.contains("log in with the sync token"), "{r:?}");
    // A wrong token at login.
    let r = agent.post("/ui/login", &plain, b"sync_token=wrong");
    assert_eq!(r.code, 401, "{r:?}");
    assert!(r.body.contains("wrong sync token"), "{r:?}");
    // A right one: a session; its form needs the page's anti-CSRF token.
    let r = agent.post(
        "/ui/login",
        &plain,
        format!("sync_token={SYNC_TOKEN}").as_bytes(),
    );
    assert_eq!(r.code, 303, "{r:?}");
    let cookie = r
        .head
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    assert!(
        r.head
            .to_ascii_lowercase()
            .contains("httponly; samesite=strict"),
        "{r:?}"
    );
    let with_cookie = [plain[0], ("Cookie", cookie.as_str())];
    let r = agent.post("/ui/revert", &with_cookie, form.as_bytes());
    assert_eq!(r.code, 403, "a forged form: {r:?}");
    assert!(r.body.contains("stale or came from elsewhere"), "{r:?}");
    let page = crate::agent::http(
        &agent.addr,
        "GET",
        "/ui",
        &[("Cookie", cookie.as_str())],
        b"",
    );
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the page's anti-CSRF token")
        .to_string();
    let good = format!("csrf={csrf}&stack={}&service=web", sc.stack);
    // From another site, even with the session and the token.
    let evil = [
        plain[0],
        ("Cookie", cookie.as_str()),
        ("Origin", "http://evil.example"),
    ];
    let r = agent.post("/ui/revert", &evil, good.as_bytes());
    assert_eq!(r.code, 403, "{r:?}");
    assert!(r.body.contains("another site"), "{r:?}");
    // Same origin, session, token: accepted.
    let r = agent.post("/ui/revert", &with_cookie, good.as_bytes());
    assert_eq!(r.code, 303, "{r:?}");
}

#[test]
fn dashboard_wants_the_status_token_when_one_is_set() {
    let sc = Scenario::new("dash-token");
    sc.write_web(&[("GREETING", "hi")], "");
    let rev = sc.repo.commit("web");
    let token = sc.path("status-token");
    std::fs::write(&token, "status-token-1").unwrap();
    let agent = Agent::start(
        &sc.state,
        &sc.repo.url(),
        &["--status-token-file", token.to_str().unwrap()],
        &[],
    );
    let bearer = [("Authorization", "Bearer status-token-1")];
    let deadline = Instant::now() + Duration::from_secs(30);
    let applied = || {
        let r = crate::agent::http(&agent.addr, "GET", "/status", &bearer, b"");
        serde_json::from_str::<serde_json::Value>(&r.body).is_ok_and(|s| s["revision"] == rev)
    };
    while !applied() {
        assert!(Instant::now() < deadline, "{}", agent.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = agent.get("/ui");
    assert_eq!(r.code, 303, "{r:?}");
    assert!(
        r.head.to_ascii_lowercase().contains("location: /ui/login"),
        "{r:?}"
    );
    assert_eq!(agent.get("/ui/events").code, 303);
    let r = crate::agent::http(&agent.addr, "GET", "/ui", &bearer, b"");
    assert_eq!(r.code, 200, "{r:?}");
    assert!(r.body.contains(&sc.stack), "{r:?}");
    // The patch download is behind the same token.
    let patch = format!("/ui/patch?stack={}&service=web", sc.stack);
    assert_eq!(agent.get(&patch).code, 303);
    let r = crate::agent::http(&agent.addr, "GET", &patch, &bearer, b"");
    assert_eq!(r.code, 200, "{r:?}");
    let head = r.head.to_ascii_lowercase();
    assert!(head.contains("content-type: text/x-diff"), "{r:?}");
    assert!(
        head.contains(&format!(
            "content-disposition: attachment; filename=\"plimsoll-drift-{}-web.patch\"",
            sc.stack
        )),
        "{r:?}"
    );
    assert!(r.body.contains("# nothing to write"), "in sync: {r:?}");
    let r = crate::agent::http(
        &agent.addr,
        "GET",
        &format!("/ui/patch?stack={}&service=nope", sc.stack),
        &bearer,
        b"",
    );
    assert_eq!(r.code, 404, "{r:?}");
    let plain = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = agent.post("/ui/login", &plain, b"status_token=nope");
    assert_eq!(r.code, 401, "{r:?}");
    let r = agent.post("/ui/login", &plain, b"status_token=status-token-1");
    assert_eq!(r.code, 303, "{r:?}");
}

/// The first event of a Server-Sent Events stream (read until its blank line).
fn first_event(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    while !String::from_utf8_lossy(&got).contains("\n\n")
        || !String::from_utf8_lossy(&got).contains("event: page")
    {
        let n = s.read(&mut buf).expect("read the event stream");
        assert!(n > 0, "the stream ended: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}
