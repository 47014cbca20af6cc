//! Replies and read receipts through `POST {graph_api_base}/{phone_number_id}/messages`.

use super::WhatsApp;
use crate::channel::{SendError, meta};
use crate::config::Secret;
use crate::message::Conversation;
use serde_json::{Value, json};

impl WhatsApp {
    /// Sends one text part; returns the wamid Meta gave it.
    pub(super) async fn send_text(
        &self,
        to: &Conversation,
        text: &str,
    ) -> Result<String, SendError> {
        let Some(token) = &self.settings.token else {
            tracing::info!(conversation = %to, chars = text.chars().count(), reply = text, "dry run: reply not sent");
            return Ok(format!("dry-run:{:016x}", rand::random::<u64>()));
        };
        let body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to.contact,
            "type": "text",
            "text": { "preview_url": false, "body": text },
        });
        let response = self.post(token, &to.account, &body).await?;
        let id = serde_json::from_slice::<Value>(&response)
            .ok()
            .and_then(|v| {
                v.pointer("/messages/0/id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .filter(|id| !id.is_empty());
        // Meta accepted the request, so the reply probably went out: retrying could
        // send it twice, hence permanent.
        id.ok_or_else(|| SendError::Permanent {
            status: None,
            code: None,
            message: "send response holds no messages[0].id".into(),
        })
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
        self.post(token, &to.account, &body).await.map(drop)
    }

    /// POSTs `body` to the account's messages endpoint; the 2xx body, or a classified error.
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
            .map_err(transport_error)?;
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
                    chain(&e.without_url())
                ),
            });
        }
        // An unreadable error body still has a status worth classifying.
        let bytes = bytes.unwrap_or_default();
        Err(meta::graph_error(status.as_u16(), &bytes, retry_after))
    }

    /// `{graph_api_base}/{account}/messages`, the account percent-encoded as one segment.
    fn messages_url(&self, account: &str) -> Result<url::Url, SendError> {
        let invalid = |reason: &str| SendError::Permanent {
            status: None,
            code: None,
            message: format!("cannot build the Graph API URL: {reason}"),
        };
        if account.is_empty() {
            return Err(invalid("empty account"));
        }
        let mut url =
            url::Url::parse(&self.settings.graph_api_base).map_err(|e| invalid(&e.to_string()))?;
        url.path_segments_mut()
            .map_err(|()| invalid("graph_api_base cannot have a path"))?
            .pop_if_empty()
            .extend([account, "messages"]);
        Ok(url)
    }
}

/// No response: timeouts and connection failures are worth retrying; a request that
/// could not even be built will not improve.
fn transport_error(error: reqwest::Error) -> SendError {
    let message = chain(&error);
    if error.is_builder() {
        SendError::Permanent {
            status: None,
            code: None,
            message,
        }
    } else {
        SendError::Retryable {
            status: None,
            code: None,
            message,
            retry_after: None,
        }
    }
}

/// An error and its sources, `a: b: c`, as reqwest puts the useful part in the sources.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Channel;
    use crate::channel::whatsapp::WhatsAppSettings;
    use crate::message::ChannelKind;
    use std::path::Path;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const TOKEN: &str = "test-access-token";
    const WAMID: &str = "wamid.HBgLMTU1NTAwMDIyMjIVAgASGBQzRUIwQTFCMkMzRDRFNUY2MDAwNAA=";

    fn fixture(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/whatsapp")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    fn json_fixture(name: &str) -> Value {
        serde_json::from_slice(&fixture(name)).expect("fixture is JSON")
    }

    /// What the fake Graph API received.
    struct Received {
        request_line: String,
        headers: Vec<(String, String)>,
        body: Value,
    }

    impl Received {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// A one-request HTTP/1.1 server answering `status`, `extra_headers` and `reply`.
    async fn fake_graph(
        status: &'static str,
        extra_headers: &'static str,
        reply: Vec<u8>,
    ) -> (String, tokio::task::JoinHandle<Received>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}/v23.0", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buffer = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                let n = socket.read(&mut chunk).await.expect("read");
                assert!(n > 0, "connection closed before the request head");
                buffer.extend_from_slice(&chunk[..n]);
                if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
            };
            let head = String::from_utf8(buffer[..head_end].to_vec()).expect("utf-8 head");
            let mut lines = head.split("\r\n");
            let request_line = lines.next().expect("request line").to_owned();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect();
            let length: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .expect("content-length");
            while buffer.len() < head_end + length {
                let n = socket.read(&mut chunk).await.expect("read");
                assert!(n > 0, "connection closed before the request body");
                buffer.extend_from_slice(&chunk[..n]);
            }
            let body = serde_json::from_slice(&buffer[head_end..head_end + length])
                .expect("JSON request body");
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 {extra_headers}connection: close\r\n\r\n",
                reply.len()
            );
            socket.write_all(head.as_bytes()).await.expect("write head");
            socket.write_all(&reply).await.expect("write body");
            socket.shutdown().await.expect("shutdown");
            Received {
                request_line,
                headers,
                body,
            }
        });
        (base, task)
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
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        WhatsApp::new(settings(base, token, typing_indicator), http)
    }

    fn maria() -> Conversation {
        Conversation::new(ChannelKind::WhatsApp, "123456789012345", "15550002222")
    }

    /// The text fixture's request, with its body the one `send_part` is given.
    fn expected_send(text: &str) -> Value {
        let mut expected = json_fixture("send_request_text.json");
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
        let (base, server) = fake_graph("200 OK", "", fixture("send_response.json")).await;
        let text = json_fixture("send_request_text.json")["text"]["body"]
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
        let received = server.await.expect("server");
        assert_post_to_messages(&received);
        assert_eq!(received.body, json_fixture("send_request_text.json"));
    }

    #[tokio::test]
    async fn a_closed_window_error_is_permanent_with_its_code() {
        let (base, server) = fake_graph("400 Bad Request", "", fixture("error_131047.json")).await;
        let error = channel(&base, Some(TOKEN), true)
            .send_part(&maria(), "hello")
            .await
            .expect_err("refused");
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
        assert_eq!(server.await.expect("server").body, expected_send("hello"));
    }

    #[tokio::test]
    async fn a_429_with_retry_after_is_retryable_after_that_delay() {
        let (base, server) = fake_graph(
            "429 Too Many Requests",
            "retry-after: 2\r\n",
            fixture("error_130429.json"),
        )
        .await;
        let error = channel(&base, Some(TOKEN), true)
            .send_part(&maria(), "hello")
            .await
            .expect_err("rate limited");
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
        server.await.expect("server");
    }

    #[tokio::test]
    async fn a_success_without_a_message_id_is_permanent() {
        let (base, server) = fake_graph("200 OK", "", fixture("mark_read_response.json")).await;
        let error = channel(&base, Some(TOKEN), true)
            .send_part(&maria(), "hello")
            .await
            .expect_err("no id");
        assert!(matches!(error, SendError::Permanent { .. }), "{error:?}");
        server.await.expect("server");
    }

    #[tokio::test]
    async fn an_unreachable_api_is_retryable_without_a_status() {
        // Bind then drop a listener: nothing accepts on that port any more.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}/v23.0", listener.local_addr().expect("addr"));
        drop(listener);
        let error = channel(&base, Some(TOKEN), true)
            .send_part(&maria(), "hello")
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
        assert!(!error.message().contains(TOKEN));
    }

    #[tokio::test]
    async fn mark_read_typing_posts_the_typing_fixture_body() {
        let (base, server) = fake_graph("200 OK", "", fixture("mark_read_response.json")).await;
        channel(&base, Some(TOKEN), true)
            .mark_read_typing(&maria(), WAMID)
            .await
            .expect("marked");
        let received = server.await.expect("server");
        assert_post_to_messages(&received);
        assert_eq!(received.body, json_fixture("mark_read_typing_request.json"));
    }

    #[tokio::test]
    async fn mark_read_without_typing_posts_the_read_fixture_body() {
        let (base, server) = fake_graph("200 OK", "", fixture("mark_read_response.json")).await;
        channel(&base, Some(TOKEN), false)
            .mark_read_typing(&maria(), WAMID)
            .await
            .expect("marked");
        assert_eq!(
            server.await.expect("server").body,
            json_fixture("mark_read_request.json")
        );
    }

    #[tokio::test]
    async fn a_dry_run_logs_instead_of_sending() {
        // Port 9 (discard) is never contacted: a request would fail the test.
        let whatsapp = channel("http://127.0.0.1:9/v23.0", None, true);
        assert!(whatsapp.dry_run());
        let id = whatsapp
            .send_part(&maria(), "hello")
            .await
            .expect("dry run");
        assert!(
            id.starts_with("dry-run:") && id.len() > "dry-run:".len(),
            "{id}"
        );
        whatsapp
            .mark_read_typing(&maria(), WAMID)
            .await
            .expect("dry run");
    }

    #[test]
    fn the_messages_url_keeps_the_base_path_and_encodes_the_account() {
        let whatsapp = channel("https://graph.facebook.com/v23.0/", Some(TOKEN), true);
        let url = whatsapp.messages_url("123456789012345").expect("url");
        assert_eq!(
            url.as_str(),
            "https://graph.facebook.com/v23.0/123456789012345/messages"
        );
        let url = whatsapp.messages_url("a/b?c").expect("url");
        assert_eq!(
            url.as_str(),
            "https://graph.facebook.com/v23.0/a%2Fb%3Fc/messages"
        );
    }
}
