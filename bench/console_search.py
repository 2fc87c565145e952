"""The console's search over a large store: ``python -m bench.console_search [--rows N] [--dsn DSN]``.

Fills a fresh database (SQLite file by default, or an empty PostgreSQL database given by
``--dsn``) with N messages (default 1,000,000), one outbox row each and the keyed-hash person
lookup, spread over a year, with realistic proportions (95 % delivered, 1 % dead, ...). Then it
times every search filter of the console through the very function the API uses
(``gateway.ops.views.search``), 50 rows a page: median and p95 of 15 runs each, and page 50 of a
broad search followed by cursor. Prints a table and writes JSON next to it (``--out``).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from gateway.core.store import Store, person_digest
from gateway.ops import views

KEY = b"bench-console-lookup-key-0123456789abcdef"
ROUTES = [("ind-duo", "duo", "InburgeraarMelding", 0.7), ("duo-cjib", "cjib", "Vordering", 0.2),
          ("cjib-duo", "duo", "VorderingStatus", 0.1)]
STATES = [("delivered", 0.95), ("dead", 0.01), ("queued", 0.02), ("retrying", 0.01), ("resolved", 0.01)]
OUTBOX_STATE = {"delivered": "delivered", "dead": "dead", "queued": "pending", "retrying": "pending",
                "resolved": "resolved"}


def _pick(rng: random.Random, table: list[Any]) -> Any:
    x, acc = rng.random(), 0.0
    for row in table:
        acc += row[-1]
        if x < acc:
            return row
    return table[-1]


def _bsn(rng: random.Random) -> str:
    while True:
        digits = [rng.randint(0, 9) for _ in range(8)]
        total = sum(d * w for d, w in zip(digits, range(9, 1, -1), strict=True))
        last = total % 11
        if last < 10:
            return "".join(map(str, digits)) + str(last)  # 11-test: sum - last == 0 (mod 11)


def fill(store: Store, n: int, seed: int = 13) -> dict[str, Any]:
    """N messages with outbox rows and lookups, in batches; returns a sample to search for."""
    rng = random.Random(seed)
    now = time.time()
    sample: dict[str, Any] = {}
    batch = 20_000
    for start in range(0, n, batch):
        msgs, outs, looks = [], [], []
        for i in range(start + 1, min(n, start + batch) + 1):
            route, partner, op, _ = _pick(rng, ROUTES)
            state = _pick(rng, STATES)[0]
            at = now - rng.random() * 365 * 86400
            key, bericht, bsn = str(uuid.UUID(int=rng.getrandbits(128))), str(uuid.UUID(int=rng.getrandbits(128))), _bsn(rng)
            person = json.dumps({"bsn": bsn, "naam": "A. Persoon"})
            msgs.append({"id": i, "route": route, "kind": op, "key": key, "at": at, "state": state, "person": person})
            reason = "http 400 GESIMULEERD: refused" if state in ("dead", "resolved") else None
            outs.append({"id": i, "m": i, "p": partner, "o": op, "k": bericht, "s": OUTBOX_STATE[state], "at": at,
                         "r": reason, "e": "http 503" if state == "retrying" else None,
                         "ref": f"ZK-{i:09d}" if state == "delivered" else None})
            looks.append({"d": person_digest(KEY, "bsn", bsn), "m": i})
            if i == n // 2:
                sample = {"key": key, "bericht": bericht, "bsn": bsn}
        with store.tx() as t:
            for sql, rows in (
                ("INSERT INTO messages (id, route, kind, message_key, content_digest, received_at, state, facts, "
                 "person, updated_at) VALUES (:id, :route, :kind, :key, 'x', :at, :state, '{}', :person, :at)", msgs),
                ("INSERT INTO outbox (id, message_id, partner, operation, idempotency_key, payload, state, "
                 "created_at, next_attempt_at, dead_reason, last_error, delivered_at, receipt_ref) VALUES (:id, :m, "
                 ":p, :o, :k, '', :s, :at, :at, :r, :e, :at, :ref)", outs),
                ("INSERT INTO person_lookup (digest, message_id) VALUES (:d, :m)", looks)):
                t.executemany(sql, rows)
        print(f"  {min(n, start + batch):>9,} rows", flush=True)
    if store.dialect == "postgresql":
        with store.tx() as t:
            for table in ("messages", "outbox", "person_lookup"):
                t.execute(f"ANALYZE {table}")
    else:
        with store.tx() as t:
            t.execute("ANALYZE")
    return sample


def _sample(store: Store) -> dict[str, Any]:
    """What ``fill`` would have returned: the message in the middle, its berichtId and BSN."""
    mid = int(store.query("SELECT MAX(id) FROM messages")[0][0]) // 2
    key, person = store.query("SELECT message_key, person FROM messages WHERE id = :i", {"i": mid})[0]
    bericht = store.query("SELECT idempotency_key FROM outbox WHERE message_id = :i", {"i": mid})[0][0]
    return {"key": key, "bericht": bericht, "bsn": json.loads(person)["bsn"]}


def _time(store: Store, f: views.Search, runs: int = 15) -> dict[str, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        page = views.search(store, f)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"median_ms": round(statistics.median(times), 2), "p95_ms": round(times[int(len(times) * 0.95) - 1], 2),
            "rows": len(page["messages"])}


def run(store: Store, sample: dict[str, Any]) -> dict[str, Any]:
    now = time.time()
    cases = {
        "newest (no filter)": views.Search(),
        "meldingId": views.Search(ref=sample["key"]),
        "berichtId": views.Search(ref=sample["bericht"]),
        "BSN (keyed hash)": views.Search(person_digest=person_digest(KEY, "bsn", sample["bsn"])),
        "state=dead": views.Search(state="dead"),
        "state=dead, partner=duo": views.Search(state="dead", partner="duo"),
        "partner=cjib": views.Search(partner="cjib"),
        "route=duo-cjib, last 30 days": views.Search(route="duo-cjib", since=now - 30 * 86400),
        "error=GESIMULEERD": views.Search(error="GESIMULEERD"),
        "one day, 60 days ago": views.Search(since=now - 61 * 86400, until=now - 60 * 86400),
    }
    out = {name: _time(store, f) for name, f in cases.items()}
    cursor = None
    for _ in range(49):
        page = views.search(store, views.Search(state="delivered", after=cursor))
        at, _, ident = page["next"].partition(":")
        cursor = (float(at), int(ident))
    out["page 50 of state=delivered (cursor)"] = _time(store, views.Search(state="delivered", after=cursor))
    out["dashboard (health, counts, 24 h + 30 d series)"] = _dashboard(store)
    return out


def _dashboard(store: Store, runs: int = 5) -> dict[str, float]:
    """The console's landing page: ``api.dashboard`` (includes ``gateway health``'s evaluation)."""
    from gateway.console import api
    from gateway.core.config import Config
    from gateway.runtime import build_runtime

    rt = build_runtime(Config.model_validate({"store": {"dsn": store.dsn}, "tls": {"enabled": False}}), store=store)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        api.dashboard(rt)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"median_ms": round(statistics.median(times), 2), "p95_ms": round(times[-1], 2), "rows": 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dsn", default="", help="an EMPTY PostgreSQL database (default: a new SQLite file)")
    ap.add_argument("--out", default="")
    ap.add_argument("--reuse", action="store_true", help="measure a database filled by an earlier run (--dsn)")
    args = ap.parse_args()
    dsn = args.dsn or f"sqlite:///{Path(tempfile.mkdtemp()) / 'search.db'}"
    store = Store(dsn)
    store.migrate()
    t0 = time.perf_counter()
    sample = _sample(store) if args.reuse else fill(store, args.rows)
    fill_s = time.perf_counter() - t0
    args.rows = int(store.query("SELECT COUNT(*) FROM messages")[0][0])
    results = run(store, sample)
    print(f"\n{store.dialect}, {args.rows:,} messages" + ("" if args.reuse else f" (filled in {fill_s:.0f} s)") + "\n")
    print(f"{'search':40} {'median ms':>10} {'p95 ms':>10} {'rows':>6}")
    for name, r in results.items():
        print(f"{name:40} {r['median_ms']:>10} {r['p95_ms']:>10} {r['rows']:>6}")
    if args.out:
        Path(args.out).write_text(json.dumps({"backend": store.dialect, "rows": args.rows,
                                              "fill_seconds": None if args.reuse else round(fill_s),
                                              "results": results}, indent=2))
    store.close()


if __name__ == "__main__":
    main()
