//! The command line: the commands, and the settings every command shares. Only the
//! binary has it, so the settings do not depend on the commands (`loadtest`).

use clap::{Parser, Subcommand};
use lull::config::Config;
use lull::loadtest::LoadtestArgs;

/// `lull`: one reply per burst of chat messages.
#[derive(Debug, Parser)]
#[command(name = "lull", version, about)]
pub struct Cli {
    /// What to run (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings shared by every command.
    #[command(flatten)]
    pub config: Config,
}

/// The commands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Webhook listener, claim loop and reconciler in one process.
    Serve,
    /// Claim loop and reconciler, without the webhooks: HOST:PORT serves only
    /// /healthz, /readyz and /metrics.
    Worker,
    /// Apply the database migrations and exit.
    Migrate,
    /// Ask the running service's /healthz (HOST, PORT; loopback when HOST is
    /// 0.0.0.0) and exit 0 only if it answers ok: the container's health check.
    Healthcheck,
    /// Load generators that check lull's promises under load (no database needed).
    Loadtest(LoadtestArgs),
    /// Erase one person's conversation: its messages, replies and Redis keys. Their
    /// next message starts a fresh conversation.
    Forget(ConversationArgs),
    /// Show one conversation: its transcript, Redis state, mode and last replies.
    Inspect(ConversationArgs),
    /// Messages in, replies out, replies saved, waits, failures and handoffs.
    Stats(StatsArgs),
    /// Stop the bot answering a conversation (a person takes over).
    Pause(PauseArgs),
    /// Let the bot answer a paused conversation again.
    Resume(ConversationArgs),
    /// Make a conversation's collecting batch due now.
    Flush(ConversationArgs),
    /// Each Lua script: name, SHA1 for EVALSHA, path and its KEYS/ARGV header
    /// (no database or Redis needed).
    Scripts(JsonArgs),
}

/// Only the output format.
#[derive(Debug, Clone, clap::Args)]
pub struct JsonArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The range of `lull stats`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatsArgs {
    /// How far back from now (or from --to): 90s, 30m, 24h, 7d, 2w.
    #[arg(long)]
    pub since: Option<String>,
    /// Start of the range, RFC 3339 (instead of --since).
    #[arg(long)]
    pub from: Option<String>,
    /// End of the range, RFC 3339 (default: now).
    #[arg(long)]
    pub to: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A conversation to pause, for how long and why.
#[derive(Debug, Clone, clap::Args)]
pub struct PauseArgs {
    /// The conversation and the output format.
    #[command(flatten)]
    pub target: ConversationArgs,
    /// Resume by itself after this many minutes (default: until `lull resume`).
    #[arg(long)]
    pub minutes: Option<f64>,
    /// Why, for the audit.
    #[arg(long)]
    pub reason: Option<String>,
}

/// A conversation named as on the agenda, and the output format.
#[derive(Debug, Clone, clap::Args)]
pub struct ConversationArgs {
    /// `whatsapp:<phone_number_id>:<wa_id>`, `instagram:<account>:<igsid>` or
    /// `telegram:<bot_id>:<chat>`.
    pub conversation: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}
