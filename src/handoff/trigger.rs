//! What paused or resumed a conversation: the `trigger` label of the handoff
//! metrics and log lines, and the record in `conversation_modes`.

use std::fmt;

/// What paused or resumed a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// A human agent's message, seen as an echo.
    Agent,
    /// An operator: admin API, console or CLI.
    Operator,
    /// The contact asked for a person (HANDOFF_KEYWORDS).
    Keyword,
    /// The responder asked for it (`handoff: true` in its reply).
    Responder,
    /// HANDOFF_IDLE_MINUTES passed (resume), or an operator's minutes ran out.
    Idle,
}

impl Trigger {
    /// The label and stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Agent => "agent",
            Trigger::Operator => "operator",
            Trigger::Keyword => "keyword",
            Trigger::Responder => "responder",
            Trigger::Idle => "idle",
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
