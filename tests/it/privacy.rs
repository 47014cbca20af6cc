//! Issue 20, "Safe by default": data that can be erased. Retention erases texts and
//! payloads older than RETENTION_DAYS and nothing newer; forgetting a person leaves
//! nothing of them in PostgreSQL or Redis, and their next message starts afresh.

use crate::helpers::*;
use crate::process::Spec;
use crate::scripts::{Rig, T0, msg};
use chrono::{Duration as Days, Utc};
use fred::interfaces::{ClientLike, KeysInterface, SortedSetsInterface};
use lull::batch::forget::ForgetOutcome;
use lull::batch::{AckOutcome, ClaimToken, ExtendOutcome};
use lull::message::{ChannelKind, Conversation};
use lull::retention::{Erased, Retention};
use lull::time::UnixMs;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A second person, whose data must survive Maria's being forgotten.
const JOAO: &str = "15550003333";

fn maria() -> Conversation {
    Conversation::new(ChannelKind::WhatsApp, PHONE_ID, MARIA)
}

fn forget_path(conversation: &str) -> String {
    format!("/admin/api/conversations/{conversation}")
}

/// Rows of either table whose any column mentions `needle`.
async fn rows_mentioning(app: &TestApp, needle: &str) -> i64 {
    app.count(&format!(
        "SELECT (SELECT count(*) FROM conversation_messages t WHERE row_to_json(t)::text LIKE '%{needle}%')
              + (SELECT count(*) FROM reply_batches t WHERE row_to_json(t)::text LIKE '%{needle}%')"
    ))
    .await
}

/// Every key under the app's prefix, and every member of every agenda.
async fn redis_names(app: &TestApp) -> Vec<String> {
    let redis = app.redis_batches.pool().next();
    let mut names: Vec<String> = Vec::new();
    let mut cursor = "0".to_owned();
    loop {
        let (next, keys): (String, Vec<String>) = redis
            .custom(
                fred::cmd!("SCAN"),
                vec![cursor.clone(), "MATCH".into(), format!("{}*", app.prefix)],
            )
            .await
            .unwrap();
        names.extend(keys);
        if next == "0" {
            break;
        }
        cursor = next;
    }
    for (_, agenda) in app.redis_batches.keys().agendas() {
        let members: Vec<String> = redis
            .zrange(&agenda, 0, -1, None, false, None, false)
            .await
            .unwrap();
        names.extend(members);
    }
    names
}

/// Seeds one message received `age` ago, with a text and a payload, and a sent
/// reply batch claimed then whose reply is an outbound message; returns the ids.
async fn seed_exchange(app: &TestApp, tag: &str, age: Days) -> (i64, i64, String) {
    let at = Utc::now() - age;
    let batch = format!("batch-{tag}");
    sqlx::query(
        "INSERT INTO reply_batches (id, channel, account_id, contact_id, status, message_ids,
                                    reply_text, claimed_at, sent_at, updated_at)
         VALUES ($1, 'whatsapp', $2, $3, 'sent', '{}', $4, $5, $5, $5)",
    )
    .bind(&batch)
    .bind(PHONE_ID)
    .bind(MARIA)
    .bind(format!("reply {tag}"))
    .bind(at)
    .execute(app.store.pool())
    .await
    .unwrap();
    let mut ids = Vec::new();
    for (direction, payload) in [
        ("in", Some(serde_json::json!({ "tag": tag }))),
        ("out", None),
    ] {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO conversation_messages
                 (channel, account_id, contact_id, external_message_id, direction, message_type,
                  text, answerable, platform_timestamp, webhook_received_at, webhook_payload, batch_id)
             VALUES ('whatsapp', $1, $2, $3, $4, 'text', $5, $4 = 'in', $6, $6, $7, $8)
             RETURNING id",
        )
        .bind(PHONE_ID)
        .bind(MARIA)
        .bind(format!("wamid.{tag}.{direction}"))
        .bind(direction)
        .bind(format!("{direction} text {tag}"))
        .bind(at)
        .bind(payload)
        .bind(&batch)
        .fetch_one(app.store.pool())
        .await
        .unwrap();
        ids.push(id);
    }
    (ids[0], ids[1], batch)
}

#[tokio::test]
async fn retention_erases_texts_and_payloads_older_than_the_cutoff_and_nothing_newer() {
    let app = spawn_app().await;
    let (old_in, old_out, old_batch) = seed_exchange(&app, "old", Days::days(8)).await;
    let (new_in, new_out, new_batch) = seed_exchange(&app, "new", Days::days(6)).await;
    // More old rows than one statement erases, so a pass takes several.
    sqlx::query(
        "INSERT INTO conversation_messages
             (channel, account_id, contact_id, external_message_id, direction, message_type,
              text, answerable, platform_timestamp, webhook_received_at, webhook_payload)
         SELECT 'whatsapp', 'bulk', 'someone', 'wamid.bulk.' || n, 'in', 'text', 'hello ' || n,
                true, now() - interval '30 days', now() - interval '30 days', '{}'::jsonb
         FROM generate_series(1, 2500) AS n",
    )
    .execute(app.store.pool())
    .await
    .unwrap();
    let times_before = app
        .column("SELECT id || ' ' || direction || ' ' || platform_timestamp || ' ' || webhook_received_at || ' ' || coalesce(batch_id, '') FROM conversation_messages ORDER BY id")
        .await;

    let retention = Retention::new(app.store.clone(), 7).expect("7 days is on");
    let erased = retention
        .erase_once(Utc::now(), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        erased,
        Erased {
            messages: 2502,
            replies: 1
        }
    );

    let texts = |id: i64| {
        let pool = app.store.pool().clone();
        async move {
            sqlx::query_as::<_, (String, Option<serde_json::Value>)>(
                "SELECT text, webhook_payload FROM conversation_messages WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(texts(old_in).await, (String::new(), None));
    assert_eq!(texts(old_out).await, (String::new(), None));
    assert_eq!(
        texts(new_in).await,
        (
            "in text new".into(),
            Some(serde_json::json!({ "tag": "new" }))
        )
    );
    assert_eq!(texts(new_out).await, ("out text new".into(), None));
    let reply = |id: String| {
        let store = app.store.clone();
        async move { store.batch(&id).await.unwrap().unwrap() }
    };
    let (old, new) = (reply(old_batch).await, reply(new_batch).await);
    assert_eq!(old.reply_text, None);
    assert_eq!((old.status.as_str(), old.sent_at.is_some()), ("sent", true));
    assert_eq!(new.reply_text.as_deref(), Some("reply new"));
    assert_eq!(
        app.count("SELECT count(*) FROM conversation_messages WHERE text <> '' OR webhook_payload IS NOT NULL").await,
        2,
        "only the newer exchange keeps its texts"
    );
    // Ids, directions, times and batch links are all still there.
    let times_after = app
        .column("SELECT id || ' ' || direction || ' ' || platform_timestamp || ' ' || webhook_received_at || ' ' || coalesce(batch_id, '') FROM conversation_messages ORDER BY id")
        .await;
    assert_eq!(times_after, times_before);

    let again = retention
        .erase_once(Utc::now(), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        again,
        Erased::default(),
        "an erased row is not touched again"
    );
    app.stop().await;
}

#[tokio::test]
async fn retention_is_off_unless_days_are_set() {
    let app = spawn_app().await;
    assert!(Retention::new(app.store.clone(), 0).is_none());
    app.stop().await;
}

#[tokio::test]
async fn forgetting_a_conversation_leaves_nothing_of_that_person_in_postgres_or_redis() {
    // A slow responder, so that Maria's second batch is being generated (claimed,
    // its record written) when she is forgotten.
    let app = spawn_app_with(|c| c.responder_delay_ms = 1_000).await;
    let ts = now_secs();
    app.post_whatsapp(&whatsapp_text(
        MARIA,
        "wamid.m1",
        ts,
        "my address is 1 Main St",
    ))
    .await;
    app.post_whatsapp(&whatsapp_text(JOAO, "wamid.j1", ts, "hello from joao"))
        .await;
    replies_at_least(&app.graph, 2).await;
    app.post_whatsapp(&whatsapp_text(
        MARIA,
        "wamid.m2",
        ts + 1,
        "and my card ends 4242",
    ))
    .await;
    wait_for("Maria's second batch generating", PATIENCE, || async {
        let rows = app.store.recent_batches(10).await.unwrap();
        rows.iter()
            .any(|b| b.contact_id == MARIA && b.status == "generating")
            .then_some(())
    })
    .await;
    let joao_before = app
        .column(&format!(
            "SELECT id || ' ' || text FROM conversation_messages WHERE contact_id = '{JOAO}' ORDER BY id"
        ))
        .await;

    let response = app
        .http
        .delete(app.url(&forget_path(&maria().to_string())))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let report: serde_json::Value = response.json().await.unwrap();
    assert_eq!(report["messages"], 3, "two in, one reply: {report}");
    assert_eq!(report["reply_batches"], 2, "{report}");
    assert!(report["redis_keys"].as_i64().unwrap() > 0, "{report}");

    // The worker generating her batch finds its lease gone, and stops: past its
    // generation it has sent nothing and written nothing back.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        app.graph.replies().len(),
        2,
        "no reply to the forgotten batch"
    );
    assert_eq!(rows_mentioning(&app, MARIA).await, 0);
    assert_eq!(
        app.count("SELECT count(*) FROM conversation_messages WHERE text LIKE '%4242%' OR text LIKE '%Main St%'")
            .await,
        0
    );
    let names = redis_names(&app).await;
    assert!(
        names.iter().all(|n| !n.contains(MARIA)),
        "Redis still names her: {names:?}"
    );

    // Joao is untouched.
    let joao_after = app
        .column(&format!(
            "SELECT id || ' ' || text FROM conversation_messages WHERE contact_id = '{JOAO}' ORDER BY id"
        ))
        .await;
    assert_eq!(joao_after, joao_before);
    assert_eq!(joao_after.len(), 2);
    assert!(
        names
            .iter()
            .any(|n| n.contains(JOAO) && n.ends_with("history"))
    );
    app.stop().await;
}

#[tokio::test]
async fn a_message_after_forget_starts_a_fresh_conversation() {
    let app = spawn_app().await;
    let ts = now_secs();
    app.post_whatsapp(&whatsapp_text(MARIA, "wamid.f1", ts, "my secret"))
        .await;
    replies_at_least(&app.graph, 1).await;
    batch_with_status(&app, "sent").await;
    let report = lull::forget::forget(&app.store, &app.redis_batches, &maria())
        .await
        .unwrap();
    assert!(report.found());

    app.post_whatsapp(&whatsapp_text(MARIA, "wamid.f2", ts + 60, "hello again"))
        .await;
    let replies = replies_at_least(&app.graph, 2).await;
    let text = replies[1].body["text"]["body"].as_str().unwrap();
    assert!(text.contains("hello again"), "{text}");
    assert!(!text.contains("secret"), "{text}");
    assert!(!text.contains("earlier messages"), "no history: {text}");
    // The old batch is gone: the sent one is the new reply, recorded after its send.
    let batch = batch_with_status(&app, "sent").await;
    assert_eq!(batch.message_ids.len(), 1);
    let history = app.store.recent_history(&maria(), 50).await.unwrap();
    let texts: Vec<&str> = history.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts.contains(&"hello again"), "{texts:?}");
    assert!(texts.iter().all(|t| !t.contains("secret")), "{texts:?}");
    app.stop().await;
}

#[tokio::test]
async fn forgetting_an_unknown_conversation_answers_404_naming_it() {
    let app = spawn_app().await;
    let response = app
        .http
        .delete(app.url(&forget_path("whatsapp%3A1%3Anobody")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body = response.text().await.unwrap();
    assert!(body.contains("whatsapp:1:nobody"), "{body}");
    let bad = app
        .http
        .delete(app.url(&forget_path("nonsense")))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    app.stop().await;
}

#[tokio::test]
async fn forget_script_deletes_every_key_of_the_conversation_and_its_agenda_entry_only() {
    let rig = Rig::new().await;
    let other = rig.with_contact(JOAO);
    rig.append(&msg(1, T0), T0).await;
    rig.claimed("tok-1", T0 + 1_000).await;
    rig.append(&msg(2, T0 + 1_500), T0 + 1_500).await;
    other.append(&msg(3, T0), T0).await;
    let untouched = other.freeze().await;

    let out = rig.redis_batches.forget(&rig.conversation).await.unwrap();
    // history, msgs, inflight, deadline, lock, state
    assert_eq!(out.keys_deleted, 6);
    assert!(out.was_scheduled);
    assert_eq!(out.claimed_batch.as_deref(), Some("tok-1"));
    assert_eq!(rig.snapshot().await, Default::default());
    let left: i64 = rig
        .redis()
        .exists(vec![
            rig.keys.history.clone(),
            rig.keys.msgs.clone(),
            rig.keys.inflight.clone(),
            rig.keys.deadline.clone(),
            rig.keys.lock.clone(),
            rig.keys.state.clone(),
        ])
        .await
        .unwrap();
    assert_eq!(left, 0);
    other.assert_untouched(&untouched).await;

    // The worker that held the batch finds it lost, and writes nothing back.
    let now = T0 + 2_000;
    let beat = rig
        .redis_batches
        .extend(&rig.keys, &ClaimToken::from("tok-1"), UnixMs(now))
        .await
        .unwrap();
    assert_eq!(
        beat,
        ExtendOutcome {
            held: false,
            pending: 0,
            paused: false,
        }
    );
    let ack = rig
        .redis_batches
        .ack(
            &rig.keys,
            &ClaimToken::from("tok-1"),
            &[msg(9, now)],
            UnixMs(now),
        )
        .await
        .unwrap();
    assert_eq!(ack, AckOutcome::Stale);
    assert_eq!(rig.snapshot().await, Default::default());
    let score: Option<f64> = rig
        .redis()
        .zscore(&rig.keys.agenda, &rig.keys.member)
        .await
        .unwrap();
    assert_eq!(score, None);

    let again = rig.redis_batches.forget(&rig.conversation).await.unwrap();
    assert_eq!(
        again,
        ForgetOutcome::default(),
        "a second forget finds nothing"
    );
}

#[tokio::test]
async fn lull_forget_on_the_command_line_erases_a_live_conversation_and_exits_1_for_an_unknown_one()
{
    let app = spawn_app().await;
    app.post_whatsapp(&whatsapp_text(
        MARIA,
        "wamid.cli1",
        now_secs(),
        "call me at 555",
    ))
    .await;
    replies_at_least(&app.graph, 1).await;
    batch_with_status(&app, "sent").await;
    let spec = Spec::new("forget", &app.db, &app.graph, &redis_url(), &app.prefix);
    let conversation = maria().id();

    let (status, stdout) = spec.clone().run(&["forget", &conversation, "--json"]);
    assert!(status.success(), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(report["messages"].as_i64().unwrap() >= 2, "{report}");
    assert_eq!(rows_mentioning(&app, MARIA).await, 0);
    assert!(redis_names(&app).await.iter().all(|k| !k.contains(MARIA)));

    let (status, stdout) = spec.run(&["forget", "whatsapp:1:nobody"]);
    assert_eq!(status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("nothing stored for whatsapp:1:nobody"),
        "{stdout}"
    );
    app.stop().await;
}
