//! [`RedisBatches`]: the Redis pool, the key layout, the scripts and the policy, and one
//! method per script call.

use super::BatchError;
use super::id::{BatchId, ClaimToken};
use super::keys::{ConversationKeys, KeySpace};
use super::ops::{
    self, AckOutcome, AppendMode, AppendOutcome, Call, ClaimOutcome, ExtendOutcome, RequeueMode,
    ResumeOutcome,
};
use super::policy::Policy;
use super::scripts::{LuaScript, Scripts};
use crate::message::{Conversation, Entry};
use crate::time::UnixMs;
use fred::clients::Pool;
use fred::interfaces::{ClientLike, ListInterface, SortedSetsInterface};
use fred::types::Value;
use fred::types::config::{Config as RedisConfig, ReconnectPolicy};
use std::time::Duration;

/// Batch state in Redis, reached only through the Lua scripts.
#[derive(Clone)]
pub struct RedisBatches {
    pool: Pool,
    keys: KeySpace,
    scripts: Scripts,
    policy: Policy,
}

/// A conversation on the agenda, for the admin page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WaitingConversation {
    /// `{channel}:{account}:{contact}`.
    pub conversation: String,
    /// When it is due (or when its lease ends, if claimed), unix ms.
    pub due_ms: i64,
    /// Messages collecting.
    pub collecting: i64,
    /// Messages in flight (claimed, not yet answered).
    pub in_flight: i64,
}

impl RedisBatches {
    /// Connects to Redis (standalone or cluster, by URL scheme). Does not fail when
    /// Redis is down: fred keeps reconnecting, and the webhook keeps storing messages.
    pub async fn connect(
        url: &str,
        pool_size: usize,
        timeout: Duration,
        keys_prefix: &str,
        shards: u16,
        policy: Policy,
    ) -> Result<Self, BatchError> {
        let config = RedisConfig::from_url(url)?;
        let cluster = config.server.is_clustered();
        let pool = fred::types::Builder::from_config(config)
            .with_performance_config(|p| p.default_command_timeout = timeout)
            .with_connection_config(|c| {
                c.connection_timeout = timeout;
                c.internal_command_timeout = timeout;
                c.max_command_attempts = 2;
                // A connection that stops answering (a partition: no reset ever
                // comes) is closed and reconnected after the command timeout, which
                // also reports it on the error channel the breaker watches.
                c.unresponsive.max_timeout = Some(timeout);
                c.unresponsive.interval = (timeout / 4).max(Duration::from_millis(10));
            })
            // Retried forever, at most every 250 ms: a refused connection costs
            // nothing, and the breaker's probe waits for every client to be back.
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 250, 2))
            .build_pool(pool_size)?;
        pool.connect();
        if tokio::time::timeout(timeout, pool.wait_for_connect())
            .await
            .is_err()
        {
            tracing::warn!(
                "Redis not reachable yet; messages are kept in the database until it is"
            );
        }
        Ok(Self {
            pool,
            keys: KeySpace::new(keys_prefix, shards, cluster),
            scripts: Scripts::new(),
            policy,
        })
    }

    /// The key layout.
    pub fn keys(&self) -> &KeySpace {
        &self.keys
    }

    /// The batching policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The pool, for tests and the admin page.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Closes the connections.
    pub async fn quit(&self) {
        let _ = self.pool.quit().await;
    }

    /// PING: is Redis answering?
    pub async fn ping(&self) -> Result<(), BatchError> {
        self.pool.next().ping::<()>(None).await?;
        Ok(())
    }

    /// PING on every client of the pool, each failing at once if its connection
    /// is not up (fred would otherwise queue it until reconnected) and within
    /// `timeout`: true when all answered (the breaker's probe).
    pub async fn ping_every_client(&self, timeout: Duration) -> bool {
        let options = fred::types::config::Options {
            fail_fast: true,
            max_attempts: Some(1),
            timeout: Some(timeout),
            ..Default::default()
        };
        let pings = self.pool.clients().iter().map(|client| {
            let client = client.with_options(&options);
            async move { client.ping::<()>(None).await.is_ok() }
        });
        futures::future::join_all(pings)
            .await
            .into_iter()
            .all(|ok| ok)
    }

    async fn run(&self, script: &LuaScript, call: Call) -> Result<Vec<Value>, BatchError> {
        // fred's call is a future of about 6 KB: boxed, it is written once instead
        // of copied into every future that awaits a script (the worker's, the claim
        // loop's), which cost more than the allocation.
        let reply: Value = Box::pin(script.script.evalsha_with_reload(
            self.pool.next(),
            call.keys,
            call.args,
        ))
        .await?;
        Ok(reply.into_array())
    }

    /// append.lua: adds a stored message to history and, by `mode`, to the batch.
    pub async fn append(
        &self,
        conversation: &Conversation,
        entry: &Entry,
        mode: AppendMode,
        reconcile: bool,
        now: i64,
    ) -> Result<AppendOutcome, BatchError> {
        let keys = self.keys.conversation(conversation);
        let call = ops::append_call(&keys, &self.policy, now, entry, mode, reconcile)?;
        ops::decode_append(self.run(&self.scripts.append, call).await?)
    }

    /// hydrate.lua: merges database rows into history; returns how many were missing.
    pub async fn hydrate(
        &self,
        conversation: &Conversation,
        rows: &[Entry],
    ) -> Result<i64, BatchError> {
        let keys = self.keys.conversation(conversation);
        let call = ops::hydrate_call(&keys, &self.policy, rows)?;
        let reply: Value = self
            .scripts
            .hydrate
            .script
            .evalsha_with_reload(self.pool.next(), call.keys, call.args)
            .await?;
        reply.as_i64().ok_or_else(|| BatchError::Reply {
            script: "hydrate.lua",
            detail: format!("{reply:?}"),
        })
    }

    /// claim.lua: claims one conversation if it is due, with a fresh token.
    pub async fn claim(
        &self,
        member: &str,
        token: &ClaimToken,
        now: UnixMs,
    ) -> Result<ClaimOutcome, BatchError> {
        let keys = self.keys.for_member(member);
        let call = ops::claim_call(&keys, &self.policy, now, token);
        ops::decode_claim(self.run(&self.scripts.claim, call).await?, token)
    }

    /// Messages collected for the conversation since its batch was claimed (the
    /// length of `msgs`): a read, polled while a reply is generated so that a new
    /// message supersedes it within [`crate::worker::SUPERSEDE_POLL`] instead of at
    /// the next heartbeat. Changes nothing.
    pub async fn pending(&self, keys: &ConversationKeys) -> Result<i64, BatchError> {
        use fred::interfaces::ListInterface;
        Ok(self.pool.next().llen(&keys.msgs).await?)
    }

    /// extend.lua: heartbeat; tells whether the lease is still ours and what is pending.
    pub async fn extend(
        &self,
        keys: &ConversationKeys,
        token: &ClaimToken,
        now: UnixMs,
    ) -> Result<ExtendOutcome, BatchError> {
        let call = ops::extend_call(keys, &self.policy, now, token);
        ops::decode_extend(self.run(&self.scripts.extend, call).await?)
    }

    /// requeue.lua: gives the batch back; `None` when the token no longer matches.
    pub async fn requeue(
        &self,
        keys: &ConversationKeys,
        token: &ClaimToken,
        mode: RequeueMode,
        now: UnixMs,
    ) -> Result<Option<i64>, BatchError> {
        let call = ops::requeue_call(keys, &self.policy, now, token, mode);
        ops::decode_requeue(self.run(&self.scripts.requeue, call).await?)
    }

    /// ack.lua: finishes the batch, appending `reply` to history.
    pub async fn ack(
        &self,
        keys: &ConversationKeys,
        token: &ClaimToken,
        reply: &[Entry],
        now: UnixMs,
    ) -> Result<AckOutcome, BatchError> {
        let call = ops::ack_call(keys, &self.policy, now, token, false, reply)?;
        ops::decode_ack(self.run(&self.scripts.ack, call).await?)
    }

    /// ack.lua for a batch that failed without a reply because its responder refused
    /// it: its messages leave history as well, so that later contexts do not carry
    /// them into the same refusal.
    pub async fn ack_forgetting(
        &self,
        keys: &ConversationKeys,
        token: &ClaimToken,
        now: UnixMs,
    ) -> Result<AckOutcome, BatchError> {
        let call = ops::ack_call(keys, &self.policy, now, token, true, &[])?;
        ops::decode_ack(self.run(&self.scripts.ack, call).await?)
    }

    /// restore.lua: puts a batch PostgreSQL holds as sending back in flight, unless
    /// Redis still tracks a batch for the conversation; true when restored.
    pub async fn restore(
        &self,
        conversation: &Conversation,
        batch_id: &BatchId,
        started: UnixMs,
        entries: &[Entry],
        now: UnixMs,
    ) -> Result<bool, BatchError> {
        let keys = self.keys.conversation(conversation);
        let call = ops::restore_call(&keys, &self.policy, now, batch_id, started, entries)?;
        let reply: Value = self
            .scripts
            .restore
            .script
            .evalsha_with_reload(self.pool.next(), call.keys, call.args)
            .await?;
        Ok(reply.as_i64() == Some(1))
    }

    /// behind.lua: the claim holder puts its batch back behind `older`, an
    /// unfinished batch of the conversation that Redis lost, which becomes the
    /// in-flight batch, due now; false when the lease was lost (nothing changed).
    pub async fn put_behind(
        &self,
        keys: &ConversationKeys,
        token: &ClaimToken,
        older: &BatchId,
        started: UnixMs,
        entries: &[Entry],
        now: UnixMs,
    ) -> Result<bool, BatchError> {
        let call = ops::behind_call(keys, &self.policy, now, token, older, started, entries)?;
        let reply = self.run(&self.scripts.behind, call).await?;
        Ok(reply.first().and_then(Value::as_i64) == Some(1))
    }

    /// pause.lua: marks the conversation paused for a human; true when it was not.
    pub async fn pause(
        &self,
        conversation: &Conversation,
        now: UnixMs,
    ) -> Result<bool, BatchError> {
        let keys = self.keys.conversation(conversation);
        let call = ops::pause_call(&keys, now);
        let reply: Value = self
            .scripts
            .pause
            .script
            .evalsha_with_reload(self.pool.next(), call.keys, call.args)
            .await?;
        Ok(reply.as_i64() == Some(1))
    }

    /// resume.lua: gives the conversation back to the bot with `entries` as the
    /// collecting batch, due at `due`.
    pub async fn resume(
        &self,
        conversation: &Conversation,
        entries: &[Entry],
        due: UnixMs,
        now: UnixMs,
    ) -> Result<ResumeOutcome, BatchError> {
        let keys = self.keys.conversation(conversation);
        let call = ops::resume_call(&keys, &self.policy, now, due, entries)?;
        ops::decode_resume(self.run(&self.scripts.resume, call).await?)
    }

    /// Members of one shard's agenda due by `now`, earliest first.
    pub async fn due(&self, shard: u16, now: i64, limit: i64) -> Result<Vec<String>, BatchError> {
        let members: Vec<String> = self
            .pool
            .next()
            .zrangebyscore(
                self.keys.agenda(shard),
                "-inf",
                now as f64,
                false,
                Some((0, limit)),
            )
            .await?;
        Ok(members)
    }

    /// Removes a member from one shard's agenda (one lull never wrote).
    pub async fn unschedule(&self, shard: u16, member: &str) -> Result<(), BatchError> {
        self.pool
            .next()
            .zrem::<(), _, _>(self.keys.agenda(shard), member)
            .await?;
        Ok(())
    }

    /// Moves a member's agenda score to `at_ms` (only if it is on the agenda).
    pub async fn postpone(&self, shard: u16, member: &str, at_ms: i64) -> Result<(), BatchError> {
        self.pool
            .next()
            .zadd::<(), _, _>(
                self.keys.agenda(shard),
                Some(fred::types::SetOptions::XX),
                None,
                false,
                false,
                (at_ms as f64, member),
            )
            .await?;
        Ok(())
    }

    /// The earliest score on one shard's agenda.
    pub async fn next_due(&self, shard: u16) -> Result<Option<i64>, BatchError> {
        let first: Vec<(String, f64)> = self
            .pool
            .next()
            .zrange(self.keys.agenda(shard), 0, 0, None, false, None, true)
            .await?;
        Ok(first.first().map(|(_, score)| *score as i64))
    }

    /// The conversation's history (oldest first); empty when the key is missing.
    pub async fn history(&self, keys: &ConversationKeys) -> Result<Vec<Entry>, BatchError> {
        let raw: Vec<String> = self.pool.next().lrange(&keys.history, 0, -1).await?;
        raw.iter()
            .map(|r| serde_json::from_str(r).map_err(BatchError::from))
            .collect()
    }

    /// Every conversation on the agenda with its counts, earliest first (admin page).
    pub async fn waiting(&self, limit: i64) -> Result<Vec<WaitingConversation>, BatchError> {
        let mut out = Vec::new();
        for (_, agenda) in self.keys.agendas() {
            let members: Vec<(String, f64)> = self
                .pool
                .next()
                .zrange(&agenda, 0, limit - 1, None, false, None, true)
                .await?;
            for (member, score) in members {
                let keys = self.keys.for_member(&member);
                let collecting: i64 = self.pool.next().llen(&keys.msgs).await?;
                let in_flight: i64 = self.pool.next().llen(&keys.inflight).await?;
                out.push(WaitingConversation {
                    conversation: member,
                    due_ms: score as i64,
                    collecting,
                    in_flight,
                });
            }
        }
        out.sort_by_key(|w| w.due_ms);
        out.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(out)
    }
}
