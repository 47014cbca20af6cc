-- The console's actions (flush, pause, resume, retry, drop), with who took them:
-- the label of the ADMIN_TOKEN pair that was used, "loopback" without a token, or
-- "cli:<user>" for the command line. Shown in the console; kept like the messages
-- it names (forgetting a conversation deletes its rows).
CREATE TABLE console_actions (
    id           BIGSERIAL PRIMARY KEY,
    at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    conversation TEXT COLLATE "C" NOT NULL,
    batch_id     TEXT COLLATE "C",
    -- done: it changed something; refused: it did not apply (the reason in detail)
    outcome      TEXT NOT NULL CHECK (outcome IN ('done', 'refused')),
    detail       TEXT NOT NULL DEFAULT ''
);

CREATE INDEX console_actions_recent ON console_actions (at DESC);
CREATE INDEX console_actions_conversation ON console_actions (conversation, at DESC);
