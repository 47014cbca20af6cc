//! The console's stats against a history written straight into PostgreSQL.

use crate::console::console_app;
use crate::helpers::*;
use serde_json::{Value, json};

/// Two hours of history on 2026-01-01, and a message outside them:
/// - WhatsApp: 5 messages in (3 in the first hour, 2 in the second), answered by
///   2 replies (3 + 2 messages), sent 2 s and 4 s after their first message;
/// - Telegram: 2 messages in, one failed batch (error 403), one pause.
async fn write_history(app: &TestApp) {
    let mut sql = String::from(
        "INSERT INTO conversation_messages
             (channel, account_id, contact_id, external_message_id, direction, message_type,
              text, answerable, platform_timestamp, webhook_received_at) VALUES ",
    );
    let rows = [
        ("whatsapp", "w1", "00:10"),
        ("whatsapp", "w2", "00:20"),
        ("whatsapp", "w3", "00:30"),
        ("whatsapp", "w4", "01:10"),
        ("whatsapp", "w5", "01:20"),
        ("telegram", "t1", "01:30"),
        ("telegram", "t2", "01:40"),
        ("whatsapp", "w0", "05:00"),
    ];
    let values: Vec<String> = rows
        .iter()
        .map(|(channel, ext, at)| {
            format!(
                "('{channel}', 'a', 'c', '{ext}', 'in', 'text', 'hi', true,
                  '2026-01-01T{at}:00Z', '2026-01-01T{at}:00Z')"
            )
        })
        .collect();
    sql += &values.join(",");
    sqlx::query(&sql).execute(app.store.pool()).await.unwrap();
    sqlx::query(
        "INSERT INTO reply_batches
             (id, channel, account_id, contact_id, status, message_ids, error_code,
              first_message_at, claimed_at, sent_at, updated_at) VALUES
         ('b1', 'whatsapp', 'a', 'c', 'sent', '{1,2,3}', NULL,
          '2026-01-01T00:10:00Z', '2026-01-01T00:40:00Z', '2026-01-01T00:10:02Z', '2026-01-01T00:40:00Z'),
         ('b2', 'whatsapp', 'a', 'c', 'sent', '{4,5}', NULL,
          '2026-01-01T01:10:00Z', '2026-01-01T01:30:00Z', '2026-01-01T01:10:04Z', '2026-01-01T01:30:00Z'),
         ('b3', 'telegram', 'a', 'c', 'failed', '{6,7}', '403',
          '2026-01-01T01:30:00Z', '2026-01-01T01:50:00Z', NULL, '2026-01-01T01:50:00Z')",
    )
    .execute(app.store.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO console_actions (at, actor, action, conversation, outcome)
         VALUES ('2026-01-01T01:45:00Z', 'ops', 'pause', 'telegram:a:c', 'done'),
                ('2026-01-01T01:46:00Z', 'ops', 'pause', 'telegram:a:c', 'refused')",
    )
    .execute(app.store.pool())
    .await
    .unwrap();
}

fn channel<'a>(stats: &'a Value, name: &str) -> &'a Value {
    stats["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == name)
        .unwrap_or_else(|| panic!("no {name} in {stats}"))
}

#[tokio::test]
async fn stats_over_a_range_count_a_known_history_per_channel() {
    let app = console_app().await;
    write_history(&app).await;
    let range = "from=2026-01-01T00:00:00Z&to=2026-01-01T02:00:00Z";
    let (status, stats) = crate::console::admin(&app, "GET", &format!("stats?{range}")).await;
    assert_eq!(status, 200, "{stats}");

    let whatsapp = channel(&stats, "whatsapp");
    assert_eq!(whatsapp["messages_in"], 5);
    assert_eq!(whatsapp["replies_out"], 2);
    assert_eq!(whatsapp["messages_answered"], 5);
    assert_eq!(whatsapp["replies_saved"], 3);
    assert_eq!(whatsapp["wait_p50_ms"], 3000.0);
    assert_eq!(whatsapp["wait_p95_ms"], 3900.0);
    assert_eq!(whatsapp["failures"], 0);

    let telegram = channel(&stats, "telegram");
    assert_eq!(telegram["messages_in"], 2);
    assert_eq!(telegram["replies_out"], 0);
    assert_eq!(telegram["failures"], 1);
    assert_eq!(telegram["handoffs"], 1);

    assert_eq!(stats["total"]["messages_in"], 7);
    assert_eq!(stats["total"]["replies_saved"], 3);
    assert_eq!(stats["total"]["failures"], 1);
    assert_eq!(
        stats["failures"],
        json!([{"channel": "telegram", "reason": "403", "count": 1}])
    );
    let hourly: Vec<(i64, i64)> = stats["hourly"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["messages_in"].as_i64().unwrap(),
                h["replies_out"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(hourly, vec![(3, 1), (4, 1)]);
    app.stop().await;
}

#[tokio::test]
async fn stats_refuse_a_range_they_cannot_read() {
    let app = console_app().await;
    for query in [
        "since=yesterday",
        "since=-1h",
        "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
    ] {
        let (status, _) = crate::console::admin(&app, "GET", &format!("stats?{query}")).await;
        assert_eq!(status, 400, "{query}");
    }
    let (status, stats) = crate::console::admin(&app, "GET", "stats?since=24h").await;
    assert_eq!(status, 200);
    assert_eq!(stats["total"]["messages_in"], 0);
    assert_eq!(stats["hourly"].as_array().unwrap().len(), 25);
    app.stop().await;
}
