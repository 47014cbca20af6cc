//! State tests of the Lua scripts, one module per script: seed a conversation's
//! keys, run the script through [`RedisBatches`] with an explicit `now` (no sleeping),
//! then read back every key the script may touch and compare it, with the reply.
//!
//! Every test gets its own key prefix on the shared Redis; dropping a [`Rig`] (also
//! when a test fails) deletes its conversation's keys and agenda entry.

mod ack;
mod append;
mod behind;
mod claim;
mod extend;
mod handoff;
mod hydrate;
mod requeue;

use crate::helpers::{redis_url, unique};
use fred::clients::Client;
use fred::interfaces::{
    ClientLike, HashesInterface, KeysInterface, ListInterface, SortedSetsInterface,
};
use fred::types::Expiration;
use lull::batch::{
    AppendMode, AppendOutcome, Claim, ClaimOutcome, ClaimToken, ConversationKeys, Policy,
    RedisBatches,
};
use lull::message::{ChannelKind, Conversation, Direction, Entry, MessageKind};
use lull::time::UnixMs;
use std::collections::BTreeMap;
use std::time::Duration;

/// An arbitrary "now" the tests count from (2026-01-01T10:01:00Z).
pub const T0: i64 = 1_767_261_660_000;
/// Sliding window, ms.
pub const WINDOW: i64 = 1_000;
/// Cap after a batch's first message, ms.
pub const MAX_WAIT: i64 = 5_000;
/// Delay after a menu choice, ms.
pub const GRACE: i64 = 100;
/// Lifetime of a conversation's keys, ms.
pub const TTL: i64 = 60_000;
/// Lease of a claim, ms.
pub const LEASE: i64 = 2_000;
/// Entries kept in history.
pub const HISTORY_LIMIT: usize = 5;
/// TTL given to keys by [`Rig::pin_ttls`]: far from both TTL and LEASE, so any
/// refresh by a script shows, and long enough that nothing expires mid-test.
pub const PINNED: i64 = 30_000;

/// The policy every script test runs under.
pub fn policy() -> Policy {
    Policy {
        window: Duration::from_millis(WINDOW as u64),
        max_wait: Duration::from_millis(MAX_WAIT as u64),
        max_messages: 3,
        choice_grace: Duration::from_millis(GRACE as u64),
        ttl: Duration::from_millis(TTL as u64),
        history_limit: HISTORY_LIMIT as u32,
        lease: Duration::from_millis(LEASE as u64),
        reactions_trigger: false,
    }
}

/// An inbound text message with database id `id` sent at `ts`.
pub fn msg(id: i64, ts: i64) -> Entry {
    Entry {
        id,
        ts,
        dir: Direction::Inbound,
        kind: MessageKind::Text,
        external_id: format!("wamid.{id}"),
        text: format!("message {id}"),
    }
}

/// One part of our bot's reply.
pub fn bot(id: i64, ts: i64) -> Entry {
    Entry {
        id,
        ts,
        dir: Direction::Outbound,
        kind: MessageKind::Reply,
        external_id: format!("wamid.out{id}"),
        text: format!("reply {id}"),
    }
}

/// The state hash as the scripts write it: every value a decimal string or a token.
pub fn state(fields: &[(&str, &dyn ToString)]) -> BTreeMap<String, String> {
    fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.to_string()))
        .collect()
}

/// The value of every key a script may touch. A missing list reads as empty (Redis
/// never keeps an empty list), a missing string or score as `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub history: Vec<Entry>,
    pub msgs: Vec<Entry>,
    pub inflight: Vec<Entry>,
    pub deadline: Option<i64>,
    pub lock: Option<String>,
    pub state: BTreeMap<String, String>,
    /// The conversation's score on its agenda.
    pub score: Option<i64>,
}

/// PTTL of every key of a conversation: -2 missing, -1 no expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttls {
    pub history: i64,
    pub msgs: i64,
    pub inflight: i64,
    pub deadline: i64,
    pub lock: i64,
    pub state: i64,
}

impl Ttls {
    fn named(&self) -> [(&'static str, i64); 6] {
        [
            ("history", self.history),
            ("msgs", self.msgs),
            ("inflight", self.inflight),
            ("deadline", self.deadline),
            ("lock", self.lock),
            ("state", self.state),
        ]
    }
}

/// Asserts a PTTL was just set to `full` ms (within `slack` ms of real time).
pub fn assert_fresh(name: &str, pttl: i64, full: i64, slack: i64) {
    assert!(
        pttl <= full && pttl > full - slack,
        "{name}: PTTL {pttl}, expected just under {full}"
    );
}

/// Everything about a conversation at one moment, to prove a call changed nothing.
#[derive(Debug, Clone)]
pub struct Frozen {
    pub snapshot: Snapshot,
    pub ttls: Ttls,
}

/// One conversation on a RedisBatches of its own test prefix.
pub struct Rig {
    pub redis_batches: RedisBatches,
    pub conversation: Conversation,
    pub keys: ConversationKeys,
}

impl Rig {
    /// A RedisBatches on the shared Redis under a fresh prefix, and one conversation.
    pub async fn new() -> Self {
        let prefix = unique("test:scripts:") + ":";
        let redis_batches = RedisBatches::connect(
            &redis_url(),
            2,
            Duration::from_secs(2),
            &prefix,
            1,
            policy(),
        )
        .await
        .expect("RedisBatches connects");
        Self::on(redis_batches, "15550002222")
    }

    /// A conversation with `contact` on a given RedisBatches.
    pub fn on(redis_batches: RedisBatches, contact: &str) -> Self {
        let conversation = Conversation::new(ChannelKind::WhatsApp, "123456789012345", contact);
        let keys = redis_batches.keys().conversation(&conversation);
        Self {
            redis_batches,
            conversation,
            keys,
        }
    }

    /// Another conversation on the same RedisBatches.
    pub fn with_contact(&self, contact: &str) -> Self {
        Self::on(self.redis_batches.clone(), contact)
    }

    /// A plain Redis connection, for seeding and reading keys.
    pub fn redis(&self) -> &Client {
        self.redis_batches.pool().next()
    }

    /// append.lua for a message that joins the batch.
    pub async fn append(&self, entry: &Entry, now: i64) -> AppendOutcome {
        self.append_as(entry, AppendMode::Message, false, now).await
    }

    /// append.lua in any mode, then, when it asks, hydrate.lua with no older rows
    /// (as ingest does for a conversation the database knows nothing more of).
    pub async fn append_as(
        &self,
        entry: &Entry,
        mode: AppendMode,
        reconcile: bool,
        now: i64,
    ) -> AppendOutcome {
        let outcome = self.append_unhydrated(entry, mode, reconcile, now).await;
        if outcome.hydrate {
            self.redis_batches
                .hydrate(&self.conversation, &[])
                .await
                .expect("hydrate.lua runs");
        }
        outcome
    }

    /// append.lua alone: a history it found missing stays marked unhydrated.
    pub async fn append_unhydrated(
        &self,
        entry: &Entry,
        mode: AppendMode,
        reconcile: bool,
        now: i64,
    ) -> AppendOutcome {
        self.redis_batches
            .append(&self.conversation, entry, mode, reconcile, now)
            .await
            .expect("append.lua runs")
    }

    /// claim.lua.
    pub async fn claim(&self, token: &str, now: i64) -> ClaimOutcome {
        self.redis_batches
            .claim(&self.keys.member, &ClaimToken::from(token), UnixMs(now))
            .await
            .expect("claim.lua runs")
    }

    /// claim.lua, which must claim.
    pub async fn claimed(&self, token: &str, now: i64) -> Claim {
        match self.claim(token, now).await {
            ClaimOutcome::Claimed(claim) => claim,
            other => panic!("expected a claim at {now}, got {other:?}"),
        }
    }

    /// Seeds a list with entries, oldest first, expiring after [`PINNED`] ms.
    pub async fn seed_list(&self, key: &str, entries: &[Entry]) {
        let raw: Vec<String> = entries
            .iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect();
        let _: () = self.redis().del(key).await.unwrap();
        if !raw.is_empty() {
            let _: () = self.redis().rpush(key, raw).await.unwrap();
            let _: i64 = self.redis().pexpire(key, PINNED, None).await.unwrap();
        }
    }

    /// Seeds the conversation's agenda score.
    pub async fn seed_score(&self, score: i64) {
        let _: () = self
            .redis()
            .zadd(
                &self.keys.agenda,
                None,
                None,
                false,
                false,
                (score as f64, self.keys.member.as_str()),
            )
            .await
            .unwrap();
    }

    /// Seeds the lock as another worker would hold it.
    pub async fn seed_lock(&self, token: &str, pttl: i64) {
        let _: () = self
            .redis()
            .set(
                &self.keys.lock,
                token,
                Some(Expiration::PX(pttl)),
                None,
                false,
            )
            .await
            .unwrap();
    }

    /// Deletes a key, as if it had expired or Redis had lost it.
    pub async fn drop_key(&self, key: &str) {
        let _: () = self.redis().del(key).await.unwrap();
    }

    /// Gives every existing key of the conversation a TTL of [`PINNED`] ms: a
    /// claimed lock then outlives a slow test, and a script refreshing a TTL shows.
    pub async fn pin_ttls(&self) {
        for key in self.key_names() {
            let _: i64 = self.redis().pexpire(key, PINNED, None).await.unwrap();
        }
    }

    fn key_names(&self) -> [&str; 6] {
        [
            &self.keys.history,
            &self.keys.msgs,
            &self.keys.inflight,
            &self.keys.deadline,
            &self.keys.lock,
            &self.keys.state,
        ]
    }

    async fn entries(&self, key: &str) -> Vec<Entry> {
        let raw: Vec<String> = self.redis().lrange(key, 0, -1).await.unwrap();
        raw.iter()
            .map(|r| serde_json::from_str(r).unwrap_or_else(|e| panic!("{key}: {r}: {e}")))
            .collect()
    }

    /// Reads every key.
    pub async fn snapshot(&self) -> Snapshot {
        let redis = self.redis();
        let deadline: Option<String> = redis.get(&self.keys.deadline).await.unwrap();
        let score: Option<f64> = redis
            .zscore(&self.keys.agenda, self.keys.member.as_str())
            .await
            .unwrap();
        Snapshot {
            history: self.entries(&self.keys.history).await,
            msgs: self.entries(&self.keys.msgs).await,
            inflight: self.entries(&self.keys.inflight).await,
            deadline: deadline.map(|d| d.parse().expect("deadline is unix ms")),
            lock: redis.get(&self.keys.lock).await.unwrap(),
            state: redis.hgetall(&self.keys.state).await.unwrap(),
            score: score.map(|s| s as i64),
        }
    }

    /// Reads every key's PTTL.
    pub async fn ttls(&self) -> Ttls {
        let redis = self.redis();
        Ttls {
            history: redis.pttl(&self.keys.history).await.unwrap(),
            msgs: redis.pttl(&self.keys.msgs).await.unwrap(),
            inflight: redis.pttl(&self.keys.inflight).await.unwrap(),
            deadline: redis.pttl(&self.keys.deadline).await.unwrap(),
            lock: redis.pttl(&self.keys.lock).await.unwrap(),
            state: redis.pttl(&self.keys.state).await.unwrap(),
        }
    }

    /// Pins the TTLs, then takes values and TTLs, for [`Rig::assert_untouched`].
    pub async fn freeze(&self) -> Frozen {
        self.pin_ttls().await;
        Frozen {
            snapshot: self.snapshot().await,
            ttls: self.ttls().await,
        }
    }

    /// Asserts that no key changed since `before`: same values, no TTL refreshed.
    pub async fn assert_untouched(&self, before: &Frozen) {
        assert_eq!(self.snapshot().await, before.snapshot, "a key changed");
        let after = self.ttls().await;
        for ((name, was), (_, now)) in before.ttls.named().into_iter().zip(after.named()) {
            if was < 0 {
                assert_eq!(now, was, "{name}: PTTL went from {was} to {now}");
            } else {
                // Real time passes between the reads; a refresh would jump to TTL or LEASE.
                assert!(
                    now <= was && now > was - 5_000,
                    "{name}: PTTL went from {was} to {now}"
                );
            }
        }
    }
}

impl Drop for Rig {
    /// Deletes the conversation's keys and agenda entry from the shared Redis. The
    /// test's runtime may be unwinding, so this runs on a thread and runtime of its own.
    fn drop(&mut self) {
        let keys = self.keys.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let config = fred::types::config::Config::from_url(&redis_url()).unwrap();
                let client = Client::new(config, None, None, None);
                if client.init().await.is_err() {
                    return;
                }
                let all = [
                    keys.history,
                    keys.msgs,
                    keys.inflight,
                    keys.deadline,
                    keys.lock,
                    keys.state,
                    keys.mode,
                ];
                let _: Result<(), _> = client.del(all.to_vec()).await;
                let _: Result<(), _> = client.zrem(&keys.agenda, keys.member.as_str()).await;
                let _ = client.quit().await;
            });
        })
        .join();
    }
}
