//! Turn a conversation's history and its new batch into one reply.
//!
//! `RESPONDER` picks one: [`BuiltinResponder`] (no API key, the default),
//! [`OpenAiResponder`] (any OpenAI-compatible Chat Completions API) or
//! [`AnthropicResponder`]. The two LLM responders share [`prompt`] (the context as
//! chat turns) and `api` (one POST, its failures classified).

mod anthropic;
mod api;
mod builtin;
mod openai;
pub mod prompt;

pub use anthropic::{ANTHROPIC_VERSION, AnthropicResponder, AnthropicSettings};
pub use builtin::BuiltinResponder;
pub use openai::{OpenAiResponder, OpenAiSettings};
pub use prompt::DEFAULT_SYSTEM_PROMPT;

use crate::message::{Conversation, Entry};
use async_trait::async_trait;

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
