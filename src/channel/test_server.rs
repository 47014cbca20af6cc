//! What the channels' unit tests share: a tiny HTTP/1.1 server that answers scripted
//! replies, one request per connection, and hands back what it received; an address
//! nothing listens on; the checks every sender's tests make; fixtures; and a client
//! like the app's.

use super::{Channel, SendError};
use crate::message::Conversation;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One scripted answer.
pub struct Reply {
    /// Status line tail, e.g. `200 OK`; empty to hang up without answering.
    pub status: &'static str,
    /// Extra header lines, each ending in `\r\n`.
    pub headers: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// A JSON answer.
    pub fn new(status: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: "",
            body: body.into(),
        }
    }

    /// Reads the request, then closes the connection without a response.
    pub fn hang_up() -> Self {
        Self::new("", Vec::new())
    }
}

/// One request the server received.
pub struct Received {
    /// `POST /path HTTP/1.1`.
    pub request_line: String,
    /// Header lines, in order.
    pub headers: Vec<(String, String)>,
    /// The JSON body (`Null` when there was none or it was not JSON).
    pub body: Value,
}

impl Received {
    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Starts the server; returns `http://127.0.0.1:port` and a task that ends, with
/// what was received, once every reply was used.
pub async fn serve(replies: Vec<Reply>) -> (String, JoinHandle<Vec<Received>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let mut received = Vec::new();
        for reply in replies {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buffer = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                let n = socket.read(&mut chunk).await.expect("read");
                assert!(n > 0, "connection closed before the request head");
                buffer.extend_from_slice(&chunk[..n]);
                if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
            };
            let head = String::from_utf8(buffer[..head_end].to_vec()).expect("utf-8 head");
            let mut lines = head.split("\r\n");
            let request_line = lines.next().expect("request line").to_owned();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect();
            let length: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            while buffer.len() < head_end + length {
                let n = socket.read(&mut chunk).await.expect("read");
                assert!(n > 0, "connection closed before the request body");
                buffer.extend_from_slice(&chunk[..n]);
            }
            let body =
                serde_json::from_slice(&buffer[head_end..head_end + length]).unwrap_or(Value::Null);
            received.push(Received {
                request_line,
                headers,
                body,
            });
            if reply.status.is_empty() {
                drop(socket);
                continue;
            }
            let head = format!(
                "HTTP/1.1 {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 {}connection: close\r\n\r\n",
                reply.status,
                reply.body.len(),
                reply.headers,
            );
            socket.write_all(head.as_bytes()).await.expect("write head");
            socket.write_all(&reply.body).await.expect("write body");
            let _ = socket.shutdown().await;
        }
        received
    });
    (base, task)
}

/// The one request a one-reply server received, once it has answered; its body must
/// be JSON, as every platform API call's is.
pub async fn one_request(server: JoinHandle<Vec<Received>>) -> Received {
    let mut received = server.await.expect("server");
    assert_eq!(received.len(), 1, "one request");
    let request = received.remove(0);
    assert!(!request.body.is_null(), "JSON request body");
    request
}

/// `http://127.0.0.1:port` where nothing listens any more: a listener bound, then
/// dropped, so a request there fails to connect.
pub async fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    base
}

/// Serves `reply` to one request and sends `hello` to `to` through the channel `build`
/// makes for the server's base: the send's result and the request.
pub async fn send_hello<C: Channel>(
    reply: Reply,
    build: impl FnOnce(&str) -> C,
    to: &Conversation,
) -> (Result<String, SendError>, Received) {
    let (base, server) = serve(vec![reply]).await;
    let result = build(&base).send_part(to, "hello").await;
    (result, one_request(server).await)
}

/// Sends `hello` to `to` through `channel`, built for a [`closed_port`] base: the
/// error, checked retryable without a status or a code (no response came).
pub async fn unreachable_error(channel: &impl Channel, to: &Conversation) -> SendError {
    let error = channel
        .send_part(to, "hello")
        .await
        .expect_err("unreachable");
    assert!(
        matches!(
            error,
            SendError::Retryable {
                status: None,
                code: None,
                ..
            }
        ),
        "{error:?}"
    );
    error
}

/// Checks a dry run (no token, the base at port 9, which is never contacted: a request
/// would fail the test): `send_part` logs and returns a `dry-run:` id, and
/// `mark_read_typing` does nothing.
pub async fn assert_dry_run(channel: &impl Channel, to: &Conversation, message_id: &str) {
    let id = channel.send_part(to, "hello").await.expect("dry run");
    assert!(
        id.starts_with("dry-run:") && id.len() > "dry-run:".len(),
        "{id}"
    );
    channel
        .mark_read_typing(to, message_id)
        .await
        .expect("dry run");
}

/// A test fixture's exact bytes, by path under `tests/fixtures`.
pub fn fixture(path: &str) -> Vec<u8> {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

/// A test fixture as JSON.
pub fn json_fixture(path: &str) -> Value {
    serde_json::from_slice(&fixture(path)).expect("fixture is JSON")
}

/// A client like the app's, with a short timeout.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("client")
}
