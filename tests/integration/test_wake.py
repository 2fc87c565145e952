"""Wake on work (issue 22): what the store tells the workers, on both backends.

- ``Store.claim`` hands each delivery's order key to the worker (a worker that finishes an ordered
  row claims again: the next one of its order may be claimable now);
- ``Store.next_due`` (when an idle worker looks again) does not count an ordered row waiting
  behind a pending one of its order as due, so no worker polls for it;
- PostgreSQL: new work for a partner that no worker of the process serves is announced with
  NOTIFY at commit (never on rollback), heard by ``Store.listen``; so is a rule set made active.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from gateway.core.store import OUTBOX_CHANNEL, RULES_CHANNEL, NewDelivery, Store


def _queue(store: Store, key: str, *, order_key: str | None = None, due: float | None = None) -> int:
    r = store.accept(route="ind-duo", kind="VergunningMelding", message_key=key, content_digest="d",
                     inbound=None, ack=None, facts={}, person=None,
                     deliveries=[NewDelivery("duo", "InburgeraarMelding", f"b-{key}", b"<p/>",
                                             order_key=order_key, not_before=due)])
    return r.message_id


def test_claim_names_the_order_key_and_next_due_skips_rows_waiting_on_their_order(store: Store) -> None:
    now = time.time()
    _queue(store, "a", order_key="V1", due=now - 10)
    _queue(store, "b", order_key="V1", due=now - 5)  # behind a: not claimable while a is pending
    claimed = store.claim("duo", "w", limit=8, lease_seconds=30, now=now)
    assert [(d.idempotency_key, d.order_key) for d in claimed] == [("b-a", "V1")]
    # a is leased for 30 s; b waits on a: the next look is a's lease end, not "b is due now".
    due = store.next_due("duo")
    assert due is not None and due == pytest.approx(now + 30, abs=0.01)
    _queue(store, "c", due=now + 100)
    assert store.next_due("duo") == pytest.approx(now + 30, abs=0.01)
    assert store.finish_attempt(claimed[0], "w", started_at=now, duration_ms=1, http_status=200, outcome="success",
                                detail="", new_state="delivered", now=now)
    assert store.next_due("duo") == pytest.approx(now - 5, abs=0.01)  # b's turn
    assert [d.order_key for d in store.claim("duo", "w", limit=8, lease_seconds=30, now=now)] == ["V1"]


class _Heard:
    def __init__(self, dsn: str) -> None:
        self.store = Store(dsn)
        self.heard: list[tuple[str, str]] = []
        self.connected = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.store.listen, daemon=True, args=(
            [OUTBOX_CHANNEL, RULES_CHANNEL], lambda c, p: self.heard.append((c, p)), self.stop),
            kwargs={"on_connect": self.connected.set, "timeout_seconds": 0.5})
        self.thread.start()
        assert self.connected.wait(10)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.store.close()

    def settle(self) -> list[tuple[str, str]]:
        time.sleep(0.5)
        return [h for h in self.heard if h[1]]


@pytest.mark.postgres
def test_work_for_an_unserved_partner_is_announced_at_commit(pg_dsn: str) -> None:
    from gateway.rules import engine, rollout

    cli = Store(pg_dsn)
    cli.migrate()
    daemon = Store(pg_dsn)
    daemon.served.add("duo")
    heard = _Heard(pg_dsn)
    try:
        _queue(daemon, "served")  # its own workers are woken in its process: no announcement
        assert heard.settle() == []
        oid = int(cli.query("SELECT id FROM outbox")[0][0])
        _queue(cli, "from-the-cli")
        assert heard.settle() == [(OUTBOX_CHANNEL, "duo")]
        heard.heard.clear()
        with pytest.raises(RuntimeError), cli.tx() as t:
            t.insert_delivery(1, NewDelivery("duo", "InburgeraarMelding", "rolled-back", b"<p/>"), time.time())
            raise RuntimeError("rolled back")
        assert heard.settle() == []
        with cli.tx() as t:
            t.execute("UPDATE outbox SET state = 'dead' WHERE id = :i", {"i": oid})
        assert cli.operator_retry([oid], "op", "again") == 1
        assert heard.settle() == [(OUTBOX_CHANNEL, "duo")]
        heard.heard.clear()
        ruleset = engine.load(Path(engine.__file__).parents[1] / "rulesets" / "inburgeringsplicht-2026.1.yaml")
        rollout.activate(cli, ruleset, "op")
        assert heard.settle() == [(RULES_CHANNEL, ruleset.name)]
    finally:
        heard.close()
        cli.close()
        daemon.close()
