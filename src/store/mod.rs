//! PostgreSQL, the source of truth.
//!
//! `conversation_messages` holds every message seen or sent (unique per channel on
//! the platform's id, so a platform's retry is stored once); an inbound message's
//! `batch_id` says which reply answered it, and is set only when that reply is about
//! to be sent, in the same statement that checks nobody else answered it.
//! `reply_batches` records each reply: its messages, text, status
//! (generating → sending → sent | failed; dropped when another batch answered all its
//! messages), attempts, platform ids, error, timings.

mod batches;
mod messages;

pub use batches::{BatchRecord, BatchRow, NewBatch, StaleSending};
pub use messages::Unanswered;

use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgPool, PgPoolOptions};
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
}

/// The database pool and every query lull runs.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects, creating the database first if it does not exist.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        if !sqlx::Postgres::database_exists(url).await.unwrap_or(true) {
            tracing::info!("creating the database");
            sqlx::Postgres::create_database(url).await?;
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    /// Wraps an existing pool (tests).
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
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

/// Unix ms → timestamp.
pub(crate) fn timestamp(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
