//! What every channel's rendering of a reply shares: the numbered text a menu
//! degrades to past a platform's limits, the readable text a sent message is
//! stored and remembered as, and the limit checks.
//!
//! A channel renders one [`ReplyMessage`] as the messages it will send, each
//! within the platform's limits ([`super::Channel::render`]). Rendering is a pure
//! function of the message, so a resumed batch renders its committed messages into
//! the same parts and goes on from the first part not recorded as sent.

use crate::responder::reply::{Button, Media, ReplyMessage, Row};

/// `text`, then one numbered line per option ("1. Title", or "1. Title: description"
/// for a list row): what a menu becomes on a platform that cannot show it. The
/// contact answers with the number or the title, which the bot reads as text.
pub fn numbered(text: &str, options: &[(String, Option<String>)]) -> String {
    let mut out = text.trim_end().to_owned();
    if !out.is_empty() && !options.is_empty() {
        out.push_str("\n\n");
    }
    for (n, (title, description)) in options.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        out.push_str(&format!("{}. {title}", n + 1));
        if let Some(description) = description.as_deref().filter(|d| !d.is_empty()) {
            out.push_str(&format!(": {description}"));
        }
    }
    out
}

/// The options of buttons, for [`numbered`].
pub fn button_options(buttons: &[Button]) -> Vec<(String, Option<String>)> {
    buttons.iter().map(|b| (b.title.clone(), None)).collect()
}

/// The options of list rows, for [`numbered`].
pub fn row_options(rows: &[Row]) -> Vec<(String, Option<String>)> {
    rows.iter()
        .map(|r| (r.title.clone(), r.description.clone()))
        .collect()
}

/// The menu of a message as numbered text, or `None` for a message without one.
pub fn as_numbered_text(message: &ReplyMessage) -> Option<String> {
    match message {
        ReplyMessage::Buttons { text, buttons } => Some(numbered(text, &button_options(buttons))),
        ReplyMessage::List { text, list } => Some(numbered(text, &row_options(&list.rows))),
        _ => None,
    }
}

/// The media of a message with its kind (`image`, `document`, `audio`, `video`).
pub fn media(message: &ReplyMessage) -> Option<(&'static str, &Media)> {
    match message {
        ReplyMessage::Image { image } => Some(("image", image)),
        ReplyMessage::Document { document } => Some(("document", document)),
        ReplyMessage::Audio { audio } => Some(("audio", audio)),
        ReplyMessage::Video { video } => Some(("video", video)),
        _ => None,
    }
}

/// The same media message without its caption.
pub fn without_caption(message: &ReplyMessage) -> ReplyMessage {
    let mut message = message.clone();
    match &mut message {
        ReplyMessage::Image { image: m }
        | ReplyMessage::Document { document: m }
        | ReplyMessage::Audio { audio: m }
        | ReplyMessage::Video { video: m } => m.caption = None,
        _ => {}
    }
    message
}

/// A media message as the platform takes it: with its caption when the caption
/// fits (`fits`), else the media alone followed by the caption as text (split by
/// `split`). A media kind without captions passes `fits` that refuses any.
pub fn media_with_caption(
    message: &ReplyMessage,
    fits: impl Fn(&str) -> bool,
    split: impl Fn(&str) -> Vec<String>,
) -> Vec<ReplyMessage> {
    let Some((_, media)) = self::media(message) else {
        return vec![message.clone()];
    };
    match media.caption.as_deref().filter(|c| !c.trim().is_empty()) {
        None => vec![without_caption(message)],
        Some(caption) if fits(caption) => vec![message.clone()],
        Some(caption) => std::iter::once(without_caption(message))
            .chain(split(caption).into_iter().map(text))
            .collect(),
    }
}

/// A plain text message.
pub fn text(text: String) -> ReplyMessage {
    ReplyMessage::Text { text }
}

/// Text parts as text messages.
pub fn texts(parts: Vec<String>) -> Vec<ReplyMessage> {
    parts.into_iter().map(text).collect()
}

/// How a sent message is stored and remembered in history: its text, the menu's
/// titles, or the media's kind with its caption (or URL).
pub fn describe(message: &ReplyMessage) -> String {
    let titles = |titles: Vec<&str>| titles.join(" | ");
    match message {
        ReplyMessage::Text { text } => text.clone(),
        ReplyMessage::Buttons { text, buttons } => format!(
            "{text}\n[buttons: {}]",
            titles(buttons.iter().map(|b| b.title.as_str()).collect())
        ),
        ReplyMessage::List { text, list } => format!(
            "{text}\n[list {}: {}]",
            list.button,
            titles(list.rows.iter().map(|r| r.title.as_str()).collect())
        ),
        other => {
            let (kind, media) = self::media(other).expect("the other kinds are media");
            let shown = media.caption.as_deref().unwrap_or(&media.url);
            format!("[{kind}] {shown}")
        }
    }
}

/// Characters in `s`.
pub fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Whether `s` is not blank and has at most `max` characters.
pub fn within(s: &str, max: usize) -> bool {
    !s.trim().is_empty() && chars(s) <= max
}

/// Whether the ids are unique, each not blank and at most `max_bytes` long.
pub fn ids_fit<'a>(ids: impl Iterator<Item = &'a str>, max_bytes: usize) -> bool {
    let mut seen = std::collections::HashSet::new();
    ids.into_iter()
        .all(|id| !id.trim().is_empty() && id.len() <= max_bytes && seen.insert(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::responder::reply::List;

    fn buttons(titles: &[&str]) -> ReplyMessage {
        ReplyMessage::Buttons {
            text: "Pick one".into(),
            buttons: titles
                .iter()
                .enumerate()
                .map(|(n, t)| Button {
                    id: format!("b{n}"),
                    title: (*t).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_menu_degrades_to_its_text_and_numbered_options() {
        assert_eq!(
            as_numbered_text(&buttons(&["Yes", "No"])).unwrap(),
            "Pick one\n\n1. Yes\n2. No"
        );
        let list = ReplyMessage::List {
            text: "Menu".into(),
            list: List {
                button: "Open".into(),
                rows: vec![
                    Row {
                        id: "a".into(),
                        title: "Track".into(),
                        description: Some("where is it".into()),
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
            as_numbered_text(&list).unwrap(),
            "Menu\n\n1. Track: where is it\n2. Return"
        );
    }

    #[test]
    fn a_caption_too_long_for_the_platform_follows_its_media_as_text() {
        let image = ReplyMessage::Image {
            image: Media {
                url: "https://x/i.png".into(),
                caption: Some("a long caption".into()),
            },
        };
        let split = |s: &str| vec![s.to_owned()];
        assert_eq!(
            media_with_caption(&image, |_| true, split),
            vec![image.clone()]
        );
        assert_eq!(
            media_with_caption(&image, |_| false, split),
            vec![without_caption(&image), text("a long caption".into())]
        );
    }

    #[test]
    fn a_sent_message_is_described_by_its_text_titles_or_media() {
        assert_eq!(
            describe(&buttons(&["Yes", "No"])),
            "Pick one\n[buttons: Yes | No]"
        );
        let video = ReplyMessage::Video {
            video: Media {
                url: "https://x/v.mp4".into(),
                caption: None,
            },
        };
        assert_eq!(describe(&video), "[video] https://x/v.mp4");
    }

    #[test]
    fn ids_must_be_unique_and_short() {
        assert!(ids_fit(["a", "b"].into_iter(), 4));
        assert!(!ids_fit(["a", "a"].into_iter(), 4));
        assert!(!ids_fit(["toolong"].into_iter(), 4));
        assert!(!ids_fit([" "].into_iter(), 4));
    }
}
