//! extend.lua: the heartbeat of a claimed batch.

use super::*;
use lull::batch::ExtendOutcome;

#[tokio::test]
async fn extending_with_the_claim_token_renews_the_lease_and_counts_pending_messages() {
    let rig = Rig::new().await;
    let (e1, e2) = (msg(1, T0), msg(2, T0 + 1_500));
    rig.append(&e1, T0).await;
    rig.claimed("tok-1", T0 + WINDOW).await;
    rig.append(&e2, T0 + 1_500).await;
    // The batch's own keys are close to expiring, and most of the lease is gone,
    // so the renewals show.
    rig.pin_ttls().await;
    let _: i64 = rig
        .redis()
        .pexpire(&rig.keys.lock, 700, None)
        .await
        .unwrap();
    let before = rig.snapshot().await;
    let now = T0 + 2_000;
    let out = rig
        .redis_batches
        .extend(&rig.keys, &ClaimToken::from("tok-1"), UnixMs(now))
        .await
        .unwrap();
    assert_eq!(
        out,
        ExtendOutcome {
            held: true,
            pending: 1,
            paused: false,
        }
    );
    assert_eq!(
        rig.snapshot().await,
        Snapshot {
            score: Some(now + LEASE),
            ..before
        }
    );
    let ttls = rig.ttls().await;
    assert_fresh("lock", ttls.lock, LEASE, 1_000);
    assert_fresh("inflight", ttls.inflight, TTL, 1_000);
    assert_fresh("state", ttls.state, TTL, 1_000);
}

#[tokio::test]
async fn extending_with_a_stale_token_changes_nothing() {
    // Another worker resumed the batch, or nobody holds the lock any more.
    for taken_over in [true, false] {
        let rig = Rig::new().await;
        rig.append(&msg(1, T0), T0).await;
        rig.claimed("tok-1", T0 + WINDOW).await;
        rig.append(&msg(2, T0 + 1_500), T0 + 1_500).await;
        rig.drop_key(&rig.keys.lock).await;
        if taken_over {
            rig.claimed("tok-2", T0 + WINDOW + LEASE).await;
        }
        let before = rig.freeze().await;
        let out = rig
            .redis_batches
            .extend(&rig.keys, &ClaimToken::from("tok-1"), UnixMs(T0 + 3_500))
            .await
            .unwrap();
        let pending = before.snapshot.msgs.len() as i64;
        assert_eq!(
            out,
            ExtendOutcome {
                held: false,
                pending,
                paused: false,
            },
            "taken over: {taken_over}"
        );
        rig.assert_untouched(&before).await;
    }
}
