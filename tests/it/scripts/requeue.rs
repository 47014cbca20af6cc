//! requeue.lua: a claimed batch given back unanswered.

use super::*;
use lull::batch::RequeueMode::{HandBack, Supersede};

#[tokio::test]
async fn handing_back_leaves_the_batch_in_flight_due_at_once_and_newer_messages_wait() {
    let rig = Rig::new().await;
    let (e1, e2) = (msg(1, T0), msg(2, T0 + 200));
    // Sent between e1 and e2, delivered after the claim.
    let late = msg(3, T0 + 100);
    rig.append(&e1, T0).await;
    rig.append(&e2, T0 + 200).await;
    rig.claimed("tok-1", T0 + 1_200).await;
    rig.append(&late, T0 + 1_300).await;
    let now = T0 + 1_400;
    let due = rig
        .redis_batches
        .requeue(&rig.keys, &ClaimToken::from("tok-1"), HandBack, UnixMs(now))
        .await
        .unwrap();
    assert_eq!(due, Some(now));
    assert_eq!(
        rig.snapshot().await,
        Snapshot {
            history: vec![e1.clone(), late.clone(), e2.clone()],
            msgs: vec![late.clone()],
            inflight: vec![e1.clone(), e2.clone()],
            deadline: Some(T0 + 1_300 + WINDOW),
            state: state(&[
                ("batch", &"tok-1"),
                ("claims", &1),
                ("inflight_started", &T0),
                ("started", &(T0 + 1_300)),
            ]),
            score: Some(now),
            ..Snapshot::default()
        }
    );

    // The next claim resumes the same batch at once; the late message, still in
    // its window, is left for the batch after it.
    let claim = rig.claimed("tok-2", now).await;
    assert_eq!(claim.batch_id, "tok-1");
    assert_eq!(claim.claims, 2);
    assert_eq!(claim.started_ms, UnixMs(T0));
    assert_eq!(claim.entries, vec![e1, e2]);
    assert_eq!(rig.snapshot().await.msgs, vec![late]);
}

#[tokio::test]
async fn superseding_counts_and_waits_for_the_new_messages_deadline() {
    let rig = Rig::new().await;
    let (e1, e2) = (msg(1, T0), msg(2, T0 + 1_500));
    rig.append(&e1, T0).await;
    rig.claimed("tok-1", T0 + WINDOW).await;
    rig.append(&e2, T0 + 1_500).await;
    rig.pin_ttls().await;
    let due = rig
        .redis_batches
        .requeue(
            &rig.keys,
            &ClaimToken::from("tok-1"),
            Supersede,
            UnixMs(T0 + 1_600),
        )
        .await
        .unwrap();
    assert_eq!(due, Some(T0 + 1_500 + WINDOW));
    assert_eq!(
        rig.snapshot().await,
        Snapshot {
            history: vec![e1.clone(), e2.clone()],
            msgs: vec![e1, e2],
            deadline: Some(T0 + 1_500 + WINDOW),
            state: state(&[
                ("batch", &"tok-1"),
                ("claims", &1),
                ("supersedes", &1),
                ("started", &T0),
            ]),
            score: Some(T0 + 1_500 + WINDOW),
            ..Snapshot::default()
        }
    );
    let claim = rig.claimed("tok-2", T0 + 1_500 + WINDOW).await;
    assert_eq!(
        (claim.batch_id.as_str(), claim.claims, claim.supersedes),
        ("tok-1", 2, 1)
    );
}

#[tokio::test]
async fn a_superseded_batch_is_still_due_by_its_first_message_plus_max_wait() {
    let rig = Rig::new().await;
    let (e1, e2) = (msg(1, T0), msg(2, T0 + 4_500));
    rig.append(&e1, T0).await;
    rig.claimed("tok-1", T0 + WINDOW).await;
    rig.pin_ttls().await;
    rig.append(&e2, T0 + 4_500).await; // its own deadline: T0 + 5_500
    let due = rig
        .redis_batches
        .requeue(
            &rig.keys,
            &ClaimToken::from("tok-1"),
            Supersede,
            UnixMs(T0 + 4_600),
        )
        .await
        .unwrap();
    assert_eq!(due, Some(T0 + MAX_WAIT));
    let snapshot = rig.snapshot().await;
    assert_eq!(snapshot.deadline, Some(T0 + MAX_WAIT));
    assert_eq!(snapshot.score, Some(T0 + MAX_WAIT));
    assert_eq!(snapshot.msgs, vec![e1, e2]);
    assert_eq!(snapshot.state["started"], T0.to_string());
}

#[tokio::test]
async fn a_superseded_batch_that_reaches_max_messages_is_due_at_once() {
    let rig = Rig::new().await;
    let (e1, e2, e3) = (msg(1, T0), msg(2, T0 + 200), msg(3, T0 + 1_500));
    rig.append(&e1, T0).await;
    rig.append(&e2, T0 + 200).await;
    rig.claimed("tok-1", T0 + 1_200).await;
    // Alone it is one message of three: its own deadline is a window away.
    rig.append(&e3, T0 + 1_500).await;
    let now = T0 + 1_600;
    let due = rig
        .redis_batches
        .requeue(
            &rig.keys,
            &ClaimToken::from("tok-1"),
            Supersede,
            UnixMs(now),
        )
        .await
        .unwrap();
    assert_eq!(due, Some(now));
    let snapshot = rig.snapshot().await;
    assert_eq!(snapshot.msgs, vec![e1, e2, e3]);
    assert_eq!(snapshot.deadline, Some(now));
    assert_eq!(snapshot.score, Some(now));
}

#[tokio::test]
async fn requeueing_with_a_stale_token_changes_nothing() {
    for mode in [HandBack, Supersede] {
        for taken_over in [true, false] {
            let rig = Rig::new().await;
            rig.append(&msg(1, T0), T0).await;
            rig.claimed("tok-1", T0 + WINDOW).await;
            rig.append(&msg(2, T0 + 2_900), T0 + 2_900).await;
            rig.drop_key(&rig.keys.lock).await;
            if taken_over {
                rig.claimed("tok-2", T0 + WINDOW + LEASE).await;
            }
            let before = rig.freeze().await;
            let due = rig
                .redis_batches
                .requeue(
                    &rig.keys,
                    &ClaimToken::from("tok-1"),
                    mode,
                    UnixMs(T0 + 3_500),
                )
                .await
                .unwrap();
            assert_eq!(due, None, "{mode:?}, taken over: {taken_over}");
            rig.assert_untouched(&before).await;
        }
    }
}

#[tokio::test]
async fn a_message_after_a_hand_back_does_not_push_back_the_batch_due_at_once() {
    let rig = Rig::new().await;
    let e1 = msg(1, T0);
    rig.append(&e1, T0).await;
    rig.claimed("tok-1", T0 + WINDOW).await;
    let handed_back = T0 + 1_000;
    rig.redis_batches
        .requeue(
            &rig.keys,
            &ClaimToken::from("tok-1"),
            HandBack,
            UnixMs(handed_back),
        )
        .await
        .unwrap();

    // No lock any more, but a batch in flight: the message waits for it.
    let e2 = msg(2, T0 + 1_100);
    rig.append(&e2, T0 + 1_100).await;
    let snapshot = rig.snapshot().await;
    assert_eq!(snapshot.score, Some(handed_back), "still due at once");
    assert_eq!(snapshot.msgs, vec![e2.clone()]);
    assert_eq!(snapshot.deadline, Some(T0 + 1_100 + WINDOW));

    // The resumed batch goes first; its ack schedules the new message's batch.
    let claim = rig.claimed("tok-2", handed_back + 10).await;
    assert_eq!(
        (claim.batch_id.as_str(), claim.entries.clone()),
        ("tok-1", vec![e1])
    );
    rig.redis_batches
        .ack(
            &rig.keys,
            &ClaimToken::from("tok-2"),
            &[],
            UnixMs(handed_back + 20),
        )
        .await
        .unwrap();
    assert_eq!(rig.snapshot().await.score, Some(T0 + 1_100 + WINDOW));
}
