//! [`Config::parse_settings`]: checks every setting once at start (the first bad
//! one is reported with its environment variable) and converts them to
//! [`Settings`], in the units the crate uses.

use super::channels::telegram_accepts_secret_token;
use super::error::{MAX_SECONDS, hours, positive, seconds};
use super::responder::responder_settings;
use super::{
    BatchSettings, ChannelsOn, ClaimSettings, Config, ConfigError, DatabaseSettings,
    GenerationSettings, HandoffSettings, HttpSettings, InstagramSettings, ReconcileSettings,
    RedisSettings, SendSettings, Settings, TelegramSettings, WhatsAppSettings, telegram_bot_id,
};
use std::time::Duration;

impl Config {
    /// Checks every value, the first bad one reported by its variable, and gives
    /// the settings in the units the crate uses. Secrets and LLM values set to an
    /// empty string count as unset.
    pub fn parse_settings(self) -> Result<Settings, ConfigError> {
        let c = self.normalized();
        let window = seconds("BATCH_WINDOW_SECONDS", c.batch_window_seconds)?;
        let max_wait = seconds("BATCH_MAX_WAIT_SECONDS", c.batch_max_wait_seconds)?;
        let cache_ttl = hours("CACHE_TTL_HOURS", c.cache_ttl_hours)?;
        let scan_interval = seconds("SCANNER_INTERVAL", c.scanner_interval)?;
        let lease = seconds("LOCK_TTL_SECONDS", c.lock_ttl_seconds)?;
        let reconcile_interval =
            seconds("RECONCILE_INTERVAL_SECONDS", c.reconcile_interval_seconds)?;
        let shutdown_drain = seconds("SHUTDOWN_DRAIN_SECONDS", c.shutdown_drain_seconds)?;
        let send_timeout = seconds("SEND_TIMEOUT_SECONDS", c.send_timeout_seconds)?;
        let redis_timeout = seconds("REDIS_TIMEOUT_SECONDS", c.redis_timeout_seconds)?;
        let database_timeout = seconds("DATABASE_TIMEOUT_SECONDS", c.database_timeout_seconds)?;
        let reconcile_min_age = c.reconcile_min_age()?;
        let reply_window = if c.reply_window_hours == 0.0 {
            None
        } else {
            Some(hours("REPLY_WINDOW_HOURS", c.reply_window_hours)?)
        };
        positive("REDIS_SHARDS", c.redis_shards.into())?;
        positive("REDIS_POOL_SIZE", c.redis_pool_size as u64)?;
        positive("DATABASE_POOL_SIZE", c.database_pool_size.into())?;
        positive("BATCH_MAX_MESSAGES", c.batch_max_messages.into())?;
        positive("HISTORY_LIMIT", c.history_limit.into())?;
        positive("WORKER_CONCURRENCY", c.worker_concurrency as u64)?;
        positive("SEND_MAX_ATTEMPTS", c.send_max_attempts.into())?;
        positive("RESPONDER_MAX_ATTEMPTS", c.responder_max_attempts.into())?;
        positive("MAX_BODY_BYTES", c.max_body_bytes as u64)?;
        if let Some(max) = c.max_connections {
            positive("MAX_CONNECTIONS", max as u64)?;
        }
        if c.redis_key_prefix.is_empty() || c.redis_key_prefix.contains(['{', '}']) {
            return Err(ConfigError {
                var: "REDIS_KEY_PREFIX",
                reason: "must be non-empty and hold no '{' or '}' (lull adds the hash tags)".into(),
            });
        }
        c.check_urls()?;
        c.check_telegram()?;
        let channels_on = c.channels_on()?;
        let handoff = c.handoff_settings()?;
        let responder = responder_settings(&c)?;
        if lease < Duration::from_millis(300) {
            return Err(ConfigError {
                var: "LOCK_TTL_SECONDS",
                reason: "must be at least 0.3 (heartbeats run at a third of it)".into(),
            });
        }
        if cache_ttl <= max_wait + lease {
            // A collecting batch lives up to max wait, then a lease: its keys must
            // outlive both, or its messages would expire before they are claimed.
            return Err(ConfigError {
                var: "CACHE_TTL_HOURS",
                reason: "must be longer than BATCH_MAX_WAIT_SECONDS + LOCK_TTL_SECONDS".into(),
            });
        }
        Ok(Settings {
            redis: RedisSettings {
                url: c.redis_url,
                shards: c.redis_shards,
                key_prefix: c.redis_key_prefix,
                pool_size: c.redis_pool_size,
                timeout: redis_timeout,
            },
            database: DatabaseSettings {
                url: c.database_url,
                pool_size: c.database_pool_size,
                timeout: database_timeout,
            },
            http: HttpSettings {
                host: c.host,
                port: c.port,
                max_body_bytes: c.max_body_bytes,
                admin_token: c.admin_token,
                metrics_token: c.metrics_token,
                channels_on,
                max_connections: c.max_connections,
            },
            batch: BatchSettings {
                window,
                max_wait,
                max_messages: c.batch_max_messages,
                choice_grace: Duration::from_millis(c.batch_choice_grace_ms),
                supersede: c.batch_supersede,
                max_supersedes: c.batch_max_supersedes,
                reactions_trigger: c.batch_reactions_trigger,
                cache_ttl,
                history_limit: c.history_limit,
                lease,
            },
            claim: ClaimSettings {
                scan_interval,
                concurrency: c.worker_concurrency,
                history_chars: c.llm_history_chars as usize,
                shutdown_drain,
                reply_window,
            },
            reconcile: ReconcileSettings {
                interval: reconcile_interval,
                min_age: reconcile_min_age,
            },
            send: SendSettings {
                typing_indicator: c.typing_indicator,
                typing_renewal: (c.typing_renewal_ms > 0)
                    .then(|| Duration::from_millis(c.typing_renewal_ms)),
                max_attempts: c.send_max_attempts,
                retry_base: Duration::from_millis(c.send_retry_base_ms),
                timeout: send_timeout,
            },
            whatsapp: WhatsAppSettings {
                app_secret: c.whatsapp_app_secret,
                verify_token: c.whatsapp_verify_token,
                token: c.whatsapp_token,
                graph_api_base: c.graph_api_base,
                typing_indicator: c.typing_indicator,
            },
            telegram: TelegramSettings {
                bot_token: c.telegram_bot_token,
                secret_token: c.telegram_secret_token,
                api_base: c.telegram_api_base,
                typing_indicator: c.typing_indicator,
            },
            instagram: InstagramSettings {
                app_secret: c.instagram_app_secret,
                verify_token: c.instagram_verify_token,
                token: c.instagram_token,
                api_base: c.instagram_api_base,
                typing_indicator: c.typing_indicator,
            },
            responder,
            generation: GenerationSettings {
                max_attempts: c.responder_max_attempts,
                fallback_reply: Some(c.fallback_reply.trim())
                    .filter(|f| !f.is_empty())
                    .map(str::to_owned),
            },
            log_format: c.log_format,
            retention_days: c.retention_days,
            handoff,
        })
    }

    /// The handoff settings: keywords split on commas, the idle time checked.
    fn handoff_settings(&self) -> Result<HandoffSettings, ConfigError> {
        let minutes = self.handoff_idle_minutes;
        if !minutes.is_finite() || minutes < 0.0 || minutes * 60.0 > MAX_SECONDS {
            return Err(ConfigError {
                var: "HANDOFF_IDLE_MINUTES",
                reason: "must be a number of minutes, 0 or more (0: never by itself)".into(),
            });
        }
        let keywords = self
            .handoff_keywords
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(HandoffSettings {
            keywords,
            reply: self.handoff_reply.clone(),
            idle: (minutes > 0.0).then(|| Duration::from_secs_f64(minutes * 60.0)),
            instagram_app_id: self.instagram_app_id.clone().filter(|id| !id.is_empty()),
        })
    }

    /// Treats secrets set to an empty string as unset: `docker compose` passes
    /// `WHATSAPP_TOKEN=` when the variable is not defined, and an empty app secret
    /// would refuse every webhook. Blank LLM values take their defaults.
    fn normalized(mut self) -> Self {
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
            &mut self.metrics_token,
            &mut self.llm_api_key,
            &mut self.bot_secret,
        ] {
            if secret.as_ref().is_some_and(|s| s.expose().is_empty()) {
                *secret = None;
            }
        }
        for value in [
            &mut self.llm_base_url,
            &mut self.llm_model,
            &mut self.llm_system_prompt,
            &mut self.bot_url,
        ] {
            if value.as_ref().is_some_and(|v| v.trim().is_empty()) {
                *value = None;
            }
        }
        self
    }

    /// RECONCILE_MIN_AGE_SECONDS, or window + lock TTL when 0 (enough for a live
    /// worker to have claimed the message).
    fn reconcile_min_age(&self) -> Result<Duration, ConfigError> {
        let age = self.reconcile_min_age_seconds;
        if age == 0.0 {
            // Both checked before this: their sum is at most twenty years.
            return Ok(Duration::from_secs_f64(
                self.batch_window_seconds + self.lock_ttl_seconds,
            ));
        }
        seconds("RECONCILE_MIN_AGE_SECONDS", age).map_err(|_| ConfigError {
            var: "RECONCILE_MIN_AGE_SECONDS",
            reason: format!(
                "must be 0 (window + lock TTL) or a positive number of seconds, at most {MAX_SECONDS}, got {age}"
            ),
        })
    }

    /// Every URL has a scheme its client speaks.
    fn check_urls(&self) -> Result<(), ConfigError> {
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
        Ok(())
    }

    /// The Telegram tokens of a normalised config (empty ones are unset).
    /// A channel is on when it is configured (its webhook secret or its send
    /// token); none configured runs the demo (all on, unsigned, dry run). A send
    /// token without its secret would answer unsigned webhooks for real: refused
    /// unless ALLOW_UNSIGNED_WEBHOOKS says a proxy checks them.
    fn channels_on(&self) -> Result<ChannelsOn, ConfigError> {
        let channels = [
            (
                "WHATSAPP_TOKEN",
                self.whatsapp_token.is_some(),
                "WHATSAPP_APP_SECRET",
                self.whatsapp_app_secret.is_some(),
            ),
            (
                "TELEGRAM_BOT_TOKEN",
                self.telegram_bot_token.is_some(),
                "TELEGRAM_SECRET_TOKEN",
                self.telegram_secret_token.is_some(),
            ),
            (
                "INSTAGRAM_TOKEN",
                self.instagram_token.is_some(),
                "INSTAGRAM_APP_SECRET",
                self.instagram_app_secret.is_some(),
            ),
        ];
        for (token_var, token, secret_var, secret) in channels {
            if token && !secret && !self.allow_unsigned_webhooks {
                return Err(ConfigError {
                    var: secret_var,
                    reason: format!(
                        "{token_var} is set without {secret_var}: unsigned webhooks would be \
                         answered for real; set {secret_var} (or ALLOW_UNSIGNED_WEBHOOKS=true \
                         when a proxy checks them)"
                    ),
                });
            }
        }
        let [whatsapp, telegram, instagram] = channels.map(|(_, token, _, secret)| token || secret);
        let demo = !(whatsapp || telegram || instagram);
        Ok(ChannelsOn {
            whatsapp: whatsapp || demo,
            telegram: telegram || demo,
            instagram: instagram || demo,
            demo,
        })
    }

    fn check_telegram(&self) -> Result<(), ConfigError> {
        // The bot id (before the colon) becomes the account in keys and rows: a token
        // of another shape would put the secret there. The value is never echoed.
        if let Some(token) = &self.telegram_bot_token {
            if telegram_bot_id(token.expose()).is_none() {
                return Err(ConfigError {
                    var: "TELEGRAM_BOT_TOKEN",
                    reason: "must look like <bot id digits>:<secret>, as @BotFather gives it"
                        .into(),
                });
            }
        }
        // A secret token Telegram would refuse could never be matched.
        if let Some(secret) = &self.telegram_secret_token {
            if !telegram_accepts_secret_token(secret.expose()) {
                return Err(ConfigError {
                    var: "TELEGRAM_SECRET_TOKEN",
                    reason: "must be 1-256 characters of A-Z, a-z, 0-9, _ and -".into(),
                });
            }
        }
        Ok(())
    }
}
