//! One typed wrapper per script: the KEYS and ARGV it passes, and its reply decoded.
//!
//! Building a call is pure, so a unit test checks each against the arity its
//! script's header documents; [`super::RedisBatches`] runs them.

use super::BatchError;
use super::id::{BatchId, ClaimToken};
use super::keys::ConversationKeys;
use super::policy::{Policy, ms};
use crate::message::{Entry, MessageKind};
use crate::time::UnixMs;
use fred::types::Value;

/// A script call: its KEYS and ARGV.
pub(crate) struct Call {
    pub keys: Vec<String>,
    pub args: Vec<Value>,
}

/// How a stored message takes part in batching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendMode {
    /// History only: does not start or extend a batch (reactions, by default).
    HistoryOnly = 0,
    /// A message: joins the batch and slides its deadline.
    Message = 1,
    /// A menu choice: joins the batch, due after the choice grace.
    Choice = 2,
}

impl AppendMode {
    /// The mode a message of this kind gets under the policy.
    pub fn for_kind(kind: MessageKind, policy: &Policy) -> Self {
        match kind {
            MessageKind::Choice => AppendMode::Choice,
            MessageKind::Reaction if !policy.reactions_trigger => AppendMode::HistoryOnly,
            MessageKind::Reply => AppendMode::HistoryOnly,
            _ => AppendMode::Message,
        }
    }

    /// Whether a message appended this way needs a reply.
    pub fn answerable(self) -> bool {
        self != AppendMode::HistoryOnly
    }
}

/// What append.lua did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// History was missing, or its hydrate has not completed: hydrate it from the
    /// database.
    pub hydrate: bool,
    /// The id was already in the batch or in flight (reconcile mode): nothing changed.
    pub tracked: bool,
    /// When the batch is due, unix ms (0 for history only).
    pub deadline_ms: i64,
    /// Messages in the collecting batch.
    pub batch_len: i64,
    /// The conversation is paused for a human: the message went to history only.
    pub paused: bool,
}

/// What claim.lua did.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimOutcome {
    /// Not due, or another claimer took it first.
    NotDue,
    /// Locked by a live worker; retried at this time.
    Locked {
        /// Unix ms of the lock's expiry.
        retry_at_ms: i64,
    },
    /// Nothing to answer; removed from the agenda.
    Empty,
    /// Paused for a human: nobody claims it; removed from the agenda.
    Paused,
    /// Claimed: the batch is ours until ack or requeue.
    Claimed(Claim),
}

/// A claimed batch, as claim.lua returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The batch id (same across crash resumes and supersedes).
    pub batch_id: BatchId,
    /// The claim token: ack, extend and requeue need it.
    pub token: ClaimToken,
    /// How many times this batch has been claimed (1 unless resumed or superseded).
    pub claims: i64,
    /// How many times this batch has been superseded.
    pub supersedes: i64,
    /// The batch's first message (for the max-wait cap).
    pub started_ms: UnixMs,
    /// The agenda score that made it due (claim lag = claim time - this).
    pub due_ms: UnixMs,
    /// The messages, oldest first.
    pub entries: Vec<Entry>,
    /// The conversation's history as Redis held it at the claim, oldest first; empty
    /// when Redis had none, or had one still waiting for its hydrate (then the
    /// worker reads PostgreSQL). It includes the batch's own messages.
    pub history: Vec<Entry>,
}

/// Whether a claim started its batch or took up one claimed before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimKind {
    /// The batch's first claim: no worker has recorded anything for it yet.
    New,
    /// A batch claimed before (crash, lease run out, supersede, hand-back, or put
    /// back by the reconciler): its record in PostgreSQL says how far it got.
    Resumed,
}

impl Claim {
    /// New or resumed. claim.lua gives a new batch this claim's token as its id
    /// (its ARGV[3]) and keeps the id of a batch claimed before.
    pub fn kind(&self) -> ClaimKind {
        if self.batch_id.started_by(&self.token) {
            ClaimKind::New
        } else {
            ClaimKind::Resumed
        }
    }
}

/// What extend.lua did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtendOutcome {
    /// The lease is still ours (and now extended).
    pub held: bool,
    /// Messages that arrived since the claim.
    pub pending: i64,
    /// The conversation was paused for a human: drop the batch without sending.
    pub paused: bool,
}

/// Why a batch is given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequeueMode {
    /// Shutdown: due at once, for any instance.
    HandBack = 0,
    /// New messages arrived: due at their deadline, capped by max wait.
    Supersede = 1,
}

/// What ack.lua did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The token no longer matches: another worker owns the batch; nothing changed.
    Stale,
    /// Done; the conversation left the agenda.
    Done,
    /// Done; messages that arrived meanwhile are due at this time.
    Rescheduled {
        /// Unix ms.
        next_due_ms: i64,
    },
}

fn int(v: i64) -> Value {
    Value::Integer(v)
}

fn text(s: impl Into<String>) -> Value {
    Value::String(s.into().into())
}

fn time(t: UnixMs) -> Value {
    int(t.ms())
}

/// Appends entries as JSON arguments (the variadic `ARGV[n..]` of a script).
fn push_entries(args: &mut Vec<Value>, entries: &[Entry]) -> Result<(), BatchError> {
    for entry in entries {
        args.push(text(serde_json::to_string(entry)?));
    }
    Ok(())
}

pub(crate) fn append_call(
    keys: &ConversationKeys,
    policy: &Policy,
    now: i64,
    entry: &Entry,
    mode: AppendMode,
    reconcile: bool,
) -> Result<Call, BatchError> {
    Ok(Call {
        keys: vec![
            keys.history.clone(),
            keys.msgs.clone(),
            keys.deadline.clone(),
            keys.state.clone(),
            keys.lock.clone(),
            keys.inflight.clone(),
            keys.agenda.clone(),
            keys.mode.clone(),
        ],
        args: vec![
            int(now),
            text(serde_json::to_string(entry)?),
            int(entry.id),
            int(entry.ts),
            int(mode as i64),
            int(ms(policy.window)),
            int(ms(policy.max_wait)),
            int(policy.max_messages.into()),
            int(ms(policy.choice_grace)),
            int(ms(policy.ttl)),
            int(policy.history_limit.into()),
            text(&keys.member),
            int(reconcile.into()),
        ],
    })
}

pub(crate) fn hydrate_call(
    keys: &ConversationKeys,
    policy: &Policy,
    rows: &[Entry],
) -> Result<Call, BatchError> {
    let mut args = vec![int(ms(policy.ttl)), int(policy.history_limit.into())];
    push_entries(&mut args, rows)?;
    Ok(Call {
        keys: vec![keys.history.clone(), keys.state.clone()],
        args,
    })
}

/// KEYS of requeue.lua, and claim.lua's first six: both move a batch between msgs
/// and inflight.
fn claim_keys(keys: &ConversationKeys) -> Vec<String> {
    vec![
        keys.agenda.clone(),
        keys.msgs.clone(),
        keys.inflight.clone(),
        keys.lock.clone(),
        keys.state.clone(),
        keys.deadline.clone(),
    ]
}

pub(crate) fn claim_call(
    keys: &ConversationKeys,
    policy: &Policy,
    now: UnixMs,
    token: &ClaimToken,
) -> Call {
    // The history rides along in the reply: the worker's context needs it at once.
    let mut call_keys = claim_keys(keys);
    call_keys.push(keys.history.clone());
    call_keys.push(keys.mode.clone());
    Call {
        keys: call_keys,
        args: vec![
            time(now),
            text(&keys.member),
            text(token.as_str()),
            int(ms(policy.lease)),
            int(ms(policy.ttl)),
        ],
    }
}

pub(crate) fn extend_call(
    keys: &ConversationKeys,
    policy: &Policy,
    now: UnixMs,
    token: &ClaimToken,
) -> Call {
    Call {
        keys: vec![
            keys.agenda.clone(),
            keys.lock.clone(),
            keys.msgs.clone(),
            keys.inflight.clone(),
            keys.state.clone(),
            keys.mode.clone(),
        ],
        args: vec![
            time(now),
            text(&keys.member),
            text(token.as_str()),
            int(ms(policy.lease)),
            int(ms(policy.ttl)),
        ],
    }
}

pub(crate) fn requeue_call(
    keys: &ConversationKeys,
    policy: &Policy,
    now: UnixMs,
    token: &ClaimToken,
    mode: RequeueMode,
) -> Call {
    Call {
        keys: claim_keys(keys),
        args: vec![
            time(now),
            text(&keys.member),
            text(token.as_str()),
            int(mode as i64),
            int(ms(policy.max_wait)),
            int(ms(policy.ttl)),
            int(policy.max_messages.into()),
        ],
    }
}

pub(crate) fn ack_call(
    keys: &ConversationKeys,
    policy: &Policy,
    now: UnixMs,
    token: &ClaimToken,
    forget: bool,
    reply: &[Entry],
) -> Result<Call, BatchError> {
    let mut args = vec![
        time(now),
        text(&keys.member),
        text(token.as_str()),
        int(policy.history_limit.into()),
        int(ms(policy.ttl)),
        int(forget.into()),
    ];
    push_entries(&mut args, reply)?;
    Ok(Call {
        keys: vec![
            keys.agenda.clone(),
            keys.inflight.clone(),
            keys.lock.clone(),
            keys.state.clone(),
            keys.msgs.clone(),
            keys.deadline.clone(),
            keys.history.clone(),
        ],
        args,
    })
}

pub(crate) fn restore_call(
    keys: &ConversationKeys,
    policy: &Policy,
    now: UnixMs,
    batch_id: &BatchId,
    started: UnixMs,
    entries: &[Entry],
) -> Result<Call, BatchError> {
    let mut args = vec![
        time(now),
        text(&keys.member),
        text(batch_id.as_str()),
        time(started),
        int(ms(policy.ttl)),
    ];
    push_entries(&mut args, entries)?;
    Ok(Call {
        keys: vec![
            keys.agenda.clone(),
            keys.inflight.clone(),
            keys.lock.clone(),
            keys.state.clone(),
        ],
        args,
    })
}

pub(crate) fn behind_call(
    keys: &ConversationKeys,
    policy: &Policy,
    now: UnixMs,
    token: &ClaimToken,
    older: &BatchId,
    started: UnixMs,
    entries: &[Entry],
) -> Result<Call, BatchError> {
    let mut args = vec![
        time(now),
        text(&keys.member),
        text(token.as_str()),
        text(older.as_str()),
        time(started),
        int(ms(policy.ttl)),
    ];
    push_entries(&mut args, entries)?;
    Ok(Call {
        keys: vec![
            keys.agenda.clone(),
            keys.msgs.clone(),
            keys.inflight.clone(),
            keys.lock.clone(),
            keys.state.clone(),
            keys.deadline.clone(),
        ],
        args,
    })
}

pub(crate) fn pause_call(keys: &ConversationKeys, now: UnixMs) -> Call {
    Call {
        keys: vec![keys.mode.clone()],
        args: vec![time(now)],
    }
}

pub(crate) fn resume_call(
    keys: &ConversationKeys,
    policy: &Policy,
    now: UnixMs,
    due: UnixMs,
    entries: &[Entry],
) -> Result<Call, BatchError> {
    let mut args = vec![
        time(now),
        text(&keys.member),
        time(due),
        int(ms(policy.ttl)),
    ];
    push_entries(&mut args, entries)?;
    Ok(Call {
        keys: vec![
            keys.mode.clone(),
            keys.msgs.clone(),
            keys.deadline.clone(),
            keys.state.clone(),
            keys.lock.clone(),
            keys.inflight.clone(),
            keys.agenda.clone(),
        ],
        args,
    })
}

/// What resume.lua did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeOutcome {
    /// The mode key existed (Redis knew of the pause).
    pub was_paused: bool,
    /// Messages now collecting as the next batch.
    pub batch_len: i64,
    /// The agenda score set, unix ms; `None` when nothing was scheduled.
    pub scheduled_ms: Option<i64>,
}

pub(crate) fn decode_resume(reply: Vec<Value>) -> Result<ResumeOutcome, BatchError> {
    let [was_paused, batch_len, scheduled] = ints::<3>("resume.lua", &reply)?;
    Ok(ResumeOutcome {
        was_paused: was_paused == 1,
        batch_len,
        scheduled_ms: (scheduled > 0).then_some(scheduled),
    })
}

fn bad(script: &'static str, detail: impl Into<String>) -> BatchError {
    BatchError::Reply {
        script,
        detail: detail.into(),
    }
}

fn ints<const N: usize>(script: &'static str, reply: &[Value]) -> Result<[i64; N], BatchError> {
    let mut out = [0; N];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = reply
            .get(i)
            .and_then(Value::as_i64)
            .ok_or_else(|| bad(script, format!("item {i} is not an integer: {reply:?}")))?;
    }
    Ok(out)
}

pub(crate) fn decode_append(reply: Vec<Value>) -> Result<AppendOutcome, BatchError> {
    let [status, deadline_ms, batch_len, paused] = ints::<4>("append.lua", &reply)?;
    Ok(AppendOutcome {
        hydrate: status == 1,
        tracked: status == 2,
        deadline_ms,
        batch_len,
        paused: paused == 1,
    })
}

/// JSON entries of claim.lua's reply.
fn claimed_entries(raw: &[Value]) -> Result<Vec<Entry>, BatchError> {
    raw.iter()
        .map(|v| {
            let raw = v
                .as_str()
                .ok_or_else(|| bad("claim.lua", "entry is not a string"))?;
            Ok(serde_json::from_str(&raw)?)
        })
        .collect()
}

pub(crate) fn decode_claim(
    reply: Vec<Value>,
    token: &ClaimToken,
) -> Result<ClaimOutcome, BatchError> {
    let [status] = ints::<1>("claim.lua", &reply)?;
    match status {
        0 => Ok(ClaimOutcome::NotDue),
        1 => {
            let [_, retry_at_ms] = ints::<2>("claim.lua", &reply)?;
            Ok(ClaimOutcome::Locked { retry_at_ms })
        }
        2 => Ok(ClaimOutcome::Empty),
        4 => Ok(ClaimOutcome::Paused),
        3 => {
            let batch_id = reply
                .get(1)
                .and_then(Value::as_string)
                .ok_or_else(|| bad("claim.lua", "no batch id"))?;
            let [claims, supersedes, started_ms, due_ms, n_entries] =
                ints::<5>("claim.lua", &reply[2..])?;
            let rest = &reply[7..];
            let split = usize::try_from(n_entries)
                .ok()
                .filter(|&n| n <= rest.len())
                .ok_or_else(|| {
                    bad(
                        "claim.lua",
                        format!("{n_entries} entries announced, {} items follow", rest.len()),
                    )
                })?;
            let (entries, history) = rest.split_at(split);
            let (entries, history) = (claimed_entries(entries)?, claimed_entries(history)?);
            Ok(ClaimOutcome::Claimed(Claim {
                batch_id: BatchId::from(batch_id),
                token: token.clone(),
                claims,
                supersedes,
                started_ms: UnixMs(started_ms),
                due_ms: UnixMs(due_ms),
                entries,
                history,
            }))
        }
        other => Err(bad("claim.lua", format!("unknown status {other}"))),
    }
}

pub(crate) fn decode_extend(reply: Vec<Value>) -> Result<ExtendOutcome, BatchError> {
    let [status, pending] = ints::<2>("extend.lua", &reply)?;
    Ok(ExtendOutcome {
        held: status == 1 || status == 2,
        pending,
        paused: status == 2,
    })
}

pub(crate) fn decode_requeue(reply: Vec<Value>) -> Result<Option<i64>, BatchError> {
    let [status, due] = ints::<2>("requeue.lua", &reply)?;
    Ok((status == 1).then_some(due))
}

pub(crate) fn decode_ack(reply: Vec<Value>) -> Result<AckOutcome, BatchError> {
    let [status, due] = ints::<2>("ack.lua", &reply)?;
    match status {
        0 => Ok(AckOutcome::Stale),
        1 => Ok(AckOutcome::Done),
        2 => Ok(AckOutcome::Rescheduled { next_due_ms: due }),
        other => Err(bad("ack.lua", format!("unknown status {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::keys::KeySpace;
    use crate::batch::scripts::Scripts;
    use crate::message::Direction;
    use std::time::Duration;

    fn policy() -> Policy {
        Policy {
            window: Duration::from_secs(30),
            max_wait: Duration::from_secs(120),
            max_messages: 50,
            choice_grace: Duration::from_secs(1),
            ttl: Duration::from_secs(3600),
            history_limit: 200,
            lease: Duration::from_secs(20),
            reactions_trigger: false,
        }
    }

    fn entry() -> Entry {
        Entry {
            id: 1,
            ts: 1_767_261_660_000,
            dir: Direction::Inbound,
            kind: MessageKind::Text,
            external_id: "wamid.1".into(),
            text: "hello".into(),
        }
    }

    fn assert_arity(script: &crate::batch::scripts::LuaScript, call: &Call, variadic: bool) {
        let (keys, argv) = script.documented_arity();
        assert_eq!(call.keys.len(), keys, "{} KEYS", script.name);
        if variadic {
            assert!(call.args.len() >= argv - 1, "{} ARGV", script.name);
        } else {
            assert_eq!(call.args.len(), argv, "{} ARGV", script.name);
        }
    }

    #[test]
    fn every_wrapper_passes_the_keys_and_argv_its_script_documents() {
        let scripts = Scripts::new();
        let keys = KeySpace::new("conv:", 1, false).for_member("whatsapp:1:2");
        let p = policy();
        let e = entry();
        assert_arity(
            &scripts.append,
            &append_call(&keys, &p, 1, &e, AppendMode::Message, false).unwrap(),
            false,
        );
        assert_arity(
            &scripts.hydrate,
            &hydrate_call(&keys, &p, std::slice::from_ref(&e)).unwrap(),
            true,
        );
        let (now, t) = (UnixMs(1), ClaimToken::from("t"));
        assert_arity(&scripts.claim, &claim_call(&keys, &p, now, &t), false);
        assert_arity(&scripts.extend, &extend_call(&keys, &p, now, &t), false);
        assert_arity(
            &scripts.requeue,
            &requeue_call(&keys, &p, now, &t, RequeueMode::HandBack),
            false,
        );
        assert_arity(
            &scripts.ack,
            &ack_call(&keys, &p, now, &t, false, std::slice::from_ref(&e)).unwrap(),
            true,
        );
        assert_arity(
            &scripts.restore,
            &restore_call(&keys, &p, now, &"b".into(), now, std::slice::from_ref(&e)).unwrap(),
            true,
        );
        assert_arity(&scripts.pause, &pause_call(&keys, now), false);
        assert_arity(
            &scripts.resume,
            &resume_call(&keys, &p, now, now, &[e]).unwrap(),
            true,
        );
    }

    #[test]
    fn a_claim_reply_splits_into_the_batch_and_the_history_after_it() {
        let json = |e: &Entry| text(serde_json::to_string(e).unwrap());
        let (batch, older) = (entry(), Entry { id: 0, ..entry() });
        let claimed = |n_entries: i64, items: &[&Entry]| {
            let mut reply = vec![int(3), text("b"), int(1), int(0), int(5), int(6)];
            reply.push(int(n_entries));
            reply.extend(items.iter().map(|e| json(e)));
            decode_claim(reply, &"t".into())
        };
        let Ok(ClaimOutcome::Claimed(claim)) = claimed(1, &[&batch, &older, &batch]) else {
            panic!("expected a claim");
        };
        assert_eq!(claim.entries, vec![batch.clone()]);
        assert_eq!(claim.history, vec![older, batch.clone()]);
        assert!(
            claimed(2, &[&batch]).is_err(),
            "more entries announced than sent"
        );
    }

    #[test]
    fn a_claim_is_new_when_claim_lua_named_the_batch_after_its_token() {
        let reply = |id: &str| vec![int(3), text(id), int(1), int(0), int(5), int(6), int(0)];
        let kind = |id: &str| match decode_claim(reply(id), &"t".into()) {
            Ok(ClaimOutcome::Claimed(claim)) => claim.kind(),
            other => panic!("expected a claim: {other:?}"),
        };
        assert_eq!(kind("t"), ClaimKind::New);
        assert_eq!(kind("older"), ClaimKind::Resumed);
    }

    #[test]
    fn reactions_only_reach_history_unless_the_policy_counts_them() {
        let mut p = policy();
        assert_eq!(
            AppendMode::for_kind(MessageKind::Reaction, &p),
            AppendMode::HistoryOnly
        );
        p.reactions_trigger = true;
        assert_eq!(
            AppendMode::for_kind(MessageKind::Reaction, &p),
            AppendMode::Message
        );
        assert_eq!(
            AppendMode::for_kind(MessageKind::Choice, &p),
            AppendMode::Choice
        );
        assert_eq!(
            AppendMode::for_kind(MessageKind::Text, &p),
            AppendMode::Message
        );
    }
}
