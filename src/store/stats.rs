//! The console's stats over a range of time, per channel: messages in, replies
//! out, replies saved, the wait from a batch's first message to its reply,
//! failures by reason, handoffs, and messages and replies per hour.
//!
//! A message counts when it was received in the range; a reply when it was sent in
//! it; a failure when its batch failed in it (`updated_at`). Handoffs are the
//! console's `pause` actions (migration 0020).

use super::{Store, StoreError};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// The numbers of one channel (or of all: channel `all`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ChannelStats {
    /// `whatsapp`, `instagram`, `telegram`, or `all`.
    pub channel: String,
    /// Inbound messages received.
    pub messages_in: i64,
    /// Replies sent.
    pub replies_out: i64,
    /// Messages those replies answered.
    pub messages_answered: i64,
    /// Replies a reply per message would have sent on top: answered − sent.
    pub replies_saved: i64,
    /// Median wait from a batch's first message to its reply, ms.
    pub wait_p50_ms: Option<f64>,
    /// 95th percentile of that wait, ms.
    pub wait_p95_ms: Option<f64>,
    /// Batches failed.
    pub failures: i64,
    /// Conversations paused for a human agent, by any trigger (the audit's pauses).
    pub handoffs: i64,
}

/// Failed batches of one reason.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct FailureReason {
    /// Channel.
    pub channel: String,
    /// The error code, or the error message's start without one.
    pub reason: String,
    /// How many.
    pub count: i64,
}

/// Messages and replies of one hour.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct Hour {
    /// The hour's start.
    pub hour: DateTime<Utc>,
    /// Messages received.
    pub messages_in: i64,
    /// Replies sent.
    pub replies_out: i64,
}

/// Stats over `[from, to)`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Stats {
    /// Start of the range.
    pub from: DateTime<Utc>,
    /// End of the range.
    pub to: DateTime<Utc>,
    /// Every channel together.
    pub total: ChannelStats,
    /// Per channel, those with anything in the range.
    pub channels: Vec<ChannelStats>,
    /// Failures by reason, most first.
    pub failures: Vec<FailureReason>,
    /// Per hour, oldest first (at most the last 168 hours of the range).
    pub hourly: Vec<Hour>,
}

#[derive(sqlx::FromRow)]
struct Counted {
    channel: Option<String>,
    n: i64,
}

#[derive(sqlx::FromRow)]
struct SentRow {
    channel: Option<String>,
    replies: i64,
    answered: i64,
    p50: Option<f64>,
    p95: Option<f64>,
}

/// Hours shown in the chart at most.
const MAX_HOURS: i64 = 168;

impl Store {
    /// The stats over `[from, to)`.
    pub async fn stats(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Stats, StoreError> {
        let mut by_channel: BTreeMap<Option<String>, ChannelStats> = BTreeMap::new();
        let pool = self.pool();
        let messages: Vec<Counted> = sqlx::query_as(
            "SELECT channel, count(*) AS n FROM conversation_messages
             WHERE direction = 'in' AND webhook_received_at >= $1 AND webhook_received_at < $2
             GROUP BY GROUPING SETS ((channel), ())",
        )
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await?;
        for row in messages {
            by_channel.entry(row.channel).or_default().messages_in = row.n;
        }
        let sent: Vec<SentRow> = sqlx::query_as(
            "SELECT channel, count(*) AS replies,
                    coalesce(sum(cardinality(message_ids)), 0)::bigint AS answered,
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY wait) AS p50,
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY wait) AS p95
             FROM (SELECT channel, message_ids,
                          extract(epoch FROM sent_at - first_message_at)::float8 * 1000 AS wait
                   FROM reply_batches
                   WHERE status = 'sent' AND sent_at >= $1 AND sent_at < $2) s
             GROUP BY GROUPING SETS ((channel), ())",
        )
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await?;
        for row in sent {
            let stats = by_channel.entry(row.channel).or_default();
            stats.replies_out = row.replies;
            stats.messages_answered = row.answered;
            stats.replies_saved = row.answered - row.replies;
            stats.wait_p50_ms = row.p50;
            stats.wait_p95_ms = row.p95;
        }
        let failures: Vec<FailureReason> = sqlx::query_as(
            "SELECT channel, coalesce(error_code, left(error_message, 80), 'unknown') AS reason,
                    count(*) AS count
             FROM reply_batches
             WHERE status = 'failed' AND updated_at >= $1 AND updated_at < $2
             GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2",
        )
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await?;
        for failure in &failures {
            by_channel
                .entry(Some(failure.channel.clone()))
                .or_default()
                .failures += failure.count;
            by_channel.entry(None).or_default().failures += failure.count;
        }
        let handoffs: Vec<Counted> = sqlx::query_as(
            "SELECT split_part(conversation, ':', 1) AS channel, count(*) AS n
             FROM console_actions
             WHERE action = 'pause' AND outcome = 'done' AND at >= $1 AND at < $2
             GROUP BY GROUPING SETS ((1), ())",
        )
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await?;
        for row in handoffs {
            by_channel.entry(row.channel).or_default().handoffs = row.n;
        }
        let hourly: Vec<Hour> = sqlx::query_as(
            "WITH hours AS (
                 SELECT generate_series(
                     greatest(date_trunc('hour', $1::timestamptz),
                              date_trunc('hour', $2::timestamptz) - make_interval(hours => $3)),
                     $2::timestamptz - interval '1 microsecond', interval '1 hour') AS hour)
             SELECT h.hour,
                 (SELECT count(*) FROM conversation_messages
                  WHERE direction = 'in' AND webhook_received_at >= greatest(h.hour, $1)
                    AND webhook_received_at < least(h.hour + interval '1 hour', $2)) AS messages_in,
                 (SELECT count(*) FROM reply_batches
                  WHERE status = 'sent' AND sent_at >= greatest(h.hour, $1)
                    AND sent_at < least(h.hour + interval '1 hour', $2)) AS replies_out
             FROM hours h ORDER BY h.hour",
        )
        .bind(from)
        .bind(to)
        .bind((MAX_HOURS - 1) as i32)
        .fetch_all(pool)
        .await?;
        let total = by_channel.remove(&None).unwrap_or_default();
        Ok(Stats {
            from,
            to,
            total: ChannelStats {
                channel: "all".into(),
                ..total
            },
            channels: by_channel
                .into_iter()
                .filter_map(|(channel, stats)| {
                    Some(ChannelStats {
                        channel: channel?,
                        ..stats
                    })
                })
                .collect(),
            failures,
            hourly,
        })
    }
}
