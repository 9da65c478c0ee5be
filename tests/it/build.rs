//! `build:` on the real engine: images built from a `FROM scratch`
//! Dockerfile whose context holds the host's static busybox (no registry
//! needed), run by `plimsoll reconcile`; a changed file in one context
//! rebuilds and recreates exactly that service; an ignored file, a no-op
//! reconcile and a dry run never build; a failing build changes nothing and
//! its error names the service, shows the last build output and masks
//! secrets. Old images go after a successful apply, the last three per
//! service and any a container uses excepted, and `plimsoll rollback` tags
//! the kept image of the earlier revision instead of building.
//!
//! Each test owns a [`BuildStack`]: a unique stack name, a tempdir with the
//! Compose file and the contexts, its own state directory; dropping it
//! removes the stack's containers and networks and every image built for it
//! (images carry `io.plimsoll.build=<stack>/<service>@<hash>`, and every
//! layer these tests build carries `io.plimsoll.test=<stack>`).

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::support::{
    Cleanup, Run, docker, docker_output, plan_actions, quiet, temp_dir, unique_name,
};

/// The static busybox that Debian's `busybox-static` installs.
const BUSYBOX: &str = "/bin/busybox";

/// On every layer these tests build (the first instruction after `FROM`), so
/// that cleanup finds the intermediate images a failed build leaves too.
const TEST_LABEL: &str = "io.plimsoll.test";

struct BuildStack {
    name: String,
    dir: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl BuildStack {
    fn new(what: &str) -> BuildStack {
        assert!(
            Path::new(BUSYBOX).is_file(),
            "{BUSYBOX} is missing: apt-get install busybox-static (scripts/test.sh does)"
        );
        BuildStack {
            name: unique_name(what),
            dir: temp_dir("plimsoll-it-build-"),
            state: temp_dir("plimsoll-it-state-"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, file: &str, content: &str) {
        let p = self.path().join(file);
        fs::create_dir_all(p.parent().expect("a parent")).expect("create a directory");
        fs::write(p, content).expect("write a stack file");
    }

    /// A context directory holding busybox and a Dockerfile that runs `sleep`.
    fn context(&self, dir: &str, extra: &str) {
        fs::create_dir_all(self.path().join(dir)).expect("create a context");
        fs::copy(BUSYBOX, self.path().join(dir).join("busybox")).expect("copy busybox");
        self.write(
            &format!("{dir}/Dockerfile"),
            &format!(
                "FROM scratch\nLABEL {TEST_LABEL}={}\nCOPY busybox /busybox\nCOPY version.txt /version.txt\n{extra}CMD [\"/busybox\", \"sleep\", \"100000\"]\n",
                self.name
            ),
        );
        self.write(&format!("{dir}/version.txt"), "1\n");
    }

    fn set_compose(&self, yaml: &str) {
        self.write("compose.yaml", &format!("name: {}\n{yaml}", self.name));
    }

    fn plimsoll(&self, args: &[&str], envs: &[(&str, &str)]) -> Run {
        let path = self.path().display().to_string();
        let mut all = args.to_vec();
        all.push(&path);
        self.plimsoll_raw(&all, envs)
    }

    /// Runs plimsoll with exactly `args` (no PATH appended).
    fn plimsoll_raw(&self, args: &[&str], envs: &[(&str, &str)]) -> Run {
        Run::of(
            args,
            crate::support::plimsoll_command(self.state.path(), self.path(), args)
                .env("HOME", self.state.path())
                .envs(envs.iter().copied()),
        )
    }

    /// `reconcile --dry-run --format json`, checked against the plan schema.
    fn plan(&self) -> (Run, Value) {
        let run = self.plimsoll(&["reconcile", "--dry-run", "--format", "json"], &[]);
        let plan = run.plan_json();
        (run, plan)
    }

    fn apply(&self) -> Run {
        self.plimsoll(&["reconcile"], &[])
    }

    fn container(&self, service: &str) -> String {
        format!("{}-{service}-1", self.name)
    }

    /// The full ID of what `name` (container or image) is, or `None`.
    fn id(&self, name: &str) -> Option<String> {
        let out = docker_output(&["inspect", "--format", "{{.Id}}", name]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The `/version.txt` baked into a service's running container.
    fn version(&self, service: &str) -> String {
        docker(&[
            "exec",
            &self.container(service),
            "/busybox",
            "cat",
            "/version.txt",
        ])
    }

    /// The image a container runs.
    fn image_of(&self, container: &str) -> String {
        docker(&["inspect", "--format", "{{.Image}}", container])
    }

    /// Images built for this stack (by their `io.plimsoll.build` label).
    fn built_images(&self) -> Vec<String> {
        built_images_of(&self.name)
    }
}

fn built_images_of(stack: &str) -> Vec<String> {
    let out = docker_output(&[
        "image",
        "ls",
        "-q",
        "--no-trunc",
        "--filter",
        "label=io.plimsoll.build",
    ]);
    let ids = String::from_utf8_lossy(&out.stdout).into_owned();
    let prefix = format!("{stack}/");
    let mut mine: Vec<String> = ids
        .lines()
        .filter(|id| {
            docker_output(&[
                "image",
                "inspect",
                "--format",
                "{{index .Config.Labels \"io.plimsoll.build\"}}",
                id,
            ])
            .stdout
            .starts_with(prefix.as_bytes())
        })
        .map(str::to_string)
        .collect();
    mine.sort();
    mine.dedup();
    mine
}

impl Drop for BuildStack {
    fn drop(&mut self) {
        crate::support::remove_stack(&self.name);
        for id in built_images_of(&self.name) {
            quiet(&["rmi", "-f", &id]);
        }
        // Intermediate images (the cache of a failed build), newest first.
        let filter = format!("label={TEST_LABEL}={}", self.name);
        let left = docker_output(&["image", "ls", "-aq", "--no-trunc", "--filter", &filter]);
        for id in String::from_utf8_lossy(&left.stdout).lines() {
            quiet(&["rmi", "-f", id]);
        }
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

const TWO_SERVICES: &str = r#"services:
  app:
    build: ./app
    stop_signal: SIGKILL
  other:
    image: IMAGE
    build:
      context: other
      args:
        FLAVOUR: plain
    stop_signal: SIGKILL
"#;

#[test]
fn build_rebuilds_exactly_the_changed_service_and_never_on_a_noop() {
    let s = BuildStack::new("build-two");
    s.context("app", "");
    s.context("other", "ARG FLAVOUR\n");
    s.write("app/.dockerignore", "*.log\n");
    let other_image = format!("{}/other:dev", s.name);
    s.set_compose(&TWO_SERVICES.replace("IMAGE", &other_image));

    // Nothing built yet: both builds lead the plan, before any container.
    let (run, plan) = s.plan();
    run.expect(2);
    assert_eq!(
        plan_actions(&plan),
        pairs(&[
            ("build", "app"),
            ("build", "other"),
            ("create_network", &format!("{}_default", s.name)),
            ("create", "app"),
            ("create", "other"),
        ]),
        "{run}"
    );
    let app_image = format!("{}-app", s.name);
    assert_eq!(plan["actions"][0]["target"], app_image.as_str());
    assert_eq!(
        plan["actions"][0]["reasons"][0],
        format!("image {app_image} not built yet").as_str()
    );
    assert_eq!(plan["actions"][1]["target"], other_image.as_str());
    assert_eq!(s.id(&app_image), None, "a dry run builds nothing");

    let run = s.apply();
    run.expect(0);
    assert!(
        run.stderr.contains("Step 1/"),
        "build output is logged:\n{run}"
    );
    let app = s.id(&s.container("app")).expect("app runs");
    let other = s.id(&s.container("other")).expect("other runs");
    let app_img = s
        .id(&app_image)
        .expect("the build-only image is named <stack>-<service>");
    let other_img = s
        .id(&other_image)
        .expect("with image:, the build is tagged with it");
    assert_eq!(s.image_of(&s.container("app")), app_img);
    assert_eq!(s.image_of(&s.container("other")), other_img);
    assert_eq!(s.version("app"), "1");

    // A no-op: nothing to build, nothing built, in sync.
    let (run, plan) = s.plan();
    run.expect(0);
    assert_eq!(plan_actions(&plan), pairs(&[]), "{run}");
    let run = s.apply();
    run.expect(0);
    assert!(
        !run.stderr.contains("building"),
        "a no-op never builds:\n{run}"
    );
    assert_eq!(s.id(&app_image).as_deref(), Some(app_img.as_str()));

    // A file .dockerignore excludes is not part of the context.
    s.write("app/debug.log", "noise\n");
    s.plan().0.expect(0);

    // One changed file: exactly that service is rebuilt and recreated.
    s.write("app/version.txt", "2\n");
    let (run, plan) = s.plan();
    run.expect(2);
    assert_eq!(
        plan_actions(&plan),
        pairs(&[("build", "app"), ("recreate", "app")]),
        "{run}"
    );
    assert_eq!(plan["actions"][0]["reasons"][0], "build: context changed");
    assert_eq!(
        plan["actions"][1]["reasons"][0],
        format!("image {app_image} is built again (build: context changed)").as_str()
    );
    assert!(plan["in_sync"].to_string().contains("/other"), "{run}");
    s.apply().expect(0);
    let app2 = s.id(&s.container("app")).expect("app runs");
    let app_img2 = s.id(&app_image).expect("rebuilt");
    assert_ne!(app2, app, "app is recreated");
    assert_ne!(app_img2, app_img, "app's image is rebuilt");
    assert_eq!(s.image_of(&s.container("app")), app_img2);
    assert_eq!(s.version("app"), "2");
    assert_eq!(
        s.id(&s.container("other")).as_deref(),
        Some(other.as_str()),
        "other is untouched"
    );
    assert_eq!(
        s.id(&other_image).as_deref(),
        Some(other_img.as_str()),
        "other is not rebuilt"
    );

    // A changed build setting rebuilds too, and says so.
    s.set_compose(
        &TWO_SERVICES
            .replace("IMAGE", &other_image)
            .replace("plain", "spicy"),
    );
    let (run, plan) = s.plan();
    run.expect(2);
    assert_eq!(
        plan_actions(&plan),
        pairs(&[("build", "other"), ("recreate", "other")]),
        "{run}"
    );
    assert_eq!(
        plan["actions"][0]["reasons"][0],
        "build: build settings changed"
    );

    // Back to the first content: the image built from it is still on the
    // host, so it is tagged again instead of built.
    s.set_compose(&TWO_SERVICES.replace("IMAGE", &other_image));
    s.write("app/version.txt", "1\n");
    let (run, plan) = s.plan();
    run.expect(2);
    assert_eq!(
        plan_actions(&plan),
        pairs(&[("build", "app"), ("recreate", "app")]),
        "{run}"
    );
    assert!(
        plan["actions"][0]["reasons"][1]
            .as_str()
            .is_some_and(|r| r.contains("tagged, not built")),
        "{run}"
    );
    let run = s.apply();
    run.expect(0);
    assert!(!run.stderr.contains("Step 1/"), "tagged, not built:\n{run}");
    assert_eq!(s.id(&app_image).as_deref(), Some(app_img.as_str()));
    s.plan().0.expect(0);
}

#[test]
fn build_failure_changes_nothing_and_masks_secrets() {
    let s = BuildStack::new("build-fail");
    s.context("app", "");
    s.set_compose(
        "services:\n  app:\n    build:\n      context: app\n      args:\n        API_TOKEN: ${API_TOKEN}\n    stop_signal: SIGKILL\n",
    );
    s.write(".env", "API_TOKEN=canary-token-4711\n");
    s.apply().expect(0);
    let app = s.id(&s.container("app")).expect("app runs");
    let image = s.id(&format!("{}-app", s.name)).expect("built");
    let images = s.built_images();

    // FROM scratch has no shell: a COPY of a file that is not in the context fails.
    s.context("app", "ARG API_TOKEN\nCOPY missing-${API_TOKEN} /x\n");
    let run = s.apply();
    run.expect(1);
    let err = run.all();
    assert!(
        err.contains(&format!(
            "building {}-app for {}/app failed",
            s.name, s.name
        )),
        "{run}"
    );
    assert!(err.contains("last build output:"), "{run}");
    assert!(err.contains("COPY missing-${API_TOKEN} /x"), "{run}");
    assert!(err.contains("nothing was changed"), "{run}");
    assert!(
        !err.contains("canary-token-4711"),
        "the secret leaked:\n{run}"
    );
    assert!(
        err.contains("missing-********"),
        "masked, not dropped:\n{run}"
    );
    assert_eq!(s.id(&s.container("app")).as_deref(), Some(app.as_str()));
    assert_eq!(
        s.id(&format!("{}-app", s.name)).as_deref(),
        Some(image.as_str())
    );
    assert_eq!(s.built_images(), images, "no image was added");
    let state = docker(&[
        "inspect",
        "--format",
        "{{.State.Running}}",
        &s.container("app"),
    ]);
    assert_eq!(state, "true");
}

#[test]
fn build_old_images_go_but_the_last_three_and_rollback_needs_no_build() {
    let s = BuildStack::new("build-gc");
    s.context("app", "");
    s.set_compose("services:\n  app:\n    build: ./app\n    stop_signal: SIGKILL\n");
    let image = format!("{}-app", s.name);
    let exists = |id: &str| docker_output(&["image", "inspect", id]).status.success();
    let mut ids = Vec::new();
    for v in 1..=4 {
        s.write("app/version.txt", &format!("{v}\n"));
        let run = s.apply();
        run.expect(0);
        ids.push(s.id(&image).expect("built"));
        if v == 4 {
            assert!(run.stderr.contains("no container uses it"), "{run}");
        }
    }
    assert!(!exists(&ids[0]), "the oldest image goes");
    for id in &ids[1..] {
        assert!(exists(id), "the last three stay");
    }
    assert_eq!(s.built_images().len(), 3);

    // Any container that uses an old image keeps it, plimsoll's or not.
    let mut cleanup = Cleanup::new();
    let holder = cleanup.container("build-gc-holder");
    docker(&["create", "--name", &holder, &ids[1], "/busybox", "true"]);
    s.write("app/version.txt", "5\n");
    s.apply().expect(0);
    assert!(exists(&ids[1]), "a container uses it");
    assert!(exists(&ids[2]) && exists(&ids[3]));

    // Rollback to version 4: its image is still here, so it is tagged, not built.
    let run = s.plimsoll_raw(&["rollback", &s.name], &[]);
    run.expect(0);
    assert!(
        !run.stderr.contains("Step 1/"),
        "a rollback never builds:\n{run}"
    );
    assert_eq!(s.image_of(&s.container("app")), ids[3]);
    assert_eq!(s.version("app"), "4");
}

#[test]
fn build_tags_name_the_built_image_too() {
    let s = BuildStack::new("build-tags");
    s.context("app", "");
    let extra = format!("{}-extra:v1", s.name);
    s.set_compose(&format!(
        "services:\n  app:\n    build:\n      context: app\n      tags: [\"{extra}\"]\n    stop_signal: SIGKILL\n"
    ));
    s.apply().expect(0);
    let built = s
        .id(&format!("{}-app", s.name))
        .expect("the image is built");
    assert_eq!(
        s.id(&extra).as_deref(),
        Some(built.as_str()),
        "the extra tag names the build"
    );
    assert_eq!(s.image_of(&s.container("app")), built);
    // A new build moves the extra tag along.
    s.write("app/version.txt", "2\n");
    s.apply().expect(0);
    let rebuilt = s
        .id(&format!("{}-app", s.name))
        .expect("the image is built again");
    assert_ne!(rebuilt, built);
    assert_eq!(s.id(&extra).as_deref(), Some(rebuilt.as_str()));
    s.plimsoll(&["reconcile", "--dry-run"], &[]).expect(0);
    quiet(&["rmi", &extra]);
}
