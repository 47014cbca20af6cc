//! Rich replies (issue 18) through the whole worker: a batch whose reply is
//! committed as several messages (text, buttons, a list, an image, a menu past
//! the platform's limits) is claimed, delivered in order in each platform's
//! documented shape (the fakes refuse any other), recorded and acknowledged; a
//! resume sends only the messages not recorded as sent. A Telegram button tap is
//! a menu choice that flushes its batch early and is answered; the typing
//! indicator is renewed while a slow reply is generated.
//!
//! The responder still writes text (the HTTP responder that returns rich replies
//! is not in yet), so each batch here is committed the way the worker's commit
//! stage will commit one (`Store::begin_sending_reply`), then put in flight as a
//! batch left `sending` is after a crash: the claim loop resumes it and delivers.

use crate::fake_platforms::{
    BOT_ID, FakePlatform, INSTAGRAM_TOKEN, Received, TELEGRAM_TOKEN, fake_instagram, fake_telegram,
};
use crate::helpers::*;
use lull::batch::BatchId;
use lull::config::Secret;
use lull::message::{ChannelKind, Conversation};
use lull::responder::reply::{Button, List, Media, Reply, ReplyMessage, Row};
use lull::store::NewBatch;
use lull::time::UnixMs;
use serde_json::json;
use std::time::{Duration, Instant};

/// The fixtures' Telegram webhook secret token.
const TELEGRAM_SECRET: &str = "fixture_secret_token-123";
/// Maria's Telegram chat.
const CHAT: &str = "123456789";
/// Our Instagram professional account and its customer.
const IG_ACCOUNT: &str = "17841400000000001";
const CUSTOMER: &str = "5512340000000001";

/// Text, two buttons, a list, an image, then fourteen buttons whose ids are
/// longer than Telegram's `callback_data` takes: past every platform's limits.
fn rich_reply() -> Reply {
    let button = |id: &str, title: &str| Button {
        id: id.into(),
        title: title.into(),
    };
    let many = (0..14)
        .map(|n| button(&format!("{n:02}-{}", "x".repeat(70)), &format!("Size {n}")))
        .collect();
    Reply {
        messages: vec![
            ReplyMessage::Text {
                text: "Your order is on its way.".into(),
            },
            ReplyMessage::Buttons {
                text: "Anything else?".into(),
                buttons: vec![button("track", "Track it"), button("human", "Talk to us")],
            },
            ReplyMessage::List {
                text: "Or pick a topic".into(),
                list: List {
                    button: "Topics".into(),
                    rows: vec![
                        Row {
                            id: "returns".into(),
                            title: "Returns".into(),
                            description: None,
                        },
                        Row {
                            id: "billing".into(),
                            title: "Billing".into(),
                            description: None,
                        },
                    ],
                },
            },
            ReplyMessage::Image {
                image: Media {
                    url: "https://cdn.example/parcel.jpg".into(),
                    caption: None,
                },
            },
            ReplyMessage::Buttons {
                text: "Which size?".into(),
                buttons: many,
            },
        ],
        ..Reply::default()
    }
}

/// Stores one inbound message of `conversation`, commits `reply` as its batch's
/// answer (as the commit stage does), records `sent` as the platform ids of the
/// parts that went out, and puts the batch in flight, due at once, as a batch
/// left `sending` by a crash: the claim loop resumes it.
async fn commit_in_flight(
    app: &TestApp,
    conversation: &Conversation,
    reply: &Reply,
    sent: &[&str],
) -> BatchId {
    let external_id = format!("{}-in-{}", conversation.channel, unique("m"));
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO conversation_messages
             (channel, account_id, contact_id, external_message_id, direction, message_type,
              text, answerable, platform_timestamp)
         VALUES ($1, $2, $3, $4, 'in', 'text', 'where is my order?', true, now())
         RETURNING id",
    )
    .bind(conversation.channel.as_str())
    .bind(&conversation.account)
    .bind(&conversation.contact)
    .bind(&external_id)
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    let batch_id = BatchId::from(unique("rich"));
    let now = UnixMs::now();
    let batch = NewBatch {
        id: batch_id.clone(),
        conversation: conversation.clone(),
        message_ids: vec![id],
        claims: 1,
        supersedes: 0,
        started_ms: now,
        due_ms: now,
        claimed_ms: now,
    };
    let owned = app
        .store
        .begin_sending_reply(&batch, &[id], reply)
        .await
        .unwrap()
        .owned();
    assert_eq!(owned, [id], "the batch answers its message");
    let sent: Vec<String> = sent.iter().map(|s| (*s).to_owned()).collect();
    app.store
        .record_progress(&batch_id, sent.len() as u32, &sent)
        .await
        .unwrap();
    let entries = app.store.entries(&[id]).await.unwrap();
    let restored = app
        .redis_batches
        .restore(conversation, &batch_id, now, &entries, UnixMs::now())
        .await
        .unwrap();
    assert!(restored, "put in flight");
    batch_id
}

/// Waits for the batch to be recorded sent.
async fn sent_batch(app: &TestApp, batch_id: &BatchId) -> lull::store::BatchRow {
    wait_for("the batch sent", PATIENCE, || async {
        let row = app.store.batch(batch_id.as_str()).await.unwrap()?;
        (row.status == "sent").then_some(row)
    })
    .await
}

/// Waits for `n` sends on the fake and returns them.
async fn sends(fake: &FakePlatform, n: usize) -> Vec<Received> {
    replies_at_least(fake, n).await;
    settle().await;
    let replies = fake.replies();
    assert_eq!(replies.len(), n, "exactly {n} sends");
    replies
}

async fn whatsapp_app() -> TestApp {
    spawn_app().await
}

async fn telegram_app(tweak: impl FnOnce(&mut lull::config::Config)) -> (TestApp, FakePlatform) {
    let fake = fake_telegram().await;
    let base = fake.base.clone();
    let app = spawn_app_with(move |c| {
        c.telegram_bot_token = Some(Secret::new(TELEGRAM_TOKEN));
        c.telegram_secret_token = Some(Secret::new(TELEGRAM_SECRET));
        c.telegram_api_base = base;
        tweak(c);
    })
    .await;
    (app, fake)
}

async fn instagram_app() -> (TestApp, FakePlatform) {
    let fake = fake_instagram().await;
    let base = fake.base.clone();
    let app = spawn_app_with(move |c| {
        c.instagram_token = Some(Secret::new(INSTAGRAM_TOKEN));
        c.instagram_app_secret = Some(Secret::new(APP_SECRET));
        c.instagram_api_base = base;
    })
    .await;
    (app, fake)
}

fn maria_on_whatsapp() -> Conversation {
    Conversation::new(ChannelKind::WhatsApp, PHONE_ID, MARIA)
}

fn maria_on_telegram() -> Conversation {
    Conversation::new(ChannelKind::Telegram, BOT_ID, CHAT)
}

fn customer_on_instagram() -> Conversation {
    Conversation::new(ChannelKind::Instagram, IG_ACCOUNT, CUSTOMER)
}

#[tokio::test]
async fn a_rich_reply_reaches_whatsapp_as_interactive_messages_in_order() {
    let app = whatsapp_app().await;
    let batch = commit_in_flight(&app, &maria_on_whatsapp(), &rich_reply(), &[]).await;
    let row = sent_batch(&app, &batch).await;
    let bodies: Vec<_> = sends(&app.graph, 5)
        .await
        .into_iter()
        .map(|s| s.body)
        .collect();
    assert_eq!(bodies[0]["text"]["body"], "Your order is on its way.");
    assert_eq!(bodies[1]["interactive"]["type"], "button");
    assert_eq!(
        bodies[1]["interactive"]["action"]["buttons"][1],
        json!({"type": "reply", "reply": {"id": "human", "title": "Talk to us"}})
    );
    assert_eq!(bodies[2]["interactive"]["type"], "list");
    assert_eq!(bodies[2]["interactive"]["action"]["button"], "Topics");
    assert_eq!(
        bodies[2]["interactive"]["action"]["sections"][0]["rows"][0],
        json!({"id": "returns", "title": "Returns"})
    );
    assert_eq!(
        bodies[3]["image"],
        json!({"link": "https://cdn.example/parcel.jpg"})
    );
    let degraded = bodies[4]["text"]["body"].as_str().unwrap();
    assert!(
        degraded.starts_with("Which size?\n\n1. Size 0\n") && degraded.ends_with("14. Size 13"),
        "fourteen buttons become numbered text: {degraded}"
    );
    assert_eq!(row.platform_message_ids.len(), 5, "each part recorded");
    let stored = app
        .count("SELECT count(*) FROM conversation_messages WHERE direction = 'out'")
        .await;
    assert_eq!(stored, 5, "each part stored as an outbound message");
}

#[tokio::test]
async fn a_rich_reply_reaches_instagram_as_quick_replies_and_attachments() {
    let (app, fake) = instagram_app().await;
    let batch = commit_in_flight(&app, &customer_on_instagram(), &rich_reply(), &[]).await;
    sent_batch(&app, &batch).await;
    let bodies: Vec<_> = sends(&fake, 5)
        .await
        .into_iter()
        .map(|s| s.body["message"].clone())
        .collect();
    assert_eq!(bodies[0], json!({"text": "Your order is on its way."}));
    assert_eq!(
        bodies[1]["quick_replies"][0],
        json!({"content_type": "text", "title": "Track it", "payload": "track"})
    );
    assert_eq!(bodies[2]["quick_replies"][1]["payload"], "billing");
    assert_eq!(
        bodies[3],
        json!({"attachment": {"type": "image", "payload": {"url": "https://cdn.example/parcel.jpg"}}})
    );
    assert!(bodies[4].get("quick_replies").is_none(), "past 13: text");
    assert!(bodies[4]["text"].as_str().unwrap().ends_with("14. Size 13"));
}

#[tokio::test]
async fn a_rich_reply_reaches_telegram_as_inline_keyboards_and_send_photo() {
    let (app, fake) = telegram_app(|_| {}).await;
    let batch = commit_in_flight(&app, &maria_on_telegram(), &rich_reply(), &[]).await;
    sent_batch(&app, &batch).await;
    let sent = sends(&fake, 5).await;
    let methods: Vec<&str> = sent
        .iter()
        .map(|s| s.path.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        methods,
        [
            "sendMessage",
            "sendMessage",
            "sendMessage",
            "sendPhoto",
            "sendMessage"
        ]
    );
    assert!(sent[0].body.get("reply_markup").is_none());
    assert_eq!(
        sent[1].body["reply_markup"]["inline_keyboard"][0],
        json!([{"text": "Track it", "callback_data": "track"}])
    );
    assert_eq!(
        sent[2].body["reply_markup"]["inline_keyboard"][1],
        json!([{"text": "Billing", "callback_data": "billing"}])
    );
    assert_eq!(sent[3].body["photo"], "https://cdn.example/parcel.jpg");
    assert!(
        sent[4].body.get("reply_markup").is_none(),
        "ids past 64 bytes: text"
    );
    assert!(
        sent[4].body["text"]
            .as_str()
            .unwrap()
            .ends_with("14. Size 13")
    );
}

#[tokio::test]
async fn a_resumed_rich_reply_sends_only_the_messages_not_recorded_as_sent() {
    let app = whatsapp_app().await;
    let batch = commit_in_flight(&app, &maria_on_whatsapp(), &rich_reply(), &["wamid.first"]).await;
    let row = sent_batch(&app, &batch).await;
    let bodies: Vec<_> = sends(&app.graph, 4)
        .await
        .into_iter()
        .map(|s| s.body)
        .collect();
    assert_eq!(
        bodies[0]["interactive"]["type"], "button",
        "from the second message on"
    );
    assert_eq!(bodies[2]["type"], "image");
    assert_eq!(row.platform_message_ids.len(), 5);
    assert_eq!(
        row.platform_message_ids[0], "wamid.first",
        "the part sent before kept"
    );
}

#[tokio::test]
async fn a_telegram_button_tap_flushes_its_batch_and_is_answered() {
    let (app, fake) = telegram_app(|c| {
        // A long window: only the choice's short grace can answer this fast.
        c.batch_window_seconds = 5.0;
        c.batch_choice_grace_ms = 50;
    })
    .await;
    let update = json!({
        "update_id": 900,
        "callback_query": {
            "id": "4382bfdwdsb323b2d9",
            "from": {"id": 123456789, "is_bot": false, "first_name": "Maria"},
            "chat_instance": "-1",
            "data": "track",
            "message": {
                "message_id": 1_000_001,
                "from": {"id": 7000000001u64, "is_bot": true, "first_name": "Example Shop"},
                "chat": {"id": 123456789, "type": "private"},
                "date": now_secs(),
                "text": "Anything else?",
                "reply_markup": {"inline_keyboard": [
                    [{"text": "Track it", "callback_data": "track"}],
                    [{"text": "Talk to us", "callback_data": "human"}],
                ]},
            },
        },
    });
    let started = Instant::now();
    let response = app
        .http
        .post(app.url("/api/telegram/webhook"))
        .header("content-type", "application/json")
        .header("x-telegram-bot-api-secret-token", TELEGRAM_SECRET)
        .body(update.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answered: Vec<Received> = fake
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with("/answerCallbackQuery"))
        .collect();
    assert_eq!(answered.len(), 1, "answered by the time the webhook is");
    assert_eq!(
        answered[0].body,
        json!({"callback_query_id": "4382bfdwdsb323b2d9"})
    );
    let stored = app
        .column("SELECT text FROM conversation_messages WHERE message_type = 'choice'")
        .await;
    assert_eq!(
        stored,
        ["[choice id=track] Track it"],
        "the id reaches the bot"
    );
    replies_at_least(&fake, 1).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "flushed early, not after the 5 s window: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn typing_is_renewed_while_a_slow_reply_is_generated_and_stops_once_sent() {
    let (app, fake) = telegram_app(|c| {
        c.typing_indicator = true;
        c.typing_renewal_ms = 50;
        c.responder_delay_ms = 600;
    })
    .await;
    let update = json!({
        "update_id": 901,
        "message": {
            "message_id": 51,
            "from": {"id": 123456789, "is_bot": false, "first_name": "Maria"},
            "chat": {"id": 123456789, "type": "private"},
            "date": now_secs(),
            "text": "where is my order?",
        },
    });
    let response = app
        .http
        .post(app.url("/api/telegram/webhook"))
        .header("content-type", "application/json")
        .header("x-telegram-bot-api-secret-token", TELEGRAM_SECRET)
        .body(update.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let reply = replies_at_least(&fake, 1).await.remove(0);
    // Renewals a moment after the reply would be the indicator left running.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let typing: Vec<Received> = fake
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with("/sendChatAction"))
        .collect();
    let before = typing.iter().filter(|s| s.at < reply.at).count();
    assert!(before >= 4, "shown and renewed while generating: {before}");
    let after = typing
        .iter()
        .filter(|s| s.at > reply.at + Duration::from_millis(100))
        .count();
    assert_eq!(after, 0, "no renewal once the reply is sent");
}
