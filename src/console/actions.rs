//! The console's actions. Each checks that what it names exists (404), that it
//! applies (409 with the reason), acts, and records itself with who took it.
//! Repeating one changes nothing: a second flush finds the batch due already, a
//! second retry or drop finds nothing left to do and says so.

use super::ConsoleError;
use super::handoff;
use super::view::known;
use crate::batch::flush::FlushOutcome;
use crate::batch::{AppendMode, RedisBatches};
use crate::handoff::{Handoff, PauseRequest};
use crate::message::Conversation;
use crate::store::{NewAction, RetryRefusal, Store};

/// What an action did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ActionOutcome {
    /// `flush`, `retry`, `drop`, `pause` or `resume`.
    pub action: &'static str,
    /// The conversation.
    pub conversation: String,
    /// The batch acted on.
    pub batch_id: Option<String>,
    /// What happened.
    pub detail: String,
    /// Whether it changed anything: a repeated pause or resume does not.
    pub changed: bool,
}

/// Records the action (done or refused) and passes its result on.
async fn recorded(
    store: &Store,
    actor: &str,
    action: &'static str,
    conversation: &str,
    batch_id: Option<&str>,
    result: Result<String, ConsoleError>,
) -> Result<ActionOutcome, ConsoleError> {
    let (done, detail) = match result {
        Ok(detail) => (true, detail),
        Err(ConsoleError::NotApplicable(why)) => (false, why),
        Err(error) => return Err(error),
    };
    store
        .record_action(NewAction {
            actor,
            action,
            conversation,
            batch_id,
            done,
            detail: &detail,
        })
        .await?;
    tracing::info!(actor, action, done, "console action");
    if !done {
        return Err(ConsoleError::NotApplicable(detail));
    }
    Ok(ActionOutcome {
        action,
        conversation: conversation.to_owned(),
        batch_id: batch_id.map(str::to_owned),
        detail,
        changed: true,
    })
}

/// Flush: the collecting batch is due at once, so the next claim answers it.
pub async fn flush(
    store: &Store,
    redis: &RedisBatches,
    conversation: &Conversation,
    actor: &str,
) -> Result<ActionOutcome, ConsoleError> {
    known(store, redis, conversation).await?;
    let result = match redis.flush(conversation, crate::time::now_ms()).await? {
        FlushOutcome::Due(_) => Ok("due now: the next claim answers it".to_owned()),
        FlushOutcome::Nothing => Err(ConsoleError::NotApplicable(format!(
            "{conversation} has nothing waiting to be answered"
        ))),
        FlushOutcome::Claimed => Err(ConsoleError::NotApplicable(format!(
            "a worker is answering {conversation} now"
        ))),
    };
    recorded(store, actor, "flush", &conversation.id(), None, result).await
}

/// Drop: the collecting batch's messages are kept, marked handled, and not
/// answered.
pub async fn drop_collecting(
    store: &Store,
    redis: &RedisBatches,
    conversation: &Conversation,
    actor: &str,
) -> Result<ActionOutcome, ConsoleError> {
    known(store, redis, conversation).await?;
    let state = redis.conversation_state(conversation).await?;
    let id = conversation.id();
    if state.collecting.is_empty() {
        let why = format!("{conversation} has no batch collecting");
        return recorded(
            store,
            actor,
            "drop",
            &id,
            None,
            Err(ConsoleError::NotApplicable(why)),
        )
        .await;
    }
    let ids: Vec<i64> = state.collecting.iter().map(|e| e.id).collect();
    // PostgreSQL first: once it owns them, no batch can answer them, even one
    // claimed before Redis lets go of them.
    let (batch, taken) = store.drop_unanswered(conversation, &ids, actor).await?;
    let dropped = redis.drop_collecting(conversation, &ids).await?;
    let detail = format!(
        "{taken} messages marked handled without a reply; {} still collecting",
        dropped.left
    );
    recorded(store, actor, "drop", &id, Some(&batch), Ok(detail)).await
}

/// Retry: a failed batch's messages are answered again, in a new batch due at once.
pub async fn retry(
    store: &Store,
    redis: &RedisBatches,
    batch_id: &str,
    actor: &str,
) -> Result<ActionOutcome, ConsoleError> {
    let (conversation, entries) = match store.retry_failed(batch_id).await? {
        Ok(released) => released,
        Err(RetryRefusal::Unknown) => {
            return Err(ConsoleError::UnknownBatch(batch_id.to_owned()));
        }
        Err(refusal) => {
            let why = match refusal {
                RetryRefusal::NotFailed(status) => {
                    format!("batch {batch_id} is {status}: only a failed batch can be retried")
                }
                _ => format!("batch {batch_id} was retried already"),
            };
            let conversation = store
                .batch(batch_id)
                .await?
                .map(|b| format!("{}:{}:{}", b.channel, b.account_id, b.contact_id))
                .unwrap_or_default();
            let refused = Err(ConsoleError::NotApplicable(why));
            return recorded(
                store,
                actor,
                "retry",
                &conversation,
                Some(batch_id),
                refused,
            )
            .await;
        }
    };
    let now = crate::time::now_ms();
    let mut batched = true;
    for entry in &entries {
        let appended = redis
            .append(&conversation, entry, AppendMode::Message, true, now)
            .await;
        if let Err(error) = appended {
            // The messages are unanswered in PostgreSQL: the reconciler batches them.
            tracing::warn!(%error, "retry: Redis unavailable, left to the reconciler");
            batched = false;
            break;
        }
    }
    if batched {
        let history = store
            .recent_history(&conversation, redis.policy().history_limit)
            .await?;
        redis.hydrate(&conversation, &history).await?;
        redis.flush(&conversation, now).await?;
    }
    let detail = format!(
        "{} messages to be answered again in a new batch{}",
        entries.len(),
        if batched {
            ", due now"
        } else {
            " once the reconciler runs"
        }
    );
    recorded(
        store,
        actor,
        "retry",
        &conversation.id(),
        Some(batch_id),
        Ok(detail),
    )
    .await
}

/// Pause: the bot stops answering the conversation (the handoff core). Pausing
/// a paused conversation changes nothing (but a new reason or end) and says so.
pub async fn pause(
    store: &Store,
    redis: &RedisBatches,
    handoff: &Handoff,
    conversation: &Conversation,
    request: PauseRequest,
) -> Result<ActionOutcome, ConsoleError> {
    if request.minutes.is_some_and(|m| !(m.is_finite() && m > 0.0)) {
        return Err(ConsoleError::BadRequest(
            "minutes must be a positive number".into(),
        ));
    }
    known(store, redis, conversation).await?;
    let actor = request.by.clone();
    let minutes = request.minutes;
    let paused = handoff::pause(handoff, conversation, request).await?;
    let detail = match (paused.changed, minutes) {
        (true, Some(m)) => format!("paused for {m} minutes: the bot does not answer"),
        (true, None) => "paused: the bot does not answer until resumed".to_owned(),
        (false, _) => "already paused: nothing changed".to_owned(),
    };
    let id = conversation.id();
    let outcome = recorded(store, &actor, "pause", &id, None, Ok(detail)).await?;
    Ok(ActionOutcome {
        changed: paused.changed,
        ..outcome
    })
}

/// Resume: the bot answers the conversation again (the handoff core), starting
/// with the contact's messages since the human agent's last one. Resuming a
/// conversation the bot has changes nothing and says so.
pub async fn resume(
    store: &Store,
    redis: &RedisBatches,
    handoff: &Handoff,
    conversation: &Conversation,
    actor: &str,
) -> Result<ActionOutcome, ConsoleError> {
    known(store, redis, conversation).await?;
    let resumed = handoff::resume(handoff, conversation, actor).await?;
    let detail = if resumed.changed {
        format!(
            "resumed: {} messages to be answered, {} handled by a human",
            resumed.batched, resumed.handled_by_human
        )
    } else {
        "not paused: nothing changed".to_owned()
    };
    let id = conversation.id();
    let outcome = recorded(store, actor, "resume", &id, None, Ok(detail)).await?;
    Ok(ActionOutcome {
        changed: resumed.changed,
        ..outcome
    })
}
