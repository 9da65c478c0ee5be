//! Fetching: the followed branch, tag or default branch (shallow, and only
//! when its tip is not here yet), a pinned commit (here, advertised, by id,
//! then every head and tag), and libgit2's errors turned into [`GitError`]s
//! that say what to do.

use git2::AutotagOption;
use git2::{Direction, ErrorClass, ErrorCode, FetchOptions, Oid, Repository};

use super::url::{Transport, server_name};
use super::{ALL_REFS, DEFAULT_SSH_USER, FETCHED_REF, Follow, GitError, GitSource, Shared};

impl GitSource {
    /// Local checks before connecting: a configured ssh key must be readable.
    pub(super) fn preflight(&self) -> Result<(), GitError> {
        if self.endpoint.transport == Transport::Ssh
            && let Some(key) = &self.auth.ssh_key
            && let Err(error) = std::fs::File::open(key)
        {
            return Err(GitError::SshKey {
                path: key.clone(),
                url: self.endpoint.display.clone(),
                error,
            });
        }
        Ok(())
    }

    /// Default, branch or tag: list the remote's refs, fetch the wanted one
    /// unless its object is already here.
    pub(super) fn fetch_ref(&self, repo: &Repository) -> Result<String, GitError> {
        let session = Shared::default();
        let oid = self.listed(repo, &session, |conn, adverts| {
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
            Ok(oid)
        })?;
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

    /// An anonymous remote for the followed URL.
    fn remote<'r>(&self, repo: &'r Repository) -> Result<git2::Remote<'r>, GitError> {
        repo.remote_anonymous(&self.endpoint.url)
            .map_err(|e| self.store_err("create a remote", e))
    }

    /// Connects to the remote, lists its refs and hands both to `then`
    /// (which may fetch over the same connection).
    fn listed<T>(
        &self,
        repo: &Repository,
        session: &Shared,
        then: impl FnOnce(
            &mut git2::RemoteConnection<'_, '_, '_>,
            Vec<(String, Oid)>,
        ) -> Result<T, GitError>,
    ) -> Result<T, GitError> {
        let mut remote = self.remote(repo)?;
        let mut conn = remote
            .connect_auth(Direction::Fetch, Some(self.callbacks(session)), None)
            .map_err(|e| self.remote_err(e, session))?;
        let adverts = advertised(conn.list().map_err(|e| self.remote_err(e, session))?);
        then(&mut conn, adverts)
    }

    /// The ref to fetch and its advertised id.
    pub(super) fn wanted(
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
    pub(super) fn fetch_rev(&self, repo: &Repository, rev: &str) -> Result<String, GitError> {
        if let Some(sha) = self.local_commit(repo, rev)? {
            self.record_fetched(repo, Oid::from_str(&sha).expect("a commit id"))?;
            return Ok(sha);
        }
        let session = Shared::default();
        let advertised_tip = self.listed(repo, &session, |conn, adverts| {
            let tip = adverts
                .iter()
                .find(|(_, o)| o.to_string().starts_with(rev))
                .map(|(n, _)| n.trim_end_matches("^{}").to_string());
            let Some(name) = tip else {
                return Ok(None);
            };
            session.borrow_mut().attempts = 0;
            let mut fo = self.fetch_options(&session, self.shallow_depth());
            conn.remote()
                .fetch(&[format!("+{name}:{FETCHED_REF}")], Some(&mut fo), None)
                .map_err(|e| self.remote_err(e, &session))?;
            self.local_commit(repo, rev)
        })?;
        if let Some(sha) = advertised_tip {
            return self.record_rev(repo, sha);
        }
        if rev.len() == 40 {
            // Servers that allow it (uploadpack.allowAnySHA1InWant, GitHub,
            // GitLab) give a commit by id; others refuse ("not our ref").
            let session = Shared::default();
            let mut remote = self.remote(repo)?;
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
        let mut remote = self.remote(repo)?;
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

    pub(super) fn record_rev(&self, repo: &Repository, sha: String) -> Result<String, GitError> {
        self.record_fetched(repo, Oid::from_str(&sha).expect("a commit id"))?;
        Ok(sha)
    }

    /// The commit a SHA prefix names in the clone, if it is here.
    pub(super) fn local_commit(
        &self,
        repo: &Repository,
        rev: &str,
    ) -> Result<Option<String>, GitError> {
        match repo.find_object_by_prefix(rev, None) {
            Ok(o) => Ok(o.peel_to_commit().ok().map(|c| c.id().to_string())),
            Err(e) if e.code() == ErrorCode::Ambiguous => Err(GitError::AmbiguousRev {
                rev: rev.to_string(),
                url: self.endpoint.display.clone(),
            }),
            Err(_) => Ok(None),
        }
    }

    pub(super) fn record_fetched(&self, repo: &Repository, oid: Oid) -> Result<(), GitError> {
        repo.reference(FETCHED_REF, oid, true, "plimsoll fetch")
            .map(|_| ())
            .map_err(|e| self.store_err("record the fetched commit", e))
    }

    pub(super) fn shallow_depth(&self) -> Option<i32> {
        (!self.is_local()).then_some(1)
    }

    pub(super) fn fetch_options<'a>(
        &'a self,
        session: &Shared,
        depth: Option<i32>,
    ) -> FetchOptions<'a> {
        let mut fo = FetchOptions::new();
        fo.remote_callbacks(self.callbacks(session))
            .download_tags(AutotagOption::None)
            .update_fetchhead(false);
        if let Some(d) = depth {
            fo.depth(d);
        }
        fo
    }

    /// A libgit2 error of a remote operation → [`GitError`], using what the
    /// callbacks saw.
    pub(super) fn remote_err(&self, e: git2::Error, session: &Shared) -> GitError {
        let s = session.borrow();
        let url = self.endpoint.display.clone();
        let msg = self.scrub(e.message());
        let lower = msg.to_ascii_lowercase();
        let ssh = self.endpoint.transport == Transport::Ssh;
        if let Some(why) = &s.host_key {
            return GitError::HostKey {
                url,
                detail: self.scrub(&why.to_string()),
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
}

/// The advertised refs of a connection, as (name, id).
pub(super) fn advertised(heads: &[git2::RemoteHead<'_>]) -> Vec<(String, Oid)> {
    heads
        .iter()
        .map(|h| (h.name().to_string(), h.oid()))
        .collect()
}

/// Network-level failures (retried by the agent).
pub(super) fn looks_unreachable(e: &git2::Error, lower: &str) -> bool {
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
