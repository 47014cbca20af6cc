//! `lull loadtest ingest --chaos`: the load test runs its own lull, and breaks it.
//!
//! It starts a redis-server of its own ([`redis`]) and `--instances` `lull serve`
//! children ([`children`]) sharing it, the PostgreSQL database of
//! `--database-url` and a key prefix of the run's own. While the load runs, at
//! random moments, it kills (SIGKILL) a child and starts it again, restarts Redis
//! empty, or FLUSHALLs it. Each fault is reported with its time and, from the
//! bursts' own timings, how long it took until every burst in flight at that moment
//! was answered. Redis's `INFO commandstats` before and after (added up across
//! restarts) gives the Redis commands per reply.

pub mod children;
pub mod redis;

pub use redis::{CommandCounts, parse_commandstats};

use children::LullChild;
use clap::{Args, ValueEnum};
use redis::OwnRedis;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The chaos settings of `lull loadtest ingest`.
#[derive(Debug, Clone, Args)]
pub struct ChaosArgs {
    /// Start this command's own lull (`--instances` `lull serve` children, a
    /// redis-server) and inject faults while the load runs; `--url` is not used.
    #[arg(long)]
    pub chaos: bool,
    /// `lull serve` children to start (with --chaos).
    #[arg(long, default_value_t = 3)]
    pub instances: u32,
    /// PostgreSQL database the children share (with --chaos); created and migrated
    /// by the first child when missing.
    #[arg(long)]
    pub database_url: Option<String>,
    /// The redis-server program to start (with --chaos).
    #[arg(long, default_value = "redis-server")]
    pub redis_server: String,
    /// Mean time between two faults, seconds (each wait is 0.5-1.5 times it).
    #[arg(long, default_value_t = 5.0)]
    pub chaos_every_seconds: f64,
    /// Which faults to inject, in turn, in this order.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = FaultKind::ALL)]
    pub faults: Vec<FaultKind>,
    /// How long a killed child stays down before it is started again, seconds.
    #[arg(long, default_value_t = 1.0)]
    pub restart_after_seconds: f64,
    /// A variable for every child, KEY=VALUE (repeatable), e.g. LOCK_TTL_SECONDS=5;
    /// overrides the defaults (BATCH_WINDOW_SECONDS=0.2,
    /// RECONCILE_INTERVAL_SECONDS=2, TYPING_INDICATOR=false, RUST_LOG=warn).
    #[arg(long = "child-env", value_name = "KEY=VALUE")]
    pub child_env: Vec<String>,
}

impl Default for ChaosArgs {
    fn default() -> Self {
        Self {
            chaos: false,
            instances: 3,
            database_url: None,
            redis_server: "redis-server".into(),
            chaos_every_seconds: 5.0,
            faults: FaultKind::ALL.to_vec(),
            restart_after_seconds: 1.0,
            child_env: Vec::new(),
        }
    }
}

/// A fault the chaos run injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL a child, start it again after `--restart-after-seconds`.
    Kill,
    /// SIGKILL redis-server and start it again, empty.
    RedisRestart,
    /// FLUSHALL.
    Flushall,
}

impl FaultKind {
    /// Every kind, the default.
    pub const ALL: [FaultKind; 3] = [
        FaultKind::Kill,
        FaultKind::RedisRestart,
        FaultKind::Flushall,
    ];
}

/// The children's batch window before `--child-env`, seconds.
const CHILD_WINDOW: &str = "0.2";

/// The children's settings before `--child-env`: short windows so a run is quick,
/// a reconciler that finds what a flushed Redis lost within seconds.
const CHILD_DEFAULTS: [(&str, &str); 6] = [
    ("BATCH_WINDOW_SECONDS", CHILD_WINDOW),
    ("RECONCILE_INTERVAL_SECONDS", "2"),
    ("TYPING_INDICATOR", "false"),
    ("LOG_FORMAT", "json"),
    ("RUST_LOG", "warn"),
    ("DATABASE_POOL_SIZE", "8"),
];

/// Why the chaos run could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// A setting is missing or malformed.
    #[error("--chaos: {0}")]
    Invalid(String),
    /// A file or process could not be made.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A child or redis-server did not come up.
    #[error("{0}")]
    Start(String),
    /// The run's own Redis refused an admin command.
    #[error("redis: {0}")]
    Redis(String),
}

impl ChaosError {
    fn io(what: &str, source: std::io::Error) -> Self {
        ChaosError::Io {
            what: what.to_owned(),
            source,
        }
    }
}

/// What the children need to know of the rest of the run.
pub struct Wiring<'a> {
    /// The fake Graph API's base URL (their GRAPH_API_BASE).
    pub graph_api_base: &'a str,
    /// The app secret the webhooks are signed with.
    pub app_secret: &'a str,
    /// The token they send replies with.
    pub graph_token: &'a str,
    /// Makes the key prefix and the log directory this run's own.
    pub run: u32,
}

/// The run's own Redis and lull children. Dropping it kills them all.
pub struct Cluster {
    redis: OwnRedis,
    children: Vec<LullChild>,
    /// Where the children's and Redis's logs are.
    pub logs: PathBuf,
    /// `--child-env` as given (the defaults and wiring not repeated).
    pub child_env: Vec<String>,
    /// The children's batch window (their BATCH_WINDOW_SECONDS).
    pub window: Duration,
}

/// One fault as it was injected.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Which.
    pub kind: FaultKind,
    /// When.
    pub at: Instant,
    /// The child killed, or `redis`.
    pub target: String,
    /// How long until the child or Redis was back and healthy.
    pub back_after: Option<Duration>,
    /// Why it could not be injected or undone.
    pub error: Option<String>,
}

impl Cluster {
    /// Starts Redis, then the first child (which migrates the database), then the others.
    pub async fn start(args: &ChaosArgs, wiring: Wiring<'_>) -> Result<Self, ChaosError> {
        if args.instances == 0 {
            return Err(ChaosError::Invalid("--instances must be at least 1".into()));
        }
        if !(args.chaos_every_seconds > 0.0 && args.chaos_every_seconds.is_finite()) {
            return Err(ChaosError::Invalid(
                "--chaos-every-seconds must be a positive number".into(),
            ));
        }
        let database_url = args
            .database_url
            .clone()
            .ok_or_else(|| ChaosError::Invalid("--database-url is required".into()))?;
        let mut overrides = BTreeMap::new();
        for pair in &args.child_env {
            let (key, value) = pair.split_once('=').ok_or_else(|| {
                ChaosError::Invalid(format!("--child-env {pair}: expected KEY=VALUE"))
            })?;
            overrides.insert(key.to_owned(), value.to_owned());
        }
        let window = child_window(&overrides)?;
        let logs = std::env::temp_dir().join(format!("lull-chaos-{}", wiring.run));
        std::fs::create_dir_all(&logs).map_err(|e| ChaosError::io("creating the log dir", e))?;
        let redis = OwnRedis::start(&args.redis_server, free_port()?, &logs).await?;
        let mut env: BTreeMap<String, String> = CHILD_DEFAULTS
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        for (key, value) in [
            ("DATABASE_URL", database_url.as_str()),
            ("REDIS_URL", redis.url().as_str()),
            ("REDIS_KEY_PREFIX", &format!("loadtest{}:", wiring.run)),
            ("HOST", "127.0.0.1"),
            ("GRAPH_API_BASE", wiring.graph_api_base),
            ("WHATSAPP_TOKEN", wiring.graph_token),
            ("WHATSAPP_APP_SECRET", wiring.app_secret),
        ] {
            env.insert(key.to_owned(), value.to_owned());
        }
        env.extend(overrides);
        // reqwest is built without a default TLS provider (as the app is).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| ChaosError::Start(e.to_string()))?;
        let mut cluster = Self {
            redis,
            children: Vec::new(),
            logs: logs.clone(),
            child_env: args.child_env.clone(),
            window,
        };
        let program =
            std::env::current_exe().map_err(|e| ChaosError::io("finding lull's path", e))?;
        for i in 1..=args.instances {
            let child = LullChild::start(
                program.clone(),
                format!("lull-{i}"),
                free_port()?,
                env.clone(),
                &logs,
                client.clone(),
            )
            .await?;
            cluster.children.push(child);
        }
        cluster.redis.mark_baseline().await?;
        Ok(cluster)
    }

    /// The children's base URLs, in order.
    pub fn urls(&self) -> Vec<String> {
        self.children.iter().map(LullChild::base_url).collect()
    }

    /// Injects faults at random moments until `done` (a fault under way is finished
    /// first: a killed child is always started again).
    pub async fn inject(&mut self, args: &ChaosArgs, done: &CancellationToken) -> Vec<Fault> {
        let mut faults = Vec::new();
        let kinds = if args.faults.is_empty() {
            FaultKind::ALL.to_vec()
        } else {
            args.faults.clone()
        };
        let every =
            Duration::try_from_secs_f64(args.chaos_every_seconds).unwrap_or(Duration::from_secs(5));
        let restart_after =
            Duration::try_from_secs_f64(args.restart_after_seconds).unwrap_or_default();
        for n in 0.. {
            let wait = every.mul_f64(rand::random_range(0.5..1.5));
            tokio::select! {
                _ = done.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
            let kind = kinds[n % kinds.len()];
            faults.push(self.inject_one(kind, restart_after).await);
        }
        faults
    }

    async fn inject_one(&mut self, kind: FaultKind, restart_after: Duration) -> Fault {
        let at = Instant::now();
        let (target, result) = match kind {
            FaultKind::Kill => {
                let i = rand::random_range(0..self.children.len());
                let child = &mut self.children[i];
                child.kill().await;
                tokio::time::sleep(restart_after).await;
                (child.name.clone(), child.restart().await)
            }
            FaultKind::RedisRestart => ("redis".to_owned(), self.redis.restart().await),
            FaultKind::Flushall => ("redis".to_owned(), self.redis.flushall().await),
        };
        let back = at.elapsed();
        Fault {
            kind,
            at,
            target,
            back_after: result.is_ok().then_some(back),
            error: result.err().map(|e| e.to_string()),
        }
    }

    /// Redis commands since the children started, across restarts.
    pub async fn redis_commands(&self) -> Result<CommandCounts, ChaosError> {
        self.redis.commands_since_baseline().await
    }

    /// SIGTERM to every child (they drain), then Redis killed.
    pub async fn stop(mut self) {
        let stops = self.children.iter_mut().map(LullChild::stop);
        futures::future::join_all(stops).await;
        self.redis.kill().await;
    }
}

/// The batch window the children get: BATCH_WINDOW_SECONDS from `overrides`
/// (`--child-env`), else the default.
fn child_window(overrides: &BTreeMap<String, String>) -> Result<Duration, ChaosError> {
    const VAR: &str = "BATCH_WINDOW_SECONDS";
    let value = overrides.get(VAR).map_or(CHILD_WINDOW, String::as_str);
    value
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            ChaosError::Invalid(format!(
                "--child-env {VAR}={value}: not a positive number of seconds"
            ))
        })
}

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> Result<u16, ChaosError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ChaosError::io("finding a free port", e))
}

/// One fault in the report.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    /// Seconds from the start of the run.
    pub at_seconds: f64,
    /// Which fault.
    pub kind: FaultKind,
    /// The child killed, or `redis`.
    pub target: String,
    /// Until the child or Redis answered again, seconds.
    pub back_after_seconds: Option<f64>,
    /// Bursts sent but not yet answered at that moment.
    pub bursts_in_flight: u64,
    /// From the fault until every one of those was answered, seconds; `None` when
    /// one never was.
    pub recovery_seconds: Option<f64>,
    /// Why it could not be injected or undone.
    pub error: Option<String>,
}

impl FaultRecord {
    /// `fault` against the bursts' (first webhook sent, fully answered) times.
    pub fn of(fault: &Fault, start: Instant, bursts: &[(Instant, Option<Instant>)]) -> Self {
        let in_flight: Vec<Option<Instant>> = bursts
            .iter()
            .filter(|(sent, answered)| *sent <= fault.at && answered.is_none_or(|a| a > fault.at))
            .map(|(_, answered)| *answered)
            .collect();
        let recovery = in_flight
            .iter()
            .try_fold(Duration::ZERO, |longest, answered| {
                answered.map(|a| longest.max(a - fault.at))
            });
        Self {
            at_seconds: (fault.at - start).as_secs_f64(),
            kind: fault.kind,
            target: fault.target.clone(),
            back_after_seconds: fault.back_after.map(|d| d.as_secs_f64()),
            bursts_in_flight: in_flight.len() as u64,
            recovery_seconds: recovery.map(|d| d.as_secs_f64()),
            error: fault.error.clone(),
        }
    }

    /// One line: `12.3 s kill lull-2: back 1.4 s, 17 bursts in flight answered 2.1 s later`.
    pub fn line(&self) -> String {
        let kind = match self.kind {
            FaultKind::Kill => "kill",
            FaultKind::RedisRestart => "restart",
            FaultKind::Flushall => "FLUSHALL",
        };
        let back = match (self.back_after_seconds, &self.error) {
            (_, Some(error)) => format!("failed: {error}"),
            (Some(s), None) => format!("back {s:.1} s"),
            (None, None) => "back".into(),
        };
        let recovery = match self.recovery_seconds {
            Some(s) => format!("answered {s:.1} s later"),
            None => "not all answered".into(),
        };
        format!(
            "{:.1} s {kind} {}: {back}, {} bursts in flight {recovery}",
            self.at_seconds, self.target, self.bursts_in_flight
        )
    }
}

/// What the chaos part of a run adds to the report.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    /// `lull serve` children.
    pub instances: u32,
    /// `--child-env` as given.
    pub child_env: Vec<String>,
    /// Every fault, in order.
    pub faults: Vec<FaultRecord>,
    /// Redis commands run while the load ran (lull's; across restarts).
    pub redis_commands: u64,
    /// Those per reply the fake Graph API accepted.
    pub redis_commands_per_reply: f64,
    /// The five most called commands, per reply.
    pub top_commands_per_reply: Vec<(String, f64)>,
    /// The children's base URLs (stopped at the end of the run).
    pub instance_urls: Vec<String>,
    /// The run's own Redis (killed at the end of the run).
    pub redis_url: String,
    /// Where the children's and Redis's logs are.
    pub logs: String,
}

impl ChaosReport {
    /// The report of a run whose faults and Redis counts these are.
    pub fn new(
        cluster: &Cluster,
        instances: u32,
        faults: Vec<FaultRecord>,
        commands: &CommandCounts,
        replies: u64,
    ) -> Self {
        let per_reply = |calls: u64| {
            if replies == 0 {
                0.0
            } else {
                calls as f64 / replies as f64
            }
        };
        let total: u64 = commands.values().sum();
        let mut top: Vec<(&String, &u64)> = commands.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1));
        Self {
            instances,
            child_env: cluster.child_env.clone(),
            faults,
            redis_commands: total,
            redis_commands_per_reply: per_reply(total),
            top_commands_per_reply: top
                .into_iter()
                .take(5)
                .map(|(c, n)| (c.clone(), per_reply(*n)))
                .collect(),
            instance_urls: cluster.urls(),
            redis_url: cluster.redis.url(),
            logs: cluster.logs.display().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_children_window_is_the_default_unless_child_env_sets_it() {
        let mut overrides = BTreeMap::new();
        assert_eq!(
            child_window(&overrides).unwrap(),
            Duration::from_millis(200)
        );
        overrides.insert("BATCH_WINDOW_SECONDS".to_owned(), "1.5".to_owned());
        assert_eq!(
            child_window(&overrides).unwrap(),
            Duration::from_millis(1500)
        );
        overrides.insert("BATCH_WINDOW_SECONDS".to_owned(), "soon".to_owned());
        let error = child_window(&overrides).unwrap_err().to_string();
        assert!(error.contains("BATCH_WINDOW_SECONDS=soon"), "{error}");
    }

    #[test]
    fn recovery_runs_from_the_fault_to_the_last_burst_in_flight_answered() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let fault = Fault {
            kind: FaultKind::Kill,
            at: t0 + s(10),
            target: "lull-1".into(),
            back_after: Some(s(1)),
            error: None,
        };
        let bursts = [
            (t0 + s(1), Some(t0 + s(2))),   // answered before: not in flight
            (t0 + s(9), Some(t0 + s(13))),  // in flight, answered 3 s later
            (t0 + s(8), Some(t0 + s(11))),  // in flight
            (t0 + s(12), Some(t0 + s(20))), // sent after: not in flight
        ];
        let record = FaultRecord::of(&fault, t0, &bursts);
        assert_eq!(record.bursts_in_flight, 2);
        assert_eq!(record.recovery_seconds, Some(3.0));
        assert_eq!(record.at_seconds, 10.0);
        let lost = [(t0 + s(9), None)];
        assert_eq!(FaultRecord::of(&fault, t0, &lost).recovery_seconds, None);
    }
}
