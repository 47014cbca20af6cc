//! A claimed batch as the stages see it: claim.lua's reply together with its
//! conversation, keys, channel and claim time, so each stage takes one value
//! instead of the same half-dozen arguments.

use crate::batch::{BatchId, Claim, ClaimKind, ClaimToken, ConversationKeys};
use crate::channel::Channel;
use crate::message::{Conversation, Entry};
use crate::store::NewBatch;
use crate::time::UnixMs;
use std::sync::Arc;

/// One claimed batch, from claim to ack.
pub(super) struct ClaimedBatch {
    /// Its conversation.
    pub conversation: Conversation,
    /// The conversation's Redis keys.
    pub keys: ConversationKeys,
    /// The platform that answers it.
    pub channel: Arc<dyn Channel>,
    /// The batch id (same across resumes and supersedes).
    pub id: BatchId,
    /// This claim's token: extend, requeue and ack need it.
    pub token: ClaimToken,
    /// New, or claimed before (its record says how far it got).
    pub kind: ClaimKind,
    /// Claims so far, this one included.
    pub claims: i64,
    /// Supersedes so far.
    pub supersedes: i64,
    /// Its first message (for the max-wait cap).
    pub started_at: UnixMs,
    /// When it became due.
    pub due_at: UnixMs,
    /// When this claim took it (lull's clock).
    pub claimed_at: UnixMs,
    /// Its messages, oldest first.
    pub entries: Vec<Entry>,
    /// The conversation's history as Redis held it at the claim (empty: read
    /// PostgreSQL); it includes the batch's own messages.
    pub history: Vec<Entry>,
}

impl ClaimedBatch {
    /// Gathers the claim with what the stages need besides.
    pub fn new(
        conversation: Conversation,
        keys: ConversationKeys,
        channel: Arc<dyn Channel>,
        claim: Claim,
        claimed_at: UnixMs,
    ) -> Self {
        let kind = claim.kind();
        Self {
            conversation,
            keys,
            channel,
            id: claim.batch_id,
            token: claim.token,
            kind,
            claims: claim.claims,
            supersedes: claim.supersedes,
            started_at: claim.started_ms,
            due_at: claim.due_ms,
            claimed_at,
            entries: claim.entries,
            history: claim.history,
        }
    }

    /// The database ids of its messages, in order.
    pub fn message_ids(&self) -> Vec<i64> {
        self.entries.iter().map(|e| e.id).collect()
    }

    /// Its claim, as `reply_batches` records it.
    pub fn record(&self) -> NewBatch {
        NewBatch {
            id: self.id.clone(),
            conversation: self.conversation.clone(),
            message_ids: self.message_ids(),
            claims: self.claims,
            supersedes: self.supersedes,
            started_ms: self.started_at,
            due_ms: self.due_at,
            claimed_ms: self.claimed_at,
        }
    }
}
