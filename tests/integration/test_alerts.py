"""Alerts on both backends, with real receivers on loopback: an SMTP server that requires STARTTLS
and a webhook receiver. One alert per condition (opened once, repeated after the interval, resolved
once), a restart forgets nothing and repeats nothing, a notification that cannot be sent is
retried and shown on health, a certificate near its end raises its alert, and the CLI."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.core import config as config_mod
from gateway.core.store import Store
from gateway.ops import alerts, health
from gateway.runtime import build_runtime
from tests import alerting
from tests.alerting import SmtpServer, WebhookReceiver, alerts_config
from tests.rules_history import write_toml

STALLED = alerts.Condition("queue-stalled:ind-duo", "critical", "queue ind-duo standing still: 3 waiting")


@pytest.fixture(scope="module")
def receivers(pki_paths: dict[str, Any]) -> Iterator[tuple[SmtpServer, WebhookReceiver]]:
    yield from alerting.receivers(pki_paths, "smtp")


@pytest.fixture
def fresh(receivers: tuple[SmtpServer, WebhookReceiver]) -> tuple[SmtpServer, WebhookReceiver]:
    smtp, webhook = receivers
    smtp.inbox.messages.clear()
    webhook.bodies.clear()
    webhook.status = 200
    return smtp, webhook


def _config(tmp_path: Path, dsn: str, smtp: SmtpServer, webhook: WebhookReceiver, ca: Path,
            **extra: Any) -> Path:
    path = tmp_path / "gateway.toml"
    write_toml({"instance": "alerts-test", "store": {"dsn": dsn}, "tls": {"enabled": False},
                "alerts": alerts_config(smtp, webhook, ca), **extra}, path)
    return path


def test_one_alert_per_condition_repeated_and_resolved(store: Store, fresh: Any, pki_paths: dict[str, Any]) -> None:
    smtp, webhook = fresh
    cfg = config_mod.AlertsConfig.model_validate(alerts_config(smtp, webhook, pki_paths["ca"]))
    senders = alerts.channels(cfg)
    names = sorted(senders)

    def step(active: dict[str, alerts.Condition], now: float, on: Store = store) -> dict[str, int]:
        counts = alerts.reconcile(on, active, now=now, repeat_seconds=3600, channel_names=names)
        return {**counts, **alerts.deliver(on, senders, instance="gw-test", retry_seconds=30)}

    assert step({STALLED.name: STALLED}, 1000) == {"opened": 1, "repeated": 0, "resolved": 0, "sent": 2, "failed": 0}
    # The condition holds on: nothing new, also after a restart (a new store object on the same database).
    assert step({STALLED.name: STALLED}, 1060) == {"opened": 0, "repeated": 0, "resolved": 0, "sent": 0, "failed": 0}
    again = Store(store.dsn)
    assert step({STALLED.name: STALLED}, 1200, again)["opened"] == 0
    assert len(smtp.messages) == 1 and len(webhook.bodies) == 1
    assert step({STALLED.name: STALLED}, 1000 + 3600)["repeated"] == 1
    assert step({}, 5000)["resolved"] == 1
    again.close()

    assert smtp.subjects() == ["[gw-test] FIRING queue-stalled:ind-duo", "[gw-test] REPEAT queue-stalled:ind-duo",
                               "[gw-test] RESOLVED queue-stalled:ind-duo"]
    assert "3 waiting" in smtp.messages[0].get_payload()
    assert [b["status"] for b in webhook.bodies] == ["firing", "firing", "resolved"]
    first, last = webhook.bodies[0], webhook.bodies[-1]
    assert first["version"] == "4" and first["alerts"][0]["labels"] == {
        "alertname": "queue-stalled", "condition": "queue-stalled:ind-duo", "severity": "critical",
        "instance": "gw-test", "subject": "ind-duo"}
    assert first["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"
    assert last["alerts"][0]["endsAt"] == "1970-01-01T01:23:20+00:00"
    [row] = alerts.listing(store)
    assert row["state"] == "resolved" and row["notifications"] == 2
    assert [(s["channel"], s["kind"], s["state"]) for s in row["sends"]] == [
        ("smtp", "firing", "sent"), ("webhook", "firing", "sent"), ("smtp", "repeat", "sent"),
        ("webhook", "repeat", "sent"), ("smtp", "resolved", "sent"), ("webhook", "resolved", "sent")]
    # The condition comes back: a new alert, notified again.
    assert step({STALLED.name: STALLED}, 6000)["opened"] == 1


def test_a_blip_shorter_than_the_confirmation_is_no_alert(store: Store, fresh: Any, pki_paths: dict[str, Any]) -> None:
    smtp, webhook = fresh
    senders = alerts.channels(config_mod.AlertsConfig.model_validate(alerts_config(smtp, webhook, pki_paths["ca"])))

    def step(active: dict[str, alerts.Condition], wall: float) -> dict[str, int]:
        counts = alerts.reconcile(store, active, now=wall, repeat_seconds=3600, channel_names=sorted(senders),
                                  confirm_seconds=120, wall=wall)
        return {**counts, **alerts.deliver(store, senders, instance="t", retry_seconds=30, wall=wall)}

    assert step({STALLED.name: STALLED}, 1000)["opened"] == 0
    assert alerts.listing(store)[0]["state"] == "pending"
    assert step({}, 1060) == {"opened": 0, "repeated": 0, "resolved": 0, "sent": 0, "failed": 0}
    assert alerts.listing(store) == []  # a blip closed without a word is not listed
    assert step({STALLED.name: STALLED}, 2000)["opened"] == 0
    assert step({STALLED.name: STALLED}, 2119)["opened"] == 0
    assert step({STALLED.name: STALLED}, 2120) == {"opened": 1, "repeated": 0, "resolved": 0, "sent": 2, "failed": 0}
    assert smtp.subjects() == ["[t] FIRING queue-stalled:ind-duo"] and len(webhook.bodies) == 1


def test_a_notification_that_cannot_be_sent_is_retried_and_shown_on_health(
        tmp_path: Path, store: Store, fresh: Any, pki_paths: dict[str, Any]) -> None:
    smtp, webhook = fresh
    rt = build_runtime(config_mod.load(_config(tmp_path, store.dsn, smtp, webhook, pki_paths["ca"])), store=store)
    senders = alerts.channels(rt.config.alerts)
    alerts.reconcile(store, {STALLED.name: STALLED}, now=1000, repeat_seconds=3600, channel_names=sorted(senders),
                     wall=1000)
    webhook.status = 500
    assert alerts.deliver(store, senders, instance="t", retry_seconds=30, wall=2000) == {"sent": 1, "failed": 1}
    check = health.evaluate(rt)["checks"]["alerts"]
    assert check["status"] == "degraded" and check["unsent_notifications"] == 1 and check["open_alerts"] == 1
    assert "webhook: RuntimeError: webhook answered HTTP 500" in check["reason"]
    # Not before its back-off has passed; then it goes, and health is ok again.
    webhook.status = 200
    assert alerts.deliver(store, senders, instance="t", retry_seconds=30, wall=2010) == {"sent": 0, "failed": 0}
    assert alerts.deliver(store, senders, instance="t", retry_seconds=30, wall=2031) == {"sent": 1, "failed": 0}
    assert health.evaluate(rt)["checks"]["alerts"]["status"] == "ok"
    assert len(webhook.bodies) == 1 and len(smtp.messages) == 1


def test_a_partner_certificate_ten_days_from_expiry_raises_its_alert(
        tmp_path: Path, store: Store, fresh: Any, pki_paths: dict[str, Any]) -> None:
    smtp, webhook = fresh
    now = dt.datetime.now(dt.UTC)
    _, near = pki_paths["issue"]("ind-ten-days", common_name="ind", not_before=now - dt.timedelta(days=355),
                                 not_after=now + dt.timedelta(days=10, hours=1))
    ca = str(pki_paths["ca"])
    path = tmp_path / "gateway.toml"
    write_toml({"instance": "alerts-test", "store": {"dsn": store.dsn},
                "tls": {"cert_file": str(pki_paths["gateway"]), "key_file": str(pki_paths["gateway-key"])},
                "partners": {"ind": {"trust_anchor_files": [ca], "certificate_files": [str(near)]}},
                "alerts": alerts_config(smtp, webhook, pki_paths["ca"], confirm_seconds=0)}, path)
    rt = build_runtime(config_mod.load(path), store=store)
    counts = alerts.run(rt)
    assert counts["opened"] == 1 and counts["sent"] == 2
    [row] = alerts.listing(store)
    assert row["name"].startswith("certificate:partner ind certificate ") and row["severity"] == "warning"
    assert f"{near}: expires on " in row["summary"] and "in 10 days" in row["summary"]
    assert webhook.bodies[0]["alerts"][0]["labels"]["alertname"] == "certificate"
    assert alerts.run(rt)["opened"] == 0  # deduplicated


def test_cli_lists_alerts_and_tests_every_channel(tmp_path: Path, store: Store, fresh: Any,
                                                  pki_paths: dict[str, Any]) -> None:
    smtp, webhook = fresh
    cfg = str(_config(tmp_path, store.dsn, smtp, webhook, pki_paths["ca"]))
    alerts.reconcile(store, {STALLED.name: STALLED}, now=1000, repeat_seconds=3600, channel_names=["smtp", "webhook"])
    runner = CliRunner()
    listed = runner.invoke(app, ["alerts", "--json", "--config", cfg])
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert (row["name"], row["state"], [s["state"] for s in row["sends"]]) == (
        "queue-stalled:ind-duo", "open", ["pending", "pending"])

    sent = runner.invoke(app, ["alerts", "test", "--json", "--config", cfg])
    assert sent.exit_code == 0, sent.output
    assert json.loads(sent.stdout) == {"smtp": {"ok": True, "error": None}, "webhook": {"ok": True, "error": None}}
    assert smtp.subjects() == ["[alerts-test] TEST test:alerts"]
    assert webhook.bodies[0]["alerts"][0]["annotations"]["notification"] == "test"

    webhook.status = 503
    broken = runner.invoke(app, ["alerts", "test", "--config", cfg])
    assert broken.exit_code == 1 and "webhook: FAILED: RuntimeError: webhook answered HTTP 503" in broken.output
