//! `lull loadtest`: load generators that check lull's promises under load.
//!
//! - [`ingest`]: signed WhatsApp webhooks against a running lull, whose replies reach
//!   a recording fake Graph API ([`crate::fake_platform`]): every burst answered by
//!   one reply, whole and once ([`bursts`]), unless its messages reached lull more
//!   than a window apart ([`split`]), retries reported as duplicates, refused
//!   webhooks redelivered as Meta does ([`retry`]); with `--chaos`, against its own
//!   lull children while it kills them and wipes their Redis ([`chaos`]).
//! - [`claims`]: the Lua scripts alone, many concurrent claimers that die at random:
//!   every message acknowledged exactly once.
//! - [`report`]: the summary both print (a table or one JSON object) and the
//!   progress line on stderr.
//! - [`webhook`]: a WhatsApp text webhook and its signature, as Meta sends them.
//!
//! A load generator must not connect to PostgreSQL or run migrations, so `main`
//! dispatches here before building the app. The library functions return typed
//! reports, so tests assert on them; only [`run`] binds a socket, for the CLI.

pub mod bursts;
pub mod chaos;
pub mod claims;
pub mod ingest;
pub mod report;
pub mod retry;
pub mod split;
pub mod webhook;

use crate::batch::BatchError;
use crate::config::Secret;
use crate::fake_platform::{FakePlatform, Graph, Record};
use chaos::{ChaosArgs, ChaosError, Cluster, Wiring};
use claims::ClaimsReport;
use clap::{Args, Subcommand};
use ingest::IngestReport;
use report::Summary;
use retry::RetryArgs;
use std::time::Duration;

/// `lull loadtest <ingest|claims>`.
#[derive(Debug, Clone, Args)]
pub struct LoadtestArgs {
    /// Which load test.
    #[command(subcommand)]
    pub command: LoadtestCommand,
}

/// The load tests.
#[derive(Debug, Clone, Subcommand)]
pub enum LoadtestCommand {
    /// Drive a running lull with signed WhatsApp webhooks and check that every burst
    /// gets exactly one reply (through this command's own fake Graph API).
    Ingest(Box<IngestArgs>),
    /// Run the Redis Lua scripts alone under concurrent claimers that die at random,
    /// and check that every message is acknowledged exactly once.
    Claims(ClaimsArgs),
}

/// Settings of `lull loadtest ingest`.
#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// Base URL of the running lull (its default PORT is 8000).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Meta app secret to sign the webhooks with (lull's WHATSAPP_APP_SECRET); unset
    /// sends them unsigned.
    #[arg(long, env = "WHATSAPP_APP_SECRET", hide_env_values = true)]
    pub app_secret: Option<Secret>,
    /// Our WhatsApp business number id, in every webhook and the fake's URL path.
    #[arg(long, default_value = "123456789012345")]
    pub phone_number_id: String,
    /// Bearer token the fake Graph API requires (lull's WHATSAPP_TOKEN); unset
    /// accepts any non-empty one.
    #[arg(long, env = "WHATSAPP_TOKEN", hide_env_values = true)]
    pub graph_token: Option<Secret>,
    /// Conversations (contacts), run concurrently.
    #[arg(long, default_value_t = 1000)]
    pub conversations: u32,
    /// Bursts per conversation; each waits for the previous one's reply.
    #[arg(long, default_value_t = 2)]
    pub bursts: u32,
    /// Messages per burst, one webhook each.
    #[arg(long, default_value_t = 3)]
    pub burst_size: u32,
    /// Webhook POSTs in flight at once (a burst is POSTed in one slot, message
    /// after message, so it reaches lull within its window).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// POST every Nth webhook again, as the platform retries (0: never).
    #[arg(long, default_value_t = 10)]
    pub duplicate_every: u64,
    /// Address the fake Graph API listens on (point lull's GRAPH_API_BASE at
    /// http://<this>/v23.0).
    #[arg(long, default_value = "127.0.0.1:9100")]
    pub graph_listen: String,
    /// How long to wait for a burst's reply, and at most how long extra replies are
    /// watched for after the last one, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub settle_seconds: f64,
    /// lull's batch window, seconds (read from BATCH_WINDOW_SECONDS like lull, so
    /// one env file serves both). A burst split where its next message was stored
    /// more than this after the previous one was POSTed is lull keeping its
    /// contract, not a violation. With --chaos the children's window is used.
    #[arg(long, env = "BATCH_WINDOW_SECONDS", default_value_t = 30.0)]
    pub window_seconds: f64,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// How refused webhooks are redelivered.
    #[command(flatten)]
    pub retry: RetryArgs,
    /// The chaos run.
    #[command(flatten)]
    pub chaos: ChaosArgs,
}

/// Settings of `lull loadtest claims`.
#[derive(Debug, Clone, Args)]
pub struct ClaimsArgs {
    /// Redis URL; `redis-cluster://host:port` for a Redis Cluster.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Agenda shards [default: 1 standalone, 4 on a cluster].
    #[arg(long)]
    pub shards: Option<u16>,
    /// Conversations seeded due at once.
    #[arg(long, default_value_t = 10_000)]
    pub conversations: u32,
    /// Messages per conversation.
    #[arg(long, default_value_t = 3)]
    pub messages: u32,
    /// Extra conversations kept waiting on the agenda, due far in the future (to
    /// show the claim cost does not grow with the backlog).
    #[arg(long, default_value_t = 0)]
    pub waiting: u32,
    /// Concurrent claimer tasks.
    #[arg(long, default_value_t = 32)]
    pub claimers: usize,
    /// Due conversations fetched per claim round.
    #[arg(long, default_value_t = 64)]
    pub batch: u32,
    /// Probability that a claimer dies after a claim: it never acks, so the lease
    /// runs out and another claimer resumes the batch.
    #[arg(long, default_value_t = 0.01)]
    pub death_rate: f64,
    /// Lease of a claim, ms.
    #[arg(long, default_value_t = 500)]
    pub lease_ms: u64,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Why a load test could not run (a violation is not an error: it is in the report).
#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    /// A flag is out of range.
    #[error("--{flag}: {reason}")]
    Invalid {
        /// The flag, without dashes.
        flag: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The fake Graph API could not listen.
    #[error("listening on {addr} (--graph-listen): {source}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// Redis failed while seeding or cleaning up.
    #[error(transparent)]
    Redis(#[from] BatchError),
    /// The chaos run's own lull or Redis could not be started.
    #[error(transparent)]
    Chaos(#[from] ChaosError),
    /// Ctrl-C or SIGTERM: the run stopped, everything it started is stopped.
    #[error("interrupted")]
    Interrupted,
}

/// Either load test's report, boxed: their sizes differ too much for an enum.
#[derive(Debug)]
pub enum Report {
    /// `lull loadtest ingest`.
    Ingest(Box<IngestReport>),
    /// `lull loadtest claims`.
    Claims(Box<ClaimsReport>),
}

impl Report {
    /// The table, or one JSON object.
    pub fn render(&self, json: bool) -> String {
        match self {
            Report::Ingest(r) => report::render(r.as_ref(), json),
            Report::Claims(r) => report::render(r.as_ref(), json),
        }
    }

    /// What went wrong; empty on a pass.
    pub fn violations(&self) -> &[String] {
        match self {
            Report::Ingest(r) => r.violations(),
            Report::Claims(r) => r.violations(),
        }
    }
}

impl LoadtestCommand {
    /// Whether `--json` was given.
    pub fn json(&self) -> bool {
        match self {
            LoadtestCommand::Ingest(args) => args.json,
            LoadtestCommand::Claims(args) => args.json,
        }
    }
}

/// Runs the load test the command names, with progress on stderr, until it ends
/// or Ctrl-C / SIGTERM; either way everything it started is stopped.
pub async fn run(command: LoadtestCommand) -> Result<Report, LoadtestError> {
    tokio::select! {
        report = run_to_end(command) => report,
        () = interrupted() => Err(LoadtestError::Interrupted),
    }
}

/// Ctrl-C or SIGTERM (never, if neither can be watched).
async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn run_to_end(command: LoadtestCommand) -> Result<Report, LoadtestError> {
    match command {
        LoadtestCommand::Ingest(mut args) => {
            let listen = |source| LoadtestError::Listen {
                addr: args.graph_listen.clone(),
                source,
            };
            let listener = tokio::net::TcpListener::bind(&args.graph_listen)
                .await
                .map_err(listen)?;
            let api = Graph::new(&args.phone_number_id, args.graph_token.clone());
            let graph = FakePlatform::start(listener, api, Record::CountsOnly).map_err(listen)?;
            eprintln!("fake Graph API at {} (lull's GRAPH_API_BASE)", graph.base);
            if !args.chaos.chaos {
                return Ok(Report::Ingest(Box::new(ingest::run(&args, &graph).await?)));
            }
            // The children are ours: sign with a secret they know.
            let app_secret = args
                .app_secret
                .get_or_insert_with(|| Secret::new(format!("chaos{}", rand::random::<u64>())))
                .clone();
            let graph_token = args
                .graph_token
                .clone()
                .unwrap_or_else(|| Secret::new("loadtest-graph-token"));
            let wiring = Wiring {
                graph_api_base: &graph.base,
                app_secret: app_secret.expose(),
                graph_token: graph_token.expose(),
                run: rand::random::<u32>() % 10_000_000,
            };
            let mut cluster = Cluster::start(&args.chaos, wiring).await?;
            eprintln!(
                "chaos: {} lull children and a redis-server started; logs in {}",
                args.chaos.instances,
                cluster.logs.display()
            );
            let urls = cluster.urls();
            let report = ingest::run_against(&args, &graph, urls, Some(&mut cluster)).await;
            cluster.stop().await;
            Ok(Report::Ingest(Box::new(report?)))
        }
        LoadtestCommand::Claims(args) => Ok(Report::Claims(Box::new(claims::run(&args).await?))),
    }
}

/// Refuses a zero where at least one is needed.
fn at_least_one(flag: &'static str, value: u64) -> Result<(), LoadtestError> {
    if value == 0 {
        return Err(LoadtestError::Invalid {
            flag,
            reason: "must be at least 1".into(),
        });
    }
    Ok(())
}

/// A positive, finite number of seconds as a duration.
fn duration(flag: &'static str, seconds: f64) -> Result<Duration, LoadtestError> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| LoadtestError::Invalid {
            flag,
            reason: format!("{seconds} is not a positive number of seconds"),
        })
}
