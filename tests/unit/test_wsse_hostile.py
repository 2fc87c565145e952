"""One test per attack on the ind-wus signature checks (and on cjib-rest's JWS).

Each asserts the exact error class and its fault code. The messages are signed by real keys of
the sandbox PKI and then tampered with as an attacker on the wire could.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import hmac
import json

import pytest
from lxml import etree

from gateway.core.errors import CertificateRefused, MessageExpired, SecurityRefused, SignatureInvalid
from gateway.security import jws, wsse
from gateway.wire import soap, xmlsafe
from tests.pki_fixtures import ind_envelope, keypair, make_pki, signed_request, trust

NS = {"soap": soap.SOAP_NS, "wsse": soap.WSSE_NS, "wsu": soap.WSU_NS, "wsa": soap.WSA_NS, "ds": soap.DS_NS,
      "ind": "urn:nl:ind:gegevenslevering:inburgering:v1"}
EVIL = "urn:example:attacker"


@pytest.fixture(scope="session")
def pki_paths(tmp_path_factory):
    return make_pki(tmp_path_factory)


@pytest.fixture
def now():
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture
def signed(pki_paths, now):
    """A validly signed request, parsed, ready to be tampered with."""
    return xmlsafe.parse(signed_request(keypair(pki_paths, "ind"), now))


def refused(error: type[SecurityRefused], code: str, root_or_bytes, pki_paths, now, *, partner_trust=None, match=None):
    root = root_or_bytes if isinstance(root_or_bytes, bytes) else etree.tostring(root_or_bytes)
    with pytest.raises(error, match=match) as err:
        wsse.verify_envelope(xmlsafe.parse(root), partner_trust or trust(pki_paths, "ind"),
                             parts=wsse.REQUEST_PARTS, now=now)
    assert type(err.value) is error
    assert err.value.code == code
    # Refusals name checks, never message content.
    assert "Haddad" not in str(err.value) and "111222333" not in str(err.value)
    return err.value


def _header(root):
    return root.find("soap:Header", NS)


def _body(root):
    return root.find("soap:Body", NS)


def _forge(body):
    """A Body like ``body`` with the person's name changed and no Id."""
    forged = copy.deepcopy(body)
    forged.attrib.pop(f"{{{soap.WSU_NS}}}Id")
    forged.find(".//ind:geslachtsnaam", NS).text = "Mallory"
    return forged


def test_body_moved_into_header_with_forged_body_in_its_place(signed, pki_paths, now):
    original = _body(signed)
    wrapper = etree.SubElement(_header(signed), f"{{{EVIL}}}Wrapper")
    signed.append(_forge(original))  # the forged Body goes to /Envelope/Body ...
    wrapper.append(original)  # ... and the signed one hides in a header
    assert signed.find("soap:Body", NS).get(f"{{{soap.WSU_NS}}}Id") is None
    refused(SignatureInvalid, "SIGNATURE", signed, pki_paths, now, match="outside the signed parts")


def test_duplicate_wsu_id(signed, pki_paths, now):
    original = _body(signed)
    forged = _forge(original)
    forged.set(f"{{{soap.WSU_NS}}}Id", "id-body")  # twin ids: which one does the reference mean?
    wrapper = etree.SubElement(_header(signed), f"{{{EVIL}}}Wrapper")
    wrapper.append(copy.deepcopy(original))
    signed.replace(original, forged)
    refused(SignatureInvalid, "SIGNATURE", signed, pki_paths, now, match="more than once")


def test_reference_to_a_copy_of_the_body(signed, pki_paths, now):
    original = _body(signed)
    wrapper = etree.SubElement(_header(signed), f"{{{EVIL}}}Wrapper")
    wrapper.append(copy.deepcopy(original))  # the copy keeps id-body and its digest
    forged = _forge(original)
    forged.set(f"{{{soap.WSU_NS}}}Id", "id-other")
    signed.replace(original, forged)
    refused(SignatureInvalid, "SIGNATURE", signed, pki_paths, now, match="outside the signed parts")


@pytest.mark.parametrize("omitted", ["Body", "Timestamp", "To", "Action", "MessageID"])
def test_signature_omitting_a_required_part(omitted, pki_paths, now):
    parts = [p for p in wsse.REQUEST_PARTS if p != omitted]
    data = signed_request(keypair(pki_paths, "ind"), now, parts=parts)
    refused(SignatureInvalid, "SIGNATURE", data, pki_paths, now, match=f"does not cover {omitted}")


def test_two_security_headers(signed, pki_paths, now):
    extra = etree.SubElement(_header(signed), f"{{{soap.WSSE_NS}}}Security")
    extra.set(f"{{{soap.SOAP_NS}}}mustUnderstand", "1")
    refused(SignatureInvalid, "SIGNATURE", signed, pki_paths, now, match="wsse:Security")


def test_second_unsigned_addressing_header(signed, pki_paths, now):
    etree.SubElement(_header(signed), f"{{{soap.WSA_NS}}}To").text = "https://evil.example/"
    refused(SignatureInvalid, "SIGNATURE", signed, pki_paths, now)


def test_altered_content_after_signing(pki_paths, now):
    data = signed_request(keypair(pki_paths, "ind"), now)
    altered = data.replace(b">Haddad<", b">Haddac<")  # one character of a name
    assert altered != data
    refused(SignatureInvalid, "SIGNATURE", altered, pki_paths, now, match="does not verify")


def test_altered_addressing_header_after_signing(pki_paths, now):
    data = signed_request(keypair(pki_paths, "ind"), now)
    altered = data.replace(b"/ind/meldingen<", b"/ind/meldingeN<")
    refused(SignatureInvalid, "SIGNATURE", altered, pki_paths, now, match="does not verify")


def test_unsigned_message(pki_paths, now):
    refused(SignatureInvalid, "SIGNATURE", ind_envelope(), pki_paths, now, match="ds:Signature")


def test_no_security_header(pki_paths, now):
    env = ind_envelope()
    sec = env.find("soap:Header/wsse:Security", NS)
    sec.getparent().remove(sec)
    refused(SignatureInvalid, "SIGNATURE", env, pki_paths, now)


def test_unknown_certificate(pki_paths, now):
    data = signed_request(keypair(pki_paths, "duo"), now)  # a valid certificate of our CA, not IND's
    refused(CertificateRefused, "CERTIFICATE", data, pki_paths, now, match="not one configured")


def test_right_subject_from_another_ca(pki_paths, now):
    data = signed_request(keypair(pki_paths, "ind-other-ca"), now)
    refused(CertificateRefused, "CERTIFICATE", data, pki_paths, now, match="not one configured")
    # Even when pinned by mistake, the issuer signature does not check out against our anchor.
    pinned = trust(pki_paths, "ind", "ind", "ind-other-ca")
    refused(CertificateRefused, "CERTIFICATE", data, pki_paths, now, partner_trust=pinned, match="chain")


def test_expired_certificate(pki_paths, now):
    data = signed_request(keypair(pki_paths, "ind-expired"), now)
    pinned = trust(pki_paths, "ind", "ind", "ind-expired")
    refused(CertificateRefused, "CERTIFICATE", data, pki_paths, now, partner_trust=pinned, match="not valid")


def test_token_swapped_for_another_pinned_certificate(pki_paths, now):
    # The BST says "rollover certificate" but the signature was made with the other key.
    root = xmlsafe.parse(signed_request(keypair(pki_paths, "ind"), now))
    bst = root.find("soap:Header/wsse:Security/wsse:BinarySecurityToken", NS)
    bst.text = base64.b64encode(keypair(pki_paths, "ind-rollover").cert_der).decode()
    pinned = trust(pki_paths, "ind", "ind", "ind-rollover")
    refused(SignatureInvalid, "SIGNATURE", root, pki_paths, now, partner_trust=pinned)


def test_expired_timestamp(pki_paths, now):
    data = signed_request(keypair(pki_paths, "ind"), now - dt.timedelta(seconds=301))
    refused(MessageExpired, "EXPIRED", data, pki_paths, now, match="expired")


def test_timestamp_from_the_future(pki_paths, now):
    data = signed_request(keypair(pki_paths, "ind"), now + dt.timedelta(seconds=301))
    refused(MessageExpired, "EXPIRED", data, pki_paths, now, match="future")


def test_extra_transform_is_refused(signed, pki_paths, now):
    transforms = signed.find(".//ds:Reference/ds:Transforms", NS)
    etree.SubElement(transforms, f"{{{soap.DS_NS}}}Transform",
                     Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116")
    refused(SignatureInvalid, "SIGNATURE", signed, pki_paths, now, match="transform")


# ------------------------------------------------------------------------------------ cjib-rest JWS


BODY = b'{"opdrachtgeverReferentie":"x"}'


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jws_refused(error: type[SecurityRefused], code: str, value: str, pki_paths, now, **kw):
    with pytest.raises(error) as err:
        jws.verify_detached(value, BODY, trust(pki_paths, "cjib"), now=now, **kw)
    assert type(err.value) is error
    assert err.value.code == code


def _jws_header(pki_paths, now, **extra) -> dict:
    from gateway.security.keys import kid

    return {"kid": kid(keypair(pki_paths, "cjib").certificate), "iat": int(now.timestamp()), **extra}


def test_jws_alg_none(pki_paths, now):
    protected = _b64(json.dumps(_jws_header(pki_paths, now, alg="none")).encode())
    for signature in ("", _b64(b"x")):
        _jws_refused(SignatureInvalid, "SIGNATURE", f"{protected}..{signature}", pki_paths, now)


def test_jws_hs256_with_the_public_key_as_secret(pki_paths, now):
    protected = _b64(json.dumps(_jws_header(pki_paths, now, alg="HS256")).encode())
    secret = keypair(pki_paths, "cjib").cert_pem
    mac = hmac.new(secret, f"{protected}.{_b64(BODY)}".encode(), hashlib.sha256).digest()
    _jws_refused(SignatureInvalid, "SIGNATURE", f"{protected}..{_b64(mac)}", pki_paths, now)


def test_jws_bad_htu(pki_paths, now):
    value = jws.sign_detached(BODY, keypair(pki_paths, "cjib"), now=now, htm="POST", htu="/vorderingen")
    _jws_refused(SignatureInvalid, "SIGNATURE", value, pki_paths, now, htm="POST", htu="/vorderingen?x=1")


def test_jws_iat_too_old(pki_paths, now):
    value = jws.sign_detached(BODY, keypair(pki_paths, "cjib"), now=now - dt.timedelta(seconds=301))
    _jws_refused(MessageExpired, "EXPIRED", value, pki_paths, now)


def test_jws_unknown_kid(pki_paths, now):
    value = jws.sign_detached(BODY, keypair(pki_paths, "duo"), now=now)  # our CA, but not CJIB's key
    _jws_refused(CertificateRefused, "CERTIFICATE", value, pki_paths, now)


def test_jws_other_body(pki_paths, now):
    value = jws.sign_detached(BODY, keypair(pki_paths, "cjib"), now=now)
    with pytest.raises(SignatureInvalid):
        jws.verify_detached(value, BODY + b" ", trust(pki_paths, "cjib"), now=now)
