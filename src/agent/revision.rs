//! Revisions: fetching the source, verifying and checking out a commit,
//! loading it, accepting it as the target or rejecting it (recorded in
//! `agent.json`, audited, notified), and the crash-while-loading guard.

use std::sync::{Arc, Mutex};

use thiserror::Error;

use super::controller::Error;
use super::*;

/// Why a revision is rejected (its message is what `/status`, the audit log
/// and the notification say).
#[derive(Debug, Error)]
pub enum RevisionError {
    /// The tip commit's signature is refused.
    #[error("{source}")]
    Signature {
        #[source]
        source: git::GitError,
    },
    #[error(
        "the signature of commit {sha} could not be checked (the verifier failed on it): sign the commit again"
    )]
    VerifierFailed { sha: String },
    #[error("{source}")]
    Checkout {
        #[source]
        source: git::GitError,
    },
    /// The revision does not load: every problem, with file and line
    /// relative to the repository.
    #[error("{message}")]
    Load { message: String },
    #[error("plimsoll.yaml: {source}")]
    Notifications {
        #[source]
        source: notify::NotifyError,
    },
}

/// What loading a revision takes besides its files: the host's settings
/// (`--pass-env`, `--stack`, `--allow-read`, profiles, age identities, the
/// host policy). Each revision keeps it ([`Checkout`]), so that it can be
/// loaded again through other files (the dashboard's patch, applied in memory).
#[derive(Debug)]
pub(super) struct Loader {
    env: BTreeMap<String, String>,
    stacks: Vec<String>,
    allow_read: Vec<std::path::PathBuf>,
    options: spec::LoadOptions,
}

/// Why a revision does not load.
#[derive(Debug, Error)]
pub enum LoadFailed {
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error(transparent)]
    Spec(#[from] spec::LoadError),
}

impl Loader {
    pub(super) fn new(opts: &Options) -> Loader {
        Loader {
            env: opts.compose_env.clone(),
            stacks: opts.stacks.clone(),
            allow_read: opts.allow_read.clone(),
            options: spec::LoadOptions {
                profiles: opts.profiles.clone(),
                age: opts.age.clone(),
                secret_env: opts.secret_env.clone(),
                host_policy: opts.host_policy.clone(),
            },
        }
    }

    /// The file system under `top` (the clone's work tree or the watched
    /// directory) and the host's `--allow-read` directories, nothing else.
    pub(super) fn confined(
        &self,
        top: &std::path::Path,
    ) -> Result<source::ConfinedFs, source::SourceError> {
        Ok(source::ConfinedFs::new(source::Confine::new(
            top,
            &self.allow_read,
        )?))
    }

    /// Loads the repository at `root` through `files`: the stacks `only`
    /// names, else the host's `--stack`s (else all).
    pub(super) fn load(
        &self,
        root: &std::path::Path,
        files: &dyn source::Files,
        only: &[String],
    ) -> Result<Desired, LoadFailed> {
        let layout = source::discover_in(files, root)?;
        let stacks = if only.is_empty() { &self.stacks } else { only };
        Ok(spec::load_with(
            &layout,
            files,
            &self.env,
            stacks,
            &self.options,
        )?)
    }
}

/// Where a revision was read from, to read it again.
#[derive(Debug, Clone)]
pub(super) struct Checkout {
    /// The repository's root (`--path` inside `top`).
    pub root: std::path::PathBuf,
    /// The clone's work tree, or the watched directory: reads are confined to it.
    pub top: std::path::PathBuf,
    /// The clone's object store (a git source): the revision is read from
    /// its commit there, not from the work tree, where a newer revision may
    /// be checked out by then.
    pub store: Option<std::path::PathBuf>,
    pub loader: Arc<Loader>,
}

impl Checkout {
    /// The files of `revision` (a commit of the clone, or the watched directory as it is now).
    pub(super) fn files(
        &self,
        revision: &str,
    ) -> Result<Box<dyn source::Files>, source::SourceError> {
        let outside = self.loader.confined(&self.top)?;
        Ok(match &self.store {
            Some(store) => Box::new(RevisionFiles {
                tree: source::GitTree::at_commit(store, revision, &self.top)?,
                top: outside.confine().root().to_path_buf(),
                outside,
            }),
            None => Box::new(outside),
        })
    }
}

/// A revision's files: those of the repository from its commit, the others
/// (in `--allow-read` directories) from the file system, confined.
struct RevisionFiles {
    tree: source::GitTree,
    /// The work tree the commit's paths are named under (canonical).
    top: std::path::PathBuf,
    outside: source::ConfinedFs,
}

impl RevisionFiles {
    fn pick(&self, path: &std::path::Path) -> &dyn source::Files {
        if path.is_relative() || path.starts_with(&self.top) {
            &self.tree
        } else {
            &self.outside
        }
    }
}

impl source::Files for RevisionFiles {
    fn read(&self, path: &std::path::Path) -> std::io::Result<Option<Vec<u8>>> {
        self.pick(path).read(path)
    }

    fn kind(&self, path: &std::path::Path) -> std::io::Result<Option<source::Kind>> {
        self.pick(path).kind(path)
    }

    fn list(&self, dir: &std::path::Path) -> std::io::Result<Vec<String>> {
        self.pick(dir).list(dir)
    }

    fn absolute(&self, path: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
        self.pick(path).absolute(path)
    }

    fn link(&self, path: &std::path::Path) -> std::io::Result<Option<std::path::PathBuf>> {
        self.pick(path).link(path)
    }

    fn root(&self) -> Option<std::path::PathBuf> {
        self.tree.root()
    }
}

impl Agent {
    /// The target is a revision not yet applied (and not rejected).
    pub(super) fn is_deploy(&self) -> bool {
        self.target
            .as_ref()
            .is_some_and(|t| self.revisions.last_good.as_deref() != Some(t.revision.as_str()))
    }

    /// The target is a revision that was rejected: nothing to do until a new one.
    pub(super) fn target_rejected(&self) -> bool {
        match (&self.target, &self.revisions.rejected) {
            (Some(t), Some(r)) => t.revision == r.revision,
            _ => false,
        }
    }

    /// Looks for a new revision and loads it. Err = the revision was rejected (message).
    pub(super) async fn refresh(&mut self) -> Result<(), Error> {
        let Some(git) = self.git.clone() else {
            let Source::Directory(dir) = &self.opts.source else {
                unreachable!("a source is git or a directory")
            };
            let root = self.opts.path.as_ref().map_or(dir.clone(), |p| dir.join(p));
            return match self.load(&root, dir) {
                Ok(desired) => {
                    let revision = local_revision(&desired);
                    let checkout = self.checkout(root, dir.clone(), None);
                    self.accept(revision, desired, checkout);
                    Ok(())
                }
                Err(e) => {
                    let revision = format!("local:{}", crate::state::now());
                    let reason = e.to_string();
                    self.reject(&revision, reason.clone());
                    Err(Error::Rejected { revision, reason })
                }
            };
        };
        let fetched = {
            let git = git.clone();
            tokio::task::spawn_blocking(move || git.lock().expect("git source lock").fetch())
                .await
                .expect("fetch does not panic")
        };
        let sha = match fetched {
            Ok(sha) => {
                if self.fetch_failures > 0 {
                    tracing::info!(source = %self.source_name, "the source is reachable again");
                }
                self.set_status(|s| {
                    s.source_error = None;
                    s.fetched = Some(sha.clone());
                });
                sha
            }
            Err(source) => {
                // After a restart with the source down: run the last good checkout.
                if self.target.is_none() {
                    let checked_out = git.lock().expect("git source lock").checked_out();
                    if let Some(sha) =
                        checked_out.filter(|s| Some(s) == self.revisions.last_good.as_ref())
                    {
                        self.checkout_and_load(&git, &sha).await.ok();
                    }
                }
                return Err(Error::Unreachable { source });
            }
        };
        if let Some(r) = self
            .revisions
            .rejected
            .as_ref()
            .filter(|r| r.revision == sha)
        {
            tracing::debug!(
                "revision {sha} was rejected ({}); waiting for a new commit",
                r.reason
            );
            let stale = self.target.as_ref().is_none_or(|t| t.revision == sha);
            if stale && let Some(good) = self.revisions.last_good.clone() {
                let _ = self.checkout_and_load(&git, &good).await;
            }
            return Ok(());
        }
        if self.target.as_ref().is_some_and(|t| t.revision == sha) {
            return Ok(());
        }
        match self.checkout_verified(&git, &sha).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let reason = e.to_string();
                self.reject(&sha, reason.clone());
                // The work tree goes back to the last good revision.
                if let Some(good) = self.revisions.last_good.clone() {
                    let keep = self.target.as_ref().is_some_and(|t| t.revision == good);
                    if !keep {
                        let _ = self.checkout_and_load(&git, &good).await;
                    } else {
                        let git = git.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            git.lock().expect("git source lock").checkout(&good)
                        })
                        .await;
                    }
                }
                Err(Error::Rejected {
                    revision: sha,
                    reason,
                })
            }
        }
    }

    /// A new revision: its signature checked (with trusted keys), then
    /// checked out and loaded. Err = why it is rejected.
    pub(super) async fn checkout_verified(
        &mut self,
        git: &Arc<Mutex<git::GitSource>>,
        sha: &str,
    ) -> Result<(), RevisionError> {
        let verdict = {
            let git = git.clone();
            let owned = sha.to_string();
            // The signature is the pusher's input: a verifier that panics on it
            // rejects the revision instead of taking the agent down.
            let task = tokio::task::spawn_blocking(move || {
                git.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .verify_commit(&owned)
                    .map_err(|source| RevisionError::Signature { source })
            });
            task.await.unwrap_or_else(|_| {
                Err(RevisionError::VerifierFailed {
                    sha: sha.to_string(),
                })
            })?
        };
        if let Some(signer) = verdict {
            tracing::info!(revision = sha, "signature verified: {signer}");
        }
        self.checkout_and_load(git, sha).await
    }

    pub(super) async fn checkout_and_load(
        &mut self,
        git: &Arc<Mutex<git::GitSource>>,
        sha: &str,
    ) -> Result<(), RevisionError> {
        self.mark_loading(Some(sha));
        let loaded = self.checkout_and_load_unmarked(git, sha).await;
        self.mark_loading(None);
        loaded
    }

    /// Records (`Some`) or clears (`None`) the revision being loaded in
    /// `agent.json`, durably, so a crash while loading it is known at restart.
    pub(super) fn mark_loading(&mut self, revision: Option<&str>) {
        if self.revisions.loading.as_deref() == revision {
            return;
        }
        self.revisions.loading = revision.map(str::to_string);
        if let Err(e) = self.state.write_json(AGENT_FILE, &self.revisions) {
            tracing::error!("{e}");
        }
    }

    /// At start: a revision the previous process was loading when it died is
    /// rejected (unless it is the last good one, which loaded before: the
    /// cause was elsewhere).
    pub(super) fn died_loading(&mut self, revision: Option<String>) {
        let Some(revision) = revision else {
            return;
        };
        if self.revisions.last_good.as_ref() == Some(&revision) {
            tracing::warn!(
                revision,
                "the agent stopped while loading the last good revision; loading it again"
            );
            if let Err(e) = self.state.write_json(AGENT_FILE, &self.revisions) {
                tracing::error!("{e}");
            }
            return;
        }
        self.reject(&revision, DIED_LOADING.to_string());
        // No revision is loaded yet (nor the notification targets): notified
        // once the last good one is.
        self.unsent = Some(self.rejection(&revision, DIED_LOADING));
    }

    pub(super) async fn checkout_and_load_unmarked(
        &mut self,
        git: &Arc<Mutex<git::GitSource>>,
        sha: &str,
    ) -> Result<(), RevisionError> {
        let dir = {
            let git = git.clone();
            let sha = sha.to_string();
            tokio::task::spawn_blocking(move || git.lock().expect("git source lock").checkout(&sha))
                .await
                .expect("checkout does not panic")
                .map_err(|source| RevisionError::Checkout { source })?
        };
        let root = self.opts.path.as_ref().map_or(dir.clone(), |p| dir.join(p));
        let desired = self.load(&root, &dir)?;
        let store = git.lock().unwrap_or_else(|e| e.into_inner()).store_path();
        let checkout = self.checkout(root, dir, Some(store));
        self.accept(sha.to_string(), desired, checkout);
        Ok(())
    }

    /// Loads and checks a revision at `root` (`--path` inside the checkout or
    /// the watched directory `top`, which confines every read); the error
    /// lists every problem with file and line.
    pub(super) fn load(
        &self,
        root: &std::path::Path,
        top: &std::path::Path,
    ) -> Result<Desired, RevisionError> {
        // Errors name files as the repository does (`stacks/shop/compose.yaml:5:9`),
        // not by where the agent checked it out.
        let relative = |e: &dyn std::fmt::Display| RevisionError::Load {
            message: e.to_string().replace(&format!("{}/", root.display()), ""),
        };
        fault_while_loading(root);
        // Reads stay inside the clone (or the watched directory): its root
        // is the repository, whatever PATH inside it names.
        let files = self.loader.confined(top).map_err(|e| relative(&e))?;
        let mut desired = self
            .loader
            .load(root, &files, &[])
            .map_err(|e| relative(&e))?;
        // `agent.stacks` in plimsoll.yaml, unless --stack says otherwise.
        let only = &desired.config.agent.stacks;
        if self.opts.stacks.is_empty() && !only.is_empty() {
            let only = only.clone();
            desired.stacks.retain(|s| only.contains(&s.name));
        }
        self.notifier
            .configure(&desired.config.notifications, &self.opts.compose_env)
            .map_err(|source| RevisionError::Notifications { source })?;
        for w in &desired.warnings {
            tracing::warn!("{w}");
        }
        Ok(desired)
    }

    pub(super) fn accept(&mut self, revision: String, desired: Desired, checkout: Checkout) {
        if self.target.as_ref().is_some_and(|t| t.revision == revision) {
            return;
        }
        tracing::info!(revision, "loaded a new revision");
        self.shared.metrics.set_revision(&revision);
        if let Some(note) = self.unsent.take() {
            self.notifier.send(note, &desired.masker);
        }
        self.target = Some(Arc::new(Target {
            revision,
            desired,
            checkout,
        }));
    }

    /// Where a revision at `root` inside `top` was read from.
    fn checkout(
        &self,
        root: std::path::PathBuf,
        top: std::path::PathBuf,
        store: Option<std::path::PathBuf>,
    ) -> Checkout {
        Checkout {
            root,
            top,
            store,
            loader: self.loader.clone(),
        }
    }

    pub(super) fn reject(&mut self, revision: &str, reason: String) {
        let masked = match &self.target {
            Some(t) => t.desired.masker.mask(&reason).into_owned(),
            None => reason,
        };
        tracing::error!(
            revision,
            "revision rejected, the last good revision keeps running: {masked}"
        );
        self.revisions.rejected = Some(Rejected {
            revision: revision.to_string(),
            reason: masked.clone(),
            time: crate::state::now(),
        });
        if let Err(e) = self.state.write_json(AGENT_FILE, &self.revisions) {
            tracing::error!("{e}");
        }
        // `plimsoll history` lists rejections beside applies.
        let record = serde_json::json!({
            "time": crate::state::now(),
            "revision": revision,
            "source": self.source_name,
            "rollback": false,
            "user": format!("plimsoll agent ({})", crate::state::invoking_user()),
            "host": crate::state::hostname(),
            "outcome": "rejected",
            "error": masked,
            "seconds": 0.0,
            "actions": [],
        });
        if let Err(e) = self.state.audit(
            &record,
            crate::state::AUDIT_MAX_BYTES,
            crate::state::AUDIT_KEEP,
        ) {
            tracing::error!("{e}");
        }
        let rejected = self.revisions.rejected.clone();
        self.set_status(|s| s.rejected = rejected);
        // The notification names the rejected revision, not the one that keeps running.
        if let Some(target) = &self.target {
            self.notifier
                .send(self.rejection(revision, &masked), &target.desired.masker);
        }
    }

    /// The notification of a rejected revision.
    pub(super) fn rejection(&self, revision: &str, masked: &str) -> Notification {
        Notification {
            event: NotificationEvent::RevisionRejected,
            host: self.host.clone().unwrap_or_else(crate::state::hostname),
            revision: Some(revision.to_string()),
            stack: None,
            service: None,
            message: format!("revision {revision} rejected: {masked}"),
        }
    }

    /// A revision whose apply failed: rejected, and the last good one becomes
    /// the target again, so the host converges back to it. Whether the last
    /// good revision is loaded again.
    pub(super) async fn fail_revision(&mut self, revision: &str, error: &str) -> bool {
        self.reject(revision, format!("apply failed: {error}"));
        if let (Some(git), Some(good)) = (self.git.clone(), self.revisions.last_good.clone()) {
            match self.checkout_and_load(&git, &good).await {
                Ok(()) => return true,
                Err(e) => tracing::error!("reloading the last good revision {good} failed: {e}"),
            }
        }
        false
    }
}
