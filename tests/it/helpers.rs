//! The test harness: a fresh database and Redis key prefix per test, a fake Graph
//! API, the app on port 0, fixtures, signatures, and polling waits.

use crate::fake_platforms::{FakeGraph, FakePlatform, Received, TOKEN, fake_graph};
use fred::interfaces::{KeysInterface, ListInterface};
use lull::app::App;
use lull::batch::{ConversationKeys, RedisBatches};
use lull::config::{Config, Secret};
use lull::store::Store;
use rand::Rng;
use sqlx::Connection;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The fixtures' Meta app secret.
pub const APP_SECRET: &str = "fixture-app-secret";
/// The fixtures' verify token.
pub const VERIFY_TOKEN: &str = "fixture-verify-token";
/// The fixtures' WhatsApp business number id.
pub const PHONE_ID: &str = "123456789012345";
/// Maria, the fixtures' first user.
pub const MARIA: &str = "15550002222";
/// The test config's batch window.
pub const WINDOW: Duration = Duration::from_millis(200);
/// How long a flow test waits for what should happen.
pub const PATIENCE: Duration = Duration::from_secs(10);
/// Clock granularity: deadlines are whole unix ms, `Received::at` is an `Instant`.
pub const CLOCK_SLACK: Duration = Duration::from_millis(5);

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn admin_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{:016x}", rand::rng().random::<u64>())
}

/// A Redis key prefix of a test's own. Its keys are deleted when the test ends
/// (SCAN + UNLINK on the shared Redis, never FLUSHDB): most expire on their own, but
/// an agenda has no TTL and would stay forever.
pub struct TestPrefix(String);

impl TestPrefix {
    /// `{tag}{random}:`.
    pub fn new(tag: &str) -> Self {
        Self(unique(tag) + ":")
    }
}

impl std::ops::Deref for TestPrefix {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Drop for TestPrefix {
    fn drop(&mut self) {
        let prefix = self.0.clone();
        // As for the database: a thread of its own, outside the test's runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            if let Err(error) =
                rt.block_on(lull::batch::cleanup::delete_keys_at(&redis_url(), &prefix))
            {
                eprintln!("could not delete the keys under {prefix}: {error}");
            }
        })
        .join();
    }
}

/// A database of its own, dropped (forcibly) when the test ends.
pub struct TestDb {
    pub name: String,
    pub url: String,
    /// Dropped with this value (false for a second instance's handle).
    owned: bool,
}

impl TestDb {
    pub fn new() -> Self {
        let name = unique("lull_test_");
        let admin = admin_database_url();
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
        Self {
            url: format!("{base}/{name}"),
            name,
            owned: true,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let name = self.name.clone();
        // Drop runs outside any runtime we can block on: use a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_database_url()).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

/// The settings every test starts from: short windows, the fixtures' secrets.
pub fn test_config(db: &TestDb, graph: &FakeGraph, prefix: &str) -> Config {
    Config {
        database_url: db.url.clone(),
        database_pool_size: 5,
        redis_url: redis_url(),
        redis_key_prefix: prefix.to_owned(),
        graph_api_base: graph.base.clone(),
        whatsapp_token: Some(Secret::new(TOKEN)),
        whatsapp_app_secret: Some(Secret::new(APP_SECRET)),
        whatsapp_verify_token: Some(Secret::new(VERIFY_TOKEN)),
        batch_window_seconds: WINDOW.as_secs_f64(),
        batch_max_wait_seconds: 30.0,
        scanner_interval: 0.05,
        lock_ttl_seconds: 2.0,
        reconcile_interval_seconds: 3600.0,
        send_retry_base_ms: 20,
        send_timeout_seconds: 5.0,
        shutdown_drain_seconds: 2.0,
        typing_indicator: false,
        // The fixtures carry the fixed times of real payloads, long past WhatsApp's
        // and Instagram's 24 h reply window; tests of the window turn it on.
        reply_window_hours: 0.0,
        ..Config::default()
    }
}

/// The service running in this test's runtime.
pub struct TestApp {
    pub addr: SocketAddr,
    pub store: Store,
    pub redis_batches: RedisBatches,
    pub graph: FakeGraph,
    pub prefix: String,
    pub metrics: Arc<lull::metrics::Metrics>,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    pub db: TestDb,
    /// The owner's prefix guard (none for a second instance sharing it).
    _keys: Option<TestPrefix>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDb::new();
    let graph = fake_graph().await;
    let keys = TestPrefix::new("test:");
    let mut app = start_app(db, graph, keys.to_string(), tweak).await;
    app._keys = Some(keys);
    app
}

/// A second instance of `other`'s service: same database, Redis prefix and fake
/// Graph API (the database stays until `other` is dropped).
pub async fn spawn_app_sharing(other: &TestApp, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDb {
        name: other.db.name.clone(),
        url: other.db.url.clone(),
        owned: false,
    };
    start_app(db, other.graph.clone(), other.prefix.clone(), tweak).await
}

async fn start_app(
    db: TestDb,
    graph: FakeGraph,
    prefix: String,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = test_config(&db, &graph, &prefix);
    tweak(&mut config);
    let settings = config.parse_settings().expect("valid settings");
    let app = App::build(settings).await.expect("app builds");
    let store = app.store().clone();
    let redis_batches = app.redis_batches().clone();
    let metrics = app.metrics().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        app.run(listener, lull::http::Serves::Everything, async {
            let _ = rx.await;
        })
        .await
        .expect("app runs");
    });
    TestApp {
        addr,
        store,
        redis_batches,
        graph,
        prefix,
        metrics,
        http: reqwest::Client::new(),
        shutdown: Some(tx),
        task: Some(task),
        db,
        _keys: None,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// GETs `path` and returns the body as text.
    pub async fn get_text(&self, path: &str) -> String {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        response.text().await.unwrap()
    }

    /// GETs `path` and returns the body as JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        serde_json::from_str(&self.get_text(path).await).unwrap()
    }

    /// POSTs a body to the WhatsApp webhook, signed with the fixtures' secret.
    pub async fn post_whatsapp(&self, body: &[u8]) -> reqwest::Response {
        self.post_signed("/api/whatsapp/webhook", body).await
    }

    /// POSTs a JSON body to a Meta webhook at `path`, signed with the fixtures' secret.
    pub async fn post_signed(&self, path: &str, body: &[u8]) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", sign(body))
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }

    /// POSTs a body to `path` as it is, with `signature` (if any) as its
    /// `X-Hub-Signature-256`.
    pub async fn post_raw(
        &self,
        path: &str,
        body: &[u8],
        signature: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.http.post(self.url(path)).body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        request.send().await.unwrap()
    }

    /// Stops the service gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shut_down().await;
    }

    /// Stops the service gracefully and waits for it, keeping its database (and
    /// this handle) for a second instance.
    pub async fn shut_down(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    /// Rows of a query with one text column.
    pub async fn column(&self, sql: &str) -> Vec<String> {
        sqlx::query_scalar(sql)
            .fetch_all(self.store.pool())
            .await
            .unwrap()
    }

    /// Rows of a query with one bigint column.
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(self.store.pool())
            .await
            .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A well-formed signature no secret produced.
pub fn forged_signature() -> String {
    format!("sha256={}", "0".repeat(64))
}

/// `sha256=<hex HMAC>` of a body under the fixtures' app secret.
pub fn sign(body: &[u8]) -> String {
    lull::loadtest::webhook::sign(&Secret::new(APP_SECRET), body)
}

/// A fixture's exact bytes.
pub fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

/// A WhatsApp text webhook from `from`, with a message id and a unix-seconds time.
pub fn whatsapp_text(from: &str, id: &str, ts_secs: i64, text: &str) -> Vec<u8> {
    lull::loadtest::webhook::whatsapp_text(PHONE_ID, from, id, ts_secs, text)
}

/// Unix seconds now.
pub fn now_secs() -> i64 {
    lull::time::now_ms() / 1000
}

/// Polls `check` until it returns Some, or panics after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `fake` has received at least `n` sends; returns them all.
pub async fn replies_at_least(fake: &FakePlatform, n: usize) -> Vec<Received> {
    replies_within(fake, n, PATIENCE).await
}

/// Waits up to `patience` until `fake` has received at least `n` sends; returns
/// them all.
pub async fn replies_within(fake: &FakePlatform, n: usize, patience: Duration) -> Vec<Received> {
    wait_for(&format!("{n} replies"), patience, || async {
        let replies = fake.replies();
        (replies.len() >= n).then_some(replies)
    })
    .await
}

/// The text of a WhatsApp reply.
pub fn body(reply: &Received) -> String {
    let text = reply.body["text"]["body"].as_str();
    text.unwrap_or_default().to_owned()
}

/// A migrated store on `db` with a pool of `connections`. With one, each grouped
/// write has one flusher: the requests of one `join!` are flushed as one statement.
pub async fn store(db: &TestDb, connections: u32) -> Store {
    let store = Store::connect(&db.url, connections, Default::default())
        .await
        .expect("test database");
    store.migrate().await.expect("migrations");
    store
}

/// Waits until the conversation of `keys` has no batch in flight: the last one was
/// acknowledged (its in-flight list emptied, its lock released).
pub async fn wait_acknowledged(app: &TestApp, keys: &ConversationKeys) {
    wait_for("the batch acknowledged", PATIENCE, || async {
        let redis = app.redis_batches.pool().next();
        let inflight: i64 = redis.llen(&keys.inflight).await.ok()?;
        let locked: bool = redis.exists(&keys.lock).await.ok()?;
        (inflight == 0 && !locked).then_some(())
    })
    .await
}

/// Waits for a recent batch with `status`.
pub async fn batch_with_status(app: &TestApp, status: &str) -> lull::store::BatchRow {
    wait_for(&format!("a {status} batch"), PATIENCE, || async {
        let rows = app.store.recent_batches(10).await.unwrap();
        rows.into_iter().find(|b| b.status == status)
    })
    .await
}

/// Waits a little past the point where a wrong extra reply would have shown up.
pub async fn settle() {
    tokio::time::sleep(WINDOW * 3).await;
}

/// Waits past the window, then checks that `fake` got one reply and one inbound
/// message was stored (for a redelivered message).
pub async fn assert_stored_once_answered_once(app: &TestApp, fake: &FakePlatform) {
    settle().await;
    assert_eq!(fake.replies().len(), 1);
    assert_eq!(
        app.count("SELECT count(*) FROM conversation_messages WHERE direction = 'in'")
            .await,
        1
    );
}

/// Waits past the window, then checks that nothing was stored and nothing reached
/// `fake`.
pub async fn assert_nothing_stored_or_sent(app: &TestApp, fake: &FakePlatform) {
    settle().await;
    assert_eq!(
        app.count("SELECT count(*) FROM conversation_messages")
            .await,
        0
    );
    assert!(fake.seen().is_empty());
}
