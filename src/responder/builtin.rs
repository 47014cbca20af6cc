//! The responder that needs no API key: a deterministic acknowledgement of the
//! whole burst, so a newcomer sees the flow end to end with `curl`.

use super::{Reply, ReplyContext, Responder, ResponderError};
use async_trait::async_trait;
use std::time::Duration;

/// Quotes every message of the batch back in one reply.
#[derive(Debug, Clone, Default)]
pub struct BuiltinResponder {
    delay: Duration,
}

impl BuiltinResponder {
    /// `delay` simulates generation time (demos and tests of slow generations).
    pub fn new(delay: Duration) -> Self {
        Self { delay }
    }
}

fn quote(text: &str) -> String {
    const MAX: usize = 200;
    let mut quoted: String = text.chars().take(MAX).collect();
    if text.chars().count() > MAX {
        quoted.push('…');
    }
    format!("“{quoted}”")
}

#[async_trait]
impl Responder for BuiltinResponder {
    async fn reply(&self, context: &ReplyContext) -> Result<Reply, ResponderError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let n = context.batch.len();
        let quoted: Vec<String> = context.batch.iter().map(|e| quote(&e.text)).collect();
        let noun = if n == 1 { "message" } else { "messages" };
        let seen = if context.history.is_empty() {
            String::new()
        } else {
            format!(
                " (we have {} earlier messages on file)",
                context.history.len()
            )
        };
        Ok(Reply::text(format!(
            "Thanks! I got your {n} {noun}: {}.{seen} Someone will get back to you shortly.",
            quoted.join(", ")
        )))
    }

    fn name(&self) -> &'static str {
        "builtin"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{ChannelKind, Conversation, Entry};

    #[tokio::test]
    async fn the_builtin_reply_quotes_every_message_of_the_burst_in_order() {
        let context = ReplyContext {
            batch_id: "b".into(),
            contact_name: None,
            attempt: 1,
            claims: 1,
            conversation: Conversation::new(ChannelKind::WhatsApp, "1", "2"),
            history: vec![],
            batch: vec![
                Entry::said(1, "hi"),
                Entry::said(2, "quick question"),
                Entry::said(3, "about my order #123"),
            ],
        };
        let reply = BuiltinResponder::default().reply(&context).await.unwrap();
        assert_eq!(
            reply,
            Reply::text(
                "Thanks! I got your 3 messages: “hi”, “quick question”, “about my order #123”. \
             Someone will get back to you shortly."
            )
        );
    }
}
