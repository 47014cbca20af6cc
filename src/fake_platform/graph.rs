//! Meta's Graph API as the WhatsApp channel calls it: `POST
//! /v23.0/{phone_number_id}/messages` with `Authorization: Bearer <token>`. A send
//! (text, interactive buttons or list, media by link) gets a wamid, a read receipt (with or without the typing indicator)
//! `{"success":true}`, anything malformed a Graph-style error: lull should never
//! send one.

use super::{Answer, Api, Call};
use crate::config::Secret;
use http::Method;
use serde_json::{Value, json};
use std::borrow::Cow;

/// The API version lull's `GRAPH_API_BASE` should end with.
const VERSION: &str = "/v23.0";

/// The Graph API of one WhatsApp business number.
pub struct Graph {
    phone_number_id: String,
    token: Option<Secret>,
}

impl Graph {
    /// Accepts requests for `phone_number_id` only; with a `token`, only that bearer
    /// token, else any non-empty one (when lull's token is not ours to know).
    pub fn new(phone_number_id: &str, token: Option<Secret>) -> Self {
        Self {
            phone_number_id: phone_number_id.to_owned(),
            token,
        }
    }

    /// Whether `path` is `/v23.0/{phone_number_id}/messages`.
    fn is_messages(&self, path: &str) -> bool {
        path.strip_prefix(VERSION)
            .and_then(|p| p.strip_prefix('/'))
            .and_then(|p| p.strip_prefix(self.phone_number_id.as_str()))
            == Some("/messages")
    }

    fn authorized(&self, call: &Call) -> bool {
        match (&self.token, call.bearer()) {
            (_, None) => false,
            (Some(token), Some(given)) => token.expose() == given,
            (None, Some(_)) => true,
        }
    }
}

impl Api for Graph {
    fn base_path(&self) -> &str {
        VERSION
    }

    /// A reply (text, interactive or media), not a read receipt.
    fn is_send(&self, call: &Call) -> bool {
        SENDS.iter().any(|kind| call.body["type"] == *kind)
    }

    fn recipient<'a>(&self, call: &Call<'a>) -> Option<Cow<'a, str>> {
        call.body["to"].as_str().map(Cow::Borrowed)
    }

    /// A text's body, or an interactive message's body text.
    fn shown_text(&self, call: &Call) -> String {
        let body = call.body;
        let text = body["text"]["body"].as_str();
        let text = text.or_else(|| body["interactive"]["body"]["text"].as_str());
        text.unwrap_or_default().to_owned()
    }

    fn answer(&self, call: &Call, scripted: Option<Answer>, n: u64) -> Answer {
        if call.method != Method::POST || !self.is_messages(call.path) {
            let message = format!("Unsupported {} request to {}", call.method, call.path);
            return graph_error(400, 100, &message);
        }
        if !self.authorized(call) {
            let message = "Invalid OAuth access token - Cannot parse access token";
            return graph_error(401, 190, message);
        }
        let body = call.body;
        if body.is_null() {
            return invalid("the body is not JSON");
        }
        if body["messaging_product"] != "whatsapp" {
            return invalid("The parameter messaging_product is required.");
        }
        if let Some(answer) = scripted {
            return answer;
        }
        if body["status"] == "read" {
            return read_receipt(body);
        }
        if !self.is_send(call) {
            return invalid("Param type must be one of {TEXT, INTERACTIVE, IMAGE, ...}");
        }
        let Some(to) = body["to"].as_str().filter(|to| !to.is_empty()) else {
            return invalid("The parameter to is required.");
        };
        if body["type"] == "text" && body["text"]["body"].as_str().is_none_or(str::is_empty) {
            return invalid("The parameters to and text.body are required.");
        }
        if let Some(field) = invalid_content(body) {
            let message = format!("(#131009) Parameter value is not valid: {field}");
            return graph_error(400, 131009, &message);
        }
        let sent = json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to}],
            "messages": [{"id": format!("wamid.fake{n}")}],
        });
        Answer::json(200, &sent)
    }
}

/// The message types lull sends.
const SENDS: [&str; 6] = ["text", "interactive", "image", "document", "audio", "video"];

/// Why the Cloud API would refuse a reply's content, checked as Meta documents the
/// message objects (a text's body is checked before): interactive `button` (1-3 reply buttons,
/// titles up to 20 characters) and `list` (a button title up to 20 characters, up
/// to 10 rows); media by `link`.
fn invalid_content(body: &Value) -> Option<&'static str> {
    let kind = body["type"].as_str()?;
    let content = &body[kind];
    match kind {
        "text" => None,
        "interactive" => {
            if content["body"]["text"].as_str().is_none_or(str::is_empty) {
                return Some("interactive.body.text");
            }
            let title_fits = |t: &Value| {
                t.as_str()
                    .is_some_and(|t| (1..=20).contains(&t.chars().count()))
            };
            match content["type"].as_str() {
                Some("button") => {
                    let buttons = content["action"]["buttons"].as_array()?;
                    let fine = (1..=3).contains(&buttons.len())
                        && buttons.iter().all(|b| {
                            b["type"] == "reply"
                                && b["reply"]["id"].as_str().is_some_and(|i| !i.is_empty())
                                && title_fits(&b["reply"]["title"])
                        });
                    (!fine).then_some("action.buttons")
                }
                Some("list") => {
                    let action = &content["action"];
                    let rows: Vec<&Value> = action["sections"]
                        .as_array()?
                        .iter()
                        .flat_map(|s| s["rows"].as_array().into_iter().flatten())
                        .collect();
                    let fine = title_fits(&action["button"])
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

/// `{"status":"read","message_id":...}`, optionally with `typing_indicator: {type: text}`.
fn read_receipt(body: &Value) -> Answer {
    if body["message_id"].as_str().is_none_or(str::is_empty) {
        return invalid("The parameter message_id is required.");
    }
    if let Some(typing) = body.get("typing_indicator")
        && typing["type"] != "text"
    {
        return invalid("typing_indicator.type must be text");
    }
    Answer::json(200, &json!({"success": true}))
}

fn invalid(message: &str) -> Answer {
    graph_error(400, 100, &format!("(#100) Invalid parameter: {message}"))
}

/// The Graph API's error envelope.
fn graph_error(status: u16, code: i64, message: &str) -> Answer {
    let error = json!({"error": {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "fake",
    }});
    Answer::json(status, &error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn graph(token: Option<&str>) -> Graph {
        Graph::new("123", token.map(Secret::new))
    }

    /// The answer to a POST of `body` to `path`, with `auth` as its `Authorization`.
    fn post_to(graph: &Graph, path: &str, auth: Option<&str>, body: Value) -> Answer {
        let mut headers = HeaderMap::new();
        if let Some(auth) = auth {
            headers.insert("authorization", auth.parse().unwrap());
        }
        let call = Call {
            method: &Method::POST,
            path,
            headers: &headers,
            body: &body,
        };
        graph.answer(&call, None, 7)
    }

    fn post(graph: &Graph, auth: Option<&str>, body: Value) -> Answer {
        post_to(graph, "/v23.0/123/messages", auth, body)
    }

    fn json_of(answer: &Answer) -> Value {
        serde_json::from_slice(&answer.body).unwrap()
    }

    fn text_send() -> Value {
        json!({"messaging_product": "whatsapp", "to": "555", "type": "text",
               "text": {"body": "hi"}})
    }

    #[test]
    fn a_text_send_is_answered_with_a_wamid_numbered_by_request() {
        let answer = post(&graph(None), Some("Bearer x"), text_send());
        assert_eq!(answer.status, 200);
        let body = json_of(&answer);
        assert_eq!(body["contacts"][0]["wa_id"], "555");
        assert_eq!(body["messages"][0]["id"], "wamid.fake7");
    }

    #[test]
    fn a_read_receipt_with_typing_succeeds() {
        let read = json!({"messaging_product": "whatsapp", "status": "read",
                          "message_id": "wamid.1", "typing_indicator": {"type": "text"}});
        let answer = post(&graph(None), Some("Bearer x"), read);
        assert_eq!(json_of(&answer), json!({"success": true}));
    }

    #[test]
    fn malformed_or_unauthorized_requests_get_graph_errors() {
        let g = graph(Some("right"));
        let code = |answer: &Answer| (answer.status, json_of(answer)["error"]["code"].clone());
        assert_eq!(
            code(&post(&g, Some("Bearer wrong"), text_send())),
            (401, json!(190))
        );
        assert_eq!(post(&g, None, text_send()).status, 401);
        let no_text = json!({"messaging_product": "whatsapp", "to": "555", "type": "text"});
        assert_eq!(
            code(&post(&g, Some("Bearer right"), no_text)),
            (400, json!(100))
        );
        let wrong_account = post_to(&g, "/v23.0/999/messages", Some("Bearer right"), json!({}));
        assert_eq!(wrong_account.status, 400);
        assert_eq!(post(&g, Some("Bearer right"), text_send()).status, 200);
    }
}
