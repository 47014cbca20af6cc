//! PostgreSQL is the source of truth: this loop finds stored messages that have no
//! reply and that Redis no longer tracks (lost in a restart without persistence, a
//! FLUSHALL, a failover, or a webhook that could not reach Redis) and batches them
//! again. append.lua's reconcile mode skips anything still in a batch or in flight,
//! and `begin_sending` keeps a message from being answered twice, so running this
//! on every instance at once is safe.
//!
//! When the Redis breaker closes after an outage, a catch-up pass runs at once,
//! without the min age: the messages stored meanwhile are young, and waiting for
//! the next scheduled pass would delay their replies by up to an interval. A
//! message whose webhook is appending it at the same moment is not batched twice:
//! append.lua skips an id already in the batch, in flight or (reconcile mode) in
//! history.
//!
//! A conversation that gets a new message does not wait for this: its next batch
//! takes the older unowned messages at commit-to-send and answers them first
//! (invariant 14, "Order after a fault" in docs/design.md). What is left here are
//! the conversations that got no new message since the loss.
//!
//! Invariant 10 of docs/design.md: Redis can be rebuilt from PostgreSQL.

use crate::batch::{AppendMode, RedisBatches, RedisHealth};
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, Unanswered};
use crate::time::UnixMs;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Messages looked at per pass.
const PAGE: i64 = 1000;

/// Asked between the steps of a pass: false stops it there (shutdown).
pub type GoOn<'a> = dyn Fn() -> bool + Sync + 'a;

/// The reconciler of one process.
pub struct Reconciler {
    store: Store,
    redis_batches: RedisBatches,
    ingest: Ingest,
    min_age: Duration,
    interval: Duration,
    metrics: Arc<Metrics>,
    redis: Arc<RedisHealth>,
}

impl Reconciler {
    /// Messages younger than `min_age` are left to the normal flow; `redis`'s
    /// closing starts a catch-up pass.
    pub fn new(
        store: Store,
        redis_batches: RedisBatches,
        ingest: Ingest,
        min_age: Duration,
        interval: Duration,
        metrics: Arc<Metrics>,
        redis: Arc<RedisHealth>,
    ) -> Self {
        Self {
            store,
            redis_batches,
            ingest,
            min_age,
            interval,
            metrics,
            redis,
        }
    }

    /// One pass: returns how many messages were batched again or batches put back.
    ///
    /// After Redis lost a large backlog a pass takes a while (one script call per
    /// message), and shutdown waits for the reconciler: so `go_on` is asked before
    /// each page, message and batch, never in the middle of one (an append without
    /// its hydrate would leave the history partial). What is left waits for the
    /// next pass, on this instance or another.
    pub async fn reconcile_once(&self, go_on: &GoOn<'_>) -> Result<usize, StoreError> {
        self.pass(self.min_age, go_on).await
    }

    /// The pass that follows a Redis outage: every unanswered message, however
    /// young (see the module doc).
    pub async fn catch_up(&self, go_on: &GoOn<'_>) -> Result<usize, StoreError> {
        self.pass(Duration::ZERO, go_on).await
    }

    async fn pass(&self, min_age: Duration, go_on: &GoOn<'_>) -> Result<usize, StoreError> {
        let mut rebatched = 0;
        let mut after = None;
        loop {
            if !go_on() {
                break;
            }
            let page = self.store.unanswered(min_age, after.as_ref(), PAGE).await?;
            let full = page.len() as i64 == PAGE;
            after = page.last().cloned().or(after);
            let Some(n) = self.rebatch(page, go_on).await else {
                break;
            };
            rebatched += n;
            if !full {
                break;
            }
        }
        if rebatched > 0 {
            self.metrics
                .add("lull_messages_reconciled_total", &[], rebatched as u64);
        }
        // Batches keep the min age even in a catch-up: one younger may be a live
        // worker's, sending right now.
        Ok(rebatched + self.restore_owners(go_on).await?)
    }

    /// Batches that were being sent (or generated again) when Redis lost its data:
    /// their messages belong to them in PostgreSQL (so the pass above skips them),
    /// but nothing in Redis would resume them. Put each back in flight; restore.lua
    /// leaves alone any that Redis still tracks (a live worker, a batch waiting for
    /// its claim).
    async fn restore_owners(&self, go_on: &GoOn<'_>) -> Result<usize, StoreError> {
        let mut restored = 0;
        if !go_on() {
            return Ok(restored);
        }
        for stale in self.store.stale_owners(self.min_age, PAGE).await? {
            if !go_on() {
                break;
            }
            let span = tracing::info_span!(
                "reconcile",
                channel = stale.conversation.channel.as_str(),
                conversation = %stale.conversation,
                batch_id = %stale.batch_id,
            );
            match self
                .redis_batches
                .restore(
                    &stale.conversation,
                    &stale.batch_id,
                    stale.started_ms,
                    &stale.entries,
                    UnixMs::now(),
                )
                .await
            {
                Ok(true) => {
                    restored += 1;
                    span.in_scope(|| {
                        tracing::warn!(
                            "batch that owned messages when Redis lost it put back to be resumed"
                        )
                    });
                }
                Ok(false) => {}
                // Redis is down: the next pass tries again.
                Err(error) => {
                    span.in_scope(
                        || tracing::warn!(%error, "batch not put back; Redis unavailable"),
                    );
                    break;
                }
            }
        }
        if restored > 0 {
            self.metrics
                .add("lull_batches_restored_total", &[], restored as u64);
        }
        Ok(restored)
    }

    /// Appends each message in reconcile mode; `None` when Redis is down (the next
    /// pass tries again). Stops early when `go_on` says so.
    async fn rebatch(&self, page: Vec<Unanswered>, go_on: &GoOn<'_>) -> Option<usize> {
        let mut rebatched = 0;
        for message in page {
            if !go_on() {
                break;
            }
            let mode = AppendMode::for_kind(message.entry.kind, self.redis_batches.policy());
            let span = tracing::info_span!(
                "reconcile",
                channel = message.conversation.channel.as_str(),
                conversation = %message.conversation,
                message_id = %message.entry.external_id,
            );
            match self
                .ingest
                .batch(&message.conversation, &message.entry, mode, true)
                .instrument(span.clone())
                .await
            {
                Ok(outcome) if !outcome.tracked => {
                    rebatched += 1;
                    span.in_scope(|| {
                        tracing::warn!(
                            db_id = message.entry.id,
                            "stored message was not batched; batched again"
                        )
                    });
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        Some(rebatched)
    }

    /// Runs a pass at start and every interval until `stop`, and a catch-up pass
    /// as soon as the Redis breaker closes. No pass runs while it is open.
    pub async fn run(self, stop: CancellationToken) {
        let mut catching_up = false;
        loop {
            if !self.redis.is_open() {
                let go_on = || !stop.is_cancelled();
                let result = if catching_up {
                    self.catch_up(&go_on).await
                } else {
                    self.reconcile_once(&go_on).await
                };
                match result {
                    Ok(n) if catching_up => {
                        tracing::info!(batched = n, "caught up after the Redis outage")
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "reconcile pass failed"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => catching_up = false,
                _ = self.redis.recovered() => catching_up = true,
                _ = stop.cancelled() => return,
            }
        }
    }
}
