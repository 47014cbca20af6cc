//! The reconciler's pass: stored messages that Redis does not track are batched
//! again, and a shutdown does not wait for a long pass to end.

use crate::helpers::*;
use lull::app::App;
use lull::message::{ChannelKind, Conversation, InboundMessage, MessageKind};
use lull::store::InboundRows;
use tokio_util::sync::CancellationToken;

/// Three messages from three people, stored but never batched (as while Redis
/// was down), under an app built but not run, whose reconciler takes them at once.
async fn three_untracked_messages(db: &TestDb, prefix: &str) -> App {
    let graph = crate::fake_graph::FakeGraph::start().await;
    let mut config = test_config(db, &graph, prefix);
    config.reconcile_min_age_seconds = 0.001;
    let app = App::build(config).await.expect("app builds");
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
async fn a_reconcile_pass_batches_nothing_more_once_stop_has_fired() {
    let (db, prefix) = (TestDb::new(), TestPrefix::new("test:"));
    let app = three_untracked_messages(&db, &prefix).await;
    let reconciler = app.reconciler().unwrap();

    let stopped = CancellationToken::new();
    stopped.cancel();
    assert_eq!(reconciler.reconcile_once(&stopped).await.unwrap(), 0);
    assert_eq!(
        app.metrics().counter("lull_messages_reconciled_total", &[]),
        0
    );

    // Left for the next pass, which takes them all.
    let running = CancellationToken::new();
    assert_eq!(reconciler.reconcile_once(&running).await.unwrap(), 3);
    app.batcher().quit().await;
    app.store().pool().close().await;
}
