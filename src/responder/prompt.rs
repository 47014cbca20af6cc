//! What both LLM responders send: a [`ReplyContext`] as role-tagged chat turns, and
//! the default system prompt.
//!
//! History maps to `user` (inbound) and `assistant` (outbound) turns; the batch is
//! one `user` turn, a message per line. Consecutive turns of one role are merged
//! with newlines (a multi-part reply, messages that were never answered), so roles
//! alternate: Anthropic requires it, and so do the chat templates of many local
//! models served by vLLM or Ollama. Media, choices and reactions are already
//! readable text (`[image] the damaged box`), so every kind maps the same way.

use super::ReplyContext;
use crate::message::{Direction, Entry};
use serde::Serialize;

/// The system prompt unless `LLM_SYSTEM_PROMPT` says otherwise (a setting's
/// default, so it lives with the settings).
pub use crate::config::DEFAULT_SYSTEM_PROMPT;

/// Who speaks in a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The contact.
    User,
    /// Our bot.
    Assistant,
}

/// One chat turn, serialized as the APIs take it: `{"role", "content"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Turn {
    /// Who speaks.
    pub role: Role,
    /// What they said; never empty.
    pub content: String,
}

fn role(entry: &Entry) -> Role {
    match entry.dir {
        Direction::Inbound => Role::User,
        Direction::Outbound => Role::Assistant,
    }
}

/// Appends `content` as a turn of `role`, joining it to the last turn when that has
/// the same role. Blank content is skipped: the APIs refuse empty turns.
fn push(turns: &mut Vec<Turn>, role: Role, content: &str) {
    let content = content.trim();
    if content.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some(last) if last.role == role => {
            last.content.push('\n');
            last.content.push_str(content);
        }
        _ => turns.push(Turn {
            role,
            content: content.to_owned(),
        }),
    }
}

/// History as alternating turns, then the batch as one user turn, a message per
/// line. The last turn is always the user's; history that ends with messages nobody
/// answered (a failed batch) shares it, above the batch's lines, so nothing is lost
/// and roles still alternate. The first turn may be the assistant's (history cut by
/// `HISTORY_LIMIT` or `LLM_HISTORY_CHARS`): see [`starting_with_user`].
///
/// `None` when the batch holds no text at all.
pub fn turns(context: &ReplyContext) -> Option<Vec<Turn>> {
    let mut turns = Vec::with_capacity(context.history.len() + 1);
    for entry in &context.history {
        push(&mut turns, role(entry), &entry.text);
    }
    let batch: Vec<&str> = context
        .batch
        .iter()
        .map(|e| e.text.trim())
        .filter(|t| !t.is_empty())
        .collect();
    if batch.is_empty() {
        return None;
    }
    push(&mut turns, Role::User, &batch.join("\n"));
    Some(turns)
}

/// `turns` without its leading assistant turns: Anthropic's Messages API requires
/// the first message to be the user's, and so do the chat templates of many local
/// models behind OpenAI-compatible servers (vLLM, Ollama: "roles must alternate
/// user/assistant"), a refusal that would fail the batch for good. OpenAI itself
/// accepts it, but the reply that opened a cut history makes little sense without
/// the question it answered anyway.
pub fn starting_with_user(mut turns: Vec<Turn>) -> Vec<Turn> {
    let first_user = turns
        .iter()
        .position(|t| t.role == Role::User)
        .unwrap_or(turns.len());
    turns.drain(..first_user);
    turns
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{ChannelKind, Conversation, MessageKind};

    fn entry(id: i64, dir: Direction, kind: MessageKind, text: &str) -> Entry {
        Entry {
            id,
            ts: id,
            dir,
            kind,
            external_id: format!("m{id}"),
            text: text.into(),
        }
    }

    fn inbound(id: i64, text: &str) -> Entry {
        entry(id, Direction::Inbound, MessageKind::Text, text)
    }

    fn outbound(id: i64, text: &str) -> Entry {
        entry(id, Direction::Outbound, MessageKind::Reply, text)
    }

    fn context(history: Vec<Entry>, batch: Vec<Entry>) -> ReplyContext {
        ReplyContext {
            batch_id: "b".into(),
            contact_name: None,
            attempt: 1,
            claims: 1,
            conversation: Conversation::new(ChannelKind::WhatsApp, "1", "2"),
            history,
            batch,
        }
    }

    fn turn(role: Role, content: &str) -> Turn {
        Turn {
            role,
            content: content.into(),
        }
    }

    #[test]
    fn history_maps_to_user_and_assistant_turns_and_the_batch_to_one_user_turn() {
        let context = context(
            vec![inbound(1, "hello"), outbound(2, "Hi! How can I help?")],
            vec![
                inbound(3, "hi"),
                inbound(4, "quick question"),
                inbound(5, "about my order #123"),
            ],
        );
        assert_eq!(
            turns(&context).unwrap(),
            [
                turn(Role::User, "hello"),
                turn(Role::Assistant, "Hi! How can I help?"),
                turn(Role::User, "hi\nquick question\nabout my order #123"),
            ]
        );
    }

    #[test]
    fn consecutive_turns_of_one_role_are_merged_with_newlines() {
        let context = context(
            vec![
                inbound(1, "hello"),
                inbound(2, "anyone?"),
                outbound(3, "part one"),
                outbound(4, "part two"),
                inbound(5, "thanks"),
                outbound(6, "You're welcome"),
            ],
            vec![inbound(7, "one more thing")],
        );
        assert_eq!(
            turns(&context).unwrap(),
            [
                turn(Role::User, "hello\nanyone?"),
                turn(Role::Assistant, "part one\npart two"),
                turn(Role::User, "thanks"),
                turn(Role::Assistant, "You're welcome"),
                turn(Role::User, "one more thing"),
            ]
        );
    }

    #[test]
    fn unanswered_history_shares_the_batch_turn_above_its_lines() {
        let context = context(
            vec![outbound(1, "Hi!"), inbound(2, "never answered")],
            vec![inbound(3, "hello?"), inbound(4, "still there?")],
        );
        assert_eq!(
            turns(&context).unwrap(),
            [
                turn(Role::Assistant, "Hi!"),
                turn(Role::User, "never answered\nhello?\nstill there?"),
            ]
        );
    }

    #[test]
    fn media_choices_and_reactions_use_their_text_and_blank_entries_are_skipped() {
        let context = context(
            vec![
                entry(1, Direction::Inbound, MessageKind::Media, "[image] the box"),
                entry(2, Direction::Inbound, MessageKind::Media, "  "),
            ],
            vec![
                entry(3, Direction::Inbound, MessageKind::Choice, "Track order"),
                entry(
                    4,
                    Direction::Inbound,
                    MessageKind::Reaction,
                    "[reacted 👍 to m1]",
                ),
                inbound(5, ""),
            ],
        );
        assert_eq!(
            turns(&context).unwrap(),
            [turn(
                Role::User,
                "[image] the box\nTrack order\n[reacted 👍 to m1]"
            )]
        );
    }

    #[test]
    fn a_batch_without_text_gives_no_turns() {
        assert_eq!(
            turns(&context(vec![inbound(1, "hi")], vec![inbound(2, " ")])),
            None
        );
    }

    #[test]
    fn anthropic_turns_start_with_the_user_and_alternate() {
        let context = context(
            vec![
                outbound(1, "cut off reply"),
                outbound(2, "its second part"),
                inbound(3, "ok"),
                outbound(4, "Anything else?"),
            ],
            vec![inbound(5, "yes"), inbound(6, "two things")],
        );
        let turns = starting_with_user(turns(&context).unwrap());
        assert_eq!(
            turns,
            [
                turn(Role::User, "ok"),
                turn(Role::Assistant, "Anything else?"),
                turn(Role::User, "yes\ntwo things"),
            ]
        );
        assert!(turns.windows(2).all(|w| w[0].role != w[1].role));
        let only_batch = starting_with_user(vec![turn(Role::User, "hi")]);
        assert_eq!(only_batch, [turn(Role::User, "hi")]);
    }

    #[test]
    fn turns_serialize_as_the_apis_take_them() {
        let json = serde_json::to_value(turn(Role::Assistant, "hi")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"role": "assistant", "content": "hi"})
        );
    }
}
