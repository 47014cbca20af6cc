-- Erasing data (issue 20): one person's on request, everyone's after RETENTION_DAYS.
--
-- Forgetting a conversation deletes its reply batches by (channel, account, contact):
-- 0004 dropped the index that led with them, and without one each forget reads
-- every batch ever made. Without claimed_at it is only written when a batch row
-- is first inserted: updates do not change these columns.
CREATE INDEX reply_batches_contact ON reply_batches (channel, account_id, contact_id);

-- Retention erases texts and payloads older than a cut-off, a thousand rows per
-- statement. These partial indexes hold only rows that still have something to
-- erase, so each pass reads what is left to do rather than every erased row again,
-- and an erased row leaves the index. The cost: one more index entry per stored
-- message and per reply text, also when retention is off.
CREATE INDEX conversation_messages_unerased ON conversation_messages (webhook_received_at)
    WHERE text <> '' OR webhook_payload IS NOT NULL;
CREATE INDEX reply_batches_unerased ON reply_batches (claimed_at)
    WHERE reply_text IS NOT NULL;
