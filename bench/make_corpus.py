"""Make the recorded corpus under tests/recordings/ (see docs/archive-format.md, "The corpus").

Runs the sandbox (``gateway.sandbox.start_chain``: the gateway and simulated IND, DUO and CJIB
over mutual TLS on loopback) with generated traffic that touches every route and message kind,
then exports it pseudonymized with a random key that is thrown away:

- IND pushes (about 5% corrections), duplicated pushes (repeats), dropped pushes that the gateway
  recovers through HaalMeldingen, and refusals: a bad BSN, a CORRECTIE without correctieVan, a
  tampered signature;
- DUO claims, some refused at the door (CJIB's rules), one repeat, one id reused for other content;
- CJIB: 201s, 400s (the simulator is made stricter for about one claim in five, chosen by
  its id, so that CJIB refuses claims the gateway let through), random 503s that are retried;
- DUO 503/429 answers that are retried; CJIB status feed changes after simulated weeks.

    python bench/make_corpus.py tests/recordings/sandbox-2026 --meldingen 90 --claims 36
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _stricter_cjib() -> None:
    from adapters.cjib import simulator

    original = simulator.business_errors

    def business_errors(v: dict[str, Any], handover_day: dt.date) -> list[dict[str, str]]:
        errors = original(v, handover_day)
        if int(v["opdrachtgeverReferentie"][:2], 16) % 5 == 0:
            errors.append({"code": "DEBITEUR_ONBEKEND", "pointer": "/debiteur",
                           "omschrijving": "De debiteur is niet bekend bij het CJIB."})
        return errors

    simulator.business_errors = business_errors


def _wait(predicate: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _count(store: Any, sql: str) -> int:
    return int(store.query(sql)[0][0])


def _ind_traffic(chain: Any, n: int, seed: int) -> None:
    from adapters.ind.simulator import PushFaults, generate_meldingen

    meldingen = generate_meldingen(n, seed)
    drops = {m.volgnummer for m in meldingen[10:-10:37]}
    dups = {m.volgnummer for m in meldingen[5:-5:23]}
    chain.ind.push_all(chain.ind_endpoint, meldingen, PushFaults(drop=drops, duplicate=dups))
    chain.ind.push(chain.ind_endpoint, meldingen[0])  # a late repeat
    _ind_refusals(chain, meldingen)


def _ind_refusals(chain: Any, meldingen: list[Any]) -> None:
    # Refused messages reuse a volgnummer that is already taken, so they open no gap.
    last = meldingen[-1]

    def variant(**kw: Any) -> Any:
        return dataclasses.replace(last, melding_id=str(uuid.uuid4()), **kw)

    bad_bsn = variant(persoon=dataclasses.replace(last.persoon, bsn="123456789"))
    no_ref = variant(soort_melding="CORRECTIE", correctie_van=None)
    for m in (bad_bsn, no_ref):
        chain.ind.push_raw(chain.ind_endpoint, chain.ind.envelope(chain.ind_endpoint, m))
    tampered = variant()
    envelope = chain.ind.envelope(chain.ind_endpoint, tampered)
    name = tampered.persoon.geslachtsnaam.encode()
    chain.ind.push_raw(chain.ind_endpoint, envelope.replace(b">" + name + b"<", b">" + name + b"x<", 1))


def _claims(chain: Any, n: int, seed: int) -> None:
    import httpx

    from adapters.duo.simulator import generate_vorderingen, post_vorderingoverdracht
    from gateway.security import keys, tls

    duo_key = keys.load_keypair(chain.pki["duo-key"], chain.pki["duo"])
    ctx = tls.client_context(duo_key, [str(chain.pki["ca"])])
    claims = generate_vorderingen(n, seed, dt.datetime.now(ZoneInfo('Europe/Amsterdam')).date(), broken_every=9)
    with httpx.Client(verify=ctx, timeout=30) as client:
        for v in claims:
            post_vorderingoverdracht(client, chain.duo_endpoint, v, duo_key)
        post_vorderingoverdracht(client, chain.duo_endpoint, claims[0], duo_key)  # a repeat
        other = dataclasses.replace(claims[1], bedrag_in_centen=claims[1].bedrag_in_centen + 1)
        post_vorderingoverdracht(client, chain.duo_endpoint, other, duo_key)  # same id, other content


def record(directory: Path, *, meldingen: int, claims: int, seed: int) -> Any:
    from adapters.cjib.simulator import Faults as CjibFaults
    from adapters.duo.simulator import Faults as DuoFaults
    from gateway.sandbox import start_chain

    _stricter_cjib()
    chain = start_chain(directory, duo_faults=DuoFaults(script=[503, 429, 200, 503]),
                        cjib_faults=CjibFaults(error_rate=0.15, retry_after_seconds=1, seed=seed))
    assert chain.daemon is not None and chain.cjib is not None  # started, with CJIB
    store = chain.daemon.rt.store
    _ind_traffic(chain, meldingen, seed)
    _wait(lambda: _count(store, "SELECT COUNT(*) FROM ind_sequence") >= meldingen, 120)
    _claims(chain, claims, seed)
    _wait(lambda: _count(store, "SELECT COUNT(*) FROM outbox WHERE state = 'pending'") == 0, 120)
    for days in (15, 30):
        chain.cjib.advance(days * 86400)
        time.sleep(3)
        _wait(lambda: _count(store, "SELECT COUNT(*) FROM outbox WHERE state = 'pending'") == 0, 60)
    chain.stop()
    return chain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", type=Path)
    parser.add_argument("--meldingen", type=int, default=90)
    parser.add_argument("--claims", type=int, default=36)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--keep", type=Path, help="Keep the sandbox directory here (default: a temp dir).")
    parser.add_argument("--plain", action="store_true", help="Do not pseudonymize (never for real data).")
    args = parser.parse_args()
    from gateway.archive.format import export
    from gateway.core.observability import configure_logging
    from gateway.core.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        directory = args.keep or Path(tmp) / "sandbox"
        configure_logging("warning", str(directory.parent / "gateway.log"), stderr=False)
        t0 = time.monotonic()
        chain = record(directory, meldingen=args.meldingen, claims=args.claims, seed=args.seed)
        store = Store(chain.config.store.dsn)
        key = None if args.plain else os.urandom(32)  # thrown away: the corpus need not be re-linkable
        manifest = export(chain.config, store, args.target, key=key, personal_data=args.plain, replace=True)
        store.close()
    print(f"recorded in {time.monotonic() - t0:.1f} s: {manifest['exchanges']} exchanges {manifest['counts']}")


if __name__ == "__main__":
    main()
