//! The chaos run's own redis-server: started as a child (no persistence), killed and
//! started again empty on the same port, flushed, and asked for its command counts.

use super::ChaosError;
use fred::interfaces::ClientLike;
use fred::types::InfoKind;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// How long redis-server may take to answer PING after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one admin command (INFO, FLUSHALL) may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Command name → calls, from `INFO commandstats`.
pub type CommandCounts = BTreeMap<String, u64>;

/// A redis-server child on a port of its own; killed when dropped.
pub struct OwnRedis {
    program: String,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// Calls counted by servers killed since the run began (INFO is reset by a
    /// restart, so each server's counts are added up before it dies).
    earlier: CommandCounts,
    /// The counts of the running server when the load began.
    baseline: CommandCounts,
}

impl OwnRedis {
    /// Starts `program` (`redis-server`) on `port`, its log in `dir`.
    pub async fn start(program: &str, port: u16, dir: &Path) -> Result<Self, ChaosError> {
        let mut redis = Self {
            program: program.to_owned(),
            port,
            dir: dir.to_owned(),
            child: None,
            earlier: CommandCounts::new(),
            baseline: CommandCounts::new(),
        };
        redis.spawn().await?;
        Ok(redis)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) -> Result<(), ChaosError> {
        let log = std::fs::File::create(self.dir.join("redis.log"))
            .map_err(|e| ChaosError::io("creating redis.log", e))?;
        let err = log
            .try_clone()
            .map_err(|e| ChaosError::io("creating redis.log", e))?;
        let child = Command::new(&self.program)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ChaosError::io(&format!("starting {}", self.program), e))?;
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < START_TIMEOUT {
            if let Ok(client) = self.admin().await {
                let _ = client.quit().await;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(ChaosError::Start(format!(
            "redis-server on port {} did not answer within {START_TIMEOUT:?} (see {})",
            self.port,
            self.dir.join("redis.log").display()
        )))
    }

    /// SIGKILL, then the same server again, empty (no persistence): its command
    /// counts so far are kept first.
    pub async fn restart(&mut self) -> Result<(), ChaosError> {
        if let Ok(now) = self.command_counts().await {
            add(&mut self.earlier, &now, &self.baseline);
        }
        self.baseline = CommandCounts::new();
        self.kill().await;
        self.spawn().await
    }

    /// `FLUSHALL`: every key gone, the server up.
    pub async fn flushall(&self) -> Result<(), ChaosError> {
        let client = self.admin().await?;
        let flushed = tokio::time::timeout(ADMIN_TIMEOUT, client.flushall::<()>(false)).await;
        let _ = client.quit().await;
        match flushed {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ChaosError::Redis(e.to_string())),
            Err(_) => Err(ChaosError::Redis("FLUSHALL timed out".into())),
        }
    }

    /// Starts counting commands from now.
    pub async fn mark_baseline(&mut self) -> Result<(), ChaosError> {
        self.baseline = self.command_counts().await?;
        self.earlier = CommandCounts::new();
        Ok(())
    }

    /// Commands run since [`Self::mark_baseline`], across restarts, the load test's
    /// own INFO and FLUSHALL left out.
    pub async fn commands_since_baseline(&self) -> Result<CommandCounts, ChaosError> {
        let mut total = self.earlier.clone();
        add(&mut total, &self.command_counts().await?, &self.baseline);
        total.remove("info");
        total.remove("flushall");
        Ok(total)
    }

    async fn command_counts(&self) -> Result<CommandCounts, ChaosError> {
        let client = self.admin().await?;
        let info = tokio::time::timeout(
            ADMIN_TIMEOUT,
            client.info::<String>(Some(InfoKind::CommandStats)),
        )
        .await;
        let _ = client.quit().await;
        match info {
            Ok(Ok(info)) => Ok(parse_commandstats(&info)),
            Ok(Err(e)) => Err(ChaosError::Redis(e.to_string())),
            Err(_) => Err(ChaosError::Redis("INFO timed out".into())),
        }
    }

    /// A fresh connection (the server may have been restarted since the last one).
    async fn admin(&self) -> Result<fred::clients::Client, ChaosError> {
        let redis = |e: fred::error::Error| ChaosError::Redis(e.to_string());
        let config = fred::types::config::Config::from_url(&self.url()).map_err(redis)?;
        let client = fred::types::Builder::from_config(config)
            .build()
            .map_err(redis)?;
        match tokio::time::timeout(ADMIN_TIMEOUT, client.init()).await {
            Ok(Ok(_)) => Ok(client),
            Ok(Err(e)) => Err(redis(e)),
            Err(_) => Err(ChaosError::Redis("connecting timed out".into())),
        }
    }

    /// SIGKILL and reap; nothing of its data survives.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

/// `total += now - baseline`, per command.
fn add(total: &mut CommandCounts, now: &CommandCounts, baseline: &CommandCounts) {
    for (command, calls) in now {
        let before = baseline.get(command).copied().unwrap_or(0);
        *total.entry(command.clone()).or_default() += calls.saturating_sub(before);
    }
}

/// `cmdstat_evalsha:calls=12,usec=...` lines → {"evalsha": 12}.
pub fn parse_commandstats(info: &str) -> CommandCounts {
    info.lines()
        .filter_map(|line| line.trim().strip_prefix("cmdstat_"))
        .filter_map(|line| {
            let (command, stats) = line.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((command.to_owned(), calls))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commandstats_lines_give_calls_per_command() {
        let info = "# Commandstats\r\ncmdstat_evalsha:calls=12,usec=340,usec_per_call=28.33,\
                    rejected_calls=0,failed_calls=0\r\ncmdstat_zrangebyscore:calls=3,usec=9\r\n";
        let counts = parse_commandstats(info);
        assert_eq!(counts["evalsha"], 12);
        assert_eq!(counts["zrangebyscore"], 3);
        assert_eq!(counts.len(), 2);
    }

    #[test]
    fn counts_add_up_across_a_restart() {
        let mut total = CommandCounts::new();
        let before: CommandCounts = [("get".to_owned(), 5)].into();
        let now: CommandCounts = [("get".to_owned(), 8), ("set".to_owned(), 2)].into();
        add(&mut total, &now, &before);
        add(
            &mut total,
            &[("get".to_owned(), 1)].into(),
            &CommandCounts::new(),
        );
        assert_eq!((total["get"], total["set"]), (4, 2));
    }
}
