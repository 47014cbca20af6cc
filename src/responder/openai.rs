//! A responder for any OpenAI-compatible Chat Completions API: OpenAI itself, Azure
//! and other gateways, LiteLLM, vLLM, Ollama, llama.cpp's server.
//!
//! `POST {base}/chat/completions` with `Authorization: Bearer <key>` (no header
//! without a key, for local servers) and
//! `{"model", "messages": [system, ...turns], "max_tokens"}`; the reply is
//! `choices[0].message.content`, trimmed.

use super::api::post_json;
use super::prompt::{self, Turn};
use super::{Reply, ReplyContext, Responder, ResponderError, Usage};
use crate::config::{OpenAiSettings, Secret};
use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

/// Asks a Chat Completions API for the reply.
#[derive(Debug, Clone)]
pub struct OpenAiResponder {
    settings: OpenAiSettings,
    url: String,
    http: reqwest::Client,
}

impl OpenAiResponder {
    /// `http` carries the LLM timeout.
    pub fn new(settings: OpenAiSettings, http: reqwest::Client) -> Self {
        let url = format!(
            "{}/chat/completions",
            settings.base_url.trim_end_matches('/')
        );
        Self {
            settings,
            url,
            http,
        }
    }
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'a str,
    content: &'a str,
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    messages: Vec<Message<'a>>,
    max_tokens: u32,
}

fn request<'a>(settings: &'a OpenAiSettings, turns: &'a [Turn]) -> Request<'a> {
    let system = Message {
        role: "system",
        content: &settings.system_prompt,
    };
    let turns = turns.iter().map(|t| Message {
        role: match t.role {
            prompt::Role::User => "user",
            prompt::Role::Assistant => "assistant",
        },
        content: &t.content,
    });
    Request {
        model: &settings.model,
        messages: std::iter::once(system).chain(turns).collect(),
        max_tokens: settings.max_tokens,
    }
}

/// `choices[0].message.content`, trimmed: a string, or (some gateways) an array of
/// content parts whose text parts are joined.
fn reply_text(body: &Value) -> Result<String, ResponderError> {
    let choice = &body["choices"][0];
    let text = match &choice["message"]["content"] {
        Value::String(text) => text.trim().to_owned(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<String>()
            .trim()
            .to_owned(),
        _ => String::new(),
    };
    if text.is_empty() {
        let reason = choice["finish_reason"].as_str().unwrap_or("none");
        return Err(ResponderError::failed(format!(
            "the model returned no text (finish_reason {reason})"
        )));
    }
    if choice["finish_reason"] == "length" {
        tracing::warn!("the reply was cut at LLM_MAX_TOKENS");
    }
    Ok(text)
}

/// The answer's `model` and `usage` (`prompt_tokens`, `completion_tokens`).
fn usage(body: &Value) -> Usage {
    Usage {
        model: body["model"].as_str().map(str::to_owned),
        prompt_tokens: body["usage"]["prompt_tokens"].as_u64(),
        completion_tokens: body["usage"]["completion_tokens"].as_u64(),
    }
}

#[async_trait]
impl Responder for OpenAiResponder {
    async fn reply(&self, context: &ReplyContext) -> Result<Reply, ResponderError> {
        let turns = prompt::turns(context)
            .map(prompt::starting_with_user)
            .ok_or_else(|| ResponderError::failed("the batch holds no text to answer"))?;
        let mut http = self
            .http
            .post(&self.url)
            .json(&request(&self.settings, &turns));
        let secrets: Vec<&Secret> = self.settings.api_key.iter().collect();
        if let Some(key) = &self.settings.api_key {
            http = http.bearer_auth(key.expose());
        }
        let body = post_json(http, &secrets).await?;
        let mut usage = usage(&body);
        usage
            .model
            .get_or_insert_with(|| self.settings.model.clone());
        Ok(Reply {
            usage: Some(usage),
            ..Reply::text(reply_text(&body)?)
        })
    }

    fn name(&self) -> &'static str {
        "openai"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::test_server::client;
    use prompt::Role;
    use serde_json::json;

    fn settings() -> OpenAiSettings {
        OpenAiSettings {
            base_url: "http://localhost:11434/v1/".into(),
            api_key: None,
            model: "llama3.2".into(),
            system_prompt: "Be brief.".into(),
            max_tokens: 256,
            timeout: std::time::Duration::from_secs(60),
        }
    }

    #[test]
    fn the_request_is_the_system_prompt_then_the_turns() {
        let turns = [
            Turn {
                role: Role::User,
                content: "hello".into(),
            },
            Turn {
                role: Role::Assistant,
                content: "Hi!".into(),
            },
            Turn {
                role: Role::User,
                content: "a\nb".into(),
            },
        ];
        let settings = settings();
        let body = serde_json::to_value(request(&settings, &turns)).unwrap();
        assert_eq!(
            body,
            json!({
                "model": "llama3.2",
                "max_tokens": 256,
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "hello"},
                    {"role": "assistant", "content": "Hi!"},
                    {"role": "user", "content": "a\nb"},
                ]
            })
        );
        let responder = OpenAiResponder::new(settings, client());
        assert_eq!(responder.url, "http://localhost:11434/v1/chat/completions");
    }

    #[test]
    fn the_reply_is_the_first_choices_content_trimmed() {
        let body = json!({"choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "  Sure, here it is.\n"}}]});
        assert_eq!(reply_text(&body).unwrap(), "Sure, here it is.");
        let parts = json!({"choices": [{"message": {"content": [
            {"type": "text", "text": "One "}, {"type": "text", "text": "reply"}]}}]});
        assert_eq!(reply_text(&parts).unwrap(), "One reply");
    }

    #[test]
    fn usage_is_read_from_the_answer() {
        let body = json!({"model": "m-1", "usage": {"prompt_tokens": 10, "completion_tokens": 5}});
        assert_eq!(
            usage(&body),
            Usage {
                model: Some("m-1".into()),
                prompt_tokens: Some(10),
                completion_tokens: Some(5)
            }
        );
    }

    #[test]
    fn an_empty_or_missing_completion_fails() {
        for body in [
            json!({"choices": [{"message": {"content": "  "}, "finish_reason": "stop"}]}),
            json!({"choices": [{"message": {"content": null}, "finish_reason": "content_filter"}]}),
            json!({"choices": []}),
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
