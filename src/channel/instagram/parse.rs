//! Webhook bodies (`object: instagram`) into [`InboundMessage`]s.
//!
//! Every `entry[].messaging[]` event is looked at on its own, so one odd event costs
//! only itself (Meta batches up to 1000 in a POST and redelivers refused ones for a
//! day and a half):
//!
//! - `message`: text, attachments, quick replies, replies to a message (the text is
//!   kept) become messages; an echo (`is_echo`, our own account's message) becomes
//!   an [`Echo`] (a human agent's message pauses the bot: `crate::handoff`); an
//!   unsent message (`is_deleted`) is skipped; `is_unsupported` is an
//!   [`MessageKind::Unsupported`] message.
//! - `message_edit`: a message of its own (`{mid}:edit:{n}`, `[edited] ` text).
//! - `reaction`: a [`MessageKind::Reaction`], id `{mid}:reaction:{action}:{timestamp}`
//!   (the event has no id of its own; `mid` is the message reacted to).
//! - `postback` (an ice breaker or button tap): a [`MessageKind::Choice`], its
//!   payload as the choice id (`[choice id=<payload>] <title>`).
//! - `read` (`messaging_seen`): a status. Anything else is skipped with a log line.
//!
//! Comment and mention notifications (`entry[].changes[]`) share the endpoint; they
//! are not conversations and are ignored.

use crate::channel::json::{TimeUnit, array, json_i64, str_at, unix_ms};
use crate::channel::{Echo, ParseError, ParsedWebhook, choice_text, meta};
use crate::message::{ChannelKind, Conversation, InboundMessage, MessageKind};
use serde_json::Value;

/// The `object` of every Instagram webhook.
const OBJECT: &str = "instagram";

/// Parses a whole webhook body: every `entry[]`, every `messaging[]` event.
pub(super) fn parse_webhook(body: &[u8]) -> Result<ParsedWebhook, ParseError> {
    let entries = meta::webhook_entries(body, ChannelKind::Instagram, OBJECT)?;
    let mut parsed = ParsedWebhook::default();
    for entry in &entries {
        for change in array(entry, "changes") {
            let field = str_at(change, &["field"]).unwrap_or_default();
            tracing::debug!(field, "ignoring webhook change");
        }
        let ours = str_at(entry, &["id"]).filter(|id| !id.is_empty());
        for event in array(entry, "messaging") {
            parse_event(event, ours, &mut parsed);
        }
    }
    Ok(parsed)
}

/// One `messaging[]` event of the account `ours` (the entry's id), counted where
/// it belongs.
fn parse_event(event: &Value, ours: Option<&str>, parsed: &mut ParsedWebhook) {
    if event.get("read").is_some() {
        let mid = str_at(event, &["read", "mid"]).unwrap_or_default();
        tracing::debug!(message_id = mid, "message seen");
        parsed.statuses += 1;
        return;
    }
    if event
        .get("message")
        .and_then(|m| m.get("is_echo"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        parse_echo(event, parsed);
        return;
    }
    // Only messages mark our own as echoes; a reaction, edit or postback our
    // account made would otherwise be a conversation with ourselves as the contact.
    if ours.is_some() && str_at(event, &["sender", "id"]) == ours {
        tracing::debug!("skipping an event our own account made");
        parsed.skipped += 1;
        return;
    }
    match parse_message(event) {
        Ok(Some(inbound)) => parsed.messages.push(inbound),
        Ok(None) => parsed.skipped += 1,
        Err(reason) => {
            let mid = ["message", "reaction", "message_edit", "postback"]
                .iter()
                .find_map(|k| str_at(event, &[k, "mid"]))
                .unwrap_or_default();
            tracing::warn!(
                message_id = mid,
                channel = ChannelKind::Instagram.as_str(),
                reason,
                "skipping malformed event"
            );
            parsed.skipped += 1;
        }
    }
}

/// An echo of a message our account sent: read as the contact's message with
/// sender and recipient swapped, so its conversation is the contact's.
fn parse_echo(event: &Value, parsed: &mut ParsedWebhook) {
    let mut swapped = event.clone();
    if let Some(object) = swapped.as_object_mut() {
        let sender = object.remove("sender");
        let recipient = object.remove("recipient");
        if let Some(recipient) = recipient {
            object.insert("sender".into(), recipient);
        }
        if let Some(sender) = sender {
            object.insert("recipient".into(), sender);
        }
        if let Some(message) = object.get_mut("message").and_then(Value::as_object_mut) {
            message.remove("is_echo");
        }
    }
    let app_id = event
        .get("message")
        .and_then(|m| m.get("app_id"))
        .and_then(|id| match id {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
    match parse_message(&swapped) {
        Ok(Some(mut message)) => {
            message.payload = event.clone();
            // Not a message to batch: counted as skipped, handled as an echo.
            parsed.skipped += 1;
            parsed.echoes.push(Echo { message, app_id });
        }
        Ok(None) => parsed.skipped += 1,
        Err(reason) => {
            tracing::warn!(
                channel = ChannelKind::Instagram.as_str(),
                reason,
                "skipping malformed echo"
            );
            parsed.skipped += 1;
        }
    }
}

/// A message-like event; `Ok(None)` when it is skipped on purpose (already logged),
/// `Err` names what is missing.
fn parse_message(event: &Value) -> Result<Option<InboundMessage>, &'static str> {
    if !event.is_object() {
        return Err("event is not an object");
    }
    let sender = str_at(event, &["sender", "id"]).filter(|s| !s.is_empty());
    let recipient = str_at(event, &["recipient", "id"]).filter(|s| !s.is_empty());

    let (external_id, kind, text) = if let Some(message) = event.get("message") {
        let mid = id_of(message)?;
        if message.get("is_deleted").and_then(Value::as_bool) == Some(true) {
            tracing::info!(
                message_id = mid,
                contact = sender.unwrap_or_default(),
                "message unsent by the user; skipped"
            );
            return Ok(None);
        }
        let (kind, text) = render(message)?;
        (mid.to_owned(), kind, text)
    } else if let Some(edit) = event.get("message_edit") {
        let mid = id_of(edit)?;
        let count = edit.get("num_edit").and_then(json_i64).unwrap_or(1);
        if edit.get("text").is_some_and(|t| !t.is_string()) {
            return Err("message_edit.text is not a string");
        }
        let text = str_at(edit, &["text"]).unwrap_or_default();
        (
            format!("{mid}:edit:{count}"),
            MessageKind::Text,
            format!("[edited] {text}"),
        )
    } else if let Some(reaction) = event.get("reaction") {
        let mid = id_of(reaction)?;
        let action = str_at(reaction, &["action"]).unwrap_or("react");
        let timestamp = event.get("timestamp").and_then(json_i64).unwrap_or(0);
        let shown = str_at(reaction, &["emoji"])
            .or_else(|| str_at(reaction, &["reaction"]))
            .filter(|s| !s.is_empty());
        let text = match (action, shown) {
            ("unreact", _) => format!("[removed reaction from {mid}]"),
            (_, Some(shown)) => format!("[reacted {shown} to {mid}]"),
            (_, None) => format!("[reacted to {mid}]"),
        };
        (
            format!("{mid}:reaction:{action}:{timestamp}"),
            MessageKind::Reaction,
            text,
        )
    } else if let Some(postback) = event.get("postback") {
        let mid = id_of(postback)?;
        let payload = str_at(postback, &["payload"]).filter(|s| !s.is_empty());
        let title = str_at(postback, &["title"])
            .filter(|s| !s.is_empty())
            .or(payload)
            .unwrap_or("[button]");
        let text = payload.map_or_else(|| title.to_owned(), |id| choice_text(id, title));
        (mid.to_owned(), MessageKind::Choice, text)
    } else {
        let what = event
            .as_object()
            .and_then(|o| {
                o.keys()
                    .find(|k| !["sender", "recipient", "timestamp"].contains(&k.as_str()))
            })
            .map_or("unknown", String::as_str);
        tracing::debug!(event = what, "skipping messaging event");
        return Ok(None);
    };

    let contact = sender.ok_or("sender.id missing or not a string")?;
    let account = recipient.ok_or("recipient.id missing or not a string")?;
    let timestamp_ms = match event
        .get("timestamp")
        .and_then(json_i64)
        .and_then(|t| unix_ms(t, TimeUnit::Milliseconds))
    {
        Some(ms) => ms,
        None => {
            // Ordering it at arrival is better than losing it.
            tracing::warn!(
                message_id = %external_id,
                "event timestamp missing or invalid, using arrival time"
            );
            chrono::Utc::now().timestamp_millis()
        }
    };
    Ok(Some(InboundMessage {
        conversation: Conversation::new(ChannelKind::Instagram, account, contact),
        external_id,
        kind,
        text,
        timestamp_ms,
        contact_name: None,
        payload: event.clone(),
    }))
}

/// The `mid` of a message, edit, reaction or postback.
fn id_of(item: &Value) -> Result<&str, &'static str> {
    str_at(item, &["mid"])
        .filter(|s| !s.is_empty())
        .ok_or("mid missing or not a string")
}

/// The kind and readable text of a `message`; `Err` when its `text` is there but
/// not a string (what someone wrote, lost: rendered without it, it would be
/// answered as something else).
fn render(message: &Value) -> Result<(MessageKind, String), &'static str> {
    if message.get("is_unsupported").and_then(Value::as_bool) == Some(true) {
        return Ok((MessageKind::Unsupported, "[unsupported]".to_owned()));
    }
    if message.get("text").is_some_and(|t| !t.is_string()) {
        return Err("message.text is not a string");
    }
    let text = str_at(message, &["text"]).filter(|s| !s.is_empty());
    // A quick reply carries the tapped option's title as its text.
    if message.get("quick_reply").is_some() {
        let payload = str_at(message, &["quick_reply", "payload"]).filter(|s| !s.is_empty());
        let title = text.or(payload).unwrap_or("[quick reply]");
        let text = payload.map_or_else(|| title.to_owned(), |id| choice_text(id, title));
        return Ok((MessageKind::Choice, text));
    }
    let tags: Vec<String> = array(message, "attachments")
        .iter()
        .map(|a| attachment_tag(str_at(a, &["type"]).unwrap_or("attachment")))
        .collect();
    let story_reply = message.pointer("/reply_to/story").is_some();
    Ok(match (tags.is_empty(), text) {
        (true, Some(text)) if story_reply => (MessageKind::Text, format!("[story reply] {text}")),
        (true, Some(text)) => (MessageKind::Text, text.to_owned()),
        (false, text) => {
            let mut rendered = tags.join(" ");
            if let Some(text) = text {
                rendered.push(' ');
                rendered.push_str(text);
            }
            (MessageKind::Media, rendered)
        }
        (true, None) => (
            MessageKind::Unsupported,
            "[unsupported: empty message]".to_owned(),
        ),
    })
}

/// `[image]`, `[video]`, `[story mention]`... for an attachment type.
fn attachment_tag(kind: &str) -> String {
    match kind {
        "audio" => "[audio]".to_owned(),
        "ig_reel" | "reel" => "[reel]".to_owned(),
        "share" => "[shared post]".to_owned(),
        "story_mention" => "[story mention]".to_owned(),
        other => format!("[{}]", other.replace('_', " ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::test_server::fixture;
    use serde_json::json;

    const ACCOUNT: &str = "17841400000000001";
    const CUSTOMER: &str = "5512340000000001";
    const MID_PREFIX: &str = "aWdfbWVzc2FnZV9pdGVtOjE6SUdNZXNzYWdlVGhyZWFkOjE3ODQxNDAwMDAwMDAwMDAxOjM0MDI4MjM2NjkwMDAwMDAwMDAwMDAwMDAwMDAw";

    fn parse(name: &str) -> ParsedWebhook {
        parse_webhook(&fixture(&format!("instagram/{name}")))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn only(name: &str) -> InboundMessage {
        let parsed = parse(name);
        assert_eq!(parsed.messages.len(), 1, "{name}");
        assert_eq!((parsed.statuses, parsed.skipped), (0, 0), "{name}");
        let m = parsed.messages.into_iter().next().expect("one message");
        assert_eq!(
            m.conversation,
            Conversation::new(ChannelKind::Instagram, ACCOUNT, CUSTOMER),
            "{name}"
        );
        m
    }

    fn mid(n: u8) -> String {
        // The fixtures' mids differ only in their last base64 characters.
        let last = ["MQ", "Mg", "Mw", "NA", "NQ", "Ng", "Nw", "OA"][usize::from(n - 1)];
        format!("{MID_PREFIX}{last}")
    }

    #[test]
    fn a_text_parses_with_account_contact_mid_and_ms_time() {
        let m = only("text.json");
        assert_eq!(
            m.conversation.id(),
            "instagram:17841400000000001:5512340000000001"
        );
        assert_eq!(m.external_id, mid(1));
        assert_eq!(m.kind, MessageKind::Text);
        assert_eq!(m.text, "Hi, is the green jacket still in stock?");
        assert_eq!(m.timestamp_ms, 1_767_262_200_000);
        assert_eq!(m.contact_name, None);
    }

    #[test]
    fn the_payload_is_the_messaging_event() {
        let m = only("text.json");
        let root: Value = serde_json::from_slice(&fixture("instagram/text.json")).expect("json");
        assert_eq!(m.payload, root["entry"][0]["messaging"][0]);
    }

    #[test]
    fn two_entries_keep_their_order() {
        let parsed = parse("two_texts_one_post.json");
        let got: Vec<(&str, &str, i64)> = parsed
            .messages
            .iter()
            .map(|m| (m.external_id.as_str(), m.text.as_str(), m.timestamp_ms))
            .collect();
        let (two, three) = (mid(2), mid(3));
        assert_eq!(
            got,
            [
                (two.as_str(), "size M", 1_767_262_201_000),
                (
                    three.as_str(),
                    "and do you ship to Canada?",
                    1_767_262_201_800
                ),
            ]
        );
    }

    #[test]
    fn an_echo_of_our_own_message_is_skipped() {
        let parsed = parse("echo.json");
        assert!(parsed.messages.is_empty());
        assert_eq!((parsed.statuses, parsed.skipped), (0, 1));
    }

    #[test]
    fn an_echo_is_kept_as_our_message_to_the_contact() {
        let parsed = parse("echo.json");
        let [echo] = parsed.echoes.as_slice() else {
            panic!("one echo: {:?}", parsed.echoes);
        };
        assert_eq!(
            echo.message.conversation,
            Conversation::new(
                ChannelKind::Instagram,
                "17841400000000001",
                "5512340000000001"
            )
        );
        assert_eq!(echo.message.text, "Yes! Size M is in stock.");
        assert_eq!(echo.app_id, None);
    }

    #[test]
    fn an_image_is_media() {
        let m = only("image_attachment.json");
        assert_eq!(m.kind, MessageKind::Media);
        assert_eq!(m.text, "[image]");
        assert_eq!(m.external_id, mid(5));
    }

    #[test]
    fn a_reply_keeps_its_text() {
        let m = only("reply_to.json");
        assert_eq!(m.kind, MessageKind::Text);
        assert_eq!(m.text, "this one");
        assert_eq!(m.external_id, mid(6));
    }

    #[test]
    fn an_unsent_message_is_skipped() {
        let parsed = parse("deleted.json");
        assert!(parsed.messages.is_empty());
        assert_eq!((parsed.statuses, parsed.skipped), (0, 1));
    }

    #[test]
    fn an_unsupported_message_is_still_a_message() {
        let m = only("unsupported.json");
        assert_eq!(m.kind, MessageKind::Unsupported);
        assert_eq!(m.text, "[unsupported]");
        assert_eq!(m.external_id, mid(7));
    }

    #[test]
    fn a_reaction_names_the_emoji_and_the_message() {
        let m = only("reaction.json");
        assert_eq!(m.kind, MessageKind::Reaction);
        assert_eq!(m.text, format!("[reacted ❤️ to {}]", mid(4)));
        assert_eq!(
            m.external_id,
            format!("{}:reaction:react:1767262209000", mid(4))
        );
    }

    #[test]
    fn an_unreaction_names_the_message_and_has_an_id_of_its_own() {
        let m = only("unreaction.json");
        assert_eq!(m.kind, MessageKind::Reaction);
        assert_eq!(m.text, format!("[removed reaction from {}]", mid(4)));
        assert_eq!(
            m.external_id,
            format!("{}:reaction:unreact:1767262209500", mid(4))
        );
        assert_ne!(m.external_id, only("reaction.json").external_id);
    }

    #[test]
    fn a_read_event_is_a_status() {
        let parsed = parse("read.json");
        assert!(parsed.messages.is_empty());
        assert_eq!((parsed.statuses, parsed.skipped), (1, 0));
    }

    fn event_body(events: Value) -> Vec<u8> {
        json!({"object": "instagram", "entry": [{"id": ACCOUNT, "time": 1, "messaging": events}]})
            .to_string()
            .into_bytes()
    }

    fn event(fields: Value) -> Value {
        let mut event = json!({
            "sender": {"id": CUSTOMER}, "recipient": {"id": ACCOUNT}, "timestamp": 1767262200000i64
        });
        for (k, v) in fields.as_object().expect("object") {
            event[k] = v.clone();
        }
        event
    }

    #[test]
    fn quick_replies_postbacks_edits_and_story_replies_render() {
        let cases = [
            (
                json!({"message": {"mid": "m1", "text": "Track order", "quick_reply": {"payload": "TRACK"}}}),
                "m1",
                MessageKind::Choice,
                "[choice id=TRACK] Track order",
            ),
            (
                json!({"postback": {"mid": "m2", "title": "Talk to us", "payload": "START"}}),
                "m2",
                MessageKind::Choice,
                "[choice id=START] Talk to us",
            ),
            (
                json!({"message_edit": {"mid": "m3", "text": "size L", "num_edit": 2}}),
                "m3:edit:2",
                MessageKind::Text,
                "[edited] size L",
            ),
            (
                json!({"message": {"mid": "m4", "text": "love it", "reply_to": {"story": {"id": "s", "url": "u"}}}}),
                "m4",
                MessageKind::Text,
                "[story reply] love it",
            ),
            (
                json!({"message": {"mid": "m5", "text": "see", "attachments": [
                    {"type": "ig_reel", "payload": {}}, {"type": "image", "payload": {}}]}}),
                "m5",
                MessageKind::Media,
                "[reel] [image] see",
            ),
            (
                json!({"message": {"mid": "m6"}}),
                "m6",
                MessageKind::Unsupported,
                "[unsupported: empty message]",
            ),
        ];
        for (fields, id, kind, text) in cases {
            let parsed =
                parse_webhook(&event_body(json!([event(fields.clone())]))).expect("parsed");
            assert_eq!(parsed.messages.len(), 1, "{fields}");
            let m = &parsed.messages[0];
            assert_eq!(
                (m.external_id.as_str(), m.kind, m.text.as_str()),
                (id, kind, text),
                "{fields}"
            );
        }
    }

    #[test]
    fn a_broken_event_does_not_cost_the_good_one() {
        let good = json!({"message": {"mid": "good", "text": "hello"}});
        let body = event_body(json!([
            {"recipient": {"id": ACCOUNT}, "timestamp": 1, "message": {"mid": "no-sender", "text": "x"}},
            event(good),
            event(json!({"message": {"text": "no mid"}})),
            "not an object",
            event(json!({"referral": {"ref": "ad"}})),
        ]));
        let parsed = parse_webhook(&body).expect("parsed");
        assert_eq!(parsed.messages.len(), 1);
        assert_eq!(parsed.messages[0].text, "hello");
        assert_eq!(parsed.skipped, 4);
    }

    #[test]
    fn an_event_with_fields_of_the_wrong_type_is_skipped_and_its_neighbour_parsed() {
        let mut sender_number = event(json!({"message": {"mid": "sender-number", "text": "x"}}));
        sender_number["sender"]["id"] = json!(5512340000000001i64);
        let body = event_body(json!([
            sender_number,
            event(json!({"message": {"mid": "text-object", "text": {"body": "x"}}})),
            event(json!({"message": {"mid": 42, "text": "mid a number"}})),
            event(json!({"message_edit": {"mid": "edit-object", "text": ["x"]}})),
            event(json!({"message": {"mid": "good", "text": "hello"}})),
        ]));
        let parsed = parse_webhook(&body).expect("parsed");
        let ids: Vec<&str> = parsed
            .messages
            .iter()
            .map(|m| m.external_id.as_str())
            .collect();
        assert_eq!(ids, ["good"]);
        assert_eq!(parsed.skipped, 4);
    }

    #[test]
    fn a_lone_surrogate_is_read_as_the_replacement_character_and_its_neighbour_kept() {
        let body = event_body(json!([
            event(json!({"message": {"mid": "bad", "text": "LONE half"}})),
            event(json!({"message": {"mid": "good", "text": "hello"}})),
        ]));
        let body = String::from_utf8(body)
            .expect("utf-8")
            .replace("LONE", r"\udc00");
        let parsed = parse_webhook(body.as_bytes()).expect("parsed");
        let texts: Vec<&str> = parsed.messages.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["\u{FFFD} half", "hello"]);
    }

    #[test]
    fn a_timestamp_in_seconds_is_not_stored_in_1970() {
        let mut in_seconds = event(json!({"message": {"mid": "s", "text": "hi"}}));
        in_seconds["timestamp"] = json!(1767262200);
        let parsed = parse_webhook(&event_body(json!([in_seconds]))).expect("parsed");
        assert_eq!(parsed.messages[0].timestamp_ms, 1_767_262_200_000);
    }

    #[test]
    fn events_our_own_account_made_are_skipped() {
        let ours = |fields: Value| {
            let mut e = event(fields);
            e["sender"]["id"] = json!(ACCOUNT);
            e["recipient"]["id"] = json!(CUSTOMER);
            e
        };
        let body = event_body(json!([
            ours(json!({"reaction": {"mid": "m1", "action": "react", "emoji": "❤️"}})),
            ours(json!({"message_edit": {"mid": "m2", "text": "typo fixed", "num_edit": 1}})),
            event(json!({"message": {"mid": "m3", "text": "hello"}})),
        ]));
        let parsed = parse_webhook(&body).expect("parsed");
        assert_eq!(parsed.messages.len(), 1);
        assert_eq!(parsed.messages[0].text, "hello");
        assert_eq!(parsed.skipped, 2);
    }

    #[test]
    fn comment_changes_are_ignored() {
        let body = json!({"object": "instagram", "entry": [{"id": ACCOUNT, "time": 1,
            "changes": [{"field": "comments", "value": {"id": "c1", "text": "nice"}}]}]});
        let parsed = parse_webhook(body.to_string().as_bytes()).expect("parsed");
        assert!(parsed.messages.is_empty());
        assert_eq!((parsed.statuses, parsed.skipped), (0, 0));
    }

    #[test]
    fn a_wrong_object_is_a_shape_error() {
        for body in [
            &br#"{"object":"whatsapp_business_account","entry":[]}"#[..],
            br#"{"entry":[]}"#,
            br#"{"object":"instagram"}"#,
        ] {
            assert!(
                matches!(
                    parse_webhook(body),
                    Err(ParseError::Shape {
                        channel: ChannelKind::Instagram,
                        ..
                    })
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(matches!(parse_webhook(b"{"), Err(ParseError::Json(_))));
    }
}
