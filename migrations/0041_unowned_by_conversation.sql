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

-- The reconciler now reads unowned messages in this index's order (conversation,
-- then platform order), so the older index on webhook_received_at with the same
-- predicate has no reader left. Keeping it was worse than useless: with
-- statistics older than a burst of inserts, the planner took it for the lookup
-- above and scanned every unowned message once per batch (drain fell from about
-- 3,000 to 170 replies/s in `cargo bench --bench drain`).
DROP INDEX conversation_messages_unanswered;
