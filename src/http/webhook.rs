//! `GET/POST /api/{channel}/webhook`: handshake, then verify → parse → store → batch.
//!
//! Invariants 1 and 11 of docs/design.md: 200 only once stored; bad input costs only itself.

use super::HttpState;
use super::response::{self, Body};
use crate::channel::{Channel, HandshakeError, ParseError};
use crate::ingest::IngestReport;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use std::time::Duration;
use tracing::Instrument;

/// Longest time a client may take to send its body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The 200 answer to a webhook POST.
#[derive(serde::Serialize)]
struct Summary {
    stored: usize,
    duplicates: usize,
    statuses: usize,
    skipped: usize,
}

/// The platform's GET subscription handshake.
pub fn handshake(channel: &dyn Channel, query: &str) -> Response<Body> {
    match channel.handshake(query) {
        Ok(challenge) => response::text(StatusCode::OK, challenge),
        Err(error @ HandshakeError::Missing(_)) => {
            response::error(StatusCode::BAD_REQUEST, &error.to_string())
        }
        Err(error @ HandshakeError::Refused) => {
            tracing::warn!(
                channel = channel.kind().as_str(),
                "webhook verification refused"
            );
            response::error(StatusCode::FORBIDDEN, &error.to_string())
        }
    }
}

async fn read_body(
    request: Request<Incoming>,
    limit: usize,
) -> Result<(http::HeaderMap, Bytes), Response<Body>> {
    let (parts, body) = request.into_parts();
    let collected = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, limit).collect()).await;
    match collected {
        Err(_) => Err(response::error(
            StatusCode::REQUEST_TIMEOUT,
            "body not received in time",
        )),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => Err(response::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("body larger than {limit} bytes"),
        )),
        Ok(Err(_)) => Err(response::error(
            StatusCode::BAD_REQUEST,
            "body could not be read",
        )),
        Ok(Ok(body)) => Ok((parts.headers, body.to_bytes())),
    }
}

/// A webhook POST. Answers 200 only once every new message is committed.
pub async fn receive(
    state: &HttpState,
    channel: &dyn Channel,
    request: Request<Incoming>,
) -> Response<Body> {
    let name = channel.kind().as_str();
    let span = tracing::info_span!("webhook", channel = name);
    let response = async {
        let (headers, body) = match read_body(request, state.max_body_bytes).await {
            Ok(read) => read,
            Err(response) => {
                tracing::warn!(status = response.status().as_u16(), "webhook body refused");
                return response;
            }
        };
        if let Err(error) = channel.verify(&headers, &body) {
            tracing::warn!(%error, bytes = body.len(), "webhook refused: signature check failed");
            return response::error(StatusCode::UNAUTHORIZED, &error.to_string());
        }
        let mut parsed = match channel.parse(&body) {
            Ok(parsed) => parsed,
            Err(error) => {
                let reason = match &error {
                    ParseError::Json(_) => "malformed JSON".to_owned(),
                    ParseError::Shape { .. } => error.to_string(),
                };
                tracing::warn!(%error, bytes = body.len(), "webhook refused: unreadable body");
                return response::error(StatusCode::BAD_REQUEST, &reason);
            }
        };
        parsed.messages.retain(|message| match message.unstorable() {
            None => true,
            Some(reason) => {
                parsed.skipped += 1;
                tracing::warn!(
                    message_id = %abbreviated(&message.external_id),
                    reason,
                    "message skipped: it cannot be stored"
                );
                false
            }
        });
        let (statuses, skipped, count) = (parsed.statuses, parsed.skipped, parsed.messages.len());
        let callbacks = std::mem::take(&mut parsed.callbacks);
        if parsed.delivery_failures > 0 {
            state.metrics.add(
                "lull_deliveries_failed_total",
                &[("channel", name)],
                parsed.delivery_failures as u64,
            );
        }
        let summary = |report: IngestReport| {
            let body = Summary {
                stored: report.stored,
                duplicates: report.duplicates,
                statuses,
                skipped,
            };
            response::json(StatusCode::OK, &body)
        };
        if !parsed.echoes.is_empty() {
            // Echoes first: an agent's message pauses the bot before the contact's
            // messages of the same POST are batched.
            if let Err(error) = state.ingest.echoes(std::mem::take(&mut parsed.echoes)).await {
                tracing::error!(%error, "echoes not stored; asking the platform to retry");
                return response::error(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable, retry later");
            }
        }
        if count == 0 {
            tracing::debug!(statuses, skipped, "webhook without messages acknowledged");
            answer_callbacks(channel, &callbacks).await;
            return summary(IngestReport::default());
        }
        match state.ingest.ingest(parsed.messages).await {
            Ok(report) => {
                answer_callbacks(channel, &callbacks).await;
                summary(report)
            }
            Err(error) => {
                tracing::error!(%error, messages = count, "messages not stored; asking the platform to retry");
                response::error(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable, retry later")
            }
        }
    }
    .instrument(span)
    .await;
    state.metrics.inc(
        "lull_webhook_requests_total",
        &[("channel", name), ("status", response.status().as_str())],
    );
    response
}

/// Answers the taps on inline buttons the webhook carried, once their choices
/// are stored (a failed store answers none: the platform retries the update).
/// Best effort: an unanswered tap only spins a while longer.
async fn answer_callbacks(channel: &dyn Channel, callbacks: &[String]) {
    for id in callbacks {
        if let Err(error) = channel.answer_callback(id).await {
            tracing::warn!(%error, "button tap not answered");
        }
    }
}

/// An id for a log line: the first 64 characters of one too long to store.
fn abbreviated(id: &str) -> String {
    match id.char_indices().nth(64) {
        Some((cut, _)) => format!("{}… ({} bytes)", &id[..cut], id.len()),
        None => id.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_id_is_logged_by_its_first_64_characters_and_its_length() {
        assert_eq!(abbreviated("wamid.short"), "wamid.short");
        let long = "é".repeat(100);
        assert_eq!(
            abbreviated(&long),
            format!("{}… (200 bytes)", "é".repeat(64))
        );
    }
}
