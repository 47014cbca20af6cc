//! RESPONDER=http end to end: WhatsApp bursts answered by a local fake bot that
//! checks each request's signature, records its raw body, and answers what the
//! test scripted (by default one text message).

use crate::helpers::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use lull::config::{Config, ResponderKind, Secret};
use lull::message::Direction;
use lull::responder::signature::verify;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// The key the fake bot checks signatures with.
pub const BOT_SECRET: &str = "bot-secret-0123456789";

/// One request the bot received.
#[derive(Debug, Clone)]
pub struct BotSeen {
    /// When it arrived.
    pub at: std::time::Instant,
    /// The parsed body.
    pub body: Value,
    /// Whether `X-Lull-Signature-256` is the HMAC of the timestamp and the raw body.
    pub signed: bool,
    /// `X-Lull-Timestamp`.
    pub timestamp: i64,
}

/// What the bot answers.
#[derive(Debug, Clone)]
pub struct BotAnswer {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<u64>,
    pub delay: Duration,
}

impl BotAnswer {
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            body: body.into(),
            retry_after: None,
            delay: Duration::ZERO,
        }
    }

    /// 200 with this reply JSON.
    pub fn reply(reply: Value) -> Self {
        Self::new(200, reply.to_string())
    }
}

/// The default answer to the n-th request.
pub fn bot_text(n: usize) -> String {
    format!("Bot reply {n}.")
}

#[derive(Default)]
struct State {
    seen: Vec<BotSeen>,
    script: VecDeque<BotAnswer>,
}

/// A running fake bot.
#[derive(Clone)]
pub struct FakeBot {
    pub url: String,
    state: Arc<Mutex<State>>,
    /// Requests whose connection was dropped before the answer.
    cancelled: Arc<AtomicU64>,
    /// When each of those was dropped.
    cancelled_at: Arc<Mutex<Vec<std::time::Instant>>>,
}

/// Counts a request as cancelled unless it was answered.
struct Pending(Arc<AtomicU64>, Arc<Mutex<Vec<std::time::Instant>>>, bool);

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.2 {
            self.1.lock().unwrap().push(std::time::Instant::now());
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl FakeBot {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bot = Self {
            url: format!("http://{addr}/lull"),
            state: Arc::default(),
            cancelled: Arc::default(),
            cancelled_at: Arc::default(),
        };
        let shared = bot.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let bot = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| bot.clone().handle(req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        bot
    }

    /// Answers the next requests with these, in order; then the default.
    pub fn script(&self, answers: impl IntoIterator<Item = BotAnswer>) {
        self.state.lock().unwrap().script.extend(answers);
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<BotSeen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Requests dropped by lull before they were answered.
    pub fn cancelled(&self) -> u64 {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// When the first request lull dropped was dropped.
    pub fn first_cancelled_at(&self) -> Option<std::time::Instant> {
        self.cancelled_at.lock().unwrap().first().copied()
    }

    /// Waits for `n` requests; returns them all.
    pub async fn requests(&self, n: usize) -> Vec<BotSeen> {
        wait_for(&format!("{n} bot requests"), PATIENCE, || async {
            let seen = self.seen();
            (seen.len() >= n).then_some(seen)
        })
        .await
    }

    async fn handle(
        self,
        req: Request<hyper::body::Incoming>,
    ) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
        let mut pending = Pending(self.cancelled.clone(), self.cancelled_at.clone(), false);
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .unwrap_or_default()
        };
        let timestamp: i64 = header("x-lull-timestamp").parse().unwrap_or(0);
        let signature = header("x-lull-signature-256");
        let raw = req.into_body().collect().await.unwrap().to_bytes();
        let signed = verify(&Secret::new(BOT_SECRET), timestamp, &raw, &signature);
        let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        let answer = {
            let mut state = self.state.lock().unwrap();
            state.seen.push(BotSeen {
                at: std::time::Instant::now(),
                body,
                signed,
                timestamp,
            });
            let n = state.seen.len();
            state
                .script
                .pop_front()
                .unwrap_or_else(|| BotAnswer::reply(json!({"messages": [{"text": bot_text(n)}]})))
        };
        let answer = if signed {
            answer
        } else {
            BotAnswer::new(401, "bad signature")
        };
        if !answer.delay.is_zero() {
            tokio::time::sleep(answer.delay).await;
        }
        pending.2 = true;
        let mut response = Response::new(Full::new(Bytes::from(answer.body)));
        *response.status_mut() = StatusCode::from_u16(answer.status).unwrap();
        response
            .headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        if let Some(secs) = answer.retry_after {
            response
                .headers_mut()
                .insert("retry-after", secs.to_string().parse().unwrap());
        }
        Ok(response)
    }
}

/// Points the app at `bot`.
pub fn use_bot(c: &mut Config, bot: &FakeBot) {
    c.responder = ResponderKind::Http;
    c.bot_url = Some(bot.url.clone());
    c.bot_secret = Some(Secret::new(BOT_SECRET));
    c.bot_timeout_seconds = 10.0;
}

#[tokio::test]
async fn the_bot_gets_a_signed_request_with_the_batch_its_history_and_ids() {
    let bot = FakeBot::start().await;
    let app = spawn_app_with(|c| use_bot(c, &bot)).await;
    let ts = now_secs() - 60;
    let hello = whatsapp_text(MARIA, "wamid.bot-hello", ts, "hello");
    assert_eq!(app.post_whatsapp(&hello).await.status(), 200);
    let replies = replies_at_least(&app.graph, 1).await;
    assert_eq!(body(&replies[0]), bot_text(1));
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

    let order = whatsapp_text(MARIA, "wamid.bot-order", ts + 10, "where is my order?");
    assert_eq!(app.post_whatsapp(&order).await.status(), 200);
    let replies = replies_at_least(&app.graph, 2).await;
    assert_eq!(body(&replies[1]), bot_text(2));

    let requests = bot.requests(2).await;
    let request = &requests[1];
    assert!(request.signed, "signed with BOT_SECRET");
    assert!((request.timestamp - now_secs()).abs() < 60);
    let sent = batch_with_status(&app, "sent").await;
    let body = &request.body;
    assert!(!body["batch_id"].as_str().unwrap().is_empty());
    assert_eq!(body["attempt"], 1);
    assert_eq!(
        body["conversation"],
        json!({"channel": "whatsapp", "account": PHONE_ID, "contact": MARIA,
               "agenda": format!("whatsapp:{PHONE_ID}:{MARIA}"), "contact_name": "Test User"})
    );
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["text"], "where is my order?");
    assert_eq!(messages[0]["platform_id"], "wamid.bot-order");
    assert_eq!(messages[0]["direction"], "in");
    assert_eq!(messages[0]["author"], "contact");
    assert!(messages[0]["time"].as_str().unwrap().ends_with('Z'));
    let history: Vec<(&str, &str)> = body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["author"].as_str().unwrap(), m["text"].as_str().unwrap()))
        .collect();
    assert_eq!(
        history,
        [("contact", "hello"), ("bot", bot_text(1).as_str())]
    );
    assert_eq!(body["history"][0]["platform_id"], "wamid.bot-hello");
    assert_eq!(sent.responder.as_deref(), Some("http"));
    app.stop().await;
}

#[tokio::test]
async fn a_bot_answering_500_then_200_is_asked_again_with_the_same_batch_id_and_replies_once() {
    let bot = FakeBot::start().await;
    bot.script([BotAnswer::new(500, "oops")]);
    let app = spawn_app_with(|c| use_bot(c, &bot)).await;
    let message = whatsapp_text(MARIA, "wamid.bot-500", now_secs() - 60, "hi");
    assert_eq!(app.post_whatsapp(&message).await.status(), 200);

    let replies = replies_at_least(&app.graph, 1).await;
    assert_eq!(body(&replies[0]), bot_text(2));
    batch_with_status(&app, "sent").await;
    settle().await;
    assert_eq!(app.graph.replies().len(), 1, "one reply");
    let requests = bot.seen();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].body["batch_id"], requests[1].body["batch_id"]);
    assert_eq!(
        (&requests[0].body["attempt"], &requests[1].body["attempt"]),
        (&json!(1), &json!(2))
    );
    app.stop().await;
}

#[tokio::test]
async fn a_bot_answering_204_sends_nothing_and_its_messages_are_answered() {
    let bot = FakeBot::start().await;
    bot.script([BotAnswer::new(204, "")]);
    let app = spawn_app_with(|c| use_bot(c, &bot)).await;
    let message = whatsapp_text(MARIA, "wamid.bot-204", now_secs() - 60, "ok thanks");
    assert_eq!(app.post_whatsapp(&message).await.status(), 200);

    let batch = batch_with_status(&app, "sent").await;
    settle().await;
    assert!(app.graph.replies().is_empty(), "nothing sent");
    assert!(batch.platform_message_ids.is_empty());
    assert_eq!(
        app.count(
            "SELECT count(*) FROM conversation_messages WHERE direction = 'in' AND batch_id IS NULL"
        )
        .await,
        0,
        "the message is answered"
    );
    assert_eq!(bot.seen().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_bot_asking_for_a_handoff_has_it_recorded_on_the_batch() {
    let bot = FakeBot::start().await;
    bot.script([BotAnswer::reply(json!({
        "messages": [{"text": "A person will take it from here."}],
        "handoff": true
    }))]);
    let app = spawn_app_with(|c| use_bot(c, &bot)).await;
    let message = whatsapp_text(MARIA, "wamid.bot-human", now_secs() - 60, "a human please");
    assert_eq!(app.post_whatsapp(&message).await.status(), 200);

    let replies = replies_at_least(&app.graph, 1).await;
    assert_eq!(body(&replies[0]), "A person will take it from here.");
    let batch = batch_with_status(&app, "sent").await;
    assert!(batch.handoff);
    assert_eq!(app.metrics.counter("lull_handoffs_requested_total", &[]), 1);

    // The conversation is a human's now: the next message is stored, not answered.
    let counted = || {
        app.metrics.counter(
            "lull_handoffs_total",
            &[("channel", "whatsapp"), ("trigger", "responder")],
        )
    };
    wait_for("the responder's handoff counted", PATIENCE, || async {
        (counted() == 1).then_some(())
    })
    .await;
    let next = whatsapp_text(MARIA, "wamid.bot-human-2", now_secs(), "hello?");
    assert_eq!(app.post_whatsapp(&next).await.status(), 200);
    wait_for("the next message stored", PATIENCE, || async {
        let stored = app
            .count("SELECT count(*) FROM conversation_messages WHERE direction = 'in'")
            .await;
        (stored == 2).then_some(())
    })
    .await;
    settle().await;
    assert_eq!(
        app.graph.replies().len(),
        1,
        "nothing answered after the handoff"
    );
    assert_eq!(bot.seen().len(), 1, "the bot was not asked again");
    assert_eq!(counted(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_superseded_batch_drops_the_bots_request_and_one_reply_answers_both() {
    let bot = FakeBot::start().await;
    bot.script([BotAnswer {
        delay: Duration::from_secs(5),
        ..BotAnswer::reply(json!({"messages": [{"text": "too late"}]}))
    }]);
    let app = spawn_app_with(|c| {
        use_bot(c, &bot);
        c.batch_supersede = true;
    })
    .await;
    let ts = now_secs() - 60;
    let first = whatsapp_text(MARIA, "wamid.bot-sup-a", ts, "first thought");
    assert_eq!(app.post_whatsapp(&first).await.status(), 200);
    bot.requests(1).await;
    let second = whatsapp_text(MARIA, "wamid.bot-sup-b", ts + 1, "second thought");
    assert_eq!(app.post_whatsapp(&second).await.status(), 200);

    let replies = replies_at_least(&app.graph, 1).await;
    assert_eq!(body(&replies[0]), bot_text(2));
    wait_for("the first request cancelled", PATIENCE, || async {
        (bot.cancelled() == 1).then_some(())
    })
    .await;
    let requests = bot.seen();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].body["messages"].as_array().unwrap().len(), 2);
    assert_eq!(requests[0].body["batch_id"], requests[1].body["batch_id"]);
    settle().await;
    assert_eq!(app.graph.replies().len(), 1, "exactly one reply");
    app.stop().await;
}

#[tokio::test]
async fn usage_the_bot_reports_is_stored_on_the_batch() {
    let bot = FakeBot::start().await;
    bot.script([BotAnswer::reply(json!({
        "messages": [{"text": "Done."}],
        "usage": {"model": "house-bot-2", "prompt_tokens": 42, "completion_tokens": 7}
    }))]);
    let app = spawn_app_with(|c| use_bot(c, &bot)).await;
    let message = whatsapp_text(MARIA, "wamid.bot-usage", now_secs() - 60, "hi");
    assert_eq!(app.post_whatsapp(&message).await.status(), 200);

    let batch = batch_with_status(&app, "sent").await;
    assert_eq!(batch.model.as_deref(), Some("house-bot-2"));
    assert_eq!(
        (batch.prompt_tokens, batch.completion_tokens),
        (Some(42), Some(7))
    );
    assert!(batch.generation_ms.is_some());
    assert_eq!(
        app.metrics.counter(
            "lull_responder_tokens_total",
            &[("model", "house-bot-2"), ("kind", "prompt")]
        ),
        42
    );
    app.stop().await;
}

#[tokio::test]
async fn a_bot_answering_429_is_asked_again_no_sooner_than_its_retry_after() {
    let bot = FakeBot::start().await;
    bot.script([BotAnswer {
        retry_after: Some(1),
        ..BotAnswer::new(429, "slow down")
    }]);
    let app = spawn_app_with(|c| use_bot(c, &bot)).await;
    let message = whatsapp_text(MARIA, "wamid.bot-429", now_secs() - 60, "hi");
    assert_eq!(app.post_whatsapp(&message).await.status(), 200);

    let replies = replies_at_least(&app.graph, 1).await;
    assert_eq!(body(&replies[0]), bot_text(2));
    let requests = bot.seen();
    assert_eq!(requests.len(), 2);
    let waited = requests[1].at - requests[0].at;
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    app.stop().await;
}

#[tokio::test]
async fn stopping_the_process_drops_the_bots_request() {
    let bot = FakeBot::start().await;
    bot.script([BotAnswer {
        delay: Duration::from_secs(20),
        ..BotAnswer::reply(json!({"messages": [{"text": "never sent"}]}))
    }]);
    let app = spawn_app_with(|c| use_bot(c, &bot)).await;
    let message = whatsapp_text(MARIA, "wamid.bot-stop", now_secs() - 60, "hi");
    assert_eq!(app.post_whatsapp(&message).await.status(), 200);
    bot.requests(1).await;

    let graph = app.graph.clone();
    app.stop().await;
    wait_for("the request cancelled", PATIENCE, || async {
        (bot.cancelled() == 1).then_some(())
    })
    .await;
    assert!(graph.replies().is_empty(), "nothing sent");
}

#[tokio::test]
async fn a_bots_buttons_and_image_reach_whatsapp_as_interactive_and_media_messages() {
    let bot = FakeBot::start().await;
    bot.script([BotAnswer::reply(json!({"messages": [
        {"text": "Which order?", "buttons": [{"id": "o-1", "title": "#123"}, {"id": "o-2", "title": "#456"}]},
        {"image": {"url": "https://example.com/receipt.png", "caption": "Your receipt"}},
    ]}))]);
    let app = spawn_app_with(|c| use_bot(c, &bot)).await;
    let message = whatsapp_text(MARIA, "wamid.bot-rich", now_secs() - 60, "my order");
    assert_eq!(app.post_whatsapp(&message).await.status(), 200);

    let replies = replies_at_least(&app.graph, 2).await;
    let buttons = &replies[0].body;
    assert_eq!(buttons["type"], "interactive");
    assert_eq!(buttons["interactive"]["type"], "button");
    assert_eq!(
        buttons["interactive"]["action"]["buttons"][0]["reply"],
        json!({"id": "o-1", "title": "#123"})
    );
    let image = &replies[1].body;
    assert_eq!(image["type"], "image");
    assert_eq!(image["image"]["link"], "https://example.com/receipt.png");
    let batch = batch_with_status(&app, "sent").await;
    assert_eq!(batch.platform_message_ids.len(), 2, "each message recorded");
    app.stop().await;
}

#[tokio::test]
async fn a_message_during_generation_drops_the_bots_request_within_half_a_second() {
    let bot = FakeBot::start().await;
    bot.script([BotAnswer {
        delay: Duration::from_secs(8),
        ..BotAnswer::reply(json!({"messages": [{"text": "too late"}]}))
    }]);
    let app = spawn_app_with(|c| {
        use_bot(c, &bot);
        c.batch_supersede = true;
        // The default lease: its heartbeats come every 3.3 s, too late to notice.
        c.lock_ttl_seconds = 10.0;
    })
    .await;
    let ts = now_secs() - 60;
    let first = whatsapp_text(MARIA, "wamid.bot-fast-a", ts, "first thought");
    assert_eq!(app.post_whatsapp(&first).await.status(), 200);
    bot.requests(1).await;
    let second = whatsapp_text(MARIA, "wamid.bot-fast-b", ts + 1, "second thought");
    let sent_at = std::time::Instant::now();
    assert_eq!(app.post_whatsapp(&second).await.status(), 200);

    let dropped_at = wait_for("the first request dropped", PATIENCE, || async {
        bot.first_cancelled_at()
    })
    .await;
    let took = dropped_at.duration_since(sent_at);
    assert!(took < Duration::from_millis(500), "dropped after {took:?}");
    let replies = replies_at_least(&app.graph, 1).await;
    assert_eq!(body(&replies[0]), bot_text(2), "one reply answers both");
    assert_eq!(bot.seen()[1].body["messages"].as_array().unwrap().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn the_bot_gets_the_contacts_profile_name_when_the_platform_gives_one() {
    let bot = FakeBot::start().await;
    let app = spawn_app_with(|c| use_bot(c, &bot)).await;
    let body = json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": PHONE_ID},
            "contacts": [{"profile": {"name": "Maria Lopez"}, "wa_id": MARIA}],
            "messages": [{"from": MARIA, "id": "wamid.bot-name", "timestamp": (now_secs() - 60).to_string(),
                          "type": "text", "text": {"body": "hi"}}]}}]}]
    });
    let response = app.post_whatsapp(body.to_string().as_bytes()).await;
    assert_eq!(response.status(), 200);
    let requests = bot.requests(1).await;
    assert_eq!(
        requests[0].body["conversation"]["contact_name"],
        "Maria Lopez"
    );
    app.stop().await;
}
