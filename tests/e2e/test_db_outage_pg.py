"""Issue 23: the PostgreSQL server goes away twice under load; the gateway recovers by itself.

The test starts a PostgreSQL server of its own (``tests/pgserver.py``: initdb + pg_ctl in a temp
directory, on a free port) so that it may stop it without disturbing anyone. Three ``gateway
run`` processes share it; IND pushes a steady stream spread over them (a push that is not
acknowledged is pushed again, as IND retries); DUO answers slowly so work waits in the outbox
when the server stops. The server is stopped twice for OUTAGE_SECONDS. Then:

- nothing is acknowledged while the server is down;
- every acknowledged notification reaches DUO exactly once (none lost, none twice);
- after the server is back, intake acknowledges and DUO gets deliveries again within 5 s;
- /health answers 503 with a JSON report saying "the store is unreachable" while it is down
  (never "schema version 0"), `gateway health` exits 2 saying the same, gateway_store_up is 0,
  and both are ok again afterwards;
- no process is restarted (the same three pids run from start to end).
"""

from __future__ import annotations

import os
import subprocess
import sys
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
from tests import pgserver

pytestmark = [pytest.mark.slow]

COUNT = 240
RATE = 12.0  # pushes per second, all pushers together
OUTAGE_SECONDS = 4.0
RECOVERY_BOUND_SECONDS = 5.0


def test_postgres_stopped_twice_under_load(tmp_path: Path, pki_paths: dict[str, Any]) -> None:
    reason = pgserver.available()
    if reason:
        pytest.skip(reason)
    from adapters.duo.simulator import Faults
    from adapters.ind.simulator import generate_meldingen

    server = pgserver.PgServer()
    server.start()
    chain = None
    procs: list[Any] = []
    pushers: list[Any] = []
    store = Store(server.dsn)
    try:
        policy = {"concurrency": 1, "backoff_initial_seconds": 0.2, "backoff_max_seconds": 1.0}
        chain = start_chain(tmp_path, dsn=server.dsn, pki_paths=pki_paths, start=False, with_cjib=False,
                            duo_faults=Faults(latency_seconds=0.25),
                            overrides={"partners": {"duo": {"policy": policy}}})
        upgrade(chain.config_file)
        procs = start_processes(chain.config_file, tmp_path, 3)
        pids = [p.pid for p in procs]
        pushers = make_pushers(chain, 3)
        meldingen = generate_meldingen(COUNT, 8, now=None)
        result: dict[str, Any] = {}
        pushing = threading.Thread(target=lambda: result.setdefault("log", push_stream(
            pushers, meldingen, lambda _: [p.ind_endpoint for p in procs], rate=RATE, retries=1000)))
        pushing.start()

        def q(sql: str) -> list[Any]:
            # The test's own connection died with the server too: it reconnects like the gateway.
            end = time.monotonic() + 10
            while True:
                try:
                    return store.query(sql)
                except StoreUnavailable:
                    if time.monotonic() > end:
                        raise
                    time.sleep(0.2)

        def delivered() -> int:
            return sum(chain.duo.count(bericht_id(m)) for m in meldingen)

        def health(p: Any) -> httpx.Response:
            return httpx.get(f"http://127.0.0.1:{p.ports['operator']}/health", timeout=10)

        def metric(p: Any, name: str) -> float | None:
            text = httpx.get(f"http://127.0.0.1:{p.ports['operator']}/metrics", timeout=10).text
            for line in text.splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
            return None

        outages: list[tuple[float, float]] = []
        recoveries: list[dict[str, float]] = []
        for _ in range(2):
            time.sleep(4.0)
            assert q("SELECT COUNT(*) FROM outbox WHERE state = 'pending'")[0][0] > 0, \
                "no waiting work when the server stops: the test would prove nothing"
            server.stop("fast")
            down_at = time.time()
            time.sleep(1.0)
            for p in procs:
                r = health(p)
                assert r.status_code == 503, (r.status_code, r.text[:300])
                report = r.json()
                assert report["status"] == "failing"
                assert report["checks"]["store"]["status"] == "failing"
                assert "the store is unreachable" in report["checks"]["store"]["reason"]
                assert "schema version" not in r.text
                assert metric(p, "gateway_store_up") == 0.0
            if not outages:  # `gateway health` too (once: it starts a Python process)
                env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY__")}
                done = subprocess.run([sys.executable, "-m", "gateway.cli", "health", "--config",
                                       str(chain.config_file)], env=env, capture_output=True, text=True, timeout=60)
                assert done.returncode == 2, (done.returncode, done.stdout[-500:], done.stderr[-500:])
                assert "the store is unreachable" in done.stdout and "schema version" not in done.stdout + done.stderr
            before = delivered()
            time.sleep(OUTAGE_SECONDS - 1.0)
            assert delivered() == before, "DUO got deliveries while the database was down"
            up_at = time.time()
            outages.append((down_at, up_at))
            server.start()
            back_at = time.time()
            # Deliveries and acknowledgements resume within the bound.
            assert wait_until(lambda b=before: delivered() > b, timeout=RECOVERY_BOUND_SECONDS + 5), \
                "no delivery after the server came back"
            first_delivery = time.time() - back_at
            log = result.get("log")
            recoveries.append({"delivery_s": first_delivery})
            assert all(wait_until(lambda p=p: health(p).status_code == 200, timeout=RECOVERY_BOUND_SECONDS + 5)
                       for p in procs), "health did not come back"
            assert all(metric(p, "gateway_store_up") == 1.0 for p in procs)
            del log

        pushing.join(120)
        assert not pushing.is_alive()
        log = result["log"]
        acked = [m for m in meldingen if m.melding_id in log.acked]
        assert len(acked) == COUNT, f"{COUNT - len(acked)} never acknowledged"
        # Nothing acknowledged while the server was down (a small grace for answers in flight).
        during = [t for t in log.acked.values() for (a, b) in outages if a + 0.2 < t < b]
        assert during == [], f"{len(during)} acknowledged while the database was down"
        # Intake acknowledged again within the bound after each restart.
        for (_, b) in outages:
            first_ack = min((t for t in log.acked.values() if t > b), default=None)
            assert first_ack is not None and first_ack - b <= RECOVERY_BOUND_SECONDS + 1.0, (first_ack, b)
            recoveries[outages.index((_, b))]["ack_s"] = first_ack - b

        # Well within the lease (60 s): what was sent but not recorded during the outage is recorded
        # when the store answers again, not left for its lease to run out.
        assert wait_until(lambda: delivered() >= COUNT, timeout=30), f"delivered {delivered()} of {COUNT}"
        counts = [chain.duo.count(bericht_id(m)) for m in acked]
        assert counts.count(1) == COUNT, {c: counts.count(c) for c in set(counts)}
        assert dict(q("SELECT state, COUNT(*) FROM outbox GROUP BY state")) == {"delivered": COUNT}
        assert q("SELECT COUNT(*) FROM messages")[0][0] == COUNT
        assert q("SELECT outbox_id FROM attempts WHERE outcome = 'success' "
                 "GROUP BY outbox_id HAVING COUNT(*) > 1") == []
        # No process restarted.
        assert [p.pid for p in procs] == pids and all(p.proc is not None and p.proc.poll() is None for p in procs)
        # Rate-limited logging: a few lines per cause, not one per failure.
        lines = sum(p.log_file.read_text().count('"store_unavailable"') for p in procs)
        print(f"\ndb outage: recoveries {recoveries}; push failures (re-pushed) {log.failures}; "
              f"store_unavailable log lines (3 processes) {lines}")
        assert lines < 60, lines
    finally:
        for p in procs:
            p.stop(10)
        for s in pushers[1:]:
            s.close()
        store.close()
        if chain is not None:
            chain.stop()
        server.destroy()
