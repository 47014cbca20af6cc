//! A parsed webhook's messages: PostgreSQL first, then their Redis batch.
//!
//! The platform gets its 200 only once the rows are committed; a duplicate (the
//! platform retrying) is committed once and batched once, because only a new row
//! goes on to Redis. A Redis failure does not fail the request: the row is safe and
//! the catch-up batches it when Redis is back; while the Redis breaker is open
//! ([`RedisHealth`]) Redis is not even tried, so the webhook answers at
//! PostgreSQL's speed.
//!
//! Invariant 1 of docs/design.md: a message acknowledged to the platform is in PostgreSQL.

use crate::batch::{AppendMode, AppendOutcome, BatchError, RedisBatches, RedisHealth};
use crate::channel::Echo;
use crate::claim_loop::Wake;
use crate::handoff::Handoff;
use crate::message::{Conversation, Entry, InboundMessage};
use crate::metrics::Metrics;
use crate::store::{InboundRows, Store, StoreError};
use crate::time::now_ms;
use std::sync::Arc;
use tracing::Instrument;

/// What happened to one webhook's messages.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestReport {
    /// New rows.
    pub stored: usize,
    /// Platform retries, ignored.
    pub duplicates: usize,
    /// New rows now in a Redis batch or history.
    pub batched: usize,
}

/// Stores and batches inbound messages.
#[derive(Clone)]
pub struct Ingest {
    store: Store,
    redis_batches: RedisBatches,
    redis: Arc<RedisHealth>,
    wake: Arc<Wake>,
    metrics: Arc<Metrics>,
    handoff: Option<Handoff>,
}

impl Ingest {
    /// Wires the parts together.
    pub fn new(
        store: Store,
        redis_batches: RedisBatches,
        redis: Arc<RedisHealth>,
        wake: Arc<Wake>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            redis_batches,
            redis,
            wake,
            metrics,
            handoff: None,
        }
    }

    /// With handoff: echoes of a human agent pause the bot, HANDOFF_KEYWORDS are
    /// heard, and a hydrate puts a paused conversation's mode back into Redis.
    pub fn with_handoff(mut self, handoff: Handoff) -> Self {
        self.handoff = Some(handoff);
        self
    }

    /// Echoes of our business account's messages (see [`Handoff::agent_messages`]):
    /// a human agent's is stored and pauses the bot. Fails only when PostgreSQL
    /// does: the caller answers 503 so the platform retries.
    pub async fn echoes(&self, echoes: Vec<Echo>) -> Result<usize, StoreError> {
        let Some(handoff) = &self.handoff else {
            return Ok(0);
        };
        if self.store.health().is_open() {
            return Err(StoreError::Down);
        }
        match handoff.agent_messages(echoes).await {
            Ok(n) => Ok(n),
            Err(crate::handoff::HandoffError::Store(error)) => Err(error),
            Err(error) => {
                // Stored and paused in PostgreSQL: commit-to-send holds the pause;
                // the next echo or hydrate brings Redis in line.
                tracing::warn!(%error, "agent message: Redis not updated");
                Ok(0)
            }
        }
    }

    /// Stores every message (one statement, shared with the webhooks arriving
    /// meanwhile), then batches each new one in order. Fails only when PostgreSQL
    /// does: the caller answers 503 so the platform retries.
    pub async fn ingest(&self, messages: Vec<InboundMessage>) -> Result<IngestReport, StoreError> {
        let policy = self.redis_batches.policy();
        let rows: InboundRows = messages
            .into_iter()
            .map(|m| {
                let m = m.without_nul();
                let answerable = AppendMode::for_kind(m.kind, policy).answerable();
                (m, answerable)
            })
            .collect();
        let stored = self.store.insert_inbound(rows.clone()).await?;
        let mut report = IngestReport::default();
        let mut redis_failed = false;
        for ((message, _), entry) in rows.iter().zip(stored) {
            let (conversation, external_id) = (&message.conversation, &message.external_id);
            let channel = conversation.channel.as_str();
            let span = tracing::info_span!(
                "message",
                channel,
                conversation = %conversation,
                message_id = %external_id,
            );
            let Some(entry) = entry else {
                report.duplicates += 1;
                self.metrics
                    .inc("lull_messages_duplicate_total", &[("channel", channel)]);
                span.in_scope(|| tracing::info!("duplicate ignored"));
                continue;
            };
            report.stored += 1;
            self.metrics
                .inc("lull_messages_stored_total", &[("channel", channel)]);
            span.in_scope(|| {
                tracing::info!(
                    db_id = entry.id,
                    kind = entry.kind.as_str(),
                    "message stored"
                )
            });
            if redis_failed || self.redis.is_open() {
                // One timeout per request is enough, and none once Redis is known
                // down: the platform must get its answer well within its own
                // timeout, and the catch-up batches the rest.
                continue;
            }
            let mode = AppendMode::for_kind(entry.kind, policy);
            if mode.answerable() {
                self.heard_keyword(conversation, &entry)
                    .instrument(span.clone())
                    .await;
            }
            match self
                .batch(conversation, &entry, mode, false)
                .instrument(span)
                .await
            {
                Ok(_) => report.batched += 1,
                Err(_) => redis_failed = true,
            }
        }
        Ok(report)
    }

    /// Appends one stored message to its conversation in Redis, hydrating history
    /// from PostgreSQL when Redis had none. `reconcile` skips messages Redis still
    /// tracks. Fails at once while the Redis breaker is open; an unreachable Redis
    /// opens it.
    pub async fn batch(
        &self,
        conversation: &Conversation,
        entry: &Entry,
        mode: AppendMode,
        reconcile: bool,
    ) -> Result<AppendOutcome, BatchError> {
        if self.redis.is_open() {
            // Redis was found down: the row is safe, and the catch-up that starts
            // when the probe sees Redis again batches it. Waiting would only hold
            // the webhook for a timeout.
            return Err(BatchError::BreakerOpen);
        }
        let result = self.append(conversation, entry, mode, reconcile).await;
        if let Err(error) = &result {
            self.metrics.inc("lull_redis_errors_total", &[]);
            self.redis.failed(error);
        }
        result
    }

    /// HANDOFF_KEYWORDS: pauses before the message is appended, so that it goes
    /// to history only.
    async fn heard_keyword(&self, conversation: &Conversation, entry: &Entry) {
        let Some(handoff) = &self.handoff else {
            return;
        };
        if !handoff.asks_for_person(&entry.text) {
            return;
        }
        if let Err(error) = handoff.keyword(conversation, entry).await {
            tracing::warn!(%error, "contact asked for a person; pause failed");
        }
    }

    /// After Redis lost its data, a paused conversation's mode comes back from
    /// PostgreSQL with its history: the message just appended may have started a
    /// batch, which claim.lua now leaves alone (and commit-to-send refuses in any
    /// case).
    async fn restore_mode(&self, conversation: &Conversation, outcome: &AppendOutcome) {
        let Some(handoff) = &self.handoff else {
            return;
        };
        if outcome.paused {
            return;
        }
        match handoff.restore_mode(conversation).await {
            Ok(true) => tracing::info!("handoff mode restored from the database"),
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "handoff mode not restored"),
        }
    }

    async fn append(
        &self,
        conversation: &Conversation,
        entry: &Entry,
        mode: AppendMode,
        reconcile: bool,
    ) -> Result<AppendOutcome, BatchError> {
        let outcome = self
            .redis_batches
            .append(conversation, entry, mode, reconcile, now_ms())
            .await?;
        if outcome.tracked {
            return Ok(outcome);
        }
        if outcome.hydrate {
            // History went missing (new session, TTL, Redis restart): refill it from
            // the database. A database error here only costs context, not the
            // message: the history stays marked unhydrated, so the conversation's
            // next message tries again and a claim meanwhile reads PostgreSQL. A
            // Redis error is one like any other (the message is appended all the
            // same, and the flag stays).
            match self
                .store
                .recent_history(conversation, self.redis_batches.policy().history_limit)
                .await
            {
                Ok(rows) => {
                    let added = self.redis_batches.hydrate(conversation, &rows).await?;
                    tracing::info!(rows = rows.len(), added, "new session hydrated");
                    self.restore_mode(conversation, &outcome).await;
                }
                Err(error) => {
                    tracing::warn!(%error, "history not hydrated; the next message tries again")
                }
            }
        }
        if outcome.paused {
            tracing::info!("message added to history only: a human agent has the conversation");
        } else if outcome.deadline_ms > 0 {
            tracing::info!(
                deadline_ms = outcome.deadline_ms,
                batch_len = outcome.batch_len,
                "message appended to batch"
            );
            self.wake.due_at(outcome.deadline_ms);
        } else {
            tracing::info!("message added to history only");
        }
        Ok(outcome)
    }
}
