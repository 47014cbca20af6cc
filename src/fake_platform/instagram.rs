//! Instagram's Send API as the Instagram channel calls it: `POST
//! /v23.0/{account}/messages` with `Authorization: Bearer <token>`: a text message
//! (with optional quick replies), an attachment by URL, or a sender action (mark
//! seen, typing).

use super::{Answer, Api, Call};
use crate::config::Secret;
use serde_json::json;
use std::borrow::Cow;

/// The longest text a message takes, in bytes.
const MAX_TEXT: usize = 1000;

/// The Send API of one professional account's token.
pub struct Instagram {
    token: Secret,
}

impl Instagram {
    /// Accepts this bearer token only.
    pub fn new(token: Secret) -> Self {
        Self { token }
    }
}

impl Api for Instagram {
    fn base_path(&self) -> &str {
        "/v23.0"
    }

    /// Numbered like [`super::Telegram`]'s, far from the tests' inbound ids.
    fn numbers_after(&self) -> u64 {
        1_000_000
    }

    /// A message, not a sender action.
    fn is_send(&self, call: &Call) -> bool {
        call.body.get("message").is_some()
    }

    fn recipient<'a>(&self, call: &Call<'a>) -> Option<Cow<'a, str>> {
        call.body["recipient"]["id"].as_str().map(Cow::Borrowed)
    }

    fn answer(&self, call: &Call, scripted: Option<Answer>, n: u64) -> Answer {
        let error = |status: u16, code: u16, message: &str| {
            let body =
                json!({"error": {"message": message, "type": "IGApiException", "code": code}});
            Answer::json(status, &body)
        };
        if call.bearer() != Some(self.token.expose()) {
            let message = "Invalid OAuth access token - Cannot parse access token";
            return error(401, 190, message);
        }
        let Some(recipient) = call.body["recipient"]["id"].as_str() else {
            return error(400, 100, "(#100) The parameter recipient is required");
        };
        if !call.path.starts_with("/v23.0/") || !call.path.ends_with("/messages") {
            return error(400, 100, "Unsupported post request");
        }
        if call.body.get("sender_action").is_some() {
            return Answer::json(200, &json!({"recipient_id": recipient}));
        }
        if let Some(answer) = scripted {
            return answer;
        }
        let sent = || {
            Answer::json(
                200,
                &json!({"recipient_id": recipient, "message_id": format!("mid.fake{n}")}),
            )
        };
        let message = &call.body["message"];
        if let Some(attachment) = message.get("attachment") {
            let kinds = ["image", "audio", "video", "file"];
            let fine = attachment["type"]
                .as_str()
                .is_some_and(|t| kinds.contains(&t))
                && attachment["payload"]["url"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("http"));
            return if fine {
                sent()
            } else {
                error(400, 100, "(#100) Invalid attachment")
            };
        }
        if let Some(replies) = message.get("quick_replies") {
            let fine = replies.as_array().is_some_and(|r| {
                (1..=13).contains(&r.len())
                    && r.iter().all(|q| {
                        q["content_type"] == "text"
                            && q["title"]
                                .as_str()
                                .is_some_and(|t| (1..=20).contains(&t.chars().count()))
                            && q["payload"].as_str().is_some_and(|p| !p.is_empty())
                    })
            });
            if !fine {
                return error(400, 100, "(#100) Invalid quick_replies");
            }
        }
        match message["text"].as_str() {
            Some(text) if text.len() > MAX_TEXT => error(
                400,
                100,
                "(#100) Length of param message[text] must be less than or equal to 1000",
            ),
            Some(text) if !text.is_empty() => sent(),
            _ => error(400, 100, "(#100) Invalid parameter"),
        }
    }
}
