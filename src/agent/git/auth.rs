//! Credentials and trust: the libgit2 callbacks (a token or ssh key, only to
//! the configured server), the ssh host key check against known_hosts, the
//! CA bundle, the process-global timeouts, and scrubbing secrets from texts.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

use base64::Engine as _;
use git2::{CertificateCheckStatus, Cred, CredentialType, ErrorClass, ErrorCode, RemoteCallbacks};

use super::known_hosts::{
    Verdict, check_host_key, fingerprint, key_type_name, known_hosts_name, parse_known_hosts,
};
use super::url::{Endpoint, Transport, parse_endpoint, same_server, server_name};
use super::{
    CONNECT_TIMEOUT_MS, DEFAULT_SSH_USER, GitError, GitSource, SOCKET_TIMEOUT_MS, Session, Shared,
};

/// Why an ssh host key is refused: each message says what was offered and
/// what to do. `offered` is `NAME offered the host key TYPE FINGERPRINT`,
/// `keyscan` the `ssh-keyscan` command that prints the key.
#[derive(Debug, thiserror::Error)]
pub(super) enum HostKeyRefused {
    #[error("the ssh library did not give the raw host key")]
    NoRawKey,
    #[error(
        "{offered}, but no known_hosts file is configured and plimsoll never trusts an \
         unknown ssh host: check that fingerprint with the server's administrator, then \
         put the output of `{keyscan}` in a known_hosts file and pass it with --known-hosts"
    )]
    NoKnownHosts { offered: String, keyscan: String },
    #[error(
        "{offered}, but the known_hosts file {} cannot be read ({source}): create it with \
         the output of `{keyscan}` after checking the fingerprint",
        path.display()
    )]
    Unreadable {
        offered: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
        keyscan: String,
    },
    #[error(
        "{offered}, which {}:{line} marks as @revoked: do not connect; ask the \
         server's administrator",
        path.display()
    )]
    Revoked {
        offered: String,
        path: PathBuf,
        line: usize,
    },
    #[error(
        "the host key of {name} has CHANGED: it offered the key {key_type} {fingerprint}, but \
         {} lists a different key for it (line {}). Someone may be intercepting the \
         connection (man-in-the-middle), or the server's key was replaced: check the \
         new fingerprint with the server's administrator, and only then replace \
         that line with the output of `{keyscan}`",
        path.display(),
        join_numbers(lines)
    )]
    Changed {
        name: String,
        key_type: String,
        fingerprint: String,
        path: PathBuf,
        lines: Vec<usize>,
        keyscan: String,
    },
    #[error(
        "{offered}, but {} lists only {} keys for it (line {}): check that fingerprint \
         with the server's administrator, then add the output of `{keyscan}`",
        path.display(),
        types.join(", "),
        join_numbers(lines)
    )]
    OtherTypes {
        offered: String,
        path: PathBuf,
        types: Vec<String>,
        lines: Vec<usize>,
        keyscan: String,
    },
    #[error(
        "{offered}, but {name} is not in the known_hosts file {}: check that \
         fingerprint with the server's administrator, then add the output of `{keyscan}` to \
         that file",
        path.display()
    )]
    Unknown {
        offered: String,
        name: String,
        path: PathBuf,
        keyscan: String,
    },
}

impl GitSource {
    pub(super) fn callbacks<'a>(&'a self, session: &Shared) -> RemoteCallbacks<'a> {
        let mut cb = RemoteCallbacks::new();
        let s = session.clone();
        cb.credentials(move |url, user_from_url, allowed| {
            let mut s = s.borrow_mut();
            if !same_server(&self.endpoint, url) {
                s.foreign = Some(
                    parse_endpoint(url)
                        .map_or_else(|_| "an unparsable URL".to_string(), |e| server_name(&e)),
                );
                return Err(git2::Error::from_str(
                    "credentials are only given to the configured server",
                ));
            }
            self.credential(&mut s, user_from_url, allowed)
        });
        let s = session.clone();
        cb.certificate_check(move |cert, _host| match cert.as_hostkey() {
            Some(hostkey) => match self.verify_host_key(hostkey) {
                Ok(()) => Ok(CertificateCheckStatus::CertificateOk),
                Err(why) => {
                    s.borrow_mut().host_key = Some(why);
                    Err(git2::Error::new(
                        ErrorCode::Certificate,
                        ErrorClass::Ssh,
                        "host key refused",
                    ))
                }
            },
            // X.509: OpenSSL's verdict (system store plus ca_file) stands.
            None => Ok(CertificateCheckStatus::CertificatePassthrough),
        });
        cb
    }

    pub(super) fn credential(
        &self,
        s: &mut Session,
        user_from_url: Option<&str>,
        allowed: CredentialType,
    ) -> Result<Cred, git2::Error> {
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(DEFAULT_SSH_USER);
        }
        s.attempts += 1;
        if s.attempts > 1 {
            s.rejected = true;
            return Err(git2::Error::from_str("the server rejected the credentials"));
        }
        if allowed.contains(CredentialType::SSH_KEY) {
            let user = user_from_url.unwrap_or(DEFAULT_SSH_USER);
            s.user = Some(user.to_string());
            return match &self.auth.ssh_key {
                Some(key) => Cred::ssh_key(user, None, key, None),
                None => {
                    s.missing = Some("an ssh key");
                    Err(git2::Error::from_str("no ssh key configured"))
                }
            };
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            s.user = Some(self.http_user.clone());
            return match &self.token {
                Some(token) => Cred::userpass_plaintext(&self.http_user, token),
                None => {
                    s.missing = Some("a token");
                    Err(git2::Error::from_str("no token configured"))
                }
            };
        }
        Err(git2::Error::from_str(
            "the server asks for a kind of authentication plimsoll does not support",
        ))
    }

    /// Checks an ssh host key against the known_hosts file (read each time,
    /// so that fixing the file needs no restart).
    pub(super) fn verify_host_key(
        &self,
        hostkey: &git2::cert::CertHostkey<'_>,
    ) -> Result<(), Box<HostKeyRefused>> {
        let key = hostkey.hostkey().ok_or(HostKeyRefused::NoRawKey)?;
        let key_type = key_type_name(key)
            .or_else(|| hostkey.hostkey_type().map(|t| t.name().to_string()))
            .unwrap_or_else(|| "unknown".into());
        let fp = fingerprint(key);
        let host = self.endpoint.host.as_str();
        let port = self.endpoint.port.unwrap_or(22);
        let name = known_hosts_name(host, port);
        let keyscan = |t: Option<&str>| {
            let t = t.map(|t| format!("-t {t} ")).unwrap_or_default();
            if port == 22 {
                format!("ssh-keyscan {t}{host}")
            } else {
                format!("ssh-keyscan {t}-p {port} {host}")
            }
        };
        let offered = format!("{name} offered the host key {key_type} {fp}");
        let Some(path) = &self.auth.known_hosts else {
            return Err(HostKeyRefused::NoKnownHosts {
                offered,
                keyscan: keyscan(None),
            }
            .into());
        };
        let path = path.clone();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(source) => {
                return Err(HostKeyRefused::Unreadable {
                    offered,
                    path,
                    source,
                    keyscan: keyscan(None),
                }
                .into());
            }
        };
        let entries = parse_known_hosts(&text);
        match check_host_key(&entries, host, port, key) {
            Verdict::Trusted => Ok(()),
            Verdict::Revoked { line } => Err(HostKeyRefused::Revoked {
                offered,
                path,
                line,
            }
            .into()),
            Verdict::Changed { lines, types } if types.contains(&key_type) => {
                Err(HostKeyRefused::Changed {
                    keyscan: keyscan(Some(&key_type)),
                    name,
                    key_type,
                    fingerprint: fp,
                    path,
                    lines,
                }
                .into())
            }
            Verdict::Changed { lines, types } => Err(HostKeyRefused::OtherTypes {
                offered,
                path,
                types,
                lines,
                keyscan: keyscan(Some(&key_type)),
            }
            .into()),
            Verdict::Unknown => Err(HostKeyRefused::Unknown {
                offered,
                name,
                path,
                keyscan: keyscan(None),
            }
            .into()),
        }
    }

    /// Removes every credential (see `secrets`) from a text.
    pub(super) fn scrub(&self, text: &str) -> String {
        scrub_with(&self.secrets, text)
    }
}

/// The credentials of a remote, as they may appear in a text: the token,
/// the URL's password and (http(s)) user, raw and percent-encoded, and the
/// basic-auth encoding. An http(s) user shorter than 4 characters is left
/// out (a name such as `git` is no secret, and scrubbing it would garble
/// messages); messages never name the http user.
pub(super) fn secrets_of(
    endpoint: &Endpoint,
    raw_url: &str,
    token: Option<&str>,
    http_user: &str,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |v: &str| {
        if !v.is_empty() && !out.iter().any(|o| o == v) {
            out.push(v.to_string());
        }
    };
    if let Some(t) = token {
        add(t);
        add(&base64::engine::general_purpose::STANDARD.encode(format!("{http_user}:{t}")));
    }
    if let Some(p) = &endpoint.password {
        add(p);
    }
    let http = matches!(endpoint.transport, Transport::Https | Transport::Http);
    if http && let Some(u) = endpoint.user.as_deref().filter(|u| u.chars().count() >= 4) {
        add(u);
    }
    // The raw (percent-encoded) userinfo of the URL as given.
    if let Some((_, rest)) = raw_url.split_once("://") {
        let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            match userinfo.split_once(':') {
                Some((u, p)) => {
                    add(p);
                    if http && u.chars().count() >= 4 {
                        add(u);
                    }
                }
                None if http && userinfo.chars().count() >= 4 => add(userinfo),
                None => {}
            }
        }
    }
    // Longest first, so that a secret containing another is removed whole.
    out.sort_by_key(|v| std::cmp::Reverse(v.len()));
    out
}

/// Replaces every secret in `text` with `***`.
pub(super) fn scrub_with(secrets: &[String], text: &str) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
    }
    out
}

pub(super) fn join_numbers(n: &[usize]) -> String {
    n.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sets libgit2's connect and socket timeouts, once per process.
pub(super) fn set_global_timeouts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: these write two C ints that libgit2 reads when it opens a
        // socket. They are written once, by the first `GitSource::open`,
        // which the agent runs before any fetch starts.
        unsafe {
            if let Err(e) =
                git2::opts::set_server_connect_timeout_in_milliseconds(CONNECT_TIMEOUT_MS)
            {
                tracing::warn!("cannot set the git connect timeout: {}", e.message());
            }
            if let Err(e) = git2::opts::set_server_timeout_in_milliseconds(SOCKET_TIMEOUT_MS) {
                tracing::warn!("cannot set the git socket timeout: {}", e.message());
            }
        }
    });
}

/// Adds a PEM CA bundle to libgit2's (process-global) OpenSSL trust store.
pub(super) fn trust_ca_file(path: &Path) -> Result<(), GitError> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(error) = std::fs::File::open(path) {
        return Err(GitError::CaFile {
            path: path.to_path_buf(),
            error,
        });
    }
    // SAFETY: libgit2 adds the file to its OpenSSL context's certificate
    // store under OpenSSL's own store lock; calls are serialised here.
    unsafe { git2::opts::set_ssl_cert_file(path.to_path_buf()) }.map_err(|e| GitError::CaLoad {
        path: path.to_path_buf(),
        error: e,
    })
}
