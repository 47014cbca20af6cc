//! The grouped writes of a reply's life (claim recorded, messages taken before the
//! send, reply recorded as sent) keep the semantics of the single-batch statements
//! they replaced, whatever else shares their group.
//!
//! The store tests run on one thread with a store of one connection: the requests
//! of one `join!` are all queued before the group's flusher runs, so they are
//! flushed as one statement. Each tag's messages are a conversation of their own,
//! and a batch is of its tag's conversation (its id up to the first `-`): a batch
//! takes its conversation's older unowned messages too (see older_unowned.rs),
//! which these tests leave aside.

use crate::helpers::*;
use crate::pg_proxy::PgProxy;
use lull::batch::BatchId;
use lull::message::{ChannelKind, Conversation, InboundMessage, MessageKind};
use lull::store::{BatchRow, NewBatch, Store};
use lull::time::UnixMs;

fn maria() -> Conversation {
    Conversation::new(ChannelKind::WhatsApp, PHONE_ID, MARIA)
}

/// The conversation of a tag's messages, and of the batches named after it.
fn conversation(tag: &str) -> Conversation {
    let tag = tag.split('-').next().unwrap_or(tag);
    Conversation::new(ChannelKind::WhatsApp, PHONE_ID, format!("{MARIA}-{tag}"))
}

/// Stores `n` inbound messages in the tag's conversation; returns their ids in
/// platform order, as Redis gives a batch's. Each was sent a millisecond before
/// the one stored before it: platform order is the reverse of id order.
async fn messages(store: &Store, tag: &str, n: usize) -> Vec<i64> {
    let now = now_secs() * 1000;
    let rows: Vec<_> = (0..n)
        .map(|i| {
            let id = format!("wamid.{tag}{i}");
            let message = InboundMessage {
                conversation: conversation(tag),
                external_id: id.clone(),
                kind: MessageKind::Text,
                text: format!("{tag} {i}"),
                timestamp_ms: now - i as i64,
                contact_name: None,
                payload: serde_json::json!({ "id": id }),
            };
            (message, true)
        })
        .collect();
    let stored = store.insert_inbound(rows).await.unwrap();
    stored.into_iter().rev().map(|e| e.unwrap().id).collect()
}

/// A claim of `message_ids`, due before any message here was stored: its commit
/// takes none of its conversation's newer messages.
fn new_batch(id: &str, message_ids: &[i64], claims: i64) -> NewBatch {
    let now = UnixMs::now();
    NewBatch {
        id: id.into(),
        conversation: conversation(id),
        message_ids: message_ids.to_vec(),
        claims,
        supersedes: 0,
        started_ms: now,
        due_ms: UnixMs(0),
        claimed_ms: now,
    }
}

async fn open(store: &Store, id: &str, message_ids: &[i64]) {
    store
        .open_batch(new_batch(id, message_ids, 1))
        .await
        .unwrap();
}

/// Commits a batch whose claim may or may not have been recorded.
async fn commit(
    store: &Store,
    id: &str,
    message_ids: &[i64],
    text: &str,
) -> Result<Vec<i64>, lull::store::StoreError> {
    let batch = new_batch(id, message_ids, 1);
    store
        .begin_sending(&batch, message_ids, text)
        .await
        .map(lull::store::CommitOutcome::owned)
}

async fn row(store: &Store, id: &str) -> BatchRow {
    store.batch(id).await.unwrap().expect("batch row")
}

/// Which batch answers each message, in the order given.
async fn owners(store: &Store, ids: &[i64]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for id in ids {
        let owner: Option<String> =
            sqlx::query_scalar("SELECT batch_id FROM conversation_messages WHERE id = $1")
                .bind(id)
                .fetch_one(store.pool())
                .await
                .unwrap();
        out.push(owner);
    }
    out
}

#[tokio::test]
async fn each_batch_of_a_group_takes_its_messages_as_it_would_alone() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let all = messages(&store, "all", 3).await;
    let some = messages(&store, "some", 2).await;
    let none = messages(&store, "none", 1).await;
    for (id, ids) in [
        ("all-b", all.clone()),
        ("some-b", some.clone()),
        ("none-b", none.clone()),
        ("empty-b", vec![]),
        ("other", vec![some[1], none[0]]),
    ] {
        open(&store, id, &ids).await;
    }
    // Another batch answered one of b-some's messages and b-none's only one.
    let elsewhere = [some[1], none[0]];
    commit(&store, "other", &elsewhere, "elsewhere")
        .await
        .unwrap();
    // Platform order, not id order.
    let all_order = all.clone();
    assert!(all_order[0] > all_order[2]);

    let (a, s, n, e) = tokio::join!(
        commit(&store, "all-b", &all_order, "all text"),
        commit(&store, "some-b", &some, "some text"),
        commit(&store, "none-b", &none, "none text"),
        commit(&store, "empty-b", &[], "empty text"),
    );

    assert_eq!(a.unwrap(), all_order, "owned ids keep the batch's order");
    assert_eq!(s.unwrap(), vec![some[0]]);
    assert_eq!(n.unwrap(), Vec::<i64>::new());
    assert_eq!(e.unwrap(), Vec::<i64>::new());
    let b_all = row(&store, "all-b").await;
    assert_eq!(
        (b_all.status.as_str(), b_all.reply_text.as_deref()),
        ("sending", Some("all text"))
    );
    assert_eq!(b_all.message_ids, all_order);
    assert!(b_all.generated_at.is_some());
    let b_some = row(&store, "some-b").await;
    assert_eq!(
        (b_some.status.as_str(), b_some.reply_text.as_deref()),
        ("generating", None)
    );
    assert_eq!(b_some.message_ids, vec![some[0]]);
    assert!(b_some.generated_at.is_none());
    let b_none = row(&store, "none-b").await;
    assert_eq!(
        (b_none.status.as_str(), b_none.message_ids.len()),
        ("dropped", 0)
    );
    assert_eq!(row(&store, "empty-b").await.status, "dropped");
    assert_eq!(
        owners(&store, &[all[0], some[0], some[1], none[0]]).await,
        [
            Some("all-b".to_owned()),
            Some("some-b".to_owned()),
            Some("other".to_owned()),
            Some("other".to_owned())
        ]
    );
    store.pool().close().await;
}

/// Hundreds of batches in one group: the statement is planned for the group's real
/// size and gathers each batch's messages in one pass, and each still gets exactly
/// its own, in its own order.
#[tokio::test]
async fn each_of_hundreds_of_batches_in_one_group_takes_its_own_messages_in_its_order() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    // Platform order reversed from id order in every batch.
    let pairs = futures::future::join_all((0..400).map(|n| {
        let store = &store;
        async move {
            (
                format!("many{n}"),
                messages(store, &format!("many{n}"), 2).await,
            )
        }
    }))
    .await;
    let batches: Vec<(String, Vec<i64>)> = pairs
        .into_iter()
        .map(|(id, pair)| {
            assert!(pair[0] > pair[1]);
            (id, pair)
        })
        .collect();

    let owned = futures::future::join_all(
        batches
            .iter()
            .map(|(id, ids)| commit(&store, id, ids, "many text")),
    )
    .await;

    for ((id, ids), owned) in batches.iter().zip(owned) {
        assert_eq!(&owned.unwrap(), ids, "{id} owns its messages in its order");
    }
    let (last, last_ids) = batches.last().unwrap();
    let row = row(&store, last).await;
    assert_eq!(
        (row.status.as_str(), &row.message_ids),
        ("sending", last_ids)
    );
    assert_eq!(
        owners(&store, last_ids).await,
        [Some(last.clone()), Some(last.clone())]
    );
    store.pool().close().await;
}

#[tokio::test]
async fn a_message_wanted_by_two_batches_of_one_group_is_taken_by_one_only() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let ids = messages(&store, "contested", 2).await;
    open(&store, "contested-first", &ids).await;
    open(&store, "contested-second", &[ids[0]]).await;

    // The older one: a batch wanting the newer would take the older as well.
    let contested = [ids[0]];
    let (first, second) = tokio::join!(
        commit(&store, "contested-first", &ids, "first text"),
        commit(&store, "contested-second", &contested, "second text"),
    );

    let (first, second) = (first.unwrap(), second.unwrap());
    assert!(
        !first.contains(&ids[0]) || second.is_empty(),
        "{first:?} {second:?}"
    );
    assert!(
        first.contains(&ids[0]) || second == [ids[0]],
        "{first:?} {second:?}"
    );
    let owner = owners(&store, &[ids[0]]).await.remove(0).unwrap();
    let (winner, loser) = if owner == "contested-first" {
        ("contested-first", "contested-second")
    } else {
        ("contested-second", "contested-first")
    };
    assert_eq!(row(&store, winner).await.status, "sending");
    assert_ne!(row(&store, loser).await.status, "sending");
    store.pool().close().await;
}

/// Two requests of one group for the same batch (two workers on one batch after its
/// lease ran out): the first commits its text and owns the messages, the second
/// owns nothing, so only one of them sends; the batches grouped with them are not
/// failed.
#[tokio::test]
async fn of_two_commits_of_one_batch_only_the_first_sends_and_the_others_are_spared() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let ids = messages(&store, "twice", 2).await;
    let bystander = messages(&store, "bystander", 1).await;
    open(&store, "twice", &ids).await;
    open(&store, "bystander", &bystander).await;

    let (one, two, other) = tokio::join!(
        commit(&store, "twice", &ids, "one"),
        commit(&store, "twice", &ids, "two"),
        commit(&store, "bystander", &bystander, "bystander text"),
    );

    // Committed either way: before the fix, the callers were told otherwise.
    assert_eq!(row(&store, "bystander").await.status, "sending");
    assert_eq!(other.unwrap(), bystander, "a bystander is not failed");
    assert_eq!((one.unwrap(), two.unwrap()), (ids, vec![]));
    let twice = row(&store, "twice").await;
    assert_eq!(
        (twice.status.as_str(), twice.reply_text.as_deref()),
        ("sending", Some("one"))
    );
    store.pool().close().await;
}

#[tokio::test]
async fn two_records_of_one_batch_in_a_group_each_get_their_parts_and_attempts() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let ids = messages(&store, "rec", 1).await;
    open(&store, "rec", &ids).await;
    let now = UnixMs::now();
    let first = vec![("wamid.out.a".to_owned(), "part a".to_owned())];
    let second = vec![("wamid.out.b".to_owned(), "part b".to_owned())];

    let (m, rec) = (maria(), BatchId::from("rec"));
    let (one, two) = tokio::join!(
        store.record_sent(&m, &rec, 1, &first, now),
        store.record_sent(&m, &rec, 2, &second, now),
    );

    let texts = |r: Vec<lull::message::Entry>| r.into_iter().map(|e| e.text).collect::<Vec<_>>();
    assert_eq!(texts(one.unwrap()), ["part a"]);
    assert_eq!(texts(two.unwrap()), ["part b"]);
    assert_eq!(
        row(&store, "rec").await.attempts,
        3,
        "both requests' attempts"
    );
    store.pool().close().await;
}

#[tokio::test]
async fn a_group_of_sent_replies_records_each_as_alone() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let (a, b, c) = (
        messages(&store, "ra", 1).await,
        messages(&store, "rb", 1).await,
        messages(&store, "rc", 1).await,
    );
    open(&store, "ra", &a).await;
    open(&store, "rb", &b).await;
    open(&store, "rc", &c).await;
    // A resume before: one part of rb went out and was recorded with 2 attempts.
    store
        .record_progress(&"rb".into(), 2, &["wamid.rb.0".to_owned()])
        .await
        .unwrap();
    let now = UnixMs::now();
    let parts = |tag: &str, n: usize| {
        (0..n)
            .map(|i| (format!("wamid.{tag}.{i}"), format!("{tag} part {i}")))
            .collect::<Vec<_>>()
    };

    let (m, pa, pb) = (maria(), parts("ra", 3), parts("rb", 2));
    let ids = ["ra", "rb", "rc"].map(BatchId::from);
    let (ra, rb, rc) = tokio::join!(
        store.record_sent(&m, &ids[0], 1, &pa, now),
        store.record_sent(&m, &ids[1], 1, &pb, now),
        store.record_sent(&m, &ids[2], 4, &[], now),
    );

    let texts = |r: Vec<lull::message::Entry>| r.into_iter().map(|e| e.text).collect::<Vec<_>>();
    assert_eq!(texts(ra.unwrap()), ["ra part 0", "ra part 1", "ra part 2"]);
    assert_eq!(texts(rb.unwrap()), ["rb part 0", "rb part 1"]);
    assert!(rc.unwrap().is_empty());
    let (ra, rb, rc) = (
        row(&store, "ra").await,
        row(&store, "rb").await,
        row(&store, "rc").await,
    );
    assert_eq!((ra.status.as_str(), ra.attempts), ("sent", 1));
    assert_eq!(
        ra.platform_message_ids,
        ["wamid.ra.0", "wamid.ra.1", "wamid.ra.2"]
    );
    assert_eq!((rb.status.as_str(), rb.attempts), ("sent", 3));
    assert_eq!(rb.platform_message_ids, ["wamid.rb.0", "wamid.rb.1"]);
    assert_eq!((rc.status.as_str(), rc.attempts), ("sent", 4));
    assert!(rc.platform_message_ids.is_empty());
    let outbound = sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM conversation_messages WHERE direction = 'out'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(outbound, 5);
    store.pool().close().await;
}

/// A refused grouped statement is rolled back before each request is written alone:
/// the others' attempts are counted once.
#[tokio::test]
async fn a_refused_reply_record_fails_alone_and_the_others_count_once() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let a = messages(&store, "ok", 1).await;
    open(&store, "ok", &a).await;
    let now = UnixMs::now();
    let part = |id: &str| vec![(id.to_owned(), "text".to_owned())];

    // "missing" has no batch row: its outbound row breaks the foreign key.
    let (m, ok_part, missing_part) = (maria(), part("wamid.ok.out"), part("wamid.missing.out"));
    let ids = ["ok", "missing"].map(BatchId::from);
    let (ok, missing) = tokio::join!(
        store.record_sent(&m, &ids[0], 2, &ok_part, now),
        store.record_sent(&m, &ids[1], 1, &missing_part, now),
    );

    assert_eq!(ok.unwrap().len(), 1);
    assert!(missing.is_err());
    let ok = row(&store, "ok").await;
    assert_eq!((ok.status.as_str(), ok.attempts), ("sent", 2));
    store.pool().close().await;
}

#[tokio::test]
async fn two_claims_of_one_batch_in_a_group_are_each_recorded() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let ids = messages(&store, "claimed", 2).await;
    let other = messages(&store, "other", 1).await;

    let (a, b, c) = (
        new_batch("same", &ids, 1),
        new_batch("same", &ids[..1], 2),
        new_batch("other", &other, 1),
    );
    let (one, two, three) = tokio::join!(
        store.open_batch(a),
        store.open_batch(b),
        store.open_batch(c)
    );

    assert_eq!(one.unwrap().message_ids, ids);
    assert_eq!(two.unwrap().message_ids, ids[..1]);
    assert_eq!(three.unwrap().message_ids, other);
    let same = row(&store, "same").await;
    assert_eq!((same.claims, same.message_ids), (2, ids[..1].to_vec()));
    store.pool().close().await;
}

#[tokio::test]
async fn a_claim_of_a_finished_batch_keeps_its_messages_in_a_group() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let ids = messages(&store, "fin", 2).await;
    let fresh = messages(&store, "fresh", 1).await;
    open(&store, "fin", &ids).await;
    commit(&store, "fin", &ids, "text").await.unwrap();

    let (a, b) = (
        new_batch("fin", &ids[..1], 2),
        new_batch("fresh", &fresh, 1),
    );
    let (fin, fresh_record) = tokio::join!(store.open_batch(a), store.open_batch(b));

    let fin = fin.unwrap();
    assert_eq!(
        (
            fin.status.as_str(),
            fin.message_ids,
            fin.reply_text.as_deref()
        ),
        ("sending", ids.clone(), Some("text"))
    );
    let fresh_record = fresh_record.unwrap();
    assert_eq!(
        (fresh_record.status.as_str(), fresh_record.message_ids),
        ("generating", fresh)
    );
    store.pool().close().await;
}

#[tokio::test]
async fn a_new_batch_committed_without_a_recorded_claim_gets_its_row_with_the_claim() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let ids = messages(&store, "unrecorded", 2).await;
    let recorded = messages(&store, "recorded", 1).await;
    open(&store, "recorded", &recorded).await;
    let mut claim = new_batch("unrecorded", &ids, 1);
    claim.supersedes = 0;
    claim.started_ms = UnixMs(1_700_000_000_000);
    claim.due_ms = UnixMs(1_700_000_030_000);
    claim.claimed_ms = UnixMs(1_700_000_030_002);

    let (unrecorded, other) = tokio::join!(
        store.begin_sending(&claim, &ids, "unrecorded text"),
        commit(&store, "recorded", &recorded, "recorded text"),
    );

    assert_eq!(unrecorded.unwrap().owned(), ids);
    assert_eq!(other.unwrap(), recorded);
    let row = row(&store, "unrecorded").await;
    assert_eq!(
        (
            row.status.as_str(),
            row.reply_text.as_deref(),
            row.message_ids
        ),
        ("sending", Some("unrecorded text"), ids.clone())
    );
    assert_eq!(
        (
            row.channel.as_str(),
            row.account_id.as_str(),
            row.contact_id.as_str()
        ),
        (
            "whatsapp",
            PHONE_ID,
            conversation("unrecorded").contact.as_str()
        )
    );
    assert_eq!((row.claims, row.supersedes), (1, 0));
    let ms = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.timestamp_millis());
    assert_eq!(ms(row.first_message_at), Some(claim.started_ms.ms()));
    assert_eq!(ms(row.due_at), Some(claim.due_ms.ms()));
    assert_eq!(row.claimed_at.timestamp_millis(), claim.claimed_ms.ms());
    assert!(row.generated_at.is_some());
    assert_eq!(
        owners(&store, &ids).await,
        vec![Some("unrecorded".into()); 2]
    );
    store.pool().close().await;
}

#[tokio::test]
async fn a_second_worker_committing_an_unrecorded_batch_after_the_first_owns_nothing() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let ids = messages(&store, "stalled", 2).await;
    commit(&store, "stalled", &ids, "first worker's text")
        .await
        .unwrap();

    let second = commit(&store, "stalled", &ids, "second worker's text").await;

    assert_eq!(second.unwrap(), Vec::<i64>::new(), "nothing to send");
    let row = row(&store, "stalled").await;
    assert_eq!(
        (row.status.as_str(), row.reply_text.as_deref()),
        ("sending", Some("first worker's text"))
    );
    store.pool().close().await;
}

/// PostgreSQL restarts while a reply is on its way to the platform: the pooled
/// connections are all dead. Recording the sent reply must not fail because of
/// that (a fresh connection is there for the asking), or the batch stays
/// `sending` and is sent to the user a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_sent_across_a_postgres_restart_is_recorded_and_not_sent_again() {
    let proxy = PgProxy::start().await;
    let app = spawn_app_with(|c| c.database_url = proxy.route(&c.database_url)).await;
    let slow = serde_json::json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": MARIA, "wa_id": MARIA}],
        "messages": [{"id": "wamid.slow-send"}]
    });
    app.graph.script([crate::fake_platforms::Answer {
        delay: std::time::Duration::from_millis(800),
        ..crate::fake_platforms::Answer::new(200, slow.to_string())
    }]);
    app.post_whatsapp(&fixture("whatsapp/text_single.json"))
        .await;
    replies_at_least(&app.graph, 1).await;

    proxy.restart();

    let direct = Store::connect(&app.db.url, 1, Default::default())
        .await
        .unwrap();
    let latest = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT status FROM reply_batches ORDER BY claimed_at DESC LIMIT 1",
        )
        .fetch_one(direct.pool())
        .await
        .unwrap()
    };
    // The send takes 800 ms; then the record, on a fresh connection.
    wait_for("the sent reply recorded", PATIENCE, || async {
        (latest().await == "sent").then_some(())
    })
    .await;
    // A second instance, whose reconciler would put back a reply left `sending`:
    // it has many passes (every 0.2 s) to find one.
    let second = spawn_app_sharing(&app, |c| {
        c.reconcile_interval_seconds = 0.2;
        c.reconcile_min_age_seconds = 0.1;
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;

    assert_eq!(
        app.graph.replies().len(),
        1,
        "the sent reply is recorded, and the user gets it once"
    );
    second.stop().await;
    direct.pool().close().await;
    app.stop().await;
}
