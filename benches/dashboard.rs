//! The dashboard's main page for a host with 500 services (50 of them
//! drifted) and 200 applies in its history: how long the server takes to
//! render it, and how large it is (whole page, and the fragment each live
//! update pushes). `cargo bench --bench dashboard`.

use std::time::{Duration, Instant};

use plimsoll::agent::dashboard::{Page, View, fragment, page};
use plimsoll::agent::{AgentStatus, ServiceStatus, StackStatus, SyncRecord};
use plimsoll::reconcile::{ServiceState, SyncState};

fn status(services: usize, per_stack: usize, drifted_every: usize) -> AgentStatus {
    let stacks = (0..services / per_stack)
        .map(|s| StackStatus {
            name: format!("stack{s:02}"),
            paused: false,
            self_heal: true,
            services: (0..per_stack)
                .map(|i| {
                    let n = s * per_stack + i;
                    let drifted = n.is_multiple_of(drifted_every);
                    ServiceStatus {
                        service: format!("svc{i:02}"),
                        state: ServiceState {
                            sync: if drifted {
                                SyncState::Drifted
                            } else {
                                SyncState::InSync
                            },
                            paused: false,
                        },
                        drift: if drifted {
                            vec!["memory limit 64 MiB on the host, none in git".into()]
                        } else {
                            vec![]
                        },
                        health: None,
                        running: true,
                        container: format!("stack{s:02}-svc{i:02}-1"),
                        image: Some("registry.example/app@sha256:0123456789abcdef".into()),
                        self_heal: true,
                        heal: None,
                        silenced: None,
                    }
                })
                .collect(),
        })
        .collect();
    AgentStatus {
        source: "https://git.example/ops/hosts.git".into(),
        host: "web-01".into(),
        revision: Some("0123456789abcdef0123456789abcdef01234567".into()),
        fetched: Some("0123456789abcdef0123456789abcdef01234567".into()),
        last_sync: Some(SyncRecord {
            time: "2026-12-07T12:00:00Z".into(),
            result: "succeeded".into(),
            trigger: "poll".into(),
            seconds: 1.5,
            error: None,
        }),
        stacks,
        ..AgentStatus::default()
    }
}

fn history(n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| {
            serde_json::json!({
                "time": "2026-12-07T12:00:00Z", "revision": "0123456789abcdef0123456789abcdef01234567",
                "outcome": "applied", "seconds": 2.0, "user": "uid 10001", "rollback": false,
                "actions": [{"action": "recreate", "stack": "stack01", "service": format!("svc{:02}", i % 10),
                             "target": "stack01-svc01-1", "ok": true, "seconds": 1.2, "rolled_back": false}],
                "plan": {"actions": [{"action": "recreate", "target": "stack01-svc01-1", "reasons": ["image changed"]}]}
            })
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let status = status(500, 10, 10);
    let history = history(200);
    let view = View {
        status: &status,
        history: &history,
        actions: None,
        actions_enabled: true,
        notice: None,
    };
    let html = page(Page::Overview, &view);
    let live = fragment(Page::Overview, &view);
    let times: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(page(Page::Overview, std::hint::black_box(&view)));
            t.elapsed()
        })
        .collect();
    let history_page = page(Page::History, &view);
    println!("dashboard, 500 services (50 drifted), 200 applies in the history:");
    println!(
        "  overview: render {:.2} ms (median of 200), page {:.0} KiB, live update {:.0} KiB",
        median(times).as_secs_f64() * 1e3,
        html.len() as f64 / 1024.0,
        live.len() as f64 / 1024.0
    );
    println!(
        "  history: page {:.0} KiB",
        history_page.len() as f64 / 1024.0
    );
}
