//! No responder failure goes unnoticed: a refusal fails one batch and
//! FALLBACK_REPLY answers it; a refused key is an outage that keeps the batch,
//! shows on /readyz and ends when the key works; usage is stored for every reply.
//! The fake bot is `bot.rs`'s; the fake LLM here answers as OpenAI's API does.

use crate::bot::{BotAnswer, FakeBot, use_bot};
use crate::fake_platforms::{Answer, FakePlatform, fake};
use crate::helpers::*;
use lull::config::{ResponderKind, Secret};
use lull::fake_platform::{Api, Call};
use serde_json::json;

const KEY: &str = "sk-test-failures-0123456789";
const MODEL: &str = "test-model-usage";
const FALLBACK: &str = "Sorry, something went wrong. A person will answer you soon.";

/// OpenAI's Chat Completions API at `http://127.0.0.1:port/v1`.
struct OpenAi;

impl Api for OpenAi {
    fn base_path(&self) -> &str {
        "/v1"
    }

    fn answer(&self, call: &Call, scripted: Option<Answer>, n: u64) -> Answer {
        openai(call, scripted, n)
    }
}

/// `POST /v1/chat/completions`: 401 without the key, else a completion with usage.
fn openai(call: &Call, scripted: Option<Answer>, n: u64) -> Answer {
    if call.bearer() != Some(KEY) {
        let error = json!({"error": {"message": "Incorrect API key provided",
                                     "type": "invalid_request_error"}});
        return Answer::new(401, error.to_string());
    }
    scripted.unwrap_or_else(|| {
        let body = json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "model": MODEL,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": format!("LLM reply {n}.")}}],
            "usage": {"prompt_tokens": 31, "completion_tokens": 9, "total_tokens": 40}
        });
        Answer::new(200, body.to_string())
    })
}

fn use_openai(c: &mut lull::config::Config, llm: &FakePlatform) {
    c.responder = ResponderKind::OpenAi;
    c.llm_base_url = Some(llm.base.clone());
    c.llm_api_key = Some(Secret::new(KEY));
    c.llm_model = Some(MODEL.into());
    c.llm_timeout_seconds = 10.0;
}

#[tokio::test]
async fn a_bot_answering_400_fails_the_batch_and_the_fallback_reply_is_sent_once() {
    let bot = FakeBot::start().await;
    bot.script([BotAnswer::new(
        400,
        format!("unknown intent {}", "x".repeat(400)),
    )]);
    let app = spawn_app_with(|c| {
        use_bot(c, &bot);
        c.fallback_reply = FALLBACK.into();
    })
    .await;
    let message = whatsapp_text(MARIA, "wamid.fail-400", now_secs() - 60, "asdf");
    assert_eq!(app.post_whatsapp(&message).await.status(), 200);

    let replies = replies_at_least(&app.graph, 1).await;
    assert_eq!(body(&replies[0]), FALLBACK);
    let batch = wait_for("the fallback recorded", PATIENCE, || async {
        let batch = batch_with_status(&app, "failed").await;
        batch.fallback.then_some(batch)
    })
    .await;
    assert_eq!(batch.error_code.as_deref(), Some("400"));
    let error = batch.error_message.unwrap_or_default();
    assert!(error.contains("HTTP 400: unknown intent xxx"), "{error}");
    assert!(
        error.len() < 300,
        "the first 200 bytes of the body: {error}"
    );
    assert_eq!(batch.platform_message_ids.len(), 1);
    settle().await;
    assert_eq!(app.graph.replies().len(), 1, "the fallback, once");
    assert_eq!(bot.seen().len(), 1, "a refusal is not retried");
    assert_eq!(app.metrics.counter("lull_fallback_replies_total", &[]), 1);
    app.stop().await;
}

#[tokio::test]
async fn an_llm_refusing_its_key_keeps_the_batch_shows_on_readyz_and_answers_once_the_key_works() {
    let llm = fake(OpenAi).await;
    let refused = json!({"error": {"message": "Incorrect API key provided",
                                   "type": "invalid_request_error"}});
    // The key is refused twice, then works again.
    llm.script([
        Answer::new(401, refused.to_string()),
        Answer::new(401, refused.to_string()),
    ]);
    let app = spawn_app_with(|c| {
        use_openai(c, &llm);
        c.fallback_reply = FALLBACK.into();
    })
    .await;
    let message = whatsapp_text(MARIA, "wamid.fail-401", now_secs() - 60, "hello?");
    assert_eq!(app.post_whatsapp(&message).await.status(), 200);

    let ready = wait_for("/readyz to report the responder", PATIENCE, || async {
        let ready = app.get_json("/readyz").await;
        (ready["responder"] == "failing").then_some(ready)
    })
    .await;
    assert_eq!(ready["status"], "degraded");
    assert_eq!(ready["responder_status"], 401);
    let error = ready["responder_error"].as_str().unwrap();
    assert!(error.contains("Incorrect API key"), "{error}");
    assert!(!error.contains(KEY));
    assert!(
        app.store
            .recent_batches(10)
            .await
            .unwrap()
            .iter()
            .all(|b| b.status != "failed"),
        "nothing failed"
    );

    let replies = replies_at_least(&app.graph, 1).await;
    assert_eq!(body(&replies[0]), "LLM reply 3.");
    let batch = batch_with_status(&app, "sent").await;
    assert_eq!(batch.claims, 3, "claimed again after each refusal");
    assert!(!batch.fallback);
    let ready = app.get_json("/readyz").await;
    assert_eq!(
        ready,
        json!({"status": "ok", "postgres": "up", "redis": "up"})
    );
    assert_eq!(
        app.metrics.counter(
            "lull_responder_errors_total",
            &[("responder", "openai"), ("kind", "outage")]
        ),
        2
    );
    settle().await;
    assert_eq!(app.graph.replies().len(), 1, "one reply, no fallback");
    app.stop().await;
}

#[tokio::test]
async fn usage_from_the_llms_answer_is_stored_on_the_batch() {
    let llm = fake(OpenAi).await;
    let app = spawn_app_with(|c| use_openai(c, &llm)).await;
    let message = whatsapp_text(MARIA, "wamid.usage", now_secs() - 60, "hi");
    assert_eq!(app.post_whatsapp(&message).await.status(), 200);

    let batch = batch_with_status(&app, "sent").await;
    assert_eq!(batch.responder.as_deref(), Some("openai"));
    assert_eq!(batch.model.as_deref(), Some(MODEL));
    assert_eq!(
        (batch.prompt_tokens, batch.completion_tokens),
        (Some(31), Some(9))
    );
    assert!(batch.generation_ms.is_some_and(|ms| ms >= 0));
    assert_eq!(
        app.metrics.counter(
            "lull_responder_tokens_total",
            &[("model", MODEL), ("kind", "completion")]
        ),
        9
    );
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains("lull_generation_seconds_count 1"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_bot_answering_403_is_an_outage_and_the_batch_waits_for_it() {
    let bot = FakeBot::start().await;
    bot.script([BotAnswer::new(403, "forbidden")]);
    let app = spawn_app_with(|c| {
        use_bot(c, &bot);
        c.fallback_reply = FALLBACK.into();
    })
    .await;
    let message = whatsapp_text(MARIA, "wamid.fail-403", now_secs() - 60, "hello?");
    assert_eq!(app.post_whatsapp(&message).await.status(), 200);

    let ready = wait_for("/readyz to report the bot", PATIENCE, || async {
        let ready = app.get_json("/readyz").await;
        (ready["responder"] == "failing").then_some(ready)
    })
    .await;
    assert_eq!(ready["responder_status"], 403);
    let replies = replies_at_least(&app.graph, 1).await;
    assert_eq!(body(&replies[0]), crate::bot::bot_text(2));
    let batch = batch_with_status(&app, "sent").await;
    assert!(!batch.fallback);
    assert_eq!(
        app.metrics.counter(
            "lull_responder_errors_total",
            &[("responder", "http"), ("kind", "outage")]
        ),
        1
    );
    app.stop().await;
}
