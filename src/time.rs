//! Wall-clock time in the unit the Lua scripts take. Scripts never read the clock;
//! callers pass `now`, so tests can drive time.

use std::ops::{Add, Sub};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A point in time as milliseconds since the Unix epoch: what the Lua scripts
/// take and return, and what a batch's times are kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixMs(pub i64);

impl UnixMs {
    /// The current time (lull's clock).
    pub fn now() -> Self {
        Self(now_ms())
    }

    /// The milliseconds.
    pub fn ms(self) -> i64 {
        self.0
    }

    /// Seconds from `earlier` to `self`, zero when `earlier` is later (for the
    /// latency histograms).
    pub fn secs_since(self, earlier: UnixMs) -> f64 {
        (self.0 - earlier.0).max(0) as f64 / 1000.0
    }

    /// As a PostgreSQL timestamp; the epoch if out of range.
    pub fn timestamp(self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_millis(self.0).unwrap_or_default()
    }
}

impl From<i64> for UnixMs {
    fn from(ms: i64) -> Self {
        Self(ms)
    }
}

impl std::fmt::Display for UnixMs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Add<Duration> for UnixMs {
    type Output = UnixMs;

    fn add(self, d: Duration) -> UnixMs {
        UnixMs(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }
}

impl Sub<Duration> for UnixMs {
    type Output = UnixMs;

    fn sub(self, d: Duration) -> UnixMs {
        UnixMs(
            self.0
                .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_move_a_time_by_their_milliseconds() {
        let t = UnixMs(10_000);
        assert_eq!(t + Duration::from_millis(1_500), UnixMs(11_500));
        assert_eq!(t - Duration::from_secs(2), UnixMs(8_000));
        assert_eq!(UnixMs(11_500).secs_since(t), 1.5);
        assert_eq!(t.secs_since(UnixMs(11_500)), 0.0);
    }
}
