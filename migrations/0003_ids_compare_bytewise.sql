-- Ids and the other key columns compare byte for byte (collation "C"). Under the
-- database's own collation every index lookup on them went through the locale's
-- string comparison: in PostgreSQL's Docker image (en_US.utf8) that is strcoll,
-- several times the cost of memcmp, on the hottest indexes (the unique key
-- ingest checks, the batch key each reply updates, the history index). Ids have no
-- linguistic order to keep, and a "C" index cannot be broken by an upgrade of the C
-- library's collation rules. Only the indexes are rebuilt: the rows stay as they are.

ALTER TABLE reply_batches
    ALTER COLUMN id         TYPE TEXT COLLATE "C",
    ALTER COLUMN channel    TYPE TEXT COLLATE "C",
    ALTER COLUMN account_id TYPE TEXT COLLATE "C",
    ALTER COLUMN contact_id TYPE TEXT COLLATE "C",
    ALTER COLUMN status     TYPE TEXT COLLATE "C";

ALTER TABLE conversation_messages
    ALTER COLUMN channel             TYPE TEXT COLLATE "C",
    ALTER COLUMN account_id          TYPE TEXT COLLATE "C",
    ALTER COLUMN contact_id          TYPE TEXT COLLATE "C",
    ALTER COLUMN external_message_id TYPE TEXT COLLATE "C",
    ALTER COLUMN batch_id            TYPE TEXT COLLATE "C";
