-- What generating each reply cost (issue 18), for every responder: who wrote it,
-- the model, the tokens the API reported and the time it took; and how the batch
-- ended beyond its status: the responder asked for a human (handoff), or the
-- responder failed for good and FALLBACK_REPLY was sent instead (fallback).
-- All nullable or defaulted: adding them rewrites no row.
ALTER TABLE reply_batches
    ADD COLUMN responder         TEXT,
    ADD COLUMN model             TEXT,
    ADD COLUMN prompt_tokens     BIGINT,
    ADD COLUMN completion_tokens BIGINT,
    ADD COLUMN generation_ms     BIGINT,
    ADD COLUMN handoff           BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN fallback          BOOLEAN NOT NULL DEFAULT false;
