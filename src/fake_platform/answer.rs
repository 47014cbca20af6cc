//! What a fake platform answers to one request: the platform's own answer, or one a
//! test scripted (an error status, a `Retry-After`, a slow answer, a hang-up).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::Value;
use std::time::Duration;

/// One answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body, sent as `application/json`.
    pub body: Bytes,
    /// A `Retry-After` header, in seconds.
    pub retry_after: Option<u64>,
    /// How long to wait before answering.
    pub delay: Duration,
    /// Closes the connection instead of answering (after the delay).
    pub hang_up: bool,
}

impl Answer {
    /// An answer with this status and body.
    pub fn new(status: u16, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            body: body.into(),
            retry_after: None,
            delay: Duration::ZERO,
            hang_up: false,
        }
    }

    /// An HTTP error with this body (`new`, named for what tests script).
    pub fn error(status: u16, body: &str) -> Self {
        Self::new(status, body.to_owned())
    }

    /// An answer whose body is `value`.
    pub fn json(status: u16, value: &Value) -> Self {
        Self::new(status, value.to_string())
    }

    /// Reads the request, then closes the connection without a response.
    pub fn hang_up() -> Self {
        Self {
            hang_up: true,
            ..Self::new(0, Bytes::new())
        }
    }

    /// Whether the request was accepted: a 2xx answer.
    pub fn is_success(&self) -> bool {
        !self.hang_up && (200..300).contains(&self.status)
    }

    /// The HTTP response (not for a hang-up, which has none).
    pub(super) fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.body));
        // A status hyper cannot send is a broken script: answer 500 rather than panic.
        *response.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
