//! The console's API: who may use it, what each action does, its 404s and 409s,
//! the audit, and the stats against a known history.

use crate::fake_platforms::Answer;
use crate::helpers::*;
use lull::config::Secret;
use serde_json::Value;

/// The console's token: operator `ops`.
pub const OPS: &str = "ops-secret";
/// A window long enough that nothing is answered unless flushed.
const LONG_WINDOW: f64 = 60.0;

/// Maria's conversation, as the agenda names it.
pub fn maria_id() -> String {
    format!("whatsapp:{PHONE_ID}:{MARIA}")
}

/// An app whose console takes `ops:ops-secret` and `eve:eve-secret`, and whose
/// batches wait a minute unless flushed.
pub async fn console_app() -> TestApp {
    spawn_app_with(|c| {
        c.admin_token = Some(Secret::new(format!("ops:{OPS},eve:eve-secret")));
        c.batch_window_seconds = LONG_WINDOW;
        c.batch_max_wait_seconds = LONG_WINDOW * 2.0;
    })
    .await
}

/// Sends a request to the admin API as `ops`; returns the status and the JSON body.
pub async fn admin(app: &TestApp, method: &str, path: &str) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let response = app
        .http
        .request(method, app.url(&format!("/admin/api/{path}")))
        .bearer_auth(OPS)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Maria says something; returns once it is collecting in Redis.
pub async fn maria_says(app: &TestApp, id: &str, text: &str) {
    let response = app
        .post_whatsapp(&whatsapp_text(MARIA, id, now_secs(), text))
        .await;
    assert_eq!(response.status(), 200);
    wait_for("the message collecting", PATIENCE, || async {
        let (_, page) = admin(app, "GET", "conversations?state=waiting").await;
        let rows = page["rows"].as_array().cloned().unwrap_or_default();
        rows.iter()
            .any(|r| r["conversation"] == maria_id() && r["collecting"].as_i64() > Some(0))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_api_answers_401_without_the_token_or_with_a_wrong_one() {
    let app = console_app().await;
    let conversation = format!("conversations/{}", maria_id());
    for (method, path) in [
        ("GET", "conversations".to_owned()),
        ("GET", conversation.clone()),
        ("POST", format!("{conversation}/flush")),
        ("POST", "batches/b1/retry".to_owned()),
        ("GET", "stats?since=24h".to_owned()),
        ("GET", "audit".to_owned()),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let url = app.url(&format!("/admin/api/{path}"));
        for token in [None, Some("wrong"), Some("ops"), Some("ops:ops-secret")] {
            let mut request = app.http.request(method.clone(), &url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let status = request.send().await.unwrap().status();
            assert_eq!(status, 401, "{method} {path} with {token:?}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_waiting_conversation_is_listed_with_its_deadline_batch_size_and_mode() {
    let app = console_app().await;
    maria_says(&app, "wamid.c1", "hello").await;
    maria_says(&app, "wamid.c2", "anyone there?").await;
    let (status, page) = admin(&app, "GET", "conversations?state=waiting").await;
    assert_eq!(status, 200);
    let row = &page["rows"][0];
    assert_eq!(row["conversation"], maria_id());
    assert_eq!(row["collecting"], 2);
    assert_eq!(row["mode"], "bot");
    let due = row["due_ms"].as_i64().unwrap();
    let now = page["now_ms"].as_i64().unwrap();
    assert!(due > now + 50_000, "due {due} now {now}: a minute's window");
    let (_, in_flight) = admin(&app, "GET", "conversations?state=in_flight").await;
    assert_eq!(in_flight["rows"], serde_json::json!([]));
    app.stop().await;
}

#[tokio::test]
async fn one_conversation_shows_its_transcript_beside_its_redis_state() {
    let app = console_app().await;
    maria_says(&app, "wamid.t1", "where is my order?").await;
    let (status, body) = admin(&app, "GET", &format!("conversations/{}", maria_id())).await;
    assert_eq!(status, 200);
    let view = &body["view"];
    assert_eq!(view["mode"], "bot");
    assert_eq!(view["transcript"][0]["text"], "where is my order?");
    assert_eq!(view["transcript"][0]["author"], "contact");
    assert_eq!(view["transcript"][0]["batch_id"], Value::Null);
    assert_eq!(view["redis"]["collecting"][0]["text"], "where is my order?");
    assert_eq!(view["redis"]["locked"], false);
    assert_eq!(view["redis"]["history_len"], 1);
    assert!(view["redis"]["ttl_ms"]["msgs"].as_i64().unwrap() > 0);
    assert!(view["redis"]["deadline_ms"].as_i64().is_some());
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_conversation_answers_404_naming_it() {
    let app = console_app().await;
    let nobody = "whatsapp:1:nobody";
    for (method, path) in [
        ("GET", format!("conversations/{nobody}")),
        ("POST", format!("conversations/{nobody}/flush")),
        ("POST", format!("conversations/{nobody}/drop")),
        ("POST", format!("conversations/{nobody}/pause")),
        ("POST", format!("conversations/{nobody}/resume")),
    ] {
        let (status, body) = admin(&app, method, &path).await;
        assert_eq!(status, 404, "{method} {path}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(nobody), "{error}");
    }
    let (status, body) = admin(&app, "POST", "batches/no-such-batch/retry").await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("no-such-batch"));
    let (status, _) = admin(&app, "GET", "conversations/nonsense").await;
    assert_eq!(status, 400);
    app.stop().await;
}

#[tokio::test]
async fn flush_sends_the_reply_now_and_a_second_flush_changes_nothing() {
    let app = console_app().await;
    maria_says(&app, "wamid.f1", "hi").await;
    let path = format!("conversations/{}/flush", maria_id());
    let (status, body) = admin(&app, "POST", &path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(replies_at_least(&app.graph, 1).await.len(), 1);
    batch_with_status(&app, "sent").await;
    let (status, body) = admin(&app, "POST", &path).await;
    assert_eq!(status, 409);
    assert!(body["error"].as_str().unwrap().contains("nothing waiting"));
    settle().await;
    assert_eq!(app.graph.replies().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn drop_keeps_the_messages_marks_them_handled_and_answers_none() {
    let app = console_app().await;
    maria_says(&app, "wamid.d1", "ignore me").await;
    let conversation = format!("conversations/{}", maria_id());
    let (status, body) = admin(&app, "POST", &format!("{conversation}/drop")).await;
    assert_eq!(status, 200, "{body}");
    let batch = body["batch_id"].as_str().unwrap().to_owned();
    let owners = app
        .column("SELECT batch_id FROM conversation_messages WHERE direction = 'in'")
        .await;
    assert_eq!(owners, vec![batch.clone()]);
    let status = app
        .column(&format!(
            "SELECT status FROM reply_batches WHERE id = '{batch}'"
        ))
        .await;
    assert_eq!(status, vec!["dropped"]);
    let (_, page) = admin(&app, "GET", "conversations?state=all").await;
    assert_eq!(page["rows"], serde_json::json!([]), "off the agenda");
    let (status, _) = admin(&app, "POST", &format!("{conversation}/drop")).await;
    assert_eq!(status, 409, "nothing left to drop");
    let (status, _) = admin(&app, "POST", &format!("{conversation}/flush")).await;
    assert_eq!(status, 409, "nothing left to answer");
    settle().await;
    assert!(app.graph.replies().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn retry_answers_a_failed_batchs_messages_again_in_a_new_batch() {
    let app = console_app().await;
    let refusal = String::from_utf8(fixture("whatsapp/error_131047.json")).unwrap();
    app.graph.script([Answer::error(400, &refusal)]);
    maria_says(&app, "wamid.r1", "are you open?").await;
    admin(&app, "POST", &format!("conversations/{}/flush", maria_id())).await;
    let failed = batch_with_status(&app, "failed").await;
    let (_, failures) = admin(&app, "GET", "conversations?state=failed").await;
    assert_eq!(failures["rows"][0]["batch_id"], failed.id.as_str());

    let retry = format!("batches/{}/retry", failed.id.as_str());
    let (status, body) = admin(&app, "POST", &retry).await;
    assert_eq!(status, 200, "{body}");
    let sent = batch_with_status(&app, "sent").await;
    assert_ne!(sent.id, failed.id);
    assert_eq!(sent.message_ids, failed.message_ids);
    assert_eq!(replies_at_least(&app.graph, 2).await.len(), 2);

    let (status, body) = admin(&app, "POST", &retry).await;
    assert_eq!(status, 409, "retried once only");
    assert!(body["error"].as_str().unwrap().contains("retried already"));
    let sent_retry = format!("batches/{}/retry", sent.id.as_str());
    let (status, body) = admin(&app, "POST", &sent_retry).await;
    assert_eq!(status, 409);
    assert!(
        body["error"].as_str().unwrap().contains("is sent"),
        "{body}"
    );
    let (_, failures) = admin(&app, "GET", "conversations?state=failed").await;
    assert_eq!(failures["rows"], serde_json::json!([]));
    app.stop().await;
}

/// Maria's messages stored in PostgreSQL.
async fn marias_messages_stored(app: &TestApp) -> i64 {
    app.count("SELECT count(*) FROM conversation_messages WHERE direction = 'in'")
        .await
}

#[tokio::test]
async fn a_repeated_pause_or_resume_changes_nothing_and_says_so() {
    let app = console_app().await;
    maria_says(&app, "wamid.p1", "I want a human").await;
    let conversation = format!("conversations/{}", maria_id());
    for (action, changed) in [
        ("pause?minutes=30", true),
        ("pause?minutes=30", false),
        ("resume", true),
        ("resume", false),
    ] {
        let (status, body) = admin(&app, "POST", &format!("{conversation}/{action}")).await;
        assert_eq!(status, 200, "{action}: {body}");
        assert_eq!(body["changed"], changed, "{action}: {body}");
    }
    let (_, audit) = admin(&app, "GET", "audit").await;
    let done = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "pause" || a["action"] == "resume")
        .count();
    assert_eq!(done, 4, "every pause and resume recorded: {audit}");
    let (status, _) = admin(&app, "POST", &format!("{conversation}/pause?minutes=-1")).await;
    assert_eq!(status, 400);
    app.stop().await;
}

#[tokio::test]
async fn a_paused_conversation_gets_no_reply_until_resumed() {
    let app = console_app().await;
    maria_says(&app, "wamid.p2", "I want a human").await;
    let conversation = format!("conversations/{}", maria_id());
    let (status, body) = admin(&app, "POST", &format!("{conversation}/pause")).await;
    assert_eq!(status, 200, "{body}");
    let (_, view) = admin(&app, "GET", &conversation).await;
    assert_eq!(view["view"]["mode"], "human", "{view}");
    let (_, paused) = admin(&app, "GET", "conversations?state=paused").await;
    assert_eq!(paused["rows"][0]["conversation"], maria_id(), "{paused}");
    assert_eq!(paused["rows"][0]["paused_by"], "ops", "{paused}");

    let next = whatsapp_text(MARIA, "wamid.p3", now_secs(), "hello?");
    assert_eq!(app.post_whatsapp(&next).await.status(), 200);
    wait_for("the next message stored", PATIENCE, || async {
        (marias_messages_stored(&app).await == 2).then_some(())
    })
    .await;
    admin(&app, "POST", &format!("{conversation}/flush")).await;
    settle().await;
    assert!(
        app.graph.replies().is_empty(),
        "nothing answered while paused"
    );

    let (status, body) = admin(&app, "POST", &format!("{conversation}/resume")).await;
    assert_eq!(status, 200, "{body}");
    let (_, view) = admin(&app, "GET", &conversation).await;
    assert_eq!(view["view"]["mode"], "bot", "{view}");
    let (_, paused) = admin(&app, "GET", "conversations?state=paused").await;
    assert_eq!(paused["rows"], serde_json::json!([]));
    let (status, body) = admin(&app, "POST", &format!("{conversation}/flush")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(replies_at_least(&app.graph, 1).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn the_waiting_list_shows_the_bot_answers_a_conversation_never_paused() {
    let app = console_app().await;
    maria_says(&app, "wamid.m1", "hi").await;
    let (_, page) = admin(&app, "GET", "conversations?state=waiting").await;
    assert_eq!(page["rows"][0]["mode"], "bot", "{page}");
    app.stop().await;
}

#[tokio::test]
async fn every_action_is_kept_in_the_audit_with_who_took_it() {
    let app = console_app().await;
    maria_says(&app, "wamid.a1", "hi").await;
    let flush = format!("conversations/{}/flush", maria_id());
    admin(&app, "POST", &flush).await;
    batch_with_status(&app, "sent").await;
    let refused = app
        .http
        .post(app.url(&format!("/admin/api/{flush}")))
        .bearer_auth("eve-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 409);
    let (status, audit) = admin(&app, "GET", "audit").await;
    assert_eq!(status, 200);
    let rows: Vec<(String, String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let field = |k: &str| r[k].as_str().unwrap().to_owned();
            (field("actor"), field("action"), field("outcome"))
        })
        .collect();
    let expected = [("eve", "flush", "refused"), ("ops", "flush", "done")]
        .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()));
    assert_eq!(rows, expected);
    assert_eq!(audit[0]["conversation"], maria_id());
    app.stop().await;
}
