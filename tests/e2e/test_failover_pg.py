"""Three `gateway run` processes on one PostgreSQL database; one is killed with SIGKILL mid-run.

IND pushes a steady stream spread over the three (a push that fails is pushed again to the next
process, as IND retries). DUO answers slowly, so every process holds leased work when the victim
dies. At the end every acknowledged notification reached DUO exactly once, the outbox holds one
delivered row per notification with one successful attempt, and the survivors started on the
victim's leased rows within the lease time (3 s here) plus one idle poll; the later of several
orphans came after the rows sent before them (one worker sends what it claimed one by one).
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
BATCH = 8  # rows one claim of a worker takes at most (gateway.delivery.outbox.WorkerPool.add)
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

        # The survivors took each orphan over at their next claim after its lease ran out. A
        # survivor's worker may be sending a batch then (up to BATCH rows, claimed before), and one
        # claim may take several orphans, sent one after another, each waiting for DUO (a takeover
        # about every 0.2 s: 1 failed run of a full suite, the last of many orphans 5.05 s after
        # the kill against a flat 5.0 s bound). So, for each orphan, from its lease's end to its
        # takeover the worker that took it over: started no more than BATCH other rows (besides
        # orphans), and was busy sending all but one idle poll plus slack of that time.
        orphan_ids = {outbox_id for outbox_id, _ in orphans}
        takeovers = []
        for outbox_id, lease_until in orphans:
            rows = store.query("SELECT worker, started_at FROM attempts WHERE outbox_id = :i AND worker NOT LIKE :v "
                               "ORDER BY started_at LIMIT 1", {"i": outbox_id, "v": f"{victim.name}:%"})
            assert rows, f"orphan {outbox_id} was never attempted by a survivor"
            worker, first = rows[0][0], float(rows[0][1])
            assert first >= lease_until - 0.05, "taken over before the lease expired"
            before = store.query("SELECT outbox_id, duration_ms FROM attempts WHERE worker = :w "
                                 "AND started_at >= :l AND started_at < :f", {"w": worker, "l": lease_until, "f": first})
            others = [i for i, _ in before if i not in orphan_ids]
            busy = sum(float(d) for _, d in before) / 1000
            takeovers.append((first - killed_at, first - lease_until, busy, len(others)))
        print(f"\nfailover: {len(orphans)} orphaned leases; takeover after kill: min "
              f"{min(t[0] for t in takeovers):.2f} s, max {max(t[0] for t in takeovers):.2f} s (lease {LEASE_SECONDS} s); "
              f"after the lease's end: max {max(t[1] for t in takeovers):.2f} s, of it not sending at most "
              f"{max(t[1] - t[2] for t in takeovers):.2f} s; push failures (re-pushed) {log.failures}")
        assert min(t[0] for t in takeovers) <= LEASE_SECONDS + IDLE_POLL_SECONDS + 1.0, takeovers
        assert all(others <= BATCH for _, _, _, others in takeovers), takeovers
        assert all(wait - busy <= IDLE_POLL_SECONDS + 1.0 for _, wait, busy, _ in takeovers), takeovers

        # The victim's pushes in flight were committed at most once: repeats answered from the store.
        assert store.query("SELECT COUNT(*) FROM inbound WHERE outcome = 'accepted'")[0][0] == COUNT
    finally:
        for p in procs:
            p.stop(10)
        for s in pushers[1:]:
            s.close()
        store.close()
        chain.stop()
