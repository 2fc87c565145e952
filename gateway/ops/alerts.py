"""Alerts that reach people: every health condition becomes an alert with a start, repeats and a
resolution, sent by e-mail (SMTP with STARTTLS) and to a webhook (Alertmanager's JSON shape).

One job (``run``, on a job lease, so one process at a time) evaluates the conditions every
``alerts.evaluate_seconds``:

- ``conditions`` (pure) turns the health report, the certificate findings, the late IND
  notifications and the partners whose last attempts all failed into named conditions;
- ``reconcile`` opens an alert for a new condition once it has held for ``alerts.confirm_seconds``
  (Prometheus' ``for``: a blip is not an alert), repeats one still open after
  ``alerts.repeat_seconds`` and resolves one whose condition is gone; each of these queues one
  notification per channel in ``alert_sends``, in the same transaction;
- ``deliver`` sends what is queued and retries what failed (doubling ``send_retry_seconds``, at
  most an hour); unsent notifications show on ``gateway health`` (the ``alerts`` check).

Deduplicated: one alert per condition (a unique index on open alerts), not one per message. The
state is in the store, so a restart neither repeats nor forgets an alert. Summaries carry route
and partner names, counts, ages and file names, never personal data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import smtplib
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx

from gateway.core.config import AlertsConfig, SmtpChannel, WebhookChannel
from gateway.core.errors import StoreError

__all__ = ["Condition", "Notification", "conditions", "reconcile", "deliver", "run", "channels", "send_test",
           "listing", "webhook_body"]

#: Routes by the partner they deliver to: a partner that is down explains its routes' stalled queues.
ROUTE_PARTNER = {"ind-duo": "duo", "duo-cjib": "cjib", "cjib-duo": "duo"}
MAX_RETRY_SECONDS = 3600.0


@dataclass(frozen=True)
class Condition:
    name: str
    severity: str  # warning | critical
    summary: str


@dataclass(frozen=True)
class Notification:
    """One alert as it goes out: ``kind`` is firing, repeat, resolved or test."""

    name: str
    severity: str
    summary: str
    kind: str
    started_at: float
    resolved_at: float | None
    instance: str

    @property
    def status(self) -> str:
        return "resolved" if self.kind == "resolved" else "firing"


# ---------------------------------------------------------------- conditions (pure)


def conditions(report: Mapping[str, Any], *, certificates: Sequence[Any] = (),
               late: tuple[int, int] = (0, 0), partners_down: Mapping[str, str] | None = None,
               late_window_seconds: float = 86400.0) -> dict[str, Condition]:
    """The conditions that hold now, by name."""
    down = dict(partners_down or {})
    out: dict[str, Condition] = {}

    def add(name: str, severity: str, summary: str) -> None:
        out[name] = Condition(name, severity, summary)

    for partner, why in sorted(down.items()):
        add(f"partner-down:{partner}", "critical", f"partner {partner} is not accepting deliveries: {why}")
    for route, r in sorted(report.get("routes", {}).items()):
        stalled = [x for x in r.get("reasons", []) if x.startswith(("undelivered", "no success"))]
        if r.get("status") == "failing" and stalled and ROUTE_PARTNER.get(route) not in down:
            what = "CJIB backlog" if route == "duo-cjib" else f"queue {route}"
            add(f"queue-stalled:{route}", "critical",
                f"{what} standing still: {r['waiting']} waiting, oldest {r['oldest_undelivered_seconds']:.0f}s; "
                + "; ".join(stalled))
        if r.get("dead"):
            add(f"dead-letters:{route}", "warning",
                f"route {route}: {r['dead']} dead letter(s) wait for an operator (gateway log --state dead)")
    checks = report.get("checks", {})
    gaps = checks.get("ind_sequence", {})
    if gaps.get("open_gaps"):
        first = ", ".join(str(v) for v in gaps.get("first_missing", [])[:5])
        add("ind-sequence-gap", "critical" if gaps.get("status") == "failing" else "warning",
            f"IND sequence: {gaps['open_gaps']} volgnummer(s) missing (first: {first}), oldest gap "
            f"{gaps.get('oldest_gap_seconds', 0):.0f}s")
    crl = checks.get("revocation", {})
    if crl.get("status") in ("degraded", "failing"):
        add("crl-unavailable", "critical" if crl["status"] == "failing" else "warning",
            f"revocation lists: {crl.get('reason', crl['status'])}")
    feed = checks.get("cjib_feed", {})
    if feed.get("status") == "failing":
        add("cjib-feed-stale", "critical",
            f"CJIB's status feed not read for {feed.get('seconds_since_last_read') or 0:.0f}s")
    count, worst = late
    if count:
        add("late-notifications", "warning",
            f"{count} IND notification(s) arrived past the delivery window in the last "
            f"{late_window_seconds / 3600:.0f} h (up to {worst} day(s) late; gateway report delays)")
    for f in certificates:
        if f.level in ("warning", "error") and ("expire" in f.message or "not valid before" in f.message):
            add(f"certificate:{f.what}", "critical" if f.level == "error" else "warning", f"{f.what}: {f.message}")
    return out


# ---------------------------------------------------------------- state in the store


def reconcile(store: Any, active: Mapping[str, Condition], *, now: float, repeat_seconds: float,
              channel_names: list[str], confirm_seconds: float = 0.0, wall: float | None = None) -> dict[str, int]:
    """Open, repeat and resolve alerts so the store matches ``active``; queue their notifications.

    A new condition is recorded at once but sent only once it has held for ``confirm_seconds``
    (wall-clock); one that goes away before that is closed without a word (a blip)."""
    wall = time.time() if wall is None else wall
    counts = {"opened": 0, "repeated": 0, "resolved": 0}
    with store.tx() as t:
        open_rows = {r[1]: r for r in t.all(
            "SELECT id, name, first_seen_wall, last_notified_at FROM alerts WHERE resolved_at IS NULL")}
        for name, c in active.items():
            row = open_rows.get(name)
            if row is None:
                t.execute("INSERT INTO alerts (name, severity, summary, started_at, last_seen_at, first_seen_wall) "
                          "VALUES (:n, :s, :m, :now, :now, :wall)",
                          {"n": name, "s": c.severity, "m": c.summary, "now": now, "wall": wall})
                row = t.one("SELECT id, name, first_seen_wall, last_notified_at FROM alerts "
                            "WHERE name = :n AND resolved_at IS NULL", {"n": name})
            if row[3] is None:
                kind = "firing" if wall - float(row[2]) >= confirm_seconds else None
            else:
                kind = "repeat" if now - float(row[3]) >= repeat_seconds else None
            t.execute("UPDATE alerts SET severity = :s, summary = :m, last_seen_at = :now"
                      + (", last_notified_at = :now, notifications = notifications + 1" if kind else "")
                      + " WHERE id = :id", {"s": c.severity, "m": c.summary, "now": now, "id": row[0]})
            if kind:
                _queue(t, int(row[0]), kind, channel_names, wall)
                counts["opened" if kind == "firing" else "repeated"] += 1
        for name, row in open_rows.items():
            if name not in active:
                t.execute("UPDATE alerts SET resolved_at = :now WHERE id = :id", {"now": now, "id": row[0]})
                if row[3] is not None:
                    _queue(t, int(row[0]), "resolved", channel_names, wall)
                    counts["resolved"] += 1
    return counts


def _queue(t: Any, alert_id: int, kind: str, channel_names: list[str], wall: float) -> None:
    for channel in channel_names:
        t.execute("INSERT INTO alert_sends (alert_id, channel, kind, created_at, state, next_attempt_at) "
                  "VALUES (:a, :c, :k, :now, 'pending', :now)", {"a": alert_id, "c": channel, "k": kind, "now": wall})


Sender = Callable[[Notification], None]


def deliver(store: Any, senders: Mapping[str, Sender], *, instance: str, retry_seconds: float,
            wall: float | None = None) -> dict[str, int]:
    """Send every due notification; a failure is recorded and retried later, never dropped."""
    wall = time.time() if wall is None else wall
    rows = store.query(
        "SELECT s.id, s.channel, s.kind, s.attempts, a.name, a.severity, a.summary, a.started_at, a.resolved_at "
        "FROM alert_sends s JOIN alerts a ON a.id = s.alert_id "
        "WHERE s.state = 'pending' AND s.next_attempt_at <= :now ORDER BY s.id", {"now": wall})
    counts = {"sent": 0, "failed": 0}
    for r in rows:
        send = senders.get(r[1])
        note = Notification(r[4], r[5], r[6], r[2], float(r[7]), None if r[8] is None else float(r[8]), instance)
        try:
            if send is None:
                raise RuntimeError(f"channel {r[1]} is no longer configured")
            send(note)
        except Exception as exc:  # noqa: BLE001 - any failure of a channel is retried and shown
            delay = min(retry_seconds * 2 ** int(r[3]), MAX_RETRY_SECONDS)
            with store.tx() as t:
                t.execute("UPDATE alert_sends SET attempts = attempts + 1, next_attempt_at = :next, last_error = :e "
                          "WHERE id = :id", {"next": wall + delay, "e": _error(exc), "id": r[0]})
            counts["failed"] += 1
            continue
        with store.tx() as t:
            t.execute("UPDATE alert_sends SET state = 'sent', attempts = attempts + 1, sent_at = :now, "
                      "last_error = NULL WHERE id = :id", {"now": time.time(), "id": r[0]})
        counts["sent"] += 1
    return counts


def _error(exc: BaseException) -> str:
    # The class and the first line only: an SMTP or HTTP error names hosts and codes, not our data.
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def listing(store: Any, *, limit: int = 50) -> list[dict[str, Any]]:
    """Open alerts first, then the most recent resolved ones, with their notifications' state."""
    rows = store.query(
        "SELECT id, name, severity, summary, started_at, last_notified_at, notifications, resolved_at FROM alerts "
        "WHERE notifications > 0 OR resolved_at IS NULL ORDER BY CASE WHEN resolved_at IS NULL THEN 0 ELSE 1 END, started_at DESC, id DESC LIMIT :limit",
        {"limit": limit})
    sends: dict[int, list[dict[str, Any]]] = {}
    if rows:
        ids = ",".join(str(int(r[0])) for r in rows)
        for s in store.query("SELECT alert_id, channel, kind, state, attempts, last_error FROM alert_sends "
                             f"WHERE alert_id IN ({ids}) ORDER BY id"):
            sends.setdefault(int(s[0]), []).append(
                {"channel": s[1], "kind": s[2], "state": s[3], "attempts": int(s[4]), "last_error": s[5]})
    return [{"id": int(r[0]), "name": r[1], "severity": r[2], "summary": r[3], "state":
             "resolved" if r[7] is not None else ("open" if r[5] is not None else "pending"), "started": _iso(r[4]), "last_notified": None if r[5] is None else _iso(r[5]),
             "notifications": int(r[6]), "resolved": None if r[7] is None else _iso(r[7]),
             "sends": sends.get(int(r[0]), [])} for r in rows]


def _iso(epoch: Any) -> str:
    return dt.datetime.fromtimestamp(float(epoch), dt.UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------- channels


def webhook_body(n: Notification) -> dict[str, Any]:
    """Alertmanager's webhook payload (version 4), one alert per post."""
    alertname, _, subject = n.name.partition(":")
    labels = {"alertname": alertname, "condition": n.name, "severity": n.severity, "instance": n.instance}
    if subject:
        labels["subject"] = subject
    annotations = {"summary": n.summary, "notification": n.kind}
    alert = {"status": n.status, "labels": labels, "annotations": annotations, "startsAt": _iso(n.started_at),
             "endsAt": _iso(n.resolved_at) if n.resolved_at is not None else "0001-01-01T00:00:00Z",
             "generatorURL": "", "fingerprint": hashlib.sha256(n.name.encode()).hexdigest()[:16]}
    return {"version": "4", "groupKey": f"{{}}:{{condition=\"{n.name}\"}}", "truncatedAlerts": 0,
            "status": n.status, "receiver": "gateway", "groupLabels": {"condition": n.name},
            "commonLabels": labels, "commonAnnotations": annotations, "externalURL": "", "alerts": [alert]}


def webhook_sender(cfg: WebhookChannel) -> Sender:
    verify: Any = ssl.create_default_context(cafile=cfg.ca_file) if cfg.ca_file else True

    def send(n: Notification) -> None:
        r = httpx.post(cfg.url, json=webhook_body(n), timeout=cfg.timeout_seconds, verify=verify)
        if not 200 <= r.status_code < 300:
            raise RuntimeError(f"webhook answered HTTP {r.status_code}")

    return send


def email(n: Notification, sender: str, to: list[str]) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"] = sender, ", ".join(to)
    msg["Subject"] = f"[{n.instance}] {n.kind.upper()} {n.name}"
    lines = [f"{n.kind.upper()}: {n.name} ({n.severity})", "", n.summary, "",
             f"started:  {_iso(n.started_at)}"]
    if n.resolved_at is not None:
        lines.append(f"resolved: {_iso(n.resolved_at)}")
    lines += [f"gateway:  {n.instance}", "", "See `gateway health` and `gateway alerts` on the gateway."]
    msg.set_content("\n".join(lines) + "\n")
    return msg


def smtp_sender(cfg: SmtpChannel) -> Sender:
    def send(n: Notification) -> None:
        with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_seconds) as smtp:
            if cfg.starttls:
                smtp.starttls(context=ssl.create_default_context(cafile=cfg.ca_file or None))
            if cfg.username:
                smtp.login(cfg.username, Path(cfg.password_file).read_text().strip() if cfg.password_file else "")
            smtp.send_message(email(n, cfg.sender, cfg.to))

    return send


def channels(cfg: AlertsConfig) -> dict[str, Sender]:
    out: dict[str, Sender] = {}
    if cfg.smtp is not None:
        out["smtp"] = smtp_sender(cfg.smtp)
    if cfg.webhook is not None:
        out["webhook"] = webhook_sender(cfg.webhook)
    return out


def send_test(cfg: AlertsConfig, instance: str) -> dict[str, str | None]:
    """Send a test alert to every channel at once; channel -> None (sent) or the error."""
    now = time.time()
    note = Notification("test:alerts", "warning", "a test alert from `gateway alerts test`; nothing is wrong",
                        "test", now, None, instance)
    result: dict[str, str | None] = {}
    for name, send in channels(cfg).items():
        try:
            send(note)
            result[name] = None
        except Exception as exc:  # noqa: BLE001 - reported per channel
            result[name] = _error(exc)
    return result


# ---------------------------------------------------------------- the job


def run(rt: Any) -> dict[str, int]:
    """Evaluate, reconcile, deliver (the ``alerts`` job)."""
    from gateway.ops import checks, health

    report = health.evaluate(rt)
    store_check = report["checks"].get("store", {})
    if store_check.get("status", "ok") != "ok":
        raise StoreError(store_check.get("reason", "the store is unreachable"))  # nothing can be recorded now
    cfg = rt.config.alerts
    now = rt.clock.time()
    certs = checks.certificate_findings(rt.config, dt.datetime.fromtimestamp(now, dt.UTC),
                                        warning_days=cfg.certificate_days) if rt.config.tls.enabled else []
    _export_certificates(rt)
    active = conditions(report, certificates=certs, late=_late(rt, now), partners_down=_partners_down(rt),
                        late_window_seconds=cfg.late_window_seconds)
    senders = channels(cfg)
    counts = reconcile(rt.store, active, now=now, repeat_seconds=cfg.repeat_seconds, channel_names=sorted(senders),
                       confirm_seconds=cfg.confirm_seconds)
    counts.update(deliver(rt.store, senders, instance=rt.config.instance, retry_seconds=cfg.send_retry_seconds))
    if any(counts.values()):
        rt.log.info("alerts", stage="processing", **counts)
    return counts


def _export_certificates(rt: Any) -> None:
    """``gateway_certificate_not_after_seconds`` per certificate (own and pinned), for Prometheus'
    expiry rule (deploy/prometheus/alerts.yml)."""
    from prometheus_client import Gauge

    from gateway.security import keys

    if not rt.config.tls.enabled:
        return
    gauge = rt.metrics.extra("certificates", lambda r: Gauge(
        "gateway_certificate_not_after_seconds", "End of validity (epoch seconds) of the gateway's own "
        "certificate and each pinned partner certificate", ["certificate"], registry=r))
    files = [("gateway", rt.config.tls.cert_file)] + [
        (name, f) for name, pc in rt.config.partners.items() for f in pc.certificate_files]
    gauge.clear()
    for owner, file in files:
        try:
            certs = keys.read_certificates(Path(file))
        except Exception:  # noqa: BLE001 - a missing file is check-config's finding, not this gauge's
            continue
        for cert in certs:
            gauge.labels(f"{owner} {keys.kid(cert)[:12]}").set(cert.not_valid_after_utc.timestamp())


def _late(rt: Any, now: float) -> tuple[int, int]:
    from gateway.rules import rollout

    cfg = rt.config.alerts
    return rollout.late_summary(rt.store, since=now - cfg.late_window_seconds, more_than_days=cfg.late_days)


def _partners_down(rt: Any) -> dict[str, str]:
    """Partners whose last ``breaker_failures`` attempts all failed and who have work waiting (the
    circuit breaker's own rule, read from the store so every process sees the same)."""
    out = {}
    for partner in ("duo", "cjib"):
        if partner not in rt.config.partners:
            continue
        k = rt.config.partner(partner).policy.breaker_failures
        last = rt.store.query("SELECT a.outcome, a.http_status FROM attempts a JOIN outbox o ON o.id = a.outbox_id "
                              "WHERE o.partner = :p ORDER BY a.id DESC LIMIT :k", {"p": partner, "k": k})
        waiting = rt.store.query("SELECT COUNT(*) FROM outbox WHERE partner = :p AND state = 'pending'",
                                 {"p": partner})[0][0]
        if len(last) == k and all(r[0] == "retry" for r in last) and int(waiting):
            codes = sorted({str(r[1]) if r[1] is not None else "no answer" for r in last})
            out[partner] = f"the last {k} attempts failed ({', '.join(codes)}), {int(waiting)} deliveries waiting"
    return out
