//! How a batch ends: given back (superseded, shutdown), sent and recorded, failed
//! and recorded, and the ack that releases the conversation.

use super::{BatchOutcome, Lease, Worker};
use crate::batch::{AckOutcome, BatchError, Claim, ConversationKeys, RequeueMode};
use crate::message::{Conversation, Entry};
use crate::time::now_ms;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The longest pause between two tries to record a sent reply.
const RECORD_RETRY_MAX: Duration = Duration::from_secs(2);

impl Worker {
    /// Requeues the batch (supersede or hand-back); a lost lease gives nothing back.
    pub(super) async fn give_back(
        &self,
        keys: &ConversationKeys,
        token: &str,
        why: BatchOutcome,
    ) -> BatchOutcome {
        let mode = if why == BatchOutcome::Superseded {
            RequeueMode::Supersede
        } else {
            RequeueMode::HandBack
        };
        if why == BatchOutcome::Lost {
            tracing::warn!("lease lost to another worker; stopping without sending");
            return why;
        }
        match self
            .redis_batches
            .requeue(keys, token, mode, now_ms())
            .await
        {
            Ok(Some(due_ms)) => {
                let metric = if mode == RequeueMode::Supersede {
                    "lull_batches_superseded_total"
                } else {
                    "lull_batches_handed_back_total"
                };
                self.metrics.inc(metric, &[]);
                tracing::info!(due_ms, outcome = ?why, "batch requeued");
                why
            }
            Ok(None) => BatchOutcome::Lost,
            Err(error) => {
                tracing::warn!(%error, "requeue failed; the lease will run out and the batch come back");
                BatchOutcome::Retry
            }
        }
    }

    /// Records the sent reply and its outbound rows, then acks with them for history.
    ///
    /// The platform has the reply: unrecorded, the batch stays `sending` and would
    /// be resumed and sent again. So the record is tried until PostgreSQL takes it
    /// (a restart or a failover takes seconds to minutes), holding `lease` so that
    /// no other worker resumes the batch meanwhile; only the shutdown's hand-back
    /// stops it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn finish(
        &self,
        lease: Lease,
        conversation: &Conversation,
        keys: &ConversationKeys,
        claim: &Claim,
        parts: &[String],
        platform_ids: Vec<String>,
        attempts: u32,
        hand_back: &CancellationToken,
        claimed_at: i64,
    ) -> BatchOutcome {
        let now = now_ms();
        let rows: Vec<(String, String)> = platform_ids
            .iter()
            .cloned()
            .zip(parts.iter().cloned())
            .collect();
        let mut tries = 0;
        let reply_entries = loop {
            tries += 1;
            let error = match self
                .store
                .record_sent(conversation, &claim.batch_id, attempts, &rows, now)
                .await
            {
                Ok(entries) => break entries,
                Err(error) => error,
            };
            // A pooled connection PostgreSQL dropped (a restart) fails once; the next
            // try gets a fresh one.
            let pause = (Duration::from_millis(100) * tries).min(RECORD_RETRY_MAX);
            tracing::warn!(%error, tries, "reply sent, record failed; trying again");
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = hand_back.cancelled() => {
                    tracing::error!(%error, tries, "reply sent but not recorded before shutdown; a resumed batch may send it again");
                    break Vec::new();
                }
            }
        };
        drop(lease);
        self.ack(keys, &claim.token, &reply_entries).await;
        self.metrics.inc(
            "lull_replies_sent_total",
            &[("channel", conversation.channel.as_str())],
        );
        self.metrics.observe(
            "lull_reply_seconds",
            (now - claimed_at).max(0) as f64 / 1000.0,
        );
        tracing::info!(
            parts = parts.len(),
            platform_message_id = platform_ids.first().map(String::as_str).unwrap_or_default(),
            attempts,
            "reply sent for {conversation}"
        );
        BatchOutcome::Sent {
            batch_id: claim.batch_id.clone(),
        }
    }

    /// Records the failure with the platform's code, then acks so the next batch is
    /// not blocked. `Failure::Unanswerable`: the responder refused the batch, so its
    /// messages leave history as well (see ack.lua).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn fail(
        &self,
        keys: &ConversationKeys,
        claim: &Claim,
        platform_ids: &[String],
        attempts: u32,
        code: Option<i64>,
        message: &str,
        failure: Failure,
    ) -> BatchOutcome {
        if let Err(error) = self
            .store
            .mark_failed(&claim.batch_id, attempts, platform_ids, code, message)
            .await
        {
            tracing::error!(%error, "failed batch not recorded");
        }
        match failure {
            Failure::NotSent => self.ack(keys, &claim.token, &[]).await,
            Failure::Unanswerable => {
                let acked = self
                    .redis_batches
                    .ack_forgetting(keys, &claim.token, now_ms())
                    .await;
                log_ack(acked);
            }
        }
        self.metrics.inc("lull_replies_failed_total", &[]);
        BatchOutcome::Failed {
            batch_id: claim.batch_id.clone(),
        }
    }

    /// ack.lua, logging what happened; failures leave the batch to its lease.
    pub(super) async fn ack(&self, keys: &ConversationKeys, token: &str, reply: &[Entry]) {
        log_ack(self.redis_batches.ack(keys, token, reply, now_ms()).await);
    }
}

/// Why a batch failed, for what its ack does with history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// The reply was generated but not delivered: its messages stay in history.
    NotSent,
    /// The responder refused the batch (or stayed unavailable): its messages would
    /// be refused again in every later context, so they leave history.
    Unanswerable,
}

fn log_ack(acked: Result<AckOutcome, BatchError>) {
    match acked {
        Ok(AckOutcome::Stale) => {
            tracing::warn!("ack refused: the lease had passed to another worker")
        }
        Ok(AckOutcome::Rescheduled { next_due_ms }) => {
            tracing::info!(next_due_ms, "newer messages wait as the next batch")
        }
        Ok(AckOutcome::Done) => {}
        Err(error) => {
            tracing::warn!(%error, "ack failed; the batch comes back when its lease ends")
        }
    }
}
