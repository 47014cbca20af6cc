//! The commit stage: a last look in Redis before the reply becomes visible (new
//! messages supersede it), then `begin_sending_reply` makes the reply's messages
//! the answer of the batch's messages in PostgreSQL, unless another batch answered
//! them first. A reply of no messages is committed as an empty text: its messages
//! are answered, and nothing is sent. What generating it took is recorded with it.

use super::ask::Generated;
use super::claimed::ClaimedBatch;
use super::finish::GiveBack;
use super::{BatchOutcome, Stage, Worker};
use crate::time::UnixMs;
use std::ops::ControlFlow;
use tokio_util::sync::CancellationToken;

impl Worker {
    /// Commits the generated reply as the batch's; continues with the reply to
    /// send (a new one if another batch answered some of the messages meanwhile).
    pub(super) async fn commit(
        &self,
        batch: &ClaimedBatch,
        generated: Generated,
        hand_back: &CancellationToken,
    ) -> Stage<Generated> {
        let committed = self.commit_text(batch, generated, hand_back).await?;
        if let Err(error) = self
            .store
            .record_generation(&batch.id, &committed.generation)
            .await
        {
            tracing::warn!(%error, "usage of the reply not recorded");
        }
        ControlFlow::Continue(committed)
    }

    /// `begin_sending_reply` with the reply's messages, generated again for the batch's own
    /// messages when another batch answered some of them.
    async fn commit_text(
        &self,
        batch: &ClaimedBatch,
        generated: Generated,
        hand_back: &CancellationToken,
    ) -> Stage<Generated> {
        self.last_look(batch).await?;
        let record = batch.record();
        let ids = &record.message_ids;
        let owned = match self
            .store
            .begin_sending_reply(&record, ids, &generated.reply)
            .await
        {
            Ok(owned) => owned,
            Err(error) => {
                tracing::error!(%error, "database unavailable before sending; batch kept for a later claim");
                return ControlFlow::Break(BatchOutcome::Retry);
            }
        };
        if owned.is_empty() {
            // Owning none: answered elsewhere, or a human agent has the conversation
            // (PostgreSQL's guard, which holds even when Redis lost the pause).
            let paused = matches!(
                self.store.mode(&batch.conversation).await,
                Ok(Some(record)) if record.is_human()
            );
            self.ack(batch, &[]).await;
            if paused {
                tracing::info!("conversation paused for a human agent; reply dropped unsent");
                return ControlFlow::Break(BatchOutcome::Paused);
            }
            tracing::warn!(
                "every message of this batch was answered by another batch; nothing sent"
            );
            return ControlFlow::Break(BatchOutcome::AlreadyAnswered);
        }
        if owned.len() == ids.len() {
            return ControlFlow::Continue(generated);
        }
        // Another batch answered some of them meanwhile (the reconciler read them
        // as unanswered just before that batch was sent, and batched them again).
        // The text quotes them: generate it again for this batch's own messages,
        // or they would be in two replies.
        tracing::warn!(
            answered_elsewhere = ids.len() - owned.len(),
            "some messages of this batch were answered by another batch; reply generated again without them"
        );
        let own: Vec<_> = batch
            .entries
            .iter()
            .filter(|e| owned.contains(&e.id))
            .cloned()
            .collect();
        let context = self.context(batch, &own).await;
        let reply = tokio::select! {
            reply = self.ask_responder(&context) => reply,
            _ = hand_back.cancelled() => {
                return ControlFlow::Break(self.give_back(batch, GiveBack::HandedBack).await);
            }
        };
        let generated = match reply {
            Ok(generated) => generated,
            Err(error) => {
                return ControlFlow::Break(self.not_generated(batch, error, hand_back).await);
            }
        };
        match self
            .store
            .begin_sending_reply(&record, &owned, &generated.reply)
            .await
        {
            Ok(again) if again.len() == owned.len() => ControlFlow::Continue(generated),
            // Answered elsewhere once more: the lease runs out and the next
            // claim starts over from what the database says.
            Ok(_) => ControlFlow::Break(BatchOutcome::Retry),
            Err(error) => {
                tracing::error!(%error, "database unavailable before sending; batch kept for a later claim");
                ControlFlow::Break(BatchOutcome::Retry)
            }
        }
    }

    /// Last look before the reply becomes visible: the lease must still be ours,
    /// the conversation not paused for a human, and new messages supersede the
    /// reply while they may.
    async fn last_look(&self, batch: &ClaimedBatch) -> Stage<()> {
        match self
            .redis_batches
            .extend(&batch.keys, &batch.token, UnixMs::now())
            .await
        {
            Ok(state) if !state.held => ControlFlow::Break(BatchOutcome::Lost),
            Ok(state) if state.paused => {
                // A human agent has the conversation now: the reply is not sent, and
                // the batch's messages are left to them (a resume decides which the
                // bot still answers).
                tracing::info!("conversation paused for a human agent; reply dropped unsent");
                self.ack(batch, &[]).await;
                ControlFlow::Break(BatchOutcome::Paused)
            }
            Ok(state) if state.pending > 0 && self.may_supersede(batch) => {
                ControlFlow::Break(self.give_back(batch, GiveBack::Superseded).await)
            }
            Ok(_) => ControlFlow::Continue(()),
            Err(error) => {
                tracing::warn!(%error, "Redis unavailable before sending; batch kept for a later claim");
                ControlFlow::Break(BatchOutcome::Retry)
            }
        }
    }
}
