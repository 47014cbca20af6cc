//! `lull loadtest ingest` judges what it is shown: a fake lull (a small HTTP server
//! standing where lull would be) that answers bursts wrongly on purpose, one that
//! splits a burst where it took longer than the window to store a message, and a front
//! before a real lull that refuses webhooks at first, as a restarting instance or a
//! load balancer would.

use crate::fake_platforms::TOKEN;
use crate::helpers::*;
use crate::redis_server::free_port;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lull::config::Secret;
use lull::fake_platform::{FakePlatform, Graph, Record};
use lull::loadtest::ingest::{self, IngestReport};
use lull::loadtest::report::Verdict;
use lull::loadtest::retry::RetryArgs;
use lull::loadtest::{IngestArgs, chaos::ChaosArgs};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// The window the load test is told lull has; the fakes answer within it unless
/// they pause on purpose.
const TOLD_WINDOW: Duration = Duration::from_millis(300);

/// `conversations` × 1 burst × 3 messages against `url`, no duplicates.
fn args(url: String, conversations: u32, settle_seconds: f64) -> IngestArgs {
    IngestArgs {
        url,
        app_secret: Some(Secret::new(APP_SECRET)),
        phone_number_id: PHONE_ID.into(),
        graph_token: Some(Secret::new(TOKEN)),
        conversations,
        bursts: 1,
        burst_size: 3,
        concurrency: 8,
        duplicate_every: 0,
        graph_listen: "unused: the test binds the fake".into(),
        settle_seconds,
        window_seconds: TOLD_WINDOW.as_secs_f64(),
        json: false,
        retry: RetryArgs {
            retry_base_ms: 20,
            retry_cap_ms: 200,
            retry_for_seconds: 10.0,
        },
        chaos: ChaosArgs::default(),
    }
}

async fn graph() -> FakePlatform {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = Graph::new(PHONE_ID, Some(Secret::new(TOKEN)));
    FakePlatform::start(listener, api, Record::CountsOnly).unwrap()
}

/// Serves `handle(body) -> (status, body)` on `listener` until the test ends.
fn serve<F, Fut>(listener: TcpListener, handle: F)
where
    F: Fn(Bytes) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = (u16, String)> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let handle = handle.clone();
                    async move {
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let (status, answer) = handle(body).await;
                        let mut response = http::Response::new(Full::new(Bytes::from(answer)));
                        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// A built-in style reply to `to` quoting `texts`, sent to the fake Graph API.
async fn reply(graph: &FakePlatform, to: &str, texts: &[String]) {
    let quoted: Vec<String> = texts.iter().map(|t| format!("“{t}”")).collect();
    let body = json!({"messaging_product": "whatsapp", "to": to, "type": "text",
                      "text": {"body": format!("Thanks! I got: {}.", quoted.join(", "))}});
    let status = reqwest::Client::new()
        .post(format!("{}/{PHONE_ID}/messages", graph.base))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

/// A fake lull: stores nothing, and once a contact's three messages are in, answers
/// them as its conversation index says: 0 split in two replies, 1 the same reply
/// twice, 2 the last message never, 3 the later two before the first, else right.
async fn wrong_lull(graph: FakePlatform) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let bursts: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
    serve(listener, move |body| {
        let (graph, bursts) = (graph.clone(), bursts.clone());
        async move {
            let webhook: Value = serde_json::from_slice(&body).unwrap();
            let message = &webhook["entry"][0]["changes"][0]["value"]["messages"][0];
            let from = message["from"].as_str().unwrap().to_owned();
            let text = message["text"]["body"].as_str().unwrap().to_owned();
            let burst = {
                let mut bursts = bursts.lock().unwrap();
                let burst = bursts.entry(from.clone()).or_default();
                burst.push(text);
                burst.clone()
            };
            if burst.len() == 3 {
                let index: u32 = from[from.len() - 7..].parse().unwrap();
                let (all, first, rest) = (&burst[..], &burst[..1], &burst[1..]);
                match index {
                    0 => {
                        reply(&graph, &from, &burst[..2]).await;
                        reply(&graph, &from, &burst[2..]).await;
                    }
                    1 => {
                        reply(&graph, &from, all).await;
                        reply(&graph, &from, all).await;
                    }
                    2 => reply(&graph, &from, &burst[..2]).await,
                    3 => {
                        reply(&graph, &from, rest).await;
                        reply(&graph, &from, first).await;
                    }
                    _ => reply(&graph, &from, all).await,
                }
            }
            (200, json!({"stored": 1, "duplicates": 0}).to_string())
        }
    });
    url
}

/// The examples of the violation line starting with `kind`.
fn violation<'a>(report: &'a IngestReport, kind: &str) -> &'a str {
    report
        .violations
        .iter()
        .find(|v| v.contains(kind))
        .unwrap_or_else(|| panic!("no {kind:?} in {:?}", report.violations))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_test_names_each_split_resent_lost_and_later_part_first_burst() {
    let graph = graph().await;
    let url = wrong_lull(graph.clone()).await;
    let report = ingest::run(&args(url, 6, 1.0), &graph).await.unwrap();
    assert_eq!(report.bursts, 6);
    assert_eq!(report.verdict, Verdict::Fail);
    // Conversations 4 and 5 were answered right.
    assert_eq!(report.bursts_passed, 2, "{report:?}");
    assert_eq!(report.lost_bursts, 1);
    // Answering the later part first takes two replies: conversation 3 is split too.
    assert_eq!(report.split_bursts, 2);
    assert_eq!(report.later_part_first, 1);
    assert_eq!(report.resent_bursts, 1);
    assert_eq!(report.messages_answered_twice, 3);
    assert_eq!(report.unattributed_replies, 0);
    let lost = violation(&report, "bursts lost");
    assert!(
        lost.contains("0000002 burst 1: message 3 never answered"),
        "{lost}"
    );
    let split = violation(&report, "bursts split");
    assert!(
        split.contains("0000000 burst 1: answered by 2 replies, message 3 stored"),
        "{split}"
    );
    assert_eq!(report.split_at_long_gaps, 0);
    assert!(split.contains("0000003 burst 1"), "{split}");
    let later = violation(&report, "later part first");
    assert!(
        later.contains("0000003 burst 1: message 2 answered by reply 1, before burst 1 message 1"),
        "{later}"
    );
    let resent = violation(&report, "bursts resent");
    assert!(
        resent.contains("0000001 burst 1: message 1 answered 2 times"),
        "{resent}"
    );
}

/// A fake lull that answers every contact's burst in two replies, its first message
/// alone, then the other two; it answers its webhook 200 at once, except that of
/// message 2 + the conversation index, which it holds for twice the window it was
/// told. So conversation 0's message 2 is stored well past the window after message
/// 1 was POSTed (the split is the window at work) and conversation 1's is not.
async fn pausing_lull(graph: FakePlatform) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let bursts: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
    serve(listener, move |body| {
        let (graph, bursts) = (graph.clone(), bursts.clone());
        async move {
            let webhook: Value = serde_json::from_slice(&body).unwrap();
            let message = &webhook["entry"][0]["changes"][0]["value"]["messages"][0];
            let from = message["from"].as_str().unwrap().to_owned();
            let text = message["text"]["body"].as_str().unwrap().to_owned();
            let burst = {
                let mut bursts = bursts.lock().unwrap();
                let burst = bursts.entry(from.clone()).or_default();
                burst.push(text);
                burst.clone()
            };
            if burst.len() == 3 {
                reply(&graph, &from, &burst[..1]).await;
                reply(&graph, &from, &burst[1..]).await;
            }
            let index: usize = from[from.len() - 7..].parse().unwrap();
            if burst.len() == 2 + index {
                tokio::time::sleep(TOLD_WINDOW * 2).await;
            }
            (200, json!({"stored": 1, "duplicates": 0}).to_string())
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_split_where_its_next_message_was_stored_past_the_window_is_no_violation() {
    let graph = graph().await;
    let url = pausing_lull(graph.clone()).await;
    let report = ingest::run(&args(url, 1, 1.0), &graph).await.unwrap();
    assert_eq!(report.split_at_long_gaps, 1, "{report:?}");
    assert_eq!(report.split_bursts, 0);
    assert_eq!(report.bursts_passed, 0);
    assert_eq!(report.verdict, Verdict::Pass, "{:?}", report.violations);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_before_a_message_stored_within_the_window_stays_a_violation_after_a_pause() {
    let graph = graph().await;
    let url = pausing_lull(graph.clone()).await;
    let report = ingest::run(&args(url, 2, 1.0), &graph).await.unwrap();
    assert_eq!(
        (report.split_at_long_gaps, report.split_bursts),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(report.verdict, Verdict::Fail);
    let split = violation(&report, "bursts split");
    assert!(
        split.contains("0000001 burst 1: answered by 2 replies, message 2 stored"),
        "{split}"
    );
    assert!(split.contains("ms after message 1 was POSTed"), "{split}");
}

/// A front before `app`'s webhook: each POST is forwarded, and `answer(n, forwarded)`
/// (n from 1) says what its sender gets: `None` lull's own answer, `Some(status)`
/// that status instead. `forward(n)` says whether POST n reaches lull at all.
fn front(
    listener: TcpListener,
    app: &TestApp,
    forward: fn(u64) -> bool,
    answer: fn(u64) -> Option<u16>,
) {
    let webhook = app.url("/api/whatsapp/webhook");
    let posts = Arc::new(AtomicU64::new(0));
    serve(listener, move |body| {
        let (webhook, posts) = (webhook.clone(), posts.clone());
        async move {
            let n = posts.fetch_add(1, Ordering::SeqCst) + 1;
            let mut lulls = (200, String::new());
            if forward(n) {
                let response = reqwest::Client::new()
                    .post(&webhook)
                    .header("content-type", "application/json")
                    .header("x-hub-signature-256", sign(&body))
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                lulls = (response.status().as_u16(), response.text().await.unwrap());
            }
            match answer(n) {
                Some(status) => (status, "{\"error\":\"unavailable\"}".into()),
                None => lulls,
            }
        }
    });
}

/// One conversation, one burst of one message: the only webhook is the one retried.
fn one_message(url: String) -> IngestArgs {
    IngestArgs {
        burst_size: 1,
        ..args(url, 1, 5.0)
    }
}

async fn stored_messages(app: &TestApp) -> i64 {
    app.count("SELECT count(*) FROM conversation_messages WHERE direction = 'in'")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_answered_503_is_redelivered_counted_and_stored_once() {
    let graph = graph().await;
    let app = spawn_app_with(|c| c.graph_api_base = graph.base.clone()).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // POST 1 is stored but its sender gets a 503 (an answer lost on the way); POST 2
    // is refused before lull; POST 3 reaches lull, which reports a duplicate.
    front(listener, &app, |n| n != 2, |n| (n <= 2).then_some(503));
    let report = ingest::run(&one_message(url), &graph).await.unwrap();
    assert_eq!(report.webhook_retries, 2, "{report:?}");
    assert_eq!((report.webhooks_sent, report.webhooks_given_up), (3, 0));
    assert_eq!(report.errors, 0, "{:?}", report.violations);
    assert_eq!(report.bursts_passed, 1, "{:?}", report.violations);
    assert_eq!(stored_messages(&app).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_whose_connection_is_refused_is_redelivered_once_lull_listens() {
    let graph = graph().await;
    let app = spawn_app_with(|c| c.graph_api_base = graph.base.clone()).await;
    let port = free_port();
    let run = tokio::spawn({
        let (args, graph) = (
            one_message(format!("http://127.0.0.1:{port}")),
            graph.clone(),
        );
        async move { ingest::run(&args, &graph).await.unwrap() }
    });
    // Nothing listens on the port for a while: the first deliveries are refused.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    front(listener, &app, |_| true, |_| None);
    let report = run.await.unwrap();
    assert!(report.webhook_retries >= 1, "{report:?}");
    assert_eq!(report.webhooks_sent, report.webhook_retries + 1);
    assert_eq!((report.errors, report.webhooks_given_up), (0, 0));
    assert_eq!(report.bursts_passed, 1, "{:?}", report.violations);
    assert_eq!(stored_messages(&app).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_refused_past_the_retry_time_is_given_up_and_reported() {
    let graph = graph().await;
    let args = IngestArgs {
        retry: RetryArgs {
            retry_base_ms: 20,
            retry_cap_ms: 50,
            retry_for_seconds: 0.3,
        },
        ..one_message(format!("http://127.0.0.1:{}", free_port()))
    };
    let report = ingest::run(&args, &graph).await.unwrap();
    assert_eq!(report.webhooks_given_up, 1);
    assert!(report.webhook_retries >= 3, "{report:?}");
    assert_eq!(report.verdict, Verdict::Fail);
    assert!(violation(&report, "not stored").contains("given up after"));
}
