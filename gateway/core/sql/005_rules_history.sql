-- Rule-set history: which rule set assessed IND notifications from when, and every roll-out.
-- source 'start': a gateway process started assessing with this version (the config's
-- [rules] active, or the one recorded by an earlier roll-out); source 'apply': `gateway rules
-- apply` made it the active one, with the number of corrections it queued (NULL without
-- --corrections). Rows are only ever added; an archive carries them (gateway export) so that a
-- replay switches rule sets and queues the corrections at the recorded times.
CREATE TABLE rules_history (
    id {id},
    at DOUBLE PRECISION NOT NULL,
    version TEXT NOT NULL,
    source TEXT NOT NULL,
    actor TEXT,
    corrections INTEGER
);
CREATE INDEX rules_history_at ON rules_history (at);
