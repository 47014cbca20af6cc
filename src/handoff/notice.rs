//! HANDOFF_KEYWORDS heard: the contact asked for a person. The conversation is
//! paused and, the first time, HANDOFF_REPLY is sent through its channel and
//! recorded as the answer of that message.

use super::{Handoff, HandoffError, PauseRequest, Trigger};
use crate::batch::{AppendMode, ClaimToken};
use crate::message::{Conversation, Entry};
use crate::time::UnixMs;

impl Handoff {
    /// Whether `text` asks for a person (HANDOFF_KEYWORDS).
    pub fn asks_for_person(&self, text: &str) -> bool {
        self.keywords.matches(text)
    }

    /// The contact asked for a person with `entry`, a stored inbound message:
    /// pauses, and the first time sends HANDOFF_REPLY (in the background, so the
    /// webhook is answered at once), which answers that message.
    pub async fn keyword(
        &self,
        conversation: &Conversation,
        entry: &Entry,
    ) -> Result<bool, HandoffError> {
        let request = PauseRequest {
            by: "contact".into(),
            minutes: None,
            reason: Some(format!("asked for a person: {}", entry.text)),
            trigger: Trigger::Keyword,
        };
        let outcome = self.pause(conversation, request).await?;
        if outcome.changed {
            let this = self.clone();
            let (conversation, entry) = (conversation.clone(), entry.clone());
            tokio::spawn(async move { this.send_notice(&conversation, &entry).await });
        }
        Ok(outcome.changed)
    }

    async fn send_notice(&self, conversation: &Conversation, entry: &Entry) {
        let Some(channel) = self.channels.get(&conversation.channel) else {
            tracing::warn!("no channel to send the handoff reply through");
            return;
        };
        let text = &self.settings.reply;
        if text.is_empty() {
            return;
        }
        match channel.send_part(conversation, text).await {
            Ok(platform_id) => {
                let batch = format!("notice-{}", ClaimToken::generate().as_str());
                match self
                    .store
                    .record_notice(conversation, &batch, entry.id, &platform_id, text)
                    .await
                {
                    Ok(Some(sent)) => {
                        let now = UnixMs::now().ms();
                        let history = AppendMode::HistoryOnly;
                        if let Err(error) = self
                            .redis_batches
                            .append(conversation, &sent, history, false, now)
                            .await
                        {
                            tracing::warn!(%error, "handoff reply not added to Redis history");
                        }
                    }
                    Ok(None) => {}
                    Err(error) => tracing::warn!(%error, "handoff reply sent, not recorded"),
                }
            }
            Err(error) => tracing::warn!(%error, "handoff reply not sent"),
        }
    }
}
