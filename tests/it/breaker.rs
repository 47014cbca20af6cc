//! Issue 19: with Redis or PostgreSQL down, webhooks are answered at once instead
//! of after a timeout, and service resumes without a restart once it is back: for
//! Redis, a catch-up started by the breaker's probe (not the reconciler's next
//! pass) answers each burst stored meanwhile once, in platform order.

use crate::helpers::*;
use crate::pg_proxy::PgProxy;
use crate::redis_server::{OwnRedis, blocking};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Ana, the second person.
const ANA: &str = "15550003333";
/// Conversations that write while Redis is down.
const BURSTS: usize = 5;

/// Posts a signed WhatsApp webhook; its status and how long the answer took.
async fn timed_post(app: &TestApp, body: &[u8]) -> (u16, Duration) {
    let asked = Instant::now();
    let status = app.post_whatsapp(body).await.status().as_u16();
    (status, asked.elapsed())
}

/// GET /readyz: its status and how long the answer took.
async fn timed_readyz(app: &TestApp) -> (u16, Duration, serde_json::Value) {
    let asked = Instant::now();
    let response = app.http.get(app.url("/readyz")).send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap();
    (status, asked.elapsed(), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_webhooks_answer_at_once_and_the_probe_starts_a_catch_up_that_answers_each_burst_once_in_order()
 {
    let redis = Arc::new(OwnRedis::start());
    let app = spawn_app_with(|c| {
        c.redis_url = redis.url();
        c.redis_timeout_seconds = 1.0;
        // Far beyond the test: only the probe can start the catch-up.
        c.reconcile_interval_seconds = 300.0;
    })
    .await;
    let ts = now_secs();
    let hello = whatsapp_text(ANA, "wamid.before", ts, "before the outage");
    assert_eq!(timed_post(&app, &hello).await.0, 200);
    replies_at_least(&app.graph, 1).await;

    blocking(&redis, OwnRedis::kill).await;
    // The first webhook finds Redis down (at worst after REDIS_TIMEOUT_SECONDS).
    let first = whatsapp_text(ANA, "wamid.first-down", ts + 1, "is anyone there");
    assert_eq!(timed_post(&app, &first).await.0, 200);
    // Each burst is posted last part first: its ids run against platform order.
    let mut slowest = Duration::ZERO;
    for c in 0..BURSTS {
        for part in [2, 1, 0] {
            let body = whatsapp_text(
                &format!("1555200{c:04}"),
                &format!("wamid.b{c}.{part}"),
                ts + part,
                &format!("burst {c} part {part}"),
            );
            let (status, took) = timed_post(&app, &body).await;
            assert_eq!(status, 200, "stored, so acknowledged");
            slowest = slowest.max(took);
        }
    }
    assert!(
        slowest < Duration::from_millis(50),
        "every webhook answered within 50 ms while Redis is down: {slowest:?}"
    );
    assert_eq!(app.metrics.gauge("lull_redis_up"), 0);
    let (status, _, ready) = timed_readyz(&app).await;
    assert_eq!((status, ready["redis"].as_str()), (200, Some("down")));
    assert_eq!(app.graph.replies().len(), 1, "nothing answered meanwhile");

    blocking(&redis, OwnRedis::restart).await;
    let back = Instant::now();
    // Ana's message and the five bursts: one reply each.
    replies_within(&app.graph, 2 + BURSTS, Duration::from_secs(5)).await;
    let caught_up = back.elapsed();
    settle().await;
    let replies = app.graph.replies();
    assert_eq!(
        replies.len(),
        2 + BURSTS,
        "one reply per burst: {replies:#?}"
    );
    for c in 0..BURSTS {
        let to = format!("1555200{c:04}");
        let reply: Vec<String> = replies
            .iter()
            .filter(|r| r.body["to"].as_str() == Some(to.as_str()))
            .map(body)
            .collect();
        assert_eq!(reply.len(), 1, "one reply to burst {c}: {reply:?}");
        let at = |part: usize| {
            reply[0]
                .find(&format!("“burst {c} part {part}”"))
                .unwrap_or_else(|| panic!("part {part} quoted: {}", reply[0]))
        };
        assert!(
            at(0) < at(1) && at(1) < at(2),
            "the responder saw the burst in platform order: {}",
            reply[0]
        );
    }
    assert!(
        replies
            .iter()
            .any(|r| r.body["to"] == ANA && body(r).contains("“is anyone there”")),
        "the first message found down is answered too"
    );
    assert_eq!(app.metrics.gauge("lull_redis_up"), 1);
    eprintln!("caught up {caught_up:?} after Redis returned");
    app.stop().await;
}

/// PostgreSQL goes down under a running lull in one of the proxy's two ways: each
/// webhook after the first that finds it down, and /readyz, answer 503 within
/// 100 ms; once it is back, a webhook is stored and answered without a restart.
async fn postgres_down_answers_503_at_once_and_recovers(down: fn(&PgProxy), up: fn(&PgProxy)) {
    let proxy = PgProxy::start().await;
    let app = spawn_app_with(|c| {
        c.database_url = proxy.route(&c.database_url);
        c.database_timeout_seconds = 1.0;
    })
    .await;
    let ts = now_secs();
    let hello = whatsapp_text(ANA, "wamid.pg-before", ts, "before the outage");
    assert_eq!(timed_post(&app, &hello).await.0, 200);
    replies_at_least(&app.graph, 1).await;

    down(&proxy);
    let first = whatsapp_text(MARIA, "wamid.pg-first", ts + 1, "first one down");
    let (status, took) = timed_post(&app, &first).await;
    assert_eq!(
        status, 503,
        "the first webhook that finds it down ({took:?})"
    );
    for i in 0..5 {
        let body = whatsapp_text(MARIA, &format!("wamid.pg-down{i}"), ts + 2, "still down");
        let (status, took) = timed_post(&app, &body).await;
        assert_eq!(status, 503, "the platform must retry");
        assert!(
            took < Duration::from_millis(100),
            "503 within 100 ms: {took:?}"
        );
        let (status, took, ready) = timed_readyz(&app).await;
        assert_eq!((status, ready["postgres"].as_str()), (503, Some("down")));
        assert!(
            took < Duration::from_millis(100),
            "/readyz within 100 ms: {took:?}"
        );
    }
    assert_eq!(app.metrics.gauge("lull_postgres_up"), 0);

    up(&proxy);
    wait_for("/readyz to see PostgreSQL back", PATIENCE, || async {
        let (status, ..) = timed_readyz(&app).await;
        (status == 200).then_some(())
    })
    .await;
    // As the platform would: posted again until stored (a pooled connection the
    // outage broke may fail one more statement).
    let after = whatsapp_text(MARIA, "wamid.pg-after", ts + 3, "back again");
    wait_for("the webhook stored", PATIENCE, || async {
        (timed_post(&app, &after).await.0 == 200).then_some(())
    })
    .await;
    let replies = replies_at_least(&app.graph, 2).await;
    assert!(
        replies.iter().any(|r| body(r).contains("“back again”")),
        "the message after the outage is answered: {replies:#?}"
    );
    assert_eq!(app.metrics.gauge("lull_postgres_up"), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_black_holed_webhooks_and_readyz_answer_503_within_100_ms_and_recover() {
    postgres_down_answers_503_at_once_and_recovers(PgProxy::blackhole, PgProxy::heal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_refusing_connections_webhooks_and_readyz_answer_503_within_100_ms_and_recover()
 {
    postgres_down_answers_503_at_once_and_recovers(
        |proxy| proxy.outage(Duration::from_secs(3600)),
        PgProxy::end_outage,
    )
    .await;
}
