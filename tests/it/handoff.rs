//! Issue 17: handoff. A human agent's echo, an operator, a contact's keyword or the
//! responder pauses the bot for a conversation; its messages are stored and kept
//! in history, never answered, until an operator or idle time resumes it. Real
//! Redis, real PostgreSQL, real HTTP.

use crate::fake_platforms::{
    Answer, FakePlatform, INSTAGRAM_TOKEN, Received, fake, fake_instagram,
};
use crate::helpers::*;
use fred::interfaces::KeysInterface;
use lull::claim_loop::Wake;
use lull::config::{HandoffSettings, Secret};
use lull::fake_platform::{Api, Call};
use lull::handoff::{Handoff, PauseRequest, Trigger};
use lull::message::{ChannelKind, Conversation};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const WEBHOOK_IG: &str = "/api/instagram/webhook";
const IG_ACCOUNT: &str = "17841400000000001";
const CUSTOMER: &str = "5512340000000001";
const OUR_APP: &str = "1111111111";
const INBOX_APP: &str = "2222222222";

fn maria() -> Conversation {
    Conversation::new(ChannelKind::WhatsApp, PHONE_ID, MARIA)
}

/// A coexistence number's echo: what the business sent to Maria from the
/// WhatsApp Business app.
fn whatsapp_echo(id: &str, ts_secs: i64, text: &str) -> Vec<u8> {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": [{
                "field": "smb_message_echoes",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550001111", "phone_number_id": PHONE_ID},
                    "message_echoes": [{
                        "from": "15550001111",
                        "to": MARIA,
                        "id": id,
                        "timestamp": ts_secs.to_string(),
                        "type": "text",
                        "text": {"body": text}
                    }]
                }
            }]
        }]
    })
    .to_string()
    .into_bytes()
}

/// An operator's handle on `app`'s conversations, as the admin API builds it.
fn handoff(app: &TestApp, settings: HandoffSettings) -> Handoff {
    Handoff::new(
        app.store.clone(),
        app.redis_batches.clone(),
        app.metrics.clone(),
        Arc::new(Wake::default()),
        HashMap::new(),
        settings,
    )
}

async fn mode(app: &TestApp) -> String {
    app.column(&format!(
        "SELECT mode FROM conversation_modes WHERE contact_id = '{MARIA}'"
    ))
    .await
    .pop()
    .unwrap_or_else(|| "bot".into())
}

async fn wait_paused(app: &TestApp) {
    wait_for("the conversation paused", PATIENCE, || async {
        (mode(app).await == "human").then_some(())
    })
    .await;
}

/// The texts of history as PostgreSQL has it (what a context is built from).
async fn transcript(app: &TestApp) -> Vec<(String, String)> {
    app.store
        .recent_history(&maria(), 50)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.dir.as_str().to_owned(), e.text))
        .collect()
}

fn reply_text(seen: &Received) -> String {
    seen.body["text"]["body"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_whatsapp_coexistence_echo_pauses_and_the_contacts_messages_are_kept_unanswered() {
    let app = spawn_app().await;
    let ts = now_secs();
    let echo = app
        .post_whatsapp(&whatsapp_echo("wamid.agent1", ts, "Hi Maria, Ana here"))
        .await;
    assert_eq!(echo.status(), 200);
    wait_paused(&app).await;
    app.post_whatsapp(&whatsapp_text(MARIA, "wamid.m1", ts + 1, "thanks Ana"))
        .await;
    settle().await;
    settle().await;
    assert!(app.graph.replies().is_empty(), "the bot stays quiet");
    assert_eq!(
        transcript(&app).await,
        vec![
            ("out".to_owned(), "Hi Maria, Ana here".to_owned()),
            ("in".to_owned(), "thanks Ana".to_owned()),
        ]
    );
    assert_eq!(
        app.count("SELECT count(*) FROM conversation_messages WHERE author = 'agent'")
            .await,
        1
    );
    assert_eq!(
        app.metrics.counter(
            "lull_handoffs_total",
            &[("channel", "whatsapp"), ("trigger", "agent")]
        ),
        1
    );
    // A platform retry of the echo changes nothing.
    app.post_whatsapp(&whatsapp_echo("wamid.agent1", ts, "Hi Maria, Ana here"))
        .await;
    assert_eq!(
        app.metrics.counter(
            "lull_handoffs_total",
            &[("channel", "whatsapp"), ("trigger", "agent")]
        ),
        1
    );
    app.stop().await;
}

async fn spawn_instagram() -> (TestApp, FakePlatform) {
    let fake = fake_instagram().await;
    let base = fake.base.clone();
    let app = spawn_app_with(move |c| {
        c.instagram_token = Some(Secret::new(INSTAGRAM_TOKEN));
        c.instagram_app_secret = Some(Secret::new(APP_SECRET));
        c.instagram_verify_token = Some(Secret::new(VERIFY_TOKEN));
        c.instagram_api_base = base;
        c.instagram_app_id = Some(OUR_APP.into());
    })
    .await;
    (app, fake)
}

fn ig_event(sender: &str, recipient: &str, message: serde_json::Value) -> Vec<u8> {
    let now = lull::time::now_ms();
    json!({
        "object": "instagram",
        "entry": [{
            "id": IG_ACCOUNT,
            "time": now,
            "messaging": [{
                "sender": {"id": sender},
                "recipient": {"id": recipient},
                "timestamp": now,
                "message": message
            }]
        }]
    })
    .to_string()
    .into_bytes()
}

async fn ig_mode(app: &TestApp) -> String {
    app.column(&format!(
        "SELECT mode FROM conversation_modes WHERE contact_id = '{CUSTOMER}'"
    ))
    .await
    .pop()
    .unwrap_or_else(|| "bot".into())
}

#[tokio::test]
async fn an_instagram_echo_from_another_app_pauses_and_our_own_does_not() {
    let (app, fake) = spawn_instagram().await;
    // Our own reply's echo: no pause.
    let ours = ig_event(
        IG_ACCOUNT,
        CUSTOMER,
        json!({"mid": "mid.ours", "text": "our reply", "is_echo": true, "app_id": OUR_APP}),
    );
    assert_eq!(app.post_signed(WEBHOOK_IG, &ours).await.status(), 200);
    settle().await;
    assert_eq!(ig_mode(&app).await, "bot");
    // An agent in the Instagram inbox: paused.
    let agent = ig_event(
        IG_ACCOUNT,
        CUSTOMER,
        json!({"mid": "mid.agent", "text": "Hi, a person here", "is_echo": true, "app_id": INBOX_APP}),
    );
    assert_eq!(app.post_signed(WEBHOOK_IG, &agent).await.status(), 200);
    assert_eq!(ig_mode(&app).await, "human");
    let dm = ig_event(
        CUSTOMER,
        IG_ACCOUNT,
        json!({"mid": "mid.c1", "text": "great"}),
    );
    app.post_signed(WEBHOOK_IG, &dm).await;
    settle().await;
    settle().await;
    assert!(fake.replies().is_empty(), "the bot stays quiet");
    assert_eq!(
        app.count("SELECT count(*) FROM conversation_messages WHERE direction = 'in'")
            .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn a_paused_conversation_stays_paused_across_a_redis_wipe() {
    let app = spawn_app().await;
    let ts = now_secs();
    app.post_whatsapp(&whatsapp_echo("wamid.agent1", ts, "Ana here"))
        .await;
    wait_paused(&app).await;
    // Redis loses this test's keys.
    let redis = app.redis_batches.pool().next();
    let keys: Vec<String> = {
        let out = std::process::Command::new("redis-cli")
            .args([
                "-u",
                &redis_url(),
                "--scan",
                "--pattern",
                &format!("{}*", app.prefix),
            ])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    assert!(!keys.is_empty());
    let _: i64 = redis.del(keys).await.unwrap();
    app.post_whatsapp(&whatsapp_text(MARIA, "wamid.m1", ts + 1, "after the wipe"))
        .await;
    settle().await;
    settle().await;
    assert!(
        app.graph.replies().is_empty(),
        "nothing answered while paused"
    );
    let mode_key = app.redis_batches.keys().conversation(&maria()).mode;
    let restored: i64 = redis.exists(&mode_key).await.unwrap();
    assert_eq!(restored, 1, "the mode came back from PostgreSQL");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_three_instances_a_paused_conversation_is_answered_by_none() {
    let app = spawn_app().await;
    let second = spawn_app_sharing(&app, |_| {}).await;
    let third = spawn_app_sharing(&app, |_| {}).await;
    let ts = now_secs();
    app.post_whatsapp(&whatsapp_echo("wamid.agent1", ts, "Ana here"))
        .await;
    wait_paused(&app).await;
    for (i, instance) in [&second, &third, &app].iter().enumerate() {
        let id = format!("wamid.m{i}");
        instance
            .post_whatsapp(&whatsapp_text(
                MARIA,
                &id,
                ts + 1 + i as i64,
                "still there?",
            ))
            .await;
    }
    settle().await;
    settle().await;
    assert!(app.graph.replies().is_empty());
    assert_eq!(
        app.count("SELECT count(*) FROM conversation_messages WHERE direction = 'in'")
            .await,
        3
    );
    third.stop().await;
    second.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_pause_while_the_reply_is_generating_sends_nothing() {
    let app = spawn_app_with(|c| c.responder_delay_ms = 1_000).await;
    let ts = now_secs();
    app.post_whatsapp(&whatsapp_text(MARIA, "wamid.m1", ts, "hello"))
        .await;
    batch_with_status(&app, "generating").await;
    let outcome = handoff(&app, HandoffSettings::default())
        .pause(
            &maria(),
            PauseRequest {
                by: "operator ana".into(),
                minutes: None,
                reason: Some("taking over".into()),
                trigger: Trigger::Operator,
            },
        )
        .await
        .unwrap();
    assert!(outcome.changed);
    let record = outcome.record.unwrap();
    assert_eq!(record.paused_by.as_deref(), Some("operator ana"));
    assert_eq!(record.reason.as_deref(), Some("taking over"));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    settle().await;
    assert!(app.graph.replies().is_empty(), "nothing sent");
    assert_eq!(
        app.count("SELECT count(*) FROM conversation_messages WHERE batch_id IS NOT NULL")
            .await,
        0,
        "its message is left to the human"
    );
    app.stop().await;
}

/// The contact wrote before and after the agent's message while paused.
async fn paused_with_messages_around_the_agents(app: &TestApp) {
    let ts = now_secs();
    app.post_whatsapp(&whatsapp_echo("wamid.agent1", ts, "Ana here"))
        .await;
    wait_paused(app).await;
    app.post_whatsapp(&whatsapp_text(
        MARIA,
        "wamid.before",
        ts - 1,
        "earlier question",
    ))
    .await;
    app.post_whatsapp(&whatsapp_text(
        MARIA,
        "wamid.after",
        ts + 1,
        "later question",
    ))
    .await;
}

async fn assert_only_the_later_message_answered(app: &TestApp) {
    let replies = replies_at_least(&app.graph, 1).await;
    settle().await;
    assert_eq!(app.graph.replies().len(), 1);
    let text = reply_text(&replies[0]);
    assert!(text.contains("later question"), "{text}");
    assert!(!text.contains("earlier question"), "{text}");
    let human = batch_with_status(app, "human").await;
    assert_eq!(human.message_ids.len(), 1);
    assert_eq!(mode(app).await, "bot");
}

#[tokio::test]
async fn idle_resume_answers_only_the_messages_after_the_agents_last_one() {
    let app = spawn_app_with(|c| c.handoff_idle_minutes = 0.02).await;
    paused_with_messages_around_the_agents(&app).await;
    assert_only_the_later_message_answered(&app).await;
    assert_eq!(
        app.metrics.counter(
            "lull_resumes_total",
            &[("channel", "whatsapp"), ("trigger", "idle")]
        ),
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn an_operators_resume_answers_only_the_messages_after_the_agents_last_one_at_once() {
    let app = spawn_app_with(|c| c.handoff_idle_minutes = 0.0).await;
    paused_with_messages_around_the_agents(&app).await;
    settle().await;
    assert!(app.graph.replies().is_empty());
    let handoff = handoff(&app, HandoffSettings::default());
    let outcome = handoff
        .resume(&maria(), "operator ana", Trigger::Operator)
        .await
        .unwrap();
    assert!(outcome.changed);
    assert_eq!((outcome.batched, outcome.handled_by_human), (1, 1));
    let again = handoff
        .resume(&maria(), "operator ana", Trigger::Operator)
        .await
        .unwrap();
    assert!(!again.changed, "idempotent");
    assert_only_the_later_message_answered(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_handoff_keyword_pauses_and_sends_the_handoff_reply_once() {
    let app = spawn_app_with(|c| {
        c.handoff_keywords = "humano, talk to a person".into();
        c.handoff_reply = "Someone will be right with you.".into();
    })
    .await;
    let ts = now_secs();
    app.post_whatsapp(&whatsapp_text(MARIA, "wamid.k1", ts, "¡Humano!"))
        .await;
    let replies = replies_at_least(&app.graph, 1).await;
    assert_eq!(reply_text(&replies[0]), "Someone will be right with you.");
    assert_eq!(mode(&app).await, "human");
    app.post_whatsapp(&whatsapp_text(
        MARIA,
        "wamid.k2",
        ts + 1,
        "talk to a person",
    ))
    .await;
    app.post_whatsapp(&whatsapp_text(MARIA, "wamid.k3", ts + 2, "hello?"))
        .await;
    settle().await;
    settle().await;
    assert_eq!(app.graph.replies().len(), 1, "the handoff reply goes once");
    assert_eq!(
        app.metrics.counter(
            "lull_handoffs_total",
            &[("channel", "whatsapp"), ("trigger", "keyword")]
        ),
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn on_a_redis_cluster_a_paused_conversation_is_not_answered_and_resumes() {
    let cluster = crate::redis_server::OwnCluster::start();
    let url = cluster.url();
    let app = spawn_app_with(|c| {
        c.redis_url = url;
        c.redis_shards = 4;
        c.handoff_idle_minutes = 0.0;
    })
    .await;
    let ts = now_secs();
    app.post_whatsapp(&whatsapp_echo("wamid.agent1", ts, "Ana here"))
        .await;
    wait_paused(&app).await;
    app.post_whatsapp(&whatsapp_text(
        MARIA,
        "wamid.after",
        ts + 1,
        "later question",
    ))
    .await;
    settle().await;
    settle().await;
    assert!(
        app.graph.replies().is_empty(),
        "nothing answered while paused"
    );
    let outcome = handoff(&app, HandoffSettings::default())
        .resume(&maria(), "operator", Trigger::Operator)
        .await
        .unwrap();
    assert_eq!(outcome.batched, 1);
    let replies = replies_at_least(&app.graph, 1).await;
    assert!(reply_text(&replies[0]).contains("later question"));
    assert_eq!(app.metrics.counter("lull_redis_errors_total", &[]), 0);
    app.stop().await;
}

#[tokio::test]
async fn with_the_pause_lost_from_redis_commit_to_send_still_sends_nothing() {
    let app = spawn_app_with(|c| c.responder_delay_ms = 800).await;
    let ts = now_secs();
    app.post_whatsapp(&whatsapp_text(MARIA, "wamid.m1", ts, "hello"))
        .await;
    batch_with_status(&app, "generating").await;
    handoff(&app, HandoffSettings::default())
        .pause(
            &maria(),
            PauseRequest {
                by: "operator".into(),
                minutes: Some(30.0),
                reason: None,
                trigger: Trigger::Operator,
            },
        )
        .await
        .unwrap();
    // Redis forgets the pause before the worker's last look.
    let mode_key = app.redis_batches.keys().conversation(&maria()).mode;
    let _: i64 = app
        .redis_batches
        .pool()
        .next()
        .del(&mode_key)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    settle().await;
    assert!(app.graph.replies().is_empty(), "PostgreSQL's guard held");
    assert_eq!(
        app.count("SELECT count(*) FROM conversation_messages WHERE batch_id IS NOT NULL")
            .await,
        0
    );
    app.stop().await;
}

/// A fake OpenAI-compatible API at `/v1` that answers every request with one
/// completion.
struct Completion;

impl Api for Completion {
    fn base_path(&self) -> &str {
        "/v1"
    }

    fn answer(&self, _: &Call, _: Option<Answer>, _: u64) -> Answer {
        completion()
    }
}

fn completion() -> Answer {
    let body = json!({
        "id": "chatcmpl-fake", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "Glad to help."}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    });
    Answer::new(200, body.to_string())
}

#[tokio::test]
async fn after_a_resume_the_llm_sees_the_agents_message_as_an_assistant_turn() {
    let llm = fake(Completion).await;
    let base = llm.base.clone();
    let app = spawn_app_with(move |c| {
        c.responder = lull::config::ResponderKind::OpenAi;
        c.llm_base_url = Some(base);
        c.llm_api_key = Some(Secret::new("sk-test"));
        c.llm_model = Some("m".into());
        c.handoff_idle_minutes = 0.0;
    })
    .await;
    let ts = now_secs();
    // The agent answers the contact's question within the window.
    app.post_whatsapp(&whatsapp_text(
        MARIA,
        "wamid.q",
        ts - 1,
        "where is my order?",
    ))
    .await;
    app.post_whatsapp(&whatsapp_echo("wamid.agent1", ts, "Your order ships today"))
        .await;
    wait_paused(&app).await;
    app.post_whatsapp(&whatsapp_text(
        MARIA,
        "wamid.after",
        ts + 1,
        "and the invoice?",
    ))
    .await;
    handoff(&app, HandoffSettings::default())
        .resume(&maria(), "operator", Trigger::Operator)
        .await
        .unwrap();
    let requests = wait_for("an LLM request", PATIENCE, || async {
        let seen = llm.seen();
        (!seen.is_empty()).then_some(seen)
    })
    .await;
    let messages = requests[0].body["messages"].as_array().unwrap().clone();
    let agent_turn = messages
        .iter()
        .find(|m| {
            m["content"]
                .as_str()
                .unwrap_or_default()
                .contains("Your order ships today")
        })
        .unwrap_or_else(|| panic!("agent message in context: {messages:?}"));
    assert_eq!(agent_turn["role"], "assistant");
    let last = messages.last().unwrap();
    assert_eq!(last["role"], "user");
    assert!(
        last["content"]
            .as_str()
            .unwrap()
            .contains("and the invoice?")
    );
    replies_at_least(&app.graph, 1).await;
    settle().await;
    assert_eq!(
        llm.seen().len(),
        1,
        "the question the agent answered got no reply"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_operators_pause_for_some_minutes_ends_by_itself() {
    let app = spawn_app_with(|c| c.handoff_idle_minutes = 0.0).await;
    let ts = now_secs();
    let outcome = handoff(&app, HandoffSettings::default())
        .pause(
            &maria(),
            PauseRequest {
                by: "operator".into(),
                minutes: Some(0.005),
                reason: Some("checking the order".into()),
                trigger: Trigger::Operator,
            },
        )
        .await
        .unwrap();
    assert!(outcome.record.unwrap().paused_until.is_some());
    app.post_whatsapp(&whatsapp_text(MARIA, "wamid.m1", ts, "hello?"))
        .await;
    let replies = replies_at_least(&app.graph, 1).await;
    assert!(reply_text(&replies[0]).contains("hello?"));
    assert_eq!(mode(&app).await, "bot");
    assert_eq!(
        app.metrics.counter(
            "lull_resumes_total",
            &[("channel", "whatsapp"), ("trigger", "idle")]
        ),
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn a_bad_number_of_minutes_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let error = handoff(&app, HandoffSettings::default())
        .pause(
            &maria(),
            PauseRequest {
                by: "operator".into(),
                minutes: Some(-1.0),
                reason: None,
                trigger: Trigger::Operator,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(error, lull::handoff::HandoffError::Minutes));
    assert_eq!(mode(&app).await, "bot");
    app.stop().await;
}

#[tokio::test]
async fn the_console_transcript_names_the_agents_message_as_the_agents() {
    let app = spawn_app().await;
    let ts = now_secs();
    app.post_whatsapp(&whatsapp_echo("wamid.agent-view", ts, "Ana here"))
        .await;
    wait_paused(&app).await;
    app.post_whatsapp(&whatsapp_text(MARIA, "wamid.view1", ts + 1, "hi Ana"))
        .await;
    let path = format!("/admin/api/conversations/{}", maria().id());
    let authors = wait_for("both lines in the transcript", PATIENCE, || async {
        let view = app.get_json(&path).await;
        let lines = view["view"]["transcript"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let authors: Vec<String> = lines
            .iter()
            .map(|l| l["author"].as_str().unwrap_or_default().to_owned())
            .collect();
        (authors.len() == 2).then_some(authors)
    })
    .await;
    assert_eq!(authors, ["agent", "contact"]);
    app.stop().await;
}

#[tokio::test]
async fn a_handoff_by_an_agents_echo_is_in_the_audit_and_the_stats() {
    let app = spawn_app().await;
    app.post_whatsapp(&whatsapp_echo("wamid.agent-stats", now_secs(), "Ana here"))
        .await;
    wait_paused(&app).await;
    let stats = app.get_json("/admin/api/stats?since=1h").await;
    assert_eq!(stats["total"]["handoffs"], 1, "{stats}");
    let audit = app.get_json("/admin/api/audit").await;
    let actors: Vec<&str> = audit
        .as_array()
        .or_else(|| audit["actions"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|a| a["actor"].as_str())
        .collect();
    assert_eq!(actors, ["agent"], "{audit}");
    app.stop().await;
}
