//! The accept loop: one task per connection, at most MAX_CONNECTIONS at once.
//!
//! A slot ([`super::connections`]) is taken before `accept()`, so beyond the cap
//! new connections wait in the kernel's backlog. A failed accept never makes the
//! loop spin: out of descriptors (EMFILE, ENFILE) or memory, it backs off, up to a
//! second; an error of one connection (ECONNABORTED: the client gave up while in
//! the backlog) consumed that connection, so the next accept is tried at once.
//! Warnings are throttled. On shutdown it stops accepting, lets open requests finish
//! within the drain time (hyper-util's `GracefulShutdown`), then returns.

use super::Routes;
use super::connection_limit::ConnectionSettings;
use super::connections::{Got, Slot, Slots, Tracked};
use super::throttle::Throttle;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// The listen backlog asked for (the kernel caps it at `net.core.somaxconn`).
/// Beyond MAX_CONNECTIONS new connections wait here; a connect that finds it full
/// has its SYN dropped and retried a second later, so a short backlog would make a
/// good webhook wait a second behind a crowd of idle connections.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` (`host:port`) for [`serve`], with a [`LISTEN_BACKLOG`] backlog and
/// SO_REUSEADDR (a restart does not wait for the old connections' TIME_WAIT).
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(addr).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket
            .bind(addr)
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(listener) => return Ok(listener),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::new(ErrorKind::InvalidInput, "no address to bind")))
}

/// First pause after a failed accept; doubled on each failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// Longest pause after a failed accept.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// At most one warning per this, for failed accepts and for the cap.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Serves `routes` on `listener` until `shutdown` resolves, with at most
/// `settings.max_connections` connections at once; then drains open connections
/// for at most `drain`.
pub async fn serve(
    listener: TcpListener,
    routes: Arc<Routes>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    settings: ConnectionSettings,
) {
    tracing::info!(
        max_connections = settings.max_connections,
        header_read_timeout_s = settings.header_read_timeout.as_secs_f64(),
        "connections bounded"
    );
    let slots = Slots::new(settings.max_connections);
    let graceful = GracefulShutdown::new();
    let mut at_cap = Throttle::new(WARN_EVERY);
    let mut failed = Throttle::new(WARN_EVERY);
    tokio::pin!(shutdown);
    loop {
        let (slot, got) = tokio::select! {
            acquired = slots.acquire() => acquired,
            _ = &mut shutdown => break,
        };
        if got != Got::Free
            && let Some(suppressed) = at_cap.allow(Instant::now())
        {
            tracing::warn!(
                max_connections = settings.max_connections,
                closed_idle = got == Got::ClosedIdle,
                suppressed,
                "connection cap reached: idle connections make room, others wait in the backlog"
            );
        }
        let (stream, peer) = tokio::select! {
            accepted = accept(&listener, &mut failed) => accepted,
            _ = &mut shutdown => break,
        };
        spawn_connection(stream, peer, slot, &routes, &graceful, settings);
    }
    drop(listener);
    tracing::info!("listener closed; draining open requests");
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain time over; closing open connections");
    }
}

/// The next connection; retries failed accepts as the module doc says.
async fn accept(listener: &TcpListener, failed: &mut Throttle) -> (TcpStream, SocketAddr) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let error = match listener.accept().await {
            Ok(pair) => return pair,
            Err(error) => error,
        };
        let one_connection = matches!(
            error.kind(),
            ErrorKind::ConnectionAborted
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionRefused
                | ErrorKind::Interrupted
        );
        if let Some(suppressed) = failed.allow(Instant::now()) {
            let retry_ms = if one_connection {
                0
            } else {
                backoff.as_millis() as u64
            };
            tracing::warn!(%error, retry_ms, suppressed, "accept failed");
        }
        if !one_connection {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Serves one connection in a task of its own, which holds its slot.
fn spawn_connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    routes: &Arc<Routes>,
    graceful: &GracefulShutdown,
    settings: ConnectionSettings,
) {
    let slot = Arc::new(slot);
    let service = service_fn({
        let routes = routes.clone();
        let slot = slot.clone();
        move |request| {
            // Busy from the parsed head until the response body is written.
            let busy = slot.busy();
            let routes = routes.clone();
            async move {
                let response = routes.handle(request, peer.ip()).await;
                Ok::<_, std::convert::Infallible>(response.map(|body| Tracked::new(body, busy)))
            }
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    let connection = graceful.watch(connection);
    tokio::spawn(async move {
        tokio::select! {
            result = connection => {
                if let Err(error) = result {
                    tracing::debug!(%error, %peer, "connection ended with an error");
                }
            }
            () = slot.closed() => {
                tracing::debug!(%peer, "idle connection closed to make room");
            }
        }
    });
}
