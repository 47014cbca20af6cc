//! The commit stage: a last look in Redis before the reply becomes visible (new
//! messages supersede it), then `begin_sending_reply` makes the reply's messages
//! the answer of the batch's messages in PostgreSQL, unless another batch answered
//! them first. The batch also takes its conversation's older messages nobody owns
//! (lost by Redis, or kept from it by a crash): then, as when another batch took
//! some of its messages, the reply is generated again for exactly what it owns,
//! and committed again, a bounded number of rounds (docs/design.md, invariant 14).
//! A reply of no messages is committed as an empty text: its messages are
//! answered, and nothing is sent. What generating it took is recorded with it.
//! A batch with an older one of its conversation unfinished commits nothing and
//! waits behind it (`behind.rs`).

use super::ask::Generated;
use super::claimed::ClaimedBatch;
use super::finish::GiveBack;
use super::{BatchOutcome, Stage, Worker};
use crate::message::Entry;
use crate::store::CommitOutcome;
use crate::time::UnixMs;
use std::collections::HashSet;
use std::ops::ControlFlow;
use tokio_util::sync::CancellationToken;

/// Commits of one claim before it is left to its lease: each round after the
/// first generates the reply again because what the batch owns changed (older
/// messages taken, or some of its own answered elsewhere). Each round needs a new
/// fault between the two commits, so a third one is already far-fetched.
const COMMIT_ROUNDS: usize = 3;

/// A reply committed as the answer of exactly `answers`.
pub(super) struct CommittedReply {
    /// The reply, and what generating it took.
    pub generated: Generated,
    /// Messages it answers that the claim did not carry: older ones nobody owned,
    /// taken at commit. They join Redis's history with the reply, and leave any
    /// batch collecting there.
    pub taken: Vec<Entry>,
}

impl Worker {
    /// Commits the generated reply as the batch's; continues with the reply to
    /// send (a new one if what the batch owns changed at commit).
    pub(super) async fn commit(
        &self,
        batch: &ClaimedBatch,
        generated: Generated,
        hand_back: &CancellationToken,
    ) -> Stage<CommittedReply> {
        let committed = self.commit_text(batch, generated, hand_back).await?;
        if let Err(error) = self
            .store
            .record_generation(&batch.id, &committed.generated.generation)
            .await
        {
            tracing::warn!(%error, "usage of the reply not recorded");
        }
        ControlFlow::Continue(committed)
    }

    /// `begin_sending_reply` with the reply's messages; while the batch comes to
    /// own other messages than the reply answers (older ones taken, some of its
    /// own answered elsewhere), the reply is generated again for those it owns and
    /// committed again, up to [`COMMIT_ROUNDS`] commits.
    async fn commit_text(
        &self,
        batch: &ClaimedBatch,
        generated: Generated,
        hand_back: &CancellationToken,
    ) -> Stage<CommittedReply> {
        self.last_look(batch).await?;
        let record = batch.record();
        let (mut generated, mut answers) = (generated, batch.entries.clone());
        let mut round = 0;
        loop {
            round += 1;
            let ids: Vec<i64> = answers.iter().map(|e| e.id).collect();
            let owned = match self
                .store
                .begin_sending_reply(&record, &ids, &generated.reply)
                .await
            {
                Ok(CommitOutcome::Owns(owned)) => owned,
                Ok(CommitOutcome::Behind(older)) => {
                    // Answered first, or finished meanwhile: then commit again.
                    self.behind(batch, &older).await?;
                    if round == COMMIT_ROUNDS {
                        return ControlFlow::Break(BatchOutcome::Retry);
                    }
                    continue;
                }
                Err(error) => {
                    tracing::error!(%error, "database unavailable before sending; batch kept for a later claim");
                    return ControlFlow::Break(BatchOutcome::Retry);
                }
            };
            if owned.is_empty() {
                return ControlFlow::Break(self.owns_nothing(batch).await);
            }
            let wanted: HashSet<i64> = ids.iter().copied().collect();
            let taken = owned.iter().filter(|id| !wanted.contains(id)).count();
            let lost = ids.len() - (owned.len() - taken);
            if taken == 0 && lost == 0 {
                let claimed: HashSet<i64> = batch.entries.iter().map(|e| e.id).collect();
                answers.retain(|e| !claimed.contains(&e.id));
                return ControlFlow::Continue(CommittedReply {
                    generated,
                    taken: answers,
                });
            }
            if round == COMMIT_ROUNDS {
                // Faults keep changing what it owns: the lease runs out and the
                // next claim starts over from what the database says.
                tracing::warn!(
                    rounds = round,
                    "what the batch owns kept changing; left for a later claim"
                );
                return ControlFlow::Break(BatchOutcome::Retry);
            }
            // The text quotes what it was asked about: generate it again for what
            // the batch owns, or a message would be in two replies, or answered
            // after a later one (the reconciler's reply comes later).
            tracing::warn!(
                older_taken = taken,
                answered_elsewhere = lost,
                "the batch owns other messages than its reply answers; reply generated again for them"
            );
            answers = match self.owned_entries(answers, &owned).await {
                Some(entries) => entries,
                None => return ControlFlow::Break(BatchOutcome::Retry),
            };
            let context = self.context(batch, &answers).await;
            let reply = tokio::select! {
                reply = self.ask_responder(&context) => reply,
                _ = hand_back.cancelled() => {
                    return ControlFlow::Break(self.give_back(batch, GiveBack::HandedBack).await);
                }
            };
            generated = match reply {
                Ok(generated) => generated,
                Err(error) => {
                    return ControlFlow::Break(self.not_generated(batch, error, hand_back).await);
                }
            };
        }
    }

    /// The entries of `owned`, in platform order: those of `known` it owns, and
    /// the rest (older messages taken at commit) read from PostgreSQL. `None`
    /// (logged) when the database cannot say.
    async fn owned_entries(&self, known: Vec<Entry>, owned: &[i64]) -> Option<Vec<Entry>> {
        let owned_ids: HashSet<i64> = owned.iter().copied().collect();
        let mut entries: Vec<Entry> = known
            .into_iter()
            .filter(|e| owned_ids.contains(&e.id))
            .collect();
        let have: HashSet<i64> = entries.iter().map(|e| e.id).collect();
        let missing: Vec<i64> = owned
            .iter()
            .copied()
            .filter(|id| !have.contains(id))
            .collect();
        if !missing.is_empty() {
            match self.store.entries(&missing).await {
                Ok(read) => entries.extend(read),
                Err(error) => {
                    tracing::error!(%error, "database unavailable before sending; batch kept for a later claim");
                    return None;
                }
            }
        }
        entries.sort_by_key(|e| (e.ts, e.id));
        Some(entries)
    }

    /// The batch owns none of its messages: answered elsewhere, or a human agent
    /// has the conversation (PostgreSQL's guard, which holds even when Redis lost
    /// the pause). Acknowledged without sending.
    async fn owns_nothing(&self, batch: &ClaimedBatch) -> BatchOutcome {
        let paused = matches!(
            self.store.mode(&batch.conversation).await,
            Ok(Some(record)) if record.is_human()
        );
        self.ack(batch, &[]).await;
        if paused {
            tracing::info!("conversation paused for a human agent; reply dropped unsent");
            return BatchOutcome::Paused;
        }
        tracing::warn!("every message of this batch was answered by another batch; nothing sent");
        BatchOutcome::AlreadyAnswered
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
