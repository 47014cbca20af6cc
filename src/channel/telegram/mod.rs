//! Telegram Bot API: one `Update` per webhook POST (`message`, `edited_message`, and
//! `callback_query`: a tap on an inline button), replies through `sendMessage` (text,
//! inline keyboards) and `sendPhoto`/`sendDocument`/`sendAudio`/`sendVideo`, the
//! typing indicator through `sendChatAction`.
//!
//! Telegram signs nothing: a webhook is authenticated by the `secret_token` given to
//! `setWebhook`, which Telegram sends back in `X-Telegram-Bot-Api-Secret-Token`. The
//! bot token is part of every API URL (`/bot<token>/sendMessage`), so no URL and no
//! HTTP client error text leaves this module without the token stripped.
//!
//! Our account is the bot id (the digits before the token's `:`); the contact is the
//! chat id, so a group is one conversation. Message ids are only unique within a chat,
//! hence external ids `{bot}:{chat}:{message_id}`.

mod callback;
mod parse;
mod rich;
mod send;

use super::whatsapp::split_text;
use super::{ApiBase, Channel, HandshakeError, ParseError, ParsedWebhook, SendError, VerifyError};
use crate::config::Secret;
pub use crate::config::{TelegramSettings, telegram_bot_id as bot_id};
use crate::message::{ChannelKind, Conversation};
use crate::responder::reply::ReplyMessage;
use async_trait::async_trait;
use std::time::Duration;

/// How often "typing…" is renewed: Telegram clears it after 5 s (or at our
/// message).
pub const TYPING_RENEWAL: Duration = Duration::from_secs(4);

/// Longest text `sendMessage` accepts, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;

/// The header Telegram echoes the webhook's `secret_token` in.
pub const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

/// The account of every conversation when no bot token is configured.
pub const DRY_RUN_ACCOUNT: &str = "dry-run";

/// The Telegram Bot API channel.
#[derive(Debug, Clone)]
pub struct Telegram {
    settings: TelegramSettings,
    base: ApiBase,
    http: reqwest::Client,
    /// Our account in every conversation: the bot id, or [`DRY_RUN_ACCOUNT`].
    bot: String,
}

impl Telegram {
    /// Builds the channel; `http` should carry the send timeout.
    pub fn new(settings: TelegramSettings, http: reqwest::Client) -> Self {
        let bot = match &settings.bot_token {
            None => DRY_RUN_ACCOUNT.to_owned(),
            // The configuration refuses such a token; never fall back to the token
            // itself, which would put the secret in keys, rows and logs.
            Some(token) => bot_id(token.expose()).unwrap_or("invalid-token").to_owned(),
        };
        let base = ApiBase::parse(&settings.api_base, "api_base");
        Self {
            settings,
            base,
            http,
            bot,
        }
    }

    /// True when no bot token is configured: replies are logged, not sent.
    pub fn dry_run(&self) -> bool {
        self.settings.bot_token.is_none()
    }

    /// Our account: the bot id, or [`DRY_RUN_ACCOUNT`].
    pub fn bot(&self) -> &str {
        &self.bot
    }
}

/// Checks [`SECRET_HEADER`] against the configured secret token, in constant time.
/// Without a configured secret every request passes (the caller warns once at start).
fn verify_secret_token(
    secret_token: Option<&Secret>,
    headers: &http::HeaderMap,
) -> Result<(), VerifyError> {
    let Some(secret) = secret_token else {
        return Ok(());
    };
    let given = headers
        .get(SECRET_HEADER)
        .ok_or(VerifyError::Missing(SECRET_HEADER))?;
    if crate::constant_time::eq(secret.expose().as_bytes(), given.as_bytes()) {
        Ok(())
    } else {
        Err(VerifyError::Invalid(SECRET_HEADER))
    }
}

#[async_trait]
impl Channel for Telegram {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Telegram
    }

    /// Telegram has no GET handshake: `setWebhook` is a call we make, not a challenge.
    fn handshake(&self, _query: &str) -> Result<String, HandshakeError> {
        Err(HandshakeError::Refused)
    }

    fn verify(&self, headers: &http::HeaderMap, _body: &[u8]) -> Result<(), VerifyError> {
        verify_secret_token(self.settings.secret_token.as_ref(), headers)
    }

    fn parse(&self, body: &[u8]) -> Result<ParsedWebhook, ParseError> {
        parse::parse_update(body, &self.bot)
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

    /// Telegram has no read receipts: only "typing…", when enabled.
    async fn mark_read_typing(
        &self,
        to: &Conversation,
        _message_id: &str,
    ) -> Result<(), SendError> {
        self.typing(to).await
    }

    fn typing_renewal(&self) -> Duration {
        TYPING_RENEWAL
    }

    async fn answer_callback(&self, callback_id: &str) -> Result<(), SendError> {
        self.answer_callback_query(callback_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::test_server::{client, json_fixture};
    use http::{HeaderMap, HeaderValue};

    fn secret() -> Secret {
        let signatures = json_fixture("signatures.json");
        Secret::new(signatures["telegram_secret_token"].as_str().expect("token"))
    }

    fn with_header(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let name = http::HeaderName::from_bytes(SECRET_HEADER.as_bytes()).expect("name");
        headers.insert(name, HeaderValue::from_str(value).expect("value"));
        headers
    }

    fn telegram(token: Option<&str>, secret_token: Option<Secret>) -> Telegram {
        Telegram::new(
            TelegramSettings {
                bot_token: token.map(Secret::new),
                secret_token,
                api_base: "https://api.telegram.org".into(),
                typing_indicator: true,
            },
            client(),
        )
    }

    #[test]
    fn the_fixtures_secret_token_passes() {
        assert_eq!(secret().expose(), "fixture_secret_token-123");
        let channel = telegram(None, Some(secret()));
        assert!(
            channel
                .verify(&with_header("fixture_secret_token-123"), b"{}")
                .is_ok()
        );
    }

    #[test]
    fn a_missing_secret_token_header_is_missing() {
        let channel = telegram(None, Some(secret()));
        assert!(matches!(
            channel.verify(&HeaderMap::new(), b"{}"),
            Err(VerifyError::Missing(SECRET_HEADER))
        ));
    }

    #[test]
    fn a_wrong_secret_token_is_invalid() {
        let channel = telegram(None, Some(secret()));
        for wrong in [
            "fixture_secret_token-124",
            "",
            "fixture_secret_token-123 ",
            "x",
        ] {
            assert!(
                matches!(
                    channel.verify(&with_header(wrong), b"{}"),
                    Err(VerifyError::Invalid(SECRET_HEADER))
                ),
                "{wrong:?}"
            );
        }
    }

    #[test]
    fn without_a_secret_token_any_request_passes() {
        let channel = telegram(None, None);
        assert!(channel.verify(&HeaderMap::new(), b"{}").is_ok());
        assert!(channel.verify(&with_header("anything"), b"{}").is_ok());
    }

    #[test]
    fn there_is_no_get_handshake() {
        let channel = telegram(None, Some(secret()));
        assert!(matches!(
            channel.handshake("hub.mode=subscribe&hub.challenge=1&hub.verify_token=x"),
            Err(HandshakeError::Refused)
        ));
    }

    #[test]
    fn the_account_is_the_bot_id_or_dry_run() {
        let channel = telegram(Some("7000000001:AAFakeToken_abc-XYZ"), None);
        assert_eq!(channel.bot(), "7000000001");
        assert!(!channel.dry_run());
        let channel = telegram(None, None);
        assert_eq!(channel.bot(), DRY_RUN_ACCOUNT);
        assert!(channel.dry_run());
        // A malformed token never becomes the account.
        let channel = telegram(Some("not-a-token"), None);
        assert_eq!(channel.bot(), "invalid-token");
    }

    #[test]
    fn bot_id_needs_digits_a_colon_and_a_rest() {
        assert_eq!(bot_id("7000000001:AAF"), Some("7000000001"));
        assert_eq!(bot_id("7000000001:"), None);
        assert_eq!(bot_id(":AAF"), None);
        assert_eq!(bot_id("abc:AAF"), None);
        assert_eq!(bot_id("7000000001"), None);
    }

    #[test]
    fn replies_split_at_4096_chars() {
        let channel = telegram(None, None);
        let exact = "a".repeat(MAX_TEXT_CHARS);
        assert_eq!(channel.split(&exact), vec![exact.clone()]);
        let long = "word ".repeat(1000);
        let parts = channel.split(long.trim_end());
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.chars().count() <= MAX_TEXT_CHARS));
        let emoji = "🚚".repeat(5000);
        let parts = channel.split(&emoji);
        assert_eq!(parts[0].chars().count(), MAX_TEXT_CHARS);
        assert_eq!(parts[1].chars().count(), 5000 - MAX_TEXT_CHARS);
    }
}
