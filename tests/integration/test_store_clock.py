"""Leases and due times are the caller's clock's, everywhere: a claim is judged with the runtime's
clock (``rt.clock``, a ``FixedClock`` stepped in tests and replay), so whatever sets a lease's end
or a due time must use that clock too, not the wall clock. Both backends (the ``store`` fixture).
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from gateway.core import config as config_mod
from gateway.core.adapter import Delivery, Outcome
from gateway.core.clock import FixedClock
from gateway.core.store import InboundRecord, Lease, NewDelivery, Store
from gateway.delivery.outbox import CircuitBreaker, Worker
from gateway.runtime import build_runtime
from tests import rules_history as h

DAY = 86400.0


def _queue(store: Store, at: float, key: str = "k-1") -> int:
    store.accept(route="ind-duo", kind="VergunningMelding", message_key=key, content_digest="d",
                 inbound=InboundRecord(partner="ind", operation="OntvangMelding", raw=b"<x/>", received_at=at),
                 ack=b"ack", facts={}, person=None, deliveries=[NewDelivery("duo", "InburgeraarMelding", key, b"x")])
    return int(store.query("SELECT id FROM outbox WHERE idempotency_key = :k", {"k": key})[0][0])


def test_a_heartbeat_extends_the_lease_by_the_callers_clock(store: Store) -> None:
    ahead = time.time() + DAY
    _queue(store, ahead)
    (mine,) = store.claim("duo", "a:w", limit=1, lease_seconds=30, now=ahead)
    assert store.heartbeat([mine.id], "a:w", lease_seconds=30, now=ahead + 20) == 1
    # Held until ahead + 50 by that clock: another owner at ahead + 40 finds nothing to take.
    assert store.claim("duo", "b:w", limit=1, lease_seconds=30, now=ahead + 40) == []
    assert len(store.claim("duo", "b:w", limit=1, lease_seconds=30, now=ahead + 51)) == 1


class Watching:
    """A sender that, while a delivery is in flight, lets another worker try to claim it at the
    runtime's clock's time (as a sibling or another process would)."""

    partner = "duo"

    def __init__(self, store: Store, clock: FixedClock) -> None:
        self.store, self.clock = store, clock
        self.taken: list[list[Delivery]] = []

    def send(self, delivery: Delivery) -> Outcome:
        self.taken.append(self.store.claim("duo", "other:w", limit=1, lease_seconds=60, now=self.clock.time()))
        return Outcome("success", http_status=200, detail="ok")

    def close(self) -> None:
        pass


def test_the_workers_heartbeat_keeps_its_lease_under_a_clock_stepped_ahead(tmp_path: Path, store: Store) -> None:
    clock = FixedClock(dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=1))
    # A lease shorter than the send timeout plus margin: the worker heartbeats before its attempt.
    policy = {"lease_seconds": 10.0, "timeout_seconds": 10.0}
    config = h.write_config(tmp_path, store.dsn, partners={"duo": {"url": "http://127.0.0.1:9", "policy": policy}})
    rt = build_runtime(config_mod.load(config), clock=clock, store=store)
    oid = _queue(store, clock.time())
    sender = Watching(store, clock)
    worker = Worker(rt, sender, CircuitBreaker(100, 1.0), name="duo-0")
    assert worker.run_once()
    assert sender.taken == [[]]  # the heartbeat left the lease valid by the runtime's clock
    assert store.query("SELECT state FROM outbox WHERE id = :i", {"i": oid})[0][0] == "delivered"
    assert store.query("SELECT worker, outcome FROM attempts WHERE outbox_id = :i", {"i": oid}) == [
        (worker.owner, "success")]


def test_accept_without_inbound_leases_and_dates_by_the_callers_clock(store: Store) -> None:
    ahead = time.time() + DAY
    r = store.accept(route="cjib-feed", kind="Statuswijziging", message_key="s-1", content_digest="d", inbound=None,
                     ack=None, facts={}, person=None, deliveries=[NewDelivery("duo", "VorderingStatus", "s-1", b"x")],
                     lease=Lease("duo", "a:w", 30.0), now=ahead)
    assert r.leased is not None
    assert store.claim("duo", "b:w", limit=1, lease_seconds=30, now=ahead + 20) == []
    row = store.query("SELECT created_at, next_attempt_at, lease_expires_at FROM outbox")[0]
    assert [float(v) for v in row] == [ahead, ahead, ahead + 30]
    assert float(store.query("SELECT received_at FROM messages")[0][0]) == ahead


def test_an_operator_retry_is_due_by_the_callers_clock(store: Store) -> None:
    behind = time.time() - DAY
    oid = _queue(store, behind)
    (d,) = store.claim("duo", "w", limit=1, lease_seconds=30, now=behind)
    assert store.finish_attempt(d, "w", started_at=behind, duration_ms=1.0, http_status=400, outcome="permanent",
                                detail="refused", new_state="dead", now=behind)
    assert store.operator_retry([oid], "op", "again", now=behind + 60) == 1
    # Due at once by the clock it was retried with, not a day later, when the wall clock says so.
    (again,) = store.claim("duo", "w", limit=1, lease_seconds=30, now=behind + 60)
    assert again.id == oid
