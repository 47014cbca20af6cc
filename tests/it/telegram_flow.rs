//! Telegram: a burst of updates becomes one reply through the Bot API, end to end.

use crate::fake_platforms::{Answer, BOT_ID, FakePlatform, TELEGRAM_TOKEN, fake_telegram};
use crate::helpers::*;
use lull::config::Secret;
use serde_json::json;
use std::time::{Duration, Instant};

/// The fixtures' webhook secret token.
const SECRET: &str = "fixture_secret_token-123";
/// Maria's private chat.
const CHAT: i64 = 123456789;
/// The fixtures' supergroup.
const GROUP: i64 = -1001234567890;

/// The app with the fake Bot API and the fixtures' secret token.
async fn spawn() -> (TestApp, FakePlatform) {
    let fake = fake_telegram().await;
    let base = fake.base.clone();
    let app = spawn_app_with(move |c| {
        c.telegram_bot_token = Some(Secret::new(TELEGRAM_TOKEN));
        c.telegram_secret_token = Some(Secret::new(SECRET));
        c.telegram_api_base = base;
    })
    .await;
    (app, fake)
}

/// A private or group text `Update`.
fn update(update_id: i64, chat: i64, message_id: i64, date: i64, text: &str) -> Vec<u8> {
    json!({
        "update_id": update_id,
        "message": {
            "message_id": message_id,
            "from": {"id": 123456789, "is_bot": false, "first_name": "Maria"},
            "chat": {"id": chat, "type": if chat < 0 { "supergroup" } else { "private" }},
            "date": date,
            "text": text,
        }
    })
    .to_string()
    .into_bytes()
}

async fn post(app: &TestApp, body: &[u8], secret: Option<&str>) -> reqwest::Response {
    let mut request = app
        .http
        .post(app.url("/api/telegram/webhook"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(secret) = secret {
        request = request.header("x-telegram-bot-api-secret-token", secret);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn two_telegram_messages_in_a_burst_get_exactly_one_reply_with_both() {
    let (app, fake) = spawn().await;
    let ts = now_secs();
    let first = post(
        &app,
        &update(1, CHAT, 51, ts, "Hi, do you deliver to Austin?"),
        Some(SECRET),
    )
    .await;
    assert_eq!(first.status(), 200);
    let body: serde_json::Value = first.json().await.unwrap();
    assert_eq!(body["stored"], 1);
    // Taken before the POST: its deadline is set while the POST is served.
    let last_post = Instant::now();
    let second = post(
        &app,
        &update(2, CHAT, 52, ts + 1, "order #A-1042"),
        Some(SECRET),
    )
    .await;
    assert_eq!(second.status(), 200);

    let replies = replies_at_least(&fake, 1).await;
    settle().await;
    assert_eq!(fake.replies().len(), 1, "exactly one reply");
    let reply = &replies[0];
    assert!(reply.at.duration_since(last_post) >= WINDOW - CLOCK_SLACK);
    assert_eq!(reply.path, format!("/bot{TELEGRAM_TOKEN}/sendMessage"));
    assert_eq!(reply.authorization, None, "the token is in the path only");
    assert_eq!(reply.body["chat_id"], json!(CHAT));
    let text = reply.body["text"].as_str().unwrap();
    for part in ["“Hi, do you deliver to Austin?”", "“order #A-1042”"] {
        assert!(text.contains(part), "{text} lacks {part}");
    }
    assert_eq!(reply.body.as_object().unwrap().len(), 2, "{}", reply.body);

    let batch = batch_with_status(&app, "sent").await;
    assert_eq!(batch.account_id, BOT_ID);
    assert_eq!(batch.contact_id, CHAT.to_string());
    assert_eq!(batch.message_ids.len(), 2);
    assert!(
        batch.platform_message_ids[0].starts_with(&format!("{BOT_ID}:{CHAT}:")),
        "{:?}",
        batch.platform_message_ids
    );
    let ids = app
        .column("SELECT external_message_id FROM conversation_messages WHERE direction = 'in' ORDER BY id")
        .await;
    assert_eq!(
        ids,
        [format!("{BOT_ID}:{CHAT}:51"), format!("{BOT_ID}:{CHAT}:52")]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_or_missing_telegram_secret_token_is_refused_and_nothing_is_stored() {
    let (app, fake) = spawn().await;
    let body = fixture("telegram/text_update.json");
    let wrong = post(&app, &body, Some("fixture_secret_token-124")).await;
    assert_eq!(wrong.status(), 401);
    let missing = post(&app, &body, None).await;
    assert_eq!(missing.status(), 401);
    assert!(
        missing
            .text()
            .await
            .unwrap()
            .contains("X-Telegram-Bot-Api-Secret-Token")
    );
    assert_nothing_stored_or_sent(&app, &fake).await;
    app.stop().await;
}

#[tokio::test]
async fn a_redelivered_telegram_update_is_stored_once_and_answered_once() {
    let (app, fake) = spawn().await;
    let body = fixture("telegram/text_update.json");
    assert_eq!(post(&app, &body, Some(SECRET)).await.status(), 200);
    let again = post(&app, &body, Some(SECRET)).await;
    assert_eq!(again.status(), 200);
    let report: serde_json::Value = again.json().await.unwrap();
    assert_eq!(
        (report["stored"].as_i64(), report["duplicates"].as_i64()),
        (Some(0), Some(1))
    );
    replies_at_least(&fake, 1).await;
    // Telegram may retry after the reply went out, too.
    post(&app, &body, Some(SECRET)).await;
    assert_stored_once_answered_once(&app, &fake).await;
    app.stop().await;
}

#[tokio::test]
async fn the_same_message_id_in_two_chats_is_two_messages_with_two_replies() {
    let (app, fake) = spawn().await;
    let ts = now_secs();
    for (update_id, chat, text) in [(1, CHAT, "private hello"), (2, GROUP, "group hello")] {
        let response = post(&app, &update(update_id, chat, 51, ts, text), Some(SECRET)).await;
        let report: serde_json::Value = response.json().await.unwrap();
        assert_eq!(report["stored"], 1, "{text}");
    }
    let replies = replies_at_least(&fake, 2).await;
    settle().await;
    assert_eq!(fake.replies().len(), 2);
    let mut answered: Vec<(i64, bool)> = replies
        .iter()
        .map(|r| {
            let text = r.body["text"].as_str().unwrap();
            let chat = r.body["chat_id"].as_i64().unwrap();
            let own = if chat == CHAT {
                "private hello"
            } else {
                "group hello"
            };
            (chat, text.contains(own))
        })
        .collect();
    answered.sort();
    assert_eq!(answered, [(GROUP, true), (CHAT, true)]);
    let mut ids = app
        .column("SELECT external_message_id FROM conversation_messages WHERE direction = 'in'")
        .await;
    ids.sort();
    assert_eq!(
        ids,
        [
            format!("{BOT_ID}:{GROUP}:51"),
            format!("{BOT_ID}:{CHAT}:51")
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn flood_control_then_success_is_retried_after_retry_after() {
    let (app, fake) = spawn().await;
    fake.script([Answer::error(
        429,
        r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 1","parameters":{"retry_after":1}}"#,
    )]);
    post(
        &app,
        &update(1, CHAT, 51, now_secs(), "hello"),
        Some(SECRET),
    )
    .await;
    let batch = batch_with_status(&app, "sent").await;
    assert_eq!(batch.attempts, 2);
    let replies = fake.replies();
    assert_eq!(replies.len(), 2, "one refused, one accepted");
    assert!(
        replies[1].at.duration_since(replies[0].at) >= Duration::from_millis(950),
        "waited retry_after"
    );
    assert_eq!(replies[0].body, replies[1].body);
    assert_eq!(batch.platform_message_ids.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_bot_blocked_by_the_user_fails_the_batch_without_retrying() {
    let (app, fake) = spawn().await;
    fake.script([Answer::error(
        403,
        &String::from_utf8(fixture("telegram/error_403_blocked.json")).unwrap(),
    )]);
    post(
        &app,
        &update(1, CHAT, 51, now_secs(), "hello"),
        Some(SECRET),
    )
    .await;
    let batch = batch_with_status(&app, "failed").await;
    assert_eq!(batch.attempts, 1);
    assert_eq!(batch.error_code.as_deref(), Some("403"));
    assert_eq!(
        batch.error_message.as_deref(),
        Some("Forbidden: bot was blocked by the user")
    );
    settle().await;
    assert_eq!(fake.replies().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn an_edit_is_stored_as_a_message_of_its_own() {
    let (app, fake) = spawn().await;
    let ts = now_secs();
    post(
        &app,
        &update(1, CHAT, 52, ts, "order #A-1042"),
        Some(SECRET),
    )
    .await;
    let edit = json!({
        "update_id": 2,
        "edited_message": {
            "message_id": 52, "chat": {"id": CHAT, "type": "private"},
            "date": ts, "edit_date": ts + 1, "text": "order #A-1042 (blue lamp)"
        }
    });
    let response = post(&app, edit.to_string().as_bytes(), Some(SECRET)).await;
    let report: serde_json::Value = response.json().await.unwrap();
    assert_eq!(report["stored"], 1);
    let replies = replies_at_least(&fake, 1).await;
    let text = replies[0].body["text"].as_str().unwrap();
    assert!(
        text.contains("[edited] order #A-1042 (blue lamp)"),
        "{text}"
    );
    let ids = app
        .column("SELECT external_message_id FROM conversation_messages WHERE direction = 'in' ORDER BY id")
        .await;
    assert_eq!(
        ids,
        [
            format!("{BOT_ID}:{CHAT}:52"),
            format!("{BOT_ID}:{CHAT}:52:edit:{}", ts + 1)
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn an_update_without_a_message_is_acknowledged_and_not_stored() {
    let (app, fake) = spawn().await;
    let callback = br#"{"update_id": 9, "callback_query": {"id": "1", "data": "x"}}"#;
    let response = post(&app, callback, Some(SECRET)).await;
    assert_eq!(response.status(), 200);
    assert_nothing_stored_or_sent(&app, &fake).await;
    app.stop().await;
}

#[tokio::test]
async fn the_telegram_webhook_has_no_get_handshake() {
    let (app, _fake) = spawn().await;
    let response = app
        .http
        .get(app.url("/api/telegram/webhook?hub.mode=subscribe&hub.challenge=1&hub.verify_token=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn without_a_bot_token_telegram_replies_are_logged_not_sent() {
    // Telegram on by its secret token alone: no bot token to send with.
    let app = spawn_app_with(|c| c.telegram_secret_token = Some(Secret::new(SECRET))).await;
    let response = post(&app, &fixture("telegram/text_update.json"), Some(SECRET)).await;
    assert_eq!(response.status(), 200);
    let batch = batch_with_status(&app, "sent").await;
    assert_eq!(batch.channel, "telegram");
    assert_eq!(batch.account_id, "dry-run");
    assert!(batch.platform_message_ids[0].starts_with("dry-run:"));
    app.stop().await;
}

#[tokio::test]
async fn with_typing_on_a_chat_action_goes_before_the_reply() {
    let fake = fake_telegram().await;
    let base = fake.base.clone();
    let app = spawn_app_with(move |c| {
        c.telegram_bot_token = Some(Secret::new(TELEGRAM_TOKEN));
        c.telegram_secret_token = Some(Secret::new(SECRET));
        c.telegram_api_base = base;
        c.typing_indicator = true;
        // Time for the best-effort action to land before the reply.
        c.responder_delay_ms = 200;
    })
    .await;
    post(
        &app,
        &update(1, CHAT, 51, now_secs(), "hello"),
        Some(SECRET),
    )
    .await;
    replies_at_least(&fake, 1).await;
    let seen = fake.seen();
    let methods: Vec<&str> = seen
        .iter()
        .map(|s| s.path.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(methods, ["sendChatAction", "sendMessage"]);
    assert_eq!(seen[0].body, json!({"chat_id": CHAT, "action": "typing"}));
    app.stop().await;
}
