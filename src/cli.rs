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
