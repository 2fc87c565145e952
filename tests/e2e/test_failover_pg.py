"""Three `gateway run` processes on one PostgreSQL database; one is killed with SIGKILL mid-run.

IND pushes a steady stream spread over the three (a push that fails is pushed again to the next
process, as IND retries). DUO answers slowly, so every process holds leased work when the victim
dies. At the end every acknowledged notification reached DUO exactly once, the outbox holds one
delivered row per notification with one successful attempt, and the survivors started on the
victim's leased rows within the lease time (3 s here) plus one idle poll.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bench.common import bericht_id, make_pushers, push_stream, start_processes, upgrade
from gateway.core.store import Store
from gateway.sandbox import start_chain, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

LEASE_SECONDS = 3.0
IDLE_POLL_SECONDS = 1.0  # slack: idle workers wake at the earliest lease end they know of (no 1 s poll since issue 22)
COUNT = 360
RATE = 30.0  # pushes per second, all pushers together


def test_sigkill_one_of_three_processes(tmp_path: Path, pki_paths: dict[str, Any], pg_dsn: str) -> None:
    from adapters.duo.simulator import Faults
    from adapters.ind.simulator import generate_meldingen

    policy = {"lease_seconds": LEASE_SECONDS, "concurrency": 2}
    chain = start_chain(tmp_path, dsn=pg_dsn, pki_paths=pki_paths, start=False, with_cjib=False,
                        # DUO takes 0.15 s an answer, so a worker holds its leases long enough to be seen
                        # (at 0.05 s the victim held two at once too rarely: 1 failed run in 5)
                        duo_faults=Faults(latency_seconds=0.15),
                        overrides={"partners": {"duo": {"policy": policy}}})
    upgrade(chain.config_file)
    procs = start_processes(chain.config_file, tmp_path, 3)
    store = Store(pg_dsn)
    victim = procs[1]
    alive = [True, True, True]
    pushers = make_pushers(chain, 3)
    try:
        meldingen = generate_meldingen(COUNT, 8, now=None)

        def endpoints(_: int) -> list[str]:
            return [p.ind_endpoint for p, up in zip(procs, alive, strict=True) if up] or [procs[0].ind_endpoint]

        result: dict[str, Any] = {}
        pushing = threading.Thread(target=lambda: result.setdefault(
            "log", push_stream(pushers, meldingen, endpoints, rate=RATE)))
        pushing.start()

        # Wait until the victim holds leased work, then kill it.
        def victim_leases() -> list[tuple[int, float]]:
            return [(int(r[0]), float(r[1])) for r in store.query(
                "SELECT id, lease_expires_at FROM outbox WHERE state = 'pending' AND lease_owner LIKE :o",
                {"o": f"{victim.name}:%"})]

        assert wait_until(lambda: len(victim_leases()) >= 2
                          and store.query("SELECT COUNT(*) FROM outbox")[0][0] >= COUNT // 3, timeout=30), \
            "the victim never held leased work"
        victim.kill()
        killed_at = time.time()
        alive[1] = False
        orphans = victim_leases()  # leased by the dead process; no one will extend them
        assert orphans

        pushing.join(120)
        assert not pushing.is_alive()
        log = result["log"]
        acked = [m for m in meldingen if m.melding_id in log.acked]
        assert len(acked) == COUNT, f"{COUNT - len(acked)} never acknowledged"

        assert wait_until(lambda: store.query(
            "SELECT COUNT(*) FROM outbox WHERE state = 'delivered'")[0][0] >= COUNT, timeout=60)

        # Exactly once at DUO, none missing.
        counts = [chain.duo.count(bericht_id(m)) for m in acked]
        assert counts.count(1) == COUNT, {c: counts.count(c) for c in set(counts)}
        rows = store.query("SELECT state, COUNT(*) FROM outbox GROUP BY state")
        assert dict(rows) == {"delivered": COUNT}
        assert store.query("SELECT COUNT(*) FROM messages")[0][0] == COUNT
        # One successful attempt per delivery; any other success is marked as lease-lost.
        dup = store.query("SELECT outbox_id FROM attempts WHERE outcome = 'success' "
                          "GROUP BY outbox_id HAVING COUNT(*) > 1")
        assert dup == []

        # The survivors took the orphans over within the lease time plus one idle poll.
        gaps = []
        for outbox_id, lease_until in orphans:
            first = store.query("SELECT MIN(started_at) FROM attempts WHERE outbox_id = :i AND worker NOT LIKE :v",
                                {"i": outbox_id, "v": f"{victim.name}:%"})[0][0]
            assert first is not None, f"orphan {outbox_id} was never attempted by a survivor"
            assert first >= lease_until - 0.05, "taken over before the lease expired"
            gaps.append(first - killed_at)
        bound = LEASE_SECONDS + IDLE_POLL_SECONDS + 1.0
        print(f"\nfailover: {len(orphans)} orphaned leases; takeover after kill: "
              f"min {min(gaps):.2f} s, max {max(gaps):.2f} s (lease {LEASE_SECONDS} s); "
              f"push failures (re-pushed) {log.failures}")
        assert max(gaps) <= bound, gaps

        # The victim's pushes in flight were committed at most once: repeats answered from the store.
        assert store.query("SELECT COUNT(*) FROM inbound WHERE outcome = 'accepted'")[0][0] == COUNT
    finally:
        for p in procs:
            p.stop(10)
        for s in pushers[1:]:
            s.close()
        store.close()
        chain.stop()
