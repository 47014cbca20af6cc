//! One webhook body, one `Update`, into at most one [`InboundMessage`].
//!
//! `message` and `edited_message` are messages, and so is a `callback_query` (a tap
//! on an inline button: `callback.rs`). Every other update (membership changes, channel posts...) is acknowledged and counted in `statuses`, as
//! are service messages (someone joined, a message was pinned): nobody wrote anything
//! to answer. A message that lacks its ids is skipped with a log line; Telegram would
//! otherwise redeliver it, and every later update behind it, for hours.

use crate::channel::json::{TimeUnit, json_i64, parse_body, str_at, tagged, unix_ms};
use crate::channel::{ParseError, ParsedWebhook};
use crate::message::{ChannelKind, Conversation, InboundMessage, MessageKind};
use serde_json::Value;

/// Message fields that make it a service message rather than something someone wrote.
const SERVICE_FIELDS: &[&str] = &[
    "new_chat_members",
    "left_chat_member",
    "new_chat_title",
    "new_chat_photo",
    "delete_chat_photo",
    "group_chat_created",
    "supergroup_chat_created",
    "channel_chat_created",
    "message_auto_delete_timer_changed",
    "migrate_to_chat_id",
    "migrate_from_chat_id",
    "pinned_message",
    "successful_payment",
    "refunded_payment",
    "users_shared",
    "chat_shared",
    "connected_website",
    "write_access_allowed",
    "proximity_alert_triggered",
    "boost_added",
    "chat_background_set",
    "forum_topic_created",
    "forum_topic_edited",
    "forum_topic_closed",
    "forum_topic_reopened",
    "general_forum_topic_hidden",
    "general_forum_topic_unhidden",
    "giveaway_created",
    "giveaway_completed",
    "video_chat_scheduled",
    "video_chat_started",
    "video_chat_ended",
    "video_chat_participants_invited",
];

/// Message fields that describe a message rather than hold its content.
const META_FIELDS: &[&str] = &[
    "message_id",
    "message_thread_id",
    "from",
    "sender_chat",
    "sender_boost_count",
    "sender_business_bot",
    "date",
    "edit_date",
    "business_connection_id",
    "chat",
    "forward_origin",
    "is_topic_message",
    "is_automatic_forward",
    "reply_to_message",
    "external_reply",
    "quote",
    "reply_to_story",
    "via_bot",
    "has_protected_content",
    "is_from_offline",
    "media_group_id",
    "author_signature",
    "entities",
    "caption",
    "caption_entities",
    "show_caption_above_media",
    "has_media_spoiler",
    "link_preview_options",
    "effect_id",
    "reply_markup",
];

/// Parses one `Update`; `bot` is our account (the bot id) for the conversation and
/// the external id.
pub(super) fn parse_update(body: &[u8], bot: &str) -> Result<ParsedWebhook, ParseError> {
    // A lone surrogate escape is read as U+FFFD rather than refusing the update.
    let root = parse_body(body)?;
    let shape = |reason: &str| ParseError::Shape {
        channel: ChannelKind::Telegram,
        reason: reason.to_owned(),
    };
    if !root.is_object() {
        return Err(shape("body is not an Update object"));
    }
    let update_id = root
        .get("update_id")
        .and_then(json_i64)
        .ok_or_else(|| shape("no update_id"))?;

    let mut parsed = ParsedWebhook::default();
    if let Some(query) = root.get("callback_query") {
        return Ok(parse_callback_query(query, bot, &root, update_id, parsed));
    }
    let (message, edited) = match (root.get("message"), root.get("edited_message")) {
        (Some(message), _) => (message, false),
        (None, Some(message)) => (message, true),
        (None, None) => {
            let kind = root
                .as_object()
                .and_then(|o| o.keys().find(|k| *k != "update_id"))
                .map_or("empty", String::as_str);
            tracing::debug!(update_id, kind, "update without a message acknowledged");
            parsed.statuses += 1;
            return Ok(parsed);
        }
    };
    match parse_message(message, edited, bot, &root) {
        Ok(Some(inbound)) => parsed.messages.push(inbound),
        Ok(None) => {
            tracing::debug!(update_id, "service message acknowledged");
            parsed.statuses += 1;
        }
        Err(reason) => {
            let message_id = message.get("message_id").and_then(json_i64);
            tracing::warn!(
                update_id,
                message_id,
                channel = ChannelKind::Telegram.as_str(),
                reason,
                "skipping malformed message"
            );
            parsed.skipped += 1;
        }
    }
    Ok(parsed)
}

/// A tap on an inline button: a menu choice, and a query to answer, when it was
/// made in a chat (see `callback.rs`). One without its message comes from an
/// inline-mode message, which lull never sends: not ours to answer.
fn parse_callback_query(
    query: &Value,
    bot: &str,
    root: &Value,
    update_id: i64,
    mut parsed: ParsedWebhook,
) -> ParsedWebhook {
    match super::callback::parse_callback(query, bot, root) {
        Ok(Some(choice)) => {
            if let Some(id) = str_at(query, &["id"]) {
                parsed.callbacks.push(id.to_owned());
            }
            parsed.messages.push(choice);
        }
        Ok(None) => parsed.statuses += 1,
        Err(reason) => {
            tracing::warn!(
                update_id,
                channel = "telegram",
                reason,
                "skipping malformed callback query"
            );
            parsed.skipped += 1;
        }
    }
    parsed
}

/// A `message` or `edited_message`; `Ok(None)` for a service message, `Err` names what
/// is missing.
///
/// An edit is a message of its own (`{bot}:{chat}:{id}:edit:{edit_date}`, text
/// prefixed `[edited] `) dated when it was edited, so it joins the burst it was
/// typed in rather than the original's.
fn parse_message(
    message: &Value,
    edited: bool,
    bot: &str,
    update: &Value,
) -> Result<Option<InboundMessage>, &'static str> {
    if !message.is_object() {
        return Err("message is not an object");
    }
    let message_id = message
        .get("message_id")
        .and_then(json_i64)
        .ok_or("message_id missing or not an integer")?;
    let chat = message
        .pointer("/chat/id")
        .and_then(json_i64)
        .ok_or("chat.id missing or not an integer")?;
    // What someone wrote, in a shape no client sends: rendered, it would be answered
    // as something else (an unsupported message, a photo without its caption).
    if message.get("text").is_some_and(|v| !v.is_string()) {
        return Err("text is not a string");
    }
    if message.get("caption").is_some_and(|v| !v.is_string()) {
        return Err("caption is not a string");
    }
    let edit_date = if edited {
        Some(
            message
                .get("edit_date")
                .and_then(json_i64)
                .ok_or("edited message without edit_date")?,
        )
    } else {
        None
    };
    // An edit is worth answering when its words changed. Telegram also sends an
    // edited_message for every move of a live location (for up to 8 hours) and
    // for changes to fields a bot does not use: as messages, each would open a
    // batch and get a reply of its own.
    if edited && message.get("text").is_none() && message.get("caption").is_none() {
        return Ok(None);
    }
    // A channel's post, copied into its linked discussion group by Telegram: the
    // channel's, not a person's to answer.
    if message.get("is_automatic_forward").and_then(Value::as_bool) == Some(true) {
        return Ok(None);
    }
    let Some((kind, text)) = render(message) else {
        return Ok(None);
    };
    let (external_id, text) = match edit_date {
        Some(at) => (
            format!("{bot}:{chat}:{message_id}:edit:{at}"),
            format!("[edited] {text}"),
        ),
        None => (format!("{bot}:{chat}:{message_id}"), text),
    };
    let date = edit_date.or_else(|| message.get("date").and_then(json_i64));
    let timestamp_ms = match date.and_then(|d| unix_ms(d, TimeUnit::Seconds)) {
        Some(ms) => ms,
        None => {
            // Ordering it at arrival is better than losing it.
            tracing::warn!(
                message_id = %external_id,
                "message date missing or invalid, using arrival time"
            );
            chrono::Utc::now().timestamp_millis()
        }
    };
    // A topic of a forum supergroup is a conversation of its own, answered in that
    // topic (send.rs passes it on as message_thread_id). In other chats the thread
    // id only names a reply thread, which stays in its chat's conversation.
    let topic = (message.get("is_topic_message").and_then(Value::as_bool) == Some(true))
        .then(|| message.get("message_thread_id").and_then(json_i64))
        .flatten();
    let contact = match topic {
        Some(topic) => format!("{chat}/{topic}"),
        None => chat.to_string(),
    };
    Ok(Some(InboundMessage {
        conversation: Conversation::new(ChannelKind::Telegram, bot, contact),
        external_id,
        kind,
        text,
        timestamp_ms,
        contact_name: contact_name(message),
        payload: update.clone(),
    }))
}

/// The sender's name (`first last`, else `@username`), else the group's title.
fn contact_name(message: &Value) -> Option<String> {
    let get = |path: &[&str]| str_at(message, path).filter(|s| !s.is_empty());
    let full = [get(&["from", "first_name"]), get(&["from", "last_name"])]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    if !full.is_empty() {
        return Some(full);
    }
    get(&["from", "username"])
        .map(|u| format!("@{u}"))
        .or_else(|| get(&["chat", "title"]).map(str::to_owned))
}

/// The kind and readable text of a message; `None` for a service message. Commands
/// (`/start`) are text: the responder decides what they mean.
fn render(message: &Value) -> Option<(MessageKind, String)> {
    let get = |path: &[&str]| str_at(message, path).filter(|s| !s.is_empty());
    let has = |field: &str| message.get(field).is_some_and(|v| !v.is_null());
    if let Some(text) = get(&["text"]) {
        return Some((MessageKind::Text, text.to_owned()));
    }
    let caption = get(&["caption"]);
    let media = |tag: String| Some((MessageKind::Media, tagged(&tag, caption)));
    // An animation also carries a `document` (for old clients): test it first.
    if has("animation") {
        return media("[animation]".into());
    }
    if has("photo") {
        return media("[photo]".into());
    }
    if has("video") {
        return media("[video]".into());
    }
    if has("video_note") {
        return media("[video note]".into());
    }
    if has("voice") {
        return media("[voice message]".into());
    }
    if has("audio") {
        let title = get(&["audio", "title"]).or_else(|| get(&["audio", "file_name"]));
        return media(tagged("[audio", title) + "]");
    }
    if has("document") {
        return media(tagged("[document", get(&["document", "file_name"])) + "]");
    }
    if has("sticker") {
        let emoji = get(&["sticker", "emoji"]);
        return Some((MessageKind::Media, tagged("[sticker]", emoji)));
    }
    // A venue carries its location too: test it first.
    if has("venue") {
        let place: Vec<&str> = [get(&["venue", "title"]), get(&["venue", "address"])]
            .into_iter()
            .flatten()
            .collect();
        let mut text = "[location]".to_owned();
        if !place.is_empty() {
            text = format!("{text} {}", place.join(", "));
        }
        return Some((
            MessageKind::Location,
            text + &coordinates(message, "/venue/location"),
        ));
    }
    if has("location") {
        return Some((
            MessageKind::Location,
            format!("[location]{}", coordinates(message, "/location")),
        ));
    }
    if has("contact") {
        let card: Vec<&str> = [
            get(&["contact", "first_name"]),
            get(&["contact", "last_name"]),
            get(&["contact", "phone_number"]),
        ]
        .into_iter()
        .flatten()
        .collect();
        return Some((
            MessageKind::Contacts,
            tagged(
                "[contact]",
                Some(card.join(" ").as_str()).filter(|c| !c.is_empty()),
            ),
        ));
    }
    if SERVICE_FIELDS.iter().any(|f| has(f)) {
        return None;
    }
    // Polls, dice, games, stories...: someone sent something lull cannot render.
    let what = message
        .as_object()
        .and_then(|o| o.keys().find(|k| !META_FIELDS.contains(&k.as_str())))
        .map_or("unknown", String::as_str);
    Some((MessageKind::Unsupported, format!("[unsupported: {what}]")))
}

/// ` (lat, lon)` of the location object at `pointer`, or nothing.
fn coordinates(message: &Value, pointer: &str) -> String {
    let at = |k: &str| {
        message
            .pointer(&format!("{pointer}/{k}"))
            .and_then(Value::as_f64)
    };
    match (at("latitude"), at("longitude")) {
        (Some(lat), Some(lon)) => format!(" ({lat}, {lon})"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::test_server::fixture;

    const BOT: &str = "7000000001";
    const MARIA_CHAT: &str = "123456789";

    fn parse(name: &str) -> ParsedWebhook {
        parse_update(&fixture(&format!("telegram/{name}")), BOT)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn only(name: &str) -> InboundMessage {
        let parsed = parse(name);
        assert_eq!(parsed.messages.len(), 1, "{name}");
        assert_eq!((parsed.statuses, parsed.skipped), (0, 0), "{name}");
        parsed.messages.into_iter().next().expect("one message")
    }

    #[test]
    fn a_text_update_parses_with_bot_chat_id_name_and_time() {
        let m = only("text_update.json");
        assert_eq!(m.conversation.id(), "telegram:7000000001:123456789");
        assert_eq!(m.external_id, "7000000001:123456789:51");
        assert_eq!(m.kind, MessageKind::Text);
        assert_eq!(m.text, "Hi, do you deliver to Austin?");
        assert_eq!(m.timestamp_ms, 1_767_262_500_000);
        assert_eq!(m.contact_name.as_deref(), Some("Maria Lopez"));
    }

    #[test]
    fn the_payload_is_the_whole_update() {
        let m = only("text_update.json");
        let update: Value =
            serde_json::from_slice(&fixture("telegram/text_update.json")).expect("json");
        assert_eq!(m.payload, update);
        assert_eq!(m.payload["update_id"], 815000001);
    }

    #[test]
    fn the_next_update_is_the_next_message_of_the_same_chat() {
        let first = only("text_update.json");
        let next = only("text_update_next.json");
        assert_eq!(next.conversation, first.conversation);
        assert_eq!(next.external_id, "7000000001:123456789:52");
        assert_eq!(next.text, "order #A-1042");
        assert_eq!(next.timestamp_ms - first.timestamp_ms, 2000);
    }

    #[test]
    fn a_start_command_is_text() {
        let m = only("command_start_update.json");
        assert_eq!(m.kind, MessageKind::Text);
        assert_eq!(m.text, "/start");
        assert_eq!(m.external_id, "7000000001:123456789:53");
    }

    #[test]
    fn a_photo_renders_its_caption() {
        let m = only("photo_caption_update.json");
        assert_eq!(m.kind, MessageKind::Media);
        assert_eq!(m.text, "[photo] the damaged box");
        assert_eq!(m.timestamp_ms, 1_767_262_509_000);
    }

    #[test]
    fn an_edit_is_a_message_of_its_own_dated_when_edited() {
        let m = only("edited_message_update.json");
        assert_eq!(m.external_id, "7000000001:123456789:52:edit:1767262520");
        assert_eq!(m.kind, MessageKind::Text);
        assert_eq!(m.text, "[edited] order #A-1042 (blue lamp)");
        assert_eq!(m.timestamp_ms, 1_767_262_520_000);
        assert_eq!(m.conversation.contact, MARIA_CHAT);
        assert_ne!(m.external_id, only("text_update_next.json").external_id);
    }

    #[test]
    fn a_group_is_one_conversation_with_a_negative_chat_id() {
        let m = only("group_text_update.json");
        assert_eq!(m.conversation.contact, "-1001234567890");
        assert_eq!(m.external_id, "7000000001:-1001234567890:1207");
        assert_eq!(m.text, "@example_shop_bot what are your hours?");
        assert_eq!(m.contact_name.as_deref(), Some("Ken"));
    }

    #[test]
    fn a_forum_topic_is_a_conversation_of_its_own_and_a_reply_thread_is_not() {
        let in_group = |extra: Value| {
            let mut message = serde_json::json!({
                "message_id": 1300, "date": 1767262500, "text": "is the shop open?",
                "chat": {"id": -1001234567890i64, "type": "supergroup", "is_forum": true}
            });
            for (k, v) in extra.as_object().expect("object") {
                message[k] = v.clone();
            }
            let parsed = parse_update(&with_message(message), BOT).expect("parsed");
            parsed.messages.into_iter().next().expect("one message")
        };
        let topic = in_group(serde_json::json!({"message_thread_id": 7, "is_topic_message": true}));
        assert_eq!(topic.conversation.contact, "-1001234567890/7");
        assert_eq!(topic.external_id, "7000000001:-1001234567890:1300");
        let reply_thread = in_group(serde_json::json!({"message_thread_id": 1200}));
        assert_eq!(reply_thread.conversation.contact, "-1001234567890");
    }

    #[test]
    fn the_same_message_id_in_two_chats_gives_two_ids() {
        let mut update: Value =
            serde_json::from_slice(&fixture("telegram/text_update.json")).expect("json");
        update["message"]["chat"]["id"] = serde_json::json!(-1001234567890i64);
        let other = parse_update(&serde_json::to_vec(&update).expect("json"), BOT)
            .expect("parsed")
            .messages
            .remove(0);
        let first = only("text_update.json");
        assert_ne!(first.external_id, other.external_id);
        assert_ne!(first.conversation, other.conversation);
    }

    #[test]
    fn without_a_bot_token_the_account_is_dry_run() {
        let parsed =
            parse_update(&fixture("telegram/text_update.json"), "dry-run").expect("parsed");
        assert_eq!(
            parsed.messages[0].conversation.id(),
            "telegram:dry-run:123456789"
        );
        assert_eq!(parsed.messages[0].external_id, "dry-run:123456789:51");
    }

    fn with_message(message: Value) -> Vec<u8> {
        serde_json::json!({"update_id": 1, "message": message})
            .to_string()
            .into_bytes()
    }

    fn render_one(fields: Value) -> (MessageKind, String) {
        let mut message = serde_json::json!({
            "message_id": 9, "date": 1767262500, "chat": {"id": 5, "type": "private"}
        });
        for (k, v) in fields.as_object().expect("object") {
            message[k] = v.clone();
        }
        let m = parse_update(&with_message(message), BOT)
            .expect("parsed")
            .messages
            .remove(0);
        (m.kind, m.text)
    }

    #[test]
    fn media_locations_and_contacts_render_readably() {
        use serde_json::json;
        let cases = [
            (
                json!({"voice": {"file_id": "v"}}),
                MessageKind::Media,
                "[voice message]",
            ),
            (
                json!({"document": {"file_name": "invoice.pdf"}, "caption": "my invoice"}),
                MessageKind::Media,
                "[document invoice.pdf] my invoice",
            ),
            (
                json!({"animation": {"file_id": "a"}, "document": {"file_id": "a"}}),
                MessageKind::Media,
                "[animation]",
            ),
            (
                json!({"video": {}, "caption": "look"}),
                MessageKind::Media,
                "[video] look",
            ),
            (
                json!({"sticker": {"emoji": "😀"}}),
                MessageKind::Media,
                "[sticker] 😀",
            ),
            (
                json!({"location": {"latitude": 30.2672, "longitude": -97.7431}}),
                MessageKind::Location,
                "[location] (30.2672, -97.7431)",
            ),
            (
                json!({"venue": {"title": "Front desk", "address": "500 Congress Ave",
                       "location": {"latitude": 1.5, "longitude": 2.5}},
                       "location": {"latitude": 1.5, "longitude": 2.5}}),
                MessageKind::Location,
                "[location] Front desk, 500 Congress Ave (1.5, 2.5)",
            ),
            (
                json!({"contact": {"first_name": "Luis", "phone_number": "+15550004444"}}),
                MessageKind::Contacts,
                "[contact] Luis +15550004444",
            ),
            (
                json!({"poll": {"question": "?"}}),
                MessageKind::Unsupported,
                "[unsupported: poll]",
            ),
            (
                json!({}),
                MessageKind::Unsupported,
                "[unsupported: unknown]",
            ),
        ];
        for (fields, kind, text) in cases {
            assert_eq!(
                render_one(fields.clone()),
                (kind, text.to_owned()),
                "{fields}"
            );
        }
    }

    #[test]
    fn updates_without_a_message_are_statuses() {
        for body in [
            r#"{"update_id": 2, "callback_query": {"id": "1", "data": "x"}}"#,
            r#"{"update_id": 3, "my_chat_member": {"chat": {"id": 5}}}"#,
            r#"{"update_id": 4}"#,
        ] {
            let parsed = parse_update(body.as_bytes(), BOT).expect("parsed");
            assert!(parsed.messages.is_empty(), "{body}");
            assert_eq!((parsed.statuses, parsed.skipped), (1, 0), "{body}");
        }
    }

    #[test]
    fn a_live_location_moving_is_a_status_not_a_message_each_time() {
        let body = serde_json::json!({"update_id": 7, "edited_message": {
            "message_id": 60, "date": 1767262500, "edit_date": 1767262530,
            "chat": {"id": 123456789, "type": "private"},
            "location": {"latitude": 30.27, "longitude": -97.74, "live_period": 900}
        }});
        let parsed = parse_update(body.to_string().as_bytes(), BOT).expect("parsed");
        assert!(parsed.messages.is_empty());
        assert_eq!((parsed.statuses, parsed.skipped), (1, 0));
    }

    #[test]
    fn an_edited_caption_is_a_message() {
        let body = serde_json::json!({"update_id": 8, "edited_message": {
            "message_id": 61, "date": 1767262500, "edit_date": 1767262540,
            "chat": {"id": 123456789, "type": "private"},
            "photo": [{"file_id": "x", "width": 90, "height": 90}], "caption": "the blue one"
        }});
        let parsed = parse_update(body.to_string().as_bytes(), BOT).expect("parsed");
        assert_eq!(parsed.messages.len(), 1);
        assert_eq!(parsed.messages[0].text, "[edited] [photo] the blue one");
    }

    #[test]
    fn a_channel_post_forwarded_into_its_discussion_group_is_a_status() {
        let body = with_message(serde_json::json!({
            "message_id": 10, "date": 1767262500, "chat": {"id": -1001234567890i64, "type": "supergroup"},
            "is_automatic_forward": true, "text": "New lamps in stock!"
        }));
        let parsed = parse_update(&body, BOT).expect("parsed");
        assert!(parsed.messages.is_empty());
        assert_eq!(parsed.statuses, 1);
    }

    #[test]
    fn service_messages_are_statuses() {
        let body = with_message(serde_json::json!({
            "message_id": 9, "date": 1767262500, "chat": {"id": -5, "type": "group"},
            "new_chat_members": [{"id": 1, "is_bot": false, "first_name": "A"}]
        }));
        let parsed = parse_update(&body, BOT).expect("parsed");
        assert!(parsed.messages.is_empty());
        assert_eq!(parsed.statuses, 1);
    }

    #[test]
    fn a_message_without_ids_is_skipped_not_refused() {
        for message in [
            serde_json::json!({"date": 1, "chat": {"id": 5}, "text": "no id"}),
            serde_json::json!({"message_id": 1, "date": 1, "text": "no chat"}),
            serde_json::json!("not an object"),
        ] {
            let parsed = parse_update(&with_message(message.clone()), BOT).expect("parsed");
            assert!(parsed.messages.is_empty(), "{message}");
            assert_eq!(parsed.skipped, 1, "{message}");
        }
        let edit = serde_json::json!({"update_id": 1, "edited_message":
            {"message_id": 1, "date": 1, "chat": {"id": 5}, "text": "no edit_date"}});
        let parsed = parse_update(edit.to_string().as_bytes(), BOT).expect("parsed");
        assert_eq!(parsed.skipped, 1);
    }

    #[test]
    fn a_message_with_fields_of_the_wrong_type_is_skipped_not_refused() {
        // One update per POST: its neighbours are the updates Telegram sends after
        // it, which a refusal would hold back.
        for message in [
            serde_json::json!({"message_id": 1, "date": 1, "chat": {"id": 5}, "text": {"t": "x"}}),
            serde_json::json!({"message_id": 1, "date": 1, "chat": {"id": 5},
                               "photo": [], "caption": 7}),
            serde_json::json!({"message_id": {}, "date": 1, "chat": {"id": 5}, "text": "x"}),
            serde_json::json!({"message_id": 1, "date": 1, "chat": {"id": "five"}, "text": "x"}),
        ] {
            let parsed = parse_update(&with_message(message.clone()), BOT).expect("parsed");
            assert!(parsed.messages.is_empty(), "{message}");
            assert_eq!(parsed.skipped, 1, "{message}");
        }
        let good = serde_json::json!({"message_id": 2, "date": 1, "chat": {"id": 5}, "text": "x"});
        let parsed = parse_update(&with_message(good), BOT).expect("parsed");
        assert_eq!(parsed.messages.len(), 1);
    }

    #[test]
    fn a_lone_surrogate_is_read_as_the_replacement_character() {
        let body = br#"{"update_id": 1, "message": {"message_id": 1, "date": 1767262500,
            "chat": {"id": 5}, "text": "half \ud83d", "from": {"first_name": "\udc00"}}}"#;
        let m = parse_update(body, BOT).expect("parsed").messages.remove(0);
        assert_eq!(m.text, "half \u{FFFD}");
        assert_eq!(m.contact_name.as_deref(), Some("\u{FFFD}"));
    }

    #[test]
    fn a_date_in_milliseconds_is_recognised() {
        let body = with_message(serde_json::json!(
            {"message_id": 1, "date": 1767262500123i64, "chat": {"id": 5}, "text": "x"}));
        let m = parse_update(&body, BOT).expect("parsed").messages.remove(0);
        assert_eq!(m.timestamp_ms, 1_767_262_500_123);
    }

    #[test]
    fn a_missing_date_falls_back_to_arrival_time() {
        let body =
            with_message(serde_json::json!({"message_id": 1, "chat": {"id": 5}, "text": "x"}));
        let before = chrono::Utc::now().timestamp_millis();
        let m = parse_update(&body, BOT).expect("parsed").messages.remove(0);
        assert!(m.timestamp_ms >= before);
    }

    #[test]
    fn bodies_that_are_not_updates_are_refused() {
        assert!(matches!(
            parse_update(b"update_id=1", BOT),
            Err(ParseError::Json(_))
        ));
        for body in [
            &b"[]"[..],
            br#"{"message": {}}"#,
            br#"{"object":"instagram"}"#,
        ] {
            assert!(
                matches!(
                    parse_update(body, BOT),
                    Err(ParseError::Shape {
                        channel: ChannelKind::Telegram,
                        ..
                    })
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
