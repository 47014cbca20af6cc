//! Instagram: a burst of direct messages becomes one reply through the Send API.

use crate::fake_platforms::{Answer, FakePlatform, INSTAGRAM_TOKEN, fake_instagram};
use crate::helpers::*;
use lull::config::Secret;
use serde_json::json;
use std::time::Instant;

/// Our Instagram professional account.
const IG_ACCOUNT: &str = "17841400000000001";
/// The fixtures' customer.
const CUSTOMER: &str = "5512340000000001";
/// Where Instagram posts.
const WEBHOOK: &str = "/api/instagram/webhook";

/// The app with the fake Instagram API and the fixtures' secrets.
async fn spawn() -> (TestApp, FakePlatform) {
    let fake = fake_instagram().await;
    let base = fake.base.clone();
    let app = spawn_app_with(move |c| {
        c.instagram_token = Some(Secret::new(INSTAGRAM_TOKEN));
        c.instagram_app_secret = Some(Secret::new(APP_SECRET));
        c.instagram_verify_token = Some(Secret::new(VERIFY_TOKEN));
        c.instagram_api_base = base;
    })
    .await;
    (app, fake)
}

/// One direct message from the customer, `timestamp` in ms.
fn dm(mid: &str, timestamp_ms: i64, text: &str) -> Vec<u8> {
    json!({
        "object": "instagram",
        "entry": [{
            "id": IG_ACCOUNT,
            "time": timestamp_ms + 300,
            "messaging": [{
                "sender": {"id": CUSTOMER},
                "recipient": {"id": IG_ACCOUNT},
                "timestamp": timestamp_ms,
                "message": {"mid": mid, "text": text}
            }]
        }]
    })
    .to_string()
    .into_bytes()
}

/// POSTs a body signed with the fixtures' app secret.
async fn post(app: &TestApp, body: &[u8]) -> reqwest::Response {
    app.post_signed(WEBHOOK, body).await
}

#[tokio::test]
async fn two_instagram_messages_in_a_burst_get_exactly_one_reply_with_both() {
    let (app, fake) = spawn().await;
    let now = lull::time::now_ms();
    let first = post(&app, &dm("mid.burst1", now, "size M")).await;
    assert_eq!(first.status(), 200);
    // Taken before the POST: its deadline is set while the POST is served.
    let last_post = Instant::now();
    let second = post(
        &app,
        &dm("mid.burst2", now + 800, "and do you ship to Canada?"),
    )
    .await;
    assert_eq!(second.status(), 200);

    let replies = replies_at_least(&fake, 1).await;
    settle().await;
    assert_eq!(fake.replies().len(), 1, "exactly one reply");
    let reply = &replies[0];
    assert!(reply.at.duration_since(last_post) >= WINDOW - CLOCK_SLACK);
    assert_eq!(reply.path, format!("/v23.0/{IG_ACCOUNT}/messages"));
    assert_eq!(
        reply.authorization.as_deref(),
        Some(format!("Bearer {INSTAGRAM_TOKEN}").as_str())
    );
    assert_eq!(reply.body["recipient"], json!({"id": CUSTOMER}));
    let text = reply.body["message"]["text"].as_str().unwrap();
    for part in ["“size M”", "“and do you ship to Canada?”"] {
        assert!(text.contains(part), "{text} lacks {part}");
    }
    let batch = batch_with_status(&app, "sent").await;
    assert_eq!(
        (batch.account_id.as_str(), batch.contact_id.as_str()),
        (IG_ACCOUNT, CUSTOMER)
    );
    assert_eq!(batch.message_ids.len(), 2);
    assert!(batch.platform_message_ids[0].starts_with("mid.fake"));
    app.stop().await;
}

#[tokio::test]
async fn a_bad_or_missing_instagram_signature_is_refused_and_nothing_is_stored() {
    let (app, fake) = spawn().await;
    let body = fixture("instagram/text.json");
    let forged = app
        .post_raw(WEBHOOK, &body, Some(&forged_signature()))
        .await;
    assert_eq!(forged.status(), 401);
    let unsigned = app.post_raw(WEBHOOK, &body, None).await;
    assert_eq!(unsigned.status(), 401);
    assert_nothing_stored_or_sent(&app, &fake).await;
    app.stop().await;
}

#[tokio::test]
async fn a_redelivered_instagram_message_is_stored_once_and_answered_once() {
    let (app, fake) = spawn().await;
    let body = fixture("instagram/text.json");
    assert_eq!(post(&app, &body).await.status(), 200);
    let again = post(&app, &body).await;
    let report: serde_json::Value = again.json().await.unwrap();
    assert_eq!(
        (report["stored"].as_i64(), report["duplicates"].as_i64()),
        (Some(0), Some(1))
    );
    replies_at_least(&fake, 1).await;
    post(&app, &body).await;
    assert_stored_once_answered_once(&app, &fake).await;
    app.stop().await;
}

#[tokio::test]
async fn an_echo_of_our_own_message_starts_no_batch() {
    let (app, fake) = spawn().await;
    let response = post(&app, &fixture("instagram/echo.json")).await;
    assert_eq!(response.status(), 200);
    let report: serde_json::Value = response.json().await.unwrap();
    assert_eq!(report["stored"], 0);
    settle().await;
    assert!(fake.seen().is_empty(), "no reply, no typing");
    assert_eq!(
        app.count("SELECT count(*) FROM conversation_messages")
            .await,
        0
    );
    assert_eq!(app.count("SELECT count(*) FROM reply_batches").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn an_instagram_rate_limit_then_success_is_retried() {
    let (app, fake) = spawn().await;
    fake.script([Answer::error(
        429,
        r#"{"error":{"message":"(#4) Application request limit reached","type":"IGApiException","code":4}}"#,
    )]);
    post(&app, &dm("mid.retry", lull::time::now_ms(), "hello")).await;
    let batch = batch_with_status(&app, "sent").await;
    assert_eq!(batch.attempts, 2);
    let replies = fake.replies();
    assert_eq!(replies.len(), 2, "one refused, one accepted");
    assert_eq!(replies[0].body, replies[1].body);
    assert_eq!(batch.platform_message_ids.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn outside_the_messaging_window_the_batch_fails_without_retrying() {
    let (app, fake) = spawn().await;
    fake.script([Answer::error(
        403,
        &String::from_utf8(fixture("instagram/error_outside_window.json")).unwrap(),
    )]);
    post(&app, &dm("mid.late", lull::time::now_ms(), "hello?")).await;
    let batch = batch_with_status(&app, "failed").await;
    assert_eq!(batch.attempts, 1);
    assert_eq!(batch.error_code.as_deref(), Some("10"));
    settle().await;
    assert_eq!(fake.replies().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn with_typing_on_the_message_is_seen_and_typing_shown_before_the_reply() {
    let fake = fake_instagram().await;
    let base = fake.base.clone();
    let app = spawn_app_with(move |c| {
        c.instagram_token = Some(Secret::new(INSTAGRAM_TOKEN));
        c.instagram_app_secret = Some(Secret::new(APP_SECRET));
        c.instagram_api_base = base;
        c.typing_indicator = true;
        // Time for the best-effort actions to land before the reply.
        c.responder_delay_ms = 200;
    })
    .await;
    post(&app, &dm("mid.typing", lull::time::now_ms(), "hello")).await;
    replies_at_least(&fake, 1).await;
    let actions: Vec<String> = fake
        .seen()
        .iter()
        .map(|s| match s.body["sender_action"].as_str() {
            Some(action) => action.to_owned(),
            None => "reply".to_owned(),
        })
        .collect();
    assert_eq!(actions, ["mark_seen", "typing_on", "reply"]);
    app.stop().await;
}

#[tokio::test]
async fn the_instagram_handshake_echoes_the_challenge_only_for_the_right_token() {
    let (app, _fake) = spawn().await;
    let get = |token: &str| {
        app.http
            .get(app.url(&format!(
                "/api/instagram/webhook?hub.mode=subscribe&hub.challenge=77&hub.verify_token={token}"
            )))
            .send()
    };
    let ok = get(VERIFY_TOKEN).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "77");
    assert_eq!(get("nope").await.unwrap().status(), 403);
    app.stop().await;
}
