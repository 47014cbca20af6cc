//! `lull loadtest`: the claims load test against a real Redis (standalone and a
//! 3-master cluster), the ingest load test against the app with the load test's own
//! fake Graph API, and the binary's JSON summary. Numbers are kept small: each test
//! takes a few seconds.

use crate::fake_platforms::TOKEN;
use crate::helpers::*;
use crate::redis_server::{OwnCluster, free_port};
use fred::interfaces::{ClientLike, KeysInterface};
use lull::config::Secret;
use lull::fake_platform::{FakePlatform, Graph, Record};
use lull::loadtest::report::Verdict;
use lull::loadtest::{ClaimsArgs, IngestArgs, claims, ingest};
use std::process::{Command, Stdio};

/// A small claims run: many deaths (0.2) and a short lease, so resumes happen fast.
fn claims_args(redis_url: String) -> ClaimsArgs {
    ClaimsArgs {
        redis_url,
        shards: None,
        conversations: 300,
        messages: 3,
        waiting: 100,
        claimers: 8,
        batch: 16,
        death_rate: 0.2,
        lease_ms: 100,
        json: false,
    }
}

/// 20 conversations × 2 bursts × 3 messages against `app`, every 5th webhook retried.
fn ingest_args(app: &TestApp, settle_seconds: f64) -> IngestArgs {
    IngestArgs {
        url: app.url(""),
        app_secret: Some(Secret::new(APP_SECRET)),
        phone_number_id: PHONE_ID.into(),
        graph_token: Some(Secret::new(TOKEN)),
        conversations: 20,
        bursts: 2,
        burst_size: 3,
        concurrency: 16,
        duplicate_every: 5,
        graph_listen: "unused: the test binds the fake".into(),
        settle_seconds,
        window_seconds: WINDOW.as_secs_f64(),
        json: false,
        retry: Default::default(),
        chaos: Default::default(),
    }
}

/// The fake Graph API as the load test runs it (counting, not recording), on a port
/// of its own.
async fn recording_graph() -> FakePlatform {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = Graph::new(PHONE_ID, Some(Secret::new(TOKEN)));
    FakePlatform::start(listener, api, Record::CountsOnly).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claims_load_test_answers_every_message_exactly_once_despite_worker_deaths() {
    let report = claims::run(&claims_args(redis_url())).await.unwrap();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert_eq!(report.verdict, Verdict::Pass);
    assert_eq!(report.seeded_messages, 900);
    assert_eq!(report.acked_messages, 900);
    assert_eq!((report.acked_twice, report.never_acked), (0, 0));
    assert!(report.deaths > 0, "{report:?}");
    assert!(report.resumed > 0, "{report:?}");
}

#[tokio::test]
async fn the_claims_load_test_deletes_every_key_it_wrote() {
    let args = ClaimsArgs {
        conversations: 50,
        waiting: 20,
        ..claims_args(redis_url())
    };
    let report = claims::run(&args).await.unwrap();
    assert!(report.key_prefix.starts_with("loadtest:"));
    let client = fred::types::Builder::from_config(
        fred::types::config::Config::from_url(&redis_url()).unwrap(),
    )
    .build()
    .unwrap();
    client.init().await.unwrap();
    let (_, left): (String, Vec<String>) = client
        .scan_page("0", format!("{}*", report.key_prefix), Some(100_000), None)
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claims_load_test_runs_against_a_three_master_redis_cluster() {
    let cluster = OwnCluster::start();
    let report = claims::run(&claims_args(cluster.url())).await.unwrap();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert_eq!((report.redis, report.shards), ("cluster", 4));
    assert_eq!(report.acked_messages, report.seeded_messages);
    assert!(report.resumed > 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_load_test_sees_one_reply_per_burst_from_a_running_lull() {
    let graph = recording_graph().await;
    let app = spawn_app_with(|c| c.graph_api_base = graph.base.clone()).await;
    let report = ingest::run(&ingest_args(&app, 5.0), &graph).await.unwrap();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert_eq!(report.bursts, 40);
    assert_eq!(report.replies, 40);
    assert_eq!(report.webhooks_sent, 120 + report.duplicates_sent);
    assert_eq!(report.duplicates_sent, 24);
    assert_eq!(report.duplicates_reported, 24);
    assert_eq!(report.graph_rejected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_load_test_reports_lost_replies_and_fails_when_none_reach_it() {
    let graph = recording_graph().await;
    let nowhere = format!("http://127.0.0.1:{}/v23.0", free_port());
    let app = spawn_app_with(|c| c.graph_api_base = nowhere).await;
    let args = IngestArgs {
        conversations: 3,
        bursts: 1,
        ..ingest_args(&app, 1.0)
    };
    let report = ingest::run(&args, &graph).await.unwrap();
    assert_eq!(
        (report.bursts, report.replies, report.lost_bursts),
        (3, 0, 3)
    );
    assert_eq!(report.verdict, Verdict::Fail);
    assert!(
        report.violations[0].starts_with("3 bursts lost"),
        "{:?}",
        report.violations
    );
}

#[test]
fn the_binary_runs_the_claims_load_test_and_prints_a_json_summary() {
    let output = Command::new(env!("CARGO_BIN_EXE_lull"))
        .args(["loadtest", "claims", "--json", "--conversations", "200"])
        .args([
            "--claimers",
            "4",
            "--death-rate",
            "0.1",
            "--lease-ms",
            "100",
        ])
        .env_clear()
        .env("REDIS_URL", redis_url())
        .stdin(Stdio::null())
        .output()
        .expect("the lull binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(summary["verdict"], "pass");
    assert_eq!(summary["seeded_messages"], 600);
    assert_eq!(summary["acked_messages"], 600);
}
