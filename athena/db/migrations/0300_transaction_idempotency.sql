-- /gateway/transaction: an idempotency key is claimed here before its transaction runs, and
-- the answer of a committed transaction is kept, so a retry (from any gateway instance) within
-- 24 hours gets the stored answer instead of running again. Keys are per API key and client.
CREATE TABLE IF NOT EXISTS athena.transaction_idempotency (
    key_owner       text NOT NULL,          -- the API key's public id ('admin', 'anonymous')
    client_name     text NOT NULL,
    idempotency_key text NOT NULL,
    state           text NOT NULL CHECK (state IN ('running', 'done')),
    status          integer,
    response        bytea,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key_owner, client_name, idempotency_key)
);
CREATE INDEX IF NOT EXISTS transaction_idempotency_created_idx
    ON athena.transaction_idempotency (created_at);
