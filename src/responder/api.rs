//! What the HTTP responders share about calling an API: one POST of JSON, its
//! failures classified for the worker, with nothing secret in them.
//!
//! Worth another try soon ([`ResponderError::Unavailable`], retried by the worker
//! with backoff, after the answer's `Retry-After` when it has one): 408, 409, 425,
//! 429, 5xx (Anthropic's 529 "overloaded" included), timeouts and connection
//! errors. A bad key (401, 403) or an unknown model or URL (404) refuses every
//! batch alike: an outage of the responder ([`ResponderError::Outage`]), not a
//! verdict on this batch. Everything else fails the batch ([`ResponderError::Failed`])
//! with the provider's own message. Messages never hold the URL (reqwest prints
//! it) nor the API key.

use super::ResponderError;
use crate::channel::transport::{chain, redact};
use crate::config::Secret;
use serde_json::Value;
use std::time::Duration;

/// Longest provider message kept, in characters: enough for any real error, short
/// enough for a log line and the batch record.
const MAX_MESSAGE: usize = 300;

/// Sends `request` and returns its JSON body, or the classified failure.
pub async fn post_json(
    request: reqwest::RequestBuilder,
    secrets: &[&Secret],
) -> Result<Value, ResponderError> {
    let response = request
        .send()
        .await
        .map_err(|e| transport_error(e, secrets))?;
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers());
    let body = response
        .bytes()
        .await
        .map_err(|e| transport_error(e, secrets))?;
    if !(200..300).contains(&status) {
        return Err(with_retry_after(
            status_error(status, &body, secrets),
            retry_after,
        ));
    }
    serde_json::from_slice(&body).map_err(|e| ResponderError::Failed {
        status: Some(status),
        reason: format!("HTTP {status} with a body that is not JSON: {e}"),
    })
}

/// The `Retry-After` of an answer, in seconds (the HTTP-date form is not used by
/// the APIs lull calls).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(3600.0)))
}

/// `error` with the answer's Retry-After, when it is worth another try.
pub fn with_retry_after(error: ResponderError, asked: Option<Duration>) -> ResponderError {
    match error {
        ResponderError::Unavailable { reason, .. } => ResponderError::Unavailable {
            reason,
            retry_after: asked,
        },
        other => other,
    }
}

/// Whether an HTTP status says the responder refuses every request alike: its key
/// (401, 403) or its model or URL (404).
pub fn is_outage(status: u16) -> bool {
    matches!(status, 401 | 403 | 404)
}

/// Whether an HTTP status is worth another try soon. 408 and 409 (a proxy's
/// timeout, a conflict) and 425 pass when tried again, as the providers' own SDKs
/// do.
pub fn is_retryable(status: u16) -> bool {
    matches!(status, 408 | 409 | 425 | 429) || (500..600).contains(&status)
}

/// No response, or a body cut short: timeouts and connection failures are worth
/// another try; a request that could not even be built is not.
pub fn transport_error(error: reqwest::Error, secrets: &[&Secret]) -> ResponderError {
    let retryable = !error.is_builder();
    let message = redact(chain(&error.without_url()), secrets);
    if retryable {
        ResponderError::unavailable(message)
    } else {
        ResponderError::failed(message)
    }
}

/// A non-2xx answer: `HTTP {status} {error type}: {provider message}`.
pub fn status_error(status: u16, body: &[u8], secrets: &[&Secret]) -> ResponderError {
    let reason = redact(describe(status, body), secrets);
    classify_status(status, reason)
}

/// A non-2xx answer's error, by [`is_retryable`] and [`is_outage`].
pub fn classify_status(status: u16, reason: String) -> ResponderError {
    if is_retryable(status) {
        ResponderError::unavailable(reason)
    } else if is_outage(status) {
        ResponderError::Outage {
            status: Some(status),
            reason,
        }
    } else {
        ResponderError::Failed {
            status: Some(status),
            reason,
        }
    }
}

/// The provider's error message, from whichever envelope it uses:
/// `{"error": {"type", "message"}}` (OpenAI, Anthropic, LiteLLM, Azure),
/// `{"error": "..."}` (Ollama), `{"message": "..."}` (vLLM), `{"detail": "..."}`
/// (FastAPI servers). An unknown body (a proxy's HTML page) is not echoed.
fn describe(status: u16, body: &[u8]) -> String {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = json.get("error");
    let text = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .or_else(|| error.and_then(Value::as_str))
        .or_else(|| json.get("message").and_then(Value::as_str))
        .or_else(|| json.get("detail").and_then(Value::as_str))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(text) = text else {
        return format!("HTTP {status} without an error message");
    };
    let kind = error
        .and_then(|e| e.get("type"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty());
    let text = match text.char_indices().nth(MAX_MESSAGE) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    };
    match kind {
        Some(kind) => format!("HTTP {status} {kind}: {text}"),
        None => format!("HTTP {status}: {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::test_server::client;

    fn classify(status: u16, body: &str) -> ResponderError {
        status_error(status, body.as_bytes(), &[])
    }

    fn is_unavailable(error: &ResponderError) -> bool {
        matches!(error, ResponderError::Unavailable { .. })
    }

    #[test]
    fn rate_limits_and_server_errors_are_unavailable() {
        for status in [429, 500, 502, 503, 504, 529] {
            let error = classify(status, r#"{"error":{"message":"busy"}}"#);
            assert!(is_unavailable(&error), "{status}: {error}");
        }
    }

    #[test]
    fn a_refused_request_fails_and_a_refused_key_or_model_is_an_outage() {
        let openai = classify(
            400,
            r#"{"error":{"message":"max_tokens is too large","type":"invalid_request_error","param":"max_tokens","code":null}}"#,
        );
        let ResponderError::Failed {
            reason: message, ..
        } = openai
        else {
            panic!("{openai}");
        };
        assert_eq!(
            message,
            "HTTP 400 invalid_request_error: max_tokens is too large"
        );

        let anthropic = classify(
            404,
            r#"{"type":"error","error":{"type":"not_found_error","message":"model: claude-nope"}}"#,
        );
        let ResponderError::Outage {
            reason: message,
            status: Some(404),
        } = anthropic
        else {
            panic!("{anthropic}");
        };
        assert_eq!(message, "HTTP 404 not_found_error: model: claude-nope");

        for status in [401, 403, 404] {
            let error = classify(status, "{}");
            assert!(
                matches!(error, ResponderError::Outage { .. }),
                "{status}: {error}"
            );
        }
        for status in [400, 413, 422] {
            let error = classify(status, "{}");
            assert!(
                matches!(error, ResponderError::Failed { .. }),
                "{status}: {error}"
            );
        }
        for status in [408, 409, 425, 429, 500, 529] {
            assert!(is_unavailable(&classify(status, "{}")), "{status}");
        }
    }

    #[test]
    fn local_servers_error_envelopes_are_read_too() {
        let cases = [
            (
                r#"{"error":"model \"llama9\" not found"}"#,
                "HTTP 404: model \"llama9\" not found",
            ),
            (
                r#"{"object":"error","message":"This model's maximum context length is 4096","type":"BadRequestError","code":400}"#,
                "HTTP 404: This model's maximum context length is 4096",
            ),
            (r#"{"detail":"Not Found"}"#, "HTTP 404: Not Found"),
            ("<html>nginx</html>", "HTTP 404 without an error message"),
            ("", "HTTP 404 without an error message"),
        ];
        for (body, expected) in cases {
            assert_eq!(
                classify(404, body).to_string(),
                format!("responder failing: {expected}")
            );
        }
    }

    #[test]
    fn the_api_key_never_reaches_the_message() {
        let key = Secret::new("sk-test-0123456789");
        let error = status_error(
            401,
            br#"{"error":{"message":"Incorrect API key provided: sk-test-0123456789"}}"#,
            &[&key],
        );
        assert_eq!(
            error.to_string(),
            "responder failing: HTTP 401: Incorrect API key provided: ***"
        );
    }

    #[test]
    fn retry_after_in_seconds_is_read_and_kept_only_when_worth_another_try() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("retry-after", "7".parse().unwrap());
        let asked = retry_after(&headers);
        assert_eq!(asked, Some(Duration::from_secs(7)));
        let error = with_retry_after(classify(429, "{}"), asked);
        assert!(matches!(
            error,
            ResponderError::Unavailable {
                retry_after: Some(d),
                ..
            } if d == Duration::from_secs(7)
        ));
        headers.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn a_long_message_is_cut() {
        let body = serde_json::json!({"error": {"message": "x".repeat(1000)}}).to_string();
        let message = classify(400, &body).to_string();
        assert!(message.ends_with("x…"), "{message}");
        assert!(message.chars().count() < MAX_MESSAGE + 50);
    }

    #[tokio::test]
    async fn a_refused_connection_is_unavailable_and_names_no_url() {
        // A port nothing listens on: bind one, then free it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let key = Secret::new("sk-secret");
        let request = client()
            .post(format!("http://{addr}/v1/chat/completions?key=sk-secret"))
            .json(&serde_json::json!({}));
        let error = post_json(request, &[&key]).await.unwrap_err();
        assert!(is_unavailable(&error), "{error}");
        let message = error.to_string();
        assert!(!message.contains("127.0.0.1"), "{message}");
        assert!(!message.contains("sk-secret"), "{message}");
    }
}
