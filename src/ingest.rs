//! A parsed webhook's messages: PostgreSQL first, then their Redis batch.
//!
//! The platform gets its 200 only once the rows are committed; a duplicate (the
//! platform retrying) is committed once and batched once, because only a new row
//! goes on to Redis. A Redis failure does not fail the request: the row is safe and
//! the reconciler batches it when Redis is back.
//!
//! Invariant 1 of docs/design.md: a message acknowledged to the platform is in PostgreSQL.

use crate::batch::{AppendMode, AppendOutcome, BatchError, RedisBatches, RedisHealth};
use crate::claim_loop::Wake;
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
            if redis_failed {
                // One timeout per request is enough: the platform must get its answer
                // well within its own timeout, and the reconciler batches the rest.
                continue;
            }
            let mode = AppendMode::for_kind(entry.kind, policy);
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
    /// tracks. Errors are counted and logged once per outage.
    pub async fn batch(
        &self,
        conversation: &Conversation,
        entry: &Entry,
        mode: AppendMode,
        reconcile: bool,
    ) -> Result<AppendOutcome, BatchError> {
        let result = self.append(conversation, entry, mode, reconcile).await;
        match &result {
            Ok(_) => self.redis.ok(),
            Err(error) => {
                self.metrics.inc("lull_redis_errors_total", &[]);
                self.redis.failed(error);
            }
        }
        result
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
                }
                Err(error) => {
                    tracing::warn!(%error, "history not hydrated; the next message tries again")
                }
            }
        }
        if outcome.deadline_ms > 0 {
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
