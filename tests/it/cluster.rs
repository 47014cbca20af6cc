//! The Redis side against a real Redis Cluster (three masters, started by the test):
//! every script call of a conversation touches one hash slot, whichever of the
//! agenda shards it lands on, so no call fails with CROSSSLOT.

use crate::helpers::*;
use crate::redis_server::OwnCluster;
use crate::scripts::{T0, WINDOW, bot, msg, policy};
use lull::batch::{
    AckOutcome, AppendMode, AppendOutcome, ClaimOutcome, ClaimToken, ExtendOutcome, KeySpace,
    Policy, RedisBatches, RequeueMode,
};
use lull::message::{ChannelKind, Conversation, Entry};
use lull::time::UnixMs;
use std::collections::BTreeMap;
use std::time::Duration;

const SHARDS: u16 = 4;
const PATIENCE: Duration = Duration::from_secs(15);

/// The script tests' policy with a lease long enough that no lock runs out (in
/// real time) while the test walks through every conversation.
fn long_lease() -> Policy {
    Policy {
        lease: Duration::from_secs(60),
        ..policy()
    }
}

/// Two conversations on each of the [`SHARDS`] agenda shards, by shard.
fn conversations_on_every_shard(keys: &KeySpace) -> BTreeMap<u16, Vec<Conversation>> {
    let mut by_shard: BTreeMap<u16, Vec<Conversation>> = BTreeMap::new();
    for contact in 15_550_000_000u64.. {
        let conversation = Conversation::new(ChannelKind::WhatsApp, PHONE_ID, contact.to_string());
        let shard = keys.shard_of(&conversation.id());
        let on_shard = by_shard.entry(shard).or_default();
        if on_shard.len() < 2 {
            on_shard.push(conversation);
        }
        if by_shard.len() == usize::from(SHARDS) && by_shard.values().all(|c| c.len() == 2) {
            return by_shard;
        }
    }
    unreachable!("the contacts run out")
}

/// How many keys under `prefix` one cluster node holds.
fn keys_on_node(port: u16, prefix: &str) -> usize {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--scan", "--pattern"])
        .arg(format!("{prefix}*"))
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::test]
async fn every_script_runs_on_every_shard_of_a_cluster() {
    let cluster = OwnCluster::start();
    let prefix = unique("test:cluster:") + ":";
    let redis_batches = RedisBatches::connect(
        &cluster.url(),
        2,
        Duration::from_secs(5),
        &prefix,
        SHARDS,
        long_lease(),
    )
    .await
    .unwrap();
    let by_shard = conversations_on_every_shard(redis_batches.keys());
    let conversations: Vec<&Conversation> = by_shard.values().flatten().collect();
    let batch_of = |i: usize| {
        let base = i as i64 * 10;
        (msg(base + 1, T0), msg(base + 2, T0 + 100))
    };

    // append (asking for hydration) → hydrate → append
    for (i, conversation) in conversations.iter().enumerate() {
        let (e1, e2) = batch_of(i);
        let older = msg(i as i64 * 10, T0 - 60_000);
        let first = redis_batches
            .append(conversation, &e1, AppendMode::Message, false, T0)
            .await
            .unwrap();
        assert_eq!(
            first,
            AppendOutcome {
                hydrate: true,
                tracked: false,
                deadline_ms: T0 + WINDOW,
                batch_len: 1,
                paused: false,
            }
        );
        let added = redis_batches
            .hydrate(conversation, &[older, e1.clone()])
            .await
            .unwrap();
        assert_eq!(added, 1);
        let second = redis_batches
            .append(conversation, &e2, AppendMode::Message, false, T0 + 100)
            .await
            .unwrap();
        assert_eq!(
            (second.deadline_ms, second.batch_len),
            (T0 + 100 + WINDOW, 2)
        );
    }

    // due → claim, shard by shard
    let now = T0 + 100 + WINDOW;
    for shard in 0..SHARDS {
        assert_eq!(redis_batches.next_due(shard).await.unwrap(), Some(now));
        assert!(
            redis_batches
                .due(shard, now - 1, 100)
                .await
                .unwrap()
                .is_empty()
        );
        let mut due = redis_batches.due(shard, now, 100).await.unwrap();
        due.sort();
        let mut expected: Vec<String> = by_shard[&shard].iter().map(Conversation::id).collect();
        expected.sort();
        assert_eq!(due, expected, "shard {shard}");
    }
    for (i, conversation) in conversations.iter().enumerate() {
        let token = format!("tok-{i}");
        let ClaimOutcome::Claimed(claim) = redis_batches
            .claim(
                &conversation.id(),
                &ClaimToken::from(token.as_str()),
                UnixMs(now),
            )
            .await
            .unwrap()
        else {
            panic!("{conversation} was not claimed");
        };
        let (e1, e2) = batch_of(i);
        assert_eq!((claim.batch_id.as_str(), claim.claims), (token.as_str(), 1));
        assert_eq!(claim.entries, vec![e1, e2]);
    }

    // the shards' hash tags put the conversations on all three masters
    for port in cluster.ports {
        assert!(
            keys_on_node(port, &prefix) > 0,
            "no conversation on the master at {port}"
        );
    }

    // extend every lease
    for (i, conversation) in conversations.iter().enumerate() {
        let keys = redis_batches.keys().conversation(conversation);
        let out = redis_batches
            .extend(
                &keys,
                &ClaimToken::from(format!("tok-{i}")),
                UnixMs(now + 500),
            )
            .await
            .unwrap();
        assert_eq!(
            out,
            ExtendOutcome {
                held: true,
                pending: 0,
                paused: false,
            }
        );
    }

    // hand the first batch of each shard back; it is the only one due again
    let later = now + 600;
    for shard in 0..SHARDS {
        let conversation = &by_shard[&shard][0];
        let i = conversations
            .iter()
            .position(|c| *c == conversation)
            .unwrap();
        let keys = redis_batches.keys().conversation(conversation);
        let due = redis_batches
            .requeue(
                &keys,
                &ClaimToken::from(format!("tok-{i}")),
                RequeueMode::HandBack,
                UnixMs(later),
            )
            .await
            .unwrap();
        assert_eq!(due, Some(later));
        assert_eq!(
            redis_batches.due(shard, later, 100).await.unwrap(),
            vec![conversation.id()]
        );
        let ClaimOutcome::Claimed(claim) = redis_batches
            .claim(
                &conversation.id(),
                &ClaimToken::from(format!("tok-{i}-again")),
                UnixMs(later),
            )
            .await
            .unwrap()
        else {
            panic!("{conversation} was not claimed again");
        };
        assert_eq!(
            (claim.batch_id.as_str(), claim.claims),
            (format!("tok-{i}").as_str(), 2)
        );
    }

    // ack everything with the current token
    for (i, conversation) in conversations.iter().enumerate() {
        let keys = redis_batches.keys().conversation(conversation);
        let requeued = by_shard.values().any(|c| c[0] == **conversation);
        let token = if requeued {
            format!("tok-{i}-again")
        } else {
            format!("tok-{i}")
        };
        let stale = redis_batches
            .ack(&keys, &ClaimToken::from("tok-stale"), &[], UnixMs(later))
            .await
            .unwrap();
        assert_eq!(stale, AckOutcome::Stale);
        let reply = bot(1_000 + i as i64, later);
        let out = redis_batches
            .ack(
                &keys,
                &ClaimToken::from(token.as_str()),
                std::slice::from_ref(&reply),
                UnixMs(later + 10),
            )
            .await
            .unwrap();
        assert_eq!(out, AckOutcome::Done, "{conversation}");
        let (e1, e2) = batch_of(i);
        let history: Vec<Entry> = redis_batches.history(&keys).await.unwrap();
        assert_eq!(
            history,
            vec![msg(i as i64 * 10, T0 - 60_000), e1, e2, reply]
        );
    }
    for shard in 0..SHARDS {
        assert_eq!(
            redis_batches.next_due(shard).await.unwrap(),
            None,
            "shard {shard}"
        );
    }
    redis_batches.quit().await;
}

#[tokio::test]
async fn two_whatsapp_users_on_a_cluster_each_get_one_reply() {
    let cluster = OwnCluster::start();
    let url = cluster.url();
    let app = spawn_app_with(|c| {
        c.redis_url = url;
        c.redis_shards = SHARDS;
    })
    .await;
    // Two users whose conversations live on different shards.
    let keys = app.redis_batches.keys();
    let shard_of = |contact: &str| keys.shard_of(&format!("whatsapp:{PHONE_ID}:{contact}"));
    let other = (15_550_003_333u64..)
        .map(|c| c.to_string())
        .find(|c| shard_of(c) != shard_of(MARIA))
        .unwrap();

    let ts = now_secs();
    for (user, text) in [
        (MARIA, "hello from maria"),
        (other.as_str(), "hello from the other"),
    ] {
        for part in 0..2 {
            let body = whatsapp_text(
                user,
                &format!("wamid.{user}.{part}"),
                ts + part,
                &format!("{text} {part}"),
            );
            assert_eq!(app.post_whatsapp(&body).await.status(), 200);
        }
    }

    let replies = wait_for("two replies", PATIENCE, || async {
        let replies = app.graph.replies();
        (replies.len() >= 2).then_some(replies)
    })
    .await;
    // Long enough for a wrong extra reply (window 0.2 s, scan 0.05 s) to show up.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(app.graph.replies().len(), 2, "one reply per user");
    let mut by_user: BTreeMap<String, String> = BTreeMap::new();
    for reply in &replies {
        by_user.insert(
            reply.body["to"].as_str().unwrap().to_owned(),
            reply.body["text"]["body"].as_str().unwrap().to_owned(),
        );
    }
    for (user, text, stranger) in [
        (MARIA, "hello from maria", "hello from the other"),
        (other.as_str(), "hello from the other", "hello from maria"),
    ] {
        let reply = by_user
            .get(user)
            .unwrap_or_else(|| panic!("no reply to {user}: {by_user:?}"));
        assert!(
            reply.contains(&format!("{text} 0")) && reply.contains(&format!("{text} 1")),
            "{reply}"
        );
        assert!(!reply.contains(stranger), "{reply}");
    }
    assert_eq!(app.metrics.counter("lull_redis_errors_total", &[]), 0);
    app.stop().await;
}
