//! Issue 2: a WhatsApp burst becomes one reply, end to end.

use crate::fake_platforms::TOKEN;
use crate::helpers::*;
use fred::interfaces::{KeysInterface, LuaInterface};
use std::time::Instant;

/// Where Meta posts WhatsApp webhooks.
const WEBHOOK: &str = "/api/whatsapp/webhook";

#[tokio::test]
async fn three_rapid_messages_get_exactly_one_reply_after_the_window() {
    let app = spawn_app().await;
    let ts = now_secs();
    let mut last_post = Instant::now();
    for (i, text) in ["hi", "quick question", "about my order #123"]
        .iter()
        .enumerate()
    {
        let body = whatsapp_text(MARIA, &format!("wamid.rapid{i}"), ts + i as i64, text);
        // Taken before the POST: its deadline is set while the POST is served.
        last_post = Instant::now();
        assert_eq!(app.post_whatsapp(&body).await.status(), 200);
    }

    let replies = replies_at_least(&app.graph, 1).await;
    settle().await;
    assert_eq!(app.graph.replies().len(), 1, "exactly one reply");
    let reply = &replies[0];
    assert!(
        reply.at.duration_since(last_post) >= WINDOW - CLOCK_SLACK,
        "not before the window"
    );
    assert_eq!(reply.path, format!("/v23.0/{PHONE_ID}/messages"));
    assert_eq!(
        reply.authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(reply.body["messaging_product"], "whatsapp");
    assert_eq!(reply.body["recipient_type"], "individual");
    assert_eq!(reply.body["to"], MARIA);
    assert_eq!(reply.body["type"], "text");
    assert_eq!(reply.body["text"]["preview_url"], false);
    let text = reply.body["text"]["body"].as_str().unwrap();
    for part in ["“hi”", "“quick question”", "“about my order #123”"] {
        assert!(text.contains(part), "{text} lacks {part}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_reply_is_recorded_with_its_messages_and_stored_as_outbound() {
    let app = spawn_app().await;
    app.post_whatsapp(&fixture("whatsapp/three_texts_one_post.json"))
        .await;
    replies_at_least(&app.graph, 1).await;
    let batch = batch_with_status(&app, "sent").await;
    assert_eq!(batch.message_ids.len(), 3);
    assert_eq!(batch.attempts, 1);
    assert_eq!(batch.platform_message_ids.len(), 1);
    let answered = app
        .count(&format!(
            "SELECT count(*) FROM conversation_messages WHERE direction = 'in' AND batch_id = '{}'",
            batch.id
        ))
        .await;
    assert_eq!(answered, 3);
    let outbound = app
        .column("SELECT external_message_id FROM conversation_messages WHERE direction = 'out'")
        .await;
    assert_eq!(outbound, batch.platform_message_ids);
    app.stop().await;
}

#[tokio::test]
async fn a_message_just_before_the_deadline_pushes_it() {
    let app = spawn_app().await;
    let ts = now_secs();
    let mut last_post = Instant::now();
    for i in 0..3 {
        // Taken before the POST: its deadline is set while the POST is served.
        last_post = Instant::now();
        app.post_whatsapp(&whatsapp_text(
            MARIA,
            &format!("wamid.slide{i}"),
            ts + i,
            &format!("part {i}"),
        ))
        .await;
        // Each message comes half a window after the previous one started, well
        // before its deadline however long the POST took.
        tokio::time::sleep_until((last_post + WINDOW / 2).into()).await;
    }
    let replies = replies_at_least(&app.graph, 1).await;
    settle().await;
    assert_eq!(app.graph.replies().len(), 1, "the window slid: one reply");
    assert!(replies[0].at.duration_since(last_post) >= WINDOW - CLOCK_SLACK);
    let text = replies[0].body["text"]["body"].as_str().unwrap().to_owned();
    assert!(text.contains("part 0") && text.contains("part 2"), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn two_bursts_further_apart_than_the_window_get_two_replies() {
    let app = spawn_app().await;
    let ts = now_secs();
    app.post_whatsapp(&whatsapp_text(MARIA, "wamid.burst-a", ts, "first burst"))
        .await;
    replies_at_least(&app.graph, 1).await;
    app.post_whatsapp(&whatsapp_text(
        MARIA,
        "wamid.burst-b",
        ts + 5,
        "second burst",
    ))
    .await;
    let replies = replies_at_least(&app.graph, 2).await;
    settle().await;
    assert_eq!(app.graph.replies().len(), 2);
    assert!(
        replies[0].body["text"]["body"]
            .as_str()
            .unwrap()
            .contains("first burst")
    );
    let second = replies[1].body["text"]["body"].as_str().unwrap();
    assert!(
        second.contains("second burst") && !second.contains("first burst"),
        "{second}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_redelivered_post_is_stored_once_and_answered_once() {
    let app = spawn_app().await;
    let first = app
        .post_whatsapp(&fixture("whatsapp/text_single.json"))
        .await;
    assert_eq!(first.status(), 200);
    let again = app
        .post_whatsapp(&fixture("whatsapp/text_single_redelivery.json"))
        .await;
    assert_eq!(again.status(), 200);
    let body: serde_json::Value = again.json().await.unwrap();
    assert_eq!(body["duplicates"], 1);
    replies_at_least(&app.graph, 1).await;
    // Meta may retry after the reply went out, too.
    app.post_whatsapp(&fixture("whatsapp/text_single.json"))
        .await;
    assert_stored_once_answered_once(&app, &app.graph).await;
    app.stop().await;
}

#[tokio::test]
async fn one_post_with_two_users_and_a_status_makes_two_batches() {
    let app = spawn_app().await;
    let response = app
        .post_whatsapp(&fixture("whatsapp/batch_two_users_and_status.json"))
        .await;
    assert_eq!(response.status(), 200);
    let replies = replies_at_least(&app.graph, 2).await;
    settle().await;
    assert_eq!(app.graph.replies().len(), 2);
    let mut to: Vec<&str> = replies
        .iter()
        .map(|r| r.body["to"].as_str().unwrap())
        .collect();
    to.sort();
    assert_eq!(to, ["15550002222", "15550003333"]);
    let contacts = app
        .column("SELECT contact_id FROM conversation_messages WHERE direction = 'in' ORDER BY contact_id")
        .await;
    assert_eq!(
        contacts,
        ["15550002222", "15550003333"],
        "the status is not stored as a message"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_message_postgres_would_refuse_is_skipped_and_the_rest_of_its_post_stored() {
    let app = spawn_app().await;
    let ts = now_secs() - 60;
    let mut body: serde_json::Value =
        serde_json::from_slice(&whatsapp_text(MARIA, "wamid.good", ts, "hi")).unwrap();
    let value = &mut body["entry"][0]["changes"][0]["value"];
    let good = value["messages"][0].clone();
    let mut before_4713_bc = good.clone();
    before_4713_bc["id"] = "wamid.ancient".into();
    before_4713_bc["timestamp"] = "-300000000000".into();
    let mut huge_id = good.clone();
    huge_id["id"] = format!("wamid.{}", "x".repeat(3000)).into();
    // At the bounds lull accepts: 1024 bytes of platform id, the year 9999 (a
    // time this large is read as milliseconds, whatever the documented unit).
    let mut at_the_limits = good.clone();
    at_the_limits["id"] = "y".repeat(1024).into();
    at_the_limits["timestamp"] = "253402300799000".into();
    value["messages"] = serde_json::json!([before_4713_bc, good, huge_id, at_the_limits]);

    let response = app.post_whatsapp(&serde_json::to_vec(&body).unwrap()).await;
    assert_eq!(response.status(), 200, "one odd message costs only itself");
    let report: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        (report["stored"].as_u64(), report["skipped"].as_u64()),
        (Some(2), Some(2))
    );
    let stored = app
        .column("SELECT external_message_id FROM conversation_messages WHERE direction = 'in' ORDER BY id")
        .await;
    assert_eq!(stored, ["wamid.good".to_owned(), "y".repeat(1024)]);
    replies_at_least(&app.graph, 1).await;
    app.stop().await;
}

#[tokio::test]
async fn a_bad_signature_is_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    let body = fixture("whatsapp/text_single.json");
    let response = app
        .post_raw(WEBHOOK, &body, Some(&forged_signature()))
        .await;
    assert_eq!(response.status(), 401);
    let unsigned = app.post_raw(WEBHOOK, &body, None).await;
    assert_eq!(unsigned.status(), 401);
    assert!(
        unsigned
            .text()
            .await
            .unwrap()
            .contains("X-Hub-Signature-256")
    );
    assert_eq!(
        app.count("SELECT count(*) FROM conversation_messages")
            .await,
        0
    );
    app.stop().await;
}

#[tokio::test]
async fn malformed_json_is_a_400_with_a_reason() {
    let app = spawn_app().await;
    let response = app
        .post_whatsapp(b"{\"object\": \"whatsapp_business_account\", \"entry\": [")
        .await;
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("malformed JSON"));
    let wrong_object = app.post_whatsapp(br#"{"object":"page","entry":[]}"#).await;
    assert_eq!(wrong_object.status(), 400);
    app.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413() {
    let app = spawn_app_with(|c| c.max_body_bytes = 1024).await;
    let response = app.post_whatsapp(&vec![b' '; 4096]).await;
    assert_eq!(response.status(), 413);
    app.stop().await;
}

#[tokio::test]
async fn the_verification_handshake_echoes_the_challenge_only_for_the_right_token() {
    let app = spawn_app().await;
    let get = |query: &str| {
        app.http
            .get(app.url(&format!("/api/whatsapp/webhook?{query}")))
            .send()
    };
    let ok =
        get("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=fixture-verify-token")
            .await
            .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    let wrong = get("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=nope")
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let missing = get("hub.mode=subscribe&hub.verify_token=fixture-verify-token")
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
    app.stop().await;
}

#[tokio::test]
async fn history_is_hydrated_from_postgres_when_redis_lost_it_and_stays_bounded() {
    let app = spawn_app_with(|c| c.history_limit = 4).await;
    let ts = now_secs() - 20;
    for i in 0..3 {
        app.post_whatsapp(&whatsapp_text(
            MARIA,
            &format!("wamid.h{i}"),
            ts + i,
            &format!("old {i}"),
        ))
        .await;
    }
    replies_at_least(&app.graph, 1).await;
    let keys = app
        .redis_batches
        .keys()
        .for_member(&format!("whatsapp:{PHONE_ID}:{MARIA}"));
    wait_acknowledged(&app, &keys).await;
    let _: () = app
        .redis_batches
        .pool()
        .next()
        .del(&keys.history)
        .await
        .unwrap();

    app.post_whatsapp(&whatsapp_text(MARIA, "wamid.h3", now_secs() + 1, "new one"))
        .await;
    let history = app.redis_batches.history(&keys).await.unwrap();
    let texts: Vec<&str> = history.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(texts.len(), 4, "bounded by HISTORY_LIMIT: {texts:?}");
    assert_eq!(texts[0], "old 1");
    assert_eq!(texts[1], "old 2");
    assert!(
        texts[2].starts_with("Thanks!"),
        "our reply is in history: {texts:?}"
    );
    assert_eq!(texts[3], "new one");
    app.stop().await;
}

#[tokio::test]
async fn a_flushed_script_cache_heals_itself() {
    // A Redis of its own: on the shared one, other tests load the same scripts
    // again at once (so the flush might not be seen), and they would see it.
    let redis = crate::redis_server::OwnRedis::start();
    let app = spawn_app_with(|c| c.redis_url = redis.url()).await;
    let _: () = app
        .redis_batches
        .pool()
        .next()
        .script_flush(false)
        .await
        .unwrap();
    let response = app
        .post_whatsapp(&fixture("whatsapp/text_single.json"))
        .await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["stored"], 1);
    replies_at_least(&app.graph, 1).await;
    assert_eq!(app.metrics.counter("lull_redis_errors_total", &[]), 0);
    app.stop().await;
}

#[tokio::test]
async fn without_a_token_replies_are_logged_not_sent() {
    let app = spawn_app_with(|c| c.whatsapp_token = None).await;
    app.post_whatsapp(&fixture("whatsapp/text_single.json"))
        .await;
    let batch = wait_for("dry-run batch", PATIENCE, || async {
        app.store
            .recent_batches(1)
            .await
            .unwrap()
            .into_iter()
            .find(|b| b.status == "sent")
    })
    .await;
    assert!(batch.platform_message_ids[0].starts_with("dry-run:"));
    assert!(app.graph.seen().is_empty(), "nothing reached the Graph API");
    app.stop().await;
}

#[tokio::test]
async fn a_reply_the_platform_reports_undelivered_is_counted() {
    let app = spawn_app().await;
    let response = app
        .post_whatsapp(&fixture("whatsapp/status_failed_131047.json"))
        .await;
    assert_eq!(response.status(), 200);
    let text = app.get_text("/metrics").await;
    let line = "lull_deliveries_failed_total{channel=\"whatsapp\"} 1\n";
    assert!(text.contains(line), "/metrics lacks {line:?}:\n{text}");
    app.stop().await;
}
