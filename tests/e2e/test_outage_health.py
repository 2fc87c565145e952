"""DUO down for hours, on a clock the test moves: health turns failing and back to ok.

One ``FixedClock`` is shared by the daemon and the simulators. DUO answers 503 with Retry-After
for a six-hour window; the test advances the clock inside the window (health failing, /health 503,
/metrics gateway_oldest_undelivered_seconds for route ind-duo), then past it: everything is
delivered exactly once and health is ok again.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx

from adapters.duo.simulator import Faults
from gateway.core.clock import FixedClock
from gateway.ops import health
from tests.e2e.helpers import attempt_rows, bericht_id, meldingen, metric, wait_until

HOUR = 3600.0


def test_hours_long_duo_outage_turns_health_failing_then_ok(make_chain: Any) -> None:
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
    clock = FixedClock(t0)
    window = (t0, t0 + dt.timedelta(hours=6))
    chain = make_chain(clock=clock, duo_faults=Faults(downtime=[window]),
                       overrides={"health": {"max_undelivered_age_seconds": 4 * HOUR, "max_silence_seconds": HOUR,
                                             "degraded_age_seconds": 900.0}})
    rt = chain.daemon.rt
    ms = meldingen(3, seed=61, now=t0)
    for m in ms:
        assert chain.ind.push(chain.ind_endpoint, m).accepted
    # Every delivery tried once, told to come back when the window ends.
    assert wait_until(lambda: len(attempt_rows(rt.store)) >= 3, 10)
    assert {(a["http_status"], a["outcome"]) for a in attempt_rows(rt.store)} == {(503, "retry")}
    due = [float(r[0]) for r in rt.store.query("SELECT next_attempt_at FROM outbox WHERE partner = 'duo'")]
    assert all(d >= window[1].timestamp() - 1 for d in due), due
    assert health.evaluate(rt)["routes"]["ind-duo"]["status"] == "ok"

    clock.advance(0.5 * HOUR)
    report = health.evaluate(rt)
    assert report["routes"]["ind-duo"]["status"] == "degraded"

    clock.advance(4.5 * HOUR)  # five hours into the outage
    report = health.evaluate(rt)
    route = report["routes"]["ind-duo"]
    assert route["status"] == "failing" and report["status"] == "failing"
    assert route["waiting"] == 3 and route["oldest_undelivered_seconds"] >= 5 * HOUR
    assert health.EXIT_CODES[report["status"]] == 2
    r = httpx.get(chain.daemon.operator_url + "/health", timeout=10)
    assert r.status_code == 503 and r.json()["routes"]["ind-duo"]["status"] == "failing"
    text = httpx.get(chain.daemon.operator_url + "/metrics", timeout=10).text
    oldest = metric(text, "gateway_oldest_undelivered_seconds", route="ind-duo")
    assert oldest is not None and oldest >= 5 * HOUR
    assert metric(text, "gateway_waiting_deliveries", route="ind-duo") == 3
    assert metric(text, "gateway_health_status") == 2
    assert len(attempt_rows(rt.store)) == 3  # Retry-After kept the gateway from hammering DUO
    assert all(chain.duo.count(bericht_id(m.melding_id)) == 0 for m in ms)

    clock.advance(1 * HOUR + 1)  # DUO is back
    assert wait_until(lambda: all(chain.duo.count(bericht_id(m.melding_id)) == 1 for m in ms), 15)
    assert wait_until(lambda: health.evaluate(rt)["routes"]["ind-duo"]["waiting"] == 0, 10)
    assert wait_until(lambda: health.evaluate(rt)["status"] == "ok", 10), health.evaluate(rt)
    assert chain.duo.accepted() == 3 and all(chain.duo.count(bericht_id(m.melding_id)) == 1 for m in ms)
    r = httpx.get(chain.daemon.operator_url + "/health", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    text = httpx.get(chain.daemon.operator_url + "/metrics", timeout=10).text
    assert metric(text, "gateway_oldest_undelivered_seconds", route="ind-duo") == 0
    assert metric(text, "gateway_health_status") == 0
    outcomes = [(a["http_status"], a["outcome"]) for a in attempt_rows(rt.store)]
    assert outcomes.count((200, "success")) == 3 and len(outcomes) == 6
