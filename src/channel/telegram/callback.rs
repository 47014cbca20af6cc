//! A tap on one of our inline buttons: Telegram's `callback_query` update. It is a
//! menu choice, stored as the contact's message in the chat of the message the
//! keyboard was on, with the button's id (its `callback_data`) and title in the
//! text (`[choice id=<id>] <title>`), so that the bot reading the history knows
//! which button it was. Telegram shows the button as pending until the query is
//! answered (`answerCallbackQuery`), whatever becomes of the message.

use crate::channel::json::{json_i64, str_at};
use crate::message::{ChannelKind, Conversation, InboundMessage, MessageKind};
use serde_json::Value;

pub use crate::channel::choice_text;

/// The choice a `callback_query` holds, if it was made in a chat: one from an
/// inline-mode message has no chat, and is counted as a status. `Err` names what
/// is missing.
pub(super) fn parse_callback(
    query: &Value,
    bot: &str,
    update: &Value,
) -> Result<Option<InboundMessage>, &'static str> {
    let id = str_at(query, &["id"])
        .filter(|s| !s.is_empty())
        .ok_or("callback_query without an id")?;
    let Some(message) = query.get("message").filter(|m| m.is_object()) else {
        return Ok(None);
    };
    let chat = message
        .pointer("/chat/id")
        .and_then(json_i64)
        .ok_or("callback_query message without chat.id")?;
    let data = str_at(query, &["data"]).unwrap_or_default();
    let title = button_title(message, data).unwrap_or(data);
    let topic = (message.get("is_topic_message").and_then(Value::as_bool) == Some(true))
        .then(|| message.get("message_thread_id").and_then(json_i64))
        .flatten();
    let contact = match topic {
        Some(topic) => format!("{chat}/{topic}"),
        None => chat.to_string(),
    };
    let name = [
        str_at(query, &["from", "first_name"]),
        str_at(query, &["from", "last_name"]),
    ]
    .into_iter()
    .flatten()
    .filter(|s| !s.is_empty())
    .collect::<Vec<_>>()
    .join(" ");
    Ok(Some(InboundMessage {
        conversation: Conversation::new(ChannelKind::Telegram, bot, contact),
        // Query ids are unique per bot; a redelivered update is stored once.
        external_id: format!("{bot}:{chat}:callback:{id}"),
        kind: MessageKind::Choice,
        text: choice_text(data, title),
        // A query carries no date: it was made just now.
        timestamp_ms: chrono::Utc::now().timestamp_millis(),
        contact_name: (!name.is_empty()).then_some(name),
        payload: update.clone(),
    }))
}

/// The title of the button whose `callback_data` is `data`, read from the
/// keyboard of the message it was on.
fn button_title<'a>(message: &'a Value, data: &str) -> Option<&'a str> {
    message
        .pointer("/reply_markup/inline_keyboard")?
        .as_array()?
        .iter()
        .filter_map(Value::as_array)
        .flatten()
        .find(|b| b.get("callback_data").and_then(Value::as_str) == Some(data))?
        .get("text")?
        .as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn query(data: &str) -> Value {
        json!({
            "id": "4382bfdwdsb323b2d9",
            "from": {"id": 123456789, "is_bot": false, "first_name": "Maria"},
            "chat_instance": "-1",
            "data": data,
            "message": {
                "message_id": 77,
                "date": 1_760_000_000,
                "chat": {"id": 123456789, "type": "private"},
                "text": "Pick one",
                "reply_markup": {"inline_keyboard": [
                    [{"text": "Track my order", "callback_data": "track"}],
                    [{"text": "Talk to a person", "callback_data": "human"}],
                ]},
            },
        })
    }

    #[test]
    fn a_tap_is_a_choice_with_the_button_id_and_title() {
        let update = json!({"update_id": 1, "callback_query": query("human")});
        let choice = parse_callback(&query("human"), "7000000001", &update)
            .expect("valid")
            .expect("a chat's");
        assert_eq!(choice.kind, MessageKind::Choice);
        assert_eq!(choice.text, "[choice id=human] Talk to a person");
        assert_eq!(choice.conversation.contact, "123456789");
        assert_eq!(
            choice.external_id,
            "7000000001:123456789:callback:4382bfdwdsb323b2d9"
        );
        assert_eq!(choice.contact_name.as_deref(), Some("Maria"));
    }

    #[test]
    fn a_tap_without_its_message_is_only_acknowledged() {
        let mut q = query("track");
        q.as_object_mut().unwrap().remove("message");
        assert_eq!(parse_callback(&q, "7", &json!({})), Ok(None));
        assert!(parse_callback(&json!({"data": "x"}), "7", &json!({})).is_err());
    }
}
