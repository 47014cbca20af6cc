//! Telegram's Bot API as the Telegram channel calls it: `POST /bot<token>/<method>`
//! (the token is in the path): `sendMessage` (with an optional inline keyboard),
//! `sendPhoto` / `sendDocument` / `sendAudio` / `sendVideo` by URL, `sendChatAction`
//! and `answerCallbackQuery`. A sent message is numbered by request, far from the
//! tests' inbound message ids.

use super::{Answer, Api, Call};
use crate::config::Secret;
use serde_json::json;
use std::borrow::Cow;

/// The longest text `sendMessage` takes, in characters.
const MAX_TEXT: usize = 4096;

/// The methods that send a message, and the field each takes its content in.
const SENDS: [(&str, &str); 5] = [
    ("sendMessage", "text"),
    ("sendPhoto", "photo"),
    ("sendDocument", "document"),
    ("sendAudio", "audio"),
    ("sendVideo", "video"),
];

/// Whether the Bot API would refuse an inline keyboard: it is an array of rows of
/// buttons, each with a text and 1-64 bytes of `callback_data`.
fn invalid_keyboard(markup: &serde_json::Value) -> bool {
    let Some(rows) = markup["inline_keyboard"].as_array() else {
        return true;
    };
    !rows.iter().all(|row| {
        row.as_array().is_some_and(|buttons| {
            buttons.iter().all(|b| {
                b["text"].as_str().is_some_and(|t| !t.is_empty())
                    && b["callback_data"]
                        .as_str()
                        .is_some_and(|d| (1..=64).contains(&d.len()))
            })
        })
    })
}

/// The Bot API of one bot.
pub struct Telegram {
    token: Secret,
}

impl Telegram {
    /// Accepts requests with this bot token only (its digits before `:` are the bot's id).
    pub fn new(token: Secret) -> Self {
        Self { token }
    }

    /// The Bot API method a path calls with our token; `None` for another token.
    fn method<'a>(&self, path: &'a str) -> Option<&'a str> {
        path.strip_prefix("/bot")?
            .strip_prefix(self.token.expose())?
            .strip_prefix('/')
    }

    /// The bot's id: the token's digits before the colon.
    fn bot_id(&self) -> u64 {
        let id = self.token.expose().split(':').next();
        id.and_then(|id| id.parse().ok()).unwrap_or_default()
    }
}

impl Api for Telegram {
    /// Telegram numbers a chat's messages in one sequence: the fake numbers its own
    /// from here, far from the tests' inbound ids, so that ids never collide.
    fn numbers_after(&self) -> u64 {
        1_000_000
    }

    /// A request that sends a message (not typing, not a callback's answer).
    fn is_send(&self, call: &Call) -> bool {
        SENDS
            .iter()
            .any(|(method, _)| call.path.rsplit('/').next() == Some(method))
    }

    fn recipient<'a>(&self, call: &Call<'a>) -> Option<Cow<'a, str>> {
        let chat_id = &call.body["chat_id"];
        chat_id
            .as_str()
            .map(Cow::Borrowed)
            .or_else(|| chat_id.as_i64().map(|id| Cow::Owned(id.to_string())))
    }

    /// 401 for another token, 404 for an unknown method.
    fn answer(&self, call: &Call, scripted: Option<Answer>, n: u64) -> Answer {
        let error = |code: u16, description: &str| {
            let body = json!({"ok": false, "error_code": code, "description": description});
            Answer::json(code, &body)
        };
        let Some(method) = self.method(call.path) else {
            return error(401, "Unauthorized");
        };
        let chat_id = &call.body["chat_id"];
        if method != "answerCallbackQuery" && !chat_id.is_i64() && !chat_id.is_string() {
            return error(400, "Bad Request: chat_id is empty");
        }
        if let Some(markup) = call.body.get("reply_markup")
            && invalid_keyboard(markup)
        {
            return error(400, "Bad Request: can't parse inline keyboard button");
        }
        let sent = |extra: serde_json::Value| {
            let mut result = json!({
                "message_id": n,
                "from": {"id": self.bot_id(), "is_bot": true, "first_name": "Example Shop"},
                "chat": {"id": chat_id},
                "date": n,
            });
            if let (Some(result), Some(extra)) = (result.as_object_mut(), extra.as_object()) {
                result.extend(extra.clone());
            }
            Answer::json(200, &json!({"ok": true, "result": result}))
        };
        match method {
            "sendPhoto" | "sendDocument" | "sendAudio" | "sendVideo" => {
                if let Some(answer) = scripted {
                    return answer;
                }
                let field = SENDS
                    .iter()
                    .find(|(m, _)| *m == method)
                    .map(|(_, f)| *f)
                    .unwrap_or_default();
                match call.body[field].as_str() {
                    Some(url) if url.starts_with("http") => sent(json!({})),
                    _ => error(400, "Bad Request: there is no file in the request"),
                }
            }
            "answerCallbackQuery" => match call.body["callback_query_id"].as_str() {
                Some(id) if !id.is_empty() => Answer::new(200, r#"{"ok":true,"result":true}"#),
                _ => error(
                    400,
                    "Bad Request: query is too old and response timeout expired or query ID is invalid",
                ),
            },
            "sendMessage" => {
                if let Some(answer) = scripted {
                    return answer;
                }
                let Some(text) = call.body["text"].as_str().filter(|t| !t.is_empty()) else {
                    return error(400, "Bad Request: message text is empty");
                };
                if text.chars().count() > MAX_TEXT {
                    return error(400, "Bad Request: message is too long");
                }
                sent(json!({"text": text}))
            }
            "sendChatAction" => Answer::new(200, r#"{"ok":true,"result":true}"#),
            _ => error(404, "Not Found"),
        }
    }
}
