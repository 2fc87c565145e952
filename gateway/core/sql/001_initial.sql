-- Schema version 1. Portable SQL: the same file runs on SQLite and PostgreSQL; the store
-- replaces {id} (an auto-increment primary key) and {blob} (binary) per backend.
-- Times are seconds since the epoch (UTC) as DOUBLE PRECISION.

-- Every inbound exchange, accepted or refused: the delivery log's door.
CREATE TABLE inbound (
    id {id},
    received_at DOUBLE PRECISION NOT NULL,
    partner TEXT NOT NULL,
    operation TEXT NOT NULL,
    channel TEXT NOT NULL,
    message_key TEXT,
    raw {blob} NOT NULL,
    content_digest TEXT,
    outcome TEXT NOT NULL,
    fault_code TEXT,
    fault_detail TEXT,
    response_status INTEGER,
    response_body {blob},
    message_id BIGINT
);
CREATE INDEX inbound_received_at ON inbound (received_at);
CREATE INDEX inbound_message_key ON inbound (message_key);

-- One row per accepted business message; (route, message_key) is the idempotency key at the door.
CREATE TABLE messages (
    id {id},
    route TEXT NOT NULL,
    kind TEXT NOT NULL,
    message_key TEXT NOT NULL,
    content_digest TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL,
    ack {blob},
    facts TEXT NOT NULL,
    person TEXT,
    updated_at DOUBLE PRECISION NOT NULL,
    UNIQUE (route, message_key)
);
CREATE INDEX messages_state ON messages (route, state);
CREATE INDEX messages_received_at ON messages (received_at);

-- The durable outbox: one row per outbound delivery, claimed by workers with a lease.
CREATE TABLE outbox (
    id {id},
    message_id BIGINT NOT NULL REFERENCES messages (id),
    partner TEXT NOT NULL,
    operation TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    payload {blob} NOT NULL,
    order_key TEXT,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    lease_owner TEXT,
    lease_expires_at DOUBLE PRECISION,
    delivered_at DOUBLE PRECISION,
    last_error TEXT,
    receipt {blob},
    receipt_ref TEXT,
    dead_reason TEXT,
    UNIQUE (partner, idempotency_key)
);
CREATE INDEX outbox_due ON outbox (state, partner, next_attempt_at);
CREATE INDEX outbox_message ON outbox (message_id);
CREATE INDEX outbox_order ON outbox (order_key, state);

CREATE TABLE attempts (
    id {id},
    outbox_id BIGINT NOT NULL REFERENCES outbox (id),
    attempt INTEGER NOT NULL,
    worker TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    duration_ms DOUBLE PRECISION NOT NULL,
    http_status INTEGER,
    outcome TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX attempts_outbox ON attempts (outbox_id);

-- The timeline of a message: received, validated, translated, queued, attempts, receipt.
CREATE TABLE events (
    id {id},
    message_id BIGINT,
    at DOUBLE PRECISION NOT NULL,
    stage TEXT NOT NULL,
    event TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX events_message ON events (message_id);

CREATE TABLE operator_actions (
    id {id},
    at DOUBLE PRECISION NOT NULL,
    operator TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    note TEXT
);

-- IND's volgnummer as seen, for gap detection.
CREATE TABLE ind_sequence (
    volgnummer BIGINT PRIMARY KEY,
    melding_id TEXT NOT NULL,
    seen_at DOUBLE PRECISION NOT NULL
);

-- Small durable values: feed cursors, IND's laatsteVolgnummer, last successful poll times.
CREATE TABLE state_kv (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

-- Periodic jobs run on one process at a time.
CREATE TABLE job_leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
