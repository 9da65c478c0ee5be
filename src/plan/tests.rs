//! Unit tests of the planner: pairing, actions, pruning and rendering.

/// Text from the repository is inert in the pull-request comment.
#[test]
fn markdown_from_the_repository_is_escaped() {
    let evil = "[x](http://evil) ![i](http://evil/p.png) <img src=x> @org/team ``` a|b";
    assert_eq!(
        md_escape(evil),
        "\\[x\\](http://evil) !\\[i\\](http://evil/p.png) &lt;img src=x&gt; @&#8203;org/team \\`\\`\\` a\\|b"
    );
    assert_eq!(md_escape("a_b@c _x_"), "a_b@&#8203;c \\_x\\_");
    assert_eq!(html_escape("<b>@x"), "&lt;b&gt;@&#8203;x");
    // A fence longer than any run of backticks inside.
    let f = md_fence("diff", "+label a: ```\n");
    assert!(f.starts_with("````diff\n") && f.ends_with("\n````"), "{f}");
    assert_eq!(md_code("a`b|c"), "``a`b\\|c``");
}

use std::collections::BTreeMap;

use super::pairing::assign_replicas;
use super::render::{html_escape, md_code, md_escape, md_fence};
use super::*;
use crate::diff::{self, ContainerConfig};
use crate::live::{LiveContainer, RunState};
use crate::mounts::ServiceMounts;
use crate::names::labels;

fn container(id: &str, name: &str, number: u32) -> LiveContainer {
    LiveContainer {
        id: id.into(),
        name: name.into(),
        stack: "s".into(),
        service: "web".into(),
        number,
        labels: BTreeMap::new(),
        state: RunState {
            status: crate::health::Status::Running,
            exit_code: 0,
            oom_killed: false,
            health: None,
            health_log: None,
        },
        config: ContainerConfig::default(),
        anonymous_volumes: BTreeMap::new(),
    }
}

/// The stack `shop` in `dir`: `web` on network `backend` with `net` as
/// its settings, loaded as `reconcile` loads it.
fn shop(dir: &tempfile::TempDir, net: &str) -> crate::spec::Desired {
    let compose = format!(
        "name: shop\nservices:\n  web:\n    image: busybox:1\n    networks: [backend]\nnetworks:\n  backend:\n{net}"
    );
    std::fs::write(dir.path().join("compose.yaml"), compose).unwrap();
    crate::spec::load_path(dir.path())
}

/// The engine after applying `applied`: network `shop_backend` as the
/// engine made it, `web` running in sync and attached to it, and `others`
/// attached too.
fn applied(d: &crate::spec::Desired, others: &[&str]) -> Live {
    use crate::diff::network::NetworkConfig;
    let stack = &d.stacks[0];
    let mut live = Live::default();
    live.images.insert(
        "busybox:1".into(),
        Some(crate::diff::ImageDefaults {
            id: "sha256:b".into(),
            ..Default::default()
        }),
    );
    let want = desired_container(stack, "web", 1, &live, &[], &ServiceMounts::new(), None).unwrap();
    let mut web = container("id-web", "shop-web-1", 1);
    web.stack = "shop".into();
    web.labels = want.config.labels.clone();
    web.config = want.config;
    live.containers.push(web);
    let net = &stack.networks["backend"];
    let mut ipam = net.ipam.clone().unwrap_or_default();
    if ipam.config.is_empty() {
        ipam.config.push(crate::spec::model::IpamPool {
            subnet: Some("172.18.0.0/16".into()),
            gateway: Some("172.18.0.1".into()),
            ..Default::default()
        });
    }
    ipam.driver = Some("default".into());
    let mut net_labels = net.labels.clone();
    net_labels.insert(labels::STACK.into(), "shop".into());
    live.networks.insert(
        net.name.clone(),
        crate::live::LiveNetwork {
            name: net.name.clone(),
            config: NetworkConfig {
                driver: "bridge".into(),
                internal: net.internal,
                ipam,
                labels: net_labels,
                ..Default::default()
            },
            attached: std::iter::once("shop-web-1")
                .chain(others.iter().copied())
                .map(String::from)
                .collect(),
        },
    );
    live
}

const SUBNET_1: &str = "    ipam:\n      config:\n        - subnet: 10.1.0.0/24\n";
const SUBNET_2: &str =
    "    internal: true\n    ipam:\n      config:\n        - subnet: 10.2.0.0/24\n";

#[test]
fn a_changed_network_is_recreated_with_its_services() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (shop(&dir, SUBNET_1), shop(&dir, SUBNET_2));
    let live = applied(&old, &[]);
    let plan_of = |d: &crate::spec::Desired, live: &Live| {
        let stacks: Vec<&Stack> = d.stacks.iter().collect();
        plan(&stacks, live, &Builds::new(), &Mounts::new(), &d.masker)
    };
    // In sync as applied, with or without a declared subnet.
    assert!(plan_of(&old, &live).is_noop());
    let plain = shop(&dir, "    labels: {team: shop}\n");
    assert!(plan_of(&plain, &applied(&plain, &[])).is_noop());

    let p = plan_of(&new, &live);
    assert_eq!(
        to_text(&p, false),
        "\
~ recreate network shop/shop_backend        internal false → true
                                            ipam subnet 10.1.0.0/24 → 10.2.0.0/24
~ recreate         shop/web                 network shop_backend is recreated
Plan: 1 to recreate network, 1 to recreate; 0 in sync.
"
    );
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["actions"][0]["action"], "recreate_network");
    assert!(
            to_markdown(&p).contains(
                "| ~ | recreate network | shop |  | `shop_backend` | internal false → true; ipam subnet 10.1.0.0/24 → 10.2.0.0/24 |"
            ),
            "{}",
            to_markdown(&p)
        );

    // A container plimsoll does not own on it: a conflict naming it, nothing recreated.
    let mut held = applied(&old, &["by-hand"]);
    held.foreign.push(crate::live::ForeignContainer {
        id: "id-hand".into(),
        name: "by-hand".into(),
        image: "busybox:1".into(),
        compose_project: None,
        compose_service: None,
        status: "running".into(),
        agent: false,
    });
    let p = plan_of(&new, &held);
    assert!(p.is_noop(), "{p:?}");
    assert_eq!(p.conflicts.len(), 1);
    assert!(
        p.conflicts[0]
            .reason
            .contains("by-hand (not created by plimsoll)")
            && p.conflicts[0]
                .reason
                .contains("docker network disconnect shop_backend CONTAINER"),
        "{}",
        p.conflicts[0].reason
    );

    // A network plimsoll did not create is left alone, and the plan says so.
    let mut foreign = live.clone();
    let n = foreign.networks.get_mut("shop_backend").unwrap();
    n.config.labels.clear();
    let p = plan_of(&new, &foreign);
    assert!(p.is_noop(), "{p:?}");
    assert!(
        p.conflicts[0]
            .reason
            .contains("was not created by plimsoll, so plimsoll leaves it alone"),
        "{}",
        p.conflicts[0].reason
    );
    // Nor is an external one compared.
    let external = shop(&dir, "    external: true\n    name: shop_backend\n");
    assert!(plan_of(&external, &live).is_noop());
    assert!(plan_of(&external, &live).conflicts.is_empty());
}

/// Which container each replica keeps, as IDs.
fn check(names: &[&str], live: &[LiveContainer], want: &[Option<&str>]) {
    let mine: Vec<&LiveContainer> = live.iter().collect();
    let got: Vec<Option<&str>> = assign_replicas(names, &mine)
        .into_iter()
        .map(|c| c.map(|c| c.id.as_str()))
        .collect();
    assert_eq!(got, want, "names {names:?}");
}

/// A hook that changes replaces the container, with the hook named in
/// the reason (the engine does not show hooks: their labels do); an
/// unchanged one is in sync.
#[test]
fn changed_hooks_recreate_with_their_reason() {
    use crate::spec::model::{Hook, Service};
    let hook = |cmd: &str| Hook {
        command: vec!["sh".into(), "-c".into(), cmd.into()],
        ..Hook::default()
    };
    let stack_with = |post_start: Vec<Hook>, pre_stop: Vec<Hook>| Stack {
        name: "s".into(),
        services: BTreeMap::from([(
            "web".to_string(),
            Service {
                image: Some("busybox:1".into()),
                post_start,
                pre_stop,
                ..Service::default()
            },
        )]),
        ..Default::default()
    };
    let mut live = Live::default();
    live.images.insert(
        "busybox:1".into(),
        Some(diff::ImageDefaults {
            id: "sha256:1".into(),
            ..Default::default()
        }),
    );
    let applied = stack_with(vec![hook("echo a")], vec![]);
    let want =
        desired_container(&applied, "web", 1, &live, &[], &ServiceMounts::new(), None).unwrap();
    let mut c = container("a", "s-web-1", 1);
    c.labels = want.config.labels.clone();
    c.config = want.config;
    live.containers.push(c);
    let reasons = |stack: &Stack| -> Vec<Vec<String>> {
        plan(
            &[stack],
            &live,
            &Builds::new(),
            &Mounts::new(),
            &Masker::default(),
        )
        .actions
        .into_iter()
        .map(|a| a.reasons)
        .collect()
    };
    assert_eq!(reasons(&applied), Vec::<Vec<String>>::new());
    assert_eq!(
        reasons(&stack_with(vec![hook("echo b")], vec![hook("echo bye")])),
        vec![vec![
            "post_start hooks changed".to_string(),
            "pre_stop hooks added".to_string()
        ]]
    );
    assert_eq!(
        reasons(&stack_with(vec![], vec![])),
        vec![vec!["post_start hooks removed".to_string()]]
    );
}

#[test]
fn replicas_keep_their_containers() {
    let three = ["s-web-1", "s-web-2", "s-web-3"];
    // Scale up: existing replicas kept, new ones missing.
    let live = [container("a", "s-web-1", 1), container("b", "s-web-2", 2)];
    check(&three, &live, &[Some("a"), Some("b"), None]);
    // Scale down: replica 3 is kept by no one (removed).
    let live = [
        container("a", "s-web-1", 1),
        container("b", "s-web-2", 2),
        container("c", "s-web-3", 3),
    ];
    check(&three[..2], &live, &[Some("a"), Some("b")]);
    check(&[], &live, &[]);
    // Renamed by hand: found by its number, not taken by another replica.
    let live = [container("a", "s-web-1", 1), container("b", "oops", 2)];
    check(&three[..2], &live, &[Some("a"), Some("b")]);
    // One replica: its only container, whatever its name and number.
    let live = [container("a", "renamed", 7)];
    check(&three[..1], &live, &[Some("a")]);
    // A second container under replica 1's number is not kept twice.
    let live = [container("a", "s-web-1", 1), container("b", "copy", 1)];
    check(&three[..1], &live, &[Some("a")]);
    check(&three[..2], &live, &[Some("a"), None]);
}

/// Under a container whose checkout is on no mount the engine sees, a
/// stack that bind-mounts a repository file is one conflict with the
/// hint and nothing else; a stack that does not still plans.
#[test]
fn a_stack_whose_repository_files_cannot_be_mapped_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    for (stack, volumes) in [
        (
            "files",
            "    volumes: [\"./www:/www:ro\"]\n    networks: [back]\nnetworks:\n  back: {}\n",
        ),
        ("plain", "    volumes: [\"/etc/ssl:/etc/ssl:ro\"]\n"),
    ] {
        let d = dir.path().join("stacks").join(stack);
        std::fs::create_dir_all(d.join("www")).unwrap();
        std::fs::write(
            d.join("compose.yaml"),
            format!("services:\n  web:\n    image: busybox:1\n{volumes}"),
        )
        .unwrap();
    }
    let d = crate::spec::load_path(dir.path());
    assert_eq!(d.stacks.len(), 2);
    let stacks: Vec<&Stack> = d.stacks.iter().collect();
    let live = Live {
        paths: crate::hostpath::PathMap::new(
            "agent",
            vec![crate::hostpath::HostMount {
                destination: "/var/lib/plimsoll".into(),
                kind: "volume".into(),
                source: Some("/var/lib/docker/volumes/s/_data".into()),
                name: Some("s".into()),
            }],
            None,
        ),
        ..Live::default()
    };
    let p = plan(&stacks, &live, &Builds::new(), &Mounts::new(), &d.masker);
    assert_eq!(p.conflicts.len(), 1, "{p:#?}");
    let c = &p.conflicts[0];
    assert_eq!(
        (c.stack.as_str(), c.service.as_deref()),
        ("files", Some("web"))
    );
    assert!(c.target.ends_with("stacks/files/www"), "{c:?}");
    assert!(c.reason.contains("state:/var/lib/plimsoll"), "{c:?}");
    assert!(p.actions.iter().all(|a| a.stack == "plain"), "{p:#?}");
    assert!(
        p.actions
            .iter()
            .any(|a| a.action == ActionKind::Create && a.stack == "plain"),
        "{p:#?}"
    );
    // Outside a container the same stacks plan as before.
    let p = plan(
        &stacks,
        &Live::default(),
        &Builds::new(),
        &Mounts::new(),
        &d.masker,
    );
    assert!(p.conflicts.is_empty(), "{p:#?}");
    assert!(p.actions.iter().any(|a| a.stack == "files"), "{p:#?}");
}
