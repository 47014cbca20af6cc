//! forget.lua's typed wrapper: erase every Redis key of one conversation.
//!
//! State touched: all of a conversation's keys (`history`, `msgs`, `inflight`,
//! `deadline`, `lock`, `state`, `mode`; see [`super::keys`]) are deleted and its member
//! leaves its shard's agenda ZSET, in one script call (they share one hash tag).

use super::BatchError;
use super::keys::ConversationKeys;
use super::ops::Call;
use super::redis::RedisBatches;
use super::scripts::{LuaScript, Scripts};
use crate::message::Conversation;
use fred::types::Value;
use std::sync::LazyLock;

/// The script, loaded once: [`RedisBatches`] keeps its own set private.
static FORGET: LazyLock<LuaScript> = LazyLock::new(|| Scripts::new().forget);

/// What forget.lua found and erased.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ForgetOutcome {
    /// Keys of the conversation that existed (all deleted now).
    pub keys_deleted: i64,
    /// Whether it was on its agenda (removed now).
    pub was_scheduled: bool,
    /// The batch claimed for it, if any: a worker may still be finishing that
    /// batch, and may write its row once more before it notices.
    pub claimed_batch: Option<String>,
}

impl ForgetOutcome {
    /// Whether Redis held anything of the conversation.
    pub fn found(&self) -> bool {
        self.keys_deleted > 0 || self.was_scheduled
    }
}

pub(crate) fn forget_call(keys: &ConversationKeys) -> Call {
    Call {
        keys: vec![
            keys.history.clone(),
            keys.msgs.clone(),
            keys.inflight.clone(),
            keys.deadline.clone(),
            keys.lock.clone(),
            keys.state.clone(),
            keys.agenda.clone(),
            keys.mode.clone(),
        ],
        args: vec![Value::String(keys.member.clone().into())],
    }
}

pub(crate) fn decode_forget(reply: Vec<Value>) -> Result<ForgetOutcome, BatchError> {
    let bad = |detail: String| BatchError::Reply {
        script: "forget.lua",
        detail,
    };
    let int = |i: usize| {
        reply
            .get(i)
            .and_then(Value::as_i64)
            .ok_or_else(|| bad(format!("item {i} is not an integer: {reply:?}")))
    };
    let (keys_deleted, on_agenda) = (int(0)?, int(1)?);
    let batch = reply
        .get(2)
        .and_then(Value::as_string)
        .ok_or_else(|| bad(format!("item 2 is not a batch id: {reply:?}")))?;
    Ok(ForgetOutcome {
        keys_deleted,
        was_scheduled: on_agenda == 1,
        claimed_batch: (!batch.is_empty()).then_some(batch),
    })
}

impl RedisBatches {
    /// forget.lua: deletes every key of the conversation and takes it off its agenda.
    pub async fn forget(&self, conversation: &Conversation) -> Result<ForgetOutcome, BatchError> {
        let call = forget_call(&self.keys().conversation(conversation));
        let reply: Value = FORGET
            .script
            .evalsha_with_reload(self.pool().next(), call.keys, call.args)
            .await?;
        decode_forget(reply.into_array())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::keys::KeySpace;

    #[test]
    fn the_wrapper_passes_the_keys_and_argv_the_script_documents() {
        let keys = KeySpace::new("conv:", 1, false).for_member("whatsapp:1:2");
        let call = forget_call(&keys);
        assert_eq!(
            FORGET.documented_arity(),
            (call.keys.len(), call.args.len())
        );
    }

    #[test]
    fn every_key_of_the_conversation_is_passed_and_shares_the_agendas_slot() {
        let space = KeySpace::new("conv:", 8, true);
        let keys = space.for_member("whatsapp:1:2");
        let call = forget_call(&keys);
        for key in [
            &keys.history,
            &keys.msgs,
            &keys.inflight,
            &keys.deadline,
            &keys.lock,
            &keys.state,
            &keys.agenda,
            &keys.mode,
        ] {
            assert!(call.keys.contains(key), "{key} not passed");
        }
        let tag = format!("conv:{{{}}}:", space.shard_of("whatsapp:1:2"));
        assert!(call.keys.iter().all(|k| k.starts_with(&tag)));
    }

    #[test]
    fn an_empty_batch_id_means_no_claimed_batch() {
        let text = |s: &str| Value::String(s.to_owned().into());
        let idle = decode_forget(vec![Value::Integer(0), Value::Integer(0), text("")]).unwrap();
        assert_eq!(idle, ForgetOutcome::default());
        assert!(!idle.found());
        let busy = decode_forget(vec![Value::Integer(6), Value::Integer(1), text("b1")]).unwrap();
        assert_eq!(busy.claimed_batch.as_deref(), Some("b1"));
        assert!(busy.found());
    }
}
