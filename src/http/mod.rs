//! The hyper listener: webhooks, health, metrics and the admin page.
//!
//! `serve` takes an already-bound listener and a shutdown future (tests bind port
//! 0). On shutdown it stops accepting, lets open requests finish within the drain
//! time, then returns.

mod admin;
mod auth;
pub mod probe;
mod response;
mod routes;
mod webhook;

pub use routes::{Routes, Serves};

use crate::batch::{RedisBatches, RedisHealth};
use crate::channel::Channel;
use crate::config::Secret;
use crate::ingest::Ingest;
use crate::message::ChannelKind;
use crate::metrics::Metrics;
use crate::store::Store;
use std::collections::HashMap;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// What the handlers need.
pub struct HttpState {
    /// Configured channels.
    pub channels: HashMap<ChannelKind, Arc<dyn Channel>>,
    /// Store + batch.
    pub ingest: Ingest,
    /// Database (readiness, admin).
    pub store: Store,
    /// Redis (readiness, admin).
    pub redis_batches: RedisBatches,
    /// Redis outage tracker.
    pub redis: Arc<RedisHealth>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Largest webhook body.
    pub max_body_bytes: usize,
    /// Bearer token for /admin; without it, /admin answers loopback only.
    pub admin_token: Option<Secret>,
    /// Bearer token for /metrics; without it, /metrics is open.
    pub metrics_token: Option<Secret>,
}

/// Serves `routes` on `listener` until `shutdown` resolves, then drains open
/// connections for at most `drain`.
pub async fn serve(
    listener: TcpListener,
    routes: Arc<Routes>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // Out of file descriptors, usually: give connections time to
                        // close instead of spinning on the error.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let routes = routes.clone();
                let service = service_fn(move |request| {
                    let routes = routes.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(routes.handle(request, peer.ip()).await)
                    }
                });
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, %peer, "connection ended with an error");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
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
