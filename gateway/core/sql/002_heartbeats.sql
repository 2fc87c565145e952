-- Schema version 2: every `gateway run` process shows that it is alive.
-- One row per process start, written every few seconds (wall-clock seconds since the epoch).
-- `gateway health`, /health and /metrics fail when no process has been seen within
-- health.max_heartbeat_age_seconds; a process that stops cleanly sets stopped_at.
CREATE TABLE heartbeats (
    process TEXT PRIMARY KEY,
    instance TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL,
    stopped_at DOUBLE PRECISION
);
CREATE INDEX heartbeats_last_seen ON heartbeats (last_seen);
