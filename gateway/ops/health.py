"""Is the chain moving? One evaluation, used by ``gateway health``, ``/health`` and ``/metrics``.

A route is **failing** when it holds an undelivered message older than its threshold, or has
waiting work and no success for longer than ``max_silence_seconds``; also when IND's sequence has
a gap older than three grace periods, or CJIB's status feed has not been read for longer than its
threshold. It is **degraded** when work is older than ``degraded_age_seconds``, a dead letter
waits for an operator, a circuit breaker is open, or a gap is open. Otherwise **ok**.
The whole gateway is **failing** when no ``gateway run`` process has written its heartbeat within
``health.max_heartbeat_age_seconds`` (a stopped or dead gateway moves nothing, even with nothing
waiting); the ``processes`` check lists each process with its last heartbeat. The ``alerts`` check
counts open alerts and is **degraded** while an alert notification could not be sent.
When the store cannot be read the report is **failing** with one check, ``store``, whose reason
is "the store is unreachable: <driver error class>" (from ``Store.status()``, in memory); the
metric ``gateway_store_up`` is then 0 and the other gauges keep their last values.
Exit codes of ``gateway health``: 0 ok, 1 degraded, 2 failing.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from gateway.core.errors import StoreError, StoreUnavailable
from gateway.rules import rollout as ruleops
from gateway.runtime import Runtime

__all__ = ["ROUTES", "evaluate", "export", "EXIT_CODES"]

#: Delivery routes by (partner, operation).
ROUTES = {
    ("duo", "InburgeraarMelding"): "ind-duo",
    ("cjib", "Vordering"): "duo-cjib",
    ("duo", "VorderingStatus"): "cjib-duo",
}
EXIT_CODES = {"ok": 0, "degraded": 1, "failing": 2}
_RANK = {"ok": 0, "degraded": 1, "failing": 2}


def _worst(*states: str) -> str:
    return max(states, key=_RANK.__getitem__, default="ok")


def evaluate(rt: Runtime) -> dict[str, Any]:
    """The report; when the store cannot be read, a failing report that says so (and why)."""
    try:
        if not rt.store.status()["up"]:
            # The last transaction failed: reads may work where writes do not (a full disk), so
            # only a write says whether the store is back.
            rt.store.probe()
        report = _evaluate(rt)
    except StoreError as exc:
        return unreachable(rt.config.instance, exc, rt.store.status())
    report["checks"] = {"store": {"status": "ok"}, **report["checks"]}
    return report


def unreachable(instance: str, exc: StoreError, status: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report while the store is unreachable: failing, with the cause (no query needed)."""
    cause = getattr(exc, "cause", None) or exc.message
    since = (status or {}).get("since") or getattr(exc, "since", None)
    reason = f"the store is unreachable: {cause}" if isinstance(exc, StoreUnavailable) else f"the store failed: {cause}"
    check: dict[str, Any] = {"status": "failing", "reason": reason, "cause": cause}
    if since:
        check["since"] = _iso(since)
    return {"status": "failing", "routes": {}, "checks": {"store": check}, "messages": [], "instance": instance,
            "processes": []}


def _evaluate(rt: Runtime) -> dict[str, Any]:
    now = rt.clock.time()
    cfg = rt.config
    q = rt.store.query
    pending = {(r[0], r[1]): (int(r[2]), float(r[3])) for r in q(
        "SELECT partner, operation, COUNT(*), MIN(created_at) FROM outbox WHERE state = 'pending' "
        "GROUP BY partner, operation")}
    # One MAX per route: each walks the delivered_at index from the newest end and stops at the
    # first match, where a GROUP BY over every delivered row took 3.5 s on a million of them.
    last_ok = {}
    for partner, operation in ROUTES:
        row = q("SELECT MAX(delivered_at) FROM outbox WHERE partner = :p AND operation = :o AND state = 'delivered'",
                {"p": partner, "o": operation})
        if row and row[0][0] is not None:
            last_ok[(partner, operation)] = float(row[0][0])
    dead = {(r[0], r[1]): int(r[2]) for r in q(
        "SELECT partner, operation, COUNT(*) FROM outbox WHERE state = 'dead' GROUP BY partner, operation")}
    by_state = [{"route": r[0], "state": r[1], "count": int(r[2])} for r in q(
        "SELECT route, state, COUNT(*) FROM messages GROUP BY route, state ORDER BY route, state")]
    routes = {}
    for key, name in ROUTES.items():
        waiting, oldest = pending.get(key, (0, None))
        age = (now - oldest) if oldest is not None else 0.0
        since_ok = (now - last_ok[key]) if key in last_ok else None
        limit = cfg.cjib.stall_seconds if name == "duo-cjib" else cfg.health.max_undelivered_age_seconds
        reasons: list[str] = []
        status = "ok"
        if waiting and age > limit:
            status, reasons = "failing", reasons + [f"undelivered for {age:.0f}s (limit {limit:.0f}s)"]
        if waiting and (since_ok is None or since_ok > cfg.health.max_silence_seconds) \
                and age > cfg.health.max_silence_seconds:
            status = "failing"
            reasons.append(f"no success for {since_ok or age:.0f}s while work waits")
        if status == "ok" and waiting and age > cfg.health.degraded_age_seconds:
            status, reasons = "degraded", reasons + [f"work waiting for {age:.0f}s"]
        if dead.get(key):
            status = _worst(status, "degraded")
            reasons.append(f"{dead[key]} dead letter(s)")
        routes[name] = {"status": status, "waiting": waiting, "oldest_undelivered_seconds": round(age, 1),
                        "seconds_since_last_success": None if since_ok is None else round(since_ok, 1),
                        "dead": dead.get(key, 0), "reasons": reasons}
    processes = _processes(rt)
    checks = {"ind_sequence": _ind_gaps(rt, now), "cjib_feed": _cjib_feed(rt, now),
              "processes": _process_check(rt, processes), "alerts": _alerts_check(rt),
              "config": _config_check(rt), "revocation": _revocation(rt)}
    overall = _worst(*(str(r["status"]) for r in routes.values()), *(str(c["status"]) for c in checks.values()))
    return {"status": overall, "routes": routes, "checks": checks, "messages": by_state, "instance": cfg.instance,
            "processes": processes}


def _revocation(rt: Runtime) -> dict[str, Any]:
    """The CRL cache (the store's, so `gateway health` in another process sees it too).

    Degraded when the last fetch of a CRL failed (the last good one still counts); failing when
    a CRL is past nextUpdate + revocation.grace_seconds (its certificates' status is unknown:
    hard-fail partners are refused). Wall-clock time, as the refresher writes it.
    """
    now = time.time()
    grace = rt.config.revocation.grace_seconds
    status, reasons, crls = "ok", [], []
    for row in rt.store.crl_rows():
        failed = bool(row["last_error"]) and (row["fetched_at"] is None or row["attempted_at"] > row["fetched_at"])
        stale = row["fetched_at"] is None or (row["next_update"] is not None and now > row["next_update"] + grace)
        if stale:
            status = "failing"
            reasons.append(f"no valid CRL from {row['url']}" + (f": {row['last_error']}" if failed else ""))
        elif failed:
            status = _worst(status, "degraded")
            reasons.append(f"the CRL at {row['url']} cannot be fetched: {row['last_error']}")
        crls.append({"url": row["url"], "fetched_at": _iso(row["fetched_at"]) if row["fetched_at"] else None,
                     "next_update": _iso(row["next_update"]) if row["next_update"] else None,
                     "last_error": row["last_error"] if failed else None})
    check: dict[str, Any] = {"status": status, "crls": len(crls)}
    if reasons:
        check["reason"] = "; ".join(reasons)
    check["cache"] = crls
    return check


def _processes(rt: Runtime) -> list[dict[str, Any]]:
    """The processes seen most recently, with their state: live, stale (no heartbeat) or stopped.

    Wall-clock time, as the heartbeats are written (``gateway.delivery.jobs.Heartbeat``).
    """
    now = time.time()
    limit = rt.config.health.max_heartbeat_age_seconds
    out = []
    for p in rt.store.heartbeats():
        age = max(0.0, now - float(p["last_seen"]))
        state = "stopped" if p["stopped_at"] is not None else ("live" if age <= limit else "stale")
        out.append({"instance": p["instance"], "pid": int(p["pid"]), "host": p["host"], "state": state,
                    "started_at": _iso(p["started_at"]), "last_seen": _iso(p["last_seen"]),
                    "heartbeat_age_seconds": round(age, 1)})
    return out


def _process_check(rt: Runtime, processes: list[dict[str, Any]]) -> dict[str, Any]:
    limit = rt.config.health.max_heartbeat_age_seconds
    live = sum(1 for p in processes if p["state"] == "live")
    check: dict[str, Any] = {"status": "ok" if live else "failing"}
    if not live:  # first: what `gateway health` shows of a check when the line is short
        check["reason"] = (f"no gateway process has shown a heartbeat within {limit:.0f}s" if processes
                           else "no gateway process has ever shown a heartbeat")
    check.update(live=live, max_heartbeat_age_seconds=limit)
    # One line per process (newest first), as `gateway health` prints a check's fields.
    check["seen"] = [f"{p['instance']} pid {p['pid']} on {p['host']}: {p['state']}, last heartbeat "
                     f"{p['last_seen']} ({p['heartbeat_age_seconds']:.0f}s ago)" for p in processes[:10]]
    return check


def _config_check(rt: Runtime) -> dict[str, Any]:
    """This process's configuration: the rule set in force and how the last reload went (a refused
    reload keeps the old configuration running, and says why here until a reload succeeds)."""
    last = rt.reload_status
    check: dict[str, Any] = {"status": "ok"}
    if last and not last.get("ok"):
        check = {"status": "degraded", "reason": f"the last reload was refused ({last['at_iso']}), the previous "
                 f"configuration stays in force: {last['reason']}"}
    check.update(ruleset=rt.ruleset.version, digest=rt.config.digest()[:12])
    if last:
        check["last_reload"] = last["at_iso"]
    return check


def _alerts_check(rt: Runtime) -> dict[str, Any]:
    """Open alerts, and notifications that failed to go out (retried by the alerts job): an alert
    nobody receives is a failure of its own."""
    q = rt.store.query
    open_alerts = int(q("SELECT COUNT(*) FROM alerts WHERE resolved_at IS NULL AND last_notified_at IS NOT NULL")[0][0])
    failed = q("SELECT channel, last_error, created_at FROM alert_sends WHERE state = 'pending' AND attempts > 0 "
               "ORDER BY id DESC")
    check: dict[str, Any] = {"status": "degraded" if failed else "ok"}
    if failed:
        oldest = min(float(r[2]) for r in failed)
        check["reason"] = (f"{len(failed)} alert notification(s) not sent, retrying since {_iso(oldest)} "
                           f"(last error, {failed[0][0]}: {failed[0][1]})")
    check.update(open_alerts=open_alerts, unsent_notifications=len(failed))
    return check


def _iso(epoch: Any) -> str:
    return dt.datetime.fromtimestamp(float(epoch), dt.UTC).isoformat(timespec="seconds")


def _ind_gaps(rt: Runtime, now: float) -> dict[str, Any]:
    gaps = rt.store.ind_gaps(rt.config.ind.first_volgnummer)
    grace = rt.config.ind.gap_grace_seconds
    oldest = max((now - seen for _, seen in gaps), default=0.0)
    behind = rt.store.get_kv("ind.laatste_volgnummer")
    highest = rt.store.ind_highest()
    status = "ok"
    if gaps:
        status = "failing" if oldest > 3 * max(grace, 1.0) else "degraded"
    lag = max(0, int(behind) - highest) if behind is not None else 0
    if lag and status == "ok":
        status = "degraded"
    return {"status": status, "open_gaps": len(gaps), "first_missing": [g for g, _ in gaps[:10]],
            "oldest_gap_seconds": round(oldest, 1), "highest_seen": highest, "behind_ind": lag}


def _cjib_feed(rt: Runtime, now: float) -> dict[str, Any]:
    if "cjib" not in rt.config.partners:
        return {"status": "ok", "configured": False}
    last = rt.store.get_kv("cjib.feed.last_success")
    since = None if last is None else now - float(last)
    started = rt.store.get_kv("cjib.feed.started")
    reference = since if since is not None else (None if started is None else now - float(started))
    status = "failing" if reference is not None and reference > rt.config.cjib.feed_stale_seconds else "ok"
    return {"status": status, "configured": True,
            "seconds_since_last_read": None if since is None else round(since, 1)}


def _health_gauges(r: CollectorRegistry) -> dict[str, Gauge]:
    return {
        "messages": Gauge("gateway_messages", "Messages by route and state", ["route", "state"], registry=r),
        "oldest": Gauge("gateway_oldest_undelivered_seconds", "Age of the oldest undelivered message",
                        ["route"], registry=r),
        "since_ok": Gauge("gateway_seconds_since_last_success", "Time since the last delivery per route",
                          ["route"], registry=r),
        "waiting": Gauge("gateway_waiting_deliveries", "Deliveries waiting per route", ["route"], registry=r),
        "dead": Gauge("gateway_dead_letters", "Dead letters waiting for an operator", ["route"], registry=r),
        "gaps": Gauge("gateway_ind_sequence_gaps", "Open gaps in IND's volgnummer", registry=r),
        "status": Gauge("gateway_health_status", "0 ok, 1 degraded, 2 failing", registry=r),
        "feed": Gauge("gateway_cjib_feed_seconds_since_read", "Time since CJIB's feed was read", registry=r),
        "live": Gauge("gateway_live_processes", "gateway run processes with a recent heartbeat", registry=r),
        "store_up": Gauge("gateway_store_up", "1 when the store answered the last evaluation, 0 when it "
                          "is unreachable", registry=r),
        "alerts": Gauge("gateway_alerts_open", "Alerts open now (gateway alerts)", registry=r),
        "unsent": Gauge("gateway_alert_notifications_unsent", "Alert notifications that failed to go out "
                        "and are being retried", registry=r),
        "beat": Gauge("gateway_heartbeat_age_seconds", "Time since each process's last heartbeat "
                      "(processes not stopped cleanly)", ["instance", "host", "pid"], registry=r),
    }


def export(rt: Runtime, report: dict[str, Any]) -> None:
    """Put the evaluation into the runtime's Prometheus registry."""
    g: dict[str, Gauge] = rt.metrics.extra("health", _health_gauges)
    store_up = report["checks"].get("store", {}).get("status", "ok") == "ok"
    g["store_up"].set(1 if store_up else 0)
    g["status"].set(_RANK[report["status"]])
    if not store_up:
        return  # the other gauges keep their last values (from memory); nothing can be read now
    g["messages"].clear()
    for row in report["messages"]:
        g["messages"].labels(row["route"], row["state"]).set(row["count"])
    for name, r in report["routes"].items():
        g["oldest"].labels(name).set(r["oldest_undelivered_seconds"])
        g["waiting"].labels(name).set(r["waiting"])
        g["dead"].labels(name).set(r["dead"])
        if r["seconds_since_last_success"] is not None:
            g["since_ok"].labels(name).set(r["seconds_since_last_success"])
    g["gaps"].set(report["checks"]["ind_sequence"]["open_gaps"])
    g["status"].set(_RANK[report["status"]])
    feed = report["checks"]["cjib_feed"].get("seconds_since_last_read")
    if feed is not None:
        g["feed"].set(feed)
    g["live"].set(report["checks"]["processes"]["live"])
    g["alerts"].set(report["checks"]["alerts"]["open_alerts"])
    g["unsent"].set(report["checks"]["alerts"]["unsent_notifications"])
    g["beat"].clear()
    for p in report.get("processes", []):
        if p["state"] != "stopped":
            g["beat"].labels(p["instance"], p["host"], str(p["pid"])).set(p["heartbeat_age_seconds"])
    try:
        ruleops.export_delay_metrics(rt)
    except StoreError:
        g["store_up"].set(0)
