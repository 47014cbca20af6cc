//! The real `lull` binary as a child process, for tests where a process must die:
//! SIGKILL, SIGTERM, several instances. Its settings come from the environment only
//! (the parent's is cleared, so nothing leaks in); its JSON log lines go to a file
//! in a temp dir of its own, read back for assertions. A process still running when
//! its handle is dropped is killed, so a failing test leaves nothing behind.
//!
//! Processes of one test share one [`TestDb`]: the first process creates and
//! migrates it, so start the first, let it become healthy, then start the others.

use crate::fake_platforms::{FakeGraph, TOKEN};
use crate::helpers::{APP_SECRET, TestDb};
use crate::redis_server::free_port;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a process may take to become healthy (a fresh database is migrated).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The settings of a process to start: every variable it will see.
#[derive(Debug, Clone)]
pub struct Spec {
    name: String,
    env: BTreeMap<String, String>,
    /// Stdout is a pipe nobody reads (a stalled log reader); stderr still goes to the file.
    unread_stdout: bool,
}

impl Spec {
    /// The test defaults: short windows, a 1 s lease, JSON logs, no typing indicator,
    /// fast send retries, the reconciler idle (tests that need it turn it on).
    pub fn new(name: &str, db: &TestDb, graph: &FakeGraph, redis_url: &str, prefix: &str) -> Self {
        let mut env = BTreeMap::new();
        for (key, value) in [
            ("DATABASE_URL", db.url.as_str()),
            ("DATABASE_POOL_SIZE", "5"),
            ("REDIS_URL", redis_url),
            ("REDIS_KEY_PREFIX", prefix),
            ("GRAPH_API_BASE", graph.base.as_str()),
            ("WHATSAPP_TOKEN", TOKEN),
            ("WHATSAPP_APP_SECRET", APP_SECRET),
            ("HOST", "127.0.0.1"),
            ("BATCH_WINDOW_SECONDS", "0.2"),
            ("BATCH_MAX_WAIT_SECONDS", "30"),
            ("SCANNER_INTERVAL", "0.05"),
            ("LOCK_TTL_SECONDS", "1"),
            ("RESPONDER_DELAY_MS", "0"),
            ("SHUTDOWN_DRAIN_SECONDS", "2"),
            ("RECONCILE_INTERVAL_SECONDS", "3600"),
            ("RECONCILE_MIN_AGE_SECONDS", "0"),
            ("TYPING_INDICATOR", "false"),
            ("REPLY_WINDOW_HOURS", "0"),
            ("SEND_RETRY_BASE_MS", "20"),
            ("SEND_TIMEOUT_SECONDS", "5"),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ] {
            env.insert(key.to_owned(), value.to_owned());
        }
        Self {
            name: name.to_owned(),
            env,
            unread_stdout: false,
        }
    }

    /// Stdout goes to a pipe that is never read, as when a log shipper stalls: once
    /// the pipe is full, a write to it waits for ever. Its log lines are not in
    /// [`LullProcess::log`] then, so [`Spec::serve`] waits for `/healthz` alone.
    pub fn unread_stdout(mut self) -> Self {
        self.unread_stdout = true;
        self
    }

    /// Sets (or overrides) one variable.
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.insert(key.to_owned(), value.to_string());
        self
    }

    /// Runs a one-shot command (`lull forget ...`) to its end: its exit status and
    /// stdout (its logs go to stderr).
    pub fn run(self, args: &[&str]) -> (ExitStatus, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_lull"))
            .args(args)
            .env_clear()
            .envs(&self.env)
            .stdin(Stdio::null())
            .output()
            .expect("the lull binary runs");
        (
            output.status,
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }

    /// Starts `lull serve` on a free port and waits until it listens and `GET /healthz`
    /// answers.
    pub async fn serve(self) -> LullProcess {
        self.start("serve").await
    }

    /// Starts `lull worker` (claim loop and reconciler; its port serves only
    /// /healthz, /readyz and /metrics) and waits until it is healthy and its claim
    /// loop has started.
    pub async fn worker(self) -> LullProcess {
        let process = self.start("worker").await;
        process
            .wait_for_log("claim loop started", START_TIMEOUT, |line| {
                message(line) == "claim loop started"
            })
            .await;
        process
    }

    /// Starts `command` on a free port and waits until it listens and `GET /healthz`
    /// answers. A free port can be taken by someone else before the child binds it:
    /// then it starts again on another.
    async fn start(self, command: &str) -> LullProcess {
        for attempt in 1.. {
            let port = free_port();
            let process = self.clone().env("PORT", port).spawn(command, port);
            if self.unread_stdout {
                process.wait_healthy().await;
                return process;
            }
            match process.wait_listening().await {
                Ok(()) => {
                    process.wait_healthy().await;
                    return process;
                }
                Err(log) if attempt < 3 && log.contains("binding") => continue,
                Err(log) => panic!("{} exited while starting; log:\n{log}", process.name),
            }
        }
        unreachable!()
    }

    fn spawn(self, command: &str, port: u16) -> LullProcess {
        // reqwest is built without a default TLS provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join(format!("{}.log", self.name));
        let log = File::create(&log_path).unwrap();
        let stdout = if self.unread_stdout {
            Stdio::piped()
        } else {
            Stdio::from(log.try_clone().unwrap())
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_lull"))
            .arg(command)
            .env_clear()
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .expect("the lull binary starts");
        LullProcess {
            name: self.name,
            _unread_stdout: child.stdout.take(),
            child: Mutex::new(child),
            port,
            log_path,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }
}

/// A running `lull` child process.
pub struct LullProcess {
    /// The name it was given (log file name, panic messages).
    pub name: String,
    child: Mutex<Child>,
    /// Held open, never read: see [`Spec::unread_stdout`].
    _unread_stdout: Option<std::process::ChildStdout>,
    port: u16,
    log_path: PathBuf,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl LullProcess {
    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:{port}{path}`.
    pub fn url(&self, path: &str) -> String {
        let port = self.port;
        format!("http://127.0.0.1:{port}{path}")
    }

    /// Until the listener is bound (its log line), or the log of a process that exited.
    async fn wait_listening(&self) -> Result<(), String> {
        let start = Instant::now();
        loop {
            // Exit checked first: a process that exited has written its whole log.
            let exited = self.exited();
            if !self.logged_starting("listening for").is_empty() {
                return Ok(());
            }
            if exited.is_some() {
                return Err(self.log());
            }
            if start.elapsed() > START_TIMEOUT {
                panic!(
                    "{} not listening after {START_TIMEOUT:?}; log:\n{}",
                    self.name,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_healthy(&self) {
        let start = Instant::now();
        loop {
            if let Ok(response) = self.http.get(self.url("/healthz")).send().await
                && response.status() == 200
            {
                return;
            }
            self.assert_running("becoming healthy");
            if start.elapsed() > START_TIMEOUT {
                panic!(
                    "{} not healthy after {START_TIMEOUT:?}; log:\n{}",
                    self.name,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn assert_running(&self, doing: &str) {
        if let Some(status) = self.exited() {
            panic!(
                "{} exited ({status}) while {doing}; log:\n{}",
                self.name,
                self.log()
            );
        }
    }

    /// POSTs a body to the WhatsApp webhook, signed with the fixtures' secret.
    pub async fn post_whatsapp(&self, body: &[u8]) -> reqwest::Response {
        self.http
            .post(self.url("/api/whatsapp/webhook"))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", crate::helpers::sign(body))
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }

    /// `GET /readyz` as JSON.
    pub async fn readyz(&self) -> (u16, Value) {
        let response = self.http.get(self.url("/readyz")).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Its JSON log lines so far (anything else it printed is skipped).
    pub fn log_lines(&self) -> Vec<Value> {
        self.log()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The log lines whose message is `text`.
    pub fn logged(&self, text: &str) -> Vec<Value> {
        self.log_lines()
            .into_iter()
            .filter(|line| message(line) == text)
            .collect()
    }

    /// The log lines whose message starts with `text`.
    pub fn logged_starting(&self, text: &str) -> Vec<Value> {
        self.log_lines()
            .into_iter()
            .filter(|line| message(line).starts_with(text))
            .collect()
    }

    /// Polls the log until a line matches, or panics (with the log) after `timeout`.
    pub async fn wait_for_log(
        &self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            // Exit checked first: a process that exited has written its whole log.
            let exited = self.exited();
            if let Some(line) = self.log_lines().into_iter().find(&matches) {
                return line;
            }
            if let Some(status) = exited {
                panic!(
                    "{} exited ({status}) without a log line for {what}; log:\n{}",
                    self.name,
                    self.log()
                );
            }
            if start.elapsed() > timeout {
                panic!(
                    "{}: no log line for {what} after {timeout:?}; log:\n{}",
                    self.name,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no shutdown, no cleanup, the lease is left to run out.
    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Its exit status, if it has exited.
    pub fn exited(&self) -> Option<ExitStatus> {
        self.child.lock().unwrap().try_wait().unwrap()
    }

    /// SIGTERM: a graceful shutdown (drain, then hand back).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits for the process to exit, or panics (with the log) after `timeout`.
    pub async fn wait_for_exit(&self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            if start.elapsed() > timeout {
                panic!(
                    "{} still running after {timeout:?}; log:\n{}",
                    self.name,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for LullProcess {
    fn drop(&mut self) {
        self.kill();
        // The log file goes with the temp dir: keep a copy when the test failed.
        if std::thread::panicking() {
            let kept = std::env::temp_dir().join(format!("lull-{}-{}.log", self.name, self.pid()));
            if std::fs::copy(&self.log_path, &kept).is_ok() {
                eprintln!("{}'s log kept in {}", self.name, kept.display());
            }
        }
    }
}

/// A JSON log line's message.
pub fn message(line: &Value) -> &str {
    line["message"].as_str().unwrap_or_default()
}
