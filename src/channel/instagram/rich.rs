//! Rich replies on Instagram: buttons and list rows as quick replies, media as
//! attachments by URL, within the Send API's limits; past them a menu becomes
//! numbered text. Instagram shows no caption with an attachment: it follows as text.

use super::{MAX_TEXT_BYTES, split_utf8};
use crate::channel::render::{self, ids_fit, within};
use crate::responder::reply::ReplyMessage;
use serde_json::{Value, json};

/// Quick replies in one message.
pub const MAX_QUICK_REPLIES: usize = 13;
/// Characters of a quick reply's title.
pub const MAX_QUICK_REPLY_TITLE: usize = 20;
/// Bytes of a quick reply's payload (the button's id).
pub const MAX_PAYLOAD: usize = 1000;

/// One reply message as the Instagram messages it is sent as.
pub(super) fn render(message: &ReplyMessage) -> Vec<ReplyMessage> {
    let split = |text: &str| split_utf8(text, MAX_TEXT_BYTES);
    let options: Vec<(&str, &str)> = match message {
        ReplyMessage::Text { text } => return render::texts(split(text)),
        ReplyMessage::Buttons { buttons, .. } => buttons
            .iter()
            .map(|b| (b.id.as_str(), b.title.as_str()))
            .collect(),
        ReplyMessage::List { list, .. } => list
            .rows
            .iter()
            .map(|r| (r.id.as_str(), r.title.as_str()))
            .collect(),
        // No captions on attachments.
        media => return render::media_with_caption(media, |_| false, split),
    };
    let text = match message {
        ReplyMessage::Buttons { text, .. } | ReplyMessage::List { text, .. } => text,
        _ => unreachable!("only menus have options"),
    };
    // A list row's description has no place on a quick reply: such a list is
    // shown as text, where it does.
    let described = matches!(message, ReplyMessage::List { list, .. }
        if list.rows.iter().any(|r| r.description.as_deref().is_some_and(|d| !d.is_empty())));
    let fits = !described
        && (1..=MAX_QUICK_REPLIES).contains(&options.len())
        && !text.trim().is_empty()
        && text.len() <= MAX_TEXT_BYTES
        && options
            .iter()
            .all(|(_, t)| within(t, MAX_QUICK_REPLY_TITLE))
        && ids_fit(options.iter().map(|(id, _)| *id), MAX_PAYLOAD);
    if fits {
        return vec![message.clone()];
    }
    let text = render::as_numbered_text(message).unwrap_or_default();
    render::texts(split(&text))
}

/// The request body of one rendered message to `to`.
pub(super) fn body(to: &str, message: &ReplyMessage) -> Value {
    let quick_replies = |text: &str, options: Vec<(&str, &str)>| {
        let replies: Vec<Value> = options
            .into_iter()
            .map(|(id, title)| json!({ "content_type": "text", "title": title, "payload": id }))
            .collect();
        json!({ "text": text, "quick_replies": replies })
    };
    let message = match message {
        ReplyMessage::Text { text } => json!({ "text": text }),
        ReplyMessage::Buttons { text, buttons } => quick_replies(
            text,
            buttons
                .iter()
                .map(|b| (b.id.as_str(), b.title.as_str()))
                .collect(),
        ),
        ReplyMessage::List { text, list } => quick_replies(
            text,
            list.rows
                .iter()
                .map(|r| (r.id.as_str(), r.title.as_str()))
                .collect(),
        ),
        media => {
            let (kind, media) = render::media(media).expect("the other kinds are media");
            // Instagram calls a document (a PDF) a file.
            let kind = if kind == "document" { "file" } else { kind };
            json!({ "attachment": { "type": kind, "payload": { "url": media.url } } })
        }
    };
    json!({ "recipient": { "id": to }, "message": message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::responder::reply::{Button, Media};

    fn buttons(n: usize) -> ReplyMessage {
        ReplyMessage::Buttons {
            text: "Pick one".into(),
            buttons: (0..n)
                .map(|i| Button {
                    id: format!("b{i}"),
                    title: format!("Option {i}"),
                })
                .collect(),
        }
    }

    #[test]
    fn thirteen_buttons_are_quick_replies_and_fourteen_numbered_text() {
        assert_eq!(render(&buttons(13)), vec![buttons(13)]);
        let fourteen = render(&buttons(14));
        assert!(
            matches!(&fourteen[..], [ReplyMessage::Text { text }] if text.ends_with("14. Option 13")),
            "{fourteen:?}"
        );
    }

    #[test]
    fn a_document_is_a_file_attachment_and_its_caption_follows() {
        let document = ReplyMessage::Document {
            document: Media {
                url: "https://x/d.pdf".into(),
                caption: Some("your invoice".into()),
            },
        };
        let parts = render(&document);
        assert_eq!(parts.len(), 2);
        assert_eq!(
            body("42", &parts[0]),
            json!({"recipient": {"id": "42"}, "message": {"attachment": {"type": "file", "payload": {"url": "https://x/d.pdf"}}}})
        );
        assert_eq!(parts[1], render::text("your invoice".into()));
    }

    mod sent {
        use super::*;
        use crate::channel::Channel;
        use crate::channel::instagram::{Instagram, InstagramSettings};
        use crate::channel::test_server::{client, fixture, serve};
        use crate::config::Secret;
        use crate::fake_platform::Answer;
        use crate::message::{ChannelKind, Conversation};
        use crate::responder::reply::{List, Row};

        /// Sends `message` as Instagram renders it through a recording fake API:
        /// the request bodies, in order.
        async fn sent(message: ReplyMessage) -> Vec<Value> {
            let parts = render(&message);
            let ok = || Answer::new(200, fixture("instagram/send_response.json"));
            let (base, server) = serve(parts.iter().map(|_| ok()).collect()).await;
            let channel = Instagram::new(
                InstagramSettings {
                    app_secret: None,
                    verify_token: None,
                    token: Some(Secret::new("t")),
                    api_base: format!("{base}/v23.0"),
                    typing_indicator: false,
                },
                client(),
            );
            let customer = Conversation::new(ChannelKind::Instagram, "1784", "5512");
            for part in &parts {
                channel.send_message(&customer, part).await.expect("sent");
            }
            let received = server.seen();
            for request in &received {
                assert_eq!(request.request_line, "POST /v23.0/1784/messages HTTP/1.1");
            }
            received.into_iter().map(|r| r.body).collect()
        }

        #[tokio::test]
        async fn buttons_are_posted_as_text_quick_replies() {
            assert_eq!(
                sent(buttons(2)).await,
                [
                    json!({"recipient": {"id": "5512"}, "message": {"text": "Pick one", "quick_replies": [
                        {"content_type": "text", "title": "Option 0", "payload": "b0"},
                        {"content_type": "text", "title": "Option 1", "payload": "b1"},
                    ]}})
                ]
            );
        }

        #[tokio::test]
        async fn a_list_without_descriptions_is_posted_as_quick_replies() {
            let list = ReplyMessage::List {
                text: "Menu".into(),
                list: List {
                    button: "Open".into(),
                    rows: vec![Row {
                        id: "track".into(),
                        title: "Track".into(),
                        description: None,
                    }],
                },
            };
            assert_eq!(
                sent(list).await,
                [
                    json!({"recipient": {"id": "5512"}, "message": {"text": "Menu", "quick_replies": [
                        {"content_type": "text", "title": "Track", "payload": "track"},
                    ]}})
                ]
            );
        }

        #[tokio::test]
        async fn an_image_is_posted_as_an_attachment_by_url_then_its_caption() {
            let image = ReplyMessage::Image {
                image: Media {
                    url: "https://cdn.example/box.jpg".into(),
                    caption: Some("your box".into()),
                },
            };
            assert_eq!(
                sent(image).await,
                [
                    json!({"recipient": {"id": "5512"}, "message": {"attachment": {"type": "image", "payload": {"url": "https://cdn.example/box.jpg"}}}}),
                    json!({"recipient": {"id": "5512"}, "message": {"text": "your box"}}),
                ]
            );
        }

        #[tokio::test]
        async fn fourteen_buttons_are_posted_as_numbered_text() {
            let bodies = sent(buttons(14)).await;
            assert_eq!(bodies.len(), 1);
            let text = bodies[0]["message"]["text"].as_str().expect("text");
            assert!(text.starts_with("Pick one\n\n1. Option 0\n"), "{text}");
            assert!(bodies[0]["message"].get("quick_replies").is_none());
        }
    }
}
