//! The reconciler's pass: stored messages that Redis does not track are batched
//! again, and a shutdown does not wait for a long pass to end.

use crate::helpers::*;
use lull::app::App;
use lull::message::{ChannelKind, Conversation, InboundMessage, MessageKind};
use lull::store::InboundRows;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Three messages from three people, stored but never batched (as while Redis
/// was down), under an app built but not run, whose reconciler takes them at once.
async fn three_untracked_messages(db: &TestDb, prefix: &str) -> App {
    let graph = crate::fake_platforms::fake_graph().await;
    let mut config = test_config(db, &graph, prefix);
    config.reconcile_min_age_seconds = 0.001;
    let settings = config.parse_settings().expect("valid settings");
    let app = App::build(settings).await.expect("app builds");
    let rows: InboundRows = (0..3)
        .map(|i| {
            let message = InboundMessage {
                conversation: Conversation::new(
                    ChannelKind::WhatsApp,
                    PHONE_ID,
                    format!("1555000900{i}"),
                ),
                external_id: format!("wamid.untracked{i}"),
                kind: MessageKind::Text,
                text: format!("message {i}"),
                timestamp_ms: lull::time::now_ms(),
                contact_name: None,
                payload: serde_json::json!({}),
            };
            (message, true)
        })
        .collect();
    let stored = app.store().insert_inbound(rows).await.unwrap();
    assert!(stored.iter().all(Option::is_some));
    app
}

#[tokio::test]
async fn a_reconcile_pass_told_to_stop_ends_before_the_next_message() {
    let (db, prefix) = (TestDb::new(), TestPrefix::new("test:"));
    let app = three_untracked_messages(&db, &prefix).await;
    let reconciler = app.reconciler();

    // Shutdown comes while the first message is being batched: the pass asks
    // before the page, before each message (the first: go on; the second: stop).
    let asked = AtomicUsize::new(0);
    let until_the_second_message = || asked.fetch_add(1, Ordering::SeqCst) < 2;
    assert_eq!(
        reconciler
            .reconcile_once(&until_the_second_message)
            .await
            .unwrap(),
        1
    );
    assert_eq!(asked.load(Ordering::SeqCst), 4, "page, 2 messages, restore");

    // The rest wait for the next pass.
    assert_eq!(reconciler.reconcile_once(&|| true).await.unwrap(), 2);
    assert_eq!(
        app.metrics().counter("lull_messages_reconciled_total", &[]),
        3
    );
    app.redis_batches().quit().await;
    app.store().pool().close().await;
}

#[tokio::test]
async fn a_conversation_old_enough_is_batched_again_with_its_younger_messages() {
    let (db, prefix) = (TestDb::new(), TestPrefix::new("test:"));
    let graph = crate::fake_platforms::fake_graph().await;
    let mut config = test_config(&db, &graph, &prefix);
    config.reconcile_min_age_seconds = 5.0;
    let app = App::build(config.parse_settings().unwrap()).await.unwrap();
    let message = |contact: &str, n: i64| InboundMessage {
        conversation: Conversation::new(ChannelKind::WhatsApp, PHONE_ID, contact),
        external_id: format!("wamid.{contact}.{n}"),
        kind: MessageKind::Text,
        text: format!("message {n}"),
        timestamp_ms: lull::time::now_ms() + n,
        contact_name: None,
        payload: serde_json::json!({}),
    };
    let rows: InboundRows = vec![
        (message("15550009100", 1), true),
        (message("15550009100", 2), true),
        (message("15550009101", 1), true),
    ]
    .into();
    let stored = app.store().insert_inbound(rows).await.unwrap();
    let first = stored[0].as_ref().unwrap().id;
    // The burst's first message is old; its second, and the other person's
    // message, are younger than the min age.
    sqlx::query(
        "UPDATE conversation_messages SET webhook_received_at = now() - interval '10 s'
         WHERE id = $1",
    )
    .bind(first)
    .execute(app.store().pool())
    .await
    .unwrap();

    let rebatched = app.reconciler().reconcile_once(&|| true).await.unwrap();

    assert_eq!(rebatched, 2, "the whole burst, not the other conversation");
    let keys = app.redis_batches().keys().conversation(&Conversation::new(
        ChannelKind::WhatsApp,
        PHONE_ID,
        "15550009100",
    ));
    let collecting: i64 =
        fred::interfaces::ListInterface::llen(app.redis_batches().pool().next(), &keys.msgs)
            .await
            .unwrap();
    assert_eq!(collecting, 2, "one batch collects both");
    app.redis_batches().quit().await;
    app.store().pool().close().await;
}
