//! Sending a reply whose text is committed: the parts not yet sent, with retries,
//! then the record and the ack. Used right after `begin_sending`, and again when a
//! batch that was being sent is resumed (after a crash or a hand-back), so a
//! resumed reply is the same text and a part that went out is not sent twice.

use super::finish::Failure;
use super::{BatchOutcome, Lease, MAX_CLAIMS, SendResult, Worker, send_with_retries};
use crate::batch::{AppendMode, Claim, ConversationKeys};
use crate::channel::Channel;
use crate::channel::SendError;
use crate::message::Conversation;
use crate::time::now_ms;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

impl Worker {
    /// Sends `text`'s parts after the `already_sent` ones and records the outcome,
    /// keeping `lease` alive meanwhile. The database says this batch answers its
    /// messages, so the send goes on even if the Redis lease is lost (a Redis that
    /// lost its data must not leave them unanswered).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn deliver(
        &self,
        lease: Lease,
        conversation: &Conversation,
        keys: &ConversationKeys,
        claim: &Claim,
        channel: &Arc<dyn Channel>,
        text: &str,
        already_sent: Vec<String>,
        hand_back: &CancellationToken,
        claimed_at: i64,
    ) -> BatchOutcome {
        let parts = channel.split(text);
        let skip = already_sent.len().min(parts.len());
        let mut platform_ids = already_sent;
        // Requests made and not yet added to the batch's record.
        let mut attempts = 0;
        let metrics = self.metrics.clone();
        let on_retry = |error: &SendError, wait: Duration| {
            metrics.inc("lull_send_retries_total", &[]);
            tracing::warn!(
                code = error.code(),
                error = error.message(),
                wait_ms = wait.as_millis() as u64,
                "send failed, retrying"
            );
        };
        for (index, part) in parts.iter().enumerate().skip(skip) {
            let retry = &self.settings.retry;
            let (made, error, wait) = match send_with_retries(
                channel.as_ref(),
                conversation,
                part,
                retry,
                hand_back,
                on_retry,
            )
            .await
            {
                SendResult::Sent { id, attempts: made } => {
                    attempts += made;
                    platform_ids.push(id);
                    // More parts to go: record this one, so a resume does not send it again.
                    if index + 1 < parts.len()
                        && self.record_progress(claim, attempts, &platform_ids).await
                    {
                        attempts = 0;
                    }
                    continue;
                }
                SendResult::Interrupted { attempts: made } => {
                    drop(lease);
                    self.record_progress(claim, attempts + made, &platform_ids)
                        .await;
                    return self
                        .give_back(keys, &claim.token, BatchOutcome::HandedBack)
                        .await;
                }
                SendResult::Failed {
                    attempts: made,
                    error,
                } => (made, error, None),
                SendResult::Deferred {
                    attempts: made,
                    wait,
                    error,
                } => (made, error, Some(wait)),
            };
            drop(lease);
            return self
                .not_sent(keys, claim, &platform_ids, attempts + made, error, wait)
                .await;
        }
        // The lease stays ours until the reply is recorded: while PostgreSQL is
        // unreachable, no other worker may resume the batch and send it again.
        self.finish(
            lease,
            conversation,
            keys,
            claim,
            &parts,
            platform_ids,
            attempts,
            hand_back,
            claimed_at,
        )
        .await
    }

    /// A part the platform did not take. Refused for good, or still unavailable
    /// after [`MAX_CLAIMS`] claims: the batch fails. Unavailable (5xx, 429, a
    /// rate-limit code once a claim's attempts are spent: an outage, not a refusal):
    /// it stays in flight with its attempts recorded and is resumed from this part
    /// when its lease runs out, or once `wait` (the platform's Retry-After, too long
    /// to hold a worker for) is over.
    async fn not_sent(
        &self,
        keys: &ConversationKeys,
        claim: &Claim,
        platform_ids: &[String],
        attempts: u32,
        error: SendError,
        wait: Option<Duration>,
    ) -> BatchOutcome {
        if matches!(error, SendError::Retryable { .. }) && claim.claims < MAX_CLAIMS {
            tracing::warn!(
                code = error.code(),
                error = error.message(),
                attempts,
                claims = claim.claims,
                wait_ms = wait.map(|w| w.as_millis() as u64),
                "platform unavailable; reply kept in flight, resumed later"
            );
            self.record_progress(claim, attempts, platform_ids).await;
            if let Some(wait) = wait {
                let due = now_ms() + wait.as_millis() as i64;
                let shard = self.redis_batches.keys().shard_of(&keys.member);
                if let Err(error) = self.redis_batches.postpone(shard, &keys.member, due).await {
                    tracing::warn!(%error, "not postponed; resumed when its lease runs out");
                }
            }
            return BatchOutcome::Retry;
        }
        tracing::error!(
            code = error.code(),
            error = error.message(),
            attempts,
            "reply failed"
        );
        self.fail(
            keys,
            claim,
            platform_ids,
            attempts,
            error.code(),
            error.message(),
            Failure::NotSent,
        )
        .await
    }

    /// Records the parts sent so far; false (logged) when the database refused.
    async fn record_progress(&self, claim: &Claim, attempts: u32, platform_ids: &[String]) -> bool {
        match self
            .store
            .record_progress(&claim.batch_id, attempts, platform_ids)
            .await
        {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "parts sent so far not recorded; a resumed batch sends them again");
                false
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
        let policy = self.redis_batches.policy();
        for entry in claim.entries.iter().filter(|e| !answered.contains(&e.id)) {
            let mode = AppendMode::for_kind(entry.kind, policy);
            match self
                .redis_batches
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
