//! Opens and closes the Redis breaker ([`RedisHealth`]) from outside the callers.
//!
//! Opening: fred reports every broken connection on its error channel the moment
//! the socket fails (a refused or reset connection, a Redis that stopped), before
//! any command has to time out. [`watch_connections`] opens the breaker on each,
//! so the first webhook after Redis died usually finds the breaker open already;
//! a black-holed Redis is caught by the first command's timeout instead.
//!
//! Closing: while open, [`run`] PINGs every client of the pool every
//! [`PROBE_INTERVAL`] with `fail_fast` (a client still reconnecting answers at
//! once instead of queueing the PING behind the commands waiting for its
//! connection) and a [`PROBE_TIMEOUT`]. When all of them answer, the breaker closes:
//! every connection is back, so the catch-up that follows does not wait on one
//! still reconnecting.

use super::health::RedisHealth;
use super::redis::RedisBatches;
use fred::interfaces::EventInterface;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often an open breaker PINGs Redis. A failing PING costs nothing (fail fast,
/// no network while fred reconnects) and a good one is one round trip, so ten a
/// second per process is no load, and bounds the delay from Redis answering again
/// to the catch-up starting at a tenth of a second (fred's reconnect delay, at
/// most 250 ms, comes on top).
pub const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// How long a probe PING may take: a Redis up on a loaded machine answers well
/// within it; one that accepts connections and never answers does not.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(250);

/// Opens the breaker whenever one of the pool's connections breaks; ends when
/// the pool quits.
pub fn watch_connections(redis_batches: &RedisBatches, health: Arc<RedisHealth>) {
    for client in redis_batches.pool().clients() {
        let mut errors = client.error_rx();
        let health = health.clone();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match errors.recv().await {
                    Ok((error, _)) => health.open(&format!("connection lost: {error}")),
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }
}

/// Probes while the breaker is open and closes it once Redis answers; runs until
/// `stop`.
pub async fn run(redis_batches: RedisBatches, health: Arc<RedisHealth>, stop: CancellationToken) {
    loop {
        if !health.is_open() {
            tokio::select! {
                _ = health.opened() => continue,
                _ = stop.cancelled() => return,
            }
        }
        if redis_batches.ping_every_client(PROBE_TIMEOUT).await {
            health.close();
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(PROBE_INTERVAL) => {}
            _ = stop.cancelled() => return,
        }
    }
}
