"""Enveloped signatures for profile duo-xml, and berichtDigest."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib

import pytest
from lxml import etree

from gateway.core.errors import CertificateRefused, SignatureInvalid
from gateway.security import xmldsig
from gateway.wire import xmlsafe
from tests.pki_fixtures import SAMPLES, keypair, make_pki, trust

DS = {"ds": "http://www.w3.org/2000/09/xmldsig#", "duo": "urn:nl:duo:inburgering:v1"}


@pytest.fixture(scope="session")
def pki_paths(tmp_path_factory):
    return make_pki(tmp_path_factory)


@pytest.fixture
def now():
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def melding():
    return xmlsafe.parse((SAMPLES / "duo-inburgeraarmelding.xml").read_bytes())


def refused(error, code, data: bytes, t, now, match=None):
    with pytest.raises(error, match=match) as err:
        xmldsig.verify_enveloped(xmlsafe.parse(data), t, now=now)
    assert type(err.value) is error and err.value.code == code


def test_round_trip_rsa(pki_paths, now):
    data = xmldsig.sign_enveloped(melding(), keypair(pki_paths, "gateway"))
    verified = xmldsig.verify_enveloped(xmlsafe.parse(data), trust(pki_paths, "gateway"), now=now)
    assert verified.findtext("duo:berichtId", namespaces=DS) == "0b9e7f52-3c1d-4e8a-b6f2-7d4c9a1e2f30"
    # signxml returns the signed data: the root without its signature.
    assert verified.find("ds:Signature", DS) is None


def test_round_trip_ec(pki_paths, now):
    data = xmldsig.sign_enveloped(melding(), keypair(pki_paths, "cjib-ec"))
    root = xmlsafe.parse(data)
    assert root.find("ds:Signature/ds:SignedInfo/ds:SignatureMethod", DS).get("Algorithm").endswith(
        "#ecdsa-sha256")
    xmldsig.verify_enveloped(root, trust(pki_paths, "cjib", "cjib-ec"), now=now)


def test_signature_layout(pki_paths):
    root = xmlsafe.parse(xmldsig.sign_enveloped(melding(), keypair(pki_paths, "gateway")))
    sig = [c for c in root if isinstance(c.tag, str)][-1]
    assert sig.tag == f"{{{DS['ds']}}}Signature"
    assert sig.find("ds:SignedInfo/ds:CanonicalizationMethod", DS).get("Algorithm") == xmldsig.EXC_C14N.value
    assert sig.find("ds:SignedInfo/ds:SignatureMethod", DS).get("Algorithm").endswith("#rsa-sha256")
    (ref,) = sig.findall("ds:SignedInfo/ds:Reference", DS)
    assert ref.get("URI") == ""
    assert [t.get("Algorithm") for t in ref.findall("ds:Transforms/ds:Transform", DS)] == [
        xmldsig.ENVELOPED, xmldsig.EXC_C14N.value]
    assert ref.find("ds:DigestMethod", DS).get("Algorithm").endswith("xmlenc#sha256")
    cert = sig.findtext("ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=DS)
    assert base64.b64decode(cert) == keypair(pki_paths, "gateway").cert_der


def test_message_digest_is_digest_of_the_unsigned_message(pki_paths):
    original = melding()
    expected = base64.b64encode(hashlib.sha256(xmlsafe.exc_c14n(original)).digest()).decode()
    signed = xmlsafe.parse(xmldsig.sign_enveloped(copy.deepcopy(original), keypair(pki_paths, "gateway")))
    assert xmldsig.message_digest(signed) == expected
    assert xmldsig.message_digest(original) == expected
    assert signed.find("ds:Signature", DS) is not None  # the input is not changed


def test_altered_content(pki_paths, now):
    data = xmldsig.sign_enveloped(melding(), keypair(pki_paths, "gateway"))
    refused(SignatureInvalid, "SIGNATURE", data.replace(b">Haddad<", b">Haddac<"),
            trust(pki_paths, "gateway"), now, match="does not verify")


def test_unsigned(pki_paths, now):
    refused(SignatureInvalid, "SIGNATURE", etree.tostring(melding()), trust(pki_paths, "gateway"), now)


def test_unknown_certificate(pki_paths, now):
    data = xmldsig.sign_enveloped(melding(), keypair(pki_paths, "duo"))
    refused(CertificateRefused, "CERTIFICATE", data, trust(pki_paths, "gateway"), now)


def test_expired_certificate(pki_paths, now):
    data = xmldsig.sign_enveloped(melding(), keypair(pki_paths, "ind-expired"))
    refused(CertificateRefused, "CERTIFICATE", data, trust(pki_paths, "ind", "ind-expired"), now)


def test_signature_not_last_child(pki_paths, now):
    root = xmlsafe.parse(xmldsig.sign_enveloped(melding(), keypair(pki_paths, "gateway")))
    sig = root.find("ds:Signature", DS)
    root.remove(sig)
    root.insert(0, sig)
    refused(SignatureInvalid, "SIGNATURE", etree.tostring(root), trust(pki_paths, "gateway"), now,
            match="last child")


def test_reference_to_part_of_the_message(pki_paths, now):
    root = melding()
    root.find("duo:persoon", DS).set("Id", "p")
    from signxml import XMLSigner, methods

    signer = XMLSigner(method=methods.enveloped, c14n_algorithm=xmldsig.EXC_C14N)
    key = keypair(pki_paths, "gateway")
    signed = signer.sign(root, key=key.private_key, cert=[key.certificate], reference_uri="#p")
    refused(SignatureInvalid, "SIGNATURE", etree.tostring(signed), trust(pki_paths, "gateway"), now,
            match="URI")


def test_root_with_id_is_not_signed(pki_paths):
    root = melding()
    root.set("Id", "x")
    with pytest.raises(ValueError):
        xmldsig.sign_enveloped(root, keypair(pki_paths, "gateway"))


def test_signed_digest_is_the_message_digest_of_the_signed_bytes(pki_paths):
    # Issue 22: the sender takes the berichtDigest of what this process signed without re-parsing it;
    # it must be exactly message_digest of those bytes, and bytes it did not sign are parsed.
    root = melding()
    root.insert(0, etree.Comment(" dropped by exc-c14n "))
    signed = xmldsig.sign_enveloped(root, keypair(pki_paths, "gateway"))
    expected = xmldsig.message_digest(xmlsafe.parse(signed))
    assert xmldsig.signed_digest(signed) == expected
    other = signed.replace(b"<!-- dropped by exc-c14n -->", b"")
    assert xmldsig.signed_digest(other) == xmldsig.message_digest(xmlsafe.parse(other)) == expected
