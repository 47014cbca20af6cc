//! Builds every part from the [`Config`] and runs them until shutdown.
//!
//! Shutdown order: stop accepting webhooks and stop claiming; let batches in flight
//! finish for SHUTDOWN_DRAIN_SECONDS; then hand back whatever is still generating
//! (due at once for another instance); close the pools.

use crate::batch::{BatchError, Policy, RedisBatches, RedisHealth};
use crate::channel::Channel;
use crate::channel::instagram::{Instagram, InstagramSettings};
use crate::channel::telegram::{Telegram, TelegramSettings};
use crate::channel::whatsapp::{WhatsApp, WhatsAppSettings};
use crate::claim_loop::{ClaimLoop, Wake};
use crate::config::{Config, ConfigError, ResponderKind};
use crate::http::{HttpState, Routes, Serves};
use crate::ingest::Ingest;
use crate::message::ChannelKind;
use crate::metrics::Metrics;
use crate::reconcile::Reconciler;
use crate::responder::{
    AnthropicResponder, AnthropicSettings, BuiltinResponder, OpenAiResponder, OpenAiSettings,
    Responder,
};
use crate::store::{Store, StoreError};
use crate::worker::{RetryPolicy, Worker, WorkerSettings};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Why the app could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// PostgreSQL is unreachable or a migration failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The Redis URL is unusable.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The HTTP client for platform or LLM APIs could not be built.
    #[error("http client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Every long-lived part of a lull process.
pub struct App {
    config: Config,
    store: Store,
    redis_batches: RedisBatches,
    redis: Arc<RedisHealth>,
    wake: Arc<Wake>,
    metrics: Arc<Metrics>,
    channels: HashMap<ChannelKind, Arc<dyn Channel>>,
    responder: Arc<dyn Responder>,
}

impl App {
    /// Connects to PostgreSQL (creating the database and applying migrations) and to
    /// Redis (which may still be down), and builds the channels and the responder.
    pub async fn build(config: Config) -> Result<Self, AppError> {
        let config = config.normalized();
        config.validate()?;
        // reqwest is built without a default TLS provider; install ring once.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let metrics = Arc::<Metrics>::default();
        let store = Store::connect(
            &config.database_url,
            config.database_pool_size,
            metrics.clone(),
        )
        .await?;
        store.migrate().await?;
        let policy = Policy::from_config(&config)?;
        let redis_batches = RedisBatches::connect(
            &config.redis_url,
            config.redis_pool_size,
            config.redis_timeout()?,
            &config.redis_key_prefix,
            config.redis_shards,
            policy,
        )
        .await?;
        let http = reqwest::Client::builder()
            .timeout(config.send_timeout()?)
            .build()?;
        let whatsapp = WhatsApp::new(
            WhatsAppSettings {
                app_secret: config.whatsapp_app_secret.clone(),
                verify_token: config.whatsapp_verify_token.clone(),
                token: config.whatsapp_token.clone(),
                graph_api_base: config.graph_api_base.clone(),
                typing_indicator: config.typing_indicator,
            },
            http.clone(),
        );
        announce(
            "whatsapp",
            ("WHATSAPP_APP_SECRET", config.whatsapp_app_secret.is_some()),
            ("WHATSAPP_TOKEN", config.whatsapp_token.is_some()),
        );
        let telegram = Telegram::new(
            TelegramSettings {
                bot_token: config.telegram_bot_token.clone(),
                secret_token: config.telegram_secret_token.clone(),
                api_base: config.telegram_api_base.clone(),
                typing_indicator: config.typing_indicator,
            },
            http.clone(),
        );
        announce(
            "telegram",
            (
                "TELEGRAM_SECRET_TOKEN",
                config.telegram_secret_token.is_some(),
            ),
            ("TELEGRAM_BOT_TOKEN", config.telegram_bot_token.is_some()),
        );
        let instagram = Instagram::new(
            InstagramSettings {
                app_secret: config.instagram_app_secret.clone(),
                verify_token: config.instagram_verify_token.clone(),
                token: config.instagram_token.clone(),
                api_base: config.instagram_api_base.clone(),
                typing_indicator: config.typing_indicator,
            },
            http,
        );
        announce(
            "instagram",
            (
                "INSTAGRAM_APP_SECRET",
                config.instagram_app_secret.is_some(),
            ),
            ("INSTAGRAM_TOKEN", config.instagram_token.is_some()),
        );
        if config.admin_token.is_none() {
            tracing::warn!(
                "ADMIN_TOKEN is not set: /admin answers only connections from this machine (behind a proxy on this host, that is everyone the proxy serves)"
            );
        }
        let mut channels: HashMap<ChannelKind, Arc<dyn Channel>> = HashMap::new();
        channels.insert(ChannelKind::WhatsApp, Arc::new(whatsapp));
        channels.insert(ChannelKind::Telegram, Arc::new(telegram));
        channels.insert(ChannelKind::Instagram, Arc::new(instagram));
        let responder = responder(&config)?;
        Ok(Self {
            config,
            store,
            redis_batches,
            redis: Arc::default(),
            wake: Arc::default(),
            metrics,
            channels,
            responder,
        })
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The Redis side.
    pub fn redis_batches(&self) -> &RedisBatches {
        &self.redis_batches
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Store + batch, as the webhook uses it.
    pub fn ingest(&self) -> Ingest {
        Ingest::new(
            self.store.clone(),
            self.redis_batches.clone(),
            self.redis.clone(),
            self.wake.clone(),
            self.metrics.clone(),
        )
    }

    /// The batch processor.
    pub fn worker(&self) -> Result<Arc<Worker>, ConfigError> {
        let c = &self.config;
        let lease = c.lock_ttl()?;
        let window = c.window()?;
        // Often enough to notice new messages (supersede) and never let the lease lapse.
        let heartbeat = (lease / 3).min((window / 2).max(Duration::from_millis(50)));
        Ok(Arc::new(Worker::new(
            self.store.clone(),
            self.redis_batches.clone(),
            self.channels.clone(),
            self.responder.clone(),
            WorkerSettings {
                supersede: c.batch_supersede,
                max_supersedes: c.batch_max_supersedes.into(),
                max_wait: c.max_wait()?,
                typing_indicator: c.typing_indicator,
                history_chars: c.llm_history_chars as usize,
                heartbeat,
                retry: RetryPolicy {
                    max_attempts: c.send_max_attempts,
                    base: Duration::from_millis(c.send_retry_base_ms),
                    max_delay: Duration::from_secs(30),
                },
            },
            self.metrics.clone(),
        )))
    }

    /// The claim loop.
    pub fn claim_loop(&self) -> Result<ClaimLoop, ConfigError> {
        Ok(ClaimLoop::new(
            self.redis_batches.clone(),
            self.worker()?,
            self.config.worker_concurrency,
            self.config.scan_interval()?,
            self.wake.clone(),
            self.redis.clone(),
        ))
    }

    /// The reconciler.
    pub fn reconciler(&self) -> Result<Reconciler, ConfigError> {
        Ok(Reconciler::new(
            self.store.clone(),
            self.redis_batches.clone(),
            self.ingest(),
            self.config.reconcile_min_age(),
            self.config.reconcile_interval()?,
            self.metrics.clone(),
        ))
    }

    /// The HTTP router.
    pub fn routes(&self, serves: Serves) -> Arc<Routes> {
        Arc::new(Routes::new(
            HttpState {
                channels: self.channels.clone(),
                ingest: self.ingest(),
                store: self.store.clone(),
                redis_batches: self.redis_batches.clone(),
                redis: self.redis.clone(),
                metrics: self.metrics.clone(),
                max_body_bytes: self.config.max_body_bytes,
                admin_token: self.config.admin_token.clone(),
            },
            serves,
        ))
    }

    /// Runs the claim loop, the reconciler and the HTTP server on `listener` (what
    /// it `serves`: the webhooks, or a worker's probes and metrics) until
    /// `shutdown` resolves; then drains as the module doc says.
    pub async fn run(
        self,
        listener: TcpListener,
        serves: Serves,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), AppError> {
        let drain = self.config.shutdown_drain()?;
        let stop = CancellationToken::new();
        let hand_back = CancellationToken::new();
        if let Ok(addr) = listener.local_addr() {
            match serves {
                Serves::Everything => tracing::info!(%addr, "listening for webhooks"),
                Serves::Probes => {
                    tracing::info!(%addr, "listening for /healthz, /readyz and /metrics")
                }
            }
        }
        let http = tokio::spawn(crate::http::serve(
            listener,
            self.routes(serves),
            stop.clone().cancelled_owned(),
            drain,
        ));
        let claim_loop = tokio::spawn(self.claim_loop()?.run(stop.clone(), hand_back.clone()));
        let reconciler = tokio::spawn(self.reconciler()?.run(stop.clone()));
        let retention =
            crate::retention::Retention::new(self.store.clone(), self.config.retention_days)
                .map(|r| tokio::spawn(r.run(stop.clone())));

        shutdown.await;
        tracing::info!(
            drain_s = drain.as_secs_f64(),
            "shutting down: no new webhooks or claims"
        );
        stop.cancel();
        let timer = tokio::spawn({
            let hand_back = hand_back.clone();
            async move {
                tokio::time::sleep(drain).await;
                tracing::warn!("drain time over: handing back batches still in flight");
                hand_back.cancel();
            }
        });
        let _ = claim_loop.await;
        timer.abort();
        let _ = http.await;
        let _ = reconciler.await;
        if let Some(retention) = retention {
            let _ = retention.await;
        }
        self.redis_batches.quit().await;
        self.store.pool().close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The responder `RESPONDER` names. The LLM ones get an HTTP client of their own:
/// a generation takes far longer than a platform API call (LLM_TIMEOUT_SECONDS, not
/// SEND_TIMEOUT_SECONDS).
fn responder(config: &Config) -> Result<Arc<dyn Responder>, AppError> {
    let kind = config.responder;
    // validate() has checked these; the errors only keep a bad Config from panicking.
    let missing = |var: &'static str| ConfigError {
        var,
        reason: format!("must be set when RESPONDER is {}", kind.as_str()),
    };
    let http = || {
        Ok::<_, AppError>(
            reqwest::Client::builder()
                .timeout(config.llm_timeout()?)
                // A redirect would turn the POST into a GET, and reqwest would
                // forward Anthropic's x-api-key to another host: fail instead.
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        )
    };
    let base_url = config.llm_base_url().unwrap_or_default().to_owned();
    let system_prompt = config.llm_system_prompt().to_owned();
    let responder: Arc<dyn Responder> = match kind {
        ResponderKind::Builtin => {
            return Ok(Arc::new(BuiltinResponder::new(Duration::from_millis(
                config.responder_delay_ms,
            ))));
        }
        ResponderKind::OpenAi => Arc::new(OpenAiResponder::new(
            OpenAiSettings {
                base_url,
                api_key: config.llm_api_key.clone(),
                model: config
                    .llm_model
                    .clone()
                    .ok_or_else(|| missing("LLM_MODEL"))?,
                system_prompt,
                max_tokens: config.llm_max_tokens,
            },
            http()?,
        )),
        ResponderKind::Anthropic => Arc::new(AnthropicResponder::new(
            AnthropicSettings {
                base_url,
                api_key: config
                    .llm_api_key
                    .clone()
                    .ok_or_else(|| missing("LLM_API_KEY"))?,
                model: config
                    .llm_model
                    .clone()
                    .ok_or_else(|| missing("LLM_MODEL"))?,
                system_prompt,
                max_tokens: config.llm_max_tokens,
            },
            http()?,
        )),
    };
    tracing::info!(
        responder = kind.as_str(),
        model = config.llm_model.as_deref().unwrap_or_default(),
        "replies are written by an LLM"
    );
    Ok(responder)
}

/// Says once at start what a channel does without its secrets, in one line: without
/// the webhook secret, unauthenticated webhooks are accepted; without the API token,
/// replies are logged instead of sent (dry run).
fn announce(channel: &str, secret: (&str, bool), token: (&str, bool)) {
    let missing: Vec<String> = [
        (secret, "webhooks are accepted unauthenticated"),
        (token, "replies are logged instead of sent (dry run)"),
    ]
    .into_iter()
    .filter(|((_, set), _)| !set)
    .map(|((var, _), effect)| format!("{var} is not set: {effect}"))
    .collect();
    if !missing.is_empty() {
        tracing::warn!(channel, "{}", missing.join("; "));
    }
}
