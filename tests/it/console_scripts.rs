//! The console's Redis side: flush.lua and drop_batch.lua on seeded state, and an
//! agenda page read at 10,000 waiting conversations.

use crate::console::{admin, console_app, maria_id, maria_says};
use crate::helpers::*;
use fred::interfaces::{KeysInterface, ListInterface, SortedSetsInterface};
use lull::batch::flush::FlushOutcome;
use lull::message::Conversation;
use std::time::{Duration, Instant};

fn maria() -> Conversation {
    Conversation::parse(&maria_id()).unwrap()
}

#[tokio::test]
async fn flush_leaves_a_conversation_a_worker_holds_alone() {
    let app = console_app().await;
    maria_says(&app, "wamid.l1", "hi").await;
    let keys = app.redis_batches.keys().conversation(&maria());
    let redis = app.redis_batches.pool().next();
    let _: () = redis
        .set(
            &keys.lock,
            "someone",
            Some(fred::types::Expiration::PX(5_000)),
            None,
            false,
        )
        .await
        .unwrap();
    let before: Option<f64> = redis.zscore(&keys.agenda, &keys.member).await.unwrap();
    let outcome = app.redis_batches.flush(&maria(), 1).await.unwrap();
    assert_eq!(outcome, FlushOutcome::Claimed);
    let after: Option<f64> = redis.zscore(&keys.agenda, &keys.member).await.unwrap();
    assert_eq!(before, after);
    let _: () = redis.del(&keys.lock).await.unwrap();
    let now = lull::time::now_ms();
    assert_eq!(
        app.redis_batches.flush(&maria(), now).await.unwrap(),
        FlushOutcome::Due(now)
    );
    let deadline: i64 = redis.get(&keys.deadline).await.unwrap();
    assert_eq!(deadline, now);
    app.stop().await;
}

#[tokio::test]
async fn drop_takes_only_the_given_messages_and_keeps_a_newer_one_collecting() {
    let app = console_app().await;
    maria_says(&app, "wamid.k1", "first").await;
    maria_says(&app, "wamid.k2", "second").await;
    let state = app
        .redis_batches
        .conversation_state(&maria())
        .await
        .unwrap();
    let first = state.collecting[0].id;
    let dropped = app
        .redis_batches
        .drop_collecting(&maria(), &[first])
        .await
        .unwrap();
    assert_eq!((dropped.removed, dropped.left), (1, 1));
    let state = app
        .redis_batches
        .conversation_state(&maria())
        .await
        .unwrap();
    assert_eq!(state.collecting.len(), 1);
    assert_eq!(state.collecting[0].text, "second");
    assert!(state.agenda_ms.is_some() && state.deadline_ms.is_some());
    assert_eq!(state.history_len, 2, "history keeps what was said");
    let again = app
        .redis_batches
        .drop_collecting(&maria(), &[first])
        .await
        .unwrap();
    assert_eq!((again.removed, again.left), (0, 1));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_ten_thousand_waiting_conversations_reads_in_a_few_round_trips() {
    let app = console_app().await;
    let redis = app.redis_batches.pool().next();
    let far = lull::time::now_ms() + 3_600_000;
    let pipe = redis.pipeline();
    for n in 0..10_000i64 {
        let member = format!("whatsapp:{PHONE_ID}:{n:05}");
        let keys = app.redis_batches.keys().for_member(&member);
        let _: () = pipe
            .zadd(
                &keys.agenda,
                None,
                None,
                false,
                false,
                ((far + n) as f64, member.as_str()),
            )
            .await
            .unwrap();
        let _: () = pipe.rpush(&keys.msgs, "{}").await.unwrap();
        let _: () = pipe.pexpire(&keys.msgs, 600_000, None).await.unwrap();
    }
    let _: () = pipe.all().await.unwrap();

    let started = Instant::now();
    let (status, page) = admin(
        &app,
        "GET",
        "conversations?state=waiting&page=3&per_page=50",
    )
    .await;
    let took = started.elapsed();
    assert_eq!(status, 200);
    assert_eq!(page["on_agenda"], 10_000);
    let rows = page["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 50);
    assert_eq!(
        rows[0]["conversation"],
        format!("whatsapp:{PHONE_ID}:00150")
    );
    assert_eq!(rows[0]["collecting"], 1);
    assert_eq!(page["more"], true);
    assert!(took < Duration::from_secs(2), "{took:?}");

    let started = Instant::now();
    let (status, page) = admin(&app, "GET", "conversations?state=in_flight").await;
    assert_eq!(status, 200);
    assert_eq!(page["rows"], serde_json::json!([]));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    app.stop().await;
}
