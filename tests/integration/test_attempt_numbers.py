"""Attempt numbers in the delivery log are consecutive, whatever crashes between claim and record.

A process that dies holding a claimed row leaves the row's claim counted but no attempt made.
The next attempt must still be number 2 after 1 (not 3), yet a row that takes its process down
every time must not be claimed for ever: after ``CRASHED_CLAIMS_FACTOR × max_attempts`` claims
without a recorded attempt it goes to the dead letters unsent. Both backends (the ``store`` fixture).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from gateway.core.adapter import Delivery, Outcome
from gateway.core.store import InboundRecord, NewDelivery, Store
from gateway.delivery.outbox import CRASHED_CLAIMS_FACTOR, CircuitBreaker, Worker
from tests import rules_history as h

Kind = Literal["success", "retry", "permanent"]  # Outcome.kind


class Scripted:
    """A sender answering from a script (the last answer repeats); counts what it was sent."""

    partner = "duo"

    def __init__(self, *kinds: Kind) -> None:
        self.kinds = list(kinds)
        self.sent: list[int] = []

    def send(self, delivery: Delivery) -> Outcome:
        self.sent.append(delivery.attempt)
        kind = self.kinds.pop(0) if len(self.kinds) > 1 else self.kinds[0]
        return Outcome(kind, http_status=200 if kind == "success" else 503, detail=kind)

    def close(self) -> None:
        pass


def runtime(tmp_path: Path, store: Store, max_attempts: int = 12) -> Any:
    policy = {"max_attempts": max_attempts, "backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.02,
              "lease_seconds": 30.0}
    config = h.write_config(tmp_path, store.dsn, partners={"duo": {"url": "http://127.0.0.1:9", "policy": policy}})
    return h.runtime(config, store)


def queue(store: Store, key: str = "k-1") -> int:
    now = time.time()
    store.accept(route="ind-duo", kind="VergunningMelding", message_key=key, content_digest="d",
                 inbound=InboundRecord(partner="ind", operation="OntvangMelding", raw=b"<x/>", received_at=now),
                 ack=b"ack", facts={}, person=None, deliveries=[NewDelivery("duo", "InburgeraarMelding", key, b"x")])
    return int(store.query("SELECT id FROM outbox WHERE idempotency_key = :k", {"k": key})[0][0])


def crash(store: Store, owner: str = "dead-process:duo-0") -> list[Delivery]:
    """A process claims the due row and dies before recording anything; its lease is already over."""
    due = time.time() + 1  # past any back-off of the test policy
    return store.claim("duo", owner, limit=8, lease_seconds=-2, now=due)  # the lease ended a second ago


def attempt_numbers(store: Store, outbox_id: int) -> list[int]:
    return [int(r[0]) for r in store.query("SELECT attempt FROM attempts WHERE outbox_id = :i ORDER BY id",
                                           {"i": outbox_id})]


def run_until(worker: Worker, sender: Scripted, sends: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while len(sender.sent) < sends and time.monotonic() < end:
        if not worker.run_once():
            time.sleep(0.01)
    assert len(sender.sent) == sends, sender.sent


def test_a_crash_between_claim_and_record_leaves_no_gap(tmp_path: Path, store: Store) -> None:
    rt = runtime(tmp_path, store)
    oid = queue(store)
    sender = Scripted("retry", "retry", "success")
    worker = Worker(rt, sender, CircuitBreaker(100, 1.0), name="duo-0")

    (claimed,) = crash(store)
    assert claimed.attempt == 1
    run_until(worker, sender, 1)  # the survivor: still attempt 1, not 2
    assert crash(store)[0].attempt == 2
    assert crash(store)[0].attempt == 2  # two crashes in a row
    run_until(worker, sender, 3)

    assert sender.sent == [1, 2, 3]
    assert attempt_numbers(store, oid) == [1, 2, 3]
    state, claims = store.query("SELECT state, attempts FROM outbox WHERE id = :i", {"i": oid})[0]
    assert state == "delivered" and claims == 6  # every claim still counted, as claims
    # The message's timeline numbers the attempts the same way.
    events = store.query("SELECT detail FROM events WHERE event IN ('attempt_failed', 'delivered') ORDER BY id")
    assert ['"attempt":1' in e[0] for e in events] == [True, False, False]
    assert ['"attempt":3' in e[0] for e in events] == [False, False, True]


def test_a_lost_lease_does_not_shift_the_numbers(tmp_path: Path, store: Store) -> None:
    oid = queue(store)
    (slow,) = crash(store, owner="slow:w")  # slow, not dead: its lease ends while it still sends
    (fast,) = store.claim("duo", "fast:w", limit=1, lease_seconds=60)
    assert slow.attempt == fast.attempt == 1

    def finish(d: Delivery, owner: str, outcome: str, state: str) -> bool:
        return store.finish_attempt(d, owner, started_at=time.time(), duration_ms=1.0, http_status=503,
                                    outcome=outcome, detail=owner, new_state=state, next_attempt_at=time.time())

    assert finish(slow, "slow:w", "retry", "pending") is False
    assert finish(fast, "fast:w", "retry", "pending") is True
    (again,) = store.claim("duo", "fast:w", limit=1, lease_seconds=60, now=time.time() + 1)
    assert again.attempt == 2
    rows = store.query("SELECT attempt, outcome FROM attempts WHERE outbox_id = :i ORDER BY id", {"i": oid})
    assert [(int(a), o) for a, o in rows] == [(1, "retry-lease-lost"), (1, "retry")]


def test_abandoned_rows_are_reported(tmp_path: Path, store: Store) -> None:
    oid = queue(store)
    crash(store)
    abandoned: list[tuple[int, str, str, int]] = []
    assert store.claim("duo", "w", limit=8, lease_seconds=30, now=time.time() + 1, max_unrecorded_claims=1,
                       abandoned=abandoned) == []
    assert abandoned == [(oid, "InburgeraarMelding", "k-1", 1)]


def test_out_of_attempts_counts_the_attempts_made(tmp_path: Path, store: Store) -> None:
    rt = runtime(tmp_path, store, max_attempts=3)
    oid = queue(store)
    sender = Scripted("retry")
    worker = Worker(rt, sender, CircuitBreaker(100, 1.0), name="duo-0")
    run_until(worker, sender, 1)
    crash(store)
    run_until(worker, sender, 2)
    crash(store)
    run_until(worker, sender, 3)
    assert attempt_numbers(store, oid) == [1, 2, 3]
    state, reason = store.query("SELECT state, dead_reason FROM outbox WHERE id = :i", {"i": oid})[0]
    assert state == "dead" and reason.startswith("out of attempts (3)")


def test_a_row_that_crashes_its_process_every_time_goes_dead(tmp_path: Path, store: Store) -> None:
    rt = runtime(tmp_path, store, max_attempts=3)
    oid = queue(store)
    limit = CRASHED_CLAIMS_FACTOR * 3
    for n in range(limit):
        (d,) = crash(store, owner=f"dead-process-{n}:duo-0")
        assert d.attempt == 1
    sender = Scripted("success")
    worker = Worker(rt, sender, CircuitBreaker(100, 1.0), name="duo-0")
    assert not worker.run_once()  # what a worker claims with: the row goes dead, unsent
    assert sender.sent == []
    state, reason, owner = store.query("SELECT state, dead_reason, lease_owner FROM outbox WHERE id = :i",
                                       {"i": oid})[0]
    assert state == "dead" and f"claimed {limit} times without an attempt" in reason and owner is None
    assert store.query("SELECT state FROM messages")[0][0] == "dead"
    assert attempt_numbers(store, oid) == []

    # An operator sends it again: a fresh chance, numbered from the attempts recorded.
    assert store.operator_retry([oid], "op", "fixed the adapter") == 1
    run_until(worker, sender, 1)
    assert attempt_numbers(store, oid) == [1]
    assert store.query("SELECT state FROM outbox WHERE id = :i", {"i": oid})[0][0] == "delivered"
