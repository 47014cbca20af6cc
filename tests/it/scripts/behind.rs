//! behind.lua: a claimed batch put back behind an older one Redis had lost.

use super::*;
use lull::batch::BatchId;

#[tokio::test]
async fn the_older_batch_goes_in_flight_due_now_and_the_claimed_messages_wait_behind_it() {
    let rig = Rig::new().await;
    let older = [msg(1, T0 - 5_000), msg(2, T0 - 4_000)];
    let (e3, e4) = (msg(3, T0), msg(4, T0 + 1_500));
    rig.append(&e3, T0).await;
    rig.claimed("tok-1", T0 + WINDOW).await;
    rig.append(&e4, T0 + 1_500).await;
    rig.pin_ttls().await;
    let now = T0 + 1_600;
    let put = rig
        .redis_batches
        .put_behind(
            &rig.keys,
            &ClaimToken::from("tok-1"),
            &BatchId::from("older"),
            UnixMs(T0 - 5_000),
            &older,
            UnixMs(now),
        )
        .await
        .unwrap();
    assert!(put);
    assert_eq!(
        rig.snapshot().await,
        Snapshot {
            history: vec![e3.clone(), e4.clone()],
            msgs: vec![e3.clone(), e4.clone()],
            inflight: older.to_vec(),
            deadline: Some(T0 + 1_500 + WINDOW),
            state: state(&[
                ("batch", &"older"),
                ("inflight_started", &(T0 - 5_000)),
                ("started", &T0),
            ]),
            score: Some(now),
            ..Snapshot::default()
        }
    );
    let ttls = rig.ttls().await;
    for (name, pttl) in [
        ("msgs", ttls.msgs),
        ("inflight", ttls.inflight),
        ("state", ttls.state),
    ] {
        assert_fresh(name, pttl, TTL, 5_000);
    }
    assert_eq!(ttls.lock, -2, "the lock is released");

    // The next claim resumes the older batch under its own id; the others are
    // still in their window, so they are the batch after it.
    let claim = rig.claimed("tok-2", now).await;
    assert_eq!(claim.batch_id, "older");
    assert_eq!(claim.entries, older.to_vec());
    assert_eq!(rig.snapshot().await.msgs, vec![e3, e4]);
}

#[tokio::test]
async fn a_claim_whose_lease_was_lost_changes_nothing() {
    let rig = Rig::new().await;
    let e1 = msg(1, T0);
    rig.append(&e1, T0).await;
    rig.claimed("tok-1", T0 + WINDOW).await;
    let before = rig.snapshot().await;
    let put = rig
        .redis_batches
        .put_behind(
            &rig.keys,
            &ClaimToken::from("someone-else"),
            &BatchId::from("older"),
            UnixMs(T0 - 5_000),
            &[msg(9, T0 - 5_000)],
            UnixMs(T0 + 1_100),
        )
        .await
        .unwrap();
    assert!(!put);
    assert_eq!(rig.snapshot().await, before);
}
