-- Retention: personal data kept only as long as its term ([retention] in the config;
-- gateway/ops/retention.py). A purged message keeps its non-personal facts (ids, times,
-- states, codes) so counts and reports stay right; purged_at says when its payloads and
-- personal fields went. An operator's hold (hold_reason) keeps a message from being purged.
ALTER TABLE messages ADD COLUMN purged_at DOUBLE PRECISION;
ALTER TABLE messages ADD COLUMN hold_reason TEXT;
ALTER TABLE inbound ADD COLUMN purged_at DOUBLE PRECISION;
CREATE INDEX messages_purge ON messages (purged_at, updated_at);
CREATE INDEX inbound_purge ON inbound (purged_at, received_at);
CREATE INDEX audit_log_purge ON audit_log (at);
