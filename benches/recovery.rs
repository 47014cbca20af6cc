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
//! two real `lull serve` processes. Instance A takes `RECOVERY_BATCHES` (default 50)
//! conversations' batches and generates for ever (RESPONDER_DELAY_MS); instance B
//! starts, and after two leases and a random part of a heartbeat A is SIGKILLed. Recovery is
//! each batch's `sent_at` (B sent it) minus the kill. Redis commands per in-flight
//! batch-second are counted between A's claims and the kill: heartbeats (extend.lua,
//! EVALSHA, with both instances' idle claim polls) and the supersede poll (LLEN);
//! commands run inside scripts are counted apart. The window is long enough that
//! the heartbeat is every third of the lease, as at the default 30 s window.

mod common;

use common::{APP_SECRET, Bench, TOKEN, row, wait_until};
use rand::Rng;
use sqlx::Connection;
use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A child process killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Calls per command name, from INFO commandstats.
fn command_calls(port: u16) -> HashMap<String, u64> {
    redis_cli(port, &["INFO", "commandstats"])
        .lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.strip_prefix("calls=")?.split(',').next()?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

async fn start_redis() -> (Child, u16) {
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    wait_until("redis-server", Duration::from_secs(10), || async move {
        redis_cli(port, &["PING"]).trim() == "PONG"
    })
    .await;
    (Child(child), port)
}

/// Starts `lull serve` with `env` on a free port; waits for `/healthz`.
async fn start_lull(env: &[(&str, String)]) -> (Child, String) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_lull"))
        .arg("serve")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .spawn()
        .expect("lull starts");
    let base = format!("http://127.0.0.1:{port}");
    let health = format!("{base}/healthz");
    wait_until("lull /healthz", Duration::from_secs(60), || {
        let health = health.clone();
        async move { matches!(reqwest::get(&health).await, Ok(r) if r.status().is_success()) }
    })
    .await;
    (Child(child), base)
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
    let (_redis, redis_port) = start_redis().await;
    let env = |delay_ms: u64| {
        vec![
            ("DATABASE_URL", config.database_url.clone()),
            ("REDIS_URL", format!("redis://127.0.0.1:{redis_port}")),
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
    };
    let (mut a, a_url) = start_lull(&env(3_600_000)).await;
    let http = reqwest::Client::new();
    let webhook = format!("{a_url}/api/whatsapp/webhook");
    let ts = lull::time::now_ms() / 1000;
    for n in 0..batches {
        let contact = format!("49170{n:07}");
        let message = common::signed_text(&contact, &format!("wamid.rec{n}"), ts, "hello");
        common::post(&http, &webhook, message).await;
    }
    wait_until(
        "A's claims",
        Duration::from_secs_f64(30.0 + lease_s),
        || async {
            redis_cli(redis_port, &["--scan", "--pattern", "*:lock"])
                .lines()
                .count()
                == batches
        },
    )
    .await;
    let (_b, _) = start_lull(&env(0)).await;
    let before = command_calls(redis_port);
    let measured = Instant::now();
    // Two leases (six heartbeats) of calls, then a random point between two
    // heartbeats for the kill: recovery is between two thirds of a lease and all of it.
    tokio::time::sleep(Duration::from_secs_f64(2.0 * lease_s)).await;
    let after = command_calls(redis_port);
    let batch_seconds = measured.elapsed().as_secs_f64() * batches as f64;
    let phase = rand::rng().random_range(0.0..lease_s / 3.0);
    tokio::time::sleep(Duration::from_secs_f64(phase)).await;
    a.0.kill().expect("SIGKILL A");
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
    let per = |name: &str| {
        after.get(name).copied().unwrap_or(0) as f64 - before.get(name).copied().unwrap_or(0) as f64
    };
    let all: f64 = after.keys().map(|name| per(name)).sum();
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
