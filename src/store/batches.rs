//! Queries on `reply_batches`, and the one that makes a message answered.

use super::messages::EntryRow;
use super::status::BatchStatus;
use super::{Store, StoreError};
use crate::batch::BatchId;
use crate::channel::render::describe;
use crate::message::{ChannelKind, Conversation, Entry};
use crate::responder::reply::{Reply, ReplyMessage};
use crate::time::UnixMs;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::types::Json;
use std::collections::HashMap;
use std::time::Duration;

/// A claimed batch, as the worker records it.
#[derive(Debug, Clone)]
pub struct NewBatch {
    /// The batch id (claim.lua's).
    pub id: BatchId,
    /// Its conversation.
    pub conversation: Conversation,
    /// Inbound message ids, platform order.
    pub message_ids: Vec<i64>,
    /// How many times it has been claimed.
    pub claims: i64,
    /// How many times it has been superseded.
    pub supersedes: i64,
    /// Its first message.
    pub started_ms: UnixMs,
    /// When it became due (the agenda score the claim found).
    pub due_ms: UnixMs,
    /// When it was claimed, on the same clock as `due_ms` (lull's, not the
    /// database's), so that claim lag = claimed_at - due_at holds no clock skew
    /// and no wait for a database connection.
    pub claimed_ms: UnixMs,
}

/// A generated reply about to be sent: the batch takes its messages.
#[derive(Debug, Clone)]
pub(super) struct Commit {
    /// The claim, written as the batch's row if no claim was recorded before;
    /// its `message_ids` are the ones to take, in platform order (the last one is
    /// the newest: older unowned messages are taken up to it).
    pub batch: NewBatch,
    pub text: String,
    /// The reply's messages as JSON, when it is more than one text message.
    pub messages: Option<String>,
}

/// A reply the platform accepted, to be recorded.
#[derive(Debug, Clone)]
pub(super) struct SentReply {
    pub conversation: Conversation,
    pub batch_id: BatchId,
    pub attempts: u32,
    /// (platform message id, text) of each part, in order.
    pub parts: Vec<(String, String)>,
    pub now_ms: UnixMs,
}

/// Where a batch stands, as the database knows it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct BatchRecord {
    /// How far it got.
    pub status: BatchStatus,
    /// Send requests made so far (across crash resumes).
    pub attempts: i32,
    /// The messages it answers (fixed once it is sending).
    pub message_ids: Vec<i64>,
    /// The committed reply, once sending.
    pub reply_text: Option<String>,
    /// Platform ids of the parts that went out.
    pub platform_message_ids: Vec<String>,
    /// The committed reply's messages, when it was more than one text message.
    pub reply_messages: Option<Json<Vec<ReplyMessage>>>,
    /// Its responder asked to hand the conversation to a human.
    pub handoff: bool,
}

impl BatchRecord {
    /// The committed reply's messages: the ones stored, or its text as one (an
    /// empty text: no reply).
    pub fn committed_messages(&self) -> Option<Vec<ReplyMessage>> {
        match (&self.reply_messages, &self.reply_text) {
            (Some(Json(messages)), _) => Some(messages.clone()),
            (None, Some(text)) if text.is_empty() => Some(Vec::new()),
            (None, Some(text)) => Some(Reply::text(text.clone()).messages),
            (None, None) => None,
        }
    }
}

#[derive(sqlx::FromRow)]
struct OpenedRow {
    id: BatchId,
    #[sqlx(flatten)]
    record: BatchRecord,
}

#[derive(sqlx::FromRow)]
struct OwnedRow {
    batch_id: BatchId,
    owned: Vec<i64>,
    behind: Option<BatchId>,
}

/// What commit-to-send did with one batch (see [`commit_batches`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// It answers these messages, in platform order; none: they were answered
    /// elsewhere, or a human agent has the conversation.
    Owns(Vec<i64>),
    /// Another batch of its conversation is unfinished and goes first (Redis
    /// lost it while it was being sent): nothing was taken or written.
    Behind(BatchId),
}

impl CommitOutcome {
    /// The messages it answers; none when it is behind another batch.
    pub fn owned(self) -> Vec<i64> {
        match self {
            CommitOutcome::Owns(ids) => ids,
            CommitOutcome::Behind(_) => Vec::new(),
        }
    }
}

#[derive(sqlx::FromRow)]
struct SentRow {
    batch_id: BatchId,
    #[sqlx(flatten)]
    entry: EntryRow,
}

#[derive(sqlx::FromRow)]
struct StaleRow {
    id: BatchId,
    channel: String,
    account_id: String,
    contact_id: String,
    first_message_at: Option<DateTime<Utc>>,
    message_ids: Vec<i64>,
}

/// A batch that owns messages in PostgreSQL and is not finished, with what Redis
/// needs to resume it.
#[derive(Debug, Clone)]
pub struct StaleOwner {
    /// Batch id.
    pub batch_id: BatchId,
    /// Its conversation.
    pub conversation: Conversation,
    /// Its first message.
    pub started_ms: UnixMs,
    /// Its messages, platform order.
    pub entries: Vec<Entry>,
}

/// A reply batch row, for the admin page and tests.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct BatchRow {
    /// Batch id.
    pub id: BatchId,
    /// Channel.
    pub channel: String,
    /// Our account.
    pub account_id: String,
    /// Their id.
    pub contact_id: String,
    /// How far it got.
    pub status: BatchStatus,
    /// Inbound rows answered.
    pub message_ids: Vec<i64>,
    /// The reply.
    pub reply_text: Option<String>,
    /// Send requests made.
    pub attempts: i32,
    /// Claims (1 + resumes + supersedes).
    pub claims: i32,
    /// Supersedes.
    pub supersedes: i32,
    /// Platform ids of the parts sent.
    pub platform_message_ids: Vec<String>,
    /// Platform error code, when failed.
    pub error_code: Option<String>,
    /// Platform error message, when failed.
    pub error_message: Option<String>,
    /// First message of the batch.
    pub first_message_at: Option<DateTime<Utc>>,
    /// When it became due.
    pub due_at: Option<DateTime<Utc>>,
    /// Claimed.
    pub claimed_at: DateTime<Utc>,
    /// Reply generated.
    pub generated_at: Option<DateTime<Utc>>,
    /// Reply sent.
    pub sent_at: Option<DateTime<Utc>>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// The responder that wrote the reply (`openai`, `http`...).
    pub responder: Option<String>,
    /// The model, as the API named it.
    pub model: Option<String>,
    /// Prompt tokens the API reported.
    pub prompt_tokens: Option<i64>,
    /// Completion tokens the API reported.
    pub completion_tokens: Option<i64>,
    /// Time the responder took, retries included, ms.
    pub generation_ms: Option<i64>,
    /// The responder asked to hand the conversation to a human.
    pub handoff: bool,
    /// The batch failed for good and FALLBACK_REPLY was sent instead.
    pub fallback: bool,
}

/// What generating a batch's reply took, recorded with its commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generation {
    /// The responder's name.
    pub responder: String,
    /// The model, when known.
    pub model: Option<String>,
    /// Prompt tokens, when reported.
    pub prompt_tokens: Option<u64>,
    /// Completion tokens, when reported.
    pub completion_tokens: Option<u64>,
    /// Time taken, retries included.
    pub elapsed: Duration,
    /// The responder asked for a human.
    pub handoff: bool,
}

// GROUP_PLANS: the grouped statements run unprepared (`persistent(false)`), so each
// is planned for its group's own array sizes. A cached generic plan assumes small
// arrays and may pick nested loops whose cost grows with the square of the group.

/// A PostgreSQL array literal of ids: arrays of arrays must be rectangular, so
/// each batch's ids travel as one text value and are cast back in SQL.
fn id_list(ids: &[i64]) -> String {
    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
    format!("{{{}}}", ids.join(","))
}

/// Refuses a group in which two requests name the same batch: one statement would
/// update its row once (with either request's values) and give one answer for
/// both, so such a group is written request by request instead (see
/// [`StoreError::SameRow`]).
fn distinct_batches<'a>(mut ids: impl Iterator<Item = &'a BatchId>) -> Result<(), StoreError> {
    let mut seen = std::collections::HashSet::new();
    match ids.find(|id| !seen.insert(*id)) {
        Some(id) => Err(StoreError::SameRow(format!("batch {id}"))),
        None => Ok(()),
    }
}

/// Records claims (the opening group's flush): a new batch, or a resumed or
/// superseded one under the same id. A batch already sending, sent or failed keeps
/// its messages; its status tells the worker not to generate again. A batch still
/// generating keeps, besides the claim's ids, those its row had and owns: a
/// commit may have taken older messages for it (see [`commit_batches`]) that its
/// Redis entries lack, and its next commit must find them among its own.
pub(super) async fn open_batches(
    pool: PgPool,
    batches: std::sync::Arc<[NewBatch]>,
) -> Result<Vec<BatchRecord>, StoreError> {
    let column = |f: fn(&NewBatch) -> &str| batches.iter().map(f).collect::<Vec<_>>();
    let times =
        |f: fn(&NewBatch) -> UnixMs| batches.iter().map(|b| f(b).timestamp()).collect::<Vec<_>>();
    let rows: Vec<OpenedRow> = sqlx::query_as(
        "INSERT INTO reply_batches
             (id, channel, account_id, contact_id, message_ids, claims, supersedes, first_message_at, due_at, claimed_at)
         SELECT id, c, a, ct, m::bigint[], cl, su, f, d, at
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::int[],
                     $8::timestamptz[], $9::timestamptz[], $10::timestamptz[])
              AS u(id, c, a, ct, m, cl, su, f, d, at)
         ON CONFLICT (id) DO UPDATE SET
             message_ids = CASE WHEN reply_batches.status IN ('sending', 'sent', 'failed', 'dropped')
                                THEN reply_batches.message_ids
                                ELSE EXCLUDED.message_ids || ARRAY(
                                    SELECT m.id FROM conversation_messages m
                                    WHERE m.id = ANY(reply_batches.message_ids)
                                      AND m.batch_id = reply_batches.id
                                      AND m.id <> ALL(EXCLUDED.message_ids)
                                    ORDER BY m.platform_timestamp, m.id) END,
             claims = EXCLUDED.claims,
             supersedes = EXCLUDED.supersedes,
             due_at = EXCLUDED.due_at,
             claimed_at = EXCLUDED.claimed_at,
             updated_at = now()
         RETURNING id, status, attempts, message_ids, reply_text, platform_message_ids, reply_messages, handoff",
    )
    .bind(column(|b| b.id.as_str()))
    .bind(column(|b| b.conversation.channel.as_str()))
    .bind(column(|b| &b.conversation.account))
    .bind(column(|b| &b.conversation.contact))
    .bind(batches.iter().map(|b| id_list(&b.message_ids)).collect::<Vec<_>>())
    .bind(batches.iter().map(|b| b.claims as i32).collect::<Vec<_>>())
    .bind(batches.iter().map(|b| b.supersedes as i32).collect::<Vec<_>>())
    .bind(times(|b| b.started_ms))
    .bind(times(|b| b.due_ms))
    .bind(times(|b| b.claimed_ms))
    // Planned for each group's own arrays (see GROUP_PLANS).
    .persistent(false)
    .fetch_all(&pool)
    .await?;
    let mut by_id: HashMap<BatchId, BatchRecord> =
        rows.into_iter().map(|r| (r.id, r.record)).collect();
    // Every request has its row (two of one batch are refused by ON CONFLICT). A
    // missing one would make the answer short: the group writer then fails the
    // whole group without writing it again, as this statement has committed.
    Ok(batches.iter().filter_map(|b| by_id.remove(&b.id)).collect())
}

/// Makes each batch the answer of its messages, unless another batch already is
/// (the sending group's flush), in one statement. Only a batch that owns exactly
/// the messages it was committed for becomes `sending` with its text: a text that
/// quotes a message answered elsewhere, or that leaves out one the batch took,
/// must never be resumed. Otherwise it stays `generating` with what it owns (the
/// caller generates again for those); owning none, it is `dropped`. Two batches of
/// one group wanting the same message: the UPDATE gives it to one of them only.
///
/// A batch also takes its conversation's older messages that nobody owns
/// (inbound, answerable, no `batch_id`, before its newest message in platform
/// order, `(platform_timestamp, id)`): messages Redis lost (a restart without
/// persistence, a FLUSHALL) or never got (a crash between a webhook's commit and
/// its append). Left to the reconciler they would get a reply of their own after
/// this one, answering the later messages first (docs/design.md, invariant 14).
/// On its first claim it also takes the newer ones stored before it was due: the
/// claim took every message Redis had, and one stored before the window closed
/// would have moved the deadline had it reached Redis, so it is of the same burst
/// but its webhook found Redis down (PostgreSQL only); left behind, it would get
/// a reply of its own and split the burst. (A resumed batch's due time is its
/// lease's end, so it takes only older ones; claim.lua merges what is due.)
/// And it keeps what its row already owns (a batch that took older messages and
/// was resumed before it committed again claims only its Redis entries).
///
/// A batch whose claim was not recorded (a first claim answered fast: see the
/// worker) gets its row here, claim and commit in one write. A recorded batch is
/// committed only while it is still `generating`: a second worker on the same
/// batch (the first stalled past its whole lease after its last look) finds it
/// `sending` already, and owns nothing, so it sends nothing; the first sends the
/// committed text. Whichever of the two commits first wins, recorded or not.
///
/// While a human agent has the conversation (`conversation_modes`, handoff), the
/// batch takes none of its messages: it is `dropped` and sends nothing, even when
/// Redis lost the pause (docs/design.md, invariant 13).
///
/// Query shape, linear in the group: each batch's newest message (its last id:
/// the ids come in platform order) is read by primary key, its older unowned ones
/// by the partial index `conversation_messages_unowned` (migration 0041: it holds
/// only messages no batch owns, so the common case, none older, reads only the
/// batch's own), its row by primary key. The messages'
/// UPDATE filters on `m.id = ANY(ARRAY(..))` of the wanted ids, so it reads them
/// by primary key; each batch's taken ids are gathered in one GROUP BY over the
/// group (not a lookup per batch). Only the batches written come back; one that
/// is not owns nothing. The ids it owns come back in platform order.
///
/// A batch whose conversation has another batch unfinished that must be
/// answered first (`sending`, or `generating` and owning messages: Redis lost it
/// while it was being sent, or between its two commits, and its worker died)
/// takes and writes nothing and comes back [`CommitOutcome::Behind`] it: sent
/// now, it would answer later messages before earlier ones (invariant 5). That
/// lookup reads the partial index `reply_batches_unfinished` (migration 0042),
/// which holds only batches in flight.
pub(super) async fn commit_batches(
    pool: PgPool,
    commits: std::sync::Arc<[Commit]>,
) -> Result<Vec<CommitOutcome>, StoreError> {
    distinct_batches(commits.iter().map(|c| &c.batch.id))?;
    let column = |f: fn(&Commit) -> &str| commits.iter().map(f).collect::<Vec<_>>();
    let times = |f: fn(&NewBatch) -> UnixMs| {
        commits
            .iter()
            .map(|c| f(&c.batch).timestamp())
            .collect::<Vec<_>>()
    };
    let rows: Vec<OwnedRow> = sqlx::query_as(
        "WITH input AS (
             SELECT b, t, m::bigint[] AS ids, c, a, ct, cl, su, f, d, at, rm::jsonb AS rm, o.id AS older
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::int[], $8::int[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[],
                         $12::text[])
                  AS u(b, t, m, c, a, ct, cl, su, f, d, at, rm)
             LEFT JOIN LATERAL (
                 SELECT r.id FROM reply_batches r
                 WHERE r.channel = u.c AND r.account_id = u.a AND r.contact_id = u.ct
                   AND r.status IN ('generating', 'sending') AND r.id <> u.b
                   AND (r.status = 'sending' OR EXISTS (
                       SELECT 1 FROM conversation_messages m
                       WHERE m.id = ANY(r.message_ids) AND m.batch_id = r.id))
                 ORDER BY r.claimed_at LIMIT 1) o ON true
         ), free AS MATERIALIZED (
             SELECT * FROM input WHERE older IS NULL
         ), newest AS MATERIALIZED (
             SELECT i.b, i.c, i.a, i.ct, i.cl, i.d, m.platform_timestamp AS ts, m.id
             FROM free i JOIN conversation_messages m ON m.id = i.ids[cardinality(i.ids)]
         ), wanted AS (
             SELECT i.b, x.id FROM free i, unnest(i.ids) AS x(id)
             UNION
             -- One primary-key read per batch (the status is tested in the CASE, not
             -- the WHERE, so no other index fits, whatever the statistics say).
             SELECT i.b, x.id
             FROM free i CROSS JOIN LATERAL (
                      SELECT CASE WHEN r.status = 'generating' THEN r.message_ids END AS ids
                      FROM reply_batches r WHERE r.id = i.b OFFSET 0) r,
                  unnest(r.ids) AS x(id)
             UNION
             SELECT n.b, o.id FROM newest n CROSS JOIN LATERAL (
                 SELECT m.id FROM conversation_messages m
                 WHERE m.channel = n.c AND m.account_id = n.a AND m.contact_id = n.ct
                   AND m.direction = 'in' AND m.answerable AND m.batch_id IS NULL
                   AND ((m.platform_timestamp, m.id) < (n.ts, n.id)
                        OR (n.cl = 1 AND m.webhook_received_at < n.d))
                 OFFSET 0) o
         ), taken AS (
             UPDATE conversation_messages m SET batch_id = w.b
             FROM wanted w
             WHERE m.id = ANY(ARRAY(SELECT id FROM wanted)) AND m.id = w.id
               AND (m.batch_id IS NULL OR m.batch_id = w.b)
               AND NOT EXISTS (
                   SELECT 1 FROM conversation_modes h
                   WHERE h.channel = m.channel AND h.account_id = m.account_id
                     AND h.contact_id = m.contact_id AND h.mode = 'human')
             RETURNING w.b, m.id, m.platform_timestamp AS ts
         ), owned AS (
             SELECT b, max(t) AS t, max(ids) AS ids, max(c) AS c, max(a) AS a, max(ct) AS ct,
                    max(cl) AS cl, max(su) AS su, max(f) AS f, max(d) AS d, max(at) AS at,
                    (array_agg(rm) FILTER (WHERE rm IS NOT NULL))[1] AS rm,
                    coalesce(array_agg(id ORDER BY ts, id) FILTER (WHERE id IS NOT NULL), '{}') AS got
             FROM (SELECT b, t, ids, c, a, ct, cl, su, f, d, at, rm, NULL::bigint AS id,
                          NULL::timestamptz AS ts
                   FROM free
                   UNION ALL
                   SELECT b, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, id, ts
                   FROM taken) x
             GROUP BY b
         ), written AS (
         INSERT INTO reply_batches AS r
             (id, channel, account_id, contact_id, status, message_ids, reply_text, claims,
              supersedes, first_message_at, due_at, claimed_at, generated_at, reply_messages)
         SELECT b, c, a, ct,
                CASE WHEN cardinality(got) = 0 THEN 'dropped' WHEN whole THEN 'sending' ELSE 'generating' END,
                got, CASE WHEN whole THEN t END, cl, su, f, d, at, CASE WHEN whole THEN now() END,
                CASE WHEN whole THEN rm END
         FROM (SELECT *, cardinality(got) = cardinality(ids) AND got <@ ids AS whole FROM owned) o
         ON CONFLICT (id) DO UPDATE SET
             status = EXCLUDED.status,
             message_ids = EXCLUDED.message_ids,
             reply_text = coalesce(EXCLUDED.reply_text, r.reply_text),
             reply_messages = CASE WHEN EXCLUDED.reply_text IS NULL THEN r.reply_messages
                                   ELSE EXCLUDED.reply_messages END,
             generated_at = coalesce(EXCLUDED.generated_at, r.generated_at),
             updated_at = now()
         WHERE r.status = 'generating'
         RETURNING r.id AS batch_id, r.message_ids AS owned, NULL::text AS behind
         ) SELECT * FROM written
           UNION ALL
           SELECT b, '{}'::bigint[], older FROM input WHERE older IS NOT NULL",
    )
    .bind(column(|c| c.batch.id.as_str()))
    .bind(column(|c| &c.text))
    .bind(commits.iter().map(|c| id_list(&c.batch.message_ids)).collect::<Vec<_>>())
    .bind(column(|c| c.batch.conversation.channel.as_str()))
    .bind(column(|c| &c.batch.conversation.account))
    .bind(column(|c| &c.batch.conversation.contact))
    .bind(commits.iter().map(|c| c.batch.claims as i32).collect::<Vec<_>>())
    .bind(commits.iter().map(|c| c.batch.supersedes as i32).collect::<Vec<_>>())
    .bind(times(|b| b.started_ms))
    .bind(times(|b| b.due_ms))
    .bind(times(|b| b.claimed_ms))
    .bind(commits.iter().map(|c| c.messages.as_deref()).collect::<Vec<_>>())
    // Planned for each group's own arrays (see GROUP_PLANS).
    .persistent(false)
    .fetch_all(&pool)
    .await?;
    let mut by_id: HashMap<BatchId, CommitOutcome> = rows
        .into_iter()
        .map(|r| {
            let outcome = match r.behind {
                Some(older) => CommitOutcome::Behind(older),
                None => CommitOutcome::Owns(r.owned),
            };
            (r.batch_id, outcome)
        })
        .collect();
    // A batch not written was recorded already and is past `generating`: another
    // worker committed it first, so this one owns nothing.
    Ok(commits
        .iter()
        .map(|c| {
            by_id
                .remove(&c.batch.id)
                .unwrap_or(CommitOutcome::Owns(Vec::new()))
        })
        .collect())
}

/// Records sent replies (the sent group's flush) in one statement: each batch
/// becomes `sent` with its attempts and platform ids, and each part is stored as
/// an outbound message of its batch. Returns each batch's parts as history entries.
///
/// Each batch's platform ids travel as one JSON array (PostgreSQL arrays of
/// arrays must be rectangular), so no batch looks its parts up in the group's.
pub(super) async fn record_replies(
    pool: PgPool,
    replies: std::sync::Arc<[SentReply]>,
) -> Result<Vec<Vec<Entry>>, StoreError> {
    distinct_batches(replies.iter().map(|r| &r.batch_id))?;
    let parts = || {
        replies
            .iter()
            .flat_map(|r| r.parts.iter().enumerate().map(move |(n, p)| (r, n, p)))
    };
    let rows: Vec<SentRow> = sqlx::query_as(
        "WITH parts AS (
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[],
                                  $7::text[], $8::timestamptz[])
                           AS p(b, e, t, n, c, a, ct, ts)
         ), sent AS (
             UPDATE reply_batches r
             SET status = 'sent', attempts = r.attempts + s.attempts,
                 platform_message_ids = ARRAY(
                     SELECT e FROM jsonb_array_elements_text(s.p::jsonb) WITH ORDINALITY AS x(e, n)
                     ORDER BY n),
                 sent_at = now(), updated_at = now(), error_code = NULL, error_message = NULL
             FROM UNNEST($9::text[], $10::int[], $11::text[]) AS s(b, attempts, p)
             WHERE r.id = ANY($9) AND r.id = s.b
         )
         INSERT INTO conversation_messages
             (channel, account_id, contact_id, external_message_id, direction, message_type,
              text, answerable, platform_timestamp, batch_id)
         SELECT c, a, ct, e, 'out', 'reply', t, false, ts, b FROM parts ORDER BY b, n
         ON CONFLICT (channel, external_message_id) DO UPDATE SET batch_id = EXCLUDED.batch_id
         RETURNING batch_id, id, platform_timestamp, direction, message_type, external_message_id, text",
    )
    .bind(parts().map(|(r, _, _)| r.batch_id.as_str()).collect::<Vec<_>>())
    .bind(parts().map(|(_, _, (id, _))| id.as_str()).collect::<Vec<_>>())
    .bind(parts().map(|(_, _, (_, text))| text.as_str()).collect::<Vec<_>>())
    .bind(parts().map(|(_, n, _)| n as i32).collect::<Vec<_>>())
    .bind(parts().map(|(r, _, _)| r.conversation.channel.as_str()).collect::<Vec<_>>())
    .bind(parts().map(|(r, _, _)| r.conversation.account.as_str()).collect::<Vec<_>>())
    .bind(parts().map(|(r, _, _)| r.conversation.contact.as_str()).collect::<Vec<_>>())
    .bind(parts().map(|(r, _, _)| r.now_ms.timestamp()).collect::<Vec<_>>())
    .bind(replies.iter().map(|r| r.batch_id.as_str()).collect::<Vec<_>>())
    .bind(replies.iter().map(|r| r.attempts as i32).collect::<Vec<_>>())
    .bind(
        replies
            .iter()
            .map(|r| serde_json::Value::from_iter(r.parts.iter().map(|(id, _)| id.as_str())).to_string())
            .collect::<Vec<_>>(),
    )
    // Planned for each group's own arrays (see GROUP_PLANS).
    .persistent(false)
    .fetch_all(&pool)
    .await?;
    let mut by_batch: HashMap<BatchId, Vec<Entry>> = HashMap::new();
    for row in rows {
        by_batch
            .entry(row.batch_id)
            .or_default()
            .push(row.entry.into());
    }
    Ok(replies
        .iter()
        .map(|r| {
            let mut entries = by_batch.remove(&r.batch_id).unwrap_or_default();
            entries.sort_by_key(|e| e.id);
            entries
        })
        .collect())
}

/// How a batch ends without a complete reply: `failed` (with the parts that went
/// out and the platform's error) or `expired`.
struct Unsent<'a> {
    status: BatchStatus,
    attempts: u32,
    platform_ids: &'a [String],
    code: Option<i64>,
    message: &'a str,
}

impl Store {
    /// Records a claim (see [`open_batches`]), grouped with concurrent claims.
    pub async fn open_batch(&self, batch: NewBatch) -> Result<BatchRecord, StoreError> {
        self.opening.submit(batch).await
    }

    /// Makes the batch the answer of `message_ids` unless another batch already is
    /// (see [`commit_batches`]), grouped with concurrent batches; writes its claim
    /// too if [`Store::open_batch`] did not. Returns the ids it owns, in the
    /// batch's order, or the older batch it must wait behind.
    pub async fn begin_sending(
        &self,
        batch: &NewBatch,
        message_ids: &[i64],
        reply_text: &str,
    ) -> Result<CommitOutcome, StoreError> {
        let batch = NewBatch {
            message_ids: message_ids.to_vec(),
            ..batch.clone()
        };
        self.sending
            .submit(Commit {
                batch,
                text: reply_text.to_owned(),
                messages: None,
            })
            .await
    }

    /// [`Store::begin_sending`] for a reply of any messages: they are committed
    /// with the batch (`reply_messages`), so that a resume sends the same ones,
    /// and `reply_text` holds them as readable text. A reply of one text message
    /// is committed as its text alone.
    pub async fn begin_sending_reply(
        &self,
        batch: &NewBatch,
        message_ids: &[i64],
        reply: &Reply,
    ) -> Result<CommitOutcome, StoreError> {
        let text: Vec<String> = reply.messages.iter().map(describe).collect();
        let messages = match reply.messages.as_slice() {
            [] | [ReplyMessage::Text { .. }] => None,
            messages => Some(
                serde_json::to_string(messages)
                    .map_err(|e| StoreError::Database(sqlx::Error::Encode(Box::new(e))))?,
            ),
        };
        let batch = NewBatch {
            message_ids: message_ids.to_vec(),
            ..batch.clone()
        };
        self.sending
            .submit(Commit {
                batch,
                text: text.join("\n\n"),
                messages,
            })
            .await
    }

    /// Records a sent reply and its parts as outbound messages (see
    /// [`record_replies`]), grouped with concurrent replies.
    pub async fn record_sent(
        &self,
        conversation: &Conversation,
        batch_id: &BatchId,
        attempts: u32,
        parts: &[(String, String)],
        now_ms: UnixMs,
    ) -> Result<Vec<Entry>, StoreError> {
        self.sent
            .submit(SentReply {
                conversation: conversation.clone(),
                batch_id: batch_id.clone(),
                attempts,
                parts: parts.to_vec(),
                now_ms,
            })
            .await
    }

    /// Some parts went out before the batch was handed back: a resume skips them.
    pub async fn record_progress(
        &self,
        batch_id: &BatchId,
        attempts: u32,
        platform_ids: &[String],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE reply_batches
             SET attempts = attempts + $2, platform_message_ids = $3, updated_at = now()
             WHERE id = $1",
        )
        .bind(batch_id)
        .bind(attempts as i32)
        .bind(platform_ids)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The reply failed for good (or ran out of attempts); its messages will not be
    /// batched again.
    pub async fn mark_failed(
        &self,
        batch_id: &BatchId,
        attempts: u32,
        platform_ids: &[String],
        code: Option<i64>,
        message: &str,
    ) -> Result<(), StoreError> {
        let failed = Unsent {
            status: BatchStatus::Failed,
            attempts,
            platform_ids,
            code,
            message,
        };
        self.close_unsent(batch_id, failed).await
    }

    /// Closes a batch whose messages are past the channel's reply window: nothing
    /// was generated or sent, and its messages count as handled.
    pub async fn mark_expired(&self, batch_id: &BatchId, message: &str) -> Result<(), StoreError> {
        let expired = Unsent {
            status: BatchStatus::Expired,
            attempts: 0,
            platform_ids: &[],
            code: None,
            message,
        };
        self.close_unsent(batch_id, expired).await
    }

    /// Ends a batch with no (complete) reply, `failed` or `expired`, and gives it
    /// the messages no other batch owns.
    async fn close_unsent(&self, batch_id: &BatchId, unsent: Unsent<'_>) -> Result<(), StoreError> {
        let Unsent {
            status,
            attempts,
            platform_ids,
            code,
            message,
        } = unsent;
        // Its messages count as handled: without this the reconciler would batch
        // them again forever (the same refusal each time), and every later message
        // of the conversation would fail along with them.
        sqlx::query(
            "WITH closed AS (
                 UPDATE reply_batches
                 SET status = $6, attempts = attempts + $2, platform_message_ids = $3,
                     error_code = $4, error_message = $5, updated_at = now()
                 WHERE id = $1
                 RETURNING message_ids)
             UPDATE conversation_messages SET batch_id = $1
             WHERE id IN (SELECT unnest(message_ids) FROM closed) AND batch_id IS NULL",
        )
        .bind(batch_id)
        .bind(attempts as i32)
        .bind(platform_ids)
        .bind(code.map(|c| c.to_string()))
        .bind(message)
        .bind(status.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records what generating the batch's reply took (see [`Generation`]).
    pub async fn record_generation(
        &self,
        batch_id: &BatchId,
        generation: &Generation,
    ) -> Result<(), StoreError> {
        let tokens = |t: Option<u64>| t.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
        sqlx::query(
            "UPDATE reply_batches
             SET responder = $2, model = $3, prompt_tokens = $4, completion_tokens = $5,
                 generation_ms = $6, handoff = $7, updated_at = now()
             WHERE id = $1",
        )
        .bind(batch_id)
        .bind(&generation.responder)
        .bind(&generation.model)
        .bind(tokens(generation.prompt_tokens))
        .bind(tokens(generation.completion_tokens))
        .bind(i64::try_from(generation.elapsed.as_millis()).unwrap_or(i64::MAX))
        .bind(generation.handoff)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A failed batch's FALLBACK_REPLY went out: its platform ids and send requests.
    pub async fn record_fallback(
        &self,
        batch_id: &BatchId,
        attempts: u32,
        platform_ids: &[String],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE reply_batches
             SET fallback = true, attempts = attempts + $2, platform_message_ids = $3,
                 updated_at = now()
             WHERE id = $1",
        )
        .bind(batch_id)
        .bind(attempts as i32)
        .bind(platform_ids)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Unfinished batches that own messages, untouched for longer than `min_age`:
    /// `sending` ones, and `generating` ones that own some of theirs (another batch
    /// answered the rest, and this one was to be generated again for its own).
    /// Normally a live worker in a long retry or generation, or a handed-back batch
    /// waiting for its claim; after Redis lost its data, messages nobody will answer
    /// unless the batch is put back, since the unanswered-message pass skips
    /// messages a batch owns (the reconciler asks Redis which is which).
    pub async fn stale_owners(
        &self,
        min_age: Duration,
        limit: i64,
    ) -> Result<Vec<StaleOwner>, StoreError> {
        let rows: Vec<StaleRow> = sqlx::query_as(
            "SELECT id, channel, account_id, contact_id, first_message_at, message_ids
             FROM reply_batches b
             WHERE status IN ('sending', 'generating')
               AND updated_at < now() - make_interval(secs => $1)
               AND (status = 'sending' OR EXISTS (
                   SELECT 1 FROM conversation_messages m
                   WHERE m.id = ANY(b.message_ids) AND m.batch_id = b.id))
             ORDER BY updated_at
             LIMIT $2",
        )
        .bind(min_age.as_secs_f64())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut stale = Vec::with_capacity(rows.len());
        for row in rows {
            let StaleRow {
                id,
                channel,
                account_id: account,
                contact_id: contact,
                first_message_at: first,
                message_ids,
            } = row;
            let Some(channel) = ChannelKind::parse(&channel) else {
                continue;
            };
            stale.push(StaleOwner {
                batch_id: id,
                conversation: Conversation::new(channel, account, contact),
                started_ms: UnixMs(first.map_or(0, |t| t.timestamp_millis())),
                entries: self.entries(&message_ids).await?,
            });
        }
        Ok(stale)
    }

    /// The batch, by id.
    pub async fn batch(&self, batch_id: &str) -> Result<Option<BatchRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM reply_batches WHERE id = $1")
            .bind(batch_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The newest batches, for the admin page.
    pub async fn recent_batches(&self, limit: i64) -> Result<Vec<BatchRow>, StoreError> {
        Ok(
            sqlx::query_as("SELECT * FROM reply_batches ORDER BY claimed_at DESC LIMIT $1")
                .bind(limit)
                .fetch_all(&self.pool)
                .await?,
        )
    }
}
