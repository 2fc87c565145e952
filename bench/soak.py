"""Soak: many notifications through the sandbox with 1% transient failures at DUO.

The gateway runs as a ``gateway run`` subprocess; IND's side pushes signed envelopes (built with
IND's key, ``IndSimulator.envelope``) over mutual TLS from ``--pushers`` threads, without zeep, so
the pushing side keeps up with the gateway. DUO answers 1% of requests with 503 + Retry-After: 1.

Reported: throughput, retries (attempts that were not a success), every notification delivered
exactly once (new take-ins at DUO counted per berichtId), and the daemon's resident memory
(/proc/<pid>/statm) after 10,000 and at the end, sampled every ``--sample-every``.

    python bench/soak.py --count 100000          # ~30 min on 2 busy cores
    python bench/soak.py --count 20000 --pg postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    bericht_id,
    emit,
    fresh_pg_database,
    machine_load,
    make_pushers,
    progress,
    start_processes,
    upgrade,
)

CHUNK = 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--error-rate", type=float, default=0.01)
    ap.add_argument("--pushers", type=int, default=3)
    ap.add_argument("--pg", default=None)
    ap.add_argument("--sample-every", type=int, default=5000)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    emit(soak(count=args.count, error_rate=args.error_rate, pushers=args.pushers, pg=args.pg,
              sample_every=args.sample_every, directory=args.dir or Path(tempfile.mkdtemp(prefix="gw-soak-"))))


def soak(*, count: int, error_rate: float, pushers: int, pg: str | None, sample_every: int,
         directory: Path, first_mark: int = 10_000) -> dict[str, Any]:
    """``first_mark``: the delivered count after which RSS is taken as the reference (10,000)."""
    from adapters.duo.simulator import Faults
    from adapters.ind.simulator import generate_meldingen
    from gateway.core.store import Store
    from gateway.sandbox import start_chain, wait_until

    directory.mkdir(parents=True, exist_ok=True)
    drop = None
    dsn = f"sqlite:///{directory / 'gateway.db'}"
    if pg:
        dsn, drop = fresh_pg_database(pg)
    from bench.bench_sandbox import PRODUCTION_CRL_VALIDITY_SECONDS, PRODUCTION_REVOCATION

    overrides = {"ind": {"reconcile_interval_seconds": 3600.0, "gap_grace_seconds": 120.0},
                 "revocation": PRODUCTION_REVOCATION,
                 "partners": {"duo": {"policy": {"max_attempts": 50}}}}
    chain = start_chain(directory, dsn=dsn, start=False, with_cjib=False, overrides=overrides,
                        duo_faults=Faults(error_rate=error_rate, retry_after_seconds=1.0, seed=7),
                        crl_next_update_seconds=PRODUCTION_CRL_VALIDITY_SECONDS)
    duo = chain.duo
    take_ins: dict[str, int] = {}
    original = duo._take_in

    def take_in(root: Any, bid: str, digest: str, body: bytes) -> Any:
        new = bid not in duo._kept
        result = original(root, bid, digest, body)
        if new:
            take_ins[bid] = take_ins.get(bid, 0) + 1
        return result

    duo._take_in = take_in
    sims = make_pushers(chain, pushers)
    store = Store(dsn)
    procs: list[Any] = []
    try:
        upgrade(chain.config_file)
        procs = start_processes(chain.config_file, directory, 1)
        gw = procs[0]
        url = gw.ind_endpoint
        progress(f"gateway pid {gw.pid} on {'PostgreSQL' if pg else 'SQLite'}; {count} notifications, "
                 f"{error_rate:.1%} 503 at DUO, {pushers} pushers")
        ids: list[str] = []
        ids_lock = threading.Lock()
        acked = [0]
        not_acked = [0]
        refused = [0]
        next_chunk = [0]
        chunks = (count + CHUNK - 1) // CHUNK

        def pusher(k: int) -> None:
            sim = sims[k]
            while True:
                with ids_lock:
                    c = next_chunk[0]
                    if c >= chunks:
                        return
                    next_chunk[0] += 1
                n = min(CHUNK, count - c * CHUNK)
                for m in generate_meldingen(n, 10_000 + c, start_volgnummer=1 + c * CHUNK):
                    status = None
                    for _ in range(20):
                        status, _body = sim.push_raw(url, sim.envelope(url, m))
                        if status == 200 or status == 500:  # 500: a SOAP fault (refused), final
                            break
                        with ids_lock:
                            not_acked[0] += 1
                        time.sleep(0.1)
                    with ids_lock:
                        if status == 200:
                            ids.append(m.melding_id)
                            acked[0] += 1
                        else:
                            refused[0] += 1

        t0 = time.time()
        cpu0 = gw.cpu_seconds()
        threads = [threading.Thread(target=pusher, args=(k,), daemon=True) for k in range(pushers)]
        for t in threads:
            t.start()
        samples: list[dict[str, Any]] = []
        next_sample = min(sample_every, first_mark)
        rss_10k = None

        def delivered() -> int:
            return len(take_ins)

        while any(t.is_alive() for t in threads) or delivered() < acked[0]:
            d = delivered()
            if d >= next_sample or (d >= first_mark and rss_10k is None):
                rss = gw.rss_bytes()
                if d >= first_mark and rss_10k is None:
                    rss_10k = rss
                samples.append({"delivered": d, "rss_mb": round(rss / 2**20, 1), "seconds": round(time.time() - t0, 1),
                                "gateway_cpu_s": round(gw.cpu_seconds() - cpu0, 1), "load": machine_load()})
                progress(f"delivered {d}/{count} acked {acked[0]} rss {rss / 2**20:.1f} MB "
                         f"{d / (time.time() - t0):.1f}/s load {machine_load()}")
                next_sample = (d // sample_every + 1) * sample_every
                duo.received.clear()  # the simulator's copies of the bodies; not needed here
            if not any(t.is_alive() for t in threads) and time.time() - t0 > 0:
                if not wait_until(lambda: delivered() >= acked[0], timeout=300, interval=0.5):
                    break
            time.sleep(0.5)
        elapsed = time.time() - t0
        cpu = gw.cpu_seconds() - cpu0
        rss_end = gw.rss_bytes()
        samples.append({"delivered": delivered(), "rss_mb": round(rss_end / 2**20, 1), "seconds": round(elapsed, 1),
                        "gateway_cpu_s": round(cpu, 1), "load": machine_load()})
        wait_until(lambda: int(store.query("SELECT COUNT(*) FROM outbox WHERE state = 'pending'")[0][0]) == 0, 60)
        attempts = dict(store.query("SELECT outcome, COUNT(*) FROM attempts GROUP BY outcome"))
        states = dict(store.query("SELECT state, COUNT(*) FROM outbox GROUP BY state"))
        missing = sum(1 for i in ids if take_ins.get(_bid(i), 0) == 0)
        doubled = sum(1 for v in take_ins.values() if v > 1)
        return {
            "conditions": {"count": count, "backend": "postgresql" if pg else "sqlite", "error_rate": error_rate,
                           "pushers": pushers, "pushing": "signed envelopes over requests (no zeep)",
                           "cores": __import__("os").cpu_count()},
            "ok": missing == 0 and doubled == 0 and len(ids) + refused[0] == count,
            "acknowledged": len(ids), "refused_by_gateway": refused[0], "push_retries": not_acked[0],
            "delivered": delivered(), "missing_at_duo": missing, "taken_in_twice_at_duo": doubled,
            "outbox_states": states, "attempt_outcomes": attempts,
            "retries": sum(v for k, v in attempts.items() if k != "success"),
            "seconds": round(elapsed, 1), "throughput_per_s": round(count / elapsed, 1),
            "gateway_cpu_ms_per_msg": round(cpu * 1000 / count, 3),
            "first_mark": first_mark,
            "rss_mb_after_10k": round(rss_10k / 2**20, 1) if rss_10k else None,
            "rss_mb_at_end": round(rss_end / 2**20, 1),
            "rss_growth_10k_to_end": round(rss_end / rss_10k - 1, 4) if rss_10k else None,
            "samples": samples,
        }
    finally:
        for p in procs:
            p.stop(30)
        for s in sims[1:]:
            s.close()
        store.close()
        chain.stop()
        if drop is not None:
            drop()


def _bid(melding_id: str) -> str:
    from gateway.mapping.ind_to_duo import bericht_id_for

    return bericht_id_for(melding_id)


_ = bericht_id

if __name__ == "__main__":
    main()
