//! What an operator looks at: metrics, the admin page and its API, health.

use crate::fake_platforms::fake_graph;
use crate::helpers::*;
use crate::process::Spec;
use lull::config::Secret;

/// An app that got one burst of three messages twice (the platform retried the
/// webhook) and has sent its reply.
async fn app_after_a_burst_posted_twice() -> TestApp {
    let app = spawn_app().await;
    app.post_whatsapp(&fixture("whatsapp/three_texts_one_post.json"))
        .await;
    app.post_whatsapp(&fixture("whatsapp/three_texts_one_post.json"))
        .await;
    replies_at_least(&app.graph, 1).await;
    app
}

#[tokio::test]
async fn metrics_count_stored_messages_duplicates_and_sent_replies() {
    let app = app_after_a_burst_posted_twice().await;
    batch_with_status(&app, "sent").await;
    let text = app.get_text("/metrics").await;
    for line in [
        "lull_messages_stored_total{channel=\"whatsapp\"} 3\n",
        "lull_messages_duplicate_total{channel=\"whatsapp\"} 3\n",
        "lull_webhook_requests_total{channel=\"whatsapp\",status=\"200\"} 2\n",
        "lull_batches_claimed_total 1\n",
        "lull_claim_lag_seconds_count 1\n",
    ] {
        assert!(text.contains(line), "/metrics lacks {line:?}:\n{text}");
    }
    wait_for("the sent counter", PATIENCE, || async {
        let text = app.get_text("/metrics").await;
        text.contains("lull_replies_sent_total{channel=\"whatsapp\"} 1\n")
            .then_some(())
    })
    .await;
    app.stop().await;
}

/// The group writers' counters: one request per webhook and per reply's write,
/// each carried by a statement (its group).
#[tokio::test]
async fn metrics_count_grouped_writes_and_the_requests_they_carried_by_kind() {
    let app = app_after_a_burst_posted_twice().await;
    wait_for("the sent record", PATIENCE, || async {
        let text = app.get_text("/metrics").await;
        text.contains("lull_db_group_requests_total{kind=\"sent\"} 1\n")
            .then_some(())
    })
    .await;
    let text = app.get_text("/metrics").await;
    for line in [
        "lull_db_group_requests_total{kind=\"inbound\"} 2\n",
        "lull_db_group_statements_total{kind=\"inbound\"} 2\n",
        "lull_db_group_requests_total{kind=\"sending\"} 1\n",
        "lull_db_group_statements_total{kind=\"sending\"} 1\n",
        "lull_db_group_statements_total{kind=\"sent\"} 1\n",
    ] {
        assert!(text.contains(line), "/metrics lacks {line:?}:\n{text}");
    }
    assert!(!text.contains("lull_db_group_refused_total{"));
    app.stop().await;
}

#[tokio::test]
async fn the_admin_api_lists_waiting_conversations_and_recent_replies() {
    let app = spawn_app_with(|c| c.batch_window_seconds = 30.0).await;
    app.post_whatsapp(&fixture("whatsapp/text_single.json"))
        .await;
    let waiting = app.get_json("/admin/api/waiting").await;
    assert_eq!(
        waiting[0]["conversation"],
        format!("whatsapp:{PHONE_ID}:{MARIA}")
    );
    assert_eq!(waiting[0]["collecting"], 1);
    assert_eq!(waiting[0]["in_flight"], 0);
    let page = app.http.get(app.url("/admin")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Waiting in Redis"));
    let batches = app.get_json("/admin/api/batches").await;
    assert_eq!(batches, serde_json::json!([]));
    app.stop().await;
}

/// The admin page asks for the newest batches every 2 s: an index must serve that
/// (its cost then stays flat as the table grows), not a scan and sort of every
/// batch ever made.
#[tokio::test]
async fn the_admin_newest_batches_are_read_from_an_index_not_a_scan_of_every_batch() {
    let app = spawn_app().await;
    let mut conn = app.store.pool().acquire().await.unwrap();
    // An empty table is cheapest to scan: take the planner's best plan with
    // scans ruled out, which exists only if an index gives the order.
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let plan: serde_json::Value = sqlx::query_scalar(
        "EXPLAIN (FORMAT JSON) SELECT * FROM reply_batches ORDER BY claimed_at DESC LIMIT 200",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    sqlx::query("RESET enable_seqscan")
        .execute(&mut *conn)
        .await
        .unwrap();
    let scan = &plan[0]["Plan"]["Plans"][0];
    assert_eq!(scan["Node Type"], "Index Scan", "{plan}");
    assert_eq!(scan["Index Name"], "reply_batches_recent", "{plan}");
    drop(conn);
    app.stop().await;
}

#[tokio::test]
async fn a_slow_generation_shows_on_the_admin_api_as_generating_until_it_is_sent() {
    let app = spawn_app_with(|c| c.responder_delay_ms = 1_500).await;
    app.post_whatsapp(&fixture("whatsapp/text_single.json"))
        .await;

    let generating = wait_for("the batch shown as generating", PATIENCE, || async {
        let batches = app.get_json("/admin/api/batches").await;
        (batches[0]["status"] == "generating").then_some(batches)
    })
    .await;

    assert!(app.graph.replies().is_empty(), "the reply is not out yet");
    assert_eq!(generating[0]["claims"], 1);
    assert_eq!(batch_with_status(&app, "sent").await.claims, 1);
    assert_eq!(replies_at_least(&app.graph, 1).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn with_an_admin_token_the_admin_pages_need_it() {
    let app = spawn_app_with(|c| c.admin_token = Some(Secret::new("let-me-in"))).await;
    let status = |path: &str, bearer: Option<&str>| {
        let mut request = app.http.get(app.url(path));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(status("/admin/api/batches", None).await, 401);
    assert_eq!(status("/admin/api/batches", Some("nope")).await, 401);
    assert_eq!(status("/admin/api/batches", Some("let-me-in")).await, 200);
    assert_eq!(status("/admin?token=let-me-in", None).await, 200);
    app.stop().await;
}

#[tokio::test]
async fn health_and_readiness_answer_when_both_stores_are_up() {
    let app = spawn_app().await;
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app.get_json("/readyz").await;
    assert_eq!(
        ready,
        serde_json::json!({"status": "ok", "postgres": "up", "redis": "up"})
    );
    let unknown = app.http.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    app.stop().await;
}

/// `lull healthcheck` with `PORT`, and nothing else from this process's environment.
async fn healthcheck(port: u16) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_lull"))
        .arg("healthcheck")
        .env_clear()
        .env("PORT", port.to_string())
        .output()
        .await
        .expect("lull healthcheck runs")
}

#[tokio::test]
async fn the_healthcheck_command_passes_only_while_the_service_answers_ok() {
    let db = TestDb::new();
    let graph = fake_graph().await;
    let lull = Spec::new(
        "healthy",
        &db,
        &graph,
        &redis_url(),
        &(unique("test:") + ":"),
    )
    .serve()
    .await;
    let up = healthcheck(lull.port()).await;
    assert!(up.status.success(), "{up:?}");

    let nobody = crate::redis_server::free_port();
    let down = healthcheck(nobody).await;
    assert!(!down.status.success());
    let said = String::from_utf8_lossy(&down.stderr);
    let url = format!("http://127.0.0.1:{nobody}/healthz");
    assert!(said.contains(&format!("no answer from {url}")), "{said}");

    // Something else on the port: it answers, but not lull's `ok`.
    let other = graph.base.trim_start_matches("http://127.0.0.1:");
    let other: u16 = other.split('/').next().unwrap().parse().unwrap();
    let wrong = healthcheck(other).await;
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("answered"));
}

#[tokio::test]
async fn a_worker_serves_its_health_and_metrics_and_sends_webhooks_to_lull_serve() {
    let db = TestDb::new();
    let graph = fake_graph().await;
    let worker = Spec::new(
        "worker",
        &db,
        &graph,
        &redis_url(),
        &(unique("test:") + ":"),
    )
    .worker()
    .await;
    let up = healthcheck(worker.port()).await;
    assert!(up.status.success(), "the container's health check: {up:?}");
    let http = reqwest::Client::new();
    let metrics = http.get(worker.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("# TYPE lull_"));
    let ready = http.get(worker.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    for (method, path) in [
        (reqwest::Method::POST, "/api/whatsapp/webhook"),
        (reqwest::Method::GET, "/admin"),
    ] {
        let response = http.request(method, worker.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("served by lull serve"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn instances_starting_together_on_a_new_database_all_start() {
    let db = TestDb::new();
    let connect = || {
        lull::store::Store::connect(
            &db.url,
            2,
            std::sync::Arc::new(lull::metrics::Metrics::default()),
        )
    };
    let started = futures::future::join_all((0..4).map(|_| connect())).await;
    for (i, store) in started.into_iter().enumerate() {
        let store = store.unwrap_or_else(|e| panic!("instance {i}: {e}"));
        store.pool().close().await;
    }
}
