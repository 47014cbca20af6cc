//! The claim loop keeps going when one conversation's state is broken.

use crate::helpers::*;
use fred::interfaces::{KeysInterface, SortedSetsInterface};
use lull::batch::ConversationKeys;

/// Puts a conversation on its agenda, due at `score` (unix ms).
async fn schedule(redis: &fred::clients::Client, keys: &ConversationKeys, score: f64) {
    let _: () = redis
        .zadd(
            &keys.agenda,
            None,
            None,
            false,
            false,
            (score, keys.member.as_str()),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_conversation_whose_claim_fails_does_not_stall_the_others() {
    let app = spawn_app().await;
    let broken = app.redis_batches.keys().for_member("whatsapp:1:broken");
    let redis = app.redis_batches.pool().next();
    // A key of the wrong type (left by someone sharing the prefix): claim.lua fails on it.
    let _: () = redis
        .set(&broken.msgs, "not a list", None, None, false)
        .await
        .unwrap();
    schedule(redis, &broken, 0.0).await;

    app.post_whatsapp(&fixture("whatsapp/text_single.json"))
        .await;
    replies_at_least(&app.graph, 1).await;
    let score: Option<f64> = redis
        .zscore(&broken.agenda, broken.member.as_str())
        .await
        .unwrap();
    assert!(
        score.unwrap() > lull::time::now_ms() as f64,
        "the broken conversation is pushed back, not retried in a busy loop"
    );
    let _: () = redis.del((&broken.msgs, &broken.agenda)).await.unwrap();
    app.stop().await;
}

/// A TCP proxy in front of the shared Redis that, once armed, makes the next ZADD
/// sent as a command fail (renamed to an unknown command on its way through).
struct ZaddBreaker {
    port: u16,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    broken: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ZaddBreaker {
    async fn start(upstream: String) -> Self {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let broken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (armed_in, broken_in) = (armed.clone(), broken.clone());
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let (armed, broken, upstream) =
                    (armed_in.clone(), broken_in.clone(), upstream.clone());
                connections.spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let up = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        const ZADD: &[u8] = b"$4\r\nZADD\r\n";
                        loop {
                            let n = match client_read.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            let chunk = &mut buf[..n];
                            if let Some(at) = chunk.windows(ZADD.len()).position(|w| w == ZADD) {
                                if armed.swap(false, Ordering::SeqCst) {
                                    chunk[at + 7] = b'X';
                                    broken.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                            if server_write.write_all(chunk).await.is_err() {
                                return;
                            }
                        }
                    };
                    let down = tokio::io::copy(&mut server_read, &mut client_write);
                    let _ = tokio::join!(up, down);
                });
            }
        });
        Self {
            port,
            armed,
            broken,
            task,
        }
    }
}

impl Drop for ZaddBreaker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The claims of one pass go out together: when one fails and pushing it back
/// fails too, the conversations claimed beside it must still be worked on, not
/// left locked until their lease runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_push_back_does_not_strand_the_conversations_claimed_beside_it() {
    use std::sync::atomic::Ordering;
    let upstream = url::Url::parse(&redis_url()).unwrap();
    let breaker = ZaddBreaker::start(format!(
        "{}:{}",
        upstream.host_str().unwrap(),
        upstream.port().unwrap_or(6379)
    ))
    .await;
    let app = spawn_app_with(|c| {
        c.redis_url = format!("redis://127.0.0.1:{}", breaker.port);
        c.lock_ttl_seconds = 3.0;
    })
    .await;
    let redis = app.redis_batches.pool().next();
    let maria = app
        .redis_batches
        .keys()
        .for_member(&format!("whatsapp:{PHONE_ID}:{MARIA}"));
    // Sorts before Maria's on the agenda, so it is claimed first in the pass.
    let broken = app.redis_batches.keys().for_member("whatsapp:0:broken");
    assert_eq!(broken.agenda, maria.agenda, "one shard");
    let _: () = redis
        .set(&broken.msgs, "not a list", None, None, false)
        .await
        .unwrap();

    let posted = std::time::Instant::now();
    app.post_whatsapp(&fixture("whatsapp/text_single.json"))
        .await;
    let due: f64 = redis
        .zscore(&maria.agenda, maria.member.as_str())
        .await
        .unwrap();
    // Due together with Maria's batch; its push back fails once.
    schedule(redis, &broken, due).await;
    assert_eq!(breaker.broken.load(Ordering::SeqCst), 0);
    breaker.armed.store(true, Ordering::SeqCst);

    replies_at_least(&app.graph, 1).await;
    let waited = posted.elapsed();
    assert_eq!(
        breaker.broken.load(Ordering::SeqCst),
        1,
        "the push back failed once"
    );
    assert!(
        waited < std::time::Duration::from_millis(2500),
        "the reply waited {waited:?}: its claim was dropped and it waited for its lease"
    );
    let _: () = redis.del((&broken.msgs, &broken.agenda)).await.unwrap();
    app.stop().await;
}

/// Changing REDIS_SHARDS moves every conversation's keys. One left waiting under
/// the old count is dropped from the agenda it was found on, where it would
/// otherwise be due forever, and the reconciler answers its messages from
/// PostgreSQL, once.
#[tokio::test]
async fn conversations_left_waiting_under_another_shard_count_are_answered_from_postgres() {
    let mut old = spawn_app_with(|c| {
        c.redis_shards = 4;
        c.batch_window_seconds = 3.0;
    })
    .await;
    let contacts: Vec<String> = (0..8).map(|i| format!("1555000{i:04}")).collect();
    let member = |contact: &str| format!("whatsapp:{PHONE_ID}:{contact}");
    let (four, eight) = (
        lull::batch::KeySpace::new(old.prefix.as_str(), 4, true),
        lull::batch::KeySpace::new(old.prefix.as_str(), 8, true),
    );
    let moved = contacts
        .iter()
        .filter(|c| four.shard_of(&member(c)) != eight.shard_of(&member(c)))
        .count();
    assert!(moved > 0, "some conversations change shard");
    for (i, contact) in contacts.iter().enumerate() {
        let body = whatsapp_text(contact, &format!("wamid.reshard{i}"), now_secs() - 60, "hi");
        assert_eq!(old.post_whatsapp(&body).await.status(), 200);
    }
    old.shut_down().await;

    let new = spawn_app_sharing(&old, |c| {
        c.redis_shards = 8;
        c.reconcile_interval_seconds = 0.3;
        c.reconcile_min_age_seconds = 0.5;
    })
    .await;
    replies_at_least(&new.graph, contacts.len()).await;
    let redis = new.redis_batches.pool().next();
    let agendas = eight.agendas();
    wait_for("every agenda empty", PATIENCE, || async {
        for (_, agenda) in &agendas {
            let members: Vec<String> = redis
                .zrange(agenda, 0, -1, None, false, None, false)
                .await
                .unwrap();
            if !members.is_empty() {
                return None;
            }
        }
        Some(())
    })
    .await;
    settle().await;
    let mut to: Vec<String> = new
        .graph
        .replies()
        .iter()
        .map(|r| r.body["to"].as_str().unwrap().to_owned())
        .collect();
    to.sort();
    assert_eq!(to, contacts, "one reply each");
    new.stop().await;
}
