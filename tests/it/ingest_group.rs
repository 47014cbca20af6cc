//! Webhooks arriving together share one INSERT (the store's inbound group), and each
//! still gets its own answer: its new rows, its duplicates, or its own failure.

use crate::helpers::*;
use lull::message::{ChannelKind, Conversation, Entry, InboundMessage, MessageKind};
use serde_json::Value;
use tokio::task::JoinSet;

/// Where Meta posts WhatsApp webhooks.
const WEBHOOK: &str = "/api/whatsapp/webhook";

/// A text WhatsApp body with a NUL character, which PostgreSQL's text and jsonb refuse.
fn whatsapp_text_with_nul(from: &str, id: &str) -> Vec<u8> {
    let body = whatsapp_text(from, id, now_secs(), "before NUL after");
    String::from_utf8(body)
        .unwrap()
        .replace("before NUL after", "before \\u0000 after")
        .into_bytes()
}

/// POSTs every body at once; returns each answer, keyed by the body's label.
async fn post_all(app: &TestApp, bodies: Vec<(String, Vec<u8>)>) -> Vec<(String, u16, Value)> {
    let mut posts = JoinSet::new();
    for (label, body) in bodies {
        let (http, url) = (app.http.clone(), app.url(WEBHOOK));
        posts.spawn(async move {
            let response = http
                .post(url)
                .header("content-type", "application/json")
                .header("x-hub-signature-256", sign(&body))
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (label, status, response.json().await.unwrap_or(Value::Null))
        });
    }
    posts.join_all().await
}

/// `{"stored": stored, "duplicates": duplicates}` of a 200 answer.
fn counts(answer: &Value) -> (u64, u64) {
    (
        answer["stored"].as_u64().unwrap(),
        answer["duplicates"].as_u64().unwrap(),
    )
}

/// A text message from `contact` on `channel` with a platform id.
fn message(channel: ChannelKind, contact: &str, id: &str, text: &str) -> (InboundMessage, bool) {
    let message = InboundMessage {
        conversation: Conversation::new(channel, PHONE_ID, contact),
        external_id: id.to_owned(),
        kind: MessageKind::Text,
        text: text.to_owned(),
        timestamp_ms: now_secs() * 1000,
        contact_name: None,
        payload: serde_json::json!({ "id": id }),
    };
    (message, true)
}

/// Each entry's text, `None` for a duplicate.
fn texts(entries: &[Option<Entry>]) -> Vec<Option<&str>> {
    entries
        .iter()
        .map(|e| e.as_ref().map(|e| e.text.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_webhooks_are_each_stored_once_and_answered_with_their_own_counts() {
    let app = spawn_app().await;
    let ts = now_secs();
    let mut bodies: Vec<(String, Vec<u8>)> = (0..200)
        .map(|i| {
            let (contact, id) = (format!("1555{:07}", i % 20), format!("wamid.many{i}"));
            let body = whatsapp_text(&contact, &id, ts + i as i64 / 20, &format!("m{i}"));
            (id, body)
        })
        .collect();
    for copy in 0..10 {
        let body = whatsapp_text(MARIA, "wamid.retried", ts, "sent ten times");
        bodies.insert(copy * 20, ("wamid.retried".to_owned(), body));
    }

    let answers = post_all(&app, bodies).await;

    let mut retried = Vec::new();
    for (id, status, answer) in &answers {
        assert_eq!(*status, 200, "{id}: {answer}");
        if id == "wamid.retried" {
            retried.push(counts(answer));
        } else {
            assert_eq!(counts(answer), (1, 0), "{id}: {answer}");
        }
    }
    retried.sort();
    assert_eq!(retried, [vec![(0, 1); 9], vec![(1, 0)]].concat());
    let rows = app
        .count("SELECT count(*) FROM conversation_messages WHERE direction = 'in'")
        .await;
    assert_eq!(rows, 201, "200 messages and one copy of the retried one");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_with_a_nul_character_is_stored_with_it_replaced_beside_the_others() {
    let app = spawn_app().await;
    let ts = now_secs();
    let mut bodies: Vec<(String, Vec<u8>)> = (0..60)
        .map(|i| {
            let id = format!("wamid.beside{i}");
            let body = whatsapp_text(&format!("1555{:07}", i % 6), &id, ts, "fine");
            (id, body)
        })
        .collect();
    // In the middle of the burst, so that it is queued behind a busy flush with others.
    bodies.insert(
        30,
        (
            "wamid.nul".into(),
            whatsapp_text_with_nul(MARIA, "wamid.nul"),
        ),
    );

    let answers = post_all(&app, bodies).await;

    for (id, status, answer) in &answers {
        assert_eq!((*status, counts(answer)), (200, (1, 0)), "{id}: {answer}");
    }
    let stored = app
        .column("SELECT external_message_id FROM conversation_messages WHERE direction = 'in'")
        .await;
    assert_eq!(stored.len(), 61);
    let text = app
        .column("SELECT text FROM conversation_messages WHERE external_message_id = 'wamid.nul'")
        .await;
    assert_eq!(text, vec!["before \u{FFFD} after".to_owned()]);
    app.stop().await;
}

// The store tests run on one thread: the requests of one `join!` are all queued
// before the group's flusher runs, so they are flushed as one group.

#[tokio::test]
async fn a_refused_request_fails_alone_and_the_requests_grouped_with_it_are_stored() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let good = vec![message(ChannelKind::WhatsApp, MARIA, "wamid.good", "fine")];
    let bad = vec![message(
        ChannelKind::WhatsApp,
        MARIA,
        "wamid.bad",
        "a \0 NUL",
    )];
    let also_good = vec![message(
        ChannelKind::WhatsApp,
        MARIA,
        "wamid.also",
        "fine too",
    )];

    let (good, bad, also_good) = tokio::join!(
        store.insert_inbound(good),
        store.insert_inbound(bad),
        store.insert_inbound(also_good),
    );

    assert_eq!(texts(&good.unwrap()), [Some("fine")]);
    assert!(bad.is_err(), "{bad:?}");
    assert_eq!(texts(&also_good.unwrap()), [Some("fine too")]);
    store.pool().close().await;
}

#[tokio::test]
async fn the_same_id_on_two_channels_in_one_group_is_stored_once_per_channel() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let on = |channel| vec![message(channel, MARIA, "shared.1", channel.as_str())];

    let (whatsapp, telegram, again) = tokio::join!(
        store.insert_inbound(on(ChannelKind::WhatsApp)),
        store.insert_inbound(on(ChannelKind::Telegram)),
        store.insert_inbound(on(ChannelKind::WhatsApp)),
    );

    assert_eq!(texts(&whatsapp.unwrap()), [Some("whatsapp")]);
    assert_eq!(texts(&telegram.unwrap()), [Some("telegram")]);
    assert_eq!(texts(&again.unwrap()), [None]);
    store.pool().close().await;
}

#[tokio::test]
async fn only_the_first_copy_of_an_id_in_a_group_is_new_and_it_is_the_copy_stored() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let first = vec![
        message(ChannelKind::WhatsApp, MARIA, "wamid.a", "a"),
        message(ChannelKind::WhatsApp, MARIA, "wamid.b", "b, first copy"),
        message(ChannelKind::WhatsApp, MARIA, "wamid.b", "b, same webhook"),
    ];
    let second = vec![
        message(ChannelKind::WhatsApp, MARIA, "wamid.b", "b, next webhook"),
        message(ChannelKind::WhatsApp, MARIA, "wamid.c", "c"),
    ];

    let (first, second) = tokio::join!(store.insert_inbound(first), store.insert_inbound(second));

    assert_eq!(
        texts(&first.unwrap()),
        [Some("a"), Some("b, first copy"), None]
    );
    assert_eq!(texts(&second.unwrap()), [None, Some("c")]);
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT text FROM conversation_messages ORDER BY id")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(stored, ["a", "b, first copy", "c"]);
    store.pool().close().await;
}

#[tokio::test]
async fn a_message_stored_by_an_earlier_group_is_a_duplicate() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let once = || vec![message(ChannelKind::Instagram, MARIA, "mid.1", "hello")];
    let first = store.insert_inbound(once()).await.unwrap();

    let again = store.insert_inbound(once()).await.unwrap();

    assert_eq!(texts(&first), [Some("hello")]);
    assert_eq!(texts(&again), [None]);
    store.pool().close().await;
}

#[tokio::test]
async fn the_unique_key_on_platform_ids_is_named_unique_external_message_id() {
    let db = TestDb::new();
    let store = store(&db, 1).await;

    let unique: Vec<(String, String)> = sqlx::query_as(
        "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
         WHERE conrelid = 'conversation_messages'::regclass AND contype = 'u'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();

    assert_eq!(
        unique,
        [(
            "unique_external_message_id".to_owned(),
            "UNIQUE (channel, external_message_id)".to_owned()
        )]
    );
    store.pool().close().await;
}

/// Ids have no linguistic order: compared byte for byte, their indexes cost no
/// locale lookups and survive a C library upgrade that changes collation rules.
#[tokio::test]
async fn ids_and_conversation_keys_compare_byte_for_byte() {
    let db = TestDb::new();
    let store = store(&db, 1).await;

    let bytewise: Vec<String> = sqlx::query_scalar(
        "SELECT attrelid::regclass::text || '.' || attname FROM pg_attribute
         WHERE attrelid IN ('conversation_messages'::regclass, 'reply_batches'::regclass)
           AND attcollation = (SELECT oid FROM pg_collation WHERE collname = 'C')
         ORDER BY 1",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();

    assert_eq!(
        bytewise,
        [
            "conversation_messages.account_id",
            "conversation_messages.batch_id",
            "conversation_messages.channel",
            "conversation_messages.contact_id",
            "conversation_messages.external_message_id",
            "reply_batches.account_id",
            "reply_batches.channel",
            "reply_batches.contact_id",
            "reply_batches.id",
            "reply_batches.status",
        ]
    );
    store.pool().close().await;
}

/// A NUL in a message's platform id or sender (which PostgreSQL's text refuses as
/// it does in the text) must not fail its whole webhook on every retry: the good
/// message beside it would never be stored.
#[tokio::test]
async fn a_nul_character_in_a_message_id_or_sender_does_not_lose_the_message_beside_it() {
    let app = spawn_app().await;
    let mut body: Value = serde_json::from_slice(&whatsapp_text(
        MARIA,
        "wamid.good",
        now_secs(),
        "a good message",
    ))
    .unwrap();
    let messages = body["entry"][0]["changes"][0]["value"]["messages"]
        .as_array_mut()
        .unwrap();
    let mut bad_id = messages[0].clone();
    bad_id["id"] = "wamid.bad\u{0}id".into();
    let mut bad_sender = messages[0].clone();
    bad_sender["id"] = "wamid.bad-sender".into();
    bad_sender["from"] = "1555\u{0}".into();
    messages.push(bad_id);
    messages.push(bad_sender);
    let body = serde_json::to_vec(&body).unwrap();

    let response = app.post_whatsapp(&body).await;

    assert_eq!(response.status().as_u16(), 200);
    let stored = app
        .column("SELECT external_message_id FROM conversation_messages ORDER BY id")
        .await;
    assert!(stored.contains(&"wamid.good".to_owned()), "{stored:?}");
    // A retry of the same POST is a duplicate, not a second copy.
    let again = app.post_whatsapp(&body).await;
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(
        app.count("SELECT count(*) FROM conversation_messages WHERE direction = 'in'")
            .await,
        stored.len() as i64
    );
    app.stop().await;
}
