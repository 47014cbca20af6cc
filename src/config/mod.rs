//! Every setting, read once from flags and the environment, checked once at start.
//!
//! [`Config`] is the raw input as clap reads it (`flags.rs`); [`Config::parse_settings`]
//! checks every value (a bad one stops the process with a message that names its
//! variable) and turns it into [`Settings`]: durations, secrets set or not, and
//! one [`ResponderSettings`] variant per responder. The rest of the crate takes
//! `Settings` or one of its groups, and nothing here depends on the rest of the
//! crate: the channels and responders import their settings from here.
//! [`Secret`] keeps secrets out of logs.

mod channels;
mod error;
mod flags;
mod parse;
mod responder;
mod secret;
mod settings;
#[cfg(test)]
mod tests;

pub use channels::{
    ChannelsOn, InstagramSettings, TelegramSettings, WhatsAppSettings, telegram_bot_id,
};
pub use error::ConfigError;
pub use flags::{Config, LogFormat, ResponderKind};
pub use responder::{
    AnthropicSettings, BotSettings, DEFAULT_SYSTEM_PROMPT, OpenAiSettings, ResponderSettings,
};
pub use secret::Secret;
pub use settings::{
    BatchSettings, ClaimSettings, DatabaseSettings, GenerationSettings, HandoffSettings,
    HttpSettings, ReconcileSettings, RedisSettings, SendSettings, Settings,
};
