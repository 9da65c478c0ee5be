//! Jobs (`x-plimsoll: {job: pre|post|on-failure}`): services that run to
//! completion around an apply instead of running all the time. A stack is
//! loaded and checked with its jobs among its services (references,
//! cycles, profiles, both policies see them as Compose does); then [`split`]
//! checks what only a job must satisfy and moves the jobs into
//! [`Stack::jobs`], so that nothing that keeps services running (the plan's
//! pairing, heals, status, drift, prune) ever sees them.
//!
//! Invariant: pure.

use super::diag::Diag;
use super::model::{JobKind, RestartPolicy, Service, Stack};

/// Checks the jobs of a checked stack and moves them out of its services.
/// Problems go to `diags`; the stack is split all the same.
pub fn split(stack: &mut Stack, diags: &mut Vec<Diag>) {
    for (name, svc) in &stack.services {
        match svc.plimsoll.job {
            Some(kind) => check_job(stack, name, svc, kind, diags),
            None => check_service(stack, name, svc, diags),
        }
    }
    let jobs: Vec<String> = stack
        .services
        .iter()
        .filter(|(_, s)| s.plimsoll.job.is_some())
        .map(|(n, _)| n.clone())
        .collect();
    for name in jobs {
        if let Some(svc) = stack.services.remove(&name) {
            stack.jobs.insert(name, svc);
        }
    }
}

fn error(stack: &Stack, service: &str, key: &str, message: String, hint: &str) -> Diag {
    let path = if key.is_empty() {
        format!("services.{service}")
    } else {
        format!("services.{service}.{key}")
    };
    Diag::error(
        &stack.source.file,
        stack.source.mark(service, key),
        path,
        message,
    )
    .hint(hint)
}

/// What a job may not say: it runs as one-off containers with names of
/// their own, once, from an image.
fn check_job(stack: &Stack, name: &str, svc: &Service, kind: JobKind, diags: &mut Vec<Diag>) {
    if svc.build.is_some() {
        diags.push(error(
            stack,
            name,
            "build",
            format!("job `{name}` has `build:`; a job runs an image"),
            "build the image in a service and name the same image here with `image:`",
        ));
    }
    if svc.container_name.is_some() {
        diags.push(error(
            stack,
            name,
            "container_name",
            format!("job `{name}` has a container_name; each run of a job gets a name of its own (`<stack>-<job>-run-<id>`)"),
            "remove container_name",
        ));
    }
    if svc.replicas() != 1 {
        diags.push(error(
            stack,
            name,
            if svc.scale.is_some() {
                "scale"
            } else {
                "deploy"
            },
            format!(
                "job `{name}` asks for {} replicas; a job runs one container",
                svc.replicas()
            ),
            "remove scale / deploy.replicas",
        ));
    }
    if svc
        .restart
        .as_ref()
        .is_some_and(|r| *r != RestartPolicy::No)
    {
        diags.push(error(
            stack,
            name,
            "restart",
            format!("job `{name}` has a restart policy; a job runs once to completion"),
            "remove restart (or set it to \"no\")",
        ));
    }
    for (dep, other) in job_dependencies(stack, svc, kind) {
        diags.push(error(
            stack,
            name,
            &format!("depends_on.{dep}"),
            format!(
                "{kind} job `{name}` depends on {other} job `{dep}`, which runs at another time"
            ),
            "a job may depend on services and on jobs of its own kind",
        ));
    }
}

/// A service may depend on a `pre` job (it has run before any service
/// changes), not on a job that runs after or only on failure; `timeout`
/// is a job's.
fn check_service(stack: &Stack, name: &str, svc: &Service, diags: &mut Vec<Diag>) {
    if svc.plimsoll.timeout.is_some() {
        diags.push(error(
            stack,
            name,
            "x-plimsoll",
            format!("x-plimsoll.timeout on service `{name}`, which is not a job"),
            "timeout bounds a job's run: add `job: pre|post|on-failure`, or use health_timeout for a service's gate",
        ));
    }
    for (dep, kind) in job_dependencies(stack, svc, JobKind::Pre) {
        diags.push(error(
            stack,
            name,
            &format!("depends_on.{dep}"),
            format!("service `{name}` depends on {kind} job `{dep}`, which runs only after the services"),
            "a service may depend on a pre job (it runs before any service changes); remove this dependency",
        ));
    }
}

/// The jobs `svc` depends on that are not of kind `but`, with their kinds.
fn job_dependencies<'a>(
    stack: &'a Stack,
    svc: &'a Service,
    but: JobKind,
) -> impl Iterator<Item = (&'a String, JobKind)> + 'a {
    svc.depends_on.keys().filter_map(move |dep| {
        let kind = stack
            .services
            .get(dep)?
            .plimsoll
            .job
            .filter(|k| *k != but)?;
        Some((dep, kind))
    })
}

#[cfg(test)]
mod tests {
    fn load(compose: &str) -> Result<crate::spec::Desired, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), compose).unwrap();
        let layout = crate::source::discover(dir.path()).unwrap();
        crate::spec::load(&layout, &crate::source::LocalFs, &Default::default(), &[])
            .map_err(|e| e.to_string())
    }

    const BASE: &str = "name: jobs\nservices:\n  db:\n    image: postgres:15\n";

    #[test]
    fn jobs_leave_the_services_and_render_with_them() {
        let d = load(&format!(
            "{BASE}  backup:\n    image: postgres:15\n    depends_on: [db]\n    x-plimsoll: {{job: pre, timeout: 2m}}\n  api:\n    image: api:1\n    depends_on: {{backup: {{condition: service_completed_successfully}}}}\n"
        ))
        .unwrap();
        let s = &d.stacks[0];
        assert_eq!(s.services.keys().collect::<Vec<_>>(), ["api", "db"]);
        assert_eq!(s.jobs.keys().collect::<Vec<_>>(), ["backup"]);
        let job = &s.jobs["backup"].plimsoll;
        assert_eq!(job.job, Some(crate::spec::model::JobKind::Pre));
        assert_eq!(job.timeout.map(|t| t.0.as_secs()), Some(120));
        let rendered = crate::spec::render::to_value(s, &d.masker, false);
        assert_eq!(
            rendered["services"]["backup"]["x-plimsoll"]["job"],
            serde_json::json!("pre")
        );
        // A stored revision loads back with its jobs apart.
        let stored = crate::spec::render::to_stored(s, &d.masker);
        let (back, _) = crate::spec::load_stored(&stored, &crate::source::LocalFs).unwrap();
        assert_eq!(back.jobs.keys().collect::<Vec<_>>(), ["backup"]);
        assert!(!back.services.contains_key("backup"));
    }

    #[test]
    fn what_a_job_may_not_say() {
        for (extra, why) in [
            ("    container_name: x\n", "container_name"),
            ("    scale: 2\n", "replicas"),
            ("    restart: always\n", "restart policy"),
            ("    build: .\n", "has `build:`"),
        ] {
            let e = load(&format!(
                "{BASE}  t:\n    image: busybox\n{extra}    x-plimsoll: {{job: post}}\n"
            ))
            .unwrap_err();
            assert!(e.contains(why), "{extra}: {e}");
            assert!(e.contains("services.t"), "{e}");
        }
        let e = load(&format!(
            "{BASE}  t:\n    image: busybox\n    x-plimsoll: {{job: sometimes}}\n"
        ))
        .unwrap_err();
        assert!(e.contains("x-plimsoll.job"), "{e}");
    }

    #[test]
    fn dependencies_between_jobs_and_services() {
        // A service waits for no post job; a job for no job of another kind.
        let e = load(&format!(
            "{BASE}  smoke:\n    image: busybox\n    x-plimsoll: {{job: post}}\n  api:\n    image: api:1\n    depends_on: [smoke]\n"
        ))
        .unwrap_err();
        assert!(e.contains("depends on post job `smoke`"), "{e}");
        let e = load(&format!(
            "{BASE}  m:\n    image: busybox\n    x-plimsoll: {{job: pre}}\n  t:\n    image: busybox\n    depends_on: [m]\n    x-plimsoll: {{job: post}}\n"
        ))
        .unwrap_err();
        assert!(e.contains("post job `t` depends on pre job `m`"), "{e}");
        let e = load(&format!(
            "{BASE}  api:\n    image: api:1\n    x-plimsoll: {{timeout: 1m}}\n"
        ))
        .unwrap_err();
        assert!(e.contains("not a job"), "{e}");
        // A post job after a service, a pre job after another: fine.
        load(&format!(
            "{BASE}  a:\n    image: busybox\n    x-plimsoll: {{job: pre}}\n  b:\n    image: busybox\n    depends_on: [a, db]\n    x-plimsoll: {{job: pre}}\n  t:\n    image: busybox\n    depends_on: {{db: {{condition: service_healthy}}}}\n    x-plimsoll: {{job: post}}\n"
        ))
        .unwrap();
    }
}
