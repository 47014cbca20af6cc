//! A responder for Anthropic's Messages API.
//!
//! `POST {base}/v1/messages` with `x-api-key` and `anthropic-version: 2023-06-01`,
//! `{"model", "system", "max_tokens", "messages"}`. The API requires roles that
//! alternate and start with the user: [`prompt::turns`] merges, and
//! [`prompt::starting_with_user`] drops leading assistant turns. The reply is the
//! text of the `content[]` blocks of type `text`, joined and trimmed.

use super::api::post_json;
use super::prompt::{self, Turn};
use super::{Reply, ReplyContext, Responder, ResponderError, Usage};
use crate::config::AnthropicSettings;
use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

/// The API version lull speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Asks the Messages API for the reply.
#[derive(Debug, Clone)]
pub struct AnthropicResponder {
    settings: AnthropicSettings,
    url: String,
    http: reqwest::Client,
}

impl AnthropicResponder {
    /// `http` carries the LLM timeout.
    pub fn new(settings: AnthropicSettings, http: reqwest::Client) -> Self {
        // The base is the host (`https://api.anthropic.com`); one given with the
        // `/v1` that OpenAI-compatible bases carry would 404 on every batch.
        let base = settings.base_url.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        let url = format!("{base}/v1/messages");
        Self {
            settings,
            url,
            http,
        }
    }
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    system: &'a str,
    max_tokens: u32,
    messages: &'a [Turn],
}

fn request<'a>(settings: &'a AnthropicSettings, turns: &'a [Turn]) -> Request<'a> {
    Request {
        model: &settings.model,
        system: &settings.system_prompt,
        max_tokens: settings.max_tokens,
        messages: turns,
    }
}

/// The `text` blocks of `content[]`, joined and trimmed (tool use and thinking
/// blocks are not the reply).
fn reply_text(body: &Value) -> Result<String, ResponderError> {
    let text: String = body["content"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|block| block["type"] == "text")
        .filter_map(|block| block["text"].as_str())
        .collect();
    let text = text.trim();
    if text.is_empty() {
        let reason = body["stop_reason"].as_str().unwrap_or("none");
        return Err(ResponderError::failed(format!(
            "the model returned no text (stop_reason {reason})"
        )));
    }
    if body["stop_reason"] == "max_tokens" {
        tracing::warn!("the reply was cut at LLM_MAX_TOKENS");
    }
    Ok(text.to_owned())
}

#[async_trait]
impl Responder for AnthropicResponder {
    async fn reply(&self, context: &ReplyContext) -> Result<Reply, ResponderError> {
        let turns = prompt::turns(context)
            .map(prompt::starting_with_user)
            .ok_or_else(|| ResponderError::failed("the batch holds no text to answer"))?;
        let key = &self.settings.api_key;
        let http = self
            .http
            .post(&self.url)
            .header("x-api-key", key.expose())
            .header("anthropic-version", ANTHROPIC_VERSION)
            .json(&request(&self.settings, &turns));
        let body = post_json(http, &[key]).await?;
        let usage = Usage {
            model: body["model"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| Some(self.settings.model.clone())),
            prompt_tokens: body["usage"]["input_tokens"].as_u64(),
            completion_tokens: body["usage"]["output_tokens"].as_u64(),
        };
        Ok(Reply {
            usage: Some(usage),
            ..Reply::text(reply_text(&body)?)
        })
    }

    fn name(&self) -> &'static str {
        "anthropic"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::test_server::client;
    use crate::config::Secret;
    use prompt::Role;
    use serde_json::json;

    #[test]
    fn the_request_has_a_top_level_system_and_the_turns() {
        let settings = AnthropicSettings {
            base_url: "https://api.anthropic.com/".into(),
            api_key: Secret::new("sk-ant-test"),
            model: "claude-haiku-4-5".into(),
            system_prompt: "Be brief.".into(),
            max_tokens: 512,
            timeout: std::time::Duration::from_secs(60),
        };
        let turns = [Turn {
            role: Role::User,
            content: "hi\nquick question".into(),
        }];
        let body = serde_json::to_value(request(&settings, &turns)).unwrap();
        assert_eq!(
            body,
            json!({
                "model": "claude-haiku-4-5",
                "system": "Be brief.",
                "max_tokens": 512,
                "messages": [{"role": "user", "content": "hi\nquick question"}],
            })
        );
        let responder = AnthropicResponder::new(settings.clone(), client());
        assert_eq!(responder.url, "https://api.anthropic.com/v1/messages");
        assert!(!format!("{responder:?}").contains("sk-ant-test"));
        for base in [
            "https://api.anthropic.com/v1",
            "https://api.anthropic.com/v1/",
        ] {
            let given = AnthropicSettings {
                base_url: base.into(),
                ..settings.clone()
            };
            let responder = AnthropicResponder::new(given, client());
            assert_eq!(
                responder.url, "https://api.anthropic.com/v1/messages",
                "{base}"
            );
        }
    }

    #[test]
    fn the_reply_joins_the_text_blocks() {
        let body = json!({
            "type": "message", "role": "assistant", "stop_reason": "end_turn",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "x"},
                {"type": "text", "text": "Hello! "},
                {"type": "text", "text": "Your order ships today.\n"},
            ]
        });
        assert_eq!(reply_text(&body).unwrap(), "Hello! Your order ships today.");
    }

    #[test]
    fn no_text_block_fails() {
        for body in [
            json!({"content": [], "stop_reason": "end_turn"}),
            json!({"content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}),
            json!({"content": [{"type": "text", "text": " "}]}),
            json!({}),
        ] {
            let error = reply_text(&body).unwrap_err();
            assert!(
                matches!(error, ResponderError::Failed { .. }),
                "{body}: {error}"
            );
        }
    }
}
