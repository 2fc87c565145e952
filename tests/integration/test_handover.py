"""Intake hands a new delivery to an idle worker (issue 22): the delivery is stored leased to that
worker in intake's own commit, so the worker sends without a claim transaction. On both backends:

- the row is stored claimed (one claim counted, the lease's owner and end), the attempt is number 1
  and the owner's ``finish_attempt`` records it like one after ``Store.claim``;
- nobody else can claim it while the lease runs; after it runs out (the worker's process died after
  the commit) another worker claims it, as attempt 1 again, and the dead owner's late record is
  lease-lost: at most one recorded effect;
- an ordered or later-due delivery is never handed (order per order key is ``claim``'s job), and a
  repeated idempotency key hands nothing.
"""

from __future__ import annotations

import time

from gateway.core.store import Lease, NewDelivery, Store


def _accept(store: Store, key: str, lease: Lease | None, *, order_key: str | None = None,
            due: float | None = None, bericht: str | None = None, now: float | None = None):
    from gateway.core.store import InboundRecord

    inbound = InboundRecord(partner="ind", operation="OntvangMelding", raw=b"<m/>",
                            received_at=now if now is not None else time.time(), message_key=key)
    return store.accept(route="ind-duo", kind="VergunningMelding", message_key=key, content_digest="d",
                        inbound=inbound, ack=b"<ack/>", facts={}, person=None, lease=lease,
                        deliveries=[NewDelivery("duo", "InburgeraarMelding", bericht or f"b-{key}", b"<p/>",
                                                order_key=order_key, not_before=due)])


def _row(store: Store, outbox_id: int) -> tuple:
    rows = store.query("SELECT attempts, lease_owner, lease_expires_at, state FROM outbox WHERE id = :i",
                       {"i": outbox_id})
    return rows[0]


def test_a_handed_delivery_is_stored_leased_and_recorded_by_its_owner(store: Store) -> None:
    now = time.time()
    r = _accept(store, "a", Lease("duo", "w1", 30), now=now)
    d = r.leased
    assert d is not None and d.attempt == 1 and d.payload == b"<p/>" and d.idempotency_key == "b-a"
    attempts, owner, until, state = _row(store, d.id)
    assert (attempts, owner, state) == (1, "w1", "pending") and abs(until - (now + 30)) < 0.01
    assert store.claim("duo", "w2", limit=8, lease_seconds=30, now=now + 1) == []
    assert store.finish_attempt(d, "w1", started_at=now, duration_ms=1, http_status=200, outcome="success",
                                detail="", new_state="delivered", now=now + 1)
    assert store.query("SELECT state FROM messages WHERE id = :i", {"i": r.message_id}) == [("delivered",)]
    assert store.query("SELECT attempt, outcome FROM attempts WHERE outbox_id = :i", {"i": d.id}) == [(1, "success")]


def test_a_lease_that_runs_out_is_claimed_again_and_the_late_owner_is_lease_lost(store: Store) -> None:
    now = time.time()
    d = _accept(store, "a", Lease("duo", "dead-worker", 30), now=now).leased
    assert d is not None
    again = store.claim("duo", "w2", limit=8, lease_seconds=30, now=now + 31)
    assert [(x.id, x.attempt) for x in again] == [(d.id, 1)]  # no attempt was recorded: still attempt 1
    assert store.finish_attempt(again[0], "w2", started_at=now, duration_ms=1, http_status=200, outcome="success",
                                detail="", new_state="delivered", now=now + 32)
    assert not store.finish_attempt(d, "dead-worker", started_at=now, duration_ms=1, http_status=200,
                                    outcome="success", detail="", new_state="delivered", now=now + 33)
    assert store.query("SELECT outcome FROM attempts WHERE outbox_id = :i ORDER BY id", {"i": d.id}) == [
        ("success",), ("success-lease-lost",)]


def test_ordered_or_later_deliveries_and_repeats_are_not_handed(store: Store) -> None:
    now = time.time()
    lease = Lease("duo", "w1", 30)
    assert _accept(store, "o", lease, order_key="V1", now=now).leased is None
    assert _accept(store, "later", lease, due=now + 100, now=now).leased is None
    assert _accept(store, "x", lease, bericht="same", now=now).leased is not None
    assert _accept(store, "y", lease, bericht="same", now=now).leased is None  # the key is queued already
    assert _accept(store, "x", lease, bericht="same", now=now).kind == "repeat"
    # The ordered one is claimed the usual way.
    assert [d.idempotency_key for d in store.claim("duo", "w2", limit=8, lease_seconds=30, now=now)] == ["b-o"]
