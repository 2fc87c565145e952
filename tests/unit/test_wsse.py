"""WS-Security round trips for profile ind-wus (the attacks are in test_wsse_hostile.py)."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from lxml import etree

from gateway.core.errors import MessageExpired
from gateway.security import wsse
from gateway.wire import soap, xmlsafe
from tests.pki_fixtures import (
    IND_ACTION,
    IND_MESSAGE_ID,
    ind_envelope,
    keypair,
    make_pki,
    signed_request,
    trust,
)

DS = {"ds": soap.DS_NS, "wsse": soap.WSSE_NS, "wsu": soap.WSU_NS, "soap": soap.SOAP_NS}


@pytest.fixture(scope="session")
def pki_paths(tmp_path_factory):
    return make_pki(tmp_path_factory)


@pytest.fixture
def now(pki_paths):
    # Inside the validity of the session's certificates.
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def test_request_round_trip(pki_paths, now):
    data = signed_request(keypair(pki_paths, "ind"), now)
    verified = wsse.verify_envelope(xmlsafe.parse(data), trust(pki_paths, "ind"), parts=wsse.REQUEST_PARTS,
                                    now=now)
    assert verified.to == "https://127.0.0.1/ind/meldingen"
    assert verified.action == IND_ACTION
    assert verified.message_id == IND_MESSAGE_ID
    assert verified.relates_to is None
    assert verified.body.tag == f"{{{soap.SOAP_NS}}}Body"
    assert etree.QName(verified.payload).localname == "VergunningMelding"
    assert verified.signer == keypair(pki_paths, "ind").certificate


def test_response_round_trip_signs_relates_to(pki_paths, now):
    env = ind_envelope(relates_to="urn:uuid:1")
    data = wsse.sign_envelope(env, keypair(pki_paths, "gateway"), parts=wsse.RESPONSE_PARTS, now=now)
    verified = wsse.verify_envelope(xmlsafe.parse(data), trust(pki_paths, "gateway"),
                                    parts=wsse.RESPONSE_PARTS, now=now)
    assert verified.relates_to == "urn:uuid:1"


def test_signed_layout_follows_the_profile(pki_paths, now):
    root = xmlsafe.parse(signed_request(keypair(pki_paths, "ind"), now))
    sec = root.find("soap:Header/wsse:Security", DS)
    assert sec.get(f"{{{soap.SOAP_NS}}}mustUnderstand") == "1"
    assert [etree.QName(c).localname for c in sec] == ["Timestamp", "BinarySecurityToken", "Signature"]
    assert sec.findtext("wsu:Timestamp/wsu:Created", namespaces=DS) == now.strftime("%Y-%m-%dT%H:%M:%SZ")
    expires = now + dt.timedelta(seconds=300)
    assert sec.findtext("wsu:Timestamp/wsu:Expires", namespaces=DS) == expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    bst = sec.find("wsse:BinarySecurityToken", DS)
    assert base64.b64decode(bst.text) == keypair(pki_paths, "ind").cert_der
    assert bst.get("ValueType").endswith("#X509v3") and bst.get("EncodingType").endswith("#Base64Binary")
    sig = sec.find("ds:Signature", DS)
    assert sig.find("ds:SignedInfo/ds:CanonicalizationMethod", DS).get("Algorithm") == wsse.EXC_C14N.value
    assert sig.find("ds:SignedInfo/ds:SignatureMethod", DS).get("Algorithm").endswith("#rsa-sha256")
    uris = [r.get("URI") for r in sig.findall("ds:SignedInfo/ds:Reference", DS)]
    assert uris == ["#id-body", "#id-timestamp", "#id-to", "#id-action", "#id-messageid"]
    for ref in sig.findall("ds:SignedInfo/ds:Reference", DS):
        assert ref.find("ds:DigestMethod", DS).get("Algorithm").endswith("xmlenc#sha256")
        assert [t.get("Algorithm") for t in ref.findall("ds:Transforms/ds:Transform", DS)] == [wsse.EXC_C14N.value]
    ref = sig.find("ds:KeyInfo/wsse:SecurityTokenReference/wsse:Reference", DS)
    assert ref.get("URI") == "#id-bst"


def test_ec_key_signs_ecdsa_sha256(pki_paths, now):
    data = signed_request(keypair(pki_paths, "cjib-ec"), now)
    root = xmlsafe.parse(data)
    method = root.find("soap:Header/wsse:Security/ds:Signature/ds:SignedInfo/ds:SignatureMethod", DS)
    assert method.get("Algorithm").endswith("#ecdsa-sha256")
    wsse.verify_envelope(root, trust(pki_paths, "cjib", "cjib-ec"), parts=wsse.REQUEST_PARTS, now=now)


def test_rollover_certificate_is_accepted(pki_paths, now):
    data = signed_request(keypair(pki_paths, "ind-rollover"), now)
    t = trust(pki_paths, "ind", "ind", "ind-rollover")
    assert wsse.verify_envelope(xmlsafe.parse(data), t, parts=wsse.REQUEST_PARTS, now=now).signer == \
        keypair(pki_paths, "ind-rollover").certificate


def test_payload_is_the_signed_data_without_comments(pki_paths, now):
    # exc-c14n drops comments from the digest; what we hand on must not contain unsigned text.
    data = signed_request(keypair(pki_paths, "ind"), now)
    data = data.replace(b"Haddad</ind:geslachtsnaam>", b"Hadd<!-- x -->ad</ind:geslachtsnaam>")
    verified = wsse.verify_envelope(xmlsafe.parse(data), trust(pki_paths, "ind"),
                                    parts=wsse.REQUEST_PARTS, now=now)
    ns = {"ind": "urn:nl:ind:gegevenslevering:inburgering:v1"}
    assert verified.payload.findtext("ind:persoon/ind:geslachtsnaam", namespaces=ns) == "Haddad"


def test_timestamp_window_edges(pki_paths, now):
    data = signed_request(keypair(pki_paths, "ind"), now)
    t = trust(pki_paths, "ind")
    # Accepted up to the second it expires, and when created up to 300 s ahead of our clock.
    wsse.verify_envelope(xmlsafe.parse(data), t, parts=wsse.REQUEST_PARTS, now=now + dt.timedelta(seconds=300))
    wsse.verify_envelope(xmlsafe.parse(data), t, parts=wsse.REQUEST_PARTS, now=now - dt.timedelta(seconds=300))
    with pytest.raises(MessageExpired):
        wsse.verify_envelope(xmlsafe.parse(data), t, parts=wsse.REQUEST_PARTS,
                             now=now + dt.timedelta(seconds=301))


def test_timestamp_longer_than_300_seconds_is_refused(pki_paths, now):
    data = signed_request(keypair(pki_paths, "ind"), now, ttl_seconds=301)
    with pytest.raises(MessageExpired) as err:
        wsse.verify_envelope(xmlsafe.parse(data), trust(pki_paths, "ind"), parts=wsse.REQUEST_PARTS, now=now)
    assert err.value.code == "EXPIRED"


def test_sign_refuses_an_envelope_without_empty_security(pki_paths, now):
    env = ind_envelope()
    wsse.sign_envelope(env, keypair(pki_paths, "ind"), parts=wsse.REQUEST_PARTS, now=now)
    with pytest.raises(ValueError):
        wsse.sign_envelope(env, keypair(pki_paths, "ind"), parts=wsse.REQUEST_PARTS, now=now)


def test_sign_refuses_a_missing_part(pki_paths, now):
    with pytest.raises(ValueError):
        wsse.sign_envelope(ind_envelope(), keypair(pki_paths, "ind"), parts=wsse.RESPONSE_PARTS, now=now)
