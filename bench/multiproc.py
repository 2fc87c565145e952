"""The sandbox benchmark with 1, 2 and 4 gateway processes on PostgreSQL, and SQLite with 1.

Configurations are interleaved within each repetition (pg-1, pg-2, pg-4, sqlite-1, then again),
so the machine's noise falls on all of them alike; medians per configuration and ratios against
PostgreSQL with one process are reported. Each run is ``bench_sandbox.run`` with ``--profile``,
so the table also says where the time goes (crypto, store calls, polling, PostgreSQL server CPU).

    python bench/multiproc.py --pg postgresql://postgres@127.0.0.1:5432/postgres --count 600 --repeat 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_sandbox import run  # noqa: E402
from bench.common import emit, median, progress  # noqa: E402


def _fn(r: dict[str, Any], suffix: str, field: str) -> float:
    for k, v in r.get("profile_us_per_msg", {}).get("functions", {}).items():
        if k.endswith(suffix):
            return float(v[field])
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg", required=True)
    ap.add_argument("--count", type=int, default=600)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pushers", type=int, default=4)
    ap.add_argument("--configs", default="pg-1,pg-2,pg-4,sqlite-1")
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="gw-multiproc-"))
    configs = [(c.split("-")[0], int(c.split("-")[1])) for c in args.configs.split(",")]
    runs: dict[str, list[dict[str, Any]]] = {f"{b}-{n}": [] for b, n in configs}
    for i in range(args.repeat):
        for backend, n in configs:
            name = f"{backend}-{n}"
            progress(f"repetition {i + 1}/{args.repeat}: {name}")
            runs[name].append(run(count=args.count, pg=args.pg if backend == "pg" else None, processes=n,
                                  pushers=args.pushers, directory=base / f"{name}-{i}", profile=True,
                                  step_reps=100))
    table: list[dict[str, Any]] = []
    for name, rs in runs.items():
        table.append({
            "config": name,
            "runs": len(rs),
            "all_ok": all(r["ok"] for r in rs),
            "throughput_per_s": median([r["throughput_per_s"] for r in rs]),
            "latency_p50_ms": median([r["latency_ms"]["p50"] for r in rs]),
            "latency_p99_ms": median([r["latency_ms"]["p99"] for r in rs]),
            "gateway_cpu_ms_per_msg": median([r["gateway_cpu_ms_per_msg"] for r in rs]),
            "postgres_cpu_ms_per_msg": median([r["postgres_cpu_ms_per_msg"] or 0.0 for r in rs]),
            "crypto_ms_per_msg": median([r["profile_us_per_msg"]["crypto_us_per_msg"] / 1000 for r in rs]),
            "store_client_ms_per_msg": median([sum(v["us_per_msg"] for k, v in r["profile_us_per_msg"]["functions"].items()
                                                   if k.startswith("store:")) / 1000 for r in rs]),
            "claim_calls_per_msg": median([_fn(r, "Store.claim", "calls_per_msg") for r in rs]),
            "next_due_calls_per_msg": median([_fn(r, "Store.next_due", "calls_per_msg") for r in rs]),
            "commit_us": median([r["steps_us"]["commit"] for r in rs]),
            "commit_wall_us": median([r["steps_us"]["commit_wall"] for r in rs]),
            "ratio_protocol": median([r["ratio_gateway_to_unavoidable"]["protocol"] for r in rs]),
            "gateway_idle_cpu_ms_per_s": median([r["gateway_idle_cpu_ms_per_s"] for r in rs]),
            "loadavg_before": [r["conditions"]["loadavg_1min_before"] for r in rs],
        })
    ref = next((t for t in table if t["config"] == "pg-1"), table[0])
    for t in table:
        t["throughput_vs_pg1"] = round(t["throughput_per_s"] / ref["throughput_per_s"], 2)
        t["cpu_per_msg_vs_pg1"] = round(t["gateway_cpu_ms_per_msg"] / ref["gateway_cpu_ms_per_msg"], 2)
    emit({"table": table, "conditions": {"count": args.count, "repeat": args.repeat, "pushers": args.pushers},
          "runs": runs})


if __name__ == "__main__":
    main()
