//! Asking the responder for a batch's reply, and what its failures do. A
//! responder that fails is classified (see [`ResponderError`]): unavailable is
//! retried here with backoff, then left to a later claim, up to [`MAX_CLAIMS`];
//! an outage (a refused key, an unknown model) keeps the batch for as long as it
//! lasts and shows on `/readyz`; a refusal fails the batch, and FALLBACK_REPLY
//! (see `fallback.rs`) answers it instead. A reply's usage is counted here.

use super::claimed::ClaimedBatch;
use super::finish::{Failure, Progress};
use super::{BatchOutcome, MAX_CLAIMS, RetryPolicy, Worker};
use crate::responder::{Reply, ReplyContext, ResponderError};
use crate::store::Generation;
use crate::time::UnixMs;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The longest pause before a batch whose responder is failing (an outage) is
/// claimed again.
const OUTAGE_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// A reply the responder wrote, and what writing it took.
#[derive(Debug, Clone)]
pub(super) struct Generated {
    /// The reply.
    pub reply: Reply,
    /// Responder, model, tokens, time, handoff: for the batch's record.
    pub generation: Generation,
}

impl Worker {
    /// The responder's reply, retried with exponential backoff and jitter (the
    /// responder's Retry-After when longer) while it is unavailable, up to
    /// RESPONDER_MAX_ATTEMPTS requests. Each request's failure is counted; the
    /// responder's health follows the last answer.
    pub(super) async fn ask_responder(
        &self,
        context: &ReplyContext,
    ) -> Result<Generated, ResponderError> {
        let responder = self.responder.name();
        let health = self.metrics.responder_health();
        let retry = &self.settings.responder_retry;
        let started = Instant::now();
        let mut context = context.clone();
        context.attempt = 0;
        loop {
            context.attempt += 1;
            let error = match self.responder.reply(&context).await {
                Ok(reply) => {
                    health.ok();
                    return Ok(self.generated(reply, started.elapsed()));
                }
                Err(error) => error,
            };
            self.metrics.inc(
                "lull_responder_errors_total",
                &[("responder", responder), ("kind", error.kind())],
            );
            match &error {
                ResponderError::Outage { status, reason } => health.failing(*status, reason),
                // One batch refused: the responder itself answers.
                ResponderError::Failed { .. } => health.ok(),
                ResponderError::Unavailable { .. } => {}
            }
            let ResponderError::Unavailable {
                reason,
                retry_after,
            } = &error
            else {
                return Err(error);
            };
            if context.attempt >= retry.max_attempts
                || retry_after.is_some_and(|asked| asked > retry.max_delay)
            {
                return Err(error);
            }
            let wait = retry.delay(context.attempt, *retry_after);
            tracing::warn!(%reason, tries = context.attempt, wait_ms = wait.as_millis() as u64, "responder unavailable, retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// A reply just generated, its usage counted.
    fn generated(&self, reply: Reply, elapsed: Duration) -> Generated {
        self.metrics
            .observe("lull_generation_seconds", elapsed.as_secs_f64());
        let usage = reply.usage.clone().unwrap_or_default();
        let model = usage.model.as_deref().unwrap_or("unknown");
        for (kind, tokens) in [
            ("prompt", usage.prompt_tokens),
            ("completion", usage.completion_tokens),
        ] {
            if let Some(tokens) = tokens {
                self.metrics.add(
                    "lull_responder_tokens_total",
                    &[("model", model), ("kind", kind)],
                    tokens,
                );
            }
        }
        if reply.handoff {
            self.metrics.inc("lull_handoffs_requested_total", &[]);
        }
        Generated {
            generation: Generation {
                responder: self.responder.name().to_owned(),
                model: usage.model,
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                elapsed,
                handoff: reply.handoff,
            },
            reply,
        }
    }

    /// The responder gave up. Unavailable: leave the batch in flight, so it is
    /// claimed again when its lease runs out (or after the Retry-After), up to
    /// [`MAX_CLAIMS`] times. An outage (a refused key, an unknown model): the
    /// batch keeps its messages and is claimed again after a backoff that grows
    /// with its claims, for as long as the outage lasts. Refused, or still
    /// unavailable after [`MAX_CLAIMS`]: the batch fails for good, and
    /// FALLBACK_REPLY answers it when set.
    pub(super) async fn not_generated(
        &self,
        batch: &ClaimedBatch,
        error: ResponderError,
        hand_back: &CancellationToken,
    ) -> BatchOutcome {
        match &error {
            ResponderError::Outage { .. } => {
                let backoff = RetryPolicy {
                    max_delay: OUTAGE_BACKOFF_MAX,
                    ..self.settings.responder_retry.clone()
                };
                let wait = backoff.delay(u32::try_from(batch.claims).unwrap_or(u32::MAX), None);
                tracing::error!(%error, claims = batch.claims, wait_ms = wait.as_millis() as u64, "responder failing as a whole; batch kept and tried again later");
                self.postpone(batch, wait).await;
                return BatchOutcome::Retry;
            }
            ResponderError::Unavailable { retry_after, .. } if batch.claims < MAX_CLAIMS => {
                tracing::warn!(%error, claims = batch.claims, "responder unavailable; batch tried again when its lease runs out");
                if let Some(wait) = retry_after {
                    self.postpone(batch, *wait).await;
                }
                return BatchOutcome::Retry;
            }
            _ => {}
        }
        tracing::error!(%error, "no reply generated");
        let nothing_sent = Progress::default();
        let code = error.status().map(i64::from);
        let outcome = self
            .fail(
                batch,
                &nothing_sent,
                code,
                &error.to_string(),
                Failure::Unanswerable,
            )
            .await;
        self.send_fallback(batch, hand_back).await;
        outcome
    }

    /// Makes the batch due again in `wait` (once its lease has run out); logged
    /// when Redis refuses: it comes back when its lease runs out.
    pub(super) async fn postpone(&self, batch: &ClaimedBatch, wait: Duration) {
        let due = UnixMs::now() + wait;
        let member = &batch.keys.member;
        let shard = self.redis_batches.keys().shard_of(member);
        if let Err(error) = self.redis_batches.postpone(shard, member, due.ms()).await {
            tracing::warn!(%error, "not postponed; tried again when its lease runs out");
        }
    }
}
