//! What the fake platform APIs share: an HTTP server on port 0 that records every
//! request and lets the platform's answer function decide the response, handing it
//! the next scripted answer (sends and other requests have a script each).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// One request a fake received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: std::time::Instant,
    pub path: String,
    pub authorization: Option<String>,
    /// Every header, for fakes that check more than `authorization`.
    pub headers: hyper::HeaderMap,
    pub body: Value,
}

/// An answer: scripted by a test, or the platform's own.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<u64>,
    /// How long to wait before answering.
    pub delay: Duration,
}

impl Answer {
    /// A JSON answer with this status.
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            body: body.into(),
            retry_after: None,
            delay: Duration::ZERO,
        }
    }

    /// An HTTP error with a body.
    pub fn error(status: u16, body: &str) -> Self {
        Self::new(status, body)
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut r = Response::new(Full::new(Bytes::from(self.body)));
        *r.status_mut() = StatusCode::from_u16(self.status).unwrap();
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert("retry-after", secs.to_string().parse().unwrap());
        }
        r
    }
}

/// Whether a request is a send (one that takes the next scripted answer).
pub type IsSend = fn(&Seen) -> bool;

/// A platform's answer to a request, given the next scripted answer if the request is a
/// send and the request's number (counted across all requests).
pub type Respond = fn(&Seen, Option<Answer>, u64) -> Answer;

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    script: VecDeque<Answer>,
    /// Scripted answers to the other requests (read receipts, typing).
    others: VecDeque<Answer>,
    counter: u64,
}

/// A running fake.
#[derive(Clone)]
pub struct FakeApi {
    /// What the app's API base setting should be.
    pub base: String,
    is_send: IsSend,
    state: Arc<Mutex<State>>,
}

impl FakeApi {
    /// Starts a fake at `http://127.0.0.1:port{path}` whose request numbers follow
    /// `counter`.
    pub async fn start(path: &str, counter: u64, is_send: IsSend, respond: Respond) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            counter,
            ..State::default()
        }));
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service =
                        service_fn(move |req| handle(state.clone(), is_send, respond, req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            base: format!("http://{addr}{path}"),
            is_send,
            state,
        }
    }

    /// Answers the next sends with these, in order; then success again.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.state.lock().unwrap().script.extend(answers);
    }

    /// Answers the next requests that are not sends (read receipts, typing) with
    /// these, in order; then as the platform would.
    pub fn script_others(&self, answers: impl IntoIterator<Item = Answer>) {
        self.state.lock().unwrap().others.extend(answers);
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// The sends so far (not read receipts, typing or seen actions), failed ones
    /// included.
    pub fn replies(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| (self.is_send)(s))
            .collect()
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    is_send: IsSend,
    respond: Respond,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_owned();
    let headers = req.headers().clone();
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let seen = Seen {
        at: std::time::Instant::now(),
        path,
        authorization,
        headers,
        body,
    };
    let (scripted, n) = {
        let mut s = state.lock().unwrap();
        s.seen.push(seen.clone());
        s.counter += 1;
        let scripted = if is_send(&seen) {
            s.script.pop_front()
        } else {
            s.others.pop_front()
        };
        (scripted, s.counter)
    };
    let answer = respond(&seen, scripted, n);
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    Ok(answer.into_response())
}
