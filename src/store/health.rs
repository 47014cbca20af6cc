//! The PostgreSQL breaker: whether this process believes PostgreSQL is reachable.
//!
//! Closed, webhooks store as usual, each waiting at most DATABASE_TIMEOUT_SECONDS.
//! A statement that fails for want of a connection, or runs out of that time, asks
//! for a confirmation: a fresh connection (not from the pool, so it queues behind
//! nothing) runs `SELECT 1` within [`PROBE_TIMEOUT`]. Only when that fails too does
//! the breaker open, so a database that is busy, not down, never gets webhooks
//! answered 503 early. Open, webhooks are answered 503 at once and `/readyz` says
//! so without asking; [`run`] tries a fresh connection every [`PROBE_INTERVAL`]
//! and closes it as soon as one answers. While closed, [`run`] also pings through
//! the pool every [`WATCH_INTERVAL`], so an outage with no traffic is seen too.
//!
//! `lull_postgres_up` is 1 while closed, 0 while open; the start and end of an
//! outage are logged once each.

use crate::metrics::Metrics;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;

/// Gauge: 1 while the PostgreSQL breaker is closed.
pub const POSTGRES_UP: &str = "lull_postgres_up";

/// How long a probe may take to connect and answer `SELECT 1`: far above a
/// healthy connect (a few ms, even under load), far below a platform's patience.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How often an open breaker tries a fresh connection: a refused one costs
/// nothing, and recovery is seen within a fifth of a second.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(200);

/// How often a closed breaker pings through the pool.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The PostgreSQL breaker of one process.
pub struct PostgresHealth {
    open: AtomicBool,
    metrics: Arc<Metrics>,
    opened: Notify,
    /// One confirmation at a time: the webhooks that failed together share it.
    confirming: Mutex<()>,
    options: PgConnectOptions,
    /// The longest a webhook waits for its statement (DATABASE_TIMEOUT_SECONDS).
    pub timeout: Duration,
}

impl std::fmt::Debug for PostgresHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresHealth")
            .field("open", &self.is_open())
            .finish()
    }
}

impl PostgresHealth {
    /// Closed; a probe connects with `options`.
    pub fn new(options: PgConnectOptions, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        metrics.set_gauge(POSTGRES_UP, 1);
        Self {
            open: AtomicBool::new(false),
            metrics,
            opened: Notify::new(),
            confirming: Mutex::new(()),
            options,
            timeout,
        }
    }

    /// True while PostgreSQL is believed down: webhooks answer 503 at once.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }

    fn open(&self, reason: &str) {
        if !self.open.swap(true, Ordering::SeqCst) {
            self.metrics.set_gauge(POSTGRES_UP, 0);
            self.opened.notify_one();
            tracing::error!(
                error = reason,
                "PostgreSQL is down: webhooks are answered 503 at once until the probe reaches it"
            );
        }
    }

    fn close(&self) {
        if self.open.swap(false, Ordering::SeqCst) {
            self.metrics.set_gauge(POSTGRES_UP, 1);
            tracing::info!("PostgreSQL is back; webhooks are stored again");
        }
    }

    /// A statement failed without an answer from PostgreSQL (`reason`): opens the
    /// breaker if a fresh connection cannot reach it either. Returns once decided.
    pub async fn confirm(&self, reason: &str) {
        let _one = self.confirming.lock().await;
        if !self.is_open() && !self.reachable().await {
            self.open(reason);
        }
    }

    /// A fresh connection answers `SELECT 1` within [`PROBE_TIMEOUT`].
    async fn reachable(&self) -> bool {
        let attempt = async {
            let mut connection = PgConnection::connect_with(&self.options).await?;
            sqlx::query("SELECT 1").execute(&mut connection).await?;
            connection.close().await
        };
        matches!(
            tokio::time::timeout(PROBE_TIMEOUT, attempt).await,
            Ok(Ok(()))
        )
    }
}

/// Watches PostgreSQL through `pool` while the breaker is closed, and probes with
/// fresh connections while it is open; runs until `stop`.
pub async fn run(health: Arc<PostgresHealth>, pool: PgPool, stop: CancellationToken) {
    loop {
        let pause = if health.is_open() {
            if health.reachable().await {
                health.close();
            }
            PROBE_INTERVAL
        } else {
            let ping = sqlx::query("SELECT 1").execute(&pool);
            match tokio::time::timeout(PROBE_TIMEOUT, ping).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => health.confirm(&error.to_string()).await,
                Err(_) => health.confirm("no answer to SELECT 1").await,
            }
            WATCH_INTERVAL
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = health.opened.notified() => {}
            _ = stop.cancelled() => return,
        }
    }
}
