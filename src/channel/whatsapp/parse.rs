//! Webhook bodies into [`InboundMessage`]s.
//!
//! The body is walked as a `serde_json::Value` rather than typed structs so that one
//! odd item (a missing id, a number where a string was expected) costs only itself:
//! Meta batches up to 1000 updates in one POST, and refusing the POST would make Meta
//! redeliver, and refuse, all of them for days.

use crate::channel::json::{TimeUnit, array, json_i64, str_at, tagged, unix_ms};
use crate::channel::{Echo, ParseError, ParsedWebhook, choice_text, meta};
use crate::message::{ChannelKind, Conversation, InboundMessage, MessageKind};
use serde_json::Value;

/// The `object` of every WhatsApp Business Account webhook.
const OBJECT: &str = "whatsapp_business_account";

/// Parses a whole webhook body: every `entry[]`, every `changes[]`, every
/// `value.messages[]`, `value.statuses[]` and `value.errors[]`.
pub(super) fn parse_webhook(body: &[u8]) -> Result<ParsedWebhook, ParseError> {
    let entries = meta::webhook_entries(body, ChannelKind::WhatsApp, OBJECT)?;
    let mut parsed = ParsedWebhook::default();
    for entry in &entries {
        for change in array(entry, "changes") {
            parse_change(change, &mut parsed);
        }
    }
    Ok(parsed)
}

/// The field of a coexistence number's echoes: what the business sent from the
/// WhatsApp Business app (a human agent), in `value.message_echoes[]`.
const ECHOES: &str = "smb_message_echoes";

fn parse_change(change: &Value, parsed: &mut ParsedWebhook) {
    let field = str_at(change, &["field"]);
    if field == Some(ECHOES) {
        parse_echoes(change, parsed);
        return;
    }
    // Other subscriptions (template status, account updates, message echoes...) share
    // the endpoint; they hold nothing to answer.
    if field.is_some_and(|f| f != "messages") {
        tracing::debug!(field = field.unwrap_or_default(), "ignoring webhook change");
        return;
    }
    let Some(value) = change.get("value") else {
        tracing::warn!("skipping webhook change without a value");
        parsed.skipped += 1;
        return;
    };
    let account = str_at(value, &["metadata", "phone_number_id"]).filter(|a| !a.is_empty());
    let contacts = array(value, "contacts");

    for message in array(value, "messages") {
        let message_id = || str_at(message, &["id"]).unwrap_or_default();
        match str_at(message, &["type"]) {
            // A system notice (the customer changed their number or user id) is not
            // something they said: answering it would send a reply to the old number.
            Some("system") => {
                let notice = str_at(message, &["system", "type"]).unwrap_or_default();
                tracing::info!(
                    message_id = message_id(),
                    notice,
                    "system notice acknowledged, not answered"
                );
                parsed.statuses += 1;
                continue;
            }
            // A message the user deleted (WhatsApp Business app numbers on Cloud
            // API): nothing to answer, as for Instagram's unsent messages.
            Some("revoke") => {
                let original =
                    str_at(message, &["revoke", "original_message_id"]).unwrap_or_default();
                tracing::info!(
                    message_id = message_id(),
                    original,
                    "message deleted by the user; skipped"
                );
                parsed.skipped += 1;
                continue;
            }
            _ => {}
        }
        match parse_message(message, account, contacts) {
            Ok(inbound) => parsed.messages.push(inbound),
            Err(reason) => {
                tracing::warn!(
                    message_id = message_id(),
                    channel = ChannelKind::WhatsApp.as_str(),
                    reason,
                    "skipping malformed message"
                );
                parsed.skipped += 1;
            }
        }
    }

    for status in array(value, "statuses") {
        parsed.statuses += 1;
        let id = str_at(status, &["id"]).unwrap_or_default();
        let state = str_at(status, &["status"]).unwrap_or_default();
        let recipient = str_at(status, &["recipient_id"]).unwrap_or_default();
        let errors = array(status, "errors");
        if state == "failed" {
            parsed.delivery_failures += 1;
        }
        if errors.is_empty() {
            tracing::debug!(
                message_id = id,
                status = state,
                recipient,
                "delivery status"
            );
        }
        for error in errors {
            let code = error.get("code").and_then(json_i64);
            let title = str_at(error, &["title"]).unwrap_or_default();
            let details = str_at(error, &["error_data", "details"]).unwrap_or_default();
            tracing::warn!(
                message_id = id,
                status = state,
                recipient,
                code,
                title,
                details,
                "delivery failed"
            );
        }
    }

    for error in array(value, "errors") {
        parsed.skipped += 1;
        let code = error.get("code").and_then(json_i64);
        let title = str_at(error, &["title"]).unwrap_or_default();
        let details = str_at(error, &["error_data", "details"]).unwrap_or_default();
        tracing::warn!(
            account = account.unwrap_or_default(),
            code,
            title,
            details,
            "webhook error"
        );
    }
}

/// `value.message_echoes[]`: each is read as a message with `from` set to its
/// `to` (the contact), so its conversation is the contact's.
fn parse_echoes(change: &Value, parsed: &mut ParsedWebhook) {
    let Some(value) = change.get("value") else {
        parsed.skipped += 1;
        return;
    };
    let account = str_at(value, &["metadata", "phone_number_id"]).filter(|a| !a.is_empty());
    for echo in array(value, "message_echoes") {
        let mut swapped = echo.clone();
        if let (Some(object), Some(to)) = (swapped.as_object_mut(), echo.get("to")) {
            object.insert("from".into(), to.clone());
        }
        // Not a message to batch: counted as skipped, handled as an echo.
        parsed.skipped += 1;
        match parse_message(&swapped, account, &[]) {
            Ok(message) => parsed.echoes.push(Echo {
                message: InboundMessage {
                    payload: echo.clone(),
                    ..message
                },
                app_id: None,
            }),
            Err(reason) => {
                tracing::warn!(
                    message_id = str_at(echo, &["id"]).unwrap_or_default(),
                    channel = ChannelKind::WhatsApp.as_str(),
                    reason,
                    "skipping malformed echo"
                );
            }
        }
    }
}

/// One item of `value.messages[]`; `Err` names what is missing.
fn parse_message(
    message: &Value,
    account: Option<&str>,
    contacts: &[Value],
) -> Result<InboundMessage, &'static str> {
    if !message.is_object() {
        return Err("message is not an object");
    }
    let id = str_at(message, &["id"])
        .filter(|s| !s.is_empty())
        .ok_or("id missing or not a string")?;
    let account = account.ok_or("metadata.phone_number_id missing or not a string")?;
    // Users who adopted a username may have no phone number: `from` is then empty and
    // the business-scoped user id (BSUID) in `from_user_id` names them.
    let from = str_at(message, &["from"]).filter(|s| !s.is_empty());
    let user_id = str_at(message, &["from_user_id"]).filter(|s| !s.is_empty());
    let contact = from.or(user_id).ok_or("from missing or not a string")?;

    let timestamp_ms = match message
        .get("timestamp")
        .and_then(json_i64)
        .and_then(|t| unix_ms(t, TimeUnit::Seconds))
    {
        Some(ms) => ms,
        None => {
            // A message without a usable time is still a message: ordering it at
            // arrival is better than losing it.
            tracing::warn!(
                message_id = id,
                "message timestamp missing or invalid, using arrival time"
            );
            chrono::Utc::now().timestamp_millis()
        }
    };

    let (kind, text) = render(message)?;
    Ok(InboundMessage {
        conversation: Conversation::new(ChannelKind::WhatsApp, account, contact),
        external_id: id.to_owned(),
        kind,
        text,
        timestamp_ms,
        contact_name: contact_name(contacts, contact),
        payload: message.clone(),
    })
}

/// The profile name of the contact whose `wa_id` (or `user_id`) is `contact`, else of
/// the first contact (Meta sends one per change in practice).
fn contact_name(contacts: &[Value], contact: &str) -> Option<String> {
    let matches = |c: &&Value| {
        str_at(c, &["wa_id"]) == Some(contact) || str_at(c, &["user_id"]) == Some(contact)
    };
    let chosen = contacts.iter().find(matches).or_else(|| contacts.first())?;
    str_at(chosen, &["profile", "name"])
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
}

/// The kind and readable text of a message, for every type Meta documents; anything
/// else is [`MessageKind::Unsupported`] but still a message: someone sent something.
/// `Err` names what makes it unreadable: a text without a string `text.body` (what
/// someone wrote, lost: answering it as empty would answer something else).
fn render(message: &Value) -> Result<(MessageKind, String), &'static str> {
    render_as(message, str_at(message, &["type"]).unwrap_or("unknown"))
}

/// [`render`] for a message of type `kind`.
fn render_as(message: &Value, kind: &str) -> Result<(MessageKind, String), &'static str> {
    let get = |path: &[&str]| str_at(message, path).filter(|s| !s.is_empty());
    Ok(match kind {
        "text" => {
            let body =
                str_at(message, &["text", "body"]).ok_or("text.body missing or not a string")?;
            let body = if body.is_empty() {
                "[empty text]"
            } else {
                body
            };
            (MessageKind::Text, body.to_owned())
        }
        "image" | "video" => (
            MessageKind::Media,
            tagged(&format!("[{kind}]"), get(&[kind, "caption"])),
        ),
        "audio" => {
            let voice = message.pointer("/audio/voice").and_then(Value::as_bool) == Some(true);
            let tag = if voice { "[voice message]" } else { "[audio]" };
            (MessageKind::Media, tag.to_owned())
        }
        "document" => {
            let tag = match get(&["document", "filename"]) {
                Some(name) => format!("[document {name}]"),
                None => "[document]".to_owned(),
            };
            (
                MessageKind::Media,
                tagged(&tag, get(&["document", "caption"])),
            )
        }
        "sticker" => (MessageKind::Media, "[sticker]".to_owned()),
        "location" => (MessageKind::Location, location(message)),
        "contacts" => (MessageKind::Contacts, contact_cards(message)),
        "interactive" => interactive(message),
        // A template's quick-reply button.
        "button" => {
            let payload = get(&["button", "payload"]);
            let title = get(&["button", "text"]).or(payload).unwrap_or("[button]");
            (MessageKind::Choice, choice(payload, title))
        }
        "reaction" => {
            let target = get(&["reaction", "message_id"]).unwrap_or("unknown message");
            let text = match get(&["reaction", "emoji"]) {
                Some(emoji) => format!("[reacted {emoji} to {target}]"),
                None => format!("[removed reaction from {target}]"),
            };
            (MessageKind::Reaction, text)
        }
        // A user's edit (WhatsApp Business app numbers on Cloud API): a message of
        // its own (its own id), the new content marked, as Telegram's and
        // Instagram's edits are.
        "edit" => match message.pointer("/edit/message") {
            Some(new) => {
                // The new content may come without a type of its own.
                let untyped_text = new.get("text").map(|_| "text");
                let new_kind = str_at(new, &["type"]).or(untyped_text);
                let (kind, text) = render_as(new, new_kind.unwrap_or("unknown"))?;
                (kind, format!("[edited] {text}"))
            }
            None => (MessageKind::Unsupported, "[edited message]".to_owned()),
        },
        // A catalog order: what was asked for is worth answering like text.
        "order" => (MessageKind::Text, order(message)),
        "unsupported" => {
            let inner = get(&["unsupported", "type"]).unwrap_or("unknown");
            (MessageKind::Unsupported, format!("[unsupported: {inner}]"))
        }
        other => (MessageKind::Unsupported, format!("[unsupported: {other}]")),
    })
}

/// A menu choice's text: the tapped id, which the bot needs, and the title the
/// contact saw (see [`crate::channel::choice_text`]).
fn choice(id: Option<&str>, title: &str) -> String {
    id.map_or_else(|| title.to_owned(), |id| choice_text(id, title))
}

fn interactive(message: &Value) -> (MessageKind, String) {
    let get = |path: &[&str]| str_at(message, path).filter(|s| !s.is_empty());
    match get(&["interactive", "type"]) {
        Some("button_reply") => {
            let id = get(&["interactive", "button_reply", "id"]);
            let title = get(&["interactive", "button_reply", "title"]).unwrap_or("[button]");
            (MessageKind::Choice, choice(id, title))
        }
        Some("list_reply") => {
            let id = get(&["interactive", "list_reply", "id"]);
            let title = get(&["interactive", "list_reply", "title"]).unwrap_or("[list item]");
            let text = match get(&["interactive", "list_reply", "description"]) {
                Some(description) => format!("{title} ({description})"),
                None => title.to_owned(),
            };
            (MessageKind::Choice, choice(id, &text))
        }
        // A WhatsApp Flow form submitted: its answers are in response_json.
        Some("nfm_reply") => {
            let answers = get(&["interactive", "nfm_reply", "response_json"]);
            (MessageKind::Choice, tagged("[form reply]", answers))
        }
        other => (
            MessageKind::Unsupported,
            format!("[unsupported: interactive {}]", other.unwrap_or("unknown")),
        ),
    }
}

/// `[location] name, address (lat, lon)`, leaving out what is absent.
fn location(message: &Value) -> String {
    let place: Vec<&str> = ["name", "address"]
        .iter()
        .filter_map(|k| str_at(message, &["location", *k]).filter(|s| !s.is_empty()))
        .collect();
    let mut text = "[location]".to_owned();
    if !place.is_empty() {
        text.push(' ');
        text.push_str(&place.join(", "));
    }
    let coordinate = |k: &str| {
        message
            .pointer(&format!("/location/{k}"))
            .and_then(Value::as_f64)
    };
    if let (Some(lat), Some(lon)) = (coordinate("latitude"), coordinate("longitude")) {
        text.push_str(&format!(" ({lat}, {lon})"));
    }
    text
}

/// `[contact] Luis Lopez +1 555-000-4444`, or `[contacts] a; b` for several cards.
fn contact_cards(message: &Value) -> String {
    let cards: Vec<String> = array(message, "contacts")
        .iter()
        .map(|card| {
            let name = str_at(card, &["name", "formatted_name"])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    let parts = ["first_name", "last_name"]
                        .map(|k| str_at(card, &["name", k]).unwrap_or_default());
                    parts.join(" ").trim().to_owned()
                });
            let phones = array(card, "phones")
                .iter()
                .filter_map(|p| str_at(p, &["phone"]).or_else(|| str_at(p, &["wa_id"])))
                .filter(|p| !p.is_empty());
            std::iter::once(name.as_str())
                .chain(phones)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|card| !card.is_empty())
        .collect();
    match cards.len() {
        0 => "[contact]".to_owned(),
        1 => format!("[contact] {}", cards[0]),
        _ => format!("[contacts] {}", cards.join("; ")),
    }
}

/// `[order] 2 x SKU-1, 1 x SKU-2 note`, from the catalog order's items and text.
fn order(message: &Value) -> String {
    let items: Vec<String> = message
        .pointer("/order/product_items")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|item| {
            let product = str_at(item, &["product_retailer_id"])?;
            let quantity = item.get("quantity").and_then(json_i64).unwrap_or(1);
            Some(format!("{quantity} x {product}"))
        })
        .collect();
    let mut text = "[order]".to_owned();
    if !items.is_empty() {
        text.push(' ');
        text.push_str(&items.join(", "));
    }
    tagged(
        &text,
        str_at(message, &["order", "text"]).filter(|s| !s.is_empty()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::test_server;

    const ACCOUNT: &str = "123456789012345";
    const MARIA: &str = "15550002222";

    fn fixture(name: &str) -> Vec<u8> {
        test_server::fixture(&format!("whatsapp/{name}"))
    }

    fn parse(name: &str) -> ParsedWebhook {
        parse_webhook(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn a_coexistence_echo_is_the_business_message_to_the_contact() {
        let body = serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{
                "field": "smb_message_echoes",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550001111", "phone_number_id": ACCOUNT},
                    "message_echoes": [{
                        "from": "15550001111", "to": MARIA, "id": "wamid.echo",
                        "timestamp": "1767262205", "type": "text", "text": {"body": "Ana here"}
                    }]
                }
            }]}]
        });
        let parsed = parse_webhook(body.to_string().as_bytes()).unwrap();
        assert!(parsed.messages.is_empty(), "not a message to answer");
        assert_eq!(parsed.skipped, 1);
        let [echo] = parsed.echoes.as_slice() else {
            panic!("one echo: {:?}", parsed.echoes);
        };
        assert_eq!(echo.message.external_id, "wamid.echo");
        assert_eq!(echo.message.text, "Ana here");
        assert_eq!(echo.message.timestamp_ms, 1_767_262_205_000);
        assert_eq!(
            echo.message.conversation,
            Conversation::new(ChannelKind::WhatsApp, ACCOUNT, MARIA)
        );
    }

    /// The one message of a single-message fixture.
    fn only(name: &str) -> InboundMessage {
        let parsed = parse(name);
        assert_eq!(parsed.messages.len(), 1, "{name}");
        assert_eq!(parsed.skipped, 0, "{name}");
        parsed.messages.into_iter().next().expect("one message")
    }

    fn assert_message(name: &str, kind: MessageKind, text: &str, ts_seconds: i64) {
        let m = only(name);
        assert_eq!(m.kind, kind, "{name}");
        assert_eq!(m.text, text, "{name}");
        assert_eq!(m.timestamp_ms, ts_seconds * 1000, "{name}");
        assert_eq!(
            m.conversation,
            Conversation::new(ChannelKind::WhatsApp, ACCOUNT, MARIA),
            "{name}"
        );
        assert_eq!(m.contact_name.as_deref(), Some("Maria Lopez"), "{name}");
        assert!(m.external_id.starts_with("wamid."), "{name}");
    }

    #[test]
    fn a_single_text_parses_with_account_contact_name_id_and_time() {
        let m = only("text_single.json");
        assert_eq!(m.conversation.id(), "whatsapp:123456789012345:15550002222");
        assert_eq!(
            m.external_id,
            "wamid.HBgLMTU1NTAwMDIyMjIVAgASGBQzRUIwQTFCMkMzRDRFNUY2MDAwMQA="
        );
        assert_eq!(m.kind, MessageKind::Text);
        assert_eq!(m.text, "Hi! Do you deliver to Austin?");
        assert_eq!(m.timestamp_ms, 1_767_261_600_000);
        assert_eq!(m.contact_name.as_deref(), Some("Maria Lopez"));
    }

    #[test]
    fn the_payload_is_the_one_message_object() {
        let m = only("text_single.json");
        let root: Value = serde_json::from_slice(&fixture("text_single.json")).expect("json");
        assert_eq!(
            m.payload,
            root["entry"][0]["changes"][0]["value"]["messages"][0]
        );
    }

    #[test]
    fn a_redelivery_parses_to_the_same_message() {
        assert_eq!(
            only("text_single.json"),
            only("text_single_redelivery.json")
        );
    }

    #[test]
    fn replies_and_forwards_are_plain_texts() {
        assert_message(
            "text_reply_with_context.json",
            MessageKind::Text,
            "Yes, that address is correct",
            1767261900,
        );
        assert_message(
            "text_forwarded.json",
            MessageKind::Text,
            "Look what my friend sent me",
            1767261910,
        );
    }

    #[test]
    fn escaped_non_ascii_text_is_decoded() {
        let m = only("text_non_ascii_escaped.json");
        assert_eq!(m.text, "¿Tienen envío a Monterrey? 🚚");
        assert_eq!(m.contact_name.as_deref(), Some("María López"));
    }

    #[test]
    fn an_image_renders_its_caption() {
        assert_message(
            "image_with_caption.json",
            MessageKind::Media,
            "[image] This is the damaged box",
            1767262000,
        );
    }

    #[test]
    fn a_voice_note_renders_as_a_voice_message() {
        assert_message(
            "audio_voice.json",
            MessageKind::Media,
            "[voice message]",
            1767262010,
        );
    }

    #[test]
    fn a_document_renders_its_filename_and_caption() {
        assert_message(
            "document_pdf.json",
            MessageKind::Media,
            "[document invoice-A-1042.pdf] my invoice",
            1767262020,
        );
    }

    #[test]
    fn a_sticker_renders_as_a_sticker() {
        assert_message("sticker.json", MessageKind::Media, "[sticker]", 1767262030);
    }

    #[test]
    fn a_location_renders_name_address_and_coordinates() {
        assert_message(
            "location.json",
            MessageKind::Location,
            "[location] Front desk, 500 Congress Ave, Austin, TX 78701 (30.2672, -97.7431)",
            1767262040,
        );
    }

    #[test]
    fn a_contact_card_renders_name_and_phone() {
        assert_message(
            "contacts_card.json",
            MessageKind::Contacts,
            "[contact] Luis Lopez +1 555-000-4444",
            1767262050,
        );
    }

    #[test]
    fn a_reply_button_tap_is_a_choice_with_its_id_and_title() {
        assert_message(
            "interactive_button_reply.json",
            MessageKind::Choice,
            "[choice id=track-order] Track order",
            1767262060,
        );
    }

    #[test]
    fn a_list_pick_is_a_choice_with_its_id_title_and_description() {
        assert_message(
            "interactive_list_reply.json",
            MessageKind::Choice,
            "[choice id=ship_express] Express shipping (1-2 business days)",
            1767262070,
        );
    }

    #[test]
    fn a_template_quick_reply_is_a_choice_with_its_payload_and_text() {
        assert_message(
            "button_template_quick_reply.json",
            MessageKind::Choice,
            "[choice id=STOP_PROMOS] Stop promotions",
            1767262080,
        );
    }

    #[test]
    fn a_reaction_names_the_emoji_and_the_message() {
        assert_message(
            "reaction.json",
            MessageKind::Reaction,
            "[reacted 👍 to wamid.HBgLMTU1NTAwMDIyMjIVAgARGBI3QTFCMkMzRDRFNUY2MDExMjIA]",
            1767262090,
        );
    }

    #[test]
    fn a_removed_reaction_names_the_message() {
        assert_message(
            "reaction_removed.json",
            MessageKind::Reaction,
            "[removed reaction from wamid.HBgLMTU1NTAwMDIyMjIVAgARGBI3QTFCMkMzRDRFNUY2MDExMjIA]",
            1767262095,
        );
    }

    #[test]
    fn an_unsupported_message_is_still_a_message() {
        assert_message(
            "unsupported.json",
            MessageKind::Unsupported,
            "[unsupported: poll_creation]",
            1767262100,
        );
    }

    #[test]
    fn three_texts_in_one_post_keep_their_order() {
        let parsed = parse("three_texts_one_post.json");
        let texts: Vec<&str> = parsed.messages.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "hello",
                "I ordered a blue lamp last week",
                "order #A-1042, it has not arrived yet"
            ]
        );
        let times: Vec<i64> = parsed.messages.iter().map(|m| m.timestamp_ms).collect();
        assert_eq!(
            times,
            [1_767_261_660_000, 1_767_261_661_000, 1_767_261_663_000]
        );
    }

    #[test]
    fn two_entries_yield_two_contacts_and_count_the_status() {
        let parsed = parse("batch_two_users_and_status.json");
        assert_eq!(parsed.statuses, 1);
        assert_eq!(parsed.skipped, 0);
        let who: Vec<(&str, Option<&str>)> = parsed
            .messages
            .iter()
            .map(|m| (m.conversation.contact.as_str(), m.contact_name.as_deref()))
            .collect();
        assert_eq!(
            who,
            [
                (MARIA, Some("Maria Lopez")),
                ("15550003333", Some("Ken Adams"))
            ]
        );
    }

    #[test]
    fn a_username_user_is_named_by_the_bsuid() {
        let m = only("text_username_bsuid.json");
        let bsuid = "user.5f1d7a0c9b2e4f6a8d3c1b0e9f7a6d5c4b3a2918e7d6c5b4a39281706f5e4d3c";
        assert_eq!(m.conversation.contact, bsuid);
        assert_eq!(m.contact_name.as_deref(), Some("Ken Adams"));
        assert_eq!(m.text, "hey, is the store open today?");
    }

    #[test]
    fn status_only_posts_hold_no_messages() {
        for name in [
            "status_sent.json",
            "status_delivered.json",
            "status_read.json",
            "status_failed_131047.json",
        ] {
            let parsed = parse(name);
            assert!(parsed.messages.is_empty(), "{name}");
            assert_eq!(parsed.statuses, 1, "{name}");
            assert_eq!(parsed.skipped, 0, "{name}");
        }
    }

    #[test]
    fn a_failed_status_counts_as_a_delivery_failure() {
        assert_eq!(parse("status_failed_131047.json").delivery_failures, 1);
        for name in [
            "status_sent.json",
            "status_delivered.json",
            "status_read.json",
        ] {
            assert_eq!(parse(name).delivery_failures, 0, "{name}");
        }
    }

    #[test]
    fn webhook_errors_are_counted_as_skipped_not_messages() {
        let parsed = parse("webhook_errors_130429.json");
        assert!(parsed.messages.is_empty());
        assert_eq!(parsed.statuses, 0);
        assert_eq!(parsed.skipped, 1);
    }

    fn with_messages(messages: Value) -> Vec<u8> {
        let mut root: Value = serde_json::from_slice(&fixture("text_single.json")).expect("json");
        root["entry"][0]["changes"][0]["value"]["messages"] = messages;
        serde_json::to_vec(&root).expect("json")
    }

    #[test]
    fn a_broken_message_item_does_not_cost_the_good_one() {
        let root: Value = serde_json::from_slice(&fixture("text_single.json")).expect("json");
        let good = root["entry"][0]["changes"][0]["value"]["messages"][0].clone();
        let body = with_messages(serde_json::json!([
            {"from": MARIA, "timestamp": "1767261599", "type": "text", "text": {"body": "no id"}},
            good,
            {"id": "wamid.no-from", "timestamp": "1767261601", "type": "text", "text": {"body": "x"}},
            "not an object",
            {"id": 42, "from": [], "timestamp": {}, "type": 7},
        ]));
        let parsed = parse_webhook(&body).expect("parsed");
        assert_eq!(parsed.messages.len(), 1);
        assert_eq!(parsed.messages[0].text, "Hi! Do you deliver to Austin?");
        assert_eq!(parsed.skipped, 4);
    }

    #[test]
    fn a_message_with_fields_of_the_wrong_type_is_skipped_and_its_neighbour_parsed() {
        let body = with_messages(serde_json::json!([
            {"id": "wamid.from-number", "from": 15550002222i64, "timestamp": "1767261600",
             "type": "text", "text": {"body": "x"}},
            {"from": MARIA, "timestamp": "1767261600", "type": "text", "text": {"body": "no id"}},
            {"id": "wamid.body-object", "from": MARIA, "timestamp": "1767261600", "type": "text",
             "text": {"body": {"nested": "x"}}},
            {"id": "wamid.edit-body-object", "from": MARIA, "timestamp": "1767261600", "type": "edit",
             "edit": {"message": {"text": {"body": 7}}}},
            {"id": "wamid.good", "from": MARIA, "timestamp": "1767261601", "type": "text",
             "text": {"body": "the good one"}},
        ]));
        let parsed = parse_webhook(&body).expect("parsed");
        let ids: Vec<&str> = parsed
            .messages
            .iter()
            .map(|m| m.external_id.as_str())
            .collect();
        assert_eq!(ids, ["wamid.good"]);
        assert_eq!(parsed.messages[0].text, "the good one");
        assert_eq!(parsed.skipped, 4);
    }

    #[test]
    fn a_lone_surrogate_is_read_as_the_replacement_character_and_its_neighbour_kept() {
        let body = with_messages(serde_json::json!([
            {"id": "wamid.bad", "from": MARIA, "timestamp": "1767261600", "type": "text",
             "text": {"body": "half an emoji LONE"}},
            {"id": "wamid.good", "from": MARIA, "timestamp": "1767261601", "type": "text",
             "text": {"body": "a whole one \u{1f69a}"}},
        ]));
        // serde_json cannot write a lone surrogate: put the raw escape in by hand.
        let body = String::from_utf8(body)
            .expect("utf-8")
            .replace("LONE", r"\ud83d");
        let parsed = parse_webhook(body.as_bytes()).expect("parsed");
        let texts: Vec<&str> = parsed.messages.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["half an emoji \u{FFFD}", "a whole one 🚚"]);
        assert_eq!(
            parsed.messages[0].payload["text"]["body"],
            "half an emoji \u{FFFD}"
        );
    }

    #[test]
    fn a_timestamp_in_milliseconds_is_recognised() {
        let body = with_messages(serde_json::json!([
            {"id": "wamid.ms", "from": MARIA, "timestamp": "1767261600123", "type": "text",
             "text": {"body": "x"}},
        ]));
        let parsed = parse_webhook(&body).expect("parsed");
        assert_eq!(parsed.messages[0].timestamp_ms, 1_767_261_600_123);
    }

    #[test]
    fn unexpected_field_types_do_not_panic() {
        let body = with_messages(serde_json::json!([
            {"id": "wamid.1", "from": MARIA, "timestamp": "soon", "type": "image", "image": "oops"},
            {"id": "wamid.2", "from": MARIA, "timestamp": 1767261600, "type": "location", "location": {"latitude": "n"}},
            {"id": "wamid.3", "from": MARIA, "timestamp": "1767261600", "type": "contacts", "contacts": {"a": 1}},
            {"id": "wamid.4", "from": MARIA, "timestamp": "1767261600", "type": "interactive", "interactive": []},
            {"id": "wamid.5", "from": MARIA, "timestamp": "1767261600", "text": {"body": "no type"}},
        ]));
        let parsed = parse_webhook(&body).expect("parsed");
        let texts: Vec<&str> = parsed.messages.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "[image]",
                "[location]",
                "[contact]",
                "[unsupported: interactive unknown]",
                "[unsupported: unknown]"
            ]
        );
        assert_eq!(parsed.messages[1].timestamp_ms, 1_767_261_600_000);
    }

    #[test]
    fn an_unknown_type_is_unsupported_with_its_name() {
        let body = with_messages(serde_json::json!([
            {"id": "wamid.1", "from": MARIA, "timestamp": "1767261600", "type": "hologram"},
        ]));
        let parsed = parse_webhook(&body).expect("parsed");
        assert_eq!(parsed.messages[0].kind, MessageKind::Unsupported);
        assert_eq!(parsed.messages[0].text, "[unsupported: hologram]");
    }

    #[test]
    fn a_system_notice_is_acknowledged_not_answered() {
        let body = with_messages(serde_json::json!([
            {"id": "wamid.2", "from": MARIA, "timestamp": "1767261600", "type": "system",
             "system": {"body": "Maria changed from 15550002222 to 15550003333",
                        "wa_id": "15550003333", "type": "user_changed_number"}},
            {"id": "wamid.3", "from": MARIA, "timestamp": "1767261601", "type": "text",
             "text": {"body": "still there?"}},
        ]));
        let parsed = parse_webhook(&body).expect("parsed");
        assert_eq!(parsed.messages.len(), 1);
        assert_eq!(parsed.messages[0].text, "still there?");
        assert_eq!((parsed.statuses, parsed.skipped), (1, 0));
    }

    #[test]
    fn a_deleted_message_is_skipped_and_an_edit_is_a_message_with_its_new_text() {
        let body = with_messages(serde_json::json!([
            {"id": "wamid.4", "from": MARIA, "timestamp": "1767261700", "type": "revoke",
             "revoke": {"original_message_id": "wamid.1"}},
            {"id": "wamid.5", "from": MARIA, "timestamp": "1767261710", "type": "edit",
             "edit": {"original_message_id": "wamid.1",
                      "message": {"text": {"body": "order #A-1042, blue"}}}},
            {"id": "wamid.6", "from": MARIA, "timestamp": "1767261720", "type": "edit",
             "edit": {"original_message_id": "wamid.2",
                      "message": {"image": {"id": "m1", "caption": "the box"}, "type": "image"}}},
        ]));
        let parsed = parse_webhook(&body).expect("parsed");
        assert_eq!((parsed.statuses, parsed.skipped), (0, 1));
        let texts: Vec<(&str, &str)> = parsed
            .messages
            .iter()
            .map(|m| (m.external_id.as_str(), m.text.as_str()))
            .collect();
        assert_eq!(
            texts,
            [
                ("wamid.5", "[edited] order #A-1042, blue"),
                ("wamid.6", "[edited] [image] the box"),
            ]
        );
        assert_eq!(parsed.messages[0].kind, MessageKind::Text);
    }

    #[test]
    fn a_wrong_object_is_a_shape_error() {
        let result = parse_webhook(br#"{"object":"instagram","entry":[]}"#);
        assert!(matches!(
            result,
            Err(ParseError::Shape {
                channel: ChannelKind::WhatsApp,
                ..
            })
        ));
        let result = parse_webhook(br#"{"entry":[]}"#);
        assert!(matches!(result, Err(ParseError::Shape { .. })));
    }

    #[test]
    fn a_body_that_is_not_json_is_a_json_error() {
        assert!(matches!(
            parse_webhook(b"object=whatsapp"),
            Err(ParseError::Json(_))
        ));
    }
}
