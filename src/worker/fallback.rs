//! FALLBACK_REPLY: when a batch fails for good because its responder refused it
//! (or stayed unavailable past its claims), the person still gets an answer. It
//! is sent after the failure is recorded, so a crash cannot send it twice: a
//! resumed batch finds itself failed and only acknowledges. It stays out of the
//! conversation's history (a canned text, not the responder's words) and is
//! recorded on the batch as `fallback`.

use super::claimed::ClaimedBatch;
use super::{SendResult, Worker, send_with_retries};
use crate::responder::ReplyMessage;
use tokio_util::sync::CancellationToken;

impl Worker {
    /// Sends FALLBACK_REPLY, when set, for a batch that just failed; logged and
    /// counted.
    pub(super) async fn send_fallback(&self, batch: &ClaimedBatch, hand_back: &CancellationToken) {
        let Some(text) = &self.settings.fallback_reply else {
            return;
        };
        let mut platform_ids = Vec::new();
        let mut attempts = 0;
        let fallback = ReplyMessage::Text { text: text.clone() };
        for part in batch.channel.render(&fallback) {
            match send_with_retries(
                batch.channel.as_ref(),
                &batch.conversation,
                &part,
                &self.settings.retry,
                hand_back,
                |_, _| {},
            )
            .await
            {
                SendResult::Sent { id, attempts: made } => {
                    attempts += made;
                    platform_ids.push(id);
                }
                SendResult::Failed {
                    attempts: made,
                    error,
                }
                | SendResult::Deferred {
                    attempts: made,
                    error,
                    ..
                } => {
                    attempts += made;
                    tracing::error!(
                        code = error.code(),
                        error = error.message(),
                        "fallback reply not sent"
                    );
                    break;
                }
                SendResult::Interrupted { attempts: made } => {
                    attempts += made;
                    tracing::warn!("fallback reply interrupted by the shutdown");
                    break;
                }
            }
        }
        if platform_ids.is_empty() {
            return;
        }
        self.metrics.inc("lull_fallback_replies_total", &[]);
        tracing::info!(parts = platform_ids.len(), "fallback reply sent");
        if let Err(error) = self
            .store
            .record_fallback(&batch.id, attempts, &platform_ids)
            .await
        {
            tracing::error!(%error, "fallback reply sent but not recorded");
        }
    }
}
