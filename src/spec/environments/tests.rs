use std::collections::BTreeMap;
use std::fs;

use crate::spec::{load, load_path};

const CONFIG: &str = "hosts:\n  s-1: {labels: {env: stage}}\n  p-1: {labels: {env: prod}}\n\
    environments:\n  stage: {labels: {env: stage}}\n  prod: {labels: {env: prod}}\n";

fn repo(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let shop = dir.path().join("stacks/shop");
    fs::create_dir_all(&shop).unwrap();
    fs::write(dir.path().join("plimsoll.yaml"), config).unwrap();
    fs::write(
        shop.join("compose.yaml"),
        "services:\n  web:\n    image: web:${TAG:-latest}\n    environment: {LEVEL: base, MODE: \"${MODE:-none}\"}\n",
    )
    .unwrap();
    fs::write(shop.join(".env"), "MODE=base\n").unwrap();
    fs::write(
        shop.join("compose.prod.yaml"),
        "services:\n  web:\n    environment: {LEVEL: prod}\n",
    )
    .unwrap();
    fs::write(shop.join(".env.prod"), "TAG=1.2.3\nMODE=prod\n").unwrap();
    dir
}

fn env_of<'a>(s: &'a crate::spec::model::Stack, k: &str) -> Option<&'a str> {
    s.services["web"].environment[k].as_deref()
}

#[test]
fn a_host_runs_its_environments_variant() {
    let dir = repo(CONFIG);
    let d = load_path(dir.path());
    assert_eq!(d.stacks.len(), 1);
    // stage has no files of its own: its hosts run the base.
    assert!(!d.environments.contains_key("stage"));
    let stage = d.stacks_on("s-1");
    assert_eq!(
        stage[0].services["web"].image.as_deref(),
        Some("web:latest")
    );
    assert_eq!(env_of(stage[0], "LEVEL"), Some("base"));
    assert_eq!(env_of(stage[0], "MODE"), Some("base"));
    let prod = d.stacks_on("p-1");
    assert_eq!(prod[0].services["web"].image.as_deref(), Some("web:1.2.3"));
    assert_eq!(env_of(prod[0], "LEVEL"), Some("prod"));
    assert_eq!(env_of(prod[0], "MODE"), Some("prod"));
    // A host in no environment runs the base.
    assert_eq!(env_of(d.stacks_on("other")[0], "LEVEL"), Some("base"));
}

#[test]
fn an_error_in_a_variant_names_its_file_and_line() {
    let dir = repo(CONFIG);
    fs::write(
        dir.path().join("stacks/shop/compose.prod.yaml"),
        "services:\n  web:\n    ports: [\"notaport\"]\n",
    )
    .unwrap();
    let layout = crate::source::discover(dir.path()).unwrap();
    let e = load(&layout, &crate::source::LocalFs, &BTreeMap::new(), &[]).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("compose.prod.yaml:3"), "{text}");
}

#[test]
fn a_host_in_two_environments_is_an_error_at_its_key() {
    let dir = repo(&format!("{CONFIG}  all: {{hosts: [p-1]}}\n"));
    let layout = crate::source::discover(dir.path()).unwrap();
    let e = load(&layout, &crate::source::LocalFs, &BTreeMap::new(), &[]).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("plimsoll.yaml:3"), "{text}");
    assert!(text.contains("hosts.p-1"), "{text}");
    assert!(
        text.contains("more than one environment: all, prod"),
        "{text}"
    );
    // Two environments that name the same host.
    let dir = repo(&format!(
        "{CONFIG}  a: {{hosts: [x]}}\n  b: {{hosts: [x]}}\n"
    ));
    let layout = crate::source::discover(dir.path()).unwrap();
    let e = load(&layout, &crate::source::LocalFs, &BTreeMap::new(), &[]).unwrap_err();
    assert!(
        e.to_string()
            .contains("host `x` is in more than one environment: a, b"),
        "{e}"
    );
    let dir = repo(&format!("{CONFIG}  age: {{hosts: [x]}}\n"));
    let layout = crate::source::discover(dir.path()).unwrap();
    let e = load(&layout, &crate::source::LocalFs, &BTreeMap::new(), &[]).unwrap_err();
    assert!(
        e.to_string().contains("invalid environment name `age`"),
        "{e}"
    );
}

#[test]
fn an_environments_policy_applies_to_its_hosts_only() {
    let pinned = CONFIG.replace(
        "prod: {labels: {env: prod}}",
        "prod: {labels: {env: prod}, policy: {pinned_images: {}}}",
    );
    // prod's variant runs web:1.2.3: not pinned, refused for prod.
    let dir = repo(&pinned);
    let layout = crate::source::discover(dir.path()).unwrap();
    let e = load(&layout, &crate::source::LocalFs, &BTreeMap::new(), &[]).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("image `web:1.2.3` is not pinned"), "{text}");
    assert!(!text.contains("web:latest"), "stage is not checked: {text}");
    // Pinned in prod's file: it loads; stage still follows its tag.
    let digest = "sha256:".to_string() + &"a".repeat(64);
    fs::write(
        dir.path().join("stacks/shop/compose.prod.yaml"),
        format!("services:\n  web:\n    image: web@{digest}\n"),
    )
    .unwrap();
    let d = load_path(dir.path());
    assert_eq!(
        d.stacks_on("p-1")[0].services["web"].image.as_deref(),
        Some(format!("web@{digest}").as_str())
    );
}

#[test]
fn a_compose_file_for_an_environment_plimsoll_yaml_does_not_name_is_a_warning() {
    let dir = repo(CONFIG);
    let shop = dir.path().join("stacks/shop");
    fs::write(shop.join("compose.production.yaml"), "services: {}\n").unwrap();
    fs::write(shop.join("compose.override.yaml"), "services: {}\n").unwrap();
    fs::write(shop.join(".env.example"), "MODE=x\n").unwrap();
    let d = load_path(dir.path());
    let shown: Vec<String> = d.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(
        shown[0].contains("compose.production.yaml")
            && shown[0]
                .contains("no environment `production` in plimsoll.yaml: no host reads this file")
            && shown[0].contains("(prod, stage)"),
        "{shown:?}"
    );
    // Without `environments:` the files are the repository's own business.
    fs::write(dir.path().join("plimsoll.yaml"), "hosts:\n  a: {}\n").unwrap();
    assert!(load_path(dir.path()).warnings.is_empty());
}
