//! The LLM responders end to end: WhatsApp bursts answered through local fakes of
//! the OpenAI Chat Completions and Anthropic Messages APIs. Each fake checks a
//! request the way the real API does (path, key, version header, model, message
//! shape) and answers `Reply <n> from the fake model.` for its n-th request, unless
//! the test scripted another answer.

use crate::fake_platforms::{Answer, FakePlatform, Received, fake};
use crate::helpers::*;
use lull::config::{Config, ResponderKind, Secret};
use lull::fake_platform::{Api, Call};
use lull::message::Direction;
use lull::responder::DEFAULT_SYSTEM_PROMPT;
use serde_json::{Value, json};
use std::time::Duration;

/// The key both fakes accept.
const KEY: &str = "sk-test-llm-key-0123456789";
/// The only model both fakes know.
const MODEL: &str = "test-model-1";
/// A window long enough for three webhooks in a row on a loaded machine.
const BURST_WINDOW: Duration = Duration::from_millis(500);

/// The OpenAI Chat Completions API, at `http://127.0.0.1:port/v1`.
struct OpenAi;

impl Api for OpenAi {
    fn base_path(&self) -> &str {
        "/v1"
    }

    fn answer(&self, call: &Call, scripted: Option<Answer>, n: u64) -> Answer {
        openai(call, scripted, n)
    }
}

/// The Anthropic Messages API, at `http://127.0.0.1:port`.
struct Anthropic;

impl Api for Anthropic {
    fn answer(&self, call: &Call, scripted: Option<Answer>, n: u64) -> Answer {
        anthropic(call, scripted, n)
    }
}

fn completion_text(n: u64) -> String {
    format!("Reply {n} from the fake model.")
}

/// A Chat Completions answer with `text`.
fn openai_completion(text: &str) -> Answer {
    let body = json!({
        "id": "chatcmpl-fake", "object": "chat.completion", "model": MODEL,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    });
    Answer::new(200, body.to_string())
}

/// A Messages API answer with `text`.
fn anthropic_message(text: &str) -> Answer {
    let body = json!({
        "id": "msg_fake", "type": "message", "role": "assistant", "model": MODEL,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 5}
    });
    Answer::new(200, body.to_string())
}

/// The `{role, content}` pairs of a request's `messages`.
fn turns(seen: &Received) -> Vec<(String, String)> {
    turns_in(&seen.body)
}

/// The `{role, content}` pairs of a request body's `messages`.
fn turns_in(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|m| {
            let text = |key: &str| m[key].as_str().unwrap_or_default().to_owned();
            (text("role"), text("content"))
        })
        .collect()
}

fn turn(role: &str, content: &str) -> (String, String) {
    (role.to_owned(), content.to_owned())
}

/// Roles and contents as the APIs require: known roles, non-empty string contents.
fn shape_error(body: &Value, roles: &[&str]) -> Option<String> {
    let Some(messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
        return Some("messages: at least one message is required".into());
    };
    for (i, message) in messages.iter().enumerate() {
        if !roles.contains(&message["role"].as_str().unwrap_or_default()) {
            return Some(format!("messages.{i}.role: unexpected value"));
        }
        if message["content"].as_str().is_none_or(str::is_empty) {
            return Some(format!("messages.{i}.content: must be a non-empty string"));
        }
    }
    if body["max_tokens"].as_u64().is_none_or(|t| t == 0) {
        return Some("max_tokens: must be a positive integer".into());
    }
    None
}

/// `POST /v1/chat/completions` with `Authorization: Bearer <key>`.
fn openai(call: &Call, scripted: Option<Answer>, n: u64) -> Answer {
    let error = |status: u16, message: &str| {
        let body = json!({"error": {"message": message, "type": "invalid_request_error",
                                    "param": null, "code": null}});
        Answer::new(status, body.to_string())
    };
    if call.path != "/v1/chat/completions" {
        return error(404, "Invalid URL (POST /v1/chat/completions expected)");
    }
    if call.bearer() != Some(KEY) {
        return error(401, "Incorrect API key provided");
    }
    if call.body["model"] != MODEL {
        return error(
            404,
            "The model does not exist or you do not have access to it.",
        );
    }
    if let Some(message) = shape_error(call.body, &["system", "user", "assistant"]) {
        return error(400, &message);
    }
    scripted.unwrap_or_else(|| openai_completion(&completion_text(n)))
}

/// `POST /v1/messages` with `x-api-key` and `anthropic-version`; roles alternate,
/// starting with the user.
fn anthropic(call: &Call, scripted: Option<Answer>, n: u64) -> Answer {
    let error = |status: u16, kind: &str, message: &str| {
        let body = json!({"type": "error", "error": {"type": kind, "message": message}});
        Answer::new(status, body.to_string())
    };
    if call.path != "/v1/messages" {
        return error(404, "not_found_error", "Not found");
    }
    if call.header("x-api-key") != Some(KEY) {
        return error(401, "authentication_error", "invalid x-api-key");
    }
    if call.header("anthropic-version") != Some("2023-06-01") {
        return error(
            400,
            "invalid_request_error",
            "anthropic-version: header is required",
        );
    }
    if call.body["model"] != MODEL {
        return error(
            404,
            "not_found_error",
            &format!("model: {}", call.body["model"]),
        );
    }
    if !call.body["system"].is_string() {
        return error(400, "invalid_request_error", "system: expected a string");
    }
    if let Some(message) = shape_error(call.body, &["user", "assistant"]) {
        return error(400, "invalid_request_error", &message);
    }
    let roles: Vec<String> = turns_in(call.body)
        .into_iter()
        .map(|(role, _)| role)
        .collect();
    let alternating = roles
        .iter()
        .enumerate()
        .all(|(i, role)| role == if i % 2 == 0 { "user" } else { "assistant" });
    if !alternating {
        return error(
            400,
            "invalid_request_error",
            "messages: roles must alternate between \"user\" and \"assistant\", starting with \"user\"",
        );
    }
    scripted.unwrap_or_else(|| anthropic_message(&completion_text(n)))
}

/// Points the app at `llm` as `responder`, with the fakes' key and model.
fn use_llm(c: &mut Config, responder: ResponderKind, llm: &FakePlatform) {
    c.responder = responder;
    c.llm_base_url = Some(llm.base.clone());
    c.llm_api_key = Some(Secret::new(KEY));
    c.llm_model = Some(MODEL.into());
    c.llm_timeout_seconds = 10.0;
}

/// Waits until the fake LLM has seen `n` requests; returns them all.
async fn llm_requests(llm: &FakePlatform, n: usize) -> Vec<Received> {
    wait_for(&format!("{n} LLM requests"), PATIENCE, || async {
        let seen = llm.seen();
        (seen.len() >= n).then_some(seen)
    })
    .await
}

/// Maria says hello and is answered (the reply reaches history), then sends a burst
/// of three messages; returns the LLM request for the burst, once its reply is sent.
async fn hello_then_burst(app: &TestApp, llm: &FakePlatform) -> Received {
    let ts = now_secs() - 60;
    let hello = whatsapp_text(MARIA, "wamid.llm-hello", ts, "hello");
    assert_eq!(app.post_whatsapp(&hello).await.status(), 200);
    let replies = replies_at_least(&app.graph, 1).await;
    assert_eq!(body(&replies[0]), completion_text(1));
    let keys = app
        .redis_batches
        .keys()
        .for_member(&format!("whatsapp:{PHONE_ID}:{MARIA}"));
    wait_for("the first reply in history", PATIENCE, || async {
        let history = app.redis_batches.history(&keys).await.ok()?;
        history
            .iter()
            .any(|e| e.dir == Direction::Outbound)
            .then_some(())
    })
    .await;

    for (i, text) in ["hi", "quick question", "about my order #123"]
        .into_iter()
        .enumerate()
    {
        let id = format!("wamid.llm-burst{i}");
        let message = whatsapp_text(MARIA, &id, ts + 10 + i as i64, text);
        assert_eq!(app.post_whatsapp(&message).await.status(), 200);
    }
    let replies = replies_at_least(&app.graph, 2).await;
    assert_eq!(body(&replies[1]), completion_text(2));
    batch_with_status(app, "sent").await;
    settle().await;
    assert_eq!(app.graph.replies().len(), 2, "one reply per burst");
    let requests = llm.seen();
    assert_eq!(requests.len(), 2, "one LLM request per burst: {requests:?}");
    requests[1].clone()
}

/// The turns of the burst's request: the earlier exchange, then the burst as one turn.
fn burst_turns() -> [(String, String); 3] {
    [
        turn("user", "hello"),
        turn("assistant", &completion_text(1)),
        turn("user", "hi\nquick question\nabout my order #123"),
    ]
}

#[tokio::test]
async fn with_openai_a_burst_is_answered_with_the_completion_given_the_history() {
    let llm = fake(OpenAi).await;
    let app = spawn_app_with(|c| {
        use_llm(c, ResponderKind::OpenAi, &llm);
        c.batch_window_seconds = BURST_WINDOW.as_secs_f64();
    })
    .await;
    let request = hello_then_burst(&app, &llm).await;

    assert_eq!(request.path, "/v1/chat/completions");
    assert_eq!(
        request.authorization.as_deref(),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(request.body["model"], MODEL);
    assert_eq!(request.body["max_tokens"], 512);
    let mut expected = vec![turn("system", DEFAULT_SYSTEM_PROMPT)];
    expected.extend(burst_turns());
    assert_eq!(turns(&request), expected);
    app.stop().await;
}

#[tokio::test]
async fn history_beyond_llm_history_chars_is_left_out_oldest_first_with_a_reply_whose_question_was_cut()
 {
    let llm = fake(OpenAi).await;
    let reply = completion_text(1);
    let app = spawn_app_with(|c| {
        use_llm(c, ResponderKind::OpenAi, &llm);
        c.batch_window_seconds = BURST_WINDOW.as_secs_f64();
        // Room for the bot's reply, not for the "hello" before it.
        c.llm_history_chars = reply.chars().count() as u32;
    })
    .await;
    let request = hello_then_burst(&app, &llm).await;

    // The reply fitted, the "hello" it answered did not: a conversation may not
    // open with our reply (local models' chat templates refuse it), so it goes too.
    let expected = vec![
        turn("system", DEFAULT_SYSTEM_PROMPT),
        turn("user", "hi\nquick question\nabout my order #123"),
    ];
    assert_eq!(turns(&request), expected);
    app.stop().await;
}

#[tokio::test]
async fn with_anthropic_a_burst_is_answered_with_the_message_given_the_history() {
    let llm = fake(Anthropic).await;
    let system = "You answer for the Example Shop. Be brief.";
    let app = spawn_app_with(|c| {
        use_llm(c, ResponderKind::Anthropic, &llm);
        c.batch_window_seconds = BURST_WINDOW.as_secs_f64();
        c.llm_system_prompt = Some(system.into());
        c.llm_max_tokens = 300;
    })
    .await;
    let request = hello_then_burst(&app, &llm).await;

    assert_eq!(request.path, "/v1/messages");
    assert_eq!(request.headers["x-api-key"], KEY);
    assert_eq!(request.headers["anthropic-version"], "2023-06-01");
    assert_eq!(
        request.authorization, None,
        "the key goes in x-api-key only"
    );
    assert_eq!(request.body["model"], MODEL);
    assert_eq!(request.body["system"], system);
    assert_eq!(request.body["max_tokens"], 300);
    assert_eq!(turns(&request), burst_turns());
    app.stop().await;
}

#[tokio::test]
async fn a_rate_limited_generation_is_retried_and_answered_once() {
    let llm = fake(Anthropic).await;
    llm.script([Answer::error(
        429,
        r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#,
    )]);
    let app = spawn_app_with(|c| use_llm(c, ResponderKind::Anthropic, &llm)).await;
    let message = whatsapp_text(
        MARIA,
        "wamid.llm-429",
        now_secs() - 60,
        "where is my order?",
    );
    assert_eq!(app.post_whatsapp(&message).await.status(), 200);

    let replies = replies_at_least(&app.graph, 1).await;
    assert_eq!(body(&replies[0]), completion_text(2));
    let batch = batch_with_status(&app, "sent").await;
    assert_eq!(
        batch.reply_text.as_deref(),
        Some(completion_text(2).as_str())
    );
    settle().await;
    assert_eq!(app.graph.replies().len(), 1);
    let requests = llm.seen();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].body, requests[1].body, "the same request again");
    assert_eq!(turns(&requests[1]), [turn("user", "where is my order?")]);
    app.stop().await;
}

#[tokio::test]
async fn a_refused_generation_fails_the_batch_with_the_providers_message() {
    let llm = fake(OpenAi).await;
    llm.script([Answer::error(
        400,
        r#"{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
    )]);
    let app = spawn_app_with(|c| use_llm(c, ResponderKind::OpenAi, &llm)).await;
    let message = whatsapp_text(MARIA, "wamid.llm-400", now_secs() - 60, "a very long story");
    assert_eq!(app.post_whatsapp(&message).await.status(), 200);

    let batch = batch_with_status(&app, "failed").await;
    let error = batch.error_message.unwrap_or_default();
    assert!(
        error.contains(
            "HTTP 400 invalid_request_error: This model's maximum context length is 8192 tokens."
        ),
        "{error}"
    );
    assert!(!error.contains(KEY), "{error}");
    assert!(!error.contains("127.0.0.1"), "{error}");
    settle().await;
    assert!(app.graph.replies().is_empty(), "nothing sent");
    assert_eq!(llm.seen().len(), 1, "a refused request is not retried");
    app.stop().await;
}

#[tokio::test]
async fn a_message_during_generation_cancels_it_and_one_reply_answers_both() {
    /// How long the fake takes to answer.
    const GENERATION: Duration = Duration::from_secs(1);
    let llm = fake(OpenAi).await;
    let slow = |text: &str| Answer {
        delay: GENERATION,
        ..openai_completion(text)
    };
    llm.script([
        slow("An answer to the first thought only."),
        slow("One reply for both."),
    ]);
    let app = spawn_app_with(|c| {
        use_llm(c, ResponderKind::OpenAi, &llm);
        c.batch_supersede = true;
    })
    .await;
    let ts = now_secs() - 60;
    let first = whatsapp_text(MARIA, "wamid.llm-gen-a", ts, "first thought");
    assert_eq!(app.post_whatsapp(&first).await.status(), 200);
    llm_requests(&llm, 1).await;
    let second = whatsapp_text(MARIA, "wamid.llm-gen-b", ts + 1, "second thought");
    assert_eq!(app.post_whatsapp(&second).await.status(), 200);

    let replies = replies_at_least(&app.graph, 1).await;
    assert_eq!(body(&replies[0]), "One reply for both.");
    let batch = batch_with_status(&app, "sent").await;
    assert_eq!((batch.supersedes, batch.claims), (1, 2));
    assert_eq!(batch.message_ids.len(), 2);
    settle().await;
    assert_eq!(app.graph.replies().len(), 1, "exactly one reply");
    let requests = llm.seen();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(
        turns(&requests[0]).last(),
        Some(&turn("user", "first thought"))
    );
    assert_eq!(
        turns(&requests[1]).last(),
        Some(&turn("user", "first thought\nsecond thought"))
    );
    app.stop().await;
}

#[tokio::test]
async fn a_refused_message_is_not_batched_again_and_the_next_one_is_answered_alone() {
    let llm = fake(OpenAi).await;
    llm.script([Answer::error(
        400,
        r#"{"error":{"message":"Content policy.","type":"invalid_request_error"}}"#,
    )]);
    let app = spawn_app_with(|c| {
        use_llm(c, ResponderKind::OpenAi, &llm);
        // The reconciler looks often and at young messages: it must leave this one be.
        c.reconcile_interval_seconds = 0.2;
        c.reconcile_min_age_seconds = 0.1;
    })
    .await;
    let refused = whatsapp_text(MARIA, "wamid.llm-refused", now_secs() - 60, "POISON");
    app.post_whatsapp(&refused).await;
    batch_with_status(&app, "failed").await;
    // Several reconcile passes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        llm.seen().len(),
        1,
        "the refused message is not generated again"
    );

    let next = whatsapp_text(MARIA, "wamid.llm-next", now_secs(), "hello again");
    app.post_whatsapp(&next).await;
    replies_at_least(&app.graph, 1).await;
    let requests = llm.seen();
    assert_eq!(requests.len(), 2);
    let turns = requests[1].body["messages"].as_array().unwrap();
    let last = turns.last().unwrap()["content"].as_str().unwrap();
    assert!(last.contains("hello again"), "{last}");
    let sent = batch_with_status(&app, "sent").await;
    assert_eq!(sent.message_ids.len(), 1);
    app.stop().await;
}

/// A refused message in the context of every later request would be refused with
/// it, for as long as it stays in the history.
async fn assert_the_refused_message_is_left_out_of_the_next_context(redis_loses_history: bool) {
    let llm = fake(OpenAi).await;
    llm.script([Answer::error(
        400,
        r#"{"error":{"message":"Content policy.","type":"invalid_request_error"}}"#,
    )]);
    let app = spawn_app_with(|c| use_llm(c, ResponderKind::OpenAi, &llm)).await;
    let refused = whatsapp_text(MARIA, "wamid.llm-poison", now_secs() - 60, "POISON");
    app.post_whatsapp(&refused).await;
    batch_with_status(&app, "failed").await;
    if redis_loses_history {
        let conversation =
            lull::message::Conversation::new(lull::message::ChannelKind::WhatsApp, PHONE_ID, MARIA);
        let history = app.redis_batches.keys().conversation(&conversation).history;
        let _: i64 = fred::interfaces::KeysInterface::del(app.redis_batches.pool().next(), history)
            .await
            .unwrap();
    }

    let next = whatsapp_text(MARIA, "wamid.llm-after", now_secs(), "hello again");
    app.post_whatsapp(&next).await;
    replies_at_least(&app.graph, 1).await;
    let requests = llm.seen();
    assert_eq!(requests.len(), 2);
    let sent: Vec<String> = turns(&requests[1]).into_iter().map(|(_, c)| c).collect();
    assert!(!sent.concat().contains("POISON"), "{sent:?}");
    assert!(sent.last().unwrap().contains("hello again"), "{sent:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_refused_message_is_left_out_of_the_next_context() {
    assert_the_refused_message_is_left_out_of_the_next_context(false).await;
}

#[tokio::test]
async fn a_refused_message_is_left_out_of_the_context_read_from_postgres() {
    assert_the_refused_message_is_left_out_of_the_next_context(true).await;
}
