//! `POST /webhook`: authenticating and reading a git provider's webhook.
//!
//! Pure functions over the request's headers and raw body. The agent calls
//! [`authenticate`] first — nothing parses the body of a request that was not
//! signed with the webhook secret — then [`parse`].
//!
//! - GitHub, Gitea and Forgejo sign the raw body with HMAC-SHA256 under the
//!   secret: `X-Hub-Signature-256: sha256=<hex>`. Older Gitea and Forgejo send
//!   only `X-Gitea-Signature` / `X-Forgejo-Signature: <hex>` (the same HMAC),
//!   which is accepted too. The provider is told by `X-Forgejo-Event`,
//!   `X-Gitea-Event` or `X-GitHub-Event` (Forgejo and Gitea send GitHub's
//!   headers as well), GitHub by default.
//! - GitLab sends the secret itself in `X-Gitlab-Token`.
//!
//! Both comparisons take constant time. Error messages say what is wrong and
//! what to do; they never contain the secret, a signature or the body.

use axum::http::HeaderMap;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Who sent the webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    GitHub,
    Gitea,
    Forgejo,
    GitLab,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::Gitea => "gitea",
            Provider::Forgejo => "forgejo",
            Provider::GitLab => "gitlab",
        }
    }
}

/// What an authenticated webhook asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    /// The provider checks the endpoint (GitHub's `ping`, a GitLab system hook test).
    Ping,
    /// A push of a branch or a tag.
    Push {
        /// The full ref, e.g. `refs/heads/main` or `refs/tags/v1.2.0`.
        git_ref: String,
        /// The commit the ref now points to; `None` when the payload has none
        /// or the push deleted the ref (all zeros).
        after: Option<String>,
    },
    /// Any other event, by the name its header gave.
    Ignored(String),
}

/// Why a webhook is refused. The agent answers 401 for `Unauthorized` and
/// 400 for `BadRequest`.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook refused: {0}")]
    Unauthorized(String),
    #[error("bad webhook request: {0}")]
    BadRequest(String),
}

const SIGNATURE: &str = "x-hub-signature-256";
const GITEA_SIGNATURE: &str = "x-gitea-signature";
const FORGEJO_SIGNATURE: &str = "x-forgejo-signature";
const GITLAB_TOKEN: &str = "x-gitlab-token";
const GITHUB_EVENT: &str = "x-github-event";
const GITEA_EVENT: &str = "x-gitea-event";
const FORGEJO_EVENT: &str = "x-forgejo-event";
const GITLAB_EVENT: &str = "x-gitlab-event";

/// Checks that the request was signed with `secret`, before anything reads
/// the body. Works whatever the content type: the signature covers the raw
/// bytes.
pub fn authenticate(
    headers: &HeaderMap,
    body: &[u8],
    secret: &[u8],
) -> Result<Provider, WebhookError> {
    if secret.is_empty() {
        return Err(WebhookError::Unauthorized(
            "the agent has no webhook secret configured, so no webhook can be verified; \
             set a webhook secret on the agent and the same secret on the provider's webhook"
                .into(),
        ));
    }
    let signed = |header: &str, value: &str, prefix: Option<&str>| {
        let hex_sig = match prefix {
            Some(p) => value.strip_prefix(p).ok_or_else(|| {
                WebhookError::Unauthorized(format!(
                    "{header} is not of the form `{p}<hex>`; the provider must sign with HMAC-SHA256"
                ))
            })?,
            None => value,
        };
        let sig = hex::decode(hex_sig.trim()).map_err(|_| {
            WebhookError::Unauthorized(format!("{header} does not hold a hexadecimal signature"))
        })?;
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
        mac.update(body);
        mac.verify_slice(&sig).map_err(|_| {
            WebhookError::Unauthorized(format!(
                "the {header} signature does not match the body; check that the webhook's \
                 secret on the provider equals the agent's webhook secret"
            ))
        })
    };
    if let Some(value) = header(headers, SIGNATURE)? {
        signed("X-Hub-Signature-256", value, Some("sha256="))?;
        return Ok(signing_provider(headers));
    }
    for (name, shown) in [
        (FORGEJO_SIGNATURE, "X-Forgejo-Signature"),
        (GITEA_SIGNATURE, "X-Gitea-Signature"),
    ] {
        if let Some(value) = header(headers, name)? {
            signed(shown, value, None)?;
            return Ok(signing_provider(headers));
        }
    }
    if let Some(token) = headers.get(GITLAB_TOKEN) {
        return if bool::from(token.as_bytes().ct_eq(secret)) {
            Ok(Provider::GitLab)
        } else {
            Err(WebhookError::Unauthorized(
                "X-Gitlab-Token does not equal the agent's webhook secret; set the webhook's \
                 secret token in GitLab to the agent's webhook secret"
                    .into(),
            ))
        };
    }
    let hint = if headers.contains_key(GITLAB_EVENT) {
        "a GitLab webhook without X-Gitlab-Token: set the webhook's secret token in GitLab \
         to the agent's webhook secret"
    } else {
        "no X-Hub-Signature-256 or X-Gitlab-Token header: set the webhook's secret on the \
         provider to the agent's webhook secret (GitHub, Gitea and Forgejo sign the body; \
         GitLab sends the token)"
    };
    Err(WebhookError::Unauthorized(hint.into()))
}

/// The provider of a request signed with `X-Hub-Signature-256` (or Gitea's
/// and Forgejo's own signature headers), by its event headers.
fn signing_provider(headers: &HeaderMap) -> Provider {
    if headers.contains_key(FORGEJO_EVENT) {
        Provider::Forgejo
    } else if headers.contains_key(GITEA_EVENT) {
        Provider::Gitea
    } else {
        Provider::GitHub
    }
}

/// A header as text; `None` when absent.
fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, WebhookError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str().map(str::trim).map_err(|_| {
                WebhookError::Unauthorized(format!("the {name} header is not ASCII text"))
            })
        })
        .transpose()
}

/// Reads an authenticated webhook: its event, and for a push the ref and the
/// new commit. The body is `application/json`, or GitHub's
/// `application/x-www-form-urlencoded` with the JSON in its `payload` field;
/// unknown fields are ignored.
pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Hook, WebhookError> {
    let bad = |m: String| WebhookError::BadRequest(m);
    let event = [FORGEJO_EVENT, GITEA_EVENT, GITHUB_EVENT, GITLAB_EVENT]
        .into_iter()
        .find_map(|name| headers.get(name).map(|v| (name, v)));
    let Some((event_header, event)) = event else {
        return Err(bad(
            "no event header (X-GitHub-Event, X-Gitea-Event, X-Forgejo-Event or X-Gitlab-Event); \
             point a GitHub, Gitea, Forgejo or GitLab webhook at this endpoint"
                .into(),
        ));
    };
    let event = event
        .to_str()
        .map_err(|_| bad(format!("the {event_header} header is not ASCII text")))?
        .trim();
    let system_hook = event_header == GITLAB_EVENT && event == "System Hook";
    match event {
        "ping" => return Ok(Hook::Ping),
        "push" | "Push Hook" | "Tag Push Hook" => {}
        _ if system_hook => {}
        other => return Ok(Hook::Ignored(other.to_string())),
    }
    let payload = payload(headers, body)?;
    let serde_json::Value::Object(payload) = payload else {
        return Err(bad("the webhook's JSON payload is not an object".into()));
    };
    if system_hook {
        // GitLab system hooks carry every instance event under one header;
        // only pushes matter, the rest (including the "Test" button's
        // events) is treated as a ping.
        match payload.get("event_name").and_then(|v| v.as_str()) {
            Some("push" | "tag_push") => {}
            _ => return Ok(Hook::Ping),
        }
    }
    let git_ref = match payload.get("ref") {
        Some(serde_json::Value::String(r)) if !r.is_empty() => r.clone(),
        Some(_) => {
            return Err(bad(
                "the push payload's `ref` is not a non-empty string; the provider must send a \
                 push event payload"
                    .into(),
            ));
        }
        None => {
            return Err(bad(
                "the push payload has no `ref`; the provider must send a push event payload \
                 (check the webhook's event selection and content type)"
                    .into(),
            ));
        }
    };
    let after = match payload.get("after") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => {
            Some(s.clone()).filter(|s| !s.is_empty() && !s.bytes().all(|b| b == b'0'))
        }
        Some(_) => {
            return Err(bad(
                "the push payload's `after` is not a string; it should be the commit the ref \
                 now points to"
                    .into(),
            ));
        }
    };
    Ok(Hook::Push { git_ref, after })
}

/// The JSON payload of a body, by its content type (sniffed when absent).
fn payload(headers: &HeaderMap, body: &[u8]) -> Result<serde_json::Value, WebhookError> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    let form = match content_type.as_deref() {
        Some("application/x-www-form-urlencoded") => true,
        Some(t) if t == "application/json" || t.ends_with("+json") || t == "text/json" => false,
        Some(_) => {
            return Err(WebhookError::BadRequest(
                "the content type is neither application/json nor \
                 application/x-www-form-urlencoded; set the webhook's content type to \
                 application/json"
                    .into(),
            ));
        }
        None => !body.trim_ascii_start().starts_with(b"{"),
    };
    let json: std::borrow::Cow<'_, [u8]> = if form {
        let field = form_urlencoded::parse(body)
            .find(|(k, _)| k == "payload")
            .map(|(_, v)| v.into_owned());
        match field {
            Some(v) => v.into_bytes().into(),
            None => {
                return Err(WebhookError::BadRequest(
                    "the form-encoded body has no `payload` field; set the webhook's content \
                     type to application/json"
                        .into(),
                ));
            }
        }
    } else {
        body.into()
    };
    // serde_json's syntax errors name a line and column, never the content.
    serde_json::from_slice(&json).map_err(|e| {
        WebhookError::BadRequest(format!(
            "the webhook payload is not valid JSON ({}); the provider must send its event as JSON",
            syntax_error(&e)
        ))
    })
}

fn syntax_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Eof => "it ends early",
        Category::Syntax => "syntax error",
        Category::Data => "unexpected data",
        Category::Io => "read error",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderName, HeaderValue};

    const SECRET: &[u8] = b"It's a Secret to Everybody";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    fn unauthorized(r: Result<Provider, WebhookError>) -> String {
        match r {
            Err(WebhookError::Unauthorized(m)) => m,
            other => panic!("expected Unauthorized, got {other:?}"),
        }
    }

    fn bad_request(r: Result<Hook, WebhookError>) -> String {
        match r {
            Err(WebhookError::BadRequest(m)) => m,
            other => panic!("expected BadRequest, got {other:?}"),
        }
    }

    #[test]
    fn github_documented_vector() {
        // From GitHub's "Validating webhook deliveries" documentation.
        let body = b"Hello, World!";
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign(SECRET, body), sig);
        let h = headers(&[("X-Hub-Signature-256", sig), ("X-GitHub-Event", "push")]);
        assert_eq!(authenticate(&h, body, SECRET).unwrap(), Provider::GitHub);
    }

    #[test]
    fn signed_providers() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let sig = sign(b"s3cret", body);
        for (event, provider) in [
            ("X-GitHub-Event", Provider::GitHub),
            ("X-Gitea-Event", Provider::Gitea),
            ("X-Forgejo-Event", Provider::Forgejo),
        ] {
            let h = headers(&[("X-Hub-Signature-256", &sig), (event, "push")]);
            assert_eq!(authenticate(&h, body, b"s3cret").unwrap(), provider);
        }
        // Forgejo also sends Gitea's and GitHub's headers.
        let h = headers(&[
            ("X-Hub-Signature-256", &sig),
            ("X-GitHub-Event", "push"),
            ("X-Gitea-Event", "push"),
            ("X-Forgejo-Event", "push"),
        ]);
        assert_eq!(
            authenticate(&h, body, b"s3cret").unwrap(),
            Provider::Forgejo
        );
        // No event header: GitHub.
        let h = headers(&[("X-Hub-Signature-256", &sig)]);
        assert_eq!(authenticate(&h, body, b"s3cret").unwrap(), Provider::GitHub);
        // Older Gitea: its own header, bare hex.
        let bare = sig.strip_prefix("sha256=").unwrap();
        let h = headers(&[("X-Gitea-Signature", bare), ("X-Gitea-Event", "push")]);
        assert_eq!(authenticate(&h, body, b"s3cret").unwrap(), Provider::Gitea);
    }

    #[test]
    fn bad_signatures() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = sign(b"s3cret", body);
        let wrong_secret = sign(b"other", body);
        let m = unauthorized(authenticate(
            &headers(&[("X-Hub-Signature-256", &wrong_secret)]),
            body,
            b"s3cret",
        ));
        assert!(m.contains("does not match") && m.contains("secret"), "{m}");
        assert!(
            !m.contains("s3cret") && !m.contains(&wrong_secret[7..]),
            "{m}"
        );
        // The body changed after signing.
        let m = unauthorized(authenticate(
            &headers(&[("X-Hub-Signature-256", &good)]),
            br#"{"ref":"refs/heads/evil"}"#,
            b"s3cret",
        ));
        assert!(m.contains("does not match"), "{m}");
        // Truncated, not hex, no prefix, missing.
        for (sig, want) in [
            (&good[..good.len() - 2], "does not match"),
            ("sha256=zz", "hexadecimal"),
            (&good[7..], "sha256=<hex>"),
            ("sha1=abcd", "sha256=<hex>"),
        ] {
            let m = unauthorized(authenticate(
                &headers(&[("X-Hub-Signature-256", sig)]),
                body,
                b"s3cret",
            ));
            assert!(m.contains(want), "{sig}: {m}");
        }
        let m = unauthorized(authenticate(
            &headers(&[("X-GitHub-Event", "push")]),
            body,
            b"s3cret",
        ));
        assert!(m.contains("X-Hub-Signature-256"), "{m}");
        // No secret configured: nothing is accepted, not even an empty-key HMAC.
        let empty = sign(b"", body);
        let m = unauthorized(authenticate(
            &headers(&[("X-Hub-Signature-256", &empty)]),
            body,
            b"",
        ));
        assert!(m.contains("no webhook secret"), "{m}");
    }

    #[test]
    fn gitlab_token() {
        let h = headers(&[
            ("X-Gitlab-Token", "s3cret"),
            ("X-Gitlab-Event", "Push Hook"),
        ]);
        assert_eq!(
            authenticate(&h, b"not even json", b"s3cret").unwrap(),
            Provider::GitLab
        );
        for token in ["s3creT", "s3cret ", "s3cre", ""] {
            let h = headers(&[("X-Gitlab-Token", token), ("X-Gitlab-Event", "Push Hook")]);
            let m = unauthorized(authenticate(&h, b"{}", b"s3cret"));
            assert!(m.contains("X-Gitlab-Token") && !m.contains("s3cre"), "{m}");
        }
        let h = headers(&[("X-Gitlab-Event", "Push Hook")]);
        let m = unauthorized(authenticate(&h, b"{}", b"s3cret"));
        assert!(m.contains("GitLab"), "{m}");
    }

    #[test]
    fn push_json_with_unknown_fields() {
        let body = br#"{"ref":"refs/heads/main","before":"0000","after":"4f1c0ac9e2b7d8f0a1b2c3d4e5f60718293a4b5c",
            "repository":{"full_name":"o/r"},"commits":[{"id":"x"}],"pusher":{"name":"n"}}"#;
        let h = headers(&[
            ("X-GitHub-Event", "push"),
            ("Content-Type", "application/json; charset=utf-8"),
        ]);
        assert_eq!(
            parse(&h, body).unwrap(),
            Hook::Push {
                git_ref: "refs/heads/main".into(),
                after: Some("4f1c0ac9e2b7d8f0a1b2c3d4e5f60718293a4b5c".into()),
            }
        );
        // `after` is optional; a deleted ref has none.
        let h = headers(&[("X-Gitea-Event", "push")]);
        assert_eq!(
            parse(&h, br#"{"ref":"refs/heads/dev"}"#).unwrap(),
            Hook::Push {
                git_ref: "refs/heads/dev".into(),
                after: None
            }
        );
        let deleted =
            br#"{"ref":"refs/heads/dev","after":"0000000000000000000000000000000000000000"}"#;
        assert_eq!(
            parse(&h, deleted).unwrap(),
            Hook::Push {
                git_ref: "refs/heads/dev".into(),
                after: None
            }
        );
    }

    #[test]
    fn push_form_body() {
        let json = r#"{"ref":"refs/tags/v1.0.0","after":"abc123","extra":{"a":[1,2]}}"#;
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", json)
            .finish();
        let h = headers(&[
            ("X-GitHub-Event", "push"),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Hub-Signature-256", &sign(SECRET, body.as_bytes())),
        ]);
        assert_eq!(
            authenticate(&h, body.as_bytes(), SECRET).unwrap(),
            Provider::GitHub
        );
        let want = Hook::Push {
            git_ref: "refs/tags/v1.0.0".into(),
            after: Some("abc123".into()),
        };
        assert_eq!(parse(&h, body.as_bytes()).unwrap(), want);
        // Without a content type, the form is recognised too.
        let h = headers(&[("X-GitHub-Event", "push")]);
        assert_eq!(parse(&h, body.as_bytes()).unwrap(), want);
        let h = headers(&[
            ("X-GitHub-Event", "push"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ]);
        let m = bad_request(parse(&h, b"other=1"));
        assert!(m.contains("payload"), "{m}");
    }

    #[test]
    fn gitlab_events() {
        let h = headers(&[("X-Gitlab-Event", "Push Hook")]);
        let body = br#"{"object_kind":"push","ref":"refs/heads/main","after":"da1560886d4f094c3e6c9ef40349f7d38b5d27d7","project":{}}"#;
        assert_eq!(
            parse(&h, body).unwrap(),
            Hook::Push {
                git_ref: "refs/heads/main".into(),
                after: Some("da1560886d4f094c3e6c9ef40349f7d38b5d27d7".into())
            }
        );
        let h = headers(&[("X-Gitlab-Event", "Tag Push Hook")]);
        let body = br#"{"object_kind":"tag_push","ref":"refs/tags/v1","after":"82b3d5ae55f7080f1e6022629cdb57bfae7cccc7"}"#;
        assert!(
            matches!(parse(&h, body).unwrap(), Hook::Push { git_ref, .. } if git_ref == "refs/tags/v1")
        );
        let h = headers(&[("X-Gitlab-Event", "Merge Request Hook")]);
        assert_eq!(
            parse(&h, b"{}").unwrap(),
            Hook::Ignored("Merge Request Hook".into())
        );
        let h = headers(&[("X-Gitlab-Event", "System Hook")]);
        let body = br#"{"event_name":"push","ref":"refs/heads/main","after":"abc"}"#;
        assert!(matches!(parse(&h, body).unwrap(), Hook::Push { .. }));
        let body = br#"{"event_name":"project_create","name":"x"}"#;
        assert_eq!(parse(&h, body).unwrap(), Hook::Ping);
    }

    #[test]
    fn ping_and_ignored_events_do_not_read_the_body() {
        let h = headers(&[("X-GitHub-Event", "ping")]);
        assert_eq!(
            parse(&h, b"{\"zen\":\"Keep it logically awesome.\"}").unwrap(),
            Hook::Ping
        );
        assert_eq!(parse(&h, b"garbage").unwrap(), Hook::Ping);
        let h = headers(&[("X-GitHub-Event", "pull_request")]);
        assert_eq!(
            parse(&h, b"garbage").unwrap(),
            Hook::Ignored("pull_request".into())
        );
        let h = headers(&[("X-Forgejo-Event", "create"), ("X-GitHub-Event", "create")]);
        assert_eq!(parse(&h, b"").unwrap(), Hook::Ignored("create".into()));
    }

    #[test]
    fn malformed_bodies() {
        let h = headers(&[
            ("X-GitHub-Event", "push"),
            ("Content-Type", "application/json"),
        ]);
        let m = bad_request(parse(&h, br#"{"after":"abc","sneaky":"hunter2-body"}"#));
        assert!(m.contains("no `ref`"), "{m}");
        assert!(!m.contains("hunter2"), "{m}");
        let m = bad_request(parse(&h, br#"{"ref":42}"#));
        assert!(m.contains("`ref`") && !m.contains("42"), "{m}");
        let m = bad_request(parse(&h, br#"{"ref":"refs/heads/main","after":7}"#));
        assert!(m.contains("`after`"), "{m}");
        let m = bad_request(parse(&h, br#"{"ref": "hunter2-body"#));
        assert!(
            m.contains("not valid JSON") && !m.contains("hunter2"),
            "{m}"
        );
        let m = bad_request(parse(&h, b"[1,2]"));
        assert!(m.contains("not an object"), "{m}");
        let h = headers(&[("X-GitHub-Event", "push"), ("Content-Type", "text/plain")]);
        let m = bad_request(parse(&h, b"{}"));
        assert!(m.contains("content type"), "{m}");
        let m = bad_request(parse(&headers(&[]), b"{}"));
        assert!(m.contains("no event header"), "{m}");
    }

    /// A body nested 500,000 deep (within the 1 MiB cap) is refused by
    /// serde_json's recursion limit (128), never a stack overflow.
    #[test]
    fn deeply_nested_bodies_are_refused() {
        let h = headers(&[
            ("X-GitHub-Event", "push"),
            ("Content-Type", "application/json"),
        ]);
        for open in [b'[', b'{'] {
            let body = vec![open; 500_000];
            let m = bad_request(parse(&h, &body));
            assert!(m.contains("not valid JSON"), "{m}");
        }
        let mut body = b"{\"ref\":".to_vec();
        body.extend(std::iter::repeat_n(b'[', 200));
        body.extend(std::iter::repeat_n(b']', 200));
        body.push(b'}');
        let m = bad_request(parse(&h, &body));
        assert!(m.contains("not valid JSON"), "{m}");
    }
}
