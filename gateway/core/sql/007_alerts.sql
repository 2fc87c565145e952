-- Alerts: one row per condition while it lasts (name = the condition, e.g. queue-stalled:ind-duo),
-- opened, repeated and resolved by the alerts job (gateway/ops/alerts.py), which runs on one
-- process at a time. Times are the runtime clock's, but for first_seen_wall (wall-clock: a
-- condition must hold for alerts.confirm_seconds before anyone is told). last_notified_at is
-- NULL while it is not yet confirmed. Summaries carry ids and counts, never personal data.
CREATE TABLE alerts (
    id {id},
    name TEXT NOT NULL,
    severity TEXT NOT NULL,
    summary TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    last_seen_at DOUBLE PRECISION NOT NULL,
    first_seen_wall DOUBLE PRECISION NOT NULL,
    last_notified_at DOUBLE PRECISION,
    notifications INTEGER NOT NULL DEFAULT 0,
    resolved_at DOUBLE PRECISION
);
-- One open alert per condition, whatever happens (deduplication does not rely on the job alone).
CREATE UNIQUE INDEX alerts_one_open ON alerts (name) WHERE resolved_at IS NULL;
CREATE INDEX alerts_started ON alerts (started_at);

-- Each notification of an alert to each channel: sent once, retried until it is (wall-clock times).
CREATE TABLE alert_sends (
    id {id},
    alert_id BIGINT NOT NULL REFERENCES alerts (id),
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    sent_at DOUBLE PRECISION,
    last_error TEXT
);
CREATE INDEX alert_sends_due ON alert_sends (state, next_attempt_at);
