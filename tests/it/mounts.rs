//! Repository files that services bind-mount, on the real engine: the same
//! repository checked out at three paths plans "no changes" after the
//! first apply (where a checkout is is not desired state); a changed
//! mounted file or directory recreates its container, which then sees the
//! new content; with `x-plimsoll: {on_mount_change: restart}` the same
//! container is restarted instead, sees the new content, and the next plan
//! is empty.
//!
//! Each test writes a git work tree (`git init`, no commit needed: the
//! `.git` entry makes it the repository root) with the stack under
//! `stacks/<name>/`, and removes everything labelled with its stack name on
//! drop, panics included.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{
    BUSYBOX_IMAGE, Run, docker, ensure_busybox, labelled_ids, plan_actions, plimsoll_command,
    quiet, unique_name,
};

/// One stack in a git work tree, possibly copied to other paths.
struct Checkouts {
    name: String,
    /// The work trees (`<tempdir>/repo`), the first written by the test.
    trees: Vec<tempfile::TempDir>,
    state: tempfile::TempDir,
}

const CONF: &str = "conf/app.conf";

impl Checkouts {
    /// A work tree with `stacks/<name>/compose.yaml` (`service` yaml
    /// appended under `services: web:`), `conf/app.conf` and `www/index.html`.
    fn new(what: &str, extra: &str) -> Checkouts {
        ensure_busybox();
        let name = unique_name(what);
        let tree = tempfile::Builder::new()
            .prefix("plimsoll-it-mounts-")
            .tempdir()
            .expect("tempdir");
        let c = Checkouts {
            name,
            trees: vec![tree],
            state: tempfile::tempdir().expect("tempdir"),
        };
        let git = Command::new("git")
            .args(["init", "-q"])
            .arg(c.trees[0].path())
            .stdin(Stdio::null())
            .status()
            .expect("run git");
        assert!(git.success(), "git init failed");
        let compose = format!(
            "name: {}\nservices:\n  web:\n    image: {BUSYBOX_IMAGE}\n    command: [\"sleep\", \"600\"]\n    stop_signal: SIGKILL\n    volumes:\n      - ./{CONF}:/etc/app.conf:ro\n      - ./www:/www:ro\n{extra}",
            c.name
        );
        c.write(0, "compose.yaml", &compose);
        c.write(0, CONF, "version one\n");
        c.write(0, "www/index.html", "<p>one</p>\n");
        c
    }

    /// The stack directory in checkout `i`.
    fn dir(&self, i: usize) -> PathBuf {
        self.trees[i].path().join("stacks").join(&self.name)
    }

    /// Writes a file of the stack in checkout `i` as git checkout does:
    /// a new file renamed over the old one (a new inode).
    fn write(&self, i: usize, file: &str, content: &str) {
        let path = self.dir(i).join(file);
        fs::create_dir_all(path.parent().unwrap()).expect("mkdir");
        let tmp = path.with_extension("tmp-write");
        fs::write(&tmp, content).expect("write");
        fs::rename(&tmp, &path).expect("rename");
    }

    /// Copies checkout 0 to a new path (`cp -a`), returning its index.
    fn copy(&mut self) -> usize {
        let tree = tempfile::Builder::new()
            .prefix("plimsoll-it-mounts-copy-")
            .tempdir()
            .expect("tempdir");
        let ok = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", self.trees[0].path().display()))
            .arg(tree.path())
            .status()
            .expect("run cp")
            .success();
        assert!(ok, "cp -a failed");
        self.trees.push(tree);
        self.trees.len() - 1
    }

    fn plimsoll(&self, i: usize, args: &[&str]) -> Run {
        let mut cmd = plimsoll_command(self.state.path(), &self.dir(i), args);
        Run::of(args, &mut cmd)
    }

    fn dry_run(&self, i: usize) -> Run {
        let dir = self.dir(i).display().to_string();
        self.plimsoll(i, &["reconcile", &dir, "--dry-run", "--format", "json"])
    }

    fn apply(&self, i: usize) -> Run {
        let dir = self.dir(i).display().to_string();
        self.plimsoll(i, &["reconcile", &dir])
    }

    fn container(&self) -> String {
        format!("{}-web-1", self.name)
    }

    fn id(&self) -> String {
        docker(&["inspect", "--format", "{{.Id}}", &self.container()])
    }

    fn cat(&self, path: &str) -> String {
        docker(&["exec", &self.container(), "cat", path])
    }
}

impl Drop for Checkouts {
    fn drop(&mut self) {
        let label = format!("io.plimsoll.stack={}", self.name);
        let ids = labelled_ids("container", &label);
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids.iter().map(String::as_str));
            quiet(&args);
        }
        for n in labelled_ids("network", &label) {
            quiet(&["network", "rm", &n]);
        }
    }
}

/// The single action of a JSON plan: (kind, reasons).
fn only_action(run: &Run) -> (String, Vec<String>) {
    let plan = run.plan_json();
    let actions = plan["actions"].as_array().expect("actions");
    assert_eq!(actions.len(), 1, "one action expected:\n{run}");
    let reasons = actions[0]["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .map(|r| r.as_str().unwrap_or_default().to_string())
        .collect();
    (
        actions[0]["action"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        reasons,
    )
}

#[test]
fn the_same_repository_at_three_paths_plans_no_changes() {
    let mut c = Checkouts::new("mounts-paths", "");
    let (second, third) = (c.copy(), c.copy());
    c.apply(0).expect(0);
    let labels = docker(&[
        "inspect",
        "--format",
        "{{index .Config.Labels \"com.docker.compose.project.working_dir\"}}",
        &c.container(),
    ]);
    assert!(
        Path::new(&labels).starts_with(fs::canonicalize(c.trees[0].path()).unwrap()),
        "created from the first checkout's paths: {labels}"
    );
    for i in [second, third] {
        let run = c.dry_run(i);
        run.expect(0);
        assert!(
            plan_actions(&run.plan_json()).is_empty(),
            "no changes from checkout {i}:\n{run}"
        );
    }
    // A change in another checkout is a change, and is applied from its paths.
    c.write(second, CONF, "version two\n");
    let (kind, reasons) = only_action(&c.dry_run(second));
    assert_eq!(kind, "recreate");
    assert_eq!(reasons, vec!["mounted file conf/app.conf changed"]);
    c.apply(second).expect(0);
    assert_eq!(c.cat("/etc/app.conf"), "version two");
    let source = docker(&[
        "inspect",
        "--format",
        "{{range .Mounts}}{{if eq .Destination \"/etc/app.conf\"}}{{.Source}}{{end}}{{end}}",
        &c.container(),
    ]);
    assert!(
        Path::new(&source).starts_with(fs::canonicalize(c.trees[second].path()).unwrap()),
        "a recreated container gets the paths of the checkout at hand: {source}"
    );
}

#[test]
fn a_changed_mounted_file_recreates_its_container() {
    let c = Checkouts::new("mounts-file", "");
    c.apply(0).expect(0);
    assert_eq!(c.cat("/etc/app.conf"), "version one");
    let before = c.id();
    c.write(0, CONF, "version two\n");
    let (kind, reasons) = only_action(&c.dry_run(0));
    assert_eq!(kind, "recreate");
    assert_eq!(reasons, vec!["mounted file conf/app.conf changed"]);
    c.apply(0).expect(0);
    assert_ne!(c.id(), before, "recreated");
    assert_eq!(c.cat("/etc/app.conf"), "version two");
    c.dry_run(0).expect(0);
}

#[test]
fn a_changed_mounted_directory_recreates_its_container() {
    let c = Checkouts::new("mounts-dir", "");
    c.apply(0).expect(0);
    let before = c.id();
    c.write(0, "www/index.html", "<p>two</p>\n");
    let (kind, reasons) = only_action(&c.dry_run(0));
    assert_eq!(kind, "recreate");
    assert_eq!(reasons, vec!["mounted directory www changed"]);
    c.apply(0).expect(0);
    assert_ne!(c.id(), before, "recreated");
    assert_eq!(c.cat("/www/index.html"), "<p>two</p>");
    c.dry_run(0).expect(0);
}

#[test]
fn on_mount_change_restart_restarts_the_same_container() {
    let c = Checkouts::new(
        "mounts-restart",
        "    x-plimsoll:\n      on_mount_change: restart\n",
    );
    c.apply(0).expect(0);
    let before = c.id();
    c.write(0, CONF, "version two\n");
    let (kind, reasons) = only_action(&c.dry_run(0));
    assert_eq!(kind, "restart");
    assert_eq!(reasons, vec!["mounted file conf/app.conf changed"]);
    c.apply(0).expect(0);
    assert_eq!(c.id(), before, "the same container");
    assert_eq!(c.cat("/etc/app.conf"), "version two");
    let again = c.dry_run(0);
    again.expect(0);
    assert!(plan_actions(&again.plan_json()).is_empty(), "{again}");
    // A second change restarts again (the recorded hash, not the label, is compared).
    c.write(0, "www/index.html", "<p>two</p>\n");
    let (kind, reasons) = only_action(&c.dry_run(0));
    assert_eq!(kind, "restart");
    assert_eq!(reasons, vec!["mounted directory www changed"]);
}

#[test]
fn a_stack_directory_applied_on_its_own_then_from_the_repository_plans_no_changes() {
    let c = Checkouts::new("mounts-alone", "");
    // The stack directory copied out of the repository (no git: its own root),
    // as `plimsoll reconcile /srv/ops/big` before an agent took over.
    let alone = tempfile::Builder::new()
        .prefix("plimsoll-it-mounts-alone-")
        .tempdir()
        .expect("tempdir");
    let ok = Command::new("cp")
        .arg("-a")
        .arg(c.dir(0))
        .arg(alone.path())
        .status()
        .expect("run cp")
        .success();
    assert!(ok, "cp -a failed");
    let dir = alone.path().join(&c.name).display().to_string();
    c.plimsoll(0, &["reconcile", &dir]).expect(0);
    let run = c.dry_run(0);
    run.expect(0);
    assert!(plan_actions(&run.plan_json()).is_empty(), "{run}");
}
