//! The handoff mode key as append.lua, claim.lua and extend.lua read it, and
//! pause.lua and resume.lua that write it.

use super::*;
use lull::batch::{ExtendOutcome, ResumeOutcome};

impl Rig {
    async fn pause(&self, now: i64) -> bool {
        self.redis_batches
            .pause(&self.conversation, UnixMs(now))
            .await
            .unwrap()
    }

    async fn mode(&self) -> Option<String> {
        self.redis().get(&self.keys.mode).await.unwrap()
    }
}

#[tokio::test]
async fn pause_sets_the_mode_key_once_without_expiry() {
    let rig = Rig::new().await;
    let before = rig.snapshot().await;
    assert!(rig.pause(T0).await, "paused now");
    assert!(!rig.pause(T0 + 1).await, "paused already");
    assert_eq!(rig.mode().await, Some(T0.to_string()));
    let pttl: i64 = rig.redis().pttl(&rig.keys.mode).await.unwrap();
    assert_eq!(pttl, -1, "lasts until resume.lua");
    assert_eq!(rig.snapshot().await, before, "nothing else touched");
}

#[tokio::test]
async fn while_paused_a_message_goes_to_history_only() {
    let rig = Rig::new().await;
    rig.pause(T0).await;
    let e1 = msg(1, T0);
    let out = rig.append(&e1, T0).await;
    assert_eq!(
        out,
        AppendOutcome {
            hydrate: true,
            tracked: false,
            deadline_ms: 0,
            batch_len: 0,
            paused: true,
        }
    );
    let snap = rig.snapshot().await;
    assert_eq!(snap.history, vec![e1]);
    assert!(snap.msgs.is_empty());
    assert_eq!(snap.deadline, None);
    assert_eq!(snap.score, None, "not on the agenda");
}

#[tokio::test]
async fn a_paused_conversation_is_claimed_by_nobody_and_leaves_the_agenda() {
    let rig = Rig::new().await;
    let e1 = msg(1, T0);
    rig.append(&e1, T0).await;
    rig.pause(T0 + 10).await;
    let before = rig.snapshot().await;
    assert_eq!(rig.claim("tok-1", T0 + WINDOW).await, ClaimOutcome::Paused);
    assert_eq!(
        rig.snapshot().await,
        Snapshot {
            score: None,
            ..before
        },
        "collected messages stay for resume.lua; only the agenda entry goes"
    );
}

#[tokio::test]
async fn the_last_look_of_a_paused_conversation_tells_the_holder_to_drop() {
    let rig = Rig::new().await;
    rig.append(&msg(1, T0), T0).await;
    rig.claimed("tok-1", T0 + WINDOW).await;
    rig.pause(T0 + WINDOW + 10).await;
    let before = rig.snapshot().await;
    let out = rig
        .redis_batches
        .extend(&rig.keys, &ClaimToken::from("tok-1"), UnixMs(T0 + 1_500))
        .await
        .unwrap();
    assert_eq!(
        out,
        ExtendOutcome {
            held: true,
            pending: 0,
            paused: true,
        }
    );
    assert_eq!(
        rig.snapshot().await,
        before,
        "agenda score not moved: the holder acks"
    );
    let stale = rig
        .redis_batches
        .extend(&rig.keys, &ClaimToken::from("tok-2"), UnixMs(T0 + 1_500))
        .await
        .unwrap();
    assert!(!stale.held, "a stale token is still refused first");
}

#[tokio::test]
async fn resume_replaces_the_collected_batch_with_the_given_entries() {
    let rig = Rig::new().await;
    let (early, agent, late) = (msg(1, T0), bot(2, T0 + 10), msg(3, T0 + 20));
    rig.append(&early, T0).await;
    rig.pause(T0 + 5).await;
    rig.append_as(&agent, AppendMode::HistoryOnly, false, T0 + 10)
        .await;
    rig.append(&late, T0 + 20).await;
    let due = T0 + 100 + WINDOW;
    let out = rig
        .redis_batches
        .resume(
            &rig.conversation,
            std::slice::from_ref(&late),
            UnixMs(due),
            UnixMs(T0 + 100),
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        ResumeOutcome {
            was_paused: true,
            batch_len: 1,
            scheduled_ms: Some(due),
        }
    );
    assert_eq!(rig.mode().await, None);
    let snap = rig.snapshot().await;
    assert_eq!(
        snap.msgs,
        vec![late.clone()],
        "the early message was the human's"
    );
    assert_eq!(snap.history, vec![early, agent, late]);
    assert_eq!(snap.deadline, Some(due));
    assert_eq!(snap.score, Some(due));
    assert_eq!(snap.state.get("started"), Some(&(T0 + 100).to_string()));
}

#[tokio::test]
async fn resume_with_nothing_to_answer_schedules_nothing() {
    let rig = Rig::new().await;
    rig.append(&msg(1, T0), T0).await;
    rig.pause(T0 + 5).await;
    rig.claim("tok-1", T0 + WINDOW).await;
    let out = rig
        .redis_batches
        .resume(
            &rig.conversation,
            &[],
            UnixMs(T0 + 5_000),
            UnixMs(T0 + 4_000),
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        ResumeOutcome {
            was_paused: true,
            batch_len: 0,
            scheduled_ms: None,
        }
    );
    let snap = rig.snapshot().await;
    assert!(snap.msgs.is_empty());
    assert_eq!((snap.deadline, snap.score), (None, None));
    // And the conversation batches again.
    let out = rig.append(&msg(2, T0 + 6_000), T0 + 6_000).await;
    assert!(!out.paused);
    assert_eq!(rig.snapshot().await.score, Some(T0 + 6_000 + WINDOW));
}

#[tokio::test]
async fn resume_while_a_worker_holds_the_lock_leaves_the_agenda_to_its_ack() {
    let rig = Rig::new().await;
    rig.append(&msg(1, T0), T0).await;
    rig.claimed("tok-1", T0 + WINDOW).await;
    rig.pause(T0 + WINDOW + 1).await;
    let score = rig.snapshot().await.score;
    let late = msg(2, T0 + 1_200);
    let out = rig
        .redis_batches
        .resume(
            &rig.conversation,
            std::slice::from_ref(&late),
            UnixMs(T0 + 3_000),
            UnixMs(T0 + 2_000),
        )
        .await
        .unwrap();
    assert_eq!(out.scheduled_ms, None);
    let snap = rig.snapshot().await;
    assert_eq!(snap.score, score);
    assert_eq!(snap.msgs, vec![late]);
}
