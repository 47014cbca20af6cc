//! Rich replies on WhatsApp: reply buttons and lists as interactive messages, media
//! by link, within the Cloud API's limits; past them a menu becomes numbered text.
//! The request shapes are Meta's "interactive" and media message objects.

use super::{MAX_TEXT_CHARS, split_text};
use crate::channel::render::{self, ids_fit, within};
use crate::responder::reply::ReplyMessage;
use serde_json::{Value, json};

/// Reply buttons in one interactive message.
pub const MAX_BUTTONS: usize = 3;
/// Characters of a reply button's title.
pub const MAX_BUTTON_TITLE: usize = 20;
/// Bytes of a reply button's id.
pub const MAX_BUTTON_ID: usize = 256;
/// Characters of a reply-buttons message's body.
pub const MAX_BUTTONS_BODY: usize = 1024;
/// Rows of a list message (all sections together).
pub const MAX_LIST_ROWS: usize = 10;
/// Characters of a list's button, and of a row's title.
pub const MAX_LIST_BUTTON: usize = 20;
/// Characters of a list row's title.
pub const MAX_ROW_TITLE: usize = 24;
/// Characters of a list row's description.
pub const MAX_ROW_DESCRIPTION: usize = 72;
/// Bytes of a list row's id.
pub const MAX_ROW_ID: usize = 200;
/// Characters of a list message's body.
pub const MAX_LIST_BODY: usize = 4096;
/// Characters of a media caption.
pub const MAX_CAPTION: usize = 1024;

/// One reply message as the WhatsApp messages it is sent as.
pub(super) fn render(message: &ReplyMessage) -> Vec<ReplyMessage> {
    let split = |text: &str| split_text(text, MAX_TEXT_CHARS);
    match message {
        ReplyMessage::Text { text } => render::texts(split(text)),
        ReplyMessage::Buttons { text, buttons } => {
            let fits = (1..=MAX_BUTTONS).contains(&buttons.len())
                && within(text, MAX_BUTTONS_BODY)
                && buttons.iter().all(|b| within(&b.title, MAX_BUTTON_TITLE))
                && ids_fit(buttons.iter().map(|b| b.id.as_str()), MAX_BUTTON_ID)
                // Meta refuses two buttons of one message with the same title.
                && ids_fit(buttons.iter().map(|b| b.title.as_str()), usize::MAX);
            degrade_unless(fits, message)
        }
        ReplyMessage::List { text, list } => {
            let fits = (1..=MAX_LIST_ROWS).contains(&list.rows.len())
                && within(text, MAX_LIST_BODY)
                && within(&list.button, MAX_LIST_BUTTON)
                && list.rows.iter().all(|r| {
                    within(&r.title, MAX_ROW_TITLE)
                        && r.description
                            .as_deref()
                            .is_none_or(|d| d.chars().count() <= MAX_ROW_DESCRIPTION)
                })
                && ids_fit(list.rows.iter().map(|r| r.id.as_str()), MAX_ROW_ID);
            degrade_unless(fits, message)
        }
        // Audio takes no caption: one follows it as text.
        ReplyMessage::Audio { .. } => render::media_with_caption(message, |_| false, split),
        media => render::media_with_caption(media, |c| c.chars().count() <= MAX_CAPTION, split),
    }
}

/// The message itself when it fits, else its numbered text, split.
fn degrade_unless(fits: bool, message: &ReplyMessage) -> Vec<ReplyMessage> {
    if fits {
        return vec![message.clone()];
    }
    let text = render::as_numbered_text(message).unwrap_or_default();
    render::texts(split_text(&text, MAX_TEXT_CHARS))
}

/// The request body of one rendered message to `to`.
pub(super) fn body(to: &str, message: &ReplyMessage) -> Value {
    let mut body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
    });
    let (kind, content) = match message {
        ReplyMessage::Text { text } => ("text", json!({ "preview_url": false, "body": text })),
        ReplyMessage::Buttons { text, buttons } => {
            let buttons: Vec<Value> = buttons
                .iter()
                .map(|b| json!({ "type": "reply", "reply": { "id": b.id, "title": b.title } }))
                .collect();
            let interactive = json!({
                "type": "button",
                "body": { "text": text },
                "action": { "buttons": buttons },
            });
            ("interactive", interactive)
        }
        ReplyMessage::List { text, list } => {
            let rows: Vec<Value> = list
                .rows
                .iter()
                .map(|r| {
                    let mut row = json!({ "id": r.id, "title": r.title });
                    if let Some(description) = &r.description {
                        row["description"] = json!(description);
                    }
                    row
                })
                .collect();
            let interactive = json!({
                "type": "list",
                "body": { "text": text },
                "action": { "button": list.button, "sections": [{ "rows": rows }] },
            });
            ("interactive", interactive)
        }
        media => {
            let (kind, media) = render::media(media).expect("the other kinds are media");
            let mut content = json!({ "link": media.url });
            if let Some(caption) = &media.caption {
                content["caption"] = json!(caption);
            }
            (kind, content)
        }
    };
    body["type"] = json!(kind);
    body[kind] = content;
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::responder::reply::{Button, List, Media, Row};

    fn buttons(n: usize, title: &str) -> ReplyMessage {
        ReplyMessage::Buttons {
            text: "Pick one".into(),
            buttons: (0..n)
                .map(|i| Button {
                    id: format!("b{i}"),
                    title: format!("{title}{i}"),
                })
                .collect(),
        }
    }

    fn list(rows: usize) -> ReplyMessage {
        ReplyMessage::List {
            text: "Menu".into(),
            list: List {
                button: "Open".into(),
                rows: (0..rows)
                    .map(|i| Row {
                        id: format!("r{i}"),
                        title: format!("Row {i}"),
                        description: None,
                    })
                    .collect(),
            },
        }
    }

    #[test]
    fn three_short_buttons_stay_buttons() {
        assert_eq!(render(&buttons(3, "Ok")), vec![buttons(3, "Ok")]);
    }

    #[test]
    fn a_fourth_button_or_a_long_title_degrades_to_numbered_text() {
        let four = render(&buttons(4, "Ok"));
        assert_eq!(
            four,
            vec![render::text(
                "Pick one\n\n1. Ok0\n2. Ok1\n3. Ok2\n4. Ok3".into()
            )]
        );
        let long = render(&buttons(2, &"x".repeat(20)));
        assert!(matches!(&long[..], [ReplyMessage::Text { .. }]), "{long:?}");
        let twins = ReplyMessage::Buttons {
            text: "Pick".into(),
            buttons: vec![
                Button {
                    id: "a".into(),
                    title: "Same".into(),
                },
                Button {
                    id: "b".into(),
                    title: "Same".into(),
                },
            ],
        };
        assert!(matches!(&render(&twins)[..], [ReplyMessage::Text { .. }]));
    }

    #[test]
    fn ten_rows_stay_a_list_and_eleven_degrade() {
        assert_eq!(render(&list(10)), vec![list(10)]);
        let eleven = render(&list(11));
        assert!(
            matches!(&eleven[..], [ReplyMessage::Text { text }] if text.ends_with("11. Row 10")),
            "{eleven:?}"
        );
    }

    #[test]
    fn audio_is_sent_without_its_caption_which_follows_as_text() {
        let audio = ReplyMessage::Audio {
            audio: Media {
                url: "https://x/a.ogg".into(),
                caption: Some("listen".into()),
            },
        };
        let parts = render(&audio);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], render::text("listen".into()));
        assert_eq!(
            body("1", &parts[0])["audio"],
            json!({"link": "https://x/a.ogg"})
        );
    }

    mod sent {
        use super::*;
        use crate::channel::Channel;
        use crate::channel::test_server::{client, fixture, serve};
        use crate::channel::whatsapp::{WhatsApp, WhatsAppSettings};
        use crate::config::Secret;
        use crate::fake_platform::Answer;
        use crate::message::{ChannelKind, Conversation};

        /// Sends `message` as WhatsApp renders it through a recording fake Graph
        /// API: the request bodies, in order.
        async fn sent(message: ReplyMessage) -> Vec<Value> {
            let whatsapp = |base: &str| {
                WhatsApp::new(
                    WhatsAppSettings {
                        app_secret: None,
                        verify_token: None,
                        token: Some(Secret::new("t")),
                        graph_api_base: format!("{base}/v23.0"),
                        typing_indicator: false,
                    },
                    client(),
                )
            };
            let parts = render(&message);
            let ok = || Answer::new(200, fixture("whatsapp/send_response.json"));
            let (base, server) = serve(parts.iter().map(|_| ok()).collect()).await;
            let channel = whatsapp(&base);
            let maria = Conversation::new(ChannelKind::WhatsApp, "1234", "15550002222");
            for part in &parts {
                let id = channel.send_message(&maria, part).await.expect("sent");
                assert!(id.starts_with("wamid."), "{id}");
            }
            let received = server.seen();
            for request in &received {
                assert_eq!(request.request_line, "POST /v23.0/1234/messages HTTP/1.1");
            }
            received.into_iter().map(|r| r.body).collect()
        }

        fn envelope(kind: &str, content: Value) -> Value {
            let mut body = json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "15550002222",
                "type": kind,
            });
            body[kind] = content;
            body
        }

        #[tokio::test]
        async fn buttons_are_posted_as_an_interactive_button_message() {
            assert_eq!(
                sent(buttons(2, "Opt")).await,
                [envelope(
                    "interactive",
                    json!({"type": "button", "body": {"text": "Pick one"}, "action": {"buttons": [
                        {"type": "reply", "reply": {"id": "b0", "title": "Opt0"}},
                        {"type": "reply", "reply": {"id": "b1", "title": "Opt1"}},
                    ]}})
                )]
            );
        }

        #[tokio::test]
        async fn a_list_is_posted_as_an_interactive_list_with_one_section() {
            let mut message = list(2);
            if let ReplyMessage::List { list, .. } = &mut message {
                list.rows[0].description = Some("where it is".into());
            }
            assert_eq!(
                sent(message).await,
                [envelope(
                    "interactive",
                    json!({"type": "list", "body": {"text": "Menu"}, "action": {
                        "button": "Open",
                        "sections": [{"rows": [
                            {"id": "r0", "title": "Row 0", "description": "where it is"},
                            {"id": "r1", "title": "Row 1"},
                        ]}],
                    }})
                )]
            );
        }

        #[tokio::test]
        async fn an_image_is_posted_by_link_with_its_caption() {
            let image = ReplyMessage::Image {
                image: Media {
                    url: "https://cdn.example/box.jpg".into(),
                    caption: Some("your box".into()),
                },
            };
            assert_eq!(
                sent(image).await,
                [envelope(
                    "image",
                    json!({"link": "https://cdn.example/box.jpg", "caption": "your box"})
                )]
            );
        }

        #[tokio::test]
        async fn four_buttons_are_posted_as_numbered_text() {
            assert_eq!(
                sent(buttons(4, "Opt")).await,
                [envelope(
                    "text",
                    json!({"preview_url": false, "body": "Pick one\n\n1. Opt0\n2. Opt1\n3. Opt2\n4. Opt3"})
                )]
            );
        }
    }
}
