//! Replies and sender actions through `POST {api_base}/{ig_account_id}/messages`.

use super::Instagram;
use crate::channel::{SendError, meta, transport};
use crate::config::Secret;
use crate::message::Conversation;
use serde_json::{Value, json};

/// Codes the Instagram Send API uses for its own rate limits, on top of
/// [`meta::RETRYABLE_CODES`]: 613, "calls to this API have exceeded the rate limit".
const RETRYABLE_CODES: &[i64] = &[613];

impl Instagram {
    /// Sends one text part; returns the `message_id` Instagram gave it.
    pub(super) async fn send_text(
        &self,
        to: &Conversation,
        text: &str,
    ) -> Result<String, SendError> {
        let Some(token) = &self.settings.token else {
            tracing::info!(conversation = %to, bytes = text.len(), reply = text, "dry run: reply not sent");
            return Ok(format!("dry-run:{:016x}", rand::random::<u64>()));
        };
        let body = json!({
            "recipient": { "id": to.contact },
            "message": { "text": text },
        });
        let response = self.post(token, &to.account, &body).await?;
        let id = serde_json::from_slice::<Value>(&response)
            .ok()
            .and_then(|v| {
                v.get("message_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .filter(|id| !id.is_empty());
        // Instagram accepted the request, so the reply probably went out: retrying
        // could send it twice, hence permanent.
        id.ok_or_else(|| SendError::Permanent {
            status: None,
            code: None,
            message: "send response holds no message_id".into(),
        })
    }

    /// Marks the conversation seen, then shows "typing…" when enabled. Dry run: nothing.
    pub(super) async fn mark_seen_typing(&self, to: &Conversation) -> Result<(), SendError> {
        let Some(token) = &self.settings.token else {
            return Ok(());
        };
        let mut actions = vec!["mark_seen"];
        if self.settings.typing_indicator {
            actions.push("typing_on");
        }
        for action in actions {
            let body = json!({ "recipient": { "id": to.contact }, "sender_action": action });
            self.post(token, &to.account, &body).await?;
        }
        Ok(())
    }

    /// POSTs `body` to the account's messages endpoint; the 2xx body, or a classified
    /// error.
    async fn post(
        &self,
        token: &Secret,
        account: &str,
        body: &Value,
    ) -> Result<bytes::Bytes, SendError> {
        let url = self.messages_url(account)?;
        let response = self
            .http
            .post(url)
            .bearer_auth(token.expose())
            .json(body)
            .send()
            .await
            .map_err(|e| transport::transport_error(e, &[token]))?;
        let status = response.status();
        let retry_after = meta::retry_after(response.headers());
        let bytes = response.bytes().await;
        if status.is_success() {
            return bytes.map_err(|e| SendError::Permanent {
                // As for a missing id: the request was accepted, do not send it twice.
                status: Some(status.as_u16()),
                code: None,
                message: format!(
                    "response body unreadable after success: {}",
                    transport::chain(&e.without_url())
                ),
            });
        }
        // An unreadable error body still has a status worth classifying.
        let bytes = bytes.unwrap_or_default();
        Err(classify(
            meta::graph_error(status.as_u16(), &bytes, retry_after),
            retry_after,
        ))
    }

    /// `{api_base}/{account}/messages`, the account percent-encoded as one segment.
    fn messages_url(&self, account: &str) -> Result<url::Url, SendError> {
        let invalid = |reason: &str| SendError::Permanent {
            status: None,
            code: None,
            message: format!("cannot build the Instagram API URL: {reason}"),
        };
        if account.is_empty() {
            return Err(invalid("empty account"));
        }
        let mut url =
            url::Url::parse(&self.settings.api_base).map_err(|e| invalid(&e.to_string()))?;
        url.path_segments_mut()
            .map_err(|()| invalid("api_base cannot have a path"))?
            .pop_if_empty()
            .extend([account, "messages"]);
        Ok(url)
    }
}

/// [`meta::graph_error`], plus Instagram's own rate-limit codes as retryable.
fn classify(error: SendError, retry_after: Option<std::time::Duration>) -> SendError {
    match error {
        SendError::Permanent {
            status,
            code: Some(code),
            message,
        } if RETRYABLE_CODES.contains(&code) => SendError::Retryable {
            status,
            code: Some(code),
            message,
            retry_after,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Channel;
    use crate::channel::instagram::InstagramSettings;
    use crate::channel::test_server::{Received, Reply, client, fixture, json_fixture, serve};
    use crate::message::ChannelKind;
    use std::time::Duration;
    use tokio::net::TcpListener;

    const TOKEN: &str = "test-instagram-token";
    const ACCOUNT: &str = "17841400000000001";
    const CUSTOMER: &str = "5512340000000001";

    fn instagram(base: &str, token: Option<&str>, typing_indicator: bool) -> Instagram {
        Instagram::new(
            InstagramSettings {
                app_secret: None,
                verify_token: None,
                token: token.map(Secret::new),
                api_base: format!("{base}/v23.0"),
                typing_indicator,
            },
            client(),
        )
    }

    fn customer() -> Conversation {
        Conversation::new(ChannelKind::Instagram, ACCOUNT, CUSTOMER)
    }

    fn assert_post_to_messages(received: &Received) {
        assert_eq!(
            received.request_line,
            format!("POST /v23.0/{ACCOUNT}/messages HTTP/1.1")
        );
        assert_eq!(
            received.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }

    async fn send_with(reply: Reply) -> Result<String, SendError> {
        let (base, server) = serve(vec![reply]).await;
        let result = instagram(&base, Some(TOKEN), true)
            .send_part(&customer(), "hello")
            .await;
        server.await.expect("server");
        result
    }

    #[tokio::test]
    async fn send_part_posts_the_fixture_body_and_returns_the_message_id() {
        let (base, server) = serve(vec![Reply::new(
            "200 OK",
            fixture("instagram/send_response.json"),
        )])
        .await;
        let expected = json_fixture("instagram/send_request_text.json");
        let text = expected["message"]["text"].as_str().expect("text");
        let id = instagram(&base, Some(TOKEN), true)
            .send_part(&customer(), text)
            .await
            .expect("sent");
        assert_eq!(
            id,
            json_fixture("instagram/send_response.json")["message_id"]
                .as_str()
                .expect("id")
        );
        let received = server.await.expect("server").remove(0);
        assert_post_to_messages(&received);
        assert_eq!(received.body, expected);
    }

    #[tokio::test]
    async fn outside_the_messaging_window_is_permanent_with_its_code() {
        let error = send_with(Reply::new(
            "403 Forbidden",
            fixture("instagram/error_outside_window.json"),
        ))
        .await
        .expect_err("outside window");
        assert!(
            matches!(
                &error,
                SendError::Permanent { status: Some(403), code: Some(10), message }
                    if message == "This message is sent outside of allowed window."
            ),
            "{error:?}"
        );
        assert!(!format!("{error:?}").contains(TOKEN));
    }

    #[tokio::test]
    async fn a_429_is_retryable_after_retry_after() {
        let mut reply = Reply::new(
            "429 Too Many Requests",
            br#"{"error":{"message":"(#4) Application request limit reached","type":"IGApiException","code":4}}"#.to_vec(),
        );
        reply.headers = "retry-after: 3\r\n";
        let error = send_with(reply).await.expect_err("rate limited");
        assert!(
            matches!(
                error,
                SendError::Retryable { status: Some(429), code: Some(4), retry_after: Some(d), .. }
                    if d == Duration::from_secs(3)
            ),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn the_send_api_rate_limit_code_is_retryable_whatever_the_status() {
        let error = send_with(Reply::new(
            "400 Bad Request",
            br#"{"error":{"message":"Calls to this api have exceeded the rate limit.","code":613}}"#.to_vec(),
        ))
        .await
        .expect_err("rate limited");
        assert!(
            matches!(
                error,
                SendError::Retryable {
                    code: Some(613),
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn an_expired_token_is_permanent() {
        let error = send_with(Reply::new(
            "401 Unauthorized",
            br#"{"error":{"message":"Error validating access token","type":"OAuthException","code":190}}"#.to_vec(),
        ))
        .await
        .expect_err("bad token");
        assert!(
            matches!(
                error,
                SendError::Permanent {
                    code: Some(190),
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_success_without_a_message_id_is_permanent() {
        let error = send_with(Reply::new("200 OK", b"{}".to_vec()))
            .await
            .expect_err("no id");
        assert!(matches!(error, SendError::Permanent { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn an_unreachable_api_is_retryable_without_the_token() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        drop(listener);
        let error = instagram(&base, Some(TOKEN), true)
            .send_part(&customer(), "hello")
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
        assert!(!format!("{error:?}").contains(TOKEN));
    }

    #[tokio::test]
    async fn mark_read_typing_posts_mark_seen_then_typing_on() {
        let ok = || Reply::new("200 OK", format!(r#"{{"recipient_id":"{CUSTOMER}"}}"#));
        let (base, server) = serve(vec![ok(), ok()]).await;
        instagram(&base, Some(TOKEN), true)
            .mark_read_typing(&customer(), "mid.1")
            .await
            .expect("marked");
        let received = server.await.expect("server");
        assert_eq!(received.len(), 2);
        for r in &received {
            assert_post_to_messages(r);
        }
        assert_eq!(
            received[0].body,
            json_fixture("instagram/mark_seen_request.json")
        );
        assert_eq!(
            received[1].body,
            json_fixture("instagram/typing_on_request.json")
        );
    }

    #[tokio::test]
    async fn without_typing_only_mark_seen_is_posted() {
        let (base, server) = serve(vec![Reply::new("200 OK", b"{}".to_vec())]).await;
        instagram(&base, Some(TOKEN), false)
            .mark_read_typing(&customer(), "mid.1")
            .await
            .expect("marked");
        let received = server.await.expect("server");
        assert_eq!(received.len(), 1);
        assert_eq!(
            received[0].body,
            json_fixture("instagram/mark_seen_request.json")
        );
    }

    #[tokio::test]
    async fn a_dry_run_logs_instead_of_sending() {
        // Port 9 (discard) is never contacted: a request would fail the test.
        let channel = instagram("http://127.0.0.1:9", None, true);
        assert!(channel.dry_run());
        let id = channel
            .send_part(&customer(), "hello")
            .await
            .expect("dry run");
        assert!(
            id.starts_with("dry-run:") && id.len() > "dry-run:".len(),
            "{id}"
        );
        channel
            .mark_read_typing(&customer(), "mid.1")
            .await
            .expect("dry run");
    }

    #[test]
    fn the_messages_url_keeps_the_base_path_and_encodes_the_account() {
        let channel = instagram("https://graph.instagram.com", Some(TOKEN), true);
        assert_eq!(
            channel.messages_url(ACCOUNT).expect("url").as_str(),
            format!("https://graph.instagram.com/v23.0/{ACCOUNT}/messages")
        );
        assert_eq!(
            channel.messages_url("a/b").expect("url").as_str(),
            "https://graph.instagram.com/v23.0/a%2Fb/messages"
        );
        assert!(channel.messages_url("").is_err());
    }
}
