"""Retries towards DUO, end to end: the gateway (in this process) between simulated IND and DUO.

- 503, 503, 503, 200: delivered once; four attempts recorded with back-off between them.
- 429 with Retry-After: the next attempt waits at least that long.
- 400: straight to dead with the reason; operators retry (by id, and all dead of a partner) and
  resolve, each recorded in operator_actions with operator and time.
- The circuit breaker opens after repeated transient failures (attempt rate drops, gauge
  gateway_circuit_open = 1) and closes after a successful probe.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from adapters.duo.simulator import Answer, Faults
from tests.e2e.helpers import (
    attempt_rows,
    bericht_id,
    cli,
    duo_policy,
    meldingen,
    metric,
    outbox_rows,
    wait_until,
)


def _store(chain: Any) -> Any:
    return chain.daemon.rt.store


def _push(chain: Any, ms: list[Any]) -> None:
    for m in ms:
        r = chain.ind.push(chain.ind_endpoint, m)
        assert r.accepted, (r.http_status, r.fault_code, r.detail_code, r.error)


def _delivery_for(chain: Any, melding: Any) -> dict[str, Any]:
    rows = [r for r in outbox_rows(_store(chain)) if r["idempotency_key"] == bericht_id(melding.melding_id)]
    assert len(rows) == 1
    return rows[0]


def test_503_three_times_then_200_is_delivered_once_after_four_attempts_with_backoff(make_chain: Any) -> None:
    initial = 0.4
    chain = make_chain(duo_faults=Faults(script=[503, 503, 503], retry_after_seconds=0),
                       overrides=duo_policy(backoff_initial_seconds=initial, backoff_max_seconds=1.0))
    [m] = meldingen(1, seed=401)
    _push(chain, [m])
    bid = bericht_id(m.melding_id)
    assert wait_until(lambda: chain.duo.count(bid) == 1, 20)
    d = _delivery_for(chain, m)
    assert wait_until(lambda: _delivery_for(chain, m)["state"] == "delivered", 5)
    attempts = attempt_rows(_store(chain), d["id"])
    assert [a["attempt"] for a in attempts] == [1, 2, 3, 4]
    assert [a["outcome"] for a in attempts] == ["retry", "retry", "retry", "success"]
    assert [a["http_status"] for a in attempts] == [503, 503, 503, 200]
    # Back-off: never sooner than the policy's lower bound (the initial wait; full jitter above it).
    starts = [a["started_at"] for a in attempts]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert all(g >= initial - 0.01 for g in gaps), gaps
    assert chain.duo.count(bid) == 1 and chain.duo.accepted() == 1
    # The operator's view shows the same four attempts.
    code, out = cli(["show", m.melding_id, "--config", str(chain.config_file), "--json"])
    assert code == 0, out
    timeline = json.loads(out)
    [delivery] = timeline["deliveries"]
    assert delivery["state"] == "delivered" and timeline["state"] == "delivered"
    assert [a["outcome"] for a in delivery["attempts"]] == ["retry", "retry", "retry", "success"]
    assert delivery["receipt_ref"]


def test_429_retry_after_is_respected(make_chain: Any) -> None:
    chain = make_chain(duo_faults=Faults(script=[Answer(429, retry_after_seconds=2)]),
                       overrides=duo_policy(backoff_initial_seconds=0.1, backoff_max_seconds=0.5))
    [m] = meldingen(1, seed=429)
    _push(chain, [m])
    assert wait_until(lambda: chain.duo.count(bericht_id(m.melding_id)) == 1, 20)
    d = _delivery_for(chain, m)
    assert wait_until(lambda: len(attempt_rows(_store(chain), d["id"])) == 2, 5)
    first, second = attempt_rows(_store(chain), d["id"])
    assert (first["http_status"], first["outcome"]) == (429, "retry")
    assert (second["http_status"], second["outcome"]) == (200, "success")
    # The back-off alone is at most 0.5 s here: only Retry-After explains the wait.
    assert second["started_at"] - first["started_at"] >= 2.0 - 0.01


def test_400_goes_dead_and_operators_retry_and_resolve(make_chain: Any) -> None:
    chain = make_chain(duo_faults=Faults(script=[400, 400, 400]),
                       overrides=duo_policy(backoff_initial_seconds=0.1, backoff_max_seconds=0.5))
    ms = meldingen(3, seed=400)
    _push(chain, ms)
    store = _store(chain)
    assert wait_until(lambda: all(_delivery_for(chain, m)["state"] == "dead" for m in ms), 20)
    time.sleep(0.3)  # nothing retries a dead letter by itself
    ids = [_delivery_for(chain, m)["id"] for m in ms]
    for i in ids:
        attempts = attempt_rows(store, i)
        assert [(a["http_status"], a["outcome"]) for a in attempts] == [(400, "permanent")]
        row = next(r for r in outbox_rows(store) if r["id"] == i)
        assert row["state"] == "dead" and "GESIMULEERD" in (row["dead_reason"] or "")
    assert all(chain.duo.count(bericht_id(m.melding_id)) == 0 for m in ms)
    cfg = str(chain.config_file)

    t0 = time.time()
    code, out = cli(["resolve", str(ids[2]), "--note", "handled by phone with DUO", "--config", cfg, "--json"])
    assert code == 0 and json.loads(out)["resolved"] == 1, out
    code, out = cli(["retry", str(ids[0]), "--config", cfg, "--json"])
    assert code == 0 and json.loads(out)["requeued"] == 1, out
    assert wait_until(lambda: chain.duo.count(bericht_id(ms[0].melding_id)) == 1, 15)
    code, out = cli(["retry", "--dead", "--partner", "duo", "--note", "DUO fixed its side", "--config", cfg,
                     "--json"])
    assert code == 0 and json.loads(out)["requeued"] == 1, out  # only the one still dead
    assert wait_until(lambda: chain.duo.count(bericht_id(ms[1].melding_id)) == 1, 15)
    t1 = time.time()

    assert wait_until(lambda: [_delivery_for(chain, m)["state"] for m in ms] == ["delivered", "delivered", "resolved"], 5)
    assert chain.duo.count(bericht_id(ms[2].melding_id)) == 0
    states = {r[0]: r[1] for r in store.query("SELECT message_key, state FROM messages")}
    assert [states[m.melding_id] for m in ms] == ["delivered", "delivered", "resolved"]
    actions = store.query("SELECT at, operator, action, target, note FROM operator_actions ORDER BY id")
    assert [(a[1], a[2], a[3], a[4]) for a in actions] == [
        ("e2e-operator", "resolve", f"outbox:{ids[2]}", "handled by phone with DUO"),
        ("e2e-operator", "retry", f"outbox:{ids[0]}", None),
        ("e2e-operator", "retry", f"outbox:{ids[1]}", "DUO fixed its side"),
    ]
    assert all(t0 - 1 <= float(a[0]) <= t1 + 1 for a in actions)
    # Each retried delivery: the refused attempt, then the successful one.
    for i in ids[:2]:
        assert [a["outcome"] for a in attempt_rows(store, i)] == ["permanent", "success"]


def test_circuit_breaker_opens_on_transient_failures_and_closes_after_a_good_probe(make_chain: Any) -> None:
    open_seconds = 1.5
    chain = make_chain(duo_faults=Faults(error_rate=1.0, retry_after_seconds=0),
                       overrides=duo_policy(backoff_initial_seconds=0.05, backoff_max_seconds=0.1,
                                            breaker_failures=3, breaker_open_seconds=open_seconds,
                                            max_attempts=1000))
    ms = meldingen(3, seed=503)
    _push(chain, ms)
    url = chain.daemon.operator_url + "/metrics"

    def gauge() -> float | None:
        return metric(httpx.get(url, timeout=10).text, "gateway_circuit_open", partner="duo")

    assert wait_until(lambda: gauge() == 1.0, 15)
    store = _store(chain)
    n0 = len(attempt_rows(store))
    window = 3.0
    time.sleep(window)
    during_open = len(attempt_rows(store)) - n0
    # Closed, three deliveries with a 0.05-0.1 s back-off would make dozens of attempts in 3 s;
    # open, only one probe per open period gets through.
    assert during_open <= window / open_seconds + 2, during_open
    assert gauge() == 1.0
    assert all(chain.duo.count(bericht_id(m.melding_id)) == 0 for m in ms)
    log_opened = [a for a in attempt_rows(store) if a["outcome"] == "retry"]
    assert len(log_opened) >= 3

    chain.duo.faults.error_rate = 0.0  # DUO is back: the next probe succeeds and closes the breaker
    assert wait_until(lambda: all(chain.duo.count(bericht_id(m.melding_id)) == 1 for m in ms), 15)
    assert wait_until(lambda: gauge() == 0.0, 5)
    assert wait_until(lambda: all(_delivery_for(chain, m)["state"] == "delivered" for m in ms), 5)
    assert chain.daemon.pool.breakers["duo"].state == "closed"


def test_connection_reset_and_lost_acknowledgement_still_deliver_exactly_once(make_chain: Any) -> None:
    chain = make_chain(duo_faults=Faults(script=[Answer(reset=True), Answer(lose_ack=True)]),
                       overrides=duo_policy(backoff_initial_seconds=0.1, backoff_max_seconds=0.3))
    [m] = meldingen(1, seed=404)
    _push(chain, [m])
    bid = bericht_id(m.melding_id)
    assert wait_until(lambda: _delivery_for(chain, m)["state"] == "delivered", 20)
    attempts = attempt_rows(_store(chain), _delivery_for(chain, m)["id"])
    # Reset: nothing reached DUO. Lost acknowledgement: DUO took it in, the gateway never heard;
    # the retry gets DUO's stored acknowledgement and DUO holds the message once.
    assert [a["outcome"] for a in attempts] == ["retry", "retry", "success"]
    assert chain.duo.count(bid) == 1 and chain.duo.accepted() == 1 and len(chain.duo.received) == 1


def test_claims_cut_off_by_crashes_do_not_use_up_the_attempt_limit(make_chain: Any) -> None:
    """A process killed while holding a batch leaves each row's claim counted; those are not
    attempts, and must not send a delivery to the dead letters (max_attempts 3 here)."""
    down = {"on": True}
    chain = make_chain(duo_faults=Faults(downtime=lambda now: down["on"], retry_after_seconds=30),
                       overrides=duo_policy(max_attempts=3, backoff_initial_seconds=0.1, backoff_max_seconds=0.2))
    [m] = meldingen(1, seed=405)
    _push(chain, [m])
    store = _store(chain)
    assert wait_until(lambda: len(attempt_rows(store)) >= 1, 10)
    chain.daemon.stop()
    row = _delivery_for(chain, m)
    assert row["state"] == "pending"
    with store.tx() as t:  # no need to wait for the Retry-After
        t.execute("UPDATE outbox SET next_attempt_at = 0 WHERE id = :id", {"id": row["id"]})
    # Three crashed processes, each killed while it held this row.
    for k in range(3):
        assert store.claim("duo", f"killed-{k}", limit=8, lease_seconds=0.01, now=time.time() + k)
    with store.tx() as t:  # their leases ran out
        t.execute("UPDATE outbox SET lease_owner = NULL, lease_expires_at = NULL WHERE id = :id", {"id": row["id"]})
    assert _delivery_for(chain, m)["attempts"] == 4
    chain.duo.faults.script.extend([Answer(503, retry_after_seconds=0.4)])  # one more failure, then DUO answers
    down["on"] = False
    chain.start_daemon()
    assert wait_until(lambda: len(attempt_rows(store)) >= 2, 10)
    assert _delivery_for(chain, m)["state"] != "dead", _delivery_for(chain, m)["dead_reason"]
    assert wait_until(lambda: chain.duo.count(bericht_id(m.melding_id)) == 1, 15)
    assert wait_until(lambda: _delivery_for(chain, m)["state"] == "delivered", 5)
    assert [a["outcome"] for a in attempt_rows(store)] == ["retry", "retry", "success"]
