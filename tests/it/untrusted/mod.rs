//! `untrusted`: a repository written by an attacker (a pull request run through
//! `validate`, `render`, `reconcile --dry-run` and `diff` in CI, or a commit the
//! agent applies). Each attack runs with a canary in the process environment
//! (the CI job's token) and a marker file outside the repository; it must be
//! refused or masked, neither the canary nor the marker may reach any output or
//! any file of the state directory, and nothing on the engine may change.
//!
//! Modules (one per part of the threat model, README "Threat model"):
//! - `reads`: files outside the repository (absolute paths, `../`, `~`,
//!   symlinks, `/proc`), `--allow-read`; the process environment and `--pass-env`.
//! - `masking`: secrets of any length in every field and output format; the
//!   pull-request comment (markdown escaping, symmetric masking, named changes).
//! - `budgets`: alias bombs, deep interpolation and nesting, huge files; the
//!   agent rejects a revision that killed it instead of crash-looping.
//! - `policy`: every way to root (`policy.privileged`), registries in `FROM`,
//!   the host policy (`--policy`), audit retention minimums.
//! - `http`: the agent's HTTP server (timeouts, connection cap, tokens, delivery ids).
//! - `gitsource`: insecure transports, credentials, signed commits.
//! - `commits`: the attacks as commits the agent applies, one after the other:
//!   each rejected (or, for short secrets, applied masked), nothing leaked.
//! - `statedir`: modes of the state directory and its files, symlinks, the audit's who and where.

// Some helpers serve only some of the modules below.
#![allow(dead_code)]

mod budgets;
mod commits;
mod gitsource;
mod http;
mod masking;
mod policy;
mod reads;
mod statedir;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{
    Run, files_under, plimsoll_command, remove_stack, stack_containers, temp_dir, unique_name,
};

/// The CI job's token: in the process environment of every command an attack runs.
pub const CANARY: &str = "canaryTok-7f3a91c2e5";
/// The process variables that hold [`CANARY`].
pub const CANARY_VARS: [&str; 3] = ["CI_JOB_TOKEN", "GITHUB_TOKEN", "PLIMSOLL_CANARY"];
/// The content of the marker files outside the repository.
pub const MARKER: &str = "marker-outside-repo-4d9e0b";

/// A git repository an attacker wrote, beside a directory it must not read.
///
/// Layout of the temporary directory: `repo/` (the config repository, a git
/// work tree with a first, harmless commit), `outside/` (`marker.txt`,
/// `.env` with `LEAK=<MARKER>`, `secret.txt`, all holding [`MARKER`]) and
/// `state/` (the state directory of every command run).
pub struct Attack {
    dir: tempfile::TempDir,
    /// The stack the attack's files live in (`stacks/<stack>/`), unique per test.
    pub stack: String,
    /// The first commit (a harmless stack), `diff --from`.
    pub base: String,
}

impl Attack {
    /// A repository whose first commit holds `stacks/<stack>/compose.yaml` with
    /// one harmless busybox service (`web`).
    pub fn new(what: &str) -> Attack {
        let dir = temp_dir("plimsoll-untrusted-");
        let stack = unique_name(what);
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("marker.txt"), format!("{MARKER}\n")).unwrap();
        std::fs::write(outside.join(".env"), format!("LEAK={MARKER}\n")).unwrap();
        std::fs::write(outside.join("secret.txt"), MARKER).unwrap();
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        let mut attack = Attack {
            dir,
            stack,
            base: String::new(),
        };
        attack.git(&["init", "-q", "-b", "main"]);
        attack.write(
            "compose.yaml",
            "services:\n  web:\n    image: plimsoll-example/busybox:1\n    command: [sleep, infinity]\n",
        );
        attack.base = attack.commit("base");
        attack
    }

    /// The repository root.
    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// The directory beside the repository that nothing may read.
    pub fn outside(&self) -> PathBuf {
        self.dir.path().join("outside")
    }

    /// The state directory of every command run.
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The stack's directory, `repo/stacks/<stack>`.
    pub fn stack_dir(&self) -> PathBuf {
        self.repo().join("stacks").join(&self.stack)
    }

    /// Writes `file` (relative to the stack directory; `/`-rooted names are
    /// relative to the repository root).
    pub fn write(&self, file: &str, text: &str) -> &Attack {
        let path = match file.strip_prefix('/') {
            Some(rel) => self.repo().join(rel),
            None => self.stack_dir().join(file),
        };
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    /// Writes the stack's `compose.yaml`.
    pub fn compose(&self, text: &str) -> &Attack {
        self.write("compose.yaml", text)
    }

    /// Commits everything in the work tree; returns the full SHA.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    fn git(&self, args: &[&str]) -> String {
        std::fs::create_dir_all(self.repo()).unwrap();
        let out = Command::new("git")
            .arg("-C")
            .arg(self.repo())
            .args([
                "-c",
                "user.name=attacker",
                "-c",
                "user.email=a@plimsoll.invalid",
            ])
            .args(["-c", "commit.gpgsign=false"])
            .args(args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `plimsoll --state-dir STATE ARGS` run in the repository with the canary
    /// in the environment, plus `env`.
    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let state = self.state();
        let mut cmd = plimsoll_command(&state, &self.repo(), args);
        for var in CANARY_VARS {
            cmd.env(var, CANARY);
        }
        cmd.envs(env.iter().copied());
        Run::of(args, &mut cmd)
    }

    /// Every command a pull request's CI job runs on the repository, in every
    /// output format: `validate`, `render` (yaml, json), `reconcile --dry-run`
    /// (text, json, markdown), `diff --from BASE --to HEAD` (text, json, markdown).
    /// Commit the attack first.
    pub fn ci_commands(&self, env: &[(&str, &str)]) -> Vec<Run> {
        let base = self.base.as_str();
        let mut runs = vec![
            self.run(&["validate"], env),
            self.run(&["render"], env),
            self.run(&["render", "--format", "json"], env),
        ];
        for format in ["text", "json", "markdown"] {
            runs.push(self.run(&["reconcile", "--dry-run", "--format", format], env));
            runs.push(self.run(
                &["diff", "--from", base, "--to", "HEAD", "--format", format],
                env,
            ));
        }
        runs
    }

    /// Asserts that neither [`CANARY`] nor [`MARKER`] (nor `extra`) appears in
    /// `runs` or in any file of the state directory, and that no container of
    /// the stack exists on the engine.
    #[track_caller]
    pub fn assert_contained(&self, runs: &[Run], extra: &[&str]) {
        let needles: Vec<&str> = [CANARY, MARKER]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        for run in runs {
            for needle in &needles {
                assert!(
                    !run.all().contains(needle),
                    "{needle:?} leaked into the output:\n{run}"
                );
            }
        }
        for (path, bytes) in files_under(&self.state()) {
            let text = String::from_utf8_lossy(&bytes);
            for needle in &needles {
                assert!(
                    !text.contains(needle),
                    "{needle:?} leaked into {}",
                    path.display()
                );
            }
        }
        assert!(
            stack_containers(&self.stack).is_empty(),
            "the attack changed the engine: {:?}",
            stack_containers(&self.stack)
        );
    }

    /// Asserts that every run exited 1 (refused) and that `what` is in its output.
    #[track_caller]
    pub fn assert_refused(runs: &[Run], what: &str) {
        for run in runs {
            run.expect(1);
            assert!(run.all().contains(what), "expected {what:?} in:\n{run}");
        }
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        remove_stack(&self.stack);
    }
}

/// The path `p` as a string (for Compose files that name it).
pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
