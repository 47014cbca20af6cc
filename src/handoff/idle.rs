//! The idle resumer: gives paused conversations back to the bot once
//! HANDOFF_IDLE_MINUTES have passed since the later of the pause and the human
//! agent's last message, or once an operator's minutes ran out. Runs on every
//! instance: PostgreSQL lets one of them resume each conversation
//! ([`Handoff::resume`]).

use super::{Handoff, Trigger};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Conversations resumed per round.
const PAGE: i64 = 100;

/// How often to look: a quarter of the idle time, between 50 ms and 5 s (an
/// operator's minutes end on their own clock, so it looks even when idle
/// resume is off).
pub fn interval(idle: Option<Duration>) -> Duration {
    idle.map_or(Duration::from_secs(5), |d| d / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(5))
}

/// One round: resumes every conversation due; returns how many it resumed.
pub async fn resume_due(handoff: &Handoff) -> usize {
    let due = match handoff.store.due_resumes(handoff.settings.idle, PAGE).await {
        Ok(due) => due,
        Err(error) => {
            tracing::warn!(%error, "idle resume: database unavailable");
            return 0;
        }
    };
    let mut resumed = 0;
    for conversation in due {
        match handoff.resume(&conversation, "idle", Trigger::Idle).await {
            Ok(outcome) if outcome.changed => resumed += 1,
            Ok(_) => {}
            Err(error) => tracing::warn!(
                %error,
                channel = conversation.channel.as_str(),
                conversation = %conversation,
                "idle resume failed; tried again next round"
            ),
        }
    }
    resumed
}

/// Runs rounds until `cancel` fires; refreshes the paused gauge each round.
pub async fn run(handoff: Handoff, cancel: CancellationToken) {
    let every = interval(handoff.settings.idle);
    loop {
        resume_due(&handoff).await;
        handoff.count_paused().await;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_looks_four_times_per_idle_time_within_bounds() {
        assert_eq!(interval(None), Duration::from_secs(5));
        assert_eq!(
            interval(Some(Duration::from_secs(8))),
            Duration::from_secs(2)
        );
        assert_eq!(
            interval(Some(Duration::from_millis(10))),
            Duration::from_millis(50)
        );
        assert_eq!(
            interval(Some(Duration::from_secs(3600))),
            Duration::from_secs(5)
        );
    }
}
