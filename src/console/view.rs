//! One conversation as the console shows it: the transcript from PostgreSQL, its
//! Redis state, its mode, its last replies and the actions taken on it.

use super::ConsoleError;
use crate::batch::RedisBatches;
use crate::batch::inspect::RedisState;
use crate::message::Conversation;
use crate::store::{ActionRow, BatchRow, Store, TranscriptLine};

/// Messages of the transcript shown.
const TRANSCRIPT: i64 = 200;
/// Replies shown.
const REPLIES: i64 = 20;
/// Actions shown.
const ACTIONS: i64 = 20;

/// Who answers the conversation. Until the handoff core lands (see
/// [`super::handoff`]) nothing can pause a conversation, so every one is `bot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The bot answers.
    Bot,
}

/// Everything the console shows of one conversation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConversationView {
    /// `{channel}:{account}:{contact}`.
    pub conversation: String,
    /// Who answers it.
    pub mode: Mode,
    /// Its Redis state.
    pub redis: RedisState,
    /// Its newest messages, oldest first.
    pub transcript: Vec<TranscriptLine>,
    /// Its newest reply batches, newest first.
    pub replies: Vec<BatchRow>,
    /// The newest console actions on it.
    pub actions: Vec<ActionRow>,
}

/// The view of `conversation`; [`ConsoleError::UnknownConversation`] when neither
/// PostgreSQL nor Redis holds anything of it.
pub async fn inspect(
    store: &Store,
    redis: &RedisBatches,
    conversation: &Conversation,
) -> Result<ConversationView, ConsoleError> {
    let id = conversation.id();
    let (transcript, state) = tokio::join!(
        store.transcript(conversation, TRANSCRIPT),
        redis.conversation_state(conversation)
    );
    let (transcript, state) = (transcript?, state?);
    if transcript.is_empty() && state.is_empty() {
        return Err(ConsoleError::UnknownConversation(id));
    }
    let (replies, actions) = tokio::join!(
        store.replies_of(conversation, REPLIES),
        store.recent_actions(Some(&id), ACTIONS)
    );
    Ok(ConversationView {
        conversation: id,
        mode: Mode::Bot,
        redis: state,
        transcript,
        replies: replies?,
        actions: actions?,
    })
}

/// [`ConsoleError::UnknownConversation`] unless PostgreSQL or Redis knows it.
pub(super) async fn known(
    store: &Store,
    redis: &RedisBatches,
    conversation: &Conversation,
) -> Result<(), ConsoleError> {
    if store.conversation_known(conversation).await?
        || !redis.conversation_state(conversation).await?.is_empty()
    {
        Ok(())
    } else {
        Err(ConsoleError::UnknownConversation(conversation.id()))
    }
}
