//! Whether Redis is answering, as seen by the calls this process makes: logged
//! once per outage (not once per message) and reported by `/readyz`.

use std::sync::atomic::{AtomicBool, Ordering};

/// Outage tracker shared by everything that calls Redis.
#[derive(Debug, Default)]
pub struct RedisHealth {
    down: AtomicBool,
}

impl RedisHealth {
    /// A call failed: the first failure of an outage is logged at error level.
    pub fn failed(&self, error: &super::BatchError) {
        if !self.down.swap(true, Ordering::SeqCst) {
            tracing::error!(%error, "Redis batching error, message kept in DB; further errors are logged at debug until Redis is back");
        } else {
            tracing::debug!(%error, "Redis still failing");
        }
    }

    /// A call succeeded: the end of an outage is logged once.
    pub fn ok(&self) {
        if self.down.swap(false, Ordering::SeqCst) {
            tracing::info!("Redis is back; the reconciler batches what was stored meanwhile");
        }
    }
}
