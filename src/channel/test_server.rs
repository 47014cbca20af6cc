//! What the channels' unit tests share: the fake platform server answering a script
//! and recording what it received; an address nothing listens on; the checks every
//! sender's tests make; fixtures; and a client like the app's.

use super::{Channel, SendError};
use crate::fake_platform::{Answer, Api, Call, FakePlatform, Received, Record};
use crate::message::Conversation;
use serde_json::Value;
use tokio::net::TcpListener;

/// An API that answers from the script alone, and hangs up once it has run out.
struct Scripted;

impl Api for Scripted {
    fn answer(&self, _call: &Call, scripted: Option<Answer>, _n: u64) -> Answer {
        scripted.unwrap_or_else(Answer::hang_up)
    }
}

/// Starts a fake on port 0 that answers `answers` in order and records every
/// request; returns `http://127.0.0.1:port` and the fake.
pub async fn serve(answers: Vec<Answer>) -> (String, FakePlatform) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let fake = FakePlatform::start(listener, Scripted, Record::Everything).expect("fake");
    fake.script(answers);
    (fake.base.clone(), fake)
}

/// The one request `fake` received; its body must be JSON, as every platform API
/// call's is.
pub fn one_request(fake: &FakePlatform) -> Received {
    let mut received = fake.seen();
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

/// Serves `answer` to one request and sends `hello` to `to` through the channel
/// `build` makes for the server's base: the send's result and the request.
pub async fn send_hello<C: Channel>(
    answer: Answer,
    build: impl FnOnce(&str) -> C,
    to: &Conversation,
) -> (Result<String, SendError>, Received) {
    let (base, server) = serve(vec![answer]).await;
    let result = build(&base).send_part(to, "hello").await;
    (result, one_request(&server))
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
