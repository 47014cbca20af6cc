//! The resume stage: a batch claimed before (a crash, a lease run out, a
//! supersede, a hand-back) may have got further than generating; its record in
//! PostgreSQL says how far. A new batch has no record yet, and nothing to ask.

use super::claimed::ClaimedBatch;
use super::deliver::Committed;
use super::{BatchOutcome, Worker};
use crate::batch::{AppendMode, ClaimKind};
use crate::message::Entry;
use crate::store::BatchStatus;
use crate::time::now_ms;

/// What the batch's record says to do.
pub(super) enum Resume {
    /// A new batch: no record yet; generate (its claim is written with its commit,
    /// or once it has generated for a while).
    New,
    /// Recorded and still generating: generate.
    Generating,
    /// Nothing more to do: it ended with this outcome.
    Finished(BatchOutcome),
    /// Its reply was committed and was being sent: send the parts not yet sent,
    /// then put back any newer message the claim merged in (`answered` are the
    /// messages the batch answers).
    Sending {
        /// The committed messages and the parts sent.
        reply: Committed,
        /// The messages its record says it answers.
        answered: Vec<i64>,
    },
}

impl Worker {
    /// Records a resumed batch's claim and reads back how far it got. Finished
    /// ones are acknowledged here.
    pub(super) async fn resume(&self, batch: &ClaimedBatch) -> Resume {
        if batch.kind == ClaimKind::New {
            return Resume::New;
        }
        let record = match self.store.open_batch(batch.record()).await {
            Ok(record) => record,
            Err(error) => {
                // Keep the batch: without the database nothing can be recorded, so
                // leave it in flight; the lease runs out and it is claimed again.
                tracing::error!(%error, "database unavailable, batch kept in flight for a later claim");
                return Resume::Finished(BatchOutcome::Retry);
            }
        };
        if record.status.is_finished() {
            tracing::info!(status = %record.status, "batch already finished before a crash; acknowledging");
            self.ack(batch, &[]).await;
            self.rebatch_unanswered(batch, &record.message_ids).await;
            return Resume::Finished(BatchOutcome::AlreadyAnswered);
        }
        let (BatchStatus::Sending, Some(messages)) = (record.status, record.committed_messages())
        else {
            return Resume::Generating;
        };
        // Crashed or handed back while sending: the reply is committed and its
        // messages are this batch's. Send the parts not yet recorded, as they are
        // (the same messages render into the same parts).
        tracing::info!(
            parts_sent = record.platform_message_ids.len(),
            "resuming a reply that was being sent"
        );
        let taken = self.taken_entries(batch, &record.message_ids).await;
        Resume::Sending {
            reply: Committed {
                messages,
                sent: record.platform_message_ids,
                handoff: record.handoff,
                taken,
            },
            answered: record.message_ids,
        }
    }

    /// The entries of the messages a committed batch answers that its claim did
    /// not carry (older ones it took at commit, when Redis still had its batch),
    /// for history. Unread (logged), history goes without them.
    async fn taken_entries(&self, batch: &ClaimedBatch, answered: &[i64]) -> Vec<Entry> {
        let claimed: Vec<i64> = batch.message_ids();
        let taken: Vec<i64> = answered
            .iter()
            .copied()
            .filter(|id| !claimed.contains(id))
            .collect();
        if taken.is_empty() {
            return Vec::new();
        }
        self.store.entries(&taken).await.unwrap_or_else(|error| {
            tracing::warn!(%error, "older messages of the reply not read; history goes without them");
            Vec::new()
        })
    }

    /// After a resumed batch whose messages were fixed before the crash: any newer
    /// message the claim merged in is not answered by it, and the ack dropped it from
    /// Redis; put it back to be the next batch (skipped if it is tracked already).
    pub(super) async fn rebatch_unanswered(&self, batch: &ClaimedBatch, answered: &[i64]) {
        let policy = self.redis_batches.policy();
        for entry in batch.entries.iter().filter(|e| !answered.contains(&e.id)) {
            let mode = AppendMode::for_kind(entry.kind, policy);
            match self
                .redis_batches
                .append(&batch.conversation, entry, mode, true, now_ms())
                .await
            {
                Ok(_) => tracing::info!(db_id = entry.id, "newer message left for the next batch"),
                // The reconciler finds it in PostgreSQL later.
                Err(error) => {
                    tracing::warn!(%error, db_id = entry.id, "newer message not requeued")
                }
            }
        }
    }
}
