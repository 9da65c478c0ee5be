//! The dashboard: `GET /ui` (overview and drift review), `GET /ui/history`,
//! `GET /ui/events` (Server-Sent Events: the page's new `<main>` whenever the
//! status changes), `GET|POST /ui/login`, `POST /ui/logout`, the review
//! actions `POST /ui/revert`, `/ui/silence` and `/ui/unsilence`, and the
//! accept-into-git download `GET /ui/patch`. Served on the listener of
//! `/status`, behind the same token; every figure comes from the status
//! `/status` serves and the audit log `plimsoll history` reads.
//!
//! Access: without `--status-token-file` the pages are open (the listener
//! is loopback by default); with it, a browser logs in once with that token
//! (a session cookie: `HttpOnly`, `SameSite=Strict`), scripts send it as a
//! bearer token. Actions need the sync token (`--sync-token-file`), given
//! at login, and every form carries the session's anti-CSRF token; a POST
//! from another origin is refused whatever it carries. The patch download
//! is a plain link for whoever may see the page: it changes nothing on the
//! host (what it records counts only once git has the patch).

mod page;
mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use serde::Deserialize;

pub use page::{HISTORY, Page, View, fragment, page};
pub use session::Sessions;

use super::{Shared, Trigger};
use session::{Access, Grant};

/// The dashboard's routes (merged into the listener that serves `/status`).
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/", get(|| async { Redirect::to(Page::Overview.path()) }))
        .route("/ui", get(overview))
        .route("/ui/history", get(history))
        .route("/ui/events", get(events))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/revert", post(revert))
        .route("/ui/silence", post(silence))
        .route("/ui/unsilence", post(unsilence))
        .route("/ui/patch", get(patch))
}

#[derive(Deserialize)]
struct OverviewQuery {
    /// `stack/service` after `POST /ui/revert` sent the browser here.
    reverted: Option<String>,
}

async fn overview(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<OverviewQuery>,
) -> Response {
    let notice = q
        .reverted
        .as_deref()
        .and_then(|key| key.split_once('/'))
        .filter(|(stack, service)| known(&shared, stack, service))
        .map(|(stack, service)| {
            format!(
                "Revert of {stack}/{service} queued: it goes back to git's version through a plan and apply (recorded in History)."
            )
        });
    show(&shared, &headers, Page::Overview, notice.as_deref())
}

/// Whether `stack/service` is a service of this host's status.
fn known(shared: &Shared, stack: &str, service: &str) -> bool {
    let s = shared.status.lock().unwrap_or_else(|e| e.into_inner());
    s.stacks
        .iter()
        .any(|st| st.name == stack && st.services.iter().any(|x| x.service == service))
}

async fn history(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    show(&shared, &headers, Page::History, None)
}

fn show(shared: &Shared, headers: &HeaderMap, which: Page, notice: Option<&str>) -> Response {
    let access = match shared.sessions.access(shared, headers) {
        Ok(a) => a,
        Err(refused) => return refused.into_response(),
    };
    let html = render(shared, &access, |v| page(which, &View { notice, ..*v }));
    no_store(Html(html).into_response())
}

/// Renders with the current status and audit log.
fn render(shared: &Shared, access: &Access, f: impl FnOnce(&View<'_>) -> String) -> String {
    let status = shared
        .status
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let history = shared.history();
    let actions = access.actions();
    f(&View {
        status: &status,
        history: &history,
        actions: actions.as_ref(),
        actions_enabled: shared.sync_token.is_some(),
        notice: None,
    })
}

#[derive(Deserialize)]
struct EventsQuery {
    page: Option<String>,
}

/// `GET /ui/events?page=overview|history`: the page's `<main>` now, and
/// again after every change of the status.
async fn events(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Response {
    let access = match shared.sessions.access(&shared, &headers) {
        Ok(a) => a,
        Err(refused) => return refused.into_response(),
    };
    let which = q
        .page
        .as_deref()
        .and_then(Page::from_key)
        .unwrap_or(Page::Overview);
    let stream = updates(shared, access, which);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn updates(
    shared: Arc<Shared>,
    access: Access,
    which: Page,
) -> impl Stream<Item = Result<Event, std::convert::Infallible>> {
    let changes = shared.changes.subscribe();
    futures_util::stream::unfold(
        (shared, access, changes, true),
        move |(shared, access, mut changes, first)| async move {
            if !first && changes.changed().await.is_err() {
                return None;
            }
            changes.borrow_and_update();
            let html = render(&shared, &access, |v| fragment(which, v));
            let event = Event::default().event("page").data(html);
            Some((Ok(event), (shared, access, changes, false)))
        },
    )
}

async fn login_form(State(shared): State<Arc<Shared>>) -> Response {
    no_store(
        Html(page::login(
            shared.status_token.is_some(),
            shared.sync_token.is_some(),
            None,
        ))
        .into_response(),
    )
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    status_token: String,
    #[serde(default)]
    sync_token: String,
}

async fn login(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    if let Err(refused) = session::same_origin(&headers) {
        return refused.into_response();
    }
    let grant = Grant::check(&shared, &f.status_token, &f.sync_token);
    match grant {
        Err(why) => {
            tracing::warn!("dashboard login refused: {why}");
            let html = page::login(
                shared.status_token.is_some(),
                shared.sync_token.is_some(),
                Some(why),
            );
            no_store((StatusCode::UNAUTHORIZED, Html(html)).into_response())
        }
        Ok(grant) => {
            let cookie = shared.sessions.open(grant);
            let mut r = Redirect::to(Page::Overview.path()).into_response();
            r.headers_mut().insert(header::SET_COOKIE, cookie);
            r
        }
    }
}

async fn logout(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(refused) = session::same_origin(&headers) {
        return refused.into_response();
    }
    let cookie = shared.sessions.close(&headers);
    let mut r = Redirect::to("/ui/login").into_response();
    r.headers_mut().insert(header::SET_COOKIE, cookie);
    r
}

/// The fields every review form sends: its anti-CSRF token and the service.
#[derive(Deserialize)]
struct ServiceForm {
    csrf: String,
    stack: String,
    service: String,
}

impl ServiceForm {
    /// May this request act, on a service of this host (`known_only`)?
    fn check(
        &self,
        shared: &Shared,
        headers: &HeaderMap,
        known_only: bool,
    ) -> Result<(), Rejected> {
        shared
            .sessions
            .may_act(shared, headers, &self.csrf)
            .map_err(Rejected::Refused)?;
        if known_only && !known(shared, &self.stack, &self.service) {
            return Err(Rejected::UnknownService(format!(
                "{}/{}",
                self.stack, self.service
            )));
        }
        Ok(())
    }
}

/// Why a review action is not taken.
#[derive(Debug)]
enum Rejected {
    Refused(session::Refusal),
    /// `stack/service` is not a service of this host (any more).
    UnknownService(String),
}

impl IntoResponse for Rejected {
    fn into_response(self) -> Response {
        match self {
            Rejected::Refused(r) => r.into_response(),
            Rejected::UnknownService(key) => (
                StatusCode::NOT_FOUND,
                format!("{key}: no such service on this host; reload the page\n"),
            )
                .into_response(),
        }
    }
}

/// `POST /ui/revert`: the service goes back to git's version through the
/// normal plan and apply (a heal, recorded in the audit log).
async fn revert(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(f): Form<ServiceForm>,
) -> Response {
    if let Err(rejected) = f.check(&shared, &headers, true) {
        return rejected.into_response();
    }
    tracing::info!("{}/{}: revert asked on the dashboard", f.stack, f.service);
    let _ = shared.triggers.send(Trigger::Revert {
        stack: f.stack.clone(),
        service: f.service.clone(),
    });
    let back = form_urlencoded::Serializer::new(String::new())
        .append_pair("reverted", &format!("{}/{}", f.stack, f.service))
        .finish();
    Redirect::to(&format!("{}?{back}#review", Page::Overview.path())).into_response()
}

#[derive(Deserialize)]
struct SilenceForm {
    #[serde(flatten)]
    target: ServiceForm,
    /// How long: `30m`, `4h`, `7d` (the page suggests [`page::SILENCE_FOR`]),
    /// within [`crate::drift::SILENCE_BOUNDS`].
    #[serde(rename = "for")]
    duration: String,
    reason: String,
}

/// `POST /ui/silence`: the service's drift is neither notified nor healed
/// until the silence expires (`plimsoll drift --silence`), audited.
async fn silence(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(SilenceForm {
        target: f,
        duration,
        reason,
    }): Form<SilenceForm>,
) -> Response {
    if let Err(rejected) = f.check(&shared, &headers, true) {
        return rejected.into_response();
    }
    let span = match crate::drift::parse_silence_duration(&duration) {
        Ok(span) => span,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("silence for {e}\n")).into_response(),
    };
    let reason = reason.trim();
    if reason.is_empty() || reason.len() > 500 {
        return (
            StatusCode::BAD_REQUEST,
            "give a reason for the silence (at most 500 characters)\n",
        )
            .into_response();
    }
    let now = jiff::Timestamp::now();
    let silence = crate::drift::Silence {
        stack: f.stack.clone(),
        service: f.service.clone(),
        fields: Vec::new(),
        until: now + span,
        reason: reason.to_string(),
        by: "dashboard".into(),
        created: now,
    };
    let state = &shared.state;
    if let Err(e) = crate::drift::Silences::add(state, silence) {
        tracing::error!("silencing {}/{} failed: {e:#}", f.stack, f.service);
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "the silence was not saved: {e}; check the agent's state directory and its log\n"
            ),
        )
            .into_response();
    }
    tracing::info!(
        "{}/{}: drift silenced on the dashboard for {span:#}",
        f.stack,
        f.service
    );
    let _ = shared.triggers.send(Trigger::Publish(format!(
        "{}/{} silenced",
        f.stack, f.service
    )));
    back_to_review()
}

/// `POST /ui/unsilence`: the silence is lifted (audited) and the service
/// checked again: self-heal, when on, repairs it.
async fn unsilence(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(f): Form<ServiceForm>,
) -> Response {
    // A silence of a service gone from the host can be lifted too.
    if let Err(rejected) = f.check(&shared, &headers, false) {
        return rejected.into_response();
    }
    let state = &shared.state;
    if let Err(e) = crate::drift::Silences::remove(state, &f.stack, Some(&f.service)) {
        tracing::error!(
            "lifting the silence of {}/{} failed: {e:#}",
            f.stack,
            f.service
        );
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "the silence was not lifted: {e}; check the agent's state directory and its log\n"
            ),
        )
            .into_response();
    }
    // Its drift is reported again, as when a silence expires.
    if let Some(healer) = shared.healer() {
        healer.forget_reported(&[crate::agent::heal::key(&f.stack, &f.service)]);
    }
    let _ = shared.triggers.send(Trigger::Event {
        stack: f.stack.clone(),
        service: Some(f.service.clone()),
        kind: "unsilenced",
    });
    let _ = shared.triggers.send(Trigger::Publish(format!(
        "{}/{} unsilenced",
        f.stack, f.service
    )));
    back_to_review()
}

#[derive(Deserialize)]
struct PatchQuery {
    stack: String,
    /// Empty or absent: every drifted service of the stack.
    #[serde(default)]
    service: Option<String>,
}

/// `GET /ui/patch?stack=S[&service=V]`: the patch accepting the drift into
/// git (`plimsoll drift --patch`), as a `text/x-diff` download.
async fn patch(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<PatchQuery>,
) -> Response {
    if let Err(refused) = shared.sessions.access(&shared, &headers) {
        return refused.into_response();
    }
    let Some(healer) = shared.healer() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent is starting: try again in a moment\n",
        )
            .into_response();
    };
    let service = q.service.as_deref().filter(|s| !s.is_empty());
    match super::accept::download(&healer, &q.stack, service).await {
        Ok(d) => {
            let disposition = format!("attachment; filename=\"{}\"", d.filename);
            let mut r = no_store(d.text.into_response());
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/x-diff; charset=utf-8"),
            );
            if let Ok(v) = header::HeaderValue::from_str(&disposition) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            r
        }
        Err(e) => {
            tracing::warn!("patch download: {e}");
            no_store((e.status(), format!("{e}\n")).into_response())
        }
    }
}

fn back_to_review() -> Response {
    Redirect::to(&format!("{}#review", Page::Overview.path())).into_response()
}

fn no_store(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
    r
}
