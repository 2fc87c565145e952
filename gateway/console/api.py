"""The console's facts and actions: one function per ``/api/v1/...`` endpoint.

The JSON API returns what these functions return; the HTML pages (``pages.py``) render the very
same dictionaries, so a script and the console see the same facts, and ``gateway show`` shows the
same timeline (``gateway.ops.views.timeline``). Bad input raises :class:`Refused` with a status
(400 malformed, 403 not allowed, 404 unknown, 409 wrong state) and a sentence; an attempt to act
that is refused is written to the audit log too.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from gateway.console.auth import Session, may
from gateway.core import audit
from gateway.core.bsn import bsn_valid
from gateway.core.clock import AMS
from gateway.core.store import person_digest
from gateway.ops import views
from gateway.runtime import Runtime

__all__ = ["Refused", "search", "message", "raw_download", "act", "bulk", "dead_letter_ids", "audit_log", "dashboard",
           "rules", "roll_out", "correct", "person_query", "STATES", "ROUTES", "PARTNERS"]

STATES = ("queued", "retrying", "delivered", "accepted", "dead", "resolved", "refused_by_partner")
ROUTES = ("ind-duo", "duo-cjib", "cjib-duo", "rules-duo")
PARTNERS = ("ind", "duo", "cjib")
_REF = re.compile(r"^[A-Za-z0-9._:\-]{1,100}$")
_ERROR = re.compile(r"^[A-Za-z0-9_]{2,60}$")
_REASON_MAX = 500


class Refused(Exception):
    """Bad input or a refused action: the HTTP status and the sentence the operator is shown."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _one_of(value: str | None, allowed: tuple[str, ...], name: str) -> str | None:
    if not value:
        return None
    if value not in allowed:
        raise Refused(400, f"{name}: {value!r} is not one of {', '.join(allowed)}")
    return value


def _time(value: str | None, name: str) -> float | None:
    if not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise Refused(400, f"{name}: {value!r} is not a date or time (e.g. 2026-11-01 or 2026-11-01T08:00)") from None
    return (when if when.tzinfo else when.replace(tzinfo=AMS)).timestamp()


def person_query(rt: Runtime, q: dict[str, str]) -> dict[str, str]:
    """The search with the BSN or V-number replaced by its keyed hash (``pd``), so the console's
    URLs and pages never carry it."""
    out = {k: v for k, v in q.items() if v and k not in ("person", "csrf", "after")}
    digest = _person(rt, q.get("person"))
    if digest:
        out["pd"] = digest
    return out


def _person(rt: Runtime, value: str | None) -> str | None:
    """The keyed hash of a BSN (9 digits, 11-test) or V-number (10 digits)."""
    if not value:
        return None
    value = value.strip()
    if not value.isdigit() or len(value) not in (9, 10):
        raise Refused(400, "person: give a BSN (9 digits) or a V-number (10 digits)")
    if len(value) == 9 and not bsn_valid(value):
        raise Refused(400, "person: not a valid BSN (it fails the 11-test)")
    if rt.store.lookup_key is None:
        raise Refused(400, "person: search by BSN or V-number is off (set [console] lookup_key_file)")
    return person_digest(rt.store.lookup_key, "bsn" if len(value) == 9 else "vNummer", value)


def _cursor(value: str | None) -> tuple[float, int] | None:
    if not value:
        return None
    at, _, ident = value.partition(":")
    try:
        return float(at), int(ident)
    except ValueError:
        raise Refused(400, f"after: {value!r} is not a page cursor from an earlier answer") from None


def search(rt: Runtime, s: Session, q: dict[str, str]) -> dict[str, Any]:
    """``GET /api/v1/messages``: one page of messages, newest first (always masked)."""
    ref = (q.get("ref") or "").strip() or None
    if ref and not _REF.match(ref):
        raise Refused(400, "ref: an id has only letters, digits and . _ : - (at most 100)")
    error = (q.get("error") or "").strip() or None
    if error and not _ERROR.match(error):
        raise Refused(400, "error: an error code has only letters, digits and _ (e.g. SCHEMA, GESIMULEERD)")
    try:
        limit = int(q.get("limit") or 50)
    except ValueError:
        raise Refused(400, f"limit: {q.get('limit')!r} is not a number") from None
    if not 1 <= limit <= 500:
        raise Refused(400, "limit: between 1 and 500")
    digest = q.get("pd") or None
    if digest and not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise Refused(400, "pd: not a person digest from an earlier search")
    f = views.Search(ref=ref, person_digest=_person(rt, q.get("person")) or digest,
                     state=_one_of(q.get("state"), STATES, "state"), route=_one_of(q.get("route"), ROUTES, "route"),
                     partner=_one_of(q.get("partner"), PARTNERS, "partner"), error=error,
                     since=_time(q.get("since"), "since"), until=_time(q.get("until"), "until"),
                     after=_cursor(q.get("after")), limit=limit)
    return views.search(rt.store, f)


def message(rt: Runtime, s: Session, ref: str, *, reason: str | None = None) -> dict[str, Any]:
    """``GET /api/v1/messages/{ref}``: the timeline (as ``gateway show``), raw bytes and the actions.

    With a ``reason`` (``POST .../unmask``) a ``personal-data`` operator sees this one message in
    clear; the request is audited first, allowed or not.
    """
    if not _REF.match(ref):
        raise Refused(400, "an id has only letters, digits and . _ : - (at most 100)")
    message_id = views.find_message(rt.store, ref)
    if message_id is None:
        raise Refused(404, f"no message with id {ref!r} (meldingId, berichtId, vorderingId, zaaknummer or number)")
    unmask = False
    if reason is not None:
        reason = _reason(reason)
        allowed = may(s, "unmask")
        audit.record(rt.store, actor=s.operator, action="show-personal-data", target=f"message:{message_id}",
                     reason=reason, channel="console", outcome="ok" if allowed else "refused")
        if not allowed:
            raise Refused(403, "only an operator with the personal-data role may unmask personal data")
        unmask = True
    t = views.timeline(rt.store, message_id, unmask=unmask)
    t["raw"] = _raw(rt, message_id, unmask)
    t["unmasked"] = unmask
    t["actions"] = _actions(s, t)
    return t


def _raw(rt: Runtime, message_id: int, unmask: bool) -> list[dict[str, Any]]:
    """The inbound bytes as received and each outbound payload as sent (masked unless ``unmask``)."""
    row = rt.store.query("SELECT person FROM messages WHERE id = :id", {"id": message_id})
    person = rt.store.person(row[0][0]) if row else None
    out = []
    for r in rt.store.query("SELECT id, raw FROM inbound WHERE message_id = :id ORDER BY id", {"id": message_id}):
        raw = rt.store.unseal("inbound.raw", r[1]) or b""
        out.append({"what": f"inbound {r[0]}", "name": f"inbound-{r[0]}", "bytes": len(raw)} |
                   {"text": raw.decode("utf-8", "replace") if unmask else views.mask_raw(raw, person)})
    for r in rt.store.query("SELECT id, operation, payload FROM outbox WHERE message_id = :id ORDER BY id",
                            {"id": message_id}):
        payload = rt.store.unseal("outbox.payload", r[2]) or b""
        out.append({"what": f"outbound {r[1]} (delivery {r[0]})", "name": f"outbox-{r[0]}", "bytes": len(payload)} |
                   {"text": payload.decode("utf-8", "replace") if unmask else views.mask_raw(payload, person)})
    return out


def raw_download(rt: Runtime, s: Session, ref: str, name: str, reason: str | None) -> bytes:
    """``POST /api/v1/messages/{ref}/raw/{name}``: the exact bytes, for ``personal-data`` only, audited."""
    message_id = views.find_message(rt.store, ref) if _REF.match(ref) else None
    if message_id is None:
        raise Refused(404, f"no message with id {ref!r}")
    reason = _reason(reason)
    allowed = may(s, "unmask")
    audit.record(rt.store, actor=s.operator, action="download-raw", target=f"message:{message_id}:{name}",
                 reason=reason, channel="console", outcome="ok" if allowed else "refused")
    if not allowed:
        raise Refused(403, "only an operator with the personal-data role may download raw bytes")
    kind, _, ident = name.partition("-")
    column = {"inbound": "inbound.raw", "outbox": "outbox.payload"}.get(kind, "")
    table = {"inbound": "SELECT raw FROM inbound WHERE id = :i AND message_id = :m",
             "outbox": "SELECT payload FROM outbox WHERE id = :i AND message_id = :m"}.get(kind)
    rows = rt.store.query(table, {"i": int(ident), "m": message_id}) if table and ident.isdigit() else []
    if not rows:
        raise Refused(404, f"message {message_id} has no raw part {name!r}")
    return rt.store.unseal(column, rows[0][0]) or b""


def correct(rt: Runtime, s: Session, ref: str, reason: str | None) -> dict[str, Any]:
    """``POST /api/v1/messages/{ref}/correct``: queue DUO a CORRECTIE of this IND notification with
    the active rule set (operator role; reason required; audited, refusals too)."""
    from gateway.rules import rollout

    message_id = views.find_message(rt.store, ref) if _REF.match(ref) else None
    target = f"message:{message_id if message_id is not None else ref}"
    try:
        if not may(s, "act"):
            raise Refused(403, "only an operator with the operator role may send a correction")
        reason = _reason(reason)
        if message_id is None:
            raise Refused(404, f"no message with id {ref!r}")
        done = rollout.correct_one(rt, message_id, s.operator)
        if done is None or not done["queued"]:
            raise Refused(409, f"nothing to correct: the active rule set {rt.ruleset.version} gives message "
                               f"{message_id} the indication DUO holds or was sent (or it is not an IND "
                               "notification)")
    except Refused as exc:
        audit.record(rt.store, actor=s.operator, action="send-correction", target=target, reason=exc.message,
                     channel="console", outcome="refused")
        raise
    audit.record(rt.store, actor=s.operator, action="send-correction", target=target,
                 reason=f"{reason} ({done['from']} -> {done['to']})", channel="console")
    return done


def _actions(s: Session, t: dict[str, Any]) -> list[dict[str, Any]]:
    if not may(s, "act"):
        return []
    out = []
    if t["route"] == "ind-duo":
        out.append({"action": "correct", "delivery": None, "label": "Send DUO a correction with the active rule set"})
    for d in t["deliveries"]:
        if d["state"] in ("dead", "resolved"):
            out.append({"action": "retry", "delivery": d["id"], "label": f"Retry delivery {d['id']} to {d['partner']}"})
        if d["state"] == "dead":
            out.append({"action": "resolve", "delivery": d["id"],
                        "label": f"Resolve delivery {d['id']} to {d['partner']}"})
    return out


def _reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise Refused(400, "reason: say why (it goes into the audit log)")
    if len(reason) > _REASON_MAX:
        raise Refused(400, f"reason: at most {_REASON_MAX} characters")
    return reason


def act(rt: Runtime, s: Session, action: str, delivery: str, reason: str | None) -> dict[str, Any]:
    """``POST /api/v1/deliveries/{id}/retry|resolve``; refusals are audited as attempts."""
    if not delivery.isdigit():
        raise Refused(400, f"delivery: {delivery!r} is not a delivery number")
    target = f"outbox:{delivery}"
    try:
        if not may(s, "act"):
            raise Refused(403, "only an operator with the operator role may retry or resolve")
        note = _reason(reason) if action == "resolve" else ((reason or "").strip()[:_REASON_MAX] or None)
        row = rt.store.query("SELECT state FROM outbox WHERE id = :id", {"id": int(delivery)})
        if not row:
            raise Refused(404, f"no delivery {delivery}")
        allowed = ("dead", "resolved") if action == "retry" else ("dead",)
        if row[0][0] not in allowed:
            raise Refused(409, f"delivery {delivery} is {row[0][0]}: only a {' or '.join(allowed)} delivery can be "
                               f"{'retried' if action == 'retry' else 'resolved'}")
    except Refused as exc:
        audit.record(rt.store, actor=s.operator, action=action, target=target, reason=exc.message,
                     channel="console", outcome="refused")
        raise
    if action == "retry":
        done = rt.store.operator_retry([int(delivery)], s.operator, note, channel="console", now=rt.clock.time())
    else:
        done = rt.store.operator_resolve([int(delivery)], s.operator, note or "", channel="console")
    if action == "retry" and done:
        partner = rt.store.query("SELECT partner FROM outbox WHERE id = :id", {"id": int(delivery)})[0][0]
        rt.notify(partner)
    return {"delivery": int(delivery), "action": action, "done": done}


def bulk(rt: Runtime, s: Session, q: dict[str, str], *, action: str | None = None,
         expected: str | None = None) -> dict[str, Any]:
    """``GET /api/v1/dead-letters`` (preview) and ``POST /api/v1/dead-letters/retry|resolve``.

    The action takes the count the operator confirmed (``expected``): when the dead letters
    changed in between it refuses rather than act on what was not previewed. Each delivery is
    retried or resolved exactly as one by one (``act``), so each has its own audit entry.
    """
    partner = _one_of(q.get("partner"), PARTNERS, "partner")
    route = _one_of(q.get("route"), ROUTES, "route")
    ids = dead_letter_ids(rt, q)
    if action is None:
        return {"count": len(ids), "deliveries": ids[:200], "partner": partner, "route": route}
    if expected != str(len(ids)):
        raise Refused(409, f"the dead letters changed since the preview ({expected} then, {len(ids)} now): "
                           "preview again")
    done = [act(rt, s, action, str(i), q.get("reason"))["done"] for i in ids]
    return {"count": len(ids), "done": sum(done), "action": action}


def dead_letter_ids(rt: Runtime, q: dict[str, str]) -> list[int]:
    """The dead deliveries matching ``partner`` and ``route``, oldest first."""
    partner = _one_of(q.get("partner"), PARTNERS, "partner")
    route = _one_of(q.get("route"), ROUTES, "route")
    where, params = ["o.state = 'dead'"], {}
    if partner:
        where.append("o.partner = :p")
        params["p"] = partner
    if route:
        where.append("m.route = :r")
        params["r"] = route
    return [int(r[0]) for r in rt.store.query(
        f"SELECT o.id FROM outbox o JOIN messages m ON m.id = o.message_id WHERE {' AND '.join(where)} ORDER BY o.id",
        params)]


def audit_log(rt: Runtime, q: dict[str, str]) -> dict[str, Any]:
    action = _one_of(q.get("action"), tuple(audit.ACTIONS), "action")
    actor = (q.get("actor") or "").strip() or None
    rows = audit.entries(rt.store, since=_time(q.get("since"), "since"), actor=actor, action=action, limit=200)
    return {"entries": [e.to_dict() for e in rows]}


def dashboard(rt: Runtime) -> dict[str, Any]:
    """``GET /api/v1/dashboard``: per route, health with thresholds, breakers and the charts' data."""
    from gateway.ops import health

    report = health.evaluate(rt)
    now = rt.clock.time()
    midnight = dt.datetime.fromtimestamp(now, AMS).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    # One pass over the undelivered rows (the state index) for every route's queued, in flight and dead.
    waiting: dict[tuple[str, str, str], tuple[int, int]] = {
        (r[0], r[1], r[2]): (int(r[3]), int(r[4] or 0)) for r in rt.store.query(
            "SELECT partner, operation, state, COUNT(*), SUM(CASE WHEN lease_expires_at > :now THEN 1 ELSE 0 END) "
            "FROM outbox WHERE state IN ('pending', 'dead') GROUP BY partner, operation, state", {"now": now})}
    waiting_now = sum(count for count, _ in waiting.values())
    routes = {}
    for (partner, operation), name in health.ROUTES.items():
        pending, in_flight = waiting.get((partner, operation, "pending"), (0, 0))
        today = rt.store.query("SELECT COUNT(*) FROM outbox WHERE delivered_at >= :t AND partner = :p AND "
                               "operation = :o", {"p": partner, "o": operation, "t": midnight})[0][0]
        refused = rt.store.query("SELECT COUNT(*) FROM messages WHERE route = :r AND state = 'refused_by_partner'",
                                 {"r": name})[0][0]
        r = report["routes"].get(name, {})
        routes[name] = {"queued": pending - in_flight, "in_flight": in_flight, "delivered_today": int(today),
                        "refused": int(refused), "dead": waiting.get((partner, operation, "dead"), (0, 0))[0],
                        "oldest_undelivered_seconds": r.get("oldest_undelivered_seconds"),
                        "status": r.get("status", "unknown"), "reasons": r.get("reasons", [])}
    return {"status": report["status"], "routes": routes, "checks": _checks(rt, report),
            "circuits": {p: _circuit(rt, p) for p in PARTNERS},
            "ind_gaps": report["checks"].get("ind_sequence", {}),
            "chart_24h": _series(rt, now - 24 * 3600, 3600, 24, waiting_now),
            "chart_30d": _series(rt, now - 30 * 86400, 86400, 30, waiting_now)}


def _checks(rt: Runtime, report: dict[str, Any]) -> list[dict[str, Any]]:
    h, c = rt.config.health, rt.config.cjib
    limits = {"ind-duo": f"undelivered > {h.max_undelivered_age_seconds:.0f}s fails, > {h.degraded_age_seconds:.0f}s "
                         f"degrades; silence > {h.max_silence_seconds:.0f}s fails",
              "duo-cjib": f"undelivered > {c.stall_seconds:.0f}s fails; silence > {h.max_silence_seconds:.0f}s fails",
              "cjib-duo": f"undelivered > {h.max_undelivered_age_seconds:.0f}s fails",
              "ind_sequence": f"a gap older than {3 * rt.config.ind.gap_grace_seconds:.0f}s fails",
              "cjib_feed": f"not read for {c.feed_stale_seconds:.0f}s fails",
              "processes": f"no heartbeat within {h.max_heartbeat_age_seconds:.0f}s fails", "store": "unreachable fails"}
    out = [{"name": n, "status": r["status"], "threshold": limits.get(n, ""), "reason": "; ".join(r["reasons"])}
           for n, r in report["routes"].items()]
    out += [{"name": n, "status": v["status"], "threshold": limits.get(n, ""), "reason": v.get("reason", "")}
            for n, v in report["checks"].items()]
    return out


def _circuit(rt: Runtime, partner: str) -> str:
    value = rt.metrics.registry.get_sample_value("gateway_circuit_open", {"partner": partner})
    return "open" if value else "closed"


def _series(rt: Runtime, start: float, step: int, n: int, waiting_now: int) -> list[dict[str, Any]]:
    """Deliveries per bucket and the backlog (queued, not yet delivered, not resolved) at each
    bucket's end. Counted back from now (``waiting_now``: pending and dead rows), so only the
    window's rows are read, and counted per bucket by the database (indexes on created_at and
    delivered_at), never the whole history."""
    # Whole buckets: FLOOR on PostgreSQL (its CAST rounds); SQLite's CAST truncates, the same here.
    bucket = "FLOOR(({col} - :s) / :step)" if rt.store.dialect == "postgresql" else "CAST(({col} - :s) / :step AS INTEGER)"

    def per_bucket(column: str, where: str) -> list[int]:
        counts = [0] * n
        b_expr = bucket.format(col=column)
        sql = f"SELECT {b_expr}, COUNT(*) FROM outbox WHERE {where} GROUP BY {b_expr}"
        for b, count in rt.store.query(sql, {"s": start, "step": float(step)}):
            counts[min(n - 1, max(0, int(b)))] += int(count)
        return counts

    created = per_bucket("created_at", "created_at >= :s")
    # ("+": by the state index; SQLite would otherwise walk the window's rows in the created_at index)
    resolved = per_bucket("created_at", "state = 'resolved' AND +created_at >= :s")
    delivered = per_bucket("delivered_at", "delivered_at >= :s")
    change = [c - r - d for c, r, d in zip(created, resolved, delivered, strict=True)]
    backlog = waiting_now - sum(change)
    out = []
    for i in range(n):
        backlog += change[i]
        out.append({"end": views.fmt_time(start + (i + 1) * step), "delivered": delivered[i], "backlog": backlog})
    return out


def _rule_sets(rt: Runtime) -> list[str]:
    from pathlib import Path

    return sorted(p.stem for p in Path(rt.config.rules.directory).glob("*.yaml") if not p.stem.endswith(".cases"))


def rules(rt: Runtime, q: dict[str, str] | None = None) -> dict[str, Any]:
    """``GET /api/v1/rules``: the active rule set, its roll-outs, the corrections they queued, the
    impact of another rule set (``impact=NAME``, nothing changes), the delay report and the claims
    backlog with how fast it drains. Always masked."""
    from gateway.rules import rollout

    q = q or {}
    history = [e.to_dict() for e in audit.entries(rt.store, action="rules-apply", limit=100)]
    corrections = dict(rt.store.query("SELECT state, COUNT(*) FROM messages WHERE route = 'rules-duo' GROUP BY state"))
    out: dict[str, Any] = {"active": rt.ruleset.version, "available": _rule_sets(rt), "history": history,
                           "corrections": {str(k): int(v) for k, v in corrections.items()},
                           "delays": rollout.delays(rt.store).to_dict(), "claims_backlog": _claims_backlog(rt)}
    if q.get("impact"):
        out["impact"] = rollout.impact(rt.store, _rule_set(rt, q["impact"])).to_dict()
    return out


def _rule_set(rt: Runtime, name: str) -> Any:
    from gateway.core.errors import ConfigError
    from gateway.runtime import load_ruleset

    if name not in _rule_sets(rt):
        raise Refused(404 if re.fullmatch(r"[\w.\-]{1,100}", name) else 400,
                      f"no rule set {name!r} in the rules directory (one of {', '.join(_rule_sets(rt))})")
    try:
        return load_ruleset(rt.config, name)
    except (ConfigError, ValueError) as exc:
        raise Refused(400, f"rule set {name!r} does not load: {exc}") from None


def roll_out(rt: Runtime, s: Session, name: str, expected: str | None, reason: str | None) -> dict[str, Any]:
    """``POST /api/v1/rules/apply``: make ``name`` active and queue its corrections (operator role).

    ``expected`` is the number of changed people the operator saw in the impact report; when it
    differs now the roll-out is refused (preview again). Other processes pick the new rule set up
    at their next start (as after ``gateway rules apply``).
    """
    from gateway.rules import rollout

    try:
        if not may(s, "act"):
            raise Refused(403, "only an operator with the operator role may roll out a rule set")
        reason = _reason(reason)
        new = _rule_set(rt, name)
        changed = len(rollout.impact(rt.store, new).changes)
        if expected != str(changed):
            raise Refused(409, f"the impact changed since the preview ({expected} then, {changed} now): preview again")
    except Refused as exc:
        audit.record(rt.store, actor=s.operator, action="rules-apply", target=f"ruleset:{name}", reason=exc.message,
                     channel="console", outcome="refused")
        raise
    queued = rollout.apply_corrections(rt, new, s.operator, channel="console")
    rt.ruleset = new  # this process evaluates new notifications with it from now on
    return {"ruleset": new.version, "corrections_queued": queued, "reason": reason}


def _claims_backlog(rt: Runtime) -> dict[str, Any]:
    """Claims waiting for CJIB (the 1,200 scenario) and how fast they drain (last hour)."""
    now = rt.clock.time()
    waiting, oldest = rt.store.query("SELECT COUNT(*), MIN(created_at) FROM outbox WHERE partner = 'cjib' "
                                     "AND state = 'pending'")[0]
    hour = int(rt.store.query("SELECT COUNT(*) FROM outbox WHERE partner = 'cjib' AND state = 'delivered' "
                              "AND delivered_at >= :t", {"t": now - 3600})[0][0])
    dead = int(rt.store.query("SELECT COUNT(*) FROM outbox WHERE partner = 'cjib' AND state = 'dead'")[0][0])
    return {"waiting": int(waiting), "dead": dead, "oldest_seconds": round(now - float(oldest), 1) if oldest else 0,
            "delivered_last_hour": hour,
            "hours_to_drain": round(int(waiting) / hour, 1) if hour else None}
