//! The flags and environment variables, as clap reads them: the raw input that
//! [`Config::parse_settings`](super::Config::parse_settings) checks and turns into
//! [`Settings`](super::Settings).
//!
//! The environment names are the seed's (`BATCH_WINDOW_SECONDS`, `SCANNER_INTERVAL`...)
//! so that existing deployments keep working.

use super::Secret;
use clap::{Args, Parser, ValueEnum};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Which responder writes the replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ResponderKind {
    /// A fixed acknowledgement quoting the burst; needs no API key.
    Builtin,
    /// Any OpenAI-compatible Chat Completions API (OpenAI, gateways, vLLM, Ollama...).
    #[value(name = "openai")]
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
    /// A team's own bot at BOT_URL.
    Http,
}

impl ResponderKind {
    /// The name `RESPONDER` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            ResponderKind::Builtin => "builtin",
            ResponderKind::OpenAi => "openai",
            ResponderKind::Anthropic => "anthropic",
            ResponderKind::Http => "http",
        }
    }
}

/// Every setting of the service, as given: seconds as `f64`, secrets possibly empty.
/// The binary flattens it into its command line; [`Config::parse_settings`](Self::parse_settings)
/// checks it.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Redis URL; `redis-cluster://host:port` for a Redis Cluster.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub redis_url: String,
    /// Agenda shards (`conv:{N}:deadlines`); more than 1 spreads a Redis Cluster's load.
    #[arg(long, env = "REDIS_SHARDS", default_value_t = 1)]
    pub redis_shards: u16,
    /// Prefix of every Redis key, so tenants and tests can share a Redis.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "conv:")]
    pub redis_key_prefix: String,
    /// Connections in the Redis pool.
    #[arg(long, env = "REDIS_POOL_SIZE", default_value_t = 4)]
    pub redis_pool_size: usize,
    /// Per-command Redis timeout, seconds.
    #[arg(long, env = "REDIS_TIMEOUT_SECONDS", default_value_t = 2.0)]
    pub redis_timeout_seconds: f64,

    /// PostgreSQL URL; the database is created if it does not exist.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/lull",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Connections in the PostgreSQL pool.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 16)]
    pub database_pool_size: u32,
    /// Longest a webhook waits for PostgreSQL (and a grouped write or a pool
    /// acquire runs) before its 503, seconds; then a fresh connection checks
    /// whether PostgreSQL is down.
    #[arg(long, env = "DATABASE_TIMEOUT_SECONDS", default_value_t = 5.0)]
    pub database_timeout_seconds: f64,

    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8000)]
    pub port: u16,
    /// Largest webhook body accepted, bytes (Meta sends up to 3 MB).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Silence after the last message before the batch is answered, seconds.
    #[arg(long, env = "BATCH_WINDOW_SECONDS", default_value_t = 30.0)]
    pub batch_window_seconds: f64,
    /// A batch is answered no later than this after its first message, seconds.
    #[arg(long, env = "BATCH_MAX_WAIT_SECONDS", default_value_t = 120.0)]
    pub batch_max_wait_seconds: f64,
    /// A batch with this many messages is answered at once.
    #[arg(long, env = "BATCH_MAX_MESSAGES", default_value_t = 50)]
    pub batch_max_messages: u32,
    /// After a menu choice (button or list reply) the batch is due this soon, ms.
    #[arg(long, env = "BATCH_CHOICE_GRACE_MS", default_value_t = 1000)]
    pub batch_choice_grace_ms: u64,
    /// New messages during generation cancel the unsent reply and join the batch.
    #[arg(long, env = "BATCH_SUPERSEDE", default_value_t = true, action = clap::ArgAction::Set)]
    pub batch_supersede: bool,
    /// Supersedes allowed per batch before its reply goes out anyway.
    #[arg(long, env = "BATCH_MAX_SUPERSEDES", default_value_t = 3)]
    pub batch_max_supersedes: u32,
    /// Reactions start and extend batches like messages do.
    #[arg(long, env = "BATCH_REACTIONS_TRIGGER", default_value_t = false, action = clap::ArgAction::Set)]
    pub batch_reactions_trigger: bool,

    /// Lifetime of a conversation's Redis keys after its last message, hours.
    #[arg(long, env = "CACHE_TTL_HOURS", default_value_t = 1.0)]
    pub cache_ttl_hours: f64,
    /// Messages kept in history (Redis) and given to the responder.
    #[arg(long, env = "HISTORY_LIMIT", default_value_t = 200)]
    pub history_limit: u32,
    /// Longest sleep of the claim loop, seconds.
    #[arg(long, env = "SCANNER_INTERVAL", default_value_t = 0.5)]
    pub scanner_interval: f64,
    /// Lease of a claimed batch, seconds; heartbeats extend it.
    #[arg(long, env = "LOCK_TTL_SECONDS", default_value_t = 10.0)]
    pub lock_ttl_seconds: f64,
    /// Batches generated and sent at once by one process.
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = 32)]
    pub worker_concurrency: usize,
    /// How often the reconciler looks for stored messages Redis lost, seconds.
    #[arg(long, env = "RECONCILE_INTERVAL_SECONDS", default_value_t = 30.0)]
    pub reconcile_interval_seconds: f64,
    /// A stored message is reconciled only when older than this, seconds
    /// (0: window + lock TTL, enough for a live worker to have claimed it).
    #[arg(long, env = "RECONCILE_MIN_AGE_SECONDS", default_value_t = 0.0)]
    pub reconcile_min_age_seconds: f64,
    /// On SIGTERM, time given to batches in flight before they are handed back, seconds.
    #[arg(long, env = "SHUTDOWN_DRAIN_SECONDS", default_value_t = 10.0)]
    pub shutdown_drain_seconds: f64,

    /// Mark the last message read and show typing when a batch is claimed.
    #[arg(long, env = "TYPING_INDICATOR", default_value_t = true, action = clap::ArgAction::Set)]
    pub typing_indicator: bool,
    /// How often the typing indicator is renewed while a reply is generated, ms
    /// (0: each platform's own, a little under the time it shows it: WhatsApp 20 s,
    /// Instagram 15 s, Telegram 4 s).
    #[arg(long, env = "TYPING_RENEWAL_MS", default_value_t = 0)]
    pub typing_renewal_ms: u64,
    /// Send attempts per reply part before the batch is marked failed.
    #[arg(long, env = "SEND_MAX_ATTEMPTS", default_value_t = 5)]
    pub send_max_attempts: u32,
    /// First retry delay, ms (doubles each attempt, with jitter).
    #[arg(long, env = "SEND_RETRY_BASE_MS", default_value_t = 500)]
    pub send_retry_base_ms: u64,
    /// Timeout of one platform API request, seconds.
    #[arg(long, env = "SEND_TIMEOUT_SECONDS", default_value_t = 15.0)]
    pub send_timeout_seconds: f64,

    /// Meta app secret: webhooks must carry a valid X-Hub-Signature-256.
    #[arg(long, env = "WHATSAPP_APP_SECRET", hide_env_values = true)]
    pub whatsapp_app_secret: Option<Secret>,
    /// Token Meta echoes in the GET verification handshake.
    #[arg(long, env = "WHATSAPP_VERIFY_TOKEN", hide_env_values = true)]
    pub whatsapp_verify_token: Option<Secret>,
    /// Cloud API access token; without it replies are logged (dry run).
    #[arg(long, env = "WHATSAPP_TOKEN", hide_env_values = true)]
    pub whatsapp_token: Option<Secret>,
    /// Graph API base URL (tests point it at a local fake).
    #[arg(
        long,
        env = "GRAPH_API_BASE",
        default_value = "https://graph.facebook.com/v23.0"
    )]
    pub graph_api_base: String,

    /// Telegram bot token from @BotFather (`<bot id>:<secret>`); without it replies
    /// are logged (dry run).
    #[arg(long, env = "TELEGRAM_BOT_TOKEN", hide_env_values = true)]
    pub telegram_bot_token: Option<Secret>,
    /// The `secret_token` given to `setWebhook`: webhooks must carry it in
    /// X-Telegram-Bot-Api-Secret-Token.
    #[arg(long, env = "TELEGRAM_SECRET_TOKEN", hide_env_values = true)]
    pub telegram_secret_token: Option<Secret>,
    /// Telegram Bot API base URL (tests point it at a local fake).
    #[arg(
        long,
        env = "TELEGRAM_API_BASE",
        default_value = "https://api.telegram.org"
    )]
    pub telegram_api_base: String,

    /// Meta app secret of the Instagram app: webhooks must carry a valid X-Hub-Signature-256.
    #[arg(long, env = "INSTAGRAM_APP_SECRET", hide_env_values = true)]
    pub instagram_app_secret: Option<Secret>,
    /// Token Meta echoes in the Instagram GET verification handshake.
    #[arg(long, env = "INSTAGRAM_VERIFY_TOKEN", hide_env_values = true)]
    pub instagram_verify_token: Option<Secret>,
    /// Instagram access token; without it replies are logged (dry run).
    #[arg(long, env = "INSTAGRAM_TOKEN", hide_env_values = true)]
    pub instagram_token: Option<Secret>,
    /// Instagram API base URL (tests point it at a local fake).
    #[arg(
        long,
        env = "INSTAGRAM_API_BASE",
        default_value = "https://graph.instagram.com/v23.0"
    )]
    pub instagram_api_base: String,

    /// Bearer token for the admin page and its API (`Authorization: Bearer`);
    /// unset leaves them to connections from this machine.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,
    /// Bearer token for /metrics (`Authorization: Bearer`); unset leaves it open.
    #[arg(long, env = "METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<Secret>,
    /// Accept a channel's webhooks unsigned although its send token is set (a
    /// proxy checks them); otherwise a token without its secret refuses to start.
    #[arg(long, env = "ALLOW_UNSIGNED_WEBHOOKS", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_unsigned_webhooks: bool,

    /// Who writes the replies: the built-in acknowledgement, or an LLM.
    #[arg(long, env = "RESPONDER", value_enum, default_value = "builtin")]
    pub responder: ResponderKind,
    /// Simulated generation time of the built-in responder, ms (demos and tests).
    #[arg(long, env = "RESPONDER_DELAY_MS", default_value_t = 0)]
    pub responder_delay_ms: u64,
    /// LLM API base URL [default: https://api.openai.com/v1 for openai,
    /// https://api.anthropic.com for anthropic]; point it at a local server
    /// (Ollama: http://localhost:11434/v1).
    #[arg(long, env = "LLM_BASE_URL", hide_env_values = true)]
    pub llm_base_url: Option<String>,
    /// LLM API key (required for anthropic; optional for openai, for local servers).
    #[arg(long, env = "LLM_API_KEY", hide_env_values = true)]
    pub llm_api_key: Option<Secret>,
    /// LLM model name (required for openai and anthropic).
    #[arg(long, env = "LLM_MODEL")]
    pub llm_model: Option<String>,
    /// System prompt of the LLM [default: a support assistant answering the whole
    /// burst in one reply].
    #[arg(long, env = "LLM_SYSTEM_PROMPT")]
    pub llm_system_prompt: Option<String>,
    /// Longest LLM reply, tokens.
    #[arg(long, env = "LLM_MAX_TOKENS", default_value_t = 512)]
    pub llm_max_tokens: u32,
    /// Most characters of history given to the responder with a batch, newest
    /// kept: a long conversation must still fit a small model's context.
    #[arg(long, env = "LLM_HISTORY_CHARS", default_value_t = 24_000)]
    pub llm_history_chars: u32,
    /// Timeout of one LLM request, seconds.
    #[arg(long, env = "LLM_TIMEOUT_SECONDS", default_value_t = 60.0)]
    pub llm_timeout_seconds: f64,

    /// The bot's URL (RESPONDER=http): each batch is POSTed to it.
    #[arg(long, env = "BOT_URL", hide_env_values = true)]
    pub bot_url: Option<String>,
    /// The key of the HMAC-SHA256 signature on each request to the bot
    /// (RESPONDER=http; required).
    #[arg(long, env = "BOT_SECRET", hide_env_values = true)]
    pub bot_secret: Option<Secret>,
    /// Timeout of one request to the bot, seconds.
    #[arg(long, env = "BOT_TIMEOUT_SECONDS", default_value_t = 30.0)]
    pub bot_timeout_seconds: f64,
    /// Requests per batch to a responder that is unavailable (429, 5xx, timeouts)
    /// before the batch waits for a later claim.
    #[arg(long, env = "RESPONDER_MAX_ATTEMPTS", default_value_t = 3)]
    pub responder_max_attempts: u32,
    /// Sent once when a batch fails for good (its responder refused it, or stayed
    /// unavailable), so nobody is left without an answer; empty: off.
    #[arg(long, env = "FALLBACK_REPLY", default_value = "")]
    pub fallback_reply: String,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Connections held at once; more wait in the listen backlog [default: the
    /// open-files limit less the pools, outbound requests and 64; refused above it].
    #[arg(long, env = "MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Days message texts, webhook payloads and reply texts are kept; older ones
    /// are erased hourly (ids and times stay, for the stats). 0 keeps them forever.
    #[arg(long, env = "RETENTION_DAYS", default_value_t = 0)]
    pub retention_days: u32,

    /// WhatsApp's and Instagram's reply window, hours after the person's last
    /// message: older batches are closed as expired, never answered (the platforms
    /// refuse such replies). 0 turns the check off. Telegram has none.
    #[arg(long, env = "REPLY_WINDOW_HOURS", default_value_t = 24.0)]
    pub reply_window_hours: f64,

    /// Comma-separated phrases with which a contact asks for a person: a whole
    /// message matching one (ignoring case, accents and punctuation) pauses the
    /// bot. Empty: off.
    #[arg(long, env = "HANDOFF_KEYWORDS", default_value = "")]
    pub handoff_keywords: String,
    /// Sent once to a contact whose message matched HANDOFF_KEYWORDS.
    #[arg(
        long,
        env = "HANDOFF_REPLY",
        default_value = "A person will answer you here shortly."
    )]
    pub handoff_reply: String,
    /// A paused conversation goes back to the bot this many minutes after the
    /// later of the pause and the human agent's last message (fractions allowed);
    /// 0: only an operator resumes it.
    #[arg(long, env = "HANDOFF_IDLE_MINUTES", default_value_t = 60.0)]
    pub handoff_idle_minutes: f64,
    /// Our Meta app's id: an Instagram echo with another `app_id` is a human
    /// agent's message and pauses the bot. Unset: echoes of replies lull did not
    /// record as sent count as an agent's.
    #[arg(long, env = "INSTAGRAM_APP_ID")]
    pub instagram_app_id: Option<String>,
}

/// `Config` alone as a command line: the defaults, and the unit tests' flags.
#[derive(Debug, Parser)]
#[command(name = "lull")]
pub(super) struct Flags {
    /// The settings.
    #[command(flatten)]
    pub(super) config: Config,
}

impl Default for Config {
    /// The documented defaults, as if no flag were given (the environment still
    /// applies, as it does to the binary).
    fn default() -> Self {
        Flags::parse_from(["lull"]).config
    }
}
