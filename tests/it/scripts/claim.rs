//! claim.lua: the lock, the in-flight batch, the lease on the agenda.

use super::*;

#[tokio::test]
async fn claiming_before_the_deadline_changes_nothing() {
    let rig = Rig::new().await;
    rig.append(&msg(1, T0), T0).await;
    let before = rig.freeze().await;
    assert_eq!(
        rig.claim("tok-1", T0 + WINDOW - 1).await,
        ClaimOutcome::NotDue
    );
    rig.assert_untouched(&before).await;
}

#[tokio::test]
async fn claiming_a_conversation_off_the_agenda_changes_nothing() {
    let rig = Rig::new().await;
    rig.append(&msg(1, T0), T0).await;
    let _: () = rig
        .redis()
        .zrem(&rig.keys.agenda, rig.keys.member.as_str())
        .await
        .unwrap();
    let before = rig.freeze().await;
    assert_eq!(rig.claim("tok-1", T0 + 10_000).await, ClaimOutcome::NotDue);
    rig.assert_untouched(&before).await;
}

#[tokio::test]
async fn claiming_a_due_batch_moves_it_in_flight_under_a_lease() {
    let rig = Rig::new().await;
    let (e1, e2) = (msg(1, T0), msg(2, T0 + 200));
    rig.append(&e1, T0).await;
    rig.append(&e2, T0 + 200).await;
    let now = T0 + 200 + WINDOW + 30;
    let claim = rig.claimed("tok-1", now).await;
    assert_eq!(
        claim,
        Claim {
            batch_id: "tok-1".into(),
            token: "tok-1".into(),
            claims: 1,
            supersedes: 0,
            started_ms: UnixMs(T0),
            due_ms: UnixMs(T0 + 200 + WINDOW),
            entries: vec![e1.clone(), e2.clone()],
            history: vec![e1.clone(), e2.clone()],
        }
    );
    assert_eq!(
        rig.snapshot().await,
        Snapshot {
            history: vec![e1.clone(), e2.clone()],
            inflight: vec![e1, e2],
            lock: Some("tok-1".into()),
            state: state(&[
                ("batch", &"tok-1"),
                ("claims", &1),
                ("inflight_started", &T0)
            ]),
            score: Some(now + LEASE),
            ..Snapshot::default()
        }
    );
    let ttls = rig.ttls().await;
    assert_fresh("lock", ttls.lock, LEASE, 1_000);
    assert_fresh("inflight", ttls.inflight, TTL, 5_000);
    assert_fresh("state", ttls.state, TTL, 5_000);
}

#[tokio::test]
async fn a_claim_returns_the_conversations_history_after_the_batch() {
    let rig = Rig::new().await;
    let (e1, e2) = (msg(1, T0), msg(2, T0 + 2_000));
    rig.append(&e1, T0).await;
    rig.claimed("tok-1", T0 + WINDOW).await;
    let reply = bot(10, T0 + 1_500);
    rig.redis_batches
        .ack(
            &rig.keys,
            &ClaimToken::from("tok-1"),
            std::slice::from_ref(&reply),
            UnixMs(T0 + 1_500),
        )
        .await
        .unwrap();
    rig.append(&e2, T0 + 2_000).await;
    let claim = rig.claimed("tok-2", T0 + 2_000 + WINDOW).await;
    assert_eq!(claim.entries, vec![e2.clone()]);
    assert_eq!(claim.history, vec![e1, reply, e2]);
}

#[tokio::test]
async fn a_claim_returns_no_history_when_redis_has_none() {
    let rig = Rig::new().await;
    let e1 = msg(1, T0);
    rig.append(&e1, T0).await;
    rig.drop_key(&rig.keys.history).await;
    let claim = rig.claimed("tok-1", T0 + WINDOW).await;
    assert_eq!((claim.entries, claim.history), (vec![e1], vec![]));
    assert_eq!(
        rig.snapshot().await.history,
        vec![],
        "claim.lua only reads history"
    );
}

#[tokio::test]
async fn claiming_a_locked_conversation_pushes_it_to_the_locks_expiry() {
    let rig = Rig::new().await;
    let e1 = msg(1, T0);
    rig.append(&e1, T0).await;
    rig.claimed("tok-1", T0 + WINDOW).await;
    rig.pin_ttls().await;
    // The lease ran out on the agenda, but the lock (real time) still holds.
    let now = T0 + WINDOW + LEASE;
    let before = rig.snapshot().await;
    let ClaimOutcome::Locked { retry_at_ms } = rig.claim("tok-2", now).await else {
        panic!("expected Locked");
    };
    assert!(
        retry_at_ms > now + PINNED - 5_000 && retry_at_ms <= now + PINNED,
        "retry at the lock's expiry: {retry_at_ms} vs now {now}"
    );
    assert_eq!(
        rig.snapshot().await,
        Snapshot {
            score: Some(retry_at_ms),
            ..before
        }
    );
}

#[tokio::test]
async fn claiming_a_conversation_with_nothing_to_answer_removes_it() {
    let rig = Rig::new().await;
    rig.seed_score(T0).await;
    let _: () = rig
        .redis()
        .set(&rig.keys.deadline, T0, None, None, false)
        .await
        .unwrap();
    let _: () = rig
        .redis()
        .hset(
            &rig.keys.state,
            [("batch", "tok-old"), ("claims", "2"), ("supersedes", "1")],
        )
        .await
        .unwrap();
    assert_eq!(rig.claim("tok-1", T0 + 1).await, ClaimOutcome::Empty);
    assert_eq!(rig.snapshot().await, Snapshot::default());
}

#[tokio::test]
async fn a_batch_resumed_after_its_lease_keeps_its_id_and_counts_the_claim() {
    let rig = Rig::new().await;
    let e1 = msg(1, T0);
    rig.append(&e1, T0).await;
    rig.claimed("tok-1", T0 + WINDOW).await;
    // The worker died: its lock expired.
    rig.drop_key(&rig.keys.lock).await;
    let now = T0 + WINDOW + LEASE;
    let claim = rig.claimed("tok-2", now).await;
    assert_eq!(
        claim,
        Claim {
            batch_id: "tok-1".into(),
            token: "tok-2".into(),
            claims: 2,
            supersedes: 0,
            started_ms: UnixMs(T0),
            due_ms: UnixMs(now),
            entries: vec![e1.clone()],
            history: vec![e1.clone()],
        }
    );
    assert_eq!(
        rig.snapshot().await,
        Snapshot {
            history: vec![e1.clone()],
            inflight: vec![e1],
            lock: Some("tok-2".into()),
            state: state(&[
                ("batch", &"tok-1"),
                ("claims", &2),
                ("inflight_started", &T0)
            ]),
            score: Some(now + LEASE),
            ..Snapshot::default()
        }
    );
}

#[tokio::test]
async fn a_resumed_batch_takes_newer_messages_whose_window_has_passed() {
    let rig = Rig::new().await;
    let (e1, e2) = (msg(1, T0), msg(2, T0 + 1_500));
    rig.append(&e1, T0).await;
    rig.claimed("tok-1", T0 + WINDOW).await;
    rig.append(&e2, T0 + 1_500).await; // due at T0 + 2_500
    rig.drop_key(&rig.keys.lock).await;
    let now = T0 + WINDOW + LEASE;
    let claim = rig.claimed("tok-2", now).await;
    assert_eq!((claim.batch_id.as_str(), claim.claims), ("tok-1", 2));
    assert_eq!(claim.entries, vec![e1.clone(), e2.clone()]);
    assert_eq!(
        rig.snapshot().await,
        Snapshot {
            history: vec![e1.clone(), e2.clone()],
            inflight: vec![e1, e2],
            lock: Some("tok-2".into()),
            state: state(&[
                ("batch", &"tok-1"),
                ("claims", &2),
                ("inflight_started", &T0)
            ]),
            score: Some(now + LEASE),
            ..Snapshot::default()
        }
    );
}

#[tokio::test]
async fn a_resumed_batch_leaves_newer_messages_still_in_their_window() {
    let rig = Rig::new().await;
    let (e1, e2) = (msg(1, T0), msg(2, T0 + 2_900));
    rig.append(&e1, T0).await;
    rig.claimed("tok-1", T0 + WINDOW).await;
    rig.append(&e2, T0 + 2_900).await; // due at T0 + 3_900
    rig.drop_key(&rig.keys.lock).await;
    let now = T0 + WINDOW + LEASE;
    let claim = rig.claimed("tok-2", now).await;
    assert_eq!((claim.batch_id.as_str(), claim.claims), ("tok-1", 2));
    assert_eq!(claim.entries, vec![e1.clone()]);
    assert_eq!(
        rig.snapshot().await,
        Snapshot {
            history: vec![e1.clone(), e2.clone()],
            msgs: vec![e2],
            inflight: vec![e1],
            deadline: Some(T0 + 2_900 + WINDOW),
            lock: Some("tok-2".into()),
            state: state(&[
                ("batch", &"tok-1"),
                ("claims", &2),
                ("inflight_started", &T0),
                ("started", &(T0 + 2_900)),
            ]),
            score: Some(now + LEASE),
        }
    );
}

#[tokio::test]
async fn two_claimers_racing_get_the_batch_once() {
    let first = Rig::new().await;
    for i in 0..50 {
        let rig = first.with_contact(&format!("1555000{i:04}"));
        let e = msg(1, T0);
        rig.append(&e, T0).await;
        let now = T0 + WINDOW;
        let (a, b) = tokio::join!(rig.claim("tok-a", now), rig.claim("tok-b", now));
        let (winner, loser) = match (a, b) {
            (ClaimOutcome::Claimed(c), other) | (other, ClaimOutcome::Claimed(c)) => (c, other),
            (a, b) => panic!("round {i}: nobody claimed: {a:?}, {b:?}"),
        };
        assert_eq!(loser, ClaimOutcome::NotDue, "round {i}");
        assert_eq!(winner.entries, vec![e], "round {i}");
        let snapshot = rig.snapshot().await;
        assert_eq!(snapshot.lock.as_deref(), Some(winner.token.as_str()));
        assert_eq!(snapshot.state["claims"], "1", "round {i}");
    }
}

#[tokio::test]
async fn a_claim_before_history_is_hydrated_leaves_it_out_for_the_worker_to_read_postgres() {
    let rig = Rig::new().await;
    let e1 = msg(1, T0);
    rig.append_unhydrated(&e1, AppendMode::Message, false, T0)
        .await;
    let claim = rig.claimed("tok-1", T0 + WINDOW).await;
    assert_eq!(claim.entries, vec![e1.clone()]);
    assert!(claim.history.is_empty(), "{:?}", claim.history);
}

#[tokio::test]
async fn a_claim_after_the_hydrate_carries_the_history() {
    let rig = Rig::new().await;
    let (older, e1) = (msg(-1, T0 - 5_000), msg(1, T0));
    rig.append_unhydrated(&e1, AppendMode::Message, false, T0)
        .await;
    rig.redis_batches
        .hydrate(&rig.conversation, std::slice::from_ref(&older))
        .await
        .unwrap();
    let claim = rig.claimed("tok-1", T0 + WINDOW).await;
    assert_eq!(claim.history, vec![older, e1]);
}
