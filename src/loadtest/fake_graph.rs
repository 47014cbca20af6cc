//! A recording stand-in for Meta's Graph API, for `lull loadtest ingest`: lull
//! under test sends its replies here, and the load test counts them per recipient.
//!
//! It answers like the Cloud API: `POST /{version}/{phone_number_id}/messages` with
//! `Authorization: Bearer <token>`; a text send gets a fresh wamid, a read receipt
//! (with or without the typing indicator) `{"success":true}`, anything malformed a
//! Graph-style error, which is counted: lull should never send one.

use crate::config::Secret;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The API version lull's `GRAPH_API_BASE` should end with.
const VERSION: &str = "v23.0";

/// Largest request body read; a send is a few hundred bytes.
const MAX_BODY: usize = 1 << 20;

/// The running fake; clones share it, and it stops serving when the last is dropped.
#[derive(Clone)]
pub struct FakeGraph {
    base: String,
    state: Arc<State>,
    _server: Arc<Server>,
}

/// The accept loop, aborted on drop.
struct Server(JoinHandle<()>);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct State {
    phone_number_id: String,
    token: Option<Secret>,
    /// Each recipient's reply times, in order, watched by those waiting for one.
    inboxes: Mutex<HashMap<String, watch::Sender<Vec<Instant>>>>,
    replies: AtomicU64,
    rejected: AtomicU64,
}

impl FakeGraph {
    /// Serves on `listener` (bound by the caller: port 0 in tests). Only requests for
    /// `phone_number_id` are accepted; with a `token`, only that bearer token (else any
    /// non-empty one, since lull's token is not ours to know).
    pub fn start(
        listener: TcpListener,
        phone_number_id: &str,
        token: Option<Secret>,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            phone_number_id: phone_number_id.to_owned(),
            token,
            inboxes: Mutex::new(HashMap::new()),
            replies: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        });
        let server = Server(tokio::spawn(serve(listener, state.clone())));
        Ok(Self {
            base: format!("http://{addr}/{VERSION}"),
            state,
            _server: Arc::new(server),
        })
    }

    /// What lull's `GRAPH_API_BASE` should be: `http://{addr}/v23.0`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Text sends accepted so far, all recipients.
    pub fn replies(&self) -> u64 {
        self.state.replies.load(Ordering::Relaxed)
    }

    /// Requests refused as malformed or unauthorized.
    pub fn rejected(&self) -> u64 {
        self.state.rejected.load(Ordering::Relaxed)
    }

    /// Every recipient with its reply times.
    pub fn all_replies(&self) -> HashMap<String, Vec<Instant>> {
        self.state
            .inboxes()
            .iter()
            .map(|(to, times)| (to.clone(), times.borrow().clone()))
            .collect()
    }

    /// Waits until `to` has had `n` replies; false after `timeout`.
    pub async fn wait_for_reply(&self, to: &str, n: usize, timeout: Duration) -> bool {
        let mut times = self.state.inbox(to).subscribe();
        let reached = tokio::time::timeout(timeout, times.wait_for(|t| t.len() >= n)).await;
        matches!(reached, Ok(Ok(_)))
    }
}

impl State {
    fn inboxes(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<Vec<Instant>>>> {
        // A panic elsewhere cannot leave the map half-updated: every change is one push.
        self.inboxes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `to`'s inbox, created empty on first use.
    fn inbox(&self, to: &str) -> watch::Sender<Vec<Instant>> {
        self.inboxes()
            .entry(to.to_owned())
            .or_insert_with(|| watch::channel(Vec::new()).0)
            .clone()
    }

    /// Records a reply to `to`; returns its number across all recipients (for a
    /// unique wamid).
    fn record_reply(&self, to: &str) -> u64 {
        self.inbox(to)
            .send_modify(|times| times.push(Instant::now()));
        self.replies.fetch_add(1, Ordering::Relaxed) + 1
    }
}

async fn serve(listener: TcpListener, state: Arc<State>) {
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
        let state = state.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| handle(state.clone(), request));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let authorization = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let (status, answer) = answer(
        &state,
        &parts.method,
        parts.uri.path(),
        authorization,
        &body,
    );
    if status != StatusCode::OK {
        state.rejected.fetch_add(1, Ordering::Relaxed);
    }
    let mut response = Response::new(Full::new(Bytes::from(answer.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// The Graph API's answer to one request, recording the replies it accepts.
fn answer(
    state: &State,
    method: &Method,
    path: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> (StatusCode, Value) {
    let expected = format!("/{VERSION}/{}/messages", state.phone_number_id);
    if method != Method::POST || path != expected {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            &format!("Unsupported {method} request to {path}"),
        );
    }
    let given = authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .filter(|t| !t.is_empty());
    let authorized = match (&state.token, given) {
        (_, None) => false,
        (Some(token), Some(given)) => token.expose() == given,
        (None, Some(_)) => true,
    };
    if !authorized {
        return graph_error(
            StatusCode::UNAUTHORIZED,
            190,
            "Invalid OAuth access token - Cannot parse access token",
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return invalid("the body is not JSON");
    };
    if body["messaging_product"] != "whatsapp" {
        return invalid("The parameter messaging_product is required.");
    }
    if body["status"] == "read" {
        return read_receipt(&body);
    }
    if body["type"] != "text" {
        return invalid("Param type must be one of {TEXT, ...}; the load test only expects text");
    }
    let to = body["to"].as_str().filter(|to| !to.is_empty());
    let text = body["text"]["body"].as_str().filter(|t| !t.is_empty());
    let (Some(to), Some(_)) = (to, text) else {
        return invalid("The parameters to and text.body are required.");
    };
    let n = state.record_reply(to);
    (
        StatusCode::OK,
        json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to}],
            "messages": [{"id": format!("wamid.loadtest{n:012}")}],
        }),
    )
}

/// `{"status":"read","message_id":...}`, optionally with `typing_indicator: {type: text}`.
fn read_receipt(body: &Value) -> (StatusCode, Value) {
    if body["message_id"].as_str().is_none_or(str::is_empty) {
        return invalid("The parameter message_id is required.");
    }
    if let Some(typing) = body.get("typing_indicator")
        && typing["type"] != "text"
    {
        return invalid("typing_indicator.type must be text");
    }
    (StatusCode::OK, json!({"success": true}))
}

fn invalid(message: &str) -> (StatusCode, Value) {
    graph_error(
        StatusCode::BAD_REQUEST,
        100,
        &format!("(#100) Invalid parameter: {message}"),
    )
}

/// The Graph API's error envelope.
fn graph_error(status: StatusCode, code: i64, message: &str) -> (StatusCode, Value) {
    (
        status,
        json!({"error": {
            "message": message,
            "type": "OAuthException",
            "code": code,
            "fbtrace_id": "loadtest",
        }}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(token: Option<&str>) -> State {
        State {
            phone_number_id: "123".into(),
            token: token.map(Secret::new),
            inboxes: Mutex::new(HashMap::new()),
            replies: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    fn post(state: &State, auth: Option<&str>, body: Value) -> (StatusCode, Value) {
        let body = body.to_string();
        answer(
            state,
            &Method::POST,
            "/v23.0/123/messages",
            auth,
            body.as_bytes(),
        )
    }

    #[test]
    fn a_text_send_is_recorded_and_answered_with_a_wamid() {
        let s = state(None);
        let send = json!({"messaging_product": "whatsapp", "to": "555", "type": "text",
                          "text": {"body": "hi"}});
        let (status, body) = post(&s, Some("Bearer x"), send);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["contacts"][0]["wa_id"], "555");
        assert!(
            body["messages"][0]["id"]
                .as_str()
                .unwrap()
                .starts_with("wamid.")
        );
        assert_eq!(s.inbox("555").borrow().len(), 1);
    }

    #[test]
    fn a_read_receipt_with_typing_succeeds_without_counting_as_a_reply() {
        let s = state(None);
        let read = json!({"messaging_product": "whatsapp", "status": "read",
                          "message_id": "wamid.1", "typing_indicator": {"type": "text"}});
        assert_eq!(post(&s, Some("Bearer x"), read).1, json!({"success": true}));
        assert_eq!(s.replies.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn malformed_or_unauthorized_requests_get_graph_errors() {
        let s = state(Some("right"));
        let send = json!({"messaging_product": "whatsapp", "to": "555", "type": "text",
                          "text": {"body": "hi"}});
        let (status, body) = post(&s, Some("Bearer wrong"), send.clone());
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (StatusCode::UNAUTHORIZED, json!(190))
        );
        assert_eq!(post(&s, None, send.clone()).0, StatusCode::UNAUTHORIZED);
        let no_body = json!({"messaging_product": "whatsapp", "to": "555", "type": "text"});
        let (status, body) = post(&s, Some("Bearer right"), no_body);
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (StatusCode::BAD_REQUEST, json!(100))
        );
        let wrong_account = answer(
            &s,
            &Method::POST,
            "/v23.0/999/messages",
            Some("Bearer right"),
            b"{}",
        );
        assert_eq!(wrong_account.0, StatusCode::BAD_REQUEST);
        assert_eq!(post(&s, Some("Bearer right"), send).0, StatusCode::OK);
    }
}
