//! What the webhook parsers share to walk a `serde_json::Value` leniently (a missing
//! or mistyped field is `None` or nothing, never an error, so one odd item costs only
//! itself) and to render what they find.

use serde_json::Value;

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
