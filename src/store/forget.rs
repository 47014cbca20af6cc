//! Deleting one conversation's rows: every message of it, both directions, and
//! every reply batch, from `conversation_messages` and `reply_batches`.

use super::{Store, StoreError};
use crate::message::Conversation;

/// Rows deleted for a conversation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeletedRows {
    /// Messages, inbound and outbound.
    pub messages: u64,
    /// Reply batches.
    pub reply_batches: u64,
}

impl DeletedRows {
    /// Whether anything was deleted.
    pub fn any(&self) -> bool {
        self.messages > 0 || self.reply_batches > 0
    }
}

impl std::ops::AddAssign for DeletedRows {
    fn add_assign(&mut self, other: Self) {
        self.messages += other.messages;
        self.reply_batches += other.reply_batches;
    }
}

impl Store {
    /// Deletes every message and reply batch of a conversation, in one transaction.
    /// Messages go first: an outbound one names its batch (foreign key).
    pub async fn delete_conversation(
        &self,
        conversation: &Conversation,
    ) -> Result<DeletedRows, StoreError> {
        let mut tx = self.pool.begin().await?;
        let messages = sqlx::query(
            "DELETE FROM conversation_messages
             WHERE channel = $1 AND account_id = $2 AND contact_id = $3",
        )
        .bind(conversation.channel.as_str())
        .bind(&conversation.account)
        .bind(&conversation.contact)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // The handoff record goes too: it names who paused the person's conversation.
        sqlx::query(
            "DELETE FROM conversation_modes
             WHERE channel = $1 AND account_id = $2 AND contact_id = $3",
        )
        .bind(conversation.channel.as_str())
        .bind(&conversation.account)
        .bind(&conversation.contact)
        .execute(&mut *tx)
        .await?;
        let reply_batches = sqlx::query(
            "DELETE FROM reply_batches
             WHERE channel = $1 AND account_id = $2 AND contact_id = $3",
        )
        .bind(conversation.channel.as_str())
        .bind(&conversation.account)
        .bind(&conversation.contact)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // The console's audit names the conversation (its contact id): it goes too.
        sqlx::query("DELETE FROM console_actions WHERE conversation = $1")
            .bind(conversation.id())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(DeletedRows {
            messages,
            reply_batches,
        })
    }

    /// Deletes one batch of a conversation and the messages that name it, in one
    /// transaction: what a worker that was finishing it when the conversation was
    /// forgotten may have written back before it noticed.
    pub async fn delete_batch(
        &self,
        conversation: &Conversation,
        batch_id: &str,
    ) -> Result<DeletedRows, StoreError> {
        let mut tx = self.pool.begin().await?;
        let messages = sqlx::query(
            "DELETE FROM conversation_messages
             WHERE batch_id = $4 AND channel = $1 AND account_id = $2 AND contact_id = $3",
        )
        .bind(conversation.channel.as_str())
        .bind(&conversation.account)
        .bind(&conversation.contact)
        .bind(batch_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let reply_batches = sqlx::query(
            "DELETE FROM reply_batches
             WHERE id = $4 AND channel = $1 AND account_id = $2 AND contact_id = $3",
        )
        .bind(conversation.channel.as_str())
        .bind(&conversation.account)
        .bind(&conversation.contact)
        .bind(batch_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(DeletedRows {
            messages,
            reply_batches,
        })
    }
}
