-- A batch whose messages are past the channel's reply window (WhatsApp and
-- Instagram refuse a reply more than 24 h after the person's last message) is
-- closed as 'expired': it owns its messages and sends nothing.
--
-- NOT VALID, then VALIDATE: the new CHECK is added without scanning the table
-- under an exclusive lock; the validation scans it under a lock that lets
-- webhooks and replies through.
ALTER TABLE reply_batches DROP CONSTRAINT reply_batches_status_check;
ALTER TABLE reply_batches ADD CONSTRAINT reply_batches_status_check
    CHECK (status IN ('generating', 'sending', 'sent', 'failed', 'dropped', 'expired')) NOT VALID;
ALTER TABLE reply_batches VALIDATE CONSTRAINT reply_batches_status_check;
