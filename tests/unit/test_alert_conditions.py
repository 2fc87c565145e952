"""``alerts.conditions``: which health facts become which alerts (a pure function)."""

from __future__ import annotations

from typing import Any

from gateway.ops.alerts import Notification, conditions, webhook_body
from gateway.ops.checks import Finding


def _route(status: str = "ok", waiting: int = 0, dead: int = 0, reasons: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"status": status, "waiting": waiting, "oldest_undelivered_seconds": 20000.0 if waiting else 0.0,
            "dead": dead, "reasons": list(reasons)}


def _report(**routes: dict[str, Any]) -> dict[str, Any]:
    base = {"ind-duo": _route(), "duo-cjib": _route(), "cjib-duo": _route()}
    return {"routes": {**base, **{k.replace("_", "-"): v for k, v in routes.items()}},
            "checks": {"ind_sequence": {"status": "ok", "open_gaps": 0}, "cjib_feed": {"status": "ok"}}}


def test_a_healthy_report_raises_nothing() -> None:
    assert conditions(_report()) == {}


def test_each_condition_gets_its_own_name() -> None:
    report = _report(ind_duo=_route("failing", 3, reasons=("undelivered for 20000s (limit 14400s)",)),
                     duo_cjib=_route("failing", 1200, 2, ("undelivered for 90000s (limit 86400s)",)))
    report["checks"]["ind_sequence"] = {"status": "failing", "open_gaps": 2, "first_missing": [7, 9],
                                        "oldest_gap_seconds": 900.0}
    report["checks"]["cjib_feed"] = {"status": "failing", "seconds_since_last_read": 7200.0}
    certs = [Finding("warning", "gateway certificate", "/etc/gw.pem: expires on 2027-01-01, in 10 days", "/etc/gw.pem"),
             Finding("ok", "partner duo certificate ab", "valid until 2030-01-01"),
             Finding("warning", "partner ind", "not configured: this route is off")]
    found = conditions(report, certificates=certs, late=(4, 35))
    assert sorted(found) == ["certificate:gateway certificate", "cjib-feed-stale", "dead-letters:duo-cjib",
                             "ind-sequence-gap", "late-notifications", "queue-stalled:duo-cjib",
                             "queue-stalled:ind-duo"]
    assert found["queue-stalled:duo-cjib"].summary.startswith("CJIB backlog standing still: 1200 waiting")
    assert found["ind-sequence-gap"].severity == "critical" and "first: 7, 9" in found["ind-sequence-gap"].summary
    assert "4 IND notification(s)" in found["late-notifications"].summary
    assert found["certificate:gateway certificate"].severity == "warning"


def test_a_crl_that_cannot_be_fetched_is_an_alert() -> None:
    report = _report()
    report["checks"]["revocation"] = {"status": "degraded", "reason": "the CRL at http://ca/crl cannot be fetched: "
                                      "ConnectError"}
    found = conditions(report)
    assert list(found) == ["crl-unavailable"] and found["crl-unavailable"].severity == "warning"
    assert "http://ca/crl" in found["crl-unavailable"].summary


def test_a_partner_down_stands_for_the_stalled_queues_to_it() -> None:
    report = _report(ind_duo=_route("failing", 3, reasons=("no success for 4000s while work waits",)),
                     duo_cjib=_route("failing", 5, reasons=("undelivered for 90000s (limit 86400s)",)))
    found = conditions(report, partners_down={"duo": "the last 5 attempts failed (503)"})
    assert sorted(found) == ["partner-down:duo", "queue-stalled:duo-cjib"]


def test_work_waiting_but_not_yet_failing_is_no_alert() -> None:
    assert conditions(_report(ind_duo=_route("degraded", 3, reasons=("work waiting for 1000s",)))) == {}


def test_webhook_body_follows_alertmanager() -> None:
    n = Notification("dead-letters:ind-duo", "warning", "2 dead letter(s)", "resolved", 0.0, 60.0, "gw-1")
    body = webhook_body(n)
    assert body["version"] == "4" and body["status"] == "resolved" and len(body["alerts"]) == 1
    alert = body["alerts"][0]
    assert alert["labels"]["alertname"] == "dead-letters" and alert["labels"]["subject"] == "ind-duo"
    assert (alert["startsAt"], alert["endsAt"]) == ("1970-01-01T00:00:00+00:00", "1970-01-01T00:01:00+00:00")
