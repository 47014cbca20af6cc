-- The contact's profile name as the platform gave it with a message (WhatsApp's
-- contacts[].profile.name, Telegram's first and last name; Instagram gives none).
-- The HTTP responder passes the newest one to the bot. Nullable, no default: the
-- column is added without rewriting the table.
ALTER TABLE conversation_messages ADD COLUMN contact_name TEXT;
