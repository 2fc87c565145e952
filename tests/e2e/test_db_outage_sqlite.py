"""Issue 23 (4): SQLite's disk fills up under load, then space comes back; the gateway recovers.

The database lives on a small tmpfs of the test's own; a filler file takes all its free space for
a few seconds, twice. (A read-only *directory* does not stop SQLite in WAL mode while the gateway
holds its files open, even for a non-root user: it writes to files that exist already; a full
disk does.) Then:

- intake answers 503 with Retry-After to what it cannot store (a write may still commit while
  SQLite reuses its WAL file's space: that one is stored, acknowledged and delivered);
- /health answers 503 with "the store is unreachable: sqlite3.OperationalError: database or disk
  is full", gateway_store_up is 0; both are ok again afterwards;
- after the space is back, intake acknowledges and DUO gets deliveries again within 5 s;
- every acknowledged notification reaches DUO exactly once; the process is not restarted.

Skipped (with the reason) where a tmpfs cannot be mounted (not root, no CAP_SYS_ADMIN).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.common import bericht_id, make_pushers, push_stream, start_processes, upgrade
from gateway.core.errors import StoreUnavailable
from gateway.core.store import Store
from gateway.sandbox import start_chain, wait_until

pytestmark = [pytest.mark.slow]

COUNT = 150
RATE = 10.0
FULL_SECONDS = 3.0
RECOVERY_BOUND_SECONDS = 5.0


def _mount_tmpfs(size: str) -> Path | None:
    mnt = Path(tempfile.mkdtemp(prefix="gw-full-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                          capture_output=True)
    if done.returncode != 0:
        mnt.rmdir()
        return None
    return mnt


def _fill(mnt: Path) -> Path:
    """Empty the WAL file (a TRUNCATE checkpoint), then take all free space.

    With space left in its WAL file SQLite may go on committing on a full disk (it reuses the
    file after a checkpoint); from an empty WAL file every commit needs new space, so the disk
    being full shows at once, as it would on a busy gateway sooner or later.
    """
    conn = sqlite3.connect(mnt / "gateway.db", timeout=5)
    try:
        for _ in range(100):
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if not busy:
                break
            time.sleep(0.02)
    finally:
        conn.close()
    filler = mnt / "filler"
    free = shutil.disk_usage(mnt).free
    with open(filler, "wb") as f:
        try:
            f.write(b"\0" * free)
        except OSError:
            pass  # ENOSPC: full, as meant
    return filler


def test_sqlite_disk_full_twice_under_load(tmp_path: Path, pki_paths: dict[str, Any]) -> None:
    mnt = _mount_tmpfs("32m")
    if mnt is None:
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): no disk to fill")
    from adapters.duo.simulator import Faults
    from adapters.ind.simulator import generate_meldingen

    dsn = f"sqlite:///{mnt / 'gateway.db'}"
    chain = None
    procs: list[Any] = []
    pushers: list[Any] = []
    store = Store(dsn)
    try:
        policy = {"concurrency": 2, "backoff_initial_seconds": 0.2, "backoff_max_seconds": 1.0}
        chain = start_chain(tmp_path, dsn=dsn, pki_paths=pki_paths, start=False, with_cjib=False,
                            duo_faults=Faults(latency_seconds=0.05),
                            overrides={"partners": {"duo": {"policy": policy}}})
        upgrade(chain.config_file)
        procs = start_processes(chain.config_file, tmp_path, 1)
        pid = procs[0].pid
        pushers = make_pushers(chain, 2)
        meldingen = generate_meldingen(COUNT, 8, now=None)
        result: dict[str, Any] = {}
        pushing = threading.Thread(target=lambda: result.setdefault("log", push_stream(
            pushers, meldingen, lambda _: [procs[0].ind_endpoint], rate=RATE, retries=1000)))
        pushing.start()
        base = f"http://127.0.0.1:{procs[0].ports['operator']}"

        def delivered() -> int:
            return sum(chain.duo.count(bericht_id(m)) for m in meldingen)

        def store_up() -> float | None:
            for line in httpx.get(base + "/metrics", timeout=10).text.splitlines():
                if line.startswith("gateway_store_up "):
                    return float(line.split()[1])
            return None

        outages: list[tuple[float, float]] = []
        recoveries: list[dict[str, float]] = []
        for _ in range(2):
            time.sleep(3.0)
            filler = _fill(mnt)
            full_at = time.time()
            # The first write that fails makes it visible; there is a steady stream of them.
            assert wait_until(lambda: httpx.get(base + "/health", timeout=10).status_code == 503, timeout=5)
            r = httpx.get(base + "/health", timeout=10)
            check = r.json()["checks"]["store"]
            assert check["status"] == "failing"
            assert check["reason"].startswith("the store is unreachable: sqlite3.OperationalError"), check
            assert "full" in check["reason"], check
            assert "schema version" not in r.text
            assert wait_until(lambda: store_up() == 0.0, timeout=5)
            time.sleep(FULL_SECONDS)
            before = delivered()
            filler.unlink()
            freed_at = time.time()
            outages.append((full_at, freed_at))
            assert wait_until(lambda b=before: delivered() > b, timeout=RECOVERY_BOUND_SECONDS), \
                "no delivery within the bound after the space came back"
            recoveries.append({"delivery_s": time.time() - freed_at})
            assert wait_until(lambda: httpx.get(base + "/health", timeout=10).status_code == 200,
                              timeout=RECOVERY_BOUND_SECONDS)
            assert store_up() == 1.0

        pushing.join(120)
        assert not pushing.is_alive()
        log = result["log"]
        acked = [m for m in meldingen if m.melding_id in log.acked]
        assert len(acked) == COUNT, f"{COUNT - len(acked)} never acknowledged"
        # (A write may still commit on a full disk when SQLite reuses its WAL file's space after a
        # checkpoint: what commits is acknowledged and delivered; what fails gets a 503. Hence no
        # "nothing acknowledged while full" here: exactly once at DUO below says nothing was lost.)
        during = [t for t in log.acked.values() for (a, b) in outages if a + 1.0 < t < b]
        for i, (_, b) in enumerate(outages):
            first_ack = min((t for t in log.acked.values() if t > b), default=None)
            assert first_ack is not None and first_ack - b <= RECOVERY_BOUND_SECONDS, (first_ack, b)
            recoveries[i]["ack_s"] = first_ack - b

        # Well within the lease (60 s): what was sent but not recorded during the outage is recorded
        # when the store answers again, not left for its lease to run out.
        assert wait_until(lambda: delivered() >= COUNT, timeout=30), f"delivered {delivered()} of {COUNT}"
        counts = [chain.duo.count(bericht_id(m)) for m in acked]
        assert counts.count(1) == COUNT, {c: counts.count(c) for c in set(counts)}

        def q(sql: str) -> list[Any]:
            end = time.monotonic() + 10
            while True:
                try:
                    return store.query(sql)
                except StoreUnavailable:
                    if time.monotonic() > end:
                        raise
                    time.sleep(0.2)

        assert wait_until(lambda: dict(q("SELECT state, COUNT(*) FROM outbox GROUP BY state")) == {"delivered": COUNT},
                          timeout=10)
        assert q("SELECT COUNT(*) FROM messages")[0][0] == COUNT
        assert procs[0].pid == pid and procs[0].proc is not None and procs[0].proc.poll() is None
        print(f"\nsqlite disk full: recoveries {recoveries}; push failures (re-pushed) {log.failures}; "
              f"acknowledged while full (committed on reused WAL space) {len(during)}")
    finally:
        for p in procs:
            p.stop(10)
        for s in pushers[1:]:
            s.close()
        store.close()
        if chain is not None:
            chain.stop()
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        os.rmdir(mnt)
