//! Instagram messaging (Instagram API with Instagram Login): webhooks in
//! (`object: instagram`, `entry[].messaging[]`), replies (text, quick replies,
//! attachments by URL) and sender actions out
//! through `POST {api_base}/{ig_account_id}/messages`.
//!
//! Instagram is a Meta platform: the body signature, the GET handshake and the error
//! envelope are WhatsApp's ([`super::meta`]). Our account is the recipient of a
//! message (our Instagram professional account id), the contact its sender (an IGSID).

mod parse;
mod rich;
mod send;

use super::{
    ApiBase, Channel, HandshakeError, ParseError, ParsedWebhook, SendError, VerifyError, meta,
};
pub use crate::config::InstagramSettings;
use crate::message::{ChannelKind, Conversation};
use crate::responder::reply::ReplyMessage;
use async_trait::async_trait;
use std::time::Duration;

/// How often the typing indicator is renewed: Instagram shows `typing_on` for
/// about 20 s (or until our reply arrives).
pub const TYPING_RENEWAL: Duration = Duration::from_secs(15);

/// Longest text message the Send API accepts, in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 1000;

/// The Instagram messaging channel.
#[derive(Debug, Clone)]
pub struct Instagram {
    settings: InstagramSettings,
    base: ApiBase,
    http: reqwest::Client,
}

impl Instagram {
    /// Builds the channel; `http` should carry the send timeout.
    pub fn new(settings: InstagramSettings, http: reqwest::Client) -> Self {
        let base = ApiBase::parse(&settings.api_base, "api_base");
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
impl Channel for Instagram {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Instagram
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
        split_utf8(text, MAX_TEXT_BYTES)
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

    async fn mark_read_typing(
        &self,
        to: &Conversation,
        _message_id: &str,
    ) -> Result<(), SendError> {
        self.mark_seen_typing(to).await
    }

    /// Seen once is enough: only `typing_on` again.
    async fn renew_typing(&self, to: &Conversation, _message_id: &str) -> Result<(), SendError> {
        self.typing_on(to).await
    }

    fn typing_renewal(&self) -> Duration {
        TYPING_RENEWAL
    }
}

/// Splits `text` into parts of at most `max_bytes` bytes of UTF-8, never inside a
/// character.
///
/// The rules are [`super::whatsapp::split_text`]'s with bytes for chars: a cut
/// prefers the last newline, then the last space, before the limit, as long as the
/// part stays at least half full; else it cuts at the last character boundary within
/// the limit. The separator cut at and whitespace ending a part are dropped; text that
/// fits is returned unchanged; no part is whitespace only.
pub fn split_utf8(text: &str, max_bytes: usize) -> Vec<String> {
    // A character is at most 4 bytes: any smaller limit could not make progress.
    let max_bytes = max_bytes.max(4);
    let mut parts = Vec::new();
    let mut rest = text;
    loop {
        if rest.len() <= max_bytes {
            if !rest.trim().is_empty() {
                parts.push(rest.to_owned());
            }
            break;
        }
        let mut cut = max_bytes;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let window = &rest[..cut];
        let at = |sep: char| window.rfind(sep).filter(|&i| i >= max_bytes / 2 && i > 0);
        let (part, next) = match at('\n').or_else(|| at(' ')) {
            // Both separators are one byte long.
            Some(i) => (&window[..i], &rest[i + 1..]),
            None => (window, &rest[cut..]),
        };
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
    use crate::channel::test_server::{client, fixture, json_fixture};
    use crate::config::Secret;
    use http::{HeaderMap, HeaderValue};

    fn channel() -> Instagram {
        Instagram::new(
            InstagramSettings {
                app_secret: Some(Secret::new("fixture-app-secret")),
                verify_token: Some(Secret::new("fixture-verify-token")),
                token: None,
                api_base: "https://graph.instagram.com/v23.0".into(),
                typing_indicator: true,
            },
            client(),
        )
    }

    fn signed(signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-hub-signature-256",
            HeaderValue::from_str(signature).expect("header value"),
        );
        headers
    }

    #[test]
    fn every_instagram_fixture_verifies_and_parses() {
        let signatures = json_fixture("signatures.json");
        let files = signatures["files"].as_object().expect("files");
        let instagram: Vec<_> = files
            .iter()
            .filter(|(file, _)| file.starts_with("instagram/"))
            .collect();
        assert_eq!(instagram.len(), 10);
        for (file, signature) in instagram {
            let body = fixture(file);
            let headers = signed(signature.as_str().expect("signature"));
            assert!(channel().verify(&headers, &body).is_ok(), "{file}");
            assert!(channel().parse(&body).is_ok(), "{file}");
        }
    }

    #[test]
    fn a_tampered_or_unsigned_body_is_refused() {
        let signatures = json_fixture("signatures.json");
        let signature = signatures["files"]["instagram/text.json"]
            .as_str()
            .expect("signature");
        let mut body = fixture("instagram/text.json");
        let at = body.iter().position(|&b| b == b'H').expect("an H");
        body[at] = b'h';
        assert!(matches!(
            channel().verify(&signed(signature), &body),
            Err(VerifyError::Invalid(meta::SIGNATURE_HEADER))
        ));
        assert!(matches!(
            channel().verify(&HeaderMap::new(), &fixture("instagram/text.json")),
            Err(VerifyError::Missing(meta::SIGNATURE_HEADER))
        ));
    }

    #[test]
    fn the_handshake_is_meta_s() {
        let ok = "hub.mode=subscribe&hub.verify_token=fixture-verify-token&hub.challenge=42";
        assert_eq!(channel().handshake(ok).expect("accepted"), "42");
        let wrong = "hub.mode=subscribe&hub.verify_token=nope&hub.challenge=42";
        assert!(matches!(
            channel().handshake(wrong),
            Err(HandshakeError::Refused)
        ));
    }

    #[test]
    fn the_channel_splits_at_1000_bytes() {
        let parts = channel().split(&"é".repeat(700));
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.len() <= MAX_TEXT_BYTES));
    }

    fn assert_parts_fit(parts: &[String]) {
        for part in parts {
            assert!(part.len() <= MAX_TEXT_BYTES, "{} bytes", part.len());
            assert!(!part.trim().is_empty());
        }
    }

    #[test]
    fn text_within_1000_bytes_is_one_part() {
        assert_eq!(
            split_utf8("hello", MAX_TEXT_BYTES),
            vec!["hello".to_owned()]
        );
        let exact = "a".repeat(MAX_TEXT_BYTES);
        assert_eq!(split_utf8(&exact, MAX_TEXT_BYTES), vec![exact.clone()]);
    }

    #[test]
    fn the_limit_is_bytes_not_chars() {
        // 600 two-byte chars: 600 chars would pass a char limit, 1200 bytes do not.
        let ene = "ñ".repeat(600);
        let parts = split_utf8(&ene, MAX_TEXT_BYTES);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].chars().count(), 500);
        assert_eq!(parts.concat(), ene);
        assert_parts_fit(&parts);
    }

    #[test]
    fn a_cut_never_falls_inside_a_character() {
        // Three-byte chars: 1000 is not a boundary, 999 is.
        let euros = "€".repeat(400);
        let parts = split_utf8(&euros, MAX_TEXT_BYTES);
        assert_eq!(parts[0].len(), 999);
        assert_eq!(parts.concat(), euros);
        // Four-byte emoji: 250 fit exactly.
        let trucks = "🚚".repeat(300);
        let parts = split_utf8(&trucks, MAX_TEXT_BYTES);
        assert_eq!(parts[0].chars().count(), 250);
        assert_eq!(parts[1].chars().count(), 50);
        assert_parts_fit(&parts);
    }

    #[test]
    fn long_text_splits_at_the_last_space_before_the_limit() {
        let words = "palabra ".repeat(300); // 2400 bytes
        let parts = split_utf8(words.trim_end(), MAX_TEXT_BYTES);
        assert_eq!(parts.len(), 3);
        assert_parts_fit(&parts);
        assert!(parts.iter().all(|p| p.ends_with("palabra")));
        assert_eq!(parts.join(" "), words.trim_end());
    }

    #[test]
    fn a_newline_is_preferred_over_a_later_space() {
        let text = format!(
            "{}\n{} {}",
            "a".repeat(700),
            "b".repeat(200),
            "c".repeat(300)
        );
        let parts = split_utf8(&text, MAX_TEXT_BYTES);
        assert_eq!(parts[0], "a".repeat(700));
        assert_eq!(parts[1], format!("{} {}", "b".repeat(200), "c".repeat(300)));
    }

    #[test]
    fn multibyte_words_split_at_spaces_within_the_byte_limit() {
        let words = "¿envío? ".repeat(200); // 10 bytes a word
        let parts = split_utf8(words.trim_end(), MAX_TEXT_BYTES);
        assert_parts_fit(&parts);
        assert!(parts.iter().all(|p| p.ends_with("¿envío?")), "{parts:?}");
        assert_eq!(parts.join(" "), words.trim_end());
    }

    #[test]
    fn no_part_is_ever_empty() {
        assert!(split_utf8("", MAX_TEXT_BYTES).is_empty());
        assert!(split_utf8("  \n ", MAX_TEXT_BYTES).is_empty());
        let text = format!("{}{}", "x".repeat(10), " ".repeat(20));
        let parts = split_utf8(&text, 8);
        assert!(parts.iter().all(|p| !p.trim().is_empty()), "{parts:?}");
        assert_eq!(parts.concat(), "x".repeat(10));
    }
}
