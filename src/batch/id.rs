//! The two names of a claimed batch. A [`ClaimToken`] is fresh for every claim and
//! is the lease: extend, requeue and ack only act for the token holding the lock.
//! A [`BatchId`] names the batch across its claims (crash resumes, supersedes,
//! hand-backs); claim.lua gives a new batch its first claim's token as its id.

use rand::Rng;
use std::fmt;

/// The id of a reply batch: its `reply_batches` row and its Redis state.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct BatchId(String);

/// The token of one claim: whoever holds the conversation's lock with it owns the
/// batch until ack or requeue.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ClaimToken(String);

impl ClaimToken {
    /// A fresh random token (128 bits, hex).
    pub fn generate() -> Self {
        Self(format!("{:032x}", rand::rng().random::<u128>()))
    }

    /// The token's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl BatchId {
    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this batch was started by the claim holding `token` (claim.lua
    /// gives a new batch its first claim's token as its id).
    pub fn started_by(&self, token: &ClaimToken) -> bool {
        self.0 == token.0
    }
}

macro_rules! text_newtype {
    ($name:ident) => {
        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }
    };
}

text_newtype!(BatchId);
text_newtype!(ClaimToken);

// Stored as the text it is (`reply_batches.id`, `conversation_messages.batch_id`).
impl sqlx::Type<sqlx::Postgres> for BatchId {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <String as sqlx::Type<sqlx::Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <String as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for BatchId {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(Self(<String as sqlx::Decode<sqlx::Postgres>>::decode(
            value,
        )?))
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for BatchId {
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
    fn a_batch_is_new_when_its_id_is_the_claims_token() {
        let token = ClaimToken::from("tok-1");
        assert!(BatchId::from("tok-1").started_by(&token));
        assert!(!BatchId::from("tok-0").started_by(&token));
    }

    #[test]
    fn fresh_tokens_are_128_bit_hex_and_differ() {
        let (a, b) = (ClaimToken::generate(), ClaimToken::generate());
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
