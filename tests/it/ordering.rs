//! Issue 19: one burst, one reply, in order, after a fault. Messages Redis lost
//! (a loss of its data mid-burst) or never got (a process killed between the
//! webhook's commit and its append) are answered by the burst's next batch,
//! together with the later messages and in platform order, not by a second reply
//! from the reconciler afterwards. The responder is the fake bot, so the test
//! reads exactly what it was asked.

use crate::bot::{BotAnswer, FakeBot, bot_text, use_bot};
use crate::helpers::*;
use lull::batch::AppendMode;
use lull::message::{ChannelKind, Conversation, Direction, InboundMessage, MessageKind};
use lull::store::{NewBatch, Store};
use lull::time::UnixMs;
use serde_json::Value;
use std::time::Duration;

fn maria() -> Conversation {
    Conversation::new(ChannelKind::WhatsApp, PHONE_ID, MARIA)
}

/// The platform ids of the messages a bot request asked about, in its order.
fn asked(request: &Value) -> Vec<String> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn post(app: &TestApp, id: &str, ts: i64, text: &str) {
    let body = whatsapp_text(MARIA, id, ts, text);
    assert_eq!(app.post_whatsapp(&body).await.status(), 200);
}

/// Stores a message in PostgreSQL only, as a process killed between the
/// webhook's commit and its Redis append leaves it.
async fn stored_only(store: &Store, id: &str, ts: i64, text: &str) -> i64 {
    let message = InboundMessage {
        conversation: maria(),
        external_id: id.into(),
        kind: MessageKind::Text,
        text: text.into(),
        timestamp_ms: ts * 1000,
        contact_name: None,
        payload: serde_json::json!({}),
    };
    let rows = store.insert_inbound(vec![(message, true)]).await.unwrap();
    rows[0].as_ref().expect("a new row").id
}

/// The one reply the platform got, then a wait past the window, a scan and a
/// lease, in which no second one may come.
async fn the_only_reply(app: &TestApp) -> String {
    let replies = replies_at_least(&app.graph, 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let all = app.graph.replies();
    assert_eq!(all.len(), 1, "one reply: {all:#?}");
    body(&replies[0])
}

/// The bot request whose answer was sent: the n-th answers `bot_text(n)`.
fn request_answered_by(bot: &FakeBot, reply: &str) -> Value {
    let seen = bot.seen();
    let n = (1..=seen.len())
        .find(|n| bot_text(*n) == reply)
        .unwrap_or_else(|| panic!("no bot request answered {reply}: {seen:#?}"));
    seen[n - 1].body.clone()
}

/// Each inbound message's platform id and the status of the batch that owns it.
async fn owners(app: &TestApp) -> Vec<(String, Option<String>, Option<String>)> {
    sqlx::query_as(
        "SELECT m.external_message_id, m.batch_id, b.status FROM conversation_messages m
         LEFT JOIN reply_batches b ON b.id = m.batch_id
         WHERE m.direction = 'in' ORDER BY m.platform_timestamp, m.id",
    )
    .fetch_all(app.store.pool())
    .await
    .unwrap()
}

/// All three answered by one sent batch.
async fn assert_one_sent_batch_owns(app: &TestApp, ids: &[&str]) {
    let owners = owners(app).await;
    let got: Vec<&str> = owners.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(got, ids);
    let batch = owners[0].1.clone();
    assert!(batch.is_some(), "{owners:?}");
    for (id, owner, status) in &owners {
        assert_eq!(owner, &batch, "{id} answered by the same batch: {owners:?}");
        assert_eq!(status.as_deref(), Some("sent"), "{owners:?}");
    }
}

/// Redis's history of the conversation: each message once, in platform order,
/// the reply after them.
async fn assert_history_in_order(app: &TestApp, ids: &[&str]) {
    let keys = app.redis_batches.keys().conversation(&maria());
    let history = wait_for("the reply in history", PATIENCE, || async {
        let history = app.redis_batches.history(&keys).await.ok()?;
        history
            .iter()
            .any(|e| e.dir == Direction::Outbound)
            .then_some(history)
    })
    .await;
    let said: Vec<&str> = history
        .iter()
        .map(|e| match e.dir {
            Direction::Inbound => e.external_id.as_str(),
            Direction::Outbound => "reply",
        })
        .collect();
    let mut expected = ids.to_vec();
    expected.push("reply");
    assert_eq!(said, expected);
}

#[tokio::test]
async fn redis_losing_its_data_mid_burst_gives_one_reply_to_the_whole_burst_in_order() {
    let bot = FakeBot::start().await;
    let app = spawn_app_with(|c| {
        use_bot(c, &bot);
        // Passes every 0.2 s, for messages older than 1 s: m3's batch is due
        // 0.2 s after m3, so even on a loaded machine it commits before m1 and m2
        // are old enough (as window + lease, the default, ensures in production).
        c.reconcile_interval_seconds = 0.2;
        c.reconcile_min_age_seconds = 1.0;
    })
    .await;
    let ts = now_secs() - 60;
    post(&app, "wamid.m1", ts, "hi").await;
    post(&app, "wamid.m2", ts + 1, "about my order").await;
    // What a restart without persistence or a FLUSHALL looks like to this
    // conversation: every key of it gone, its agenda entry too. (Deleting by
    // prefix scans the whole shared Redis and may outlast the window.)
    app.redis_batches.forget(&maria()).await.unwrap();
    post(&app, "wamid.m3", ts + 2, "it is late").await;

    let reply = the_only_reply(&app).await;
    // The reconciler has had passes enough to batch m1 and m2 again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(app.graph.replies().len(), 1, "none after the reconciler");

    let request = request_answered_by(&bot, &reply);
    assert_eq!(asked(&request), ["wamid.m1", "wamid.m2", "wamid.m3"]);
    let all = ["wamid.m1", "wamid.m2", "wamid.m3"];
    assert_one_sent_batch_owns(&app, &all).await;
    assert_history_in_order(&app, &all).await;
    app.stop().await;
}

#[tokio::test]
async fn a_message_stored_but_never_appended_is_answered_in_order_with_the_burst() {
    let bot = FakeBot::start().await;
    let app = spawn_app_with(|c| use_bot(c, &bot)).await;
    let ts = now_secs() - 60;
    post(&app, "wamid.k1", ts, "hi").await;
    stored_only(&app.store, "wamid.k2", ts + 1, "about my order").await;
    post(&app, "wamid.k3", ts + 2, "it is late").await;

    let reply = the_only_reply(&app).await;

    let request = request_answered_by(&bot, &reply);
    assert_eq!(asked(&request), ["wamid.k1", "wamid.k2", "wamid.k3"]);
    let all = ["wamid.k1", "wamid.k2", "wamid.k3"];
    assert_one_sent_batch_owns(&app, &all).await;
    assert_history_in_order(&app, &all).await;
    app.stop().await;
}

#[tokio::test]
async fn the_last_message_of_a_burst_stored_while_its_webhook_found_redis_down_joins_it() {
    let bot = FakeBot::start().await;
    let app = spawn_app_with(|c| use_bot(c, &bot)).await;
    let ts = now_secs() - 60;
    post(&app, "wamid.d1", ts, "hi").await;
    // Another instance, its Redis breaker open, stored the next one only in
    // PostgreSQL, within d1's window.
    stored_only(&app.store, "wamid.d2", ts + 1, "about my order").await;

    let reply = the_only_reply(&app).await;

    let request = request_answered_by(&bot, &reply);
    assert_eq!(asked(&request), ["wamid.d1", "wamid.d2"]);
    let all = ["wamid.d1", "wamid.d2"];
    assert_one_sent_batch_owns(&app, &all).await;
    assert_history_in_order(&app, &all).await;
    app.stop().await;
}

/// The reconciler put the older messages back in Redis while the burst's batch
/// was generating: they wait as the next batch. The reply takes them; that batch
/// must not be claimed afterwards only to own nothing (a wasted request).
#[tokio::test]
async fn older_messages_a_reply_took_leave_the_batch_collecting_behind_it() {
    let bot = FakeBot::start().await;
    let app = spawn_app_with(|c| {
        use_bot(c, &bot);
        c.batch_supersede = false;
    })
    .await;
    let mut slow = BotAnswer::reply(serde_json::json!({"messages": [{"text": bot_text(1)}]}));
    slow.delay = Duration::from_millis(500);
    bot.script([slow]);
    let ts = now_secs() - 60;
    let older = stored_only(&app.store, "wamid.o1", ts, "hi").await;
    post(&app, "wamid.o2", ts + 1, "it is late").await;
    bot.requests(1).await;
    let entry = app.store.entries(&[older]).await.unwrap().remove(0);
    let appended = app
        .redis_batches
        .append(
            &maria(),
            &entry,
            AppendMode::Message,
            true,
            lull::time::now_ms(),
        )
        .await
        .unwrap();
    assert!(!appended.tracked, "o1 waits as the next batch");

    let reply = the_only_reply(&app).await;

    let request = request_answered_by(&bot, &reply);
    assert_eq!(asked(&request), ["wamid.o1", "wamid.o2"]);
    assert_eq!(
        bot.seen().len(),
        2,
        "o2 alone, then o1 and o2: {:#?}",
        bot.seen()
    );
    assert_one_sent_batch_owns(&app, &["wamid.o1", "wamid.o2"]).await;
    assert_history_in_order(&app, &["wamid.o1", "wamid.o2"]).await;
    let keys = app.redis_batches.keys().conversation(&maria());
    wait_acknowledged(&app, &keys).await;
    let collecting: i64 =
        fred::interfaces::ListInterface::llen(app.redis_batches.pool().next(), &keys.msgs)
            .await
            .unwrap();
    assert_eq!(collecting, 0);
    app.stop().await;
}

/// A batch took older messages at commit, and Redis lost its data before it
/// committed again: its row owns them, so only it can answer them. The
/// reconciler puts it back with all of them, and its reply answers them in order.
#[tokio::test]
async fn a_batch_that_took_older_messages_is_restored_with_them_after_redis_lost_its_data() {
    let bot = FakeBot::start().await;
    let app = spawn_app_with(|c| {
        use_bot(c, &bot);
        c.batch_window_seconds = 60.0;
        c.reconcile_interval_seconds = 0.2;
        c.reconcile_min_age_seconds = 0.3;
    })
    .await;
    let ts = now_secs() - 60;
    let ids = [
        stored_only(&app.store, "wamid.r1", ts, "hi").await,
        stored_only(&app.store, "wamid.r2", ts + 1, "about my order").await,
        stored_only(&app.store, "wamid.r3", ts + 2, "it is late").await,
    ];
    let now = UnixMs::now();
    let batch = NewBatch {
        id: "batch-took-older".into(),
        conversation: maria(),
        message_ids: vec![ids[2]],
        claims: 1,
        supersedes: 0,
        started_ms: now,
        due_ms: now,
        claimed_ms: now,
    };
    let owned = app
        .store
        .begin_sending(&batch, &[ids[2]], "answers r3 alone")
        .await
        .unwrap()
        .owned();
    assert_eq!(owned, ids, "it took r1 and r2");

    let reply = the_only_reply(&app).await;

    let request = request_answered_by(&bot, &reply);
    assert_eq!(asked(&request), ["wamid.r1", "wamid.r2", "wamid.r3"]);
    let sent = app.store.batch("batch-took-older").await.unwrap().unwrap();
    assert_eq!(
        (sent.status.as_str(), sent.message_ids),
        ("sent", ids.to_vec())
    );
    assert_eq!(app.metrics.counter("lull_batches_restored_total", &[]), 1);
    assert_one_sent_batch_owns(&app, &["wamid.r1", "wamid.r2", "wamid.r3"]).await;
    app.stop().await;
}
