//! What the benchmarks share: the app built in-process on a database of its own
//! (created by `App::build`, dropped at the end) and a Redis key prefix of its own
//! (its keys deleted at the end, never FLUSHDB), the load test's fake Graph API, signed
//! WhatsApp webhooks, and a way to wait on PostgreSQL.
//!
//! `BENCH_DATABASE_URL` (an admin database, default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and `BENCH_REDIS_URL` (default
//! `redis://127.0.0.1:6379`) point it elsewhere.

// Each benchmark uses a part of what they share.
#![allow(dead_code)]

pub mod cpu;

use lull::app::App;
use lull::config::{Config, Secret};
use lull::fake_platform::{FakePlatform, Graph, Record};
use lull::loadtest::webhook;
use rand::Rng;
use sqlx::Connection;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// The Meta app secret the benchmark signs with.
pub const APP_SECRET: &str = "bench-app-secret";
/// The Graph API token the fake accepts.
pub const TOKEN: &str = "bench-graph-token";
/// Our WhatsApp business number id.
pub const PHONE_ID: &str = "123456789012345";

fn admin_url() -> String {
    std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn redis_url() -> String {
    std::env::var("BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn random_hex() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

/// The benchmark's own database and Redis prefix; [`Bench::cleanup`] removes both.
pub struct Bench {
    /// The database's name.
    pub db_name: String,
    /// The Redis key prefix.
    pub prefix: String,
}

impl Bench {
    /// A fresh name for each.
    pub fn new() -> Self {
        let id = random_hex();
        Self {
            db_name: format!("lull_bench_{id}"),
            prefix: format!("bench:{id}:"),
        }
    }

    /// The service's settings: the defaults (or the usual environment variables,
    /// e.g. `TYPING_INDICATOR=false`), then this benchmark's database, Redis
    /// prefix and Graph API, the secrets, and no reconciler.
    pub fn config(&self, graph_api_base: &str) -> Config {
        let mut config = Config::default();
        let admin = admin_url();
        // The admin URL's parameters (e.g. `?sslmode=disable`) apply to ours too.
        let (base, rest) = admin.rsplit_once('/').expect("a database URL");
        let params = rest.find('?').map_or("", |at| &rest[at..]);
        config.database_url = format!("{base}/{}{params}", self.db_name);
        config.redis_url = redis_url();
        config.redis_key_prefix = self.prefix.clone();
        config.graph_api_base = graph_api_base.to_owned();
        config.whatsapp_token = Some(Secret::new(TOKEN));
        config.whatsapp_app_secret = Some(Secret::new(APP_SECRET));
        config.reconcile_interval_seconds = 3600.0;
        config
    }

    /// Drops the database and deletes every key under the prefix.
    pub async fn cleanup(&self) {
        if let Err(error) = lull::batch::cleanup::delete_keys_at(&redis_url(), &self.prefix).await {
            eprintln!("could not delete the keys under {}: {error}", self.prefix);
        }
        match sqlx::PgConnection::connect(&admin_url()).await {
            Ok(mut conn) => {
                let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db_name);
                if let Err(error) = sqlx::query(&drop).execute(&mut conn).await {
                    eprintln!("could not drop {}: {error}", self.db_name);
                }
            }
            Err(error) => eprintln!("could not drop {}: {error}", self.db_name),
        }
    }
}

/// A numeric setting of a benchmark from the environment, or its default.
pub fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// False when the binary was not started by `cargo bench` (e.g. by
/// `cargo test --all-targets`, which runs `harness = false` benches as tests):
/// the benchmark then only says how to run it.
pub fn invoked_by_cargo_bench(name: &str) -> bool {
    if std::env::args().any(|a| a == "--bench") {
        return true;
    }
    println!("benchmark skipped: run it with `cargo bench --bench {name}`");
    false
}

/// Checks the settings and builds the app, or says why not.
pub async fn build(config: Config) -> App {
    let settings = config
        .parse_settings()
        .unwrap_or_else(|error| panic!("the settings are refused: {error}"));
    App::build(settings)
        .await
        .unwrap_or_else(|error| panic!("the app does not start: {error}"))
}

/// The load test's fake Graph API on a free port: it checks each request as the
/// Cloud API would (path, token, body) and records every text send per recipient.
pub async fn fake_graph() -> FakePlatform {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let api = Graph::new(PHONE_ID, Some(Secret::new(TOKEN)));
    FakePlatform::start(listener, api, Record::CountsOnly).expect("fake Graph API")
}

/// A WhatsApp text webhook from `from`, signed: (body, `X-Hub-Signature-256`).
pub fn signed_text(from: &str, id: &str, ts_secs: i64, text: &str) -> (Vec<u8>, String) {
    let body = webhook::whatsapp_text(PHONE_ID, from, id, ts_secs, text);
    let signature = webhook::sign(&Secret::new(APP_SECRET), &body);
    (body, signature)
}

/// POSTs one signed webhook; panics unless lull answers 200.
pub async fn post(http: &reqwest::Client, url: &str, (body, signature): (Vec<u8>, String)) {
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", signature)
        .body(body)
        .send()
        .await
        .expect("webhook POST");
    assert_eq!(response.status(), 200, "webhook refused");
}

/// Polls `check` every 50 ms until it is true; panics after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One row of a two-column table.
pub fn row(name: &str, value: String) {
    println!("  {name:<28} {value:>12}");
}

/// One row per kind of grouped write: the mean requests per statement, from the
/// app's own counters (what `/metrics` exports).
pub fn group_sizes(app: &App, kinds: &[&'static str]) {
    let metrics = app.metrics();
    for kind in kinds {
        let labels = [("kind", *kind)];
        let statements = metrics.counter("lull_db_group_statements_total", &labels);
        let requests = metrics.counter("lull_db_group_requests_total", &labels);
        if statements > 0 {
            row(
                &format!("requests per '{kind}' write"),
                format!("{:.1}", requests as f64 / statements as f64),
            );
        }
    }
}

/// The allocator the `lull` binary uses, so the benchmarks measure the same code.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
