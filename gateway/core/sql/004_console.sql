-- Schema version 4: the operator console. Operators who sign in with a password (argon2id hash,
-- never the password), their sessions (only a hash of the session token is kept), the keyed-hash
-- lookup that lets an operator find a message by BSN or V-number without either being stored in
-- clear for it, and the indexes the console's search filters use.
CREATE TABLE operators (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    failed_signins INTEGER NOT NULL DEFAULT 0,
    locked_until DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE console_sessions (
    token_hash TEXT PRIMARY KEY,
    operator TEXT NOT NULL,
    role TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);

-- HMAC-SHA256(key, kind ":" value) of a person's BSN and V-number, filled at intake in the same
-- transaction as the message (gateway.core.store.Store.accept).
CREATE TABLE person_lookup (
    digest TEXT NOT NULL,
    message_id BIGINT NOT NULL,
    PRIMARY KEY (digest, message_id)
);

-- One index per search filter (the console's paged search; bench/console_search.py).
CREATE INDEX messages_key ON messages (message_key);
CREATE INDEX messages_state_at ON messages (state, received_at);
CREATE INDEX messages_route_at ON messages (route, received_at);
CREATE INDEX outbox_idempotency ON outbox (idempotency_key);
CREATE INDEX outbox_receipt ON outbox (receipt_ref);
CREATE INDEX outbox_partner_state ON outbox (partner, state, message_id);
CREATE INDEX inbound_fault ON inbound (fault_code, received_at);
-- The error-code filter reads only failed deliveries, from the index alone (the same WHERE as in
-- gateway.ops.views._search_where, so both backends use it).
CREATE INDEX outbox_failed ON outbox (message_id, dead_reason, last_error)
    WHERE state IN ('dead', 'resolved', 'pending');
-- The dashboard's "delivered today" and its 24 h / 30 day series of deliveries and backlog.
CREATE INDEX outbox_delivered_at ON outbox (delivered_at);
CREATE INDEX outbox_created_at ON outbox (created_at);
