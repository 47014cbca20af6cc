//! One conversation as the console shows it: the transcript from PostgreSQL, its
//! Redis state, its mode, its last replies and the actions taken on it.

use super::ConsoleError;
use crate::batch::RedisBatches;
use crate::batch::inspect::RedisState;
use crate::message::Conversation;
use crate::store::{ActionRow, BatchRow, ModeRecord, Store, TranscriptLine};
use std::collections::HashMap;

/// Messages of the transcript shown.
const TRANSCRIPT: i64 = 200;
/// Replies shown.
const REPLIES: i64 = 20;
/// Actions shown.
const ACTIONS: i64 = 20;

/// Who answers the conversation, from its record in `conversation_modes` (none:
/// the bot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The bot answers.
    Bot,
    /// A human agent answers: the bot is paused.
    Human,
}

impl Mode {
    /// The mode a stored record says.
    fn of(record: Option<&ModeRecord>) -> Self {
        if record.is_some_and(ModeRecord::is_human) {
            Mode::Human
        } else {
            Mode::Bot
        }
    }
}

/// The mode of each of `conversations` (`{channel}:{account}:{contact}`), in one
/// query: a list page shows them all.
pub async fn modes_of(
    store: &Store,
    conversations: &[String],
) -> Result<HashMap<String, Mode>, ConsoleError> {
    let humans = store.humans_among(conversations).await?;
    Ok(conversations
        .iter()
        .map(|c| {
            let mode = if humans.contains(c) {
                Mode::Human
            } else {
                Mode::Bot
            };
            (c.clone(), mode)
        })
        .collect())
}

/// Everything the console shows of one conversation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConversationView {
    /// `{channel}:{account}:{contact}`.
    pub conversation: String,
    /// Who answers it.
    pub mode: Mode,
    /// Its handoff record (who paused it, when, why, until when); none: never
    /// paused.
    pub handoff: Option<ModeRecord>,
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
    let (replies, actions, record) = tokio::join!(
        store.replies_of(conversation, REPLIES),
        store.recent_actions(Some(&id), ACTIONS),
        store.mode(conversation)
    );
    let record = record?;
    Ok(ConversationView {
        conversation: id,
        mode: Mode::of(record.as_ref()),
        handoff: record,
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
