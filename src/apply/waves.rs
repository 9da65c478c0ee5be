//! The services of a stack, wave by wave: the services of one wave in a
//! sliding window of [`Parallel`] services (a service starts as soon as any
//! running one finishes), each first waiting on its dependencies' gates, then
//! running its actions in order.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::num::NonZeroUsize;
use std::time::Instant;

use futures_util::StreamExt;

use super::{
    ActionOutcome, Ctx, Failed, Report, ServiceError, StepError, fault_point, gate_timeout,
    replica_number,
};
use crate::events::Outcome;
use crate::graph::StackGraph;
use crate::plan::{Action, ActionKind, Plan};
use crate::spec::model::Stack;
use crate::spec::secrets::Masker;

/// How many services of one wave an apply changes at once (`--parallel N`,
/// `PLIMSOLL_PARALLEL`): at most [`DEFAULT_PARALLEL`] by default, or `-1`
/// (`unlimited`) for every service of the wave at once, as Compose v2's
/// `--parallel -1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parallel {
    Unlimited,
    AtMost(NonZeroUsize),
}

/// The default window: Compose's `COMPOSE_PARALLEL_LIMIT` default before v2.
/// Enough to keep an engine busy (its own work, not the services' stop grace
/// periods, bounds a big wave then), and few enough that a slow engine answers
/// each call within the client's timeout: 500 calls at once on 2 cores did not.
pub const DEFAULT_PARALLEL: usize = 64;

impl Default for Parallel {
    fn default() -> Self {
        Parallel::AtMost(NonZeroUsize::new(DEFAULT_PARALLEL).unwrap_or(NonZeroUsize::MIN))
    }
}

impl Parallel {
    /// The window for a wave of `services` services (at least 1).
    pub fn window(self, services: usize) -> usize {
        match self {
            Parallel::Unlimited => services.max(1),
            Parallel::AtMost(n) => n.get(),
        }
    }
}

/// A `--parallel` value that is no number of services.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{value}` is not a number of services: write 1 or more, or -1 (or `unlimited`) for no limit"
)]
pub struct BadParallel {
    pub value: String,
}

impl std::str::FromStr for Parallel {
    type Err = BadParallel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "-1" | "unlimited" => Ok(Parallel::Unlimited),
            n => n
                .parse::<NonZeroUsize>()
                .map(Parallel::AtMost)
                .map_err(|_| BadParallel {
                    value: s.to_string(),
                }),
        }
    }
}

impl std::fmt::Display for Parallel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Parallel::Unlimited => f.write_str("unlimited"),
            Parallel::AtMost(n) => write!(f, "{n}"),
        }
    }
}

/// Runs `run` on every item of `todo`, at most `window` at once: the next item
/// starts as soon as any running one finishes. The results come back in the
/// order of `todo`.
pub(super) async fn sliding<T, R, F, Fut>(todo: Vec<T>, window: usize, mut run: F) -> Vec<R>
where
    F: FnMut(T) -> Fut,
    Fut: Future<Output = R>,
{
    let mut done: Vec<(usize, R)> = futures_util::stream::iter(todo.into_iter().enumerate())
        .map(|(i, item)| {
            let running = run(item);
            async move { (i, running.await) }
        })
        .buffer_unordered(window.max(1))
        .collect()
        .await;
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

impl Ctx<'_> {
    /// Applies the service actions of `plan` for one stack, wave after wave.
    /// A service whose dependency failed (or conflicts) is not changed; the
    /// outcomes go into `report`, the failures (masked) into `failures`.
    pub(super) async fn run_waves(
        &self,
        stack: &Stack,
        plan: &Plan,
        masker: &Masker,
        parallel: Parallel,
        report: &mut Report,
        failures: &mut Vec<String>,
    ) {
        let Ok(graph) = StackGraph::build(stack) else {
            return;
        };
        let actions: BTreeMap<String, Vec<&Action>> = plan
            .actions
            .iter()
            .filter(|a| a.stack == stack.name && a.service.is_some())
            .filter(|a| a.action != ActionKind::Build)
            .fold(BTreeMap::new(), |mut m, a| {
                m.entry(a.service.clone().unwrap_or_default())
                    .or_default()
                    .push(a);
                m
            });
        let mut failed: BTreeSet<String> = plan
            .conflicts
            .iter()
            .filter(|c| c.stack == stack.name)
            .filter_map(|c| c.service.clone())
            .collect();
        for wave in graph.waves() {
            let todo: Vec<&String> = wave.iter().filter(|s| actions.contains_key(*s)).collect();
            // The services of one wave do not depend on each other: what failed
            // before the wave is all they need to know.
            let before = failed.clone();
            let window = parallel.window(todo.len());
            let results = sliding(todo, window, |service| {
                let acts = actions[service].clone();
                let (failed, graph) = (&before, &graph);
                async move {
                    let started = Instant::now();
                    let r = self.run_actions(stack, graph, service, &acts, failed).await;
                    let r = self.reattached_after(stack, service, r).await;
                    (service.to_string(), acts, r, started.elapsed())
                }
            })
            .await;
            for (service, acts, r, duration) in results {
                let (result, rolled_back) = match r {
                    Ok(()) => (Ok(()), false),
                    Err(e) => {
                        // Text from here on: the failure line and the outcomes.
                        let message = e.to_string();
                        failed.insert(service.clone());
                        failures.push(format!(
                            "{}/{service}: {}",
                            stack.name,
                            masker.mask(&message)
                        ));
                        (Err(Failed(message)), e.rolled_back())
                    }
                };
                for a in acts {
                    report.outcomes.push(ActionOutcome {
                        action: a.clone(),
                        result: result.clone(),
                        duration,
                        rolled_back,
                    });
                }
            }
        }
    }

    /// A service's result; when its actions failed, the containers the
    /// service keeps (rolled back, or not reached) are connected again to
    /// the networks recreated under them first, so it is not left cut off.
    async fn reattached_after(
        &self,
        stack: &Stack,
        service: &str,
        result: Result<(), ServiceError>,
    ) -> Result<(), ServiceError> {
        let Err(failure) = result else {
            return Ok(());
        };
        match self.reattach(stack, service).await {
            Ok(()) => Err(failure),
            Err(source) => Err(ServiceError::NotReattached {
                failure: Box::new(failure),
                source: Box::new(source),
            }),
        }
    }

    async fn run_actions(
        &self,
        stack: &Stack,
        graph: &StackGraph,
        service: &str,
        actions: &[&Action],
        failed: &BTreeSet<String>,
    ) -> Result<(), ServiceError> {
        let subject = Self::subject(stack, service);
        let fail = |e: ServiceError| {
            self.progress
                .step(&subject, &e.to_string(), Outcome::Failed);
            Err(e)
        };
        if self.cancel.is_cancelled() {
            return fail(ServiceError::Interrupted);
        }
        for (dep, condition) in graph.dependencies(service) {
            if failed.contains(&dep) {
                return fail(ServiceError::DependencyFailed { dependency: dep });
            }
            let dep_svc = &stack.services[&dep];
            let has_health = self.has_health(stack, &dep);
            self.progress
                .step(&subject, &format!("waiting for {dep}"), Outcome::Working);
            // Every replica of the dependency meets the condition.
            for n in 1..=dep_svc.replicas() {
                let dep_name = crate::names::replica_name(stack, &dep, dep_svc, n);
                if let Err(e) = self
                    .gate(
                        &subject,
                        &dep_name,
                        condition,
                        gate_timeout(stack, &dep),
                        has_health,
                    )
                    .await
                {
                    return fail(ServiceError::DependencyGate {
                        dependency: dep,
                        why: Box::new(e),
                    });
                }
            }
        }
        // One container at a time: a replica whose replacement fails is
        // rolled back and the replicas after it are not touched.
        for a in actions {
            let r = match a.action {
                ActionKind::Create => {
                    let number = replica_number(stack, service, &a.target);
                    match self.create_and_start(stack, service, number, None).await {
                        Ok(id) => self.post_start(stack, service, number, &id).await,
                        Err(e) => Err(e),
                    }
                    .map_err(ServiceError::from)
                }
                ActionKind::Recreate => self.recreate(stack, service, &a.target).await,
                ActionKind::Start | ActionKind::Restart => {
                    let restart = a.action == ActionKind::Restart;
                    let doing = if restart { "restarting" } else { "starting" };
                    self.progress.step(&subject, doing, Outcome::Working);
                    let number = replica_number(stack, service, &a.target);
                    let docker = &self.engine.docker;
                    let started = if restart {
                        docker.restart_container(&a.target, None).await
                    } else {
                        docker.start_container(&a.target, None).await
                    };
                    match started {
                        Ok(()) => self.post_start(stack, service, number, &a.target).await,
                        Err(e) => Err(StepError::Engine(e)),
                    }
                    .map_err(ServiceError::from)
                }
                ActionKind::Remove => {
                    self.progress.step(
                        &subject,
                        &format!("removing {}", a.target),
                        Outcome::Working,
                    );
                    self.stop_and_remove(stack, service, &a.target)
                        .await
                        .map_err(ServiceError::from)
                }
                _ => Ok(()),
            };
            fault_point();
            if let Err(e) = r {
                return fail(e);
            }
        }
        self.progress.step(&subject, "done", Outcome::Done);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[test]
    fn parallel_parses_numbers_and_unlimited() {
        assert_eq!("-1".parse::<Parallel>(), Ok(Parallel::Unlimited));
        assert_eq!("unlimited".parse::<Parallel>(), Ok(Parallel::Unlimited));
        assert_eq!(
            "8".parse::<Parallel>(),
            Ok(Parallel::AtMost(NonZeroUsize::new(8).unwrap()))
        );
        for bad in ["0", "-2", "many", ""] {
            let e = bad.parse::<Parallel>().unwrap_err().to_string();
            assert!(e.contains("unlimited"), "{e}");
        }
        assert_eq!(Parallel::default().window(500), DEFAULT_PARALLEL);
        assert_eq!(Parallel::default().to_string(), "64");
        assert_eq!(Parallel::Unlimited.window(500), 500);
        assert_eq!(Parallel::Unlimited.window(0), 1);
        assert_eq!("4".parse::<Parallel>().unwrap().window(500), 4);
        assert_eq!("4".parse::<Parallel>().unwrap().to_string(), "4");
    }

    /// Tracks how many runs are in flight and the most at once.
    #[derive(Default)]
    struct Flight {
        now: AtomicUsize,
        most: AtomicUsize,
    }

    impl Flight {
        async fn run(&self, wait: impl Future<Output = ()>) {
            let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            wait.await;
            self.now.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn sliding_keeps_the_window_full_and_the_order() {
        let flight = Flight::default();
        let out = sliding((0..10u64).collect(), 3, |i| {
            let flight = &flight;
            async move {
                flight
                    .run(tokio::time::sleep(Duration::from_millis(5 * (i % 4))))
                    .await;
                i * 10
            }
        })
        .await;
        assert_eq!(out, (0..10).map(|i| i * 10).collect::<Vec<_>>());
        assert_eq!(flight.most.load(Ordering::SeqCst), 3);
    }

    /// The first item finishes only after the last has started: in chunks of
    /// 2 that never happens (the last waits for the first chunk); in a
    /// sliding window of 2 the other items pass through the second slot.
    #[tokio::test]
    async fn sliding_starts_the_next_item_as_soon_as_one_finishes() {
        let (last_started, wait_for_last) = tokio::sync::oneshot::channel::<()>();
        let first = Arc::new(tokio::sync::Mutex::new(Some(wait_for_last)));
        let signal = Arc::new(std::sync::Mutex::new(Some(last_started)));
        let run = sliding((0..5usize).collect(), 2, |i| {
            let (first, signal) = (first.clone(), signal.clone());
            async move {
                if i == 0 {
                    let rx = first.lock().await.take().expect("one receiver");
                    rx.await.expect("the last item started");
                } else if i == 4 {
                    let tx = signal.lock().unwrap().take().expect("one sender");
                    let _ = tx.send(());
                }
                i
            }
        });
        let out = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("the window slides: item 4 starts while item 0 runs");
        assert_eq!(out, vec![0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn unlimited_starts_every_item_at_once() {
        let flight = Flight::default();
        let n = 50;
        let barrier = tokio::sync::Barrier::new(n);
        let out = sliding((0..n).collect(), Parallel::Unlimited.window(n), |i| {
            let (flight, barrier) = (&flight, &barrier);
            async move {
                // Each waits for all the others: only all at once gets through.
                flight
                    .run(async {
                        barrier.wait().await;
                    })
                    .await;
                i
            }
        });
        let out = tokio::time::timeout(Duration::from_secs(10), out)
            .await
            .expect("every item in flight at once");
        assert_eq!(out.len(), n);
        assert_eq!(flight.most.load(Ordering::SeqCst), n);
    }
}
