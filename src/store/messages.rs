//! Queries on `conversation_messages`.

use super::{Store, StoreError, timestamp};
use crate::message::{ChannelKind, Conversation, Direction, Entry, InboundMessage, MessageKind};
use chrono::{DateTime, Utc};
use std::time::Duration;

#[derive(sqlx::FromRow)]
struct EntryRow {
    id: i64,
    platform_timestamp: DateTime<Utc>,
    direction: String,
    message_type: String,
    external_message_id: String,
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
            ext: row.external_message_id,
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

impl Store {
    /// Inserts the messages of one webhook in one statement; each new one comes back
    /// as its entry, a duplicate (platform retry) as `None`, in input order.
    pub async fn insert_inbound(
        &self,
        messages: &[(InboundMessage, bool)],
    ) -> Result<Vec<Option<Entry>>, StoreError> {
        let mut channel = Vec::with_capacity(messages.len());
        let mut account = Vec::with_capacity(messages.len());
        let mut contact = Vec::with_capacity(messages.len());
        let mut external = Vec::with_capacity(messages.len());
        let mut kind = Vec::with_capacity(messages.len());
        let mut text = Vec::with_capacity(messages.len());
        let mut answerable = Vec::with_capacity(messages.len());
        let mut ts = Vec::with_capacity(messages.len());
        let mut payload = Vec::with_capacity(messages.len());
        for (m, needs_reply) in messages {
            channel.push(m.conversation.channel.as_str());
            account.push(m.conversation.account.as_str());
            contact.push(m.conversation.contact.as_str());
            external.push(m.external_id.as_str());
            kind.push(m.kind.as_str());
            text.push(m.text.as_str());
            answerable.push(*needs_reply);
            ts.push(timestamp(m.timestamp_ms));
            payload.push(m.payload.clone());
        }
        let rows: Vec<EntryRow> = sqlx::query_as(
            "INSERT INTO conversation_messages
                 (channel, account_id, contact_id, external_message_id, direction, message_type,
                  text, answerable, platform_timestamp, webhook_payload)
             SELECT c, a, ct, e, 'in', k, t, ans, ts, p
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::bool[], $8::timestamptz[], $9::jsonb[])
                  AS u(c, a, ct, e, k, t, ans, ts, p)
             ON CONFLICT (channel, external_message_id) DO NOTHING
             RETURNING id, platform_timestamp, direction, message_type, external_message_id, text",
        )
        .bind(&channel)
        .bind(&account)
        .bind(&contact)
        .bind(&external)
        .bind(&kind)
        .bind(&text)
        .bind(&answerable)
        .bind(&ts)
        .bind(&payload)
        .fetch_all(&self.pool)
        .await?;
        let mut fresh: Vec<Option<Entry>> = rows.into_iter().map(|r| Some(r.into())).collect();
        Ok(messages
            .iter()
            .map(|(m, _)| {
                fresh
                    .iter_mut()
                    .find(|e| e.as_ref().is_some_and(|e| e.ext == m.external_id))
                    .and_then(Option::take)
            })
            .collect())
    }

    /// The last `limit` messages of a conversation, both directions, oldest first.
    pub async fn recent_history(
        &self,
        conversation: &Conversation,
        limit: u32,
    ) -> Result<Vec<Entry>, StoreError> {
        let rows: Vec<EntryRow> = sqlx::query_as(
            "SELECT * FROM (
                 SELECT id, platform_timestamp, direction, message_type, external_message_id, text
                 FROM conversation_messages
                 WHERE channel = $1 AND account_id = $2 AND contact_id = $3
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

    /// Records a sent reply in one statement (one commit): the batch becomes `sent`
    /// with its attempts and platform ids, and each part is stored as an outbound
    /// message of the batch. Returns the parts as history entries.
    pub async fn record_sent(
        &self,
        conversation: &Conversation,
        batch_id: &str,
        attempts: u32,
        parts: &[(String, String)],
        now_ms: i64,
    ) -> Result<Vec<Entry>, StoreError> {
        let external: Vec<&str> = parts.iter().map(|(id, _)| id.as_str()).collect();
        let text: Vec<&str> = parts.iter().map(|(_, t)| t.as_str()).collect();
        let rows: Vec<EntryRow> = sqlx::query_as(
            "WITH sent AS (
                 UPDATE reply_batches
                 SET status = 'sent', attempts = attempts + $8, platform_message_ids = $4,
                     sent_at = now(), updated_at = now(), error_code = NULL, error_message = NULL
                 WHERE id = $7)
             INSERT INTO conversation_messages
                 (channel, account_id, contact_id, external_message_id, direction, message_type,
                  text, answerable, platform_timestamp, batch_id)
             SELECT $1, $2, $3, e, 'out', 'reply', t, false, $6, $7
             FROM UNNEST($4::text[], $5::text[]) WITH ORDINALITY AS u(e, t, n)
             ORDER BY n
             ON CONFLICT (channel, external_message_id) DO UPDATE SET batch_id = EXCLUDED.batch_id
             RETURNING id, platform_timestamp, direction, message_type, external_message_id, text",
        )
        .bind(conversation.channel.as_str())
        .bind(&conversation.account)
        .bind(&conversation.contact)
        .bind(&external)
        .bind(&text)
        .bind(timestamp(now_ms))
        .bind(batch_id)
        .bind(attempts as i32)
        .fetch_all(&self.pool)
        .await?;
        let mut entries: Vec<Entry> = rows.into_iter().map(Entry::from).collect();
        entries.sort_by_key(|e| e.id);
        Ok(entries)
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

    /// Answerable inbound messages with no reply, received more than `min_age` ago,
    /// with an id above `after_id` (keyset pages), oldest id first.
    pub async fn unanswered(
        &self,
        min_age: Duration,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Unanswered>, StoreError> {
        let rows: Vec<UnansweredRow> = sqlx::query_as(
            "SELECT channel, account_id, contact_id, id, platform_timestamp, direction, message_type,
                    external_message_id, text
             FROM conversation_messages
             WHERE direction = 'in' AND answerable AND batch_id IS NULL
               AND webhook_received_at < now() - make_interval(secs => $1)
               AND id > $2
             ORDER BY id
             LIMIT $3",
        )
        .bind(min_age.as_secs_f64())
        .bind(after_id)
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
