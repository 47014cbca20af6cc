//! The batching policy the scripts apply, in the units they take (ms).

use crate::config::{Config, ConfigError};
use std::time::Duration;

/// Windows, caps and lifetimes, from the configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Silence after the last message before the batch is due.
    pub window: Duration,
    /// Cap after the batch's first message.
    pub max_wait: Duration,
    /// Batch size that is due at once.
    pub max_messages: u32,
    /// Delay after a menu choice.
    pub choice_grace: Duration,
    /// Lifetime of a conversation's keys.
    pub ttl: Duration,
    /// Entries kept in history.
    pub history_limit: u32,
    /// Lease of a claim.
    pub lease: Duration,
    /// Reactions start and extend batches.
    pub reactions_trigger: bool,
}

impl Policy {
    /// Reads the policy from a validated configuration.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        Ok(Self {
            window: config.window()?,
            max_wait: config.max_wait()?,
            max_messages: config.batch_max_messages,
            choice_grace: Duration::from_millis(config.batch_choice_grace_ms),
            ttl: config.cache_ttl()?,
            history_limit: config.history_limit,
            lease: config.lock_ttl()?,
            reactions_trigger: config.batch_reactions_trigger,
        })
    }
}

/// Milliseconds as the scripts take them.
pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
