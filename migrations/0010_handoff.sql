-- Handoff (issue 17): a conversation is answered by the bot or by a human agent.
--
-- One row per conversation ever paused; no row means `bot`. The row is the record
-- of the last pause (who, when, why, until when) and of its resume. Redis mirrors
-- `human` in the conversation's `mode` key for the scripts; after Redis loses its
-- data the mode comes back from here (hydrate), and commit-to-send reads it, so
-- nothing is sent while a human has the conversation.
CREATE TABLE conversation_modes (
    channel         TEXT COLLATE "C" NOT NULL,
    account_id      TEXT COLLATE "C" NOT NULL,
    contact_id      TEXT COLLATE "C" NOT NULL,
    mode            TEXT NOT NULL CHECK (mode IN ('bot', 'human')),
    paused_by       TEXT,
    paused_at       TIMESTAMPTZ,
    pause_trigger   TEXT,
    reason          TEXT,
    paused_until    TIMESTAMPTZ,                -- an operator's pause for N minutes
    last_agent_at   TIMESTAMPTZ,                -- the human agent's last message
    resumed_by      TEXT,
    resumed_at      TIMESTAMPTZ,
    resume_trigger  TEXT,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, account_id, contact_id)
);
-- the idle resumer's question, and the paused gauge
CREATE INDEX conversation_modes_human ON conversation_modes (paused_at) WHERE mode = 'human';

-- Who wrote an outbound message: NULL for the bot's replies, 'agent' for a human
-- agent's message seen as an echo (a history entry shown as an assistant turn).
ALTER TABLE conversation_messages ADD COLUMN author TEXT;

-- human: the messages a human agent handled while the bot was paused. Such a batch
-- owns them (batch_id) so the bot never answers them; it sends nothing.
ALTER TABLE reply_batches DROP CONSTRAINT reply_batches_status_check;
ALTER TABLE reply_batches ADD CONSTRAINT reply_batches_status_check
    CHECK (status IN ('generating', 'sending', 'sent', 'failed', 'dropped', 'expired', 'human'))
    NOT VALID;
ALTER TABLE reply_batches VALIDATE CONSTRAINT reply_batches_status_check;
