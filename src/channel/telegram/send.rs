//! Replies through `POST {api_base}/bot{token}/sendMessage`, "typing…" through
//! `sendChatAction`.
//!
//! The token is in the URL, so errors are built here from the status and Telegram's
//! `{"ok":false,"error_code","description","parameters"}` envelope, and transport
//! errors are rendered without their URL (and redacted, should the token appear
//! anywhere else).

use super::{Telegram, rich};
use crate::channel::json::json_i64;
use crate::channel::{SendError, meta, render, transport};
use crate::config::Secret;
use crate::message::Conversation;
use crate::responder::reply::ReplyMessage;
use serde_json::{Value, json};
use std::time::Duration;

impl Telegram {
    /// Sends one text part; returns `{bot}:{chat}:{message_id}`.
    pub(super) async fn send_text(
        &self,
        to: &Conversation,
        text: &str,
    ) -> Result<String, SendError> {
        self.send_reply(
            to,
            &ReplyMessage::Text {
                text: text.to_owned(),
            },
        )
        .await
    }

    /// Sends one rendered reply message (text, an inline keyboard, or media by
    /// URL); returns `{bot}:{chat}:{message_id}`.
    pub(super) async fn send_reply(
        &self,
        to: &Conversation,
        message: &ReplyMessage,
    ) -> Result<String, SendError> {
        let Some(token) = &self.settings.bot_token else {
            let reply = render::describe(message);
            tracing::info!(conversation = %to, chars = reply.chars().count(), reply, "dry run: reply not sent");
            return Ok(format!("dry-run:{:016x}", rand::random::<u64>()));
        };
        let (method, fields) = rich::request(message);
        let (chat, mut body) = addressed(&to.contact);
        if let (Some(body), Value::Object(fields)) = (body.as_object_mut(), fields) {
            body.extend(fields);
        }
        let result = self.call(token, method, &body).await?;
        // Telegram accepted the request, so the reply went out: retrying could send
        // it twice, hence permanent.
        let id = result
            .get("message_id")
            .and_then(json_i64)
            .ok_or_else(|| SendError::permanent(format!("{method} result holds no message_id")))?;
        // Message ids count per chat, as the inbound ids are written.
        Ok(format!("{}:{chat}:{id}", self.bot))
    }

    /// Answers a tap on an inline button (`answerCallbackQuery`), so that the
    /// button stops showing as pending. Dry run: nothing.
    pub(super) async fn answer_callback_query(&self, id: &str) -> Result<(), SendError> {
        let Some(token) = &self.settings.bot_token else {
            return Ok(());
        };
        let body = json!({ "callback_query_id": id });
        self.call(token, "answerCallbackQuery", &body)
            .await
            .map(drop)
    }

    /// Shows "typing…" (Telegram clears it after 5 s or at our message) when enabled.
    /// Dry run: nothing.
    pub(super) async fn typing(&self, to: &Conversation) -> Result<(), SendError> {
        let Some(token) = &self.settings.bot_token else {
            return Ok(());
        };
        if !self.settings.typing_indicator {
            return Ok(());
        }
        let (_, mut body) = addressed(&to.contact);
        body["action"] = json!("typing");
        self.call(token, "sendChatAction", &body).await.map(drop)
    }

    /// POSTs `body` to a Bot API method; the `result` of an `ok` answer, or a
    /// classified error.
    async fn call(&self, token: &Secret, method: &str, body: &Value) -> Result<Value, SendError> {
        let url = self.method_url(token, method)?;
        let response = self
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|e| transport::transport_error(e, &[token]))?;
        let status = response.status();
        let header_retry_after = meta::retry_after(response.headers());
        let bytes = response.bytes().await;
        if status.is_success() {
            // As for a missing id: the request was accepted, do not send it twice.
            let accepted = |message: String| SendError::Permanent {
                status: Some(status.as_u16()),
                code: None,
                message,
            };
            let bytes = bytes.map_err(|e| {
                accepted(format!(
                    "response body unreadable after success: {}",
                    transport::redact(transport::chain(&e.without_url()), &[token])
                ))
            })?;
            let answer: Value = serde_json::from_slice(&bytes)
                .map_err(|_| accepted(format!("{method} answered {status} without JSON")))?;
            if answer.get("ok") == Some(&Value::Bool(true)) {
                return Ok(answer.get("result").cloned().unwrap_or(Value::Null));
            }
            return Err(api_error(status.as_u16(), &bytes, header_retry_after));
        }
        // An unreadable error body still has a status worth classifying.
        let bytes = bytes.unwrap_or_default();
        Err(api_error(status.as_u16(), &bytes, header_retry_after))
    }

    /// `{api_base}/bot{token}/{method}`. Errors never carry the URL.
    fn method_url(&self, token: &Secret, method: &str) -> Result<url::Url, SendError> {
        let invalid =
            |reason: &str| SendError::permanent(format!("cannot build the Bot API URL: {reason}"));
        let bot = format!("bot{}", token.expose());
        self.base
            .join(&[bot.as_str(), method])
            .map_err(|reason| invalid(&reason))
    }
}

/// The chat id as Telegram's JSON number; a contact that is not an integer (it always
/// is: we wrote it from `chat.id`) goes as a string, which the API also accepts.
fn chat_id(chat: &str) -> Value {
    chat.parse::<i64>()
        .map_or_else(|_| json!(chat), |id| json!(id))
}

/// A contact is a chat, or `{chat}/{topic}` for a topic of a forum supergroup
/// (see `parse.rs`): the chat, and a request body addressed to it (`chat_id`, and
/// the topic's `message_thread_id` if any).
fn addressed(contact: &str) -> (&str, Value) {
    match contact.split_once('/') {
        Some((chat, topic)) => (
            chat,
            json!({ "chat_id": chat_id(chat), "message_thread_id": chat_id(topic) }),
        ),
        None => (contact, json!({ "chat_id": chat_id(contact) })),
    }
}

/// Classifies a failed Bot API call from its status and
/// `{"ok":false,"error_code","description","parameters":{"retry_after","migrate_to_chat_id"}}`.
///
/// 429 (flood control) and 5xx are retryable, after `parameters.retry_after` seconds
/// when given (else the `Retry-After` header); everything else (400 bad request, 401
/// bad token, 403 blocked by the user, 404) will fail again. The message is Telegram's
/// description, which never holds the token.
pub(super) fn api_error(
    status: u16,
    body: &[u8],
    header_retry_after: Option<Duration>,
) -> SendError {
    let envelope = serde_json::from_slice::<Value>(body)
        .ok()
        .filter(|v| v.get("ok") == Some(&Value::Bool(false)));
    let field = |pointer: &str| envelope.as_ref().and_then(|v| v.pointer(pointer));
    let code = field("/error_code").and_then(json_i64);
    let retry_after = field("/parameters/retry_after")
        .and_then(json_i64)
        .filter(|s| *s >= 0)
        .map(|s| Duration::from_secs(s.min(86_400) as u64))
        .or(header_retry_after);
    let mut message = match field("/description").and_then(Value::as_str) {
        Some(description) if !description.is_empty() => description.to_owned(),
        // Not the Bot API envelope (a proxy's page): its content is not echoed.
        _ => format!("HTTP {status} without a Bot API error body"),
    };
    if let Some(chat) = field("/parameters/migrate_to_chat_id").and_then(json_i64) {
        message.push_str(&format!(" (the group is now chat {chat})"));
    }
    let effective = code.and_then(|c| u16::try_from(c).ok()).unwrap_or(status);
    let retryable = [status, effective]
        .iter()
        .any(|s| *s == 429 || (500..600).contains(s));
    SendError::classified(retryable, Some(status), code, message, retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Channel;
    use crate::channel::telegram::TelegramSettings;
    use crate::channel::test_server::{
        assert_dry_run, client, closed_port, fixture, json_fixture, one_request, send_hello, serve,
        unreachable_error,
    };
    use crate::fake_platform::{Answer, Received};
    use crate::message::ChannelKind;

    const TOKEN: &str = "7000000001:AAFakeTokenForUnitTests_abc-XYZ";
    /// The part after the colon: the actual secret.
    const TOKEN_SECRET: &str = "AAFakeTokenForUnitTests_abc-XYZ";

    fn telegram(base: &str, token: Option<&str>, typing_indicator: bool) -> Telegram {
        Telegram::new(
            TelegramSettings {
                bot_token: token.map(Secret::new),
                secret_token: None,
                api_base: base.to_owned(),
                typing_indicator,
            },
            client(),
        )
    }

    fn maria() -> Conversation {
        Conversation::new(ChannelKind::Telegram, "7000000001", "123456789")
    }

    fn assert_post(received: &Received, method: &str) {
        assert_eq!(
            received.request_line,
            format!("POST /bot{TOKEN}/{method} HTTP/1.1")
        );
        assert!(
            received
                .header("content-type")
                .is_some_and(|v| v.starts_with("application/json"))
        );
        assert_eq!(received.header("authorization"), None);
    }

    /// Asserts no part of the token is in the error, however it is printed.
    fn assert_no_token(error: &SendError) {
        for text in [
            error.to_string(),
            format!("{error:?}"),
            error.message().to_owned(),
        ] {
            assert!(!text.contains(TOKEN_SECRET), "token leaked: {text}");
        }
    }

    async fn send_with(reply: Answer) -> (Result<String, SendError>, Received) {
        let bot_api = |base: &str| telegram(base, Some(TOKEN), true);
        send_hello(reply, bot_api, &maria()).await
    }

    #[tokio::test]
    async fn send_part_posts_the_fixture_body_and_returns_bot_chat_message_id() {
        let (base, server) = serve(vec![Answer::new(
            200,
            fixture("telegram/send_response.json"),
        )])
        .await;
        let expected = json_fixture("telegram/send_message_request.json");
        let text = expected["text"].as_str().expect("text");
        let id = telegram(&base, Some(TOKEN), true)
            .send_part(&maria(), text)
            .await
            .expect("sent");
        assert_eq!(id, "7000000001:123456789:55");
        let received = one_request(&server);
        assert_post(&received, "sendMessage");
        assert_eq!(received.body, expected);
    }

    #[tokio::test]
    async fn a_group_chat_id_is_sent_as_a_negative_number() {
        let (base, server) = serve(vec![Answer::new(
            200,
            fixture("telegram/send_response.json"),
        )])
        .await;
        let group = Conversation::new(ChannelKind::Telegram, "7000000001", "-1001234567890");
        let id = telegram(&base, Some(TOKEN), true)
            .send_part(&group, "hi all")
            .await
            .expect("sent");
        assert_eq!(id, "7000000001:-1001234567890:55");
        let received = one_request(&server);
        assert_eq!(received.body["chat_id"], json!(-1001234567890i64));
    }

    #[tokio::test]
    async fn a_reply_in_a_forum_topic_goes_to_that_topic() {
        let (base, server) = serve(vec![
            Answer::new(200, br#"{"ok":true,"result":true}"#.to_vec()),
            Answer::new(200, fixture("telegram/send_response.json")),
        ])
        .await;
        let topic = Conversation::new(ChannelKind::Telegram, "7000000001", "-1001234567890/7");
        let bot = telegram(&base, Some(TOKEN), true);
        bot.typing(&topic).await.expect("typing shown");
        let id = bot.send_part(&topic, "in the topic").await.expect("sent");
        assert_eq!(id, "7000000001:-1001234567890:55");
        let received = server.seen();
        for request in &received {
            assert_eq!(request.body["chat_id"], json!(-1001234567890i64));
            assert_eq!(request.body["message_thread_id"], json!(7));
        }
        assert_eq!(received.len(), 2);
    }

    #[tokio::test]
    async fn flood_control_is_retryable_after_the_asked_seconds() {
        let (result, received) =
            send_with(Answer::new(429, fixture("telegram/error_429.json"))).await;
        let error = result.expect_err("rate limited");
        match &error {
            SendError::Retryable {
                status,
                code,
                retry_after,
                message,
            } => {
                assert_eq!(*status, Some(429));
                assert_eq!(*code, Some(429));
                assert_eq!(*retry_after, Some(Duration::from_secs(7)));
                assert_eq!(message, "Too Many Requests: retry after 7");
            }
            other => panic!("expected retryable, got {other:?}"),
        }
        assert_no_token(&error);
        assert_post(&received, "sendMessage");
    }

    #[tokio::test]
    async fn a_blocked_bot_is_permanent_with_code_and_description() {
        let (result, _) =
            send_with(Answer::new(403, fixture("telegram/error_403_blocked.json"))).await;
        let error = result.expect_err("blocked");
        assert!(
            matches!(
                &error,
                SendError::Permanent { status: Some(403), code: Some(403), message }
                    if message == "Forbidden: bot was blocked by the user"
            ),
            "{error:?}"
        );
        assert_no_token(&error);
    }

    #[tokio::test]
    async fn a_bad_request_is_permanent_with_code_and_description() {
        let (result, _) = send_with(Answer::new(
            400,
            fixture("telegram/error_400_too_long.json"),
        ))
        .await;
        let error = result.expect_err("too long");
        assert!(
            matches!(
                &error,
                SendError::Permanent { status: Some(400), code: Some(400), message }
                    if message == "Bad Request: message is too long"
            ),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_server_error_page_is_retryable_and_not_echoed() {
        let (result, _) = send_with(Answer::new(
            502,
            format!("<html>bad gateway for /bot{TOKEN}/sendMessage</html>"),
        ))
        .await;
        let error = result.expect_err("bad gateway");
        assert!(
            matches!(
                &error,
                SendError::Retryable {
                    status: Some(502),
                    code: None,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(error.message(), "HTTP 502 without a Bot API error body");
        assert_no_token(&error);
    }

    #[tokio::test]
    async fn a_migrated_group_names_the_new_chat() {
        let body = br#"{"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded to a supergroup chat","parameters":{"migrate_to_chat_id":-1009876543210}}"#;
        let (result, _) = send_with(Answer::new(400, body.to_vec())).await;
        let error = result.expect_err("migrated");
        assert!(matches!(error, SendError::Permanent { .. }));
        assert!(
            error
                .message()
                .ends_with("(the group is now chat -1009876543210)")
        );
    }

    #[tokio::test]
    async fn a_success_without_a_message_id_is_permanent() {
        let (result, _) = send_with(Answer::new(
            200,
            fixture("telegram/send_chat_action_response.json"),
        ))
        .await;
        assert!(
            matches!(result, Err(SendError::Permanent { .. })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_api_is_retryable_and_never_names_the_token() {
        let base = closed_port().await;
        let error = unreachable_error(&telegram(&base, Some(TOKEN), true), &maria()).await;
        assert_no_token(&error);
        assert!(!error.message().contains("sendMessage"), "{error:?}");
    }

    #[tokio::test]
    async fn a_connection_dropped_mid_request_never_names_the_token() {
        let (result, _) = send_with(Answer::hang_up()).await;
        let error = result.expect_err("hung up");
        assert!(
            matches!(error, SendError::Retryable { status: None, .. }),
            "{error:?}"
        );
        assert_no_token(&error);
    }

    #[tokio::test]
    async fn the_reqwest_error_itself_would_have_leaked_the_token() {
        // Why the care above: reqwest prints the URL, and with it the token.
        let url = format!("{}/bot{TOKEN}/sendMessage", closed_port().await);
        let error = client().post(&url).send().await.expect_err("refused");
        assert!(error.to_string().contains(TOKEN_SECRET), "{error}");
        let safe = transport::transport_error(error, &[&Secret::new(TOKEN)]);
        assert!(matches!(safe, SendError::Retryable { .. }), "{safe:?}");
        assert_no_token(&safe);
    }

    #[tokio::test]
    async fn typing_posts_the_chat_action_fixture_body() {
        let (base, server) = serve(vec![Answer::new(
            200,
            fixture("telegram/send_chat_action_response.json"),
        )])
        .await;
        telegram(&base, Some(TOKEN), true)
            .mark_read_typing(&maria(), "7000000001:123456789:51")
            .await
            .expect("typing");
        let received = one_request(&server);
        assert_post(&received, "sendChatAction");
        assert_eq!(
            received.body,
            json_fixture("telegram/send_chat_action_request.json")
        );
    }

    #[tokio::test]
    async fn without_typing_or_in_a_dry_run_nothing_is_sent() {
        // Port 9 (discard) is never contacted: a request would fail the test.
        let base = "http://127.0.0.1:9";
        telegram(base, Some(TOKEN), false)
            .mark_read_typing(&maria(), "x")
            .await
            .expect("no typing");
        let dry = telegram(base, None, true);
        assert!(dry.dry_run());
        assert_dry_run(&dry, &maria(), "x").await;
    }

    #[test]
    fn the_method_url_keeps_the_base_path() {
        let channel = telegram("http://127.0.0.1:1/tg/", Some(TOKEN), true);
        let url = channel
            .method_url(&Secret::new(TOKEN), "sendMessage")
            .expect("url");
        assert_eq!(
            url.as_str(),
            format!("http://127.0.0.1:1/tg/bot{TOKEN}/sendMessage")
        );
        let bad = telegram("not a url", Some(TOKEN), true)
            .method_url(&Secret::new(TOKEN), "sendMessage")
            .expect_err("bad base");
        assert_no_token(&bad);
    }
}
