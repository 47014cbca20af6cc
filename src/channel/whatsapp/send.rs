//! Replies and read receipts through `POST {graph_api_base}/{phone_number_id}/messages`.

use super::{WhatsApp, rich};
use crate::channel::{SendError, meta, render};
use crate::message::Conversation;
use crate::responder::reply::ReplyMessage;
use serde_json::json;

/// The Cloud API's Send API: Meta's Graph API.
const GRAPH_API: meta::SendApi = meta::SendApi {
    name: "Graph API",
    retryable_codes: &[],
};

impl WhatsApp {
    /// Sends one text part; returns the wamid Meta gave it.
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

    /// Sends one rendered reply message (text, interactive or media by link);
    /// returns the wamid Meta gave it.
    pub(super) async fn send_reply(
        &self,
        to: &Conversation,
        message: &ReplyMessage,
    ) -> Result<String, SendError> {
        let Some(token) = &self.settings.token else {
            let reply = render::describe(message);
            tracing::info!(conversation = %to, chars = reply.chars().count(), reply, "dry run: reply not sent");
            return Ok(format!("dry-run:{:016x}", rand::random::<u64>()));
        };
        let body = rich::body(&to.contact, message);
        let response = GRAPH_API
            .post(&self.http, &self.base, &to.account, token, &body)
            .await?;
        meta::sent_id(
            &response,
            "/messages/0/id",
            "send response holds no messages[0].id",
        )
    }

    /// Marks `message_id` read, with the typing indicator when enabled. Dry run: nothing.
    pub(super) async fn mark_read(
        &self,
        to: &Conversation,
        message_id: &str,
    ) -> Result<(), SendError> {
        let Some(token) = &self.settings.token else {
            return Ok(());
        };
        let mut body = json!({
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": message_id,
        });
        if self.settings.typing_indicator {
            body["typing_indicator"] = json!({ "type": "text" });
        }
        GRAPH_API
            .post(&self.http, &self.base, &to.account, token, &body)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Channel;
    use crate::channel::test_server::{
        assert_dry_run, client, closed_port, fixture, json_fixture, one_request, send_hello, serve,
        unreachable_error,
    };
    use crate::channel::whatsapp::WhatsAppSettings;
    use crate::config::Secret;
    use crate::fake_platform::{Answer, FakePlatform, Received};
    use crate::message::ChannelKind;
    use serde_json::Value;
    use std::time::Duration;

    const TOKEN: &str = "test-access-token";
    const WAMID: &str = "wamid.HBgLMTU1NTAwMDIyMjIVAgASGBQzRUIwQTFCMkMzRDRFNUY2MDAwNAA=";

    /// The test server as a Graph API base (`.../v23.0`), answering one request.
    async fn fake_graph(reply: Answer) -> (String, FakePlatform) {
        let (base, server) = serve(vec![reply]).await;
        (format!("{base}/v23.0"), server)
    }

    /// Sends `hello` to Maria through a fake Graph API answering `reply`.
    async fn send_with(reply: Answer) -> (Result<String, SendError>, Received) {
        let graph = |base: &str| channel(&format!("{base}/v23.0"), Some(TOKEN), true);
        send_hello(reply, graph, &maria()).await
    }

    fn settings(base: &str, token: Option<&str>, typing_indicator: bool) -> WhatsAppSettings {
        WhatsAppSettings {
            app_secret: None,
            verify_token: None,
            token: token.map(Secret::new),
            graph_api_base: base.to_owned(),
            typing_indicator,
        }
    }

    fn channel(base: &str, token: Option<&str>, typing_indicator: bool) -> WhatsApp {
        WhatsApp::new(settings(base, token, typing_indicator), client())
    }

    fn maria() -> Conversation {
        Conversation::new(ChannelKind::WhatsApp, "123456789012345", "15550002222")
    }

    /// Meta's answer to a read receipt: a success without a message id.
    fn mark_read_response() -> Answer {
        Answer::new(200, fixture("whatsapp/mark_read_response.json"))
    }

    /// The text fixture's request, with its body the one `send_part` is given.
    fn expected_send(text: &str) -> Value {
        let mut expected = json_fixture("whatsapp/send_request_text.json");
        expected["text"]["body"] = json!(text);
        expected
    }

    fn assert_post_to_messages(received: &Received) {
        assert_eq!(
            received.request_line,
            "POST /v23.0/123456789012345/messages HTTP/1.1"
        );
        assert_eq!(
            received.header("authorization"),
            Some("Bearer test-access-token")
        );
        assert!(
            received
                .header("content-type")
                .is_some_and(|v| v.starts_with("application/json"))
        );
    }

    #[tokio::test]
    async fn send_part_posts_the_fixture_body_and_returns_the_wamid() {
        let (base, server) =
            fake_graph(Answer::new(200, fixture("whatsapp/send_response.json"))).await;
        let text = json_fixture("whatsapp/send_request_text.json")["text"]["body"]
            .as_str()
            .expect("body")
            .to_owned();
        let id = channel(&base, Some(TOKEN), true)
            .send_part(&maria(), &text)
            .await
            .expect("sent");
        assert_eq!(
            id,
            "wamid.HBgLMTU1NTAwMDIyMjIVAgARGBI3QTFCMkMzRDRFNUY2MDExNDQA"
        );
        let received = one_request(&server);
        assert_post_to_messages(&received);
        assert_eq!(
            received.body,
            json_fixture("whatsapp/send_request_text.json")
        );
    }

    #[tokio::test]
    async fn a_closed_window_error_is_permanent_with_its_code() {
        let (result, received) =
            send_with(Answer::new(400, fixture("whatsapp/error_131047.json"))).await;
        let error = result.expect_err("refused");
        assert!(
            matches!(
                error,
                SendError::Permanent {
                    status: Some(400),
                    code: Some(131047),
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(!error.message().contains(TOKEN));
        assert_eq!(received.body, expected_send("hello"));
    }

    #[tokio::test]
    async fn a_429_with_retry_after_is_retryable_after_that_delay() {
        let mut reply = Answer::new(429, fixture("whatsapp/error_130429.json"));
        reply.retry_after = Some(2);
        let (result, _) = send_with(reply).await;
        let error = result.expect_err("rate limited");
        match error {
            SendError::Retryable {
                status,
                code,
                retry_after,
                ..
            } => {
                assert_eq!(status, Some(429));
                assert_eq!(code, Some(130429));
                assert_eq!(retry_after, Some(Duration::from_secs(2)));
            }
            other => panic!("expected retryable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_success_without_a_message_id_is_permanent() {
        let (result, _) = send_with(mark_read_response()).await;
        let error = result.expect_err("no id");
        assert!(matches!(error, SendError::Permanent { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn an_unreachable_api_is_retryable_without_a_status() {
        let base = format!("{}/v23.0", closed_port().await);
        let error = unreachable_error(&channel(&base, Some(TOKEN), true), &maria()).await;
        assert!(!error.message().contains(TOKEN));
    }

    #[tokio::test]
    async fn mark_read_typing_posts_the_typing_fixture_body() {
        let (base, server) = fake_graph(mark_read_response()).await;
        channel(&base, Some(TOKEN), true)
            .mark_read_typing(&maria(), WAMID)
            .await
            .expect("marked");
        let received = one_request(&server);
        assert_post_to_messages(&received);
        assert_eq!(
            received.body,
            json_fixture("whatsapp/mark_read_typing_request.json")
        );
    }

    #[tokio::test]
    async fn mark_read_without_typing_posts_the_read_fixture_body() {
        let (base, server) = fake_graph(mark_read_response()).await;
        channel(&base, Some(TOKEN), false)
            .mark_read_typing(&maria(), WAMID)
            .await
            .expect("marked");
        assert_eq!(
            one_request(&server).body,
            json_fixture("whatsapp/mark_read_request.json")
        );
    }

    #[tokio::test]
    async fn a_dry_run_logs_instead_of_sending() {
        let whatsapp = channel("http://127.0.0.1:9/v23.0", None, true);
        assert!(whatsapp.dry_run());
        assert_dry_run(&whatsapp, &maria(), WAMID).await;
    }

    #[test]
    fn the_messages_url_keeps_the_base_path_and_encodes_the_account() {
        let whatsapp = channel("https://graph.facebook.com/v23.0/", Some(TOKEN), true);
        let messages_url = |account: &str| GRAPH_API.messages_url(&whatsapp.base, account);
        let url = messages_url("123456789012345").expect("url");
        assert_eq!(
            url.as_str(),
            "https://graph.facebook.com/v23.0/123456789012345/messages"
        );
        let url = messages_url("a/b?c").expect("url");
        assert_eq!(
            url.as_str(),
            "https://graph.facebook.com/v23.0/a%2Fb%3Fc/messages"
        );
    }
}
