//! Read-only views of the Redis state for the console and `lull inspect`: one
//! conversation's keys, and a page of the agenda with each row's counts. Nothing
//! here writes; each view is one pipelined round trip (the agenda page one per
//! chunk of rows), never a round trip per conversation.
//!
//! State read: a conversation's `history`, `msgs`, `inflight`, `deadline`, `lock`
//! and `state` keys and its agenda score (see [`super::keys`]).

use super::BatchError;
use super::redis::RedisBatches;
use crate::message::{Conversation, Entry};
use fred::interfaces::{HashesInterface, KeysInterface, ListInterface, SortedSetsInterface};
use fred::types::Value;
use std::collections::HashMap;

/// How many agenda rows one pipeline reads when a filter has to look at each.
const CHUNK: usize = 500;
/// How far down the agenda a filtered page looks before it stops.
const SCAN_LIMIT: i64 = 50_000;

/// What Redis holds of one conversation.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RedisState {
    /// Its agenda score (due time, or the lease's end while claimed), unix ms.
    pub agenda_ms: Option<i64>,
    /// When the collecting batch is due, unix ms.
    pub deadline_ms: Option<i64>,
    /// The batch being collected, oldest first.
    pub collecting: Vec<Entry>,
    /// The claimed batch, oldest first.
    pub in_flight: Vec<Entry>,
    /// Whether a worker holds the lock.
    pub locked: bool,
    /// The lock's remaining lease, ms.
    pub lock_ttl_ms: Option<i64>,
    /// The batch id in `state` (the claimed one).
    pub batch_id: Option<String>,
    /// First message of the collecting batch, unix ms.
    pub started_ms: Option<i64>,
    /// Claims of the current batch.
    pub claims: Option<i64>,
    /// Supersedes of the current batch.
    pub supersedes: Option<i64>,
    /// Entries in history.
    pub history_len: i64,
    /// Remaining TTL of each key that exists, ms (`history`, `msgs`, `inflight`,
    /// `deadline`, `state`).
    pub ttl_ms: HashMap<&'static str, i64>,
}

impl RedisState {
    /// Whether Redis holds anything of the conversation.
    pub fn is_empty(&self) -> bool {
        self.agenda_ms.is_none()
            && self.collecting.is_empty()
            && self.in_flight.is_empty()
            && !self.locked
            && self.history_len == 0
            && self.ttl_ms.is_empty()
    }
}

/// Which agenda rows a page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgendaFilter {
    /// Every conversation on the agenda.
    All,
    /// Collecting, not claimed: waiting for its deadline.
    Waiting,
    /// Claimed by a worker, or a claimed batch waiting to be resumed.
    InFlight,
}

/// A conversation on the agenda.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AgendaRow {
    /// `{channel}:{account}:{contact}`.
    pub conversation: String,
    /// Its agenda score, unix ms.
    pub due_ms: i64,
    /// Messages collecting.
    pub collecting: i64,
    /// Messages claimed.
    pub in_flight: i64,
    /// Whether a worker holds it.
    pub locked: bool,
    /// First message of the collecting batch, unix ms.
    pub started_ms: Option<i64>,
}

/// One page of the agenda, earliest first.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AgendaPage {
    /// Conversations on every agenda (all states).
    pub on_agenda: i64,
    /// The rows of this page.
    pub rows: Vec<AgendaRow>,
    /// Whether rows past this page match too.
    pub more: bool,
}

fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Integer(i) => Some(*i),
        Value::Double(f) => Some(*f as i64),
        Value::String(s) => s.parse::<f64>().ok().map(|f| f as i64),
        Value::Bytes(b) => std::str::from_utf8(b)
            .ok()?
            .parse::<f64>()
            .ok()
            .map(|f| f as i64),
        _ => None,
    }
}

fn entries(value: Value) -> Result<Vec<Entry>, BatchError> {
    value
        .into_array()
        .into_iter()
        .filter_map(|v| v.into_string())
        .map(|raw| serde_json::from_str(&raw).map_err(BatchError::from))
        .collect()
}

/// A key's PTTL as a remaining TTL: none when the key is missing (-2); -1 (no
/// TTL) is kept.
fn ttl(value: &Value) -> Option<i64> {
    int(value).filter(|t| *t != -2)
}

impl RedisBatches {
    /// Everything Redis holds of one conversation, in one pipelined round trip.
    pub async fn conversation_state(
        &self,
        conversation: &Conversation,
    ) -> Result<RedisState, BatchError> {
        let keys = self.keys().conversation(conversation);
        let pipe = self.pool().next().pipeline();
        let _: () = pipe.zscore(&keys.agenda, &keys.member).await?;
        let _: () = pipe.get(&keys.deadline).await?;
        let _: () = pipe.lrange(&keys.msgs, 0, -1).await?;
        let _: () = pipe.lrange(&keys.inflight, 0, -1).await?;
        let _: () = pipe.pttl(&keys.lock).await?;
        let _: () = pipe.hgetall(&keys.state).await?;
        let _: () = pipe.llen(&keys.history).await?;
        let names = ["history", "msgs", "inflight", "deadline", "state"];
        for key in [
            &keys.history,
            &keys.msgs,
            &keys.inflight,
            &keys.deadline,
            &keys.state,
        ] {
            let _: () = pipe.pttl(key).await?;
        }
        let mut replies: Vec<Value> = pipe.all().await?;
        let ttls = replies.split_off(7);
        let mut it = replies.into_iter();
        let mut next = || it.next().unwrap_or(Value::Null);
        let agenda_ms = int(&next());
        let deadline_ms = int(&next());
        let collecting = entries(next())?;
        let in_flight = entries(next())?;
        let lock_ttl_ms = ttl(&next());
        let state: HashMap<String, String> = next().convert().unwrap_or_default();
        let history_len = int(&next()).unwrap_or(0);
        let field = |name: &str| state.get(name).and_then(|v| v.parse::<i64>().ok());
        Ok(RedisState {
            agenda_ms,
            deadline_ms,
            collecting,
            in_flight,
            locked: lock_ttl_ms.is_some(),
            lock_ttl_ms,
            batch_id: state.get("batch").cloned(),
            started_ms: field("started"),
            claims: field("claims"),
            supersedes: field("supersedes"),
            history_len,
            ttl_ms: names
                .into_iter()
                .zip(ttls.iter())
                .filter_map(|(name, value)| ttl(value).map(|t| (name, t)))
                .collect(),
        })
    }

    /// One page of the agenda, earliest first: `offset` rows of the filter skipped,
    /// at most `limit` returned. The counts of each row come from one pipeline per
    /// chunk of rows.
    pub async fn agenda_page(
        &self,
        filter: AgendaFilter,
        offset: usize,
        limit: usize,
    ) -> Result<AgendaPage, BatchError> {
        let mut on_agenda = 0;
        // Each agenda's first rows, merged: the first `reach` of all of them are
        // among the first `reach` of each.
        let reach = match filter {
            AgendaFilter::All => (offset + limit + 1) as i64,
            _ => SCAN_LIMIT,
        };
        let mut members: Vec<(String, f64)> = Vec::new();
        for (_, agenda) in self.keys().agendas() {
            let client = self.pool().next();
            on_agenda += client.zcard::<i64, _>(&agenda).await?;
            let rows: Vec<(String, f64)> = client
                .zrange(&agenda, 0, reach - 1, None, false, None, true)
                .await?;
            members.extend(rows);
        }
        members.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        let (mut rows, mut skipped, mut more) = (Vec::new(), 0, false);
        let candidates = match filter {
            AgendaFilter::All => {
                let end = members.len().min(offset + limit);
                more = members.len() > offset + limit;
                members
                    .get(offset.min(end)..end)
                    .unwrap_or_default()
                    .to_vec()
            }
            _ => members,
        };
        for chunk in candidates.chunks(CHUNK) {
            for row in self.agenda_rows(chunk).await? {
                let keep = match filter {
                    AgendaFilter::All => true,
                    AgendaFilter::Waiting => !row.locked && row.in_flight == 0,
                    AgendaFilter::InFlight => row.locked || row.in_flight > 0,
                };
                if !keep || filter != AgendaFilter::All && skipped < offset {
                    skipped += usize::from(keep);
                    continue;
                }
                if rows.len() == limit {
                    more = true;
                    break;
                }
                rows.push(row);
            }
            if more {
                break;
            }
        }
        Ok(AgendaPage {
            on_agenda,
            rows,
            more,
        })
    }

    /// The counts of agenda members, in one pipeline.
    async fn agenda_rows(&self, members: &[(String, f64)]) -> Result<Vec<AgendaRow>, BatchError> {
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let pipe = self.pool().next().pipeline();
        for (member, _) in members {
            let keys = self.keys().for_member(member);
            let _: () = pipe.llen(&keys.msgs).await?;
            let _: () = pipe.llen(&keys.inflight).await?;
            let _: () = pipe.exists(&keys.lock).await?;
            let _: () = pipe.hget(&keys.state, "started").await?;
        }
        let replies: Vec<Value> = pipe.all().await?;
        Ok(members
            .iter()
            .zip(replies.chunks(4))
            .map(|((member, score), counts)| AgendaRow {
                conversation: member.clone(),
                due_ms: *score as i64,
                collecting: int(&counts[0]).unwrap_or(0),
                in_flight: int(&counts[1]).unwrap_or(0),
                locked: int(&counts[2]).unwrap_or(0) > 0,
                started_ms: int(&counts[3]),
            })
            .collect())
    }
}
