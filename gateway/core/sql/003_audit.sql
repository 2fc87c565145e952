-- Schema version 3: the audit log. Who saw personal data in clear, who signed in (or failed to),
-- and who acted on a message, with the reason they gave. The gateway only ever INSERTs here
-- (gateway.core.audit is the one writer); no command or page edits or deletes an entry.
CREATE TABLE audit_log (
    id {id},
    at DOUBLE PRECISION NOT NULL,
    actor TEXT NOT NULL,
    channel TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    reason TEXT,
    outcome TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor, at);
