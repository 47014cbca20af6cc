//! Sending a reply whose text is committed: the parts not yet sent, with retries,
//! then the record and the ack. Used right after `begin_sending`, and again when a
//! batch that was being sent is resumed (after a crash or a hand-back), so a
//! resumed reply is the same text and a part that went out is not sent twice.

use super::{BatchOutcome, Lease, SendResult, Worker, send_parts};
use crate::batch::{AppendMode, Claim, ConversationKeys};
use crate::channel::Channel;
use crate::message::Conversation;
use crate::time::now_ms;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

impl Worker {
    /// Sends `text`'s parts after the `already_sent` ones and records the outcome.
    /// The database says this batch answers its messages, so the send goes on even
    /// if the Redis lease is lost (a Redis that lost its data must not leave them
    /// unanswered).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn deliver(
        &self,
        conversation: &Conversation,
        keys: &ConversationKeys,
        claim: &Claim,
        channel: &Arc<dyn Channel>,
        text: &str,
        already_sent: Vec<String>,
        hand_back: &CancellationToken,
        claimed_at: i64,
    ) -> BatchOutcome {
        let lease = Lease::start(
            self.batcher.clone(),
            keys.clone(),
            claim.token.clone(),
            self.settings.heartbeat,
        );
        let parts = channel.split(text);
        let skip = already_sent.len().min(parts.len());
        let metrics = self.metrics.clone();
        let result = send_parts(
            channel.as_ref(),
            conversation,
            &parts[skip..],
            &self.settings.retry,
            hand_back,
            |error, wait| {
                metrics.inc("lull_send_retries_total", &[]);
                tracing::warn!(
                    code = error.code(),
                    error = error.message(),
                    wait_ms = wait.as_millis() as u64,
                    "send failed, retrying"
                );
            },
        )
        .await;
        drop(lease);
        let mut platform_ids = already_sent;
        match result {
            SendResult::Sent { ids, attempts } => {
                platform_ids.extend(ids);
                self.finish(
                    conversation,
                    keys,
                    claim,
                    &parts,
                    platform_ids,
                    attempts,
                    claimed_at,
                )
                .await
            }
            SendResult::Failed {
                ids,
                attempts,
                error,
            } => {
                platform_ids.extend(ids);
                tracing::error!(
                    code = error.code(),
                    error = error.message(),
                    attempts,
                    "reply failed"
                );
                self.fail(
                    keys,
                    claim,
                    &platform_ids,
                    attempts,
                    error.code(),
                    error.message(),
                )
                .await
            }
            SendResult::Interrupted { ids, attempts } => {
                platform_ids.extend(ids);
                // Whoever resumes the batch skips the parts that went out.
                if let Err(error) = self
                    .store
                    .record_progress(&claim.batch_id, attempts, &platform_ids)
                    .await
                {
                    tracing::warn!(%error, "parts sent so far not recorded; a resumed batch sends them again");
                }
                self.give_back(keys, &claim.token, BatchOutcome::HandedBack)
                    .await
            }
        }
    }

    /// After a resumed batch whose messages were fixed before the crash: any newer
    /// message the claim merged in is not answered by it, and the ack dropped it from
    /// Redis; put it back to be the next batch (skipped if it is tracked already).
    pub(super) async fn rebatch_unanswered(
        &self,
        conversation: &Conversation,
        claim: &Claim,
        answered: &[i64],
    ) {
        let policy = self.batcher.policy();
        for entry in claim.entries.iter().filter(|e| !answered.contains(&e.id)) {
            let mode = AppendMode::for_kind(entry.kind, policy);
            match self
                .batcher
                .append(conversation, entry, mode, true, now_ms())
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
