//! `lull loadtest claims`: lull's Lua scripts alone (no PostgreSQL, no HTTP) under
//! many concurrent claimers that die at random, checked for exactly-once.
//!
//! Redis state: every key lives under a prefix of this run's own,
//! `loadtest:<random>:`, in lull's layout ([`crate::batch::KeySpace`]), and is
//! deleted at the end (SCAN + UNLINK, never FLUSHDB: the Redis may be shared).
//!
//! Seeding appends `--messages` messages to each of `--conversations` conversations
//! with a zero window, so all are due at once, and to `--waiting` more with a `now`
//! ten years ahead: append.lua takes `now` from its caller, so their deadline is
//! ten years out and they sit on the agenda without ever being due, which shows
//! that a claim's cost does not grow with the backlog. Then `--claimers` tasks loop:
//! fetch due members, claim each, and either ack it or, with `--death-rate`,
//! "die": drop the claim without ack, so its lease runs out and another claimer
//! resumes the batch. Each ack that succeeds records the ids it answered; at the
//! end every seeded id must have been answered exactly once.

mod ledger;
mod redis;

pub use ledger::ClaimsReport;

use super::report::{self, Progress};
use super::{ClaimsArgs, LoadtestError, at_least_one};
use crate::batch::{AckOutcome, BatchError, ClaimOutcome, Policy, RedisBatches};
use crate::message::{ChannelKind, Conversation, Direction, Entry, MessageKind};
use crate::time::{UnixMs, now_ms};
use futures::{StreamExt, TryStreamExt};
use ledger::{Ledger, Seeding};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Appends in flight while seeding (fred pipelines them on its connections).
const SEED_CONCURRENCY: usize = 256;
/// How far ahead the waiting conversations are due.
const FAR_FUTURE_MS: i64 = 10 * 365 * 24 * 3600 * 1000;
/// Our account id in every seeded conversation.
const ACCOUNT: &str = "loadtest";

/// Seeds, claims until every message is acked (or nothing moves for a while),
/// checks, and deletes the run's keys whatever happened.
pub async fn run(args: &ClaimsArgs) -> Result<ClaimsReport, LoadtestError> {
    at_least_one("conversations", args.conversations.into())?;
    at_least_one("messages", args.messages.into())?;
    at_least_one("claimers", args.claimers as u64)?;
    at_least_one("batch", args.batch.into())?;
    at_least_one("lease-ms", args.lease_ms)?;
    if !(0.0..1.0).contains(&args.death_rate) {
        return Err(LoadtestError::Invalid {
            flag: "death-rate",
            reason: format!("{} is not a probability below 1", args.death_rate),
        });
    }
    let cluster = fred::types::config::Config::from_url(&args.redis_url)
        .map_err(BatchError::from)?
        .server
        .is_clustered();
    let shards = args.shards.unwrap_or(if cluster { 4 } else { 1 }).max(1);
    let prefix = format!("loadtest:{:016x}:", rand::random::<u64>());
    let policy = Policy {
        // Due the moment they are appended.
        window: Duration::ZERO,
        max_wait: Duration::from_secs(120),
        max_messages: 50,
        choice_grace: Duration::ZERO,
        // Keys left behind by a killed run expire on their own.
        ttl: Duration::from_secs(3600),
        history_limit: 200,
        lease: Duration::from_millis(args.lease_ms),
        reactions_trigger: false,
    };
    let pool_size = args.claimers.clamp(1, 8);
    let timeout = Duration::from_secs(5);
    let redis_batches =
        RedisBatches::connect(&args.redis_url, pool_size, timeout, &prefix, shards, policy).await?;
    let result = async {
        // connect() tolerates a Redis that is down (the service waits for it); a
        // load test should say so at once instead.
        redis_batches.ping().await?;
        load(args, &redis_batches, cluster).await
    }
    .await;
    let cleanup = crate::batch::cleanup::delete_keys(redis_batches.pool().next(), &prefix).await;
    redis_batches.quit().await;
    let report = result?;
    cleanup?;
    Ok(report)
}

async fn load(
    args: &ClaimsArgs,
    redis_batches: &RedisBatches,
    cluster: bool,
) -> Result<ClaimsReport, LoadtestError> {
    let shards = redis_batches.keys().shards();
    let memory_before = redis::used_memory(redis_batches).await?;
    let seed_start = Instant::now();
    seed(args, redis_batches).await?;
    let seed_time = seed_start.elapsed();
    let memory_after = redis::used_memory(redis_batches).await?;
    let seeded_conversations = u64::from(args.conversations) + u64::from(args.waiting);

    // The ledger's clock (for the stall check) starts with the claim phase.
    let ledger = Arc::new(Ledger::new(args));
    let claim_start = Instant::now();
    let progress = claim_progress(ledger.clone());
    let claimers: Vec<_> = (0..args.claimers)
        .map(|index| {
            let claimer = Claimer {
                redis_batches: redis_batches.clone(),
                ledger: ledger.clone(),
                shards,
                batch: i64::from(args.batch),
                claimers: args.claimers as i64,
                death_rate: args.death_rate,
                lease: Duration::from_millis(args.lease_ms),
            };
            tokio::spawn(claimer.run(index))
        })
        .collect();
    let mut latencies = Vec::new();
    for claimer in claimers {
        if let Ok(mut claimed) = claimer.await {
            latencies.append(&mut claimed);
        }
    }
    let claim_time = claim_start.elapsed();
    drop(progress);

    let total_appends = seeded_conversations * u64::from(args.messages);
    let seeding = Seeding {
        appends_per_second: report::per_second(total_appends, seed_time),
        memory_bytes_per_conversation: (memory_after - memory_before) as f64
            / seeded_conversations as f64,
    };
    Ok(ledger.report(args, redis_batches, cluster, seeding, latencies, claim_time))
}

/// Appends every seeded message, conversations concurrently, each one's messages
/// in order.
async fn seed(args: &ClaimsArgs, redis_batches: &RedisBatches) -> Result<(), BatchError> {
    let appended = Arc::new(AtomicU64::new(0));
    let total = u64::from(args.conversations + args.waiting) * u64::from(args.messages);
    let counter = appended.clone();
    let _progress = Progress::start("claims seed", move |_| {
        format!(
            "{} of {total} messages appended",
            counter.load(Ordering::Relaxed)
        )
    });
    futures::stream::iter(0..args.conversations + args.waiting)
        .map(Ok)
        .try_for_each_concurrent(SEED_CONCURRENCY, |index| {
            let appended = appended.clone();
            async move {
                let waiting = index >= args.conversations;
                let now = if waiting {
                    now_ms() + FAR_FUTURE_MS
                } else {
                    now_ms()
                };
                let conversation =
                    Conversation::new(ChannelKind::WhatsApp, ACCOUNT, index.to_string());
                for m in 0..args.messages {
                    let id = i64::from(index) * i64::from(args.messages) + i64::from(m) + 1;
                    let entry = Entry {
                        id,
                        ts: now + i64::from(m),
                        dir: Direction::Inbound,
                        kind: MessageKind::Text,
                        external_id: format!("wamid.loadtest.{id}"),
                        text: format!("message {}", m + 1),
                    };
                    let outcome = redis_batches
                        .append(
                            &conversation,
                            &entry,
                            crate::batch::AppendMode::Message,
                            false,
                            now,
                        )
                        .await?;
                    // As ingest does, for a conversation the database knows nothing
                    // more of: so a waiting conversation holds what it holds in
                    // production.
                    if outcome.hydrate {
                        redis_batches.hydrate(&conversation, &[]).await?;
                    }
                    appended.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
        })
        .await
}

/// One claimer task.
struct Claimer {
    redis_batches: RedisBatches,
    ledger: Arc<Ledger>,
    shards: u16,
    batch: i64,
    claimers: i64,
    death_rate: f64,
    lease: Duration,
}

impl Claimer {
    /// Claims until every message is acked or nothing moves; returns the round trip
    /// of every claim call it made.
    async fn run(self, index: usize) -> Vec<Duration> {
        let mut rng = StdRng::from_os_rng();
        let mut latencies = Vec::new();
        // A dead claim comes back after its lease: give it ample time to.
        let stall = (self.lease * 20).max(Duration::from_secs(10));
        // Nothing due: the rest are held by live claimers or dead ones' leases.
        let idle = (self.lease / 20).clamp(Duration::from_millis(1), Duration::from_millis(20));
        // Claimers start on different shards so they do not all queue on one.
        let mut shard = (index % usize::from(self.shards)) as u16;
        while !self.ledger.finished() && !self.ledger.stalled(stall) {
            let mut found = false;
            for _ in 0..self.shards {
                shard = (shard + 1) % self.shards;
                // Every claimer sees the same earliest members: each takes a window
                // of its own among them (as separate lull instances would collide
                // only where their windows overlap), in an order of its own.
                let ahead = self.batch * self.claimers;
                let due = match self.redis_batches.due(shard, now_ms(), ahead).await {
                    Ok(due) => due,
                    Err(error) => {
                        self.ledger.error(format!("due: {error}"));
                        continue;
                    }
                };
                found |= !due.is_empty();
                let windows = due.len().div_ceil(self.batch as usize).max(1);
                let mut due: Vec<String> = due
                    .chunks(self.batch as usize)
                    .nth(index % windows)
                    .map(<[String]>::to_vec)
                    .unwrap_or_default();
                due.shuffle(&mut rng);
                for member in due {
                    self.claim(&member, &mut rng, &mut latencies).await;
                }
            }
            if !found {
                tokio::time::sleep(idle).await;
            }
        }
        latencies
    }

    async fn claim(&self, member: &str, rng: &mut StdRng, latencies: &mut Vec<Duration>) {
        let ledger = &self.ledger;
        let token = crate::batch::ClaimToken::from(format!("{:032x}", rng.random::<u128>()));
        let start = Instant::now();
        let outcome = self
            .redis_batches
            .claim(member, &token, UnixMs::now())
            .await;
        latencies.push(start.elapsed());
        let claim = match outcome {
            Ok(ClaimOutcome::Claimed(claim)) => claim,
            Ok(_) => {
                ledger.missed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(error) => return ledger.error(format!("claim {member}: {error}")),
        };
        ledger.claims.fetch_add(1, Ordering::Relaxed);
        if claim.claims > 1 {
            ledger.resumed.fetch_add(1, Ordering::Relaxed);
        }
        if rng.random_bool(self.death_rate) {
            // Dies holding the claim: no ack, no requeue; the lease runs out.
            ledger.deaths.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let keys = self.redis_batches.keys().for_member(member);
        match self
            .redis_batches
            .ack(&keys, &claim.token, &[], UnixMs::now())
            .await
        {
            Ok(AckOutcome::Stale) => {
                // Too slow: the lease ran out and the batch is someone else's now.
                ledger.stale_acks.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => ledger.record_ack(&claim.entries),
            Err(error) => ledger.error(format!("ack {member}: {error}")),
        }
    }
}

/// About once a second: messages acked, claims + acks over the last second, deaths.
fn claim_progress(ledger: Arc<Ledger>) -> Progress {
    let mut last = 0;
    Progress::start("claims", move |_| {
        let done = ledger.claims.load(Ordering::Relaxed) + ledger.acks.load(Ordering::Relaxed);
        let rate = done - last;
        last = done;
        format!(
            "{} of {} messages acked, {rate} claims + acks/s, {} deaths, {} resumed",
            ledger.distinct.load(Ordering::Relaxed),
            ledger.due_ids,
            ledger.deaths.load(Ordering::Relaxed),
            ledger.resumed.load(Ordering::Relaxed),
        )
    })
}
