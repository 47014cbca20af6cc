//! Claim lag: how long after a batch becomes due the claim loop takes it.
//!
//! Reproduce (PostgreSQL and Redis on localhost; about a minute once built):
//!
//! ```text
//! cargo bench --bench claim_lag
//! ```
//!
//! The app runs in-process with the documented defaults (SCANNER_INTERVAL 0.5 s,
//! WORKER_CONCURRENCY 32; the usual environment variables change them) on a
//! database of its own, a Redis prefix of its own and a local fake Graph API,
//! with BATCH_WINDOW_SECONDS = 1. Each of
//! `CLAIM_LAG_CONVERSATIONS` (default 500) conversations sends one signed webhook;
//! the webhooks are spread evenly over `CLAIM_LAG_SPREAD_MS` (default 3000), so the
//! deadlines are too. Once every batch is sent, claim lag =
//! `reply_batches.claimed_at - reply_batches.due_at` (PostgreSQL's `percentile_cont`).
//! A loop that only looked at the agenda every interval would show a p50 near 250 ms.

mod common;

use common::{Bench, PHONE_ID, post, row, signed_text, wait_until};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

#[tokio::main]
async fn main() {
    if !common::invoked_by_cargo_bench("claim_lag") {
        return;
    }
    let conversations = common::setting("CLAIM_LAG_CONVERSATIONS", 500);
    let spread = Duration::from_millis(common::setting("CLAIM_LAG_SPREAD_MS", 3000));
    let bench = Bench::new();
    let graph = common::fake_graph().await;
    let mut config = bench.config(&graph.base);
    config.batch_window_seconds = 1.0;
    let app = common::build(config).await;
    let store = app.store().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/api/whatsapp/webhook",
        listener.local_addr().expect("addr")
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run(listener, lull::http::Serves::Everything, async {
        let _ = stopped.await;
    }));

    let http = reqwest::Client::new();
    let ts = lull::time::now_ms() / 1000;
    let start = tokio::time::Instant::now();
    let mut posts = JoinSet::new();
    for i in 0..conversations {
        tokio::time::sleep_until(start + spread * i as u32 / conversations as u32).await;
        let (http, url) = (http.clone(), url.clone());
        posts.spawn(async move {
            let from = format!("1555{i:07}");
            let body = signed_text(&from, &format!("wamid.lag.{i}"), ts, "when is it due?");
            post(&http, &url, body).await;
        });
    }
    posts.join_all().await;
    let posted = start.elapsed();

    wait_until("every batch sent", Duration::from_secs(120), || async {
        let sent: i64 =
            sqlx::query_scalar("SELECT count(*) FROM reply_batches WHERE status = 'sent'")
                .fetch_one(store.pool())
                .await
                .unwrap_or(0);
        sent >= conversations as i64
    })
    .await;

    let (n, p50, p90, p99, max): (i64, f64, f64, f64, f64) = sqlx::query_as(
        "SELECT count(*),
                percentile_cont(0.5) WITHIN GROUP (ORDER BY lag),
                percentile_cont(0.9) WITHIN GROUP (ORDER BY lag),
                percentile_cont(0.99) WITHIN GROUP (ORDER BY lag),
                max(lag)
         FROM (SELECT (extract(epoch FROM claimed_at - due_at) * 1000)::float8 AS lag
               FROM reply_batches WHERE status = 'sent') lags",
    )
    .fetch_one(store.pool())
    .await
    .expect("lag query");
    let (sent_p50, sent_p99): (f64, f64) = sqlx::query_as(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag),
                percentile_cont(0.99) WITHIN GROUP (ORDER BY lag)
         FROM (SELECT (extract(epoch FROM sent_at - due_at) * 1000)::float8 AS lag
               FROM reply_batches WHERE status = 'sent') lags",
    )
    .fetch_one(store.pool())
    .await
    .expect("reply lag query");
    let wrong: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM conversation_messages
         WHERE direction = 'in' AND (batch_id IS NULL OR account_id <> $1)",
    )
    .bind(PHONE_ID)
    .fetch_one(store.pool())
    .await
    .expect("answered query");

    println!(
        "claim lag: {conversations} conversations, deadlines spread over {:.1} s (posted in {:.2} s)",
        spread.as_secs_f64(),
        posted.as_secs_f64()
    );
    row("batches sent", n.to_string());
    row("messages unanswered", wrong.to_string());
    row("claim lag p50 (ms)", format!("{p50:.1}"));
    row("claim lag p90 (ms)", format!("{p90:.1}"));
    row("claim lag p99 (ms)", format!("{p99:.1}"));
    row("claim lag max (ms)", format!("{max:.1}"));
    row("due -> sent p50 (ms)", format!("{sent_p50:.1}"));
    row("due -> sent p99 (ms)", format!("{sent_p99:.1}"));

    let _ = stop.send(());
    let stopping = Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(15), running).await;
    if stopping.elapsed() > Duration::from_secs(14) {
        eprintln!("the app did not stop in time");
    }
    bench.cleanup().await;
}
