"""Retention: personal data kept only as long as its term (``[retention]``), the non-personal
facts kept for good.

For each kind with a term, ``purge`` removes what is past it, in batches (one transaction each),
so it can be stopped at any point and run again (it picks up what is left; ``gateway purge``,
and the daily ``retention`` job):

- notifications (route ind-duo) and claims (duo-cjib, cjib-duo): a message in a final state
  whose last change is older than the term loses its personal fields (``messages.person``), its
  acknowledgement, the payloads and receipts of its deliveries, the raw bytes of its inbound
  exchanges and the console's keyed hashes of its BSN and V-number (``person_lookup``); its facts (ids, dates, states, rule, indication, delay), its delivery states and
  its attempts stay, so counts, reports and the delay report stay right;
- refused: the raw bytes of refused inbound messages (which never became a message);
- delivery_log: inbound entries, attempts and events of messages already purged, and of refused
  inbound messages already emptied, older than the term; the message rows themselves stay;
- audit: audit log entries older than the term (the only way an entry ever leaves it).

Never purged: a message with an undelivered (pending) delivery or a dead letter, and a message
under an operator's hold (``gateway hold``). On SQLite the store runs with ``secure_delete`` and
the purge ends with a WAL checkpoint, so purged bytes are gone from the files, not only from
the rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from gateway.core.config import RetentionConfig

__all__ = ["KINDS", "due", "purge", "hold", "EMPTY"]

KINDS = ("notifications", "claims", "refused", "delivery_log", "audit")
ROUTES = {"notifications": ("ind-duo",), "claims": ("duo-cjib", "cjib-duo")}
FINAL = ("delivered", "resolved", "refused_by_partner", "accepted")
#: What a purged NOT NULL payload column holds.
EMPTY = b""

Progress = Callable[[str, int], None]


def _cutoffs(cfg: RetentionConfig, now: float) -> dict[str, float]:
    return {kind: now - term for kind, term in cfg.terms().items() if term is not None}


def _messages_sql(kind: str) -> str:
    routes = ", ".join(f"'{r}'" for r in ROUTES[kind])
    finals = ", ".join(f"'{s}'" for s in FINAL)
    return (f"FROM messages m WHERE m.route IN ({routes}) AND m.purged_at IS NULL AND m.hold_reason IS NULL "
            f"AND m.updated_at < :cutoff AND m.state IN ({finals}) AND NOT EXISTS (SELECT 1 FROM outbox o "
            "WHERE o.message_id = m.id AND o.state IN ('pending', 'dead'))")


_REFUSED = "FROM inbound WHERE message_id IS NULL AND purged_at IS NULL AND received_at < :cutoff"
_LOG_INBOUND = ("FROM inbound WHERE received_at < :cutoff AND purged_at IS NOT NULL AND (message_id IS NULL OR "
                "message_id IN (SELECT id FROM messages WHERE purged_at IS NOT NULL))")


def due(store: Any, cfg: RetentionConfig, now: float | None = None) -> dict[str, int]:
    """What a purge would remove now, per kind with a term (``gateway purge --dry-run``)."""
    cut = _cutoffs(cfg, time.time() if now is None else now)
    out: dict[str, int] = {}
    for kind, cutoff in cut.items():
        if kind in ROUTES:
            sql = "SELECT COUNT(*) " + _messages_sql(kind)
        elif kind == "refused":
            sql = "SELECT COUNT(*) " + _REFUSED
        elif kind == "delivery_log":
            sql = "SELECT COUNT(*) " + _LOG_INBOUND
        else:
            sql = "SELECT COUNT(*) FROM audit_log WHERE at < :cutoff"
        out[kind] = int(store.query(sql, {"cutoff": cutoff})[0][0])
    return out


def purge(store: Any, cfg: RetentionConfig, *, now: float | None = None, batch: int = 500,
          progress: Progress | None = None) -> dict[str, int]:
    """Remove what is past its term, batch by batch; the number removed per kind."""
    now = time.time() if now is None else now
    done: dict[str, int] = {}
    for kind, cutoff in _cutoffs(cfg, now).items():
        step = {"refused": _purge_refused, "delivery_log": _purge_log, "audit": _purge_audit}.get(kind, _purge_messages)
        total = 0
        while True:
            n = step(store, kind, cutoff, now, batch)
            total += n
            if progress is not None and n:
                progress(kind, n)
            if n < batch:
                break
        done[kind] = total
    store.checkpoint()
    return done


def _ids(rows: list[tuple[Any, ...]]) -> str:
    return ", ".join(str(int(r[0])) for r in rows)


def _purge_messages(store: Any, kind: str, cutoff: float, now: float, batch: int) -> int:
    with store.tx() as t:
        rows = t.all("SELECT m.id " + _messages_sql(kind) + " ORDER BY m.id LIMIT :n", {"cutoff": cutoff, "n": batch})
        if not rows:
            return 0
        ids = _ids(rows)
        t.execute(f"UPDATE messages SET person = NULL, ack = NULL, purged_at = :now WHERE id IN ({ids})", {"now": now})
        t.execute(f"UPDATE outbox SET payload = :empty, receipt = NULL WHERE message_id IN ({ids})", {"empty": EMPTY})
        t.execute(f"UPDATE inbound SET raw = :empty, response_body = NULL, purged_at = :now WHERE message_id IN ({ids})",
                  {"empty": EMPTY, "now": now})
        # The console's keyed hashes of BSN and V-number go too: a purged message is no longer found by person.
        t.execute(f"DELETE FROM person_lookup WHERE message_id IN ({ids})")
        return len(rows)


def _purge_refused(store: Any, kind: str, cutoff: float, now: float, batch: int) -> int:
    with store.tx() as t:
        rows = t.all("SELECT id " + _REFUSED + " ORDER BY id LIMIT :n", {"cutoff": cutoff, "n": batch})
        if rows:
            t.execute(f"UPDATE inbound SET raw = :empty, response_body = NULL, purged_at = :now WHERE id IN "
                      f"({_ids(rows)})", {"empty": EMPTY, "now": now})
        return len(rows)


def _purge_log(store: Any, kind: str, cutoff: float, now: float, batch: int) -> int:
    with store.tx() as t:
        rows = t.all("SELECT id " + _LOG_INBOUND + " ORDER BY id LIMIT :n", {"cutoff": cutoff, "n": batch})
        if rows:
            t.execute(f"DELETE FROM inbound WHERE id IN ({_ids(rows)})")
        old = t.all("SELECT m.id FROM messages m WHERE m.purged_at IS NOT NULL AND m.updated_at < :cutoff AND ("
                    "EXISTS (SELECT 1 FROM events e WHERE e.message_id = m.id) OR EXISTS (SELECT 1 FROM outbox o "
                    "JOIN attempts a ON a.outbox_id = o.id WHERE o.message_id = m.id)) ORDER BY m.id LIMIT :n",
                    {"cutoff": cutoff, "n": batch})
        if old:
            ids = _ids(old)
            t.execute(f"DELETE FROM attempts WHERE outbox_id IN (SELECT id FROM outbox WHERE message_id IN ({ids}))")
            t.execute(f"DELETE FROM events WHERE message_id IN ({ids})")
        return max(len(rows), len(old))


def _purge_audit(store: Any, kind: str, cutoff: float, now: float, batch: int) -> int:
    with store.tx() as t:
        rows = t.all("SELECT id FROM audit_log WHERE at < :cutoff ORDER BY id LIMIT :n", {"cutoff": cutoff, "n": batch})
        if rows:
            t.execute(f"DELETE FROM audit_log WHERE id IN ({_ids(rows)})")
        return len(rows)


def hold(store: Any, message_id: int, reason: str | None) -> bool:
    """Put a message under an operator's hold (``reason``) or release it (None); False if unknown."""
    with store.tx() as t:
        return bool(t.rowcount("UPDATE messages SET hold_reason = :r WHERE id = :id", {"r": reason, "id": message_id}))


def run(rt: Any) -> dict[str, int]:
    """The daily ``retention`` job."""
    done = purge(rt.store, rt.config.retention, now=rt.clock.time())
    if any(done.values()):
        rt.log.info("purged", stage="processing", **done)
    return done
