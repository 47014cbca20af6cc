-- A failed batch retried from the console: its messages were handed back to be
-- answered in a new batch, so it is retried once only.
ALTER TABLE reply_batches ADD COLUMN retried_at TIMESTAMPTZ;

-- The console's stats read a range of time: messages received, replies sent.
CREATE INDEX conversation_messages_received_in ON conversation_messages (webhook_received_at)
    WHERE direction = 'in';
CREATE INDEX reply_batches_sent_at ON reply_batches (sent_at) WHERE status = 'sent';
-- The failures list: newest failed batches first.
CREATE INDEX reply_batches_failed ON reply_batches (updated_at DESC) WHERE status = 'failed';
