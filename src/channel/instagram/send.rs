//! Replies and sender actions through `POST {api_base}/{ig_account_id}/messages`.

use super::{Instagram, rich};
use crate::channel::{SendError, meta, render};
use crate::message::Conversation;
use crate::responder::reply::ReplyMessage;
use serde_json::json;

/// The Instagram Send API. On top of [`meta::RETRYABLE_CODES`] it retries its own rate
/// limit: 613, "calls to this API have exceeded the rate limit".
const SEND_API: meta::SendApi = meta::SendApi {
    name: "Instagram API",
    retryable_codes: &[613],
};

impl Instagram {
    /// Sends one text part; returns the `message_id` Instagram gave it.
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

    /// Sends one rendered reply message (text, quick replies or an attachment by
    /// URL); returns the `message_id` Instagram gave it.
    pub(super) async fn send_reply(
        &self,
        to: &Conversation,
        message: &ReplyMessage,
    ) -> Result<String, SendError> {
        let Some(token) = &self.settings.token else {
            let reply = render::describe(message);
            tracing::info!(conversation = %to, bytes = reply.len(), reply, "dry run: reply not sent");
            return Ok(format!("dry-run:{:016x}", rand::random::<u64>()));
        };
        let body = rich::body(&to.contact, message);
        let response = SEND_API
            .post(&self.http, &self.base, &to.account, token, &body)
            .await?;
        meta::sent_id(
            &response,
            "/message_id",
            "send response holds no message_id",
        )
    }

    /// Shows "typing…" again (Instagram clears it after about 20 s). Dry run or
    /// the indicator off: nothing.
    pub(super) async fn typing_on(&self, to: &Conversation) -> Result<(), SendError> {
        let Some(token) = &self.settings.token else {
            return Ok(());
        };
        if !self.settings.typing_indicator {
            return Ok(());
        }
        let body = json!({ "recipient": { "id": to.contact }, "sender_action": "typing_on" });
        SEND_API
            .post(&self.http, &self.base, &to.account, token, &body)
            .await
            .map(drop)
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
            SEND_API
                .post(&self.http, &self.base, &to.account, token, &body)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Channel;
    use crate::channel::instagram::InstagramSettings;
    use crate::channel::test_server::{
        assert_dry_run, client, closed_port, fixture, json_fixture, one_request, send_hello, serve,
        unreachable_error,
    };
    use crate::config::Secret;
    use crate::fake_platform::{Answer, Received};
    use crate::message::ChannelKind;
    use std::time::Duration;

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

    async fn send_with(reply: Answer) -> Result<String, SendError> {
        let api = |base: &str| instagram(base, Some(TOKEN), true);
        send_hello(reply, api, &customer()).await.0
    }

    #[tokio::test]
    async fn send_part_posts_the_fixture_body_and_returns_the_message_id() {
        let (base, server) = serve(vec![Answer::new(
            200,
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
        let received = one_request(&server);
        assert_post_to_messages(&received);
        assert_eq!(received.body, expected);
    }

    #[tokio::test]
    async fn outside_the_messaging_window_is_permanent_with_its_code() {
        let error = send_with(Answer::new(
            403,
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
        let mut reply = Answer::new(429,
            br#"{"error":{"message":"(#4) Application request limit reached","type":"IGApiException","code":4}}"#.to_vec(),
        );
        reply.retry_after = Some(3);
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
        let error = send_with(Answer::new(400,
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
        let error = send_with(Answer::new(401,
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
        let error = send_with(Answer::new(200, b"{}".to_vec()))
            .await
            .expect_err("no id");
        assert!(matches!(error, SendError::Permanent { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn an_unreachable_api_is_retryable_without_the_token() {
        let base = closed_port().await;
        let error = unreachable_error(&instagram(&base, Some(TOKEN), true), &customer()).await;
        assert!(!format!("{error:?}").contains(TOKEN));
    }

    #[tokio::test]
    async fn mark_read_typing_posts_mark_seen_then_typing_on() {
        let ok = || Answer::new(200, format!(r#"{{"recipient_id":"{CUSTOMER}"}}"#));
        let (base, server) = serve(vec![ok(), ok()]).await;
        instagram(&base, Some(TOKEN), true)
            .mark_read_typing(&customer(), "mid.1")
            .await
            .expect("marked");
        let received = server.seen();
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
        let (base, server) = serve(vec![Answer::new(200, b"{}".to_vec())]).await;
        instagram(&base, Some(TOKEN), false)
            .mark_read_typing(&customer(), "mid.1")
            .await
            .expect("marked");
        let received = server.seen();
        assert_eq!(received.len(), 1);
        assert_eq!(
            received[0].body,
            json_fixture("instagram/mark_seen_request.json")
        );
    }

    #[tokio::test]
    async fn a_dry_run_logs_instead_of_sending() {
        let channel = instagram("http://127.0.0.1:9", None, true);
        assert!(channel.dry_run());
        assert_dry_run(&channel, &customer(), "mid.1").await;
    }

    #[test]
    fn the_messages_url_keeps_the_base_path_and_encodes_the_account() {
        let channel = instagram("https://graph.instagram.com", Some(TOKEN), true);
        let messages_url = |account: &str| SEND_API.messages_url(&channel.base, account);
        assert_eq!(
            messages_url(ACCOUNT).expect("url").as_str(),
            format!("https://graph.instagram.com/v23.0/{ACCOUNT}/messages")
        );
        assert_eq!(
            messages_url("a/b").expect("url").as_str(),
            "https://graph.instagram.com/v23.0/a%2Fb/messages"
        );
        assert!(messages_url("").is_err());
    }
}
