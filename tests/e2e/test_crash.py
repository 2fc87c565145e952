"""Crash safety: ``gateway run`` killed with SIGKILL at random moments under a steady IND stream.

The daemon runs as a real subprocess against simulators in this process. IND pushes notifications
one after another and, like IND, pushes each again (503, refused connection, lost answer) until it
holds an acknowledgement. DUO is slow to acknowledge, so kills land mid-attempt; kills also land
between the commit and the acknowledgement of a push. After at least 20 kills and a last, clean
run:

- every notification IND got an acknowledgement for was delivered to DUO exactly once;
- none is missing, and the gateway never made two berichtIds for one meldingId;
- the counts reconcile: IND acknowledgements == stored messages == DUO received.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.duo.simulator import Faults
from gateway.core.store import Store
from gateway.runtime import store_for
from tests.e2e.helpers import (
    GatewayProcess,
    Pusher,
    attempt_rows,
    bericht_id,
    meldingen,
    outbox_rows,
    wait_until,
)
from tests.pki_fixtures import ack_body

pytestmark = pytest.mark.slow

KILLS = 20


@pytest.fixture
def rig(make_chain: Any) -> Iterator[tuple[Any, GatewayProcess, Store]]:
    chain = make_chain(
        start=False,
        duo_faults=Faults(ack_delay_seconds=0.2),
        overrides={
            "partners": {"duo": {"policy": {"lease_seconds": 3.0, "timeout_seconds": 5.0,
                                            "backoff_initial_seconds": 0.1, "backoff_max_seconds": 0.5}}},
            "ind": {"gap_grace_seconds": 1.0, "reconcile_interval_seconds": 5.0},
        })
    gp = GatewayProcess(chain.config_file, chain.directory / "gateway.log")
    store = store_for(chain.config)
    try:
        yield chain, gp, store
    finally:
        gp.kill()
        store.close()


def test_sigkill_at_random_moments_loses_and_doubles_nothing(rig: tuple[Any, GatewayProcess, Store]) -> None:
    chain, gp, store = rig
    rng = random.Random(20261128)
    ms = meldingen(600, seed=91)
    pusher = Pusher(chain.ind, lambda: gp.ind_endpoint if gp.running else None, ms, retry_pause=0.1)
    gp.start()
    pusher.start()
    t0 = time.monotonic()
    try:
        for _ in range(KILLS):
            if not gp.running:
                gp.start()
            # Kill at a random moment once work is flowing again (a new acknowledgement), so
            # that a slow machine does not turn every kill into a kill during start-up.
            before = len(pusher.acked)
            assert wait_until(lambda: len(pusher.acked) > before, 30, interval=0.01)  # noqa: B023 (called here only)
            time.sleep(rng.uniform(0.0, 0.6))
            assert gp.running, "the gateway died by itself"
            gp.kill()
            time.sleep(rng.uniform(0.0, 0.1))
        kills_done = time.monotonic() - t0
        gp.start()  # the last, undisturbed run
        pusher.stop_event.set()  # finish the notification in hand, then stop
        pusher.join(30)
        assert not pusher.is_alive()
        acked = dict(pusher.acked)
        assert not pusher.unexpected, pusher.unexpected[:5]
        assert len(acked) >= 20, len(acked)

        def settled() -> bool:
            return (not store.query("SELECT id FROM outbox WHERE state <> 'delivered'")
                    and all(chain.duo.count(bericht_id(k)) == 1 for k in acked))

        assert wait_until(settled, 30), [r for r in outbox_rows(store) if r["state"] != "delivered"][:5]
    finally:
        pusher.abort_event.set()
        pusher.stop_event.set()
    assert gp.starts == KILLS + 1
    assert gp.terminate(timeout=30) == 0

    # Exactly once, nothing missing: every acknowledged notification is at DUO once, under the
    # berichtId derived from its meldingId, and DUO received nothing else.
    for melding_id in acked:
        assert chain.duo.count(bericht_id(melding_id)) == 1
    received = [r[0] for r in chain.duo.received]
    assert len(received) == len(set(received))
    assert set(received) == {bericht_id(k) for k in acked}
    # Counts reconcile: IND acknowledgements == stored messages == deliveries == DUO received.
    stored = {r[0]: int(r[1]) for r in store.query("SELECT message_key, id FROM messages WHERE route = 'ind-duo'")}
    assert set(stored) == set(acked)
    rows = outbox_rows(store)
    assert len(rows) == len(stored) == len(acked) == len(received) == chain.duo.accepted()
    by_message: dict[int, list[str]] = {}
    for r in rows:
        by_message.setdefault(int(r["message_id"]), []).append(r["idempotency_key"])
    assert {mid: keys for mid, keys in by_message.items()} == {
        stored[k]: [bericht_id(k)] for k in stored}
    # The same acknowledgement every time IND asked again: the stored Body (revision 2: signed afresh).
    acks = {r[0]: store.unseal("messages.ack", r[1]) or b"" for r in store.query("SELECT message_key, ack FROM messages")}
    assert all(ack_body(acks[k]) == ack_body(acked[k]) for k in acked)

    # The kills did land where they hurt: attempts cut off mid-way (counted by claim, never
    # finished), and pushes stored but not acknowledged (IND asked again and got a repeat).
    attempts = attempt_rows(store)
    recorded: dict[int, int] = {}
    for a in attempts:
        recorded[a["outbox_id"]] = recorded.get(a["outbox_id"], 0) + 1
    cut_off = sum(r["attempts"] - recorded.get(r["id"], 0) for r in rows)
    repeats = int(store.query("SELECT COUNT(*) FROM inbound WHERE outcome = 'repeat' AND channel = 'push'")[0][0])
    print(f"\ncrash test: {len(acked)} acknowledged in {kills_done:.1f}s with {KILLS} kills; "
          f"{pusher.tries} pushes ({len(pusher.failed_tries)} failed); {len(attempts)} attempts recorded, "
          f"{cut_off} cut off by a kill; {repeats} pushes answered as repeats")
    assert cut_off >= 1
