//! What WhatsApp and Instagram share because both are Meta platforms: the
//! `X-Hub-Signature-256` body signature, the `hub.*` GET handshake, the webhook
//! envelope (`object`, `entry[]`), and the Send API (`POST {base}/{account}/messages`
//! with a bearer token) with its Graph API error envelope.

use super::json::{json_i64, parse_body, short};
use super::{ApiBase, HandshakeError, ParseError, SendError, VerifyError, transport};
use crate::config::Secret;
use crate::message::ChannelKind;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::time::Duration;

/// The header Meta signs webhook bodies in: `sha256=<hex HMAC-SHA256(app secret, body)>`.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

/// Checks `X-Hub-Signature-256` against HMAC-SHA256 of the exact body bytes.
///
/// With no app secret configured every request passes (the caller warns once at start).
/// The comparison is constant-time so the signature cannot be guessed byte by byte.
pub fn verify_signature(
    app_secret: Option<&Secret>,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<(), VerifyError> {
    let Some(secret) = app_secret else {
        return Ok(());
    };
    let header = headers
        .get(SIGNATURE_HEADER)
        .ok_or(VerifyError::Missing(SIGNATURE_HEADER))?;
    // One answer for every way the header can be wrong: the caller needs no more.
    fn invalid<E>(_: E) -> VerifyError {
        VerifyError::Invalid(SIGNATURE_HEADER)
    }
    let value = header.to_str().map_err(invalid)?;
    let hex_digest = value
        .trim()
        .strip_prefix("sha256=")
        .ok_or(VerifyError::Invalid(SIGNATURE_HEADER))?;
    let expected = hex::decode(hex_digest).map_err(invalid)?;
    // HMAC accepts keys of any length, so this cannot fail; mapped rather than unwrapped.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).map_err(invalid)?;
    mac.update(body);
    // verify_slice is constant-time and also refuses a digest of the wrong length.
    mac.verify_slice(&expected).map_err(invalid)
}

/// Answers Meta's GET subscription handshake
/// (`?hub.mode=subscribe&hub.verify_token=...&hub.challenge=...`) with the challenge.
///
/// A missing challenge is a bad request; a wrong mode, a wrong token, or no token
/// configured (an empty one counts as none, else an empty token in the query would
/// match) is refused.
pub fn handshake(verify_token: Option<&Secret>, query: &str) -> Result<String, HandshakeError> {
    let query = query.strip_prefix('?').unwrap_or(query);
    let mut mode = None;
    let mut token = None;
    let mut challenge = None;
    // The first occurrence of a key wins; Meta never repeats them.
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let slot = match key.as_ref() {
            "hub.mode" => &mut mode,
            "hub.verify_token" => &mut token,
            "hub.challenge" => &mut challenge,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value.into_owned());
        }
    }
    let challenge = challenge
        .filter(|c| !c.is_empty())
        .ok_or(HandshakeError::Missing("hub.challenge"))?;
    if mode.as_deref() != Some("subscribe") {
        return Err(HandshakeError::Refused);
    }
    let Some(configured) = verify_token.filter(|t| !t.expose().is_empty()) else {
        return Err(HandshakeError::Refused);
    };
    let given = token.unwrap_or_default();
    if !crate::constant_time::eq(configured.expose().as_bytes(), given.as_bytes()) {
        return Err(HandshakeError::Refused);
    }
    Ok(challenge)
}

/// The `entry[]` of a webhook body whose `object` must be `object`; a body that is not
/// JSON, has another object or no entry array is refused whole. A lone surrogate
/// escape is read as U+FFFD (`json::parse_body`), costing no message.
pub fn webhook_entries(
    body: &[u8],
    channel: ChannelKind,
    object: &str,
) -> Result<Vec<Value>, ParseError> {
    let mut root = parse_body(body)?;
    let shape = |reason: String| ParseError::Shape { channel, reason };
    match root.get("object") {
        Some(Value::String(found)) if found == object => {}
        Some(other) => {
            return Err(shape(format!(
                "object is {}, expected {object}",
                short(other)
            )));
        }
        None => return Err(shape(format!("no object field, expected {object}"))),
    }
    match root.get_mut("entry").map(Value::take) {
        Some(Value::Array(entries)) => Ok(entries),
        _ => Err(shape("no entry array".into())),
    }
}

/// Graph API error codes worth retrying, whatever the HTTP status.
///
/// - 1, 2: unknown / service error, documented as temporary (G3).
/// - 4, 17, 32, 341, 613: application, user or page request limit reached.
/// - 80007: WhatsApp Business Account rate limit.
/// - 130429: Cloud API throughput limit.
/// - 131000: "something went wrong", Meta's advice is to retry.
/// - 131016: service temporarily unavailable.
/// - 131057: business account in maintenance mode.
/// - 131056: pair rate limit (same business and user), retry after a pause.
/// - 133004: server temporarily unavailable.
pub const RETRYABLE_CODES: &[i64] = &[
    1, 2, 4, 17, 32, 341, 613, 80007, 130429, 131000, 131016, 131056, 131057, 133004,
];

/// Graph API error codes that will fail again, whatever the HTTP status.
///
/// - 190: access token expired or invalid (ops must rotate it).
/// - 131026: message undeliverable to this user.
/// - 131047: more than 24 hours since the user's last message (template needed).
pub const PERMANENT_CODES: &[i64] = &[190, 131026, 131047];

/// Classifies a non-2xx Graph API response
/// (`{"error":{"message","type","code","error_subcode","error_data":{"details"},"fbtrace_id"}}`).
///
/// Listed codes decide first ([`PERMANENT_CODES`], then [`RETRYABLE_CODES`]), then
/// Meta's own `is_transient` flag; otherwise HTTP 429 and 5xx are retryable and
/// everything else (other 4xx) is permanent. The
/// message is `error.message` plus ` (details)`; the request's token is never in it.
pub fn graph_error(status: u16, body: &[u8], retry_after: Option<Duration>) -> SendError {
    classify(status, body, retry_after, &[])
}

/// [`graph_error`], with `also_retryable` codes on top of [`RETRYABLE_CODES`].
fn classify(
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
    also_retryable: &[i64],
) -> SendError {
    let error = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").cloned())
        .filter(Value::is_object);
    let code = error
        .as_ref()
        .and_then(|e| e.get("code"))
        .and_then(json_i64);
    let message = match &error {
        Some(e) => {
            let text = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("Graph API error without a message");
            let details = e
                .get("error_data")
                .and_then(|d| d.get("details"))
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty());
            match details {
                Some(details) => format!("{text} ({details})"),
                None => text.to_owned(),
            }
        }
        // Not the Graph envelope (a proxy's HTML page, say): the body is not echoed, as
        // it is unknown content and would only bloat the batch record.
        None => format!("HTTP {status} without a Graph API error body"),
    };
    let transient = error
        .as_ref()
        .and_then(|e| e.get("is_transient"))
        .and_then(Value::as_bool)
        == Some(true);
    let retryable = match code {
        Some(c) if PERMANENT_CODES.contains(&c) => false,
        Some(c) if RETRYABLE_CODES.contains(&c) || also_retryable.contains(&c) => true,
        _ => transient || status == 429 || (500..600).contains(&status),
    };
    SendError::classified(retryable, Some(status), code, message, retry_after)
}

/// A `Retry-After` header in seconds (the HTTP-date form is ignored: Meta sends seconds).
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let seconds: f64 = value.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(86_400.0)))
}

/// The id the platform gave a sent message, at `pointer` in its 2xx answer.
///
/// The platform accepted the request, so the reply probably went out: an answer
/// without an id is a permanent error (`missing`), as retrying could send it twice.
pub fn sent_id(answer: &[u8], pointer: &str, missing: &str) -> Result<String, SendError> {
    serde_json::from_slice::<Value>(answer)
        .ok()
        .and_then(|v| {
            v.pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .filter(|id| !id.is_empty())
        .ok_or_else(|| SendError::permanent(missing))
}

/// A Meta platform's Send API: `POST {base}/{account}/messages` with a bearer token,
/// answered by the message's id or the Graph API error envelope.
#[derive(Debug)]
pub struct SendApi {
    /// What errors call the API, e.g. `Graph API`.
    pub name: &'static str,
    /// This platform's own error codes worth retrying, on top of [`RETRYABLE_CODES`].
    pub retryable_codes: &'static [i64],
}

impl SendApi {
    /// POSTs `body` to the account's messages endpoint; the 2xx body, or a classified
    /// error that names neither the URL nor the token.
    pub async fn post(
        &self,
        http: &reqwest::Client,
        base: &ApiBase,
        account: &str,
        token: &Secret,
        body: &Value,
    ) -> Result<bytes::Bytes, SendError> {
        let url = self.messages_url(base, account)?;
        let response = http
            .post(url)
            .bearer_auth(token.expose())
            .json(body)
            .send()
            .await
            .map_err(|e| transport::transport_error(e, &[token]))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let bytes = response.bytes().await;
        if status.is_success() {
            return bytes.map_err(|e| SendError::Permanent {
                // As for a missing id: the request was accepted, do not send it twice.
                status: Some(status.as_u16()),
                code: None,
                message: format!(
                    "response body unreadable after success: {}",
                    transport::chain(&e.without_url())
                ),
            });
        }
        // An unreadable error body still has a status worth classifying.
        let bytes = bytes.unwrap_or_default();
        Err(classify(
            status.as_u16(),
            &bytes,
            retry_after,
            self.retryable_codes,
        ))
    }

    /// `{base}/{account}/messages`, the account percent-encoded as one segment.
    pub fn messages_url(&self, base: &ApiBase, account: &str) -> Result<url::Url, SendError> {
        let invalid = |reason: &str| {
            SendError::permanent(format!("cannot build the {} URL: {reason}", self.name))
        };
        if account.is_empty() {
            return Err(invalid("empty account"));
        }
        base.join(&[account, "messages"])
            .map_err(|reason| invalid(&reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::test_server::{fixture, json_fixture};
    use http::{HeaderMap, HeaderValue};

    fn signed(signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        // Mixed case, as the constant is written: HeaderName lowercases it.
        let name = http::HeaderName::from_bytes(SIGNATURE_HEADER.as_bytes()).expect("header name");
        headers.insert(
            name,
            HeaderValue::from_str(signature).expect("header value"),
        );
        headers
    }

    fn app_secret() -> Secret {
        Secret::new("fixture-app-secret")
    }

    #[test]
    fn every_signed_fixture_verifies_over_its_exact_bytes() {
        let signatures = json_fixture("signatures.json");
        assert_eq!(signatures["app_secret"], "fixture-app-secret");
        let files = signatures["files"].as_object().expect("files map");
        assert!(files.len() > 20);
        for (file, signature) in files {
            let body = fixture(file);
            let headers = signed(signature.as_str().expect("signature string"));
            assert!(
                verify_signature(Some(&app_secret()), &headers, &body).is_ok(),
                "{file} should verify"
            );
        }
    }

    #[test]
    fn a_tampered_body_is_invalid() {
        let signatures = json_fixture("signatures.json");
        let signature = signatures["files"]["whatsapp/text_single.json"]
            .as_str()
            .expect("signature");
        let mut body = fixture("whatsapp/text_single.json");
        let at = body
            .iter()
            .position(|&b| b == b'H')
            .expect("an H in the body");
        body[at] = b'h';
        let result = verify_signature(Some(&app_secret()), &signed(signature), &body);
        assert!(matches!(
            result,
            Err(VerifyError::Invalid("X-Hub-Signature-256"))
        ));
    }

    #[test]
    fn a_reserialised_body_with_escapes_is_invalid() {
        // Meta signs the raw bytes; decoding \uXXXX escapes and re-encoding changes them.
        let signatures = json_fixture("signatures.json");
        let signature = signatures["files"]["whatsapp/text_non_ascii_escaped.json"]
            .as_str()
            .expect("signature");
        let body = serde_json::to_vec_pretty(&json_fixture("whatsapp/text_non_ascii_escaped.json"))
            .expect("json");
        let result = verify_signature(Some(&app_secret()), &signed(signature), &body);
        assert!(matches!(result, Err(VerifyError::Invalid(_))));
    }

    #[test]
    fn a_missing_signature_header_is_missing() {
        let body = fixture("whatsapp/text_single.json");
        let result = verify_signature(Some(&app_secret()), &HeaderMap::new(), &body);
        assert!(matches!(
            result,
            Err(VerifyError::Missing("X-Hub-Signature-256"))
        ));
    }

    #[test]
    fn a_malformed_signature_header_is_invalid() {
        let body = fixture("whatsapp/text_single.json");
        for bad in [
            "sha256=zz",
            "245c8c76b5f3a08c2eca4a6531484c5512a4e9fe0fd3f6962b1e06b0716a8476",
            "sha256=",
            "sha1=abcd",
        ] {
            let result = verify_signature(Some(&app_secret()), &signed(bad), &body);
            assert!(matches!(result, Err(VerifyError::Invalid(_))), "{bad}");
        }
    }

    #[test]
    fn a_wrong_secret_is_invalid() {
        let signatures = json_fixture("signatures.json");
        let signature = signatures["files"]["whatsapp/text_single.json"]
            .as_str()
            .expect("signature");
        let body = fixture("whatsapp/text_single.json");
        let result = verify_signature(
            Some(&Secret::new("other-secret")),
            &signed(signature),
            &body,
        );
        assert!(matches!(result, Err(VerifyError::Invalid(_))));
    }

    #[test]
    fn no_app_secret_accepts_any_request() {
        assert!(verify_signature(None, &HeaderMap::new(), b"anything").is_ok());
    }

    fn handshake_case(name: &str) -> (String, Value) {
        let vectors = json_fixture("meta_verify_handshake.json");
        let case = vectors["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("case {name}"))
            .clone();
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in case["query"].as_object().expect("query") {
            query.append_pair(key, value.as_str().expect("string"));
        }
        (query.finish(), case["expect"].clone())
    }

    fn verify_token() -> Secret {
        let vectors = json_fixture("meta_verify_handshake.json");
        Secret::new(vectors["configured_verify_token"].as_str().expect("token"))
    }

    #[test]
    fn a_valid_handshake_returns_the_challenge() {
        let (query, expect) = handshake_case("valid");
        assert_eq!(expect["status"], 200);
        let challenge = handshake(Some(&verify_token()), &query).expect("accepted");
        assert_eq!(challenge, expect["body"].as_str().expect("body"));
    }

    #[test]
    fn a_handshake_with_the_wrong_token_is_refused() {
        let (query, expect) = handshake_case("wrong_token");
        assert_eq!(expect["status"], 403);
        assert!(matches!(
            handshake(Some(&verify_token()), &query),
            Err(HandshakeError::Refused)
        ));
    }

    #[test]
    fn a_handshake_with_the_wrong_mode_is_refused() {
        let (query, expect) = handshake_case("wrong_mode");
        assert_eq!(expect["status"], 403);
        assert!(matches!(
            handshake(Some(&verify_token()), &query),
            Err(HandshakeError::Refused)
        ));
    }

    #[test]
    fn a_handshake_without_a_challenge_is_a_bad_request() {
        let (query, expect) = handshake_case("missing_challenge");
        assert_eq!(expect["status"], 400);
        assert!(matches!(
            handshake(Some(&verify_token()), &query),
            Err(HandshakeError::Missing("hub.challenge"))
        ));
    }

    #[test]
    fn a_handshake_without_a_configured_token_is_refused() {
        let (query, _) = handshake_case("valid");
        assert!(matches!(
            handshake(None, &query),
            Err(HandshakeError::Refused)
        ));
        let empty_query = "hub.mode=subscribe&hub.verify_token=&hub.challenge=1";
        assert!(matches!(
            handshake(Some(&Secret::new("")), empty_query),
            Err(HandshakeError::Refused)
        ));
    }

    #[test]
    fn a_handshake_query_is_percent_decoded() {
        let query = "?hub.mode=subscribe&hub.verify_token=a%20b%2Bc&hub.challenge=x%3Dy";
        assert_eq!(
            handshake(Some(&Secret::new("a b+c")), query).expect("accepted"),
            "x=y"
        );
    }

    fn graph_fixture_error(name: &str, status: u16) -> SendError {
        graph_error(status, &fixture(name), None)
    }

    #[test]
    fn rate_limit_errors_are_retryable_with_their_code() {
        for (name, code) in [
            ("whatsapp/error_130429.json", 130429),
            ("whatsapp/error_131056.json", 131056),
            ("whatsapp/error_80007.json", 80007),
        ] {
            let error = graph_fixture_error(name, 400);
            assert!(
                matches!(error, SendError::Retryable { .. }),
                "{name}: {error:?}"
            );
            assert_eq!(error.code(), Some(code), "{name}");
        }
    }

    #[test]
    fn an_error_meta_marks_transient_is_retryable_whatever_its_code() {
        let body = br#"{"error":{"message":"An unexpected error has occurred. Please retry your request later.","type":"OAuthException","is_transient":true,"code":99,"fbtrace_id":"A1"}}"#;
        let error = graph_error(400, body, None);
        assert!(matches!(error, SendError::Retryable { .. }), "{error:?}");
        assert_eq!(error.code(), Some(99));
        let not = br#"{"error":{"message":"Invalid parameter","type":"OAuthException","is_transient":false,"code":100,"fbtrace_id":"A2"}}"#;
        assert!(matches!(
            graph_error(400, not, None),
            SendError::Permanent { .. }
        ));
    }

    #[test]
    fn page_limits_and_maintenance_mode_are_retryable() {
        for code in [32, 613, 131057] {
            let body = format!(
                r#"{{"error":{{"message":"limit or maintenance","type":"OAuthException","code":{code},"fbtrace_id":"A3"}}}}"#
            );
            let error = graph_error(400, body.as_bytes(), None);
            assert!(
                matches!(error, SendError::Retryable { .. }),
                "{code}: {error:?}"
            );
        }
    }

    #[test]
    fn window_undeliverable_and_token_errors_are_permanent_with_their_code() {
        for (name, status, code) in [
            ("whatsapp/error_131047.json", 400, 131047),
            ("whatsapp/error_131026.json", 400, 131026),
            ("whatsapp/error_190.json", 401, 190),
        ] {
            let error = graph_fixture_error(name, status);
            assert!(
                matches!(error, SendError::Permanent { .. }),
                "{name}: {error:?}"
            );
            assert_eq!(error.code(), Some(code), "{name}");
        }
    }

    #[test]
    fn the_message_carries_the_details_when_present() {
        let error = graph_fixture_error("whatsapp/error_131047.json", 400);
        assert_eq!(
            error.message(),
            "(#131047) Re-engagement message (Message failed to send because more than 24 hours \
             have passed since the customer last replied to this number.)"
        );
        let error = graph_fixture_error("whatsapp/error_80007.json", 400);
        assert_eq!(
            error.message(),
            "(#80007) There have been too many messages sent from this WhatsApp Business Account."
        );
    }

    #[test]
    fn a_server_error_with_an_html_body_is_retryable_without_a_code() {
        let error = graph_error(
            500,
            b"<html><body>Internal Server Error</body></html>",
            None,
        );
        match error {
            SendError::Retryable { status, code, .. } => {
                assert_eq!(status, Some(500));
                assert_eq!(code, None);
            }
            other => panic!("expected retryable, got {other:?}"),
        }
    }

    #[test]
    fn http_429_is_retryable_and_keeps_retry_after() {
        let error = graph_error(429, b"{}", Some(Duration::from_secs(2)));
        assert!(matches!(
            error,
            SendError::Retryable { retry_after: Some(d), .. } if d == Duration::from_secs(2)
        ));
    }

    #[test]
    fn an_unlisted_code_on_a_4xx_is_permanent() {
        let body = br#"{"error":{"message":"(#100) Invalid parameter","type":"OAuthException","code":100}}"#;
        let error = graph_error(400, body, None);
        assert!(matches!(
            error,
            SendError::Permanent {
                code: Some(100),
                ..
            }
        ));
    }

    #[test]
    fn retry_after_reads_seconds_and_ignores_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(
            http::header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }
}
