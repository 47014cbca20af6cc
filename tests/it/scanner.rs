//! The claim loop keeps going when one conversation's state is broken.

use crate::helpers::*;
use fred::interfaces::{KeysInterface, SortedSetsInterface};

#[tokio::test]
async fn a_conversation_whose_claim_fails_does_not_stall_the_others() {
    let app = spawn_app().await;
    let broken = app.batcher.keys().for_member("whatsapp:1:broken");
    let redis = app.batcher.pool().next();
    // A key of the wrong type (left by someone sharing the prefix): claim.lua fails on it.
    let _: () = redis
        .set(&broken.msgs, "not a list", None, None, false)
        .await
        .unwrap();
    let _: () = redis
        .zadd(
            &broken.agenda,
            None,
            None,
            false,
            false,
            (0.0, broken.member.as_str()),
        )
        .await
        .unwrap();

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
