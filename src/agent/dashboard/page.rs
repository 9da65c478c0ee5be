//! The dashboard's pages as HTML, from plain data: the agent's status (the
//! same value `GET /status` serves) and the audit log (what `plimsoll
//! history` prints). Pure: no I/O, no clock; every value is escaped by
//! `maud`, and every text that can hold a secret was masked before it got
//! here (the status and the audit log are stored masked).
//!
//! A page works without JavaScript (server-rendered, forms post); with it,
//! the `<main>` of a page is replaced by the fragment the server pushes over
//! Server-Sent Events whenever the status changes.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::agent::{AgentStatus, ServiceStatus, StackStatus};
use crate::reconcile::SyncState;

/// Which page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The host, the drift review queue, the stacks and the latest applies.
    Overview,
    /// The audit log as a timeline.
    History,
}

impl Page {
    pub fn path(self) -> &'static str {
        match self {
            Page::Overview => "/ui",
            Page::History => "/ui/history",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Page::Overview => "Overview",
            Page::History => "History",
        }
    }

    /// The `page=` of the events stream.
    pub fn key(self) -> &'static str {
        match self {
            Page::Overview => "overview",
            Page::History => "history",
        }
    }

    pub fn from_key(key: &str) -> Option<Page> {
        [Page::Overview, Page::History]
            .into_iter()
            .find(|p| p.key() == key)
    }
}

/// What the review actions need: present when the viewer may act.
#[derive(Debug, Clone)]
pub struct Actions {
    /// The session's token against cross-site requests, sent back by every form.
    pub csrf: String,
}

/// Everything a page shows.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub status: &'a AgentStatus,
    /// Audit records, oldest first (the page shows the newest first).
    pub history: &'a [serde_json::Value],
    /// `None`: the viewer cannot change anything (no sync token given, or
    /// the agent has none); the page says how to.
    pub actions: Option<&'a Actions>,
    /// The agent has a sync token: actions are possible after logging in.
    pub actions_enabled: bool,
    /// A message after an action (`revert of shop/api queued`).
    pub notice: Option<&'a str>,
}

/// How many applies the overview lists.
const RECENT: usize = 5;
/// How many the history page lists.
pub const HISTORY: usize = 200;

const STYLE: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("live.js");

/// A whole page.
pub fn page(page: Page, v: &View<'_>) -> String {
    let host = if v.status.host.is_empty() {
        "plimsoll"
    } else {
        v.status.host.as_str()
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                (head_tags(&format!("{} · {host} · plimsoll", page.title())))
            }
            body data-page=(page.key()) {
                a.skip href="#main" { "Skip to content" }
                header role="banner" {
                    p.brand { "plimsoll" }
                    p.host { "Host " strong { (host) } }
                    nav aria-label="Pages" {
                        ul {
                            @for p in [Page::Overview, Page::History] {
                                li {
                                    @if p == page {
                                        a href=(p.path()) aria-current="page" { (p.title()) }
                                    } @else {
                                        a href=(p.path()) { (p.title()) }
                                    }
                                }
                            }
                        }
                    }
                    p.live role="status" aria-live="polite" id="live" { "" }
                    @if let Some(a) = v.actions {
                        form method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(a.csrf);
                            button type="submit" { "Log out" }
                        }
                    } @else if v.actions_enabled {
                        a href="/ui/login" { "Log in" }
                    }
                }
                @if let Some(n) = v.notice {
                    p.notice role="status" { (n) }
                }
                main id="main" tabindex="-1" {
                    (PreEscaped(fragment(page, v)))
                }
                footer role="contentinfo" {
                    p {
                        "Source " code { (v.status.source) }
                        " · the same data as " a href="/status" { code { "/status" } }
                        " and " code { "plimsoll history" }
                    }
                }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    }
    .into_string()
}

/// The inside of `<main>`: what the events stream pushes.
pub fn fragment(page: Page, v: &View<'_>) -> String {
    match page {
        Page::Overview => overview(v),
        Page::History => history(v, HISTORY),
    }
    .into_string()
}

fn overview(v: &View<'_>) -> Markup {
    html! {
        h1 { "Overview" }
        (host(v.status))
        (review(v))
        (heartbeat(v.status))
        (stacks(v.status))
        section id="recent" aria-labelledby="recent-h" {
            h2 id="recent-h" { "Latest applies" }
            (timeline(v.history, RECENT))
            p { a href=(Page::History.path()) { "The whole history" } }
        }
    }
}

fn history(v: &View<'_>, n: usize) -> Markup {
    html! {
        h1 { "History" }
        p { "Every apply of this host, newest first: the plan, the outcome, how long each action took, and rollbacks (the audit log)." }
        (timeline(v.history, n))
    }
}

fn host(s: &AgentStatus) -> Markup {
    html! {
        section id="host" aria-labelledby="host-h" {
            h2 id="host-h" { "Host" }
            dl.facts {
                dt { "Revision" }
                dd { (opt_code(s.revision.as_deref().map(short))) }
                dt { "Newest at the source" }
                dd { (opt_code(s.fetched.as_deref().map(short))) }
                dt { "Last sync" }
                dd {
                    @if let Some(l) = &s.last_sync {
                        span class=(format!("badge {}", l.result)) { (l.result) }
                        " " (l.time) " · " (l.trigger) " · " (format!("{:.1} s", l.seconds))
                        @if let Some(e) = &l.error { br; span.error { (e) } }
                    } @else { "none yet" }
                }
                dt { "Last success" }
                dd { (s.last_success.as_deref().unwrap_or("none yet")) }
                @if s.paused {
                    dt { "Paused" }
                    dd { span.badge.paused { "host paused" } " nothing changes until " code { "plimsoll resume" } }
                }
                @if let Some(r) = &s.rejected {
                    dt { "Rejected revision" }
                    dd.error { code { (short(&r.revision)) } " at " (r.time) ": " (r.reason) }
                }
                @if let Some(e) = &s.source_error {
                    dt { "Source error" }
                    dd.error { (e) " (the host keeps running its last good revision)" }
                }
                @if !s.unknown.is_empty() {
                    dt { "Unknown containers" }
                    dd { @for (i, u) in s.unknown.iter().enumerate() { @if i > 0 { ", " } code { (u) } } }
                }
                @if !s.gave_up.is_empty() {
                    dt { "Self-heal gave up" }
                    dd.error { @for (i, g) in s.gave_up.iter().enumerate() { @if i > 0 { ", " } code { (g) } } }
                }
            }
        }
    }
}

/// The drift review queue: every service that is not in sync.
fn review(v: &View<'_>) -> Markup {
    let queue: Vec<(&StackStatus, &ServiceStatus)> = v
        .status
        .stacks
        .iter()
        .flat_map(|st| st.services.iter().map(move |s| (st, s)))
        .filter(|(_, s)| !s.state.in_sync())
        .collect();
    html! {
        section id="review" aria-labelledby="review-h" {
            h2 id="review-h" { "Drift review" }
            @if queue.is_empty() {
                p.ok { "Nothing drifted: every service runs what git says." }
            } @else {
                ul.queue {
                    @for (st, s) in &queue {
                        li.card id=(format!("drift-{}-{}", st.name, s.service)) {
                            h3 {
                                (st.name) "/" (s.service) " "
                                (state_badge(s))
                            }
                            p { "Container " code { (s.container) } }
                            @if !s.drift.is_empty() {
                                ul.reasons { @for r in &s.drift { li { (r) } } }
                            }
                            (heal_line(s))
                            p.accept { (patch_link(&st.name, Some(&s.service))) }
                            @if let Some(x) = &s.silenced {
                                p.silenced {
                                    "Silenced until " time { (x.until) } " by " (x.by) ": " (x.reason)
                                    @if !x.fields.is_empty() { " (only " (x.fields.join(", ")) ")" }
                                }
                            }
                            (actions(v, &st.name, s))
                        }
                    }
                }
            }
            @if v.actions.is_some() && !queue.is_empty() {
                datalist id="silence-durations" {
                    @for (value, words) in SILENCE_FOR { option value=(value) { (words) } }
                }
            }
            @if v.actions.is_none() {
                p.hint {
                    @if v.actions_enabled {
                        a href="/ui/login" { "Log in with the sync token" } " to revert from this page."
                    } @else {
                        "Actions are off: start the agent with " code { "--sync-token-file" } "."
                    }
                }
            }
        }
    }
}

/// The durations the page suggests for a silence (the form takes any
/// within [`crate::drift::SILENCE_BOUNDS`]): the value, in words.
pub const SILENCE_FOR: [(&str, &str); 4] = [
    ("1h", "1 hour"),
    ("4h", "4 hours"),
    ("24h", "1 day"),
    ("7d", "7 days"),
];

/// The link to the patch accepting the drift of `stack` (its `service`, or
/// all of it) into git: a download, without JavaScript.
fn patch_link(stack: &str, service: Option<&str>) -> Markup {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("stack", stack);
    if let Some(s) = service {
        query.append_pair("service", s);
    }
    let href = format!("/ui/patch?{}", query.finish());
    let (text, label) = match service {
        Some(s) => (
            "Download patch",
            format!("Download the patch that accepts the drift of {stack}/{s} into git"),
        ),
        None => (
            "Download the stack's patch",
            format!("Download the patch that accepts the drift of stack {stack} into git"),
        ),
    };
    html! {
        a.patch href=(href) download aria-label=(label) { (text) }
    }
}

/// The review actions of one drifted service: revert, and silence it (or
/// lift its silence).
fn actions(v: &View<'_>, stack: &str, s: &ServiceStatus) -> Markup {
    let Some(a) = v.actions else {
        return html! {};
    };
    let service = s.service.as_str();
    let id = format!("{stack}-{service}");
    let hidden = html! {
        input type="hidden" name="csrf" value=(a.csrf);
        input type="hidden" name="stack" value=(stack);
        input type="hidden" name="service" value=(service);
    };
    html! {
        div.actions {
            form method="post" action="/ui/revert" {
                (hidden)
                button type="submit" aria-label=(format!("Revert {stack}/{service} to git")) { "Revert to git" }
            }
            @if s.silenced.is_some() {
                form method="post" action="/ui/unsilence" {
                    (hidden)
                    button type="submit" aria-label=(format!("Lift the silence of {stack}/{service}")) { "Lift the silence" }
                }
            } @else {
                form.silence method="post" action="/ui/silence" {
                    (hidden)
                    label for=(format!("for-{id}")) { "Silence for" }
                    input id=(format!("for-{id}")) name="for" type="text" required
                        value=(SILENCE_FOR[0].0) list="silence-durations" size="6"
                        autocomplete="off" aria-describedby=(format!("for-hint-{id}"));
                    span.hint id=(format!("for-hint-{id}")) { "e.g. 30m, 4h, 7d" }
                    label for=(format!("reason-{id}")) { "Reason" }
                    input id=(format!("reason-{id}")) name="reason" type="text" required maxlength="500";
                    button type="submit" { "Silence" }
                }
            }
        }
    }
}

fn heal_line(s: &ServiceStatus) -> Markup {
    html! {
        p.heal {
            @if s.self_heal { "Self-heal on" } @else { "Self-heal off" }
            @if let Some(h) = &s.heal {
                " · " (h.attempts) " heal" @if h.attempts != 1 { "s" }
                ", " (h.failures) " failed in a row"
                @if h.gave_up { " · " strong.error { "gave up" } }
                @if let Some(e) = &h.last_error { " · last error: " (e) }
            }
        }
    }
}

fn stacks(s: &AgentStatus) -> Markup {
    html! {
        section id="stacks" aria-labelledby="stacks-h" {
            h2 id="stacks-h" { "Stacks" }
            @if s.stacks.is_empty() {
                p { "No stack runs on this host yet." }
            }
            @for st in &s.stacks {
                div.table {
                    table {
                        caption {
                            (st.name)
                            @if st.paused { " " span.badge.paused { "paused" } }
                            @if !st.self_heal { " " span.badge { "self-heal off" } }
                            @if st.services.iter().any(|x| !x.state.in_sync()) {
                                " · " (patch_link(&st.name, None))
                            }
                        }
                        thead { tr {
                            th scope="col" { "Service" }
                            th scope="col" { "State" }
                            th scope="col" { "Health" }
                            th scope="col" { "Container" }
                            th scope="col" { "Image" }
                        } }
                        tbody {
                            @for svc in &st.services {
                                tr {
                                    th scope="row" { (svc.service) }
                                    td {
                                        (state_badge(svc))
                                        @if !svc.state.in_sync() {
                                            " " (patch_link(&st.name, Some(&svc.service)))
                                        }
                                    }
                                    td { (health(svc)) }
                                    td { code { (svc.container) } }
                                    td { code { (svc.image.as_deref().unwrap_or("-")) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn state_badge(s: &ServiceStatus) -> Markup {
    let class = match s.state.sync {
        SyncState::InSync => "ok",
        SyncState::Drifted | SyncState::Stopped | SyncState::Missing => "drifted",
        SyncState::Silenced => "paused",
        SyncState::Unhealthy | SyncState::Conflict => "failed",
    };
    html! { span class=(format!("badge {class}")) { (s.state) } }
}

fn health(s: &ServiceStatus) -> &'static str {
    match (s.health, s.running) {
        (Some(h), _) => h.as_str(),
        (None, true) => "running",
        (None, false) => "not running",
    }
}

/// The newest `n` audit records, newest first.
fn timeline(records: &[serde_json::Value], n: usize) -> Markup {
    html! {
        @if records.is_empty() {
            p { "Nothing applied yet." }
        } @else {
            ol.timeline reversed {
                @for r in records.iter().rev().take(n) {
                    (record(r))
                }
            }
        }
    }
}

fn record(r: &serde_json::Value) -> Markup {
    let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
    let outcome = s("outcome");
    let actions = r["actions"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let rolled_back = actions.iter().filter(|a| a["rolled_back"] == true).count();
    html! {
        li.card {
            p {
                span class=(format!("badge {}", match outcome.as_str() {
                    "applied" => "ok",
                    "silenced" | "unsilenced" | "silence expired" => "paused",
                    _ => "failed",
                })) { (outcome) }
                @if r["rollback"] == true { " " span.badge { "rollback" } }
                " " time { (s("time")) }
                " · revision " code { (short(&s("revision"))) }
                " · " (format!("{:.1} s", r["seconds"].as_f64().unwrap_or(0.0)))
                " · " (s("user"))
            }
            @if let Some(e) = r["error"].as_str() { p.error { (e) } }
            @if let Some(reason) = r["silence"]["reason"].as_str() {
                p { "Until " (r["silence"]["until"].as_str().unwrap_or("")) ": " (reason) }
            }
            @if !actions.is_empty() {
                details {
                    summary {
                        (actions.len()) " action" @if actions.len() != 1 { "s" }
                        @if rolled_back > 0 { ", " (rolled_back) " rolled back" }
                    }
                    ul.actions {
                        @for a in actions {
                            li {
                                code { (a["action"].as_str().unwrap_or("")) }
                                " " (a["stack"].as_str().unwrap_or("")) "/" (a["service"].as_str().unwrap_or("-"))
                                " · " (format!("{:.1} s", a["seconds"].as_f64().unwrap_or(0.0)))
                                @if a["ok"] == false { " · " span.error { "failed: " (a["error"].as_str().unwrap_or("")) } }
                                @if a["rolled_back"] == true { " · rolled back" }
                                (reasons(r, a))
                            }
                        }
                    }
                }
            }
            (jobs(r))
        }
    }
}

/// The jobs an apply ran (record `r`): each with its exit code, its error
/// and its last log lines (masked when recorded).
fn jobs(r: &serde_json::Value) -> Markup {
    let jobs = r["jobs"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let failed = jobs.iter().filter(|j| !j["error"].is_null()).count();
    html! {
        @if !jobs.is_empty() {
            details {
                summary {
                    (jobs.len()) " job" @if jobs.len() != 1 { "s" }
                    @if failed > 0 { ", " span.error { (failed) " failed" } }
                }
                ul.actions {
                    @for j in jobs {
                        li {
                            code { (j["when"].as_str().unwrap_or("")) }
                            " " (j["stack"].as_str().unwrap_or("")) "/" (j["job"].as_str().unwrap_or(""))
                            @if let Some(code) = j["exit_code"].as_i64() { " · exit " (code) }
                            " · " (format!("{:.1} s", j["seconds"].as_f64().unwrap_or(0.0)))
                            @if let Some(e) = j["error"].as_str() { " · " span.error { "failed: " (e) } }
                            @if let Some(lines) = j["logs"].as_array().filter(|l| !l.is_empty()) {
                                pre.logs { @for l in lines { (l.as_str().unwrap_or("")) "\n" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The plan's reasons for action `a` of record `r`.
fn reasons(r: &serde_json::Value, a: &serde_json::Value) -> Markup {
    let found = r["plan"]["actions"].as_array().and_then(|list| {
        list.iter()
            .find(|p| p["target"] == a["target"] && p["action"] == a["action"])
    });
    let reasons: Vec<&str> = found
        .and_then(|p| p["reasons"].as_array())
        .map(|l| l.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    html! {
        @if !reasons.is_empty() {
            ul.reasons { @for x in reasons { li { (x) } } }
        }
    }
}

fn opt_code(v: Option<&str>) -> Markup {
    html! { @if let Some(v) = v { code { (v) } } @else { "none" } }
}

/// A commit SHA shortened to 12; other revisions (`local:<hash>`) as they are.
fn short(rev: &str) -> &str {
    if rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit()) {
        &rev[..12]
    } else {
        rev
    }
}

/// What every page's `<head>` holds: its title, and the style (inline: no
/// asset from the network).
fn head_tags(title: &str) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        meta name="color-scheme" content="light dark";
        title { (title) }
        style { (PreEscaped(STYLE)) }
    }
}

/// The login page (`GET /ui/login`).
pub fn login(status_token: bool, sync_token: bool, error: Option<&str>) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                (head_tags("Log in · plimsoll"))
            }
            body {
                main id="main" {
                    h1 { "Log in" }
                    @if let Some(e) = error { p.error role="alert" { (e) } }
                    form method="post" action="/ui/login" {
                        @if status_token {
                            p {
                                label for="status_token" { "Status token (" code { "--status-token-file" } ")" }
                                input id="status_token" name="status_token" type="password" autocomplete="off" required;
                            }
                        }
                        @if sync_token {
                            p {
                                label for="sync_token" { "Sync token (" code { "--sync-token-file" } "), to revert from the page" }
                                input id="sync_token" name="sync_token" type="password" autocomplete="off" required[!status_token];
                            }
                        }
                        button type="submit" { "Log in" }
                    }
                }
            }
        }
    }
    .into_string()
}

/// The heartbeat of `/status` (facts and open alerts), as the agent
/// published it (masked); nothing before the first beat.
fn heartbeat(s: &AgentStatus) -> Markup {
    let Some(h) = &s.heartbeat else {
        return html! {};
    };
    let list = |v: &serde_json::Value| v.as_array().cloned().unwrap_or_default();
    let open = list(&h["open"]);
    let disks = list(&h["facts"]["disks"]);
    let restarting: Vec<serde_json::Value> = list(&h["facts"]["containers"])
        .into_iter()
        .filter(|c| c["restart_count"].as_u64().unwrap_or(0) > 0 || c["running"] == false)
        .collect();
    let problems = list(&h["facts"]["problems"]);
    html! {
        section id="heartbeat" aria-labelledby="heartbeat-h" {
            h2 id="heartbeat-h" { "Heartbeat" }
            p {
                "Last check " (h["time"].as_str().unwrap_or("-"))
                @if let Some(e) = h["error"].as_str() { " · " span.error { (e) } }
            }
            @if open.is_empty() {
                p.ok { "No open alert." }
            } @else {
                ul.queue {
                    @for a in &open {
                        li.card {
                            span class=(format!("badge {}", if a["severity"] == "critical" { "failed" } else { "drifted" })) {
                                (a["severity"].as_str().unwrap_or(""))
                            }
                            " " (a["message"].as_str().unwrap_or(""))
                        }
                    }
                }
            }
            @if !disks.is_empty() {
                div.table {
                    table {
                        caption { "Disks" }
                        thead { tr { th scope="col" { "File system" } th scope="col" { "Holds" } th scope="col" { "Used" } th scope="col" { "Free" } } }
                        tbody {
                            @for d in &disks {
                                @let total = d["total_bytes"].as_u64().unwrap_or(0);
                                @let used = d["used_bytes"].as_u64().unwrap_or(0);
                                tr {
                                    th scope="row" { code { (d["path"].as_str().unwrap_or("")) } }
                                    td { (list(&d["holds"]).iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", ")) }
                                    td { (format!("{:.0} %", if total == 0 { 0.0 } else { used as f64 * 100.0 / total as f64 })) }
                                    td { (bytes(d["available_bytes"].as_u64().unwrap_or(0))) }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(r) = h["facts"]["reclaimable"].as_object() {
                p {
                    "Reclaimable: "
                    (bytes(["images", "build_cache", "containers"].iter().filter_map(|k| r.get(*k)?.as_u64()).sum()))
                    " (unused images, build cache, stopped containers)"
                }
            }
            @if !restarting.is_empty() {
                p {
                    "Restarted or stopped: "
                    @for (i, c) in restarting.iter().enumerate() {
                        @if i > 0 { ", " }
                        code { (c["name"].as_str().unwrap_or("")) }
                        " (" (c["status"].as_str().unwrap_or("")) ", " (c["restart_count"].as_u64().unwrap_or(0)) " restarts)"
                    }
                }
            }
            p {
                "Container logs: " (h["logs"]["streams"].as_u64().unwrap_or(0)) " followed, "
                (bytes(h["logs"]["bytes"].as_u64().unwrap_or(0))) " scanned for secrets"
                @if h["logs"]["dropped"].as_u64().unwrap_or(0) > 0 {
                    ", " span.error { (h["logs"]["dropped"].as_u64().unwrap_or(0)) " streams dropped (the scanner fell behind)" }
                }
            }
            @for p in &problems { p.hint { (p.as_str().unwrap_or("")) } }
        }
    }
}

/// Bytes in binary units, one decimal.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
