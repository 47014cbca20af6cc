//! WhatsApp and Instagram refuse a reply more than 24 h after the person's last
//! message (Graph error 131047 and its Instagram twin). After a long outage, a
//! batch whose newest message is past that window is closed as `expired`: nothing
//! is generated (no LLM call to pay for) and nothing sent, and its messages count
//! as handled.

use super::claimed::ClaimedBatch;
use super::{BatchOutcome, Worker};
use crate::message::{ChannelKind, Direction};
use crate::time::UnixMs;
use std::time::Duration;

impl Worker {
    /// How long ago the person's last message of the batch was, when that is past
    /// its channel's reply window.
    pub(super) fn past_reply_window(&self, batch: &ClaimedBatch) -> Option<Duration> {
        let window = match batch.conversation.channel {
            ChannelKind::WhatsApp | ChannelKind::Instagram => self.settings.reply_window?,
            ChannelKind::Telegram => return None,
        };
        let last = batch
            .entries
            .iter()
            .filter(|e| e.dir == Direction::Inbound)
            .map(|e| e.ts)
            .max()?;
        let age = Duration::from_millis(UnixMs::now().ms().saturating_sub(last).max(0) as u64);
        (age > window).then_some(age)
    }

    /// Records the batch `expired` (its claim first, when it is new) and acks it.
    pub(super) async fn expire(
        &self,
        batch: &ClaimedBatch,
        recorded: bool,
        age: Duration,
    ) -> BatchOutcome {
        if !recorded && !self.record_claim(batch).await {
            // Not recorded: its messages would stay unowned and come back. Keep the
            // batch in flight; its lease runs out and it is claimed (and expired) again.
            return BatchOutcome::Retry;
        }
        let hours = age.as_secs_f64() / 3600.0;
        let reason = format!("reply window closed: the person's last message is {hours:.1} h old");
        if let Err(error) = self.store.mark_expired(&batch.id, &reason).await {
            tracing::warn!(%error, "expired batch not recorded; tried again when its lease runs out");
            return BatchOutcome::Retry;
        }
        self.ack(batch, &[]).await;
        let channel = batch.conversation.channel.as_str();
        self.metrics
            .inc("lull_batches_expired_total", &[("channel", channel)]);
        tracing::warn!(
            age_hours = hours,
            "batch expired: past the reply window, not answered"
        );
        BatchOutcome::Expired {
            batch_id: batch.id.clone(),
        }
    }
}
