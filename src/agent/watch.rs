//! What wakes the agent besides its timers: the engine's event stream for
//! plimsoll's containers (drift within a second), and file changes in a local
//! directory (development). Both only send [`Trigger`]s; deciding what to do
//! is the loop's business.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::mpsc::UnboundedSender;

use super::Trigger;
use crate::live::Engine;

/// Container actions that may mean drift. `health_status: unhealthy` is matched apart.
const DRIFT_ACTIONS: &[&str] = &[
    "die", "stop", "kill", "destroy", "rename", "update", "oom", "pause",
];

/// The drift a container event may stand for, if any.
pub fn drift_kind(action: &str) -> Option<&'static str> {
    if action.starts_with("health_status") {
        return action.ends_with("unhealthy").then_some("unhealthy");
    }
    DRIFT_ACTIONS
        .iter()
        .find(|a| **a == action)
        .map(|_| match action {
            "destroy" => "missing",
            "rename" | "update" | "pause" => "changed",
            _ => "stopped",
        })
}

/// Follows the engine's events for containers with plimsoll's labels until
/// `tx` closes. When the stream breaks (the engine restarted), it reconnects
/// with backoff and asks for a full resync, since events were missed.
/// A managed container that starts wakes the heartbeat (`heartbeat`), so
/// its logs are followed from its first lines.
pub async fn engine_events(
    engine: Engine,
    tx: UnboundedSender<Trigger>,
    heartbeat: std::sync::Arc<tokio::sync::Notify>,
) {
    // The stream is long-lived: no request timeout.
    let docker = engine
        .docker
        .with_timeout(Duration::from_secs(10 * 365 * 86_400));
    let mut backoff = Duration::from_millis(250);
    let mut broken = false;
    loop {
        if broken {
            // Wait until the engine answers, then re-subscribe and check
            // everything: events were missed while the stream was down.
            while let Err(e) = docker.ping().await {
                tracing::debug!("the engine does not answer yet: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            tracing::info!("the engine answers again: event stream re-opened, checking everything");
            if tx.send(Trigger::Resync).is_err() {
                return;
            }
        }
        let filters: HashMap<&str, Vec<&str>> = HashMap::from([
            ("type", vec!["container"]),
            ("label", vec![crate::names::labels::STACK]),
        ]);
        let opts = bollard::query_parameters::EventsOptionsBuilder::default()
            .filters(&filters)
            .build();
        let mut stream = docker.events(Some(opts));
        loop {
            match stream.next().await {
                Some(Ok(ev)) => {
                    backoff = Duration::from_millis(250);
                    let action = ev.action.unwrap_or_default();
                    let attrs = ev.actor.and_then(|a| a.attributes).unwrap_or_default();
                    let Some(stack) = attrs.get(crate::names::labels::STACK) else {
                        continue;
                    };
                    // A job's run starts and ends by design: never drift.
                    if attrs.contains_key(crate::names::labels::JOB) {
                        continue;
                    }
                    if action == "start" {
                        heartbeat.notify_one();
                    }
                    let Some(kind) = drift_kind(&action) else {
                        // A container that turned healthy changes only what
                        // /status shows.
                        if action == "health_status: healthy" {
                            let service = attrs.get(crate::names::labels::SERVICE);
                            let who = format!("{stack}/{}", service.map_or("", String::as_str));
                            if tx
                                .send(Trigger::Publish(format!("{who} turned healthy")))
                                .is_err()
                            {
                                return;
                            }
                        }
                        continue;
                    };
                    tracing::debug!(
                        stack,
                        container = attrs.get("name").map(String::as_str).unwrap_or(""),
                        action,
                        "engine event"
                    );
                    let event = Trigger::Event {
                        stack: stack.clone(),
                        service: attrs.get(crate::names::labels::SERVICE).cloned(),
                        kind,
                    };
                    if tx.send(event).is_err() {
                        return;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!("the engine's event stream failed: {e}; reconnecting");
                    break;
                }
                None => {
                    tracing::warn!(
                        "the engine closed its event stream (restarting?); reconnecting"
                    );
                    break;
                }
            }
        }
        broken = true;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Watches a local directory (not a git repository) and asks for a reload
/// when files change, debounced (300 ms of quiet) so an editor's save is one
/// reload. Reads (the agent's own loading) are not changes.
pub fn directory(
    dir: PathBuf,
    tx: UnboundedSender<Trigger>,
) -> Result<notify::RecommendedWatcher, notify::Error> {
    use notify::Watcher as _;
    let (changed, mut changes) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(ev) if !ev.kind.is_access() && !ev.kind.is_other() => {
                let _ = changed.send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("watching the directory failed: {e}"),
        })?;
    watcher.watch(&dir, notify::RecursiveMode::Recursive)?;
    tokio::spawn(async move {
        while changes.recv().await.is_some() {
            // Wait for a quiet moment, swallowing the rest of the burst.
            loop {
                match tokio::time::timeout(Duration::from_millis(300), changes.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if tx.send(Trigger::Fetch("files changed")).is_err() {
                return;
            }
        }
    });
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_that_mean_drift() {
        assert_eq!(drift_kind("die"), Some("stopped"));
        assert_eq!(drift_kind("destroy"), Some("missing"));
        assert_eq!(drift_kind("update"), Some("changed"));
        assert_eq!(drift_kind("health_status: unhealthy"), Some("unhealthy"));
        assert_eq!(drift_kind("health_status: healthy"), None);
        assert_eq!(drift_kind("start"), None);
        assert_eq!(drift_kind("exec_start: sh"), None);
    }
}
