//! Handoff state in PostgreSQL: `conversation_modes` (one row per conversation
//! ever paused; none means `bot`), a human agent's messages (outbound rows with
//! author `agent`), and the `human` batches a resume writes for the messages the
//! agent handled. This is the source of truth of a conversation's mode: Redis's
//! `mode` key mirrors it, and commit-to-send ([`super::batches`]) reads it.

use super::messages::EntryRow;
use super::{Store, StoreError, timestamp};
use crate::message::{ChannelKind, Conversation, Entry, InboundMessage};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The record of a conversation's mode.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct ModeRecord {
    /// `bot` or `human`.
    pub mode: String,
    /// Who paused it last (an operator's name, `agent`, `contact`, `responder`).
    pub paused_by: Option<String>,
    /// When.
    pub paused_at: Option<DateTime<Utc>>,
    /// What paused it: agent, operator, keyword, responder.
    pub pause_trigger: Option<String>,
    /// Why, in the operator's words.
    pub reason: Option<String>,
    /// An operator's pause for some minutes ends here.
    pub paused_until: Option<DateTime<Utc>>,
    /// The human agent's last message.
    pub last_agent_at: Option<DateTime<Utc>>,
    /// Who resumed it last.
    pub resumed_by: Option<String>,
    /// When.
    pub resumed_at: Option<DateTime<Utc>>,
}

impl ModeRecord {
    /// A human agent has the conversation.
    pub fn is_human(&self) -> bool {
        self.mode == "human"
    }
}

/// A pause to record.
#[derive(Debug, Clone)]
pub struct PauseRecord<'a> {
    /// Who.
    pub by: &'a str,
    /// What triggered it.
    pub trigger: &'a str,
    /// Why.
    pub reason: Option<&'a str>,
    /// Ends by itself after this long (an operator's pause for N minutes).
    pub for_how_long: Option<Duration>,
    /// When a human agent's message paused it: its time.
    pub agent_at: Option<DateTime<Utc>>,
}

/// What a resume found in PostgreSQL.
#[derive(Debug, Clone, Default)]
pub struct Resumed {
    /// The contact's unanswered messages after the agent's last one, platform
    /// order: the bot answers them, as one batch.
    pub to_answer: Vec<Entry>,
    /// Unanswered messages the agent handled, now owned by a `human` batch.
    pub handled_by_human: usize,
}

#[derive(sqlx::FromRow)]
struct ConversationRow {
    channel: String,
    account_id: String,
    contact_id: String,
}

impl ConversationRow {
    fn conversation(self) -> Option<Conversation> {
        let channel = ChannelKind::parse(&self.channel)?;
        Some(Conversation::new(channel, self.account_id, self.contact_id))
    }
}

impl Store {
    /// The conversation's mode record; `None` when it was never paused (bot).
    pub async fn mode(
        &self,
        conversation: &Conversation,
    ) -> Result<Option<ModeRecord>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT mode, paused_by, paused_at, pause_trigger, reason, paused_until, last_agent_at,
                    resumed_by, resumed_at
             FROM conversation_modes
             WHERE channel = $1 AND account_id = $2 AND contact_id = $3",
        )
        .bind(conversation.channel.as_str())
        .bind(&conversation.account)
        .bind(&conversation.contact)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records a pause. Returns true when the conversation was the bot's until
    /// now; a pause of a paused conversation only moves its `last_agent_at` (an
    /// agent's message) or its end (an operator's new minutes).
    pub async fn pause(
        &self,
        conversation: &Conversation,
        pause: &PauseRecord<'_>,
    ) -> Result<bool, StoreError> {
        let until = pause.for_how_long.map(|d| d.as_secs_f64());
        let was_bot: Option<bool> = sqlx::query_scalar(
            "WITH old AS (
                 SELECT mode FROM conversation_modes
                 WHERE channel = $1 AND account_id = $2 AND contact_id = $3
             )
             INSERT INTO conversation_modes AS c
                 (channel, account_id, contact_id, mode, paused_by, paused_at, pause_trigger,
                  reason, paused_until, last_agent_at)
             VALUES ($1, $2, $3, 'human', $4, now(), $5, $6,
                     now() + make_interval(secs => $7), $8)
             ON CONFLICT (channel, account_id, contact_id) DO UPDATE SET
                 mode = 'human',
                 paused_by = CASE WHEN c.mode = 'human' THEN c.paused_by ELSE EXCLUDED.paused_by END,
                 paused_at = CASE WHEN c.mode = 'human' THEN c.paused_at ELSE EXCLUDED.paused_at END,
                 pause_trigger = CASE WHEN c.mode = 'human' THEN c.pause_trigger
                                      ELSE EXCLUDED.pause_trigger END,
                 reason = coalesce(EXCLUDED.reason, CASE WHEN c.mode = 'human' THEN c.reason END),
                 paused_until = CASE WHEN $7 IS NOT NULL THEN EXCLUDED.paused_until
                                     WHEN c.mode = 'human' THEN c.paused_until END,
                 last_agent_at = greatest(EXCLUDED.last_agent_at,
                                          CASE WHEN c.mode = 'human' THEN c.last_agent_at END),
                 updated_at = now()
             RETURNING (SELECT coalesce(mode, 'bot') <> 'human' FROM (SELECT mode FROM old
                        UNION ALL SELECT NULL LIMIT 1) o)",
        )
        .bind(conversation.channel.as_str())
        .bind(&conversation.account)
        .bind(&conversation.contact)
        .bind(pause.by)
        .bind(pause.trigger)
        .bind(pause.reason)
        .bind(until)
        .bind(pause.agent_at)
        .fetch_optional(&self.pool)
        .await?;
        Ok(was_bot.unwrap_or(false))
    }

    /// Gives the conversation back to the bot, if a human had it, in one
    /// transaction: its unanswered messages up to the agent's last message become
    /// a `human` batch (never answered by the bot); the later ones come back to be
    /// answered. `None` when it was the bot's already (another instance resumed it).
    pub async fn resume(
        &self,
        conversation: &Conversation,
        by: &str,
        trigger: &str,
        human_batch_id: &str,
    ) -> Result<Option<Resumed>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let resumed = sqlx::query(
            "UPDATE conversation_modes
             SET mode = 'bot', resumed_by = $4, resumed_at = now(), resume_trigger = $5,
                 updated_at = now()
             WHERE channel = $1 AND account_id = $2 AND contact_id = $3 AND mode = 'human'",
        )
        .bind(conversation.channel.as_str())
        .bind(&conversation.account)
        .bind(&conversation.contact)
        .bind(by)
        .bind(trigger)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if resumed == 0 {
            return Ok(None);
        }
        // The agent's last message, in platform order; the contact's messages up
        // to it were theirs to answer.
        let handled: Vec<i64> = sqlx::query_scalar(
            "WITH last_agent AS (
                 SELECT platform_timestamp AS ts, id FROM conversation_messages
                 WHERE channel = $1 AND account_id = $2 AND contact_id = $3
                   AND direction = 'out' AND author = 'agent'
                 ORDER BY platform_timestamp DESC, id DESC LIMIT 1
             )
             SELECT m.id FROM conversation_messages m, last_agent a
             WHERE m.channel = $1 AND m.account_id = $2 AND m.contact_id = $3
               AND m.direction = 'in' AND m.answerable AND m.batch_id IS NULL
               AND (m.platform_timestamp, m.id) < (a.ts, a.id)
             ORDER BY m.platform_timestamp, m.id",
        )
        .bind(conversation.channel.as_str())
        .bind(&conversation.account)
        .bind(&conversation.contact)
        .fetch_all(&mut *tx)
        .await?;
        if !handled.is_empty() {
            sqlx::query(
                "INSERT INTO reply_batches
                     (id, channel, account_id, contact_id, status, message_ids)
                 VALUES ($1, $2, $3, $4, 'human', $5)",
            )
            .bind(human_batch_id)
            .bind(conversation.channel.as_str())
            .bind(&conversation.account)
            .bind(&conversation.contact)
            .bind(&handled)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE conversation_messages SET batch_id = $1
                 WHERE id = ANY($2) AND batch_id IS NULL",
            )
            .bind(human_batch_id)
            .bind(&handled)
            .execute(&mut *tx)
            .await?;
        }
        let rows: Vec<EntryRow> = sqlx::query_as(
            "SELECT id, platform_timestamp, direction, message_type, external_message_id, text
             FROM conversation_messages
             WHERE channel = $1 AND account_id = $2 AND contact_id = $3
               AND direction = 'in' AND answerable AND batch_id IS NULL
             ORDER BY platform_timestamp, id",
        )
        .bind(conversation.channel.as_str())
        .bind(&conversation.account)
        .bind(&conversation.contact)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(Resumed {
            to_answer: rows.into_iter().map(Entry::from).collect(),
            handled_by_human: handled.len(),
        }))
    }

    /// Paused conversations due to resume by themselves: an operator's pause past
    /// its end, or, with `idle` set, `idle` after the later of the pause and the
    /// agent's last message.
    pub async fn due_resumes(
        &self,
        idle: Option<Duration>,
        limit: i64,
    ) -> Result<Vec<Conversation>, StoreError> {
        let rows: Vec<ConversationRow> = sqlx::query_as(
            "SELECT channel, account_id, contact_id FROM conversation_modes
             WHERE mode = 'human'
               AND ((paused_until IS NOT NULL AND paused_until <= now())
                 OR (paused_until IS NULL AND $1::float8 IS NOT NULL
                     AND greatest(paused_at, coalesce(last_agent_at, paused_at))
                         + make_interval(secs => $1) <= now()))
             ORDER BY paused_at
             LIMIT $2",
        )
        .bind(idle.map(|d| d.as_secs_f64()))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(ConversationRow::conversation)
            .collect())
    }

    /// How many conversations a human has now.
    pub async fn paused_count(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM conversation_modes WHERE mode = 'human'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Stores a human agent's message (seen as an echo) as outbound, author
    /// `agent`; `None` when it was stored already (a platform retry).
    pub async fn insert_agent_message(
        &self,
        message: &InboundMessage,
    ) -> Result<Option<Entry>, StoreError> {
        let row: Option<EntryRow> = sqlx::query_as(
            "INSERT INTO conversation_messages
                 (channel, account_id, contact_id, external_message_id, direction, message_type,
                  text, answerable, platform_timestamp, webhook_payload, author)
             VALUES ($1, $2, $3, $4, 'out', $5, $6, false, $7, $8, 'agent')
             ON CONFLICT (channel, external_message_id) DO NOTHING
             RETURNING id, platform_timestamp, direction, message_type, external_message_id, text",
        )
        .bind(message.conversation.channel.as_str())
        .bind(&message.conversation.account)
        .bind(&message.conversation.contact)
        .bind(&message.external_id)
        .bind(message.kind.as_str())
        .bind(&message.text)
        .bind(timestamp(message.timestamp_ms))
        .bind(&message.payload)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Entry::from))
    }

    /// Whether an echo with the platform id `external_id` is one of our own
    /// replies: recorded as sent, or possibly one being sent right now (a batch
    /// of the conversation is `sending`: the platform may echo a part before lull
    /// has recorded it). An echo must not pause anything then.
    pub async fn is_our_reply(
        &self,
        conversation: &Conversation,
        external_id: &str,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM conversation_messages
                            WHERE channel = $1 AND external_message_id = $2
                              AND direction = 'out' AND author IS NULL)
                 OR EXISTS (SELECT 1 FROM reply_batches
                            WHERE channel = $1 AND account_id = $3 AND contact_id = $4
                              AND status = 'sending')",
        )
        .bind(conversation.channel.as_str())
        .bind(external_id)
        .bind(&conversation.account)
        .bind(&conversation.contact)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Records a reply lull sent outside a batch (the handoff notice): the
    /// message it answers becomes owned by a `sent` batch holding the text, and
    /// the reply is stored as outbound (returned, for history).
    pub async fn record_notice(
        &self,
        conversation: &Conversation,
        batch_id: &str,
        answered: i64,
        platform_id: &str,
        text: &str,
    ) -> Result<Option<Entry>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO reply_batches
                 (id, channel, account_id, contact_id, status, message_ids, reply_text,
                  platform_message_ids, attempts, generated_at, sent_at)
             VALUES ($1, $2, $3, $4, 'sent', ARRAY[$5::bigint], $6, ARRAY[$7], 1, now(), now())",
        )
        .bind(batch_id)
        .bind(conversation.channel.as_str())
        .bind(&conversation.account)
        .bind(&conversation.contact)
        .bind(answered)
        .bind(text)
        .bind(platform_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE conversation_messages SET batch_id = $1 WHERE id = $2 AND batch_id IS NULL",
        )
        .bind(batch_id)
        .bind(answered)
        .execute(&mut *tx)
        .await?;
        let row: Option<EntryRow> = sqlx::query_as(
            "INSERT INTO conversation_messages
                 (channel, account_id, contact_id, external_message_id, direction, message_type,
                  text, answerable, platform_timestamp, batch_id)
             VALUES ($1, $2, $3, $4, 'out', 'reply', $5, false, now(), $6)
             ON CONFLICT (channel, external_message_id) DO NOTHING
             RETURNING id, platform_timestamp, direction, message_type, external_message_id, text",
        )
        .bind(conversation.channel.as_str())
        .bind(&conversation.account)
        .bind(&conversation.contact)
        .bind(platform_id)
        .bind(text)
        .bind(batch_id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row.map(Entry::from))
    }
}

impl Store {
    /// The conversation's answerable inbound messages with no batch, platform order.
    pub async fn unanswered_of(
        &self,
        conversation: &Conversation,
    ) -> Result<Vec<Entry>, StoreError> {
        let rows: Vec<EntryRow> = sqlx::query_as(
            "SELECT id, platform_timestamp, direction, message_type, external_message_id, text
             FROM conversation_messages
             WHERE channel = $1 AND account_id = $2 AND contact_id = $3
               AND direction = 'in' AND answerable AND batch_id IS NULL
             ORDER BY platform_timestamp, id",
        )
        .bind(conversation.channel.as_str())
        .bind(&conversation.account)
        .bind(&conversation.contact)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Entry::from).collect())
    }
}
