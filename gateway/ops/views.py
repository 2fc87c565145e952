"""Operator views of the delivery log: rows for ``gateway log``, a timeline for ``gateway show``.

Personal data is masked unless the caller says it may be shown (``unmask=True``, granted by the
CLI only to operators listed in ``[operators] personal_data``): a BSN shows its last two digits,
a V-number its last three, a name its initials, a birth date its year.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from dataclasses import dataclass
from html import escape, unescape
from typing import Any

from gateway.core.clock import AMS
from gateway.core.store import Store

__all__ = ["LogFilter", "log_rows", "timeline", "mask_person", "fmt_time", "short_time", "compact", "Search", "search",
           "mask_raw", "find_message"]


@dataclass(frozen=True)
class LogFilter:
    state: str | None = None
    partner: str | None = None
    route: str | None = None
    since: float | None = None
    until: float | None = None
    key: str | None = None
    limit: int = 100
    refused: bool = False


def fmt_time(ts: float | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, AMS).isoformat(timespec="seconds")


def short_time(ts: float | None, now: float | None = None) -> str:
    """A time for a narrow column: ``10:31:05`` today, ``12-04 10:31`` this year, else ``2025-12-04 10:31``."""
    if ts is None:
        return ""
    when = dt.datetime.fromtimestamp(ts, AMS)
    today = dt.datetime.fromtimestamp(time.time() if now is None else now, AMS).date()
    if when.date() == today:
        return when.strftime("%H:%M:%S")
    if when.year == today.year:
        return when.strftime("%m-%d %H:%M")
    return when.strftime("%Y-%m-%d %H:%M")


def compact(detail: dict[str, Any] | None) -> str:
    """An event's detail as ``key=value`` pairs, for one line of a table (``--json`` has the structure)."""
    if not detail:
        return ""
    return " ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in sorted(detail.items()))


def mask_person(person: dict[str, Any] | None, unmask: bool = False) -> dict[str, Any]:
    if not person:
        return {}
    if unmask:
        return dict(person)
    out: dict[str, Any] = {}
    for key, value in person.items():
        if value is None:
            out[key] = None
        elif key == "bsn":
            out[key] = "*******" + str(value)[-2:]
        elif key == "vNummer":
            out[key] = "*******" + str(value)[-3:]
        elif key == "naam":
            out[key] = " ".join(part[:1] + "." for part in str(value).split())
        elif key == "geboortedatum":
            out[key] = str(value)[:4] + "-**-**"
        elif key in ("nationaliteit",):
            out[key] = value
        else:
            out[key] = "***"
    return out


_PARTNER_OF_ROUTE = {"ind-duo": ("ind", "duo"), "duo-cjib": ("duo", "cjib"), "cjib-duo": ("cjib", "duo"),
                     "rules-duo": ("gateway", "duo")}

#: The routes each partner is on, as sender or receiver.
_PARTNER_ROUTES = {p: tuple(r for r, pair in _PARTNER_OF_ROUTE.items() if p in pair) for p in ("ind", "duo", "cjib")}


def log_rows(store: Store, f: LogFilter, *, unmask: bool = False) -> list[dict[str, Any]]:
    """Messages (and, with ``refused``, refused inbound exchanges) newest first."""
    rows = _message_rows(store, f, unmask) if f.state != "refused" else []
    if f.refused or f.state == "refused":
        rows += _refused_rows(store, f)
    rows.sort(key=lambda r: r["received_ts"], reverse=True)
    return rows[: f.limit]


def _message_rows(store: Store, f: LogFilter, unmask: bool) -> list[dict[str, Any]]:
    where: list[str] = ["1 = 1"]
    params: dict[str, Any] = {"limit": f.limit}
    if f.state:
        where.append("m.state = :state")
        params["state"] = f.state
    if f.route:
        where.append("m.route = :route")
        params["route"] = f.route
    if f.since is not None:
        where.append("m.received_at >= :since")
        params["since"] = f.since
    if f.until is not None:
        where.append("m.received_at < :until")
        params["until"] = f.until
    if f.key:
        where.append("(m.message_key = :key OR EXISTS (SELECT 1 FROM outbox k WHERE k.message_id = m.id "
                     "AND (k.idempotency_key = :key OR k.receipt_ref = :key)))")
        params["key"] = f.key
    if f.partner:
        where.append("(EXISTS (SELECT 1 FROM outbox p WHERE p.message_id = m.id AND p.partner = :partner) "
                     "OR m.route LIKE :partner_prefix)")
        params["partner"] = f.partner
        params["partner_prefix"] = f.partner + "-%"
    sql = ("SELECT m.id, m.route, m.kind, m.message_key, m.state, m.received_at, m.updated_at, m.facts, m.person, "
           "(SELECT COALESCE(SUM(o.attempts), 0) FROM outbox o WHERE o.message_id = m.id), "
           "(SELECT MAX(o.receipt_ref) FROM outbox o WHERE o.message_id = m.id) "
           f"FROM messages m WHERE {' AND '.join(where)} ORDER BY m.received_at DESC LIMIT :limit")
    out = []
    for r in store.query(sql, params):
        facts = json.loads(r[7])
        out.append({
            "id": int(r[0]), "route": r[1], "kind": r[2], "key": r[3], "state": r[4],
            "received": fmt_time(r[5]), "received_ts": float(r[5]), "updated": fmt_time(r[6]),
            "attempts": int(r[9]), "receipt": r[10], "facts": facts,
            "person": mask_person(store.person(r[8]), unmask),
        })
    return out


def _refused_rows(store: Store, f: LogFilter) -> list[dict[str, Any]]:
    where: list[str] = ["i.outcome = 'refused'"]
    params: dict[str, Any] = {"limit": f.limit}
    if f.partner:
        where.append("i.partner = :partner")
        params["partner"] = f.partner
    if f.since is not None:
        where.append("i.received_at >= :since")
        params["since"] = f.since
    if f.until is not None:
        where.append("i.received_at < :until")
        params["until"] = f.until
    if f.key:
        where.append("i.message_key = :key")
        params["key"] = f.key
    sql = ("SELECT i.id, i.partner, i.operation, i.message_key, i.received_at, i.fault_code, i.fault_detail, "
           f"i.response_status, i.channel FROM inbound i WHERE {' AND '.join(where)} "
           "ORDER BY i.received_at DESC LIMIT :limit")
    return [{
        "id": f"in-{r[0]}", "route": f"{r[1]}-in", "kind": r[2], "key": r[3], "state": "refused",
        "received": fmt_time(r[4]), "received_ts": float(r[4]), "updated": fmt_time(r[4]), "attempts": 0,
        "receipt": None, "facts": {"fault_code": r[5], "fault_detail": r[6], "http_status": r[7], "channel": r[8]},
        "person": {},
    } for r in store.query(sql, params)]


def find_message(store: Store, ref: str) -> int | None:
    """A message by its id, its key (meldingId, vorderingId), a berichtId or a partner reference."""
    if ref.isdigit():
        rows = store.query("SELECT id FROM messages WHERE id = :id", {"id": int(ref)})
        if rows:
            return int(rows[0][0])
    rows = store.query("SELECT id FROM messages WHERE message_key = :k ORDER BY id", {"k": ref})
    if rows:
        return int(rows[0][0])
    rows = store.query("SELECT message_id FROM outbox WHERE idempotency_key = :k OR receipt_ref = :k "
                       "ORDER BY id", {"k": ref})
    return int(rows[0][0]) if rows else None


def timeline(store: Store, message_id: int, *, unmask: bool = False) -> dict[str, Any]:
    m = store.query("SELECT id, route, kind, message_key, state, received_at, facts, person FROM messages "
                    "WHERE id = :id", {"id": message_id})[0]
    events = [{"at": fmt_time(r[0]), "ts": float(r[0]), "stage": r[1], "event": r[2],
               "detail": json.loads(r[3]) if r[3] else {}}
              for r in store.query("SELECT at, stage, event, detail FROM events WHERE message_id = :id "
                                   "ORDER BY at, id", {"id": message_id})]
    deliveries = []
    # A claim's later statuses (from CJIB's feed) are messages of their own, tied to the claim by
    # order_key = vorderingId: show them in the claim's timeline too.
    for d in store.query("SELECT id, partner, operation, idempotency_key, state, attempts, receipt_ref, "
                         "dead_reason, created_at, delivered_at, next_attempt_at FROM outbox WHERE message_id = :id "
                         "OR order_key = :key ORDER BY id", {"id": message_id, "key": m[3]}):
        attempts = [{"attempt": int(a[0]), "at": fmt_time(a[1]), "duration_ms": round(float(a[2]), 2),
                     "http_status": a[3], "outcome": a[4], "detail": a[5], "worker": a[6]}
                    for a in store.query("SELECT attempt, started_at, duration_ms, http_status, outcome, detail, "
                                         "worker FROM attempts WHERE outbox_id = :id ORDER BY id", {"id": d[0]})]
        deliveries.append({"id": int(d[0]), "partner": d[1], "operation": d[2], "idempotency_key": d[3],
                           "state": d[4], "attempts": attempts, "receipt_ref": d[6], "dead_reason": d[7],
                           "queued": fmt_time(d[8]), "delivered": fmt_time(d[9]),
                           "next_attempt": fmt_time(d[10]) if d[4] == "pending" else None})
    inbound = [{"id": int(r[0]), "at": fmt_time(r[1]), "channel": r[2], "outcome": r[3], "http_status": r[4],
                "fault_code": r[5]}
               for r in store.query("SELECT id, received_at, channel, outcome, response_status, fault_code FROM inbound "
                                    "WHERE message_id = :id OR (message_key = :k AND message_id IS NULL) ORDER BY id",
                                    {"id": message_id, "k": m[3]})]
    return {"id": int(m[0]), "route": m[1], "kind": m[2], "key": m[3], "state": m[4], "received": fmt_time(m[5]),
            "facts": json.loads(m[6]), "person": mask_person(store.person(m[7]), unmask),
            "inbound": inbound, "events": events, "deliveries": deliveries}


@dataclass(frozen=True)
class Search:
    """The console's search (``/api/v1/messages``): every field optional, newest first, paged by a
    cursor (the last row's received time and id), so page 1,000 costs what page 1 costs."""

    ref: str | None = None  # meldingId, berichtId, vorderingId, zaaknummer or message id
    person_digest: str | None = None  # keyed hash of a BSN or V-number (gateway.core.store.person_digest)
    state: str | None = None
    route: str | None = None
    partner: str | None = None
    error: str | None = None  # an error code in a delivery's last error or dead-letter reason
    since: float | None = None
    until: float | None = None
    after: tuple[float, int] | None = None  # the cursor: rows older than this one
    limit: int = 50


def search(store: Store, s: Search, *, unmask: bool = False) -> dict[str, Any]:
    """One page of messages and the cursor of the next page (None on the last)."""
    where, params = _search_where(s)
    params["limit"] = s.limit + 1
    # An id, a person or an error matches few rows: "+" keeps SQLite from walking the received_at
    # index in order and testing every message against them (50x slower on a million rows).
    order = "+m.received_at" if s.ref or s.person_digest or s.error else "m.received_at"
    sql = ("SELECT m.id, m.route, m.kind, m.message_key, m.state, m.received_at, m.updated_at, m.person "
           f"FROM messages m WHERE {' AND '.join(where)} ORDER BY {order} DESC, m.id DESC LIMIT :limit")
    rows = store.query(sql, params)
    page = [{"id": int(r[0]), "route": r[1], "kind": r[2], "key": r[3], "state": r[4], "received": fmt_time(r[5]),
             "updated": fmt_time(r[6]), "person": mask_person(store.person(r[7]), unmask)}
            for r in rows[: s.limit]]
    last = rows[s.limit - 1] if len(rows) > s.limit else None
    return {"messages": page, "next": f"{float(last[5])!r}:{int(last[0])}" if last else None}


def _search_where(s: Search) -> tuple[list[str], dict[str, Any]]:
    where: list[str] = ["1 = 1"]
    params: dict[str, Any] = {}
    if s.ref:
        # A UNION of three index look-ups (messages_key, outbox_idempotency, outbox_receipt).
        where.append("m.id IN (SELECT id FROM messages WHERE message_key = :ref "
                     "UNION SELECT message_id FROM outbox WHERE idempotency_key = :ref "
                     "UNION SELECT message_id FROM outbox WHERE receipt_ref = :ref"
                     + (" UNION SELECT :ref_id" if s.ref.isdigit() else "") + ")")
        params["ref"] = s.ref
        if s.ref.isdigit():
            params["ref_id"] = int(s.ref)
    if s.person_digest:
        where.append("m.id IN (SELECT message_id FROM person_lookup WHERE digest = :digest)")
        params["digest"] = s.person_digest
    for name in ("state", "route"):
        if getattr(s, name):
            where.append(f"m.{name} = :{name}")
            params[name] = getattr(s, name)
    if s.partner:
        # A partner's messages are those of the routes it is on (as sender or receiver): a plain
        # IN on the route, which both backends walk in received_at order and stop after a page.
        routes = _PARTNER_ROUTES.get(s.partner) or ("",)  # an unknown partner matches nothing
        names = [f"partner_route_{i}" for i in range(len(routes))]
        where.append(f"m.route IN ({', '.join(':' + n for n in names)})")
        params.update(zip(names, routes, strict=True))
    if s.error:
        # Deliveries that failed and still wait for someone: dead, resolved, or pending a retry
        # (the outbox_due index on state keeps this to the few that are not delivered).
        where.append("m.id IN (SELECT message_id FROM outbox WHERE state IN ('dead', 'resolved', 'pending') "
                     "AND (dead_reason LIKE :error OR last_error LIKE :error))")
        params["error"] = f"%{s.error}%"
    if s.since is not None:
        where.append("m.received_at >= :since")
        params["since"] = s.since
    if s.until is not None:
        where.append("m.received_at < :until")
        params["until"] = s.until
    if s.after is not None:
        # "<=" first, so the received_at index gives the range; the OR then only breaks ties.
        where.append("m.received_at <= :after_at AND (m.received_at < :after_at OR m.id < :after_id)")
        params.update(after_at=s.after[0], after_id=s.after[1])
    return where, params


#: Element names (XML) and keys (JSON) of personal data in the partners' messages, masked in raw
#: bytes whatever their value: BSN, V-number, names, birth date, address and document number.
_RAW_PERSONAL = ("bsn", "vNummer", "geslachtsnaam", "voorvoegsel", "voornamen", "geboortedatum", "straat",
                 "huisnummer", "huisnummertoevoeging", "postcode", "woonplaats", "documentnummer")
_RAW_XML = re.compile(r"<((?:[\w.-]+:)?(" + "|".join(_RAW_PERSONAL) + r"))(\s[^>]*)?>([^<]*)</\1>")
_RAW_JSON = re.compile(r'"(' + "|".join(_RAW_PERSONAL) + r')"(\s*:\s*)("(?:[^"\\]|\\.)*"|-?\d+)')


def _mask_field(name: str, value: str) -> str:
    if name in ("voornamen", "geslachtsnaam", "voorvoegsel"):
        return str(mask_person({"naam": value})["naam"])
    key = name if name in ("bsn", "vNummer", "geboortedatum") else "other"
    return str(mask_person({key: value})[key])


def mask_raw(raw: bytes, person: dict[str, Any] | None) -> str:
    """Raw message text (XML or JSON) with personal data masked as ``mask_person`` masks it.

    By name: every element or key in ``_RAW_PERSONAL``. By value: the message's person wherever
    it appears as a whole element text or JSON string (``>value<``, ``"value"``), so a short name
    part never masks a piece of an element name or of another value.
    """
    text = raw.decode("utf-8", "replace")
    text = _RAW_XML.sub(lambda m: f"<{m.group(1)}{m.group(3) or ''}>{escape(_mask_field(m.group(2), unescape(m.group(4))))}"
                        f"</{m.group(1)}>", text)
    text = _RAW_JSON.sub(lambda m: f'"{m.group(1)}"{m.group(2)}'
                         + json.dumps(_mask_field(m.group(1), str(json.loads(m.group(3))))), text)
    if not person:
        return text
    masked = mask_person(person)
    for key, value in person.items():
        if not isinstance(value, str) or not value:
            continue
        if key == "naam":
            words = "|".join(re.escape(w) for w in sorted(value.split(), key=len, reverse=True))
            pattern = rf"(?<=[>\"])(?:{words})(?:\s+(?:{words}))*(?=[<\"])"
            text = re.sub(pattern, lambda m: " ".join(w[:1] + "." for w in m.group(0).split()), text)
        else:
            text = re.sub(rf"(?<=[>\"]){re.escape(value)}(?=[<\"])", str(masked[key]), text)
    return text
