//! What a responder answers: one or more reply messages, in order, and whether to
//! hand the conversation to a human. The LLM responders write one text message;
//! a team's own bot (RESPONDER=http) may send buttons, a list or media, which each
//! channel renders natively, degrading to numbered text past its limits.
//!
//! The JSON shape is the HTTP responder's reply format (README, "Bring your own
//! bot"): `{"messages": [{"text": ...}, {"text": ..., "buttons": [...]}, ...],
//! "handoff": false}`.

use serde::{Deserialize, Serialize};

/// A responder's answer to one batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The messages to send, in order; none: no reply for this batch (its
    /// messages are answered all the same).
    #[serde(default)]
    pub messages: Vec<ReplyMessage>,
    /// Hand the conversation to a human after this reply.
    #[serde(default)]
    pub handoff: bool,
    /// What generating it cost, when the responder reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

impl Reply {
    /// One plain text message.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            messages: vec![ReplyMessage::Text { text: text.into() }],
            ..Self::default()
        }
    }

    /// The whole reply as one text, a paragraph per message (empty: no reply):
    /// buttons and list rows as numbered lines, media as caption and URL. What a
    /// channel that sends text only shows.
    pub fn plain_text(&self) -> String {
        let paragraphs: Vec<String> = self
            .messages
            .iter()
            .map(ReplyMessage::plain_text)
            .filter(|p| !p.trim().is_empty())
            .collect();
        paragraphs.join("\n\n")
    }
}

impl ReplyMessage {
    /// This message as text (see [`Reply::plain_text`]).
    pub fn plain_text(&self) -> String {
        let numbered = |text: &str, titles: Vec<&str>| {
            let mut out = text.to_owned();
            for (n, title) in titles.iter().enumerate() {
                out.push_str(&format!("\n{}. {title}", n + 1));
            }
            out
        };
        let media = |m: &Media| match &m.caption {
            Some(caption) => format!("{caption}\n{}", m.url),
            None => m.url.clone(),
        };
        match self {
            ReplyMessage::Text { text } => text.clone(),
            ReplyMessage::Buttons { text, buttons } => {
                numbered(text, buttons.iter().map(|b| b.title.as_str()).collect())
            }
            ReplyMessage::List { text, list } => {
                numbered(text, list.rows.iter().map(|r| r.title.as_str()).collect())
            }
            ReplyMessage::Image { image: m }
            | ReplyMessage::Document { document: m }
            | ReplyMessage::Audio { audio: m }
            | ReplyMessage::Video { video: m } => media(m),
        }
    }
}

/// One message of a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReplyMessage {
    /// Text with up to a few reply buttons (WhatsApp: 3, titles up to 20 characters).
    Buttons {
        /// The message text.
        text: String,
        /// The buttons, in order.
        buttons: Vec<Button>,
    },
    /// Text with a menu of rows behind one button (WhatsApp: up to 10 rows).
    List {
        /// The message text.
        text: String,
        /// The list's rows and the title of the button that opens it.
        list: List,
    },
    /// An image by URL.
    Image {
        /// The image.
        image: Media,
    },
    /// A document by URL.
    Document {
        /// The document.
        document: Media,
    },
    /// An audio file by URL.
    Audio {
        /// The audio.
        audio: Media,
    },
    /// A video by URL.
    Video {
        /// The video.
        video: Media,
    },
    /// Plain text.
    Text {
        /// The message text.
        text: String,
    },
}

/// A reply button: the id comes back when it is tapped, the title is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Button {
    /// Comes back with the tap (a menu choice).
    pub id: String,
    /// Shown on the button.
    pub title: String,
}

/// A list menu.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct List {
    /// Title of the button that opens the list.
    pub button: String,
    /// The rows, in order.
    pub rows: Vec<Row>,
}

/// A row of a list menu.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// Comes back with the choice.
    pub id: String,
    /// Shown on the row.
    pub title: String,
    /// Shown under the title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A media file by URL, with an optional caption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Media {
    /// Where the platform fetches it (https).
    pub url: String,
    /// Shown with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
}

/// Tokens and time spent generating a reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// The model that wrote it, as the API names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Tokens of the prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    /// Tokens of the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> Reply {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn each_message_shape_of_the_bot_format_is_read_as_its_kind() {
        let reply = parse(json!({"messages": [
            {"text": "hi"},
            {"text": "pick", "buttons": [{"id": "a", "title": "A"}]},
            {"text": "menu", "list": {"button": "Open", "rows": [{"id": "r", "title": "R"}]}},
            {"image": {"url": "https://x/i.png", "caption": "look"}},
            {"document": {"url": "https://x/d.pdf"}},
            {"audio": {"url": "https://x/a.ogg"}},
            {"video": {"url": "https://x/v.mp4"}},
        ], "handoff": true}));
        assert!(reply.handoff);
        let kinds: Vec<&str> = reply
            .messages
            .iter()
            .map(|m| match m {
                ReplyMessage::Text { .. } => "text",
                ReplyMessage::Buttons { .. } => "buttons",
                ReplyMessage::List { .. } => "list",
                ReplyMessage::Image { .. } => "image",
                ReplyMessage::Document { .. } => "document",
                ReplyMessage::Audio { .. } => "audio",
                ReplyMessage::Video { .. } => "video",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "text", "buttons", "list", "image", "document", "audio", "video"
            ]
        );
    }

    #[test]
    fn an_empty_object_is_no_reply_and_no_handoff() {
        assert_eq!(parse(json!({})), Reply::default());
    }

    #[test]
    fn as_plain_text_each_message_is_a_paragraph_with_its_choices_numbered() {
        let reply = parse(json!({"messages": [
            {"text": "Hi!"},
            {"text": "Pick one", "buttons": [{"id": "a", "title": "Sizes"}, {"id": "b", "title": "Prices"}]},
            {"image": {"url": "https://x/i.png", "caption": "Our shop"}},
        ]}));
        assert_eq!(
            reply.plain_text(),
            "Hi!\n\nPick one\n1. Sizes\n2. Prices\n\nOur shop\nhttps://x/i.png"
        );
        assert_eq!(Reply::default().plain_text(), "");
    }

    #[test]
    fn a_reply_round_trips_through_its_json() {
        let reply = parse(json!({"messages": [
            {"text": "menu", "list": {"button": "Open", "rows": [{"id": "r", "title": "R", "description": "d"}]}},
            {"image": {"url": "https://x/i.png"}},
        ]}));
        let again: Reply = serde_json::from_str(&serde_json::to_string(&reply).unwrap()).unwrap();
        assert_eq!(again, reply);
    }
}
