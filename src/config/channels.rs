//! The settings of each platform channel, and the shape of a Telegram bot token
//! (checked here at start, read again by the channel for its account).

use super::Secret;

/// Everything the WhatsApp channel needs from the configuration.
#[derive(Debug, Clone)]
pub struct WhatsAppSettings {
    /// Meta app secret; webhooks must then carry a valid `X-Hub-Signature-256`.
    pub app_secret: Option<Secret>,
    /// Token Meta echoes in the GET handshake; without one the handshake is refused.
    pub verify_token: Option<Secret>,
    /// Cloud API access token; without it replies are only logged (dry run).
    pub token: Option<Secret>,
    /// Graph API base URL, e.g. `https://graph.facebook.com/v23.0`.
    pub graph_api_base: String,
    /// Show the typing indicator along with the read receipt.
    pub typing_indicator: bool,
}

/// Everything the Telegram channel needs from the configuration.
#[derive(Debug, Clone)]
pub struct TelegramSettings {
    /// Bot token from @BotFather (`<bot id>:<secret>`); without it replies are only
    /// logged (dry run).
    pub bot_token: Option<Secret>,
    /// The `secret_token` given to `setWebhook`; webhooks must then carry it.
    pub secret_token: Option<Secret>,
    /// Bot API base URL, e.g. `https://api.telegram.org`.
    pub api_base: String,
    /// Show "typing…" when a batch is claimed.
    pub typing_indicator: bool,
}

/// Everything the Instagram channel needs from the configuration.
#[derive(Debug, Clone)]
pub struct InstagramSettings {
    /// Meta app secret; webhooks must then carry a valid `X-Hub-Signature-256`.
    pub app_secret: Option<Secret>,
    /// Token Meta echoes in the GET handshake; without one the handshake is refused.
    pub verify_token: Option<Secret>,
    /// Instagram user access token; without it replies are only logged (dry run).
    pub token: Option<Secret>,
    /// API base URL, e.g. `https://graph.instagram.com/v23.0`.
    pub api_base: String,
    /// Show "typing…" after marking the message seen.
    pub typing_indicator: bool,
}

/// Which channels' webhooks are served: those configured (a webhook secret or a
/// send token), or all three in the demo, when none is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelsOn {
    /// WhatsApp's webhooks are served.
    pub whatsapp: bool,
    /// Telegram's webhooks are served.
    pub telegram: bool,
    /// Instagram's webhooks are served.
    pub instagram: bool,
    /// No channel is configured: all three are on, unsigned, in dry run.
    pub demo: bool,
}

/// The bot id of a Telegram bot token (`123456789:AAH...` → `123456789`), or `None`
/// when the token is not digits, a colon and a non-empty rest.
pub fn telegram_bot_id(token: &str) -> Option<&str> {
    let (id, rest) = token.split_once(':')?;
    let digits = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
    (digits && !rest.is_empty()).then_some(id)
}

/// Telegram's own rule for `setWebhook`'s `secret_token`: 1-256 characters of
/// A-Z, a-z, 0-9, `_` and `-`.
pub(super) fn telegram_accepts_secret_token(value: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    value.len() <= 256 && value.chars().all(allowed)
}
