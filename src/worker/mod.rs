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

mod deliver;
mod finish;
mod lease;
mod send;

use finish::Failure;
pub use lease::{Lease, LeaseState};
pub use send::{RetryPolicy, SendResult, send_with_retries};

use crate::batch::{Claim, ConversationKeys, RedisBatches};
use crate::channel::Channel;
use crate::message::{ChannelKind, Conversation, Direction, Entry};
use crate::metrics::Metrics;
use crate::responder::{ReplyContext, Responder, ResponderError};
use crate::store::{BatchRecord, NewBatch, Store};
use crate::time::now_ms;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Claims of one batch (resumes, supersedes, outages) before a responder outage
/// fails it for good.
pub const MAX_CLAIMS: i64 = 10;

/// How long a new batch generates before its claim is written on its own, so
/// that a slow responder shows as `generating`; a faster reply writes the claim
/// with its commit.
const SHOW_GENERATING_AFTER: Duration = Duration::from_millis(200);

/// How long a reply waits for its typing request to be answered (see
/// [`typing_answered`]).
const TYPING_WAIT: Duration = Duration::from_secs(1);

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
    /// Most characters of history in a reply's context (see [`newest_within`]).
    pub history_chars: usize,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// Send retries.
    pub retry: RetryPolicy,
}

/// How a batch ended, for the caller and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// The reply went out (or was logged in dry-run).
    Sent {
        /// Batch id.
        batch_id: String,
    },
    /// The reply failed for good; the batch is recorded failed.
    Failed {
        /// Batch id.
        batch_id: String,
    },
    /// New messages arrived: the batch was requeued to be answered with them.
    Superseded,
    /// Shutdown: the batch was handed back for another instance.
    HandedBack,
    /// Another worker owns the batch now (lease lost); nothing was sent.
    Lost,
    /// Its messages were answered already (resumed after the send was recorded).
    AlreadyAnswered,
    /// PostgreSQL or Redis failed; the lease will run out and the batch come back.
    Retry,
}

/// Processes claimed batches.
pub struct Worker {
    store: Store,
    redis_batches: RedisBatches,
    channels: HashMap<ChannelKind, Arc<dyn Channel>>,
    responder: Arc<dyn Responder>,
    settings: WorkerSettings,
    metrics: Arc<Metrics>,
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
    ) -> Self {
        Self {
            store,
            redis_batches,
            channels,
            responder,
            settings,
            metrics,
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
        self.run(&conversation, &claim, &hand_back)
            .instrument(span)
            .await
    }

    async fn run(
        &self,
        conversation: &Conversation,
        claim: &Claim,
        hand_back: &CancellationToken,
    ) -> BatchOutcome {
        let claimed_at = now_ms();
        let keys = self.redis_batches.keys().conversation(conversation);
        self.metrics.inc("lull_batches_claimed_total", &[]);
        self.metrics.observe(
            "lull_claim_lag_seconds",
            (claimed_at - claim.due_ms).max(0) as f64 / 1000.0,
        );
        if claim.claims > 1 {
            self.metrics.inc("lull_batches_resumed_total", &[]);
        }
        let Some(channel) = self.channels.get(&conversation.channel).cloned() else {
            tracing::error!("no channel configured for this conversation; batch left to expire");
            return BatchOutcome::Retry;
        };
        let batch = NewBatch {
            id: claim.batch_id.clone(),
            conversation: conversation.clone(),
            message_ids: claim.entries.iter().map(|e| e.id).collect(),
            claims: claim.claims,
            supersedes: claim.supersedes,
            started_ms: claim.started_ms,
            due_ms: claim.due_ms,
            claimed_ms: claimed_at,
        };
        // A new batch (its id is this claim's own token) has no row yet: none can
        // say it is sending or sent, so its claim is written with the commit, one
        // write instead of two, unless generating takes long enough to be worth
        // showing. A batch claimed before may have got further: ask first.
        let ids = &batch.message_ids;
        let mut recorded = claim.batch_id != claim.token;
        if recorded {
            let record = match self.store.open_batch(batch.clone()).await {
                Ok(record) => record,
                Err(error) => {
                    // Keep the batch: without the database nothing can be recorded, so
                    // leave it in flight; the lease runs out and it is claimed again.
                    tracing::error!(%error, "database unavailable, batch kept in flight for a later claim");
                    return BatchOutcome::Retry;
                }
            };
            if let Some(outcome) = self
                .resume(
                    conversation,
                    &keys,
                    claim,
                    &channel,
                    &record,
                    hand_back,
                    claimed_at,
                )
                .await
            {
                return outcome;
            }
        }
        let mut lease = self.lease(&keys, claim);
        tracing::info!(messages = ids.len(), claims = claim.claims, "batch claimed");

        let typing = if self.settings.typing_indicator {
            self.show_typing(&channel, conversation, &claim.entries)
        } else {
            None
        };

        let context = self.context(conversation, claim).await;
        let generation = self.generate(&context);
        tokio::pin!(generation);
        let show_generating = tokio::time::sleep(SHOW_GENERATING_AFTER);
        tokio::pin!(show_generating);
        let mut shown = false;
        let reply = loop {
            tokio::select! {
                reply = &mut generation => break reply,
                outcome = self.interrupted(&mut lease, claim, hand_back) => {
                    return self.give_back(&keys, &claim.token, outcome).await;
                }
                _ = &mut show_generating, if !recorded && !shown => {
                    shown = true;
                    recorded = self.record_claim(&batch).await;
                }
            }
        };
        let text = match reply {
            Ok(text) => text,
            Err(error) => {
                if !recorded {
                    self.record_claim(&batch).await;
                }
                return self.not_generated(&keys, claim, error).await;
            }
        };

        // Last look before the reply becomes visible: new messages supersede it.
        match self
            .redis_batches
            .extend(&keys, &claim.token, now_ms())
            .await
        {
            Ok(state) if !state.held => return BatchOutcome::Lost,
            Ok(state) if state.pending > 0 && self.may_supersede(claim) => {
                return self
                    .give_back(&keys, &claim.token, BatchOutcome::Superseded)
                    .await;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "Redis unavailable before sending; batch kept for a later claim");
                return BatchOutcome::Retry;
            }
        }

        let owned = match self.store.begin_sending(&batch, ids, &text).await {
            Ok(owned) => owned,
            Err(error) => {
                tracing::error!(%error, "database unavailable before sending; batch kept for a later claim");
                return BatchOutcome::Retry;
            }
        };
        if owned.is_empty() {
            tracing::warn!(
                "every message of this batch was answered by another batch; nothing sent"
            );
            self.ack(&keys, &claim.token, &[]).await;
            return BatchOutcome::AlreadyAnswered;
        }
        let text = if owned.len() < ids.len() {
            // Another batch answered some of them meanwhile (the reconciler read them
            // as unanswered just before that batch was sent, and batched them again).
            // The text quotes them: generate it again for this batch's own messages,
            // or they would be in two replies.
            tracing::warn!(
                answered_elsewhere = ids.len() - owned.len(),
                "some messages of this batch were answered by another batch; reply generated again without them"
            );
            let mut own = claim.clone();
            own.entries.retain(|e| owned.contains(&e.id));
            let context = self.context(conversation, &own).await;
            let reply = tokio::select! {
                reply = self.generate(&context) => reply,
                _ = hand_back.cancelled() => {
                    return self.give_back(&keys, &claim.token, BatchOutcome::HandedBack).await;
                }
            };
            let text = match reply {
                Ok(text) => text,
                Err(error) => return self.not_generated(&keys, claim, error).await,
            };
            match self.store.begin_sending(&batch, &owned, &text).await {
                Ok(again) if again.len() == owned.len() => {}
                // Answered elsewhere once more: the lease runs out and the next
                // claim starts over from what the database says.
                Ok(_) => return BatchOutcome::Retry,
                Err(error) => {
                    tracing::error!(%error, "database unavailable before sending; batch kept for a later claim");
                    return BatchOutcome::Retry;
                }
            }
            text
        } else {
            text
        };

        if let Some(typing) = typing {
            typing_answered(typing).await;
        }
        self.deliver(
            lease,
            conversation,
            &keys,
            claim,
            &channel,
            &text,
            Vec::new(),
            hand_back,
            claimed_at,
        )
        .await
    }

    /// What a batch claimed before does, from its record: acknowledged when it has
    /// a reply already, sent on when it was being sent. `None`: it is generating,
    /// go on.
    #[allow(clippy::too_many_arguments)]
    async fn resume(
        &self,
        conversation: &Conversation,
        keys: &ConversationKeys,
        claim: &Claim,
        channel: &Arc<dyn Channel>,
        record: &BatchRecord,
        hand_back: &CancellationToken,
        claimed_at: i64,
    ) -> Option<BatchOutcome> {
        if matches!(record.status.as_str(), "sent" | "failed" | "dropped") {
            tracing::info!(status = %record.status, "batch already finished before a crash; acknowledging");
            self.ack(keys, &claim.token, &[]).await;
            self.rebatch_unanswered(conversation, claim, &record.message_ids)
                .await;
            return Some(BatchOutcome::AlreadyAnswered);
        }
        let (true, Some(text)) = (record.status == "sending", record.reply_text.as_deref()) else {
            return None;
        };
        // Crashed or handed back while sending: the text is committed and its
        // messages are this batch's. Send the parts not yet recorded, as they are.
        tracing::info!(
            parts_sent = record.platform_message_ids.len(),
            "resuming a reply that was being sent"
        );
        let lease = self.lease(keys, claim);
        let outcome = self
            .deliver(
                lease,
                conversation,
                keys,
                claim,
                channel,
                text,
                record.platform_message_ids.clone(),
                hand_back,
                claimed_at,
            )
            .await;
        self.rebatch_unanswered(conversation, claim, &record.message_ids)
            .await;
        Some(outcome)
    }

    /// Starts the claim's heartbeat; it runs until the batch is sent or given back.
    fn lease(&self, keys: &ConversationKeys, claim: &Claim) -> Lease {
        Lease::start(
            self.redis_batches.clone(),
            keys.clone(),
            claim.token.clone(),
            self.settings.heartbeat,
        )
    }

    /// Writes a new batch's claim before its commit (see [`SHOW_GENERATING_AFTER`]);
    /// false (logged) when the database refused: the commit writes it then.
    async fn record_claim(&self, batch: &NewBatch) -> bool {
        match self.store.open_batch(batch.clone()).await {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(%error, "claim not recorded yet; the commit records it");
                false
            }
        }
    }

    /// The responder gave up. Unavailable (an outage): leave the batch in flight, so
    /// it is claimed again when its lease runs out, up to [`MAX_CLAIMS`] times.
    /// Refused, or still unavailable after that: the batch fails for good.
    async fn not_generated(
        &self,
        keys: &ConversationKeys,
        claim: &Claim,
        error: ResponderError,
    ) -> BatchOutcome {
        if matches!(error, ResponderError::Unavailable(_)) && claim.claims < MAX_CLAIMS {
            tracing::warn!(%error, claims = claim.claims, "responder unavailable; batch tried again when its lease runs out");
            return BatchOutcome::Retry;
        }
        tracing::error!(%error, "no reply generated");
        self.fail(
            keys,
            claim,
            &[],
            0,
            None,
            &error.to_string(),
            Failure::Unanswerable,
        )
        .await
    }

    fn may_supersede(&self, claim: &Claim) -> bool {
        self.settings.supersede
            && claim.supersedes < self.settings.max_supersedes
            && now_ms() < claim.started_ms + self.settings.max_wait.as_millis() as i64
    }

    /// Resolves when generation must stop: lease lost, superseded, or hand-back.
    async fn interrupted(
        &self,
        lease: &mut Lease,
        claim: &Claim,
        hand_back: &CancellationToken,
    ) -> BatchOutcome {
        let mut state = lease.current();
        loop {
            if !state.held {
                return BatchOutcome::Lost;
            }
            if state.pending > 0 && self.may_supersede(claim) {
                return BatchOutcome::Superseded;
            }
            tokio::select! {
                next = lease.changed() => state = next,
                _ = hand_back.cancelled() => return BatchOutcome::HandedBack,
            }
        }
    }

    async fn generate(&self, context: &ReplyContext) -> Result<String, ResponderError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.responder.reply(context).await {
                Err(ResponderError::Unavailable(reason))
                    if tries < self.settings.retry.max_attempts =>
                {
                    tracing::warn!(%reason, tries, "responder unavailable, retrying");
                    tokio::time::sleep(self.settings.retry.base * tries).await;
                }
                other => return other,
            }
        }
    }

    async fn context(&self, conversation: &Conversation, claim: &Claim) -> ReplyContext {
        let in_batch: HashSet<i64> = claim.entries.iter().map(|e| e.id).collect();
        // Messages that arrived after this batch's (a higher database id: ids follow
        // arrival) wait for the next batch, e.g. when a resumed batch leaves them in
        // their window: not this reply's to answer, so not in its context. A late
        // message answered now keeps the earlier exchange, which arrived before it.
        let newest = claim.entries.iter().map(|e| e.id).max().unwrap_or(i64::MAX);
        let earlier = |e: &Entry| {
            let waiting = e.dir == Direction::Inbound && e.id > newest;
            !in_batch.contains(&e.id) && !waiting
        };
        // claim.lua returned Redis's history with the batch: no second round trip.
        // None came when the history is missing or not hydrated yet (append.lua).
        let history = if claim.history.is_empty() {
            let limit = self.redis_batches.policy().history_limit;
            let mut stored = match self.store.recent_history(conversation, limit).await {
                Ok(stored) => stored,
                // The reply is still worth writing; without the earlier exchange.
                Err(error) => {
                    tracing::warn!(%error, "history not read; replying without it");
                    Vec::new()
                }
            };
            stored.retain(earlier);
            stored
        } else {
            claim
                .history
                .iter()
                .filter(|e| earlier(e))
                .cloned()
                .collect()
        };
        ReplyContext {
            conversation: conversation.clone(),
            history: newest_within(history, self.settings.history_chars),
            batch: claim.entries.clone(),
        }
    }

    /// Marks the batch's last message read and shows the typing indicator, while
    /// generation runs; the reply waits for it (see [`typing_answered`]).
    fn show_typing(
        &self,
        channel: &Arc<dyn Channel>,
        conversation: &Conversation,
        entries: &[Entry],
    ) -> Option<JoinHandle<()>> {
        let last = entries.iter().rev().find(|e| e.dir == Direction::Inbound)?;
        let (channel, conversation, message_id) = (
            channel.clone(),
            conversation.clone(),
            last.external_id.clone(),
        );
        // Best effort: never fails the batch.
        let typing = tokio::spawn(
            async move {
                if let Err(error) = channel.mark_read_typing(&conversation, &message_id).await {
                    tracing::debug!(%error, "typing indicator not shown");
                }
            }
            .in_current_span(),
        );
        Some(typing)
    }
}

/// The newest entries of `history` whose texts hold at most `chars` characters in
/// all. Up to HISTORY_LIMIT messages of any length would otherwise go to the
/// responder: a conversation with long messages would outgrow a small model's
/// context, and every later batch would fail the same way (a refused request is
/// permanent). The batch itself is never cut.
fn newest_within(mut history: Vec<Entry>, chars: usize) -> Vec<Entry> {
    let mut total = 0;
    let kept = history
        .iter()
        .rev()
        .take_while(|e| {
            total += e.text.chars().count();
            total <= chars
        })
        .count();
    history.drain(..history.len() - kept);
    history
}

/// Waits until the platform has answered the typing request, for at most
/// [`TYPING_WAIT`]. The platforms dismiss the indicator when a reply arrives, so
/// one that lands after the reply stays on under it (WhatsApp: 25 s, Instagram:
/// 20 s, Telegram: 5 s), and a fast responder's reply is often ready before the
/// request is answered. One still unanswered then is cancelled rather than
/// holding the reply longer (it may land late all the same: rare, and the platform
/// is slow then anyway).
async fn typing_answered(typing: JoinHandle<()>) {
    let cancel = typing.abort_handle();
    if tokio::time::timeout(TYPING_WAIT, typing).await.is_err() {
        cancel.abort();
        tracing::debug!(
            wait_ms = TYPING_WAIT.as_millis() as u64,
            "typing request unanswered; cancelled, the reply goes out"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_its_newest_messages_within_the_character_budget() {
        let history = vec![
            Entry::said(1, "aaaa"),
            Entry::said(2, "bbb"),
            Entry::said(3, "cc"),
            Entry::said(4, "d"),
        ];
        let ids = |h: Vec<Entry>| h.iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(ids(newest_within(history.clone(), 10)), [1, 2, 3, 4]);
        assert_eq!(ids(newest_within(history.clone(), 9)), [2, 3, 4]);
        assert_eq!(ids(newest_within(history.clone(), 6)), [2, 3, 4]);
        assert_eq!(ids(newest_within(history.clone(), 5)), [3, 4]);
        assert_eq!(ids(newest_within(history, 0)), Vec::<i64>::new());
    }

    #[test]
    fn one_message_longer_than_the_budget_ends_the_history_there() {
        let history = vec![
            Entry::said(1, "old"),
            Entry::said(2, &"x".repeat(50)),
            Entry::said(3, "new"),
        ];
        let kept = newest_within(history, 20);
        assert_eq!(kept.iter().map(|e| e.id).collect::<Vec<_>>(), [3]);
    }
}
