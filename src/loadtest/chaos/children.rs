//! The chaos run's `lull serve` children (also `benches/recovery.rs`'s): a lull
//! executable, each on a port of its own, all sharing one Redis, one PostgreSQL database and one key prefix. A
//! child is killed with SIGKILL and started again on the same port; at the end each
//! gets SIGTERM (a drain), then SIGKILL. A child still running when its handle is
//! dropped is killed, so an error or Ctrl-C leaves none behind.

use super::ChaosError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// How long a child may take to answer `/healthz` (the first one migrates).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a child may drain after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// One `lull serve` child.
pub struct LullChild {
    /// `lull-1`, `lull-2`, ...
    pub name: String,
    program: PathBuf,
    port: u16,
    env: BTreeMap<String, String>,
    log: PathBuf,
    child: Option<Child>,
    client: reqwest::Client,
}

impl LullChild {
    /// Starts `program serve` with exactly `env` (plus `PORT`) and waits until its
    /// `/healthz` answers; its output goes to `<dir>/<name>.log`.
    pub async fn start(
        program: PathBuf,
        name: String,
        port: u16,
        env: BTreeMap<String, String>,
        dir: &Path,
        client: reqwest::Client,
    ) -> Result<Self, ChaosError> {
        let log = dir.join(format!("{name}.log"));
        let mut child = Self {
            name,
            program,
            port,
            env,
            log,
            child: None,
            client,
        };
        child.spawn().await?;
        Ok(child)
    }

    /// Where its webhooks go.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) -> Result<(), ChaosError> {
        // Appended: a restarted child's log follows the killed one's.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| ChaosError::io("opening a child's log", e))?;
        let err = log
            .try_clone()
            .map_err(|e| ChaosError::io("opening a child's log", e))?;
        let child = Command::new(&self.program)
            .arg("serve")
            .env_clear()
            .envs(&self.env)
            .env("PORT", self.port.to_string())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ChaosError::io("starting lull serve", e))?;
        self.child = Some(child);
        self.wait_healthy().await
    }

    async fn wait_healthy(&mut self) -> Result<(), ChaosError> {
        let url = format!("{}/healthz", self.base_url());
        let start = Instant::now();
        while start.elapsed() < START_TIMEOUT {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(ChaosError::Start(format!(
                    "{} exited with {status} while starting (see {})",
                    self.name,
                    self.log.display()
                )));
            }
            let answer = self.client.get(&url).send().await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(ChaosError::Start(format!(
            "{} did not answer /healthz within {START_TIMEOUT:?} (see {})",
            self.name,
            self.log.display()
        )))
    }

    /// SIGKILL: no drain, its leases are left to run out.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Starts it again on its port, and waits until it is healthy.
    pub async fn restart(&mut self) -> Result<(), ChaosError> {
        self.kill().await;
        self.spawn().await
    }

    /// SIGTERM, then SIGKILL if it has not exited within the drain time.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32));
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        if tokio::time::timeout(STOP_TIMEOUT, child.wait())
            .await
            .is_err()
        {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}
