"""How long does ``gateway replay`` take for 10,000 recorded messages?

Builds an archive of N signed IND ``OntvangMelding`` pushes (generated, signed with a sandbox
key at their recorded times), records the expectations with one replay + ``update_archive``,
then times: reading the archive (digests checked), and replaying it with signature checks on
and off. Prints JSON.

    python bench/replay_bench.py --count 10000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def build(directory: Path, count: int, seed: int) -> None:
    from adapters.ind import codec
    from adapters.ind.simulator import generate_meldingen
    from gateway.archive.format import Entry, write_archive
    from gateway.archive.pseudonym import SandboxKeys
    from gateway.security import wsse
    from gateway.wire import soap

    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    keys = SandboxKeys.make(directory / "pki", start - dt.timedelta(days=30))
    entries = []
    for i, m in enumerate(generate_meldingen(count, seed, now=start)):
        at = start + dt.timedelta(seconds=5 * i)
        env = soap.build_envelope(codec.encode_melding(m), to="https://gateway.example/ind/meldingen",
                                  action=codec.ACTION_ONTVANG, message_id="urn:uuid:" + m.melding_id)
        raw = wsse.sign_envelope(env, keys.own["ind"], parts=wsse.REQUEST_PARTS, now=at)
        meta = {"seq": i + 1, "kind": "inbound", "route": "ind-duo", "partner": "ind", "operation": "OntvangMelding",
                "channel": "push", "message_key": m.melding_id, "t": at.timestamp(), "at": at.isoformat(),
                "http_status": None, "outcome": None}
        entries.append(Entry(meta, raw))
    write_archive(directory / "archive", entries, {"created": start.isoformat(), "bench": True}, keys.pems)


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the endpoint-check workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    from gateway.archive.format import read_archive
    from gateway.archive.replay import replay, update_archive

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        t0 = time.perf_counter()
        build(directory, args.count, args.seed)
        built = time.perf_counter() - t0
        archive_path = directory / "archive"
        first = read_archive(archive_path)
        update_archive(archive_path, first, replay(first))
        t1 = time.perf_counter()
        archive = read_archive(archive_path)
        read_s = time.perf_counter() - t1
        # CPU seconds too: on a shared machine the wall clock also counts other people's work.
        c0 = _cpu()
        checked = replay(archive)
        c1 = _cpu()
        unchecked = replay(archive, verify=False)
        c2 = _cpu()
    print(json.dumps({
        "messages": args.count, "compared": len(checked.cases), "differences": len(checked.differences),
        "build_seconds": round(built, 1), "read_seconds": round(read_s, 2),
        "replay_seconds_signatures_checked": round(checked.seconds, 2),
        "replay_seconds_signatures_not_checked": round(unchecked.seconds, 2),
        "replay_cpu_seconds_signatures_checked": round(c1 - c0, 2),
        "replay_cpu_seconds_signatures_not_checked": round(c2 - c1, 2),
        "per_message_ms": round(checked.seconds / args.count * 1000, 3),
        "cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 1),
    }, indent=2))


if __name__ == "__main__":
    main()
