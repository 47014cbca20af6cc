//! Drain: how fast a backlog of due conversations is answered, each exactly once.
//!
//! Reproduce (PostgreSQL and Redis on localhost; a minute or two once built):
//!
//! ```text
//! cargo bench --bench drain
//! ```
//!
//! The app runs in-process (the usual environment variables set WORKER_CONCURRENCY,
//! DATABASE_POOL_SIZE, TYPING_INDICATOR...) on a database of its own, a Redis prefix
//! of its own and a local fake Graph API, with BATCH_WINDOW_SECONDS = 1 (the heartbeat every half window, as in production).
//! `DRAIN_CONVERSATIONS` (default 100,000) conversations each get one message through
//! the webhook's own path (grouped INSERT, then append.lua) with 256 in flight; once
//! all are due, the claim loop starts and runs until the fake Graph API has had one
//! reply per conversation and PostgreSQL records every batch sent. Then it checks
//! exactly once, from both sides: one send per recipient, every message answered by
//! exactly one sent batch.
//!
//! It also prints the CPU time per reply of this process, PostgreSQL and Redis
//! (see `common/cpu.rs`): the machine's speed drifts, CPU time per reply much less.

mod common;

use common::{Bench, PHONE_ID, row, wait_until};
use lull::message::{ChannelKind, Conversation, InboundMessage, MessageKind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    if !common::invoked_by_cargo_bench("drain") {
        return;
    }
    let conversations = common::setting("DRAIN_CONVERSATIONS", 100_000).max(1);
    let bench = Bench::new();
    let graph = common::fake_graph().await;
    let mut config = bench.config(&graph.base);
    let window = Duration::from_secs(1);
    config.batch_window_seconds = window.as_secs_f64();
    let (concurrency, pool_size) = (config.worker_concurrency, config.database_pool_size);
    let app = common::build(config).await;
    let store = app.store().clone();

    let seeding = Instant::now();
    let ingest = app.ingest();
    let next = Arc::new(AtomicU64::new(0));
    let ts = lull::time::now_ms() - 60_000;
    let mut seeders = JoinSet::new();
    for _ in 0..256 {
        let (ingest, next) = (ingest.clone(), next.clone());
        seeders.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= conversations {
                    return;
                }
                let message = InboundMessage {
                    conversation: Conversation::new(
                        ChannelKind::WhatsApp,
                        PHONE_ID,
                        format!("1556{i:07}"),
                    ),
                    external_id: format!("wamid.drain.{i}"),
                    kind: MessageKind::Text,
                    text: "where is my order?".into(),
                    timestamp_ms: ts,
                    contact_name: None,
                    payload: serde_json::json!({"id": format!("wamid.drain.{i}")}),
                };
                ingest.ingest(vec![message]).await.expect("seeded");
            }
        });
    }
    seeders.join_all().await;
    let seeded = seeding.elapsed();
    tokio::time::sleep(window).await;

    let (stop, hand_back) = (CancellationToken::new(), CancellationToken::new());
    let claim_loop_task = app.claim_loop();
    let draining = Instant::now();
    let cpu_before = common::cpu::Cpu::now();
    let claim_loop = tokio::spawn(claim_loop_task.run(stop.clone(), hand_back.clone()));
    wait_until(
        "one reply per conversation",
        Duration::from_secs(900),
        || async { graph.accepted_replies() >= conversations },
    )
    .await;
    let sent = draining.elapsed();
    wait_until(
        "every batch recorded sent",
        Duration::from_secs(120),
        || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM reply_batches WHERE status = 'sent'")
                .fetch_one(store.pool())
                .await
                .is_ok_and(|n| n as u64 >= conversations)
        },
    )
    .await;
    let recorded = draining.elapsed();
    let cpu = common::cpu::Cpu::now().since(&cpu_before);
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), claim_loop).await;

    let sends = graph.reply_times();
    let twice = sends.values().filter(|times| times.len() > 1).count();
    let (unanswered, answered_twice, batches): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM conversation_messages
                 WHERE direction = 'in' AND batch_id IS NULL),
                (SELECT count(*) FROM (SELECT contact_id FROM reply_batches WHERE status = 'sent'
                                       GROUP BY contact_id HAVING count(*) > 1) c),
                (SELECT count(*) FROM reply_batches)",
    )
    .fetch_one(store.pool())
    .await
    .expect("exactly-once query");

    // Where the time of a batch goes, from PostgreSQL's records (p50, p99, ms).
    let phases: Vec<(String, f64, f64)> = sqlx::query_as(
        "SELECT phase, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms),
                percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)
         FROM (SELECT unnest(ARRAY['due -> claimed', 'claimed -> committed', 'committed -> recorded']) AS phase,
                      unnest(ARRAY[claimed_at - due_at, generated_at - claimed_at, sent_at - generated_at])
                          AS span
               FROM reply_batches WHERE status = 'sent') spans,
              LATERAL (SELECT (extract(epoch FROM span) * 1000)::float8 AS ms) m
         GROUP BY phase ORDER BY min(ms)",
    )
    .fetch_all(store.pool())
    .await
    .expect("phase query");

    println!(
        "drain: {conversations} due conversations, WORKER_CONCURRENCY {concurrency}, DATABASE_POOL_SIZE {pool_size}"
    );
    row("seeding (s)", format!("{:.2}", seeded.as_secs_f64()));
    row("all sent (s)", format!("{:.2}", sent.as_secs_f64()));
    row("all recorded (s)", format!("{:.2}", recorded.as_secs_f64()));
    row(
        "replies/s",
        format!("{:.0}", conversations as f64 / recorded.as_secs_f64()),
    );
    for (phase, p50, p99) in &phases {
        row(
            &format!("{phase} p50/p99 (ms)"),
            format!("{p50:.0} / {p99:.0}"),
        );
    }
    cpu.print_per(conversations, "reply");
    common::group_sizes(&app, &["opening", "sending", "sent"]);
    row("recipients answered", sends.len().to_string());
    row("recipients answered twice", twice.to_string());
    row("batches", batches.to_string());
    row("messages unanswered (db)", unanswered.to_string());
    row("answered twice (db)", answered_twice.to_string());

    app.redis_batches().quit().await;
    store.pool().close().await;
    bench.cleanup().await;
    assert!(
        sends.len() as u64 == conversations && twice == 0 && unanswered == 0 && answered_twice == 0,
        "exactly-once violated"
    );
}
