//! The console's queries on `conversation_messages` and `reply_batches`: one
//! conversation's transcript and replies, the recent and failed lists, and the two
//! actions PostgreSQL decides: retrying a failed batch (its messages become
//! unanswered again, `reply_batches.retried_at` set) and dropping a collecting batch
//! (its messages owned by a new `dropped` batch, error code `operator`, so they
//! count as handled and nobody answers them).

use super::batches::BatchRow;
use super::{Store, StoreError};
use crate::batch::ClaimToken;
use crate::message::{Conversation, Direction, Entry, MessageKind};
use chrono::{DateTime, Utc};

/// One line of a transcript.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct TranscriptLine {
    /// `conversation_messages.id`.
    pub id: i64,
    /// `in` or `out`.
    pub direction: String,
    /// `contact` for inbound, `bot` for our replies.
    pub author: String,
    /// Message kind (`text`, `reaction`, `reply`, ...).
    pub kind: String,
    /// Its text (empty once erased by retention).
    pub text: String,
    /// Platform time.
    pub at: DateTime<Utc>,
    /// The batch that answered it (inbound) or that it belongs to (outbound).
    pub batch_id: Option<String>,
    /// Whether it needs a reply.
    pub answerable: bool,
    /// The platform's message id.
    pub external_id: String,
}

impl TranscriptLine {
    /// The line as a Redis list entry.
    pub fn entry(&self) -> Entry {
        Entry {
            id: self.id,
            ts: self.at.timestamp_millis(),
            dir: if self.direction == "out" {
                Direction::Outbound
            } else {
                Direction::Inbound
            },
            kind: MessageKind::parse(&self.kind),
            external_id: self.external_id.clone(),
            text: self.text.clone(),
        }
    }
}

/// A conversation in a list, with its newest batch.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct ConversationLine {
    /// `{channel}:{account}:{contact}`.
    pub conversation: String,
    /// Its newest batch (the failed one, in the failures list).
    pub batch_id: String,
    /// That batch's status.
    pub status: String,
    /// Messages it answers.
    pub batch_size: i32,
    /// When it was claimed.
    pub claimed_at: DateTime<Utc>,
    /// Its error code, when failed.
    pub error_code: Option<String>,
    /// Its error message, when failed.
    pub error_message: Option<String>,
}

/// Why a retry did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryRefusal {
    /// No batch has this id.
    Unknown,
    /// The batch is not failed: it has this status.
    NotFailed(String),
    /// It was retried already.
    AlreadyRetried,
}

/// A batch's status, conversation and retry time.
type RetryRow = (String, String, String, String, Option<DateTime<Utc>>);

const TRANSCRIPT_COLUMNS: &str = "id, direction,
    CASE WHEN direction = 'in' THEN 'contact' WHEN author = 'agent' THEN 'agent' ELSE 'bot' END
        AS author,
    message_type AS kind, text, platform_timestamp AS at, batch_id, answerable,
    external_message_id AS external_id";

impl Store {
    /// Whether PostgreSQL holds any message of the conversation.
    pub async fn conversation_known(&self, c: &Conversation) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM conversation_messages
                            WHERE channel = $1 AND account_id = $2 AND contact_id = $3)",
        )
        .bind(c.channel.as_str())
        .bind(&c.account)
        .bind(&c.contact)
        .fetch_one(self.pool())
        .await?)
    }

    /// The conversation's newest `limit` messages, oldest first.
    pub async fn transcript(
        &self,
        c: &Conversation,
        limit: i64,
    ) -> Result<Vec<TranscriptLine>, StoreError> {
        let sql = format!(
            "SELECT * FROM (SELECT {TRANSCRIPT_COLUMNS} FROM conversation_messages
                 WHERE channel = $1 AND account_id = $2 AND contact_id = $3
                 ORDER BY platform_timestamp DESC, id DESC LIMIT $4) t
             ORDER BY at, id"
        );
        Ok(sqlx::query_as(&sql)
            .bind(c.channel.as_str())
            .bind(&c.account)
            .bind(&c.contact)
            .bind(limit)
            .fetch_all(self.pool())
            .await?)
    }

    /// The conversation's newest `limit` reply batches, newest first.
    pub async fn replies_of(
        &self,
        c: &Conversation,
        limit: i64,
    ) -> Result<Vec<BatchRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM reply_batches
             WHERE channel = $1 AND account_id = $2 AND contact_id = $3
             ORDER BY claimed_at DESC LIMIT $4",
        )
        .bind(c.channel.as_str())
        .bind(&c.account)
        .bind(&c.contact)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// Conversations by their newest batch, newest first: a page of the newest
    /// 2,000 batches' conversations.
    pub async fn recent_conversations(
        &self,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<ConversationLine>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM (
                 SELECT DISTINCT ON (channel, account_id, contact_id)
                        channel || ':' || account_id || ':' || contact_id AS conversation,
                        id AS batch_id, status, cardinality(message_ids) AS batch_size,
                        claimed_at, error_code, error_message
                 FROM (SELECT * FROM reply_batches ORDER BY claimed_at DESC LIMIT 2000) r
                 ORDER BY channel, account_id, contact_id, claimed_at DESC) c
             ORDER BY claimed_at DESC, conversation OFFSET $1 LIMIT $2",
        )
        .bind(offset)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// Failed batches not retried yet, newest first.
    pub async fn failed_batches(
        &self,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<ConversationLine>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT channel || ':' || account_id || ':' || contact_id AS conversation,
                    id AS batch_id, status, cardinality(message_ids) AS batch_size,
                    claimed_at, error_code, error_message
             FROM reply_batches
             WHERE status = 'failed' AND retried_at IS NULL
             ORDER BY updated_at DESC, id OFFSET $1 LIMIT $2",
        )
        .bind(offset)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// Retry of a failed batch: its messages no longer count as handled (the
    /// caller batches them again), and the batch is marked retried. Returns them,
    /// oldest first, or why not.
    pub async fn retry_failed(
        &self,
        batch_id: &str,
    ) -> Result<Result<(Conversation, Vec<Entry>), RetryRefusal>, StoreError> {
        let sql = format!(
            "WITH retried AS (
                 UPDATE reply_batches SET retried_at = now(), updated_at = now()
                 WHERE id = $1 AND status = 'failed' AND retried_at IS NULL
                 RETURNING id),
             released AS (
                 UPDATE conversation_messages SET batch_id = NULL
                 WHERE batch_id IN (SELECT id FROM retried) AND direction = 'in'
                 RETURNING {TRANSCRIPT_COLUMNS})
             SELECT * FROM released ORDER BY at, id"
        );
        let mut tx = self.pool().begin().await?;
        let row: Option<RetryRow> = sqlx::query_as(
            "SELECT status, channel, account_id, contact_id, retried_at
                 FROM reply_batches WHERE id = $1 FOR UPDATE",
        )
        .bind(batch_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((status, channel, account, contact, retried)) = row else {
            return Ok(Err(RetryRefusal::Unknown));
        };
        if status != "failed" {
            return Ok(Err(RetryRefusal::NotFailed(status)));
        }
        if retried.is_some() {
            return Ok(Err(RetryRefusal::AlreadyRetried));
        }
        let lines: Vec<TranscriptLine> = sqlx::query_as(&sql)
            .bind(batch_id)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let conversation = Conversation::parse(&format!("{channel}:{account}:{contact}"))
            .ok_or_else(|| StoreError::Unavailable(format!("batch {batch_id}: bad channel")))?;
        Ok(Ok((
            conversation,
            lines.iter().map(TranscriptLine::entry).collect(),
        )))
    }

    /// Marks the messages `ids` of the conversation handled without a reply: a new
    /// `dropped` batch (error code `operator`) owns those still unanswered. Returns
    /// its id and how many it took.
    pub async fn drop_unanswered(
        &self,
        c: &Conversation,
        ids: &[i64],
        by: &str,
    ) -> Result<(String, u64), StoreError> {
        let batch = ClaimToken::generate();
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO reply_batches
                 (id, channel, account_id, contact_id, status, message_ids, error_code, error_message)
             VALUES ($1, $2, $3, $4, 'dropped', $5, 'operator', $6)",
        )
        .bind(batch.as_str())
        .bind(c.channel.as_str())
        .bind(&c.account)
        .bind(&c.contact)
        .bind(ids)
        .bind(format!("dropped from the console by {by}"))
        .execute(&mut *tx)
        .await?;
        let taken = sqlx::query(
            "UPDATE conversation_messages SET batch_id = $1
             WHERE id = ANY($2) AND batch_id IS NULL AND direction = 'in'
               AND channel = $3 AND account_id = $4 AND contact_id = $5",
        )
        .bind(batch.as_str())
        .bind(ids)
        .bind(c.channel.as_str())
        .bind(&c.account)
        .bind(&c.contact)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok((batch.as_str().to_owned(), taken))
    }
}
