-- The admin page lists the newest batches (ORDER BY claimed_at DESC LIMIT 200) every
-- 2 s while it is open. Without an index on claimed_at that is a scan and sort of
-- every batch ever made: 234 ms at 2,000,000 batches on the benchmark machine, and
-- growing with the table. The conversation index it replaces served no query of
-- lull's (a conversation's messages and replies are read from conversation_messages,
-- whose batch_id leads to the batch) and cost two index entries per reply.
-- Building the index locks writes to reply_batches (replies wait; webhooks do not):
-- 0.6 s for 2,000,000 batches.
CREATE INDEX reply_batches_recent ON reply_batches (claimed_at DESC);
DROP INDEX reply_batches_conversation;
