//! The console's queries on `conversation_modes` (see `modes.rs` for the table):
//! which of a page's conversations a human has, in one query, and the list of
//! paused conversations.

use super::{Store, StoreError};
use chrono::{DateTime, Utc};
use std::collections::HashSet;

/// A conversation a human has, as the paused list shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct PausedLine {
    /// `{channel}:{account}:{contact}`.
    pub conversation: String,
    /// Who paused it (an operator's name, `agent`, `contact`, `responder`).
    pub paused_by: Option<String>,
    /// When.
    pub paused_at: Option<DateTime<Utc>>,
    /// What paused it: agent, operator, keyword, responder.
    pub pause_trigger: Option<String>,
    /// Why, in the operator's words.
    pub reason: Option<String>,
    /// An operator's pause for some minutes ends here.
    pub paused_until: Option<DateTime<Utc>>,
}

impl Store {
    /// Which of `conversations` (`{channel}:{account}:{contact}`) a human has: one
    /// query for a whole page of a list.
    pub async fn humans_among(
        &self,
        conversations: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        if conversations.is_empty() {
            return Ok(HashSet::new());
        }
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT channel || ':' || account_id || ':' || contact_id
             FROM conversation_modes
             WHERE mode = 'human'
               AND channel || ':' || account_id || ':' || contact_id = ANY($1)",
        )
        .bind(conversations)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Conversations a human has, most recently paused first.
    pub async fn paused_conversations(
        &self,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<PausedLine>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT channel || ':' || account_id || ':' || contact_id AS conversation,
                    paused_by, paused_at, pause_trigger, reason, paused_until
             FROM conversation_modes
             WHERE mode = 'human'
             ORDER BY paused_at DESC NULLS LAST, conversation OFFSET $1 LIMIT $2",
        )
        .bind(offset)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }
}
