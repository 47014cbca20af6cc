//! Turn a conversation's history and its new batch into one reply.
//!
//! `RESPONDER` picks one: [`BuiltinResponder`] (no API key, the default),
//! [`OpenAiResponder`] (any OpenAI-compatible Chat Completions API) or
//! [`AnthropicResponder`]. The two LLM responders share [`prompt`] (the context as
//! chat turns) and `api` (one POST, its failures classified). [`build`] makes the
//! one its [`ResponderSettings`] name.

mod anthropic;
mod api;
mod builtin;
mod openai;
pub mod prompt;
pub mod reply;

pub use crate::config::{AnthropicSettings, OpenAiSettings, ResponderSettings};
pub use anthropic::{ANTHROPIC_VERSION, AnthropicResponder};
pub use builtin::BuiltinResponder;
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
    /// The conversation.
    pub conversation: Conversation,
    /// Earlier messages, both directions, oldest first (without the batch's).
    pub history: Vec<Entry>,
    /// The messages to answer, platform order.
    pub batch: Vec<Entry>,
}

/// Why no reply could be generated.
#[derive(Debug, thiserror::Error)]
pub enum ResponderError {
    /// Worth another try later (timeout, rate limit).
    #[error("responder unavailable: {0}")]
    Unavailable(String),
    /// Will not work for this batch.
    #[error("responder failed: {0}")]
    Failed(String),
}

/// Produces reply text. Generation may be cancelled by dropping the future (a
/// superseded batch), so implementations keep no state across an await that a drop
/// would corrupt.
#[async_trait]
pub trait Responder: Send + Sync {
    /// One reply for the whole batch.
    async fn reply(&self, context: &ReplyContext) -> Result<String, ResponderError>;
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
