"""Bad and hostile input at the real IND endpoint, over mutual TLS, on both store backends.

One test per case. Each asserts the exact SOAP fault (HTTP 500, ``faultcode``, ``detail/code``),
that nothing was accepted or queued for delivery, that DUO received nothing, and that the
refusal is in the delivery log (``gateway log --refused``) with its code.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from lxml import etree
from typer.testing import CliRunner

from adapters.ind import codec as ind_codec
from adapters.ind.simulator import IndSimulator, generate_meldingen
from gateway.cli import app
from gateway.sandbox import start_chain
from gateway.security import wsse
from gateway.wire import soap
from tests.pki_fixtures import keypair

NS = {"soap": soap.SOAP_NS, "wsse": soap.WSSE_NS, "wsu": soap.WSU_NS, "wsa": soap.WSA_NS, "ds": soap.DS_NS,
      "ind": ind_codec.IND_NS}
EVIL = "urn:example:attacker"
WSU_ID = f"{{{soap.WSU_NS}}}Id"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def shared_chain(request, tmp_path_factory, pki_paths):
    """One chain per backend for the whole module: every case must leave it unchanged."""
    from tests.conftest import PG_DSN, _pg_database

    directory = tmp_path_factory.mktemp("refusals")
    if request.param == "sqlite":
        gen = None
        dsn = f"sqlite:///{directory / 'gateway.db'}"
    else:
        if not PG_DSN:
            pytest.skip("PostgreSQL half not run: set GATEWAY_TEST_PG_DSN")
        gen = _pg_database()
        dsn = next(gen)
    chain = start_chain(directory, dsn=dsn, pki_paths=pki_paths,
                        overrides={"ind": {"max_message_bytes": 64 * 1024}})
    yield chain
    chain.stop()
    if gen is not None:
        gen.close()


def melding(**changes: Any) -> Any:
    m = generate_meldingen(1, seed=4242)[0]
    persoon = dataclasses.replace(m.persoon, **changes.pop("persoon", {}))
    return dataclasses.replace(m, persoon=persoon, **changes)


def envelope(chain, payload: etree._Element, message_id: str) -> etree._Element:
    return soap.build_envelope(payload, to=chain.ind_endpoint, action=ind_codec.ACTION_ONTVANG,
                               message_id=f"urn:uuid:{message_id}")


def signed(chain, pki, *, m: Any = None, payload: etree._Element | None = None, key: str = "ind",
           parts: tuple[str, ...] = wsse.REQUEST_PARTS, shift_seconds: int = 0) -> bytes:
    m = m or melding()
    env = envelope(chain, payload if payload is not None else ind_codec.encode_melding(m), m.melding_id)
    now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=shift_seconds)
    return wsse.sign_envelope(env, keypair(pki, key), parts=parts, now=now)


def tamper(data: bytes, change: Callable[[etree._Element], None]) -> bytes:
    root = etree.fromstring(data)
    change(root)
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def forged_body(body: etree._Element) -> etree._Element:
    forged = copy.deepcopy(body)
    forged.attrib.pop(WSU_ID, None)
    forged.find(".//ind:geslachtsnaam", NS).text = "Mallory"
    return forged


def wrap_body(root: etree._Element, *, forged_id: str | None = None, keep_copy: bool = False) -> None:
    body = root.find("soap:Body", NS)
    wrapper = etree.SubElement(root.find("soap:Header", NS), f"{{{EVIL}}}Wrapper")
    forged = forged_body(body)
    if forged_id:
        forged.set(WSU_ID, forged_id)
    wrapper.append(copy.deepcopy(body) if keep_copy else body)
    if keep_copy:
        root.replace(body, forged)
    else:
        root.append(forged)


XXE = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
       b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>&e;</soap:Body>'
       b'</soap:Envelope>')
LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
          + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                     for i in range(1, 10))
          + b']><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>&lol9;'
          b"</soap:Body></soap:Envelope>")
EXTERNAL_DTD = (b'<?xml version="1.0"?><!DOCTYPE soap:Envelope SYSTEM "http://127.0.0.1:1/evil.dtd">'
                b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body/></soap:Envelope>')
XINCLUDE = (b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
            b'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd" parse="text"/>'
            b"</soap:Body></soap:Envelope>")


def nested(depth: int) -> bytes:
    return (b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
            + b"<a>" * depth + b"</a>" * depth + b"</soap:Body></soap:Envelope>")


def wrong_namespace(chain, pki) -> bytes:
    m = melding()
    payload = ind_codec.encode_melding(m)
    for el in payload.iter():
        el.tag = el.tag.replace(ind_codec.IND_NS, "urn:nl:ind:gegevenslevering:inburgering:v2")
    return signed(chain, pki, m=m, payload=payload)


def schema_error(chain, pki) -> bytes:
    m = melding()
    payload = ind_codec.encode_melding(m)
    geslacht = payload.find(".//ind:geslacht", NS)
    geslacht.getparent().remove(geslacht)
    return signed(chain, pki, m=m, payload=payload)


def other_partners_tls(chain, pki) -> tuple[bytes, str]:
    return signed(chain, pki), "duo"


@dataclasses.dataclass(frozen=True)
class Headers:
    """A sound, signed message sent with these HTTP headers instead of the contract's."""

    headers: dict[str, str]
    #: What the fault string must name (the header and the value received).
    says: tuple[str, ...]


SOAP_ACTION = f'"{ind_codec.ACTION_ONTVANG}"'
HEADER_CASES: dict[str, Headers] = {
    "content-type-json": Headers({"Content-Type": "application/json", "SOAPAction": SOAP_ACTION},
                                 ("Content-Type", "application/json")),
    "content-type-missing": Headers({"SOAPAction": SOAP_ACTION}, ("Content-Type", "missing")),
    "content-type-soap12": Headers({"Content-Type": "application/soap+xml; charset=utf-8", "SOAPAction": SOAP_ACTION},
                                   ("Content-Type", "application/soap+xml")),
    "charset-latin1": Headers({"Content-Type": "text/xml; charset=iso-8859-1", "SOAPAction": SOAP_ACTION},
                              ("Content-Type", "iso-8859-1")),
    "soapaction-missing": Headers({"Content-Type": "text/xml; charset=utf-8"}, ("SOAPAction", "missing")),
    "soapaction-empty": Headers({"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
                                ("SOAPAction", '\'""\'')),
    "soapaction-of-another-operation": Headers({"Content-Type": "text/xml; charset=utf-8",
                                                "SOAPAction": f'"{ind_codec.ACTION_HAAL}"'},
                                               ("SOAPAction", ind_codec.ACTION_HAAL)),
}


# name -> (build(chain, pki) -> bytes or (bytes, tls identity), faultcode, detail code)
CASES: dict[str, tuple[Callable[..., Any], str, str]] = {
    # -- bad input (issue 2)
    "malformed-xml": (lambda c, p: b"<soap:Envelope xmlns:soap='x'><unclosed>", "soap:Client", "MALFORMED"),
    "xxe-external-entity": (lambda c, p: XXE, "soap:Client", "MALFORMED"),
    "billion-laughs": (lambda c, p: LAUGHS, "soap:Client", "MALFORMED"),
    "external-dtd": (lambda c, p: EXTERNAL_DTD, "soap:Client", "MALFORMED"),
    "xinclude": (lambda c, p: XINCLUDE, "soap:Client", "MALFORMED"),
    "deeply-nested": (lambda c, p: nested(5000), "soap:Client", "MALFORMED"),
    "oversize": (lambda c, p: signed(c, p).replace(b"</soap:Envelope>", b"<!--" + b"x" * 70000 + b"-->"
                                                   b"</soap:Envelope>"), "soap:Client", "SIZE"),
    "wrong-namespace": (wrong_namespace, "soap:Client", "SCHEMA"),
    "schema-error": (schema_error, "soap:Client", "SCHEMA"),
    "bsn-fails-11-test": (lambda c, p: signed(c, p, m=melding(persoon={"bsn": "123456789"})),
                          "soap:Client", "BUSINESS_RULE"),
    "correctie-without-correctieVan": (lambda c, p: signed(c, p, m=melding(soort_melding="CORRECTIE")),
                                       "soap:Client", "BUSINESS_RULE"),
    # -- signature wrapping and tampering (issue 3)
    "body-moved-into-header": (lambda c, p: tamper(signed(c, p), wrap_body), "wsse:FailedCheck", "SIGNATURE"),
    "duplicate-wsu-id": (lambda c, p: tamper(signed(c, p), lambda r: wrap_body(r, forged_id="id-body", keep_copy=True)),
                         "wsse:FailedCheck", "SIGNATURE"),
    "reference-to-copy-of-body": (lambda c, p: tamper(signed(c, p), lambda r: wrap_body(r, forged_id="id-x",
                                                                                         keep_copy=True)),
                                  "wsse:FailedCheck", "SIGNATURE"),
    "two-security-headers": (lambda c, p: tamper(signed(c, p), lambda r: etree.SubElement(
        r.find("soap:Header", NS), f"{{{soap.WSSE_NS}}}Security")), "wsse:FailedCheck", "SIGNATURE"),
    "altered-after-signing": (lambda c, p: signed(c, p).replace(
        f">{melding().persoon.geslachtsnaam}<".encode(), f">{melding().persoon.geslachtsnaam}x<".encode()),
        "wsse:FailedCheck", "SIGNATURE"),
    "unsigned": (lambda c, p: etree.tostring(envelope(c, ind_codec.encode_melding(melding()), melding().melding_id)),
                 "wsse:FailedCheck", "SIGNATURE"),
    "unknown-certificate": (lambda c, p: signed(c, p, key="cjib"), "wsse:InvalidSecurity", "CERTIFICATE"),
    "right-subject-other-ca": (lambda c, p: signed(c, p, key="ind-other-ca"), "wsse:InvalidSecurity", "CERTIFICATE"),
    "expired-certificate": (lambda c, p: signed(c, p, key="ind-expired"), "wsse:InvalidSecurity", "CERTIFICATE"),
    "expired-timestamp": (lambda c, p: signed(c, p, shift_seconds=-400), "wsse:MessageExpired", "EXPIRED"),
    "timestamp-from-the-future": (lambda c, p: signed(c, p, shift_seconds=400), "wsse:MessageExpired", "EXPIRED"),
    "tls-of-duo-signature-of-ind": (other_partners_tls, "wsse:InvalidSecurity", "CERTIFICATE"),
    "tls-of-ind-signature-of-duo": (lambda c, p: signed(c, p, key="duo"), "wsse:InvalidSecurity", "CERTIFICATE"),
}
# -- the HTTP door (issue 18): Content-Type and SOAPAction as the contract says
for _name, _headers in HEADER_CASES.items():
    CASES[_name] = (lambda c, p, h=_headers: (signed(c, p), h), "soap:Client", "MALFORMED")
for _part in wsse.REQUEST_PARTS:
    CASES[f"signature-omits-{_part}"] = (
        lambda c, p, part=_part: signed(c, p, parts=tuple(x for x in wsse.REQUEST_PARTS if x != part)),
        "wsse:FailedCheck", "SIGNATURE")


def counts(chain) -> tuple[int, int, int]:
    q = chain.daemon.rt.store.query
    return (q("SELECT COUNT(*) FROM messages")[0][0], q("SELECT COUNT(*) FROM outbox")[0][0],
            q("SELECT COUNT(*) FROM inbound WHERE outcome = 'refused'")[0][0])


def push(chain, pki, data: bytes, identity: str | Headers) -> tuple[int, bytes]:
    if isinstance(identity, Headers):  # IND's TLS identity, other HTTP headers
        r = chain.ind.session.post(chain.ind_endpoint, data=data, headers=identity.headers, timeout=30)
        return r.status_code, r.content
    if identity == "ind":
        return chain.ind.push_raw(chain.ind_endpoint, data)
    sim = IndSimulator(key=keypair(pki, identity), ca_file=str(pki["ca"]))
    try:
        return sim.push_raw(chain.ind_endpoint, data)
    finally:
        sim.close()


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_loudly_and_nothing_delivered(shared_chain, pki_paths, case):
    build, faultcode, code = CASES[case]
    built = build(shared_chain, pki_paths)
    data, identity = built if isinstance(built, tuple) else (built, "ind")
    before = counts(shared_chain)
    status, body = push(shared_chain, pki_paths, data, identity)

    assert status == 500, body[:300]
    fault = etree.fromstring(body).find("soap:Body/soap:Fault", NS)
    assert fault.findtext("faultcode") == faultcode
    assert fault.findtext("detail/code") == code
    if isinstance(identity, Headers):
        assert all(part in fault.findtext("faultstring") for part in identity.says), fault.findtext("faultstring")
    messages, outbox, refused = counts(shared_chain)
    assert (messages, outbox) == before[:2], "a refused message was stored as accepted or queued"
    assert refused == before[2] + 1
    assert shared_chain.duo.received == []

    row = shared_chain.daemon.rt.store.query(
        "SELECT fault_code, response_status, raw FROM inbound WHERE outcome = 'refused' ORDER BY id DESC LIMIT 1")[0]
    assert row[0] == code and row[1] == 500
    raw = shared_chain.daemon.rt.store.unseal("inbound.raw", row[2])  # sealed at rest
    assert raw == data[: len(raw)]
    result = CliRunner().invoke(app, ["log", "--refused", "--state", "refused", "--json", "--limit", "1",
                                      "--config", str(shared_chain.config_file)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["facts"]["fault_code"] == code
