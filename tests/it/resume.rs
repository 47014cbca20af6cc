//! A reply that was being sent when its instance stopped is resumed elsewhere as the
//! same text, without sending again the parts that went out.

use crate::fake_platforms::Answer;
use crate::helpers::*;

#[tokio::test]
async fn a_reply_handed_back_mid_send_is_resumed_without_resending_its_sent_parts() {
    let mut first = spawn_app_with(|c| {
        c.batch_window_seconds = 0.5;
        // The second part's retry waits far longer than the drain time.
        c.send_retry_base_ms = 20_000;
        c.shutdown_drain_seconds = 0.3;
    })
    .await;
    first.graph.script([
        Answer::new(
            200,
            r#"{"messaging_product":"whatsapp","messages":[{"id":"wamid.part1"}]}"#,
        ),
        Answer::error(500, "<html>Internal Server Error</html>"),
    ]);
    // 25 quoted messages of 200 characters: a reply over 4096 characters, two parts.
    let ts = now_secs();
    for i in 0..25 {
        let text = format!("{i:02} {}", "x".repeat(200));
        let body = whatsapp_text(MARIA, &format!("wamid.long{i}"), ts, &text);
        assert_eq!(first.post_whatsapp(&body).await.status(), 200);
    }
    wait_for("the second part's retry", PATIENCE, || async {
        (first.metrics.counter("lull_send_retries_total", &[]) >= 1).then_some(())
    })
    .await;
    first.shut_down().await;
    // The stopped instance closed its pool: look with a store of our own.
    let store = lull::store::Store::connect(&first.db.url, 1, Default::default())
        .await
        .unwrap();
    let handed_back = store.recent_batches(1).await.unwrap().remove(0);
    assert_eq!(handed_back.status, "sending");
    assert_eq!(
        handed_back.platform_message_ids,
        ["wamid.part1"],
        "the part sent is recorded"
    );

    let second = spawn_app_sharing(&first, |_| {}).await;
    let sent = batch_with_status(&second, "sent").await;
    assert_eq!(sent.id, handed_back.id, "resumed under the same batch id");
    assert_eq!(sent.claims, 2);
    assert_eq!(sent.platform_message_ids.len(), 2);
    assert_eq!(sent.platform_message_ids[0], "wamid.part1");
    assert_eq!(sent.message_ids.len(), 25);

    let sends: Vec<String> = first
        .graph
        .replies()
        .iter()
        .map(|r| r.body["text"]["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sends.len(), 3, "part 1, part 2 refused, part 2 again");
    assert_ne!(sends[0], sends[1]);
    assert_eq!(
        sends[1], sends[2],
        "the resumed part is the committed text's"
    );
    let committed = sent.reply_text.unwrap();
    assert!(committed.starts_with(&sends[0]) && committed.ends_with(&sends[2]));
    assert!(committed.contains("“00 ") && committed.contains("“24 "));
    second.stop().await;
}

#[tokio::test]
async fn a_reply_being_sent_when_redis_lost_its_data_is_put_back_and_resumed() {
    let mut first = spawn_app_with(|c| {
        c.send_retry_base_ms = 20_000;
        c.shutdown_drain_seconds = 0.3;
    })
    .await;
    first
        .graph
        .script([Answer::error(500, "<html>Internal Server Error</html>")]);
    first
        .post_whatsapp(&fixture("whatsapp/text_single.json"))
        .await;
    wait_for("the send's retry", PATIENCE, || async {
        (first.metrics.counter("lull_send_retries_total", &[]) >= 1).then_some(())
    })
    .await;
    first.shut_down().await;

    // Redis restarts without persistence: everything of the conversation is gone,
    // while PostgreSQL holds the batch as sending and its message as answered by it.
    let keys = first
        .redis_batches
        .keys()
        .for_member(&format!("whatsapp:{PHONE_ID}:{MARIA}"));
    let redis = lull::batch::RedisBatches::connect(
        &redis_url(),
        1,
        std::time::Duration::from_secs(2),
        &first.prefix,
        1,
        first.redis_batches.policy().clone(),
    )
    .await
    .unwrap();
    let gone: i64 = fred::interfaces::KeysInterface::del(
        redis.pool().next(),
        vec![
            keys.history.clone(),
            keys.msgs.clone(),
            keys.inflight.clone(),
            keys.deadline.clone(),
            keys.lock.clone(),
            keys.state.clone(),
            keys.agenda.clone(),
        ],
    )
    .await
    .unwrap();
    assert!(gone >= 3, "the in-flight batch was in Redis");

    let second = spawn_app_sharing(&first, |c| {
        c.reconcile_interval_seconds = 0.2;
        c.reconcile_min_age_seconds = 0.1;
    })
    .await;
    let sent = batch_with_status(&second, "sent").await;
    assert_eq!(sent.message_ids.len(), 1);
    assert_eq!(
        second.metrics.counter("lull_batches_restored_total", &[]),
        1
    );
    let sends = first.graph.replies();
    assert_eq!(sends.len(), 2, "the refused send, then the resumed one");
    assert_eq!(
        sends[0].body["text"], sends[1].body["text"],
        "the committed text"
    );
    assert_eq!(
        second.count("SELECT count(*) FROM reply_batches").await,
        1,
        "no second batch for the same message"
    );
    second.stop().await;
}

/// A batch that found one of its messages answered by another keeps the rest and is
/// to be generated again for them. If Redis loses its data just then, nothing but
/// the batch can answer them (they are its own in PostgreSQL): the reconciler puts
/// it back, and they get their reply.
#[tokio::test]
async fn messages_a_batch_kept_for_itself_are_answered_after_redis_lost_its_data() {
    // Nothing falls due on its own: only the reconciler acts.
    let app = spawn_app_with(|c| {
        c.batch_window_seconds = 60.0;
        c.reconcile_interval_seconds = 0.2;
        c.reconcile_min_age_seconds = 0.3;
    })
    .await;
    let ts = now_secs() - 60;
    // Due before the messages came: neither batch takes the other's newer one.
    let due = lull::time::UnixMs::now();
    // The one answered elsewhere is the older: a batch answering the newer would
    // take the older too (invariant 14).
    for (id, text) in [
        ("wamid.taken", "hello?"),
        ("wamid.kept", "is my order late?"),
    ] {
        let body = whatsapp_text(MARIA, id, ts, text);
        assert_eq!(app.post_whatsapp(&body).await.status(), 200);
    }
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM conversation_messages WHERE direction = 'in' ORDER BY id",
    )
    .fetch_all(app.store.pool())
    .await
    .unwrap();
    let (taken, kept) = (ids[0], ids[1]);
    let maria =
        lull::message::Conversation::new(lull::message::ChannelKind::WhatsApp, PHONE_ID, MARIA);
    let batch = |id: &str, message_ids: Vec<i64>| {
        let now = lull::time::UnixMs::now();
        lull::store::NewBatch {
            id: id.into(),
            conversation: maria.clone(),
            message_ids,
            claims: 1,
            supersedes: 0,
            started_ms: now,
            due_ms: due,
            claimed_ms: now,
        }
    };
    // Another batch answered the second message; this one takes only the first.
    let other = batch("batch-other", vec![taken]);
    app.store
        .begin_sending(&other, &[taken], "hi!")
        .await
        .unwrap();
    let parts = [("wamid.other-reply".to_owned(), "hi!".to_owned())];
    app.store
        .record_sent(
            &maria,
            &"batch-other".into(),
            1,
            &parts,
            lull::time::UnixMs::now(),
        )
        .await
        .unwrap();
    let partial = batch("batch-partial", vec![taken, kept]);
    let owned = app
        .store
        .begin_sending(&partial, &[taken, kept], "hello and your order")
        .await
        .unwrap()
        .owned();
    assert_eq!(owned, [kept], "it owns only the second");
    // Redis restarts without persistence.
    lull::batch::cleanup::delete_keys_at(&redis_url(), &app.prefix)
        .await
        .unwrap();

    let replies = replies_at_least(&app.graph, 1).await;
    assert_eq!(replies[0].body["to"], MARIA);
    let text = replies[0].body["text"]["body"].as_str().unwrap();
    assert!(text.contains("is my order late?"), "{text}");
    assert!(
        !text.contains("hello?"),
        "the other batch's message: {text}"
    );
    let sent = wait_for("the batch sent", PATIENCE, || async {
        let row = app.store.batch("batch-partial").await.unwrap();
        row.filter(|b| b.status == "sent")
    })
    .await;
    assert_eq!(sent.message_ids, [kept]);
    settle().await;
    assert_eq!(app.graph.replies().len(), 1);
    app.stop().await;
}

/// Invariants 2 and 3 across a resume: a message that arrives while a reply waits
/// to be resumed joins its claim in Redis, but the resumed reply is the committed
/// text for its own messages only; the newer message gets the next reply, after it.
#[tokio::test]
async fn a_message_that_arrives_while_a_reply_waits_to_be_resumed_gets_the_next_reply() {
    // One attempt per claim: the refused send leaves the reply in flight until its
    // lease (2 s) runs out.
    let app = spawn_app_with(|c| c.send_max_attempts = 1).await;
    app.graph
        .script([Answer::error(503, "<html>Service Unavailable</html>")]);
    let ts = now_secs() - 60;
    let first = whatsapp_text(MARIA, "wamid.before-resume", ts, "first question");
    assert_eq!(app.post_whatsapp(&first).await.status(), 200);
    wait_for("the refused send", PATIENCE, || async {
        (!app.graph.replies().is_empty()).then_some(())
    })
    .await;
    let second = whatsapp_text(MARIA, "wamid.during-resume", ts + 1, "second thought");
    assert_eq!(app.post_whatsapp(&second).await.status(), 200);

    let replies = replies_at_least(&app.graph, 3).await;
    settle().await;
    assert_eq!(app.graph.replies().len(), 3, "refused, resumed, next");
    let text = |n: usize| replies[n].body["text"]["body"].as_str().unwrap().to_owned();
    assert_eq!(text(0), text(1), "the resume sends the committed text");
    assert!(!text(1).contains("second thought"), "{}", text(1));
    assert!(text(2).contains("second thought") && !text(2).contains("first question"));
    let answered: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.external_message_id, b.status FROM conversation_messages m
         JOIN reply_batches b ON b.id = m.batch_id
         WHERE m.direction = 'in' ORDER BY m.id",
    )
    .fetch_all(app.store.pool())
    .await
    .unwrap();
    assert_eq!(
        answered,
        [
            ("wamid.before-resume".to_owned(), "sent".to_owned()),
            ("wamid.during-resume".to_owned(), "sent".to_owned()),
        ]
    );
    let batches = app
        .count("SELECT count(DISTINCT batch_id) FROM conversation_messages WHERE direction = 'in'")
        .await;
    assert_eq!(batches, 2, "each message answered by its own batch");
    app.stop().await;
}
