//! Issue 20: a message that cannot be read costs only itself, end to end.

use crate::helpers::*;

/// A WhatsApp webhook with two messages from Maria: `bad` whose text holds a lone
/// UTF-16 surrogate escape (`\ud83d`, half an emoji: valid JSON syntax that a JSON
/// decoder refuses), then `good`.
fn lone_surrogate_and_a_good_neighbour(ts: i64) -> Vec<u8> {
    let mut body: serde_json::Value =
        serde_json::from_slice(&whatsapp_text(MARIA, "wamid.bad", ts, "half an emoji LONE"))
            .unwrap();
    let messages = &mut body["entry"][0]["changes"][0]["value"]["messages"];
    let mut good = messages[0].clone();
    good["id"] = "wamid.good".into();
    good["timestamp"] = (ts + 1).to_string().into();
    good["text"]["body"] = "is the shop open today?".into();
    messages.as_array_mut().unwrap().push(good);
    // serde_json never writes a lone surrogate: the raw escape goes in by hand.
    body.to_string().replace("LONE", r"\ud83d").into_bytes()
}

#[tokio::test]
async fn a_lone_surrogate_costs_nothing_the_neighbour_is_answered_and_the_bad_one_kept() {
    let app = spawn_app().await;
    let body = lone_surrogate_and_a_good_neighbour(now_secs());
    assert!(
        body.windows(6).any(|w| w == br"\ud83d"),
        "the escape is there"
    );

    let response = app.post_whatsapp(&body).await;
    assert_eq!(response.status(), 200, "one bad string costs no message");
    let report: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        (report["stored"].as_u64(), report["skipped"].as_u64()),
        (Some(2), Some(0))
    );
    let texts = app
        .column(
            "SELECT text FROM conversation_messages WHERE direction = 'in' \
             ORDER BY external_message_id",
        )
        .await;
    assert_eq!(
        texts,
        ["half an emoji \u{FFFD}", "is the shop open today?"],
        "wamid.bad, then wamid.good"
    );
    let payload = app
        .column(
            "SELECT webhook_payload->'text'->>'body' FROM conversation_messages \
             WHERE external_message_id = 'wamid.bad'",
        )
        .await;
    assert_eq!(payload, ["half an emoji \u{FFFD}"]);

    let replies = replies_at_least(&app.graph, 1).await;
    settle().await;
    assert_eq!(app.graph.replies().len(), 1, "one reply answers both");
    assert_eq!(replies[0].body["to"], MARIA);
    let batch = batch_with_status(&app, "sent").await;
    assert_eq!(
        batch.message_ids.len(),
        2,
        "the reply answers both messages"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_message_with_a_field_of_the_wrong_type_is_skipped_and_its_neighbour_answered() {
    let app = spawn_app().await;
    let mut body: serde_json::Value =
        serde_json::from_slice(&whatsapp_text(MARIA, "wamid.good", now_secs(), "hello")).unwrap();
    let messages = &mut body["entry"][0]["changes"][0]["value"]["messages"];
    let mut broken = messages[0].clone();
    broken["id"] = "wamid.broken".into();
    broken["text"]["body"] = serde_json::json!({"not": "a string"});
    messages.as_array_mut().unwrap().insert(0, broken);

    let response = app.post_whatsapp(&serde_json::to_vec(&body).unwrap()).await;
    assert_eq!(response.status(), 200);
    let report: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        (report["stored"].as_u64(), report["skipped"].as_u64()),
        (Some(1), Some(1))
    );
    let stored = app
        .column("SELECT external_message_id FROM conversation_messages WHERE direction = 'in'")
        .await;
    assert_eq!(stored, ["wamid.good"]);
    replies_at_least(&app.graph, 1).await;
    app.stop().await;
}
