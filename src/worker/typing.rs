//! The typing indicator: the batch's last message is marked read and the typing
//! indicator shown while the reply is generated; the reply waits for the request.

use super::Worker;
use super::claimed::ClaimedBatch;
use crate::message::Direction;
use std::time::Duration;
use tokio::task::JoinHandle;
use tracing::Instrument;

/// How long a reply waits for its typing request to be answered (see
/// [`answered`]).
const TYPING_WAIT: Duration = Duration::from_secs(1);

impl Worker {
    /// Marks the batch's last message read and shows the typing indicator, while
    /// generation runs; the reply waits for it (see [`answered`]). `None` when
    /// the indicator is off or the batch has no inbound message.
    pub(super) fn show_typing(&self, batch: &ClaimedBatch) -> Option<JoinHandle<()>> {
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
        // Best effort: never fails the batch.
        let typing = tokio::spawn(
            async move {
                if let Err(error) = channel.mark_read_typing(&conversation, &message_id).await {
                    tracing::debug!(%error, "typing indicator not shown");
                }
            }
            .in_current_span(),
        );
        Some(typing)
    }
}

/// Waits until the platform has answered the typing request, for at most
/// [`TYPING_WAIT`]. The platforms dismiss the indicator when a reply arrives, so
/// one that lands after the reply stays on under it (WhatsApp: 25 s, Instagram:
/// 20 s, Telegram: 5 s), and a fast responder's reply is often ready before the
/// request is answered. One still unanswered then is cancelled rather than
/// holding the reply longer (it may land late all the same: rare, and the platform
/// is slow then anyway).
pub(super) async fn answered(typing: JoinHandle<()>) {
    let cancel = typing.abort_handle();
    if tokio::time::timeout(TYPING_WAIT, typing).await.is_err() {
        cancel.abort();
        tracing::debug!(
            wait_ms = TYPING_WAIT.as_millis() as u64,
            "typing request unanswered; cancelled, the reply goes out"
        );
    }
}
