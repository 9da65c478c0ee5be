//! See `untrusted` (mod.rs): this module's part of the threat model.
//!
//! Reads stay inside the repository: every file the desired state names
//! (env files, secret and config files, `include:`, `extends:`,
//! `COMPOSE_FILE`, `label_file`, `.env`, build contexts and Dockerfiles) is
//! resolved, symlinks included, and refused outside the repository root with
//! an error naming the file, line, key and resolved path; `--allow-read DIR`
//! (the host's) widens it, never to `/proc`, `/sys` or `/dev`. The process
//! environment is the host's: a Compose file sees only what `--pass-env`
//! passes, masked as a `.env` value is.

use std::os::unix::fs::symlink;
use std::time::Duration;

use super::{Attack, CANARY, CANARY_VARS, MARKER, path_str};
use crate::agent::Agent;
use crate::support::{Run, ensure_busybox, remove_stack};

/// The commands of a pull request's CI job that load the working tree
/// (validate, render, reconcile --dry-run), without `diff`.
fn local_commands(attack: &Attack, extra: &[&str], env: &[(&str, &str)]) -> Vec<Run> {
    let with = |args: &[&str]| -> Vec<String> {
        extra.iter().chain(args).map(|s| s.to_string()).collect()
    };
    [
        vec!["validate"],
        vec!["render"],
        vec!["render", "--format", "json"],
        vec!["reconcile", "--dry-run"],
        vec!["reconcile", "--dry-run", "--format", "json"],
    ]
    .iter()
    .map(|args| {
        let args = with(args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        attack.run(&args, env)
    })
    .collect()
}

/// A service `web` with `extra` lines under it (and `top` at the top level).
fn service(extra: &str, top: &str) -> String {
    format!(
        "services:\n  web:\n    image: plimsoll-example/busybox:1\n    command: [sleep, infinity]\n{extra}{top}"
    )
}

/// Asserts every run was refused (exit 1) with an error that names the
/// Compose file with a line, the key, and `resolved` (the path it resolves to).
#[track_caller]
fn assert_refused_at(runs: &[Run], file: &str, key: &str, resolved: &str) {
    Attack::assert_refused(runs, resolved);
    for run in runs {
        let all = run.all();
        let located = all.lines().any(|l| {
            l.split_once(&format!("{file}:"))
                .and_then(|(_, rest)| rest.split(':').next()?.parse::<u32>().ok())
                .is_some()
                && l.contains(key)
                && l.contains(resolved)
        });
        assert!(
            located,
            "expected {file}:LINE ... {key} ... {resolved} on one line:\n{run}"
        );
        assert!(
            all.contains("--allow-read") || all.contains("never reads"),
            "expected the hint:\n{run}"
        );
    }
}

/// Commits the attack and runs every CI command on it: each is refused at
/// `key` of the stack's Compose file with `resolved` named, and nothing leaks.
#[track_caller]
fn refused_everywhere(attack: &Attack, key: &str, resolved: &str) {
    attack.commit("attack");
    let runs = attack.ci_commands(&[]);
    assert_refused_at(&runs, "compose.yaml", key, resolved);
    attack.assert_contained(&runs, &[]);
}

#[test]
fn env_file_proc_self_environ_is_never_read() {
    let attack = Attack::new("reads-environ");
    attack.compose(&service("    env_file: /proc/self/environ\n", ""));
    refused_everywhere(&attack, "services.web.env_file", "/proc/self/environ");
    // Not even when the host allows /proc.
    let runs = local_commands(&attack, &["--allow-read", "/proc"], &[]);
    assert_refused_at(
        &runs,
        "compose.yaml",
        "services.web.env_file",
        "never reads",
    );
    attack.assert_contained(&runs, &[]);
}

#[test]
fn absolute_paths_outside_the_repository_are_refused() {
    let attack = Attack::new("reads-absolute");
    let secret = path_str(&attack.outside().join("secret.txt"));
    attack.compose(&service(
        "    secrets: [token]\n",
        &format!("secrets:\n  token:\n    file: {secret}\n"),
    ));
    refused_everywhere(&attack, "secrets.token.file", &secret);

    let attack = Attack::new("reads-config");
    let marker = path_str(&attack.outside().join("marker.txt"));
    attack.compose(&service(
        "    configs: [conf]\n",
        &format!("configs:\n  conf:\n    file: {marker}\n"),
    ));
    refused_everywhere(&attack, "configs.conf.file", &marker);
}

#[test]
fn dot_dot_and_tilde_do_not_leave_the_repository() {
    let attack = Attack::new("reads-dotdot");
    let env = path_str(&attack.outside().join(".env"));
    attack.compose(&service(
        "    env_file: ../../../outside/.env\n    environment: {X: \"${LEAK:-}\"}\n",
        "",
    ));
    refused_everywhere(&attack, "services.web.env_file", &env);

    // `~` is not the host's home: HOME is not passed, and a passed one still
    // leads outside.
    let attack = Attack::new("reads-tilde");
    attack.compose(&service("    label_file: ~/.env\n", ""));
    attack.commit("attack");
    let outside = path_str(&attack.outside());
    let home = [("HOME", outside.as_str())];
    let runs = attack.ci_commands(&home);
    Attack::assert_refused(&runs, "outside the repository");
    attack.assert_contained(&runs, &[]);
    let runs = local_commands(&attack, &["--pass-env", "HOME"], &home);
    assert_refused_at(
        &runs,
        "compose.yaml",
        "services.web.label_file",
        &path_str(&attack.outside().join(".env")),
    );
    attack.assert_contained(&runs, &[]);
}

#[test]
fn committed_symlinks_out_of_the_repository_are_refused() {
    // A directory symlink, then a file symlink, each committed.
    let attack = Attack::new("reads-dirlink");
    symlink("../../../outside", attack.stack_dir().join("shared")).unwrap();
    attack.compose(&service("    env_file: shared/.env\n", ""));
    refused_everywhere(
        &attack,
        "services.web.env_file",
        &path_str(&attack.outside().join(".env")),
    );

    let attack = Attack::new("reads-filelink");
    symlink(
        attack.outside().join("secret.txt"),
        attack.stack_dir().join("token.txt"),
    )
    .unwrap();
    attack.compose(&service(
        "    secrets: [token]\n",
        "secrets:\n  token:\n    file: ./token.txt\n",
    ));
    refused_everywhere(
        &attack,
        "secrets.token.file",
        &path_str(&attack.outside().join("secret.txt")),
    );
}

#[test]
fn a_dot_env_symlinked_out_of_the_repository_is_refused() {
    let attack = Attack::new("reads-dotenv-link");
    symlink("../../../outside/.env", attack.stack_dir().join(".env")).unwrap();
    attack.compose(&service("    environment: {X: \"${LEAK:-none}\"}\n", ""));
    attack.commit("attack");
    let runs = attack.ci_commands(&[]);
    let resolved = path_str(&attack.outside().join(".env"));
    Attack::assert_refused(&runs, &resolved);
    let dotenv = format!("{}/.env", attack.stack);
    for run in &runs {
        assert!(run.all().contains(&dotenv), "names the .env file:\n{run}");
    }
    attack.assert_contained(&runs, &[]);
}

#[test]
fn include_extends_label_file_and_compose_file_stay_inside() {
    let outside_compose = |attack: &Attack| {
        let file = attack.outside().join("compose.yaml");
        std::fs::write(
            &file,
            format!(
                "services:\n  base:\n    image: plimsoll-example/busybox:1\n    environment: {{M: {MARKER}}}\n"
            ),
        )
        .unwrap();
        path_str(&file)
    };

    let attack = Attack::new("reads-include");
    let file = outside_compose(&attack);
    attack.compose(&service("", &format!("include:\n  - {file}\n")));
    // Its project's `.env` is read first: refused as well.
    refused_everywhere(&attack, "include[0]", &path_str(&attack.outside()));

    let attack = Attack::new("reads-extends");
    let file = outside_compose(&attack);
    attack.compose(&service(
        &format!("    extends: {{file: {file}, service: base}}\n"),
        "",
    ));
    refused_everywhere(&attack, "services.web.extends", &file);

    let attack = Attack::new("reads-label-file");
    let env = path_str(&attack.outside().join(".env"));
    attack.compose(&service(&format!("    label_file: {env}\n"), ""));
    refused_everywhere(&attack, "services.web.label_file", &env);

    // COMPOSE_FILE in the stack's .env: named at its line of .env.
    let attack = Attack::new("reads-compose-file");
    let file = outside_compose(&attack);
    attack.write(".env", &format!("A=1\nCOMPOSE_FILE={file}\n"));
    attack.commit("attack");
    let runs = attack.ci_commands(&[]);
    assert_refused_at(&runs, ".env", "COMPOSE_FILE", &file);
    attack.assert_contained(&runs, &[]);
}

#[test]
fn build_contexts_and_dockerfiles_stay_inside() {
    let attack = Attack::new("reads-build-context");
    std::fs::write(
        attack.outside().join("Dockerfile"),
        format!("FROM scratch\n# {MARKER}\n"),
    )
    .unwrap();
    let outside = path_str(&attack.outside());
    attack.compose(&format!(
        "services:\n  web:\n    image: local/{}:1\n    build: {outside}\n",
        attack.stack
    ));
    refused_everywhere(&attack, "services.web.build.context", &outside);

    let attack = Attack::new("reads-dockerfile");
    std::fs::write(
        attack.outside().join("Dockerfile"),
        format!("FROM scratch\n# {MARKER}\n"),
    )
    .unwrap();
    attack.write("app/hello.txt", "hello\n");
    attack.compose(&format!(
        "services:\n  web:\n    image: local/{}:1\n    build: {{context: ./app, dockerfile: ../../../../outside/Dockerfile}}\n",
        attack.stack
    ));
    refused_everywhere(
        &attack,
        "services.web.build.dockerfile",
        &path_str(&attack.outside().join("Dockerfile")),
    );

    // A Dockerfile in the context that is a symlink out of the repository.
    let attack = Attack::new("reads-dockerfile-link");
    std::fs::write(
        attack.outside().join("Dockerfile"),
        format!("FROM scratch\n# {MARKER}\n"),
    )
    .unwrap();
    attack.write("app/hello.txt", "hello\n");
    symlink(
        attack.outside().join("Dockerfile"),
        attack.stack_dir().join("app/Dockerfile"),
    )
    .unwrap();
    attack.compose(&format!(
        "services:\n  web:\n    image: local/{}:1\n    build: ./app\n",
        attack.stack
    ));
    refused_everywhere(
        &attack,
        "services.web.build.context",
        &path_str(&attack.outside().join("Dockerfile")),
    );
}

#[test]
fn the_host_can_allow_a_directory_for_secret_files() {
    let attack = Attack::new("reads-allow");
    let secret = path_str(&attack.outside().join("secret.txt"));
    attack.compose(&service(
        "    secrets: [token]\n",
        &format!("secrets:\n  token:\n    file: {secret}\n"),
    ));
    attack.commit("host secret");
    let outside = path_str(&attack.outside());
    let runs = local_commands(&attack, &["--allow-read", &outside], &[]);
    for run in &runs[..3] {
        run.expect(0);
    }
    for run in &runs[3..] {
        assert_ne!(run.code, Some(1), "allowed, the dry run plans:\n{run}");
    }
    // Its environment variable, too.
    let run = attack.run(&["validate"], &[("PLIMSOLL_ALLOW_READ", &outside)]);
    run.expect(0);
    let mut all = runs;
    all.push(run);
    attack.assert_contained(&all, &[]);
    // A directory the repository names itself is no permission.
    attack.write("/plimsoll.yaml", &format!("allow_read: [{outside}]\n"));
    let run = attack.run(&["validate"], &[]);
    run.expect(1);
    assert!(run.all().contains("outside the repository"), "{run}");
    attack.assert_contained(&[run], &[]);
}

#[test]
fn the_process_environment_is_not_interpolated_unless_passed() {
    let attack = Attack::new("reads-env");
    attack.compose(&service(
        "    environment:\n      X: \"${CI_JOB_TOKEN}\"\n      Y: \"${GITHUB_TOKEN:-default}\"\n      Z: \"${PLIMSOLL_CANARY:-none}\"\n",
        "",
    ));
    attack.commit("read the token");
    let runs = attack.ci_commands(&[]);
    for run in &runs {
        assert_ne!(run.code, Some(1), "the stack loads:\n{run}");
    }
    let rendered = &runs[2];
    let web = &rendered.json()["services"]["web"]["environment"];
    assert_eq!(web["X"], "", "{rendered}");
    assert_eq!(web["Y"], "default", "{rendered}");
    assert_eq!(web["Z"], "none", "{rendered}");
    attack.assert_contained(&runs, &[]);

    // Passed, a token is there, masked as a secret-looking name of .env is.
    for pass in [
        vec!["--pass-env", "CI_JOB_TOKEN"],
        vec!["--pass-env", "CI_JOB_TOKEN,GITHUB_TOKEN"],
    ] {
        let mut args = pass.clone();
        args.extend(["render", "--format", "json"]);
        let run = attack.run(&args, &[]);
        run.expect(0);
        let env = &run.json()["services"]["web"]["environment"];
        assert_ne!(env["X"], "", "passed, it is interpolated (masked):\n{run}");
        attack.assert_contained(&[run], &[]);
    }
    let runs = attack.run(&["render"], &[("PLIMSOLL_PASS_ENV", "CI_JOB_TOKEN")]);
    runs.expect(0);
    attack.assert_contained(&[runs], &[]);
}

#[test]
fn a_passed_variable_the_host_marks_secret_is_masked() {
    let attack = Attack::new("reads-pass-secret");
    attack.compose(&service("    environment: {REF: \"${DEPLOY_REF}\"}\n", ""));
    attack.commit("read a passed variable");
    let value = [("DEPLOY_REF", CANARY)];
    // Its name does not look secret: passed plainly, it is shown...
    let run = attack.run(
        &["--pass-env", "DEPLOY_REF", "render", "--format", "json"],
        &value,
    );
    run.expect(0);
    assert_eq!(run.json()["services"]["web"]["environment"]["REF"], CANARY);
    // ...and marked secret by the host, it is masked everywhere.
    let mut runs = Vec::new();
    for args in [
        vec!["render"],
        vec!["render", "--format", "json"],
        vec!["reconcile", "--dry-run", "--format", "markdown"],
    ] {
        let args: Vec<&str> = ["--pass-secret-env", "DEPLOY_REF"]
            .into_iter()
            .chain(args)
            .collect();
        let run = attack.run(&args, &value);
        assert_ne!(run.code, Some(1), "{run}");
        runs.push(run);
    }
    let run = attack.run(
        &["diff", "--from", &attack.base, "--to", "HEAD"],
        &[
            ("DEPLOY_REF", CANARY),
            ("PLIMSOLL_PASS_SECRET_ENV", "DEPLOY_REF"),
        ],
    );
    assert_eq!(run.code, Some(2), "{run}");
    runs.push(run);
    let rendered = &runs[1].json()["services"]["web"]["environment"]["REF"];
    assert_ne!(rendered, "", "{}", runs[1]);
    attack.assert_contained(&runs, &[]);
}

/// The agent (its clone is the root) rejects a commit whose env_file is
/// `/proc/self/environ`: recorded as rejected, the last good revision kept.
#[test]
fn agent_rejects_a_commit_that_reads_proc_self_environ() {
    ensure_busybox();
    let attack = Attack::new("reads-agent");
    let url = format!("file://{}", attack.repo().display());
    let canary: Vec<(&str, &str)> = CANARY_VARS.iter().map(|v| (*v, CANARY)).collect();
    let state = attack.state();
    let agent = Agent::start(&state, &url, &["--interval", "1s"], &canary);
    agent.wait_revision(&attack.base, Duration::from_secs(60));
    attack.compose(&service("    env_file: /proc/self/environ\n", ""));
    let bad = attack.commit("read the agent's environment");
    let status = agent.wait_status("the attack rejected", Duration::from_secs(30), |s| {
        s["rejected"]["revision"] == bad
    });
    let reason = status["rejected"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("/proc/self/environ") && reason.contains("env_file"),
        "the reason names the key and the file: {reason}"
    );
    assert_eq!(
        status["revision"], attack.base,
        "the last good revision is kept: {status:#}"
    );
    let (log, status) = (agent.log(), status.to_string());
    for text in [&log, &status] {
        assert!(
            !text.contains(CANARY) && !text.contains(MARKER),
            "leaked: {text}"
        );
    }
    drop(agent);
    remove_stack(&attack.stack);
    attack.assert_contained(&[], &[]);
}

#[test]
fn a_stack_directory_or_plimsoll_yaml_symlinked_out_is_refused() {
    let attack = Attack::new("reads-stack-link");
    std::fs::write(
        attack.outside().join("compose.yaml"),
        format!("services:\n  x:\n    image: plimsoll-example/busybox:1\n    environment: {{M: {MARKER}}}\n"),
    )
    .unwrap();
    symlink("../../outside", attack.repo().join("stacks/evil")).unwrap();
    attack.commit("a stack from the host");
    let runs = attack.ci_commands(&[]);
    Attack::assert_refused(&runs, "stacks/evil");
    Attack::assert_refused(&runs, "outside the repository");
    attack.assert_contained(&runs, &[]);

    let attack = Attack::new("reads-config-link");
    std::fs::write(
        attack.outside().join("plimsoll.yaml"),
        format!("# {MARKER}\n"),
    )
    .unwrap();
    symlink(
        "../outside/plimsoll.yaml",
        attack.repo().join("plimsoll.yaml"),
    )
    .unwrap();
    attack.commit("plimsoll.yaml from the host");
    let runs = attack.ci_commands(&[]);
    Attack::assert_refused(&runs, &path_str(&attack.outside().join("plimsoll.yaml")));
    attack.assert_contained(&runs, &[]);

    // `stacks/` itself a symlink out: refused, not "no stacks found".
    let attack = Attack::new("reads-stacks-link");
    let stack_dir = attack.outside().join("stacks").join(&attack.stack);
    std::fs::create_dir_all(&stack_dir).unwrap();
    std::fs::write(
        stack_dir.join("compose.yaml"),
        format!("services:\n  x:\n    image: plimsoll-example/busybox:1\n    environment: {{M: {MARKER}}}\n"),
    )
    .unwrap();
    std::fs::remove_dir_all(attack.repo().join("stacks")).unwrap();
    symlink("../outside/stacks", attack.repo().join("stacks")).unwrap();
    attack.commit("every stack from the host");
    let runs = attack.ci_commands(&[]);
    Attack::assert_refused(&runs, "outside the repository");
    attack.assert_contained(&runs, &[]);
}
