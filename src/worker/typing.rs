//! The typing indicator: the batch's last message is marked read and the typing
//! indicator shown while the reply is generated, renewed before the platform
//! clears it (each channel's [`Channel::typing_renewal`], or the worker's
//! override), and no longer once the reply is ready or the batch is dropped.
//!
//! [`Channel::typing_renewal`]: crate::channel::Channel::typing_renewal

use super::Worker;
use super::claimed::ClaimedBatch;
use crate::message::Direction;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::Instrument;

/// How long a reply waits for its typing request to be answered (see
/// [`answered`]).
const TYPING_WAIT: Duration = Duration::from_secs(1);

/// The indicator shown for one batch: its renewals stop when this is dropped
/// (the batch superseded, handed back or lost) or [`answered`] (the reply is
/// about to go out).
pub(super) struct Typing {
    /// Fires once the first request (read mark and typing) has been answered.
    shown: Option<oneshot::Receiver<()>>,
    /// The first request, then the renewals.
    task: JoinHandle<()>,
}

impl Drop for Typing {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Worker {
    /// Marks the batch's last message read and shows the typing indicator, then
    /// renews it while generation runs; the reply waits for the first request (see
    /// [`answered`]). `None` when the indicator is off or the batch has no inbound
    /// message.
    pub(super) fn show_typing(&self, batch: &ClaimedBatch) -> Option<Typing> {
        if !self.settings.typing_indicator {
            return None;
        }
        let last = batch
            .entries
            .iter()
            .rev()
            .find(|e| e.dir == Direction::Inbound)?;
        let (channel, conversation, message_id) = (
            batch.channel.clone(),
            batch.conversation.clone(),
            last.external_id.clone(),
        );
        let every = self
            .settings
            .typing_renewal
            .unwrap_or_else(|| channel.typing_renewal());
        let (tx, shown) = oneshot::channel();
        // Best effort: never fails the batch.
        let task = tokio::spawn(
            async move {
                if let Err(error) = channel.mark_read_typing(&conversation, &message_id).await {
                    tracing::debug!(%error, "typing indicator not shown");
                }
                let _ = tx.send(());
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(error) = channel.renew_typing(&conversation, &message_id).await {
                        tracing::debug!(%error, "typing indicator not renewed");
                    }
                }
            }
            .in_current_span(),
        );
        Some(Typing {
            shown: Some(shown),
            task,
        })
    }
}

/// Waits until the platform has answered the first typing request, for at most
/// [`TYPING_WAIT`], then stops the renewals. The platforms dismiss the indicator
/// when a reply arrives, so one that lands after the reply stays on under it
/// (WhatsApp: 25 s, Instagram: 20 s, Telegram: 5 s), and a fast responder's reply
/// is often ready before the request is answered. One still unanswered then is
/// cancelled rather than holding the reply longer (it may land late all the same:
/// rare, and the platform is slow then anyway).
pub(super) async fn answered(mut typing: Typing) {
    let Some(shown) = typing.shown.take() else {
        return;
    };
    if tokio::time::timeout(TYPING_WAIT, shown).await.is_err() {
        tracing::debug!(
            wait_ms = TYPING_WAIT.as_millis() as u64,
            "typing request unanswered; cancelled, the reply goes out"
        );
    }
    drop(typing);
}
