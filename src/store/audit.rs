//! `console_actions`: every console and CLI action on a conversation, with who took
//! it and how it ended (migration 0020).

use super::{Store, StoreError};
use chrono::{DateTime, Utc};

/// An action to record.
#[derive(Debug, Clone)]
pub struct NewAction<'a> {
    /// Who: the ADMIN_TOKEN pair's label, `loopback`, or `cli:<user>`.
    pub actor: &'a str,
    /// `flush`, `pause`, `resume`, `retry` or `drop`.
    pub action: &'a str,
    /// `{channel}:{account}:{contact}`.
    pub conversation: &'a str,
    /// The batch acted on, when there is one.
    pub batch_id: Option<&'a str>,
    /// Whether it changed something (`done`) or did not apply (`refused`).
    pub done: bool,
    /// What happened, or why it did not apply.
    pub detail: &'a str,
}

/// A recorded action.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct ActionRow {
    /// Row id.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On which conversation.
    pub conversation: String,
    /// On which batch.
    pub batch_id: Option<String>,
    /// `done` or `refused`.
    pub outcome: String,
    /// What happened, or why not.
    pub detail: String,
}

impl Store {
    /// Records one action.
    pub async fn record_action(&self, action: NewAction<'_>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO console_actions (actor, action, conversation, batch_id, outcome, detail)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(action.actor)
        .bind(action.action)
        .bind(action.conversation)
        .bind(action.batch_id)
        .bind(if action.done { "done" } else { "refused" })
        .bind(action.detail)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The newest actions, of one conversation or of all.
    pub async fn recent_actions(
        &self,
        conversation: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ActionRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM console_actions
             WHERE $1::text IS NULL OR conversation = $1
             ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(conversation)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }
}
