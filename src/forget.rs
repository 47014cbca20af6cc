//! Forgetting one person: every message and reply of their conversation in
//! PostgreSQL, and every Redis key of it, for `lull forget` and the admin API.
//!
//! Order matters. PostgreSQL goes first: were Redis erased first, a message
//! arriving in between would find no history and hydrate it again from the rows
//! still there. Then Redis (forget.lua), which takes the lock from a worker that
//! may be answering the conversation: its next heartbeat finds the lease lost and
//! its ack is stale, so it writes nothing to Redis. Then PostgreSQL once more, for
//! what such a worker wrote there before Redis was erased. A worker may still
//! record its batch's row once more before its next heartbeat (at most a third of
//! a lease later); [`sweep_claimed_batch`] deletes that batch by its id once a
//! lease has surely run out. A reply that was already on its way to the platform
//! still reaches the person; its record fails (its batch row is gone) and nothing
//! of it is stored.
//!
//! The person's next message starts a fresh conversation: stored as usual, and
//! batched with a history of nothing but itself.
//!
//! Logs say only that it was done, with counts and a pseudonym of the conversation
//! (its contact id is personal data): never the texts or the id itself.
//!
//! Invariants 6 and 10 of docs/design.md: one lock holder; Redis follows PostgreSQL, never leads.

use crate::batch::{BatchError, RedisBatches};
use crate::message::Conversation;
use crate::store::{DeletedRows, Store, StoreError};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// What forgetting a conversation erased.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ForgetReport {
    /// Messages (both directions) and reply batches deleted.
    #[serde(flatten)]
    pub rows: DeletedRows,
    /// Redis keys of the conversation deleted.
    pub redis_keys: i64,
    /// Whether the conversation was on the agenda (waiting for a reply).
    pub was_scheduled: bool,
    /// The batch Redis held as claimed: a worker may write its row once more.
    #[serde(skip)]
    pub claimed_batch: Option<String>,
}

impl ForgetReport {
    /// Whether anything of the conversation was found.
    pub fn found(&self) -> bool {
        self.rows.any() || self.redis_keys > 0 || self.was_scheduled
    }
}

/// Why a conversation could not be (completely) forgotten. Running it again is
/// safe: each step deletes what is left.
#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    /// PostgreSQL failed.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// Redis failed after PostgreSQL's rows were deleted: its keys may remain
    /// until they expire, or until forget is run again.
    #[error("redis: {0}")]
    Redis(#[from] BatchError),
}

/// Erases a conversation from PostgreSQL and Redis (see the module doc for the
/// order). When the report names a claimed batch, run [`sweep_claimed_batch`]
/// after it (the admin API spawns it).
pub async fn forget(
    store: &Store,
    redis_batches: &RedisBatches,
    conversation: &Conversation,
) -> Result<ForgetReport, ForgetError> {
    let mut rows = store.delete_conversation(conversation).await?;
    let redis = redis_batches.forget(conversation).await?;
    rows += store.delete_conversation(conversation).await?;
    let report = ForgetReport {
        rows,
        redis_keys: redis.keys_deleted,
        was_scheduled: redis.was_scheduled,
        claimed_batch: redis.claimed_batch,
    };
    tracing::info!(
        channel = %conversation.channel,
        conversation = %pseudonym(conversation),
        messages = report.rows.messages,
        reply_batches = report.rows.reply_batches,
        redis_keys = report.redis_keys,
        batch_in_flight = report.claimed_batch.is_some(),
        "conversation forgotten"
    );
    Ok(report)
}

/// Waits until a worker that held `batch_id` when the conversation was forgotten
/// has lost its lease for sure (`lease` twice: its heartbeat notices within a
/// third of one), then deletes that batch's rows if it wrote them again.
pub async fn sweep_claimed_batch(
    store: &Store,
    conversation: &Conversation,
    batch_id: &str,
    lease: Duration,
) -> Result<DeletedRows, StoreError> {
    tokio::time::sleep(lease * 2).await;
    let rows = store.delete_batch(conversation, batch_id).await?;
    if rows.any() {
        tracing::info!(
            channel = %conversation.channel,
            conversation = %pseudonym(conversation),
            messages = rows.messages,
            reply_batches = rows.reply_batches,
            "forgotten conversation: rows its last worker wrote back deleted"
        );
    }
    Ok(rows)
}

/// A stable stand-in for a conversation in logs: the first 16 hex digits of the
/// SHA-256 of its id. It lets two log lines about one person be matched, not
/// read; a phone number is guessable from it by trying them all, so it is a
/// pseudonym, not anonymity.
pub fn pseudonym(conversation: &Conversation) -> String {
    let digest = Sha256::digest(conversation.id().as_bytes());
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ChannelKind;

    #[test]
    fn the_pseudonym_is_stable_and_does_not_contain_the_contact() {
        let maria = Conversation::new(ChannelKind::WhatsApp, "123456789012345", "15550002222");
        let other = Conversation::new(ChannelKind::WhatsApp, "123456789012345", "15550003333");
        assert_eq!(pseudonym(&maria), pseudonym(&maria.clone()));
        assert_ne!(pseudonym(&maria), pseudonym(&other));
        assert_eq!(pseudonym(&maria).len(), 16);
        assert!(!pseudonym(&maria).contains("15550002222"));
    }
}
