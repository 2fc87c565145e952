"""Enveloped XML signatures for profile duo-xml.

The signature is the last child of the message root: exc-c14n, rsa-sha256 (ecdsa-sha256 for EC
keys), one Reference URI="" with the enveloped-signature and exc-c14n transforms, a sha256 digest
and KeyInfo/X509Data/X509Certificate. Verification pins that certificate through
``PartnerTrust.check`` and returns the root as signxml returned it (signed data only).
Exclusive c14n's ``ec:InclusiveNamespaces PrefixList`` is accepted and honoured on SignedInfo and on
the Reference's exc-c14n transform; any other parameter or transform is refused
(``gateway.security.c14n``).
"""

from __future__ import annotations

import base64
import copy
from datetime import datetime
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree
from signxml import SignatureConfiguration, XMLSigner, XMLVerifier, methods
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidCertificate, SignXMLException
from signxml.verifier import VerifyResult

from gateway.core.errors import CertificateRefused, SignatureInvalid
from gateway.security.c14n import check_signature_schema, prefix_list
from gateway.security.keys import KeyPair, PartnerTrust, kid_of_der
from gateway.security.wsse import hardened_parser, signing_key
from gateway.wire.soap import DS_NS
from gateway.wire.xmlsafe import exc_c14n, sha256_b64

__all__ = ["sign_enveloped", "verify_enveloped", "message_digest"]

EXC_C14N = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
_SIGNATURE = f"{{{DS_NS}}}Signature"
_STAGE = "security"


def sign_enveloped(root: etree._Element, key: KeyPair) -> bytes:
    """Sign ``root`` (left unchanged) and return the signed document, the signature last."""
    if root.get("Id") is not None or root.get("ID") is not None:
        # signxml would then reference "#<Id>" instead of the whole document (URI="").
        raise ValueError("the root element must not carry an Id attribute")
    method = SignatureMethod.ECDSA_SHA256 if isinstance(key.private_key, ec.EllipticCurvePrivateKey) \
        else SignatureMethod.RSA_SHA256
    signer = XMLSigner(method=methods.enveloped, signature_algorithm=method,
                       digest_algorithm=DigestAlgorithm.SHA256, c14n_algorithm=EXC_C14N)
    signed = signer.sign(root, key=signing_key(key), cert=[key.certificate])
    return etree.tostring(signed, xml_declaration=True, encoding="utf-8")


def verify_enveloped(root: etree._Element, trust: PartnerTrust, *, now: datetime) -> etree._Element:
    """Verify the enveloped signature of ``root``; return the signed root as signxml returned it."""
    signature = _the_signature(root)
    _check_reference(signature)
    cert = _signer(signature, trust, now)
    config = SignatureConfiguration(
        location="./",
        expect_references=1,
        signature_methods=frozenset({SignatureMethod.RSA_SHA256, SignatureMethod.ECDSA_SHA256}),
        digest_algorithms=frozenset({DigestAlgorithm.SHA256}),
        verification_time=now,
    )
    # The schema check signxml would make, with ec:InclusiveNamespaces declared.
    check_signature_schema(signature)
    try:
        # One VerifyResult, not a list: expect_references is 1.
        result = cast(VerifyResult, XMLVerifier().verify(root, x509_cert=cert, expect_config=config,
                                                         parser=hardened_parser(), validate_schema=False))
    except InvalidCertificate as exc:
        raise CertificateRefused("the signing certificate is not valid now", stage=_STAGE) from exc
    except (SignXMLException, ValueError, etree.LxmlError) as exc:
        raise SignatureInvalid(f"the signature does not verify ({type(exc).__name__})", stage=_STAGE) from exc
    if result.signed_xml is None:
        raise SignatureInvalid("the signed data is not XML", stage=_STAGE)
    return result.signed_xml


def message_digest(root: etree._Element) -> str:
    """berichtDigest: base64 SHA-256 of the exc-c14n of ``root`` without its ds:Signature child."""
    bare = copy.deepcopy(root)
    for signature in bare.findall(_SIGNATURE):
        _remove_keeping_tail(signature)
    return sha256_b64(exc_c14n(bare))


def _remove_keeping_tail(element: etree._Element) -> None:
    # As the enveloped-signature transform does: the text after the signature stays.
    parent = element.getparent()
    if element.tail:
        previous = element.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + element.tail
        else:
            parent.text = (parent.text or "") + element.tail
    parent.remove(element)


def _the_signature(root: etree._Element) -> etree._Element:
    found = list(root.iter(_SIGNATURE))
    if not found:
        raise SignatureInvalid("the message is not signed", stage=_STAGE)
    if len(found) != 1:
        raise SignatureInvalid("the message holds more than one ds:Signature", stage=_STAGE)
    elements = [c for c in root if isinstance(c.tag, str)]
    if found[0] is not elements[-1]:
        raise SignatureInvalid("ds:Signature is not the last child of the root", stage=_STAGE)
    return found[0]


def _check_reference(signature: etree._Element) -> None:
    # URI="" and exactly these transforms: a "#id" reference would sign only part of the message.
    refs = signature.findall(f"{{{DS_NS}}}SignedInfo/{{{DS_NS}}}Reference")
    if len(refs) != 1 or refs[0].get("URI") != "":
        raise SignatureInvalid("the signature must have one Reference with URI=\"\"", stage=_STAGE)
    transforms = refs[0].findall(f"{{{DS_NS}}}Transforms/{{{DS_NS}}}Transform")
    if [t.get("Algorithm") for t in transforms] != [ENVELOPED, EXC_C14N.value]:
        raise SignatureInvalid("unsupported transform: the Reference must use the enveloped-signature and "
                               "exc-c14n transforms", stage=_STAGE)
    if len(transforms[0]) or (transforms[0].text or "").strip():
        raise SignatureInvalid("unsupported transform parameter: the enveloped-signature transform takes none",
                               stage=_STAGE)
    # signxml applies the PrefixLists; these calls refuse any other parameter.
    prefix_list(transforms[1], "the Reference's exc-c14n Transform")
    c14n = signature.find(f"{{{DS_NS}}}SignedInfo/{{{DS_NS}}}CanonicalizationMethod")
    if c14n is None or c14n.get("Algorithm") != EXC_C14N.value:
        raise SignatureInvalid("SignedInfo is not canonicalized with exc-c14n", stage=_STAGE)
    prefix_list(c14n, "SignedInfo's CanonicalizationMethod")


def _signer(signature: etree._Element, trust: PartnerTrust, now: datetime) -> x509.Certificate:
    certs = signature.findall(f"{{{DS_NS}}}KeyInfo/{{{DS_NS}}}X509Data/{{{DS_NS}}}X509Certificate")
    if len(certs) != 1:
        raise SignatureInvalid("KeyInfo must hold exactly one X509Certificate", stage=_STAGE)
    try:
        der = base64.b64decode("".join((certs[0].text or "").split()), validate=True)
    except ValueError as exc:
        raise SignatureInvalid("X509Certificate is not base64", stage=_STAGE) from exc
    cert = trust.by_kid(kid_of_der(der))
    if cert is None:
        raise CertificateRefused("the signing certificate is not one configured for this partner",
                                 partner=trust.partner, stage=_STAGE)
    trust.check(cert, now)
    return cert
