//! A recording stand-in for the HTTP APIs lull calls: the platforms' send APIs
//! (Meta's Graph API, Instagram's, Telegram's Bot API) and any other API a test fakes
//! (the LLMs'). The channels' unit tests, the integration tests and
//! `lull loadtest ingest` all run this one server.
//!
//! An [`Api`] answers each request as the real API would; a test may script the next
//! answers instead (a status sequence such as 500, 500, 200, a `Retry-After`, a delay,
//! a hang-up). The server numbers the requests, counts accepted replies and refused
//! requests, keeps each recipient's reply times, and with [`Record::Everything`]
//! every request. The load test asks for [`Record::CountsOnly`]: its hot path then
//! parses the body and answers, and keeps nothing else.

mod answer;
mod graph;
mod instagram;
mod request;
mod telegram;

pub use answer::Answer;
pub use graph::Graph;
pub use instagram::Instagram;
pub use request::{Call, Received};
pub use telegram::Telegram;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Largest request body read; a send is a few hundred bytes.
const MAX_BODY: usize = 1 << 20;

/// How an API answers: its rules, which a fake platform serves.
pub trait Api: Send + Sync + 'static {
    /// The path its base URL ends with, e.g. `/v23.0`; none by default.
    fn base_path(&self) -> &str {
        ""
    }

    /// The number before the first request's: requests are numbered from the next
    /// one (0 by default, so the first is 1).
    fn numbers_after(&self) -> u64 {
        0
    }

    /// Whether `call` is a send: it takes the next answer of [`FakePlatform::script`]
    /// (the others take [`FakePlatform::script_others`]'s) and is one of
    /// [`FakePlatform::replies`]. Every request is, by default.
    fn is_send(&self, _call: &Call) -> bool {
        true
    }

    /// Whom a send is to, for [`FakePlatform::reply_times`]; nobody by default.
    fn recipient<'a>(&self, _call: &Call<'a>) -> Option<Cow<'a, str>> {
        None
    }

    /// The text a send shows its recipient, kept in [`FakePlatform::deliveries`];
    /// empty by default.
    fn shown_text(&self, _call: &Call) -> String {
        String::new()
    }

    /// The answer to `call`, the `n`-th request, given the next scripted answer for
    /// its kind (send or other), if any is left.
    fn answer(&self, call: &Call, scripted: Option<Answer>, n: u64) -> Answer;
}

/// One accepted send, as its recipient's inbox keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// When the fake accepted it.
    pub at: Instant,
    /// What it shows (a text's body, an interactive message's body text).
    pub text: String,
}

/// What a fake keeps of each request besides its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// Every request, for [`FakePlatform::seen`] (tests).
    Everything,
    /// Nothing but the counters and reply times (the load test).
    CountsOnly,
}

/// A running fake; clones share it, and it stops serving when the last is dropped.
#[derive(Clone)]
pub struct FakePlatform {
    /// What the app's API base setting should be: `http://{addr}{base path}`.
    pub base: String,
    shared: Arc<Shared>,
    _server: Arc<Server>,
}

/// The accept loop, aborted on drop (with the connections it serves).
struct Server(JoinHandle<()>);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Shared {
    api: Box<dyn Api>,
    record: Record,
    log: Mutex<Log>,
    /// Each recipient's accepted replies, in order, watched by those waiting.
    inboxes: Mutex<HashMap<String, watch::Sender<Vec<Delivery>>>>,
    accepted: AtomicU64,
    refused: AtomicU64,
}

/// What changes with each request, under one lock so that the `n`-th request is
/// `seen()[n - 1 - numbers_after]`.
struct Log {
    last_number: u64,
    sends: VecDeque<Answer>,
    others: VecDeque<Answer>,
    /// Each request, with whether it was a send.
    received: Vec<(bool, Received)>,
}

impl FakePlatform {
    /// Serves `api` on `listener` (bound by the caller: port 0 in tests).
    pub fn start(listener: TcpListener, api: impl Api, record: Record) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let base = format!("http://{addr}{}", api.base_path());
        let shared = Arc::new(Shared {
            log: Mutex::new(Log {
                last_number: api.numbers_after(),
                sends: VecDeque::new(),
                others: VecDeque::new(),
                received: Vec::new(),
            }),
            api: Box::new(api),
            record,
            inboxes: Mutex::new(HashMap::new()),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let server = Server(tokio::spawn(serve(listener, shared.clone())));
        Ok(Self {
            base,
            shared,
            _server: Arc::new(server),
        })
    }

    /// Answers the next sends with these, in order; then as the API would.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.shared.log().sends.extend(answers);
    }

    /// Answers the next requests that are not sends (read receipts, typing) with
    /// these, in order; then as the API would.
    pub fn script_others(&self, answers: impl IntoIterator<Item = Answer>) {
        self.shared.log().others.extend(answers);
    }

    /// Every request so far (none unless recording [`Record::Everything`]).
    pub fn seen(&self) -> Vec<Received> {
        self.recorded(|_| true)
    }

    /// The sends so far, refused ones included.
    pub fn replies(&self) -> Vec<Received> {
        self.recorded(|send| send)
    }

    /// The requests so far that are not sends (read receipts, typing).
    pub fn others(&self) -> Vec<Received> {
        self.recorded(|send| !send)
    }

    fn recorded(&self, keep: impl Fn(bool) -> bool) -> Vec<Received> {
        let log = self.shared.log();
        let kept = log.received.iter().filter(|(send, _)| keep(*send));
        kept.map(|(_, received)| received.clone()).collect()
    }

    /// Sends accepted so far, all recipients.
    pub fn accepted_replies(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Requests refused so far (any answer but a 2xx, scripted ones included).
    pub fn refused_requests(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// Every recipient with the times of its accepted replies.
    pub fn reply_times(&self) -> HashMap<String, Vec<Instant>> {
        self.shared
            .inboxes()
            .iter()
            .map(|(to, inbox)| (to.clone(), inbox.borrow().iter().map(|d| d.at).collect()))
            .collect()
    }

    /// Every recipient with its accepted replies, in the order they were accepted.
    pub fn deliveries(&self) -> HashMap<String, Vec<Delivery>> {
        self.shared
            .inboxes()
            .iter()
            .map(|(to, inbox)| (to.clone(), inbox.borrow().clone()))
            .collect()
    }

    /// Waits until `to` has had `n` replies accepted; false after `timeout`.
    pub async fn wait_for_reply(&self, to: &str, n: usize, timeout: Duration) -> bool {
        self.wait_for_deliveries(to, timeout, |d| d.len() >= n)
            .await
    }

    /// Waits until `to`'s accepted replies satisfy `done`; false after `timeout`.
    pub async fn wait_for_deliveries(
        &self,
        to: &str,
        timeout: Duration,
        mut done: impl FnMut(&[Delivery]) -> bool,
    ) -> bool {
        let mut inbox = self.shared.inbox(to).subscribe();
        let reached = tokio::time::timeout(timeout, inbox.wait_for(|d| done(d))).await;
        matches!(reached, Ok(Ok(_)))
    }
}

impl Shared {
    // A panic elsewhere cannot leave either map half-updated: each change is one step.
    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn inboxes(&self) -> MutexGuard<'_, HashMap<String, watch::Sender<Vec<Delivery>>>> {
        self.inboxes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `to`'s inbox, created empty on first use.
    fn inbox(&self, to: &str) -> watch::Sender<Vec<Delivery>> {
        let mut inboxes = self.inboxes();
        if let Some(inbox) = inboxes.get(to) {
            return inbox.clone();
        }
        let inbox = watch::channel(Vec::new()).0;
        inboxes.insert(to.to_owned(), inbox.clone());
        inbox
    }

    /// Numbers a request, takes its scripted answer and records it if asked to.
    fn note(&self, send: bool, record: impl FnOnce() -> Received) -> (Option<Answer>, u64) {
        let mut log = self.log();
        log.last_number += 1;
        let scripted = if send {
            log.sends.pop_front()
        } else {
            log.others.pop_front()
        };
        if self.record == Record::Everything {
            log.received.push((send, record()));
        }
        (scripted, log.last_number)
    }

    /// Counts `answer` to `call`, and the reply it accepted.
    fn count(&self, call: &Call, send: bool, answer: &Answer) {
        if !answer.is_success() {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if !send {
            return;
        }
        self.accepted.fetch_add(1, Ordering::Relaxed);
        if let Some(to) = self.api.recipient(call) {
            let delivery = Delivery {
                at: Instant::now(),
                text: self.api.shown_text(call),
            };
            self.inbox(&to).send_modify(|inbox| inbox.push(delivery));
        }
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    // Connections live in the set, so aborting this task closes them too.
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: wait, then accept again.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next() => continue,
        };
        let shared = shared.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| handle(shared.clone(), request));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Why a connection closed without an answer: the script said to hang up.
#[derive(Debug, thiserror::Error)]
#[error("hung up as scripted")]
struct HungUp;

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, HungUp> {
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let call = Call {
        method: &parts.method,
        path: parts.uri.path(),
        headers: &parts.headers,
        body: &body,
    };
    let send = shared.api.is_send(&call);
    let (scripted, n) = shared.note(send, || Received::new(&parts, &call));
    let answer = shared.api.answer(&call, scripted, n);
    shared.count(&call, send, &answer);
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    if answer.hang_up {
        // An error from the service makes hyper close the connection, answering nothing.
        return Err(HungUp);
    }
    Ok(answer.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use serde_json::json;

    const TOKEN: &str = "token";

    async fn graph(record: Record) -> FakePlatform {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = Graph::new("123", Some(Secret::new(TOKEN)));
        FakePlatform::start(listener, api, record).unwrap()
    }

    /// POSTs a text reply to `to`; the status, or `None` when the fake hung up.
    async fn send(fake: &FakePlatform, to: &str) -> Option<u16> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let body = json!({"messaging_product": "whatsapp", "to": to, "type": "text",
                          "text": {"body": "hi"}});
        let response = reqwest::Client::new()
            .post(format!("{}/123/messages", fake.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await;
        response.ok().map(|r| r.status().as_u16())
    }

    #[tokio::test]
    async fn scripted_answers_come_first_in_order_then_the_apis_own() {
        let fake = graph(Record::Everything).await;
        fake.script([Answer::error(500, "{}"), Answer::hang_up()]);
        assert_eq!(send(&fake, "555").await, Some(500));
        assert_eq!(send(&fake, "555").await, None);
        assert_eq!(send(&fake, "555").await, Some(200));
        let seen = fake.seen();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].request_line, "POST /v23.0/123/messages HTTP/1.1");
        assert_eq!(seen[0].authorization.as_deref(), Some("Bearer token"));
        assert_eq!(seen[2].body["to"], "555");
        assert_eq!((fake.accepted_replies(), fake.refused_requests()), (1, 2));
    }

    #[tokio::test]
    async fn counting_only_keeps_no_request_but_every_reply_time() {
        let fake = graph(Record::CountsOnly).await;
        assert_eq!(send(&fake, "555").await, Some(200));
        assert_eq!(send(&fake, "777").await, Some(200));
        assert!(fake.seen().is_empty());
        assert!(fake.wait_for_reply("777", 1, Duration::from_secs(5)).await);
        let times = fake.reply_times();
        assert_eq!((times["555"].len(), times["777"].len()), (1, 1));
        assert_eq!(fake.deliveries()["777"][0].text, "hi");
        assert_eq!(fake.accepted_replies(), 2);
    }
}
