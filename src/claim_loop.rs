//! The claim loop: claims due conversations and runs a [`Worker`] on each, with
//! bounded concurrency. It sleeps until the earliest deadline on the agenda, never
//! longer than SCANNER_INTERVAL, and wakes at once when this instance pushes a
//! nearer deadline (see [`Wake`]) or, when it was full, once finishing batches have
//! freed enough slots to be worth a claim round (`refill`).
//!
//! Invariant 7 of docs/design.md: a due batch is claimed within about one SCANNER_INTERVAL.

use crate::batch::{BatchError, ClaimOutcome, ClaimToken, RedisBatches, RedisHealth};
use crate::message::Conversation;
use crate::time::{UnixMs, now_ms};
use crate::worker::{BatchOutcome, Worker};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Wakes the claim loop early when a nearer deadline appears.
#[derive(Debug)]
pub struct Wake {
    planned_ms: AtomicI64,
    notify: Notify,
}

impl Default for Wake {
    fn default() -> Self {
        Self {
            planned_ms: AtomicI64::new(i64::MAX),
            notify: Notify::new(),
        }
    }
}

impl Wake {
    /// A batch is due at `due_ms`: wake the loop if it planned to sleep past it.
    pub fn due_at(&self, due_ms: i64) {
        if due_ms < self.planned_ms.load(Ordering::SeqCst) {
            self.notify.notify_one();
        }
    }

    /// Wake the loop now (a worker slot was freed).
    pub fn now(&self) {
        self.notify.notify_one();
    }

    async fn sleep_until(&self, wake_ms: i64, stop: &CancellationToken) {
        self.planned_ms.store(wake_ms, Ordering::SeqCst);
        let wait = Duration::from_millis((wake_ms - now_ms()).max(0) as u64);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = self.notify.notified() => {}
            _ = stop.cancelled() => {}
        }
        self.planned_ms.store(i64::MAX, Ordering::SeqCst);
    }
}

/// The claim loop of one process.
pub struct ClaimLoop {
    redis_batches: RedisBatches,
    worker: Arc<Worker>,
    slots: Arc<Semaphore>,
    concurrency: usize,
    /// Free slots that wake a full loop: under a backlog, claiming one conversation
    /// per finished batch would cost a round trip per batch; waiting for a few
    /// together claims them in one. A due conversation never waits longer than the
    /// scan interval for them.
    refill: usize,
    interval: Duration,
    wake: Arc<Wake>,
    redis: Arc<RedisHealth>,
}

/// One batch this claim loop claimed, running.
pub struct Running {
    /// The conversation.
    pub conversation: Conversation,
    /// Resolves to how the batch ended.
    pub task: JoinHandle<BatchOutcome>,
}

impl ClaimLoop {
    /// A claim loop running at most `concurrency` batches at once.
    pub fn new(
        redis_batches: RedisBatches,
        worker: Arc<Worker>,
        concurrency: usize,
        interval: Duration,
        wake: Arc<Wake>,
        redis: Arc<RedisHealth>,
    ) -> Self {
        Self {
            redis_batches,
            worker,
            slots: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            refill: (concurrency / 16).max(1),
            interval,
            wake,
            redis,
        }
    }

    /// Claims every due conversation there is a free slot for and starts its batch.
    /// The claims of one shard go out together (one pipelined round trip), so a
    /// backlog is taken as fast as slots free up, not one round trip per batch.
    /// Returns what it started, so tests can drive the loop without sleeping.
    pub async fn claim_once(
        &self,
        hand_back: &CancellationToken,
    ) -> Result<Vec<Running>, BatchError> {
        let mut started = Vec::new();
        // A push back that fails ends the pass, but only once every claim already
        // made is running: a claim left behind would keep its conversation locked
        // until its lease runs out.
        let mut failure = None;
        for (shard, _) in self.redis_batches.keys().agendas() {
            if failure.is_some() {
                break;
            }
            let free = self.slots.available_permits();
            if free == 0 {
                break;
            }
            let due = self.redis_batches.due(shard, now_ms(), free as i64).await?;
            let mut wanted = Vec::with_capacity(due.len());
            for member in due {
                let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                    break;
                };
                let Some(conversation) = Conversation::parse(&member) else {
                    // Not written by lull: drop it, or the loop would find it due forever.
                    tracing::warn!(%member, "agenda member is not a conversation id; removed");
                    self.redis_batches.unschedule(shard, &member).await?;
                    continue;
                };
                if self.redis_batches.keys().shard_of(&member) != shard {
                    // Scheduled under another REDIS_SHARDS: its keys are not where this
                    // count puts them, so its claim would find nothing and it would be
                    // due here forever (a busy loop, and a full page of them starves
                    // the shard). Its messages are in PostgreSQL, unanswered: the
                    // reconciler batches them again under this count.
                    tracing::warn!(
                        %member,
                        shard,
                        "agenda member belongs to another shard count (REDIS_SHARDS changed); removed, the reconciler answers its messages"
                    );
                    self.redis_batches.unschedule(shard, &member).await?;
                    continue;
                }
                let token = ClaimToken::generate();
                wanted.push((permit, conversation, member, token));
            }
            let now = UnixMs::now();
            let outcomes = futures::future::join_all(
                wanted
                    .iter()
                    .map(|(_, _, member, token)| self.redis_batches.claim(member, token, now)),
            )
            .await;
            for ((permit, conversation, member, _), outcome) in wanted.into_iter().zip(outcomes) {
                let outcome = match outcome {
                    Ok(outcome) => outcome,
                    Err(error) => {
                        // One broken conversation (a key of the wrong type left by
                        // someone else, a reply that does not decode) must not stall
                        // the others: push it back a while and go on. If Redis itself
                        // is down the push fails too, and the pass ends.
                        tracing::error!(%member, %error, "claim failed; conversation retried later");
                        let later = now_ms() + self.redis_batches.policy().lease.as_millis() as i64;
                        if let Err(error) = self.redis_batches.postpone(shard, &member, later).await
                        {
                            failure.get_or_insert(error);
                        }
                        continue;
                    }
                };
                match outcome {
                    ClaimOutcome::Claimed(claim) => {
                        let (worker, wake, hand_back) =
                            (self.worker.clone(), self.wake.clone(), hand_back.clone());
                        let (slots, refill) = (self.slots.clone(), self.refill);
                        let conv = conversation.clone();
                        let task = tokio::spawn(async move {
                            let outcome = worker.process(conv, claim, hand_back).await;
                            drop(permit);
                            if slots.available_permits() >= refill {
                                wake.now();
                            }
                            outcome
                        });
                        started.push(Running { conversation, task });
                    }
                    ClaimOutcome::Locked { retry_at_ms } => {
                        tracing::debug!(%member, retry_at_ms, "conversation locked by a live worker");
                    }
                    ClaimOutcome::NotDue | ClaimOutcome::Empty | ClaimOutcome::Paused => {}
                }
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(started),
        }
    }

    /// When the loop should look again: the earliest agenda score, capped by the interval.
    async fn next_wake(&self) -> i64 {
        let mut wake = now_ms() + self.interval.as_millis() as i64;
        if self.slots.available_permits() == 0 {
            // Full: finishing batches wake the loop once `refill` slots are free.
            return wake;
        }
        for (shard, _) in self.redis_batches.keys().agendas() {
            match self.redis_batches.next_due(shard).await {
                Ok(Some(due)) => wake = wake.min(due),
                Ok(None) => {}
                Err(_) => return wake,
            }
        }
        wake
    }

    /// Runs until `stop` fires, then waits for running batches; `hand_back` (fired
    /// by the caller when the drain time is over) makes them give their batch back.
    pub async fn run(self, stop: CancellationToken, hand_back: CancellationToken) {
        tracing::info!(
            concurrency = self.concurrency,
            interval_ms = self.interval.as_millis() as u64,
            "claim loop started"
        );
        while !stop.is_cancelled() {
            if self.redis.is_open() {
                // Redis is down: no claim to pile up behind its timeout. The
                // catch-up's appends wake the loop once the probe closes the breaker.
                let wake = now_ms() + self.interval.as_millis() as i64;
                self.wake.sleep_until(wake, &stop).await;
                continue;
            }
            let wake = match self.claim_once(&hand_back).await {
                Ok(_) => self.next_wake().await,
                Err(error) => {
                    self.redis.failed(&error);
                    // Not before the interval: a failing Redis is not hammered.
                    now_ms() + self.interval.as_millis() as i64
                }
            };
            self.wake.sleep_until(wake, &stop).await;
        }
        tracing::info!("claim loop stopped claiming; waiting for batches in flight");
        let _ = self.slots.acquire_many(self.concurrency as u32).await;
        tracing::info!("claim loop drained");
    }
}
