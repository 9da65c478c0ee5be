//! The agent's git source: follows one ref of a git repository with libgit2
//! (`git2`) and materialises chosen commits into a work tree.
//!
//! Layout under the directory the agent passes (`<state-dir>/git`), which
//! survives restarts:
//! - `repo/`: the local clone, a bare repository. Its config records the URL
//!   it clones (`plimsoll.url`, without credentials); a different URL
//!   re-initialises it. Refs `refs/plimsoll/fetched` (the last fetched tip)
//!   and `refs/plimsoll/checkout` (the commit in the work tree) keep those
//!   commits' objects; libgit2 never prunes objects, so every commit fetched
//!   before stays available for a rollback.
//! - `worktree/`: the tree of the checked-out commit, updated in place by a
//!   forced checkout (files deleted in the commit disappear, stray files are
//!   removed) so that the directory itself, and bind mounts of it, survive.
//!   `refs/plimsoll/checkout` is removed before a checkout starts and written
//!   when it has finished, so a crash mid-way reads as "nothing checked out".
//!
//! Transports: https (a token as HTTP basic auth, an extra CA bundle), ssh
//! (a key file, and a strict known_hosts check done here: plain and hashed
//! entries, `[host]:port`, wildcards, negations, `@revoked`), and local
//! repositories (`file://`, paths). `http://` and `git://` (unencrypted,
//! unauthenticated) only with `GitAuth::allow_insecure`
//! (`--allow-insecure-transport`); refused otherwise ([`check_transport`]).
//! Credentials (token, URL user and password, ssh key) are given only to the
//! configured server (transport, host, port): a redirect elsewhere gets none. Fetches are shallow (depth 1) except
//! on the local transport, where libgit2 refuses a depth.
//!
//! Process-global libgit2 settings (libgit2 has no per-remote ones), set by
//! the first [`GitSource::open`], which must run before fetches start on
//! other threads: a connect timeout of 30 s and a socket timeout of 120 s (a
//! hung server must not hang the agent), and every `ca_file` of an https
//! source (`GIT_OPT_SET_SSL_CERT_LOCATIONS` adds the bundle to the OpenSSL
//! trust store of the whole process; it is never removed).
//!
//! Secrets: the token and the URL's userinfo are never part of the URL handed
//! to libgit2 for http(s) (nor of the URL stored in the clone's config), never
//! logged (`GitAuth`'s `Debug` masks the token), and scrubbed from every error
//! text (the token, the URL's password and http(s) user, their percent and
//! basic-auth encodings); no message names the http user (often the token).
//!
//! Signed commits: [`GitSource::verify_commit`] checks a fetched commit's
//! signature against `GitAuth::trust` (see [`super::signing`]). Remote errors therefore
//! carry libgit2's message as scrubbed text rather than as a `#[source]`.
//!
//! By concern: `url` (parsing URLs, what is insecure, which server
//! credentials may go to), `auth` (the libgit2 callbacks: credentials, the
//! ssh host key check, the CA bundle, scrubbing secrets), `known_hosts`
//! (OpenSSH's file format and key verdicts), `fetch` (the followed ref or a
//! pinned commit, libgit2's errors explained) and `store` (the local clone,
//! the work tree, commit signatures); this file holds the types, the errors
//! and [`GitSource::open`].

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Mutex;

use git2::{ErrorCode, Repository};

use super::signing;
use auth::{secrets_of, set_global_timeouts, trust_ca_file};
pub(super) use known_hosts::wildcard_match;
pub use url::UrlError;
use url::{
    Endpoint, Transport, file_url, insecure_scheme, is_scp_like, parse_endpoint, redact_userinfo,
};

mod auth;
mod fetch;
mod known_hosts;
mod store;
#[cfg(test)]
mod tests;
mod url;

/// The last fetched tip of the followed ref.
const FETCHED_REF: &str = "refs/plimsoll/fetched";
/// The commit in the work tree (absent while a checkout runs).
const CHECKOUT_REF: &str = "refs/plimsoll/checkout";
/// Where a full fetch (looking for a pinned commit) puts heads and tags.
const ALL_REFS: &str = "refs/plimsoll/all/";
/// The clone's config key holding the URL it clones.
const URL_KEY: &str = "plimsoll.url";
/// HTTP basic-auth user when the URL names none.
const DEFAULT_HTTP_USER: &str = "plimsoll";
/// ssh login when the URL names none (GitHub, GitLab, Gitea, Forgejo).
const DEFAULT_SSH_USER: &str = "git";
const CONNECT_TIMEOUT_MS: i32 = 30_000;
const SOCKET_TIMEOUT_MS: i32 = 120_000;

/// Which commit to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitRef {
    /// The remote's HEAD branch.
    Default,
    Branch(String),
    Tag(String),
    /// A full or abbreviated commit SHA, pinned.
    Rev(String),
}

impl fmt::Display for GitRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GitRef::Default => f.write_str("the default branch"),
            GitRef::Branch(b) => write!(f, "branch {b:?}"),
            GitRef::Tag(t) => write!(f, "tag {t:?}"),
            GitRef::Rev(r) => write!(f, "commit {r}"),
        }
    }
}

/// Credentials and trust. Every field optional.
#[derive(Clone, Default)]
pub struct GitAuth {
    /// https: the HTTP basic-auth password (user: the URL's user, else
    /// `plimsoll`). Never logged, never in an error.
    pub token: Option<String>,
    /// ssh: an unencrypted private key file.
    pub ssh_key: Option<PathBuf>,
    /// ssh: an OpenSSH known_hosts file. Required for ssh: without it, or
    /// for a host it does not list with the offered key, the connection is
    /// refused.
    pub known_hosts: Option<PathBuf>,
    /// https: an extra PEM CA bundle to trust (an internal Gitea, say).
    /// Process-global once set (see the module docs).
    pub ca_file: Option<PathBuf>,
    /// Accept `http://` and `git://` remotes (unencrypted, unauthenticated
    /// servers): `--allow-insecure-transport`. Refused without it.
    pub allow_insecure: bool,
    /// With trusted keys, only commits whose signature verifies are applied
    /// (`--allowed-signers`, `--trusted-keys`).
    pub trust: Option<std::sync::Arc<super::signing::Trust>>,
}

impl fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitAuth")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("ssh_key", &self.ssh_key)
            .field("known_hosts", &self.known_hosts)
            .field("ca_file", &self.ca_file)
            .field("allow_insecure", &self.allow_insecure)
            .field("trust", &self.trust)
            .finish()
    }
}

/// What went wrong with the git source. Every message names the URL (without
/// credentials) and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// A `--repo` value or URL that cannot be used.
    // `reason` is not a `#[source]`: the message holds it whole, and `{:#}`
    // (the CLI's) would print it twice.
    #[error("invalid repository {value}: {reason}")]
    InvalidRepo { value: String, reason: BadRepo },
    /// `http://` or `git://` without `--allow-insecure-transport`.
    #[error(
        "refusing {url}: {scheme}:// is not encrypted nor authenticated, so anyone on the \
         network path can read the token and change what the agent applies as root; use an \
         https:// or ssh:// URL, or, if this network is trusted, pass \
         --allow-insecure-transport (or PLIMSOLL_ALLOW_INSECURE_TRANSPORT=true)"
    )]
    Insecure { url: String, scheme: &'static str },
    // The settings below: a malformed `--rev`, a missing key or CA file. A
    // cause in their message is a plain field, not a `#[source]`: the message
    // holds it whole, and `{:#}` (the CLI's) would print it twice.
    /// `--rev` is not 4 to 40 hex digits.
    #[error(
        "--rev wants a commit SHA (4 to 40 hex digits), got {rev:?}: follow a \
         name with --branch or --tag"
    )]
    BadRev { rev: String },
    /// `--rev` names several commits of the clone.
    #[error("--rev {rev} is ambiguous in {url}: give more hex digits")]
    AmbiguousRev { rev: String, url: String },
    #[error("cannot read the ssh key file {} for {url}: {error}", path.display())]
    SshKey {
        path: PathBuf,
        url: String,
        error: std::io::Error,
    },
    #[error("cannot read the CA file {}: {error}", path.display())]
    CaFile {
        path: PathBuf,
        error: std::io::Error,
    },
    /// libgit2 refused the bundle.
    #[error(
        "cannot load the CA file {} (it must hold PEM certificates): {}",
        path.display(),
        error.message()
    )]
    CaLoad { path: PathBuf, error: git2::Error },
    /// The network: connection refused, DNS, timeouts, a gateway error.
    #[error(
        "cannot reach {url}: {detail} (check the URL, DNS, the network and that the git \
         server is up; the agent keeps the last good revision and retries)"
    )]
    Unreachable { url: String, detail: String },
    /// The server rejected the credentials, or wants some and none are set.
    #[error("authentication failed for {url}: {detail}")]
    Auth { url: String, detail: String },
    /// The ssh host key is unknown, changed or revoked.
    #[error("ssh host key verification failed for {url}: {detail}")]
    HostKey { url: String, detail: String },
    /// The https certificate is not trusted.
    #[error("TLS certificate of {url} is not trusted: {detail}")]
    Tls { url: String, detail: String },
    /// The followed branch or tag does not exist on the remote.
    #[error("{what} not found in {url}{hint}")]
    RefNotFound {
        url: String,
        what: String,
        hint: String,
    },
    /// A pinned commit the remote does not have (or will not give).
    #[error(
        "commit {rev} not found in {url}: check the SHA; it must be reachable from a branch \
         or tag of the remote"
    )]
    CommitNotFound { url: String, rev: String },
    /// `checkout` of a commit that was never fetched.
    #[error(
        "commit {sha} of {url} is not in the local clone {}: fetch it first",
        path.display()
    )]
    NotFetched {
        url: String,
        sha: String,
        path: PathBuf,
    },
    /// Any other failure of the remote.
    #[error("fetching {url} failed: {detail}")]
    Remote { url: String, detail: String },
    /// The local clone is unusable.
    #[error(
        "local clone of {url} in {}: {what} (deleting that directory makes the agent start over)",
        path.display()
    )]
    Store {
        url: String,
        path: PathBuf,
        what: String,
        #[source]
        source: git2::Error,
    },
    /// The file system under the clone's directory.
    #[error("local clone of {url} in {}: {what}", path.display())]
    Io {
        url: String,
        path: PathBuf,
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A commit whose signature the trusted keys refuse (the message names
    /// the commit and the key).
    #[error(transparent)]
    Rejected(#[from] Box<signing::Rejected>),
}

/// Why a `--repo` value or URL designates no repository.
#[derive(Debug, thiserror::Error)]
pub enum BadRepo {
    #[error("it is empty")]
    Empty,
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("cannot resolve the path: {0}")]
    Resolve(#[source] std::io::Error),
    #[error("it is a file: give a directory (a config repository) or a git URL")]
    File,
    #[error("no such directory, and not a git URL (https://, ssh://, user@host:path, file://)")]
    Unknown,
}

impl GitError {
    /// Network-level failures, which the agent retries with backoff.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, GitError::Unreachable { .. })
    }
}

/// What a `--repo` value designates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoKind {
    /// A git URL (`file://` for local repositories).
    Git(String),
    /// A local directory that is not a git repository: watched by the agent.
    Directory(PathBuf),
}

/// `--repo` value → kind. URLs (https://, http://, ssh://, scp-like
/// `user@host:path`, file://) are [`RepoKind::Git`]; an existing local path
/// that is a git repository (work tree with `.git`, or bare) is `Git` with an
/// absolute `file://` URL; an existing directory that is not a repository is
/// [`RepoKind::Directory`]; anything else is an error naming the value.
pub fn classify(repo: &str) -> Result<RepoKind, GitError> {
    let value = repo.trim();
    let invalid = |reason: BadRepo| GitError::InvalidRepo {
        value: redact_userinfo(value),
        reason,
    };
    if value.is_empty() {
        return Err(invalid(BadRepo::Empty));
    }
    if value.contains("://") {
        parse_endpoint(value).map_err(|e| invalid(e.into()))?;
        return Ok(RepoKind::Git(value.to_string()));
    }
    let path = Path::new(value);
    if path.exists() {
        let abs = std::fs::canonicalize(path).map_err(|e| invalid(BadRepo::Resolve(e)))?;
        if !abs.is_dir() {
            return Err(invalid(BadRepo::File));
        }
        return Ok(match Repository::open(&abs) {
            Ok(_) => RepoKind::Git(file_url(&abs)),
            // Owned by another user: still a repository; fetching from it
            // says what to do.
            Err(e) if e.code() == ErrorCode::Owner => RepoKind::Git(file_url(&abs)),
            Err(_) => RepoKind::Directory(abs),
        });
    }
    if is_scp_like(value) {
        parse_endpoint(value).map_err(|e| invalid(e.into()))?;
        return Ok(RepoKind::Git(value.to_string()));
    }
    Err(invalid(BadRepo::Unknown))
}

/// Refuses an `http://` or `git://` URL unless `allow_insecure`
/// (`--allow-insecure-transport`): the agent calls it before anything else
/// starts, [`GitSource::open`] again.
pub fn check_transport(url: &str, allow_insecure: bool) -> Result<(), GitError> {
    let Ok(endpoint) = parse_endpoint(url.trim()) else {
        // Not a URL this module can parse: `open` says why.
        return Ok(());
    };
    match insecure_scheme(&endpoint) {
        Some(scheme) if !allow_insecure => Err(GitError::Insecure {
            url: endpoint.display,
            scheme,
        }),
        _ => Ok(()),
    }
}

/// The followed ref, resolved from a [`GitRef`].
#[derive(Debug, Clone)]
enum Follow {
    /// The remote's HEAD.
    Default,
    /// A branch or tag: its full ref name, its kind ("branch", "tag") and the
    /// name as given.
    Named {
        full: String,
        kind: &'static str,
        given: String,
    },
    /// A commit SHA prefix, lowercase.
    Rev(String),
}

/// Follows one ref of one remote repository; see the module docs.
pub struct GitSource {
    endpoint: Endpoint,
    reference: GitRef,
    follow: Follow,
    auth: GitAuth,
    /// The token actually used: `auth.token`, else the URL's password.
    token: Option<String>,
    /// HTTP basic-auth user.
    http_user: String,
    /// What [`GitSource::scrub`] removes: the token, the URL's password and
    /// http(s) user (a token is often given as the user), their percent
    /// encodings and the basic-auth encoding.
    secrets: Vec<String>,
    dir: PathBuf,
    /// Serialises fetch and checkout on this clone.
    lock: Mutex<()>,
}

impl fmt::Debug for GitSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitSource")
            .field("url", &self.endpoint.display)
            .field("reference", &self.reference)
            .field("auth", &self.auth)
            .field("dir", &self.dir)
            .finish()
    }
}

/// What the callbacks of one connection saw, to explain a failure.
#[derive(Default)]
struct Session {
    /// Credential attempts in the current phase (a second one means the
    /// first was rejected: libgit2 would ask forever otherwise).
    attempts: u32,
    rejected: bool,
    /// "a token" / "an ssh key": asked for, not configured.
    missing: Option<&'static str>,
    /// Why the ssh host key was refused.
    host_key: Option<Box<auth::HostKeyRefused>>,
    /// The user of the last credential offered.
    user: Option<String>,
    /// A server other than the configured one asked for credentials (a
    /// redirect): its scheme, host and port.
    foreign: Option<String>,
}

type Shared = Rc<RefCell<Session>>;

impl GitSource {
    /// Opens or creates the local clone under `dir` (the agent passes
    /// `<state-dir>/git`), which survives restarts. If `dir` holds a clone of
    /// a different URL, it is re-initialised.
    pub fn open(
        url: &str,
        reference: GitRef,
        auth: GitAuth,
        dir: &Path,
    ) -> Result<GitSource, GitError> {
        set_global_timeouts();
        let endpoint = parse_endpoint(url.trim()).map_err(|reason| GitError::InvalidRepo {
            value: redact_userinfo(url),
            reason: reason.into(),
        })?;
        let scheme = insecure_scheme(&endpoint);
        if let Some(scheme) = scheme
            && !auth.allow_insecure
        {
            return Err(GitError::Insecure {
                url: endpoint.display.clone(),
                scheme,
            });
        }
        let follow = match &reference {
            GitRef::Default => Follow::Default,
            GitRef::Branch(b) => Follow::Named {
                full: if b.starts_with("refs/") {
                    b.clone()
                } else {
                    format!("refs/heads/{b}")
                },
                kind: "branch",
                given: b.clone(),
            },
            GitRef::Tag(t) => Follow::Named {
                full: if t.starts_with("refs/") {
                    t.clone()
                } else {
                    format!("refs/tags/{t}")
                },
                kind: "tag",
                given: t.clone(),
            },
            GitRef::Rev(r) => {
                let r = r.trim().to_ascii_lowercase();
                if !(4..=40).contains(&r.len()) || !r.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(GitError::BadRev { rev: r });
                }
                Follow::Rev(r)
            }
        };
        let token = auth.token.clone().or_else(|| endpoint.password.clone());
        let http_user = match endpoint.transport {
            Transport::Https | Transport::Http => endpoint.user.clone(),
            _ => None,
        }
        .unwrap_or_else(|| DEFAULT_HTTP_USER.to_string());
        if let Some(scheme) = scheme {
            tracing::warn!(
                url = %endpoint.display,
                "{scheme}:// is allowed by --allow-insecure-transport: the repository (and any \
                 token) travels unencrypted and unauthenticated; use https:// or ssh://"
            );
        }
        let secrets = secrets_of(&endpoint, url.trim(), token.as_deref(), &http_user);
        let source = GitSource {
            endpoint,
            reference,
            follow,
            auth,
            token,
            http_user,
            secrets,
            dir: dir.to_path_buf(),
            lock: Mutex::new(()),
        };
        if source.endpoint.transport == Transport::Https
            && let Some(ca) = &source.auth.ca_file
        {
            trust_ca_file(ca)?;
        }
        source.open_store()?;
        Ok(source)
    }

    /// The URL without credentials, for logs and status.
    pub fn display_url(&self) -> &str {
        &self.endpoint.display
    }

    /// Fetches the followed ref and returns the full 40-hex SHA of the commit
    /// it points to (annotated tags peeled). Shallow (depth 1) except on the
    /// local transport; nothing is fetched when the remote's tip is already
    /// here. A pinned commit already here needs no network at all; otherwise
    /// it is fetched as an advertised tip, then directly by id (full SHAs),
    /// then with every head and tag. Does not touch the work tree.
    pub fn fetch(&self) -> Result<String, GitError> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.preflight()?;
        let repo = self.open_repo()?;
        let sha = match &self.follow {
            Follow::Rev(rev) => self.fetch_rev(&repo, rev)?,
            _ => self.fetch_ref(&repo)?,
        };
        tracing::debug!(url = %self.endpoint.display, reference = %self.reference, %sha, "fetched");
        Ok(sha)
    }
}
