"""The cost of encryption at rest on the signed path (issue 15), per IND notification.

What one notification writes sealed: the inbound envelope as received (``inbound.raw``), our
signed acknowledgement (``messages.ack``; the inbound row keeps no copy of it), the person
(``messages.person``), the signed DUO message (``outbox.payload``) and DUO's receipt
(``outbox.receipt``); what it reads back: the payload when a worker claims it. Timed with
``time.thread_time`` (median of ``--reps``), in the same process as the signed path's crypto
for the same notification: WS-Security verify of IND's envelope, WS-Security sign of the
acknowledgement, the enveloped signature of the DUO message and the verify of DUO's receipt.
The ratio seal+open / that crypto is an upper bound of the share of the CPU per notification:
the gateway's whole CPU per notification is larger still (bench/RESULTS.md, section 1).

    .venv/bin/python bench/atrest.py [--reps 200] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import progress, timed  # noqa: E402


def measure(reps: int) -> dict[str, Any]:
    from adapters.duo import codec as duo_codec
    from adapters.ind import codec as ind_codec
    from adapters.ind.simulator import generate_meldingen
    from gateway.core.clock import iso
    from gateway.core.models import DuoOntvangstbevestiging
    from gateway.mapping import ind_to_duo
    from gateway.rules import engine as rules
    from gateway.sandbox import start_chain
    from gateway.security import atrest, keys, wsse, xmldsig
    from gateway.wire import soap, xmlsafe

    with tempfile.TemporaryDirectory() as tmp:
        progress("making a sandbox PKI and the simulators (no daemon)")
        chain = start_chain(Path(tmp) / "chain", start=False)
        try:
            paths = chain.pki
            ca = str(paths["ca"])
            gw = keys.load_keypair(paths["gateway-key"], paths["gateway"])
            ind_trust = keys.load_trust("ind", [ca], [paths["ind"]])
            duo_trust = keys.load_trust("duo", [ca], [paths["duo"]])
            ruleset = rules.load(Path(chain.config.rules.directory) / f"{chain.config.rules.active}.yaml")
            (m,) = generate_meldingen(1, 99, start_volgnummer=10_000_000)
            now = dt.datetime.now(dt.UTC)
            envelope = chain.ind.envelope("https://127.0.0.1:1/ind/meldingen", m)

            def ack_env() -> Any:
                body = ind_codec.encode_ontvangstbevestiging(str(uuid.uuid4()), m.melding_id, m.volgnummer,
                                                             iso(now), "x" * 44)
                return soap.build_envelope(body, to="http://www.w3.org/2005/08/addressing/anonymous",
                                           action=ind_codec.ACTION_ONTVANG_RESPONSE,
                                           message_id=f"urn:uuid:{uuid.uuid4()}", relates_to=f"urn:uuid:{m.melding_id}")

            duo = ind_to_duo.to_inburgeraarmelding(m, received_at=now, ruleset=ruleset)
            signed_duo = xmldsig.sign_enveloped(duo_codec.encode_inburgeraarmelding(duo), gw)
            receipt = chain.duo._ack(DuoOntvangstbevestiging(bericht_id=duo.bericht_id, status="ONTVANGEN",
                                                             ontvangen_op=iso(now), bericht_digest="x" * 44,
                                                             kenmerk="DUO-1"))
            our_ack = wsse.sign_envelope(ack_env(), gw, parts=wsse.RESPONSE_PARTS, now=now)
            p = m.persoon
            person = json.dumps({"bsn": p.bsn, "vNummer": p.v_nummer, "naam": p.geslachtsnaam,
                                 "geboortedatum": p.geboortedatum}, sort_keys=True, separators=(",", ":"))

            progress(f"timing the signed path's crypto ({reps} reps each)")
            crypto = {
                "wss_verify": timed(lambda root: wsse.verify_envelope(root, ind_trust, parts=wsse.REQUEST_PARTS,
                                                                       now=now), reps, lambda: xmlsafe.parse(envelope)),
                "wss_sign": timed(lambda env: wsse.sign_envelope(env, gw, parts=wsse.RESPONSE_PARTS, now=now),
                                   reps, ack_env),
                "enveloped_sign": timed(lambda el: xmldsig.sign_enveloped(el, gw), reps,
                                         lambda: duo_codec.encode_inburgeraarmelding(duo)),
                "ack_verify": timed(lambda root: xmldsig.verify_enveloped(root, duo_trust, now=now), reps,
                                     lambda: xmlsafe.parse(receipt)),
            }
        finally:
            chain.stop()

    ring = atrest.Keyring({"bench": os.urandom(32)}, "bench")
    blobs = {"inbound.raw": envelope, "messages.ack": our_ack, "outbox.payload": signed_duo,
             "outbox.receipt": receipt}

    def seal_all(_: Any) -> None:
        for column, data in blobs.items():
            ring.seal(data, column.encode())
        ring.seal_text(person, b"messages.person")

    payload = ring.seal(signed_duo, b"outbox.payload")
    progress(f"timing seal and open ({reps * 10} reps)")
    at_rest = {
        "seal_all": timed(seal_all, reps * 10),
        "open_payload": timed(lambda _: ring.open(payload, b"outbox.payload"), reps * 10),
    }
    at_rest_total = at_rest["seal_all"] + at_rest["open_payload"]
    crypto_total = sum(crypto.values())
    return {
        "bytes_sealed_per_notification": sum(len(b) for b in blobs.values()) + len(person),
        "records_sealed_per_notification": len(blobs) + 1,
        "at_rest_us": {k: round(v * 1e6, 1) for k, v in at_rest.items()} | {"total": round(at_rest_total * 1e6, 1)},
        "signed_crypto_us": {k: round(v * 1e6, 1) for k, v in crypto.items()} | {"total": round(crypto_total * 1e6, 1)},
        "ratio_at_rest_to_signed_crypto": round(at_rest_total / crypto_total, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    r = measure(args.reps)
    if args.json:
        print(json.dumps(r, indent=2))
        return
    print(f"sealed per notification: {r['records_sealed_per_notification']} records, "
          f"{r['bytes_sealed_per_notification']} bytes")
    print(f"encryption at rest (seal all + open the payload): {r['at_rest_us']['total']} µs "
          f"({r['at_rest_us']})")
    print(f"signed path's crypto per notification: {r['signed_crypto_us']['total']} µs ({r['signed_crypto_us']})")
    print(f"ratio: {100 * r['ratio_at_rest_to_signed_crypto']:.2f} % of the signed path's crypto")


if __name__ == "__main__":
    main()
