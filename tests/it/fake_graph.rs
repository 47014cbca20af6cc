//! A local stand-in for Meta's Graph API: records every request and answers as the
//! real API would (send_response.json by default, or a scripted error), checking
//! the bearer token like the real one does.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// The token the fake accepts.
pub const TOKEN: &str = "test-graph-token";

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: std::time::Instant,
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<u64>,
    pub delay: Duration,
}

impl Answer {
    /// An HTTP error with a fixture body.
    pub fn error(status: u16, body: &str) -> Self {
        Self {
            status,
            body: body.to_owned(),
            retry_after: None,
            delay: Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    script: VecDeque<Answer>,
    counter: u64,
}

/// The running fake.
#[derive(Clone)]
pub struct FakeGraph {
    pub base: String,
    state: Arc<Mutex<State>>,
}

impl FakeGraph {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            base: format!("http://{addr}/v23.0"),
            state,
        }
    }

    /// Answers the next send requests with these, in order; then success again.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.state.lock().unwrap().script.extend(answers);
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// The text replies sent so far (send requests, not read receipts).
    pub fn replies(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.body["type"] == "text")
            .collect()
    }

    /// The read + typing requests so far.
    pub fn receipts(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.body["status"] == "read")
            .collect()
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_owned();
    let authorization = req
        .headers()
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
    let is_send = body["type"] == "text";
    let answer = {
        let mut s = state.lock().unwrap();
        s.seen.push(Seen {
            at: std::time::Instant::now(),
            path: path.clone(),
            authorization: authorization.clone(),
            body: body.clone(),
        });
        s.counter += 1;
        if is_send { s.script.pop_front() } else { None }
            .map(|a| (a, s.counter))
            .ok_or(s.counter)
    };
    let respond = |status: u16, text: String| {
        let mut r = Response::new(Full::new(Bytes::from(text)));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r
    };
    if authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        return Ok(respond(
            401,
            include_str!("../fixtures/whatsapp/error_190.json").to_owned(),
        ));
    }
    if !path.ends_with("/messages") || body["messaging_product"] != "whatsapp" {
        return Ok(respond(
            400,
            r#"{"error":{"message":"bad request","code":100}}"#.to_owned(),
        ));
    }
    match answer {
        Ok((answer, _)) => {
            tokio::time::sleep(answer.delay).await;
            let mut r = respond(answer.status, answer.body);
            if let Some(secs) = answer.retry_after {
                r.headers_mut()
                    .insert("retry-after", secs.to_string().parse().unwrap());
            }
            Ok(r)
        }
        Err(_) if !is_send => Ok(respond(200, r#"{"success":true}"#.to_owned())),
        Err(n) => {
            let to = body["to"].as_str().unwrap_or_default().to_owned();
            Ok(respond(
                200,
                serde_json::json!({
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": to, "wa_id": to}],
                    "messages": [{"id": format!("wamid.fake{n}")}]
                })
                .to_string(),
            ))
        }
    }
}
