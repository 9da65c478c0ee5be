//! The agent's HTTP endpoint (axum): `GET /healthz`, `GET /metrics`,
//! `GET /status`, the dashboard (`/ui`, [`super::dashboard`]), `POST /webhook`,
//! `POST /sync`. Handlers only read the
//! shared status and send triggers; they never change the host themselves.
//!
//! With `--metrics-listen`, `/status` and `/metrics` are served only on that
//! second address (`/healthz` on both), so the webhook port can be published
//! alone. With `--status-token-file`, `/status` and `/metrics` want the bearer
//! token; `/healthz` stays open for the container's health check. A webhook
//! delivery whose id was seen before is answered and triggers nothing.
//! Connections are accepted by [`super::listener`] (timeouts, connection cap).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;

use super::webhook::{self, Hook, WebhookError};
use super::{AgentError, DEFAULT_LISTEN, Options, Shared, Trigger, delivery, listener};

/// Webhook bodies larger than this are refused with 413.
pub const MAX_BODY: usize = 1 << 20;

/// Which endpoints a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoints {
    /// Everything: the one listener of an agent without `--metrics-listen`.
    All,
    /// `/healthz`, `POST /webhook`, `POST /sync` (`--listen` beside `--metrics-listen`).
    Triggers,
    /// `/healthz`, `/status`, `/metrics` (`--metrics-listen`).
    Observe,
}

pub fn router(shared: Arc<Shared>, endpoints: Endpoints) -> Router {
    let mut app = Router::new().route("/healthz", get(healthz));
    if endpoints != Endpoints::Triggers {
        app = app
            .route("/metrics", get(metrics))
            .route("/status", get(status))
            .merge(super::dashboard::routes());
    }
    if endpoints != Endpoints::Observe {
        app = app
            .route("/webhook", post(hook))
            .route("/sync", post(sync))
            .route("/heartbeat", post(heartbeat));
    }
    app.layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

/// Binds `--listen` (and `--metrics-listen`), logs where, and serves each
/// until `shutdown` turns true.
pub async fn listen(
    opts: &Options,
    shared: Arc<Shared>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), AgentError> {
    let main = bind(
        opts.listen.as_deref().unwrap_or(DEFAULT_LISTEN),
        "--listen (or PLIMSOLL_LISTEN)",
    )
    .await?;
    let observe = match &opts.metrics_listen {
        Some(addr) => Some(bind(addr, "--metrics-listen (or PLIMSOLL_METRICS_LISTEN)").await?),
        None => None,
    };
    let endpoints = if observe.is_some() {
        Endpoints::Triggers
    } else {
        Endpoints::All
    };
    tracing::info!(
        "listening on http://{} ({})",
        address(&main),
        match endpoints {
            Endpoints::Triggers => "/healthz, POST /webhook, POST /sync, POST /heartbeat",
            _ => "/healthz, /metrics, /status, /ui, POST /webhook, POST /sync, POST /heartbeat",
        }
    );
    if let Some(observe) = observe {
        tracing::info!(
            "serving /status, /ui and /metrics on http://{} (and /healthz)",
            address(&observe)
        );
        let app = router(shared.clone(), Endpoints::Observe);
        tokio::spawn(listener::serve(observe, app, opts.http, shutdown.clone()));
    }
    let app = router(shared, endpoints);
    tokio::spawn(listener::serve(main, app, opts.http, shutdown));
    Ok(())
}

async fn bind(addr: &str, flag: &'static str) -> Result<TcpListener, AgentError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AgentError::Listen {
            addr: addr.to_string(),
            flag,
            source,
        })
}

fn address(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|e| format!("(unknown address: {e})"), |a| a.to_string())
}

fn json<T: serde::Serialize>(code: StatusCode, body: &T) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string_pretty(body).expect("status serializes") + "\n",
    )
        .into_response()
}

fn message(code: StatusCode, text: impl Into<String>) -> Response {
    json(code, &serde_json::json!({ "status": text.into() }))
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.alive.load(Ordering::SeqCst) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent's loop has stopped\n",
        )
            .into_response()
    }
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(refused) = status_token_refusal(&shared, &headers) {
        return refused;
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)],
        shared.metrics.encode(),
    )
        .into_response()
}

async fn status(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(refused) = status_token_refusal(&shared, &headers) {
        return refused;
    }
    let s = shared
        .status
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    json(StatusCode::OK, &s)
}

/// A push from GitHub, Gitea, Forgejo or GitLab: authenticated over the raw
/// body first; then a push of the followed ref asks for a fetch.
async fn hook(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(secret) = &shared.webhook_secret else {
        return message(
            StatusCode::UNAUTHORIZED,
            "webhooks are off: start the agent with --webhook-secret-file",
        );
    };
    if let Err(e) = webhook::authenticate(&headers, &body, secret) {
        tracing::warn!("webhook refused: {e}");
        return rejection(e);
    }
    if let Some(id) = delivery::id(&headers)
        && shared
            .deliveries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replayed(id, Instant::now())
    {
        tracing::info!("webhook: a delivery already received came again; nothing to do");
        return message(
            StatusCode::OK,
            "duplicate delivery: already received, nothing done",
        );
    }
    match webhook::parse(&headers, &body) {
        Err(e) => rejection(e),
        Ok(Hook::Ping) => message(StatusCode::OK, "pong"),
        Ok(Hook::Ignored(event)) => message(StatusCode::OK, format!("ignored: event {event}")),
        Ok(Hook::Push { git_ref, .. }) => {
            if let Some(followed) = &shared.followed_ref
                && &git_ref != followed
            {
                return message(
                    StatusCode::OK,
                    format!("ignored: {git_ref} is not followed ({followed} is)"),
                );
            }
            let _ = shared.triggers.send(Trigger::Fetch("webhook"));
            message(StatusCode::ACCEPTED, "sync queued")
        }
    }
}

fn rejection(e: WebhookError) -> Response {
    match e {
        WebhookError::Unauthorized(m) => message(StatusCode::UNAUTHORIZED, m),
        WebhookError::BadRequest(m) => message(StatusCode::BAD_REQUEST, m),
    }
}

/// `POST /sync` with `Authorization: Bearer <token>`: fetch and check now.
async fn sync(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(refused) = sync_token_refusal(&shared, &headers, "/sync") {
        return refused;
    }
    let _ = shared.triggers.send(Trigger::Fetch("POST /sync"));
    let _ = shared.triggers.send(Trigger::Resync);
    message(StatusCode::ACCEPTED, "sync queued")
}

/// `POST /heartbeat` with the sync token: read the host and decide the
/// alerts now (the answer comes at once; `/status` shows the beat).
async fn heartbeat(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(refused) = sync_token_refusal(&shared, &headers, "/heartbeat") {
        return refused;
    }
    shared.heartbeat.notify_one();
    message(StatusCode::ACCEPTED, "heartbeat queued")
}

/// `Some(401)` unless `--sync-token-file` is set and the request carries
/// its token (`POST path`).
fn sync_token_refusal(shared: &Shared, headers: &HeaderMap, path: &str) -> Option<Response> {
    let Some(token) = &shared.sync_token else {
        return Some(message(
            StatusCode::UNAUTHORIZED,
            format!("POST {path} is off: start the agent with --sync-token-file"),
        ));
    };
    (!bearer_matches(headers, token)).then(|| {
        message(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: send `Authorization: Bearer <the token in --sync-token-file>`",
        )
    })
}

/// `Some(401)` when `--status-token-file` is set and the request does not carry it.
fn status_token_refusal(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let token = shared.status_token.as_ref()?;
    (!bearer_matches(headers, token)).then(|| {
        let mut r = message(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: send `Authorization: Bearer <the token in --status-token-file>` \
             (Prometheus: `authorization: {credentials_file: FILE}`)",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        r
    })
}

/// Whether `Authorization: Bearer <token>` names `token`, compared in
/// constant time; an empty token never matches.
pub(super) fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    token_matches(given, token)
}

/// Whether `given` is `expected`, compared in constant time; an empty
/// value never matches.
pub(super) fn token_matches(given: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    !given.is_empty() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn the_bearer_token_must_match_whole() {
        assert!(bearer_matches(&auth("Bearer s3cret"), "s3cret"));
        for wrong in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "bearer s3cret",
            "s3cret",
            "Bearer ",
        ] {
            assert!(!bearer_matches(&auth(wrong), "s3cret"), "{wrong}");
        }
        assert!(!bearer_matches(&HeaderMap::new(), "s3cret"));
        assert!(
            !bearer_matches(&auth("Bearer "), ""),
            "an empty token never matches"
        );
    }
}
