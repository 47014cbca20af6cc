-- Ordering after a fault (issue 19): at commit-to-send a batch also takes its
-- conversation's older messages that no batch owns (Redis lost them, or a crash
-- kept them from it), so that one reply answers them all in platform order.
--
-- The lookup is per batch: the conversation, then platform order up to the
-- batch's newest message. Only messages nobody owns are in this index, so in the
-- common case (none older) it holds just the batch's own messages, and an entry
-- costs only its insert: setting batch_id takes the row out of the predicate.
CREATE INDEX conversation_messages_unowned
    ON conversation_messages (channel, account_id, contact_id, platform_timestamp, id)
    WHERE direction = 'in' AND answerable AND batch_id IS NULL;
