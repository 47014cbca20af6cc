//! A local stand-in for Meta's Graph API: records every request and answers as the
//! real API would (send_response.json by default, or a scripted error), checking
//! the bearer token like the real one does.

use crate::fake_server::FakeApi;
pub use crate::fake_server::{Answer, Seen};
use std::ops::Deref;

/// The token the fake accepts.
pub const TOKEN: &str = "test-graph-token";

/// The running fake: a [`FakeApi`] whose base is `http://127.0.0.1:port/v23.0`.
#[derive(Clone)]
pub struct FakeGraph(FakeApi);

impl FakeGraph {
    pub async fn start() -> Self {
        Self(FakeApi::start("/v23.0", 0, is_send, respond).await)
    }

    /// The read + typing requests so far.
    pub fn receipts(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.body["status"] == "read")
            .collect()
    }
}

impl Deref for FakeGraph {
    type Target = FakeApi;

    fn deref(&self) -> &FakeApi {
        &self.0
    }
}

/// A text reply, not a read receipt.
fn is_send(seen: &Seen) -> bool {
    seen.body["type"] == "text"
}

/// `POST /v23.0/<phone number id>/messages` with `Authorization: Bearer <token>`.
fn respond(seen: &Seen, scripted: Option<Answer>, n: u64) -> Answer {
    if seen.authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        return Answer::error(401, include_str!("../fixtures/whatsapp/error_190.json"));
    }
    if !seen.path.ends_with("/messages") || seen.body["messaging_product"] != "whatsapp" {
        return Answer::error(400, r#"{"error":{"message":"bad request","code":100}}"#);
    }
    if let Some(answer) = scripted {
        return answer;
    }
    if !is_send(seen) {
        return Answer::new(200, r#"{"success":true}"#);
    }
    let to = seen.body["to"].as_str().unwrap_or_default();
    let sent = serde_json::json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": to}],
        "messages": [{"id": format!("wamid.fake{n}")}]
    });
    Answer::new(200, sent.to_string())
}
