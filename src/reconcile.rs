//! PostgreSQL is the source of truth: this loop finds stored messages that have no
//! reply and that Redis no longer tracks (lost in a restart without persistence, a
//! FLUSHALL, a failover, or a webhook that could not reach Redis) and batches them
//! again. append.lua's reconcile mode skips anything still in a batch or in flight,
//! and `begin_sending` keeps a message from being answered twice, so running this
//! on every instance at once is safe.
//!
//! A conversation that gets a new message does not wait for this: its next batch
//! takes the older unowned messages at commit-to-send and answers them first
//! (invariant 14, "Order after a fault" in docs/design.md). What is left here are
//! the conversations that got no new message since the loss.
//!
//! Invariant 10 of docs/design.md: Redis can be rebuilt from PostgreSQL.

use crate::batch::{AppendMode, RedisBatches};
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
}

impl Reconciler {
    /// Messages younger than `min_age` are left to the normal flow.
    pub fn new(
        store: Store,
        redis_batches: RedisBatches,
        ingest: Ingest,
        min_age: Duration,
        interval: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            redis_batches,
            ingest,
            min_age,
            interval,
            metrics,
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
        let mut rebatched = 0;
        let mut after_id = 0;
        loop {
            if !go_on() {
                break;
            }
            let page = self.store.unanswered(self.min_age, after_id, PAGE).await?;
            let full = page.len() as i64 == PAGE;
            after_id = page.last().map_or(after_id, |m| m.entry.id);
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

    /// Runs a pass at start and every interval until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            if let Err(error) = self.reconcile_once(&|| !stop.is_cancelled()).await {
                tracing::warn!(%error, "reconcile pass failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}
