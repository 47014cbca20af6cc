//! Erasing old texts and payloads (RETENTION_DAYS), a few rows per statement.
//!
//! A message older than the cut-off loses its `text` (set to '', the column is
//! NOT NULL) and its `webhook_payload` (NULL); a finished reply batch loses its
//! `reply_text`. Everything else stays: ids, channel, account and contact, times,
//! direction, kind, batch links and counts, so the stats still add up. An erased
//! row leaves the partial indexes of migration 0007, so it is never read again.
//! Each statement is its own short transaction and skips rows another one holds
//! (they are erased on the next pass). The ids are gathered into an array first
//! (`= ANY(ARRAY(..))`): with `IN (subquery)` the planner joined them to a scan of
//! the whole table, once per statement.

use super::{Store, StoreError};
use chrono::{DateTime, Utc};

impl Store {
    /// Erases the text, payload and contact name of up to `limit` messages received before
    /// `cutoff`; returns how many.
    pub async fn erase_messages_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE conversation_messages SET text = '', webhook_payload = NULL, contact_name = NULL
             WHERE id = ANY(ARRAY(
                 SELECT id FROM conversation_messages
                 WHERE webhook_received_at < $1 AND (text <> '' OR webhook_payload IS NOT NULL)
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED))",
        )
        .bind(cutoff)
        .bind(limit)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Erases the reply text of up to `limit` finished batches claimed before
    /// `cutoff`; returns how many. One still sending keeps its text: a resume
    /// sends it.
    pub async fn erase_replies_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE reply_batches SET reply_text = NULL
             WHERE id = ANY(ARRAY(
                 SELECT id FROM reply_batches
                 WHERE claimed_at < $1 AND reply_text IS NOT NULL
                   AND status IN ('sent', 'failed', 'dropped')
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED))",
        )
        .bind(cutoff)
        .bind(limit)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}
