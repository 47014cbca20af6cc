//! Webhooks as Meta sends them: a WhatsApp text message, signed with the app secret.

use crate::config::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// `sha256=<hex HMAC-SHA256(secret, body)>`: the `X-Hub-Signature-256` Meta sends.
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC accepts any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A one-message WhatsApp text webhook from `from` to our `phone_number_id`, shaped
/// like Meta's (tests/fixtures/whatsapp), its timestamp in unix seconds.
pub fn whatsapp_text(
    phone_number_id: &str,
    from: &str,
    wamid: &str,
    ts_secs: i64,
    text: &str,
) -> Vec<u8> {
    serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "109876543210987",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {
                        "display_phone_number": "15550001111",
                        "phone_number_id": phone_number_id,
                    },
                    "contacts": [{"profile": {"name": "Test User"}, "wa_id": from}],
                    "messages": [{
                        "from": from,
                        "id": wamid,
                        "timestamp": ts_secs.to_string(),
                        "type": "text",
                        "text": {"body": text},
                    }],
                },
            }],
        }],
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Channel;
    use crate::channel::meta::SIGNATURE_HEADER;
    use crate::channel::whatsapp::{WhatsApp, WhatsAppSettings};

    #[test]
    fn a_signed_text_webhook_is_verified_and_parsed_by_lulls_whatsapp_channel() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let secret = Secret::new("s3cret");
        let settings = WhatsAppSettings {
            app_secret: Some(secret.clone()),
            verify_token: None,
            token: None,
            graph_api_base: "http://127.0.0.1:1/v23.0".into(),
            typing_indicator: false,
        };
        let channel = WhatsApp::new(settings, reqwest::Client::new());
        let body = whatsapp_text("123", "555", "wamid.1", 1_767_261_600, "hi");
        let mut headers = http::HeaderMap::new();
        headers.insert(SIGNATURE_HEADER, sign(&secret, &body).parse().unwrap());
        assert!(channel.verify(&headers, &body).is_ok());
        let parsed = channel.parse(&body).unwrap();
        let message = &parsed.messages[0];
        assert_eq!(message.conversation.id(), "whatsapp:123:555");
        assert_eq!(
            (message.external_id.as_str(), message.text.as_str()),
            ("wamid.1", "hi")
        );
        assert_eq!(message.timestamp_ms, 1_767_261_600_000);
    }
}
