//! Queries on `conversation_messages`.

use super::{Store, StoreError, timestamp};
use crate::message::{ChannelKind, Conversation, Direction, Entry, InboundMessage, MessageKind};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::time::Duration;

#[derive(sqlx::FromRow)]
pub(super) struct EntryRow {
    id: i64,
    platform_timestamp: DateTime<Utc>,
    direction: String,
    message_type: String,
    /// The platform's message id (column `external_message_id`).
    #[sqlx(rename = "external_message_id")]
    external_id: String,
    text: String,
}

impl From<EntryRow> for Entry {
    fn from(row: EntryRow) -> Self {
        Entry {
            id: row.id,
            ts: row.platform_timestamp.timestamp_millis(),
            dir: if row.direction == "out" {
                Direction::Outbound
            } else {
                Direction::Inbound
            },
            kind: MessageKind::parse(&row.message_type),
            external_id: row.external_id,
            text: row.text,
        }
    }
}

/// A stored inbound message nobody answered, for the reconciler.
#[derive(Debug, Clone)]
pub struct Unanswered {
    /// Its conversation.
    pub conversation: Conversation,
    /// The message.
    pub entry: Entry,
}

#[derive(sqlx::FromRow)]
struct UnansweredRow {
    channel: String,
    account_id: String,
    contact_id: String,
    #[sqlx(flatten)]
    entry: EntryRow,
}

#[derive(sqlx::FromRow)]
struct InsertedRow {
    channel: String,
    #[sqlx(flatten)]
    entry: EntryRow,
}

/// Inserts the messages of many webhooks in one statement (the inbound group's
/// flush). Each webhook gets its messages back in input order: a new row as its
/// entry, a duplicate as `None`.
///
/// A row is new only at the first position that carries its (channel, external
/// id): rows go in in input order (`ORDER BY n`), so a later copy in the same
/// statement, like a copy already stored, is skipped by `ON CONFLICT`.
pub(super) async fn insert_groups(
    pool: sqlx::PgPool,
    webhooks: std::sync::Arc<[super::InboundRows]>,
) -> Result<Vec<Vec<Option<Entry>>>, StoreError> {
    let messages = || webhooks.iter().flat_map(|w| w.iter()).map(|(m, _)| m);
    let column = |f: fn(&InboundMessage) -> &str| messages().map(f).collect::<Vec<_>>();
    let answerable: Vec<bool> = webhooks
        .iter()
        .flat_map(|w| w.iter())
        .map(|(_, a)| *a)
        .collect();
    let ts: Vec<DateTime<Utc>> = messages().map(|m| timestamp(m.timestamp_ms)).collect();
    let payload: Vec<&serde_json::Value> = messages().map(|m| &m.payload).collect();
    let rows: Vec<InsertedRow> = sqlx::query_as(
        "INSERT INTO conversation_messages
             (channel, account_id, contact_id, external_message_id, direction, message_type,
              text, answerable, platform_timestamp, webhook_payload, contact_name)
         SELECT c, a, ct, e, 'in', k, t, ans, ts, p, nm
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::bool[], $8::timestamptz[], $9::jsonb[], $10::text[])
              WITH ORDINALITY AS u(c, a, ct, e, k, t, ans, ts, p, nm, n)
         ORDER BY n
         ON CONFLICT (channel, external_message_id) DO NOTHING
         RETURNING channel, id, platform_timestamp, direction, message_type,
                   external_message_id, text",
    )
    .bind(column(|m| m.conversation.channel.as_str()))
    .bind(column(|m| &m.conversation.account))
    .bind(column(|m| &m.conversation.contact))
    .bind(column(|m| &m.external_id))
    .bind(column(|m| m.kind.as_str()))
    .bind(column(|m| &m.text))
    .bind(&answerable)
    .bind(&ts)
    .bind(&payload)
    .bind(
        messages()
            .map(|m| m.contact_name.as_deref())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&pool)
    .await?;

    // Each (channel, external id) at its first position; the new rows go there.
    let mut first = HashMap::with_capacity(answerable.len());
    for (position, m) in messages().enumerate() {
        let key = (m.conversation.channel.as_str(), m.external_id.as_str());
        first.entry(key).or_insert(position);
    }
    let mut entries: Vec<Option<Entry>> = vec![None; answerable.len()];
    for row in rows {
        let key = (row.channel.as_str(), row.entry.external_id.as_str());
        if let Some(&position) = first.get(&key) {
            entries[position] = Some(row.entry.into());
        }
    }
    let mut entries = entries.into_iter();
    Ok(webhooks
        .iter()
        .map(|rows| entries.by_ref().take(rows.len()).collect())
        .collect())
}

impl Store {
    /// The contact's newest profile name, as the platform gave it with a message
    /// (none on Instagram, or before the platform sent one).
    pub async fn contact_name(&self, c: &Conversation) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT contact_name FROM conversation_messages
             WHERE channel = $1 AND account_id = $2 AND contact_id = $3
               AND direction = 'in' AND contact_name IS NOT NULL
             ORDER BY id DESC LIMIT 1",
        )
        .bind(c.channel.as_str())
        .bind(&c.account)
        .bind(&c.contact)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Inserts the messages of one webhook, in one statement with other webhooks
    /// arriving meanwhile; each new one comes back as its entry, a duplicate
    /// (platform retry) as `None`, in input order. Returns once they are committed;
    /// fails at once while the PostgreSQL breaker is open, and after the timeout
    /// when PostgreSQL does not answer (the breaker decides then whether it is down).
    pub async fn insert_inbound(
        &self,
        messages: impl Into<super::InboundRows>,
    ) -> Result<Vec<Option<Entry>>, StoreError> {
        let health = &self.health;
        if health.is_open() {
            return Err(StoreError::Down);
        }
        let error = match tokio::time::timeout(health.timeout, self.inbound.submit(messages.into()))
            .await
        {
            Ok(Ok(entries)) => return Ok(entries),
            Ok(Err(error)) if error.is_refusal() || matches!(error, StoreError::Closed) => {
                return Err(error);
            }
            Ok(Err(error)) => error,
            Err(_) => StoreError::TimedOut(health.timeout),
        };
        // No answer from PostgreSQL: is it down, or only this connection? The
        // webhook's 503 waits for the answer, so the next one is answered at once.
        health.confirm(&error.to_string()).await;
        Err(error)
    }

    /// The last `limit` messages of a conversation, both directions, oldest first;
    /// without the messages of batches that failed with no reply written (the
    /// responder refused them: in a later context they would be refused again, as
    /// ack.lua drops them from Redis's history).
    pub async fn recent_history(
        &self,
        conversation: &Conversation,
        limit: u32,
    ) -> Result<Vec<Entry>, StoreError> {
        let rows: Vec<EntryRow> = sqlx::query_as(
            "SELECT * FROM (
                 SELECT id, platform_timestamp, direction, message_type, external_message_id, text
                 FROM conversation_messages m
                 WHERE channel = $1 AND account_id = $2 AND contact_id = $3
                   AND NOT (direction = 'in' AND EXISTS (
                       SELECT 1 FROM reply_batches b
                       WHERE b.id = m.batch_id AND b.status = 'failed' AND b.reply_text IS NULL))
                 ORDER BY platform_timestamp DESC, id DESC
                 LIMIT $4) recent
             ORDER BY platform_timestamp, id",
        )
        .bind(conversation.channel.as_str())
        .bind(&conversation.account)
        .bind(&conversation.contact)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Entry::from).collect())
    }

    /// The messages with these ids, in platform order.
    pub async fn entries(&self, ids: &[i64]) -> Result<Vec<Entry>, StoreError> {
        let rows: Vec<EntryRow> = sqlx::query_as(
            "SELECT id, platform_timestamp, direction, message_type, external_message_id, text
             FROM conversation_messages WHERE id = ANY($1)
             ORDER BY platform_timestamp, id",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Entry::from).collect())
    }

    /// Answerable inbound messages with no reply, of conversations that have one
    /// received more than `min_age` ago, after `after` (keyset pages),
    /// conversation by conversation and each in platform order (timestamp, then
    /// id): appended in that order, a conversation's messages follow each other,
    /// so a burst stored while Redis was down becomes one batch. The age is the
    /// conversation's, not each message's: a cut by age through a burst would
    /// batch its older part alone, due before the next pass brings the rest (a
    /// chaos run split bursts so). A younger message whose webhook is appending
    /// it right now is appended once (append.lua leaves an id already there
    /// alone). None of a conversation a human agent has (its resume batches them).
    pub async fn unanswered(
        &self,
        min_age: Duration,
        after: Option<&Unanswered>,
        limit: i64,
    ) -> Result<Vec<Unanswered>, StoreError> {
        let rows: Vec<UnansweredRow> = sqlx::query_as(
            "SELECT channel, account_id, contact_id, id, platform_timestamp, direction, message_type,
                    external_message_id, text
             FROM conversation_messages
             WHERE direction = 'in' AND answerable AND batch_id IS NULL
               AND EXISTS (
                   SELECT 1 FROM conversation_messages o
                   WHERE o.channel = conversation_messages.channel
                     AND o.account_id = conversation_messages.account_id
                     AND o.contact_id = conversation_messages.contact_id
                     AND o.direction = 'in' AND o.answerable AND o.batch_id IS NULL
                     AND o.webhook_received_at < now() - make_interval(secs => $1))
               AND ($2::text IS NULL
                    OR (channel, account_id, contact_id, platform_timestamp, id)
                       > ($2, $3, $4, $5, $6))
               AND NOT EXISTS (
                   SELECT 1 FROM conversation_modes h
                   WHERE h.channel = conversation_messages.channel
                     AND h.account_id = conversation_messages.account_id
                     AND h.contact_id = conversation_messages.contact_id AND h.mode = 'human')
             ORDER BY channel, account_id, contact_id, platform_timestamp, id
             LIMIT $7",
        )
        .bind(min_age.as_secs_f64())
        .bind(after.map(|m| m.conversation.channel.as_str()))
        .bind(after.map(|m| m.conversation.account.as_str()))
        .bind(after.map(|m| m.conversation.contact.as_str()))
        .bind(after.map(|m| timestamp(m.entry.ts)))
        .bind(after.map(|m| m.entry.id))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let channel = ChannelKind::parse(&r.channel)?;
                Some(Unanswered {
                    conversation: Conversation::new(channel, r.account_id, r.contact_id),
                    entry: r.entry.into(),
                })
            })
            .collect())
    }
}
