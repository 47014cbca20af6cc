//! Sending a reply whose messages are committed: each rendered by the channel
//! into the parts it sends (natively, or degraded past the platform's limits),
//! the parts not yet sent in order with retries, each recorded before the next,
//! then the record and the ack. Used right after the commit, and again when a
//! batch that was being sent is resumed (after a crash or a hand-back): rendering
//! is the same for the same messages, so a resumed reply is the same parts and a
//! part that went out is not sent twice.

use super::claimed::ClaimedBatch;
use super::finish::{Answered, Failure, GiveBack, Progress};
use super::{BatchOutcome, Lease, MAX_CLAIMS, SendResult, Worker, send_with_retries};
use crate::channel::render::describe;
use crate::channel::{Channel, SendError};
use crate::message::Entry;
use crate::responder::reply::ReplyMessage;
use crate::time::UnixMs;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A reply whose messages are committed in PostgreSQL, and the parts of it that
/// went out already (none unless resumed). No messages is no reply: nothing is
/// sent, and the batch is recorded sent, its messages answered.
#[derive(Debug, Clone)]
pub(super) struct Committed {
    /// The committed messages, in order.
    pub messages: Vec<ReplyMessage>,
    /// Platform ids of the parts sent before, in order.
    pub sent: Vec<String>,
    /// The responder asked to hand the conversation to a human after it.
    pub handoff: bool,
    /// Messages it answers that the claim did not carry (older ones taken at
    /// commit): they join history with the reply.
    pub taken: Vec<Entry>,
}

impl Committed {
    /// Messages just committed: nothing of them sent yet.
    pub fn new(messages: Vec<ReplyMessage>, handoff: bool, taken: Vec<Entry>) -> Self {
        Self {
            messages,
            sent: Vec::new(),
            handoff,
            taken,
        }
    }

    /// The parts `channel` sends them as, in order.
    pub fn parts(&self, channel: &dyn Channel) -> Vec<ReplyMessage> {
        self.messages
            .iter()
            .flat_map(|m| channel.render(m))
            .collect()
    }
}

impl Worker {
    /// Sends the reply's parts after the ones sent already and records the
    /// outcome, keeping `lease` alive meanwhile. The database says this batch
    /// answers its messages, so the send goes on even if the Redis lease is lost
    /// (a Redis that lost its data must not leave them unanswered).
    pub(super) async fn deliver(
        &self,
        lease: Lease,
        batch: &ClaimedBatch,
        reply: Committed,
        hand_back: &CancellationToken,
    ) -> BatchOutcome {
        let parts = reply.parts(batch.channel.as_ref());
        let skip = reply.sent.len().min(parts.len());
        let mut progress = Progress {
            platform_ids: reply.sent,
            attempts: 0,
        };
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
                batch.channel.as_ref(),
                &batch.conversation,
                part,
                retry,
                hand_back,
                on_retry,
            )
            .await
            {
                SendResult::Sent { id, attempts: made } => {
                    progress.attempts += made;
                    progress.platform_ids.push(id);
                    // More parts to go: record this one, so a resume does not send it again.
                    if index + 1 < parts.len() && self.record_progress(batch, &progress).await {
                        progress.attempts = 0;
                    }
                    continue;
                }
                SendResult::Interrupted { attempts: made } => {
                    drop(lease);
                    progress.attempts += made;
                    self.record_progress(batch, &progress).await;
                    return self.give_back(batch, GiveBack::HandedBack).await;
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
            progress.attempts += made;
            return self.not_sent(batch, &progress, error, wait).await;
        }
        // The lease stays ours until the reply is recorded: while PostgreSQL is
        // unreachable, no other worker may resume the batch and send it again.
        let texts: Vec<String> = parts.iter().map(describe).collect();
        let answered = Answered {
            parts: &texts,
            handoff: reply.handoff,
            taken: &reply.taken,
        };
        self.finish(lease, batch, answered, progress, hand_back)
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
        batch: &ClaimedBatch,
        progress: &Progress,
        error: SendError,
        wait: Option<Duration>,
    ) -> BatchOutcome {
        let attempts = progress.attempts;
        if matches!(error, SendError::Retryable { .. }) && batch.claims < MAX_CLAIMS {
            tracing::warn!(
                code = error.code(),
                error = error.message(),
                attempts,
                claims = batch.claims,
                wait_ms = wait.map(|w| w.as_millis() as u64),
                "platform unavailable; reply kept in flight, resumed later"
            );
            self.record_progress(batch, progress).await;
            if let Some(wait) = wait {
                let due = UnixMs::now() + wait;
                let member = &batch.keys.member;
                let shard = self.redis_batches.keys().shard_of(member);
                if let Err(error) = self.redis_batches.postpone(shard, member, due.ms()).await {
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
            batch,
            progress,
            error.code(),
            error.message(),
            Failure::NotSent,
        )
        .await
    }

    /// Records the parts sent so far; false (logged) when the database refused.
    async fn record_progress(&self, batch: &ClaimedBatch, progress: &Progress) -> bool {
        match self
            .store
            .record_progress(&batch.id, progress.attempts, &progress.platform_ids)
            .await
        {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "parts sent so far not recorded; a resumed batch sends them again");
                false
            }
        }
    }
}
