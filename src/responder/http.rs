//! RESPONDER=http: a team's own bot writes the replies. Each batch is one POST of
//! JSON to BOT_URL (the format is in the README, "Bring your own bot"), signed
//! with BOT_SECRET (see [`signature`](super::signature)); the bot answers
//! `{"messages": [...], "handoff": false}` (a [`Reply`]), or 204 for no reply.
//!
//! The batch id is the request's idempotency key: a retry of the same batch (a
//! 5xx, a timeout, a crash) carries the same id, so a bot with side effects can
//! do them once. Dropping the future (the batch superseded, the process stopping)
//! drops the connection: the bot sees the request cancelled.
//!
//! Failures are classified as for the LLM APIs (see `api`): 429 and 5xx are worth
//! another try (Retry-After honoured), 401, 403 and 404 are an outage of the bot,
//! any other 4xx fails the batch with the status and the first
//! [`MAX_BODY_IN_ERROR`] bytes of the bot's body.

use super::api::{classify_status, retry_after, transport_error, with_retry_after};
use super::signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use super::{Reply, ReplyContext, Responder, ResponderError};
use crate::channel::transport::redact;
use crate::config::BotSettings;
use crate::message::{Direction, Entry};
use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat};
use serde::Serialize;

/// Bytes of a bot's error body kept in the batch's record.
pub const MAX_BODY_IN_ERROR: usize = 200;

/// Asks the bot at BOT_URL for each batch's reply.
#[derive(Debug, Clone)]
pub struct HttpResponder {
    settings: BotSettings,
    http: reqwest::Client,
}

impl HttpResponder {
    /// `http` carries BOT_TIMEOUT_SECONDS.
    pub fn new(settings: BotSettings, http: reqwest::Client) -> Self {
        Self { settings, http }
    }
}

/// The request's JSON.
#[derive(Debug, Serialize)]
pub(crate) struct BotRequest<'a> {
    /// The batch id: the same on every try of the batch.
    batch_id: &'a str,
    /// This try within the batch's claim, from 1.
    attempt: u32,
    /// Claims of the batch so far (a resumed batch: more than 1).
    claims: i64,
    conversation: BotConversation<'a>,
    /// The messages to answer, oldest first.
    messages: Vec<BotMessage<'a>>,
    /// The earlier exchange, oldest first.
    history: Vec<BotMessage<'a>>,
}

#[derive(Debug, Serialize)]
struct BotConversation<'a> {
    channel: &'a str,
    account: &'a str,
    contact: &'a str,
    /// `{channel}:{account}:{contact}`, as lull's agenda and logs name it.
    agenda: String,
    /// The contact's profile name, when the platform gives one.
    contact_name: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct BotMessage<'a> {
    /// lull's id of the message.
    id: i64,
    /// `in` (the contact) or `out` (a reply).
    direction: Direction,
    /// `contact` or `bot`.
    author: &'static str,
    /// `text`, `media`, `choice`, ...
    kind: crate::message::MessageKind,
    text: &'a str,
    /// RFC 3339, UTC.
    time: String,
    /// The platform's id of the message.
    platform_id: &'a str,
}

impl<'a> BotMessage<'a> {
    fn from(entry: &'a Entry) -> Self {
        let time = DateTime::from_timestamp_millis(entry.ts)
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
            .unwrap_or_default();
        Self {
            id: entry.id,
            direction: entry.dir,
            author: match entry.dir {
                Direction::Inbound => "contact",
                Direction::Outbound => "bot",
            },
            kind: entry.kind,
            text: &entry.text,
            time,
            platform_id: &entry.external_id,
        }
    }
}

/// The request for `context`.
pub(crate) fn request(context: &ReplyContext) -> BotRequest<'_> {
    let c = &context.conversation;
    BotRequest {
        batch_id: &context.batch_id,
        attempt: context.attempt,
        claims: context.claims,
        conversation: BotConversation {
            channel: c.channel.as_str(),
            account: &c.account,
            contact: &c.contact,
            agenda: c.to_string(),
            contact_name: context.contact_name.as_deref(),
        },
        messages: context.batch.iter().map(BotMessage::from).collect(),
        history: context.history.iter().map(BotMessage::from).collect(),
    }
}

/// The first [`MAX_BODY_IN_ERROR`] bytes of `body`, cut at a character.
fn body_start(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut cut = MAX_BODY_IN_ERROR.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text[..cut].trim().to_owned()
}

/// The bot's answer: 204 or an empty body is no reply; 2xx a [`Reply`].
fn read_answer(status: u16, body: &[u8]) -> Result<Reply, ResponderError> {
    if status == 204 || (200..300).contains(&status) && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Reply::default());
    }
    if (200..300).contains(&status) {
        return serde_json::from_slice(body).map_err(|e| ResponderError::Failed {
            status: Some(status),
            reason: format!(
                "HTTP {status} with a body that is not a reply ({e}): {}",
                body_start(body)
            ),
        });
    }
    Err(classify_status(
        status,
        format!("HTTP {status}: {}", body_start(body)),
    ))
}

#[async_trait]
impl Responder for HttpResponder {
    /// The bot gets the contact's profile name with each batch.
    fn wants_contact_name(&self) -> bool {
        true
    }

    async fn reply(&self, context: &ReplyContext) -> Result<Reply, ResponderError> {
        let secret = &self.settings.secret;
        let body = serde_json::to_vec(&request(context))
            .map_err(|e| ResponderError::failed(format!("request not written: {e}")))?;
        let timestamp = chrono::Utc::now().timestamp();
        let response = self
            .http
            .post(&self.settings.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, sign(secret, timestamp, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(e, &[secret]))?;
        let status = response.status().as_u16();
        let asked = retry_after(response.headers());
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(e, &[secret]))?;
        read_answer(status, &body).map_err(|error| {
            let error = with_retry_after(error, asked);
            match error {
                ResponderError::Failed { status, reason } => ResponderError::Failed {
                    status,
                    reason: redact(reason, &[secret]),
                },
                ResponderError::Outage { status, reason } => ResponderError::Outage {
                    status,
                    reason: redact(reason, &[secret]),
                },
                other => other,
            }
        })
    }

    fn name(&self) -> &'static str {
        "http"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{ChannelKind, Conversation};
    use serde_json::json;

    #[test]
    fn the_request_holds_the_batch_its_conversation_and_history_oldest_first() {
        let mut earlier = Entry::said(1, "hello");
        earlier.ts = 1_700_000_000_000;
        let context = ReplyContext {
            batch_id: "b-1".into(),
            contact_name: None,
            attempt: 2,
            claims: 1,
            conversation: Conversation::new(ChannelKind::WhatsApp, "acc", "maria"),
            history: vec![earlier],
            batch: vec![Entry::said(2, "hi"), Entry::said(3, "order?")],
        };
        let body = serde_json::to_value(request(&context)).unwrap();
        assert_eq!(body["batch_id"], "b-1");
        assert_eq!(body["attempt"], 2);
        assert_eq!(
            body["conversation"],
            json!({"channel": "whatsapp", "account": "acc", "contact": "maria",
                   "agenda": "whatsapp:acc:maria", "contact_name": null})
        );
        assert_eq!(
            body["history"][0],
            json!({"id": 1, "direction": "in", "author": "contact", "kind": "text",
                   "text": "hello", "time": "2023-11-14T22:13:20.000Z", "platform_id": "m1"})
        );
        let texts: Vec<&str> = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap())
            .collect();
        assert_eq!(texts, ["hi", "order?"]);
    }

    #[test]
    fn no_content_or_an_empty_body_is_no_reply() {
        assert_eq!(read_answer(204, b"").unwrap(), Reply::default());
        assert_eq!(read_answer(200, b" ").unwrap(), Reply::default());
        assert_eq!(
            read_answer(200, br#"{"messages": []}"#).unwrap(),
            Reply::default()
        );
    }

    #[test]
    fn a_client_error_fails_with_the_status_and_the_start_of_the_body() {
        let body = format!("bad input {}", "x".repeat(500));
        let error = read_answer(400, body.as_bytes()).unwrap_err();
        let ResponderError::Failed {
            status: Some(400),
            reason,
        } = error
        else {
            panic!("{error}");
        };
        assert!(reason.starts_with("HTTP 400: bad input x"), "{reason}");
        assert!(reason.len() <= MAX_BODY_IN_ERROR + "HTTP 400: ".len());
    }

    #[test]
    fn server_errors_are_retried_and_a_refused_secret_is_an_outage() {
        assert!(matches!(
            read_answer(503, b"busy"),
            Err(ResponderError::Unavailable { .. })
        ));
        assert!(matches!(
            read_answer(401, b"no"),
            Err(ResponderError::Outage {
                status: Some(401),
                ..
            })
        ));
    }
}
