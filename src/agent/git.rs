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

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Mutex, Once};

use base64::Engine as _;
use git2::build::CheckoutBuilder;
use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, Direction, ErrorClass, ErrorCode,
    FetchOptions, Oid, RemoteCallbacks, Repository,
};
use sha2::{Digest as _, Sha256};

use super::signing;

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
    #[error("invalid repository {value}: {reason}")]
    InvalidRepo { value: String, reason: String },
    /// `http://` or `git://` without `--allow-insecure-transport`.
    #[error(
        "refusing {url}: {scheme}:// is not encrypted nor authenticated, so anyone on the \
         network path can read the token and change what the agent applies as root; use an \
         https:// or ssh:// URL, or, if this network is trusted, pass \
         --allow-insecure-transport (or PLIMSOLL_ALLOW_INSECURE_TRANSPORT=true)"
    )]
    Insecure { url: String, scheme: &'static str },
    /// An unusable setting: a malformed `--rev`, a missing key or CA file.
    #[error("{0}")]
    Config(String),
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
    let invalid = |reason: String| GitError::InvalidRepo {
        value: redact_userinfo(value),
        reason,
    };
    if value.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    if value.contains("://") {
        parse_endpoint(value).map_err(invalid)?;
        return Ok(RepoKind::Git(value.to_string()));
    }
    let path = Path::new(value);
    if path.exists() {
        let abs = std::fs::canonicalize(path)
            .map_err(|e| invalid(format!("cannot resolve the path: {e}")))?;
        if !abs.is_dir() {
            return Err(invalid(
                "it is a file: give a directory (a config repository) or a git URL".into(),
            ));
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
        parse_endpoint(value).map_err(invalid)?;
        return Ok(RepoKind::Git(value.to_string()));
    }
    Err(invalid(
        "no such directory, and not a git URL (https://, ssh://, user@host:path, file://)".into(),
    ))
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

fn insecure_scheme(endpoint: &Endpoint) -> Option<&'static str> {
    match endpoint.transport {
        Transport::Http => Some("http"),
        Transport::Git => Some("git"),
        _ => None,
    }
}

/// A `file://` URL for an absolute path, percent-encoding what libgit2 would
/// otherwise misread.
fn file_url(abs: &Path) -> String {
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
fn is_scp_like(s: &str) -> bool {
    !s.contains("://")
        && s.split_once(':')
            .is_some_and(|(host, path)| !host.is_empty() && !host.contains('/') && !path.is_empty())
}

/// Replaces a URL's userinfo with `***@`, for error texts about values that
/// did not parse.
fn redact_userinfo(s: &str) -> String {
    if let Some((scheme, rest)) = s.split_once("://") {
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return format!("{scheme}://***@{}", &rest[at + 1..]);
        }
    }
    s.to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Https,
    Http,
    Ssh,
    /// `git://`: unauthenticated.
    Git,
    Local,
}

/// A parsed remote URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    transport: Transport,
    /// What libgit2 gets: never a password; for http(s) no user either
    /// (basic auth goes through the credentials callback).
    url: String,
    /// For logs and errors: no password, no http user (which may be a token).
    display: String,
    /// Percent-decoded user of the URL.
    user: Option<String>,
    /// Percent-decoded password of the URL (http(s): used as the token).
    password: Option<String>,
    host: String,
    port: Option<u16>,
}

fn parse_endpoint(url: &str) -> Result<Endpoint, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        // scp-like: [user@]host:path
        let (userhost, _) = url.split_once(':').ok_or_else(|| "not a URL".to_string())?;
        let (user, host) = match userhost.rfind('@') {
            Some(at) => (Some(pct_decode(&userhost[..at])), &userhost[at + 1..]),
            None => (None, userhost),
        };
        if host.is_empty() {
            return Err("no host before the ':'".into());
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
            return Err(format!(
                "unsupported URL scheme {other}://: use https://, http://, ssh://, file:// \
                 or user@host:path"
            ));
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
        return Err("the URL has no host".into());
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
fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("unclosed '[' in {s:?}"))?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(format!("unexpected {after:?} after the host")),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        Some("") | None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| format!("invalid port {p:?}"))?,
        ),
    };
    Ok((host.to_string(), port))
}

fn pct_decode(s: &str) -> String {
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
    host_key: Option<String>,
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
            reason,
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
                    return Err(GitError::Config(format!(
                        "--rev wants a commit SHA (4 to 40 hex digits), got {r:?}: follow a \
                         name with --branch or --tag"
                    )));
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

    /// Materialises the tree of commit `sha` (any commit fetched before) into
    /// `<dir>/worktree` (forced: files deleted in the commit disappear, stray
    /// files too), records it, and returns that path.
    pub fn checkout(&self, sha: &str) -> Result<PathBuf, GitError> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let repo = self.open_repo()?;
        let not_fetched = || GitError::NotFetched {
            url: self.endpoint.display.clone(),
            sha: sha.to_string(),
            path: self.repo_path(),
        };
        if sha.len() < 4 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_fetched());
        }
        let commit = repo
            .find_object_by_prefix(sha, None)
            .and_then(|o| o.peel_to_commit())
            .map_err(|_| not_fetched())?;
        let worktree = self.worktree_path();
        std::fs::create_dir_all(&worktree).map_err(|e| self.io_err(&worktree, "create", e))?;
        repo.set_workdir(&worktree, false)
            .map_err(|e| self.store_err("set the work tree", e))?;
        if let Ok(mut r) = repo.find_reference(CHECKOUT_REF) {
            r.delete()
                .map_err(|e| self.store_err("clear the checkout record", e))?;
        }
        let mut opts = CheckoutBuilder::new();
        opts.force()
            .remove_untracked(true)
            .remove_ignored(true)
            .recreate_missing(true);
        repo.checkout_tree(commit.as_object(), Some(&mut opts))
            .map_err(|e| self.store_err(&format!("check out {}", commit.id()), e))?;
        repo.set_head_detached(commit.id())
            .map_err(|e| self.store_err("record HEAD", e))?;
        repo.reference(CHECKOUT_REF, commit.id(), true, "plimsoll checkout")
            .map_err(|e| self.store_err("record the checkout", e))?;
        tracing::debug!(url = %self.endpoint.display, sha = %commit.id(), "checked out");
        Ok(worktree)
    }

    /// The SHA currently in the work tree (survives a restart), if any.
    pub fn checked_out(&self) -> Option<String> {
        if !self.worktree_path().is_dir() {
            return None;
        }
        let repo = Repository::open_bare(self.repo_path()).ok()?;
        let r = repo.find_reference(CHECKOUT_REF).ok()?;
        r.target().map(|o| o.to_string())
    }

    /// The signature (`gpgsig` header) of a fetched commit, the data it
    /// signs and the committer's time.
    pub fn commit_signature(&self, sha: &str) -> Result<signing::CommitSignature, GitError> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let repo = self.open_repo()?;
        let not_fetched = || GitError::NotFetched {
            url: self.endpoint.display.clone(),
            sha: sha.to_string(),
            path: self.repo_path(),
        };
        let oid = Oid::from_str(sha).map_err(|_| not_fetched())?;
        let commit = repo.find_commit(oid).map_err(|_| not_fetched())?;
        let committer_time = commit.committer().when().seconds();
        match repo.extract_signature(&oid, None) {
            Ok((signature, data)) => Ok(signing::CommitSignature {
                signature: Some(signature.to_vec()),
                signed_data: data.to_vec(),
                committer_time,
            }),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(signing::CommitSignature {
                signature: None,
                signed_data: Vec::new(),
                committer_time,
            }),
            Err(e) => Err(self.store_err(&format!("read the signature of {sha}"), e)),
        }
    }

    /// With trusted keys (`--allowed-signers`, `--trusted-keys`): Ok(Some(who
    /// signed)) when commit `sha`'s signature verifies, Err(why) when it does
    /// not (the revision is to be rejected). Ok(None) without trusted keys.
    pub fn verify_commit(&self, sha: &str) -> Result<Option<String>, GitError> {
        let Some(trust) = &self.auth.trust else {
            return Ok(None);
        };
        let commit = self.commit_signature(sha)?;
        Ok(Some(trust.verify(sha, &commit).map_err(Box::new)?))
    }

    fn repo_path(&self) -> PathBuf {
        self.dir.join("repo")
    }

    fn worktree_path(&self) -> PathBuf {
        self.dir.join("worktree")
    }

    fn is_local(&self) -> bool {
        self.endpoint.transport == Transport::Local
    }

    /// Opens the clone, re-initialising it when it clones another URL or is
    /// unreadable.
    fn open_store(&self) -> Result<(), GitError> {
        let repo_path = self.repo_path();
        std::fs::create_dir_all(&self.dir).map_err(|e| self.io_err(&self.dir, "create", e))?;
        if repo_path.exists() {
            let reason = match Repository::open_bare(&repo_path) {
                Ok(repo) => {
                    let url = repo.config().and_then(|c| c.get_string(URL_KEY)).ok();
                    if url.as_deref() == Some(self.endpoint.url.as_str()) {
                        return Ok(());
                    }
                    format!(
                        "it cloned {}",
                        url.as_deref()
                            .map(|u| parse_endpoint(u)
                                .map_or_else(|_| redact_userinfo(u), |e| e.display))
                            .unwrap_or_else(|| "an unknown URL".into())
                    )
                }
                Err(e) => format!("it cannot be opened: {}", e.message()),
            };
            tracing::info!(
                url = %self.endpoint.display,
                path = %repo_path.display(),
                "re-initialising the local clone: {reason}"
            );
            for p in [repo_path.clone(), self.worktree_path()] {
                if p.exists() {
                    std::fs::remove_dir_all(&p).map_err(|e| self.io_err(&p, "remove", e))?;
                }
            }
        }
        let repo =
            Repository::init_bare(&repo_path).map_err(|e| self.store_err("create the clone", e))?;
        repo.config()
            .and_then(|mut c| c.set_str(URL_KEY, &self.endpoint.url))
            .map_err(|e| self.store_err("record the URL", e))?;
        Ok(())
    }

    fn open_repo(&self) -> Result<Repository, GitError> {
        Repository::open_bare(self.repo_path()).map_err(|e| self.store_err("open", e))
    }

    /// Local checks before connecting: a configured ssh key must be readable.
    fn preflight(&self) -> Result<(), GitError> {
        if self.endpoint.transport == Transport::Ssh
            && let Some(key) = &self.auth.ssh_key
            && let Err(e) = std::fs::File::open(key)
        {
            return Err(GitError::Config(format!(
                "cannot read the ssh key file {} for {}: {e}",
                key.display(),
                self.endpoint.display
            )));
        }
        Ok(())
    }

    /// Default, branch or tag: list the remote's refs, fetch the wanted one
    /// unless its object is already here.
    fn fetch_ref(&self, repo: &Repository) -> Result<String, GitError> {
        let session = Shared::default();
        let mut remote = repo
            .remote_anonymous(&self.endpoint.url)
            .map_err(|e| self.store_err("create a remote", e))?;
        let mut conn = remote
            .connect_auth(Direction::Fetch, Some(self.callbacks(&session)), None)
            .map_err(|e| self.remote_err(e, &session))?;
        let adverts = advertised(conn.list().map_err(|e| self.remote_err(e, &session))?);
        let default_branch = conn
            .default_branch()
            .ok()
            .and_then(|b| b.as_str().ok().map(str::to_string));
        let (src, oid) = self.wanted(&adverts, default_branch.as_deref())?;
        if repo.find_object(oid, None).is_err() {
            session.borrow_mut().attempts = 0;
            let mut fo = self.fetch_options(&session, self.shallow_depth());
            conn.remote()
                .fetch(&[format!("+{src}:{FETCHED_REF}")], Some(&mut fo), None)
                .map_err(|e| self.remote_err(e, &session))?;
        }
        drop(conn);
        self.record_fetched(repo, oid)?;
        let commit = repo
            .find_object(oid, None)
            .and_then(|o| o.peel_to_commit())
            .map_err(|e| GitError::Remote {
                url: self.endpoint.display.clone(),
                detail: format!(
                    "{} ({oid}) does not point to a commit: {}",
                    self.reference,
                    e.message()
                ),
            })?;
        Ok(commit.id().to_string())
    }

    /// The ref to fetch and its advertised id.
    fn wanted(
        &self,
        adverts: &[(String, Oid)],
        default_branch: Option<&str>,
    ) -> Result<(String, Oid), GitError> {
        let find = |name: &str| adverts.iter().find(|(n, _)| n == name).map(|(_, o)| *o);
        let not_found = |what: String, hint: String| GitError::RefNotFound {
            url: self.endpoint.display.clone(),
            what,
            hint,
        };
        match &self.follow {
            Follow::Named { full, kind, given } => {
                find(full).map(|o| (full.clone(), o)).ok_or_else(|| {
                    let prefix = if *kind == "tag" {
                        "refs/tags/"
                    } else {
                        "refs/heads/"
                    };
                    let names: Vec<&str> = adverts
                        .iter()
                        .filter_map(|(n, _)| n.strip_prefix(prefix))
                        .filter(|n| !n.ends_with("^{}"))
                        .collect();
                    let hint = if names.is_empty() {
                        format!(": the remote has no {kind}s")
                    } else {
                        let shown: Vec<&str> = names.iter().take(10).copied().collect();
                        format!(
                            ": check the {kind} name; the remote has {}{}",
                            shown.join(", "),
                            if names.len() > shown.len() {
                                ", …"
                            } else {
                                ""
                            }
                        )
                    };
                    not_found(format!("{kind} {given:?}"), hint)
                })
            }
            Follow::Default => {
                if let Some(b) = default_branch
                    && let Some(o) = find(b)
                {
                    return Ok((b.to_string(), o));
                }
                find("HEAD")
                    .map(|o| ("HEAD".to_string(), o))
                    .ok_or_else(|| {
                        not_found(
                            "the default branch (HEAD)".into(),
                            ": is the repository empty? push a commit, or follow a branch".into(),
                        )
                    })
            }
            Follow::Rev(rev) => Err(not_found(format!("commit {rev}"), String::new())),
        }
    }

    /// A pinned commit: here already, else an advertised tip, else by id,
    /// else every head and tag.
    fn fetch_rev(&self, repo: &Repository, rev: &str) -> Result<String, GitError> {
        if let Some(sha) = self.local_commit(repo, rev)? {
            self.record_fetched(repo, Oid::from_str(&sha).expect("a commit id"))?;
            return Ok(sha);
        }
        let session = Shared::default();
        {
            let mut remote = repo
                .remote_anonymous(&self.endpoint.url)
                .map_err(|e| self.store_err("create a remote", e))?;
            let mut conn = remote
                .connect_auth(Direction::Fetch, Some(self.callbacks(&session)), None)
                .map_err(|e| self.remote_err(e, &session))?;
            let adverts = advertised(conn.list().map_err(|e| self.remote_err(e, &session))?);
            let tip = adverts
                .iter()
                .find(|(_, o)| o.to_string().starts_with(rev))
                .map(|(n, _)| n.trim_end_matches("^{}").to_string());
            if let Some(name) = tip {
                session.borrow_mut().attempts = 0;
                let mut fo = self.fetch_options(&session, self.shallow_depth());
                conn.remote()
                    .fetch(&[format!("+{name}:{FETCHED_REF}")], Some(&mut fo), None)
                    .map_err(|e| self.remote_err(e, &session))?;
                if let Some(sha) = self.local_commit(repo, rev)? {
                    return self.record_rev(repo, sha);
                }
            }
        }
        if rev.len() == 40 {
            // Servers that allow it (uploadpack.allowAnySHA1InWant, GitHub,
            // GitLab) give a commit by id; others refuse ("not our ref").
            let session = Shared::default();
            let mut remote = repo
                .remote_anonymous(&self.endpoint.url)
                .map_err(|e| self.store_err("create a remote", e))?;
            let mut fo = self.fetch_options(&session, self.shallow_depth());
            match remote.fetch(&[format!("+{rev}:{FETCHED_REF}")], Some(&mut fo), None) {
                Ok(()) => {
                    if let Some(sha) = self.local_commit(repo, rev)? {
                        return self.record_rev(repo, sha);
                    }
                }
                Err(e) => match self.remote_err(e, &session) {
                    GitError::Remote { detail, .. } => {
                        tracing::debug!(url = %self.endpoint.display, %rev, %detail,
                            "fetching the commit by id failed; fetching every head and tag");
                    }
                    other => return Err(other),
                },
            }
        }
        let session = Shared::default();
        let mut remote = repo
            .remote_anonymous(&self.endpoint.url)
            .map_err(|e| self.store_err("create a remote", e))?;
        let depth = if self.is_local() {
            None
        } else if repo.is_shallow() {
            // libgit2's GIT_FETCH_DEPTH_UNSHALLOW.
            Some(i32::MAX)
        } else {
            Some(0)
        };
        let mut fo = self.fetch_options(&session, depth);
        let specs = [
            format!("+refs/heads/*:{ALL_REFS}heads/*"),
            format!("+refs/tags/*:{ALL_REFS}tags/*"),
        ];
        let fetched = remote
            .fetch(&specs, Some(&mut fo), None)
            .map_err(|e| self.remote_err(e, &session));
        let found = match fetched {
            Ok(()) => self.local_commit(repo, rev),
            Err(e) => Err(e),
        };
        if let Ok(refs) = repo.references_glob(&format!("{ALL_REFS}*")) {
            for mut r in refs.flatten() {
                let _ = r.delete();
            }
        }
        match found? {
            Some(sha) => self.record_rev(repo, sha),
            None => Err(GitError::CommitNotFound {
                url: self.endpoint.display.clone(),
                rev: rev.to_string(),
            }),
        }
    }

    fn record_rev(&self, repo: &Repository, sha: String) -> Result<String, GitError> {
        self.record_fetched(repo, Oid::from_str(&sha).expect("a commit id"))?;
        Ok(sha)
    }

    /// The commit a SHA prefix names in the clone, if it is here.
    fn local_commit(&self, repo: &Repository, rev: &str) -> Result<Option<String>, GitError> {
        match repo.find_object_by_prefix(rev, None) {
            Ok(o) => Ok(o.peel_to_commit().ok().map(|c| c.id().to_string())),
            Err(e) if e.code() == ErrorCode::Ambiguous => Err(GitError::Config(format!(
                "--rev {rev} is ambiguous in {}: give more hex digits",
                self.endpoint.display
            ))),
            Err(_) => Ok(None),
        }
    }

    fn record_fetched(&self, repo: &Repository, oid: Oid) -> Result<(), GitError> {
        repo.reference(FETCHED_REF, oid, true, "plimsoll fetch")
            .map(|_| ())
            .map_err(|e| self.store_err("record the fetched commit", e))
    }

    fn shallow_depth(&self) -> Option<i32> {
        (!self.is_local()).then_some(1)
    }

    fn fetch_options<'a>(&'a self, session: &Shared, depth: Option<i32>) -> FetchOptions<'a> {
        let mut fo = FetchOptions::new();
        fo.remote_callbacks(self.callbacks(session))
            .download_tags(AutotagOption::None)
            .update_fetchhead(false);
        if let Some(d) = depth {
            fo.depth(d);
        }
        fo
    }

    fn callbacks<'a>(&'a self, session: &Shared) -> RemoteCallbacks<'a> {
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

    fn credential(
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
    fn verify_host_key(&self, hostkey: &git2::cert::CertHostkey<'_>) -> Result<(), String> {
        let key = hostkey
            .hostkey()
            .ok_or_else(|| "the ssh library did not give the raw host key".to_string())?;
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
            return Err(format!(
                "{offered}, but no known_hosts file is configured and plimsoll never trusts an \
                 unknown ssh host: check that fingerprint with the server's administrator, then \
                 put the output of `{}` in a known_hosts file and pass it with --known-hosts",
                keyscan(None)
            ));
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "{offered}, but the known_hosts file {} cannot be read ({e}): create it with \
                 the output of `{}` after checking the fingerprint",
                path.display(),
                keyscan(None)
            )
        })?;
        let entries = parse_known_hosts(&text);
        match check_host_key(&entries, host, port, key) {
            Verdict::Trusted => Ok(()),
            Verdict::Revoked { line } => Err(format!(
                "{offered}, which {}:{line} marks as @revoked: do not connect; ask the \
                 server's administrator",
                path.display()
            )),
            Verdict::Changed { lines, types } if types.contains(&key_type) => Err(format!(
                "the host key of {name} has CHANGED: it offered the key {key_type} {fp}, but \
                     {} lists a different key for it (line {}). Someone may be intercepting the \
                     connection (man-in-the-middle), or the server's key was replaced: check the \
                     new fingerprint with the server's administrator, and only then replace \
                     that line with the output of `{}`",
                path.display(),
                join_numbers(&lines),
                keyscan(Some(&key_type))
            )),
            Verdict::Changed { lines, types } => Err(format!(
                "{offered}, but {} lists only {} keys for it (line {}): check that fingerprint \
                 with the server's administrator, then add the output of `{}`",
                path.display(),
                types.join(", "),
                join_numbers(&lines),
                keyscan(Some(&key_type))
            )),
            Verdict::Unknown => Err(format!(
                "{offered}, but {name} is not in the known_hosts file {}: check that \
                 fingerprint with the server's administrator, then add the output of `{}` to \
                 that file",
                path.display(),
                keyscan(None)
            )),
        }
    }

    /// A libgit2 error of a remote operation → [`GitError`], using what the
    /// callbacks saw.
    fn remote_err(&self, e: git2::Error, session: &Shared) -> GitError {
        let s = session.borrow();
        let url = self.endpoint.display.clone();
        let msg = self.scrub(e.message());
        let lower = msg.to_ascii_lowercase();
        let ssh = self.endpoint.transport == Transport::Ssh;
        if let Some(why) = &s.host_key {
            return GitError::HostKey {
                url,
                detail: self.scrub(why),
            };
        }
        if let Some(other) = &s.foreign {
            return GitError::Auth {
                url,
                detail: format!(
                    "{other} asked for credentials (the server redirected there), and plimsoll \
                     gives them only to {}: use the URL the repository really lives at",
                    server_name(&self.endpoint)
                ),
            };
        }
        if let Some(what) = s.missing {
            let detail = if ssh {
                format!(
                    "the server asks for {what} for user {:?}, but none is configured: pass an \
                     unencrypted private key whose public key the server authorizes with --ssh-key",
                    s.user.as_deref().unwrap_or(DEFAULT_SSH_USER)
                )
            } else {
                format!(
                    "the server asks for {what} (HTTP 401), but none is configured: pass a token \
                     that may read this repository with --git-token-file (or PLIMSOLL_GIT_TOKEN)"
                )
            };
            return GitError::Auth { url, detail };
        }
        if s.rejected || e.code() == ErrorCode::Auth || lower.contains("status code: 401") {
            let user = s
                .user
                .clone()
                .unwrap_or_else(|| DEFAULT_SSH_USER.to_string());
            let detail = if ssh {
                format!(
                    "the server rejected the ssh key {} for user {user:?}: check the key, and \
                     that its public key is authorized on the server for that user (a deploy \
                     key with read access)",
                    self.auth
                        .ssh_key
                        .as_deref()
                        .map_or_else(|| "(none)".into(), |p| p.display().to_string())
                )
            } else {
                // No user: an https user is often the token itself.
                "the server rejected the token (HTTP 401): check the token (of \
                 --git-token-file, or the user and password of the URL), that it has not \
                 expired or been revoked, and that it may read this repository"
                    .to_string()
            };
            return GitError::Auth { url, detail };
        }
        if lower.contains("status code: 403") {
            return GitError::Auth {
                url,
                detail: "the server refused access (HTTP 403): check the token, and that it \
                         may read this repository"
                    .into(),
            };
        }
        if ssh && lower.contains("private key") {
            return GitError::Auth {
                url,
                detail: format!(
                    "cannot use the ssh key {}: {msg} (it must be an unencrypted private key)",
                    self.auth
                        .ssh_key
                        .as_deref()
                        .map_or_else(|| "(none)".into(), |p| p.display().to_string())
                ),
            };
        }
        if self.endpoint.transport == Transport::Https
            && (e.code() == ErrorCode::Certificate
                || e.class() == ErrorClass::Ssl
                || lower.contains("ssl error"))
        {
            let extra = match &self.auth.ca_file {
                Some(ca) => format!(" (the CA file {} does not sign it either)", ca.display()),
                None => String::new(),
            };
            let detail = if lower.contains("certificate is invalid") {
                format!(
                    "the server's certificate is not signed by a CA this host trusts{extra}: if \
                     the server uses an internal CA, pass that CA's PEM bundle \
                     with --ca-file"
                )
            } else if lower.contains("hostname does not match") {
                "the certificate is not valid for this host name: use the name the \
                 certificate was issued for"
                    .to_string()
            } else {
                format!(
                    "{msg}{extra}: check the server's TLS setup, or pass the CA \
                     bundle that signs its certificate with --ca-file"
                )
            };
            return GitError::Tls { url, detail };
        }
        if looks_unreachable(&e, &lower) {
            return GitError::Unreachable { url, detail: msg };
        }
        if lower.contains("status code: 404") {
            return GitError::Remote {
                url,
                detail: "the server has no repository at this URL (HTTP 404): check the URL".into(),
            };
        }
        if e.code() == ErrorCode::Owner || msg.contains("not owned by current user") {
            return GitError::Remote {
                url,
                detail: format!(
                    "{msg}: run the agent as the owner of that repository, or add its path to \
                     safe.directory in the agent's global git config"
                ),
            };
        }
        GitError::Remote {
            url,
            detail: format!("{msg} (check the URL and that it is a git repository)"),
        }
    }

    /// Removes every credential (see `secrets`) from a text.
    fn scrub(&self, text: &str) -> String {
        scrub_with(&self.secrets, text)
    }

    fn store_err(&self, what: &str, source: git2::Error) -> GitError {
        GitError::Store {
            url: self.endpoint.display.clone(),
            path: self.dir.clone(),
            what: what.to_string(),
            source,
        }
    }

    fn io_err(&self, path: &Path, what: &str, source: std::io::Error) -> GitError {
        GitError::Io {
            url: self.endpoint.display.clone(),
            path: path.to_path_buf(),
            what: what.to_string(),
            source,
        }
    }
}

/// The credentials of a remote, as they may appear in a text: the token,
/// the URL's password and (http(s)) user, raw and percent-encoded, and the
/// basic-auth encoding. An http(s) user shorter than 4 characters is left
/// out (a name such as `git` is no secret, and scrubbing it would garble
/// messages); messages never name the http user.
fn secrets_of(
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
fn scrub_with(secrets: &[String], text: &str) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
    }
    out
}

/// `scheme://host:port` of an endpoint (no user), for messages.
fn server_name(e: &Endpoint) -> String {
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

fn effective_port(e: &Endpoint) -> u16 {
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
fn same_server(configured: &Endpoint, url: &str) -> bool {
    let Ok(asked) = parse_endpoint(url) else {
        return false;
    };
    asked.transport == configured.transport
        && asked.host.eq_ignore_ascii_case(&configured.host)
        && effective_port(&asked) == effective_port(configured)
}

/// The advertised refs of a connection, as (name, id).
fn advertised(heads: &[git2::RemoteHead<'_>]) -> Vec<(String, Oid)> {
    heads
        .iter()
        .map(|h| (h.name().to_string(), h.oid()))
        .collect()
}

/// Network-level failures (retried by the agent).
fn looks_unreachable(e: &git2::Error, lower: &str) -> bool {
    const NETWORK: &[&str] = &[
        "failed to connect",
        "failed to resolve",
        "timed out",
        "connection refused",
        "connection reset",
        "network is unreachable",
        "no route to host",
        "early eof",
        "error receiving data",
        "error sending data",
        "could not read from socket",
        "could not write to socket",
        "broken pipe",
        "status code: 502",
        "status code: 503",
        "status code: 504",
    ];
    e.code() == ErrorCode::Timeout
        || (matches!(
            e.class(),
            ErrorClass::Net | ErrorClass::Os | ErrorClass::Ssh | ErrorClass::Http
        ) && NETWORK.iter().any(|n| lower.contains(n)))
}

fn join_numbers(n: &[usize]) -> String {
    n.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sets libgit2's connect and socket timeouts, once per process.
fn set_global_timeouts() {
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
fn trust_ca_file(path: &Path) -> Result<(), GitError> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = std::fs::File::open(path) {
        return Err(GitError::Config(format!(
            "cannot read the CA file {}: {e}",
            path.display()
        )));
    }
    // SAFETY: libgit2 adds the file to its OpenSSL context's certificate
    // store under OpenSSL's own store lock; calls are serialised here.
    unsafe { git2::opts::set_ssl_cert_file(path.to_path_buf()) }.map_err(|e| {
        GitError::Config(format!(
            "cannot load the CA file {} (it must hold PEM certificates): {}",
            path.display(),
            e.message()
        ))
    })
}

// ---------------------------------------------------------------------------
// known_hosts

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Hosts {
    /// Comma-separated patterns (`*`, `?`, `!negation`, `[host]:port`).
    Patterns(String),
    /// `|1|salt|hash`: HMAC-SHA1 of the host name keyed with the salt.
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
}

/// One usable line of a known_hosts file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostEntry {
    /// 1-based line number.
    line: usize,
    marker: Marker,
    hosts: Hosts,
    key_type: String,
    /// The SSH wire-format key blob (the base64 field, decoded).
    key: Vec<u8>,
}

/// Parses an OpenSSH known_hosts file. Comments, blank and malformed lines
/// and `@cert-authority` lines (host certificates are not supported) are
/// skipped, as OpenSSH skips what it cannot use.
fn parse_known_hosts(text: &str) -> Vec<HostEntry> {
    let b64 = &base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace().peekable();
        let marker = match fields.peek() {
            Some(&"@revoked") => {
                fields.next();
                Marker::Revoked
            }
            Some(m) if m.starts_with('@') => continue,
            _ => Marker::None,
        };
        let (Some(hosts), Some(key_type), Some(key)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(key) = b64.decode(key) else { continue };
        let hosts = if let Some(rest) = hosts.strip_prefix("|1|") {
            let Some((salt, hash)) = rest.split_once('|') else {
                continue;
            };
            let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else {
                continue;
            };
            Hosts::Hashed { salt, hash }
        } else {
            Hosts::Patterns(hosts.to_ascii_lowercase())
        };
        out.push(HostEntry {
            line: i + 1,
            marker,
            hosts,
            key_type: key_type.to_string(),
            key,
        });
    }
    out
}

/// The name OpenSSH looks up: `host` on port 22, `[host]:port` otherwise.
fn known_hosts_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

impl HostEntry {
    fn matches(&self, name: &str) -> bool {
        match &self.hosts {
            Hosts::Hashed { salt, hash } => hmac_sha1(salt, name.as_bytes()).as_slice() == hash,
            Hosts::Patterns(list) => {
                let mut hit = false;
                for pattern in list.split(',') {
                    let (negated, pattern) = match pattern.strip_prefix('!') {
                        Some(p) => (true, p),
                        None => (false, pattern),
                    };
                    if wildcard_match(pattern.as_bytes(), name.as_bytes()) {
                        if negated {
                            return false;
                        }
                        hit = true;
                    }
                }
                hit
            }
        }
    }
}

/// `*` and `?` globbing, as in OpenSSH's `match_pattern`.
pub(super) fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Trusted,
    Revoked {
        line: usize,
    },
    /// The host is listed, but not with this key: the lines, and the key
    /// types they list.
    Changed {
        lines: Vec<usize>,
        types: Vec<String>,
    },
    Unknown,
}

fn check_host_key(entries: &[HostEntry], host: &str, port: u16, key: &[u8]) -> Verdict {
    let name = known_hosts_name(host, port);
    let matching: Vec<&HostEntry> = entries.iter().filter(|e| e.matches(&name)).collect();
    if let Some(e) = matching
        .iter()
        .find(|e| e.marker == Marker::Revoked && e.key == key)
    {
        return Verdict::Revoked { line: e.line };
    }
    let listed: Vec<&&HostEntry> = matching
        .iter()
        .filter(|e| e.marker == Marker::None)
        .collect();
    if listed.iter().any(|e| e.key == key) {
        return Verdict::Trusted;
    }
    if listed.is_empty() {
        return Verdict::Unknown;
    }
    let mut types: Vec<String> = listed.iter().map(|e| e.key_type.clone()).collect();
    types.dedup();
    Verdict::Changed {
        lines: listed.iter().map(|e| e.line).collect(),
        types,
    }
}

/// The key type named at the start of an SSH key blob (`ssh-ed25519`, …).
fn key_type_name(blob: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let name = blob.get(4..4 + len)?;
    std::str::from_utf8(name).ok().map(str::to_string)
}

/// OpenSSH's fingerprint: `SHA256:` and the unpadded base64 of the blob's
/// SHA-256.
fn fingerprint(blob: &[u8]) -> String {
    let digest = Sha256::digest(blob);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest.as_slice())
    )
}

/// SHA-1 (FIPS 180-4), only for HMAC-SHA1 of hashed known_hosts names (no
/// SHA-1 crate is a dependency; this is the one use).
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for chunk in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in chunk.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (hv, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *hv = hv.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (o, v) in out.chunks_exact_mut(4).zip(h) {
        o.copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// HMAC-SHA1 (RFC 2104).
fn hmac_sha1(key: &[u8], msg: &[u8]) -> [u8; 20] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..20].copy_from_slice(&sha1(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(msg);
    let mut outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    outer.extend_from_slice(&sha1(&inner));
    sha1(&outer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIPcSfbJ6RT+DAhG3rlcbpzlTbFu8A58WGoVl+aRD3qQc";
    const OTHER_ED25519: &str =
        "AAAAC3NzaC1lZDI1NTE5AAAAICwKnoaIW4W2UTt/Tqee4CmepCX4GU/cm1l8Q7aXWBoC";

    fn blob(b64: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    }

    /// `check(known_hosts, host, port, key, expected)`.
    fn check(known_hosts: &str, host: &str, port: u16, key: &str, expected: Verdict) {
        let entries = parse_known_hosts(known_hosts);
        assert_eq!(
            check_host_key(&entries, host, port, &blob(key)),
            expected,
            "{host}:{port} against\n{known_hosts}"
        );
    }

    #[test]
    fn sha1_and_hmac_match_the_reference_vectors() {
        assert_eq!(
            hex::encode(sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex::encode(sha1(b"")),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        assert_eq!(
            hex::encode(sha1(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        // RFC 2202, test cases 1, 2 and 6 (a key longer than a block).
        assert_eq!(
            hex::encode(hmac_sha1(&[0x0b; 20], b"Hi There")),
            "b617318655057264e28bc0b6fb378c8ef146be00"
        );
        assert_eq!(
            hex::encode(hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(
            hex::encode(hmac_sha1(
                &[0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "aa4ae5e15272d00e95705637ce8a3b55ed402112"
        );
    }

    #[test]
    fn fingerprint_and_key_type_match_ssh_keygen() {
        // `ssh-keygen -lf` printed this for the key.
        assert_eq!(
            fingerprint(&blob(ED25519)),
            "SHA256:QmtQUJH2PvmVitBxqGSL4yVFs7lOK16GqbR/nrgnV1c"
        );
        assert_eq!(
            key_type_name(&blob(ED25519)).as_deref(),
            Some("ssh-ed25519")
        );
        assert_eq!(key_type_name(b"\0\0"), None);
    }

    #[test]
    fn plain_entries_match_host_and_bracketed_port() {
        let kh = format!(
            "# comment\n\n\
             [127.0.0.1]:2222 ssh-ed25519 {ED25519}\n\
             example.com,Git.Example.org ssh-ed25519 {ED25519} c\n"
        );
        check(&kh, "127.0.0.1", 2222, ED25519, Verdict::Trusted);
        check(&kh, "example.com", 22, ED25519, Verdict::Trusted);
        check(&kh, "git.example.ORG", 22, ED25519, Verdict::Trusted);
        // The port is part of the name: 127.0.0.1 on 22 or 2223 is unknown.
        check(&kh, "127.0.0.1", 22, ED25519, Verdict::Unknown);
        check(&kh, "127.0.0.1", 2223, ED25519, Verdict::Unknown);
        check(&kh, "example.com", 2222, ED25519, Verdict::Unknown);
        check(
            &kh,
            "127.0.0.1",
            2222,
            OTHER_ED25519,
            Verdict::Changed {
                lines: vec![3],
                types: vec!["ssh-ed25519".into()],
            },
        );
    }

    #[test]
    fn hashed_entries_from_ssh_keygen_match() {
        // `ssh-keygen -H` output for "[127.0.0.1]:2222" and "example.com".
        let kh = format!(
            "|1|kcFZts/R9luDOEPbP1Ki8/e/9LI=|gc1DYFFoT73hJ2ch6SzPI/zJxao= ssh-ed25519 {ED25519}\n\
             |1|UtJfFH7lT7W05J/zlxuZ1T8ao3g=|mPyPj8zau+fdxXoL540JYadS2u4= ssh-ed25519 {ED25519}\n"
        );
        check(&kh, "127.0.0.1", 2222, ED25519, Verdict::Trusted);
        check(&kh, "EXAMPLE.com", 22, ED25519, Verdict::Trusted);
        check(&kh, "example.org", 22, ED25519, Verdict::Unknown);
        check(&kh, "127.0.0.1", 22, ED25519, Verdict::Unknown);
        check(
            &kh,
            "example.com",
            22,
            OTHER_ED25519,
            Verdict::Changed {
                lines: vec![2],
                types: vec!["ssh-ed25519".into()],
            },
        );
    }

    #[test]
    fn wildcards_negations_revocations_and_other_types() {
        let kh = format!(
            "*.example.com,!bad.example.com ssh-ed25519 {ED25519}\n\
             @revoked *.example.com ssh-ed25519 {OTHER_ED25519}\n\
             @cert-authority *.example.com ssh-ed25519 {OTHER_ED25519}\n\
             rsa.example.org ssh-rsa {ED25519}\n\
             garbage line\n\
             bad64 ssh-ed25519 !!!\n\
             [git?.example.net]:* ssh-ed25519 {ED25519}\n"
        );
        check(&kh, "git.example.com", 22, ED25519, Verdict::Trusted);
        check(&kh, "bad.example.com", 22, ED25519, Verdict::Unknown);
        check(
            &kh,
            "git.example.com",
            22,
            OTHER_ED25519,
            Verdict::Revoked { line: 2 },
        );
        check(&kh, "git1.example.net", 2200, ED25519, Verdict::Trusted);
        check(&kh, "git12.example.net", 2200, ED25519, Verdict::Unknown);
        check(
            &kh,
            "rsa.example.org",
            22,
            OTHER_ED25519,
            Verdict::Changed {
                lines: vec![4],
                types: vec!["ssh-rsa".into()],
            },
        );
        assert_eq!(parse_known_hosts(&kh).len(), 4);
    }

    #[test]
    fn wildcard_match_cases() {
        for (p, t, want) in [
            ("*", "anything", true),
            ("a*c", "abbbc", true),
            ("a*c", "abbbd", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*.x.com", "a.b.x.com", true),
            ("", "", true),
            ("", "a", false),
            ("**", "", true),
        ] {
            assert_eq!(
                wildcard_match(p.as_bytes(), t.as_bytes()),
                want,
                "{p} ~ {t}"
            );
        }
    }

    #[test]
    fn urls_lose_their_credentials() {
        let e =
            parse_endpoint("https://alice:s3cret%21@git.example.com:8443/team/cfg.git").unwrap();
        assert_eq!(e.transport, Transport::Https);
        assert_eq!(e.url, "https://git.example.com:8443/team/cfg.git");
        assert_eq!(e.display, "https://git.example.com:8443/team/cfg.git");
        assert_eq!(e.user.as_deref(), Some("alice"));
        assert_eq!(e.password.as_deref(), Some("s3cret!"));
        assert_eq!((e.host.as_str(), e.port), ("git.example.com", Some(8443)));

        let e = parse_endpoint("https://ghp_tokenasuser@github.com/o/r").unwrap();
        assert_eq!(e.display, "https://github.com/o/r");
        assert_eq!(e.user.as_deref(), Some("ghp_tokenasuser"));

        let e = parse_endpoint("ssh://git:pw@[::1]:2222/srv/r.git").unwrap();
        assert_eq!(e.transport, Transport::Ssh);
        assert_eq!(e.url, "ssh://git@[::1]:2222/srv/r.git");
        assert_eq!(e.display, e.url);
        assert_eq!((e.host.as_str(), e.port), ("::1", Some(2222)));

        let e = parse_endpoint("git@github.com:o/r.git").unwrap();
        assert_eq!(e.transport, Transport::Ssh);
        assert_eq!(e.display, "git@github.com:o/r.git");
        assert_eq!((e.host.as_str(), e.port), ("github.com", None));
        assert_eq!(e.user.as_deref(), Some("git"));

        let e = parse_endpoint("file:///srv/repo").unwrap();
        assert_eq!(
            (e.transport, e.url.as_str()),
            (Transport::Local, "file:///srv/repo")
        );

        assert!(parse_endpoint("ftp://x/y").unwrap_err().contains("ftp://"));
        assert!(parse_endpoint("https://h:notaport/").is_err());
        assert!(parse_endpoint("https:///path").is_err());
        assert_eq!(redact_userinfo("bogus://u:secret@h/x"), "bogus://***@h/x");
        assert_eq!(pct_decode("a%2Fb%zz%4"), "a/b%zz%4");
    }

    #[test]
    fn classify_urls_paths_and_directories() {
        for url in [
            "https://example.com/r.git",
            "http://example.com/r.git",
            "ssh://git@example.com/r.git",
            "git@example.com:team/r.git",
            "file:///srv/r.git",
        ] {
            assert_eq!(classify(url).unwrap(), RepoKind::Git(url.into()), "{url}");
        }
        let tmp = tempfile::tempdir().unwrap();
        let plain = tmp.path().join("plain dir");
        std::fs::create_dir(&plain).unwrap();
        let plain = plain.canonicalize().unwrap();
        assert_eq!(
            classify(plain.to_str().unwrap()).unwrap(),
            RepoKind::Directory(plain.clone())
        );
        let work = tmp.path().join("work");
        Repository::init(&work).unwrap();
        let bare = tmp.path().join("bare.git");
        Repository::init_bare(&bare).unwrap();
        for repo in [&work, &bare] {
            let abs = repo.canonicalize().unwrap();
            assert_eq!(
                classify(repo.to_str().unwrap()).unwrap(),
                RepoKind::Git(format!("file://{}", abs.display())),
            );
        }
        assert_eq!(file_url(Path::new("/a b/%c")), "file:///a%20b/%25c");
        let file = tmp.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let err = classify(file.to_str().unwrap()).unwrap_err().to_string();
        assert!(err.contains("it is a file"), "{err}");
        let err = classify("/no/such/dir").unwrap_err().to_string();
        assert!(
            err.contains("/no/such/dir") && err.contains("no such directory"),
            "{err}"
        );
        let err = classify("ftp://u:pw@host/x").unwrap_err().to_string();
        assert!(!err.contains("pw") && err.contains("ftp://"), "{err}");
        assert!(classify("  ").is_err());
    }

    #[test]
    fn rev_must_be_hex_and_the_token_stays_secret() {
        let tmp = tempfile::tempdir().unwrap();
        let err = GitSource::open(
            "https://example.com/r.git",
            GitRef::Rev("main".into()),
            GitAuth::default(),
            tmp.path(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("--rev wants a commit SHA"),
            "{err}"
        );

        let auth = GitAuth {
            token: Some("tok-3xample-value".into()),
            ..GitAuth::default()
        };
        assert!(!format!("{auth:?}").contains("tok-3xample-value"));
        let src = GitSource::open(
            "https://bob:urlpass-secret@example.com/r.git",
            GitRef::Default,
            GitAuth::default(),
            tmp.path(),
        )
        .unwrap();
        assert_eq!(src.display_url(), "https://example.com/r.git");
        assert_eq!(src.http_user, "bob");
        assert_eq!(src.token.as_deref(), Some("urlpass-secret"));
        assert!(!format!("{src:?}").contains("urlpass-secret"));
        let basic = base64::engine::general_purpose::STANDARD.encode("bob:urlpass-secret");
        assert_eq!(
            src.scrub(&format!("x urlpass-secret y {basic} z")),
            "x *** y *** z"
        );
        assert_eq!(src.checked_out(), None);
    }

    #[test]
    fn a_clone_of_another_url_is_reinitialised() {
        let tmp = tempfile::tempdir().unwrap();
        let a = GitSource::open(
            "https://a.example/r.git",
            GitRef::Default,
            GitAuth::default(),
            tmp.path(),
        )
        .unwrap();
        let marker = a.repo_path().join("marker");
        std::fs::write(&marker, "x").unwrap();
        GitSource::open(
            "https://a.example/r.git",
            GitRef::Default,
            GitAuth::default(),
            tmp.path(),
        )
        .unwrap();
        assert!(marker.exists(), "the same URL keeps the clone");
        let b = GitSource::open(
            "https://b.example/r.git",
            GitRef::Default,
            GitAuth::default(),
            tmp.path(),
        )
        .unwrap();
        assert!(!marker.exists(), "another URL re-initialises the clone");
        let repo = Repository::open_bare(b.repo_path()).unwrap();
        assert_eq!(
            repo.config().unwrap().get_string(URL_KEY).unwrap(),
            "https://b.example/r.git"
        );
    }

    #[test]
    fn http_and_git_urls_need_the_insecure_flag() {
        let tmp = tempfile::tempdir().unwrap();
        for url in [
            "http://u:pw-s3cret@example.com/r.git",
            "git://example.com/r.git",
        ] {
            let err =
                GitSource::open(url, GitRef::Default, GitAuth::default(), tmp.path()).unwrap_err();
            assert!(matches!(err, GitError::Insecure { .. }), "{err}");
            let text = err.to_string();
            assert!(
                text.contains("--allow-insecure-transport") && !text.contains("pw-s3cret"),
                "{text}"
            );
            let allowed = GitAuth {
                allow_insecure: true,
                ..GitAuth::default()
            };
            GitSource::open(url, GitRef::Default, allowed, tmp.path()).unwrap();
            let err = check_transport(url, false).unwrap_err().to_string();
            assert!(
                err.contains("refusing") && !err.contains("pw-s3cret"),
                "{err}"
            );
            check_transport(url, true).unwrap();
        }
        for url in [
            "https://h/r.git",
            "ssh://git@h/r.git",
            "git@h:r.git",
            "file:///r",
        ] {
            check_transport(url, false).unwrap();
        }
    }

    #[test]
    fn credentials_go_only_to_the_configured_server() {
        let https = parse_endpoint("https://tok@git.example.com/o/r.git").unwrap();
        assert!(same_server(&https, "https://git.example.com/o/r.git"));
        assert!(same_server(
            &https,
            "https://GIT.example.com:443/other/path"
        ));
        assert!(!same_server(&https, "https://evil.example.net/o/r.git"));
        assert!(!same_server(&https, "https://git.example.com:8443/o/r.git"));
        assert!(!same_server(&https, "http://git.example.com/o/r.git"));
        assert!(!same_server(
            &https,
            "https://git.example.com.evil.net/o/r.git"
        ));
        assert!(!same_server(&https, "not a url"));
        let ssh = parse_endpoint("git@github.com:o/r.git").unwrap();
        assert!(same_server(&ssh, "ssh://git@github.com:22/o/r.git"));
        assert!(same_server(&ssh, "git@github.com:o/r.git"));
        assert!(!same_server(&ssh, "ssh://git@gitlab.com/o/r.git"));
        let v6 = parse_endpoint("ssh://git@[::1]:2222/srv/r.git").unwrap();
        assert!(same_server(&v6, "ssh://git@[::1]:2222/srv/r.git"));
        assert_eq!(server_name(&v6), "ssh://[::1]:2222");
        assert_eq!(server_name(&https), "https://git.example.com:443");
    }

    #[test]
    fn url_userinfo_is_scrubbed_everywhere() {
        let tmp = tempfile::tempdir().unwrap();
        // GitHub's form: the token is the user.
        let src = GitSource::open(
            "https://ghp_T0ken%2Bvalue:x-oauth-basic@example.com/r.git",
            GitRef::Default,
            GitAuth::default(),
            tmp.path(),
        )
        .unwrap();
        let text = "user ghp_T0ken+value raw ghp_T0ken%2Bvalue pass x-oauth-basic";
        assert_eq!(src.scrub(text), "user *** raw *** pass ***");
        assert!(!format!("{src:?}").contains("ghp_T0ken"));
        let basic =
            base64::engine::general_purpose::STANDARD.encode("ghp_T0ken+value:x-oauth-basic");
        assert_eq!(src.scrub(&basic), "***");
        // A token file wins over the URL's password; both are secret.
        let auth = GitAuth {
            token: Some("file-t0ken".into()),
            ..GitAuth::default()
        };
        let src = GitSource::open(
            "https://bob:url-pass@example.com/r.git",
            GitRef::Default,
            auth,
            tmp.path(),
        )
        .unwrap();
        assert_eq!(src.scrub("file-t0ken url-pass bob"), "*** *** bob");
        // Short users and ssh users are names, not secrets.
        let e = parse_endpoint("ssh://git@example.com/r.git").unwrap();
        assert!(secrets_of(&e, "ssh://git@example.com/r.git", None, "plimsoll").is_empty());
        let rejected = src.remote_err(
            git2::Error::new(ErrorCode::Auth, ErrorClass::Http, "status code: 401"),
            &Shared::default(),
        );
        assert!(!rejected.to_string().contains("bob"), "{rejected}");
        let session = Shared::default();
        session.borrow_mut().foreign = Some("https://evil.example.net:443".into());
        let redirected = src
            .remote_err(git2::Error::from_str("x"), &session)
            .to_string();
        assert!(
            redirected.contains("https://evil.example.net:443")
                && redirected.contains("gives them only to https://example.com:443"),
            "{redirected}"
        );
    }

    #[test]
    fn git_source_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<GitSource>();
        assert_send_sync::<GitError>();
    }
}
