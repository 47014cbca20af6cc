//! Platforms: parse their webhooks into [`InboundMessage`]s and send replies through
//! their APIs. One file per platform; everything above this module is platform-blind.

mod api_base;
pub mod instagram;
mod json;
pub mod meta;
pub mod render;
pub mod telegram;
#[cfg(test)]
pub(crate) mod test_server;
pub(crate) mod transport;
pub mod whatsapp;

pub use api_base::ApiBase;

use crate::message::{ChannelKind, Conversation, InboundMessage};
use crate::responder::reply::ReplyMessage;
use async_trait::async_trait;
use std::time::Duration;

/// What one webhook POST held, once parsed.
#[derive(Debug, Default)]
pub struct ParsedWebhook {
    /// Messages people sent, in payload order.
    pub messages: Vec<InboundMessage>,
    /// Taps on our inline buttons the platform waits to see answered (Telegram's
    /// `callback_query` ids): answered once the webhook's messages are stored.
    pub callbacks: Vec<String>,
    /// Delivery statuses and read receipts of our own messages, and other platform
    /// events nobody wrote (Telegram updates without a message, service messages):
    /// acknowledged, logged, not batched.
    pub statuses: usize,
    /// Items skipped with a reason (already logged by the parser).
    pub skipped: usize,
    /// Of the statuses: our replies the platform took, then reported undelivered
    /// (WhatsApp's `failed` status). Their batches stay `sent`: the count is for
    /// alerting (`lull_deliveries_failed_total`), the reason is in the log.
    pub delivery_failures: usize,
    /// Messages our own business account sent, seen as echoes (WhatsApp
    /// `smb_message_echoes`, Instagram `is_echo`): a human agent's, unless they are
    /// our own replies. See `crate::handoff`. Each also counts in `skipped`: it
    /// is not a message to batch.
    pub echoes: Vec<Echo>,
}

/// A message our business account sent, as the platform echoed it: the
/// conversation is the contact's, the text is what was sent to them.
#[derive(Debug, Clone)]
pub struct Echo {
    /// The message, with the contact's conversation.
    pub message: InboundMessage,
    /// The Meta app that sent it (Instagram's `app_id`), when the echo says.
    pub app_id: Option<String>,
}

/// Why a webhook body was refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not JSON at all.
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but not a webhook of this platform.
    #[error("not a {channel} webhook: {reason}")]
    Shape {
        /// The platform the body was posted to.
        channel: ChannelKind,
        /// What is wrong.
        reason: String,
    },
}

/// Why a send failed, classified for the retry loop.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// Worth retrying: rate limits, 5xx, timeouts, transient platform codes.
    #[error("retryable send error (http {status:?}, code {code:?}): {message}")]
    Retryable {
        /// HTTP status, when there was a response.
        status: Option<u16>,
        /// The platform's error code.
        code: Option<i64>,
        /// The platform's message (never a secret).
        message: String,
        /// How long the platform asked us to wait.
        retry_after: Option<Duration>,
    },
    /// Will fail again: window closed, undeliverable, bad token, other 4xx.
    #[error("permanent send error (http {status:?}, code {code:?}): {message}")]
    Permanent {
        /// HTTP status, when there was a response.
        status: Option<u16>,
        /// The platform's error code.
        code: Option<i64>,
        /// The platform's message (never a secret).
        message: String,
    },
}

impl SendError {
    /// [`SendError::Retryable`] (after `retry_after`, when given) or
    /// [`SendError::Permanent`] (which has no use for it), as `retryable` says.
    pub fn classified(
        retryable: bool,
        status: Option<u16>,
        code: Option<i64>,
        message: String,
        retry_after: Option<Duration>,
    ) -> Self {
        if retryable {
            SendError::Retryable {
                status,
                code,
                message,
                retry_after,
            }
        } else {
            SendError::Permanent {
                status,
                code,
                message,
            }
        }
    }

    /// A permanent error without a response behind it: a request that could not be
    /// built, or an answer that was accepted but unusable (retrying could send twice).
    pub fn permanent(message: impl Into<String>) -> Self {
        SendError::Permanent {
            status: None,
            code: None,
            message: message.into(),
        }
    }

    /// The platform's error code, if any, for the batch record.
    pub fn code(&self) -> Option<i64> {
        match self {
            SendError::Retryable { code, .. } | SendError::Permanent { code, .. } => *code,
        }
    }

    /// The platform's message, for the batch record.
    pub fn message(&self) -> &str {
        match self {
            SendError::Retryable { message, .. } | SendError::Permanent { message, .. } => message,
        }
    }
}

/// Why a webhook request was refused before parsing.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A secret is configured and the request carries no signature or token.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// The signature or token does not match.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// Why a GET verification handshake was refused.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// A parameter is missing (400).
    #[error("missing {0}")]
    Missing(&'static str),
    /// Wrong mode or token (403).
    #[error("verification refused")]
    Refused,
}

/// The text a menu choice (a tapped button, list row or quick reply) is stored
/// as on every channel: the id that comes back to the bot, which it needs to know
/// which option it was, and the title the contact saw.
pub fn choice_text(id: &str, title: &str) -> String {
    format!("[choice id={id}] {title}")
}

/// A platform lull can receive from and reply through.
#[async_trait]
pub trait Channel: Send + Sync {
    /// Which platform this is.
    fn kind(&self) -> ChannelKind;

    /// Answers the platform's GET subscription handshake; `query` is the raw query string.
    fn handshake(&self, query: &str) -> Result<String, HandshakeError>;

    /// Checks the request's signature or secret token over the exact body bytes.
    fn verify(&self, headers: &http::HeaderMap, body: &[u8]) -> Result<(), VerifyError>;

    /// Parses a webhook body (already verified) into messages and statuses.
    fn parse(&self, body: &[u8]) -> Result<ParsedWebhook, ParseError>;

    /// Splits a reply into parts the platform accepts (its length limit).
    fn split(&self, text: &str) -> Vec<String>;

    /// Sends one part; returns the platform's id for it. In dry-run mode (no token)
    /// the part is logged instead and a `dry-run:` id returned.
    async fn send_part(&self, to: &Conversation, text: &str) -> Result<String, SendError>;

    /// Renders one reply message as the messages this platform takes, in order:
    /// natively within the platform's limits, else degraded (a menu to numbered
    /// text, a long text split, a caption that does not fit sent after its media).
    /// Never fails, and always renders the same message the same way, so that a
    /// resumed reply goes on from the first part not recorded as sent.
    fn render(&self, message: &ReplyMessage) -> Vec<ReplyMessage>;

    /// Sends one message [`Channel::render`] made; returns the platform's id for it.
    /// In dry-run mode (no token) it is logged instead and a `dry-run:` id returned.
    async fn send_message(
        &self,
        to: &Conversation,
        message: &ReplyMessage,
    ) -> Result<String, SendError>;

    /// Marks `message_id` read and shows the typing indicator. Best effort.
    async fn mark_read_typing(&self, to: &Conversation, message_id: &str) -> Result<(), SendError>;

    /// Shows the typing indicator again, before the platform clears it, while a
    /// reply is still being generated. Best effort.
    async fn renew_typing(&self, to: &Conversation, message_id: &str) -> Result<(), SendError> {
        self.mark_read_typing(to, message_id).await
    }

    /// How often the typing indicator is renewed: a little less than the time the
    /// platform shows it for.
    fn typing_renewal(&self) -> Duration;

    /// Answers a tap on one of our inline buttons, so that the platform stops
    /// showing it as pending (Telegram's `answerCallbackQuery`). Best effort.
    async fn answer_callback(&self, _callback_id: &str) -> Result<(), SendError> {
        Ok(())
    }
}
