//! The boundary to the handoff core (issue 17, branch h17a): `pause` and `resume`
//! with the conversation's mode kept in PostgreSQL and Redis. Until that core is
//! merged both answer [`ConsoleError::Unavailable`]: nothing here pretends to
//! pause a conversation. When it lands, these two functions call
//! `crate::handoff::{pause, resume}` and nothing else in the console changes.

use super::ConsoleError;
use crate::batch::RedisBatches;
use crate::message::Conversation;
use crate::store::Store;

/// What the handoff core is waiting on, said to whoever asks.
pub const NOT_YET: &str = "pause and resume need the handoff core (issue 17, branch h17a), \
                           which is not in this build yet";

/// Where a pause or resume came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// The admin console or its API.
    Console,
    /// The command line.
    Cli,
}

/// A pause request, as the handoff core's `pause` takes it.
#[derive(Debug, Clone)]
pub struct PauseRequest {
    /// Who asked.
    pub by: String,
    /// For how long; none: until resumed.
    pub minutes: Option<f64>,
    /// Why, for the audit and the agent.
    pub reason: Option<String>,
    /// Where from.
    pub trigger: Trigger,
}

/// Pauses the bot on the conversation (the handoff core's `pause`).
pub async fn pause(
    _store: &Store,
    _redis: &RedisBatches,
    _conversation: &Conversation,
    _request: PauseRequest,
) -> Result<(), ConsoleError> {
    Err(ConsoleError::Unavailable(NOT_YET))
}

/// Gives the conversation back to the bot (the handoff core's `resume`).
pub async fn resume(
    _store: &Store,
    _redis: &RedisBatches,
    _conversation: &Conversation,
    _by: &str,
    _trigger: Trigger,
) -> Result<(), ConsoleError> {
    Err(ConsoleError::Unavailable(NOT_YET))
}
