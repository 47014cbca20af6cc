//! hydrate.lua: database rows merged into history.

use super::*;

/// History before, rows read from the database, rows added, history after.
type Case = (Vec<Entry>, Vec<Entry>, i64, Vec<Entry>);

#[tokio::test]
async fn hydrate_merges_rows_by_id_in_platform_order_within_the_limit() {
    let e = |id| msg(id, T0 + id * 100);
    let cases: Vec<Case> = vec![
        (vec![], vec![e(2), e(1)], 2, vec![e(1), e(2)]),
        (
            vec![e(6)],
            vec![e(3), e(1), e(6), e(5), e(2), e(4)],
            5,
            vec![e(2), e(3), e(4), e(5), e(6)],
        ),
        (
            vec![e(1), e(3)],
            vec![e(2), e(3)],
            1,
            vec![e(1), e(2), e(3)],
        ),
        (vec![e(1), e(2)], vec![], 0, vec![e(1), e(2)]),
        (
            vec![msg(5, T0)],
            vec![msg(4, T0), msg(6, T0 - 1)],
            2,
            vec![msg(6, T0 - 1), msg(4, T0), msg(5, T0)],
        ),
    ];
    for (i, (history, rows, added, expected)) in cases.into_iter().enumerate() {
        let rig = Rig::new().await;
        rig.seed_list(&rig.keys.history, &history).await;
        let got = rig
            .redis_batches
            .hydrate(&rig.conversation, &rows)
            .await
            .unwrap();
        assert_eq!(got, added, "case {i}: rows added");
        assert_eq!(
            rig.snapshot().await,
            Snapshot {
                history: expected,
                ..Snapshot::default()
            },
            "case {i}"
        );
        if added > 0 {
            assert_fresh("history", rig.ttls().await.history, TTL, 5_000);
        }
    }
}

#[tokio::test]
async fn hydrating_the_same_rows_again_adds_nothing() {
    let rig = Rig::new().await;
    let rows: Vec<Entry> = (1..=3).map(|i| msg(i, T0 + i)).collect();
    let e4 = msg(4, T0 + 4);
    assert!(rig.append(&e4, T0 + 4).await.hydrate);
    assert_eq!(
        rig.redis_batches
            .hydrate(&rig.conversation, &rows)
            .await
            .unwrap(),
        3
    );
    let before = rig.freeze().await;
    assert_eq!(
        rig.redis_batches
            .hydrate(&rig.conversation, &rows)
            .await
            .unwrap(),
        0
    );
    rig.assert_untouched(&before).await;
    let mut expected = rows;
    expected.push(e4);
    assert_eq!(before.snapshot.history, expected);
}
