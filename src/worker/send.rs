//! Sending one part of a reply with retries: exponential backoff with full jitter,
//! honouring Retry-After, while the lease heartbeat keeps the batch ours. A
//! Retry-After longer than the longest backoff is not waited for here: the batch
//! is handed back, due then, so that a throttled bot does not hold every worker.

use crate::channel::{Channel, SendError};
use crate::message::Conversation;
use crate::responder::reply::ReplyMessage;
use rand::Rng;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Retry settings.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per part, the first included.
    pub max_attempts: u32,
    /// First backoff; doubles each attempt.
    pub base: Duration,
    /// Longest single wait.
    pub max_delay: Duration,
}

/// How the sending of one part ended.
#[derive(Debug)]
pub enum SendResult {
    /// The platform accepted it.
    Sent {
        /// The platform's id for it.
        id: String,
        /// Requests made.
        attempts: u32,
    },
    /// A permanent error, or retries ran out.
    Failed {
        /// Requests made.
        attempts: u32,
        /// The last error.
        error: SendError,
    },
    /// Shutdown came during a backoff wait.
    Interrupted {
        /// Requests made.
        attempts: u32,
    },
    /// The platform asked for a wait longer than [`RetryPolicy::max_delay`]: too
    /// long to hold a worker for, so the caller hands the batch back, due then.
    Deferred {
        /// Requests made.
        attempts: u32,
        /// How long the platform asked for.
        wait: Duration,
        /// The refusal.
        error: SendError,
    },
}

impl RetryPolicy {
    /// The wait before try `attempt + 1`: full-jitter exponential backoff, at
    /// least the Retry-After asked for.
    pub(super) fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1 << attempt.min(16))
            .min(self.max_delay);
        let jittered = rand::rng().random_range(ceiling / 2..=ceiling);
        // A Retry-After over max_delay never comes here: that send is deferred.
        retry_after.map_or(jittered, |asked| asked.max(jittered))
    }
}

/// Sends one part (a message the channel rendered), retrying retryable errors
/// with backoff until the attempts run out or `stop` fires during a wait.
pub async fn send_with_retries(
    channel: &dyn Channel,
    to: &Conversation,
    part: &ReplyMessage,
    retry: &RetryPolicy,
    stop: &CancellationToken,
    on_retry: impl Fn(&SendError, Duration),
) -> SendResult {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match channel.send_message(to, part).await {
            Ok(id) => return SendResult::Sent { id, attempts },
            Err(
                error @ SendError::Retryable {
                    retry_after: Some(wait),
                    ..
                },
            ) if wait > retry.max_delay => {
                return SendResult::Deferred {
                    attempts,
                    wait,
                    error,
                };
            }
            Err(error @ SendError::Retryable { .. }) if attempts < retry.max_attempts => {
                let retry_after = match &error {
                    SendError::Retryable { retry_after, .. } => *retry_after,
                    SendError::Permanent { .. } => None,
                };
                let wait = retry.delay(attempts - 1, retry_after);
                on_retry(&error, wait);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => return SendResult::Interrupted { attempts },
                }
            }
            Err(error) => return SendResult::Failed { attempts, error },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_honours_retry_after() {
        let retry = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
        };
        for _ in 0..50 {
            let first = retry.delay(0, None);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = retry.delay(2, None);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            assert!(retry.delay(0, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
        }
    }
}
