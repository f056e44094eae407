//! Accepting connections with limits: at most `max_connections` open at once (kept
//! under the process's descriptor limit), a deadline on every request head (which
//! also closes idle keep-alive connections and slowloris clients), and a graceful
//! shutdown that finishes requests in flight.
//!
//! Written here rather than through `axum::serve`, which sets no timer (so hyper's
//! header-read timeout never fires) and accepts without bound.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// How long shutdown waits for connections in flight before it gives up on them.
const DRAIN: Duration = Duration::from_secs(30);

/// Descriptors kept free for what is not a client connection: the store's files,
/// RabbitMQ, the listener, logs.
pub const RESERVED_DESCRIPTORS: u64 = 64;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at most; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// A client has this long to send a request's head, counted from the moment the
    /// connection is accepted or the previous response is sent.
    pub header_timeout: Duration,
}

/// `wanted`, lowered so that connections cannot exhaust the descriptors
/// (`RLIMIT_NOFILE` less [`RESERVED_DESCRIPTORS`]).
pub fn connection_limit(wanted: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        return wanted;
    };
    let usable = soft.saturating_sub(RESERVED_DESCRIPTORS).max(1);
    wanted.min(usize::try_from(usable).unwrap_or(usize::MAX))
}

/// Serves `router` on `listener` until `shutdown` completes, then lets open
/// connections finish (idle ones close at once).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let max = limits.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(max));
    let (stop, stopped) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        // Wait for a free slot before accepting: past the limit, clients queue in the
        // kernel's backlog instead of taking descriptors.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: pause so
                    // a persistent error does not spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!("connection closed: {e}");
                    }
                }
                _ = stopped.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    let _ = stop.send(());
    // Every permit back means every connection has closed.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            "shutdown: connections still open after {}s; closing them",
            DRAIN.as_secs()
        );
    }
}
