//! WhatsApp Cloud API: webhooks in (`object: whatsapp_business_account`), replies
//! (text, reply buttons, lists, media by link) and read receipts out through the
//! Graph API.

mod parse;
mod rich;
mod send;

use super::{
    ApiBase, Channel, HandshakeError, ParseError, ParsedWebhook, SendError, VerifyError, meta,
};
pub use crate::config::WhatsAppSettings;
use crate::message::{ChannelKind, Conversation};
use crate::responder::reply::ReplyMessage;
use async_trait::async_trait;
use std::time::Duration;

/// How often the typing indicator is renewed: WhatsApp dismisses it after 25 s
/// (or when our reply arrives).
pub const TYPING_RENEWAL: Duration = Duration::from_secs(20);

/// Longest text message the Cloud API accepts, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;

/// The WhatsApp Cloud API channel.
#[derive(Debug, Clone)]
pub struct WhatsApp {
    settings: WhatsAppSettings,
    base: ApiBase,
    http: reqwest::Client,
}

impl WhatsApp {
    /// Builds the channel; `http` should carry the send timeout.
    pub fn new(settings: WhatsAppSettings, http: reqwest::Client) -> Self {
        let base = ApiBase::parse(&settings.graph_api_base, "graph_api_base");
        Self {
            settings,
            base,
            http,
        }
    }

    /// True when no access token is configured: replies are logged, not sent.
    pub fn dry_run(&self) -> bool {
        self.settings.token.is_none()
    }
}

#[async_trait]
impl Channel for WhatsApp {
    fn kind(&self) -> ChannelKind {
        ChannelKind::WhatsApp
    }

    fn handshake(&self, query: &str) -> Result<String, HandshakeError> {
        meta::handshake(self.settings.verify_token.as_ref(), query)
    }

    fn verify(&self, headers: &http::HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
        meta::verify_signature(self.settings.app_secret.as_ref(), headers, body)
    }

    fn parse(&self, body: &[u8]) -> Result<ParsedWebhook, ParseError> {
        parse::parse_webhook(body)
    }

    fn split(&self, text: &str) -> Vec<String> {
        split_text(text, MAX_TEXT_CHARS)
    }

    async fn send_part(&self, to: &Conversation, text: &str) -> Result<String, SendError> {
        self.send_text(to, text).await
    }

    fn render(&self, message: &ReplyMessage) -> Vec<ReplyMessage> {
        rich::render(message)
    }

    async fn send_message(
        &self,
        to: &Conversation,
        message: &ReplyMessage,
    ) -> Result<String, SendError> {
        self.send_reply(to, message).await
    }

    async fn mark_read_typing(&self, to: &Conversation, message_id: &str) -> Result<(), SendError> {
        self.mark_read(to, message_id).await
    }

    fn typing_renewal(&self) -> Duration {
        TYPING_RENEWAL
    }
}

/// Splits `text` into parts of at most `max_chars` characters (chars, not bytes).
///
/// A cut prefers the last newline, then the last space, before the limit, as long as
/// that keeps the part at least half full (so one early newline does not produce a
/// tiny part); else it cuts at the limit. The newline or space cut at, and whitespace
/// ending a cut part, are dropped; text that fits is returned unchanged. Whitespace-only
/// parts are never produced, so empty text yields no part at all.
pub fn split_text(text: &str, max_chars: usize) -> Vec<String> {
    let max_chars = max_chars.max(1);
    let mut parts = Vec::new();
    let mut rest = text;
    loop {
        // Byte index of the first char past the limit; None when the rest fits.
        let Some((cut, _)) = rest.char_indices().nth(max_chars) else {
            if !rest.trim().is_empty() {
                parts.push(rest.to_owned());
            }
            break;
        };
        let window = &rest[..cut];
        let half = window
            .char_indices()
            .nth(max_chars / 2)
            .map_or(0, |(i, _)| i);
        let at = |sep: char| window.rfind(sep).filter(|&i| i >= half && i > 0);
        let (part, next) = match at('\n').or_else(|| at(' ')) {
            // Both separators are one byte long.
            Some(i) => (&window[..i], &rest[i + 1..]),
            None => (window, &rest[cut..]),
        };
        // Whitespace at a cut means nothing in a chat bubble.
        let part = part.trim_end();
        if !part.is_empty() {
            parts.push(part.to_owned());
        }
        rest = next;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_within_the_limit_is_one_part() {
        assert_eq!(
            split_text("hello there", 4096),
            vec!["hello there".to_owned()]
        );
        let exact = "a".repeat(4096);
        assert_eq!(split_text(&exact, 4096), vec![exact.clone()]);
    }

    #[test]
    fn long_text_splits_at_the_last_space_before_4096_chars() {
        let words = "word ".repeat(1000); // 5000 chars
        let parts = split_text(words.trim_end(), MAX_TEXT_CHARS);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.chars().count() <= MAX_TEXT_CHARS));
        assert!(parts[0].ends_with("word") && !parts[0].ends_with(' '));
        assert_eq!(parts[0].chars().count(), 4094);
        assert_eq!(format!("{} {}", parts[0], parts[1]), words.trim_end());
    }

    #[test]
    fn multibyte_characters_count_as_one_char_each() {
        // 4096 two-byte chars fit in one part though they are 8192 bytes.
        let ene = "ñ".repeat(4096);
        assert_eq!(split_text(&ene, MAX_TEXT_CHARS), vec![ene.clone()]);
        // 5000 four-byte emoji with no space are cut at exactly 4096 chars.
        let trucks = "🚚".repeat(5000);
        let parts = split_text(&trucks, MAX_TEXT_CHARS);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].chars().count(), 4096);
        assert_eq!(parts[1].chars().count(), 904);
    }

    #[test]
    fn a_newline_is_preferred_over_a_later_space() {
        let text = format!(
            "{}\n{} {}",
            "a".repeat(3000),
            "b".repeat(500),
            "c".repeat(1000)
        );
        let parts = split_text(&text, MAX_TEXT_CHARS);
        assert_eq!(parts[0], "a".repeat(3000));
        assert_eq!(
            parts[1],
            format!("{} {}", "b".repeat(500), "c".repeat(1000))
        );
    }

    #[test]
    fn an_early_newline_does_not_make_a_tiny_part() {
        let text = format!("hi\n{} {}", "a".repeat(4090), "b".repeat(10));
        let parts = split_text(&text, MAX_TEXT_CHARS);
        assert_eq!(parts[0], format!("hi\n{}", "a".repeat(4090)));
        assert_eq!(parts[1], "b".repeat(10));
    }

    #[test]
    fn no_part_is_ever_empty() {
        assert!(split_text("", MAX_TEXT_CHARS).is_empty());
        assert!(split_text("   \n ", MAX_TEXT_CHARS).is_empty());
        let text = format!("{}{}", "x".repeat(10), " ".repeat(20));
        let parts = split_text(&text, 8);
        assert!(parts.iter().all(|p| !p.trim().is_empty()), "{parts:?}");
        assert_eq!(parts.concat(), "x".repeat(10));
    }
}
