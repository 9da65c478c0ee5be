//! Notifications: sync succeeded or failed, drift, self-heal gave up, unknown
//! containers, rejected revisions — POSTed to generic JSON webhooks and
//! Slack-compatible ones (`notifications:` in `plimsoll.yaml`).
//!
//! Notifying never blocks reconciling: [`Notifier::send`] masks the
//! notification and puts it on each matching target's bounded queue, and
//! returns. Every target has its own delivery task, so a slow or unreachable
//! receiver only delays (and, once its queue is full, drops) its own
//! notifications. Deliveries are retried on connection errors, 5xx and 429
//! with exponential backoff. A target's URL is never logged nor shown in an
//! error (it often carries a token): targets are named `notifications[N]`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::{StatusCode, Url};
use tokio::sync::mpsc;

use crate::spec::config::{NotificationEvent, NotificationFormat, NotificationTarget};
use crate::spec::secrets::Masker;

/// Something worth telling a human about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub event: NotificationEvent,
    /// The host the agent runs on.
    pub host: String,
    /// The revision concerned (a commit id), if any.
    pub revision: Option<String>,
    pub stack: Option<String>,
    pub service: Option<String>,
    /// One or a few lines for a human.
    pub message: String,
}

/// How notifications are delivered. [`Default`] is what the agent uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryOptions {
    /// Timeout of one POST, connecting included (default 10 s).
    pub timeout: Duration,
    /// Attempts per notification, the first included (default 5).
    pub attempts: u32,
    /// Wait before the first retry; doubles per retry (default 1 s).
    pub backoff_base: Duration,
    /// Notifications waiting per target before new ones are dropped (default 256).
    pub queue_capacity: usize,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            timeout: Duration::from_secs(10),
            attempts: 5,
            backoff_base: Duration::from_secs(1),
            queue_capacity: 256,
        }
    }
}

/// The longest a receiver's `Retry-After` is honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Targets of `notifications:` that cannot be used, one line each, naming
/// `notifications[N]` and what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct NotifyError {
    pub problems: Vec<TargetProblem>,
}

/// Why one target of `notifications:` cannot be used. Messages name the
/// target (`notifications[N]`), never its URL (it may carry a token).
#[derive(Debug, Clone, thiserror::Error)]
pub enum TargetProblem {
    #[error(
        "notifications[{index}]: both `url` and `url_env` are set; keep one (prefer \
         `url_env` when the URL carries a token)"
    )]
    BothUrls { index: usize },
    #[error(
        "notifications[{index}]: no URL; set `url`, or `url_env` to the name of an \
         environment variable of the agent that holds the URL"
    )]
    NoUrl { index: usize },
    #[error(
        "notifications[{index}]: `url_env` names {var}, which the host does not \
         pass or which is not set; start the agent with --pass-secret-env {var} \
         (PLIMSOLL_PASS_SECRET_ENV) and {var} set, or correct `url_env`"
    )]
    UnsetEnv { index: usize, var: String },
    /// `what`: "`url`", or "the value of VAR (from `url_env`)".
    #[error(
        "notifications[{index}]: {what} is not an http:// or https:// URL; give the \
         receiver's full URL (not shown here: it may carry a token)"
    )]
    NotHttp { index: usize, what: String },
    /// Not a target's fault: every target is affected.
    #[error(
        "notifications: the HTTP client could not be built ({}), so nothing \
         can be delivered; report this as a bug",
        error_chain(source.as_ref())
    )]
    NoClient {
        #[source]
        source: Arc<reqwest::Error>,
    },
}

/// Sends notifications in the background. Cheap to clone; clones share the
/// targets and the delivery tasks.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: tokio::runtime::Handle,
    /// Why the HTTP client could not be built, if so (reported by `configure`).
    client: Result<reqwest::Client, Arc<reqwest::Error>>,
    options: DeliveryOptions,
    targets: RwLock<Vec<Target>>,
}

/// A configured target: its filter and the queue of its delivery task.
struct Target {
    events: Vec<NotificationEvent>,
    tx: mpsc::Sender<Arc<Queued>>,
    shared: Arc<Shared>,
    /// The delivery task, awaited by [`Notifier::flush`].
    task: tokio::task::JoinHandle<()>,
}

/// What a target's delivery task and its senders share. Deliberately not
/// `Debug`: the URL may carry a token.
struct Shared {
    /// The position in `notifications:` (updated when a reconfiguration keeps the task).
    index: AtomicUsize,
    url: Url,
    format: NotificationFormat,
    /// Notifications dropped since the queue was last found full.
    dropped: AtomicU64,
}

/// A masked notification and when it was sent.
struct Queued {
    n: Notification,
    time: jiff::Timestamp,
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let targets = self.inner.targets.read().map(|t| t.len()).unwrap_or(0);
        f.debug_struct("Notifier")
            .field("targets", &targets)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Creates a notifier without targets (notifications are dropped silently
    /// until [`configure`](Self::configure) gives some). Call inside a tokio
    /// runtime: delivery tasks are spawned on it.
    pub fn start() -> Notifier {
        Notifier::start_with(DeliveryOptions::default())
    }

    /// [`start`](Self::start) with other delivery settings (tests use a short backoff).
    pub fn start_with(options: DeliveryOptions) -> Notifier {
        let runtime = tokio::runtime::Handle::try_current()
            .expect("Notifier::start must be called inside a tokio runtime");
        // reqwest is built with rustls but no crypto provider: install ring,
        // which bollard's TLS already uses, unless one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("plimsoll/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Arc::new(e.without_url()));
        if let Err(e) = &client {
            tracing::error!(target: "plimsoll::notify", "notifications are disabled: the HTTP client could not be built: {}", error_chain(e.as_ref()));
        }
        Notifier {
            inner: Arc::new(Inner {
                runtime,
                client,
                options: options.sanitized(),
                targets: RwLock::new(Vec::new()),
            }),
        }
    }

    /// Replaces the targets with `notifications:` of the current revision,
    /// resolving `url_env` from `env` (the variables the host passes: a
    /// repository names a variable, the host decides which ones it may see). A target unchanged (same URL and
    /// format) keeps its queue and delivery task. Targets that cannot be used
    /// are left out and reported together in the error; the others are
    /// configured all the same, so notifications keep flowing.
    pub fn configure(
        &self,
        targets: &[NotificationTarget],
        env: &BTreeMap<String, String>,
    ) -> Result<(), NotifyError> {
        let mut problems = Vec::new();
        let mut resolved = Vec::new();
        for (index, t) in targets.iter().enumerate() {
            match resolve(index, t, env) {
                Ok(url) => resolved.push((index, url, t)),
                Err(p) => problems.push(p),
            }
        }
        let client = match &self.inner.client {
            Ok(c) => Some(c.clone()),
            Err(e) => {
                if !resolved.is_empty() {
                    problems.push(TargetProblem::NoClient { source: e.clone() });
                }
                None
            }
        };
        {
            let mut current = self
                .inner
                .targets
                .write()
                .unwrap_or_else(|e| e.into_inner());
            let mut old: Vec<Option<Target>> = current.drain(..).map(Some).collect();
            let mut new = Vec::with_capacity(resolved.len());
            if let Some(client) = client {
                for (index, url, t) in resolved {
                    let kept = old.iter_mut().find_map(|slot| {
                        slot.take_if(|o| o.shared.url == url && o.shared.format == t.format)
                    });
                    let target = match kept {
                        Some(o) => {
                            o.shared.index.store(index, Ordering::Relaxed);
                            Target {
                                events: t.events.clone(),
                                ..o
                            }
                        }
                        None => self.spawn(&client, index, url, t),
                    };
                    new.push(target);
                }
            }
            *current = new;
            // Targets in `old` are dropped here: their tasks deliver what is
            // queued, then end.
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(NotifyError { problems })
        }
    }

    fn spawn(
        &self,
        client: &reqwest::Client,
        index: usize,
        url: Url,
        t: &NotificationTarget,
    ) -> Target {
        let (tx, rx) = mpsc::channel(self.inner.options.queue_capacity);
        let shared = Arc::new(Shared {
            index: AtomicUsize::new(index),
            url,
            format: t.format,
            dropped: AtomicU64::new(0),
        });
        let task = self.inner.runtime.spawn(deliver_all(
            client.clone(),
            shared.clone(),
            self.inner.options,
            rx,
        ));
        Target {
            events: t.events.clone(),
            tx,
            shared,
            task,
        }
    }

    /// At shutdown: closes every queue and waits, `within` at most, until
    /// what was queued is delivered (or has used its attempts), so an alert
    /// sent just before a restart is not lost. What is left is reported.
    pub async fn flush(&self, within: Duration) {
        let targets = std::mem::take(
            &mut *self
                .inner
                .targets
                .write()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let waiting: usize = targets
            .iter()
            .map(|t| t.tx.max_capacity() - t.tx.capacity())
            .sum();
        // Dropping a target's sender closes its queue: its task delivers
        // what is queued, then ends.
        let tasks: Vec<_> = targets.into_iter().map(|t| t.task).collect();
        if waiting == 0 && tasks.iter().all(|t| t.is_finished()) {
            return;
        }
        if tokio::time::timeout(within, futures_util::future::join_all(tasks))
            .await
            .is_err()
        {
            tracing::warn!(target: "plimsoll::notify",
                "shutting down with notifications still undelivered after {}s (about {waiting} were queued); they are dropped",
                within.as_secs());
        }
    }

    /// Queues `n` for every target whose `events` is empty or contains
    /// `n.event`. Every field is masked with `masker` first. Never blocks,
    /// never fails: with a target's queue full the notification is dropped
    /// for that target, with a warning.
    pub fn send(&self, n: Notification, masker: &Masker) {
        let targets = self.inner.targets.read().unwrap_or_else(|e| e.into_inner());
        let mut queued: Option<Arc<Queued>> = None;
        for t in targets.iter() {
            if !t.events.is_empty() && !t.events.contains(&n.event) {
                continue;
            }
            let q = queued
                .get_or_insert_with(|| {
                    Arc::new(Queued {
                        n: mask(&n, masker),
                        time: jiff::Timestamp::now(),
                    })
                })
                .clone();
            let index = t.shared.index.load(Ordering::Relaxed);
            match t.tx.try_send(q) {
                Ok(()) => {
                    let dropped = t.shared.dropped.swap(0, Ordering::Relaxed);
                    if dropped > 0 {
                        tracing::warn!(target: "plimsoll::notify",
                            "notifications[{index}]: queue drained; {dropped} notification(s) were dropped while it was full");
                    }
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    if t.shared.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                        tracing::warn!(target: "plimsoll::notify",
                            "notifications[{index}]: {} notifications are waiting for delivery; dropping new ones until the receiver catches up (check that it is reachable)",
                            self.inner.options.queue_capacity);
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    tracing::warn!(target: "plimsoll::notify",
                        "notifications[{index}]: the delivery task has stopped; notification dropped");
                }
            }
        }
    }
}

impl DeliveryOptions {
    fn sanitized(self) -> Self {
        DeliveryOptions {
            attempts: self.attempts.max(1),
            queue_capacity: self.queue_capacity.max(1),
            ..self
        }
    }
}

/// The URL of target `index`, checked. Problems name the target, never the URL.
fn resolve(
    index: usize,
    t: &NotificationTarget,
    env: &BTreeMap<String, String>,
) -> Result<Url, TargetProblem> {
    let (raw, what) = match (&t.url, &t.url_env) {
        (Some(_), Some(_)) => return Err(TargetProblem::BothUrls { index }),
        (None, None) => return Err(TargetProblem::NoUrl { index }),
        (Some(url), None) => (url.as_str(), "`url`".to_string()),
        (None, Some(var)) => match env.get(var).filter(|v| !v.trim().is_empty()) {
            Some(v) => (v.as_str(), format!("the value of {var} (from `url_env`)")),
            None => {
                return Err(TargetProblem::UnsetEnv {
                    index,
                    var: var.clone(),
                });
            }
        },
    };
    let url = Url::parse(raw.trim()).ok().filter(|u| {
        matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
    });
    url.ok_or(TargetProblem::NotHttp { index, what })
}

fn mask(n: &Notification, masker: &Masker) -> Notification {
    let m = |s: &str| masker.mask(s).into_owned();
    Notification {
        event: n.event,
        host: m(&n.host),
        revision: n.revision.as_deref().map(m),
        stack: n.stack.as_deref().map(m),
        service: n.service.as_deref().map(m),
        message: m(&n.message),
    }
}

/// The request body for a target of `format`.
fn body(format: NotificationFormat, q: &Queued) -> serde_json::Value {
    let n = &q.n;
    match format {
        NotificationFormat::Json => serde_json::json!({
            "event": n.event.as_str(),
            "host": n.host,
            "revision": n.revision,
            "stack": n.stack,
            "service": n.service,
            "message": n.message,
            "time": q.time.to_string(),
        }),
        NotificationFormat::Slack => serde_json::json!({ "text": slack_text(n) }),
    }
}

/// `[plimsoll host] sync failed: stack/service: message (revision abc1234)`,
/// with `&`, `<` and `>` escaped as Slack requires (so a message cannot
/// mention `<!channel>` or forge a link).
fn slack_text(n: &Notification) -> String {
    let mut line = format!(
        "[plimsoll {}] {}",
        n.host,
        n.event.as_str().replace('_', " ")
    );
    match (&n.stack, &n.service) {
        (Some(stack), Some(service)) => line.push_str(&format!(": {stack}/{service}")),
        (Some(one), None) | (None, Some(one)) => line.push_str(&format!(": {one}")),
        (None, None) => {}
    }
    if !n.message.is_empty() {
        line.push_str(": ");
        line.push_str(&n.message);
    }
    if let Some(rev) = &n.revision {
        let short: String = rev.chars().take(7).collect();
        line.push_str(&format!(" (revision {short})"));
    }
    line.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A target's delivery task: one notification at a time, in order, until
/// the target is removed and its queue is empty.
async fn deliver_all(
    client: reqwest::Client,
    shared: Arc<Shared>,
    options: DeliveryOptions,
    mut rx: mpsc::Receiver<Arc<Queued>>,
) {
    while let Some(q) = rx.recv().await {
        deliver(&client, &shared, &options, &q).await;
    }
}

async fn deliver(client: &reqwest::Client, shared: &Shared, options: &DeliveryOptions, q: &Queued) {
    let body = body(shared.format, q);
    let event = q.n.event.as_str();
    let mut backoff = options.backoff_base;
    for attempt in 1..=options.attempts {
        let index = shared.index.load(Ordering::Relaxed);
        let (problem, retry_after) = match client.post(shared.url.clone()).json(&body).send().await
        {
            Ok(resp) if resp.status().is_success() => {
                tracing::debug!(target: "plimsoll::notify", "notifications[{index}]: {event} delivered");
                return;
            }
            Ok(resp) => {
                let status = resp.status();
                if !(status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS) {
                    tracing::warn!(target: "plimsoll::notify",
                            "notifications[{index}]: {event} not delivered: the receiver answered {status}; \
                             check the target's URL and `format`");
                    return;
                }
                (
                    format!("the receiver answered {status}"),
                    retry_after(&resp),
                )
            }
            // `without_url`: reqwest's errors name the URL, which may carry a token.
            Err(e) => (error_chain(&e.without_url()), None),
        };
        if attempt == options.attempts {
            tracing::warn!(target: "plimsoll::notify",
                "notifications[{index}]: {event} not delivered after {attempt} attempts, giving up: {problem}");
            return;
        }
        let wait = retry_after
            .unwrap_or_default()
            .min(MAX_RETRY_AFTER)
            .max(backoff);
        tracing::debug!(target: "plimsoll::notify",
            "notifications[{index}]: attempt {attempt} failed ({problem}); retrying in {wait:?}");
        tokio::time::sleep(wait).await;
        backoff = backoff.saturating_mul(2);
    }
}

/// A `Retry-After` of seconds (an HTTP date is ignored).
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp.headers().get(reqwest::header::RETRY_AFTER)?;
    v.to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
        .map(Duration::from_secs)
}

/// An error and its causes, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::extract::State;
    use axum::http::StatusCode as Status;
    use axum::routing::post;

    /// How long a test waits for something that must happen: only a guard
    /// against a hang, never a measure (no test asserts how long anything took).
    const HANG_GUARD: Duration = Duration::from_secs(60);

    /// A local HTTP receiver that records bodies. The first `fail_first`
    /// requests are answered `status`; while `hold` is closed every answer
    /// waits (the request is counted at once, the body recorded once it opens).
    struct Receiver {
        url: String,
        bodies: mpsc::UnboundedReceiver<String>,
        requests: Arc<AtomicUsize>,
        /// Opens the hold: every waiting and later request is answered.
        open: tokio::sync::watch::Sender<bool>,
    }

    #[derive(Clone)]
    struct RecvState {
        tx: mpsc::UnboundedSender<String>,
        requests: Arc<AtomicUsize>,
        fail_first: usize,
        status: Status,
        hold: tokio::sync::watch::Receiver<bool>,
    }

    async fn receiver_with(fail_first: usize, status: Status) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        serve(listener, fail_first, status, true)
    }

    /// A receiver whose answers wait until [`Receiver::open`] is sent `true`.
    async fn held_receiver() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        serve(listener, 0, Status::OK, false)
    }

    fn serve(
        listener: tokio::net::TcpListener,
        fail_first: usize,
        status: Status,
        open: bool,
    ) -> Receiver {
        let (tx, bodies) = mpsc::unbounded_channel();
        let requests = Arc::new(AtomicUsize::new(0));
        let (open_tx, hold) = tokio::sync::watch::channel(open);
        let state = RecvState {
            tx,
            requests: requests.clone(),
            fail_first,
            status,
            hold,
        };
        async fn handle(State(mut s): State<RecvState>, body: String) -> Status {
            let n = s.requests.fetch_add(1, Ordering::SeqCst);
            let _ = s.hold.wait_for(|open| *open).await;
            if n < s.fail_first {
                return s.status;
            }
            let _ = s.tx.send(body);
            Status::OK
        }
        let app = axum::Router::new()
            .route("/hook/{token}", post(handle))
            .with_state(state);
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            url: format!("http://{addr}/hook/T0KEN-in-url"),
            bodies,
            requests,
            open: open_tx,
        }
    }

    async fn receiver() -> Receiver {
        receiver_with(0, Status::OK).await
    }

    impl Receiver {
        async fn next(&mut self) -> serde_json::Value {
            let body = tokio::time::timeout(HANG_GUARD, self.bodies.recv())
                .await
                .expect("a notification (hang guard)")
                .unwrap();
            serde_json::from_str(&body).unwrap()
        }

        /// The messages of the bodies received so far, without waiting.
        fn received(&mut self) -> Vec<serde_json::Value> {
            std::iter::from_fn(|| self.bodies.try_recv().ok())
                .map(|b| serde_json::from_str::<serde_json::Value>(&b).unwrap()["message"].clone())
                .collect()
        }

        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }
    }

    /// Closes every target's queue and waits until its delivery task has
    /// ended: each notification sent before was delivered or given up, so
    /// what a receiver got is final. The deterministic end of a test's
    /// deliveries, where a "nothing more within a while" window would be a guess.
    async fn settle(n: &Notifier) {
        let targets = std::mem::take(&mut *n.inner.targets.write().unwrap());
        for Target { tx, task, .. } in targets {
            drop(tx);
            tokio::time::timeout(HANG_GUARD, task)
                .await
                .expect("the delivery task ends (hang guard)")
                .expect("the delivery task does not panic");
        }
    }

    /// Runs the synchronous `f` (sends) off the runtime: if it blocked, the
    /// hang guard fails the test instead of hanging it.
    async fn off_runtime(f: impl FnOnce() + Send + 'static) {
        tokio::time::timeout(HANG_GUARD, tokio::task::spawn_blocking(f))
            .await
            .expect("send must not block (hang guard)")
            .unwrap();
    }

    /// Configures one JSON target at `url` and sends it one notification.
    fn send_one(n: &Notifier, url: &str, event: NotificationEvent, message: &str) {
        n.configure(&[target(url, NotificationFormat::Json, &[])], &no_env())
            .unwrap();
        n.send(notification(event, message), &Masker::default());
    }

    fn fast() -> Notifier {
        Notifier::start_with(DeliveryOptions {
            backoff_base: Duration::from_millis(10),
            ..DeliveryOptions::default()
        })
    }

    /// [`fast`] for a held receiver: a request that waits is no timeout.
    fn patient(queue_capacity: usize) -> Notifier {
        Notifier::start_with(DeliveryOptions {
            timeout: Duration::from_secs(3600),
            backoff_base: Duration::from_millis(10),
            queue_capacity,
            ..DeliveryOptions::default()
        })
    }

    fn target(
        url: &str,
        format: NotificationFormat,
        events: &[NotificationEvent],
    ) -> NotificationTarget {
        NotificationTarget {
            url: Some(url.into()),
            url_env: None,
            format,
            events: events.to_vec(),
        }
    }

    fn notification(event: NotificationEvent, message: &str) -> Notification {
        Notification {
            event,
            host: "web-1".into(),
            revision: Some("4f1c0ac9e2b7d8f0a1b2c3d4e5f60718293a4b5c".into()),
            stack: Some("shop".into()),
            service: Some("api".into()),
            message: message.into(),
        }
    }

    fn no_env() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    #[tokio::test]
    async fn json_and_slack_bodies() {
        let mut json = receiver().await;
        let mut slack = receiver().await;
        let n = fast();
        n.configure(
            &[
                target(&json.url, NotificationFormat::Json, &[]),
                target(&slack.url, NotificationFormat::Slack, &[]),
            ],
            &no_env(),
        )
        .unwrap();
        n.send(
            notification(
                NotificationEvent::SyncFailed,
                "pull of shop/api failed: <denied> & more",
            ),
            &Masker::default(),
        );
        let body = json.next().await;
        let time = body["time"].as_str().unwrap().to_string();
        assert!(time.parse::<jiff::Timestamp>().is_ok(), "{time}");
        assert_eq!(
            body,
            serde_json::json!({
                "event": "sync_failed", "host": "web-1",
                "revision": "4f1c0ac9e2b7d8f0a1b2c3d4e5f60718293a4b5c",
                "stack": "shop", "service": "api",
                "message": "pull of shop/api failed: <denied> & more", "time": time,
            })
        );
        assert_eq!(
            slack.next().await,
            serde_json::json!({"text": "[plimsoll web-1] sync failed: shop/api: pull of shop/api failed: &lt;denied&gt; &amp; more (revision 4f1c0ac)"})
        );
        // Absent fields: null in JSON, left out of the Slack line.
        n.send(
            Notification {
                event: NotificationEvent::RevisionRejected,
                host: "web-1".into(),
                revision: None,
                stack: None,
                service: None,
                message: "policy: privileged".into(),
            },
            &Masker::default(),
        );
        let body = json.next().await;
        assert_eq!(body["event"], "revision_rejected");
        assert!(body["revision"].is_null() && body["stack"].is_null() && body["service"].is_null());
        assert_eq!(
            slack.next().await,
            serde_json::json!({"text": "[plimsoll web-1] revision rejected: policy: privileged"})
        );
    }

    #[tokio::test]
    async fn flush_delivers_what_is_queued_before_shutdown() {
        // A held receiver: until it answers, all three are still queued or in flight.
        let mut slow = held_receiver().await;
        let n = patient(256);
        n.configure(
            &[target(&slow.url, NotificationFormat::Json, &[])],
            &no_env(),
        )
        .unwrap();
        for i in 0..3 {
            n.send(
                notification(NotificationEvent::SyncFailed, &format!("failure {i}")),
                &Masker::default(),
            );
        }
        let flushing = tokio::spawn({
            let n = n.clone();
            async move { n.flush(HANG_GUARD).await }
        });
        // The flush waits for the receiver: it cannot end while nothing was answered.
        tokio::task::yield_now().await;
        assert!(!flushing.is_finished(), "flush returned before delivering");
        assert_eq!(slow.received(), Vec::<serde_json::Value>::new());
        slow.open.send(true).unwrap();
        tokio::time::timeout(HANG_GUARD, flushing)
            .await
            .expect("flush returns (hang guard)")
            .unwrap();
        // Returned: all three were delivered, in order.
        assert_eq!(
            slow.received(),
            ["failure 0", "failure 1", "failure 2"].map(serde_json::Value::from)
        );
        // Flushed: later notifications go nowhere (no target is left to queue
        // them), and a second flush returns at once.
        n.send(
            notification(NotificationEvent::SyncFailed, "after"),
            &Masker::default(),
        );
        assert!(n.inner.targets.read().unwrap().is_empty());
        n.flush(HANG_GUARD).await;
        assert_eq!(slow.requests(), 3);
        assert_eq!(slow.received(), Vec::<serde_json::Value>::new());
    }

    #[tokio::test]
    async fn retries_after_a_server_error() {
        let mut r = receiver_with(1, Status::INTERNAL_SERVER_ERROR).await;
        let n = fast();
        send_one(&n, &r.url, NotificationEvent::DriftDetected, "api stopped");
        assert_eq!(r.next().await["message"], "api stopped");
        // Every delivery over: one retry, and nothing sent twice.
        settle(&n).await;
        assert_eq!(r.requests(), 2);
        assert_eq!(r.received(), Vec::<serde_json::Value>::new());
    }

    #[tokio::test]
    async fn retries_on_429() {
        let mut r = receiver_with(2, Status::TOO_MANY_REQUESTS).await;
        let n = fast();
        send_one(&n, &r.url, NotificationEvent::SyncSucceeded, "ok");
        assert_eq!(r.next().await["event"], "sync_succeeded");
        settle(&n).await;
        assert_eq!(r.requests(), 3);
    }

    #[tokio::test]
    async fn retries_on_connection_errors() {
        // The first two connections are closed as soon as the request has
        // come in, without an answer (a connection error for the sender, as a
        // receiver that restarts gives); then the receiver answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/hook/T0KEN-in-url",
            listener.local_addr().unwrap()
        );
        let n = fast();
        n.configure(&[target(&url, NotificationFormat::Json, &[])], &no_env())
            .unwrap();
        n.send(
            notification(NotificationEvent::SyncFailed, "late"),
            &Masker::default(),
        );
        for _ in 0..2 {
            let (mut conn, _) = tokio::time::timeout(HANG_GUARD, listener.accept())
                .await
                .expect("an attempt (hang guard)")
                .unwrap();
            let mut buf = [0u8; 1024];
            let read = tokio::io::AsyncReadExt::read(&mut conn, &mut buf)
                .await
                .unwrap();
            assert!(buf[..read].starts_with(b"POST /hook/"), "a request came in");
            drop(conn);
        }
        let mut r = serve(listener, 0, Status::OK, true);
        assert_eq!(r.url, url);
        assert_eq!(r.next().await["message"], "late");
        settle(&n).await;
        assert_eq!(r.requests(), 1, "delivered once, on the third attempt");
    }

    #[tokio::test]
    async fn gives_up_after_the_last_attempt() {
        let mut r = receiver_with(usize::MAX, Status::SERVICE_UNAVAILABLE).await;
        let n = Notifier::start_with(DeliveryOptions {
            attempts: 3,
            backoff_base: Duration::from_millis(10),
            ..DeliveryOptions::default()
        });
        send_one(&n, &r.url, NotificationEvent::SyncFailed, "x");
        // The delivery task ends once the notification is given up.
        settle(&n).await;
        assert_eq!(r.requests(), 3);
        assert_eq!(r.received(), Vec::<serde_json::Value>::new());
    }

    #[tokio::test]
    async fn client_errors_are_not_retried() {
        let r = receiver_with(usize::MAX, Status::NOT_FOUND).await;
        let n = fast();
        send_one(&n, &r.url, NotificationEvent::SyncSucceeded, "ok");
        settle(&n).await;
        assert_eq!(r.requests(), 1);
    }

    #[tokio::test]
    async fn secrets_never_leave_the_process() {
        let canary = "canary-s3cr3t-value";
        let mut masker = Masker::default();
        masker.add_value(canary);
        let mut json = receiver().await;
        let mut slack = receiver().await;
        let n = fast();
        n.configure(
            &[
                target(&json.url, NotificationFormat::Json, &[]),
                target(&slack.url, NotificationFormat::Slack, &[]),
            ],
            &no_env(),
        )
        .unwrap();
        n.send(
            Notification {
                event: NotificationEvent::SyncFailed,
                host: format!("host-{canary}"),
                revision: Some(canary.into()),
                stack: Some(format!("stack-{canary}")),
                service: Some(format!("svc-{canary}")),
                message: format!("connect postgres://app:{canary}@db failed"),
            },
            &masker,
        );
        for body in [json.next().await, slack.next().await] {
            let text = body.to_string();
            assert!(!text.contains(canary), "{text}");
            assert!(text.contains("********"), "{text}");
        }
    }

    #[tokio::test]
    async fn events_filter() {
        let mut failures = receiver().await;
        let mut all = receiver().await;
        let n = fast();
        n.configure(
            &[
                target(
                    &failures.url,
                    NotificationFormat::Json,
                    &[
                        NotificationEvent::SyncFailed,
                        NotificationEvent::SelfHealGaveUp,
                    ],
                ),
                target(&all.url, NotificationFormat::Json, &[]),
            ],
            &no_env(),
        )
        .unwrap();
        n.send(
            notification(NotificationEvent::DriftDetected, "drift"),
            &Masker::default(),
        );
        n.send(
            notification(NotificationEvent::SyncFailed, "failed"),
            &Masker::default(),
        );
        // Each target delivers in order: drift would have come first.
        assert_eq!(all.next().await["event"], "drift_detected");
        assert_eq!(all.next().await["event"], "sync_failed");
        assert_eq!(failures.next().await["event"], "sync_failed");
        settle(&n).await;
        assert_eq!((failures.requests(), all.requests()), (1, 2));
    }

    #[tokio::test]
    async fn a_slow_target_does_not_hold_up_others() {
        // The slow receiver answers nothing until the end of the test.
        let mut slow = held_receiver().await;
        let mut fast_r = receiver().await;
        let n = patient(256);
        n.configure(
            &[
                target(&slow.url, NotificationFormat::Json, &[]),
                target(&fast_r.url, NotificationFormat::Slack, &[]),
            ],
            &no_env(),
        )
        .unwrap();
        off_runtime({
            let n = n.clone();
            move || {
                for i in 0..3 {
                    n.send(
                        notification(NotificationEvent::DriftDetected, &format!("drift {i}")),
                        &Masker::default(),
                    );
                }
            }
        })
        .await;
        for i in 0..3 {
            let text = fast_r.next().await["text"].as_str().unwrap().to_string();
            assert!(text.contains(&format!("drift {i}")), "{text}");
        }
        // All three reached the fast target while the slow one has answered none.
        assert!(slow.requests() <= 1, "one request at a time per target");
        assert_eq!(slow.received(), Vec::<serde_json::Value>::new());
        slow.open.send(true).unwrap();
        settle(&n).await;
        assert_eq!(
            slow.received(),
            ["drift 0", "drift 1", "drift 2"].map(serde_json::Value::from)
        );
    }

    #[tokio::test]
    async fn a_full_queue_drops_without_blocking() {
        let mut slow = held_receiver().await;
        let n = patient(2);
        n.configure(
            &[target(&slow.url, NotificationFormat::Json, &[])],
            &no_env(),
        )
        .unwrap();
        off_runtime({
            let n = n.clone();
            move || {
                for i in 0..50 {
                    n.send(
                        notification(NotificationEvent::DriftDetected, &format!("{i}")),
                        &Masker::default(),
                    );
                }
            }
        })
        .await;
        // The queue holds 2, and the delivery task may have taken one out
        // (then waiting on the receiver) while they were sent, making room
        // for one more: every other notification was dropped.
        let dropped = n.inner.targets.read().unwrap()[0]
            .shared
            .dropped
            .load(Ordering::Relaxed);
        slow.open.send(true).unwrap();
        settle(&n).await;
        let delivered: Vec<u64> = slow
            .received()
            .iter()
            .map(|m| m.as_str().unwrap().parse().unwrap())
            .collect();
        assert!(
            delivered.len() == 2 && delivered == [0, 1]
                || delivered.len() == 3 && delivered[..2] == [0, 1],
            "{delivered:?}"
        );
        // `dropped` counts the drops since the last notification queued.
        let last = *delivered.last().unwrap();
        assert_eq!(dropped, 49 - last, "delivered {delivered:?}");
    }

    /// Log lines written while `f` runs on this thread, any level.
    fn logged(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer({
                let buf = buf.clone();
                move || buf.clone()
            })
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[tokio::test]
    async fn no_targets_drops_silently() {
        let mut r = receiver().await;
        let n = fast();
        // The log capture works: a warning of this module shows.
        assert!(
            logged(|| tracing::warn!(target: "plimsoll::notify", "control")).contains("control")
        );
        // Before any `configure`, and after one without targets: nothing is
        // logged, and nothing is kept for a target configured later.
        let quiet = logged(|| {
            n.send(
                notification(NotificationEvent::SyncFailed, "before any target"),
                &Masker::default(),
            );
            n.configure(&[], &no_env()).unwrap();
            n.send(
                notification(NotificationEvent::SyncFailed, "no target"),
                &Masker::default(),
            );
        });
        assert_eq!(quiet, "");
        send_one(&n, &r.url, NotificationEvent::SyncFailed, "with a target");
        settle(&n).await;
        assert_eq!(r.received(), vec![serde_json::Value::from("with a target")]);
        assert_eq!(r.requests(), 1);
    }

    #[tokio::test]
    async fn url_env_and_reconfiguration() {
        let mut r = receiver().await;
        let n = fast();
        let t = NotificationTarget {
            url: None,
            url_env: Some("PLIMSOLL_TEST_HOOK_URL".into()),
            format: NotificationFormat::Json,
            events: vec![],
        };
        let env = BTreeMap::from([("PLIMSOLL_TEST_HOOK_URL".to_string(), r.url.clone())]);
        n.configure(std::slice::from_ref(&t), &env).unwrap();
        n.send(
            notification(NotificationEvent::SyncSucceeded, "one"),
            &Masker::default(),
        );
        assert_eq!(r.next().await["message"], "one");
        // The next revision keeps the target, now filtered.
        let filtered = NotificationTarget {
            events: vec![NotificationEvent::SyncFailed],
            ..t
        };
        n.configure(&[filtered], &env).unwrap();
        n.send(
            notification(NotificationEvent::SyncSucceeded, "two"),
            &Masker::default(),
        );
        n.send(
            notification(NotificationEvent::SyncFailed, "three"),
            &Masker::default(),
        );
        assert_eq!(r.next().await["message"], "three");
        // And a revision without targets stops notifications: "four" goes
        // nowhere, while "five", sent to a target configured after it, arrives.
        n.configure(&[], &env).unwrap();
        assert!(n.inner.targets.read().unwrap().is_empty());
        n.send(
            notification(NotificationEvent::SyncFailed, "four"),
            &Masker::default(),
        );
        let mut other = receiver().await;
        n.configure(
            &[target(&other.url, NotificationFormat::Json, &[])],
            &no_env(),
        )
        .unwrap();
        n.send(
            notification(NotificationEvent::SyncFailed, "five"),
            &Masker::default(),
        );
        settle(&n).await;
        assert_eq!(other.received(), vec![serde_json::Value::from("five")]);
        assert_eq!(r.requests(), 2, "one and three only");
        assert_eq!(r.received(), Vec::<serde_json::Value>::new());
    }

    #[tokio::test]
    async fn configure_errors() {
        let mut good = receiver().await;
        let n = fast();
        let token_url = "https://hooks.example.com/services/T0KEN-abc";
        let env = BTreeMap::from([(
            "BAD_URL".to_string(),
            "ftp://user:T0KEN-abc@host/x".to_string(),
        )]);
        let targets = [
            NotificationTarget::default(),
            NotificationTarget {
                url: Some(token_url.into()),
                url_env: Some("HOOK".into()),
                ..Default::default()
            },
            NotificationTarget {
                url_env: Some("MISSING_HOOK_URL".into()),
                ..Default::default()
            },
            NotificationTarget {
                url_env: Some("BAD_URL".into()),
                ..Default::default()
            },
            NotificationTarget {
                url: Some("hooks.example.com/T0KEN-abc".into()),
                ..Default::default()
            },
            target(&good.url, NotificationFormat::Json, &[]),
        ];
        let e = n.configure(&targets, &env).unwrap_err();
        assert_eq!(e.problems.len(), 5, "{e}");
        let want = [
            "notifications[0]: no URL",
            "notifications[1]: both `url` and `url_env`",
            "notifications[2]: `url_env` names MISSING_HOOK_URL, which the host does not pass or which is not set",
            "notifications[3]: the value of BAD_URL (from `url_env`) is not an http:// or https:// URL",
            "notifications[4]: `url` is not an http:// or https:// URL",
        ];
        for (p, w) in e.problems.iter().map(ToString::to_string).zip(want) {
            assert!(p.starts_with(w), "{p}\nwanted: {w}");
        }
        let text = e.to_string();
        assert!(
            !text.contains("T0KEN") && !text.contains("example.com"),
            "{text}"
        );
        // The valid target is configured all the same.
        n.send(
            notification(NotificationEvent::SyncFailed, "still sent"),
            &Masker::default(),
        );
        assert_eq!(good.next().await["message"], "still sent");
    }

    #[test]
    fn slack_text_variants() {
        let mut n = notification(NotificationEvent::SelfHealGaveUp, "3 attempts failed");
        n.stack = Some("shop".into());
        n.service = None;
        n.revision = Some("abc".into());
        assert_eq!(
            slack_text(&n),
            "[plimsoll web-1] self heal gave up: shop: 3 attempts failed (revision abc)"
        );
    }
}
