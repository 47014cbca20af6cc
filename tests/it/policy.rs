//! Issue 4: the batching policy, end to end: the max-wait cap, the max-size flush,
//! the menu-choice grace, supersede on and off, platform order, the typing
//! indicator and reactions.
//!
//! Timing assertions have strict lower bounds (a reply never comes early) and
//! generous upper bounds (a loaded 2-core machine may be slow, but a wrong policy
//! is slower by whole windows).

use crate::fake_platforms::{Answer, Received, TOKEN};
use crate::helpers::*;
use fred::interfaces::SortedSetsInterface;
use lull::batch::ConversationKeys;
use lull::message::{Direction, MessageKind};
use lull::store::BatchRow;
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(15);
/// The slow responder's generation time.
const GENERATION: Duration = Duration::from_millis(800);

/// How the built-in responder quotes a message.
fn quoted(text: &str) -> String {
    format!("“{text}”")
}

/// Where `part` is in `text`; panics when it is missing.
fn position(text: &str, part: &str) -> usize {
    text.find(part)
        .unwrap_or_else(|| panic!("{text:?} lacks {part:?}"))
}

fn maria_keys(app: &TestApp) -> ConversationKeys {
    app.redis_batches
        .keys()
        .for_member(&format!("whatsapp:{PHONE_ID}:{MARIA}"))
}

/// Maria's score on the agenda, if she is on it.
async fn agenda_score(app: &TestApp) -> Option<f64> {
    let keys = maria_keys(app);
    app.redis_batches
        .pool()
        .next()
        .zscore(&keys.agenda, &keys.member)
        .await
        .unwrap()
}

/// Every reply batch, oldest claim first.
async fn batches(app: &TestApp) -> Vec<BatchRow> {
    let mut rows = app.store.recent_batches(100).await.unwrap();
    rows.reverse();
    rows
}

/// Waits until `n` batches are sent and the conversation is released in Redis.
async fn sent_batches(app: &TestApp, n: usize) -> Vec<BatchRow> {
    let rows = wait_for(&format!("{n} sent batches"), PATIENCE, || async {
        let rows = batches(app).await;
        (rows.iter().filter(|b| b.status == "sent").count() >= n).then_some(rows)
    })
    .await;
    wait_for("the lock released", PATIENCE, || async {
        agenda_score(app).await.is_none().then_some(())
    })
    .await;
    rows
}

#[tokio::test]
async fn continuous_typing_is_answered_at_the_max_wait_with_everything_so_far() {
    let window = Duration::from_millis(400);
    let max_wait = Duration::from_secs(1);
    let app = spawn_app_with(|c| {
        c.batch_window_seconds = window.as_secs_f64();
        c.batch_max_wait_seconds = max_wait.as_secs_f64();
    })
    .await;
    let ts = now_secs() - 60;
    let start = Instant::now();
    // A message every half window, on a fixed schedule, for longer than max wait:
    // without the cap the window would never close while she types.
    let mut posted = Vec::new();
    let mut tick = tokio::time::interval(window / 2);
    for i in 0..10 {
        tick.tick().await;
        let text = format!("typing {i:02}");
        let response = app
            .post_whatsapp(&whatsapp_text(
                MARIA,
                &format!("wamid.typing{i}"),
                ts + i,
                &text,
            ))
            .await;
        assert_eq!(response.status(), 200);
        posted.push((text, start.elapsed()));
    }
    assert!(
        start.elapsed() > max_wait + window,
        "the typing outlasted max wait"
    );

    let replies = replies_within(&app.graph, 1, PATIENCE).await;
    let first = &replies[0];
    let at = first.at.duration_since(start);
    assert!(at + CLOCK_SLACK >= max_wait, "not before max wait: {at:?}");
    assert!(
        at < max_wait + Duration::from_millis(600),
        "at max wait, not at the window after the last message: {at:?}"
    );
    let text = body(first);
    // Every message acknowledged before the cap was reached is in the first reply.
    for (part, done) in &posted {
        if *done < max_wait {
            position(&text, &quoted(part));
        }
    }

    // The rest is answered next, and every message exactly once.
    let rows = sent_batches(&app, 2).await;
    let ids: usize = rows.iter().map(|b| b.message_ids.len()).sum();
    assert_eq!(ids, posted.len(), "{rows:?}");
    let all: Vec<String> = app.graph.replies().iter().map(body).collect();
    for (part, _) in &posted {
        let times: usize = all.iter().map(|r| r.matches(&quoted(part)).count()).sum();
        assert_eq!(times, 1, "{part} answered once: {all:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_full_batch_is_answered_without_waiting_for_the_window() {
    let window = Duration::from_secs(5);
    let app = spawn_app_with(|c| {
        c.batch_window_seconds = window.as_secs_f64();
        c.batch_max_messages = 3;
    })
    .await;
    let ts = now_secs() - 60;
    for i in 0..3 {
        let body = whatsapp_text(MARIA, &format!("wamid.full{i}"), ts + i, &format!("n{i}"));
        assert_eq!(app.post_whatsapp(&body).await.status(), 200);
    }
    let last_post = Instant::now();
    let replies = replies_within(&app.graph, 1, PATIENCE).await;
    assert!(
        replies[0].at.duration_since(last_post) < Duration::from_secs(2),
        "answered at once, not after the {window:?} window"
    );
    let text = body(&replies[0]);
    for i in 0..3 {
        position(&text, &quoted(&format!("n{i}")));
    }
    let rows = sent_batches(&app, 1).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].message_ids.len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn a_button_reply_is_answered_after_the_grace_not_the_window() {
    let grace = Duration::from_millis(100);
    let app = spawn_app_with(|c| {
        c.batch_window_seconds = 5.0;
        c.batch_choice_grace_ms = grace.as_millis() as u64;
    })
    .await;
    // A question first (alone it would wait the whole window), then the tap;
    // the fixture's tap is at 1767262060.
    let question = whatsapp_text(MARIA, "wamid.before-tap", 1_767_262_050, "where is it?");
    assert_eq!(app.post_whatsapp(&question).await.status(), 200);
    let tapped = Instant::now();
    let response = app
        .post_whatsapp(&fixture("whatsapp/interactive_button_reply.json"))
        .await;
    assert_eq!(response.status(), 200);

    let replies = replies_within(&app.graph, 1, PATIENCE).await;
    let at = replies[0].at.duration_since(tapped);
    assert!(at + CLOCK_SLACK >= grace, "not before the grace: {at:?}");
    assert!(
        at < Duration::from_secs(2),
        "after the grace, not the window: {at:?}"
    );
    let text = body(&replies[0]);
    assert!(
        position(&text, &quoted("where is it?"))
            < position(&text, &quoted("[choice id=track-order] Track order")),
        "{text}"
    );
    let kinds = app
        .column("SELECT message_type FROM conversation_messages WHERE direction = 'in' ORDER BY id")
        .await;
    assert_eq!(kinds, ["text", "choice"]);
    app.stop().await;
}

/// Posts one message, waits for its batch to be claimed (generation under way),
/// then posts a second one; returns when the second POST started.
async fn second_message_during_generation(app: &TestApp) -> Instant {
    let ts = now_secs() - 60;
    let first = whatsapp_text(MARIA, "wamid.gen-a", ts, "first thought");
    assert_eq!(app.post_whatsapp(&first).await.status(), 200);
    wait_for("the first batch claimed", PATIENCE, || async {
        (!batches(app).await.is_empty()).then_some(())
    })
    .await;
    assert!(
        app.graph.replies().is_empty(),
        "the reply is still generating"
    );
    let second = whatsapp_text(MARIA, "wamid.gen-b", ts + 1, "second thought");
    let posted = Instant::now();
    assert_eq!(app.post_whatsapp(&second).await.status(), 200);
    posted
}

#[tokio::test]
async fn with_supersede_a_message_during_generation_joins_one_reply() {
    let app = spawn_app_with(|c| {
        c.batch_supersede = true;
        c.responder_delay_ms = GENERATION.as_millis() as u64;
    })
    .await;
    let second_posted = second_message_during_generation(&app).await;

    let replies = replies_within(&app.graph, 1, PATIENCE).await;
    // The new message's window, then a whole new generation.
    let at = replies[0].at.duration_since(second_posted);
    assert!(at + CLOCK_SLACK >= WINDOW + GENERATION, "{at:?}");
    let rows = sent_batches(&app, 1).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(app.graph.replies().len(), 1, "exactly one reply");
    let text = body(&replies[0]);
    assert!(
        position(&text, &quoted("first thought")) < position(&text, &quoted("second thought")),
        "{text}"
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    let batch = &rows[0];
    assert_eq!(batch.status, "sent");
    assert_eq!(batch.supersedes, 1);
    assert_eq!(batch.claims, 2);
    assert_eq!(batch.message_ids.len(), 2);
    assert_eq!(batch.reply_text.as_deref(), Some(text.as_str()));
    app.stop().await;
}

#[tokio::test]
async fn without_supersede_a_message_during_generation_is_the_next_reply_in_order() {
    let app = spawn_app_with(|c| {
        c.batch_supersede = false;
        c.responder_delay_ms = GENERATION.as_millis() as u64;
    })
    .await;
    second_message_during_generation(&app).await;

    let replies = replies_within(&app.graph, 2, PATIENCE).await;
    let rows = sent_batches(&app, 2).await;
    assert_eq!(app.graph.replies().len(), 2);
    let (first, second) = (body(&replies[0]), body(&replies[1]));
    assert!(replies[0].at < replies[1].at);
    assert!(
        first.contains(&quoted("first thought")) && !first.contains(&quoted("second thought")),
        "{first}"
    );
    assert!(
        second.contains(&quoted("second thought")) && !second.contains(&quoted("first thought")),
        "{second}"
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|b| b.supersedes == 0 && b.claims == 1));
    // One reply generated at a time: the second batch was claimed after the first went out.
    // (claimed_at is whole ms of lull's clock, sent_at the database's now())
    let first_sent = rows[0].sent_at.expect("first sent") - chrono::Duration::milliseconds(1);
    assert!(
        rows[1].claimed_at >= first_sent,
        "{:?} claimed before {first_sent:?}",
        rows[1].claimed_at
    );
    app.stop().await;
}

#[tokio::test]
async fn after_max_supersedes_the_reply_goes_out_and_newer_messages_wait() {
    let app = spawn_app_with(|c| {
        c.batch_supersede = true;
        c.batch_max_supersedes = 1;
        c.responder_delay_ms = GENERATION.as_millis() as u64;
    })
    .await;
    second_message_during_generation(&app).await;
    wait_for("the batch claimed again", PATIENCE, || async {
        let rows = batches(&app).await;
        rows.first().is_some_and(|b| b.claims == 2).then_some(())
    })
    .await;
    let third = whatsapp_text(MARIA, "wamid.gen-c", now_secs(), "third thought");
    assert_eq!(app.post_whatsapp(&third).await.status(), 200);

    let replies = replies_within(&app.graph, 2, PATIENCE).await;
    let rows = sent_batches(&app, 2).await;
    let (first, second) = (body(&replies[0]), body(&replies[1]));
    assert!(
        first.contains(&quoted("first thought"))
            && first.contains(&quoted("second thought"))
            && !first.contains(&quoted("third thought")),
        "{first}"
    );
    assert!(
        second.contains(&quoted("third thought")) && !second.contains(&quoted("first thought")),
        "{second}"
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!((rows[0].supersedes, rows[0].claims), (1, 2));
    assert_eq!((rows[1].supersedes, rows[1].claims), (0, 1));
    app.stop().await;
}

#[tokio::test]
async fn a_burst_delivered_out_of_order_is_answered_and_remembered_in_platform_order() {
    let app = spawn_app().await;
    let ts = now_secs() - 60;
    // The platform's webhooks overtake each other: the latest message comes first.
    for (i, text) in [(2, "third"), (0, "first"), (1, "second")] {
        let body = whatsapp_text(MARIA, &format!("wamid.order{i}"), ts + i, text);
        assert_eq!(app.post_whatsapp(&body).await.status(), 200);
    }
    let replies = replies_within(&app.graph, 1, PATIENCE).await;
    let text = body(&replies[0]);
    let at: Vec<usize> = ["first", "second", "third"]
        .iter()
        .map(|t| position(&text, &quoted(t)))
        .collect();
    assert!(at[0] < at[1] && at[1] < at[2], "{text}");

    let rows = sent_batches(&app, 1).await;
    let external_ids: Vec<String> = sqlx::query_scalar(
        "SELECT m.external_message_id
         FROM unnest($1::bigint[]) WITH ORDINALITY AS b(id, n)
         JOIN conversation_messages m ON m.id = b.id
         ORDER BY b.n",
    )
    .bind(&rows[0].message_ids)
    .fetch_all(app.store.pool())
    .await
    .unwrap();
    assert_eq!(
        external_ids,
        ["wamid.order0", "wamid.order1", "wamid.order2"]
    );

    let history = app.redis_batches.history(&maria_keys(&app)).await.unwrap();
    let texts: Vec<&str> = history.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(texts.len(), 4, "{texts:?}");
    assert_eq!(texts[..3], ["first", "second", "third"]);
    assert_eq!(history[3].dir, Direction::Outbound);
    assert!(history.windows(2).all(|w| w[0].ts <= w[1].ts), "{texts:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_message_older_than_the_last_reply_goes_to_history_in_order_and_the_next_batch() {
    let app = spawn_app().await;
    let ts = now_secs() - 60;
    for (i, text) in [(0, "hello"), (1, "anyone there?")] {
        let body = whatsapp_text(MARIA, &format!("wamid.late{i}"), ts + i, text);
        app.post_whatsapp(&body).await;
    }
    replies_within(&app.graph, 1, PATIENCE).await;
    sent_batches(&app, 1).await;

    // Delivered only now, but written before everything above.
    let late = whatsapp_text(MARIA, "wamid.late-old", ts - 30, "sorry, forgot this");
    assert_eq!(app.post_whatsapp(&late).await.status(), 200);
    let replies = replies_within(&app.graph, 2, PATIENCE).await;
    let second = body(&replies[1]);
    assert!(second.contains(&quoted("sorry, forgot this")), "{second}");
    assert!(!second.contains(&quoted("hello")), "{second}");

    sent_batches(&app, 2).await;
    let history = app.redis_batches.history(&maria_keys(&app)).await.unwrap();
    let texts: Vec<&str> = history.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(texts.len(), 5, "{texts:?}");
    assert_eq!(texts[..3], ["sorry, forgot this", "hello", "anyone there?"]);
    let dirs: Vec<Direction> = history.iter().map(|e| e.dir).collect();
    assert_eq!(
        dirs,
        [
            Direction::Inbound,
            Direction::Inbound,
            Direction::Inbound,
            Direction::Outbound,
            Direction::Outbound
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_claimed_batch_marks_its_last_message_read_with_the_typing_indicator() {
    let app = spawn_app_with(|c| {
        c.typing_indicator = true;
        // Generation takes a while: the indicator shows while it runs.
        c.responder_delay_ms = 300;
    })
    .await;
    let ts = now_secs() - 60;
    let last = "wamid.HBgLMTU1NTAwMDIyMjIVAgASGBQzRUIwQTFCMkMzRDRFNUY2MDAwNAA=";
    // Delivered last-first: the batch's last message is the latest written.
    for (id, at) in [(last, ts + 1), ("wamid.typing-first", ts)] {
        let body = whatsapp_text(MARIA, id, at, "hi");
        assert_eq!(app.post_whatsapp(&body).await.status(), 200);
    }
    let replies = replies_within(&app.graph, 1, PATIENCE).await;
    let receipts = app.graph.others();
    assert_eq!(receipts.len(), 1, "one per batch: {receipts:?}");
    let receipt = &receipts[0];
    let expected: serde_json::Value =
        serde_json::from_slice(&fixture("whatsapp/mark_read_typing_request.json")).unwrap();
    assert_eq!(
        expected["message_id"], last,
        "the fixture's id is the last one"
    );
    assert_eq!(receipt.body, expected);
    assert_eq!(receipt.path, format!("/v23.0/{PHONE_ID}/messages"));
    assert_eq!(
        receipt.authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert!(receipt.at < replies[0].at, "typing shows before the reply");
    app.stop().await;
}

#[tokio::test]
async fn a_reply_ready_before_its_typing_request_is_answered_waits_for_the_answer() {
    // The built-in responder's reply is ready at once; the platform takes a while
    // to answer the typing request. Sent meanwhile, the reply could land first and
    // leave "typing…" on under it.
    let slow = Duration::from_millis(400);
    let (app, reply, typing) = answered_with_typing_answered_after(slow).await;
    assert!(
        reply.at >= typing.at + slow,
        "the reply went out {:?} after the typing request, before its answer",
        reply.at - typing.at
    );
    app.stop().await;
}

#[tokio::test]
async fn a_typing_request_the_platform_does_not_answer_holds_the_reply_one_second_only() {
    // Answered long after the test's patience: the reply must not wait for it.
    let (app, reply, typing) = answered_with_typing_answered_after(Duration::from_secs(120)).await;
    assert!(
        reply.at + CLOCK_SLACK >= typing.at + Duration::from_secs(1),
        "the reply gave the typing request its second"
    );
    sent_batches(&app, 1).await;
    app.stop().await;
}

/// Maria's message answered with the typing indicator on, the platform answering
/// the typing request after `delay`: the app, the reply and the typing request.
async fn answered_with_typing_answered_after(delay: Duration) -> (TestApp, Received, Received) {
    let app = spawn_app_with(|c| c.typing_indicator = true).await;
    app.graph.script_others([slow_success(delay)]);
    let body = whatsapp_text(MARIA, "wamid.slow-typing", now_secs() - 60, "hi");
    assert_eq!(app.post_whatsapp(&body).await.status(), 200);
    let reply = replies_within(&app.graph, 1, PATIENCE).await.remove(0);
    let receipts = app.graph.others();
    assert_eq!(receipts.len(), 1, "{receipts:?}");
    (app, reply, receipts[0].clone())
}

/// The platform's success for a read receipt or typing request, after `delay`.
fn slow_success(delay: Duration) -> Answer {
    Answer {
        delay,
        ..Answer::new(200, r#"{"success":true}"#)
    }
}

#[tokio::test]
async fn without_the_typing_indicator_no_typing_request_is_sent() {
    let app = spawn_app_with(|c| c.typing_indicator = false).await;
    let body = whatsapp_text(MARIA, "wamid.no-typing", now_secs() - 60, "hi");
    app.post_whatsapp(&body).await;
    replies_within(&app.graph, 1, PATIENCE).await;
    sent_batches(&app, 1).await;
    let seen = app.graph.seen();
    assert!(
        seen.iter()
            .all(|s| s.body.get("typing_indicator").is_none()),
        "{seen:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_reaction_alone_starts_no_batch_but_is_stored_and_in_history() {
    let app = spawn_app().await;
    let response = app.post_whatsapp(&fixture("whatsapp/reaction.json")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(agenda_score(&app).await, None, "nothing scheduled");
    let history = app.redis_batches.history(&maria_keys(&app)).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].kind, MessageKind::Reaction);
    assert!(history[0].text.contains('👍'), "{history:?}");
    // Well past the window: still nothing.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(app.graph.replies().is_empty());
    assert!(batches(&app).await.is_empty());
    let stored = app
        .count("SELECT count(*) FROM conversation_messages WHERE message_type = 'reaction' AND NOT answerable")
        .await;
    assert_eq!(stored, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_reaction_does_not_push_the_deadline_of_a_collecting_batch() {
    let window = Duration::from_secs(2);
    let app = spawn_app_with(|c| c.batch_window_seconds = window.as_secs_f64()).await;
    let posted = Instant::now();
    let text = whatsapp_text(
        MARIA,
        "wamid.before-reaction",
        1_767_262_080,
        "look at this",
    );
    assert_eq!(app.post_whatsapp(&text).await.status(), 200);
    let due = agenda_score(&app).await.expect("scheduled");

    tokio::time::sleep(window * 4 / 10).await;
    let response = app.post_whatsapp(&fixture("whatsapp/reaction.json")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(agenda_score(&app).await, Some(due), "deadline unchanged");

    let replies = replies_within(&app.graph, 1, PATIENCE).await;
    let at = replies[0].at.duration_since(posted);
    assert!(at + CLOCK_SLACK >= window, "{at:?}");
    assert!(
        at < window + Duration::from_millis(600),
        "due a window after the text, not after the reaction: {at:?}"
    );
    let reply = body(&replies[0]);
    assert!(
        reply.starts_with("Thanks! I got your 1 message:"),
        "{reply}"
    );
    let rows = sent_batches(&app, 1).await;
    assert_eq!(rows[0].message_ids.len(), 1, "the reaction is not answered");
    let history = app.redis_batches.history(&maria_keys(&app)).await.unwrap();
    let kinds: Vec<MessageKind> = history.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [MessageKind::Text, MessageKind::Reaction, MessageKind::Reply]
    );
    app.stop().await;
}

#[tokio::test]
async fn with_reactions_triggering_a_reaction_alone_starts_a_batch() {
    let app = spawn_app_with(|c| c.batch_reactions_trigger = true).await;
    let response = app.post_whatsapp(&fixture("whatsapp/reaction.json")).await;
    assert_eq!(response.status(), 200);
    let replies = replies_within(&app.graph, 1, PATIENCE).await;
    let text = body(&replies[0]);
    assert!(text.contains('👍'), "{text}");
    let rows = sent_batches(&app, 1).await;
    assert_eq!(rows[0].message_ids.len(), 1);
    app.stop().await;
}
