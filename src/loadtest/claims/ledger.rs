//! The exactly-once ledger: how often each seeded message id was acked, the claim
//! phase's counters, and the [`ClaimsReport`] they add up to.

use super::super::report::{self, Cell, Examples, Latency, Summary, Verdict};
use crate::batch::RedisBatches;
use crate::loadtest::ClaimsArgs;
use crate::message::Entry;
use serde::Serialize;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The outcome of `lull loadtest claims`.
#[derive(Debug, Clone, Serialize)]
pub struct ClaimsReport {
    /// `standalone` or `cluster`.
    pub redis: &'static str,
    /// The run's Redis key prefix (its keys are deleted at the end).
    pub key_prefix: String,
    /// Agenda shards.
    pub shards: u16,
    /// Conversations seeded due.
    pub conversations: u32,
    /// Messages per conversation.
    pub messages_per_conversation: u32,
    /// Conversations kept waiting, never due.
    pub waiting: u32,
    /// Concurrent claimers.
    pub claimers: usize,
    /// Messages seeded due (each must be acked once).
    pub seeded_messages: u64,
    /// Appends per second while seeding.
    pub appends_per_second: f64,
    /// Growth of Redis `used_memory` while seeding, per conversation seeded (due
    /// and waiting alike); approximate on a Redis other clients write to.
    pub memory_bytes_per_conversation: f64,
    /// Successful claims.
    pub claims: u64,
    /// Claims that resumed a batch a dead claimer held (`claims` > 1).
    pub resumed: u64,
    /// Claimers that died holding a claim.
    pub deaths: u64,
    /// Successful acks.
    pub acks: u64,
    /// Acks refused because the lease had run out and the batch moved on.
    pub stale_acks: u64,
    /// Claim calls that found the conversation taken, locked or empty.
    pub missed_claims: u64,
    /// Seeded messages acked at least once.
    pub acked_messages: u64,
    /// Seeded messages acked more than once.
    pub acked_twice: u64,
    /// Seeded messages never acked.
    pub never_acked: u64,
    /// Messages of the waiting conversations that were claimed and acked anyway.
    pub waiting_acked: u64,
    /// Length of the claim phase, seconds.
    pub claim_seconds: f64,
    /// Successful claims plus acks per second of the claim phase.
    pub claims_per_second: f64,
    /// Round trip of a claim.lua call, every outcome.
    pub claim_latency_ms: Latency,
    /// Redis calls that failed during the claim phase.
    pub errors: u64,
    /// What went wrong.
    pub violations: Vec<String>,
    /// Pass when there is no violation.
    pub verdict: Verdict,
}

impl Summary for ClaimsReport {
    fn title(&self) -> &'static str {
        "lull loadtest claims"
    }

    fn rows(&self) -> Vec<(&'static str, Cell)> {
        vec![
            (
                "redis",
                Cell::Text(format!("{}, {} shards", self.redis, self.shards)),
            ),
            (
                "conversations",
                Cell::Text(format!(
                    "{} due × {} messages, {} waiting, {} claimers",
                    self.conversations, self.messages_per_conversation, self.waiting, self.claimers
                )),
            ),
            ("seeded messages", Cell::Count(self.seeded_messages)),
            ("appends/s", Cell::Number(self.appends_per_second)),
            (
                "memory per conversation",
                Cell::Text(format!("{:.0} bytes", self.memory_bytes_per_conversation)),
            ),
            ("claims", Cell::Count(self.claims)),
            ("acks", Cell::Count(self.acks)),
            ("claims + acks/s", Cell::Number(self.claims_per_second)),
            ("claim latency", Cell::Latency(self.claim_latency_ms)),
            ("deaths", Cell::Count(self.deaths)),
            ("resumed", Cell::Count(self.resumed)),
            ("stale acks", Cell::Count(self.stale_acks)),
            ("missed claims", Cell::Count(self.missed_claims)),
            ("acked messages", Cell::Count(self.acked_messages)),
            ("acked twice", Cell::Count(self.acked_twice)),
            ("never acked", Cell::Count(self.never_acked)),
            ("errors", Cell::Count(self.errors)),
            (
                "claim seconds",
                Cell::Text(format!("{:.2}", self.claim_seconds)),
            ),
        ]
    }

    fn violations(&self) -> &[String] {
        &self.violations
    }
}

/// What seeding measured.
pub(super) struct Seeding {
    /// Appends per second.
    pub appends_per_second: f64,
    /// Growth of `used_memory` per conversation seeded.
    pub memory_bytes_per_conversation: f64,
}

/// How often each message id was acked, and the claim phase's counters.
pub(super) struct Ledger {
    /// Index `id - 1`: seeded ids first, then the waiting conversations' ids.
    acked: Vec<AtomicU32>,
    /// Seeded (due) ids; those above are the waiting conversations'.
    pub(super) due_ids: u64,
    /// Due ids acked at least once.
    pub(super) distinct: AtomicU64,
    /// When the claim phase started.
    start: Instant,
    /// Ms into the phase of the last id acked for the first time.
    last_progress_ms: AtomicU64,
    pub(super) claims: AtomicU64,
    pub(super) resumed: AtomicU64,
    pub(super) deaths: AtomicU64,
    pub(super) acks: AtomicU64,
    pub(super) stale_acks: AtomicU64,
    pub(super) missed: AtomicU64,
    errors: AtomicU64,
    error_examples: Mutex<Examples>,
}

impl Ledger {
    pub(super) fn new(args: &ClaimsArgs) -> Self {
        let per = u64::from(args.messages);
        let all = (u64::from(args.conversations) + u64::from(args.waiting)) * per;
        Self {
            acked: (0..all).map(|_| AtomicU32::new(0)).collect(),
            due_ids: u64::from(args.conversations) * per,
            distinct: AtomicU64::new(0),
            start: Instant::now(),
            last_progress_ms: AtomicU64::new(0),
            claims: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
            deaths: AtomicU64::new(0),
            acks: AtomicU64::new(0),
            stale_acks: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            error_examples: Mutex::new(Examples::default()),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Every due message acked.
    pub(super) fn finished(&self) -> bool {
        self.distinct.load(Ordering::Relaxed) >= self.due_ids
    }

    /// No new message acked for `stall`: what is left will not be (lost, or
    /// stuck), so the claimers stop and the report says which.
    pub(super) fn stalled(&self, stall: Duration) -> bool {
        let last = self.last_progress_ms.load(Ordering::Relaxed);
        self.elapsed_ms().saturating_sub(last)
            > u64::try_from(stall.as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn record_ack(&self, entries: &[Entry]) {
        self.acks.fetch_add(1, Ordering::Relaxed);
        for entry in entries {
            let slot = usize::try_from(entry.id - 1)
                .ok()
                .and_then(|i| self.acked.get(i));
            let Some(slot) = slot else {
                self.error(format!("acked an id never seeded: {}", entry.id));
                continue;
            };
            let before = slot.fetch_add(1, Ordering::Relaxed);
            if before == 0 && (entry.id as u64) <= self.due_ids {
                self.distinct.fetch_add(1, Ordering::Relaxed);
                self.last_progress_ms
                    .store(self.elapsed_ms(), Ordering::Relaxed);
            }
        }
    }

    pub(super) fn error(&self, example: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.error_examples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .note(|| example);
    }

    /// The report, once the claimers have stopped.
    pub(super) fn report(
        &self,
        args: &ClaimsArgs,
        redis_batches: &RedisBatches,
        cluster: bool,
        seeding: Seeding,
        latencies: Vec<Duration>,
        claim_time: Duration,
    ) -> ClaimsReport {
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (mut twice, mut never, mut waiting_acked) = (0, 0, 0);
        let (mut twice_examples, mut never_examples) = (Examples::default(), Examples::default());
        let per = u64::from(args.messages);
        // Ids are conversation × messages + message + 1: name the conversation.
        let name = |id: u64| format!("id {id} of conversation {}", (id - 1) / per);
        for (i, slot) in self.acked.iter().enumerate() {
            let id = i as u64 + 1;
            let n = slot.load(Ordering::Relaxed);
            if id > self.due_ids {
                waiting_acked += u64::from(n > 0);
            } else if n == 0 {
                never += 1;
                never_examples.note(|| name(id));
            } else if n > 1 {
                twice += 1;
                twice_examples.note(|| format!("{} acked {n} times", name(id)));
            }
        }
        let errors = count(&self.errors);
        let mut violations = Vec::new();
        report::violation(
            &mut violations,
            twice,
            "messages were acked more than once",
            twice_examples.as_slice(),
        );
        report::violation(
            &mut violations,
            never,
            "messages were never acked",
            never_examples.as_slice(),
        );
        report::violation(
            &mut violations,
            waiting_acked,
            "messages of waiting conversations were acked before they were due",
            &[],
        );
        let error_examples = self
            .error_examples
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        report::violation(
            &mut violations,
            errors,
            "Redis calls failed",
            error_examples.as_slice(),
        );
        let (claims, acks) = (count(&self.claims), count(&self.acks));
        ClaimsReport {
            redis: if cluster { "cluster" } else { "standalone" },
            key_prefix: redis_batches.keys().prefix().to_owned(),
            shards: redis_batches.keys().shards(),
            conversations: args.conversations,
            messages_per_conversation: args.messages,
            waiting: args.waiting,
            claimers: args.claimers,
            seeded_messages: self.due_ids,
            appends_per_second: seeding.appends_per_second,
            memory_bytes_per_conversation: seeding.memory_bytes_per_conversation,
            claims,
            resumed: count(&self.resumed),
            deaths: count(&self.deaths),
            acks,
            stale_acks: count(&self.stale_acks),
            missed_claims: count(&self.missed),
            acked_messages: count(&self.distinct),
            acked_twice: twice,
            never_acked: never,
            waiting_acked,
            claim_seconds: claim_time.as_secs_f64(),
            claims_per_second: report::per_second(claims + acks, claim_time),
            claim_latency_ms: Latency::of(latencies),
            errors,
            verdict: Verdict::of(&violations),
            violations,
        }
    }
}
