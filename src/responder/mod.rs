//! Turn a conversation's history and its new batch into one reply.
//!
//! `RESPONDER` picks one: [`BuiltinResponder`] (no API key, the default),
//! [`OpenAiResponder`] (any OpenAI-compatible Chat Completions API),
//! [`AnthropicResponder`], or [`HttpResponder`] (a team's own bot, `BOT_URL`). The
//! two LLM responders share [`prompt`] (the context as chat turns); every HTTP
//! responder shares `api` (one POST, its failures classified). [`build`] makes the
//! one its [`ResponderSettings`] name. [`ResponderHealth`] remembers whether the
//! responder is failing as a whole (a bad key, an unknown model), for `/readyz`.

mod anthropic;
mod api;
mod builtin;
pub mod health;
mod http;
mod openai;
pub mod prompt;
pub mod reply;
pub mod signature;

pub use crate::config::{AnthropicSettings, BotSettings, OpenAiSettings, ResponderSettings};
pub use anthropic::{ANTHROPIC_VERSION, AnthropicResponder};
pub use builtin::BuiltinResponder;
pub use health::ResponderHealth;
pub use http::HttpResponder;
pub use openai::OpenAiResponder;
pub use prompt::DEFAULT_SYSTEM_PROMPT;
pub use reply::{Reply, ReplyMessage, Usage};

use crate::message::{Conversation, Entry};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// What the responder sees.
#[derive(Debug, Clone)]
pub struct ReplyContext {
    /// The batch id: the same on every try of the batch (the bot's idempotency key).
    pub batch_id: String,
    /// This try of the batch within its claim, from 1.
    pub attempt: u32,
    /// Claims of the batch so far, this one included.
    pub claims: i64,
    /// The conversation.
    pub conversation: Conversation,
    /// Earlier messages, both directions, oldest first (without the batch's).
    pub history: Vec<Entry>,
    /// The messages to answer, platform order.
    pub batch: Vec<Entry>,
    /// The contact's profile name, for the responders that ask for it
    /// ([`Responder::wants_contact_name`]).
    pub contact_name: Option<String>,
}

/// Why no reply could be generated. Messages hold no URL and no secret.
#[derive(Debug, thiserror::Error)]
pub enum ResponderError {
    /// Worth another try soon (timeout, rate limit, 5xx): retried with backoff,
    /// after `retry_after` when the responder asked for it.
    #[error("responder unavailable: {reason}")]
    Unavailable {
        /// What happened.
        reason: String,
        /// The responder's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The responder refuses every request (a bad key: 401, 403; an unknown model
    /// or URL: 404): an outage of the whole responder, not a verdict on this batch.
    /// The batch keeps its messages and is tried again later; `/readyz` says so.
    #[error("responder failing: {reason}")]
    Outage {
        /// The HTTP status, when there was one.
        status: Option<u16>,
        /// What happened.
        reason: String,
    },
    /// Will not work for this batch (a content refusal, a 4xx of the bot): the
    /// batch fails, and FALLBACK_REPLY is sent when set.
    #[error("responder failed: {reason}")]
    Failed {
        /// The HTTP status, when there was one.
        status: Option<u16>,
        /// What happened.
        reason: String,
    },
}

impl ResponderError {
    /// Unavailable, without a Retry-After.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self::Unavailable {
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// Failed for this batch, without an HTTP status.
    pub fn failed(reason: impl Into<String>) -> Self {
        Self::Failed {
            status: None,
            reason: reason.into(),
        }
    }

    /// The kind, as the metrics label it: `unavailable`, `outage`, `failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unavailable { .. } => "unavailable",
            Self::Outage { .. } => "outage",
            Self::Failed { .. } => "failed",
        }
    }

    /// The HTTP status of the answer, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Unavailable { .. } => None,
            Self::Outage { status, .. } | Self::Failed { status, .. } => *status,
        }
    }
}

/// Produces the reply to a batch. Generation may be cancelled by dropping the
/// future (a superseded batch, a shutdown: the HTTP request's connection is
/// dropped with it), so implementations keep no state across an await that a drop
/// would corrupt.
#[async_trait]
pub trait Responder: Send + Sync {
    /// One reply for the whole batch.
    /// Whether the context should carry the contact's profile name (one more
    /// PostgreSQL read per batch, so only for a responder that passes it on).
    fn wants_contact_name(&self) -> bool {
        false
    }

    async fn reply(&self, context: &ReplyContext) -> Result<Reply, ResponderError>;

    /// The responder's name, as `RESPONDER` and the metrics label it.
    fn name(&self) -> &'static str;
}

/// The responder `settings` name. The LLM ones get an HTTP client of their own: a
/// generation takes far longer than a platform API call (LLM_TIMEOUT_SECONDS, not
/// SEND_TIMEOUT_SECONDS).
pub fn build(settings: &ResponderSettings) -> Result<Arc<dyn Responder>, reqwest::Error> {
    let (model, responder): (&str, Arc<dyn Responder>) = match settings {
        ResponderSettings::Builtin { delay } => {
            return Ok(Arc::new(BuiltinResponder::new(*delay)));
        }
        ResponderSettings::OpenAi(llm) => (
            &llm.model,
            Arc::new(OpenAiResponder::new(llm.clone(), llm_client(llm.timeout)?)),
        ),
        ResponderSettings::Anthropic(llm) => (
            &llm.model,
            Arc::new(AnthropicResponder::new(
                llm.clone(),
                llm_client(llm.timeout)?,
            )),
        ),
        ResponderSettings::Http(bot) => {
            tracing::info!(
                responder = "http",
                "replies are written by the bot at BOT_URL"
            );
            return Ok(Arc::new(HttpResponder::new(
                bot.clone(),
                llm_client(bot.timeout)?,
            )));
        }
    };
    tracing::info!(
        responder = settings.kind().as_str(),
        model,
        "replies are written by an LLM"
    );
    Ok(responder)
}

/// An HTTP client for LLM requests, each given `timeout`.
fn llm_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        // A redirect would turn the POST into a GET, and reqwest would forward
        // Anthropic's x-api-key to another host: fail instead.
        .redirect(reqwest::redirect::Policy::none())
        .build()
}
