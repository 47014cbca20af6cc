//! The Redis side of batching.
//!
//! State per conversation (names in [`keys`]): `history` (recent messages),
//! `msgs` (the batch being collected), `deadline` (when it is due), `inflight` (the
//! claimed batch, kept until acknowledged), `lock` (the claimer's token, with the
//! lease as its TTL), `state` (batch id, start times, counters) and `mode` (exists
//! while a human agent has the conversation: see `crate::handoff`); plus one agenda
//! ZSET per shard, conversation → due time. Every change to that state happens
//! inside one Lua script (`lua/`), so two lull instances never see it half-changed;
//! this module only builds the KEYS/ARGV of each call and decodes the reply.
//!
//! Invariant 9 of docs/design.md: every change to a conversation's Redis state is one script.

pub mod cleanup;
pub mod flush;
pub mod forget;
pub mod health;
pub mod id;
pub mod inspect;
pub mod keys;
pub mod probe;
pub mod scripts;

mod ops;
mod policy;
mod redis;

pub use health::RedisHealth;
pub use id::{BatchId, ClaimToken};
pub use keys::{ConversationKeys, KeySpace};
pub use ops::{
    AckOutcome, AppendMode, AppendOutcome, Claim, ClaimKind, ClaimOutcome, ExtendOutcome,
    RequeueMode, ResumeOutcome,
};
pub use policy::Policy;
pub use redis::{RedisBatches, WaitingConversation};

/// What went wrong talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Redis refused, timed out or is unreachable.
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    /// A script answered something its header does not document.
    #[error("unexpected reply from {script}: {detail}")]
    Reply {
        /// The script.
        script: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// Not tried: the breaker is open (Redis was found down and has not answered
    /// the probe since).
    #[error("redis is down (breaker open)")]
    BreakerOpen,
    /// An entry could not be encoded or decoded.
    #[error("entry JSON: {0}")]
    Json(#[from] serde_json::Error),
}
