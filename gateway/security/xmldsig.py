"""Enveloped XML signatures for profile duo-xml.

The signature is the last child of the message root: exc-c14n, rsa-sha256 (ecdsa-sha256 for EC
keys), one Reference URI="" with the enveloped-signature and exc-c14n transforms, a sha256 digest
and KeyInfo/X509Data/X509Certificate. python-xmlsec (libxmlsec1, ``gateway.security.dsig``) does
the cryptography. Verification first checks the layout (one ds:Signature, the root's last child;
one Reference URI="" with exactly the enveloped-signature and exc-c14n transforms; the algorithms),
pins the certificate through ``PartnerTrust.check``, and then has libxmlsec1 check the digest and
the signature value with that certificate's key. It returns the signed data as an element: the
root without its signature, canonicalized and re-parsed (comments and PIs dropped, as signed).
Exclusive c14n's ``ec:InclusiveNamespaces PrefixList`` is accepted and honoured on SignedInfo and on
the Reference's exc-c14n transform; any other parameter or transform is refused
(``gateway.security.c14n``).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import threading
from collections import OrderedDict
from datetime import datetime

import xmlsec
from cryptography import x509
from lxml import etree
from signxml.algorithms import CanonicalizationMethod

from gateway.core.errors import CertificateRefused, SignatureInvalid
from gateway.security import dsig
from gateway.security.c14n import EXC_C14N as EXC_C14N_URI
from gateway.security.c14n import check_signature_schema, prefix_list
from gateway.security.keys import KeyPair, PartnerTrust, kid_of_der
from gateway.security.wsse import SHA256, SIGNATURE_METHODS, _signature_transform, hardened_parser
from gateway.wire.soap import DS_NS
from gateway.wire.xmlsafe import exc_c14n, sha256_b64

__all__ = ["sign_enveloped", "verify_enveloped", "message_digest", "signed_digest"]

EXC_C14N = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
_SIGNATURE = f"{{{DS_NS}}}Signature"
_STAGE = "security"


def sign_enveloped(root: etree._Element, key: KeyPair) -> bytes:
    """Sign ``root`` (left unchanged) and return the signed document, the signature last."""
    if root.get("Id") is not None or root.get("ID") is not None:
        # Another stack might then read URI="" as that Id's element only; one meaning, the whole document.
        raise ValueError("the root element must not carry an Id attribute")
    doc = copy.deepcopy(root)  # the caller's element stays unsigned (and the whole document is ours)
    signature = xmlsec.template.create(doc, xmlsec.constants.TransformExclC14N, _signature_transform(key), ns="ds")
    doc.append(signature)
    reference = xmlsec.template.add_reference(signature, xmlsec.constants.TransformSha256, uri="")
    xmlsec.template.add_transform(reference, xmlsec.constants.TransformEnveloped)
    xmlsec.template.add_transform(reference, xmlsec.constants.TransformExclC14N)
    x509_data = xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    etree.SubElement(x509_data, f"{{{DS_NS}}}X509Certificate").text = base64.b64encode(key.cert_der).decode("ascii")
    dsig.sign(signature, key)
    signed = etree.tostring(doc, xml_declaration=True, encoding="utf-8")
    # The berichtDigest of what we signed, kept for the sender (``signed_digest``): the root without
    # its signature is the element we were given, so no re-parse of our own bytes is needed.
    _remember(signed, sha256_b64(exc_c14n(root)))
    return signed


_MAX_REMEMBERED = 1024
_remembered: OrderedDict[bytes, str] = OrderedDict()
_remembered_lock = threading.Lock()


def _remember(signed: bytes, digest: str) -> None:
    key = hashlib.sha256(signed).digest()
    with _remembered_lock:
        _remembered[key] = digest
        if len(_remembered) > _MAX_REMEMBERED:
            _remembered.popitem(last=False)


def signed_digest(signed: bytes) -> str:
    """``message_digest`` of a document: remembered when this process signed exactly these bytes
    with ``sign_enveloped`` (the last 1,024), else computed from a hardened parse of them."""
    with _remembered_lock:
        found = _remembered.get(hashlib.sha256(signed).digest())
    if found is not None:
        return found
    from gateway.wire import xmlsafe

    return message_digest(xmlsafe.parse(signed))


def verify_enveloped(root: etree._Element, trust: PartnerTrust, *, now: datetime) -> etree._Element:
    """Verify the enveloped signature of ``root``; return the signed data (root without its signature)."""
    signature = _the_signature(root)
    prefixes = _check_reference(signature)
    cert = _signer(signature, trust, now)
    check_signature_schema(signature)
    if root.getroottree().getroot() is not root:
        # URI="" is the whole document: verify a document whose root is this element.
        root = copy.deepcopy(root)
        signature = _the_signature(root)
    bare = copy.deepcopy(root)
    for found in bare.findall(_SIGNATURE):
        _remove_keeping_tail(found)
    dsig.verify(signature, cert, signed_data=[lambda: exc_c14n(bare, prefixes)])
    if next(bare.iter(etree.Comment, etree.ProcessingInstruction), None) is None:
        return bare  # the signed data as it stands (exc-c14n would change only namespace declarations)
    return etree.fromstring(exc_c14n(bare, prefixes), hardened_parser())


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


def _check_reference(signature: etree._Element) -> tuple[str, ...] | None:
    """The Reference's inclusive prefixes, after checking the Reference and the algorithms."""
    # URI="" and exactly these transforms: a "#id" reference would sign only part of the message.
    refs = signature.findall(f"{{{DS_NS}}}SignedInfo/{{{DS_NS}}}Reference")
    if len(refs) != 1 or refs[0].get("URI") != "":
        raise SignatureInvalid("the signature must have one Reference with URI=\"\"", stage=_STAGE)
    transforms = refs[0].findall(f"{{{DS_NS}}}Transforms/{{{DS_NS}}}Transform")
    if [t.get("Algorithm") for t in transforms] != [ENVELOPED, EXC_C14N_URI]:
        raise SignatureInvalid("unsupported transform: the Reference must use the enveloped-signature and "
                               "exc-c14n transforms", stage=_STAGE)
    if len(transforms[0]) or (transforms[0].text or "").strip():
        raise SignatureInvalid("unsupported transform parameter: the enveloped-signature transform takes none",
                               stage=_STAGE)
    digest = refs[0].find(f"{{{DS_NS}}}DigestMethod")
    if digest is None or digest.get("Algorithm") != SHA256:
        raise SignatureInvalid("the Reference must use the sha256 digest", stage=_STAGE)
    # libxmlsec1 applies the PrefixLists; these calls refuse any other parameter.
    prefixes = prefix_list(transforms[1], "the Reference's exc-c14n Transform")
    c14n = signature.find(f"{{{DS_NS}}}SignedInfo/{{{DS_NS}}}CanonicalizationMethod")
    if c14n is None or c14n.get("Algorithm") != EXC_C14N_URI:
        raise SignatureInvalid("SignedInfo is not canonicalized with exc-c14n", stage=_STAGE)
    prefix_list(c14n, "SignedInfo's CanonicalizationMethod")
    method = signature.find(f"{{{DS_NS}}}SignedInfo/{{{DS_NS}}}SignatureMethod")
    if method is None or method.get("Algorithm") not in SIGNATURE_METHODS or len(method) \
            or (method.text or "").strip():
        raise SignatureInvalid("the signature does not verify (its method must be rsa-sha256 or ecdsa-sha256)",
                               stage=_STAGE)
    return prefixes


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
