//! The batching policy the scripts apply, in the units they take (ms).

use crate::config::BatchSettings;
use std::time::Duration;

/// Windows, caps and lifetimes, from the settings.
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
    /// The policy of the batch settings.
    pub fn from_settings(batch: &BatchSettings) -> Self {
        Self {
            window: batch.window,
            max_wait: batch.max_wait,
            max_messages: batch.max_messages,
            choice_grace: batch.choice_grace,
            ttl: batch.cache_ttl,
            history_limit: batch.history_limit,
            lease: batch.lease,
            reactions_trigger: batch.reactions_trigger,
        }
    }
}

/// Milliseconds as the scripts take them.
pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
