//! ack.lua: a batch finished by the holder of its lock.

use super::*;
use lull::batch::AckOutcome;

/// A conversation whose batch [e1] was claimed with "tok-1" at T0 + WINDOW; the
/// lock is pinned so it outlives a slow test.
async fn claimed_rig() -> (Rig, Entry) {
    let rig = Rig::new().await;
    let e1 = msg(1, T0);
    rig.append(&e1, T0).await;
    rig.claimed("tok-1", T0 + WINDOW).await;
    rig.pin_ttls().await;
    (rig, e1)
}

#[tokio::test]
async fn ack_drops_the_batch_releases_the_lock_and_records_the_reply() {
    let (rig, e1) = claimed_rig().await;
    let reply = [bot(10, T0 + 1_400), bot(11, T0 + 1_401)];
    let out = rig
        .redis_batches
        .ack(
            &rig.keys,
            &ClaimToken::from("tok-1"),
            &reply,
            UnixMs(T0 + 1_500),
        )
        .await
        .unwrap();
    assert_eq!(out, AckOutcome::Done);
    assert_eq!(
        rig.snapshot().await,
        Snapshot {
            history: vec![e1, reply[0].clone(), reply[1].clone()],
            ..Snapshot::default()
        }
    );
    assert_fresh("history", rig.ttls().await.history, TTL, 5_000);
}

#[tokio::test]
async fn ack_does_not_create_a_missing_history() {
    let (rig, _) = claimed_rig().await;
    rig.drop_key(&rig.keys.history).await;
    let out = rig
        .redis_batches
        .ack(
            &rig.keys,
            &ClaimToken::from("tok-1"),
            &[bot(10, T0 + 1_400)],
            UnixMs(T0 + 1_500),
        )
        .await
        .unwrap();
    assert_eq!(out, AckOutcome::Done);
    assert_eq!(rig.snapshot().await, Snapshot::default());
}

#[tokio::test]
async fn ack_puts_the_reply_before_a_message_sent_after_it() {
    let (rig, e1) = claimed_rig().await;
    // Sent after the reply (its record took a while), stored before the ack.
    let later = msg(2, T0 + 1_450);
    rig.append(&later, T0 + 1_460).await;
    let reply = [bot(10, T0 + 1_400), bot(11, T0 + 1_401)];
    rig.redis_batches
        .ack(
            &rig.keys,
            &ClaimToken::from("tok-1"),
            &reply,
            UnixMs(T0 + 1_500),
        )
        .await
        .unwrap();
    assert_eq!(
        rig.snapshot().await.history,
        vec![e1, reply[0].clone(), reply[1].clone(), later]
    );
}

#[tokio::test]
async fn ack_records_a_reply_already_in_history_once() {
    let (rig, e1) = claimed_rig().await;
    let reply = [bot(10, T0 + 1_400)];
    rig.redis_batches
        .hydrate(&rig.conversation, &reply)
        .await
        .unwrap();
    rig.redis_batches
        .ack(
            &rig.keys,
            &ClaimToken::from("tok-1"),
            &reply,
            UnixMs(T0 + 1_500),
        )
        .await
        .unwrap();
    assert_eq!(rig.snapshot().await.history, vec![e1, reply[0].clone()]);
}

#[tokio::test]
async fn an_ack_forgetting_a_refused_batch_drops_its_messages_from_history() {
    let rig = Rig::new().await;
    let (earlier, reply, refused) = (msg(1, T0), bot(2, T0 + 100), msg(3, T0 + 2_000));
    rig.seed_list(&rig.keys.history, &[earlier.clone(), reply.clone()])
        .await;
    rig.append(&refused, T0 + 2_000).await;
    rig.claimed("tok-1", T0 + 2_000 + WINDOW).await;
    // A message that came meanwhile is the next batch's, and stays.
    let next = msg(4, T0 + 3_500);
    rig.append(&next, T0 + 3_500).await;
    let out = rig
        .redis_batches
        .ack_forgetting(&rig.keys, &ClaimToken::from("tok-1"), UnixMs(T0 + 3_600))
        .await
        .unwrap();
    assert!(matches!(out, AckOutcome::Rescheduled { .. }), "{out:?}");
    assert_eq!(rig.snapshot().await.history, vec![earlier, reply, next]);
}

#[tokio::test]
async fn an_ack_forgetting_finds_the_message_by_id_however_history_wrote_it() {
    let rig = Rig::new().await;
    let refused = msg(3, T0);
    rig.append(&refused, T0).await;
    rig.claimed("tok-1", T0 + WINDOW).await;
    // History rebuilt from PostgreSQL's row: the same message, other text.
    let mut as_stored = refused.clone();
    as_stored.text = "the same message, as PostgreSQL gave it".into();
    rig.seed_list(&rig.keys.history, &[as_stored]).await;
    rig.redis_batches
        .ack_forgetting(
            &rig.keys,
            &ClaimToken::from("tok-1"),
            UnixMs(T0 + WINDOW + 100),
        )
        .await
        .unwrap();
    assert_eq!(rig.snapshot().await.history, Vec::<Entry>::new());
}

#[tokio::test]
async fn ack_trims_history_to_the_limit() {
    let (rig, e1) = claimed_rig().await;
    let older: Vec<Entry> = (1..=3).map(|i| msg(-i, T0 - i * 1_000)).rev().collect();
    rig.redis_batches
        .hydrate(&rig.conversation, &older)
        .await
        .unwrap();
    let reply = [bot(10, T0 + 1_400), bot(11, T0 + 1_401)];
    rig.redis_batches
        .ack(
            &rig.keys,
            &ClaimToken::from("tok-1"),
            &reply,
            UnixMs(T0 + 1_500),
        )
        .await
        .unwrap();
    let expected = vec![
        older[1].clone(),
        older[2].clone(),
        e1,
        reply[0].clone(),
        reply[1].clone(),
    ];
    assert_eq!(rig.snapshot().await.history, expected);
}

#[tokio::test]
async fn ack_reschedules_messages_that_arrived_meanwhile_at_their_deadline() {
    let (rig, e1) = claimed_rig().await;
    let e2 = msg(2, T0 + 1_500);
    rig.append(&e2, T0 + 1_500).await;
    let reply = bot(10, T0 + 1_600);
    let out = rig
        .redis_batches
        .ack(
            &rig.keys,
            &ClaimToken::from("tok-1"),
            std::slice::from_ref(&reply),
            UnixMs(T0 + 1_700),
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        AckOutcome::Rescheduled {
            next_due_ms: T0 + 1_500 + WINDOW
        }
    );
    assert_eq!(
        rig.snapshot().await,
        Snapshot {
            history: vec![e1, e2.clone(), reply],
            msgs: vec![e2.clone()],
            deadline: Some(T0 + 1_500 + WINDOW),
            state: state(&[("started", &(T0 + 1_500))]),
            score: Some(T0 + 1_500 + WINDOW),
            ..Snapshot::default()
        }
    );
    // They are the next batch, under a new id.
    let next = rig.claimed("tok-2", T0 + 1_500 + WINDOW).await;
    assert_eq!((next.batch_id.as_str(), next.claims), ("tok-2", 1));
    assert_eq!(next.entries, vec![e2]);
}

#[tokio::test]
async fn ack_with_a_stale_token_changes_nothing() {
    // Another worker resumed the batch, or the lease ran out and nobody holds it.
    for taken_over in [true, false] {
        let (rig, _) = claimed_rig().await;
        rig.append(&msg(2, T0 + 2_900), T0 + 2_900).await;
        rig.drop_key(&rig.keys.lock).await;
        if taken_over {
            rig.claimed("tok-2", T0 + WINDOW + LEASE).await;
        }
        let before = rig.freeze().await;
        let out = rig
            .redis_batches
            .ack(
                &rig.keys,
                &ClaimToken::from("tok-1"),
                &[bot(10, T0 + 3_000)],
                UnixMs(T0 + 3_100),
            )
            .await
            .unwrap();
        assert_eq!(out, AckOutcome::Stale, "taken over: {taken_over}");
        rig.assert_untouched(&before).await;
    }
}
