"""The Zambrano scenario: a faulty rule set ran for months; find the people it wronged and correct DUO.

The past: 2,500 IND notifications taken in through the real intake path under rule set 2025.9,
which made art. 8(e) parents of a Dutch minor (Zambrano / Chavez-Vilchez) PLICHTIG, and all of
them delivered to DUO back then. Now policy staff roll out 2026.1 with the gateway's commands:
``rules impact`` must find exactly those parents and nobody else, without changing anything;
``rules apply --corrections`` queues one CORRECTIE each, and a second run nothing; the running
gateway delivers each correction to DUO exactly once; IND's own corrections keep working.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from lxml import etree
from typer.testing import CliRunner

from adapters.duo import codec as duo_codec
from adapters.ind.simulator import generate_meldingen
from gateway.cli import app
from gateway.core.clock import iso
from gateway.mapping.ind_to_duo import bericht_id_for, correction_bericht_id
from gateway.rules.engine import load
from gateway.sandbox import wait_until
from tests import rules_history as h

COUNT = 2500


def gateway(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def mark_past_as_delivered(store: Any) -> None:
    # DUO received the originals back then; only what the roll-out queues is new work for DUO.
    with store.tx() as t:
        t.execute("UPDATE outbox SET state = 'delivered', delivered_at = created_at WHERE state = 'pending'")
        t.execute("UPDATE messages SET state = 'delivered' WHERE state = 'queued'")


def test_zambrano_parents_are_found_and_corrected_once(tmp_path: Any, store: Any,
                                                       make_chain: Callable[..., Any]) -> None:
    meldingen = generate_meldingen(COUNT, seed=2025, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    parents = h.zambrano_parents(meldingen)
    assert len(parents) > 100  # the generator gives about one in nine

    h.intake(h.runtime(h.write_config(tmp_path / "past", store.dsn), store), meldingen)
    mark_past_as_delivered(store)
    sent = {json.loads(r[0])["meldingId"]: json.loads(r[0]) for r in
            store.query("SELECT facts FROM messages WHERE route = 'ind-duo'")}
    assert {sent[p]["plichtIndicatie"] for p in parents} == {"PLICHTIG"}

    chain = make_chain(start=False)  # the production-like gateway: mutual TLS, signing, 2026.1 in its rules dir
    config = str(chain.config_file)

    # 1. impact: exactly the parents, nobody else, and nothing changed in the database
    before = h.snapshot(store)
    impact = gateway("rules", "impact", "--ruleset", h.CURRENT, "--json", "--config", config)
    assert h.snapshot(store) == before
    assert {p["meldingId"] for p in impact["people"]} == parents
    assert impact["changed"] == len(parents)
    assert impact["by_indication"] == {"PLICHTIG -> NIET_PLICHTIG": len(parents)}
    assert impact["by_rule"] == {"OUDER_VAN_NEDERLANDS_KIND -> UNIERECHT_ART8E": len(parents)}
    assert sum(g["count"] for g in impact["by_regime"].values()) == len(parents)
    assert impact["superseded"] == len(h.superseded(meldingen))
    assert all(p["person"]["bsn"] is None or p["person"]["bsn"].startswith("*******") for p in impact["people"])

    # 2. apply: one correction each; a second run queues nothing new
    applied = gateway("rules", "apply", "--ruleset", h.CURRENT, "--corrections", "--operator", "beleid",
                      "--json", "--config", config)
    assert applied["corrections_queued"] == len(parents)
    again = gateway("rules", "apply", "--ruleset", h.CURRENT, "--corrections", "--operator", "beleid",
                    "--json", "--config", config)
    assert again["corrections_queued"] == 0
    version = load(chain.config.rules.directory + f"/{h.CURRENT}.yaml").version
    corrections = {correction_bericht_id(bericht_id_for(p), version): p for p in parents}
    queued = store.query("SELECT idempotency_key FROM outbox WHERE state = 'pending'")
    assert sorted(r[0] for r in queued) == sorted(corrections)

    # 3. the gateway (which now runs 2026.1, recorded in the store) delivers each correction once
    chain.start_daemon()
    assert chain.daemon.rt.ruleset.name == h.CURRENT
    assert wait_until(lambda: all(chain.duo.count(b) == 1 for b in corrections), timeout=90), \
        f"{sum(chain.duo.count(b) for b in corrections)} of {len(corrections)} corrections reached DUO"
    assert chain.duo.accepted() == len(corrections)
    for bericht_id, _, body in chain.duo.received:
        duo = duo_codec.decode_inburgeraarmelding(etree.fromstring(body))
        melding_id = corrections[bericht_id]
        assert duo.soort_melding == "CORRECTIE" and duo.bron.melding_id == melding_id
        assert duo.vervangt_bericht_id == sent[melding_id]["berichtId"]
        assert (duo.beoordeling.plicht_indicatie, duo.beoordeling.regel) == ("NIET_PLICHTIG", "UNIERECHT_ART8E")

    # 4. IND's own CORRECTIE keeps working alongside, and leaves nothing to correct
    original = next(m for m in meldingen if m.melding_id in parents)
    fix = dataclasses.replace(original, melding_id="7a3c9a52-5a1e-4c55-9d0e-5b0c7e1f0001",
                              volgnummer=COUNT + 1, soort_melding="CORRECTIE", correctie_van=original.melding_id,
                              aangemaakt_op=iso(dt.datetime.now(dt.UTC)))
    assert chain.ind.push(chain.ind_endpoint, fix).accepted
    assert wait_until(lambda: chain.duo.count(bericht_id_for(fix.melding_id)) == 1, timeout=30)
    after = gateway("rules", "impact", "--ruleset", h.CURRENT, "--json", "--config", config)
    assert after["changed"] == 0 and after["superseded"] == len(h.superseded(meldingen)) + 1
    assert gateway("rules", "apply", "--ruleset", h.CURRENT, "--corrections", "--operator", "beleid",
                   "--json", "--config", config)["corrections_queued"] == 0
