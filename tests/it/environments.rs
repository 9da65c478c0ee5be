//! Environments: one stack with `compose.prod.yaml` and `.env.prod`, hosts
//! chosen by label; `validate`, `render --host`, `graph --hosts` and `diff
//! --from --to` show each host its environment's values.

use std::path::Path;

use crate::support::{plimsoll_output, temp_dir};

const CONFIG: &str = "\
hosts:
  s-1: {labels: {env: stage}}
  p-1: {labels: {env: prod}}
environments:
  stage: {labels: {env: stage}}
  prod: {labels: {env: prod}}
";

fn write(root: &Path, path: &str, text: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn repo(root: &Path) {
    write(root, "plimsoll.yaml", CONFIG);
    write(
        root,
        "stacks/shop/compose.yaml",
        "services:\n  api:\n    image: busybox:${TAG:-1.36}\n    environment: {MODE: \"${MODE}\"}\n",
    );
    write(root, "stacks/shop/.env", "MODE=base\n");
    write(root, "stacks/shop/.env.stage", "MODE=staging\n");
    write(
        root,
        "stacks/shop/compose.prod.yaml",
        "services:\n  api:\n    scale: 2\n",
    );
    write(root, "stacks/shop/.env.prod", "TAG=1.37\nMODE=production\n");
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn commit(repo: &git2::Repository, n: i64) {
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let when = git2::Time::new(1_700_000_000 + n * 60, 0);
    let sig = git2::Signature::new("t", "t@example.com", &when).unwrap();
    let parent = repo.head().ok().map(|h| h.peel_to_commit().unwrap());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, "c", &tree, &parents)
        .unwrap();
}

#[test]
fn validate_render_and_graph_show_each_hosts_environment() {
    let dir = temp_dir("plimsoll-env-");
    repo(dir.path());
    let out = plimsoll_output(dir.path(), &["validate"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("environments:\n  prod (p-1): shop\n  stage (s-1): shop\n"),
        "{stdout}"
    );
    let render = |host: &str| {
        let out = plimsoll_output(
            dir.path(),
            &["render", "--host", host, "--format", "json"],
            &[],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let prod = render("p-1");
    assert_eq!(prod["services"]["api"]["image"], "busybox:1.37");
    assert_eq!(prod["services"]["api"]["environment"]["MODE"], "production");
    assert_eq!(prod["services"]["api"]["scale"], 2);
    let stage = render("s-1");
    assert_eq!(stage["services"]["api"]["image"], "busybox:1.36");
    assert_eq!(stage["services"]["api"]["environment"]["MODE"], "staging");
    let other = render("elsewhere");
    assert_eq!(other["services"]["api"]["environment"]["MODE"], "base");

    let out = plimsoll_output(dir.path(), &["graph", "--hosts"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("host p-1 (env=prod), environment prod"),
        "{stdout}"
    );
    assert!(
        stdout.contains("host s-1 (env=stage), environment stage"),
        "{stdout}"
    );
}

#[test]
fn diff_shows_a_change_to_compose_prod_only_for_the_production_host() {
    let dir = temp_dir("plimsoll-env-diff-");
    let mut opts = git2::RepositoryInitOptions::new();
    opts.initial_head("main");
    let git = git2::Repository::init_opts(dir.path(), &opts).unwrap();
    repo(dir.path());
    commit(&git, 1);
    write(
        dir.path(),
        "stacks/shop/compose.prod.yaml",
        "services:\n  api:\n    scale: 3\n",
    );
    commit(&git, 2);
    let out = plimsoll_output(
        dir.path(),
        &[
            "diff", "--from", "HEAD~1", "--to", "HEAD", "--format", "json",
        ],
        &[("NO_COLOR", "1")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hosts: Vec<&str> = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap_or("(every host)"))
        .collect();
    assert_eq!(hosts, ["p-1"], "{v}");
    assert_eq!(v["hosts"][0]["stacks"][0]["stack"], "shop");
}

#[test]
fn a_host_in_two_environments_exits_1_naming_file_line_and_key() {
    let dir = temp_dir("plimsoll-env-bad-");
    repo(dir.path());
    write(
        dir.path(),
        "plimsoll.yaml",
        &format!("{CONFIG}  all: {{hosts: [s-1]}}\n"),
    );
    let out = plimsoll_output(dir.path(), &["validate"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("plimsoll.yaml:2"), "{stderr}");
    assert!(stderr.contains("hosts.s-1"), "{stderr}");
    assert!(
        stderr.contains("more than one environment: all, stage"),
        "{stderr}"
    );
}

#[test]
fn an_environments_file_that_leaves_the_repository_is_refused() {
    let dir = temp_dir("plimsoll-env-link-");
    repo(dir.path());
    let outside = temp_dir("plimsoll-env-outside-");
    write(
        outside.path(),
        "compose.yaml",
        "services:\n  api:\n    privileged: true\n",
    );
    let link = dir.path().join("stacks/shop/compose.stage.yaml");
    std::os::unix::fs::symlink(outside.path().join("compose.yaml"), &link).unwrap();
    let out = plimsoll_output(dir.path(), &["validate"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("compose.stage.yaml"), "{stderr}");
}

#[test]
fn promote_names_an_unknown_environment_and_prints_nothing() {
    let dir = temp_dir("plimsoll-it-envs-");
    repo(dir.path());
    let out = plimsoll_output(
        dir.path(),
        &["promote", "--from", "staging", "--to", "prod"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains(
            "environment `staging` is not in plimsoll.yaml's `environments:` (it has prod, stage)"
        ),
        "{}",
        text(&out.stderr)
    );
}
