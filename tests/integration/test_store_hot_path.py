"""What ``Store.accept`` and ``Store.finish_attempt`` store, on both backends and both ways: in a
transaction, and (PostgreSQL, when the partner's workers run in the process) as one statement
whose parts are CTEs. Both ways must leave the same rows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.core.store import InboundRecord, Lease, NewDelivery, Store, person_digest

LOOKUP_KEY = b"k" * 32
PERSON = {"bsn": "123456782", "vNummer": "1234567890", "naam": "Test Persoon"}


@pytest.fixture(params=[False, True], ids=["transaction", "served"])
def served_store(store: Store, request: pytest.FixtureRequest) -> Iterator[Store]:
    store.lookup_key = LOOKUP_KEY
    if request.param:
        store.served = {"duo"}  # on PostgreSQL: accept and finish_attempt as one statement each
    yield store


def _accept(store: Store, key: str, *, digest: str = "d1", lease: Lease | None = None) -> Any:
    inbound = InboundRecord(partner="ind", operation="OntvangMelding", raw=b"<raw/>", received_at=time.time(),
                            message_key=key, content_digest=digest)
    return store.accept(route="ind-duo", kind="VergunningMelding", message_key=key, content_digest=digest,
                        inbound=inbound, ack=b"<ack/>", facts={"k": key}, person=PERSON,
                        deliveries=[NewDelivery("duo", "InburgeraarMelding", f"b-{key}", b"<payload/>")],
                        events=[("receiving", "received", {"channel": "push"}), ("processing", "validated", None)],
                        sequence=(7, key), lease=lease)


def test_accept_stores_every_part(served_store: Store) -> None:
    s = served_store
    r = _accept(s, "m1", lease=Lease("duo", "w1", 30.0))
    assert r.kind == "accepted" and r.ack == b"<ack/>"
    assert r.leased is not None and r.leased.attempt == 1 and r.leased.payload == b"<payload/>"
    assert s.query("SELECT id, message_id, state, lease_owner, attempts FROM outbox") == [
        (r.leased.id, r.message_id, "pending", "w1", 1)]
    assert s.query("SELECT stage, event, detail FROM events WHERE message_id = :m ORDER BY id", {"m": r.message_id}) == [
        ("receiving", "received", '{"channel":"push"}'), ("processing", "validated", None),
        ("processing", "queued", '{"operation":"InburgeraarMelding","partner":"duo"}')]
    # The answer of an accepted message is its ack, stored once (in messages), read back by inbound_answer.
    assert s.query("SELECT outcome, message_id, response_status, response_body FROM inbound") == [
        ("accepted", r.message_id, 200, None)]
    ((outcome, body, ack),) = s.query("SELECT i.outcome, i.response_body, m.ack FROM inbound i "
                                      "JOIN messages m ON m.id = i.message_id")
    assert s.inbound_answer(outcome, body, ack) == b"<ack/>"
    assert sorted(s.query("SELECT digest, message_id FROM person_lookup")) == sorted(
        (person_digest(LOOKUP_KEY, kind, PERSON[kind]), r.message_id) for kind in ("bsn", "vNummer"))
    assert s.query("SELECT volgnummer, melding_id FROM ind_sequence") == [(7, "m1")]
    assert s.query("SELECT state, facts FROM messages") == [("queued", '{"k":"m1"}')]


def test_a_repeat_and_a_conflict_write_only_their_log(served_store: Store) -> None:
    s = served_store
    first = _accept(s, "m1")
    assert first.leased is None
    again = _accept(s, "m1")
    other = _accept(s, "m1", digest="d2")
    assert (again.kind, again.message_id, again.ack) == ("repeat", first.message_id, b"<ack/>")
    assert (other.kind, other.message_id) == ("conflict", first.message_id)
    assert s.query("SELECT COUNT(*) FROM outbox")[0][0] == 1
    assert s.query("SELECT COUNT(*) FROM events")[0][0] == 3
    assert s.query("SELECT outcome FROM inbound ORDER BY id") == [("accepted",), ("repeat",)]
    # A repeat keeps its own answer (the route may sign it afresh); both read back as the ack here.
    rows = s.query("SELECT i.outcome, i.response_body, m.ack FROM inbound i JOIN messages m ON m.id = i.message_id "
                   "ORDER BY i.id")
    assert [r[1] is None for r in rows] == [True, False]
    assert [s.inbound_answer(*r) for r in rows] == [b"<ack/>", b"<ack/>"]


def test_finish_moves_the_delivery_and_the_message(served_store: Store) -> None:
    s = served_store
    r = _accept(s, "m1", lease=Lease("duo", "w1", 30.0))
    assert s.finish_attempt(r.leased, "w1", started_at=time.time(), duration_ms=2.0, http_status=200,
                            outcome="success", detail="ok", new_state="delivered", receipt=b"<receipt/>",
                            receipt_ref="R1", message_event=("sending", "delivered", {"attempt": 1})) is True
    assert s.query("SELECT state, lease_owner, receipt, receipt_ref, last_error FROM outbox") == [
        ("delivered", None, b"<receipt/>", "R1", None)]
    assert s.query("SELECT state FROM messages") == [("delivered",)]
    assert s.query("SELECT worker, attempt, outcome, http_status FROM attempts") == [("w1", 1, "success", 200)]
    assert s.query("SELECT event FROM events ORDER BY id")[-1] == ("delivered",)
    # Again with the lease gone: nothing moves, the attempt is logged as lease-lost.
    assert s.finish_attempt(r.leased, "w1", started_at=time.time(), duration_ms=2.0, http_status=200,
                            outcome="success", detail="ok", new_state="delivered",
                            message_event=("sending", "delivered", {"attempt": 1})) is False
    assert s.query("SELECT outcome FROM attempts ORDER BY id") == [("success",), ("success-lease-lost",)]
    assert s.query("SELECT COUNT(*) FROM events WHERE event = 'delivered'")[0][0] == 1


def test_a_retry_keeps_the_message_retrying(served_store: Store) -> None:
    s = served_store
    r = _accept(s, "m1", lease=Lease("duo", "w1", 30.0))
    later = time.time() + 60
    assert s.finish_attempt(r.leased, "w1", started_at=time.time(), duration_ms=2.0, http_status=503,
                            outcome="retry", detail="503", new_state="pending", next_attempt_at=later) is True
    assert s.query("SELECT state, lease_owner, next_attempt_at, last_error FROM outbox") == [
        ("pending", None, later, "503")]
    assert s.query("SELECT state FROM messages") == [("retrying",)]
