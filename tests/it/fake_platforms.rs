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
        Self::start("", FIRST_ID, |s| s.path.ends_with("/sendMessage"), telegram).await
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
    if !chat_id.is_i64() && !chat_id.is_string() {
        return error(400, "Bad Request: chat_id is empty");
    }
    match method {
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
    match seen.body["message"]["text"].as_str() {
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
