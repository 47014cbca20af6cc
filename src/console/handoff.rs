//! The console's boundary to the handoff core ([`crate::handoff`]): operator
//! pauses and resumes go through [`Handoff`], and its errors become console
//! errors here, so the admin API and the CLI map them like every other action.

use super::ConsoleError;
use crate::handoff::{Handoff, HandoffError, PauseOutcome, PauseRequest, ResumeOutcome, Trigger};
use crate::message::Conversation;

impl From<HandoffError> for ConsoleError {
    fn from(error: HandoffError) -> Self {
        match error {
            HandoffError::Store(error) => ConsoleError::Store(error),
            // PostgreSQL holds the pause; a retry brings Redis in line (503).
            HandoffError::Redis(error) => ConsoleError::Redis(error),
            HandoffError::Minutes => ConsoleError::BadRequest(error.to_string()),
        }
    }
}

/// Pauses the bot on the conversation ([`Handoff::pause`]).
pub(super) async fn pause(
    handoff: &Handoff,
    conversation: &Conversation,
    request: PauseRequest,
) -> Result<PauseOutcome, ConsoleError> {
    Ok(handoff.pause(conversation, request).await?)
}

/// Gives the conversation back to the bot as an operator (`by`, the actor label).
pub(super) async fn resume(
    handoff: &Handoff,
    conversation: &Conversation,
    by: &str,
) -> Result<ResumeOutcome, ConsoleError> {
    Ok(handoff.resume(conversation, by, Trigger::Operator).await?)
}
