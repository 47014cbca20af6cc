//! A human agent's messages, seen as echoes of what our business account sent:
//! stored as outbound rows with author `agent`, added to history (an assistant
//! turn in later contexts), and the conversation paused. Echoes of our own
//! replies change nothing.

use super::{Handoff, HandoffError, PauseRequest, Trigger};
use crate::batch::AppendMode;
use crate::channel::Echo;
use crate::message::ChannelKind;
use crate::time::UnixMs;

impl Handoff {
    /// Echoes of messages our business account sent: each a human agent's
    /// (stored as outbound, author `agent`, added to history, and the
    /// conversation paused) unless it is one of our own replies.
    pub async fn agent_messages(&self, echoes: Vec<Echo>) -> Result<usize, HandoffError> {
        let mut paused = 0;
        for echo in echoes {
            let message = &echo.message;
            let conversation = &message.conversation;
            if !self.is_agents(&echo).await? {
                tracing::debug!(
                    channel = conversation.channel.as_str(),
                    message_id = %message.external_id,
                    "echo of our own reply"
                );
                continue;
            }
            let sent_at = UnixMs(message.timestamp_ms);
            match self.store.insert_agent_message(message).await? {
                Some(entry) => {
                    // History only (an outbound entry): the LLM sees it as an
                    // assistant turn.
                    let now = UnixMs::now().ms();
                    if let Err(error) = self
                        .redis_batches
                        .append(conversation, &entry, AppendMode::HistoryOnly, false, now)
                        .await
                    {
                        tracing::warn!(%error, "agent message not added to Redis history");
                    }
                }
                // A platform retry: its first delivery may have failed before the
                // pause. Pause again unless the conversation was resumed after the
                // message (the retry must not undo an operator's resume).
                None => {
                    let record = self.store.mode(conversation).await?;
                    let settled = record.as_ref().is_some_and(|r| {
                        r.is_human() || r.resumed_at.is_some_and(|at| at >= sent_at.timestamp())
                    });
                    if settled {
                        continue;
                    }
                }
            }
            let request = PauseRequest {
                by: "agent".into(),
                minutes: None,
                reason: None,
                trigger: Trigger::Agent,
            };
            self.pause_at(conversation, request, Some(sent_at)).await?;
            paused += 1;
        }
        Ok(paused)
    }

    /// Whether an echo is a human agent's message rather than one of our replies.
    /// WhatsApp's `smb_message_echoes` carry only what the WhatsApp Business app
    /// sent, never the Cloud API's sends: always an agent's. An Instagram echo is
    /// ours when its `app_id` is INSTAGRAM_APP_ID, or it names no app and that is
    /// unset (it cannot be told apart), or its id is a reply we recorded or may
    /// be sending right now.
    async fn is_agents(&self, echo: &Echo) -> Result<bool, HandoffError> {
        let message = &echo.message;
        if message.conversation.channel != ChannelKind::Instagram {
            return Ok(true);
        }
        let ours = self.settings.instagram_app_id.as_deref();
        match (echo.app_id.as_deref(), ours) {
            (Some(app), Some(ours)) if app == ours => return Ok(false),
            (None, None) => return Ok(false),
            _ => {}
        }
        Ok(!self
            .store
            .is_our_reply(&message.conversation, &message.external_id)
            .await?)
    }
}
