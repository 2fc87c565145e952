"""A DUO outage in the running chain reaches people: exactly one alert e-mail and one webhook post
when the queue stands still, one repeat after the interval, and one resolution when DUO is back.

The alerts job runs in the daemon (every 0.2 s here; a condition must hold 2.5 s before it is sent,
so the moment after each jump of the clock, before CJIB's feed is read again, is no alert) against real receivers on loopback: an SMTP
server that requires STARTTLS and a webhook receiver. The chain runs on a clock the test moves
(as in test_outage_health); DUO answers 503 with Retry-After for six hours.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.duo.simulator import Faults
from gateway.core.clock import FixedClock
from tests import alerting
from tests.alerting import SmtpServer, WebhookReceiver, alerts_config
from tests.e2e.helpers import attempt_rows, bericht_id, meldingen, wait_until

HOUR = 3600.0


@pytest.fixture
def receivers(pki_paths: dict[str, Any]) -> Iterator[tuple[SmtpServer, WebhookReceiver]]:
    yield from alerting.receivers(pki_paths, "smtp-e2e")


def _settle(smtp: SmtpServer, webhook: WebhookReceiver, n: int) -> bool:
    """Wait for ``n`` messages on each channel, then long enough for an extra one to be confirmed."""
    reached = wait_until(lambda: len(smtp.messages) >= n and len(webhook.bodies) >= n, 15)
    time.sleep(3.5)
    return reached


def test_duo_outage_opens_one_alert_repeats_it_and_resolves_it(make_chain: Any, receivers: Any,
                                                               pki_paths: dict[str, Any]) -> None:
    smtp, webhook = receivers
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
    clock = FixedClock(t0)
    chain = make_chain(clock=clock, duo_faults=Faults(downtime=[(t0, t0 + dt.timedelta(hours=6))]), overrides={
        "health": {"max_undelivered_age_seconds": 4 * HOUR, "max_silence_seconds": HOUR},
        "alerts": alerts_config(smtp, webhook, pki_paths["ca"], evaluate_seconds=0.2, repeat_seconds=0.75 * HOUR,
                                 confirm_seconds=2.5)})
    rt = chain.daemon.rt
    ms = meldingen(3, seed=71, now=t0)
    for m in ms:
        assert chain.ind.push(chain.ind_endpoint, m).accepted
    assert wait_until(lambda: len(attempt_rows(rt.store)) >= 3, 10)

    clock.advance(0.5 * HOUR)  # degraded only: nobody is woken for that
    time.sleep(3.5)
    assert smtp.messages == [] and webhook.bodies == []

    clock.advance(4.5 * HOUR)  # the queue has stood still past its limit
    assert _settle(smtp, webhook, 1)
    assert smtp.subjects() == ["[sandbox] FIRING queue-stalled:ind-duo"]
    assert [b["status"] for b in webhook.bodies] == ["firing"]
    alert = webhook.bodies[0]["alerts"][0]
    assert alert["labels"]["condition"] == "queue-stalled:ind-duo" and "3 waiting" in alert["annotations"]["summary"]
    body = smtp.messages[0].get_payload()
    sent = body + str(webhook.bodies)
    for m in ms:  # ids and counts only: no person's data in an alert
        p = m.persoon
        assert not [v for v in (p.bsn, p.v_nummer, p.geslachtsnaam, p.geboortedatum) if v and v in sent]

    clock.advance(0.75 * HOUR + 1)  # still down, and the repeat interval (45 min) has passed
    assert _settle(smtp, webhook, 2)
    assert smtp.subjects()[1:] == ["[sandbox] REPEAT queue-stalled:ind-duo"]

    clock.advance(0.5 * HOUR)  # DUO is back (6 h 15 min): delivered, and the alert resolves
    assert wait_until(lambda: all(chain.duo.count(bericht_id(m.melding_id)) == 1 for m in ms), 15)
    assert _settle(smtp, webhook, 3)
    assert smtp.subjects() == ["[sandbox] FIRING queue-stalled:ind-duo", "[sandbox] REPEAT queue-stalled:ind-duo",
                               "[sandbox] RESOLVED queue-stalled:ind-duo"]
    assert [b["status"] for b in webhook.bodies] == ["firing", "firing", "resolved"]
    assert rt.store.query("SELECT COUNT(*) FROM alerts WHERE resolved_at IS NULL")[0][0] == 0
