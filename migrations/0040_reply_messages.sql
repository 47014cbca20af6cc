-- Rich replies (issue 18): a reply is one or more messages (text, buttons, a list,
-- media by URL). The batch keeps them as committed, so that a resume after a crash
-- renders the same parts and sends those not recorded in platform_message_ids.
-- NULL: a text reply, whose messages are its reply_text alone (every batch
-- committed before this column, and text replies still).
ALTER TABLE reply_batches ADD COLUMN reply_messages JSONB;
