//! Jobs (`x-plimsoll: {job: pre|post|on-failure}`) on the real engine:
//! a `pre` job that dumps a PostgreSQL database before a change (the dump
//! exists, then the change applies); a failing `pre` job that leaves every
//! container as it was, runs the `on-failure` job once and shows its last
//! log lines with a secret canary masked in the error and the history; a
//! job killed at its timeout; runs kept per job; `reconcile` and the agent sending a stack
//! whose `post` test fails back to its last good revision (data kept), the
//! revision rejected with the job's masked log lines in `/status`, the
//! notification and the audit log, and a later good commit applied.
//!
//! Each test has its own stack (unique name), repository or stack directory
//! and state directory; the stack's containers (job runs included),
//! networks and volumes are removed when it ends, by panic too.

use std::path::Path;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::agent::{Agent, Receiver, Scenario};
use crate::support::{
    BUSYBOX_IMAGE, Cleanup, POSTGRES_IMAGE, Run, docker, docker_output, ensure_busybox,
    ensure_postgres, labelled_ids, wait_for,
};

/// A stack directory, its state directory, and the cleanup of its stack.
struct JobStack {
    name: String,
    dir: tempfile::TempDir,
    state: tempfile::TempDir,
    _cleanup: Cleanup,
}

impl JobStack {
    fn new(what: &str) -> JobStack {
        ensure_busybox();
        let mut cleanup = Cleanup::new();
        JobStack {
            name: cleanup.stack(what),
            dir: tempfile::tempdir().unwrap(),
            state: tempfile::tempdir().unwrap(),
            _cleanup: cleanup,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `compose.yaml` with the stack's `name:` before `yaml`.
    fn compose(&self, yaml: &str) {
        std::fs::write(
            self.path().join("compose.yaml"),
            format!("name: {}\n{yaml}", self.name),
        )
        .unwrap();
    }

    fn plimsoll(&self, args: &[&str]) -> Run {
        let mut cmd = crate::support::plimsoll_command(self.state.path(), self.path(), args);
        Run::of(args, &mut cmd)
    }

    fn reconcile(&self) -> Run {
        let path = self.path().display().to_string();
        self.plimsoll(&["reconcile", &path])
    }

    fn dry_run(&self) -> Run {
        let path = self.path().display().to_string();
        self.plimsoll(&["reconcile", &path, "--dry-run", "--format", "json"])
    }

    fn history(&self) -> Vec<Value> {
        let run = self.plimsoll(&["history", "--format", "json"]);
        run.expect(0);
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run}"))
    }

    /// The container of service `service`.
    fn container(&self, service: &str) -> String {
        format!("{}-{service}-1", self.name)
    }

    /// The runs of job `job` on the engine (names), oldest first.
    fn runs(&self, job: &str) -> Vec<String> {
        runs_of(&self.name, job)
    }
}

/// The runs of `job` of `stack` on the engine (names), oldest first.
fn runs_of(stack: &str, job: &str) -> Vec<String> {
    let ids = labelled_ids("container", &format!("io.plimsoll.stack={stack}"));
    let mut runs: Vec<(String, String)> = ids
        .iter()
        .filter_map(|id| {
            let out = docker(&[
                "inspect",
                "-f",
                "{{.Created}} {{.Name}} {{index .Config.Labels \"io.plimsoll.service\"}} {{index .Config.Labels \"io.plimsoll.job\"}}",
                id,
            ]);
            let parts: Vec<&str> = out.split_whitespace().collect();
            (parts.len() == 4 && parts[2] == job)
                .then(|| (parts[0].to_string(), parts[1].trim_start_matches('/').to_string()))
        })
        .collect();
    runs.sort();
    runs.into_iter().map(|(_, n)| n).collect()
}

fn inspect(name: &str, format: &str) -> String {
    docker(&["inspect", "-f", format, name])
}

/// The newest history record (of `outcome`).
fn newest<'a>(history: &'a [Value], outcome: &str) -> &'a Value {
    history
        .iter()
        .rev()
        .find(|r| r["outcome"] == outcome)
        .unwrap_or_else(|| panic!("no {outcome} record in {history:#?}"))
}

/// A `pre` job dumps the database before the change that follows it; the
/// plan shows it; applied, nothing is left to do and no job runs again.
#[test]
fn jobs_pre_job_dumps_the_database_before_a_change() {
    ensure_postgres();
    let s = JobStack::new("jobs-pre-dump");
    // A host directory outside the repository (what a job writes into a
    // repository directory it mounts would make it run again).
    let host = tempfile::tempdir().unwrap();
    let backup = host.path().to_path_buf();
    let services = |version: &str| {
        format!(
            "services:
  db:
    image: {POSTGRES_IMAGE}
    environment: {{POSTGRES_USER: shop, POSTGRES_DB: shop, POSTGRES_PASSWORD: s3cret-pw}}
    volumes: [data:/var/lib/postgresql/data]
    healthcheck: {{test: [CMD, pg_isready, -U, shop, -d, shop], interval: 1s, retries: 60, start_period: 1m}}
  api:
    image: {BUSYBOX_IMAGE}
    init: true
    command: [sleep, '3600']
    environment: {{VERSION: '{version}'}}
    depends_on: {{db: {{condition: service_healthy}}}}
"
        )
    };
    let volumes = "volumes:\n  data: {}\n";
    s.compose(&format!("{}{volumes}", services("1")));
    s.reconcile().expect(0);
    // A table to dump, once the server answers over TCP (after its first start).
    let db_name = s.container("db");
    wait_for(
        "psql over TCP",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            docker_output(&[
                "exec",
                "-e",
                "PGPASSWORD=s3cret-pw",
                &db_name,
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                "shop",
                "-d",
                "shop",
                "-c",
                "CREATE TABLE orders (id int); INSERT INTO orders VALUES (42);",
            ])
            .status
            .success()
            .then_some(())
        },
    );
    let db_id = inspect(&db_name, "{{.Id}}");
    let job = format!(
        "  backup:
    image: {POSTGRES_IMAGE}
    environment: {{PGPASSWORD: s3cret-pw}}
    command: [sh, -c, 'pg_dump -h db -U shop shop > /backup/shop.sql']
    volumes: ['{}:/backup']
    depends_on: {{db: {{condition: service_healthy}}}}
    x-plimsoll: {{job: pre, timeout: 1m}}
",
        backup.display()
    );
    s.compose(&format!("{}{job}{volumes}", services("2")));
    // The plan shows the job before the change it guards.
    let plan = s.dry_run();
    plan.expect(2);
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(plan["jobs"][0]["job"], "backup", "{plan:#}");
    assert_eq!(plan["jobs"][0]["when"], "pre", "{plan:#}");
    assert_eq!(
        plan["jobs"][0]["reasons"][0], "the stack changes",
        "{plan:#}"
    );

    s.reconcile().expect(0);
    let dump = std::fs::read_to_string(backup.join("shop.sql")).expect("the dump exists");
    assert!(dump.contains("CREATE TABLE public.orders"), "{dump}");
    // Dumped before the api changed: the file is older than its new container.
    let api = s.container("api");
    assert!(inspect(&api, "{{json .Config.Env}}").contains("VERSION=2"));
    let created: jiff::Timestamp = inspect(&api, "{{.Created}}").parse().unwrap();
    let dumped = std::fs::metadata(backup.join("shop.sql"))
        .unwrap()
        .modified()
        .unwrap();
    assert!(
        jiff::Timestamp::try_from(dumped).unwrap() <= created,
        "the dump ({dumped:?}) precedes the new api container ({created})"
    );
    assert_eq!(
        inspect(&db_name, "{{.Id}}"),
        db_id,
        "the database was not touched"
    );
    // The run: a one-off container of plimsoll's, never an unknown one.
    let runs = s.runs("backup");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(
        runs[0].starts_with(&format!("{}-backup-run-", s.name)),
        "{runs:?}"
    );
    assert_eq!(
        inspect(
            &runs[0],
            "{{index .Config.Labels \"com.docker.compose.oneoff\"}} {{index .Config.Labels \"io.plimsoll.job\"}} {{.State.ExitCode}}"
        ),
        "True pre 0"
    );
    let status = s.plimsoll(&["status", &s.path().display().to_string()]);
    status.expect(0);
    assert!(
        !status.stdout.contains("backup"),
        "a job is not a service: {status}"
    );
    assert!(!status.stdout.contains(&runs[0]), "never unknown: {status}");
    // In sync: nothing to do, the job does not run again.
    s.dry_run().expect(0);
    s.reconcile().expect(0);
    assert_eq!(s.runs("backup").len(), 1);
    let history = s.history();
    let record = newest(&history, "applied");
    assert_eq!(record["jobs"][0]["job"], "backup", "{record:#}");
    assert_eq!(record["jobs"][0]["exit_code"], 0, "{record:#}");
}

/// A failing `pre` job changes no container: the error names the job, its
/// exit code and its last log lines, a secret among them masked (also in
/// the history); the `on-failure` job runs once. A job past its timeout is
/// killed and fails the same way. Runs are kept per job, the newest three.
#[test]
fn jobs_failing_pre_job_changes_nothing_and_on_failure_runs_once() {
    let s = JobStack::new("jobs-pre-fail");
    let canary = format!("canary-s3cr3t-{}", crate::support::unique_name("job"));
    let stack = |version: &str, pre: &str, timeout: &str| {
        format!(
            "services:
  web:
    image: {BUSYBOX_IMAGE}
    init: true
    command: [sleep, '3600']
    environment: {{VERSION: '{version}'}}
  check:
    image: {BUSYBOX_IMAGE}
    environment: {{API_TOKEN: {canary}}}
    command: [sh, -c, '{pre}']
    x-plimsoll: {{job: pre, timeout: {timeout}}}
  alert:
    image: {BUSYBOX_IMAGE}
    command: [echo, alerting]
    x-plimsoll: {{job: on-failure}}
"
        )
    };
    s.compose(&stack("1", "echo ok", "1m"));
    s.reconcile().expect(0);
    let web = s.container("web");
    let id = inspect(&web, "{{.Id}}");
    assert_eq!(s.runs("check").len(), 1);
    assert!(
        s.runs("alert").is_empty(),
        "on-failure runs only after a failure"
    );

    s.compose(&stack(
        "2",
        "echo checking with $$API_TOKEN; echo schema too old >&2; exit 3",
        "1m",
    ));
    let run = s.reconcile();
    run.expect(1);
    let err = run.stderr.clone();
    assert!(
        err.contains(&format!(
            "pre job {}/check failed: exited with code 3",
            s.name
        )),
        "{run}"
    );
    assert!(err.contains("schema too old"), "the last log lines: {run}");
    assert!(err.contains("checking with ********"), "masked: {run}");
    assert!(err.contains("no container was changed"), "{run}");
    assert!(!run.all().contains(&canary), "{run}");
    assert_eq!(inspect(&web, "{{.Id}}"), id, "web was not touched");
    assert!(inspect(&web, "{{json .Config.Env}}").contains("VERSION=1"));
    assert_eq!(s.runs("alert").len(), 1, "on-failure ran once");
    let history = s.history();
    let text = serde_json::to_string(&history).unwrap();
    assert!(!text.contains(&canary), "the history is masked");
    let failed = newest(&history, "failed");
    let jobs = failed["jobs"].as_array().unwrap();
    let check = jobs.iter().find(|j| j["job"] == "check").unwrap();
    assert_eq!(check["exit_code"], 3, "{failed:#}");
    assert!(
        check["logs"].to_string().contains("checking with ********"),
        "{failed:#}"
    );
    let alert = jobs.iter().find(|j| j["job"] == "alert").unwrap();
    assert_eq!(alert["logs"][0], "alerting", "{failed:#}");

    // A job past its timeout is killed: it fails, nothing changes.
    s.compose(&stack("2", "sleep 30", "1s"));
    let run = s.reconcile();
    run.expect(1);
    assert!(
        run.stderr
            .contains("did not finish within 1s and was killed"),
        "{run}"
    );
    assert_eq!(inspect(&web, "{{.Id}}"), id);
    assert_eq!(s.runs("alert").len(), 2, "once per failed apply");

    // Fixed: it runs, then the change applies. Runs are kept, three per job.
    s.compose(&stack("2", "echo ok", "1m"));
    s.reconcile().expect(0);
    assert!(inspect(&web, "{{json .Config.Env}}").contains("VERSION=2"));
    s.compose(&stack("3", "echo ok", "1m"));
    s.reconcile().expect(0);
    let runs = s.runs("check");
    assert_eq!(runs.len(), 3, "the newest three runs are kept: {runs:?}");
    assert!(
        runs.iter().all(|r| inspect(r, "{{.State.ExitCode}}") == "0"
            || inspect(r, "{{.State.ExitCode}}") == "137"),
        "{runs:?}"
    );
}

/// `plimsoll reconcile` runs jobs as the agent does: a failed `post` job
/// sends the stack back to the revision applied before (recorded as a
/// rollback in the history) and the run exits 1 saying so.
#[test]
fn jobs_reconcile_goes_back_after_a_failed_post_job() {
    let s = JobStack::new("jobs-post-cli");
    let stack = |version: &str, test: &str| {
        format!(
            "services:
  web:
    image: {BUSYBOX_IMAGE}
    init: true
    command: [sleep, '3600']
    environment: {{VERSION: '{version}'}}
  test:
    image: {BUSYBOX_IMAGE}
    command: [sh, -c, '{test}']
    x-plimsoll: {{job: post}}
"
        )
    };
    s.compose(&stack("1", "echo fine"));
    s.reconcile().expect(0);
    let web = s.container("web");
    s.compose(&stack("2", "echo broken; exit 1"));
    let run = s.reconcile();
    run.expect(1);
    assert!(
        run.stderr.contains(&format!(
            "{}/test: post job failed: exited with code 1",
            s.name
        )),
        "{run}"
    );
    assert!(run.stderr.contains("broken"), "{run}");
    assert!(
        run.stderr
            .contains(&format!("{}: went back to revision local:", s.name)),
        "{run}"
    );
    assert!(
        inspect(&web, "{{json .Config.Env}}").contains("VERSION=1"),
        "back on 1"
    );
    assert_eq!(inspect(&web, "{{.State.Running}}"), "true");
    let history = s.history();
    let last = history.last().unwrap();
    assert_eq!(last["rollback"], true, "{last:#}");
    assert_eq!(last["outcome"], "applied", "{last:#}");
    assert!(last["jobs"].is_null(), "going back runs no job: {last:#}");
    // Git still says 2: the change is pending, and applies once the test passes.
    s.dry_run().expect(2);
    s.compose(&stack("2", "echo fine again"));
    s.reconcile().expect(0);
    assert!(inspect(&web, "{{json .Config.Env}}").contains("VERSION=2"));
}

/// `stacks/<stack>/compose.yaml` of a web page that says `greeting`, with a
/// named volume, a `post` test that wants the page to say "good" (and
/// prints the canary), and an `on-failure` job.
fn tested_stack(stack: &str, greeting: &str, canary: &str) -> String {
    format!(
        "name: {stack}
services:
  web:
    image: {BUSYBOX_IMAGE}
    command: [sh, -c, 'mkdir -p /www && echo $$GREETING > /www/index.html && exec httpd -f -p 8080 -h /www']
    environment: {{GREETING: {greeting}}}
    stop_signal: SIGKILL
    volumes: [data:/data]
    healthcheck: {{test: [CMD, wget, -qO-, 'http://127.0.0.1:8080/'], interval: 1s, retries: 30}}
  smoke:
    image: {BUSYBOX_IMAGE}
    environment: {{API_TOKEN: {canary}}}
    command: [sh, -c, 'echo testing with $$API_TOKEN; page=$$(wget -qO- http://web:8080/); echo page says $$page; case $$page in good*) ;; *) exit 1;; esac']
    depends_on: {{web: {{condition: service_started}}}}
    x-plimsoll: {{job: post, timeout: 1m}}
  alert:
    image: {BUSYBOX_IMAGE}
    command: [echo, the deploy failed]
    x-plimsoll: {{job: on-failure}}
volumes:
  data: {{}}
"
    )
}

/// The agent: a revision whose `post` test fails is rejected and the stack
/// goes back to the last good revision (its data kept); the job's last log
/// lines, masked, are in `/status`, the notification and the audit log;
/// `on-failure` runs once; a later good commit applies.
#[test]
fn jobs_agent_failed_post_job_goes_back_and_rejects_the_revision() {
    let sc = Scenario::new("jobs-post");
    let (stack, web, repo, state) = (&sc.stack, &sc.web, &sc.repo, &sc.state);
    let receiver = Receiver::start();
    let canary = format!("canary-s3cr3t-{}", crate::support::unique_name("post"));
    let file = format!("stacks/{stack}/compose.yaml");
    repo.write("plimsoll.yaml", &receiver.notifications());
    repo.write(&file, &tested_stack(stack, "good-1", &canary));
    let good = repo.commit("good-1");
    let agent = Agent::start(state, &repo.url(), &["--interval", "1s"], &[]);
    agent.wait_revision(&good, Duration::from_secs(60));
    assert_eq!(runs_of(stack, "smoke").len(), 1);
    docker(&["exec", web, "sh", "-c", "echo kept > /data/file"]);

    repo.write(&file, &tested_stack(stack, "bad-2", &canary));
    let bad = repo.commit("bad-2");
    let status = agent.wait_status("the bad revision rejected", Duration::from_secs(60), |s| {
        s["rejected"]["revision"] == bad
    });
    let reason = status["rejected"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!(
            "{stack}/smoke: post job failed: exited with code 1"
        )),
        "{reason}"
    );
    assert!(
        reason.contains("page says bad-2"),
        "the last log lines: {reason}"
    );
    assert!(reason.contains("testing with ********"), "masked: {reason}");
    assert!(
        reason.contains(&format!("{stack}: went back to revision {good}")),
        "{reason}"
    );
    assert_eq!(status["revision"], good, "{status:#}");
    // Back on the good revision, the data kept.
    crate::agent::wait_greeting(web, "good-1", Duration::from_secs(30));
    assert_eq!(docker(&["exec", web, "cat", "/data/file"]), "kept");
    let note = receiver.wait_event("revision_rejected", Duration::from_secs(20), |n| {
        n["revision"] == bad
    });
    let message = note["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("testing with ********") && message.contains("page says bad-2"),
        "{note:#}"
    );
    // The dashboard's rejected revision says why, with the same lines.
    let page = agent.get("/ui").body;
    assert!(
        page.contains("page says bad-2") && page.contains("testing with ********"),
        "{page}"
    );
    let rejected = audited_rejection(state, &bad);
    assert!(rejected.contains("page says bad-2"), "{rejected}");
    // on-failure ran once, and nothing runs again while the revision stays rejected.
    thread::sleep(Duration::from_secs(3));
    assert_eq!(runs_of(stack, "alert").len(), 1);
    assert_eq!(runs_of(stack, "smoke").len(), 2);
    let everything = format!(
        "{}\n{}\n{}\n{}",
        agent.log(),
        agent.get("/status").body,
        serde_json::to_string(&receiver.all()).unwrap(),
        history_text(state)
    );
    assert!(
        !everything.contains(&canary),
        "the canary is masked everywhere"
    );

    // A later good commit applies.
    repo.write(&file, &tested_stack(stack, "good-3", &canary));
    let fixed = repo.commit("good-3");
    agent.wait_revision(&fixed, Duration::from_secs(60));
    crate::agent::wait_greeting(web, "good-3", Duration::from_secs(10));
    assert_eq!(docker(&["exec", web, "cat", "/data/file"]), "kept");
    assert_eq!(runs_of(stack, "smoke").len(), 3);
    assert_eq!(runs_of(stack, "alert").len(), 1);
}

/// `plimsoll history --format json` of the agent's state directory, as text.
fn history_text(state: &Path) -> String {
    let mut cmd =
        crate::support::plimsoll_command(state, Path::new("/"), &["history", "--format", "json"]);
    Run::of(&["history"], &mut cmd).stdout
}

/// The error of the audit record that rejected `revision`.
fn audited_rejection(state: &Path, revision: &str) -> String {
    let history: Vec<Value> = serde_json::from_str(&history_text(state)).unwrap();
    history
        .iter()
        .find(|r| r["revision"] == revision && r["outcome"] == "rejected")
        .and_then(|r| r["error"].as_str())
        .unwrap_or_else(|| panic!("no rejection of {revision} in {history:#?}"))
        .to_string()
}
