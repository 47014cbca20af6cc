//! Commit-to-send takes the conversation's older messages nobody owns (issue 19):
//! the statement itself, on a store of one connection, so the requests of one
//! `join!` are flushed as one statement.

use crate::helpers::*;
use lull::message::{ChannelKind, Conversation, InboundMessage, MessageKind};
use lull::store::{CommitOutcome, NewBatch, Store};
use lull::time::UnixMs;

/// A WhatsApp conversation with `contact`.
fn conversation(contact: &str) -> Conversation {
    Conversation::new(ChannelKind::WhatsApp, PHONE_ID, contact)
}

/// Stores one inbound message of `contact` sent at `ts_ms`; returns its id.
async fn stored(store: &Store, contact: &str, external_id: &str, ts_ms: i64) -> i64 {
    stored_as(store, contact, external_id, ts_ms, true).await
}

async fn stored_as(
    store: &Store,
    contact: &str,
    external_id: &str,
    ts_ms: i64,
    answerable: bool,
) -> i64 {
    let message = InboundMessage {
        conversation: conversation(contact),
        external_id: external_id.into(),
        kind: MessageKind::Text,
        text: external_id.into(),
        timestamp_ms: ts_ms,
        contact_name: None,
        payload: serde_json::json!({}),
    };
    let rows = store.insert_inbound(vec![(message, answerable)]).await;
    rows.unwrap().remove(0).expect("a new row").id
}

/// Commits batch `id` of `contact` for `ids` (platform order); the ids it owns.
async fn commit(store: &Store, id: &str, contact: &str, ids: &[i64]) -> Vec<i64> {
    commit_outcome(store, id, contact, ids).await.owned()
}

/// Commits batch `id` of `contact` for `ids` (platform order), on its first
/// claim, due before any message here was stored.
async fn commit_outcome(store: &Store, id: &str, contact: &str, ids: &[i64]) -> CommitOutcome {
    commit_due_at(store, id, contact, ids, UnixMs(0)).await
}

/// Commits batch `id` of `contact` for `ids` (platform order), on its first
/// claim, due at `due`.
async fn commit_due_at(
    store: &Store,
    id: &str,
    contact: &str,
    ids: &[i64],
    due: UnixMs,
) -> CommitOutcome {
    let now = UnixMs::now();
    let batch = NewBatch {
        id: id.into(),
        conversation: conversation(contact),
        message_ids: ids.to_vec(),
        claims: 1,
        supersedes: 0,
        started_ms: now,
        due_ms: due,
        claimed_ms: now,
    };
    store.begin_sending(&batch, ids, "reply").await.unwrap()
}

/// Records batch `id` of `contact` as sent, in one part.
async fn sent(store: &Store, id: &str, contact: &str) {
    let parts = [(format!("wamid.reply-{id}"), "reply".to_owned())];
    store
        .record_sent(&conversation(contact), &id.into(), 1, &parts, UnixMs::now())
        .await
        .unwrap();
}

async fn owner(store: &Store, id: i64) -> Option<String> {
    sqlx::query_scalar("SELECT batch_id FROM conversation_messages WHERE id = $1")
        .bind(id)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

async fn status(store: &Store, batch: &str) -> String {
    let row = store.batch(batch).await.unwrap().expect("batch row");
    row.status.to_string()
}

const T: i64 = 1_800_000_000_000;

#[tokio::test]
async fn a_batch_takes_its_conversations_older_unowned_messages_in_platform_order() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let m1 = stored(&store, "ana", "m1", T).await;
    let m2 = stored(&store, "ana", "m2", T + 1_000).await;
    let m3 = stored(&store, "ana", "m3", T + 2_000).await;

    let owned = commit(&store, "b", "ana", &[m3]).await;

    assert_eq!(owned, [m1, m2, m3]);
    let row = store.batch("b").await.unwrap().unwrap();
    assert_eq!(
        (row.status.to_string(), row.message_ids, row.reply_text),
        ("generating".to_owned(), vec![m1, m2, m3], None),
        "its text answers m3 alone: generated again before it may be sent"
    );
    for id in [m1, m2, m3] {
        assert_eq!(owner(&store, id).await.as_deref(), Some("b"));
    }
    store.pool().close().await;
}

#[tokio::test]
async fn a_batch_committed_again_for_what_it_owns_becomes_sending() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let m1 = stored(&store, "ana", "m1", T).await;
    let m2 = stored(&store, "ana", "m2", T + 1_000).await;
    commit(&store, "b", "ana", &[m2]).await;

    let owned = commit(&store, "b", "ana", &[m1, m2]).await;

    assert_eq!(owned, [m1, m2]);
    assert_eq!(status(&store, "b").await, "sending");
    store.pool().close().await;
}

#[tokio::test]
async fn a_resumed_batch_claiming_only_its_redis_entries_keeps_the_older_ones_it_took() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let m1 = stored(&store, "ana", "m1", T).await;
    let m2 = stored(&store, "ana", "m2", T + 1_000).await;
    commit(&store, "b", "ana", &[m2]).await;
    // Its worker died before committing again; the next claim has Redis's entry.
    let now = UnixMs::now();
    let claim = NewBatch {
        id: "b".into(),
        conversation: conversation("ana"),
        message_ids: vec![m2],
        claims: 2,
        supersedes: 0,
        started_ms: now,
        due_ms: now,
        claimed_ms: now,
    };
    store.open_batch(claim).await.unwrap();

    let owned = commit(&store, "b", "ana", &[m2]).await;

    assert_eq!(owned, [m1, m2], "m1 is still its own, to be answered");
    assert_eq!(status(&store, "b").await, "generating");
    store.pool().close().await;
}

#[tokio::test]
async fn a_batch_does_not_take_newer_messages() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let m1 = stored(&store, "ana", "m1", T).await;
    let m2 = stored(&store, "ana", "m2", T + 1_000).await;

    let owned = commit(&store, "b", "ana", &[m1]).await;

    assert_eq!(owned, [m1]);
    assert_eq!(status(&store, "b").await, "sending");
    assert_eq!(owner(&store, m2).await, None);
    store.pool().close().await;
}

#[tokio::test]
async fn a_batch_takes_newer_messages_stored_before_it_was_due() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let m1 = stored(&store, "ana", "m1", T).await;
    // Stored while its webhook found Redis down: the claim did not see it.
    let m2 = stored(&store, "ana", "m2", T + 1_000).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;

    let owned = commit_due_at(&store, "b", "ana", &[m1], UnixMs::now()).await;

    assert_eq!(owned.owned(), [m1, m2]);
    assert_eq!(status(&store, "b").await, "generating", "to generate again");
    store.pool().close().await;
}

#[tokio::test]
async fn a_batch_does_not_take_newer_messages_stored_after_it_was_due() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let m1 = stored(&store, "ana", "m1", T).await;
    let due = UnixMs::now();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let m2 = stored(&store, "ana", "m2", T + 1_000).await;

    let owned = commit_due_at(&store, "b", "ana", &[m1], due).await;

    assert_eq!(owned.owned(), [m1]);
    assert_eq!(owner(&store, m2).await, None);
    store.pool().close().await;
}

#[tokio::test]
async fn a_resumed_batch_does_not_take_newer_messages() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let m1 = stored(&store, "ana", "m1", T).await;
    let m2 = stored(&store, "ana", "m2", T + 1_000).await;
    let now = UnixMs::now();
    let resumed = NewBatch {
        id: "b".into(),
        conversation: conversation("ana"),
        message_ids: vec![m1],
        claims: 2,
        supersedes: 0,
        started_ms: now,
        due_ms: now,
        claimed_ms: now,
    };

    let owned = store.begin_sending(&resumed, &[m1], "reply").await.unwrap();

    assert_eq!(owned.owned(), [m1], "its due time is its lease's end");
    assert_eq!(owner(&store, m2).await, None);
    store.pool().close().await;
}

#[tokio::test]
async fn a_batch_does_not_take_another_conversations_messages() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let other = stored(&store, "bob", "bob1", T).await;
    let mine = stored(&store, "ana", "ana1", T + 1_000).await;

    let owned = commit(&store, "b", "ana", &[mine]).await;

    assert_eq!(owned, [mine]);
    assert_eq!(status(&store, "b").await, "sending");
    assert_eq!(owner(&store, other).await, None);
    store.pool().close().await;
}

#[tokio::test]
async fn a_batch_does_not_take_messages_another_batch_owns() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let m1 = stored(&store, "ana", "m1", T).await;
    commit(&store, "earlier", "ana", &[m1]).await;
    sent(&store, "earlier", "ana").await;
    let m2 = stored(&store, "ana", "m2", T + 1_000).await;

    let owned = commit(&store, "b", "ana", &[m2]).await;

    assert_eq!(owned, [m2]);
    assert_eq!(status(&store, "b").await, "sending");
    assert_eq!(owner(&store, m1).await.as_deref(), Some("earlier"));
    store.pool().close().await;
}

#[tokio::test]
async fn a_batch_waits_behind_an_unfinished_batch_of_its_conversation() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let m1 = stored(&store, "ana", "m1", T).await;
    commit(&store, "earlier", "ana", &[m1]).await;
    let m2 = stored(&store, "ana", "m2", T + 1_000).await;

    let outcome = commit_outcome(&store, "b", "ana", &[m2]).await;

    assert_eq!(outcome, CommitOutcome::Behind("earlier".into()));
    assert_eq!(owner(&store, m2).await, None, "it took nothing");
    assert!(
        store.batch("b").await.unwrap().is_none(),
        "nor wrote its row"
    );
    store.pool().close().await;
}

#[tokio::test]
async fn a_batch_is_not_behind_a_generating_batch_that_owns_nothing() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let m1 = stored(&store, "ana", "m1", T).await;
    let now = UnixMs::now();
    store
        .open_batch(NewBatch {
            id: "claimed".into(),
            conversation: conversation("ana"),
            message_ids: vec![m1],
            claims: 2,
            supersedes: 0,
            started_ms: now,
            due_ms: now,
            claimed_ms: now,
        })
        .await
        .unwrap();
    let m2 = stored(&store, "ana", "m2", T + 1_000).await;

    let owned = commit(&store, "b", "ana", &[m2]).await;

    assert_eq!(
        owned,
        [m1, m2],
        "it answers the claimed batch's message too"
    );
    store.pool().close().await;
}

#[tokio::test]
async fn a_batch_is_not_behind_another_conversations_unfinished_batch() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let bob1 = stored(&store, "bob", "bob1", T).await;
    commit(&store, "bobs", "bob", &[bob1]).await;
    let ana1 = stored(&store, "ana", "ana1", T + 1_000).await;

    let owned = commit(&store, "b", "ana", &[ana1]).await;

    assert_eq!(owned, [ana1]);
    store.pool().close().await;
}

#[tokio::test]
async fn a_batch_does_not_take_reactions_or_its_own_replies() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let reaction = stored_as(&store, "ana", "reaction", T, false).await;
    let m2 = stored(&store, "ana", "m2", T + 1_000).await;

    let owned = commit(&store, "b", "ana", &[m2]).await;

    assert_eq!(owned, [m2]);
    assert_eq!(owner(&store, reaction).await, None);
    store.pool().close().await;
}

#[tokio::test]
async fn a_batch_of_a_paused_conversation_takes_no_older_message() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let m1 = stored(&store, "ana", "m1", T).await;
    let m2 = stored(&store, "ana", "m2", T + 1_000).await;
    sqlx::query(
        "INSERT INTO conversation_modes (channel, account_id, contact_id, mode)
         VALUES ('whatsapp', $1, 'ana', 'human')",
    )
    .bind(PHONE_ID)
    .execute(store.pool())
    .await
    .unwrap();

    let owned = commit(&store, "b", "ana", &[m2]).await;

    assert_eq!(owned, Vec::<i64>::new());
    assert_eq!(status(&store, "b").await, "dropped");
    assert_eq!(
        (owner(&store, m1).await, owner(&store, m2).await),
        (None, None)
    );
    store.pool().close().await;
}

#[tokio::test]
async fn on_the_same_platform_timestamp_the_lower_id_is_the_older() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let first = stored(&store, "ana", "first", T).await;
    let mine = stored(&store, "ana", "mine", T).await;
    let after = stored(&store, "ana", "after", T).await;

    let owned = commit(&store, "b", "ana", &[mine]).await;

    assert_eq!(
        owned,
        [first, mine],
        "the same second: stored first, said first"
    );
    assert_eq!(owner(&store, after).await, None);
    store.pool().close().await;
}

#[tokio::test]
async fn a_message_sent_earlier_but_stored_later_is_older() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let mine = stored(&store, "ana", "mine", T + 1_000).await;
    let late = stored(&store, "ana", "late", T).await;

    let owned = commit(&store, "b", "ana", &[mine]).await;

    assert_eq!(owned, [late, mine], "platform order, not arrival");
    store.pool().close().await;
}

#[tokio::test]
async fn each_batch_of_a_group_takes_only_its_own_conversations_older_messages() {
    let db = TestDb::new();
    let store = store(&db, 1).await;
    let ana_old = stored(&store, "ana", "ana-old", T).await;
    let bob_old = stored(&store, "bob", "bob-old", T + 500).await;
    let ana_new = stored(&store, "ana", "ana-new", T + 1_000).await;
    let bob_new = stored(&store, "bob", "bob-new", T + 1_000).await;
    let cy_new = stored(&store, "cy", "cy-new", T + 1_000).await;
    let bob_newer = stored(&store, "bob", "bob-newer", T + 2_000).await;

    let (ana_ids, bob_ids, cy_ids) = ([ana_new], [bob_new], [cy_new]);
    let (ana, bob, cy) = tokio::join!(
        commit(&store, "ana-b", "ana", &ana_ids),
        commit(&store, "bob-b", "bob", &bob_ids),
        commit(&store, "cy-b", "cy", &cy_ids),
    );

    assert_eq!(ana, [ana_old, ana_new]);
    assert_eq!(bob, [bob_old, bob_new]);
    assert_eq!(cy, [cy_new]);
    assert_eq!(status(&store, "ana-b").await, "generating");
    assert_eq!(status(&store, "bob-b").await, "generating");
    assert_eq!(status(&store, "cy-b").await, "sending");
    assert_eq!(owner(&store, bob_newer).await, None);
    store.pool().close().await;
}
