//! append.lua: history, the collecting batch, its deadline and the agenda.

use super::*;
use lull::batch::AppendMode::{Choice, HistoryOnly, Message};

/// Appends `steps` (entry, mode, now) to a fresh conversation, then checks the
/// last reply's deadline and every key against a batch that started at the first
/// step's `now` and holds every step's entry.
async fn assert_due_at(steps: &[(Entry, AppendMode, i64)], due: i64) {
    let rig = Rig::new().await;
    let mut last = None;
    for (entry, mode, now) in steps {
        last = Some(rig.append_as(entry, *mode, false, *now).await);
    }
    let entries: Vec<Entry> = steps.iter().map(|(e, _, _)| e.clone()).collect();
    assert_eq!(
        last.unwrap(),
        AppendOutcome {
            hydrate: steps.len() == 1,
            tracked: false,
            deadline_ms: due,
            batch_len: steps.len() as i64,
            paused: false,
        }
    );
    assert_eq!(
        rig.snapshot().await,
        Snapshot {
            history: entries.clone(),
            msgs: entries,
            deadline: Some(due),
            state: state(&[("started", &steps[0].2)]),
            score: Some(due),
            ..Snapshot::default()
        }
    );
}

#[tokio::test]
async fn a_first_message_asks_for_hydration_and_is_due_after_the_window() {
    let rig = Rig::new().await;
    let e = msg(1, T0);
    let out = rig.append(&e, T0).await;
    assert_eq!(
        out,
        AppendOutcome {
            hydrate: true,
            tracked: false,
            deadline_ms: T0 + WINDOW,
            batch_len: 1,
            paused: false,
        }
    );
    assert_eq!(
        rig.snapshot().await,
        Snapshot {
            history: vec![e.clone()],
            msgs: vec![e],
            deadline: Some(T0 + WINDOW),
            state: state(&[("started", &T0)]),
            score: Some(T0 + WINDOW),
            ..Snapshot::default()
        }
    );
    let ttls = rig.ttls().await;
    for (name, pttl) in [
        ("history", ttls.history),
        ("msgs", ttls.msgs),
        ("deadline", ttls.deadline),
        ("state", ttls.state),
    ] {
        assert_fresh(name, pttl, TTL, 5_000);
    }
    assert_eq!((ttls.inflight, ttls.lock), (-2, -2));
}

#[tokio::test]
async fn a_later_message_slides_the_deadline() {
    assert_due_at(
        &[
            (msg(1, T0), Message, T0),
            (msg(2, T0 + 600), Message, T0 + 600),
        ],
        T0 + 600 + WINDOW,
    )
    .await;
}

#[tokio::test]
async fn the_deadline_never_passes_the_first_message_plus_max_wait() {
    assert_due_at(
        &[
            (msg(1, T0), Message, T0),
            (msg(2, T0 + 4_500), Message, T0 + 4_500),
        ],
        T0 + MAX_WAIT,
    )
    .await;
}

#[tokio::test]
async fn a_batch_reaching_max_messages_is_due_at_once() {
    assert_due_at(
        &[
            (msg(1, T0), Message, T0),
            (msg(2, T0 + 100), Message, T0 + 100),
            (msg(3, T0 + 200), Message, T0 + 200),
        ],
        T0 + 200,
    )
    .await;
}

#[tokio::test]
async fn a_menu_choice_is_due_after_the_grace() {
    assert_due_at(&[(msg(1, T0), Choice, T0)], T0 + GRACE).await;
}

#[tokio::test]
async fn a_menu_choice_after_a_message_cuts_the_window_to_the_grace() {
    assert_due_at(
        &[
            (msg(1, T0), Message, T0),
            (msg(2, T0 + 300), Choice, T0 + 300),
        ],
        T0 + 300 + GRACE,
    )
    .await;
}

#[tokio::test]
async fn a_message_after_a_menu_choice_waits_the_full_window_again() {
    assert_due_at(
        &[
            (msg(1, T0), Choice, T0),
            (msg(2, T0 + 50), Message, T0 + 50),
        ],
        T0 + 50 + WINDOW,
    )
    .await;
}

#[tokio::test]
async fn a_history_only_message_touches_history_alone() {
    let rig = Rig::new().await;
    let reaction = msg(1, T0);
    let out = rig.append_as(&reaction, HistoryOnly, false, T0).await;
    assert_eq!(
        out,
        AppendOutcome {
            hydrate: true,
            tracked: false,
            deadline_ms: 0,
            batch_len: 0,
            paused: false,
        }
    );
    assert_eq!(
        rig.snapshot().await,
        Snapshot {
            history: vec![reaction],
            ..Snapshot::default()
        }
    );
    assert_fresh("history", rig.ttls().await.history, TTL, 5_000);
}

#[tokio::test]
async fn a_history_only_message_does_not_slide_a_collecting_batch() {
    let rig = Rig::new().await;
    let e1 = msg(1, T0);
    let reaction = msg(2, T0 + 500);
    rig.append(&e1, T0).await;
    let out = rig.append_as(&reaction, HistoryOnly, false, T0 + 500).await;
    assert_eq!(
        out,
        AppendOutcome {
            hydrate: false,
            tracked: false,
            deadline_ms: 0,
            batch_len: 1,
            paused: false,
        }
    );
    assert_eq!(
        rig.snapshot().await,
        Snapshot {
            history: vec![e1.clone(), reaction],
            msgs: vec![e1],
            deadline: Some(T0 + WINDOW),
            state: state(&[("started", &T0)]),
            score: Some(T0 + WINDOW),
            ..Snapshot::default()
        }
    );
}

#[tokio::test]
async fn out_of_order_messages_are_kept_in_timestamp_then_id_order() {
    // Sorted by (ts, id): e5, e1, e3, e4, e2.
    let e1 = msg(1, T0 + 100);
    let e2 = msg(2, T0 + 300);
    let e3 = msg(3, T0 + 200);
    let e4 = msg(4, T0 + 200);
    let e5 = msg(5, T0 + 50);
    let sorted = vec![e5.clone(), e1.clone(), e3.clone(), e4.clone(), e2.clone()];
    let arrivals = [
        vec![&e1, &e2, &e3, &e4, &e5],
        vec![&e5, &e4, &e3, &e2, &e1],
        vec![&e2, &e4, &e3, &e1, &e5],
        vec![&e3, &e5, &e2, &e1, &e4],
        vec![&e4, &e3, &e5, &e1, &e2],
    ];
    for arrival in arrivals {
        let rig = Rig::new().await;
        for (i, e) in arrival.iter().enumerate() {
            rig.append(e, T0 + 1_000 + i as i64).await;
        }
        let ids: Vec<i64> = arrival.iter().map(|e| e.id).collect();
        let snapshot = rig.snapshot().await;
        assert_eq!(snapshot.history, sorted, "history after arrivals {ids:?}");
        assert_eq!(snapshot.msgs, sorted, "msgs after arrivals {ids:?}");
    }
}

#[tokio::test]
async fn a_message_for_a_locked_conversation_is_collected_but_keeps_the_lease_score() {
    let rig = Rig::new().await;
    let lease_end = T0 + 1_500;
    let in_flight = msg(1, T0 - 2_000);
    rig.seed_list(&rig.keys.history, std::slice::from_ref(&in_flight))
        .await;
    rig.seed_list(&rig.keys.inflight, std::slice::from_ref(&in_flight))
        .await;
    rig.seed_lock("tok-other", PINNED).await;
    rig.seed_score(lease_end).await;

    let e2 = msg(2, T0);
    let out = rig.append(&e2, T0).await;
    assert_eq!(
        out,
        AppendOutcome {
            hydrate: false,
            tracked: false,
            deadline_ms: T0 + WINDOW,
            batch_len: 1,
            paused: false,
        }
    );
    assert_eq!(
        rig.snapshot().await,
        Snapshot {
            history: vec![in_flight.clone(), e2.clone()],
            msgs: vec![e2],
            inflight: vec![in_flight],
            deadline: Some(T0 + WINDOW),
            lock: Some("tok-other".into()),
            state: state(&[("started", &T0)]),
            score: Some(lease_end),
        }
    );
}

#[tokio::test]
async fn reconciling_a_message_already_collecting_changes_nothing() {
    let rig = Rig::new().await;
    let e1 = msg(1, T0);
    rig.append(&e1, T0).await;
    let before = rig.freeze().await;
    let out = rig.append_as(&e1, Message, true, T0 + 500).await;
    assert_eq!(
        out,
        AppendOutcome {
            hydrate: false,
            tracked: true,
            deadline_ms: 0,
            batch_len: 1,
            paused: false,
        }
    );
    rig.assert_untouched(&before).await;
}

#[tokio::test]
async fn reconciling_a_message_already_in_flight_changes_nothing() {
    let rig = Rig::new().await;
    let e1 = msg(1, T0);
    rig.append(&e1, T0).await;
    rig.claimed("tok-1", T0 + WINDOW).await;
    let before = rig.freeze().await;
    let out = rig.append_as(&e1, Message, true, T0 + 1_500).await;
    assert_eq!(
        out,
        AppendOutcome {
            hydrate: false,
            tracked: true,
            deadline_ms: 0,
            batch_len: 0,
            paused: false,
        }
    );
    rig.assert_untouched(&before).await;
}

#[tokio::test]
async fn reconciling_a_message_only_history_remembers_batches_it_without_a_duplicate() {
    let rig = Rig::new().await;
    let e1 = msg(1, T0);
    rig.seed_list(&rig.keys.history, std::slice::from_ref(&e1))
        .await;
    let now = T0 + 60_000;
    let out = rig.append_as(&e1, Message, true, now).await;
    assert_eq!(
        out,
        AppendOutcome {
            hydrate: false,
            tracked: false,
            deadline_ms: now + WINDOW,
            batch_len: 1,
            paused: false,
        }
    );
    assert_eq!(
        rig.snapshot().await,
        Snapshot {
            history: vec![e1.clone()],
            msgs: vec![e1],
            deadline: Some(now + WINDOW),
            state: state(&[("started", &now)]),
            score: Some(now + WINDOW),
            ..Snapshot::default()
        }
    );
}

#[tokio::test]
async fn history_keeps_only_the_newest_history_limit_entries() {
    let rig = Rig::new().await;
    let all: Vec<Entry> = (1..=7).map(|i| msg(i, T0 + i * 10)).collect();
    for e in &all {
        rig.append(e, e.ts).await;
    }
    let snapshot = rig.snapshot().await;
    assert_eq!(snapshot.history, all[all.len() - HISTORY_LIMIT..]);
    assert_eq!(snapshot.msgs, all, "the batch itself is never trimmed");
}

#[tokio::test]
async fn the_same_append_run_twice_adds_the_message_once() {
    let rig = Rig::new().await;
    let (e1, e2) = (msg(1, T0), msg(2, T0 + 100));
    rig.append(&e1, T0).await;
    rig.append(&e2, T0 + 100).await;
    // A client resending the call after its reply was lost.
    let again = rig.append(&e2, T0 + 150).await;
    assert_eq!(again.batch_len, 2);
    let snapshot = rig.snapshot().await;
    assert_eq!(snapshot.msgs, vec![e1.clone(), e2.clone()]);
    assert_eq!(snapshot.history, vec![e1, e2]);
}

#[tokio::test]
async fn until_history_is_hydrated_every_append_asks_for_it_again() {
    let rig = Rig::new().await;
    let (e1, e2, e3) = (msg(1, T0), msg(2, T0 + 100), msg(3, T0 + 200));
    assert!(rig.append_unhydrated(&e1, Message, false, T0).await.hydrate);
    // The hydrate after e1 failed (PostgreSQL unreachable): e2 asks again.
    assert!(
        rig.append_unhydrated(&e2, Message, false, T0 + 100)
            .await
            .hydrate
    );
    let older = msg(-1, T0 - 5_000);
    rig.redis_batches
        .hydrate(&rig.conversation, std::slice::from_ref(&older))
        .await
        .unwrap();
    assert!(
        !rig.append_unhydrated(&e3, Message, false, T0 + 200)
            .await
            .hydrate
    );
    assert_eq!(rig.snapshot().await.history, vec![older, e1, e2, e3]);
}

#[tokio::test]
async fn a_reaction_that_finds_history_missing_marks_it_in_a_state_that_expires() {
    let rig = Rig::new().await;
    let outcome = rig
        .append_unhydrated(&msg(1, T0), HistoryOnly, false, T0)
        .await;
    assert!(outcome.hydrate);
    assert_eq!(rig.snapshot().await.state, state(&[("unhydrated", &1)]));
    assert_fresh("state", rig.ttls().await.state, TTL, 5_000);
}

#[tokio::test]
async fn while_history_awaits_its_hydrate_a_reaction_keeps_the_mark_as_long_as_the_history() {
    let rig = Rig::new().await;
    rig.append_unhydrated(&msg(1, T0), Message, false, T0).await;
    rig.pin_ttls().await;
    let outcome = rig
        .append_unhydrated(&msg(2, T0 + 100), HistoryOnly, false, T0 + 100)
        .await;
    assert!(outcome.hydrate);
    let ttls = rig.ttls().await;
    assert_fresh("history", ttls.history, TTL, 5_000);
    assert_fresh("state", ttls.state, TTL, 5_000);
}
