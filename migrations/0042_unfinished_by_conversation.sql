-- A conversation's batches in flight (being generated or sent), by conversation:
-- commit-to-send looks here for an unfinished batch that must be answered before
-- the one committing (src/store/batches.rs, commit_batches). Only in-flight rows
-- are in it, so the lookup reads nothing for the conversations that have none.
CREATE INDEX reply_batches_unfinished ON reply_batches (channel, account_id, contact_id)
    WHERE status IN ('generating', 'sending');
