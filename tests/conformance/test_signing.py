"""Digikoppeling WUS signing rules (WB) at the gateway's IND door and on the gateway's own WUS call.

Requests are built as IND builds them (signed with IND's key), altered where a rule needs it and
re-signed (``with_prefix_lists``: every digest and the signature made afresh over what is now in
the document), then posted over IND's mutual TLS. Answers are checked as they came off the wire;
WB014's confirmation is verified by xmlsec1 too, an implementation we do not use otherwise.
"""

from __future__ import annotations

import base64
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from gateway.core.errors import SignatureInvalid
from gateway.mapping.ind_to_duo import bericht_id_for
from gateway.security import keys, wsse
from gateway.wire import soap, xmlsafe
from gateway.wire.xmlsafe import exc_c14n
from tests.conformance.conftest import Wus, fault_code
from tests.pki_fixtures import ack_body, with_prefix_lists

DS = soap.DS_NS
XMLSEC1 = "/usr/bin/xmlsec1"
WSSE11 = wsse.WSSE11_NS


def _ind(wus: Wus) -> keys.KeyPair:
    return wus.pair("ind")


def _gateway_trust(wus: Wus) -> keys.PartnerTrust:
    return keys.load_trust("gateway", [wus.pki_dir / "ca.pem"], [wus.pki_dir / "gateway.pem"])


def _resigned(wus: Wus, data: bytes, change) -> bytes:
    """``data`` changed by ``change(root)``, every digest and the signature made afresh with IND's key."""
    root = xmlsafe.parse(data)
    change(root)
    return with_prefix_lists(etree.tostring(root), _ind(wus), lists={})


def _refused(wus: Wus, body: bytes, because: str = "") -> tuple[str | None, str | None]:
    """(faultcode, detail/code) of the fault the gateway answered; its faultstring must say ``because``."""
    status, answer = wus.chain.ind.push_raw(wus.url, body)
    assert status == 500, answer
    text = soap.split(xmlsafe.parse(answer)).payload.findtext("faultstring") or ""
    assert because in text, text
    return fault_code(answer)


def test_WB001_ws_security_1_0_header_with_the_1_1_signature_confirmation(wus: Wus) -> None:
    result = wus.chain.ind.push(wus.url, wus.melding(3001))
    assert result.accepted
    root = xmlsafe.parse(result.acknowledgement or b"")
    security = root.find(f"{{{soap.SOAP_NS}}}Header/{{{soap.WSSE_NS}}}Security")
    assert security is not None and security.get(f"{{{soap.SOAP_NS}}}mustUnderstand") == "1"
    assert security.find(f"{{{WSSE11}}}SignatureConfirmation") is not None


def test_WB002_a_timestamp_without_created_is_refused(wus: Wus) -> None:
    signed = wus.chain.ind.envelope(wus.url, wus.melding(3002))

    def drop_created(root: etree._Element) -> None:
        created = next(root.iter(f"{{{soap.WSU_NS}}}Created"))
        created.getparent().remove(created)

    assert _refused(wus, _resigned(wus, signed, drop_created), "wsu:Created") == ("wsse:FailedCheck", "SIGNATURE")


def test_WB002_an_expired_timestamp_is_refused(wus: Wus, now) -> None:
    import datetime as dt

    from adapters.ind import codec

    m = wus.melding(3003)
    env = soap.build_envelope(codec.encode_melding(m), to=wus.url, action=codec.ACTION_ONTVANG,
                              message_id="urn:uuid:" + m.melding_id)
    old = wsse.sign_envelope(env, _ind(wus), parts=wsse.REQUEST_PARTS, now=now - dt.timedelta(hours=1))
    assert _refused(wus, old, "expired") == ("wsse:MessageExpired", "EXPIRED")


def test_WB003_an_unsigned_request_is_refused(wus: Wus) -> None:
    from adapters.ind import codec

    m = wus.melding(3004)
    env = soap.build_envelope(codec.encode_melding(m), to=wus.url, action=codec.ACTION_ONTVANG,
                              message_id="urn:uuid:" + m.melding_id)
    assert _refused(wus, etree.tostring(env, xml_declaration=True, encoding="utf-8"), "ds:Signature") == \
        ("wsse:FailedCheck", "SIGNATURE")
    assert wus.chain.duo.count(bericht_id_for(m.melding_id)) == 0


def test_WB004_a_signature_that_leaves_a_ws_addressing_header_out_is_refused(wus: Wus, now) -> None:
    from adapters.ind import codec

    m = wus.melding(3005)
    env = soap.build_envelope(codec.encode_melding(m), to=wus.url, action=codec.ACTION_ONTVANG,
                              message_id="urn:uuid:" + m.melding_id)
    without_to = wsse.sign_envelope(env, _ind(wus), parts=("Body", "Timestamp", "Action", "MessageID"), now=now)
    faultcode, code = _refused(wus, without_to, "does not cover To")
    assert (faultcode, code) == ("wsse:FailedCheck", "SIGNATURE")


def test_WB004_the_answer_signs_body_timestamp_addressing_and_confirmation_one_reference_each(wus: Wus) -> None:
    result = wus.chain.ind.push(wus.url, wus.melding(3006))
    root = xmlsafe.parse(result.acknowledgement or b"")
    uris = [r.get("URI") for r in root.iter(f"{{{DS}}}Reference")]
    targets = {}
    for uri in uris:
        (element,) = root.xpath("//*[@*[local-name()='Id'] = $id]", id=uri[1:])
        targets[etree.QName(element).localname] = uri
    assert sorted(targets) == sorted(wsse.CONFIRMED_RESPONSE_PARTS) and len(uris) == len(set(uris)) == 7


def test_WB007_exclusive_c14n_with_an_inclusive_namespaces_prefixlist_is_accepted(wus: Wus) -> None:
    m = wus.melding(3007)
    signed = with_prefix_lists(wus.chain.ind.envelope(wus.url, m), _ind(wus))  # as WSS4J/CXF send it
    assert b"InclusiveNamespaces" in signed
    status, answer = wus.chain.ind.push_raw(wus.url, signed)
    assert status == 200, answer
    c14n = xmlsafe.parse(answer).find(f".//{{{DS}}}SignedInfo/{{{DS}}}CanonicalizationMethod")
    assert c14n is not None and c14n.get("Algorithm") == "http://www.w3.org/2001/10/xml-exc-c14n#"


def test_WB009_the_signing_certificate_travels_as_a_binarysecuritytoken_referenced_directly(wus: Wus) -> None:
    root = xmlsafe.parse(wus.chain.ind.push(wus.url, wus.melding(3008)).acknowledgement or b"")
    reference = root.find(f".//{{{DS}}}KeyInfo/{{{soap.WSSE_NS}}}SecurityTokenReference/{{{soap.WSSE_NS}}}Reference")
    assert reference is not None and reference.get("ValueType", "").endswith("#X509v3")
    (token,) = root.xpath("//*[@*[local-name()='Id'] = $id]", id=reference.get("URI")[1:])
    assert etree.QName(token).localname == "BinarySecurityToken"
    assert base64.b64decode(token.text) == _gateway_trust(wus).certificates[0].public_bytes(serialization.Encoding.DER)


def test_WB010_a_signing_certificate_from_another_root_is_refused(wus: Wus, tmp_path, now) -> None:
    from adapters.ind import codec
    from gateway.security import pki

    impostor = pki.make_ca(tmp_path, "ca", common_name=pki.CA_NAME)
    pki.issue(tmp_path, "ind", ca=impostor)  # IND's name and OIN, another root
    key = keys.load_keypair(tmp_path / "ind-key.pem", tmp_path / "ind.pem")
    m = wus.melding(3009)
    env = soap.build_envelope(codec.encode_melding(m), to=wus.url, action=codec.ACTION_ONTVANG,
                              message_id="urn:uuid:" + m.melding_id)
    assert _refused(wus, wsse.sign_envelope(env, key, parts=wsse.REQUEST_PARTS, now=now), "not one configured") == \
        ("wsse:InvalidSecurity", "CERTIFICATE")


def test_WB011_one_security_profile_both_ways(wus: Wus, now) -> None:
    # The answer verifies with the very checks the gateway applies to requests (same algorithms,
    # token and placement rules), plus RelatesTo and the SignatureConfirmation.
    answer = wus.chain.ind.push(wus.url, wus.melding(3010)).acknowledgement or b""
    verified = wsse.verify_envelope(xmlsafe.parse(answer), _gateway_trust(wus), parts=wsse.CONFIRMED_RESPONSE_PARTS,
                                    now=now)
    assert verified.relates_to and verified.confirmation


def test_WB013_a_request_whose_signature_fails_gets_a_fault_and_is_not_processed(wus: Wus) -> None:
    m = wus.melding(3011)
    tampered = wus.chain.ind.envelope(wus.url, m).replace(b"<ind:volgnummer>", b"<ind:volgnummer>9")
    assert _refused(wus, tampered, "does not verify") == ("wsse:FailedCheck", "SIGNATURE")
    assert wus.chain.duo.count(bericht_id_for(m.melding_id)) == 0


def test_WB013_an_answer_whose_signature_fails_is_not_processed(wus: Wus) -> None:
    from gateway.daemon import _ind_feed

    wus.chain.ind.issue([wus.melding(3012)])
    feed = _ind_feed(wus.rt)
    original = wus.chain.ind._feed_answer

    def tampered(*args, **kw):
        return original(*args, **kw).replace(b"laatsteVolgnummer>", b"laatsteVolgnummer> ", 1)

    wus.chain.ind._feed_answer = tampered
    try:
        with pytest.raises(SignatureInvalid):
            feed.haal_meldingen(1, 1)
    finally:
        wus.chain.ind._feed_answer = original
    assert feed.haal_meldingen(1, 1).laatste_volgnummer >= 1


def test_WB014_the_acknowledgement_confirms_the_requests_signature_value(wus: Wus) -> None:
    m = wus.melding(3013)
    request = wus.chain.ind.envelope(wus.url, m)
    status, answer = wus.chain.ind.push_raw(wus.url, request)
    assert status == 200
    sent_value = wsse.signature_value(xmlsafe.parse(request))
    confirmation = xmlsafe.parse(answer).find(f".//{{{WSSE11}}}SignatureConfirmation")
    assert confirmation is not None and confirmation.get("Value") == sent_value
    # Inside the signature: one of the signed parts.
    assert "#" + confirmation.get(f"{{{soap.WSU_NS}}}Id") in \
        [r.get("URI") for r in xmlsafe.parse(answer).iter(f"{{{DS}}}Reference")]


def test_WB014_xmlsec1_verifies_the_acknowledgement_with_its_signature_confirmation(wus: Wus, tmp_path) -> None:
    answer = wus.chain.ind.push(wus.url, wus.melding(3014)).acknowledgement or b""
    path = tmp_path / "ack.xml"
    path.write_bytes(answer)
    ids = []
    for ns, name in ((soap.SOAP_NS, "Body"), (soap.WSU_NS, "Timestamp"), (soap.WSA_NS, "To"), (soap.WSA_NS, "Action"),
                     (soap.WSA_NS, "MessageID"), (soap.WSA_NS, "RelatesTo"), (WSSE11, "SignatureConfirmation"),
                     (soap.WSSE_NS, "BinarySecurityToken")):
        ids += ["--id-attr:Id", f"{ns}:{name}"]
    done = subprocess.run([XMLSEC1, "--verify", "--pubkey-cert-pem", str(wus.pki_dir / "gateway.pem"), *ids,
                           str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "SignedInfo References (ok/all): 7/7" in done.stdout + done.stderr
    # And a changed confirmation no longer verifies (xmlsec1 checks that reference too).
    path.write_bytes(answer.replace(b'Value="', b'Value="AAAA', 1))
    bad = subprocess.run([XMLSEC1, "--verify", "--pubkey-cert-pem", str(wus.pki_dir / "gateway.pem"), *ids,
                          str(path)], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0


def test_WB014_a_repeat_is_the_same_body_signed_afresh_with_its_own_confirmation(wus: Wus, now) -> None:
    import datetime as dt

    from adapters.ind import codec

    m = wus.melding(3015)
    first_request = wus.chain.ind.envelope(wus.url, m)
    # IND's retry: the same message signed again a little later (another Timestamp, so another SignatureValue).
    env = soap.build_envelope(codec.encode_melding(m), to=wus.url, action=codec.ACTION_ONTVANG,
                              message_id="urn:uuid:" + m.melding_id)
    second_request = wsse.sign_envelope(env, _ind(wus), parts=wsse.REQUEST_PARTS, now=now + dt.timedelta(seconds=5))
    _, first = wus.chain.ind.push_raw(wus.url, first_request)
    _, second = wus.chain.ind.push_raw(wus.url, second_request)
    assert ack_body(first) == ack_body(second)

    def confirmed(answer: bytes) -> str | None:
        return xmlsafe.parse(answer).find(f".//{{{WSSE11}}}SignatureConfirmation").get("Value")

    assert confirmed(second) == wsse.signature_value(xmlsafe.parse(second_request)) != confirmed(first)
    assert wus.inbound(m.melding_id) == [("accepted", None), ("repeat", None)]


@pytest.mark.parametrize("mode", ["missing", "wrong"])
def test_WB014_the_gateway_refuses_a_wus_answer_without_the_right_confirmation(wus: Wus, mode: str) -> None:
    from gateway.daemon import _ind_feed

    feed = _ind_feed(wus.rt)
    wus.chain.ind.confirmation = mode
    try:
        with pytest.raises(SignatureInvalid, match="SignatureConfirmation"):
            feed.haal_meldingen(1, 1)
    finally:
        wus.chain.ind.confirmation = "right"
    feed.haal_meldingen(1, 1)  # and with it, the same call is taken


def test_security_standard_sha1_signatures_are_refused(wus: Wus) -> None:
    signed = with_prefix_lists(wus.chain.ind.envelope(wus.url, wus.melding(3016)), _ind(wus), lists={})
    root = xmlsafe.parse(signed)
    info = root.find(f".//{{{DS}}}SignedInfo")
    info.find(f"{{{DS}}}SignatureMethod").set("Algorithm", "http://www.w3.org/2000/09/xmldsig#rsa-sha1")
    key = _ind(wus).private_key
    assert isinstance(key, rsa.RSAPrivateKey)  # IND signs rsa-sha256; this test downgrades it to rsa-sha1
    value = key.sign(exc_c14n(info), padding.PKCS1v15(), hashes.SHA1())
    root.find(f".//{{{DS}}}SignatureValue").text = base64.b64encode(value).decode()
    assert _refused(wus, etree.tostring(root), "does not verify") == ("wsse:FailedCheck", "SIGNATURE")
