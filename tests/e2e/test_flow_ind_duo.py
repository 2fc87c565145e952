"""IND -> gateway -> DUO end to end, on loopback over mutual TLS, on both store backends."""

from __future__ import annotations

import dataclasses
import json
import time

import httpx
from lxml import etree
from typer.testing import CliRunner

from adapters.duo import codec as duo_codec
from adapters.duo.simulator import Answer, Faults
from adapters.ind.simulator import generate_meldingen
from gateway.cli import app
from gateway.mapping.ind_to_duo import bericht_id_for
from gateway.sandbox import wait_until
from gateway.security import keys, tls, xmldsig
from tests.pki_fixtures import ack_body

runner = CliRunner()


def cli(chain, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--config", str(chain.config_file)])
    return result.exit_code, result.output


def outbox_states(chain) -> dict[str, str]:
    rows = chain.daemon.rt.store.query("SELECT idempotency_key, state FROM outbox WHERE partner = 'duo'")
    return {r[0]: r[1] for r in rows}


def test_n_in_n_delivered_n_receipts_and_a_repeat_changes_nothing(chain):
    meldingen = generate_meldingen(25, seed=7)
    results = [chain.ind.push(chain.ind_endpoint, m) for m in meldingen]
    assert all(r.accepted for r in results), [r for r in results if not r.accepted]
    assert wait_until(lambda: list(outbox_states(chain).values()).count("delivered") == 25, timeout=30)
    for m in meldingen:
        assert chain.duo.count(bericht_id_for(m.melding_id)) == 1
    receipts = chain.daemon.rt.store.query("SELECT COUNT(*) FROM outbox WHERE receipt IS NOT NULL "
                                           "AND receipt_ref LIKE 'DUO-%'")
    assert receipts[0][0] == 25

    again = chain.ind.push(chain.ind_endpoint, meldingen[3])
    assert again.accepted
    # Revision 2: the same Body, signed afresh for this request (its own RelatesTo and confirmation).
    assert ack_body(again.acknowledgement) == ack_body(results[3].acknowledgement)
    assert again.acknowledgement != results[3].acknowledgement
    time.sleep(0.3)
    assert chain.duo.count(bericht_id_for(meldingen[3].melding_id)) == 1
    assert len(chain.duo.received) == 25
    assert chain.daemon.rt.store.query("SELECT COUNT(*) FROM outbox")[0][0] == 25


def test_log_and_show_explain_what_happened(chain):
    m = generate_meldingen(1, seed=11)[0]
    assert chain.ind.push(chain.ind_endpoint, m).accepted
    assert wait_until(lambda: chain.duo.count(bericht_id_for(m.melding_id)) == 1, timeout=15)
    wait_until(lambda: "delivered" in outbox_states(chain).values(), timeout=5)
    code, output = cli(chain, "show", m.melding_id, "--json")
    assert code == 0, output
    shown = json.loads(output)
    events = [e["event"] for e in shown["events"]]
    assert events[:3] == ["received", "validated", "translated"]
    assert "delivered" in events
    assert shown["deliveries"][0]["state"] == "delivered"
    assert shown["deliveries"][0]["attempts"][0]["outcome"] == "success"
    assert shown["facts"]["berichtId"] == bericht_id_for(m.melding_id)

    code, output = cli(chain, "log", "--json")
    assert code == 0
    rows = json.loads(output)
    assert rows[0]["key"] == m.melding_id
    assert m.persoon.geslachtsnaam not in output  # masked
    if m.persoon.bsn:
        assert m.persoon.bsn not in output


def test_duo_refusing_with_400_sends_the_delivery_to_the_dead_letters(make_chain):
    chain = make_chain(duo_faults=Faults(script=[Answer(status=400)]))
    m = generate_meldingen(1, seed=12)[0]
    assert chain.ind.push(chain.ind_endpoint, m).accepted
    assert wait_until(lambda: outbox_states(chain).get(bericht_id_for(m.melding_id)) == "dead", timeout=15)
    row = chain.daemon.rt.store.query("SELECT attempts, dead_reason FROM outbox")[0]
    assert row[0] == 1
    assert "GESIMULEERD" in row[1]
    assert chain.duo.count(bericht_id_for(m.melding_id)) == 0


def test_duo_answering_503_retries_until_accepted(make_chain):
    chain = make_chain(duo_faults=Faults(script=[Answer(status=503, retry_after_seconds=0.1)] * 2))
    m = generate_meldingen(1, seed=13)[0]
    assert chain.ind.push(chain.ind_endpoint, m).accepted
    assert wait_until(lambda: outbox_states(chain).get(bericht_id_for(m.melding_id)) == "delivered", timeout=20)
    attempts = chain.daemon.rt.store.query("SELECT outcome, http_status FROM attempts ORDER BY id")
    assert [a[0] for a in attempts] == ["retry", "retry", "success"]
    assert [a[1] for a in attempts] == [503, 503, 200]
    assert chain.duo.count(bericht_id_for(m.melding_id)) == 1


def test_duo_answering_409_is_a_dead_letter_with_an_alarm(chain, pki_paths):
    m = generate_meldingen(1, seed=14)[0]
    bericht_id = bericht_id_for(m.melding_id)
    _plant_other_message_with_same_id(chain, pki_paths, bericht_id)
    assert chain.duo.count(bericht_id) == 1
    assert chain.ind.push(chain.ind_endpoint, m).accepted
    assert wait_until(lambda: outbox_states(chain).get(bericht_id) == "dead", timeout=15)
    dead_reason = chain.daemon.rt.store.query("SELECT dead_reason FROM outbox")[0][0]
    assert "other content" in dead_reason
    assert chain.daemon.rt.store.query("SELECT http_status, outcome FROM attempts") == [(409, "permanent")]
    metrics = httpx.get(chain.daemon.operator_url + "/metrics").text
    assert 'gateway_alarms_total{alarm="IDEMPOTENCY_CONFLICT",partner="duo"} 1.0' in metrics


def _plant_other_message_with_same_id(chain, pki_paths, bericht_id: str) -> None:
    """Another message under the same berichtId reaches DUO first (as a buggy sender would)."""
    other = generate_meldingen(1, seed=99)[0]
    from gateway.mapping.ind_to_duo import to_inburgeraarmelding

    duo = to_inburgeraarmelding(other, received_at=chain.daemon.rt.clock.now(), ruleset=chain.daemon.rt.ruleset)
    duo = dataclasses.replace(duo, bericht_id=bericht_id)
    gw = keys.load_keypair(pki_paths["gateway-key"], pki_paths["gateway"])
    body = xmldsig.sign_enveloped(duo_codec.encode_inburgeraarmelding(duo), gw)
    ctx = tls.client_context(gw, [str(pki_paths["ca"])])
    with httpx.Client(verify=ctx) as client:
        r = client.post(chain.servers["duo"].url + "/inburgering/v1/meldingen", content=body,
                        headers={"Content-Type": "application/xml; charset=utf-8", "Idempotency-Key": bericht_id})
    assert r.status_code == 200, r.text
    assert etree.fromstring(r.content).find(f"{{{duo_codec.DUO_NS}}}status").text == "ONTVANGEN"


def test_a_server_with_another_partners_certificate_is_not_duo(make_chain, pki_paths):
    """DUO's address answered by a server holding CJIB's certificate (same CA): never a delivery."""
    from gateway.security import tls as tls_mod
    from gateway.wire.server import serve_in_thread

    chain = make_chain(start=False)
    impostor_key = keys.load_keypair(pki_paths["cjib-key"], pki_paths["cjib"])
    impostor = serve_in_thread(chain.duo.app, ssl_context=tls_mod.server_context(impostor_key, [str(pki_paths["ca"])]))
    try:
        from gateway.core.config import load

        cfg = load(chain.config_file, env={"GATEWAY__PARTNERS__DUO__URL": impostor.url})
        chain.config = cfg
        chain.start_daemon()
        m = generate_meldingen(1, seed=15)[0]
        assert chain.ind.push(chain.ind_endpoint, m).accepted
        assert wait_until(lambda: chain.daemon.rt.store.query("SELECT COUNT(*) FROM attempts")[0][0] >= 1, 15)
        outcome, detail = chain.daemon.rt.store.query("SELECT outcome, detail FROM attempts")[0]
        assert outcome == "retry" and "not one pinned" in detail
        assert outbox_states(chain)[bericht_id_for(m.melding_id)] == "pending"
    finally:
        impostor.stop()
