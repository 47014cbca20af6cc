//! How a batch ends: given back (superseded, shutdown), sent and recorded, failed
//! and recorded, and the ack that releases the conversation. The other stages call
//! these; nothing here calls back into them.

use super::claimed::ClaimedBatch;
use super::{BatchOutcome, Lease, Worker};
use crate::batch::{AckOutcome, BatchError, RequeueMode};
use crate::message::Entry;
use crate::time::UnixMs;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The longest pause between two tries to record a sent reply.
const RECORD_RETRY_MAX: Duration = Duration::from_secs(2);

/// Why a batch is given back to the agenda before its reply is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GiveBack {
    /// New messages arrived: answered together, due at their deadline.
    Superseded,
    /// Shutdown: due at once, for any instance.
    HandedBack,
}

impl From<GiveBack> for BatchOutcome {
    fn from(why: GiveBack) -> Self {
        match why {
            GiveBack::Superseded => BatchOutcome::Superseded,
            GiveBack::HandedBack => BatchOutcome::HandedBack,
        }
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

/// How far a reply's sending got: the platform ids of the parts that went out,
/// and the send requests made that its record does not count yet.
#[derive(Debug, Clone, Default)]
pub(super) struct Progress {
    /// Platform ids of the parts sent, in order.
    pub platform_ids: Vec<String>,
    /// Requests made and not yet added to the batch's record.
    pub attempts: u32,
}

/// What a sent reply was: its parts, as readable text, whether the responder asked
/// for a human after it, and the messages it answers that the claim did not carry.
#[derive(Debug, Clone, Copy)]
pub(super) struct Answered<'a> {
    /// Each part sent, as text.
    pub parts: &'a [String],
    /// The responder asked to hand the conversation to a human.
    pub handoff: bool,
    /// Older messages the batch took at commit (see `commit.rs`).
    pub taken: &'a [Entry],
}

impl Worker {
    /// Requeues the batch; a lease that passed to another worker meanwhile gives
    /// nothing back (`Lost`).
    pub(super) async fn give_back(&self, batch: &ClaimedBatch, why: GiveBack) -> BatchOutcome {
        let mode = match why {
            GiveBack::Superseded => RequeueMode::Supersede,
            GiveBack::HandedBack => RequeueMode::HandBack,
        };
        match self
            .redis_batches
            .requeue(&batch.keys, &batch.token, mode, UnixMs::now())
            .await
        {
            Ok(Some(due_ms)) => {
                let metric = match why {
                    GiveBack::Superseded => "lull_batches_superseded_total",
                    GiveBack::HandedBack => "lull_batches_handed_back_total",
                };
                self.metrics.inc(metric, &[]);
                tracing::info!(due_ms, outcome = ?why, "batch requeued");
                why.into()
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
    ///
    /// `handoff`: the responder asked for a human. It is recorded on the batch
    /// (with its commit); the conversation is handed over here, once the reply is
    /// recorded and acknowledged ([`Worker::hand_to_human`]).
    ///
    /// `taken`: older messages the batch took at commit. Redis may hold them in
    /// the batch collecting behind this one (the reconciler put them back): they
    /// leave it, so it is not claimed only to own nothing, and they go into
    /// history with the reply (a message stored while Redis was away is not there).
    pub(super) async fn finish(
        &self,
        lease: Lease,
        batch: &ClaimedBatch,
        answered: Answered<'_>,
        sent: Progress,
        hand_back: &CancellationToken,
    ) -> BatchOutcome {
        let Answered {
            parts,
            handoff,
            taken,
        } = answered;
        let now = UnixMs::now();
        let Progress {
            platform_ids,
            attempts,
        } = sent;
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
                .record_sent(&batch.conversation, &batch.id, attempts, &rows, now)
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
        if !taken.is_empty() {
            self.leave_collecting(batch, taken).await;
        }
        let history: Vec<Entry> = taken.iter().chain(&reply_entries).cloned().collect();
        self.ack(batch, &history).await;
        if handoff {
            self.hand_to_human(batch).await;
        }
        let conversation = &batch.conversation;
        self.metrics.inc(
            "lull_replies_sent_total",
            &[("channel", conversation.channel.as_str())],
        );
        self.metrics
            .observe("lull_reply_seconds", now.secs_since(batch.claimed_at));
        tracing::info!(
            parts = parts.len(),
            platform_message_id = platform_ids.first().map(String::as_str).unwrap_or_default(),
            attempts,
            "reply sent for {conversation}"
        );
        BatchOutcome::Sent {
            batch_id: batch.id.clone(),
        }
    }

    /// Records the failure with the platform's code, then acks so the next batch is
    /// not blocked. `Failure::Unanswerable`: the responder refused the batch, so its
    /// messages leave history as well (see ack.lua).
    pub(super) async fn fail(
        &self,
        batch: &ClaimedBatch,
        sent: &Progress,
        code: Option<i64>,
        message: &str,
        failure: Failure,
    ) -> BatchOutcome {
        if let Err(error) = self
            .store
            .mark_failed(&batch.id, sent.attempts, &sent.platform_ids, code, message)
            .await
        {
            tracing::error!(%error, "failed batch not recorded");
        }
        match failure {
            Failure::NotSent => self.ack(batch, &[]).await,
            Failure::Unanswerable => {
                let acked = self
                    .redis_batches
                    .ack_forgetting(&batch.keys, &batch.token, UnixMs::now())
                    .await;
                log_ack(acked);
            }
        }
        self.metrics.inc("lull_replies_failed_total", &[]);
        BatchOutcome::Failed {
            batch_id: batch.id.clone(),
        }
    }

    /// The responder asked for a human after this batch's reply (recorded on the
    /// batch as `handoff`, counted as `lull_handoffs_requested_total`): the bot
    /// is paused for the conversation ([`Handoff::pause_for_responder`]). The
    /// reply is out either way, so a pause that fails is logged, not retried
    /// here: a PostgreSQL failure leaves the bot answering, a Redis one leaves
    /// the pause to hold at commit-to-send.
    ///
    /// [`Handoff::pause_for_responder`]: crate::handoff::Handoff::pause_for_responder
    pub(super) async fn hand_to_human(&self, batch: &ClaimedBatch) {
        let conversation = &batch.conversation;
        tracing::info!(
            conversation = %conversation,
            "the responder asked to hand the conversation to a human"
        );
        if let Err(error) = self.handoff.pause_for_responder(conversation).await {
            tracing::error!(%error, conversation = %conversation, "responder's handoff not done");
        }
    }

    /// drop_batch.lua for messages this batch answers: they leave the batch
    /// collecting behind it (still locked by this worker, so it is not claimed
    /// meanwhile). A failure is logged: that batch then owns nothing at its commit.
    async fn leave_collecting(&self, batch: &ClaimedBatch, taken: &[Entry]) {
        let ids: Vec<i64> = taken.iter().map(|e| e.id).collect();
        match self
            .redis_batches
            .drop_collecting(&batch.conversation, &ids)
            .await
        {
            Ok(dropped) if dropped.removed > 0 => tracing::info!(
                removed = dropped.removed,
                "older messages answered by this batch left the next one"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "older messages not taken out of the next batch"),
        }
    }

    /// ack.lua, logging what happened; failures leave the batch to its lease.
    pub(super) async fn ack(&self, batch: &ClaimedBatch, reply: &[Entry]) {
        let acked = self
            .redis_batches
            .ack(&batch.keys, &batch.token, reply, UnixMs::now())
            .await;
        log_ack(acked);
    }
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
