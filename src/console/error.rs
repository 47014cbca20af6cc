//! What a console request can fail with; the HTTP status of each is chosen in one
//! place (`http::admin::api::status_of`), the CLI's exit code by `is_not_found`.

use crate::batch::BatchError;
use crate::store::StoreError;

/// Why a console view or action did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// Neither PostgreSQL nor Redis knows the conversation.
    #[error("unknown conversation {0}")]
    UnknownConversation(String),
    /// No reply batch has this id.
    #[error("unknown batch {0}")]
    UnknownBatch(String),
    /// The action does not apply to the conversation or batch as it is.
    #[error("{0}")]
    NotApplicable(String),
    /// The request itself is malformed (a bad conversation name, a bad number).
    #[error("{0}")]
    BadRequest(String),
    /// PostgreSQL failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Redis failed.
    #[error(transparent)]
    Redis(#[from] BatchError),
}

impl ConsoleError {
    /// The conversation or batch named does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            ConsoleError::UnknownConversation(_) | ConsoleError::UnknownBatch(_)
        )
    }
}
