-- Revocation (issue 20): the CRL cache. One row per CRL distribution point a pinned certificate
-- names: the last CRL fetched (DER, its signature checked before it was stored), when it was
-- fetched and its nextUpdate (epoch seconds), and the last failed fetch (error, when). A restart
-- starts from these rows, so a CA that is down at start-up does not make every certificate unknown;
-- `gateway health` reads them (a CRL that cannot be fetched, or is past nextUpdate + grace).
CREATE TABLE crl_cache (
    url TEXT PRIMARY KEY,
    crl {blob},
    fetched_at DOUBLE PRECISION,
    next_update DOUBLE PRECISION,
    last_error TEXT,
    attempted_at DOUBLE PRECISION
);
