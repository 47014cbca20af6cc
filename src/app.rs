//! Builds every part from the [`Settings`] and runs them until shutdown.
//!
//! Shutdown order: stop accepting webhooks and stop claiming; let batches in flight
//! finish for SHUTDOWN_DRAIN_SECONDS; then hand back whatever is still generating
//! (due at once for another instance); close the pools.

use crate::batch::{BatchError, Policy, RedisBatches, RedisHealth};
use crate::channel::Channel;
use crate::channel::instagram::Instagram;
use crate::channel::telegram::Telegram;
use crate::channel::whatsapp::WhatsApp;
use crate::claim_loop::{ClaimLoop, Wake};
use crate::config::Settings;
use crate::http::{HttpState, Routes, Serves};
use crate::ingest::Ingest;
use crate::message::ChannelKind;
use crate::metrics::Metrics;
use crate::reconcile::Reconciler;
use crate::responder::Responder;
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
    /// PostgreSQL is unreachable or a migration failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The Redis URL is unusable.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The HTTP client for platform or LLM APIs could not be built.
    #[error("http client: {0}")]
    Client(#[from] reqwest::Error),
    /// MAX_CONNECTIONS is above what the open-files limit allows.
    #[error(transparent)]
    Connections(#[from] crate::http::ConnectionLimitError),
}

/// Every long-lived part of a lull process.
pub struct App {
    settings: Settings,
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
    pub async fn build(settings: Settings) -> Result<Self, AppError> {
        // reqwest is built without a default TLS provider; install ring once.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let metrics = Arc::<Metrics>::default();
        let store = Store::connect_with_timeout(
            &settings.database.url,
            settings.database.pool_size,
            settings.database.timeout,
            metrics.clone(),
        )
        .await?;
        store.migrate().await?;
        let redis = &settings.redis;
        let redis_batches = RedisBatches::connect(
            &redis.url,
            redis.pool_size,
            redis.timeout,
            &redis.key_prefix,
            redis.shards,
            Policy::from_settings(&settings.batch),
        )
        .await?;
        let http = reqwest::Client::builder()
            .timeout(settings.send.timeout)
            .build()?;
        let whatsapp = WhatsApp::new(settings.whatsapp.clone(), http.clone());
        let telegram = Telegram::new(settings.telegram.clone(), http.clone());
        let instagram = Instagram::new(settings.instagram.clone(), http);
        announce_channels(&settings);
        if settings.http.admin_token.is_none() {
            tracing::warn!(
                "ADMIN_TOKEN is not set: /admin answers only connections from this machine (behind a proxy on this host, that is everyone the proxy serves)"
            );
        }
        let mut channels: HashMap<ChannelKind, Arc<dyn Channel>> = HashMap::new();
        channels.insert(ChannelKind::WhatsApp, Arc::new(whatsapp));
        channels.insert(ChannelKind::Telegram, Arc::new(telegram));
        channels.insert(ChannelKind::Instagram, Arc::new(instagram));
        let responder = crate::responder::build(&settings.responder)?;
        Ok(Self {
            settings,
            store,
            redis: Arc::new(RedisHealth::new(metrics.clone())),
            redis_batches,
            wake: Arc::default(),
            metrics,
            channels,
            responder,
        })
    }

    /// The settings it was built with.
    pub fn settings(&self) -> &Settings {
        &self.settings
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
        .with_handoff(self.handoff())
    }

    /// Pauses and resumes conversations for human agents (admin, CLI, ingest).
    pub fn handoff(&self) -> crate::handoff::Handoff {
        crate::handoff::Handoff::new(
            self.store.clone(),
            self.redis_batches.clone(),
            self.metrics.clone(),
            self.wake.clone(),
            self.channels.clone(),
            self.settings.handoff.clone(),
        )
    }

    /// The batch processor.
    pub fn worker(&self) -> Arc<Worker> {
        let (batch, send) = (&self.settings.batch, &self.settings.send);
        // Often enough to notice new messages (supersede) and never let the lease lapse.
        let heartbeat = (batch.lease / 3).min((batch.window / 2).max(Duration::from_millis(50)));
        Arc::new(Worker::new(
            self.store.clone(),
            self.redis_batches.clone(),
            self.channels.clone(),
            self.responder.clone(),
            WorkerSettings {
                supersede: batch.supersede,
                max_supersedes: batch.max_supersedes.into(),
                max_wait: batch.max_wait,
                typing_indicator: send.typing_indicator,
                typing_renewal: send.typing_renewal,
                history_chars: self.settings.claim.history_chars,
                reply_window: self.settings.claim.reply_window,
                heartbeat,
                retry: RetryPolicy {
                    max_attempts: send.max_attempts,
                    base: send.retry_base,
                    max_delay: Duration::from_secs(30),
                },
                responder_retry: RetryPolicy {
                    max_attempts: self.settings.generation.max_attempts,
                    base: send.retry_base,
                    max_delay: Duration::from_secs(30),
                },
                fallback_reply: self.settings.generation.fallback_reply.clone(),
                stale_after: self.settings.reconcile.min_age,
            },
            self.metrics.clone(),
            self.handoff(),
        ))
    }

    /// The claim loop.
    pub fn claim_loop(&self) -> ClaimLoop {
        ClaimLoop::new(
            self.redis_batches.clone(),
            self.worker(),
            self.settings.claim.concurrency,
            self.settings.claim.scan_interval,
            self.wake.clone(),
            self.redis.clone(),
        )
    }

    /// The reconciler.
    pub fn reconciler(&self) -> Reconciler {
        Reconciler::new(
            self.store.clone(),
            self.redis_batches.clone(),
            self.ingest(),
            self.settings.reconcile.min_age,
            self.settings.reconcile.interval,
            self.metrics.clone(),
            self.redis.clone(),
        )
    }

    /// The channels whose webhooks are served: the configured ones (the worker
    /// keeps all three, to answer what was stored before a channel was turned off).
    fn webhook_channels(&self) -> HashMap<ChannelKind, Arc<dyn Channel>> {
        let on = self.settings.http.channels_on;
        self.channels
            .iter()
            .filter(|(kind, _)| match kind {
                ChannelKind::WhatsApp => on.whatsapp,
                ChannelKind::Telegram => on.telegram,
                ChannelKind::Instagram => on.instagram,
            })
            .map(|(kind, channel)| (*kind, channel.clone()))
            .collect()
    }

    /// The HTTP router.
    pub fn routes(&self, serves: Serves) -> Arc<Routes> {
        Arc::new(Routes::new(
            HttpState {
                channels: self.webhook_channels(),
                ingest: self.ingest(),
                store: self.store.clone(),
                redis_batches: self.redis_batches.clone(),
                handoff: self.handoff(),
                redis: self.redis.clone(),
                metrics: self.metrics.clone(),
                max_body_bytes: self.settings.http.max_body_bytes,
                admin_token: self.settings.http.admin_token.clone(),
                metrics_token: self.settings.http.metrics_token.clone(),
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
        let drain = self.settings.claim.shutdown_drain;
        let s = &self.settings;
        let connections = crate::http::ConnectionSettings::new(
            s.http.max_connections,
            crate::fd_limit::open_files().soft,
            crate::http::Reserve {
                database_pool: s.database.pool_size.into(),
                redis_pool: s.redis.pool_size as u64,
                // A platform request and an LLM request per batch in flight.
                outbound: 2 * s.claim.concurrency as u64,
            },
        )?;
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
            connections,
        ));
        crate::batch::probe::watch_connections(&self.redis_batches, self.redis.clone());
        let redis_probe = tokio::spawn(crate::batch::probe::run(
            self.redis_batches.clone(),
            self.redis.clone(),
            stop.clone(),
        ));
        let postgres_probe = tokio::spawn(crate::store::health::run(
            self.store.health().clone(),
            self.store.pool().clone(),
            stop.clone(),
        ));
        let claim_loop = tokio::spawn(self.claim_loop().run(stop.clone(), hand_back.clone()));
        let reconciler = tokio::spawn(self.reconciler().run(stop.clone()));
        let idle_resumer = tokio::spawn(crate::handoff::idle::run(self.handoff(), stop.clone()));
        let retention =
            crate::retention::Retention::new(self.store.clone(), self.settings.retention_days)
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
        let _ = redis_probe.await;
        let _ = postgres_probe.await;
        let _ = idle_resumer.await;
        if let Some(retention) = retention {
            let _ = retention.await;
        }
        self.redis_batches.quit().await;
        self.store.pool().close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Says once at start which channels' webhooks are served, and what each of those
/// does without its secrets: without the webhook secret (the demo, or
/// ALLOW_UNSIGNED_WEBHOOKS) unsigned webhooks are accepted; without the send token,
/// replies are logged instead of sent (dry run).
fn announce_channels(settings: &Settings) {
    let on = settings.http.channels_on;
    let channels = [
        (
            "whatsapp",
            on.whatsapp,
            (
                "WHATSAPP_APP_SECRET",
                settings.whatsapp.app_secret.is_some(),
            ),
            ("WHATSAPP_TOKEN", settings.whatsapp.token.is_some()),
        ),
        (
            "telegram",
            on.telegram,
            (
                "TELEGRAM_SECRET_TOKEN",
                settings.telegram.secret_token.is_some(),
            ),
            ("TELEGRAM_BOT_TOKEN", settings.telegram.bot_token.is_some()),
        ),
        (
            "instagram",
            on.instagram,
            (
                "INSTAGRAM_APP_SECRET",
                settings.instagram.app_secret.is_some(),
            ),
            ("INSTAGRAM_TOKEN", settings.instagram.token.is_some()),
        ),
    ];
    let names: Vec<&str> = channels
        .iter()
        .filter(|(_, on, _, _)| *on)
        .map(|(name, ..)| *name)
        .collect();
    if on.demo {
        tracing::warn!(
            channels = %names.join(","),
            "no channel is configured: running the demo, all three webhooks on, unsigned, replies logged (dry run)"
        );
        return;
    }
    tracing::info!(channels = %names.join(","), "channels on");
    for (channel, on, secret, token) in channels {
        if !on {
            continue;
        }
        let missing: Vec<String> = [
            (
                secret,
                "webhooks are accepted unsigned (ALLOW_UNSIGNED_WEBHOOKS)",
            ),
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
}
