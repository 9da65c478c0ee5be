//! The agent's HTTP endpoint (axum): `GET /healthz`, `GET /metrics`,
//! `GET /status`, `POST /webhook`, `POST /sync`. Handlers only read the
//! shared status and send triggers; they never change the host themselves.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::webhook::{self, Hook, WebhookError};
use super::{Shared, Trigger};

/// Webhook bodies larger than this are refused with 413.
pub const MAX_BODY: usize = 1 << 20;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/webhook", post(hook))
        .route("/sync", post(sync))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

/// Serves until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let app = router(shared);
    let stop = async move {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!("the HTTP endpoint failed: {e}");
    }
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

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)],
        shared.metrics.encode(),
    )
        .into_response()
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
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
    let Some(token) = &shared.sync_token else {
        return message(
            StatusCode::UNAUTHORIZED,
            "POST /sync is off: start the agent with --sync-token-file",
        );
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    use subtle::ConstantTimeEq as _;
    if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) || given.is_empty() {
        return message(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: send `Authorization: Bearer <the token in --sync-token-file>`",
        );
    }
    let _ = shared.triggers.send(Trigger::Fetch("POST /sync"));
    let _ = shared.triggers.send(Trigger::Resync);
    message(StatusCode::ACCEPTED, "sync queued")
}
