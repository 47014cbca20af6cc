//! One claimed batch, from claim to ack: show typing, build the context, generate
//! (superseded if new messages arrive), commit, send with retries, record, ack. A
//! batch claimed before is recorded first (its record says how far it got); a new
//! one's claim is written with its commit, or once it has generated for a while.
//!
//! Exactly-once rests on two locks. Before the send, the Redis lease (token) says
//! who may work on the conversation; a worker that lost it stops. At the send,
//! PostgreSQL says who answers each message: `begin_sending` takes the batch's
//! messages only where no other batch has, so even a batch rebuilt after Redis
//! lost its data can never answer a message twice.
//!
//! `Worker::run` is the sequence of stages, each in its own file; a stage ends
//! the batch by breaking with its [`BatchOutcome`]. Stages never call back into
//! `mod.rs` or into a later stage; they end through `finish.rs` (ack, give back,
//! fail, record):
//!
//! - `claimed.rs`: the claimed batch, the one value every stage takes.
//! - `resume.rs`: a batch claimed before: what its record says to do.
//! - `generate.rs`: its context and the responder's reply (superseded, handed back
//!   or lost meanwhile).
//! - `ask.rs`: the responder asked with retries, its failures classified, the
//!   reply's usage counted.
//! - `commit.rs`: last look, then `begin_sending_reply` makes the reply's messages
//!   the answer; the reply's usage recorded.
//! - `behind.rs`: an older batch of the conversation, unfinished when Redis lost
//!   it, is answered first; this one waits behind it.
//! - `deliver.rs`: the committed messages' parts, with retries.
//! - `finish.rs`: record and ack (sent, failed, given back).
//! - `fallback.rs`: FALLBACK_REPLY for a batch whose responder failed for good.
//! - `typing.rs`: the read mark and typing indicator shown (and renewed) while
//!   generating.
//! - `expire.rs`: a batch past the channel's reply window, closed unanswered.

mod ask;
mod behind;
mod claimed;
mod commit;
mod deliver;
mod expire;
mod fallback;
mod finish;
mod generate;
mod lease;
mod resume;
mod send;
mod typing;

use claimed::ClaimedBatch;
pub use lease::{Lease, LeaseState};
use resume::Resume;
pub use send::{RetryPolicy, SendResult, send_with_retries};

use crate::batch::{BatchId, Claim, RedisBatches};
use crate::channel::Channel;
use crate::handoff::Handoff;
use crate::message::{ChannelKind, Conversation};
use crate::metrics::Metrics;
use crate::responder::Responder;
use crate::store::Store;
use crate::time::UnixMs;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How often a generating batch looks for new messages between heartbeats: a
/// message that arrives during generation cancels it within this (plus the
/// responder request's teardown), so an LLM call is not finished and paid for
/// only to be thrown away.
pub const SUPERSEDE_POLL: Duration = Duration::from_millis(250);

/// Claims of one batch (resumes, supersedes, outages) before a responder outage
/// fails it for good.
pub const MAX_CLAIMS: i64 = 10;

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Drop an unsent reply when new messages arrive.
    pub supersede: bool,
    /// Supersedes per batch before the reply goes out anyway.
    pub max_supersedes: i64,
    /// Cap after the batch's first message (no supersede past it).
    pub max_wait: Duration,
    /// Mark read + typing when claimed.
    pub typing_indicator: bool,
    /// How often the typing indicator is renewed while generating; `None`: each
    /// channel's own ([`Channel::typing_renewal`]).
    pub typing_renewal: Option<Duration>,
    /// Most characters of history in a reply's context (see `generate::newest_within`).
    pub history_chars: usize,
    /// WhatsApp's and Instagram's reply window after the person's last message
    /// (`None`: not checked); Telegram has none.
    pub reply_window: Option<Duration>,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// Send retries.
    pub retry: RetryPolicy,
    /// Retries of an unavailable responder (RESPONDER_MAX_ATTEMPTS).
    pub responder_retry: RetryPolicy,
    /// Sent once when a batch fails for good (FALLBACK_REPLY); `None`: off.
    pub fallback_reply: Option<String>,
    /// An unfinished batch whose row has not changed for this long has no live
    /// worker left (the reconciler's min age): a newer batch of its conversation
    /// puts it back in flight and waits behind it (`behind.rs`).
    pub stale_after: Duration,
}

/// How a batch ended, for the caller and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// The reply went out (or was logged in dry-run).
    Sent {
        /// Batch id.
        batch_id: BatchId,
    },
    /// The reply failed for good; the batch is recorded failed.
    Failed {
        /// Batch id.
        batch_id: BatchId,
    },
    /// New messages arrived: the batch was requeued to be answered with them.
    Superseded,
    /// Shutdown: the batch was handed back for another instance.
    HandedBack,
    /// Another worker owns the batch now (lease lost); nothing was sent.
    Lost,
    /// Its messages were answered already (resumed after the send was recorded).
    AlreadyAnswered,
    /// A human agent took the conversation before the reply was sent: dropped
    /// unsent, its messages left to them.
    Paused,
    /// PostgreSQL or Redis failed; the lease will run out and the batch come back.
    Retry,
    /// An older batch of its conversation, unfinished when Redis lost it, goes
    /// first: this one was put back unsent, to be answered after it.
    Behind,
    /// Its messages are past the channel's reply window: recorded expired, not sent.
    Expired {
        /// Batch id.
        batch_id: BatchId,
    },
}

/// A stage's result: go on with its value, or stop with how the batch ended.
type Stage<T> = ControlFlow<BatchOutcome, T>;

/// Processes claimed batches.
pub struct Worker {
    store: Store,
    redis_batches: RedisBatches,
    channels: HashMap<ChannelKind, Arc<dyn Channel>>,
    responder: Arc<dyn Responder>,
    settings: WorkerSettings,
    metrics: Arc<Metrics>,
    /// Pauses the conversation when the responder asks for a person.
    handoff: Handoff,
}

impl Worker {
    /// Wires the parts together.
    pub fn new(
        store: Store,
        redis_batches: RedisBatches,
        channels: HashMap<ChannelKind, Arc<dyn Channel>>,
        responder: Arc<dyn Responder>,
        settings: WorkerSettings,
        metrics: Arc<Metrics>,
        handoff: Handoff,
    ) -> Self {
        Self {
            store,
            redis_batches,
            channels,
            responder,
            settings,
            metrics,
            handoff,
        }
    }

    /// Runs one claimed batch to its end. `hand_back` fires when the shutdown drain
    /// time is over: a batch not yet sending is given back to the agenda.
    pub async fn process(
        &self,
        conversation: Conversation,
        claim: Claim,
        hand_back: CancellationToken,
    ) -> BatchOutcome {
        let span = tracing::info_span!(
            "batch",
            channel = conversation.channel.as_str(),
            conversation = %conversation,
            batch_id = %claim.batch_id,
            message_id = claim.entries.last().map(|e| e.external_id.as_str()).unwrap_or_default(),
        );
        async move {
            let Some(batch) = self.claimed(conversation, claim) else {
                return BatchOutcome::Retry;
            };
            match self.run(&batch, &hand_back).await {
                ControlFlow::Break(outcome) | ControlFlow::Continue(outcome) => outcome,
            }
        }
        .instrument(span)
        .await
    }

    /// Counts the claim and gathers what every stage needs; `None` (logged) when
    /// no channel serves the conversation.
    fn claimed(&self, conversation: Conversation, claim: Claim) -> Option<ClaimedBatch> {
        let claimed_at = UnixMs::now();
        self.metrics.inc("lull_batches_claimed_total", &[]);
        self.metrics.observe(
            "lull_claim_lag_seconds",
            claimed_at.secs_since(claim.due_ms),
        );
        if claim.claims > 1 {
            self.metrics.inc("lull_batches_resumed_total", &[]);
        }
        let Some(channel) = self.channels.get(&conversation.channel).cloned() else {
            tracing::error!("no channel configured for this conversation; batch left to expire");
            return None;
        };
        let keys = self.redis_batches.keys().conversation(&conversation);
        Some(ClaimedBatch::new(
            conversation,
            keys,
            channel,
            claim,
            claimed_at,
        ))
    }

    /// The stages: resume, generate, commit, deliver (which finishes). Breaks
    /// with the outcome of a stage that ended the batch early.
    async fn run(
        &self,
        batch: &ClaimedBatch,
        hand_back: &CancellationToken,
    ) -> Stage<BatchOutcome> {
        let recorded = match self.resume(batch).await {
            Resume::New => false,
            Resume::Generating => true,
            Resume::Finished(outcome) => return ControlFlow::Break(outcome),
            Resume::Sending { reply, answered } => {
                let outcome = self
                    .deliver(self.lease(batch), batch, reply, hand_back)
                    .await;
                self.rebatch_unanswered(batch, &answered).await;
                return ControlFlow::Break(outcome);
            }
        };
        if let Some(age) = self.past_reply_window(batch) {
            return ControlFlow::Break(self.expire(batch, recorded, age).await);
        }
        let mut lease = self.lease(batch);
        tracing::info!(
            messages = batch.entries.len(),
            claims = batch.claims,
            "batch claimed"
        );
        let typing = self.show_typing(batch);
        let generated = self
            .generate(batch, &mut lease, recorded, hand_back)
            .await?;
        let committed = self.commit(batch, generated, hand_back).await?;
        if let Some(typing) = typing {
            typing::answered(typing).await;
        }
        let reply = committed.generated.reply;
        let reply = deliver::Committed::new(reply.messages, reply.handoff, committed.taken);
        ControlFlow::Continue(self.deliver(lease, batch, reply, hand_back).await)
    }

    /// Starts the claim's heartbeat; it runs until the batch is sent or given back.
    fn lease(&self, batch: &ClaimedBatch) -> Lease {
        Lease::start(
            self.redis_batches.clone(),
            batch.keys.clone(),
            batch.token.clone(),
            self.settings.heartbeat,
        )
    }
}
