//! Bounded connections, on the real binary under a 1,024 open-files limit
//! (util-linux's `prlimit`): idle connections that send nothing must not keep a
//! good webhook waiting, and the soft limit is raised to the hard one at start.
//!
//! process.rs starts the binary directly; these tests need `prlimit` in front of
//! it, so they start it themselves with the same kind of environment.

use crate::helpers::{APP_SECRET, TestDb, TestPrefix, fixture, redis_url, sign};
use crate::process::message;
use crate::redis_server::free_port;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Idle connections held open against a process limited to 1,024 descriptors.
const IDLE_CONNECTIONS: usize = 2_000;
/// Connected when the webhook is sent: far beyond the process's descriptors.
const SATURATED: usize = 1_500;
/// The promise: a good webhook is answered within this, whatever the idle ones do.
const ANSWERED_WITHIN: Duration = Duration::from_secs(1);
/// Bounds every wait, so a regression fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(30);

/// `lull <command>` started through `prlimit --nofile=<nofile>`; killed on drop.
struct Limited {
    child: Child,
    port: u16,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Limited {
    /// Starts `lull <command>` with `prlimit --nofile=<nofile>` and the test
    /// settings, plus `extra` variables.
    fn start(
        db: &TestDb,
        prefix: &str,
        nofile: &str,
        command: &str,
        extra: &[(&str, &str)],
    ) -> Self {
        let port = free_port();
        let env: BTreeMap<String, String> = [
            ("DATABASE_URL", db.url.as_str()),
            ("DATABASE_POOL_SIZE", "5"),
            ("REDIS_URL", &redis_url()),
            ("REDIS_KEY_PREFIX", prefix),
            // No WHATSAPP_TOKEN: replies are logged, no Graph API needed.
            ("WHATSAPP_APP_SECRET", APP_SECRET),
            ("HOST", "127.0.0.1"),
            ("PORT", &port.to_string()),
            ("BATCH_WINDOW_SECONDS", "0.2"),
            ("TYPING_INDICATOR", "false"),
            ("RECONCILE_INTERVAL_SECONDS", "3600"),
            ("SHUTDOWN_DRAIN_SECONDS", "2"),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        // reqwest is built without a default TLS provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("lull.log");
        let log = File::create(&log_path).unwrap();
        let child = Command::new("prlimit")
            .arg(format!("--nofile={nofile}"))
            .arg(env!("CARGO_BIN_EXE_lull"))
            .arg(command)
            .env_clear()
            .envs(&env)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prlimit (util-linux) runs");
        Self {
            child,
            port,
            log_path,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The first JSON log line whose message is `text`.
    fn logged(&self, text: &str) -> Option<Value> {
        self.log()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| message(line) == text)
    }

    async fn wait_healthy(&mut self) {
        let http = reqwest::Client::new();
        let start = Instant::now();
        loop {
            if let Ok(response) = http.get(self.url("/healthz")).send().await
                && response.status() == 200
            {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "lull exited ({status}) while starting; log:\n{}",
                    self.log()
                );
            }
            assert!(
                start.elapsed() < PATIENCE,
                "lull not healthy after {PATIENCE:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_for_exit(&mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "still running; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("lull's log:\n{}", self.log());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_do_not_delay_a_webhook_under_1024_open_files() {
    // This process holds the idle connections: it needs more than 2,000 descriptors.
    let own = lull::fd_limit::raise_open_files().unwrap();
    assert!(
        own.soft > IDLE_CONNECTIONS as u64 + 200,
        "the test needs a hard open-files limit above {IDLE_CONNECTIONS}: {own:?}"
    );
    let db = TestDb::new();
    let prefix = TestPrefix::new("test:");
    let mut lull = Limited::start(&db, &prefix, "1024:1024", "serve", &[]);
    lull.wait_healthy().await;

    // Idle: connected, nothing sent, held open until the end of the test. The
    // webhook goes out once most have connected (all of them may not: beyond the
    // backlog a connect waits for its SYN to be retried).
    let addr = format!("127.0.0.1:{}", lull.port);
    let connected = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let idle = tokio::spawn({
        let connected = connected.clone();
        let connects = (0..IDLE_CONNECTIONS).map(move |_| {
            let (addr, connected) = (addr.clone(), connected.clone());
            async move {
                let stream = TcpStream::connect(addr).await;
                connected.fetch_add(1, Ordering::Relaxed);
                stream
            }
        });
        futures::future::join_all(connects)
    });
    while connected.load(Ordering::Relaxed) < SATURATED {
        assert!(
            started.elapsed() < PATIENCE,
            "{SATURATED} connects within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("{SATURATED} idle connections in {:?}", started.elapsed());

    let body = fixture("whatsapp/text_single.json");
    let fresh = reqwest::Client::new();
    let started = Instant::now();
    let response = tokio::time::timeout(
        PATIENCE,
        fresh
            .post(lull.url("/api/whatsapp/webhook"))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", sign(&body))
            .body(body)
            .send(),
    )
    .await
    .expect("the webhook is answered within the patience")
    .expect("the webhook is answered");
    let took = started.elapsed();
    eprintln!("webhook answered {} in {took:?}", response.status());
    assert_eq!(response.status(), 200);
    assert!(
        took < ANSWERED_WITHIN,
        "a good webhook waited {took:?} behind {IDLE_CONNECTIONS} idle connections"
    );
    let idle = tokio::time::timeout(PATIENCE, idle)
        .await
        .expect("every connect ends");
    let idle: Vec<TcpStream> = idle.unwrap().into_iter().filter_map(Result::ok).collect();
    eprintln!("{} idle connections in {:?}", idle.len(), started.elapsed());
    drop(idle);

    let limit = lull
        .logged("open-files limit")
        .expect("the limits are logged");
    assert_eq!(
        (limit["soft"].as_u64(), limit["hard"].as_u64()),
        (Some(1024), Some(1024))
    );
    let cap = lull
        .logged("connections bounded")
        .expect("the cap is logged");
    let cap = cap["max_connections"].as_u64().unwrap();
    assert!((32..1024).contains(&cap), "MAX_CONNECTIONS {cap}");
    assert!(
        lull.log().contains("connection cap reached"),
        "{}",
        lull.log()
    );
    assert!(
        lull.logged("accept failed").is_none(),
        "never out of descriptors; log:\n{}",
        lull.log()
    );
}

#[tokio::test]
async fn the_soft_open_files_limit_is_raised_to_the_hard_one_at_start() {
    let db = TestDb::new();
    let prefix = TestPrefix::new("test:");
    let mut migrate = Limited::start(&db, &prefix, "256:1024", "migrate", &[]);
    let status = migrate.wait_for_exit().await;
    assert!(status.success(), "{status}; log:\n{}", migrate.log());
    let limit = migrate
        .logged("open-files limit")
        .expect("the limits are logged");
    assert_eq!(limit["was"], 256);
    assert_eq!(limit["soft"], 1024);
    assert_eq!(limit["hard"], 1024);
}

#[tokio::test]
async fn a_max_connections_above_the_open_files_limit_is_refused_at_start() {
    let db = TestDb::new();
    let prefix = TestPrefix::new("test:");
    let too_many = [("MAX_CONNECTIONS", "1000")];
    let mut lull = Limited::start(&db, &prefix, "1024:1024", "serve", &too_many);
    let status = lull.wait_for_exit().await;
    assert!(!status.success());
    let log = lull.log();
    assert!(
        log.contains("invalid MAX_CONNECTIONS: 1000 is more than"),
        "{log}"
    );
}

/// Idle connections give their slot back: one that never sends a request, and one
/// idle after a response on keep-alive, are both closed after the header-read
/// timeout (5 s).
#[tokio::test]
async fn idle_connections_are_closed_after_the_header_read_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = TestDb::new();
    let prefix = TestPrefix::new("test:");
    let mut lull = Limited::start(&db, &prefix, "1024:1024", "serve", &[]);
    lull.wait_healthy().await;
    let addr = format!("127.0.0.1:{}", lull.port);

    /// Reads until the server closes the connection; how long that took.
    async fn until_closed(mut stream: TcpStream, since: Instant) -> Duration {
        let mut buf = [0u8; 4096];
        while stream.read(&mut buf).await.unwrap_or(0) > 0 {}
        since.elapsed()
    }
    let silent = TcpStream::connect(&addr).await.unwrap();
    let silent = tokio::spawn(until_closed(silent, Instant::now()));

    let mut kept = TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: lull\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = kept.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok"), "one whole response: {answer}");
    let kept = tokio::spawn(until_closed(kept, Instant::now()));

    let timeout = lull::http::HEADER_READ_TIMEOUT;
    for (what, idle) in [("never sent a request", silent), ("kept alive", kept)] {
        let closed_after = tokio::time::timeout(PATIENCE, idle)
            .await
            .unwrap_or_else(|_| panic!("a connection that {what} is still open"))
            .unwrap();
        eprintln!("a connection that {what} closed after {closed_after:?}");
        assert!(
            closed_after >= timeout - Duration::from_millis(100)
                && closed_after < timeout + Duration::from_secs(2),
            "a connection that {what} closed after {closed_after:?}"
        );
    }
}
