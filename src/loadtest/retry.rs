//! Webhook redelivery as Meta does it: a webhook refused with a 5xx, or that could
//! not be delivered at all (a refused connection, a reset, a timeout), is sent again
//! later, less and less often, until it is accepted or the platform gives up.
//! Here: exponential backoff with jitter, capped, for a configurable total time.

use clap::Args;
use std::time::Duration;

/// How `lull loadtest ingest` redelivers a refused webhook.
#[derive(Debug, Clone, Args)]
pub struct RetryArgs {
    /// First delay before redelivering a webhook refused with a 5xx or a connection
    /// error, ms; each next one doubles, with jitter.
    #[arg(long, default_value_t = 50)]
    pub retry_base_ms: u64,
    /// Longest delay between two deliveries of one webhook, ms.
    #[arg(long, default_value_t = 2_000)]
    pub retry_cap_ms: u64,
    /// How long a webhook is redelivered before the load test gives it up, seconds
    /// (0: never redelivered).
    #[arg(long, default_value_t = 30.0)]
    pub retry_for_seconds: f64,
}

impl Default for RetryArgs {
    fn default() -> Self {
        Self {
            retry_base_ms: 50,
            retry_cap_ms: 2_000,
            retry_for_seconds: 30.0,
        }
    }
}

/// The redelivery schedule of one webhook.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    total: Duration,
}

impl Backoff {
    /// From the command line's settings (a negative or odd total means no retry).
    pub fn new(args: &RetryArgs) -> Self {
        Self {
            base: Duration::from_millis(args.retry_base_ms.max(1)),
            cap: Duration::from_millis(args.retry_cap_ms.max(args.retry_base_ms).max(1)),
            total: Duration::try_from_secs_f64(args.retry_for_seconds).unwrap_or_default(),
        }
    }

    /// The delay before redelivery number `retry` (1 for the first), given a
    /// `jitter` in [0, 1): between half and all of min(cap, base × 2^(retry-1)), so
    /// redeliveries of many webhooks spread out but none comes back at once.
    pub fn delay(&self, retry: u32, jitter: f64) -> Duration {
        let doubled = self
            .base
            .saturating_mul(1 << (retry.saturating_sub(1)).min(20));
        let ceiling = doubled.min(self.cap);
        ceiling.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// The next delay, or `None` when waiting it would pass the total time since the
    /// first delivery (`elapsed`): the webhook is given up.
    pub fn next(&self, retry: u32, elapsed: Duration, jitter: f64) -> Option<Duration> {
        let delay = self.delay(retry, jitter);
        (elapsed + delay <= self.total).then_some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(total_seconds: f64) -> Backoff {
        Backoff::new(&RetryArgs {
            retry_base_ms: 100,
            retry_cap_ms: 1_000,
            retry_for_seconds: total_seconds,
        })
    }

    #[test]
    fn delays_double_from_the_base_up_to_the_cap() {
        let b = backoff(60.0);
        let full: Vec<u128> = (1..=6).map(|r| b.delay(r, 1.0).as_millis()).collect();
        assert_eq!(full, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_keeps_a_delay_between_half_and_all_of_its_ceiling() {
        let b = backoff(60.0);
        assert_eq!(b.delay(3, 0.0), Duration::from_millis(200));
        assert_eq!(b.delay(3, 0.5), Duration::from_millis(300));
        assert_eq!(b.delay(1_000, 0.0), Duration::from_millis(500));
    }

    #[test]
    fn a_webhook_is_given_up_once_the_next_wait_would_pass_the_total() {
        let b = backoff(1.0);
        assert_eq!(
            b.next(1, Duration::ZERO, 1.0),
            Some(Duration::from_millis(100))
        );
        assert_eq!(b.next(4, Duration::from_millis(300), 1.0), None);
        assert_eq!(backoff(0.0).next(1, Duration::ZERO, 0.0), None);
    }
}
