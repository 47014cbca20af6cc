//! Rich replies on Telegram: buttons and list rows as an inline keyboard (one
//! button a row; a tap comes back as a `callback_query` with the button's id as
//! its `callback_data`), media through `sendPhoto`, `sendDocument`, `sendAudio` and
//! `sendVideo` by URL; past the Bot API's limits a menu becomes numbered text.

use super::{MAX_TEXT_CHARS, split_text};
use crate::channel::render::{self, ids_fit, within};
use crate::responder::reply::ReplyMessage;
use serde_json::{Value, json};

/// Buttons of one inline keyboard.
pub const MAX_BUTTONS: usize = 100;
/// Bytes of a button's `callback_data` (the button's id).
pub const MAX_CALLBACK_DATA: usize = 64;
/// Characters of a media caption.
pub const MAX_CAPTION: usize = 1024;
/// Characters shown on an inline button before it is cut by the app anyway.
pub const MAX_BUTTON_TEXT: usize = 64;

/// One reply message as the Telegram messages it is sent as.
pub(super) fn render(message: &ReplyMessage) -> Vec<ReplyMessage> {
    let split = |text: &str| split_text(text, MAX_TEXT_CHARS);
    let (text, options): (&str, Vec<(&str, &str)>) = match message {
        ReplyMessage::Text { text } => return render::texts(split(text)),
        ReplyMessage::Buttons { text, buttons } => (
            text,
            buttons
                .iter()
                .map(|b| (b.id.as_str(), b.title.as_str()))
                .collect(),
        ),
        ReplyMessage::List { text, list } => (
            text,
            list.rows
                .iter()
                .map(|r| (r.id.as_str(), r.title.as_str()))
                .collect(),
        ),
        media => {
            return render::media_with_caption(media, |c| c.chars().count() <= MAX_CAPTION, split);
        }
    };
    let fits = (1..=MAX_BUTTONS).contains(&options.len())
        && within(&shown_text(message, text), MAX_TEXT_CHARS)
        && options.iter().all(|(_, t)| within(t, MAX_BUTTON_TEXT))
        && ids_fit(options.iter().map(|(id, _)| *id), MAX_CALLBACK_DATA);
    if fits {
        return vec![message.clone()];
    }
    let text = render::as_numbered_text(message).unwrap_or_default();
    render::texts(split(&text))
}

/// The text shown above a keyboard: a list whose rows have descriptions shows
/// them as numbered lines, as a button has room for its title only.
fn shown_text(message: &ReplyMessage, text: &str) -> String {
    match message {
        ReplyMessage::List { list, .. } if list.rows.iter().any(|r| r.description.is_some()) => {
            render::as_numbered_text(message).unwrap_or_default()
        }
        _ => text.to_owned(),
    }
}

/// The Bot API method and the fields of one rendered message (the caller adds
/// the chat).
pub(super) fn request(message: &ReplyMessage) -> (&'static str, Value) {
    let keyboard = |text: &str, options: Vec<(&str, &str)>| {
        let rows: Vec<Value> = options
            .into_iter()
            .map(|(id, title)| json!([{ "text": title, "callback_data": id }]))
            .collect();
        json!({ "text": text, "reply_markup": { "inline_keyboard": rows } })
    };
    match message {
        ReplyMessage::Text { text } => ("sendMessage", json!({ "text": text })),
        ReplyMessage::Buttons { text, buttons } => (
            "sendMessage",
            keyboard(
                text,
                buttons
                    .iter()
                    .map(|b| (b.id.as_str(), b.title.as_str()))
                    .collect(),
            ),
        ),
        ReplyMessage::List { text, list } => (
            "sendMessage",
            keyboard(
                &shown_text(message, text),
                list.rows
                    .iter()
                    .map(|r| (r.id.as_str(), r.title.as_str()))
                    .collect(),
            ),
        ),
        media => {
            let (kind, media) = render::media(media).expect("the other kinds are media");
            let (method, field) = match kind {
                "image" => ("sendPhoto", "photo"),
                "document" => ("sendDocument", "document"),
                "audio" => ("sendAudio", "audio"),
                _ => ("sendVideo", "video"),
            };
            let mut fields = json!({ field: media.url });
            if let Some(caption) = &media.caption {
                fields["caption"] = json!(caption);
            }
            (method, fields)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::responder::reply::{Button, List, Media, Row};

    #[test]
    fn buttons_become_an_inline_keyboard_one_button_a_row() {
        let message = ReplyMessage::Buttons {
            text: "Pick".into(),
            buttons: vec![
                Button {
                    id: "yes".into(),
                    title: "Yes".into(),
                },
                Button {
                    id: "no".into(),
                    title: "No".into(),
                },
            ],
        };
        assert_eq!(render(&message), vec![message.clone()]);
        assert_eq!(
            request(&message),
            (
                "sendMessage",
                json!({"text": "Pick", "reply_markup": {"inline_keyboard": [
                    [{"text": "Yes", "callback_data": "yes"}],
                    [{"text": "No", "callback_data": "no"}],
                ]}})
            )
        );
    }

    #[test]
    fn an_id_longer_than_callback_data_allows_degrades_to_numbered_text() {
        let message = ReplyMessage::List {
            text: "Menu".into(),
            list: List {
                button: "Open".into(),
                rows: vec![Row {
                    id: "x".repeat(65),
                    title: "Track".into(),
                    description: None,
                }],
            },
        };
        assert_eq!(
            render(&message),
            vec![render::text("Menu\n\n1. Track".into())]
        );
    }

    #[test]
    fn media_go_by_url_through_their_own_method() {
        let video = ReplyMessage::Video {
            video: Media {
                url: "https://x/v.mp4".into(),
                caption: Some("watch".into()),
            },
        };
        assert_eq!(
            request(&video),
            (
                "sendVideo",
                json!({"video": "https://x/v.mp4", "caption": "watch"})
            )
        );
    }

    mod sent {
        use super::*;
        use crate::channel::Channel;
        use crate::channel::telegram::{Telegram, TelegramSettings};
        use crate::channel::test_server::{client, fixture, serve};
        use crate::config::Secret;
        use crate::fake_platform::Answer;
        use crate::message::{ChannelKind, Conversation};

        const TOKEN: &str = "7000000001:AAFakeTokenForUnitTests_abc-XYZ";

        fn telegram(base: &str) -> Telegram {
            Telegram::new(
                TelegramSettings {
                    bot_token: Some(Secret::new(TOKEN)),
                    secret_token: None,
                    api_base: base.to_owned(),
                    typing_indicator: false,
                },
                client(),
            )
        }

        /// Sends `message` as Telegram renders it through a recording fake Bot API:
        /// each request's method and body, in order.
        async fn sent(message: ReplyMessage) -> Vec<(String, Value)> {
            let parts = render(&message);
            let ok = || Answer::new(200, fixture("telegram/send_response.json"));
            let (base, server) = serve(parts.iter().map(|_| ok()).collect()).await;
            let maria = Conversation::new(ChannelKind::Telegram, "7000000001", "123456789");
            for part in &parts {
                let id = telegram(&base)
                    .send_message(&maria, part)
                    .await
                    .expect("sent");
                assert_eq!(id, "7000000001:123456789:55");
            }
            let prefix = format!("POST /bot{TOKEN}/");
            server
                .seen()
                .into_iter()
                .map(|r| {
                    let method = r.request_line.strip_prefix(&prefix).expect("bot path");
                    let method = method.trim_end_matches(" HTTP/1.1").to_owned();
                    (method, r.body)
                })
                .collect()
        }

        #[tokio::test]
        async fn buttons_are_posted_with_an_inline_keyboard() {
            let message = ReplyMessage::Buttons {
                text: "Pick".into(),
                buttons: vec![Button {
                    id: "track".into(),
                    title: "Track".into(),
                }],
            };
            assert_eq!(
                sent(message).await,
                [(
                    "sendMessage".to_owned(),
                    json!({"chat_id": 123456789, "text": "Pick", "reply_markup": {"inline_keyboard": [
                        [{"text": "Track", "callback_data": "track"}],
                    ]}})
                )]
            );
        }

        #[tokio::test]
        async fn a_list_is_posted_as_a_keyboard_of_its_rows() {
            let message = ReplyMessage::List {
                text: "Menu".into(),
                list: List {
                    button: "Open".into(),
                    rows: vec![
                        Row {
                            id: "a".into(),
                            title: "Track".into(),
                            description: Some("where it is".into()),
                        },
                        Row {
                            id: "b".into(),
                            title: "Return".into(),
                            description: None,
                        },
                    ],
                },
            };
            assert_eq!(
                sent(message).await,
                [(
                    "sendMessage".to_owned(),
                    json!({"chat_id": 123456789, "text": "Menu\n\n1. Track: where it is\n2. Return",
                    "reply_markup": {"inline_keyboard": [
                        [{"text": "Track", "callback_data": "a"}],
                        [{"text": "Return", "callback_data": "b"}],
                    ]}})
                )]
            );
        }

        #[tokio::test]
        async fn an_image_is_posted_to_send_photo_by_url() {
            let image = ReplyMessage::Image {
                image: Media {
                    url: "https://cdn.example/box.jpg".into(),
                    caption: Some("your box".into()),
                },
            };
            assert_eq!(
                sent(image).await,
                [(
                    "sendPhoto".to_owned(),
                    json!({"chat_id": 123456789, "photo": "https://cdn.example/box.jpg", "caption": "your box"})
                )]
            );
        }

        #[tokio::test]
        async fn an_id_too_long_for_callback_data_is_posted_as_numbered_text() {
            let message = ReplyMessage::Buttons {
                text: "Pick".into(),
                buttons: vec![Button {
                    id: "x".repeat(65),
                    title: "Track".into(),
                }],
            };
            assert_eq!(
                sent(message).await,
                [(
                    "sendMessage".to_owned(),
                    json!({"chat_id": 123456789, "text": "Pick\n\n1. Track"})
                )]
            );
        }

        #[tokio::test]
        async fn a_tap_is_answered_with_answer_callback_query() {
            let (base, server) = serve(vec![Answer::new(
                200,
                br#"{"ok":true,"result":true}"#.to_vec(),
            )])
            .await;
            telegram(&base)
                .answer_callback("4382bfdwdsb323b2d9")
                .await
                .expect("answered");
            let received = server.seen();
            assert_eq!(
                received[0].request_line,
                format!("POST /bot{TOKEN}/answerCallbackQuery HTTP/1.1")
            );
            assert_eq!(
                received[0].body,
                json!({"callback_query_id": "4382bfdwdsb323b2d9"})
            );
        }
    }
}
