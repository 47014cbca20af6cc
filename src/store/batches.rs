//! Queries on `reply_batches`, and the one that makes a message answered.

use super::{Store, StoreError, timestamp};
use crate::message::{ChannelKind, Conversation, Entry};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// A claimed batch, as the worker records it.
#[derive(Debug, Clone)]
pub struct NewBatch<'a> {
    /// The batch id (claim.lua's).
    pub id: &'a str,
    /// Its conversation.
    pub conversation: &'a Conversation,
    /// Inbound message ids, platform order.
    pub message_ids: Vec<i64>,
    /// How many times it has been claimed.
    pub claims: i64,
    /// How many times it has been superseded.
    pub supersedes: i64,
    /// Unix ms of its first message.
    pub started_ms: i64,
    /// Unix ms it became due (the agenda score the claim found).
    pub due_ms: i64,
    /// Unix ms it was claimed, on the same clock as `due_ms` (lull's, not the
    /// database's), so that claim lag = claimed_at - due_at holds no clock skew
    /// and no wait for a database connection.
    pub claimed_ms: i64,
}

/// Where a batch stands, as the database knows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BatchRecord {
    /// generating, sending, sent or failed.
    pub status: String,
    /// Send requests made so far (across crash resumes).
    pub attempts: i32,
    /// The messages it answers (fixed once it is sending).
    pub message_ids: Vec<i64>,
    /// The committed reply, once sending.
    pub reply_text: Option<String>,
    /// Platform ids of the parts that went out.
    pub platform_message_ids: Vec<String>,
}

#[derive(sqlx::FromRow)]
struct StaleRow {
    id: String,
    channel: String,
    account_id: String,
    contact_id: String,
    first_message_at: Option<DateTime<Utc>>,
    message_ids: Vec<i64>,
}

/// A batch PostgreSQL holds as `sending`, with what Redis needs to resume it.
#[derive(Debug, Clone)]
pub struct StaleSending {
    /// Batch id.
    pub batch_id: String,
    /// Its conversation.
    pub conversation: Conversation,
    /// Unix ms of its first message.
    pub started_ms: i64,
    /// Its messages, platform order.
    pub entries: Vec<Entry>,
}

/// A reply batch row, for the admin page and tests.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct BatchRow {
    /// Batch id.
    pub id: String,
    /// Channel.
    pub channel: String,
    /// Our account.
    pub account_id: String,
    /// Their id.
    pub contact_id: String,
    /// generating, sending, sent or failed.
    pub status: String,
    /// Inbound rows answered.
    pub message_ids: Vec<i64>,
    /// The reply.
    pub reply_text: Option<String>,
    /// Send requests made.
    pub attempts: i32,
    /// Claims (1 + resumes + supersedes).
    pub claims: i32,
    /// Supersedes.
    pub supersedes: i32,
    /// Platform ids of the parts sent.
    pub platform_message_ids: Vec<String>,
    /// Platform error code, when failed.
    pub error_code: Option<String>,
    /// Platform error message, when failed.
    pub error_message: Option<String>,
    /// First message of the batch.
    pub first_message_at: Option<DateTime<Utc>>,
    /// When it became due.
    pub due_at: Option<DateTime<Utc>>,
    /// Claimed.
    pub claimed_at: DateTime<Utc>,
    /// Reply generated.
    pub generated_at: Option<DateTime<Utc>>,
    /// Reply sent.
    pub sent_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Records a claim: a new batch, or a resumed or superseded one under the same id.
    /// A batch already sent or failed keeps its messages; its status tells the worker
    /// not to send again.
    pub async fn open_batch(&self, batch: &NewBatch<'_>) -> Result<BatchRecord, StoreError> {
        let record: BatchRecord = sqlx::query_as(
            "INSERT INTO reply_batches
                 (id, channel, account_id, contact_id, message_ids, claims, supersedes, first_message_at, due_at, claimed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (id) DO UPDATE SET
                 message_ids = CASE WHEN reply_batches.status IN ('sending', 'sent', 'failed', 'dropped')
                                    THEN reply_batches.message_ids ELSE EXCLUDED.message_ids END,
                 claims = EXCLUDED.claims,
                 supersedes = EXCLUDED.supersedes,
                 due_at = EXCLUDED.due_at,
                 claimed_at = EXCLUDED.claimed_at,
                 updated_at = now()
             RETURNING status, attempts, message_ids, reply_text, platform_message_ids",
        )
        .bind(batch.id)
        .bind(batch.conversation.channel.as_str())
        .bind(&batch.conversation.account)
        .bind(&batch.conversation.contact)
        .bind(&batch.message_ids)
        .bind(batch.claims as i32)
        .bind(batch.supersedes as i32)
        .bind(timestamp(batch.started_ms))
        .bind(timestamp(batch.due_ms))
        .bind(timestamp(batch.claimed_ms))
        .fetch_one(&self.pool)
        .await?;
        Ok(record)
    }

    /// Makes the batch the answer of its messages, unless another batch already is.
    /// Only when it owns them all is it marked `sending` with its text: a text that
    /// quotes a message answered elsewhere must never be resumed. Owning some, it
    /// keeps `generating` with those (the caller generates again); owning none, it
    /// is `dropped`. Returns the ids it owns, in the batch's order.
    pub async fn begin_sending(
        &self,
        batch_id: &str,
        message_ids: &[i64],
        reply_text: &str,
    ) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let owned: Vec<(i64,)> = sqlx::query_as(
            "UPDATE conversation_messages SET batch_id = $1
             WHERE id = ANY($2) AND (batch_id IS NULL OR batch_id = $1)
             RETURNING id",
        )
        .bind(batch_id)
        .bind(message_ids)
        .fetch_all(&mut *tx)
        .await?;
        // RETURNING gives no order: keep the batch's platform order.
        let owned: std::collections::HashSet<i64> = owned.into_iter().map(|(id,)| id).collect();
        let owned: Vec<i64> = message_ids
            .iter()
            .copied()
            .filter(|id| owned.contains(id))
            .collect();
        let status = match owned.len() {
            0 => "dropped",
            n if n == message_ids.len() => "sending",
            _ => "generating",
        };
        sqlx::query(
            "UPDATE reply_batches
             SET status = $4, message_ids = $3,
                 reply_text = CASE WHEN $4 = 'sending' THEN $2 ELSE reply_text END,
                 generated_at = CASE WHEN $4 = 'sending' THEN now() ELSE generated_at END,
                 updated_at = now()
             WHERE id = $1",
        )
        .bind(batch_id)
        .bind(reply_text)
        .bind(&owned)
        .bind(status)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(owned)
    }

    /// Some parts went out before the batch was handed back: a resume skips them.
    pub async fn record_progress(
        &self,
        batch_id: &str,
        attempts: u32,
        platform_ids: &[String],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE reply_batches
             SET attempts = attempts + $2, platform_message_ids = $3, updated_at = now()
             WHERE id = $1",
        )
        .bind(batch_id)
        .bind(attempts as i32)
        .bind(platform_ids)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The reply failed for good (or ran out of attempts); its messages will not be
    /// batched again.
    pub async fn mark_failed(
        &self,
        batch_id: &str,
        attempts: u32,
        platform_ids: &[String],
        code: Option<i64>,
        message: &str,
    ) -> Result<(), StoreError> {
        // Its messages count as handled: without this the reconciler would batch
        // them again forever (the same refusal each time), and every later message
        // of the conversation would fail along with them.
        sqlx::query(
            "WITH failed AS (
                 UPDATE reply_batches
                 SET status = 'failed', attempts = attempts + $2, platform_message_ids = $3,
                     error_code = $4, error_message = $5, updated_at = now()
                 WHERE id = $1
                 RETURNING message_ids)
             UPDATE conversation_messages SET batch_id = $1
             WHERE id IN (SELECT unnest(message_ids) FROM failed) AND batch_id IS NULL",
        )
        .bind(batch_id)
        .bind(attempts as i32)
        .bind(platform_ids)
        .bind(code.map(|c| c.to_string()))
        .bind(message)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Batches left `sending` for longer than `min_age`: normally a live worker in a
    /// long retry, or a handed-back batch waiting for its claim; after Redis lost its
    /// data, a reply nobody will resume unless it is put back (the reconciler asks
    /// Redis which is which).
    pub async fn stale_sending(
        &self,
        min_age: Duration,
        limit: i64,
    ) -> Result<Vec<StaleSending>, StoreError> {
        let rows: Vec<StaleRow> = sqlx::query_as(
            "SELECT id, channel, account_id, contact_id, first_message_at, message_ids
             FROM reply_batches
             WHERE status = 'sending' AND updated_at < now() - make_interval(secs => $1)
             ORDER BY updated_at
             LIMIT $2",
        )
        .bind(min_age.as_secs_f64())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut stale = Vec::with_capacity(rows.len());
        for row in rows {
            let StaleRow {
                id,
                channel,
                account_id: account,
                contact_id: contact,
                first_message_at: first,
                message_ids,
            } = row;
            let Some(channel) = ChannelKind::parse(&channel) else {
                continue;
            };
            stale.push(StaleSending {
                batch_id: id,
                conversation: Conversation::new(channel, account, contact),
                started_ms: first.map_or(0, |t| t.timestamp_millis()),
                entries: self.entries(&message_ids).await?,
            });
        }
        Ok(stale)
    }

    /// The batch, by id.
    pub async fn batch(&self, batch_id: &str) -> Result<Option<BatchRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM reply_batches WHERE id = $1")
            .bind(batch_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The newest batches, for the admin page.
    pub async fn recent_batches(&self, limit: i64) -> Result<Vec<BatchRow>, StoreError> {
        Ok(
            sqlx::query_as("SELECT * FROM reply_batches ORDER BY claimed_at DESC LIMIT $1")
                .bind(limit)
                .fetch_all(&self.pool)
                .await?,
        )
    }
}
