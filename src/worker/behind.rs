//! The behind stage: commit-to-send found another batch of the conversation
//! unfinished in PostgreSQL (being sent, or owning messages it must answer) that
//! Redis no longer tracks: Redis lost its data while that batch was in flight
//! and its worker died. Sending this batch now would answer later messages
//! before earlier ones, and the older reply would follow out of order when the
//! reconciler restores it. So this batch waits behind it (invariant 5 of
//! docs/design.md):
//!
//! - the older batch's row changed within `stale_after` (the reconciler's min
//!   age): its worker may still be sending it, so this batch keeps its claim
//!   without a heartbeat and comes back when the lease runs out;
//! - otherwise nobody works on it: behind.lua puts it in flight, due now, and
//!   this batch's messages back to be collected behind it. The next claim
//!   resumes the older batch (its committed text, or a reply for what it owns),
//!   and these messages are the batch after it.

use super::claimed::ClaimedBatch;
use super::{BatchOutcome, Stage, Worker};
use crate::batch::BatchId;
use crate::time::UnixMs;
use std::ops::ControlFlow;

impl Worker {
    /// Waits behind `older`: breaks with [`BatchOutcome::Behind`] (or how it
    /// failed), or continues when `older` finished meanwhile (commit again).
    pub(super) async fn behind(&self, batch: &ClaimedBatch, older: &BatchId) -> Stage<()> {
        let row = match self.store.batch(older.as_str()).await {
            Ok(row) => row,
            Err(error) => {
                tracing::error!(%error, "database unavailable before sending; batch kept for a later claim");
                return ControlFlow::Break(BatchOutcome::Retry);
            }
        };
        let Some(row) = row.filter(|r| !r.status.is_finished()) else {
            return ControlFlow::Continue(());
        };
        let now = UnixMs::now();
        let quiet = now.secs_since(UnixMs(row.updated_at.timestamp_millis()));
        if quiet < self.settings.stale_after.as_secs_f64() {
            tracing::warn!(
                older_batch = %older,
                quiet_ms = (quiet * 1000.0) as i64,
                "an older reply of this conversation is unfinished and may still be being sent; this batch waits behind it until its lease runs out"
            );
            self.metrics.inc("lull_batches_behind_total", &[]);
            return ControlFlow::Break(BatchOutcome::Behind);
        }
        let entries = match self.store.entries(&row.message_ids).await {
            Ok(entries) => entries,
            Err(error) => {
                tracing::error!(%error, "database unavailable before sending; batch kept for a later claim");
                return ControlFlow::Break(BatchOutcome::Retry);
            }
        };
        let started = UnixMs(row.first_message_at.map_or(0, |t| t.timestamp_millis()));
        match self
            .redis_batches
            .put_behind(&batch.keys, &batch.token, older, started, &entries, now)
            .await
        {
            Ok(true) => {
                tracing::warn!(
                    older_batch = %older,
                    "an older reply of this conversation was left unfinished when Redis lost it; it goes first, this batch after it"
                );
                self.metrics.inc("lull_batches_behind_total", &[]);
                ControlFlow::Break(BatchOutcome::Behind)
            }
            Ok(false) => ControlFlow::Break(BatchOutcome::Lost),
            Err(error) => {
                tracing::warn!(%error, "Redis unavailable before sending; batch kept for a later claim");
                ControlFlow::Break(BatchOutcome::Retry)
            }
        }
    }
}
