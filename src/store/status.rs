//! Where a reply batch stands: `reply_batches.status`, text checked against the
//! values below by the table's CHECK constraint (migrations 0001 and 0005).
//!
//! ```text
//! generating ──▶ sending ──▶ sent
//!      │            └──────▶ failed
//!      ├──────────────────▶ failed
//!      ├──────────────────▶ dropped
//!      └──────────────────▶ expired
//!
//! human: written finished, for messages a human agent handled during a handoff
//! ```

use std::fmt;

/// The status of a reply batch, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchStatus {
    /// Claimed, no reply committed yet: the worker is generating (or will generate
    /// again for the messages it still owns after another batch took some).
    Generating,
    /// The reply text is committed and the batch owns all its messages: its parts
    /// are being sent, and a resumed batch sends the same text.
    Sending,
    /// The platform took every part; recorded with their platform ids.
    Sent,
    /// No reply will go out: the responder refused the batch, or the platform
    /// refused a part, or either stayed unavailable past the claim limit. Its
    /// messages count as handled.
    Failed,
    /// Every one of its messages was answered by another batch before this one
    /// committed: it owns nothing and sends nothing.
    Dropped,
    /// Its messages are past the channel's reply window (the platform would refuse
    /// the reply): nothing is generated or sent. Its messages count as handled.
    Expired,
    /// Written by a resume after a handoff: its messages were a human agent's to
    /// answer. It owns them so the bot never does, and sends nothing.
    Human,
}

impl BatchStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [BatchStatus; 7] = [
        BatchStatus::Generating,
        BatchStatus::Sending,
        BatchStatus::Sent,
        BatchStatus::Failed,
        BatchStatus::Dropped,
        BatchStatus::Expired,
        BatchStatus::Human,
    ];

    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchStatus::Generating => "generating",
            BatchStatus::Sending => "sending",
            BatchStatus::Sent => "sent",
            BatchStatus::Failed => "failed",
            BatchStatus::Dropped => "dropped",
            BatchStatus::Expired => "expired",
            BatchStatus::Human => "human",
        }
    }

    /// The status stored as `text`, if it is one.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Nothing more will happen to the batch: sent, failed, dropped, expired or
    /// human.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            BatchStatus::Sent
                | BatchStatus::Failed
                | BatchStatus::Dropped
                | BatchStatus::Expired
                | BatchStatus::Human
        )
    }
}

impl fmt::Display for BatchStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for BatchStatus {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for BatchStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl sqlx::Type<sqlx::Postgres> for BatchStatus {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <String as sqlx::Type<sqlx::Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <String as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for BatchStatus {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Self::parse(text).ok_or_else(|| format!("unknown batch status {text:?}").into())
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for BatchStatus {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.as_str(), buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_reads_back_from_its_text() {
        for status in BatchStatus::ALL {
            assert_eq!(BatchStatus::parse(status.as_str()), Some(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{status}\""));
        }
        assert_eq!(BatchStatus::parse("queued"), None);
    }
}
