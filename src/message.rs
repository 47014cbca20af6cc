//! The message model shared by every channel: what a webhook parses into, what the
//! batch lists in Redis hold, and what a reply is built from.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A messaging platform lull speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// WhatsApp Cloud API.
    WhatsApp,
    /// Instagram messaging.
    Instagram,
    /// Telegram Bot API.
    Telegram,
}

impl ChannelKind {
    /// The name used in keys, URLs, metrics and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::WhatsApp => "whatsapp",
            ChannelKind::Instagram => "instagram",
            ChannelKind::Telegram => "telegram",
        }
    }

    /// Parses the name written by [`ChannelKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "whatsapp" => Some(ChannelKind::WhatsApp),
            "instagram" => Some(ChannelKind::Instagram),
            "telegram" => Some(ChannelKind::Telegram),
            _ => None,
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One conversation: a contact talking to one of our accounts on one channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Conversation {
    /// The platform.
    pub channel: ChannelKind,
    /// Our side: WhatsApp phone_number_id, Instagram account id, Telegram bot id.
    pub account: String,
    /// Their side: WhatsApp wa_id, Instagram IGSID, Telegram chat id.
    pub contact: String,
}

impl Conversation {
    /// Builds a conversation id from its three parts.
    pub fn new(
        channel: ChannelKind,
        account: impl Into<String>,
        contact: impl Into<String>,
    ) -> Self {
        Self {
            channel,
            account: account.into(),
            contact: contact.into(),
        }
    }

    /// `{channel}:{account}:{contact}`: the agenda member and the middle of every key.
    pub fn id(&self) -> String {
        format!("{}:{}:{}", self.channel, self.account, self.contact)
    }

    /// Parses the id written by [`Conversation::id`].
    pub fn parse(id: &str) -> Option<Self> {
        let mut parts = id.splitn(3, ':');
        let channel = ChannelKind::parse(parts.next()?)?;
        let account = parts.next()?;
        let contact = parts.next()?;
        if account.is_empty() || contact.is_empty() {
            return None;
        }
        Some(Self::new(channel, account, contact))
    }
}

impl fmt::Display for Conversation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.channel, self.account, self.contact)
    }
}

/// What kind of message a person sent, as far as batching cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// Plain text.
    Text,
    /// Image, audio, video, document or sticker (caption in the text, if any).
    Media,
    /// A shared location.
    Location,
    /// Shared contact cards.
    Contacts,
    /// A tap on a reply button, list row or template quick reply: a menu choice.
    Choice,
    /// A reaction (or its removal) to an earlier message.
    Reaction,
    /// Anything the platform marks unsupported or lull does not know.
    Unsupported,
    /// Something our bot sent.
    Reply,
}

impl MessageKind {
    /// The name stored in `conversation_messages.message_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::Media => "media",
            MessageKind::Location => "location",
            MessageKind::Contacts => "contacts",
            MessageKind::Choice => "choice",
            MessageKind::Reaction => "reaction",
            MessageKind::Unsupported => "unsupported",
            MessageKind::Reply => "reply",
        }
    }

    /// Parses the name written by [`MessageKind::as_str`]; unknown names are `Unsupported`.
    pub fn parse(s: &str) -> Self {
        match s {
            "text" => MessageKind::Text,
            "media" => MessageKind::Media,
            "location" => MessageKind::Location,
            "contacts" => MessageKind::Contacts,
            "choice" => MessageKind::Choice,
            "reaction" => MessageKind::Reaction,
            "reply" => MessageKind::Reply,
            _ => MessageKind::Unsupported,
        }
    }
}

/// One inbound message parsed from a webhook, before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundMessage {
    /// Who is talking to whom.
    pub conversation: Conversation,
    /// The platform's message id, unique within the channel (Telegram ids are
    /// prefixed with bot and chat, as they repeat across chats).
    pub external_id: String,
    /// What kind of message it is.
    pub kind: MessageKind,
    /// A readable rendering for the reply context ("[image] the damaged box").
    pub text: String,
    /// The platform's timestamp, unix milliseconds.
    pub timestamp_ms: i64,
    /// The contact's display name, when the platform sends one.
    pub contact_name: Option<String>,
    /// The platform's JSON for this one message, kept in `webhook_payload`.
    pub payload: serde_json::Value,
}

/// Longest platform id, account id or contact id stored, in bytes. Real ones are
/// far shorter (a wamid is about 60 characters, an Instagram mid under 200); the
/// bound keeps each index entry within what PostgreSQL accepts (about 2,700 bytes
/// for the whole entry), which would refuse the row.
pub const MAX_ID_BYTES: usize = 1024;

/// The last platform timestamp stored: the end of year 9999, unix ms. Earlier
/// than 1970 or later than this, a timestamp is no platform's, and PostgreSQL
/// refuses some of them (before 4713 BC).
const LAST_TIMESTAMP_MS: i64 = 253_402_300_799_999;

impl InboundMessage {
    /// Why PostgreSQL would refuse this message's row, if it would. Such a message
    /// is skipped with a log line: stored with the others, it would fail their
    /// whole webhook (and the good messages in it) on every retry.
    pub fn unstorable(&self) -> Option<&'static str> {
        if !(0..=LAST_TIMESTAMP_MS).contains(&self.timestamp_ms) {
            return Some("timestamp out of range");
        }
        let ids = [
            &self.external_id,
            &self.conversation.account,
            &self.conversation.contact,
        ];
        if ids.iter().any(|id| id.len() > MAX_ID_BYTES) {
            return Some("an id is longer than 1024 bytes");
        }
        None
    }

    /// The message with every NUL character (U+0000) replaced by U+FFFD in every
    /// string that is stored: text, payload, platform id, account and contact.
    /// PostgreSQL's text and jsonb refuse NUL, which a platform relays as the user
    /// sent it: kept, it would fail its whole webhook (and the good messages in it)
    /// on every retry. The same id is replaced the same way on a retry, so a
    /// duplicate is still recognised.
    pub fn without_nul(mut self) -> Self {
        for field in [
            &mut self.text,
            &mut self.external_id,
            &mut self.conversation.account,
            &mut self.conversation.contact,
        ] {
            replace_nul_in(field);
        }
        replace_nul(&mut self.payload);
        self
    }
}

fn replace_nul_in(s: &mut String) {
    if s.contains('\0') {
        *s = s.replace('\0', "\u{FFFD}");
    }
}

fn replace_nul(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => replace_nul_in(s),
        Value::Array(items) => items.iter_mut().for_each(replace_nul),
        Value::Object(fields) => {
            if fields.keys().any(|k| k.contains('\0')) {
                *fields = std::mem::take(fields)
                    .into_iter()
                    .map(|(k, v)| (k.replace('\0', "\u{FFFD}"), v))
                    .collect();
            }
            fields.values_mut().for_each(replace_nul);
        }
        _ => {}
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// The contact.
    #[serde(rename = "in")]
    Inbound,
    /// Our bot.
    #[serde(rename = "out")]
    Outbound,
}

impl Direction {
    /// The name stored in `conversation_messages.direction`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "in",
            Direction::Outbound => "out",
        }
    }
}

/// A stored message as the Redis lists hold it (JSON) and the responder reads it.
///
/// `id` and `ts` order the lists: the Lua scripts sort by platform time, then by
/// database id (arrival).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// `conversation_messages.id`.
    pub id: i64,
    /// Platform timestamp, unix ms.
    pub ts: i64,
    /// Who wrote it.
    pub dir: Direction,
    /// Message kind.
    pub kind: MessageKind,
    /// The platform's message id (`ext` in the Redis lists' JSON, to keep them small).
    #[serde(rename = "ext")]
    pub external_id: String,
    /// Readable text.
    pub text: String,
}

#[cfg(test)]
impl Entry {
    /// For unit tests: an inbound text whose time and platform id follow `id`.
    pub(crate) fn said(id: i64, text: &str) -> Self {
        Self {
            id,
            ts: id,
            dir: Direction::Inbound,
            kind: MessageKind::Text,
            external_id: format!("m{id}"),
            text: text.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_are_replaced_in_every_stored_string_and_anywhere_in_the_payload() {
        let message = InboundMessage {
            conversation: Conversation::new(ChannelKind::WhatsApp, "1\0", "2\0"),
            external_id: "wamid.nul\0".into(),
            kind: MessageKind::Text,
            text: "a\0b".into(),
            timestamp_ms: 0,
            contact_name: None,
            payload: serde_json::json!({"text": {"body": "a\0b"}, "k\0": ["\0"]}),
        }
        .without_nul();
        assert_eq!(message.text, "a\u{FFFD}b");
        assert_eq!(message.external_id, "wamid.nul\u{FFFD}");
        assert_eq!(
            message.conversation,
            Conversation::new(ChannelKind::WhatsApp, "1\u{FFFD}", "2\u{FFFD}")
        );
        assert_eq!(
            message.payload,
            serde_json::json!({"text": {"body": "a\u{FFFD}b"}, "k\u{FFFD}": ["\u{FFFD}"]})
        );
    }

    fn text_at(timestamp_ms: i64, external_id: &str, contact: &str) -> InboundMessage {
        InboundMessage {
            conversation: Conversation::new(ChannelKind::WhatsApp, "1", contact),
            external_id: external_id.into(),
            kind: MessageKind::Text,
            text: "hi".into(),
            timestamp_ms,
            contact_name: None,
            payload: serde_json::json!({}),
        }
    }

    #[test]
    fn a_message_postgres_would_refuse_says_why_and_an_ordinary_one_is_storable() {
        let long = "x".repeat(MAX_ID_BYTES + 1);
        let year_10000 = LAST_TIMESTAMP_MS + 1;
        for (message, why) in [
            (
                text_at(-300_000_000_000_000, "wamid.a", "2"),
                "timestamp out of range",
            ),
            (
                text_at(year_10000, "wamid.a", "2"),
                "timestamp out of range",
            ),
            (text_at(0, &long, "2"), "an id is longer than 1024 bytes"),
            (
                text_at(0, "wamid.a", &long),
                "an id is longer than 1024 bytes",
            ),
        ] {
            assert_eq!(message.unstorable(), Some(why));
        }
        let at_the_limits = text_at(LAST_TIMESTAMP_MS, &"x".repeat(MAX_ID_BYTES), "2");
        assert_eq!(at_the_limits.unstorable(), None);
        assert_eq!(
            text_at(1_767_262_200_000, "wamid.a", "2").unstorable(),
            None
        );
    }
}
