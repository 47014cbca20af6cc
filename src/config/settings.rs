//! [`Settings`]: every setting checked, in the units the crate uses, grouped by
//! the part that takes it. Built only by [`Config::parse_settings`](super::Config::parse_settings).

use super::{
    ChannelsOn, InstagramSettings, LogFormat, ResponderSettings, Secret, TelegramSettings,
    WhatsAppSettings,
};
use std::time::Duration;

/// Every setting of the service, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Redis: connection and key layout.
    pub redis: RedisSettings,
    /// PostgreSQL.
    pub database: DatabaseSettings,
    /// The HTTP listener.
    pub http: HttpSettings,
    /// How bursts become batches.
    pub batch: BatchSettings,
    /// The claim loop and the work on each claimed batch.
    pub claim: ClaimSettings,
    /// The reconciler.
    pub reconcile: ReconcileSettings,
    /// Sending replies on every platform.
    pub send: SendSettings,
    /// The WhatsApp channel.
    pub whatsapp: WhatsAppSettings,
    /// The Telegram channel.
    pub telegram: TelegramSettings,
    /// The Instagram channel.
    pub instagram: InstagramSettings,
    /// Who writes the replies.
    pub responder: ResponderSettings,
    /// Retries of the responder and the fallback reply.
    pub generation: GenerationSettings,
    /// Log line format.
    pub log_format: LogFormat,
    /// Days texts and payloads are kept (RETENTION_DAYS); 0 keeps them forever.
    pub retention_days: u32,
    /// Handing conversations to human agents.
    pub handoff: HandoffSettings,
}

/// Handing conversations to human agents (issue 17).
#[derive(Debug, Clone, Default)]
pub struct HandoffSettings {
    /// Phrases with which a contact asks for a person (HANDOFF_KEYWORDS); empty: off.
    pub keywords: Vec<String>,
    /// Sent once when a keyword pauses the bot (HANDOFF_REPLY).
    pub reply: String,
    /// Idle time after which a paused conversation resumes by itself; `None`: never.
    pub idle: Option<Duration>,
    /// Our Meta app's id, to tell our Instagram echoes from an agent's.
    pub instagram_app_id: Option<String>,
}

/// Redis: connection and key layout.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://`, `rediss://`, or `redis-cluster://` for a Redis Cluster.
    pub url: String,
    /// Agenda shards (`conv:{N}:deadlines`), at least 1.
    pub shards: u16,
    /// Prefix of every key: non-empty, without `{` or `}`.
    pub key_prefix: String,
    /// Connections in the pool, at least 1.
    pub pool_size: usize,
    /// Per-command timeout.
    pub timeout: Duration,
}

/// PostgreSQL.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `postgres://` URL; the database is created if it does not exist.
    pub url: String,
    /// Connections in the pool, at least 1.
    pub pool_size: u32,
    /// Longest a webhook waits for its statement, a grouped write runs and a pool
    /// acquire waits.
    pub timeout: Duration,
}

/// The HTTP listener.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Address to listen on.
    pub host: String,
    /// Port to listen on.
    pub port: u16,
    /// Largest webhook body accepted, bytes (at least 1).
    pub max_body_bytes: usize,
    /// Bearer token of the admin page and its API; `None` leaves them to loopback.
    pub admin_token: Option<Secret>,
    /// Bearer token of /metrics; `None` leaves it open.
    pub metrics_token: Option<Secret>,
    /// Which channels' webhooks are served.
    pub channels_on: ChannelsOn,
    /// Connections held at once (MAX_CONNECTIONS); `None` derives it from the
    /// open-files limit when the listener starts.
    pub max_connections: Option<usize>,
}

/// How bursts become batches.
#[derive(Debug, Clone)]
pub struct BatchSettings {
    /// Silence after the last message before the batch is due.
    pub window: Duration,
    /// A batch is due no later than this after its first message.
    pub max_wait: Duration,
    /// A batch with this many messages is due at once (at least 1).
    pub max_messages: u32,
    /// After a menu choice the batch is due this soon.
    pub choice_grace: Duration,
    /// New messages during generation cancel the unsent reply and join the batch.
    pub supersede: bool,
    /// Supersedes allowed per batch before its reply goes out anyway.
    pub max_supersedes: u32,
    /// Reactions start and extend batches like messages do.
    pub reactions_trigger: bool,
    /// Lifetime of a conversation's keys after its last message: longer than
    /// `max_wait + lease`.
    pub cache_ttl: Duration,
    /// Messages kept in history (at least 1).
    pub history_limit: u32,
    /// Lease of a claimed batch (at least 300 ms); heartbeats extend it.
    pub lease: Duration,
}

/// The claim loop and the work on each claimed batch.
#[derive(Debug, Clone)]
pub struct ClaimSettings {
    /// Longest sleep of the claim loop.
    pub scan_interval: Duration,
    /// Batches generated and sent at once by one process (at least 1).
    pub concurrency: usize,
    /// Most characters of history given to the responder with a batch (at least 1).
    pub history_chars: usize,
    /// On shutdown, time given to batches in flight before they are handed back.
    pub shutdown_drain: Duration,
    /// WhatsApp's and Instagram's reply window after the person's last message;
    /// `None`: off.
    pub reply_window: Option<Duration>,
}

/// The reconciler.
#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    /// How often it looks for stored messages Redis lost.
    pub interval: Duration,
    /// A stored message is reconciled only when older than this (RECONCILE_MIN_AGE_SECONDS,
    /// or window + lease when that is 0).
    pub min_age: Duration,
}

/// Sending replies on every platform.
#[derive(Debug, Clone)]
pub struct SendSettings {
    /// Mark the last message read and show typing when a batch is claimed.
    pub typing_indicator: bool,
    /// How often typing is renewed while generating; `None`: each platform's own.
    pub typing_renewal: Option<Duration>,
    /// Send attempts per reply part before the batch is marked failed (at least 1).
    pub max_attempts: u32,
    /// First retry delay (doubles each attempt, with jitter).
    pub retry_base: Duration,
    /// Timeout of one platform API request.
    pub timeout: Duration,
}

/// Retries of the responder, and what is sent when a batch fails for good.
#[derive(Debug, Clone)]
pub struct GenerationSettings {
    /// Requests per claim to an unavailable responder (RESPONDER_MAX_ATTEMPTS, at
    /// least 1), with exponential backoff and jitter from SEND_RETRY_BASE.
    pub max_attempts: u32,
    /// FALLBACK_REPLY; `None`: off.
    pub fallback_reply: Option<String>,
}
