//! Telegram's Bot API as the Telegram channel calls it: `POST /bot<token>/<method>`
//! (the token is in the path), `sendMessage` and `sendChatAction`. A sent message
//! is numbered by request, far from the tests' inbound message ids.

use super::{Answer, Api, Call};
use crate::config::Secret;
use serde_json::json;
use std::borrow::Cow;

/// The longest text `sendMessage` takes, in characters.
const MAX_TEXT: usize = 4096;

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

    fn is_send(&self, call: &Call) -> bool {
        call.path.ends_with("/sendMessage")
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
        if !chat_id.is_i64() && !chat_id.is_string() {
            return error(400, "Bad Request: chat_id is empty");
        }
        match method {
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
                let result = json!({
                    "message_id": n,
                    "from": {"id": self.bot_id(), "is_bot": true, "first_name": "Example Shop"},
                    "chat": {"id": chat_id},
                    "date": n,
                    "text": text,
                });
                Answer::json(200, &json!({"ok": true, "result": result}))
            }
            "sendChatAction" => Answer::new(200, r#"{"ok":true,"result":true}"#),
            _ => error(404, "Not Found"),
        }
    }
}
