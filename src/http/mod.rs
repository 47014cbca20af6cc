//! The hyper listener: webhooks, health, metrics and the admin page.
//!
//! `serve` takes an already-bound listener and a shutdown future (tests bind port
//! 0). On shutdown it stops accepting, lets open requests finish within the drain
//! time, then returns. It holds at most MAX_CONNECTIONS connections at once
//! ([`ConnectionSettings`]).

mod admin;
mod auth;
mod connection_limit;
mod connections;
mod listener;
pub mod probe;
mod response;
mod routes;
mod throttle;
mod webhook;

pub use connection_limit::{
    ConnectionLimitError, ConnectionSettings, HEADER_READ_TIMEOUT, Reserve, default_max_connections,
};
pub use listener::{LISTEN_BACKLOG, bind, serve};
pub use routes::{Routes, Serves};

use crate::batch::{RedisBatches, RedisHealth};
use crate::channel::Channel;
use crate::config::Secret;
use crate::handoff::Handoff;
use crate::ingest::Ingest;
use crate::message::ChannelKind;
use crate::metrics::Metrics;
use crate::store::Store;
use std::collections::HashMap;

use std::sync::Arc;

/// What the handlers need.
pub struct HttpState {
    /// Configured channels.
    pub channels: HashMap<ChannelKind, Arc<dyn Channel>>,
    /// Store + batch.
    pub ingest: Ingest,
    /// Database (readiness, admin).
    pub store: Store,
    /// Redis (readiness, admin).
    pub redis_batches: RedisBatches,
    /// Pauses and resumes conversations (the console's actions).
    pub handoff: Handoff,
    /// Redis outage tracker.
    pub redis: Arc<RedisHealth>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Largest webhook body.
    pub max_body_bytes: usize,
    /// Bearer token for /admin; without it, /admin answers loopback only.
    pub admin_token: Option<Secret>,
    /// Bearer token for /metrics; without it, /metrics is open.
    pub metrics_token: Option<Secret>,
}
