//! The generate stage: the reply's context, then the responder's reply while the
//! lease heartbeat watches for new messages (supersede), a lost lease, or the
//! shutdown's hand-back. Dropping the generation (any of those) drops the
//! responder's request with it. Asking, and what a failure does, is `ask.rs`.

use super::ask::Generated;
use super::claimed::ClaimedBatch;
use super::finish::GiveBack;
use super::{BatchOutcome, Lease, SUPERSEDE_POLL, Stage, Worker};
use crate::message::{Direction, Entry};
use crate::responder::ReplyContext;
use crate::time::UnixMs;
use std::collections::HashSet;
use std::ops::ControlFlow;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a new batch generates before its claim is written on its own, so
/// that a slow responder shows as `generating`; a faster reply writes the claim
/// with its commit.
const SHOW_GENERATING_AFTER: Duration = Duration::from_millis(200);

/// Why generation stopped before the reply was ready.
enum Interruption {
    /// Another worker holds the lease now.
    Lost,
    /// New messages (supersede) or the shutdown: give the batch back.
    GiveBack(GiveBack),
}

impl Worker {
    /// Generates the reply for the batch's messages. `recorded`: its claim is in
    /// the database already (a resumed batch); a new one's is written here only if
    /// generating takes [`SHOW_GENERATING_AFTER`], or if it fails.
    pub(super) async fn generate(
        &self,
        batch: &ClaimedBatch,
        lease: &mut Lease,
        recorded: bool,
        hand_back: &CancellationToken,
    ) -> Stage<Generated> {
        let mut recorded = recorded;
        let context = self.context(batch, &batch.entries).await;
        let generation = self.ask_responder(&context);
        tokio::pin!(generation);
        let show_generating = tokio::time::sleep(SHOW_GENERATING_AFTER);
        tokio::pin!(show_generating);
        let mut shown = false;
        let reply = loop {
            tokio::select! {
                reply = &mut generation => break reply,
                why = self.interrupted(lease, batch, hand_back) => {
                    return ControlFlow::Break(match why {
                        Interruption::Lost => {
                            tracing::warn!("lease lost to another worker; stopping without sending");
                            BatchOutcome::Lost
                        }
                        Interruption::GiveBack(why) => self.give_back(batch, why).await,
                    });
                }
                _ = &mut show_generating, if !recorded && !shown => {
                    shown = true;
                    recorded = self.record_claim(batch).await;
                }
            }
        };
        match reply {
            Ok(generated) => ControlFlow::Continue(generated),
            Err(error) => {
                if !recorded {
                    self.record_claim(batch).await;
                }
                ControlFlow::Break(self.not_generated(batch, error, hand_back).await)
            }
        }
    }

    /// Writes a new batch's claim before its commit (see [`SHOW_GENERATING_AFTER`]);
    /// false (logged) when the database refused: the commit writes it then.
    pub(super) async fn record_claim(&self, batch: &ClaimedBatch) -> bool {
        match self.store.open_batch(batch.record()).await {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(%error, "claim not recorded yet; the commit records it");
                false
            }
        }
    }

    /// Whether new messages may still supersede the batch: supersede is on, the
    /// batch has not been superseded too often, and it is within its max wait.
    pub(super) fn may_supersede(&self, batch: &ClaimedBatch) -> bool {
        self.settings.supersede
            && batch.supersedes < self.settings.max_supersedes
            && UnixMs::now() < batch.started_at + self.settings.max_wait
    }

    /// Resolves when generation must stop: lease lost, superseded, or hand-back.
    async fn interrupted(
        &self,
        lease: &mut Lease,
        batch: &ClaimedBatch,
        hand_back: &CancellationToken,
    ) -> Interruption {
        let mut state = lease.current();
        let mut poll = tokio::time::interval(SUPERSEDE_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if !state.held {
                return Interruption::Lost;
            }
            if state.pending > 0 && self.may_supersede(batch) {
                return Interruption::GiveBack(GiveBack::Superseded);
            }
            tokio::select! {
                next = lease.changed() => state = next,
                _ = hand_back.cancelled() => return Interruption::GiveBack(GiveBack::HandedBack),
                // Between heartbeats (a third of the lease), a cheap look at the
                // collecting list: a new message cancels the generation at once.
                _ = poll.tick(), if self.may_supersede(batch) => {
                    match self.redis_batches.pending(&batch.keys).await {
                        Ok(pending) if pending > 0 => {
                            return Interruption::GiveBack(GiveBack::Superseded);
                        }
                        Ok(_) => {}
                        Err(error) => tracing::debug!(%error, "pending messages not read"),
                    }
                }
            }
        }
    }

    /// The contact's profile name when the responder passes it on; a failed read
    /// leaves it out (the reply is still worth writing).
    async fn contact_name(&self, batch: &ClaimedBatch) -> Option<String> {
        if !self.responder.wants_contact_name() {
            return None;
        }
        match self.store.contact_name(&batch.conversation).await {
            Ok(name) => name,
            Err(error) => {
                tracing::warn!(%error, "contact name not read; the bot gets none");
                None
            }
        }
    }

    /// The context of a reply to `entries` (the batch's messages, or those of
    /// them it still owns): the earlier exchange, then the messages.
    pub(super) async fn context(&self, batch: &ClaimedBatch, entries: &[Entry]) -> ReplyContext {
        let in_batch: HashSet<i64> = entries.iter().map(|e| e.id).collect();
        // Messages that arrived after this batch's (a higher database id: ids follow
        // arrival) wait for the next batch, e.g. when a resumed batch leaves them in
        // their window: not this reply's to answer, so not in its context. A late
        // message answered now keeps the earlier exchange, which arrived before it.
        let newest = entries.iter().map(|e| e.id).max().unwrap_or(i64::MAX);
        let earlier = |e: &Entry| {
            let waiting = e.dir == Direction::Inbound && e.id > newest;
            !in_batch.contains(&e.id) && !waiting
        };
        // claim.lua returned Redis's history with the batch: no second round trip.
        // None came when the history is missing or not hydrated yet (append.lua).
        let history = if batch.history.is_empty() {
            let limit = self.redis_batches.policy().history_limit;
            let mut stored = match self.store.recent_history(&batch.conversation, limit).await {
                Ok(stored) => stored,
                // The reply is still worth writing; without the earlier exchange.
                Err(error) => {
                    tracing::warn!(%error, "history not read; replying without it");
                    Vec::new()
                }
            };
            stored.retain(earlier);
            stored
        } else {
            batch
                .history
                .iter()
                .filter(|e| earlier(e))
                .cloned()
                .collect()
        };
        ReplyContext {
            batch_id: batch.id.as_str().to_owned(),
            attempt: 1,
            claims: batch.claims,
            conversation: batch.conversation.clone(),
            history: newest_within(history, self.settings.history_chars),
            batch: entries.to_vec(),
            contact_name: self.contact_name(batch).await,
        }
    }
}

/// The newest entries of `history` whose texts hold at most `chars` characters in
/// all. Up to HISTORY_LIMIT messages of any length would otherwise go to the
/// responder: a conversation with long messages would outgrow a small model's
/// context, and every later batch would fail the same way (a refused request is
/// permanent). The batch itself is never cut.
fn newest_within(mut history: Vec<Entry>, chars: usize) -> Vec<Entry> {
    let mut total = 0;
    let kept = history
        .iter()
        .rev()
        .take_while(|e| {
            total += e.text.chars().count();
            total <= chars
        })
        .count();
    history.drain(..history.len() - kept);
    history
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_its_newest_messages_within_the_character_budget() {
        let history = vec![
            Entry::said(1, "aaaa"),
            Entry::said(2, "bbb"),
            Entry::said(3, "cc"),
            Entry::said(4, "d"),
        ];
        let ids = |h: Vec<Entry>| h.iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(ids(newest_within(history.clone(), 10)), [1, 2, 3, 4]);
        assert_eq!(ids(newest_within(history.clone(), 9)), [2, 3, 4]);
        assert_eq!(ids(newest_within(history.clone(), 6)), [2, 3, 4]);
        assert_eq!(ids(newest_within(history.clone(), 5)), [3, 4]);
        assert_eq!(ids(newest_within(history, 0)), Vec::<i64>::new());
    }

    #[test]
    fn one_message_longer_than_the_budget_ends_the_history_there() {
        let history = vec![
            Entry::said(1, "old"),
            Entry::said(2, &"x".repeat(50)),
            Entry::said(3, "new"),
        ];
        let kept = newest_within(history, 20);
        assert_eq!(kept.iter().map(|e| e.id).collect::<Vec<_>>(), [3]);
    }
}
