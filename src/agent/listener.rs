//! The agent's HTTP listeners: accepts connections itself (hyper's HTTP/1
//! server, instead of `axum::serve`) to bound what a client can hold.
//!
//! Owns, per listener: a cap on concurrent connections (a connection beyond it
//! gets a 503 written without blocking and is closed at once), the deadline
//! for a request head (hyper's header-read timeout, which also closes a
//! keep-alive connection that stays idle that long), and the deadline for the
//! rest of a request (its body and the handler: 408). Invariant: nothing here
//! touches the reconcile loop, the engine connection or git; a refused, slow
//! or idle client costs at most one socket until its deadline, and the cap
//! keeps the sockets of all clients well below the file-descriptor limit.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower_http::timeout::TimeoutLayer;

/// A request head must arrive within this long (`--http-header-timeout`).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The body and the answer must follow within this long (`--http-body-timeout`).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// The default connection cap never exceeds this.
const MAX_CONNECTIONS_CEILING: u64 = 256;
/// How long a stopping listener lets its open connections finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long to wait after `accept` failed (out of descriptors, say) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What one client may hold, per listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From the connection's start, or the end of its last answer, to the end
    /// of the next request head; also the keep-alive idle timeout.
    pub header_timeout: Duration,
    /// From the end of a request head to the end of its answer's head.
    pub body_timeout: Duration,
    /// Connections open at once; more are refused.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: default_max_connections(),
        }
    }
}

/// min(256, a quarter of this process's file-descriptor limit): the engine
/// connection, git, the state directory and the other listener keep the rest.
pub fn default_max_connections() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    connection_cap(limit)
}

/// The connection cap for a soft `RLIMIT_NOFILE` (`None`: unlimited).
fn connection_cap(nofile: Option<u64>) -> usize {
    let cap = nofile.map_or(MAX_CONNECTIONS_CEILING, |n| {
        (n / 4).clamp(1, MAX_CONNECTIONS_CEILING)
    });
    usize::try_from(cap).unwrap_or(1)
}

/// What a connection beyond the cap gets before it is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain\r\nconnection: close\r\ncontent-length: 52\r\n\r\n\
too many connections to the agent: try again later\r\n";

/// Serves `app` on `listener` within `limits` until `shutdown` turns true;
/// then stops accepting and gives open connections a few seconds to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = app.layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        limits.body_timeout,
    ));
    let service = TowerToHyperService::new(app);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
    };
    tokio::pin!(stop);
    let mut saturated = false;
    loop {
        let stream = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("the HTTP endpoint cannot accept a connection: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refuse(&stream);
            if !saturated {
                saturated = true;
                tracing::warn!(
                    "{} HTTP connections are open: refusing new ones until some close \
                     (raise --http-max-connections if this load is legitimate)",
                    limits.max_connections
                );
            }
            continue;
        };
        saturated = false;
        let _ = stream.set_nodelay(true);
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service.clone()));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("HTTP connection closed: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("HTTP connections still open after {SHUTDOWN_GRACE:?}: dropped");
    }
}

/// Writes the 503 if the socket takes it now, never waiting; the stream is
/// closed when dropped.
fn refuse(stream: &TcpStream) {
    let _ = stream.try_write(REFUSED);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_a_quarter_of_the_descriptor_limit_at_most_256() {
        assert_eq!(connection_cap(Some(1024)), 256);
        assert_eq!(connection_cap(Some(20000)), 256);
        assert_eq!(connection_cap(Some(400)), 100);
        assert_eq!(connection_cap(Some(2)), 1);
        assert_eq!(connection_cap(None), 256);
        assert!(default_max_connections() >= 1);
    }

    #[test]
    fn the_refusal_is_a_whole_http_answer() {
        let text = std::str::from_utf8(REFUSED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), length);
    }

    async fn limited(limits: Limits) -> (std::net::SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/",
            axum::routing::post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        );
        let (tx, rx) = watch::channel(false);
        tokio::spawn(serve(listener, app, limits, rx));
        (addr, tx)
    }

    /// Reads until the server closes; what it sent.
    async fn until_closed(stream: &mut TcpStream) -> String {
        use tokio::io::AsyncReadExt as _;
        let mut out = Vec::new();
        let read = stream.read_to_end(&mut out);
        let _ = tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .expect("the server closes the connection");
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn an_unfinished_head_is_closed_and_the_cap_refuses_the_next() {
        use tokio::io::AsyncWriteExt as _;
        let limits = Limits {
            header_timeout: Duration::from_millis(300),
            body_timeout: Duration::from_millis(300),
            max_connections: 1,
        };
        let (addr, _stop) = limited(limits).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        // Wait until the slow client holds the only permit: then one more is refused.
        let refused = loop {
            let mut other = TcpStream::connect(addr).await.unwrap();
            let text = until_closed(&mut other).await;
            if text.contains(" 503 ") {
                break text;
            }
        };
        assert!(refused.contains("too many connections"), "{refused}");
        until_closed(&mut slow).await;
        // The permit is back: a whole request is served.
        let mut ok = TcpStream::connect(addr).await.unwrap();
        ok.write_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc",
        )
        .await
        .unwrap();
        let text = until_closed(&mut ok).await;
        assert!(
            text.starts_with("HTTP/1.1 200 ") && text.ends_with('3'),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_slow_body_gets_408_and_an_idle_keep_alive_is_closed() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let limits = Limits {
            header_timeout: Duration::from_millis(300),
            body_timeout: Duration::from_millis(300),
            max_connections: 4,
        };
        let (addr, _stop) = limited(limits).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
            .await
            .unwrap();
        let text = until_closed(&mut slow).await;
        assert!(text.starts_with("HTTP/1.1 408 "), "{text}");

        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = idle.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));
        // Kept alive, then closed for idling past the header timeout.
        until_closed(&mut idle).await;
    }

    #[tokio::test]
    async fn shutdown_stops_accepting() {
        let (addr, stop) = limited(Limits::default()).await;
        stop.send(true).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).await.is_ok() {
            assert!(tokio::time::Instant::now() < deadline, "still accepting");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
