//! Webhook throughput and latency.
//!
//! Reproduce (PostgreSQL and Redis on localhost; under a minute once built):
//!
//! ```text
//! cargo bench --bench ingest
//! ```
//!
//! The app is built in-process with the documented defaults (DATABASE_POOL_SIZE 16,
//! REDIS_POOL_SIZE 4; the usual environment variables change them) on a database of
//! its own and a Redis prefix of its own. `INGEST_MESSAGES` (default 60,000) signed
//! text webhooks over `INGEST_CONVERSATIONS` (default 2,000) conversations,
//! round-robin, with `INGEST_IN_FLIGHT` (default 64) POSTs in flight, go to the
//! in-process webhook server: signature, parse, grouped PostgreSQL INSERT (each
//! answered once its row is committed), append.lua. The claim loop does not run
//! (`cargo bench --bench drain` measures replies), so this is the webhook path alone.
//!
//! It also prints the CPU time per webhook of this process, PostgreSQL and Redis
//! (see `common/cpu.rs`): the machine's speed drifts, CPU time per webhook much less.

mod common;

use common::{Bench, post, row, signed_text};
use lull::loadtest::report::Latency;
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
    let messages = common::setting("INGEST_MESSAGES", 60_000);
    let conversations = common::setting("INGEST_CONVERSATIONS", 2_000).max(1);
    let in_flight = common::setting("INGEST_IN_FLIGHT", 64).max(1);
    let bench = Bench::new();
    let graph = common::fake_graph().await;
    let config = bench.config(&graph.base);
    let pool_size = config.database_pool_size;
    let app = common::build(config).await;
    let store = app.store().clone();

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
        app.routes(lull::http::Serves::Everything),
        stop.clone().cancelled_owned(),
        Duration::from_secs(5),
        lull::http::ConnectionSettings {
            max_connections: 1024,
            header_read_timeout: lull::http::HEADER_READ_TIMEOUT,
        },
    ));
    let http = reqwest::Client::new();
    let ts = lull::time::now_ms() / 1000 - 3600;
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let cpu_before = common::cpu::Cpu::now();
    let mut clients = JoinSet::new();
    for _ in 0..in_flight {
        let (http, url, next) = (http.clone(), url.clone(), next.clone());
        clients.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let j = next.fetch_add(1, Ordering::Relaxed);
                if j >= messages {
                    return latencies;
                }
                let (conversation, seq) = (j % conversations, j / conversations);
                let from = format!("1555{conversation:07}");
                let body = signed_text(
                    &from,
                    &format!("wamid.ingest.{conversation}.{seq}"),
                    ts + seq as i64,
                    &format!("message {seq}"),
                );
                let sent = Instant::now();
                post(&http, &url, body).await;
                latencies.push(sent.elapsed());
            }
        });
    }
    let latencies: Vec<Duration> = clients.join_all().await.into_iter().flatten().collect();
    let elapsed = start.elapsed();
    let cpu = common::cpu::Cpu::now().since(&cpu_before);
    let latency = Latency::of(latencies);
    let (stored, batched): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE answerable) FROM conversation_messages",
    )
    .fetch_one(store.pool())
    .await
    .expect("count");

    println!(
        "ingest: {messages} signed webhooks over {conversations} conversations, {in_flight} POSTs in flight, DATABASE_POOL_SIZE {pool_size}"
    );
    row("messages stored", stored.to_string());
    row("answerable", batched.to_string());
    row("elapsed (s)", format!("{:.2}", elapsed.as_secs_f64()));
    row(
        "webhooks/s",
        format!("{:.0}", messages as f64 / elapsed.as_secs_f64()),
    );
    row("latency p50 (ms)", format!("{:.1}", latency.p50));
    row("latency p99 (ms)", format!("{:.1}", latency.p99));
    row("latency max (ms)", format!("{:.1}", latency.max));
    cpu.print_per(messages, "webhook");
    common::group_sizes(&app, &["inbound"]);

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
    app.redis_batches().quit().await;
    store.pool().close().await;
    bench.cleanup().await;
}
