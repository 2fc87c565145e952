"""A/B of ``gateway replay`` between code trees, on one archive, interleaved.

Builds one archive of N signed IND pushes (``bench/replay_bench.py``'s, expectations recorded with
this tree's code), then replays it in each tree in turn, round after round, each replay in a fresh
process of that tree (its own code first on sys.path) after a small warm-up replay, as
``bench/replay_bench.py`` times it after its first replay. Prints one JSON line per replay and the
medians per tree: wall seconds, CPU seconds of all processes, CPU seconds of the replaying process.

Why one archive: each tree's ``replay_bench.py`` builds its own (other signatures, other times);
on a shared machine the wall time swings with other people's work, so trees are compared in the
same rounds and by medians. The ratios are to the last tree's medians (the baseline).

    python bench/replay_ab.py --count 3000 --rounds 6 . /tmp/perf-before
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

# Run in the tree under test: replay a few pushes (imports, first calls), then time the whole archive.
_TIMED = """
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from gateway.archive.format import Archive, read_archive
from gateway.archive.replay import replay
archive = read_archive(Path(sys.argv[2]))
replay(Archive(manifest=archive.manifest, entries=[e for e in archive.entries if e.seq <= 60], certs=archive.certs))
t0, c0, m0 = time.perf_counter(), os.times(), time.process_time()
report = replay(archive)
c1 = os.times()
print(json.dumps({"wall": round(time.perf_counter() - t0, 2),
                  "cpu": round(c1.user + c1.system + c1.children_user + c1.children_system
                               - c0.user - c0.system - c0.children_user - c0.children_system, 2),
                  "main_cpu": round(time.process_time() - m0, 2), "differences": len(report.differences),
                  "load": round(os.getloadavg()[0], 2)}))
"""


def _build(directory: Path, count: int) -> Path:
    sys.path.insert(0, str(REPO))
    from bench.replay_bench import build
    from gateway.archive.format import read_archive
    from gateway.archive.replay import replay, update_archive

    build(directory, count, 7)
    path = directory / "archive"
    recorded = read_archive(path)
    update_archive(path, recorded, replay(recorded))
    return path


def _timed(tree: Path, archive: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY__")}
    out = subprocess.run([sys.executable, "-c", _TIMED, str(tree), str(archive)], cwd=tree, env=env, check=True,
                         capture_output=True, text=True, timeout=3600)
    return dict(json.loads(out.stdout.splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trees", nargs="+", type=Path, help="code trees to compare, the baseline last")
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    trees = [t.resolve() for t in args.trees]
    runs: dict[str, list[dict[str, Any]]] = {str(t): [] for t in trees}
    with tempfile.TemporaryDirectory() as tmp:
        archive = _build(Path(tmp), args.count)
        for n in range(args.rounds):
            for tree in trees:
                run = _timed(tree, archive)
                runs[str(tree)].append(run)
                print(json.dumps({"round": n + 1, "tree": str(tree), **run}), flush=True)
    medians = {tree: {k: statistics.median(r[k] for r in rs) for k in ("wall", "cpu", "main_cpu")}
               for tree, rs in runs.items()}
    baseline = medians[str(trees[-1])]
    for m in medians.values():
        m["wall_ratio"] = round(m["wall"] / baseline["wall"], 2)
        m["cpu_ratio"] = round(m["cpu"] / baseline["cpu"], 2)
    print(json.dumps({"count": args.count, "rounds": args.rounds, "medians": medians}))


if __name__ == "__main__":
    main()
