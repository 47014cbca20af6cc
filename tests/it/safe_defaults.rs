//! Safe by default: a channel's webhooks are served only when it is configured,
//! and the admin and metrics tokens travel in the Authorization header only.

use crate::helpers::*;
use lull::config::Secret;

#[tokio::test]
async fn configured_for_whatsapp_only_unsigned_telegram_and_instagram_webhooks_get_404_and_store_nothing()
 {
    // The default test app configures WhatsApp (secret and token) and nothing else.
    let app = spawn_app().await;
    for (path, body) in [
        (
            "/api/telegram/webhook",
            fixture("telegram/text_update.json"),
        ),
        ("/api/instagram/webhook", fixture("instagram/text.json")),
    ] {
        let response = app.post_raw(path, &body, None).await;
        assert_eq!(response.status(), 404, "{path}");
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("channel not configured")
        );
    }
    let stored = app
        .count("SELECT count(*) FROM conversation_messages")
        .await;
    assert_eq!(stored, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_token_in_the_url_no_longer_opens_the_admin_api() {
    let app = spawn_app_with(|c| c.admin_token = Some(Secret::new("admin-s3cret"))).await;
    let in_url = app
        .http
        .get(app.url("/admin/api/batches?token=admin-s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(in_url.status(), 401);
    let in_header = app
        .http
        .get(app.url("/admin/api/batches"))
        .bearer_auth("admin-s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(in_header.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn the_admin_page_itself_loads_without_the_token_and_holds_no_data() {
    let app = spawn_app_with(|c| c.admin_token = Some(Secret::new("admin-s3cret"))).await;
    let page = app.http.get(app.url("/admin")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("sessionStorage"));
    assert!(!html.contains("admin-s3cret"));
    app.stop().await;
}

#[tokio::test]
async fn metrics_token_protects_metrics_with_the_bearer_header() {
    let app = spawn_app_with(|c| c.metrics_token = Some(Secret::new("prom-s3cret"))).await;
    let without = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(without.status(), 401);
    let wrong = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let with = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth("prom-s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), 200);
    assert!(with.text().await.unwrap().contains("lull_"));
    app.stop().await;
}

#[tokio::test]
async fn without_metrics_token_metrics_stay_open_to_the_scraper() {
    let app = spawn_app().await;
    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn a_message_older_than_the_reply_window_is_expired_not_answered() {
    let app = spawn_app_with(|c| c.reply_window_hours = 24.0).await;
    // Stored after an outage: the person wrote 25 hours ago, past WhatsApp's 24.
    let long_ago = now_secs() - 25 * 3600;
    let response = app
        .post_whatsapp(&whatsapp_text(
            MARIA,
            "wamid.old",
            long_ago,
            "anyone there?",
        ))
        .await;
    assert_eq!(response.status(), 200);
    let batch = batch_with_status(&app, "expired").await;
    assert_eq!(batch.message_ids.len(), 1);
    assert!(app.graph.replies().is_empty(), "nothing is sent");
    let owned = app
        .count("SELECT count(*) FROM conversation_messages WHERE batch_id IS NOT NULL")
        .await;
    assert_eq!(
        owned, 1,
        "the expired batch owns its message: never batched again"
    );
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains("lull_batches_expired_total{channel=\"whatsapp\"} 1"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_message_within_the_reply_window_is_answered_as_usual() {
    let app = spawn_app_with(|c| c.reply_window_hours = 24.0).await;
    let an_hour_ago = now_secs() - 3600;
    app.post_whatsapp(&whatsapp_text(MARIA, "wamid.recent", an_hour_ago, "hello"))
        .await;
    replies_at_least(&app.graph, 1).await;
    batch_with_status(&app, "sent").await;
    app.stop().await;
}
