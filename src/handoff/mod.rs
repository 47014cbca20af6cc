//! Handoff: a conversation is answered by the bot (`bot`, the default) or by a
//! human agent (`human`). While `human`, every message is stored and goes into
//! history, but none starts a batch, the reconciler leaves them alone, and a
//! batch already claimed is dropped unsent at its last look.
//!
//! State: PostgreSQL's `conversation_modes` is the record (who paused, when, why,
//! until when; see `store/modes.rs`); Redis's `mode` key of the conversation
//! mirrors `human` for append.lua, claim.lua and extend.lua (pause.lua sets it,
//! resume.lua deletes it). Commit-to-send reads PostgreSQL's row, so even with
//! Redis wiped nothing is sent while paused (docs/design.md, invariant 13); the
//! hydrate path (`crate::ingest`) puts the mode back into Redis.
//!
//! What pauses: a human agent's echo ([`Handoff::agent_messages`]), an operator
//! ([`Handoff::pause`]), a contact's keyword ([`Handoff::keyword`]), the
//! responder ([`Handoff::pause_for_responder`]). What resumes: an operator
//! ([`Handoff::resume`]) or idle time ([`idle::run`]).

mod echo;
pub mod idle;
pub mod keywords;
mod notice;
pub mod trigger;

pub use keywords::Keywords;
pub use trigger::Trigger;

use crate::batch::{BatchError, ClaimToken, RedisBatches};
use crate::channel::Channel;
use crate::claim_loop::Wake;
use crate::config::HandoffSettings;
use crate::message::{ChannelKind, Conversation, Entry};
use crate::metrics::Metrics;
use crate::store::{ModeRecord, NewAction, PauseRecord, Store, StoreError};
use crate::time::UnixMs;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Why a pause or resume did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// PostgreSQL failed: nothing changed (the record is the truth); try again.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// PostgreSQL changed, Redis did not follow: the pause still holds at
    /// commit-to-send; try again to bring Redis in line.
    #[error("redis: {0}")]
    Redis(#[from] BatchError),
    /// `minutes` is not a positive number.
    #[error("minutes must be a positive number")]
    Minutes,
}

/// An operator's (or another trigger's) pause.
#[derive(Debug, Clone)]
pub struct PauseRequest {
    /// Who asks (an operator's name; `agent`, `contact`, `responder`).
    pub by: String,
    /// Resume by itself after this many minutes (fractions allowed); `None`:
    /// HANDOFF_IDLE_MINUTES applies.
    pub minutes: Option<f64>,
    /// Why, in the operator's words.
    pub reason: Option<String>,
    /// What paused it.
    pub trigger: Trigger,
}

/// What a pause changed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PauseOutcome {
    /// The conversation was the bot's until now.
    pub changed: bool,
    /// The record as it stands.
    pub record: Option<ModeRecord>,
}

/// What a resume changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ResumeOutcome {
    /// A human had the conversation until now.
    pub changed: bool,
    /// The contact's messages after the agent's last one, now one batch.
    pub batched: usize,
    /// Earlier unanswered messages, marked handled by the human.
    pub handled_by_human: usize,
    /// When the new batch is due, unix ms.
    pub due_ms: Option<i64>,
}

/// Pauses and resumes conversations.
#[derive(Clone)]
pub struct Handoff {
    store: Store,
    redis_batches: RedisBatches,
    metrics: Arc<Metrics>,
    wake: Arc<Wake>,
    channels: HashMap<ChannelKind, Arc<dyn Channel>>,
    keywords: Keywords,
    settings: HandoffSettings,
}

impl Handoff {
    /// Wires the parts together.
    pub fn new(
        store: Store,
        redis_batches: RedisBatches,
        metrics: Arc<Metrics>,
        wake: Arc<Wake>,
        channels: HashMap<ChannelKind, Arc<dyn Channel>>,
        settings: HandoffSettings,
    ) -> Self {
        Self {
            store,
            redis_batches,
            metrics,
            wake,
            channels,
            keywords: Keywords::new(&settings.keywords),
            settings,
        }
    }

    /// A handle for callers that only pause and resume (the worker, when the
    /// responder asks for a person; a CLI): no channels, so no keyword reply, and
    /// default settings.
    pub fn minimal(store: Store, redis_batches: RedisBatches, metrics: Arc<Metrics>) -> Self {
        Self::new(
            store,
            redis_batches,
            metrics,
            Arc::default(),
            HashMap::new(),
            HandoffSettings::default(),
        )
    }

    /// The settings.
    pub fn settings(&self) -> &HandoffSettings {
        &self.settings
    }

    /// Pauses the bot for `conversation`. Idempotent: pausing a paused
    /// conversation changes nothing but its reason and end (and says so).
    pub async fn pause(
        &self,
        conversation: &Conversation,
        request: PauseRequest,
    ) -> Result<PauseOutcome, HandoffError> {
        self.pause_at(conversation, request, None).await
    }

    /// The responder asked for a person (`handoff: true` in its reply).
    pub async fn pause_for_responder(
        &self,
        conversation: &Conversation,
    ) -> Result<PauseOutcome, HandoffError> {
        let request = PauseRequest {
            by: "responder".into(),
            minutes: None,
            reason: None,
            trigger: Trigger::Responder,
        };
        self.pause(conversation, request).await
    }

    async fn pause_at(
        &self,
        conversation: &Conversation,
        request: PauseRequest,
        agent_at: Option<UnixMs>,
    ) -> Result<PauseOutcome, HandoffError> {
        let for_how_long = match request.minutes {
            None => None,
            Some(m) if m.is_finite() && m > 0.0 && m < 1e9 => {
                Some(Duration::from_secs_f64(m * 60.0))
            }
            Some(_) => return Err(HandoffError::Minutes),
        };
        let record = PauseRecord {
            by: &request.by,
            trigger: request.trigger.as_str(),
            reason: request.reason.as_deref(),
            for_how_long,
            agent_at: agent_at.map(UnixMs::timestamp),
        };
        let changed = self.store.pause(conversation, &record).await?;
        // PostgreSQL first: it is the record, and commit-to-send reads it, so the
        // pause holds from here even if Redis does not follow.
        self.redis_batches
            .pause(conversation, UnixMs::now())
            .await?;
        if changed {
            self.metrics.inc(
                "lull_handoffs_total",
                &[
                    ("channel", conversation.channel.as_str()),
                    ("trigger", request.trigger.as_str()),
                ],
            );
            tracing::info!(
                channel = conversation.channel.as_str(),
                conversation = %conversation,
                trigger = request.trigger.as_str(),
                by = %request.by,
                "bot paused for {conversation} ({})",
                request.trigger
            );
            self.audit(conversation, "pause", request.trigger).await;
            self.count_paused().await;
        }
        let record = self.store.mode(conversation).await?;
        if !record.as_ref().is_some_and(ModeRecord::is_human) {
            // A resume ran between our two writes and deleted the mode key before
            // pause.lua set it again: follow PostgreSQL, which says bot.
            let entries = self.store.unanswered_of(conversation).await?;
            self.resume_redis(conversation, &entries).await?;
        }
        Ok(PauseOutcome { changed, record })
    }

    /// Gives the conversation back to the bot. Idempotent, and safe on many
    /// instances at once (PostgreSQL lets one of them change the row). The
    /// contact's unanswered messages after the agent's last message become one
    /// batch, due after the window; earlier ones are marked handled by the human.
    pub async fn resume(
        &self,
        conversation: &Conversation,
        by: &str,
        trigger: Trigger,
    ) -> Result<ResumeOutcome, HandoffError> {
        let human_batch = format!("human-{}", ClaimToken::generate().as_str());
        let resumed = self
            .store
            .resume(conversation, by, trigger.as_str(), &human_batch)
            .await?;
        let Some(resumed) = resumed else {
            // The bot's already. A resume whose Redis step failed left the mode
            // key behind: put Redis in line with the record.
            if self.paused_in_redis(conversation).await? {
                let entries = self.store.unanswered_of(conversation).await?;
                self.resume_redis(conversation, &entries).await?;
            }
            return Ok(ResumeOutcome::default());
        };
        let due_ms = self.resume_redis(conversation, &resumed.to_answer).await?;
        self.metrics.inc(
            "lull_resumes_total",
            &[
                ("channel", conversation.channel.as_str()),
                ("trigger", trigger.as_str()),
            ],
        );
        tracing::info!(
            channel = conversation.channel.as_str(),
            conversation = %conversation,
            trigger = trigger.as_str(),
            by,
            batched = resumed.to_answer.len(),
            handled_by_human = resumed.handled_by_human,
            "bot resumed for {conversation} ({trigger})"
        );
        self.audit(conversation, "resume", trigger).await;
        self.count_paused().await;
        Ok(ResumeOutcome {
            changed: true,
            batched: resumed.to_answer.len(),
            handled_by_human: resumed.handled_by_human,
            due_ms,
        })
    }

    /// Puts a pause or resume that no operator made (an agent's echo, a keyword,
    /// the responder, idle time) in the console's audit, under the trigger's name,
    /// so that the audit and the handoff stats see every one; an operator's own
    /// action is recorded by the console. Best effort: the change has happened.
    async fn audit(&self, conversation: &Conversation, action: &str, trigger: Trigger) {
        if trigger == Trigger::Operator {
            return;
        }
        let detail = format!("{action}d by {trigger}");
        let id = conversation.id();
        let row = NewAction {
            actor: trigger.as_str(),
            action,
            conversation: &id,
            batch_id: None,
            done: true,
            detail: &detail,
        };
        if let Err(error) = self.store.record_action(row).await {
            tracing::warn!(%error, action, "handoff not recorded in the audit");
        }
    }

    /// resume.lua with `entries` as the next batch, due after the window.
    async fn resume_redis(
        &self,
        conversation: &Conversation,
        entries: &[Entry],
    ) -> Result<Option<i64>, HandoffError> {
        let now = UnixMs::now();
        let due = now + self.redis_batches.policy().window;
        let outcome = self
            .redis_batches
            .resume(conversation, entries, due, now)
            .await?;
        if let Some(at) = outcome.scheduled_ms {
            self.wake.due_at(at);
        }
        Ok((!entries.is_empty()).then_some(due.ms()))
    }

    async fn paused_in_redis(&self, conversation: &Conversation) -> Result<bool, HandoffError> {
        use fred::interfaces::KeysInterface;
        let keys = self.redis_batches.keys().conversation(conversation);
        let n: i64 = self
            .redis_batches
            .pool()
            .next()
            .exists(&keys.mode)
            .await
            .map_err(BatchError::from)?;
        Ok(n > 0)
    }

    /// Refreshes `lull_conversations_paused` from PostgreSQL.
    pub async fn count_paused(&self) {
        match self.store.paused_count().await {
            Ok(n) => self.metrics.set_gauge("lull_conversations_paused", n),
            Err(error) => tracing::debug!(%error, "paused conversations not counted"),
        }
    }

    /// Whether the mode key must be put back in Redis (the hydrate path: Redis
    /// lost its data) and, if so, puts it back.
    pub async fn restore_mode(&self, conversation: &Conversation) -> Result<bool, HandoffError> {
        let paused = self
            .store
            .mode(conversation)
            .await?
            .is_some_and(|r| r.is_human());
        if paused {
            self.redis_batches
                .pause(conversation, UnixMs::now())
                .await?;
        }
        Ok(paused)
    }
}
