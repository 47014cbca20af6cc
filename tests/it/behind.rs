//! A batch left unfinished when Redis lost its data (committed, being sent, its
//! worker gone) is answered before the conversation's next batch, never after it
//! (invariant 5 of docs/design.md): the next batch's commit finds it, and puts it
//! back in flight ahead of itself, or waits while its worker may still be alive.

use crate::bot::{FakeBot, bot_text, use_bot};
use crate::helpers::*;
use lull::message::{ChannelKind, Conversation, InboundMessage, MessageKind};
use lull::store::{NewBatch, Store};
use lull::time::UnixMs;
use std::time::Duration;

fn maria() -> Conversation {
    Conversation::new(ChannelKind::WhatsApp, PHONE_ID, MARIA)
}

/// Commits a reply to a stored message as batch `id`, as a worker does before it
/// sends; nothing of it is in Redis, as after Redis lost its data.
async fn committed_in_postgres_only(store: &Store, id: &str, external_id: &str, ts: i64) {
    let message = InboundMessage {
        conversation: maria(),
        external_id: external_id.into(),
        kind: MessageKind::Text,
        text: "hi".into(),
        timestamp_ms: ts * 1000,
        contact_name: None,
        payload: serde_json::json!({}),
    };
    let rows = store.insert_inbound(vec![(message, true)]).await.unwrap();
    let stored = rows[0].as_ref().expect("a new row").id;
    let now = UnixMs::now();
    let batch = NewBatch {
        id: id.into(),
        conversation: maria(),
        message_ids: vec![stored],
        claims: 1,
        supersedes: 0,
        started_ms: now,
        due_ms: now,
        claimed_ms: now,
    };
    let owned = store
        .begin_sending(&batch, &[stored], "The first reply.")
        .await;
    assert_eq!(owned.unwrap().owned(), [stored]);
}

async fn post(app: &TestApp, id: &str, ts: i64, text: &str) {
    let body = whatsapp_text(MARIA, id, ts, text);
    assert_eq!(app.post_whatsapp(&body).await.status(), 200);
}

#[tokio::test]
async fn a_reply_left_unfinished_when_redis_lost_it_goes_out_before_the_next_one() {
    let bot = FakeBot::start().await;
    let app = spawn_app_with(|c| {
        use_bot(c, &bot);
        // Unchanged for 0.3 s, a batch has no live worker; the reconciler never
        // runs, so only the next batch can bring it back.
        c.reconcile_min_age_seconds = 0.3;
    })
    .await;
    let ts = now_secs() - 60;
    committed_in_postgres_only(&app.store, "batch-unfinished", "wamid.u1", ts).await;
    tokio::time::sleep(Duration::from_millis(400)).await;

    post(&app, "wamid.u2", ts + 1, "are you there?").await;

    let replies = replies_at_least(&app.graph, 2).await;
    let texts: Vec<String> = replies.iter().map(body).collect();
    assert_eq!(texts[0], "The first reply.", "{texts:?}");
    assert_eq!(texts[1..], [bot_text(bot.seen().len())], "{texts:?}");
    let resumed = app.store.batch("batch-unfinished").await.unwrap().unwrap();
    assert_eq!(resumed.status.as_str(), "sent");
    assert_eq!(app.metrics.counter("lull_batches_behind_total", &[]), 1);
    let last = bot.seen().last().unwrap().body.clone();
    let asked: Vec<&str> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform_id"].as_str().unwrap())
        .collect();
    assert_eq!(asked, ["wamid.u2"], "the next reply answers only u2");
    app.stop().await;
}

#[tokio::test]
async fn the_next_batch_waits_while_the_unfinished_reply_may_still_be_being_sent() {
    let bot = FakeBot::start().await;
    let app = spawn_app_with(|c| {
        use_bot(c, &bot);
        c.reconcile_min_age_seconds = 60.0;
    })
    .await;
    let ts = now_secs() - 60;
    committed_in_postgres_only(&app.store, "batch-in-flight", "wamid.w1", ts).await;

    post(&app, "wamid.w2", ts + 1, "are you there?").await;
    wait_for("the next batch to wait", PATIENCE, || async {
        (app.metrics.counter("lull_batches_behind_total", &[]) >= 1).then_some(())
    })
    .await;
    assert!(
        app.graph.replies().is_empty(),
        "nothing sent while it waits"
    );
    // Its live worker records the send; the waiting batch's lease runs out (2 s)
    // and it is claimed again.
    let parts = [("wamid.first".to_owned(), "The first reply.".to_owned())];
    let (conversation, id) = (maria(), "batch-in-flight".into());
    let recorded = app
        .store
        .record_sent(&conversation, &id, 1, &parts, UnixMs::now());
    recorded.await.unwrap();

    let replies = replies_at_least(&app.graph, 1).await;
    assert_eq!(body(&replies[0]), bot_text(bot.seen().len()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.graph.replies().len(),
        1,
        "the first reply is not sent again"
    );
    app.stop().await;
}
