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

/// A reply (text, interactive or media), not a read receipt.
fn is_send(seen: &Seen) -> bool {
    ["text", "interactive", "image", "document", "audio", "video"]
        .iter()
        .any(|kind| seen.body["type"] == *kind)
}

/// Why the Cloud API would refuse a reply's content (code 131009, "parameter value
/// is not valid"), checked as Meta documents the message objects: interactive
/// `button` (1-3 reply buttons, titles up to 20 characters) and `list` (a button
/// title, up to 10 rows), media by `link`.
fn invalid_content(body: &serde_json::Value) -> Option<&'static str> {
    let kind = body["type"].as_str()?;
    let content = &body[kind];
    match kind {
        "text" => content["body"].as_str().is_none().then_some("text.body"),
        "interactive" => {
            if content["body"]["text"].as_str().is_none_or(str::is_empty) {
                return Some("interactive.body.text");
            }
            match content["type"].as_str() {
                Some("button") => {
                    let buttons = content["action"]["buttons"].as_array()?;
                    let fine = (1..=3).contains(&buttons.len())
                        && buttons.iter().all(|b| {
                            b["type"] == "reply"
                                && b["reply"]["id"].as_str().is_some_and(|i| !i.is_empty())
                                && b["reply"]["title"]
                                    .as_str()
                                    .is_some_and(|t| (1..=20).contains(&t.chars().count()))
                        });
                    (!fine).then_some("action.buttons")
                }
                Some("list") => {
                    let action = &content["action"];
                    let rows: Vec<&serde_json::Value> = action["sections"]
                        .as_array()?
                        .iter()
                        .flat_map(|s| s["rows"].as_array().into_iter().flatten())
                        .collect();
                    let fine = action["button"]
                        .as_str()
                        .is_some_and(|b| (1..=20).contains(&b.chars().count()))
                        && (1..=10).contains(&rows.len())
                        && rows
                            .iter()
                            .all(|r| r["id"].as_str().is_some() && r["title"].as_str().is_some());
                    (!fine).then_some("action.sections")
                }
                _ => Some("interactive.type"),
            }
        }
        _ => content["link"]
            .as_str()
            .is_none_or(|l| !l.starts_with("http"))
            .then_some("link"),
    }
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
    if let Some(field) = invalid_content(&seen.body) {
        let body = serde_json::json!({"error": {"message": format!("(#131009) Parameter value is not valid: {field}"), "code": 131009}});
        return Answer::error(400, &body.to_string());
    }
    let to = seen.body["to"].as_str().unwrap_or_default();
    let sent = serde_json::json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": to}],
        "messages": [{"id": format!("wamid.fake{n}")}]
    });
    Answer::new(200, sent.to_string())
}
