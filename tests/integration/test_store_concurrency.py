"""Several processes on one PostgreSQL database: the store's guarantees under real races.

Each racer has its own ``Store`` (its own connections), as a separate process would; threads
start together behind a barrier. psycopg releases the GIL while it waits on the server, so the
statements really overlap. PostgreSQL only (``pg_dsn``): SQLite serialises writers with
``BEGIN IMMEDIATE`` and is not meant for several processes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from gateway.core.adapter import Delivery
from gateway.core.store import InboundRecord, NewDelivery, Store

pytestmark = pytest.mark.postgres

RACERS = 8


@pytest.fixture
def stores(pg_dsn: str) -> Iterator[Callable[[], Store]]:
    opened: list[Store] = []
    first = Store(pg_dsn)
    first.migrate()
    opened.append(first)

    def new() -> Store:
        s = Store(pg_dsn)
        opened.append(s)
        return s

    yield new
    for s in opened:
        s.close()


@pytest.fixture(params=[False, True], ids=["transaction", "one-statement"])
def door_stores(stores: Callable[[], Store], request: pytest.FixtureRequest) -> Callable[[], Store]:
    """``stores``, and once more with the partner's workers in the process (``Store.served``):
    then ``accept`` is one statement (CTEs) instead of a transaction."""

    def new() -> Store:
        s = stores()
        if request.param:
            s.served = {"duo"}
        return s

    return new


def race(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run ``fn(i)`` in ``n`` threads released at the same moment."""
    barrier = threading.Barrier(n)

    def go(i: int) -> Any:
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(go, range(n)))


def _accept(store: Store, key: str, *, digest: str = "d1", seq: int = 1) -> Any:
    now = time.time()
    return store.accept(
        route="ind-duo", kind="VergunningMelding", message_key=key, content_digest=digest,
        inbound=InboundRecord(partner="ind", operation="OntvangMelding", raw=b"<x/>", received_at=now,
                              message_key=key, content_digest=digest),
        ack=b"<ack/>", facts={"k": key}, person=None,
        deliveries=[NewDelivery("duo", "InburgeraarMelding", f"bericht-{key}", b"<payload/>")],
        events=[("receiving", "received", None)], sequence=(seq, key))


def _queue(store: Store, n: int, *, order_key: Callable[[int], str | None] = lambda i: None) -> list[int]:
    now = time.time() - 60  # due for claims dated in the past too
    ids = []
    for i in range(n):
        r = store.accept(route="ind-duo", kind="VergunningMelding", message_key=f"m{i}", content_digest="d",
                         inbound=None, ack=None, facts={}, person=None,
                         deliveries=[NewDelivery("duo", "InburgeraarMelding", f"b{i}", b"<p/>",
                                                 order_key=order_key(i), not_before=now)])
        ids.append(r.message_id)
    return [int(r[0]) for r in store.query("SELECT id FROM outbox ORDER BY id")]


# ---------------------------------------------------------------- the door


def test_racing_accepts_of_one_key_create_one_message_and_one_delivery(door_stores: Callable[[], Store]) -> None:
    racers = [door_stores() for _ in range(RACERS)]
    for round_ in range(5):  # several rounds: a race that loses rarely still shows up
        key = f"melding-{round_}"

        def accept(i: int, key: str = key, seq: int = round_ + 1) -> Any:
            return _accept(racers[i], key, seq=seq)

        results = race(RACERS, accept)
        kinds = sorted(r.kind for r in results)
        assert kinds == ["accepted"] + ["repeat"] * (RACERS - 1), kinds
        assert len({r.message_id for r in results}) == 1
        assert all(r.ack == b"<ack/>" for r in results)  # the losers answer with the stored ack
    s = racers[0]
    assert s.query("SELECT COUNT(*) FROM messages")[0][0] == 5
    assert s.query("SELECT COUNT(*) FROM outbox")[0][0] == 5
    assert s.query("SELECT COUNT(*) FROM ind_sequence")[0][0] == 5
    # Every push is in the log: one accepted and the rest repeats, per key.
    assert dict(s.query("SELECT outcome, COUNT(*) FROM inbound GROUP BY outcome")) == {
        "accepted": 5, "repeat": 5 * (RACERS - 1)}


def test_racing_accepts_with_other_content_conflict(door_stores: Callable[[], Store]) -> None:
    racers = [door_stores() for _ in range(RACERS)]
    results = race(RACERS, lambda i: _accept(racers[i], "same-key", digest=f"d{i}"))
    assert sorted(r.kind for r in results) == ["accepted"] + ["conflict"] * (RACERS - 1)
    assert racers[0].query("SELECT COUNT(*) FROM outbox")[0][0] == 1


# ---------------------------------------------------------------- the outbox


def test_concurrent_claims_never_hand_out_one_row_twice(stores: Callable[[], Store]) -> None:
    ids = _queue(stores(), 300)
    racers = [stores() for _ in range(RACERS)]
    got: list[list[int]] = [[] for _ in range(RACERS)]

    def work(i: int) -> None:
        while True:
            claimed = racers[i].claim("duo", f"p{i}:w", limit=5, lease_seconds=60)
            if not claimed:
                return
            got[i].extend(d.id for d in claimed)

    race(RACERS, work)
    flat = [x for g in got for x in g]
    assert len(flat) == len(set(flat)), "a row was claimed by two workers"
    assert sorted(flat) == ids
    assert sum(1 for g in got if g) > 1, "the race did not spread the work; the test proved nothing"
    owners = racers[0].query("SELECT lease_owner, COUNT(*) FROM outbox GROUP BY lease_owner")
    assert sum(n for _, n in owners) == 300 and all(o is not None for o, _ in owners)
    assert racers[0].query("SELECT MAX(attempts) FROM outbox")[0][0] == 1


def test_claims_keep_order_within_an_order_key(stores: Callable[[], Store]) -> None:
    _queue(stores(), 40, order_key=lambda i: f"case-{i % 4}")
    racers = [stores() for _ in range(RACERS)]
    results = race(RACERS, lambda i: racers[i].claim("duo", f"p{i}", limit=10, lease_seconds=60))
    claimed = [d for r in results for d in r]
    # Only the head of each order_key is due while it is pending.
    assert len(claimed) == 4
    assert len({d.idempotency_key for d in claimed}) == 4


def test_an_expired_lease_is_taken_over(stores: Callable[[], Store]) -> None:
    a, b = stores(), stores()
    _queue(a, 3)
    t0 = time.time()
    mine = a.claim("duo", "dead-process:w", limit=10, lease_seconds=2, now=t0)
    assert len(mine) == 3
    assert b.claim("duo", "survivor:w", limit=10, lease_seconds=60, now=t0 + 1) == []  # still leased
    taken = b.claim("duo", "survivor:w", limit=10, lease_seconds=60, now=t0 + 2.5)
    assert sorted(d.id for d in taken) == sorted(d.id for d in mine)
    # The dead process's claim made no attempt: the survivor's is attempt 1 (no gap in the log);
    # the claim itself still counts (outbox.attempts), to bound rows that crash every process.
    assert all(d.attempt == 1 for d in taken)
    assert {r[0] for r in b.query("SELECT attempts FROM outbox")} == {2}
    # The dead process's heartbeat no longer extends anything.
    assert a.heartbeat([d.id for d in mine], "dead-process:w", lease_seconds=60) == 0


def _finish(store: Store, d: Delivery, owner: str, state: str = "delivered") -> bool:
    return store.finish_attempt(d, owner, started_at=time.time(), duration_ms=1.0, http_status=200,
                                outcome="success", detail=f"by {owner}", new_state=state,
                                receipt=f"receipt-{owner}".encode(), receipt_ref=owner)


def test_finish_after_losing_the_lease_does_not_overwrite(stores: Callable[[], Store]) -> None:
    a, b = stores(), stores()
    _queue(a, 1)
    t0 = time.time()
    (old,) = a.claim("duo", "slow:w", limit=1, lease_seconds=1, now=t0 - 10)  # expired at once
    (new,) = b.claim("duo", "fast:w", limit=1, lease_seconds=60)
    assert _finish(a, old, "slow:w") is False
    row = b.query("SELECT state, lease_owner, receipt_ref FROM outbox WHERE id = :i", {"i": new.id})[0]
    assert row == ("pending", "fast:w", None)  # untouched by the loser
    assert _finish(b, new, "fast:w") is True
    row = b.query("SELECT state, lease_owner, receipt_ref FROM outbox WHERE id = :i", {"i": new.id})[0]
    assert row == ("delivered", None, "fast:w")
    attempts = b.query("SELECT worker, outcome FROM attempts WHERE outbox_id = :i ORDER BY id", {"i": new.id})
    assert attempts == [("slow:w", "success-lease-lost"), ("fast:w", "success")]


def test_finish_racing_a_takeover_in_flight_does_not_overwrite(stores: Callable[[], Store], pg_dsn: str) -> None:
    """The loser reads its row while the survivor's claim is not yet committed.

    Without a row lock in ``finish_attempt`` the loser would see itself as owner, wait for the
    survivor's commit, and then overwrite the survivor's lease with its own result.
    """
    import psycopg

    a = stores()
    _queue(a, 1)
    (old,) = a.claim("duo", "slow:w", limit=1, lease_seconds=1, now=time.time() - 10)
    with psycopg.connect(pg_dsn) as survivor:  # a transaction held open: the claim in flight
        survivor.execute("UPDATE outbox SET lease_owner = 'fast:w', lease_expires_at = %s, "
                         "attempts = attempts + 1 WHERE id = %s", (time.time() + 60, old.id))
        done: list[bool] = []
        t = threading.Thread(target=lambda: done.append(_finish(a, old, "slow:w")))
        t.start()
        time.sleep(0.5)
        survivor.commit()
        t.join(10)
    assert done == [False]
    row = a.query("SELECT state, lease_owner FROM outbox WHERE id = :i", {"i": old.id})[0]
    assert row == ("pending", "fast:w")


def test_release_and_heartbeat_only_touch_own_leases(stores: Callable[[], Store]) -> None:
    a, b = stores(), stores()
    _queue(a, 2)
    mine = a.claim("duo", "a:w", limit=1, lease_seconds=60)
    theirs = b.claim("duo", "b:w", limit=1, lease_seconds=60)
    assert a.heartbeat([theirs[0].id], "a:w", lease_seconds=60) == 0
    a.release([theirs[0].id], "a:w")
    assert b.query("SELECT lease_owner FROM outbox WHERE id = :i", {"i": theirs[0].id})[0][0] == "b:w"
    a.release([mine[0].id], "a:w")
    assert a.query("SELECT lease_owner, attempts FROM outbox WHERE id = :i", {"i": mine[0].id})[0] == (None, 0)


# ---------------------------------------------------------------- periodic jobs


def test_job_lease_is_exclusive(stores: Callable[[], Store]) -> None:
    racers = [stores() for _ in range(RACERS)]
    for round_ in range(5):
        name = f"job-{round_}"

        def take(i: int, name: str = name) -> bool:
            return racers[i].take_job_lease(name, f"proc-{i}", 30)

        won = race(RACERS, take)
        assert sum(won) == 1, won
        holder = won.index(True)
        # The holder renews; nobody else gets it while it lasts.
        assert racers[holder].take_job_lease(name, f"proc-{holder}", 30)
        other = (holder + 1) % RACERS
        assert not racers[other].take_job_lease(name, f"proc-{other}", 30)


def test_job_lease_expires_and_moves(stores: Callable[[], Store]) -> None:
    a, b = stores(), stores()
    assert a.take_job_lease("ind-reconcile", "proc-a", 0.3)
    assert not b.take_job_lease("ind-reconcile", "proc-b", 0.3)
    time.sleep(0.4)
    won = race(2, lambda i: (a, b)[i].take_job_lease("ind-reconcile", ("proc-a2", "proc-b")[i], 30))
    assert sum(won) == 1


# ---------------------------------------------------------------- start-up


def test_processes_starting_together_on_an_empty_database_all_migrate(pg_dsn: str) -> None:
    """Every `gateway run` migrates at start-up; three at once must not fail on each other's DDL."""
    racers = [Store(pg_dsn) for _ in range(3)]
    try:
        versions = race(3, lambda i: racers[i].migrate())
        assert versions == [racers[0].version()] * 3
        assert racers[0].query("SELECT COUNT(*) FROM schema_version")[0][0] == versions[0]
    finally:
        for s in racers:
            s.close()
