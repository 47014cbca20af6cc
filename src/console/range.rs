//! The range the stats cover: `since=24h` (s, m, h, d, w), or `from`/`to` as
//! RFC 3339 times.

use super::ConsoleError;
use chrono::{DateTime, Utc};

/// `"90s"`, `"30m"`, `"24h"`, `"7d"`, `"2w"` as a length of time.
pub fn parse_since(text: &str) -> Result<chrono::Duration, ConsoleError> {
    let bad = || {
        ConsoleError::BadRequest(format!(
            "since {text:?}: expected a number and a unit, e.g. 90s, 30m, 24h, 7d, 2w"
        ))
    };
    let text = text.trim();
    let unit = text.chars().last().ok_or_else(bad)?;
    let amount: i64 = text[..text.len() - unit.len_utf8()]
        .parse()
        .map_err(|_| bad())?;
    let seconds = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return Err(bad()),
    };
    if amount <= 0 || amount > 3_650 * 86_400 / seconds {
        return Err(bad());
    }
    Ok(chrono::Duration::seconds(amount * seconds))
}

/// `[from, to)` from the optional `since`, `from` and `to`; 24 hours up to now
/// when none is given.
pub fn stats_range(
    since: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ConsoleError> {
    let time = |text: &str| {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| ConsoleError::BadRequest(format!("{text:?} is not an RFC 3339 time")))
    };
    let to = to.map(time).transpose()?.unwrap_or(now);
    let from = match (from, since) {
        (Some(from), _) => time(from)?,
        (None, Some(since)) => to - parse_since(since)?,
        (None, None) => to - chrono::Duration::hours(24),
    };
    if from >= to {
        return Err(ConsoleError::BadRequest("from must be before to".into()));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_number_and_a_unit() {
        assert_eq!(parse_since("24h").unwrap(), chrono::Duration::hours(24));
        assert_eq!(parse_since("7d").unwrap(), chrono::Duration::days(7));
        assert_eq!(parse_since("90s").unwrap(), chrono::Duration::seconds(90));
        for bad in ["", "h", "24", "-1h", "0m", "1y", "9999999999w"] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_range_is_since_before_now_or_from_to() {
        let now = DateTime::parse_from_rfc3339("2026-01-02T00:00:00Z")
            .unwrap()
            .to_utc();
        let (from, to) = stats_range(Some("1d"), None, None, now).unwrap();
        assert_eq!((to - from, to), (chrono::Duration::days(1), now));
        let (from, to) = stats_range(
            None,
            Some("2026-01-01T00:00:00Z"),
            Some("2026-01-01T06:00:00+00:00"),
            now,
        )
        .unwrap();
        assert_eq!(to - from, chrono::Duration::hours(6));
        assert!(stats_range(None, Some("2026-01-03T00:00:00Z"), None, now).is_err());
    }
}
