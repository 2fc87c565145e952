"""The audit log: an append-only record of who saw personal data in clear, who signed in, and who
acted, with when, on which record, why, and whether it was allowed.

This module is the only writer of ``audit_log``; it inserts and never updates or deletes. An
access that cannot be recorded must not happen: callers record *before* they show anything, and a
store error propagates.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["Entry", "record", "entries", "ACTIONS"]

Outcome = Literal["ok", "refused"]

#: The actions the gateway records, with what each means (documented for operators).
ACTIONS = {
    "show-personal-data": "personal data shown in clear (log, show, reports, console)",
    "download-raw": "raw payload bytes downloaded",
    "export-personal-data": "an archive exported without pseudonyms",
    "sign-in": "an operator signed in",
    "sign-in-failed": "a sign-in was refused",
    "sign-out": "an operator signed out of the console",
    "csrf-refused": "a console form or API call without a valid CSRF token was refused",
    "retry": "a delivery was queued again",
    "resolve": "a delivery was resolved by hand",
    "rules-apply": "a rule set was rolled out",
    "hold": "a message was put under hold (not purged until released)",
    "release": "a message's hold was ended",
    "send-correction": "a DUO correction of one notification was queued with the active rule set",
}


@dataclass(frozen=True)
class Entry:
    id: int
    at: str
    actor: str
    channel: str
    action: str
    target: str | None
    reason: str | None
    outcome: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def record(store: Any, *, actor: str, action: str, target: str | None = None, reason: str | None = None,
           channel: str = "cli", outcome: Outcome = "ok", at: float | None = None) -> None:
    """Append one entry; raises the store's error if it cannot be written."""
    with store.tx() as t:
        t.execute("INSERT INTO audit_log (at, actor, channel, action, target, reason, outcome) "
                  "VALUES (:at, :actor, :channel, :action, :target, :reason, :outcome)",
                  {"at": time.time() if at is None else at, "actor": actor, "channel": channel,
                   "action": action, "target": target, "reason": reason, "outcome": outcome})


def entries(store: Any, *, since: float | None = None, actor: str | None = None, action: str | None = None,
            limit: int = 100) -> list[Entry]:
    """The newest entries first, optionally only since a time, of one actor, or of one action."""
    where: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    if since is not None:
        where.append("at >= :since")
        params["since"] = since
    if actor is not None:
        where.append("actor = :actor")
        params["actor"] = actor
    if action is not None:
        where.append("action = :action")
        params["action"] = action
    sql = ("SELECT id, at, actor, channel, action, target, reason, outcome FROM audit_log"
           + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY at DESC, id DESC LIMIT :limit")
    with store.tx(write=False) as t:
        rows = t.all(sql, params)
    return [Entry(int(r[0]), _iso(r[1]), r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows]


def _iso(at: float) -> str:
    return dt.datetime.fromtimestamp(float(at), dt.UTC).isoformat(timespec="seconds")
