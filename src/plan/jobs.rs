//! The jobs of a plan (`x-plimsoll.job`): which of a stack's jobs the apply
//! runs, and why. A `pre` or `post` job runs when the plan changes its stack
//! (an action other than a pull or a build), or when the job itself is new
//! or changed since its last successful run (its settings, the content of
//! the repository files it mounts, its image). `on-failure` jobs are listed
//! with them: they run only if the stack's apply fails. Pure.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::pairing::{DesiredContainer, desired_container, hashed_contents};
use super::{Action, ActionKind, Conflict, Plan, PlannedJob};
use crate::graph::StackGraph;
use crate::hostpath::Unmappable;
use crate::live::{Live, LiveJobRun};
use crate::mounts::{self, Mounts, ServiceMounts};
use crate::names::labels;
use crate::spec::model::{JobKind, PullPolicy, Stack};
use crate::spec::secrets::Masker;

/// The `when` jobs of a stack in the order they run: dependencies between
/// them first (waves of their `depends_on`), then by name.
pub fn in_order(stack: &Stack, when: JobKind) -> Vec<String> {
    let only = Stack {
        name: stack.name.clone(),
        services: stack
            .jobs
            .iter()
            .filter(|(_, j)| j.plimsoll.job == Some(when))
            .map(|(n, j)| (n.clone(), j.clone()))
            .collect(),
        ..Stack::default()
    };
    match StackGraph::build(&only) {
        Ok(g) => g.waves().concat(),
        // Loading rejects cycles; by name all the same.
        Err(_) => only.services.keys().cloned().collect(),
    }
}

/// The container of a run of job `job`, as the engine mapping builds it
/// for a service (its name and one-off labels are the apply's): with
/// `reroot`, paths moved to where an earlier run was created from, to
/// compare with it. `None` when the stack has no such job.
pub fn desired_job(
    stack: &Stack,
    job: &str,
    live: &Live,
    mounted: &ServiceMounts,
    reroot: Option<(&std::path::Path, &std::path::Path)>,
) -> Option<Result<DesiredContainer, Unmappable>> {
    let view = stack.job_view(job)?;
    let contents = hashed_contents(&view, job);
    Some(desired_container(
        &view, job, 1, live, &contents, mounted, reroot,
    ))
}

/// Adds the jobs of `stack` that the apply runs to the plan, and pulls of
/// their images that are not on the host (unless `pulled` already).
pub(super) fn plan_jobs(
    stack: &Stack,
    live: &Live,
    mounts: &Mounts,
    masker: &Masker,
    pulled: &BTreeSet<String>,
    p: &mut Plan,
) {
    if stack.jobs.is_empty() {
        return;
    }
    let changes = p.actions.iter().any(|a| {
        a.stack == stack.name && !matches!(a.action, ActionKind::PullImage | ActionKind::Build)
    });
    let mut due = Vec::new();
    for when in [JobKind::Pre, JobKind::Post] {
        for job in in_order(stack, when) {
            let why = match unsettled(stack, &job, live, mounts) {
                Err(c) => {
                    p.conflicts.push(c);
                    continue;
                }
                Ok(_) if changes => "the stack changes".to_string(),
                Ok(Some(why)) => why,
                Ok(None) => continue,
            };
            due.push(planned(
                stack,
                &job,
                when,
                vec![masker.mask(&why).into_owned()],
            ));
        }
    }
    if due.is_empty() && !changes {
        return;
    }
    for job in in_order(stack, JobKind::OnFailure) {
        let why = format!("only if the apply of {} fails", stack.name);
        due.push(planned(stack, &job, JobKind::OnFailure, vec![why]));
    }
    job_pulls(stack, live, &due, pulled, p);
    p.jobs.extend(due);
}

fn planned(stack: &Stack, job: &str, when: JobKind, reasons: Vec<String>) -> PlannedJob {
    PlannedJob {
        when,
        stack: stack.name.clone(),
        job: job.to_string(),
        image: stack.jobs[job].image_ref(&stack.name, job),
        reasons,
    }
}

/// Pulls of the images `due` jobs run that are not on the host.
fn job_pulls(
    stack: &Stack,
    live: &Live,
    due: &[PlannedJob],
    pulled: &BTreeSet<String>,
    p: &mut Plan,
) {
    let mut missing: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for j in due {
        let on_host = live.images.get(&j.image).is_some_and(Option::is_some);
        if !on_host && !pulled.contains(&j.image) && !j.image.is_empty() {
            missing.entry(&j.image).or_default().push(&j.job);
        }
    }
    for (image, jobs) in missing {
        let never = jobs
            .iter()
            .any(|j| stack.jobs[*j].pull_policy == Some(PullPolicy::Never));
        if never {
            p.conflicts.push(Conflict {
                stack: stack.name.clone(),
                service: jobs.first().map(|j| j.to_string()),
                target: image.to_string(),
                reason: format!(
                    "image {image} is not on this host and pull_policy is never: load or build it on the host"
                ),
            });
            continue;
        }
        p.actions.push(Action {
            action: ActionKind::PullImage,
            stack: stack.name.clone(),
            service: None,
            target: image.to_string(),
            reasons: vec![format!("not on this host; used by job {}", jobs.join(", "))],
            diff: None,
            replica: None,
        });
    }
}

/// Why job `job` must run although its stack does not change (new, changed
/// since its last successful run, that run failed), `None` when a run with
/// its settings, mounted content and image succeeded; a conflict when its
/// container cannot be built on this host.
fn unsettled(
    stack: &Stack,
    job: &str,
    live: &Live,
    mounts: &Mounts,
) -> Result<Option<String>, Conflict> {
    let conflict = |target: String, reason: String| Conflict {
        stack: stack.name.clone(),
        service: Some(job.to_string()),
        target,
        reason,
    };
    let mounted = match mounts.get(&(stack.name.clone(), job.to_string())) {
        Some(Err(e)) => return Err(conflict(job.to_string(), e.to_string())),
        Some(Ok(m)) => m.clone(),
        None => ServiceMounts::new(),
    };
    let runs: Vec<&LiveJobRun> = live
        .jobs
        .iter()
        .filter(|r| r.stack == stack.name && r.job == job)
        .collect();
    let Some(newest) = runs.last() else {
        return Ok(Some("it has not run yet".into()));
    };
    let view = stack.job_view(job).unwrap_or_default();
    let mapping: Option<(PathBuf, PathBuf)> = mounts::live_mapping(
        &view,
        newest
            .labels
            .get(labels::COMPOSE_WORKING_DIR)
            .map(String::as_str),
        &live.paths,
    );
    let want = desired_job(
        stack,
        job,
        live,
        &mounted,
        mapping.as_ref().map(|(f, t)| (f.as_path(), t.as_path())),
    )
    .unwrap_or_else(|| unreachable!("job {job} is one of the stack's"))
    .map_err(|e| conflict(e.path.display().to_string(), e.to_string()))?;
    let image_id = live
        .images
        .get(&stack.jobs[job].image_ref(&stack.name, job))
        .cloned()
        .flatten()
        .map(|i| i.id);
    let same = |r: &LiveJobRun| {
        r.labels.get(labels::SPEC_HASH) == Some(&want.hash)
            && mounted
                .iter()
                .all(|(t, m)| r.labels.get(&mounts::label(t)) == Some(&m.hash))
            && image_id.as_ref().is_none_or(|id| &r.image_id == id)
    };
    Ok(if runs.iter().any(|r| same(r) && r.succeeded()) {
        None
    } else if !same(newest) {
        Some("it changed since its last run".into())
    } else if newest.running {
        Some("its last run did not finish".into())
    } else {
        Some("its last run failed".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::{LiveContainer, RunState};

    const COMPOSE: &str = "name: shop
services:
  web:
    image: busybox:1
  migrate:
    image: busybox:1
    depends_on: [backup]
    x-plimsoll: {job: pre}
  backup:
    image: busybox:1
    x-plimsoll: {job: pre}
  smoke:
    image: tester:1
    depends_on: {web: {condition: service_started}}
    x-plimsoll: {job: post}
  alert:
    image: busybox:1
    x-plimsoll: {job: on-failure}
";

    fn load(dir: &tempfile::TempDir) -> crate::spec::Desired {
        std::fs::write(dir.path().join("compose.yaml"), COMPOSE).unwrap();
        crate::spec::load_path(dir.path())
    }

    fn image(id: &str) -> Option<crate::diff::ImageDefaults> {
        Some(crate::diff::ImageDefaults {
            id: id.into(),
            ..Default::default()
        })
    }

    /// The engine with `web` in sync, and both images on it.
    fn in_sync(d: &crate::spec::Desired) -> Live {
        let stack = &d.stacks[0];
        let mut live = Live::default();
        live.images.insert("busybox:1".into(), image("sha256:b"));
        live.images.insert("tester:1".into(), image("sha256:t"));
        let want =
            desired_container(stack, "web", 1, &live, &[], &ServiceMounts::new(), None).unwrap();
        live.containers.push(LiveContainer {
            id: "id-web".into(),
            name: "shop-web-1".into(),
            stack: "shop".into(),
            service: "web".into(),
            number: 1,
            labels: want.config.labels.clone(),
            state: RunState {
                status: crate::health::Status::Running,
                exit_code: 0,
                oom_killed: false,
                health: None,
                health_log: None,
            },
            config: want.config,
            anonymous_volumes: Default::default(),
        });
        let net = &stack.networks["default"];
        let ipam = crate::spec::model::Ipam {
            driver: Some("default".into()),
            config: vec![crate::spec::model::IpamPool {
                subnet: Some("172.18.0.0/16".into()),
                gateway: Some("172.18.0.1".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut labels = net.labels.clone();
        labels.insert(labels::STACK.into(), "shop".into());
        live.networks.insert(
            net.name.clone(),
            crate::live::LiveNetwork {
                name: net.name.clone(),
                config: crate::diff::network::NetworkConfig {
                    driver: "bridge".into(),
                    ipam,
                    labels,
                    ..Default::default()
                },
                attached: ["shop-web-1".to_string()].into(),
            },
        );
        live
    }

    /// A finished run of `job` as the apply creates it, exit code `code`.
    fn run(
        d: &crate::spec::Desired,
        live: &Live,
        job: &str,
        code: i64,
        created: i64,
    ) -> LiveJobRun {
        let want = desired_job(&d.stacks[0], job, live, &ServiceMounts::new(), None)
            .unwrap()
            .unwrap();
        LiveJobRun {
            id: format!("id-{job}-{created}"),
            name: format!("shop-{job}-run-{created}"),
            stack: "shop".into(),
            job: job.into(),
            labels: want.config.labels,
            image_id: live.images[&d.stacks[0].jobs[job].image_ref("shop", job)]
                .as_ref()
                .unwrap()
                .id
                .clone(),
            created,
            running: false,
            exit_code: Some(code),
        }
    }

    fn plan_of(d: &crate::spec::Desired, live: &Live) -> Plan {
        let stacks: Vec<&Stack> = d.stacks.iter().collect();
        super::super::plan(
            &stacks,
            live,
            &Default::default(),
            &Default::default(),
            &d.masker,
        )
    }

    fn jobs(p: &Plan) -> Vec<(JobKind, &str, &str)> {
        p.jobs
            .iter()
            .map(|j| (j.when, j.job.as_str(), j.reasons[0].as_str()))
            .collect()
    }

    #[test]
    fn jobs_run_with_a_change_of_their_stack_in_dependency_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = load(&dir);
        let mut live = in_sync(&d);
        live.containers.clear();
        live.images.remove("tester:1");
        let p = plan_of(&d, &live);
        let changes = "the stack changes";
        assert_eq!(
            jobs(&p),
            [
                (JobKind::Pre, "backup", changes),
                (JobKind::Pre, "migrate", changes),
                (JobKind::Post, "smoke", changes),
                (
                    JobKind::OnFailure,
                    "alert",
                    "only if the apply of shop fails"
                ),
            ]
        );
        // The job's image is pulled first; jobs are no containers to create.
        assert_eq!(p.actions[0].action, ActionKind::PullImage);
        assert_eq!(
            p.actions[0].reasons,
            ["not on this host; used by job smoke"]
        );
        let creates: Vec<&str> = p
            .actions
            .iter()
            .filter(|a| a.action == ActionKind::Create)
            .map(|a| a.target.as_str())
            .collect();
        assert_eq!(creates, ["shop-web-1"]);
        assert!(!p.is_noop());
        let text = super::super::to_text(&p, false);
        let squeezed = text
            .split(' ')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            squeezed.contains("» run pre job shop/backup the stack changes (busybox:1)"),
            "{text}"
        );
        assert!(
            squeezed.contains("» on failure shop/alert only if"),
            "{text}"
        );
        assert!(text.contains("3 jobs to run"), "{text}");
        let md = super::super::to_markdown(&p);
        assert!(
            md.contains("| » | run post job | shop | smoke | `tester:1` |"),
            "{md}"
        );
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["jobs"][3]["when"], "on-failure");
    }

    #[test]
    fn a_job_runs_again_only_when_it_changed_or_its_last_run_failed() {
        let dir = tempfile::tempdir().unwrap();
        let d = load(&dir);
        let mut live = in_sync(&d);
        // Never run: each pre and post job runs, although nothing else changes.
        let p = plan_of(&d, &live);
        assert!(p.actions.is_empty(), "{:?}", p.actions);
        assert_eq!(jobs(&p)[0], (JobKind::Pre, "backup", "it has not run yet"));
        // Every job ran and succeeded with these settings: nothing to do.
        for (job, t) in [("backup", 1), ("migrate", 2), ("smoke", 3)] {
            let r = run(&d, &live, job, 0, t);
            live.jobs.push(r);
        }
        let p = plan_of(&d, &live);
        assert!(p.is_noop() && p.jobs.is_empty(), "{:?}", p.jobs);
        // The newest run failed, an older one of the same settings succeeded: settled.
        let r = run(&d, &live, "smoke", 1, 4);
        live.jobs.push(r);
        assert!(plan_of(&d, &live).is_noop());
        // Only failed runs: again.
        live.jobs
            .retain(|r| r.job != "smoke" || r.exit_code != Some(0));
        assert_eq!(
            jobs(&plan_of(&d, &live))[0],
            (JobKind::Post, "smoke", "its last run failed")
        );
        // Another image under the tag: it changed.
        live.jobs.retain(|r| r.job != "smoke");
        let r = run(&d, &live, "smoke", 0, 5);
        live.jobs.push(r);
        live.images.insert("tester:1".into(), image("sha256:t2"));
        let p = plan_of(&d, &live);
        assert_eq!(
            jobs(&p),
            [
                (JobKind::Post, "smoke", "it changed since its last run"),
                (
                    JobKind::OnFailure,
                    "alert",
                    "only if the apply of shop fails"
                ),
            ]
        );
    }
}
