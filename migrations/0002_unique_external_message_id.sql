-- The unique key on a message's platform id takes the seed's name, so that the
-- seed's tools and queries that name it keep working. Still per channel: Telegram's
-- ids repeat across chats. Renaming the constraint renames its index too.
ALTER TABLE conversation_messages
    RENAME CONSTRAINT conversation_messages_external_message_id_key TO unique_external_message_id;
