//! The Redis breaker: whether this process believes Redis is reachable.
//!
//! Closed (Redis up): every caller goes to Redis. It opens on the first call that
//! fails because Redis is unreachable or timed out, or as soon as fred reports a
//! connection broken (see [`super::probe`]), whichever comes first. Open, nobody
//! waits for Redis: webhooks store in PostgreSQL and answer at once, the claim
//! loop and the reconciler pause. Only the probe closes it, once Redis answers
//! PING again, and closing wakes the catch-up ([`RedisHealth::recovered`]).
//! A script's own error (a reply that does not decode, a refused key) says Redis
//! is up, and leaves the breaker as it is.
//!
//! `lull_redis_up` is 1 while closed and 0 while open; the start and the end of an
//! outage are logged once each.

use super::BatchError;
use crate::metrics::Metrics;
use fred::error::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// Gauge: 1 while the Redis breaker is closed.
pub const REDIS_UP: &str = "lull_redis_up";

/// The Redis breaker shared by everything that calls Redis.
pub struct RedisHealth {
    open: AtomicBool,
    metrics: Arc<Metrics>,
    /// Fired when the breaker closes: the catch-up starts.
    recovered: Notify,
    /// Fired when it opens: the probe starts probing.
    opened: Notify,
}

impl std::fmt::Debug for RedisHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHealth")
            .field("open", &self.is_open())
            .finish()
    }
}

impl Default for RedisHealth {
    fn default() -> Self {
        Self::new(Arc::default())
    }
}

impl RedisHealth {
    /// Closed, with its gauge in `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        metrics.set_gauge(REDIS_UP, 1);
        Self {
            open: AtomicBool::new(false),
            metrics,
            recovered: Notify::new(),
            opened: Notify::new(),
        }
    }

    /// True while Redis is believed down: callers skip it instead of waiting.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }

    /// A call failed: an unreachable or timed-out Redis opens the breaker; any
    /// other error only counts as a failure of that call.
    pub fn failed(&self, error: &BatchError) {
        match error {
            BatchError::Redis(e) if is_outage(e.kind()) => self.open(&error.to_string()),
            _ => tracing::debug!(%error, "Redis call failed; Redis itself answers"),
        }
    }

    /// Opens the breaker; the first opening of an outage is logged.
    pub fn open(&self, reason: &str) {
        if !self.open.swap(true, Ordering::SeqCst) {
            self.metrics.set_gauge(REDIS_UP, 0);
            self.opened.notify_one();
            tracing::error!(
                error = reason,
                "Redis is down: webhooks store in the database only, claims pause until the probe sees it again"
            );
        }
    }

    /// Closes the breaker (the probe saw Redis answer); the end of an outage is
    /// logged and wakes the catch-up.
    pub fn close(&self) {
        if self.open.swap(false, Ordering::SeqCst) {
            self.metrics.set_gauge(REDIS_UP, 1);
            tracing::info!("Redis is back; catching up with the messages stored meanwhile");
            self.recovered.notify_one();
        }
    }

    /// Resolves the next time the breaker closes.
    pub async fn recovered(&self) {
        self.recovered.notified().await;
    }

    /// Resolves the next time the breaker opens.
    pub async fn opened(&self) {
        self.opened.notified().await;
    }
}

/// Errors that mean Redis cannot be reached: a broken or refused connection, a
/// timeout, a command cancelled because its connection closed.
fn is_outage(kind: &ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::IO | ErrorKind::Timeout | ErrorKind::Canceled | ErrorKind::Backpressure
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis_error(kind: ErrorKind) -> BatchError {
        BatchError::Redis(fred::error::Error::new(kind, "test"))
    }

    #[test]
    fn a_timeout_opens_the_breaker_and_only_close_shuts_it() {
        let metrics = Arc::new(Metrics::default());
        let health = RedisHealth::new(metrics.clone());
        assert_eq!(metrics.gauge(REDIS_UP), 1);
        health.failed(&redis_error(ErrorKind::Timeout));
        assert!(health.is_open());
        assert_eq!(metrics.gauge(REDIS_UP), 0);
        health.close();
        assert!(!health.is_open());
        assert_eq!(metrics.gauge(REDIS_UP), 1);
    }

    #[test]
    fn a_script_error_leaves_the_breaker_closed() {
        let health = RedisHealth::default();
        health.failed(&redis_error(ErrorKind::Unknown));
        health.failed(&BatchError::Reply {
            script: "append.lua",
            detail: "nil".into(),
        });
        assert!(!health.is_open());
    }
}
