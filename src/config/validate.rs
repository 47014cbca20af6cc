//! Checks every setting once at start (the first bad one is reported with its
//! environment variable), and converts them to the units the crate uses.

use super::{Cli, Config, ResponderKind, Secret};
use clap::Parser;
use std::time::Duration;

/// A setting that cannot be used, named by its environment variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub var: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// The longest duration any setting takes: ten years. Far above any sensible
/// value, it keeps every deadline (now + a duration, in unix ms) inside the
/// integers Redis and PostgreSQL take; a larger one would overflow there, or
/// panic here in `Duration::from_secs_f64`.
const MAX_SECONDS: f64 = 10.0 * 365.0 * 86_400.0;

fn seconds(var: &'static str, value: f64) -> Result<Duration, ConfigError> {
    if value.is_finite() && value > 0.0 && value <= MAX_SECONDS {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(ConfigError {
            var,
            reason: format!(
                "must be a positive number of seconds, at most {MAX_SECONDS} (ten years), got {value}"
            ),
        })
    }
}

/// [`seconds`] for a setting given in hours, refused in its own unit.
fn hours(var: &'static str, value: f64) -> Result<Duration, ConfigError> {
    seconds(var, value * 3600.0).map_err(|_| ConfigError {
        var,
        reason: format!(
            "must be a positive number of hours, at most {} (ten years), got {value}",
            MAX_SECONDS / 3600.0
        ),
    })
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
        let age = self.reconcile_min_age_seconds;
        if age != 0.0 && seconds("RECONCILE_MIN_AGE_SECONDS", age).is_err() {
            return Err(ConfigError {
                var: "RECONCILE_MIN_AGE_SECONDS",
                reason: format!(
                    "must be 0 (window + lock TTL) or a positive number of seconds, at most {MAX_SECONDS}, got {age}"
                ),
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
        if let Some(max) = self.max_connections {
            positive("MAX_CONNECTIONS", max as u64)?;
        }
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
        if self.cache_ttl()? <= self.max_wait()? + self.lock_ttl()? {
            // A collecting batch lives up to max wait, then a lease: its keys must
            // outlive both, or its messages would expire before they are claimed.
            return Err(ConfigError {
                var: "CACHE_TTL_HOURS",
                reason: "must be longer than BATCH_MAX_WAIT_SECONDS + LOCK_TTL_SECONDS".into(),
            });
        }
        Ok(())
    }

    /// The LLM settings, when an LLM responder is chosen (LLM_BASE_URL is checked
    /// whenever it is set, so a typo shows before the responder is switched on).
    fn validate_llm(&self) -> Result<(), ConfigError> {
        self.llm_timeout()?;
        positive("LLM_MAX_TOKENS", self.llm_max_tokens.into())?;
        positive("LLM_HISTORY_CHARS", self.llm_history_chars.into())?;
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
        hours("CACHE_TTL_HOURS", self.cache_ttl_hours)
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
    fn a_cache_ttl_shorter_than_a_batch_can_live_is_refused() {
        let error = parse(&["--cache-ttl-hours=0.01", "--batch-max-wait-seconds=120"])
            .validate()
            .unwrap_err();
        assert_eq!(error.var, "CACHE_TTL_HOURS");
    }

    #[test]
    fn a_cache_ttl_is_refused_in_hours_its_own_unit() {
        let error = parse(&["--cache-ttl-hours=-1"]).validate().unwrap_err();
        assert_eq!(error.var, "CACHE_TTL_HOURS");
        assert!(
            error.reason.contains("hours") && error.reason.ends_with("got -1"),
            "{}",
            error.reason
        );
    }

    #[test]
    fn connection_urls_are_not_shown_in_help_where_they_may_hold_a_password() {
        let mut help = Vec::new();
        <Cli as clap::CommandFactory>::command()
            .write_long_help(&mut help)
            .unwrap();
        let help = String::from_utf8(help).unwrap();
        for var in ["DATABASE_URL", "REDIS_URL", "LLM_BASE_URL"] {
            assert!(help.contains(&format!("[env: {var}]")), "{var}");
        }
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
    fn a_duration_too_long_to_use_is_refused_naming_its_variable() {
        for (flag, var) in [
            ("--batch-window-seconds=1e20", "BATCH_WINDOW_SECONDS"),
            ("--cache-ttl-hours=1e16", "CACHE_TTL_HOURS"),
            (
                "--reconcile-min-age-seconds=1e20",
                "RECONCILE_MIN_AGE_SECONDS",
            ),
            (
                "--reconcile-min-age-seconds=-1",
                "RECONCILE_MIN_AGE_SECONDS",
            ),
        ] {
            let error = parse(&[flag]).validate().unwrap_err();
            assert_eq!(error.var, var, "{flag}");
        }
        // Ten years is the most any of them takes.
        let decade = parse(&["--reconcile-min-age-seconds=315360000"]);
        decade.validate().unwrap();
        assert_eq!(decade.reconcile_min_age(), Duration::from_secs(315_360_000));
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
