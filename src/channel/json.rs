//! What the webhook parsers share to read a body, to walk a `serde_json::Value`
//! leniently (a missing or mistyped field is `None` or nothing, never an error, so one
//! odd item costs only itself), and to render what they find.
//!
//! Invariant 11 of docs/design.md: a lone surrogate or a broken field never costs a neighbour.

use serde_json::Value;
use std::borrow::Cow;

/// A webhook body as JSON, each lone UTF-16 surrogate escape read as U+FFFD
/// (see [`without_lone_surrogates`]). Called after the signature check, which
/// covers the bytes as they were sent.
pub fn parse_body(body: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice(&without_lone_surrogates(body))
}

/// `body` with each lone UTF-16 surrogate escape (`\uD800`-`\uDFFF`, any hex case,
/// not half of a high-then-low pair) rewritten as `\ufffd`, every other byte as it
/// was; borrowed when there is none, which is nearly always.
///
/// A platform relays what a client sent, and a client that cut an emoji in half
/// sends half a pair: valid JSON syntax that serde_json refuses to decode, which
/// would refuse the whole POST (and its other messages, on every redelivery).
/// Escapes only occur in strings, and each is skipped whole (`\\` too), so the
/// text `\\ud83d` (a backslash, then `ud83d`) is left alone.
pub fn without_lone_surrogates(body: &[u8]) -> Cow<'_, [u8]> {
    let mut rewritten: Option<Vec<u8>> = None;
    // body[..copied] is in `rewritten` already.
    let mut copied = 0;
    let mut at = 0;
    while let Some(found) = body
        .get(at..)
        .and_then(|rest| rest.iter().position(|&b| b == b'\\'))
    {
        let escape = at + found;
        let Some(unit) = escaped_unit(body, escape) else {
            // `\"`, `\\`, `\n`...: two bytes. A malformed escape is serde_json's to refuse.
            at = escape + 2;
            continue;
        };
        let high = (0xD800..=0xDBFF).contains(&unit);
        if high && matches!(escaped_unit(body, escape + 6), Some(0xDC00..=0xDFFF)) {
            at = escape + 12;
            continue;
        }
        at = escape + 6;
        if (0xD800..=0xDFFF).contains(&unit) {
            let out = rewritten.get_or_insert_with(|| Vec::with_capacity(body.len()));
            out.extend_from_slice(&body[copied..escape]);
            out.extend_from_slice(br"\ufffd");
            copied = at;
        }
    }
    match rewritten {
        Some(mut out) => {
            out.extend_from_slice(&body[copied..]);
            Cow::Owned(out)
        }
        None => Cow::Borrowed(body),
    }
}

/// The code unit of the `\uXXXX` escape starting at `at`, if there is one.
fn escaped_unit(body: &[u8], at: usize) -> Option<u16> {
    let [b'\\', b'u', hex @ ..] = body.get(at..at + 6)? else {
        return None;
    };
    hex.iter().try_fold(0u16, |unit, &digit| {
        let nibble = (digit as char).to_digit(16)?;
        Some(unit << 4 | nibble as u16)
    })
}

/// The string at `path`, if every step exists and the last is a string.
pub fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(value, |v, key| v.get(key))?.as_str()
}

/// The array under `key`, or an empty slice when absent or not an array.
pub fn array<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// An integer that the platform may write as a number or as a string of digits.
pub fn json_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A JSON value cut short for an error message.
pub fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(64) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// `tag` followed by ` rest` when there is a rest (a caption, a name).
pub fn tagged(tag: &str, rest: Option<&str>) -> String {
    match rest {
        Some(rest) => format!("{tag} {rest}"),
        None => tag.to_owned(),
    }
}

/// The unit a platform documents for its message times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    /// Unix seconds (WhatsApp, Telegram).
    Seconds,
    /// Unix milliseconds (Instagram).
    Milliseconds,
}

/// Below this a unix time is taken as seconds (it would be early March 1973 in
/// milliseconds), from it on as milliseconds (it would be the year 5138 in seconds):
/// no message is from either, so the magnitude tells the unit.
const SECONDS_BELOW: i64 = 100_000_000_000;

/// A platform's message time in unix ms, read in whichever unit its magnitude
/// shows: platforms have been seen to send the other unit than they document (an
/// Instagram time in seconds was stored in 1970). A negative time is read in the
/// `documented` unit, for storage to refuse; `None` when it overflows.
pub fn unix_ms(time: i64, documented: TimeUnit) -> Option<i64> {
    let unit = match time {
        ..0 => documented,
        0..SECONDS_BELOW => TimeUnit::Seconds,
        _ => TimeUnit::Milliseconds,
    };
    if unit != documented {
        tracing::debug!(time, ?documented, read_as = ?unit, "timestamp in the other unit");
    }
    match unit {
        TimeUnit::Seconds => time.checked_mul(1000),
        TimeUnit::Milliseconds => Some(time),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(body: &str) -> String {
        String::from_utf8(without_lone_surrogates(body.as_bytes()).into_owned()).expect("utf-8")
    }

    #[test]
    fn a_lone_high_surrogate_becomes_the_replacement_character() {
        assert_eq!(rewritten(r#"{"t":"a\ud83d b"}"#), r#"{"t":"a\ufffd b"}"#);
        // Followed by something that is not a low surrogate: still lone.
        assert_eq!(rewritten(r#""\uD83D\u0041""#), r#""\ufffd\u0041""#);
        assert_eq!(
            rewritten(r#""\ud83d\ud83d\ude9a""#),
            r#""\ufffd\ud83d\ude9a""#
        );
        let value = parse_body(br#"{"t":"a\ud83d b"}"#).expect("json");
        assert_eq!(value["t"], "a\u{FFFD} b");
    }

    #[test]
    fn a_lone_low_surrogate_becomes_the_replacement_character() {
        assert_eq!(rewritten(r#""\ude9a x \uDFFF""#), r#""\ufffd x \ufffd""#);
        assert_eq!(
            parse_body(br#"["\ude9a"]"#).expect("json"),
            serde_json::json!(["\u{FFFD}"])
        );
    }

    #[test]
    fn a_valid_pair_and_other_escapes_are_kept_and_borrowed() {
        for body in [
            r#"{"t":"\ud83d\ude9a \uD83D\uDE9A \u00e9 \n \" \/ \u0000"}"#,
            r#"{"t":"plain"}"#,
            "",
        ] {
            assert!(
                matches!(without_lone_surrogates(body.as_bytes()), Cow::Borrowed(_)),
                "{body}"
            );
        }
        let value = parse_body(br#"{"t":"\ud83d\ude9a"}"#).expect("json");
        assert_eq!(value["t"], "🚚");
    }

    #[test]
    fn an_escaped_backslash_before_u_is_text_not_an_escape() {
        // The text `\ud83d`, then a lone surrogate after an escaped backslash.
        let body = r#"["\\ud83d", "\\\ud83d", "\\\\ud83d"]"#;
        assert_eq!(rewritten(body), r#"["\\ud83d", "\\\ufffd", "\\\\ud83d"]"#);
        assert_eq!(
            parse_body(body.as_bytes()).expect("json"),
            serde_json::json!(["\\ud83d", "\\\u{FFFD}", "\\\\ud83d"])
        );
    }

    #[test]
    fn a_surrogate_at_the_end_of_the_input_is_rewritten_and_cut_escapes_left_alone() {
        assert_eq!(rewritten(r"\ud83d"), r"\ufffd");
        assert_eq!(rewritten(r"x\ud83d\ude"), r"x\ufffd\ude");
        assert_eq!(rewritten(r"\ud8"), r"\ud8");
        assert_eq!(rewritten("\\"), "\\");
        assert_eq!(rewritten(r"\\"), r"\\");
    }

    #[test]
    fn seconds_where_milliseconds_are_documented_are_recognised() {
        let ms = TimeUnit::Milliseconds;
        assert_eq!(unix_ms(1_767_262_200_000, ms), Some(1_767_262_200_000));
        assert_eq!(unix_ms(1_767_262_200, ms), Some(1_767_262_200_000));
        assert_eq!(
            unix_ms(SECONDS_BELOW - 1, ms),
            Some((SECONDS_BELOW - 1) * 1000)
        );
    }

    #[test]
    fn milliseconds_where_seconds_are_documented_are_recognised() {
        let s = TimeUnit::Seconds;
        assert_eq!(unix_ms(1_767_262_200, s), Some(1_767_262_200_000));
        assert_eq!(unix_ms(1_767_262_200_123, s), Some(1_767_262_200_123));
        assert_eq!(unix_ms(SECONDS_BELOW, s), Some(SECONDS_BELOW));
    }

    #[test]
    fn a_negative_time_keeps_its_documented_unit() {
        assert_eq!(unix_ms(-5, TimeUnit::Seconds), Some(-5000));
        assert_eq!(unix_ms(-5, TimeUnit::Milliseconds), Some(-5));
        assert_eq!(unix_ms(i64::MIN, TimeUnit::Seconds), None);
    }
}
