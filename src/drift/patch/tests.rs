use std::path::Path;

use super::*;
use crate::keys::desired_config;
use crate::source::LocalFs;

const CANARY: &str = "canary-s3cret-value";

/// A stack written to a temp directory, loaded; its service's desired
/// config, and the patch for a live config changed by `change`.
fn check(
    compose: &str,
    dotenv: Option<&str>,
    service: &str,
    change: impl FnOnce(&mut ContainerConfig),
) -> (Patch, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), compose).unwrap();
    if let Some(env) = dotenv {
        std::fs::write(dir.path().join(".env"), env).unwrap();
    }
    let desired = crate::spec::load_path(dir.path());
    let stack = &desired.stacks[0];
    let want = desired_config(stack, service, &stack.services[service], 1, None);
    let mut live = want.clone();
    change(&mut live);
    let drift = ServiceDrift {
        stack,
        service,
        live: Some(live),
        desired: want,
        running: stack.services[service].replicas(),
        states: Vec::new(),
    };
    let p = patch(&[drift], &desired.masker, &LocalFs);
    (p, dir)
}

/// The patch applied with `git apply` in `dir` (a fresh repository), and the file after.
fn applied(p: &Patch, dir: &Path, file: &str) -> String {
    applied_with(p, dir, file, &[])
}

fn applied_with(p: &Patch, dir: &Path, file: &str, flags: &[&str]) -> String {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["init", "-q"]);
    std::fs::write(dir.join("patch.diff"), p.to_text()).unwrap();
    let mut apply = vec!["apply"];
    apply.extend(flags);
    apply.push("patch.diff");
    run(&apply);
    std::fs::read_to_string(dir.join(file)).unwrap()
}

const SHOP: &str = "\
name: shop
services:
  web:
    # the front end
    image: nginx:1.25 # pinned by hand
    environment:
      MODE: prod   # keep
    ports:
      - \"8080:80\"
    mem_limit: 128m
  api:
    image: busybox:1
    environment:
      - LEVEL=info
      - OTHER=1
";

#[test]
fn image_memory_and_env_map_edit_only_their_lines() {
    let (p, dir) = check(SHOP, None, "web", |c| {
        c.image = "nginx:1.27".into();
        c.memory = 64 << 20;
        c.env.insert("MODE".into(), "debug".into());
        c.env.insert("EXTRA".into(), "1".into());
        c.restart = "always".into();
    });
    assert!(p.unwritten.is_empty(), "{:?}", p.unwritten);
    let after = applied(&p, dir.path(), "compose.yaml");
    assert_eq!(
        after,
        SHOP.replace("nginx:1.25 #", "nginx:1.27 #")
            .replace("MODE: prod   #", "MODE: debug   #")
            .replace("mem_limit: 128m", "mem_limit: 64m\n    restart: always")
            .replace("# keep\n", "# keep\n      EXTRA: \"1\"\n")
    );
}

#[test]
fn env_list_form_ports_and_replicas() {
    let (p, dir) = check(SHOP, None, "api", |c| {
        c.env.insert("LEVEL".into(), "debug".into());
        c.env.remove("OTHER");
        c.ports
            .insert("9000/tcp".into(), vec!["127.0.0.1:9000".into()]);
    });
    let after = applied(&p, dir.path(), "compose.yaml");
    assert!(
        after.ends_with(
            "    environment:\n      - LEVEL=debug\n    ports:\n      - \"127.0.0.1:9000:9000\"\n"
        ),
        "{after}"
    );
    let (p, dir) = check(SHOP, None, "web", |c| {
        c.ports.insert("80/tcp".into(), vec![":9090".into()]);
    });
    let after = applied(&p, dir.path(), "compose.yaml");
    assert!(
        after.contains("    ports:\n      - \"9090:80\"\n"),
        "{after}"
    );
}

#[test]
fn deploy_limits_are_edited_where_they_are_written() {
    let compose = "services:\n  a:\n    image: busybox\n    deploy:\n      resources:\n        limits:\n          memory: 256M\n          cpus: '1'\n";
    let (p, dir) = check(compose, None, "a", |c| {
        c.memory = 64 << 20;
        c.nano_cpus = 500_000_000;
    });
    let after = applied(&p, dir.path(), "compose.yaml");
    assert!(
        after.ends_with("          memory: 64m\n          cpus: '0.5'\n"),
        "{after}"
    );
}

#[test]
fn a_value_from_dotenv_is_changed_in_dotenv() {
    let compose = "services:\n  a:\n    image: \"nginx:${TAG}\"\n";
    let env = "# versions\nTAG=1.25\nOTHER=x\n";
    let (p, dir) = check(compose, Some(env), "a", |c| c.image = "nginx:1.27".into());
    assert!(p.diff.contains("--- a/.env"), "{}", p.diff);
    let after = applied(&p, dir.path(), ".env");
    assert_eq!(after, "# versions\nTAG=1.27\nOTHER=x\n");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("compose.yaml")).unwrap(),
        compose
    );
}

#[test]
fn a_secret_beside_an_edited_dotenv_line_stays_out_of_the_context() {
    let compose = "services:\n  a:\n    image: \"nginx:${TAG}\"\n    environment:\n      DB_PASSWORD: ${DB_PASSWORD}\n";
    let env = format!("TAG=1.25\nDB_PASSWORD={CANARY}\n");
    let (p, dir) = check(compose, Some(&env), "a", |c| c.image = "nginx:1.27".into());
    let text = p.to_text();
    assert!(!text.contains(CANARY), "{text}");
    assert!(text.contains("git apply --unidiff-zero"), "{text}");
    let after = applied_with(&p, dir.path(), ".env", &["--unidiff-zero"]);
    assert_eq!(after, format!("TAG=1.27\nDB_PASSWORD={CANARY}\n"));
}

#[test]
fn a_secret_is_never_written_and_the_variable_is_named() {
    let compose = "name: s\nservices:\n  a:\n    image: busybox\n    environment:\n      DB_PASSWORD: ${DB_PASSWORD}\n      PLAIN: x\n";
    let env = format!("DB_PASSWORD={CANARY}\n");
    let (p, _dir) = check(compose, Some(&env), "a", |c| {
        c.env.insert("DB_PASSWORD".into(), format!("{CANARY}-new"));
        c.env.insert("PLAIN".into(), format!("prefix-{CANARY}"));
    });
    let text = p.to_text();
    assert!(!text.contains(CANARY), "{text}");
    assert!(text.contains("env DB_PASSWORD: the value on the host is secret and is not written; change the variable DB_PASSWORD instead"), "{text}");
    assert!(text.contains("s/a: env PLAIN: the value on the host is secret and is not written; change the secret it comes from instead"), "{text}");
    assert!(p.is_empty());
}

#[test]
fn fields_without_a_compose_form_are_listed() {
    let (p, _dir) = check(SHOP, None, "web", |c| {
        c.memory_swap = 512 << 20;
        c.memory = 64 << 20;
        // The tag was re-pointed: the container runs another image than it names.
        c.image_id = Some("sha256:0123456789abcdef".into());
    });
    let text = p.to_text();
    assert!(
        text.contains("# shop/web: image id: not expressible in Compose\n"),
        "{text}"
    );
    assert!(
        text.contains("# accepts shop/web: memory limit, memory swap\n"),
        "{text}"
    );
    assert!(
        text.contains("+    mem_limit: 64m\n+    memswap_limit: 512m\n"),
        "{text}"
    );
}

#[test]
fn one_reference_splits_literal_parts() {
    assert_eq!(
        one_reference("nginx:${TAG:-1.25}"),
        Some(("nginx:".into(), "TAG".into(), String::new()))
    );
    assert_eq!(
        one_reference("$HOST:80"),
        Some((String::new(), "HOST".into(), ":80".into()))
    );
    assert_eq!(one_reference("${A}${B}"), None);
    assert_eq!(one_reference("plain"), None);
}
