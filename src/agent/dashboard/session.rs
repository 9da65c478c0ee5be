//! Who may see the dashboard and act on it: login sessions (in memory, so
//! a restart logs everyone out), the anti-CSRF token of each, and the
//! same-origin check of every POST.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{Generate as _, Key};

use super::page::Actions;
use crate::agent::Shared;
use crate::agent::http::{bearer_matches, token_matches};

const COOKIE: &str = "plimsoll_session";
/// How long a login lasts.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; the oldest goes first.
const MAX_SESSIONS: usize = 256;

/// What a login grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The sync token was given: review actions are allowed.
    pub act: bool,
}

impl Grant {
    /// Checks the tokens typed on the login page against the agent's.
    pub fn check(
        shared: &Shared,
        status_token: &str,
        sync_token: &str,
    ) -> Result<Grant, &'static str> {
        if let Some(expected) = &shared.status_token
            && !token_matches(status_token, expected)
        {
            return Err("wrong status token: give the content of the agent's --status-token-file");
        }
        let act = match &shared.sync_token {
            Some(expected) if !sync_token.is_empty() => {
                if !token_matches(sync_token, expected) {
                    return Err(
                        "wrong sync token: give the content of the agent's --sync-token-file, or leave it empty to only look",
                    );
                }
                true
            }
            _ => false,
        };
        if !act && shared.status_token.is_none() {
            return Err("nothing to log in for: the pages are open; give the sync token to act");
        }
        Ok(Grant { act })
    }
}

/// What the viewer of one request may do.
#[derive(Debug, Clone)]
pub struct Access {
    /// Present when the viewer may act: the session's anti-CSRF token.
    csrf: Option<String>,
}

impl Access {
    pub fn actions(&self) -> Option<Actions> {
        self.csrf.clone().map(|csrf| Actions { csrf })
    }
}

struct Session {
    grant: Grant,
    csrf: String,
    expires: Instant,
}

/// The open sessions, by id.
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, Session>>);

impl Sessions {
    /// A new session for `grant`; the `Set-Cookie` that carries it.
    pub fn open(&self, grant: Grant) -> HeaderValue {
        let id = random_token();
        let now = Instant::now();
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            id.clone(),
            Session {
                grant,
                csrf: random_token(),
                expires: now + LIFETIME,
            },
        );
        HeaderValue::from_str(&format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
            LIFETIME.as_secs()
        ))
        .expect("a hex id is a valid header")
    }

    /// Ends the request's session; the `Set-Cookie` that clears it.
    pub fn close(&self, headers: &HeaderMap) -> HeaderValue {
        if let Some(id) = cookie(headers) {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        }
        HeaderValue::from_static("plimsoll_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
    }

    fn grant(&self, headers: &HeaderMap) -> Option<(Grant, String)> {
        let id = cookie(headers)?;
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let s = map.get(id).filter(|s| s.expires > Instant::now())?;
        Some((s.grant, s.csrf.clone()))
    }

    /// May this request see the pages? `Err`: the way to the login page.
    pub fn access(&self, shared: &Shared, headers: &HeaderMap) -> Result<Access, Refusal> {
        if let Some((grant, csrf)) = self.grant(headers) {
            return Ok(Access {
                csrf: grant.act.then_some(csrf),
            });
        }
        match &shared.status_token {
            None => Ok(Access { csrf: None }),
            Some(token) if bearer_matches(headers, token) => Ok(Access { csrf: None }),
            Some(_) => Err(Refusal::LogIn),
        }
    }

    /// May this POST change something: same origin, a session logged in
    /// with the sync token, and that session's anti-CSRF token.
    pub fn may_act(&self, shared: &Shared, headers: &HeaderMap, csrf: &str) -> Result<(), Refusal> {
        same_origin(headers)?;
        if shared.sync_token.is_none() {
            return Err(Refusal::ActionsOff);
        }
        match self.grant(headers) {
            Some((grant, expected)) if grant.act && token_matches(csrf, &expected) => Ok(()),
            Some((grant, _)) if grant.act => Err(Refusal::StaleForm),
            _ => Err(Refusal::NotLoggedIn),
        }
    }
}

/// Refuses a request sent from another site: the browser says so in
/// `Sec-Fetch-Site`, or its `Origin` is not this host. Requests without
/// either (curl) pass: they cannot carry a victim's cookie by accident.
pub fn same_origin(headers: &HeaderMap) -> Result<(), Refusal> {
    let get = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
    if let Some(site) = get(header::HeaderName::from_static("sec-fetch-site"))
        && !matches!(site, "same-origin" | "none")
    {
        return Err(Refusal::CrossSite);
    }
    if let Some(origin) = get(header::ORIGIN) {
        let host = get(header::HOST).unwrap_or_default();
        let this = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if this != Some(host) || host.is_empty() {
            return Err(Refusal::CrossSite);
        }
    }
    Ok(())
}

/// Why a request to the dashboard is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The pages want the status token: the browser goes to the login page.
    #[error("log in at /ui/login with the status token")]
    LogIn,
    #[error(
        "refused: this request came from another site (open the dashboard itself and use its buttons)"
    )]
    CrossSite,
    #[error("actions are off: start the agent with --sync-token-file")]
    ActionsOff,
    #[error("log in with the sync token (/ui/login) to act from the dashboard")]
    NotLoggedIn,
    #[error("this form is stale or came from elsewhere: reload the page and try again")]
    StaleForm,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::LogIn => Redirect::to("/ui/login").into_response(),
            other => (StatusCode::FORBIDDEN, format!("{other}\n")).into_response(),
        }
    }
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// 32 random bytes, hex.
fn random_token() -> String {
    hex::encode(Key::<ChaCha20Poly1305>::generate())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn cross_site_posts_are_refused() {
        assert!(same_origin(&headers(&[])).is_ok(), "curl sends neither");
        let ok = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert!(same_origin(&ok).is_ok());
        for bad in [
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://evil.example"),
            ]),
            headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]),
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[("sec-fetch-site", "same-site")]),
        ] {
            assert!(same_origin(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; plimsoll_session=abc; b=2")]);
        assert_eq!(cookie(&h), Some("abc"));
        assert_eq!(cookie(&headers(&[("cookie", "plimsoll_sessionx=1")])), None);
    }

    #[test]
    fn sessions_are_random_and_closed() {
        let s = Sessions::default();
        let c = s.open(Grant { act: true });
        let id = c.to_str().unwrap().split(';').next().unwrap().to_string();
        let h = headers(&[("cookie", &id)]);
        let (grant, csrf) = s.grant(&h).expect("open");
        assert!(grant.act);
        assert_eq!(csrf.len(), 64);
        assert_ne!(id.split('=').nth(1).unwrap(), csrf);
        s.close(&h);
        assert!(s.grant(&h).is_none());
    }
}
