"""The doors as the contracts say (issue 18): Content-Type, and SOAPAction for ind-wus.

A correctly signed message sent with the wrong Content-Type (or, to IND's door, without the
right SOAPAction) is refused with the profile's answer, recorded in the delivery log, and never
delivered. The contract's headers are accepted in every spelling a client may use: media type
parameters in any case, with or without a space, and the SOAPAction quoted (SOAP 1.1) or bare.
IND's refusals with wrong headers are in ``test_ind_endpoint_refusals.py``; this module holds
DUO's door and the accepted spellings at both.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import httpx
import pytest
from lxml import etree
from typer.testing import CliRunner

from adapters.duo import codec as duo_codec
from adapters.duo.simulator import generate_vorderingen
from adapters.ind import codec as ind_codec
from adapters.ind.simulator import generate_meldingen
from gateway.cli import app
from gateway.core.clock import AMS
from gateway.sandbox import wait_until
from gateway.security import keys, tls, xmldsig
from gateway.wire import soap

NS = {"duo": duo_codec.DUO_NS, "soap": soap.SOAP_NS, "ind": ind_codec.IND_NS}


def duo_client(pki: dict[str, Any]) -> tuple[httpx.Client, keys.KeyPair]:
    key = keys.load_keypair(pki["duo-key"], pki["duo"])
    return httpx.Client(verify=tls.client_context(key, [str(pki["ca"])]), timeout=30), key


def claims(n: int, seed: int) -> list[Any]:
    today = dt.datetime.now(AMS).date()
    return [c for c in generate_vorderingen(n * 3, seed=seed, handover_day=today)
            if not duo_codec.vordering_rules(c, today)][:n]


def post_claim(client: httpx.Client, chain: Any, key: keys.KeyPair, v: Any,
               content_type: str | None) -> httpx.Response:
    body = xmldsig.sign_enveloped(duo_codec.encode_vorderingoverdracht(v), key)
    headers = {"Idempotency-Key": v.vordering_id}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return client.post(chain.duo_endpoint, content=body, headers=headers)


def counts(chain: Any) -> tuple[int, int]:
    q = chain.daemon.rt.store.query
    return q("SELECT COUNT(*) FROM messages")[0][0], q("SELECT COUNT(*) FROM outbox")[0][0]


@pytest.mark.parametrize(("content_type", "shown"), [
    ("application/json", "application/json"),
    ("text/xml; charset=utf-8", "text/xml"),
    ("application/xml; charset=iso-8859-1", "iso-8859-1"),
    (None, "missing"),
])
def test_duo_door_refuses_another_content_type(chain: Any, pki_paths: dict[str, Any], content_type: str | None,
                                               shown: str) -> None:
    (v,) = claims(1, seed=181)
    client, key = duo_client(pki_paths)
    with client:
        r = post_claim(client, chain, key, v, content_type)
    assert r.status_code == 400, r.text
    ack = etree.fromstring(r.content)
    assert ack.findtext("duo:status", namespaces=NS) == "AFGEWEZEN"
    assert ack.findtext("duo:berichtId", namespaces=NS) == v.vordering_id
    assert ack.xpath("duo:fout/duo:code/text()", namespaces=NS) == ["MALFORMED"]
    omschrijving = ack.findtext("duo:fout/duo:omschrijving", namespaces=NS)
    assert "Content-Type" in omschrijving and shown in omschrijving, omschrijving
    # The refusal is signed like every answer of ours.
    xmldsig.verify_enveloped(ack, keys.load_trust("gateway", [pki_paths["ca"]], [pki_paths["gateway"]]),
                             now=dt.datetime.now(dt.UTC))

    # Recorded in the delivery log with its raw bytes; nothing accepted, queued or delivered.
    assert counts(chain) == (0, 0)
    rows = chain.daemon.rt.store.query("SELECT fault_code, fault_detail, response_status, message_key FROM inbound "
                                       "WHERE outcome = 'refused'")
    assert len(rows) == 1
    assert rows[0][0] == "MALFORMED" and "Content-Type" in rows[0][1] and rows[0][2] == 400
    assert rows[0][3] == v.vordering_id
    result = CliRunner().invoke(app, ["log", "--refused", "--state", "refused", "--json", "--limit", "1",
                                      "--config", str(chain.config_file)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["facts"]["fault_code"] == "MALFORMED"
    assert chain.cjib.accepted_counts() == {}


def test_duo_door_accepts_the_contract_type_in_any_spelling(chain: Any, pki_paths: dict[str, Any]) -> None:
    spellings = ["application/xml; charset=utf-8", "application/xml;charset=UTF-8",
                 'Application/XML; Charset="utf-8"', "application/xml"]
    vs = claims(len(spellings), seed=182)
    client, key = duo_client(pki_paths)
    with client:
        for v, content_type in zip(vs, spellings, strict=True):
            r = post_claim(client, chain, key, v, content_type)
            assert r.status_code == 200, (content_type, r.text)
            assert etree.fromstring(r.content).findtext("duo:status", namespaces=NS) == "ONTVANGEN"
    assert wait_until(lambda: all(chain.cjib.accepted_count(v.vordering_id) == 1 for v in vs), timeout=20)
    assert chain.daemon.rt.store.query("SELECT COUNT(*) FROM inbound WHERE outcome = 'refused'")[0][0] == 0


def test_ind_door_accepts_the_contract_headers_in_any_spelling(chain: Any) -> None:
    """Quoted (as SOAP 1.1 clients send it) and bare SOAPAction; charset in any case, with or without a space."""
    action = ind_codec.ACTION_ONTVANG
    spellings = [
        {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action}"'},
        {"Content-Type": "text/xml;charset=UTF-8", "SOAPAction": f'"{action}"'},
        {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": action},
        {"Content-Type": 'TEXT/XML; CHARSET="UTF-8"', "SOAPAction": f'"{action}"'},
    ]
    ms = [dataclasses.replace(m, volgnummer=i + 1)
          for i, m in enumerate(m for m in generate_meldingen(10, seed=183) if m.soort_melding != "CORRECTIE")]
    ms = ms[:len(spellings)]
    for m, headers in zip(ms, spellings, strict=True):
        data = chain.ind.envelope(chain.ind_endpoint, m)
        r = chain.ind.session.post(chain.ind_endpoint, data=data, headers=headers, timeout=30)
        assert r.status_code == 200, (headers, r.content[:300])
        assert etree.fromstring(r.content).find("soap:Body/ind:Ontvangstbevestiging", NS) is not None
    assert wait_until(lambda: len(chain.duo.received) == len(ms), timeout=20)
    assert chain.daemon.rt.store.query("SELECT COUNT(*) FROM inbound WHERE outcome = 'refused'")[0][0] == 0


def test_the_simulators_and_clients_use_the_contract_headers(chain: Any) -> None:
    """zeep (IND's pushes through the simulator) sends the contract's headers: accepted as they are."""
    (m,) = [m for m in generate_meldingen(4, seed=184) if m.soort_melding != "CORRECTIE"][:1]
    result = chain.ind.push(chain.ind_endpoint, dataclasses.replace(m, volgnummer=1))
    assert result.accepted, (result.fault_code, result.detail_code, result.error)
