//! The heartbeat of a claimed batch: extends the lease while the worker generates
//! and sends, and reports whether it still holds it and what arrived meanwhile.

use crate::batch::{ClaimToken, ConversationKeys, RedisBatches};
use crate::time::UnixMs;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

/// What the last heartbeat saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseState {
    /// The lock is still ours.
    pub held: bool,
    /// Messages waiting since the claim.
    pub pending: i64,
    /// The conversation was paused for a human: the batch must not be sent.
    pub paused: bool,
}

/// A running heartbeat; stops when dropped.
pub struct Lease {
    state: watch::Receiver<LeaseState>,
    task: JoinHandle<()>,
}

impl Lease {
    /// Starts extending `token`'s lease every `every`.
    pub fn start(
        redis_batches: RedisBatches,
        keys: ConversationKeys,
        token: ClaimToken,
        every: Duration,
    ) -> Self {
        let (tx, state) = watch::channel(LeaseState {
            held: true,
            pending: 0,
            paused: false,
        });
        // In the batch's span: a failed heartbeat names its conversation.
        let task = tokio::spawn(
            async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    match redis_batches.extend(&keys, &token, UnixMs::now()).await {
                        Ok(outcome) => {
                            let _ = tx.send(LeaseState {
                                held: outcome.held,
                                pending: outcome.pending,
                                paused: outcome.paused,
                            });
                            if !outcome.held {
                                return;
                            }
                        }
                        // Redis unreachable: keep trying; the lease may run out, and the
                        // token checks of ack and requeue decide what that means.
                        Err(error) => tracing::warn!(%error, "lease heartbeat failed"),
                    }
                }
            }
            .in_current_span(),
        );
        Self { state, task }
    }

    /// The last heartbeat's view.
    pub fn current(&self) -> LeaseState {
        *self.state.borrow()
    }

    /// Waits for the next heartbeat that changes the view.
    pub async fn changed(&mut self) -> LeaseState {
        if self.state.changed().await.is_err() {
            // The heartbeat ended (lease lost): nothing will change any more.
            std::future::pending::<()>().await;
        }
        *self.state.borrow_and_update()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.task.abort();
    }
}
