"""Digikoppeling WUS addressing (WA001) at the gateway's IND door: requests, answers and faults."""

from __future__ import annotations

import uuid

from lxml import etree

from adapters.ind import codec
from gateway.security import pki, wsse
from gateway.wire import soap, xmlsafe
from tests.conformance.conftest import Wus, fault_code

WSA = soap.WSA_NS


def _headers(answer: bytes) -> dict[str, str]:
    header = xmlsafe.parse(answer).find(f"{{{soap.SOAP_NS}}}Header")
    assert header is not None
    return {etree.QName(h).localname: (h.text or "").strip() for h in header if etree.QName(h).namespace == WSA}


def _request(wus: Wus, m, *, to: str | None = None, sender: str | None = None,
             parts=wsse.REQUEST_PARTS, drop: str | None = None) -> bytes:
    env = soap.build_envelope(codec.encode_melding(m), to=to or wus.url, action=codec.ACTION_ONTVANG,
                              message_id="urn:uuid:" + m.melding_id)
    header = env.find(f"{{{soap.SOAP_NS}}}Header")
    if sender is not None:
        from_ = etree.Element(f"{{{WSA}}}From")
        etree.SubElement(from_, f"{{{WSA}}}Address").text = sender
        header.insert(0, from_)
    if drop is not None:
        header.remove(header.find(f"{{{WSA}}}{drop}"))
    return wsse.sign_envelope(env, wus.pair("ind"), parts=parts, now=wus.chain.ind.clock.now())


def test_WA001_an_answer_carries_action_messageid_and_relatesto(wus: Wus) -> None:
    m = wus.melding(4001)
    status, answer = wus.chain.ind.push_raw(wus.url, _request(wus, m))
    assert status == 200
    headers = _headers(answer)
    assert headers["Action"] == codec.ACTION_ONTVANG_RESPONSE
    assert headers["RelatesTo"] == "urn:uuid:" + m.melding_id
    assert uuid.UUID(headers["MessageID"].removeprefix("urn:uuid:")) and headers["MessageID"] != headers["RelatesTo"]


def test_WA001_a_fault_carries_action_messageid_and_relatesto(wus: Wus) -> None:
    import dataclasses

    m = wus.melding(4002)
    bad = dataclasses.replace(m, persoon=dataclasses.replace(m.persoon, bsn="123456789"))  # fails the 11-test
    status, answer = wus.chain.ind.push_raw(wus.url, _request(wus, bad))
    assert status == 500 and fault_code(answer) == ("soap:Client", "BUSINESS_RULE")
    headers = _headers(answer)
    assert headers["Action"] == soap.FAULT_ACTION
    assert headers["RelatesTo"] == "urn:uuid:" + m.melding_id
    assert headers["MessageID"].startswith("urn:uuid:")


def test_WA001_a_fault_to_an_unreadable_request_relates_to_unspecified(wus: Wus) -> None:
    status, answer = wus.chain.ind.push_raw(wus.url, b"<soap:Envelope")
    assert status == 500 and fault_code(answer)[1] == "MALFORMED"
    headers = _headers(answer)
    assert headers["Action"] == soap.FAULT_ACTION and headers["RelatesTo"] == soap.UNSPECIFIED


def test_WA001_a_request_without_messageid_is_refused(wus: Wus) -> None:
    parts = tuple(p for p in wsse.REQUEST_PARTS if p != "MessageID")
    status, answer = wus.chain.ind.push_raw(wus.url, _request(wus, wus.melding(4003), parts=parts, drop="MessageID"))
    assert status == 500 and fault_code(answer) == ("wsse:FailedCheck", "SIGNATURE")
    assert "MessageID" in (soap.split(xmlsafe.parse(answer)).payload.findtext("faultstring") or "")


def test_WA001_the_oin_in_to_must_be_the_gateways(wus: Wus) -> None:
    ours = wus.chain.ind.push_raw(wus.url, _request(wus, wus.melding(4004), to=f"{wus.url}?OIN={pki.OINS['gateway']}"))
    assert ours[0] == 200
    status, answer = wus.chain.ind.push_raw(wus.url, _request(wus, wus.melding(4005), to=f"{wus.url}?OIN={pki.OINS['duo']}"))
    assert status == 500 and fault_code(answer) == ("wsse:FailedCheck", "OIN_TO")
    assert wus.refusals()[-1] == "OIN_TO"


def test_WA001_the_oin_in_from_must_be_the_senders(wus: Wus) -> None:
    sender = "http://www.w3.org/2005/08/addressing/anonymous?OIN="
    ok = wus.chain.ind.push_raw(wus.url, _request(wus, wus.melding(4006), sender=sender + pki.OINS["ind"]))
    assert ok[0] == 200
    status, answer = wus.chain.ind.push_raw(wus.url, _request(wus, wus.melding(4007), sender=sender + pki.OINS["cjib"]))
    assert status == 500 and fault_code(answer) == ("wsse:FailedCheck", "OIN_FROM")
    assert wus.refusals()[-1] == "OIN_FROM"
