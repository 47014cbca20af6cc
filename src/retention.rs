//! RETENTION_DAYS: a periodic pass that erases texts and payloads older than that
//! (see [`crate::store`]'s retention queries), keeping ids and times for the
//! stats. Once at start, then every [`INTERVAL`]; off when RETENTION_DAYS is 0.
//!
//! Rows go a thousand per statement, each its own short transaction, so a pass
//! over a large backlog holds no long lock and lets webhooks and replies through.
//! Running it on every instance at once is safe: each statement skips rows another
//! holds, and an erased row is not read again.
//!
//! Invariants 2 and 3 of docs/design.md: batch links stay; a batch still sending keeps its text.

use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Time between passes.
pub const INTERVAL: Duration = Duration::from_secs(3600);
/// Rows erased per statement.
const BATCH: i64 = 1000;

/// Rows erased by one pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    /// Messages whose text and payload were erased.
    pub messages: u64,
    /// Reply batches whose reply text was erased.
    pub replies: u64,
}

/// The retention task of one process.
pub struct Retention {
    store: Store,
    keep: chrono::Duration,
}

impl Retention {
    /// `None` when `days` is 0: retention is off.
    pub fn new(store: Store, days: u32) -> Option<Self> {
        (days > 0).then(|| Self {
            store,
            keep: chrono::Duration::days(i64::from(days)),
        })
    }

    /// One pass as of `now`: erases everything older than `now` - RETENTION_DAYS,
    /// statement by statement, until done or `stop` is cancelled (then what is
    /// left waits for the next pass).
    pub async fn erase_once(
        &self,
        now: DateTime<Utc>,
        stop: &CancellationToken,
    ) -> Result<Erased, StoreError> {
        let cutoff = now - self.keep;
        let mut erased = Erased::default();
        while !stop.is_cancelled() {
            let n = self.store.erase_messages_before(cutoff, BATCH).await?;
            erased.messages += n;
            if n < BATCH as u64 {
                break;
            }
        }
        while !stop.is_cancelled() {
            let n = self.store.erase_replies_before(cutoff, BATCH).await?;
            erased.replies += n;
            if n < BATCH as u64 {
                break;
            }
        }
        Ok(erased)
    }

    /// Runs a pass at once and then every [`INTERVAL`], until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            match self.erase_once(Utc::now(), &stop).await {
                Ok(erased) => tracing::info!(
                    messages = erased.messages,
                    replies = erased.replies,
                    retention_days = self.keep.num_days(),
                    "retention pass: texts and payloads erased"
                ),
                Err(error) => {
                    tracing::warn!(%error, "retention pass failed; tried again next time")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(INTERVAL) => {}
            }
        }
    }
}
