//! PostgreSQL, the source of truth.
//!
//! `conversation_messages` holds every message seen or sent (unique per channel on
//! the platform's id, so a platform's retry is stored once); an inbound message's
//! `batch_id` says which reply answered it, and is set only when that reply is about
//! to be sent, in the same statement that checks nobody else answered it.
//! `reply_batches` records each reply: its messages, text, status ([`BatchStatus`]:
//! generating → sending → sent | failed; dropped when another batch answered all its
//! messages; expired past the reply window), attempts, platform ids, error, timings.
//!
//! Invariant 2 of docs/design.md: a message's `batch_id` is set once, only where empty.

mod audit;
mod batches;
mod console;
mod forget;
mod group;
pub mod health;
mod messages;
mod modes;
mod paused;
mod retention;
mod stats;
mod status;

use crate::metrics::Metrics;
pub use audit::{ActionRow, NewAction};
pub use batches::{BatchRecord, BatchRow, CommitOutcome, Generation, NewBatch, StaleOwner};
pub use console::{ConversationLine, RetryRefusal, TranscriptLine};
pub use forget::DeletedRows;
use group::{Group, GroupLimits};
use health::PostgresHealth;
pub use messages::Unanswered;
pub use modes::{ModeRecord, PauseRecord, Resumed};
pub use paused::PausedLine;
pub use stats::{ChannelStats, FailureReason, Hour, Stats};
pub use status::BatchStatus;
use std::sync::Arc;

use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::time::Duration;

/// What went wrong talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// PostgreSQL refused or is unreachable.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The group writer is gone (the process is stopping).
    #[error("database writer stopped")]
    Closed,
    /// The grouped statement holding this request failed for a reason not its own.
    #[error("database: {0}")]
    Unavailable(String),
    /// Not tried: the PostgreSQL breaker is open (PostgreSQL was found down and
    /// has not answered the probe since).
    #[error("database down (breaker open)")]
    Down,
    /// No answer within DATABASE_TIMEOUT_SECONDS.
    #[error("database: no answer within {0:?}")]
    TimedOut(Duration),
    /// Two requests of one group write the same row (the same batch twice): the
    /// group is refused before it runs, and each request is written alone.
    #[error("one row written twice in a group: {0}")]
    SameRow(String),
}

impl StoreError {
    /// PostgreSQL answered and refused the statement (a value it rejects, a
    /// conflict, a deadlock): the same requests may succeed when written apart.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            StoreError::Database(sqlx::Error::Database(_)) | StoreError::SameRow(_)
        )
    }
}

/// The default DATABASE_TIMEOUT_SECONDS.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// One webhook's messages to insert: each with whether it needs a reply. Shared, so
/// the caller keeps reading them while the group writes them.
pub type InboundRows = std::sync::Arc<[(crate::message::InboundMessage, bool)]>;

/// The database pool, the group writers, and every query lull runs.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    /// Concurrent webhooks' inserts, one statement per group.
    inbound: Group<InboundRows, Vec<Option<crate::message::Entry>>>,
    /// Whether PostgreSQL is believed reachable.
    health: Arc<PostgresHealth>,
    /// Claims recorded.
    opening: Group<NewBatch, BatchRecord>,
    /// Replies taking their messages before the send.
    sending: Group<batches::Commit, CommitOutcome>,
    /// Replies recorded as sent.
    sent: Group<batches::SentReply, Vec<crate::message::Entry>>,
}

impl Store {
    /// Connects, creating the database first if it does not exist, with the
    /// default timeout ([`DEFAULT_TIMEOUT`]). The group writers count their
    /// statements in `metrics`.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        Self::connect_with_timeout(url, max_connections, DEFAULT_TIMEOUT, metrics).await
    }

    /// Connects as [`Store::connect`] does; `timeout` bounds a pool acquire, a
    /// grouped write and a webhook's wait for its statement (DATABASE_TIMEOUT_SECONDS).
    pub async fn connect_with_timeout(
        url: &str,
        max_connections: u32,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        if !sqlx::Postgres::database_exists(url).await.unwrap_or(true) {
            tracing::info!("creating the database");
            if let Err(error) = sqlx::Postgres::create_database(url).await {
                // Instances started together (serve and worker by compose) race to
                // create it: the one that loses finds it there, and goes on.
                if !sqlx::Postgres::database_exists(url).await.unwrap_or(false) {
                    return Err(error.into());
                }
                tracing::info!("the database was created meanwhile by another instance");
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(timeout)
            // No ping before each use: it is a round trip per query (webhooks/s fell
            // from about 7,000 to 5,900 with it). After a PostgreSQL restart each
            // pooled connection fails its next statement instead, and is dropped:
            // webhooks get a 503 and are retried by the platform, batches come back
            // with their lease, and the record of a sent reply is tried again.
            .test_before_acquire(false)
            .connect_with(session_options(url)?)
            .await?;
        Ok(Self::from_pool(pool, timeout, metrics))
    }

    /// Wraps an existing pool and starts the group writers. Each of the four may
    /// hold a sixteenth of the pool's connections (one of the default 16), leaving
    /// the rest to the reads. Few flushers make groups bigger (fewer statements and
    /// commits) under load, where a statement costs more than the rows in it: with
    /// one flusher per kind instead of two, PostgreSQL spent about 14 % less CPU per
    /// reply and 25 % less per webhook (`cargo bench`, side by side). A flush that
    /// runs past `timeout` is given up, so a hung connection (a network partition)
    /// does not hold the flusher and every request queued behind it.
    pub fn from_pool(pool: PgPool, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        let flushers = (pool.options().get_max_connections() as usize / 16).max(1);
        let limits = GroupLimits {
            max_requests: 256,
            flushers,
            timeout,
        };
        let options = (*pool.connect_options()).clone();
        Self {
            inbound: writer(&pool, "inbound", limits, &metrics, messages::insert_groups),
            opening: writer(&pool, "opening", limits, &metrics, batches::open_batches),
            sending: writer(&pool, "sending", limits, &metrics, batches::commit_batches),
            sent: writer(&pool, "sent", limits, &metrics, batches::record_replies),
            health: Arc::new(PostgresHealth::new(options, timeout, metrics)),
            pool,
        }
    }

    /// The PostgreSQL breaker.
    pub fn health(&self) -> &Arc<PostgresHealth> {
        &self.health
    }

    /// The pool (tests, admin).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the embedded migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations").run(&self.pool).await?;
        Ok(())
    }

    /// `SELECT 1`: is PostgreSQL answering?
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// A group writer whose flush runs on `pool`.
fn writer<Req, Resp, Fut>(
    pool: &PgPool,
    name: &'static str,
    limits: GroupLimits,
    metrics: &Arc<Metrics>,
    flush: fn(PgPool, std::sync::Arc<[Req]>) -> Fut,
) -> Group<Req, Resp>
where
    Req: Clone + Send + Sync + 'static,
    Resp: Send + 'static,
    Fut: std::future::Future<Output = Result<Vec<Resp>, StoreError>> + Send + 'static,
{
    let pool = pool.clone();
    Group::spawn(name, limits, metrics.clone(), move |requests| {
        flush(pool.clone(), requests)
    })
}

/// The connection settings of `url`, with JIT off: lull's statements are short,
/// and a grouped one of a large group (planned for its own arrays) crosses
/// `jit_above_cost`, whose compilation then costs more than the statement: a
/// commit-to-send of 2,000 batches took 200 ms with it, 115 ms without
/// (`python3 benches/sql/group_statements.py`).
fn session_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    let options: PgConnectOptions = url.parse()?;
    Ok(options.options([("jit", "off")]))
}

/// Unix ms → timestamp.
pub(crate) fn timestamp(ms: i64) -> chrono::DateTime<chrono::Utc> {
    crate::time::UnixMs(ms).timestamp()
}
