//! The responder `RESPONDER` names, with the settings of that responder only: the
//! LLM settings are checked here, once, and their defaults applied here.

use super::error::{positive, seconds};
use super::{Config, ConfigError, ResponderKind, Secret};
use std::time::Duration;

/// The system prompt unless `LLM_SYSTEM_PROMPT` says otherwise.
pub const DEFAULT_SYSTEM_PROMPT: &str = "\
You are a friendly customer support assistant answering people in a chat app \
(WhatsApp, Instagram or Telegram). People often send several short messages in a row: \
the last user turn holds every message they sent since your last reply, one per line. \
Answer all of them together in ONE reply: address every question and request, do not \
quote their messages back, and do not reply to each line separately. Write in the \
language they write in. Keep it short and plain, like a chat message: a few sentences, \
no headings, no tables. Lines such as \"[image] caption\" or \"[location] ...\" describe \
attachments and events you cannot open; answer what they say. If you do not know \
something (an order's status, a policy), say so and that a person will follow up; \
never invent facts.";

/// Who writes the replies, and with what.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponderSettings {
    /// The built-in acknowledgement.
    Builtin {
        /// Simulated generation time (demos and tests).
        delay: Duration,
    },
    /// An OpenAI-compatible Chat Completions API.
    OpenAi(OpenAiSettings),
    /// Anthropic's Messages API.
    Anthropic(AnthropicSettings),
    /// A team's own bot (RESPONDER=http).
    Http(BotSettings),
}

impl ResponderSettings {
    /// The `RESPONDER` these settings are for.
    pub fn kind(&self) -> ResponderKind {
        match self {
            ResponderSettings::Builtin { .. } => ResponderKind::Builtin,
            ResponderSettings::OpenAi(_) => ResponderKind::OpenAi,
            ResponderSettings::Anthropic(_) => ResponderKind::Anthropic,
            ResponderSettings::Http(_) => ResponderKind::Http,
        }
    }
}

/// Where and what to ask an OpenAI-compatible API.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiSettings {
    /// API base, e.g. `https://api.openai.com/v1` or `http://localhost:11434/v1`.
    pub base_url: String,
    /// Bearer token; `None` sends no `Authorization` header.
    pub api_key: Option<Secret>,
    /// Model name.
    pub model: String,
    /// The system message.
    pub system_prompt: String,
    /// Longest reply, tokens.
    pub max_tokens: u32,
    /// Timeout of one request.
    pub timeout: Duration,
}

/// Where and what to ask Anthropic's Messages API.
#[derive(Debug, Clone, PartialEq)]
pub struct AnthropicSettings {
    /// API base, `https://api.anthropic.com` (without `/v1`).
    pub base_url: String,
    /// The `x-api-key`.
    pub api_key: Secret,
    /// Model name.
    pub model: String,
    /// The system prompt.
    pub system_prompt: String,
    /// Longest reply, tokens.
    pub max_tokens: u32,
    /// Timeout of one request.
    pub timeout: Duration,
}

/// Where the team's bot is, and the key its requests are signed with.
#[derive(Debug, Clone, PartialEq)]
pub struct BotSettings {
    /// BOT_URL, http or https.
    pub url: String,
    /// BOT_SECRET: the HMAC key of `X-Lull-Signature-256`.
    pub secret: Secret,
    /// Timeout of one request (BOT_TIMEOUT_SECONDS).
    pub timeout: Duration,
}

/// The bot's settings of a normalised [`Config`] with RESPONDER=http.
fn bot_settings(c: &Config) -> Result<BotSettings, ConfigError> {
    let timeout = seconds("BOT_TIMEOUT_SECONDS", c.bot_timeout_seconds)?;
    let missing = |var: &'static str| ConfigError {
        var,
        reason: "must be set when RESPONDER is http".into(),
    };
    let url = c.bot_url.clone().ok_or_else(|| missing("BOT_URL"))?;
    let parsed = url::Url::parse(&url).map_err(|e| ConfigError {
        var: "BOT_URL",
        reason: format!("not a URL: {e}"),
    })?;
    if !["http", "https"].contains(&parsed.scheme()) {
        return Err(ConfigError {
            var: "BOT_URL",
            reason: "scheme must be http or https".into(),
        });
    }
    Ok(BotSettings {
        url,
        secret: c.bot_secret.clone().ok_or_else(|| missing("BOT_SECRET"))?,
        timeout,
    })
}

/// The LLM settings of a normalised [`Config`] (blank values are `None`), checked
/// even for the built-in responder where they have a default (so a typo in
/// LLM_BASE_URL shows before an LLM is switched on), and its responder's settings.
pub(super) fn responder_settings(c: &Config) -> Result<ResponderSettings, ConfigError> {
    let timeout = seconds("LLM_TIMEOUT_SECONDS", c.llm_timeout_seconds)?;
    positive("LLM_MAX_TOKENS", c.llm_max_tokens.into())?;
    positive("LLM_HISTORY_CHARS", c.llm_history_chars.into())?;
    let base_url = c.llm_base_url.clone().or_else(|| match c.responder {
        ResponderKind::OpenAi => Some("https://api.openai.com/v1".into()),
        ResponderKind::Anthropic => Some("https://api.anthropic.com".into()),
        ResponderKind::Builtin | ResponderKind::Http => None,
    });
    if let Some(base) = &base_url {
        let parsed = url::Url::parse(base).map_err(|e| ConfigError {
            var: "LLM_BASE_URL",
            reason: format!("not a URL: {e}"),
        })?;
        if !["http", "https"].contains(&parsed.scheme()) {
            return Err(ConfigError {
                var: "LLM_BASE_URL",
                reason: "scheme must be http or https".into(),
            });
        }
    }
    let missing = |var: &'static str| ConfigError {
        var,
        reason: format!("must be set when RESPONDER is {}", c.responder.as_str()),
    };
    let base_url = base_url.unwrap_or_default();
    let system_prompt = c
        .llm_system_prompt
        .clone()
        .unwrap_or_else(|| DEFAULT_SYSTEM_PROMPT.to_owned());
    Ok(match c.responder {
        ResponderKind::Builtin => ResponderSettings::Builtin {
            delay: Duration::from_millis(c.responder_delay_ms),
        },
        ResponderKind::Http => ResponderSettings::Http(bot_settings(c)?),
        ResponderKind::OpenAi => ResponderSettings::OpenAi(OpenAiSettings {
            base_url,
            api_key: c.llm_api_key.clone(),
            model: c.llm_model.clone().ok_or_else(|| missing("LLM_MODEL"))?,
            system_prompt,
            max_tokens: c.llm_max_tokens,
            timeout,
        }),
        ResponderKind::Anthropic => {
            // With both unset, LLM_MODEL is the one reported.
            let model = c.llm_model.clone().ok_or_else(|| missing("LLM_MODEL"))?;
            ResponderSettings::Anthropic(AnthropicSettings {
                base_url,
                api_key: c
                    .llm_api_key
                    .clone()
                    .ok_or_else(|| missing("LLM_API_KEY"))?,
                model,
                system_prompt,
                max_tokens: c.llm_max_tokens,
                timeout,
            })
        }
    })
}
