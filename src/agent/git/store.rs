//! The local clone and the work tree: opening (or re-initialising) the clone,
//! checking a fetched commit out in place, what is checked out, a commit's
//! signature.

use std::path::{Path, PathBuf};

use git2::build::CheckoutBuilder;
use git2::{ErrorCode, Oid, Repository};

use super::url::Transport;
use super::url::{parse_endpoint, redact_userinfo};
use super::{CHECKOUT_REF, GitError, GitSource, URL_KEY, signing};

impl GitSource {
    /// Materialises the tree of commit `sha` (any commit fetched before) into
    /// `<dir>/worktree` (forced: files deleted in the commit disappear, stray
    /// files too), records it, and returns that path.
    pub fn checkout(&self, sha: &str) -> Result<PathBuf, GitError> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let repo = self.open_repo()?;
        let not_fetched = || self.not_fetched(sha);
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

    /// "commit <sha> was not fetched into <the clone>".
    fn not_fetched(&self, sha: &str) -> GitError {
        GitError::NotFetched {
            url: self.endpoint.display.clone(),
            sha: sha.to_string(),
            path: self.repo_path(),
        }
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
        let not_fetched = || self.not_fetched(sha);
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

    /// The clone's object store (bare): every commit fetched can be read from it.
    pub fn store_path(&self) -> PathBuf {
        self.repo_path()
    }

    pub(super) fn repo_path(&self) -> PathBuf {
        self.dir.join("repo")
    }

    pub(super) fn worktree_path(&self) -> PathBuf {
        self.dir.join("worktree")
    }

    pub(super) fn is_local(&self) -> bool {
        self.endpoint.transport == Transport::Local
    }

    /// Opens the clone, re-initialising it when it clones another URL or is
    /// unreadable.
    pub(super) fn open_store(&self) -> Result<(), GitError> {
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

    pub(super) fn open_repo(&self) -> Result<Repository, GitError> {
        Repository::open_bare(self.repo_path()).map_err(|e| self.store_err("open", e))
    }

    pub(super) fn store_err(&self, what: &str, source: git2::Error) -> GitError {
        GitError::Store {
            url: self.endpoint.display.clone(),
            path: self.dir.clone(),
            what: what.to_string(),
            source,
        }
    }

    pub(super) fn io_err(&self, path: &Path, what: &str, source: std::io::Error) -> GitError {
        GitError::Io {
            url: self.endpoint.display.clone(),
            path: path.to_path_buf(),
            what: what.to_string(),
            source,
        }
    }
}
