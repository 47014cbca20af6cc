//! The console's two Redis actions on a collecting batch: flush.lua (due at once)
//! and drop_batch.lua (messages out of the batch, unanswered).
//!
//! State touched: the conversation's `deadline` and its agenda score (flush);
//! `msgs`, `deadline`, `state.started` and its agenda membership (drop). `lock`
//! and `inflight` are only read: a batch a worker holds is never changed here.

use super::BatchError;
use super::keys::ConversationKeys;
use super::ops::Call;
use super::redis::RedisBatches;
use super::scripts::{LuaScript, Scripts};
use crate::message::Conversation;
use fred::types::Value;
use std::sync::LazyLock;

/// The scripts, loaded once: [`RedisBatches`] keeps its own set private.
static FLUSH: LazyLock<LuaScript> = LazyLock::new(|| Scripts::new().flush);
static DROP: LazyLock<LuaScript> = LazyLock::new(|| Scripts::new().drop_batch);

/// What flush.lua did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushOutcome {
    /// Nothing collecting and nothing in flight: nothing to answer.
    Nothing,
    /// Due at this unix ms (now).
    Due(i64),
    /// A worker holds the conversation: its batch is being answered already.
    Claimed,
}

/// What drop_batch.lua did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DropOutcome {
    /// Entries taken out of the collecting batch.
    pub removed: i64,
    /// Entries still collecting (arrived after the ids were read).
    pub left: i64,
}

fn int(v: i64) -> Value {
    Value::Integer(v)
}

/// flush.lua's KEYS and ARGV.
pub(crate) fn flush_call(keys: &ConversationKeys, now: i64, ttl_ms: i64) -> Call {
    Call {
        keys: vec![
            keys.agenda.clone(),
            keys.msgs.clone(),
            keys.deadline.clone(),
            keys.lock.clone(),
            keys.inflight.clone(),
        ],
        args: vec![
            int(now),
            Value::String(keys.member.clone().into()),
            int(ttl_ms),
        ],
    }
}

/// drop_batch.lua's KEYS and ARGV.
pub(crate) fn drop_call(keys: &ConversationKeys, ids: &[i64]) -> Call {
    let mut args = vec![Value::String(keys.member.clone().into())];
    args.extend(ids.iter().copied().map(int));
    Call {
        keys: vec![
            keys.agenda.clone(),
            keys.msgs.clone(),
            keys.deadline.clone(),
            keys.state.clone(),
            keys.lock.clone(),
            keys.inflight.clone(),
        ],
        args,
    }
}

fn pair(script: &'static str, reply: &[Value]) -> Result<(i64, i64), BatchError> {
    match reply {
        [a, b] => a.as_i64().zip(b.as_i64()),
        _ => None,
    }
    .ok_or_else(|| BatchError::Reply {
        script,
        detail: format!("{reply:?}"),
    })
}

/// flush.lua's reply.
pub(crate) fn decode_flush(reply: &[Value]) -> Result<FlushOutcome, BatchError> {
    match pair("flush.lua", reply)? {
        (0, _) => Ok(FlushOutcome::Nothing),
        (1, due) => Ok(FlushOutcome::Due(due)),
        (2, _) => Ok(FlushOutcome::Claimed),
        (status, _) => Err(BatchError::Reply {
            script: "flush.lua",
            detail: format!("status {status}"),
        }),
    }
}

impl RedisBatches {
    async fn eval(&self, script: &LuaScript, call: Call) -> Result<Vec<Value>, BatchError> {
        let reply: Value = script
            .script
            .evalsha_with_reload(self.pool().next(), call.keys, call.args)
            .await?;
        Ok(reply.into_array())
    }

    /// flush.lua: the collecting batch (or a claimed one waiting to be resumed)
    /// becomes due at `now`.
    pub async fn flush(
        &self,
        conversation: &Conversation,
        now: i64,
    ) -> Result<FlushOutcome, BatchError> {
        let keys = self.keys().conversation(conversation);
        let ttl = i64::try_from(self.policy().ttl.as_millis()).unwrap_or(i64::MAX);
        decode_flush(&self.eval(&FLUSH, flush_call(&keys, now, ttl)).await?)
    }

    /// drop_batch.lua: the messages `ids` leave the collecting batch.
    pub async fn drop_collecting(
        &self,
        conversation: &Conversation,
        ids: &[i64],
    ) -> Result<DropOutcome, BatchError> {
        let keys = self.keys().conversation(conversation);
        let (removed, left) = pair(
            "drop_batch.lua",
            &self.eval(&DROP, drop_call(&keys, ids)).await?,
        )?;
        Ok(DropOutcome { removed, left })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::keys::KeySpace;

    #[test]
    fn the_wrappers_pass_the_keys_and_argv_their_scripts_document() {
        let keys = KeySpace::new("conv:", 1, false).for_member("whatsapp:1:2");
        let flush = flush_call(&keys, 1, 2);
        assert_eq!(
            FLUSH.documented_arity(),
            (flush.keys.len(), flush.args.len())
        );
        // ARGV[2..] counts as 2: one id.
        let drop = drop_call(&keys, &[7]);
        assert_eq!(DROP.documented_arity(), (drop.keys.len(), drop.args.len()));
    }

    #[test]
    fn every_key_shares_the_agendas_slot() {
        let space = KeySpace::new("conv:", 8, true);
        let keys = space.for_member("whatsapp:1:2");
        let tag = format!("conv:{{{}}}:", space.shard_of("whatsapp:1:2"));
        for call in [flush_call(&keys, 1, 2), drop_call(&keys, &[1])] {
            assert!(call.keys.iter().all(|k| k.starts_with(&tag)));
        }
    }

    #[test]
    fn a_flush_reply_names_what_happened() {
        let reply = |a, b| [Value::Integer(a), Value::Integer(b)];
        assert_eq!(decode_flush(&reply(0, 0)).unwrap(), FlushOutcome::Nothing);
        assert_eq!(decode_flush(&reply(1, 42)).unwrap(), FlushOutcome::Due(42));
        assert_eq!(decode_flush(&reply(2, 0)).unwrap(), FlushOutcome::Claimed);
        assert!(decode_flush(&reply(9, 0)).is_err());
    }
}
