//! Local stand-ins for the Telegram Bot API and the Instagram messaging API: each
//! records every request and answers as the real one would (a sent message, or a
//! scripted error), checking the token the way the real one does: Telegram's in the
//! URL path, Instagram's as a bearer token.

pub use crate::fake_server::{Answer, FakeApi, Seen};
use serde_json::json;

/// The bot token the fake Telegram accepts.
pub const TELEGRAM_TOKEN: &str = "7000000001:AAFakeTelegramTokenForTests_x-Y";
/// The bot id of [`TELEGRAM_TOKEN`]: our account in Telegram conversations.
pub const BOT_ID: &str = "7000000001";
/// The access token the fake Instagram accepts.
pub const INSTAGRAM_TOKEN: &str = "test-instagram-token";

/// Telegram numbers a chat's messages in one sequence: the fakes number theirs from
/// here, far from the tests' inbound ids, so that ids never collide.
const FIRST_ID: u64 = 1_000_000;

impl FakeApi {
    /// A fake Bot API at `http://127.0.0.1:port`.
    pub async fn telegram() -> Self {
        Self::start("", FIRST_ID, is_telegram_send, telegram).await
    }

    /// A fake Instagram API at `http://127.0.0.1:port/v23.0`.
    pub async fn instagram() -> Self {
        Self::start(
            "/v23.0",
            FIRST_ID,
            |s| s.body.get("message").is_some(),
            instagram,
        )
        .await
    }
}

/// The Bot API methods that send a message, and the field each takes its media in.
const TELEGRAM_SENDS: &[(&str, &str)] = &[
    ("sendMessage", "text"),
    ("sendPhoto", "photo"),
    ("sendDocument", "document"),
    ("sendAudio", "audio"),
    ("sendVideo", "video"),
];

/// A request that sends a message (not typing, not a callback's answer).
fn is_telegram_send(seen: &Seen) -> bool {
    TELEGRAM_SENDS
        .iter()
        .any(|(method, _)| seen.path.ends_with(&format!("/{method}")))
}

/// Why the Bot API would refuse an inline keyboard: an array of rows of buttons,
/// each with a text and 1-64 bytes of `callback_data`.
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

/// `POST /bot<token>/<method>`: 401 for another token, 404 for an unknown method.
fn telegram(seen: &Seen, scripted: Option<Answer>, n: u64) -> Answer {
    let error = |code: u16, description: &str| {
        let body = json!({"ok": false, "error_code": code, "description": description});
        Answer::new(code, body.to_string())
    };
    let Some(method) = seen.path.strip_prefix(&format!("/bot{TELEGRAM_TOKEN}/")) else {
        return error(401, "Unauthorized");
    };
    let chat_id = &seen.body["chat_id"];
    if method != "answerCallbackQuery" && !chat_id.is_i64() && !chat_id.is_string() {
        return error(400, "Bad Request: chat_id is empty");
    }
    if let Some(markup) = seen.body.get("reply_markup") {
        if invalid_keyboard(markup) {
            return error(400, "Bad Request: can't parse inline keyboard button");
        }
    }
    let sent = |n: u64, extra: serde_json::Value| {
        let mut result = json!({
            "message_id": n,
            "from": {"id": 7000000001u64, "is_bot": true, "first_name": "Example Shop"},
            "chat": {"id": chat_id},
            "date": n,
        });
        if let (Some(result), Some(extra)) = (result.as_object_mut(), extra.as_object()) {
            result.extend(extra.clone());
        }
        Answer::new(200, json!({"ok": true, "result": result}).to_string())
    };
    match method {
        "sendPhoto" | "sendDocument" | "sendAudio" | "sendVideo" => {
            if let Some(answer) = scripted {
                return answer;
            }
            let field = TELEGRAM_SENDS
                .iter()
                .find(|(m, _)| *m == method)
                .map(|(_, f)| *f)
                .unwrap_or_default();
            match seen.body[field].as_str() {
                Some(url) if url.starts_with("http") => sent(n, json!({})),
                _ => error(400, "Bad Request: there is no file in the request"),
            }
        }
        "answerCallbackQuery" => match seen.body["callback_query_id"].as_str() {
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
            let Some(text) = seen.body["text"].as_str().filter(|t| !t.is_empty()) else {
                return error(400, "Bad Request: message text is empty");
            };
            if text.chars().count() > 4096 {
                return error(400, "Bad Request: message is too long");
            }
            let result = json!({
                "message_id": n,
                "from": {"id": 7000000001u64, "is_bot": true, "first_name": "Example Shop"},
                "chat": {"id": chat_id},
                "date": n,
                "text": text,
            });
            Answer::new(200, json!({"ok": true, "result": result}).to_string())
        }
        "sendChatAction" => Answer::new(200, r#"{"ok":true,"result":true}"#),
        _ => error(404, "Not Found"),
    }
}

/// `POST /v23.0/<account>/messages` with `Authorization: Bearer <token>`.
fn instagram(seen: &Seen, scripted: Option<Answer>, n: u64) -> Answer {
    let error = |status: u16, code: u16, message: &str| {
        let body = json!({"error": {"message": message, "type": "IGApiException", "code": code}});
        Answer::new(status, body.to_string())
    };
    if seen.authorization.as_deref() != Some(&format!("Bearer {INSTAGRAM_TOKEN}")) {
        return error(
            401,
            190,
            "Invalid OAuth access token - Cannot parse access token",
        );
    }
    let Some(recipient) = seen.body["recipient"]["id"].as_str() else {
        return error(400, 100, "(#100) The parameter recipient is required");
    };
    if !seen.path.starts_with("/v23.0/") || !seen.path.ends_with("/messages") {
        return error(400, 100, "Unsupported post request");
    }
    if seen.body.get("sender_action").is_some() {
        return Answer::new(200, json!({"recipient_id": recipient}).to_string());
    }
    if let Some(answer) = scripted {
        return answer;
    }
    let message = &seen.body["message"];
    if let Some(attachment) = message.get("attachment") {
        let kinds = ["image", "audio", "video", "file"];
        let fine = attachment["type"]
            .as_str()
            .is_some_and(|t| kinds.contains(&t))
            && attachment["payload"]["url"]
                .as_str()
                .is_some_and(|u| u.starts_with("http"));
        return if fine {
            Answer::new(
                200,
                json!({"recipient_id": recipient, "message_id": format!("mid.fake{n}")})
                    .to_string(),
            )
        } else {
            error(400, 100, "(#100) Invalid attachment")
        };
    }
    if let Some(replies) = message.get("quick_replies") {
        let fine = replies.as_array().is_some_and(|r| {
            (1..=13).contains(&r.len())
                && r.iter().all(|q| {
                    q["content_type"] == "text"
                        && q["title"]
                            .as_str()
                            .is_some_and(|t| (1..=20).contains(&t.chars().count()))
                        && q["payload"].as_str().is_some_and(|p| !p.is_empty())
                })
        });
        if !fine {
            return error(400, 100, "(#100) Invalid quick_replies");
        }
    }
    match message["text"].as_str() {
        Some(text) if text.len() > 1000 => error(
            400,
            100,
            "(#100) Length of param message[text] must be less than or equal to 1000",
        ),
        Some(text) if !text.is_empty() => Answer::new(
            200,
            json!({"recipient_id": recipient, "message_id": format!("mid.fake{n}")}).to_string(),
        ),
        _ => error(400, 100, "(#100) Invalid parameter"),
    }
}
