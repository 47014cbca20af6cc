//! The error of a setting that cannot be used, and the unit checks most settings
//! go through.

use std::time::Duration;

/// A setting that cannot be used, named by its environment variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub var: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// The longest duration any setting takes: ten years. Far above any sensible
/// value, it keeps every deadline (now + a duration, in unix ms) inside the
/// integers Redis and PostgreSQL take; a larger one would overflow there, or
/// panic here in `Duration::from_secs_f64`.
pub(super) const MAX_SECONDS: f64 = 10.0 * 365.0 * 86_400.0;

/// A positive number of seconds, at most [`MAX_SECONDS`].
pub(super) fn seconds(var: &'static str, value: f64) -> Result<Duration, ConfigError> {
    if value.is_finite() && value > 0.0 && value <= MAX_SECONDS {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(ConfigError {
            var,
            reason: format!(
                "must be a positive number of seconds, at most {MAX_SECONDS} (ten years), got {value}"
            ),
        })
    }
}

/// [`seconds`] for a setting given in hours, refused in its own unit.
pub(super) fn hours(var: &'static str, value: f64) -> Result<Duration, ConfigError> {
    seconds(var, value * 3600.0).map_err(|_| ConfigError {
        var,
        reason: format!(
            "must be a positive number of hours, at most {} (ten years), got {value}",
            MAX_SECONDS / 3600.0
        ),
    })
}

/// A count of at least 1.
pub(super) fn positive(var: &'static str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError {
            var,
            reason: "must be at least 1".into(),
        });
    }
    Ok(())
}
