//! Reconciling the host to the target revision: under the host's lock,
//! observe, recover an interrupted replacement, plan, then apply a new
//! revision or hand drift to the heals; publish the status.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::choose;
use super::controller::{Action, Error};
use super::*;
use crate::plan::Plan;

/// The wait before a check recovers an interrupted replacement a heal left
/// (with the host's lock to itself).
const RECOVER_SOON: Duration = Duration::from_secs(1);

/// A failed step of a sync, as its message.
fn sync(e: impl std::fmt::Display) -> Error {
    Error::Sync {
        message: e.to_string(),
    }
}

impl Agent {
    /// Observes the host (changing nothing, so without the lock) and publishes its status.
    pub(super) async fn refresh_status(&mut self) {
        let Some(target) = self.target.clone() else {
            return;
        };
        let Ok(observed) = self.observe(&target.desired, self.host.as_deref()).await else {
            return;
        };
        let book: HealBook = self.state.read_json(heal::FILE).unwrap_or_default();
        self.publish(&target, &observed, &book);
    }

    /// Takes the host's lock: exclusive (no heal meanwhile) to apply a
    /// revision or recover, else shared with the heals.
    async fn lock(&mut self, exclusive: bool) -> Result<Held, Error> {
        let held = if exclusive {
            self.healer
                .exclusive()
                .await
                .map(|h| Held::Exclusive { _held: h })
        } else {
            self.healer
                .shared()
                .await
                .map(|h| Held::Shared { _held: h })
        };
        held.map_err(|source| Error::LockBusy { source })
    }

    /// Reconciles the host to `target` (kube-rs's `reconcile`; `self` is the
    /// context): under the host's lock, observes, plans and applies a new
    /// revision, or checks for drift and hands it to the heals.
    pub(super) async fn reconcile(&mut self, target: &Arc<Target>) -> Result<Action, Error> {
        let deploy = self.is_deploy();
        let exclusive = deploy || self.recover_due;
        let _lock = self.lock(exclusive).await?;
        let result = self.converge_locked(target, deploy, exclusive).await;
        // Still under the lock: heals waiting for it heal to the revision applied now.
        if !self.is_deploy() && !self.target_rejected() {
            let applied = self.target.clone().zip(self.host.clone());
            self.healer
                .set_applied(applied.map(|(target, host)| Applied { target, host }));
        }
        result
    }

    /// The host's name: `--host`, `agent.host`, else the engine's name.
    async fn host_name(&mut self, desired: &Desired) -> Result<String, Error> {
        match self
            .opts
            .host
            .clone()
            .or_else(|| desired.config.agent.host.clone())
        {
            Some(h) => Ok(h),
            None => self.engine_name().await,
        }
    }

    async fn converge_locked(
        &mut self,
        target: &Arc<Target>,
        deploy: bool,
        exclusive: bool,
    ) -> Result<Action, Error> {
        let desired = &target.desired;
        let masker = &desired.masker;
        let host = Some(self.host_name(desired).await?);
        // A host with no stacks that had nothing to do at this revision (no
        // orphans to prune) needs no engine calls until the revision changes.
        let assigned = desired.stacks.iter().any(|s| {
            desired
                .config
                .runs_on(&s.name, host.as_deref().unwrap_or_default())
        });
        if !assigned && self.idle_at.as_deref() == Some(target.revision.as_str()) {
            return Ok(Action::await_change());
        }
        let progress = LogProgress::new(masker.clone());
        // `always` images for a new revision; refresh policies on every cycle.
        reconcile::pull_first(&self.engine, desired, deploy, &progress)
            .await
            .map_err(sync)?;
        let mut observed = self.observe(desired, host.as_deref()).await?;
        let parked = observed
            .live
            .containers
            .iter()
            .any(|c| c.name.ends_with(crate::names::OLD_SUFFIX));
        // A heal replacing a container parks the old one too: recovering
        // waits for the host alone, in a moment.
        let mut action = Action::await_change();
        if parked && !exclusive {
            self.recover_due = true;
            action = Action::requeue(RECOVER_SOON);
        } else if parked {
            self.recover_due = false;
            let repaired = crate::apply::recover(&observed.engine, &observed.live, &progress)
                .await
                .map_err(|e| sync(format!("recovering from an interrupted run failed: {e}")))?;
            if repaired > 0 {
                observed = self.observe(desired, host.as_deref()).await?;
            }
        }
        self.host = Some(observed.host.clone());
        self.report_unknown(&observed)?;
        let mut book: HealBook = self
            .state
            .read_json(heal::FILE)
            .map_err(|source| Error::State { source })?;
        if deploy {
            book.new_revision(&target.revision);
        }
        let pruning = reconcile::Pruning {
            flag: self.opts.prune.unwrap_or(false),
            allow_empty: false,
            volumes: false,
        };
        let mut plan = reconcile::pruned(
            observed.applicable_plan(),
            &observed,
            &desired.config,
            &pruning,
        );
        if !deploy {
            // Drift: reported here, healed by each service's own heal.
            self.hand_drift(target, &observed, plan);
            plan = Plan::default();
        }
        let nothing_to_do = plan.is_noop() && plan.conflicts.is_empty();
        let result = if nothing_to_do {
            if deploy {
                reconcile::note_in_sync(&observed, masker, &self.state).map_err(sync)?;
            }
            Ok(())
        } else {
            let origin = reconcile::Origin {
                revision: target.revision.clone(),
                source: self.source_name.clone(),
                rollback: false,
                audit: desired.config.audit,
                images: desired.config.images,
            };
            reconcile::apply_recorded(
                &observed,
                &plan,
                masker,
                &self.state,
                &origin,
                &progress,
                &self.cancel,
                self.opts.parallel,
            )
            .await
            .map(|_| ())
            .map_err(|e| masker.mask(&e.to_string()).into_owned())
        };
        if deploy {
            self.record_deploy(target, &book, &result);
        }
        if !assigned && nothing_to_do && result.is_ok() {
            tracing::info!(
                host = host.as_deref().unwrap_or_default(),
                "no stacks are assigned to this host: idle until the revision changes"
            );
            self.idle_at = Some(target.revision.clone());
        }
        // Report what the host looks like now.
        // A check changed nothing (its heals report when they end).
        let after = if deploy {
            self.observe(desired, host.as_deref()).await.ok()
        } else {
            None
        };
        self.publish(target, after.as_ref().unwrap_or(&observed), &book);
        match result {
            Ok(()) => Ok(action),
            Err(message) if deploy => {
                let reloaded = self.fail_revision(&target.revision, &message).await;
                Err(Error::ApplyFailed { message, reloaded })
            }
            Err(message) => Err(Error::Sync { message }),
        }
    }

    /// A check's drift: reported, and each drifted service handed to its heal.
    fn hand_drift(&self, target: &Arc<Target>, observed: &Observed<'_>, plan: Plan) {
        let unhealthy = choose::unhealthy_restarts(
            &observed.live.containers,
            &observed.stacks,
            &observed.paused,
            &observed.plan,
        );
        let silences = crate::drift::Silences::load(&self.state).unwrap_or_else(|e| {
            tracing::error!("{e}: no drift is silenced");
            Default::default()
        });
        let drift = choose::drift(
            &observed.plan,
            plan,
            unhealthy,
            &silences,
            jiff::Timestamp::now(),
        );
        let applied = Applied {
            target: target.clone(),
            host: observed.host.clone(),
        };
        self.healer.report_all(&applied, observed, &drift.reported);
        // This check's revision is the one applied: what heals converge to.
        self.healer.set_applied(Some(applied));
        self.healer.heal_drift(&drift);
    }

    /// After a revision's apply: the heal book written (a new revision starts
    /// it over), the heap trimmed, the revision recorded as the last good one
    /// and notified.
    fn record_deploy(&mut self, target: &Target, book: &HealBook, result: &Result<(), String>) {
        // Only a revision's apply (exclusive) writes the heal book here; heals write their own.
        if let Err(e) = self.state.write_json(heal::FILE, book) {
            tracing::error!("{e}");
        }
        release_freed_memory();
        match result {
            Ok(()) => {
                self.revisions.last_good = Some(target.revision.clone());
                if let Err(e) = self.state.write_json(AGENT_FILE, &self.revisions) {
                    tracing::error!("{e}");
                }
                tracing::info!(revision = target.revision, "revision applied");
                self.notify(
                    NotificationEvent::SyncSucceeded,
                    None,
                    None,
                    format!("revision {} applied", target.revision),
                );
            }
            Err(e) => {
                self.notify(
                    NotificationEvent::SyncFailed,
                    None,
                    None,
                    format!("applying revision {} failed: {e}", target.revision),
                );
            }
        }
    }

    /// The engine's name, asked once.
    async fn engine_name(&mut self) -> Result<String, Error> {
        if let Some(name) = &self.engine_name {
            return Ok(name.clone());
        }
        let name = self
            .engine
            .name()
            .await
            .map_err(|source| Error::Engine { source })?;
        self.engine_name = Some(name.clone());
        Ok(name)
    }

    pub(super) async fn observe<'d>(
        &self,
        desired: &'d Desired,
        host: Option<&str>,
    ) -> Result<Observed<'d>, Error> {
        let mut observed = reconcile::observe_on(self.engine.clone(), desired, host)
            .await
            .map_err(|source| Error::Engine { source })?;
        let state = |source| Error::State { source };
        let frozen = self.state.paused().map_err(state)?;
        let applied = self.state.applied_mounts().map_err(state)?;
        reconcile::with_applied_mounts(&mut observed, &applied, &desired.masker);
        let names: Vec<String> = observed.stacks.iter().map(|s| s.name.clone()).collect();
        observed
            .paused
            .extend(names.into_iter().filter(|s| frozen.contains(s)));
        Ok(observed)
    }

    fn report_unknown(&mut self, observed: &Observed<'_>) -> Result<(), Error> {
        use crate::spec::config::UnknownContainers;
        let unknown: BTreeSet<String> = reconcile::unknown(observed)
            .into_iter()
            .map(str::to_string)
            .collect();
        let new: Vec<&String> = unknown.difference(&self.reported_unknown).collect();
        let policy = self
            .target
            .as_ref()
            .map(|t| t.desired.config.policy.unknown_containers);
        if !new.is_empty() {
            let list = new
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            tracing::warn!("containers not managed by plimsoll run on this host: {list}");
            self.notify(
                NotificationEvent::UnknownContainer,
                None,
                None,
                format!("containers not managed by plimsoll run on this host: {list}"),
            );
        }
        self.reported_unknown = unknown.clone();
        if policy == Some(UnknownContainers::Fail) && !unknown.is_empty() {
            return Err(Error::UnknownContainers {
                list: unknown.into_iter().collect::<Vec<_>>().join(", "),
            });
        }
        Ok(())
    }

    /// Publishes status and gauges from an observation.
    pub(super) fn publish(&self, target: &Target, observed: &Observed<'_>, book: &HealBook) {
        let status = reconcile::status(observed);
        let desired = &target.desired;
        let frozen = self.state.paused().unwrap_or_default();
        let silences = crate::drift::Silences::load(&self.state).unwrap_or_default();
        let now = jiff::Timestamp::now();
        let host_paused = frozen.host
            || desired
                .config
                .hosts
                .get(&observed.host)
                .is_some_and(|h| h.paused);
        let mut stacks: Vec<StackStatus> = Vec::new();
        for stack in &observed.stacks {
            let services = status
                .services
                .iter()
                .filter(|s| s.stack == stack.name)
                .map(|s| {
                    let key = heal::key(&s.stack, &s.service);
                    let silenced = (!s.state.in_sync())
                        .then(|| {
                            silences.silences.iter().find(|x| {
                                x.active(now) && x.covers(&s.stack, &s.service, &s.reasons)
                            })
                        })
                        .flatten()
                        .cloned();
                    let state = if silenced.is_some() {
                        reconcile::ServiceState {
                            sync: reconcile::SyncState::Silenced,
                            paused: s.state.paused,
                        }
                    } else if s.state.in_sync() && s.health == Some(Health::Unhealthy) {
                        reconcile::ServiceState {
                            sync: reconcile::SyncState::Unhealthy,
                            paused: false,
                        }
                    } else {
                        s.state
                    };
                    ServiceStatus {
                        service: s.service.clone(),
                        state,
                        drift: s.reasons.clone(),
                        health: s.health,
                        running: s.running,
                        container: s.container.clone(),
                        image: s.image.clone(),
                        self_heal: self_heal(desired, &s.stack, Some(&s.service)),
                        heal: book.services.get(&key).cloned(),
                        silenced,
                    }
                })
                .collect();
            stacks.push(StackStatus {
                name: stack.name.clone(),
                paused: observed.paused.contains(&stack.name),
                self_heal: self_heal(desired, &stack.name, None),
                services,
            });
        }
        let gave_up: Vec<String> = book.gave_up().map(str::to_string).collect();
        let managed: usize = observed.stacks.iter().map(|s| s.services.len()).sum();
        self.shared.metrics.set_gave_up(gave_up.len() as i64);
        self.shared.metrics.set_managed(managed as i64);
        let revision = self.revisions.last_good.clone();
        let rejected = self.revisions.rejected.clone();
        let host = observed.host.clone();
        self.set_status(|s| {
            s.host = host;
            s.revision = revision;
            s.rejected = rejected;
            s.paused = host_paused;
            s.stacks = stacks;
            s.unknown = status.unknown.clone();
            s.gave_up = gave_up;
        });
    }
}
