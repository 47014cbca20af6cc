//! Webhook throughput, then reply throughput.
//!
//! Reproduce (PostgreSQL and Redis on localhost; a minute or two once built):
//!
//! ```text
//! cargo bench --bench ingest
//! ```
//!
//! The app is built in-process with the documented defaults (WORKER_CONCURRENCY 32,
//! DATABASE_POOL_SIZE 16, REDIS_POOL_SIZE 4, TYPING_INDICATOR on; the usual
//! environment variables change them) on a database of its own, a Redis prefix
//! of its own and a local fake Graph API, with BATCH_WINDOW_SECONDS = 0.1.
//!
//! 1. Webhooks: `INGEST_MESSAGES` (default 20,000) signed text webhooks over
//!    `INGEST_CONVERSATIONS` (default 2,000) conversations, round-robin, with
//!    `INGEST_IN_FLIGHT` (default 64) POSTs in flight, against the in-process
//!    webhook server (signature, parse, PostgreSQL insert, append.lua). The claim
//!    loop is not running yet, so this measures the webhook path alone.
//! 2. Replies: the claim loop starts with every conversation due, and runs until
//!    every message is answered (typing request + responder + send to the fake
//!    Graph API + records + ack.lua, per batch).

mod common;

use common::{Bench, post, row, signed_text, wait_until};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    if !common::invoked_by_cargo_bench("ingest") {
        return;
    }
    let messages = common::setting("INGEST_MESSAGES", 20_000);
    let conversations = common::setting("INGEST_CONVERSATIONS", 2_000).max(1);
    let in_flight = common::setting("INGEST_IN_FLIGHT", 64).max(1);
    let bench = Bench::new();
    let graph = common::fake_graph().await;
    let mut config = bench.config(&graph.url);
    config.batch_window_seconds = 0.1;
    let window = config.window().expect("window");
    let app = common::build(config).await;
    let store = app.store().clone();

    // Phase 1: the webhook server alone.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/api/whatsapp/webhook",
        listener.local_addr().expect("addr")
    );
    let stop = CancellationToken::new();
    let server = tokio::spawn(lull::http::serve(
        listener,
        app.routes(),
        stop.clone().cancelled_owned(),
        Duration::from_secs(5),
    ));
    let http = reqwest::Client::new();
    let ts = lull::time::now_ms() / 1000 - 3600;
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut clients = JoinSet::new();
    for _ in 0..in_flight {
        let (http, url, next) = (http.clone(), url.clone(), next.clone());
        clients.spawn(async move {
            loop {
                let j = next.fetch_add(1, Ordering::Relaxed);
                if j >= messages {
                    return;
                }
                let (conversation, seq) = (j % conversations, j / conversations);
                let from = format!("1555{conversation:07}");
                let body = signed_text(
                    &from,
                    &format!("wamid.ingest.{conversation}.{seq}"),
                    ts + seq as i64,
                    &format!("message {seq}"),
                );
                post(&http, &url, body).await;
            }
        });
    }
    clients.join_all().await;
    let ingest = start.elapsed();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM conversation_messages")
        .fetch_one(store.pool())
        .await
        .expect("count");

    // Phase 2: every conversation is due once the window has passed.
    tokio::time::sleep(window).await;
    let hand_back = CancellationToken::new();
    let scanner = app.scanner().expect("scanner");
    let draining = Instant::now();
    let claim_loop = tokio::spawn(scanner.run(stop.clone(), hand_back.clone()));
    wait_until(
        "every message answered",
        Duration::from_secs(600),
        || async {
            let open: i64 = sqlx::query_scalar(
                "SELECT (SELECT count(*) FROM conversation_messages
                     WHERE direction = 'in' AND batch_id IS NULL)
                  + (SELECT count(*) FROM reply_batches WHERE status <> 'sent')",
            )
            .fetch_one(store.pool())
            .await
            .unwrap_or(i64::MAX);
            open == 0
        },
    )
    .await;
    let drain = draining.elapsed();
    let replies: i64 =
        sqlx::query_scalar("SELECT count(*) FROM reply_batches WHERE status = 'sent'")
            .fetch_one(store.pool())
            .await
            .expect("count");

    println!(
        "ingest: {messages} messages over {conversations} conversations, {in_flight} POSTs in flight"
    );
    row("messages stored", stored.to_string());
    row("webhook phase (s)", format!("{:.2}", ingest.as_secs_f64()));
    row(
        "webhooks/s",
        format!("{:.0}", messages as f64 / ingest.as_secs_f64()),
    );
    row("replies sent", replies.to_string());
    row("reply phase (s)", format!("{:.2}", drain.as_secs_f64()));
    row(
        "replies/s",
        format!("{:.0}", replies as f64 / drain.as_secs_f64()),
    );
    row(
        "messages answered/s",
        format!("{:.0}", stored as f64 / drain.as_secs_f64()),
    );

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), claim_loop).await;
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
    app.batcher().quit().await;
    store.pool().close().await;
    bench.cleanup().await;
}
