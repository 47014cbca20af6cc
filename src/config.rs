//! Every setting, in one struct, read once from flags and the environment.
//!
//! The environment names are the seed's (`BATCH_WINDOW_SECONDS`, `SCANNER_INTERVAL`...)
//! so that existing deployments keep working. Values are validated at start: a bad
//! one stops the process with a message that names the variable.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::fmt;
use std::time::Duration;

/// A value that must never reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

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
    /// Claim loop and reconciler only (no webhook listener).
    Worker,
    /// Apply the database migrations and exit.
    Migrate,
}

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
}

impl ResponderKind {
    /// The name `RESPONDER` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            ResponderKind::Builtin => "builtin",
            ResponderKind::OpenAi => "openai",
            ResponderKind::Anthropic => "anthropic",
        }
    }
}

/// Every setting of the service.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Redis URL; `redis-cluster://host:port` for a Redis Cluster.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
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
        default_value = "postgres://postgres@127.0.0.1:5432/lull"
    )]
    pub database_url: String,
    /// Connections in the PostgreSQL pool.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 16)]
    pub database_pool_size: u32,

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
    #[arg(long, env = "LOCK_TTL_SECONDS", default_value_t = 20.0)]
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

    /// Bearer token for the admin page and its API; unset leaves them open.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,

    /// Who writes the replies: the built-in acknowledgement, or an LLM.
    #[arg(long, env = "RESPONDER", value_enum, default_value = "builtin")]
    pub responder: ResponderKind,
    /// Simulated generation time of the built-in responder, ms (demos and tests).
    #[arg(long, env = "RESPONDER_DELAY_MS", default_value_t = 0)]
    pub responder_delay_ms: u64,
    /// LLM API base URL [default: https://api.openai.com/v1 for openai,
    /// https://api.anthropic.com for anthropic]; point it at a local server
    /// (Ollama: http://localhost:11434/v1).
    #[arg(long, env = "LLM_BASE_URL")]
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
    /// Timeout of one LLM request, seconds.
    #[arg(long, env = "LLM_TIMEOUT_SECONDS", default_value_t = 60.0)]
    pub llm_timeout_seconds: f64,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// A setting that cannot be used, named by its environment variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub var: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn seconds(var: &'static str, value: f64) -> Result<Duration, ConfigError> {
    if value.is_finite() && value > 0.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(ConfigError {
            var,
            reason: format!("must be a positive number of seconds, got {value}"),
        })
    }
}

fn positive(var: &'static str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError {
            var,
            reason: "must be at least 1".into(),
        });
    }
    Ok(())
}

impl Config {
    /// Treats secrets set to an empty string as unset: `docker compose` passes
    /// `WHATSAPP_TOKEN=` when the variable is not defined, and an empty app secret
    /// would refuse every webhook.
    pub fn normalized(mut self) -> Self {
        for secret in [
            &mut self.whatsapp_app_secret,
            &mut self.whatsapp_verify_token,
            &mut self.whatsapp_token,
            &mut self.telegram_bot_token,
            &mut self.telegram_secret_token,
            &mut self.instagram_app_secret,
            &mut self.instagram_verify_token,
            &mut self.instagram_token,
            &mut self.admin_token,
            &mut self.llm_api_key,
        ] {
            if secret.as_ref().is_some_and(|s| s.expose().is_empty()) {
                *secret = None;
            }
        }
        for value in [
            &mut self.llm_base_url,
            &mut self.llm_model,
            &mut self.llm_system_prompt,
        ] {
            if value.as_ref().is_some_and(|v| v.trim().is_empty()) {
                *value = None;
            }
        }
        self
    }

    /// Checks every value once at start; the first bad one is reported.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.window()?;
        self.max_wait()?;
        self.cache_ttl()?;
        self.scan_interval()?;
        self.lock_ttl()?;
        self.reconcile_interval()?;
        self.shutdown_drain()?;
        self.send_timeout()?;
        self.redis_timeout()?;
        if self.reconcile_min_age_seconds < 0.0 || !self.reconcile_min_age_seconds.is_finite() {
            return Err(ConfigError {
                var: "RECONCILE_MIN_AGE_SECONDS",
                reason: "must be 0 or more".into(),
            });
        }
        positive("REDIS_SHARDS", self.redis_shards.into())?;
        positive("REDIS_POOL_SIZE", self.redis_pool_size as u64)?;
        positive("DATABASE_POOL_SIZE", self.database_pool_size.into())?;
        positive("BATCH_MAX_MESSAGES", self.batch_max_messages.into())?;
        positive("HISTORY_LIMIT", self.history_limit.into())?;
        positive("WORKER_CONCURRENCY", self.worker_concurrency as u64)?;
        positive("SEND_MAX_ATTEMPTS", self.send_max_attempts.into())?;
        positive("MAX_BODY_BYTES", self.max_body_bytes as u64)?;
        if self.redis_key_prefix.is_empty() || self.redis_key_prefix.contains(['{', '}']) {
            return Err(ConfigError {
                var: "REDIS_KEY_PREFIX",
                reason: "must be non-empty and hold no '{' or '}' (lull adds the hash tags)".into(),
            });
        }
        for (var, url, schemes) in [
            (
                "REDIS_URL",
                &self.redis_url,
                &["redis", "rediss", "redis-cluster", "rediss-cluster"][..],
            ),
            (
                "DATABASE_URL",
                &self.database_url,
                &["postgres", "postgresql"][..],
            ),
            (
                "GRAPH_API_BASE",
                &self.graph_api_base,
                &["http", "https"][..],
            ),
            (
                "TELEGRAM_API_BASE",
                &self.telegram_api_base,
                &["http", "https"][..],
            ),
            (
                "INSTAGRAM_API_BASE",
                &self.instagram_api_base,
                &["http", "https"][..],
            ),
        ] {
            let parsed = url::Url::parse(url).map_err(|e| ConfigError {
                var,
                reason: format!("not a URL: {e}"),
            })?;
            if !schemes.contains(&parsed.scheme()) {
                return Err(ConfigError {
                    var,
                    reason: format!("scheme must be one of {schemes:?}"),
                });
            }
        }
        // The bot id (before the colon) becomes the account in keys and rows: a token
        // of another shape would put the secret there. The value is never echoed.
        let set = |secret: &Option<Secret>| secret.clone().filter(|s| !s.expose().is_empty());
        if let Some(token) = set(&self.telegram_bot_token) {
            if crate::channel::telegram::bot_id(token.expose()).is_none() {
                return Err(ConfigError {
                    var: "TELEGRAM_BOT_TOKEN",
                    reason: "must look like <bot id digits>:<secret>, as @BotFather gives it"
                        .into(),
                });
            }
        }
        // Telegram's own rule for setWebhook's secret_token; a token it would refuse
        // could never be matched.
        if let Some(secret) = set(&self.telegram_secret_token) {
            let value = secret.expose();
            let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
            if value.len() > 256 || !value.chars().all(allowed) {
                return Err(ConfigError {
                    var: "TELEGRAM_SECRET_TOKEN",
                    reason: "must be 1-256 characters of A-Z, a-z, 0-9, _ and -".into(),
                });
            }
        }
        self.validate_llm()?;
        if self.lock_ttl()? < Duration::from_millis(300) {
            return Err(ConfigError {
                var: "LOCK_TTL_SECONDS",
                reason: "must be at least 0.3 (heartbeats run at a third of it)".into(),
            });
        }
        Ok(())
    }

    /// The LLM settings, when an LLM responder is chosen (LLM_BASE_URL is checked
    /// whenever it is set, so a typo shows before the responder is switched on).
    fn validate_llm(&self) -> Result<(), ConfigError> {
        self.llm_timeout()?;
        positive("LLM_MAX_TOKENS", self.llm_max_tokens.into())?;
        if let Some(base) = self.llm_base_url() {
            let parsed = url::Url::parse(base).map_err(|e| ConfigError {
                var: "LLM_BASE_URL",
                reason: format!("not a URL: {e}"),
            })?;
            if !["http", "https"].contains(&parsed.scheme()) {
                return Err(ConfigError {
                    var: "LLM_BASE_URL",
                    reason: "scheme must be http or https".into(),
                });
            }
        }
        if self.responder == ResponderKind::Builtin {
            return Ok(());
        }
        let responder = self.responder.as_str();
        if self
            .llm_model
            .as_deref()
            .is_none_or(|m| m.trim().is_empty())
        {
            return Err(ConfigError {
                var: "LLM_MODEL",
                reason: format!("must be set when RESPONDER is {responder}"),
            });
        }
        let no_key = self
            .llm_api_key
            .as_ref()
            .is_none_or(|k| k.expose().is_empty());
        if self.responder == ResponderKind::Anthropic && no_key {
            return Err(ConfigError {
                var: "LLM_API_KEY",
                reason: format!("must be set when RESPONDER is {responder}"),
            });
        }
        Ok(())
    }

    /// LLM_BASE_URL, or the chosen responder's public API; `None` for the built-in
    /// responder when it is unset.
    pub fn llm_base_url(&self) -> Option<&str> {
        match (&self.llm_base_url, self.responder) {
            (Some(url), _) if !url.trim().is_empty() => Some(url),
            (_, ResponderKind::OpenAi) => Some("https://api.openai.com/v1"),
            (_, ResponderKind::Anthropic) => Some("https://api.anthropic.com"),
            (_, ResponderKind::Builtin) => None,
        }
    }
    /// LLM_SYSTEM_PROMPT, or the default support-assistant prompt.
    pub fn llm_system_prompt(&self) -> &str {
        self.llm_system_prompt
            .as_deref()
            .unwrap_or(crate::responder::DEFAULT_SYSTEM_PROMPT)
    }
    /// LLM_TIMEOUT_SECONDS.
    pub fn llm_timeout(&self) -> Result<Duration, ConfigError> {
        seconds("LLM_TIMEOUT_SECONDS", self.llm_timeout_seconds)
    }
    /// BATCH_WINDOW_SECONDS.
    pub fn window(&self) -> Result<Duration, ConfigError> {
        seconds("BATCH_WINDOW_SECONDS", self.batch_window_seconds)
    }
    /// BATCH_MAX_WAIT_SECONDS.
    pub fn max_wait(&self) -> Result<Duration, ConfigError> {
        seconds("BATCH_MAX_WAIT_SECONDS", self.batch_max_wait_seconds)
    }
    /// CACHE_TTL_HOURS.
    pub fn cache_ttl(&self) -> Result<Duration, ConfigError> {
        seconds("CACHE_TTL_HOURS", self.cache_ttl_hours * 3600.0)
    }
    /// SCANNER_INTERVAL.
    pub fn scan_interval(&self) -> Result<Duration, ConfigError> {
        seconds("SCANNER_INTERVAL", self.scanner_interval)
    }
    /// LOCK_TTL_SECONDS.
    pub fn lock_ttl(&self) -> Result<Duration, ConfigError> {
        seconds("LOCK_TTL_SECONDS", self.lock_ttl_seconds)
    }
    /// RECONCILE_INTERVAL_SECONDS.
    pub fn reconcile_interval(&self) -> Result<Duration, ConfigError> {
        seconds(
            "RECONCILE_INTERVAL_SECONDS",
            self.reconcile_interval_seconds,
        )
    }
    /// SHUTDOWN_DRAIN_SECONDS.
    pub fn shutdown_drain(&self) -> Result<Duration, ConfigError> {
        seconds("SHUTDOWN_DRAIN_SECONDS", self.shutdown_drain_seconds)
    }
    /// SEND_TIMEOUT_SECONDS.
    pub fn send_timeout(&self) -> Result<Duration, ConfigError> {
        seconds("SEND_TIMEOUT_SECONDS", self.send_timeout_seconds)
    }
    /// REDIS_TIMEOUT_SECONDS.
    pub fn redis_timeout(&self) -> Result<Duration, ConfigError> {
        seconds("REDIS_TIMEOUT_SECONDS", self.redis_timeout_seconds)
    }
    /// RECONCILE_MIN_AGE_SECONDS, or window + lock TTL when 0.
    pub fn reconcile_min_age(&self) -> Duration {
        if self.reconcile_min_age_seconds > 0.0 {
            Duration::from_secs_f64(self.reconcile_min_age_seconds)
        } else {
            Duration::from_secs_f64(self.batch_window_seconds + self.lock_ttl_seconds)
        }
    }
}

impl Default for Config {
    /// The documented defaults, as if no flag or variable were set.
    fn default() -> Self {
        Cli::parse_from(["lull"]).config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut argv = vec!["lull"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("parses").config
    }

    #[test]
    fn the_defaults_are_the_seeds() {
        let c = parse(&[]);
        assert_eq!(c.batch_window_seconds, 30.0);
        assert_eq!(c.cache_ttl_hours, 1.0);
        assert_eq!(c.history_limit, 200);
        assert_eq!(c.scanner_interval, 0.5);
        assert_eq!(c.lock_ttl_seconds, 20.0);
        assert_eq!(c.port, 8000);
        assert_eq!(c.redis_key_prefix, "conv:");
        assert!(c.validate().is_ok());
    }

    #[test]
    fn a_non_positive_window_is_refused_naming_its_variable() {
        let error = parse(&["--batch-window-seconds=0"]).validate().unwrap_err();
        assert_eq!(error.var, "BATCH_WINDOW_SECONDS");
        assert!(error.to_string().contains("BATCH_WINDOW_SECONDS"));
    }

    #[test]
    fn a_value_that_is_not_a_number_is_refused_naming_its_variable() {
        let error = Cli::try_parse_from(["lull", "--scanner-interval", "soon"]).unwrap_err();
        assert!(error.to_string().contains("SCANNER_INTERVAL"), "{error}");
    }

    #[test]
    fn a_redis_url_of_another_scheme_is_refused() {
        let error = parse(&["--redis-url", "http://localhost"])
            .validate()
            .unwrap_err();
        assert_eq!(error.var, "REDIS_URL");
    }

    #[test]
    fn the_platform_api_bases_must_be_http_urls() {
        for (flag, var) in [
            ("--telegram-api-base", "TELEGRAM_API_BASE"),
            ("--instagram-api-base", "INSTAGRAM_API_BASE"),
        ] {
            for bad in ["ftp://example.com", "not a url"] {
                let error = parse(&[flag, bad]).validate().unwrap_err();
                assert_eq!(error.var, var, "{bad}");
            }
            assert!(parse(&[flag, "http://127.0.0.1:1/x"]).validate().is_ok());
        }
        let c = parse(&[]);
        assert_eq!(c.telegram_api_base, "https://api.telegram.org");
        assert_eq!(c.instagram_api_base, "https://graph.instagram.com/v23.0");
    }

    #[test]
    fn a_telegram_bot_token_without_a_bot_id_is_refused_without_echoing_it() {
        let error = parse(&["--telegram-bot-token", "s3cret-no-colon"])
            .validate()
            .unwrap_err();
        assert_eq!(error.var, "TELEGRAM_BOT_TOKEN");
        assert!(!error.to_string().contains("s3cret"));
        assert!(
            parse(&["--telegram-bot-token", "7000000001:AAF_x-y"])
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn a_telegram_secret_token_must_be_one_telegram_accepts() {
        let error = parse(&["--telegram-secret-token", "has space"])
            .validate()
            .unwrap_err();
        assert_eq!(error.var, "TELEGRAM_SECRET_TOKEN");
        assert!(
            parse(&["--telegram-secret-token", "fixture_secret_token-123"])
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn empty_platform_secrets_count_as_unset_and_none_prints() {
        let c = parse(&[
            "--telegram-bot-token",
            "",
            "--telegram-secret-token",
            "",
            "--instagram-app-secret",
            "",
            "--instagram-verify-token",
            "",
            "--instagram-token",
            "ig-s3cret",
        ])
        .normalized();
        assert!(c.telegram_bot_token.is_none());
        assert!(c.telegram_secret_token.is_none());
        assert!(c.instagram_app_secret.is_none());
        assert!(c.instagram_verify_token.is_none());
        assert!(c.instagram_token.is_some());
        assert!(!format!("{c:?}").contains("ig-s3cret"));
    }

    #[test]
    fn the_builtin_responder_is_the_default_and_needs_no_llm_settings() {
        let c = parse(&[]);
        assert_eq!(c.responder, ResponderKind::Builtin);
        assert_eq!(c.llm_base_url(), None);
        assert_eq!(c.llm_max_tokens, 512);
        assert_eq!(c.llm_timeout().unwrap(), Duration::from_secs(60));
        assert_eq!(
            c.llm_system_prompt(),
            crate::responder::DEFAULT_SYSTEM_PROMPT
        );
        assert!(c.validate().is_ok());
    }

    #[test]
    fn an_llm_responder_without_a_model_is_refused_naming_llm_model() {
        for responder in ["openai", "anthropic"] {
            let error = parse(&["--responder", responder, "--llm-api-key", "k"])
                .validate()
                .unwrap_err();
            assert_eq!(error.var, "LLM_MODEL", "{responder}");
            assert!(error.to_string().contains("LLM_MODEL"), "{error}");
        }
        let blank = parse(&["--responder", "openai", "--llm-model", ""]).normalized();
        assert_eq!(blank.validate().unwrap_err().var, "LLM_MODEL");
    }

    #[test]
    fn anthropic_needs_a_key_and_openai_does_not() {
        let error = parse(&["--responder", "anthropic", "--llm-model", "claude-x"])
            .validate()
            .unwrap_err();
        assert_eq!(error.var, "LLM_API_KEY");
        let empty_key = parse(&[
            "--responder",
            "anthropic",
            "--llm-model",
            "claude-x",
            "--llm-api-key",
            "",
        ])
        .normalized();
        assert_eq!(empty_key.validate().unwrap_err().var, "LLM_API_KEY");
        assert!(
            parse(&["--responder", "openai", "--llm-model", "llama3.2"])
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn the_llm_base_url_defaults_by_responder() {
        let openai = parse(&["--responder", "openai", "--llm-model", "m"]);
        assert_eq!(openai.llm_base_url(), Some("https://api.openai.com/v1"));
        let anthropic = parse(&["--responder", "anthropic", "--llm-model", "m"]);
        assert_eq!(anthropic.llm_base_url(), Some("https://api.anthropic.com"));
        let local = parse(&[
            "--responder",
            "openai",
            "--llm-model",
            "m",
            "--llm-base-url",
            "http://localhost:11434/v1",
        ]);
        assert_eq!(local.llm_base_url(), Some("http://localhost:11434/v1"));
        let unset = parse(&["--responder", "openai", "--llm-base-url", ""]).normalized();
        assert_eq!(unset.llm_base_url(), Some("https://api.openai.com/v1"));
    }

    #[test]
    fn bad_llm_values_are_refused_naming_their_variable() {
        let llm = ["--responder", "openai", "--llm-model", "m"];
        for (extra, var) in [
            (["--llm-base-url", "ftp://x"], "LLM_BASE_URL"),
            (["--llm-base-url", "localhost:11434"], "LLM_BASE_URL"),
            (["--llm-max-tokens", "0"], "LLM_MAX_TOKENS"),
            (["--llm-timeout-seconds", "0"], "LLM_TIMEOUT_SECONDS"),
        ] {
            let args: Vec<&str> = llm.iter().chain(&extra).copied().collect();
            assert_eq!(parse(&args).validate().unwrap_err().var, var, "{extra:?}");
        }
        let error = Cli::try_parse_from(["lull", "--responder", "gpt"]).unwrap_err();
        assert!(error.to_string().contains("openai"), "{error}");
    }

    #[test]
    fn the_llm_api_key_never_prints_and_empty_counts_as_unset() {
        let c = parse(&["--llm-api-key", "sk-s3cret"]).normalized();
        assert!(c.llm_api_key.is_some());
        assert!(!format!("{c:?}").contains("sk-s3cret"));
        assert!(
            parse(&["--llm-api-key", ""])
                .normalized()
                .llm_api_key
                .is_none()
        );
    }

    #[test]
    fn empty_secrets_count_as_unset_and_never_print() {
        let c = parse(&["--whatsapp-token", "", "--whatsapp-app-secret", "s3cret"]).normalized();
        assert!(c.whatsapp_token.is_none());
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
