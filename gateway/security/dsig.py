"""The XML-DSig engine under ``wsse`` and ``xmldsig``: python-xmlsec (libxmlsec1), keys loaded once.

This module only computes and checks digests and signature values. It knows nothing of where a
signed element must sit: ``wsse`` and ``xmldsig`` check the layout, the references, the
algorithms and the certificate first, and only then call ``verify`` here with the elements they
approved. libxmlsec1 resolves ``URI="#x"`` through the document's ID table, and only the
attributes registered here are in it (the hardened parser collects no IDs, and no DTD is
allowed), so a Reference cannot reach an element the caller did not approve.

What each call does, and what it refuses:

- ``verify``: every Reference in SignedInfo is digested and compared, and the SignatureValue
  checked with the pinned certificate's public key (never a key from KeyInfo). Only exc-c14n,
  the enveloped-signature transform, sha256 and rsa-sha256 / ecdsa-sha256 are enabled, so any
  other algorithm fails here too (the callers refuse them earlier, with a precise message).
  ``ec:InclusiveNamespaces PrefixList`` is honoured by libxmlsec1 on SignedInfo and on each
  Reference's exc-c14n transform.
- ``sign``: fills in a ds:Signature template that already sits in the document.

python-xmlsec needs the same libxml2 as lxml (it refuses to import otherwise): pyproject pins
both. Errors of the library become ``SignatureInvalid``.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable, Iterable, Sequence

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from gateway.core.errors import SignatureInvalid
from gateway.security.keys import KeyPair

__all__ = ["private_key", "public_key", "sign", "verify"]

_STAGE = "security"
_SIGNATURE_TRANSFORMS = (xmlsec.constants.TransformExclC14N, xmlsec.constants.TransformRsaSha256,
                         xmlsec.constants.TransformEcdsaSha256)
_REFERENCE_TRANSFORMS = (xmlsec.constants.TransformExclC14N, xmlsec.constants.TransformEnveloped,
                         xmlsec.constants.TransformSha256)
_MAX_CACHED = 64

_lock = threading.Lock()
_private: dict[int, tuple[object, xmlsec.Key]] = {}
_public: dict[int, tuple[x509.Certificate, xmlsec.Key]] = {}


def private_key(key: KeyPair) -> xmlsec.Key:
    """``key``'s private key as libxmlsec1 takes it; converted once per key object (no file read)."""
    with _lock:
        cached = _private.get(id(key.private_key))
        if cached is not None and cached[0] is key.private_key:
            return cached[1]
    pem = key.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    loaded = xmlsec.Key.from_memory(pem, xmlsec.constants.KeyDataFormatPem)
    with _lock:
        if len(_private) >= _MAX_CACHED:
            _private.clear()
        _private[id(key.private_key)] = (key.private_key, loaded)
    return loaded


def public_key(cert: x509.Certificate) -> xmlsec.Key:
    """The public key of a pinned certificate as libxmlsec1 takes it; converted once per certificate
    object (as ``private_key``: the pinned objects live as long as the trust that holds them)."""
    with _lock:
        cached = _public.get(id(cert))
    if cached is not None and cached[0] is cert:
        return cached[1]
    pem = cert.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    loaded = xmlsec.Key.from_memory(pem, xmlsec.constants.KeyDataFormatPem)
    with _lock:
        if len(_public) >= _MAX_CACHED:
            _public.clear()
        _public[id(cert)] = (cert, loaded)
    return loaded


def _context(key: xmlsec.Key, ids: Iterable[tuple[etree._Element, str, str | None]]) -> xmlsec.SignatureContext:
    ctx = xmlsec.SignatureContext()
    ctx.key = key
    for element, name, namespace in ids:
        ctx.register_id(element, name, namespace)
    return ctx


def sign(signature: etree._Element, key: KeyPair,
         ids: Iterable[tuple[etree._Element, str, str | None]] = ()) -> None:
    """Fill in the template ``signature`` (in its document); ``ids``: (element, attribute, namespace)."""
    try:
        _context(private_key(key), ids).sign(signature)
    except xmlsec.Error as exc:  # our own template: a bug, not a partner's fault
        raise ValueError(f"signing failed: {exc}") from exc


def verify(signature: etree._Element, cert: x509.Certificate,
           ids: Iterable[tuple[etree._Element, str, str | None]] = (),
           signed_data: Sequence[Callable[[], bytes]] = ()) -> None:
    """Check every Reference's digest and the SignatureValue with ``cert``'s key, or raise SignatureInvalid.

    ``ids``: the (element, attribute local name, attribute namespace) of each element a Reference
    may name, as the caller approved them. ``signed_data``: per Reference (SignedInfo order), what
    it covers after its transforms; used only after a failure, to say which check failed
    (InvalidDigest or InvalidSignature, the names the refusals have carried since signxml).
    """
    try:
        ctx = _context(public_key(cert), ids)
        for transform in _SIGNATURE_TRANSFORMS:
            ctx.enable_signature_transform(transform)
        for transform in _REFERENCE_TRANSFORMS:
            ctx.enable_reference_transform(transform)
        ctx.verify(signature)
    except xmlsec.VerificationError as exc:
        raise SignatureInvalid(f"the signature does not verify ({_which(signature, signed_data)})",
                               stage=_STAGE) from exc
    except xmlsec.Error as exc:
        raise SignatureInvalid(f"the signature does not verify ({type(exc).__name__})", stage=_STAGE) from exc


def _which(signature: etree._Element, signed_data: Sequence[Callable[[], bytes]]) -> str:
    """After a failed verification: "InvalidDigest" when a Reference's DigestValue is not the sha256
    of what it covers, else "InvalidSignature" (the message only; libxmlsec1 made the decision)."""
    ds = "{http://www.w3.org/2000/09/xmldsig#}"
    references = signature.findall(f"{ds}SignedInfo/{ds}Reference")
    for reference, data in zip(references, signed_data, strict=False):
        expected = "".join((reference.findtext(f"{ds}DigestValue") or "").split())
        if base64.b64encode(hashlib.sha256(data()).digest()).decode("ascii") != expected:
            return "InvalidDigest"
    return "InvalidSignature"
