-- Every message lull saw or sent, and every reply batch. PostgreSQL is the source
-- of truth: Redis only holds what is being batched, and can lose it.

CREATE TABLE reply_batches (
    id                   TEXT PRIMARY KEY,          -- the first claim's token
    channel              TEXT NOT NULL,
    account_id           TEXT NOT NULL,
    contact_id           TEXT NOT NULL,
    status               TEXT NOT NULL DEFAULT 'generating'
                         -- dropped: every message was answered by another batch
                         CHECK (status IN ('generating', 'sending', 'sent', 'failed', 'dropped')),
    message_ids          BIGINT[] NOT NULL,         -- inbound rows answered, platform order
    reply_text           TEXT,
    attempts             INTEGER NOT NULL DEFAULT 0, -- send requests made
    claims               INTEGER NOT NULL DEFAULT 1, -- 1 + crash resumes + supersedes
    supersedes           INTEGER NOT NULL DEFAULT 0,
    platform_message_ids TEXT[] NOT NULL DEFAULT '{}',
    error_code           TEXT,
    error_message        TEXT,
    first_message_at     TIMESTAMPTZ,
    due_at               TIMESTAMPTZ,               -- when the batch became due (claim lag = claimed_at - due_at)
    claimed_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    generated_at         TIMESTAMPTZ,
    sent_at              TIMESTAMPTZ,
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX reply_batches_conversation ON reply_batches (channel, account_id, contact_id, claimed_at);
CREATE INDEX reply_batches_status ON reply_batches (status) WHERE status <> 'sent';

CREATE TABLE conversation_messages (
    id                  BIGSERIAL PRIMARY KEY,
    channel             TEXT NOT NULL,
    account_id          TEXT NOT NULL,
    contact_id          TEXT NOT NULL,
    -- unique per channel: Telegram's are written bot:chat:message, as its ids repeat across chats
    external_message_id TEXT NOT NULL,
    direction           TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    message_type        TEXT NOT NULL,
    text                TEXT NOT NULL DEFAULT '',
    answerable          BOOLEAN NOT NULL,           -- needs a reply (reactions, our own: no)
    platform_timestamp  TIMESTAMPTZ NOT NULL,
    webhook_received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    webhook_payload     JSONB,
    -- inbound: the batch that answered it (set when its reply is sent); outbound: the batch it belongs to
    batch_id            TEXT REFERENCES reply_batches (id),
    CONSTRAINT conversation_messages_external_message_id_key UNIQUE (channel, external_message_id)
);

CREATE INDEX conversation_messages_history
    ON conversation_messages (channel, account_id, contact_id, platform_timestamp DESC, id DESC);
-- the reconciler's question: which answerable inbound messages have no reply yet
CREATE INDEX conversation_messages_unanswered
    ON conversation_messages (webhook_received_at)
    WHERE direction = 'in' AND answerable AND batch_id IS NULL;
