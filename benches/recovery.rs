//! Recovery: how soon the batches of a killed instance are answered by another, and
//! what the lease's heartbeats cost Redis meanwhile. The numbers behind the default
//! LOCK_TTL_SECONDS (docs/benchmarks.md, docs/design.md "Leases").
//!
//! Reproduce (PostgreSQL on localhost, `redis-server` on the PATH; a few minutes):
//!
//! ```text
//! cargo bench --bench recovery
//! ```
//!
//! For each lease in `RECOVERY_LEASES` (seconds, default `20,10,6,4`): a Redis of its
//! own (so that INFO commandstats counts only this run), a database of its own, and
//! two real `lull serve` processes, both started as `lull loadtest ingest --chaos`
//! starts its own (`lull::loadtest::chaos`); their logs go to a temp dir. Instance A takes `RECOVERY_BATCHES` (default 50)
//! conversations' batches and generates for ever (RESPONDER_DELAY_MS); instance B
//! starts, and after two leases and a random part of a heartbeat A is SIGKILLed. Recovery is
//! each batch's `sent_at` (B sent it) minus the kill. Redis commands per in-flight
//! batch-second are counted between A's claims and the kill: heartbeats (extend.lua,
//! EVALSHA, with both instances' idle claim polls) and the supersede poll (LLEN);
//! commands run inside scripts are counted apart. The window is long enough that
//! the heartbeat is every third of the lease, as at the default 30 s window.

mod common;

use common::{APP_SECRET, Bench, TOKEN, row, wait_until};
use lull::loadtest::chaos::children::LullChild;
use lull::loadtest::chaos::free_port;
use lull::loadtest::chaos::redis::OwnRedis;
use rand::Rng;
use sqlx::Connection;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Starts `lull serve` (named `name`) with `env`; waits for `/healthz`.
async fn start_lull(name: &str, env: BTreeMap<String, String>, logs: &Path) -> LullChild {
    let program = PathBuf::from(env!("CARGO_BIN_EXE_lull"));
    let port = free_port().expect("a free port");
    LullChild::start(
        program,
        name.into(),
        port,
        env,
        logs,
        reqwest::Client::new(),
    )
    .await
    .expect("lull serve starts")
}

/// Batches `lull serve` at `base` has claimed, from its /metrics.
async fn claimed(base: &str) -> u64 {
    let Ok(response) = reqwest::get(format!("{base}/metrics")).await else {
        return 0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter_map(|line| line.strip_prefix("lull_batches_claimed_total"))
        .filter_map(|rest| rest.split_whitespace().last()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn unix_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
        * 1000.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One lease: A claims, B waits, A dies; B's replies are timed from the kill.
async fn run(lease_s: f64, batches: usize) {
    let bench = Bench::new();
    let graph = common::fake_graph().await;
    let config = bench.config(&graph.base);
    let logs = std::env::temp_dir().join(format!("lull-recovery-{}", bench.db_name));
    std::fs::create_dir_all(&logs).expect("a log dir");
    let mut redis = OwnRedis::start("redis-server", free_port().expect("a free port"), &logs)
        .await
        .expect("redis-server starts");
    let env = |delay_ms: u64| -> BTreeMap<String, String> {
        [
            ("DATABASE_URL", config.database_url.clone()),
            ("REDIS_URL", redis.url()),
            ("REDIS_KEY_PREFIX", bench.prefix.clone()),
            ("GRAPH_API_BASE", graph.base.clone()),
            ("WHATSAPP_TOKEN", TOKEN.to_owned()),
            ("WHATSAPP_APP_SECRET", APP_SECRET.to_owned()),
            ("HOST", "127.0.0.1".to_owned()),
            // The heartbeat is every third of the lease, or every half window when
            // that is sooner: a window as long as production's keeps it the former.
            (
                "BATCH_WINDOW_SECONDS",
                (lease_s * 2.0 / 3.0 + 0.1).to_string(),
            ),
            ("LOCK_TTL_SECONDS", lease_s.to_string()),
            ("RESPONDER_DELAY_MS", delay_ms.to_string()),
            ("WORKER_CONCURRENCY", (batches + 8).to_string()),
            ("TYPING_INDICATOR", "false".to_owned()),
            ("REPLY_WINDOW_HOURS", "0".to_owned()),
            ("RECONCILE_INTERVAL_SECONDS", "3600".to_owned()),
            ("RUST_LOG", "warn".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    };
    let mut a = start_lull("lull-a", env(3_600_000), &logs).await;
    let http = reqwest::Client::new();
    let webhook = format!("{}/api/whatsapp/webhook", a.base_url());
    let ts = lull::time::now_ms() / 1000;
    for n in 0..batches {
        let contact = format!("49170{n:07}");
        let message = common::signed_text(&contact, &format!("wamid.rec{n}"), ts, "hello");
        common::post(&http, &webhook, message).await;
    }
    let a_url = a.base_url();
    wait_until(
        "A's claims",
        Duration::from_secs_f64(30.0 + lease_s),
        || async { claimed(&a_url).await == batches as u64 },
    )
    .await;
    let mut b = start_lull("lull-b", env(0), &logs).await;
    redis.mark_baseline().await.expect("INFO commandstats");
    let measured = Instant::now();
    // Two leases (six heartbeats) of calls, then a random point between two
    // heartbeats for the kill: recovery is between two thirds of a lease and all of it.
    tokio::time::sleep(Duration::from_secs_f64(2.0 * lease_s)).await;
    let calls = redis
        .commands_since_baseline()
        .await
        .expect("INFO commandstats");
    let batch_seconds = measured.elapsed().as_secs_f64() * batches as f64;
    let phase = rand::rng().random_range(0.0..lease_s / 3.0);
    tokio::time::sleep(Duration::from_secs_f64(phase)).await;
    a.kill().await;
    let killed = unix_ms(SystemTime::now());
    let mut db = sqlx::PgConnection::connect(&config.database_url)
        .await
        .expect("the bench database");
    let timeout = Duration::from_secs_f64(2.0 * lease_s + 30.0);
    let started = Instant::now();
    let sent: Vec<f64> = loop {
        let sent: Vec<f64> = sqlx::query_scalar(
            "SELECT (extract(epoch FROM sent_at) * 1000)::float8 FROM reply_batches WHERE status = 'sent'",
        )
        .fetch_all(&mut db)
        .await
        .expect("sent batches");
        if sent.len() >= batches {
            break sent;
        }
        assert!(
            started.elapsed() < timeout,
            "{} of {batches} sent",
            sent.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut recovery: Vec<f64> = sent.iter().map(|t| (t - killed) / 1000.0).collect();
    recovery.sort_by(f64::total_cmp);
    let per = |name: &str| calls.get(name).copied().unwrap_or(0) as f64;
    let all = calls.values().sum::<u64>() as f64;
    println!(
        "lease {lease_s} s (heartbeat every {:.2} s):",
        lease_s / 3.0
    );
    row(
        "recovery p50, s",
        format!("{:.2}", percentile(&recovery, 0.5)),
    );
    row(
        "recovery max, s",
        format!("{:.2}", percentile(&recovery, 1.0)),
    );
    row(
        "EVALSHA per batch-second",
        format!("{:.2}", per("evalsha") / batch_seconds),
    );
    row(
        "LLEN per batch-second",
        format!("{:.2}", per("llen") / batch_seconds),
    );
    let inside = all - per("evalsha") - per("llen");
    row(
        "in scripts per batch-second",
        format!("{:.2}", inside / batch_seconds),
    );
    drop(db);
    b.stop().await;
    redis.kill().await;
    drop(graph);
    bench.cleanup().await;
}

#[tokio::main]
async fn main() {
    if !common::invoked_by_cargo_bench("recovery") {
        return;
    }
    // No app in this process to choose reqwest's TLS provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let batches = common::setting("RECOVERY_BATCHES", 50).max(1) as usize;
    let leases = std::env::var("RECOVERY_LEASES").unwrap_or_else(|_| "20,10,6,4".into());
    println!("recovery of {batches} in-flight batches after SIGKILL");
    for lease in leases.split(',') {
        let lease: f64 = lease
            .trim()
            .parse()
            .expect("RECOVERY_LEASES: seconds, comma-separated");
        run(lease, batches).await;
    }
}
