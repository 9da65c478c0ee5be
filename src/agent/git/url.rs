//! Repository URLs: parsing them (https, http, ssh, scp-like, git, file),
//! what is insecure, what to show (no credentials), which server credentials
//! may go to.

use std::path::Path;

/// Why a repository URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("not a URL")]
    NotAUrl,
    #[error("no host before the ':'")]
    NoHostBeforeColon,
    #[error(
        "unsupported URL scheme {scheme}://: use https://, http://, ssh://, file:// \
         or user@host:path"
    )]
    Scheme { scheme: String },
    #[error("the URL has no host")]
    NoHost,
    #[error("unclosed '[' in {authority:?}")]
    UnclosedBracket { authority: String },
    #[error("unexpected {after:?} after the host")]
    AfterHost { after: String },
    #[error("invalid port {port:?}")]
    Port { port: String },
}

pub(super) fn insecure_scheme(endpoint: &Endpoint) -> Option<&'static str> {
    match endpoint.transport {
        Transport::Http => Some("http"),
        Transport::Git => Some("git"),
        _ => None,
    }
}

/// A `file://` URL for an absolute path, percent-encoding what libgit2 would
/// otherwise misread.
pub(super) fn file_url(abs: &Path) -> String {
    let mut out = String::from("file://");
    for b in abs.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~+,=@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `[user@]host:path` with no `/` before the colon, as git reads it.
pub(super) fn is_scp_like(s: &str) -> bool {
    !s.contains("://")
        && s.split_once(':')
            .is_some_and(|(host, path)| !host.is_empty() && !host.contains('/') && !path.is_empty())
}

/// Replaces a URL's userinfo with `***@`, for error texts about values that
/// did not parse.
pub(super) fn redact_userinfo(s: &str) -> String {
    if let Some((scheme, rest)) = s.split_once("://") {
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return format!("{scheme}://***@{}", &rest[at + 1..]);
        }
    }
    s.to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transport {
    Https,
    Http,
    Ssh,
    /// `git://`: unauthenticated.
    Git,
    Local,
}

/// A parsed remote URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Endpoint {
    pub(super) transport: Transport,
    /// What libgit2 gets: never a password; for http(s) no user either
    /// (basic auth goes through the credentials callback).
    pub(super) url: String,
    /// For logs and errors: no password, no http user (which may be a token).
    pub(super) display: String,
    /// Percent-decoded user of the URL.
    pub(super) user: Option<String>,
    /// Percent-decoded password of the URL (http(s): used as the token).
    pub(super) password: Option<String>,
    pub(super) host: String,
    pub(super) port: Option<u16>,
}

pub(super) fn parse_endpoint(url: &str) -> Result<Endpoint, UrlError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        // scp-like: [user@]host:path
        let (userhost, _) = url.split_once(':').ok_or(UrlError::NotAUrl)?;
        let (user, host) = match userhost.rfind('@') {
            Some(at) => (Some(pct_decode(&userhost[..at])), &userhost[at + 1..]),
            None => (None, userhost),
        };
        if host.is_empty() {
            return Err(UrlError::NoHostBeforeColon);
        }
        return Ok(Endpoint {
            transport: Transport::Ssh,
            url: url.to_string(),
            display: url.to_string(),
            user,
            password: None,
            host: host.to_string(),
            port: None,
        });
    };
    let scheme = scheme.to_ascii_lowercase();
    let transport = match scheme.as_str() {
        "https" => Transport::Https,
        "http" => Transport::Http,
        "ssh" | "git+ssh" | "ssh+git" => Transport::Ssh,
        "git" => Transport::Git,
        "file" => Transport::Local,
        other => {
            return Err(UrlError::Scheme {
                scheme: other.to_string(),
            });
        }
    };
    if transport == Transport::Local {
        return Ok(Endpoint {
            transport,
            url: url.to_string(),
            display: url.to_string(),
            user: None,
            password: None,
            host: String::new(),
            port: None,
        });
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((u, p)) => (Some(pct_decode(u)), Some(pct_decode(p))),
            None => (Some(pct_decode(u)), None),
        },
        None => (None, None),
    };
    let (host, port) = split_host_port(hostport)?;
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    let bare = format!("{scheme}://{hostport}{path}");
    let (url, display) = match transport {
        Transport::Ssh => {
            let with_user = match userinfo {
                Some(u) => {
                    let user_part = u.split_once(':').map_or(u, |(u, _)| u);
                    format!("{scheme}://{user_part}@{hostport}{path}")
                }
                None => bare,
            };
            (with_user.clone(), with_user)
        }
        _ => (bare.clone(), bare),
    };
    Ok(Endpoint {
        transport,
        url,
        display,
        user: user.filter(|u| !u.is_empty()),
        password: password.filter(|p| !p.is_empty()),
        host,
        port,
    })
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
pub(super) fn split_host_port(s: &str) -> Result<(String, Option<u16>), UrlError> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| UrlError::UnclosedBracket {
                authority: s.to_string(),
            })?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => {
                return Err(UrlError::AfterHost {
                    after: after.to_string(),
                });
            }
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        Some("") | None => None,
        Some(p) => Some(p.parse::<u16>().map_err(|_| UrlError::Port {
            port: p.to_string(),
        })?),
    };
    Ok((host.to_string(), port))
}

pub(super) fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                b.get(i + 1).and_then(|c| (*c as char).to_digit(16)),
                b.get(i + 2).and_then(|c| (*c as char).to_digit(16)),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `scheme://host:port` of an endpoint (no user), for messages.
pub(super) fn server_name(e: &Endpoint) -> String {
    let scheme = match e.transport {
        Transport::Https => "https",
        Transport::Http => "http",
        Transport::Ssh => "ssh",
        Transport::Git => "git",
        Transport::Local => "file",
    };
    let host = if e.host.contains(':') {
        format!("[{}]", e.host)
    } else {
        e.host.clone()
    };
    format!("{scheme}://{host}:{}", effective_port(e))
}

pub(super) fn effective_port(e: &Endpoint) -> u16 {
    e.port.unwrap_or(match e.transport {
        Transport::Https => 443,
        Transport::Http => 80,
        Transport::Ssh => 22,
        Transport::Git => 9418,
        Transport::Local => 0,
    })
}

/// Whether `url` (what libgit2 asks credentials for: after a redirect, the
/// new location) is the configured server: same transport, host (case
/// insensitive) and port. Credentials go to nothing else.
pub(super) fn same_server(configured: &Endpoint, url: &str) -> bool {
    let Ok(asked) = parse_endpoint(url) else {
        return false;
    };
    asked.transport == configured.transport
        && asked.host.eq_ignore_ascii_case(&configured.host)
        && effective_port(&asked) == effective_port(configured)
}
