"""WS-Security for profile ind-wus: sign an envelope, and verify one without signature wrapping.

python-xmlsec (libxmlsec1, through ``gateway.security.dsig``) does the cryptography (digests,
signature, exc-c14n). It does not know where a signed element must sit, nor the WS-Security
token layout, so this module adds what the contract asks and the library leaves out, and runs
all of it *before* the library sees the message:

- exactly one ``wsse:Security`` header and one ``ds:Signature`` (inside it);
- ``Id`` values unique in the whole document (a duplicate lets a reference pick the wrong twin);
- every required part referenced exactly once, and each reference resolving to the element at
  its expected place: the Body that is processed (``/Envelope/Body``), the WS-Addressing headers
  as direct children of ``/Envelope/Header``, the Timestamp as a child of the Security header;
- exc-c14n, sha256 and rsa-sha256 / ecdsa-sha256 only, one exc-c14n transform per Reference;
- the signing certificate taken from the ``BinarySecurityToken`` that ``KeyInfo`` points at, and
  pinned via ``PartnerTrust.check``;
- the Timestamp's freshness.

Only the elements those checks approved are registered as IDs with libxmlsec1, so the
References it digests are exactly the parts in place (no other element can be named). What the
caller gets back (``VerifiedEnvelope``) is those elements in place; a part holding a comment or
a processing instruction is handed back as its canonical form re-parsed (what was signed: exc-c14n
drops comments, and ``<a>12<!--x-->34</a>`` must read as "1234", not "12").

Exclusive c14n's one parameter, ``ec:InclusiveNamespaces PrefixList`` (Apache WSS4J and CXF send it
by default), is honoured on SignedInfo and on every Reference by libxmlsec1; ``gateway.security.c14n``
refuses any other parameter.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree
from signxml.algorithms import CanonicalizationMethod

from gateway.core.errors import (
    CertificateRefused,
    ConfigError,
    MalformedInput,
    MessageExpired,
    SignatureInvalid,
)
from gateway.security import dsig
from gateway.security.c14n import EXC_C14N as EXC_C14N_URI
from gateway.security.c14n import check_signature_schema, prefix_list
from gateway.security.keys import KeyPair, PartnerTrust, kid_of_der
from gateway.wire.soap import DS_NS, SOAP_NS, WSA_NS, WSSE_NS, WSU_NS
from gateway.wire.xmlsafe import exc_c14n

__all__ = ["REQUEST_PARTS", "RESPONSE_PARTS", "CONFIRMED_RESPONSE_PARTS", "WSSE11_NS", "VerifiedEnvelope",
           "sign_envelope", "verify_envelope", "signature_value"]

REQUEST_PARTS = ("Body", "Timestamp", "To", "Action", "MessageID")
RESPONSE_PARTS = REQUEST_PARTS + ("RelatesTo",)
#: Contracts revision 2 (Digikoppeling WB014): an answer also signs its wsse11:SignatureConfirmation.
CONFIRMED_RESPONSE_PARTS = RESPONSE_PARTS + ("SignatureConfirmation",)
WSA_PARTS = ("To", "Action", "MessageID", "RelatesTo")
WSSE11_NS = "http://docs.oasis-open.org/wss/oasis-wss-wssecurity-secext-1.1.xsd"

#: The exc-c14n algorithm (as signxml names it: callers and tests compare ``EXC_C14N.value``).
EXC_C14N = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
SIGNATURE_METHODS = (RSA_SHA256, ECDSA_SHA256)
X509V3 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
BASE64 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
MAX_TIMESTAMP_SPAN = 300

_WSU_ID = f"{{{WSU_NS}}}Id"
_SECURITY = f"{{{WSSE_NS}}}Security"
_SIGNATURE = f"{{{DS_NS}}}Signature"
_TIMESTAMP = f"{{{WSU_NS}}}Timestamp"
_BST = f"{{{WSSE_NS}}}BinarySecurityToken"
_CONFIRMATION = f"{{{WSSE11_NS}}}SignatureConfirmation"
_STAGE = "security"


# --------------------------------------------------------------------------------------- signing


def sign_envelope(envelope: etree._Element, key: KeyPair, *, parts: Sequence[str], now: datetime,
                  ttl_seconds: int = 300, confirm: str | None = None) -> bytes:
    """Complete an envelope from ``gateway.wire.soap.build_envelope`` and return it serialized.

    Adds the Timestamp (Created=now, Expires=now+ttl), the BinarySecurityToken, wsu:Id where
    missing, and a ds:Signature with one Reference per part whose KeyInfo points at the token.
    ``confirm`` (an answer's: the request's ds:SignatureValue) adds a wsse11:SignatureConfirmation
    with that Value; sign it by naming "SignatureConfirmation" in ``parts``.
    """
    header, security, body = _own_layout(envelope)
    timestamp = _add_timestamp(security, now, ttl_seconds)
    targets = {"Body": body, "Timestamp": timestamp}
    if confirm is not None:
        targets["SignatureConfirmation"] = _add_confirmation(security, confirm)
    bst_id = _add_token(security, key)
    for name in WSA_PARTS:
        found = header.find(f"{{{WSA_NS}}}{name}")
        if found is not None:
            targets[name] = found
    signature = xmlsec.template.create(envelope, xmlsec.constants.TransformExclC14N, _signature_transform(key),
                                       ns="ds")
    security.append(signature)
    ids = []
    for part in parts:
        if part not in targets:
            raise ValueError(f"cannot sign {part}: the envelope has no such part")
        reference = xmlsec.template.add_reference(signature, xmlsec.constants.TransformSha256,
                                                  uri="#" + _ensure_id(targets[part], part))
        xmlsec.template.add_transform(reference, xmlsec.constants.TransformExclC14N)
        ids.append((targets[part], "Id", WSU_NS))
    signature.append(_key_info(bst_id))
    dsig.sign(signature, key, ids)
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


def _signature_transform(key: KeyPair) -> Any:  # an xmlsec.constants transform (typed only in its stubs)
    """rsa-sha256 or ecdsa-sha256 by key type; ``load_keypair`` admits no other key types."""
    if isinstance(key.private_key, ec.EllipticCurvePrivateKey):
        return xmlsec.constants.TransformEcdsaSha256
    if isinstance(key.private_key, rsa.RSAPrivateKey):
        return xmlsec.constants.TransformRsaSha256
    raise ConfigError("only RSA and EC keys are supported", file=key.key_file)


def _own_layout(envelope: etree._Element) -> tuple[etree._Element, etree._Element, etree._Element]:
    header = envelope.find(f"{{{SOAP_NS}}}Header")
    body = envelope.find(f"{{{SOAP_NS}}}Body")
    security = header.find(_SECURITY) if header is not None else None
    if header is None or body is None or security is None or len(security):
        raise ValueError("sign_envelope needs an envelope with a Header holding an empty wsse:Security")
    return header, security, body


def _ensure_id(element: etree._Element, part: str) -> str:
    if element.get(_WSU_ID) is None:
        element.set(_WSU_ID, f"id-{part.lower()}")
    return element.get(_WSU_ID)


def _add_timestamp(security: etree._Element, now: datetime, ttl_seconds: int) -> etree._Element:
    timestamp = etree.SubElement(security, _TIMESTAMP)
    timestamp.set(_WSU_ID, "id-timestamp")
    etree.SubElement(timestamp, f"{{{WSU_NS}}}Created").text = _utc(now)
    etree.SubElement(timestamp, f"{{{WSU_NS}}}Expires").text = _utc(now + timedelta(seconds=ttl_seconds))
    return timestamp


def _add_confirmation(security: etree._Element, value: str) -> etree._Element:
    confirmation = etree.SubElement(security, _CONFIRMATION, nsmap={"wsse11": WSSE11_NS})
    confirmation.set(_WSU_ID, "id-sigconf")
    confirmation.set("Value", value)
    return confirmation


def signature_value(envelope: etree._Element) -> str:
    """The ds:SignatureValue of the envelope's one WS-Security signature, without whitespace.

    What an answer's SignatureConfirmation must carry (WS-Security 1.1); call it on an envelope
    that ``verify_envelope`` accepted, or on one this side signed.
    """
    return _signature_value(_Layout.of(envelope))


def _signature_value(layout: _Layout) -> str:
    found = layout.signature.findall(f"{{{DS_NS}}}SignatureValue")
    if len(found) != 1:
        raise SignatureInvalid("ds:Signature needs exactly one SignatureValue", stage=_STAGE)
    return "".join((found[0].text or "").split())


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _add_token(security: etree._Element, key: KeyPair) -> str:
    token = etree.SubElement(security, _BST)
    token.set("ValueType", X509V3)
    token.set("EncodingType", BASE64)
    token.set(_WSU_ID, "id-bst")
    token.text = base64.b64encode(key.cert_der).decode("ascii")
    return "id-bst"


def _key_info(bst_id: str) -> etree._Element:
    key_info = etree.Element(f"{{{DS_NS}}}KeyInfo")
    str_ = etree.SubElement(key_info, f"{{{WSSE_NS}}}SecurityTokenReference", nsmap={"wsse": WSSE_NS})
    ref = etree.SubElement(str_, f"{{{WSSE_NS}}}Reference")
    ref.set("URI", "#" + bst_id)
    ref.set("ValueType", X509V3)
    return key_info


# ----------------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class VerifiedEnvelope:
    """The signed parts of an envelope: the elements in place, or their signed canonical form when they
    hold comments or processing instructions (exc-c14n drops comments)."""

    body: etree._Element
    payload: etree._Element
    to: str
    action: str
    message_id: str
    relates_to: str | None
    signer: x509.Certificate
    #: This envelope's own ds:SignatureValue (an answer confirms it), whitespace removed.
    signature_value: str = ""
    #: The signed wsse11:SignatureConfirmation's Value, when "SignatureConfirmation" was a part.
    confirmation: str | None = None


def verify_envelope(envelope: etree._Element, trust: PartnerTrust, *, parts: Sequence[str],
                    now: datetime, max_skew_seconds: int = 300) -> VerifiedEnvelope:
    """Contract checks 2 (references and their places), 3 (signature, certificate), 4 (Timestamp)."""
    if not set(REQUEST_PARTS) <= set(parts):
        raise ValueError("parts must include every part of REQUEST_PARTS")
    layout = _Layout.of(envelope)
    placed = _referenced_parts(layout, parts)
    cert = _signer(layout, trust, now)
    signed = _verify_crypto(layout.signature, cert, placed)
    _check_timestamp(signed["Timestamp"], now, max_skew_seconds)
    return _result(signed, cert, parts, _signature_value(layout))


@dataclass(frozen=True)
class _Layout:
    """The envelope's security-relevant elements, found by position only."""

    root: etree._Element
    header: etree._Element
    body: etree._Element
    security: etree._Element
    signature: etree._Element
    ids: dict[str, etree._Element]

    @staticmethod
    def of(root: etree._Element) -> _Layout:
        if root.tag != f"{{{SOAP_NS}}}Envelope":
            raise SignatureInvalid("not a SOAP 1.1 envelope", stage=_STAGE)
        header = _only([c for c in root if c.tag == f"{{{SOAP_NS}}}Header"], "soap:Header")
        body = _only([c for c in root if c.tag == f"{{{SOAP_NS}}}Body"], "soap:Body")
        security = _only(list(root.iter(_SECURITY)), "wsse:Security header")
        if security.getparent() is not header:
            raise SignatureInvalid("wsse:Security is not a header", stage=_STAGE)
        signature = _only(list(root.iter(_SIGNATURE)), "ds:Signature")
        if signature.getparent() is not security:
            raise SignatureInvalid("ds:Signature is not in the wsse:Security header", stage=_STAGE)
        return _Layout(root, header, body, security, signature, _ids(root))


def _only(found: list[etree._Element], what: str) -> etree._Element:
    if len(found) != 1:
        raise SignatureInvalid(f"expected exactly one {what}, found {len(found)}", stage=_STAGE)
    return found[0]


#: Compiled once: an XPath string is compiled again at every ``xpath()`` call (about 4 us here).
_ID_ATTRIBUTES = etree.XPath("//@*[local-name()='Id']")


def _ids(root: etree._Element) -> dict[str, etree._Element]:
    """Id value -> element, refusing duplicates.

    Any attribute named Id in any namespace counts (other stacks resolve "#x" that way); twins would
    let a reference point at a copy while we process the original.
    """
    ids: dict[str, etree._Element] = {}
    for value in _ID_ATTRIBUTES(root):
        if str(value) in ids:
            raise SignatureInvalid("an Id value occurs more than once", stage=_STAGE)
        ids[str(value)] = value.getparent()
    return ids


@dataclass(frozen=True)
class _Placed:
    """A referenced element at its place, its Id attribute, and the Reference's inclusive prefixes."""

    element: etree._Element
    prefixes: tuple[str, ...] | None
    id_attribute: tuple[str, str | None]  # (local name, namespace) for libxmlsec1's ID table


def _referenced_parts(layout: _Layout, parts: Sequence[str]) -> dict[str, _Placed]:
    """Map each Reference (in SignedInfo order) to the part it covers, refusing misplaced ones."""
    signed_info = layout.signature.find(f"{{{DS_NS}}}SignedInfo")
    if signed_info is None:
        raise SignatureInvalid("ds:Signature has no SignedInfo", stage=_STAGE)
    _check_algorithms(signed_info)
    placed: dict[str, _Placed] = {}
    for reference in signed_info.iterchildren(f"{{{DS_NS}}}Reference"):
        prefixes = _check_reference_shape(reference)
        element = _by_id(layout, reference.get("URI") or "")
        part = _place_of(element, layout)
        if part is None or part not in parts:
            raise SignatureInvalid("a Reference points at an element outside the signed parts' places",
                                   stage=_STAGE)
        if part in placed:
            raise SignatureInvalid(f"{part} is referenced more than once", stage=_STAGE)
        placed[part] = _Placed(element, prefixes, _id_attribute(element, (reference.get("URI") or "")[1:]))
    missing = [p for p in parts if p not in placed]
    if missing:
        raise SignatureInvalid(f"the signature does not cover {', '.join(missing)}", stage=_STAGE)
    return placed


def _check_algorithms(signed_info: etree._Element) -> None:
    c14n = signed_info.find(f"{{{DS_NS}}}CanonicalizationMethod")
    if c14n is None or c14n.get("Algorithm") != EXC_C14N_URI:
        raise SignatureInvalid("SignedInfo is not canonicalized with exc-c14n", stage=_STAGE)
    prefix_list(c14n, "SignedInfo's CanonicalizationMethod")  # libxmlsec1 applies it
    method = signed_info.find(f"{{{DS_NS}}}SignatureMethod")
    if method is None or method.get("Algorithm") not in SIGNATURE_METHODS or len(method) \
            or (method.text or "").strip():
        raise SignatureInvalid("the signature does not verify (its method must be rsa-sha256 or ecdsa-sha256)",
                               stage=_STAGE)


def _check_reference_shape(reference: etree._Element) -> tuple[str, ...] | None:
    """The Reference's inclusive prefixes, after checking its shape.

    One exc-c14n transform (with at most its PrefixList) and a sha256 digest: no XPath/XSLT or
    other transforms, and no parameter that one stack would apply and another ignore.
    """
    transforms = reference.findall(f"{{{DS_NS}}}Transforms/{{{DS_NS}}}Transform")
    if [t.get("Algorithm") for t in transforms] != [EXC_C14N_URI]:
        raise SignatureInvalid("unsupported transform: a Reference must have exactly the exc-c14n transform",
                               stage=_STAGE)
    digest = reference.find(f"{{{DS_NS}}}DigestMethod")
    if digest is None or digest.get("Algorithm") != SHA256:
        raise SignatureInvalid("a Reference must use the sha256 digest", stage=_STAGE)
    return prefix_list(transforms[0], "a Reference's Transform")


def _id_attribute(element: etree._Element, value: str) -> tuple[str, str | None]:
    """The (local name, namespace) of ``element``'s Id attribute holding ``value`` (unique: ``_ids``)."""
    for name, found in element.attrib.items():
        qname = etree.QName(name)
        if qname.localname == "Id" and found == value:
            return qname.localname, qname.namespace
    raise SignatureInvalid("a Reference URI is not the #Id of an element in the message", stage=_STAGE)


def _by_id(layout: _Layout, uri: str) -> etree._Element:
    if not uri.startswith("#") or uri[1:] not in layout.ids:
        raise SignatureInvalid("a Reference URI is not the #Id of an element in the message", stage=_STAGE)
    return layout.ids[uri[1:]]


def _place_of(element: etree._Element, layout: _Layout) -> str | None:
    """Which part sits here, judged by position: None when it is not where a signed part belongs."""
    parent = element.getparent()
    if element is layout.body:
        return "Body"
    if parent is layout.security and element.tag == _TIMESTAMP:
        return "Timestamp" if len(layout.security.findall(_TIMESTAMP)) == 1 else None
    if parent is layout.security and element.tag == _CONFIRMATION:
        return "SignatureConfirmation" if len(layout.security.findall(_CONFIRMATION)) == 1 else None
    if parent is layout.header and element.tag.startswith(f"{{{WSA_NS}}}"):
        name = element.tag.split("}", 1)[1]
        if name in WSA_PARTS and len(layout.header.findall(element.tag)) == 1:
            return name
    return None


def _signer(layout: _Layout, trust: PartnerTrust, now: datetime) -> x509.Certificate:
    """The certificate in the BinarySecurityToken that KeyInfo names, pinned and checked."""
    ref = layout.signature.find(
        f"{{{DS_NS}}}KeyInfo/{{{WSSE_NS}}}SecurityTokenReference/{{{WSSE_NS}}}Reference")
    if ref is None or not (ref.get("URI") or "").startswith("#"):
        raise SignatureInvalid("KeyInfo does not reference a BinarySecurityToken", stage=_STAGE)
    tokens = [t for t in layout.security.iterchildren(_BST) if t.get(_WSU_ID) == ref.get("URI")[1:]]
    token = _only(tokens, "referenced BinarySecurityToken")
    if token.get("ValueType") != X509V3 or token.get("EncodingType", BASE64) != BASE64:
        raise SignatureInvalid("the BinarySecurityToken is not a base64 X.509v3 certificate", stage=_STAGE)
    try:
        der = base64.b64decode("".join((token.text or "").split()), validate=True)
    except ValueError as exc:
        raise SignatureInvalid("the BinarySecurityToken is not base64", stage=_STAGE) from exc
    # The pinned certificate object is looked up by digest, so a token is never parsed as X.509.
    cert = trust.by_kid(kid_of_der(der))
    if cert is None:
        raise CertificateRefused("the signing certificate is not one configured for this partner",
                                 partner=trust.partner, stage=_STAGE)
    trust.check(cert, now)
    return cert


_local = threading.local()


def hardened_parser() -> etree.XMLParser:
    """The parser a signed part's canonical form is re-parsed with: no entities, no network; one per thread."""
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                                                 huge_tree=False)
    return parser


def _verify_crypto(signature: etree._Element, cert: x509.Certificate,
                   placed: dict[str, _Placed]) -> dict[str, etree._Element]:
    """libxmlsec1 checks digests and signature over exactly the approved elements; returns what was signed."""
    check_signature_schema(signature)
    dsig.verify(signature, cert, [(ref.element, ref.id_attribute[0], ref.id_attribute[1]) for ref in placed.values()],
                [partial(exc_c14n, ref.element, ref.prefixes) for ref in placed.values()])
    return {part: signed_form(ref.element, ref.prefixes) for part, ref in placed.items()}


def signed_form(element: etree._Element, prefixes: Sequence[str] | None = None) -> etree._Element:
    """What a Reference to ``element`` signed, as an element: itself, unless it holds comments or PIs.

    exc-c14n (without comments) drops comments and processing instructions, so the signed data of
    ``<a>12<!--x-->34</a>`` is ``<a>1234</a>``; such an element is returned as its canonical form,
    re-parsed (a new document), so that what is processed is exactly what was signed.
    """
    if next(element.iter(etree.Comment, etree.ProcessingInstruction), None) is None:
        return element
    return etree.fromstring(exc_c14n(element, prefixes), hardened_parser())


def _check_timestamp(timestamp: etree._Element, now: datetime, max_skew_seconds: int) -> None:
    created = _instant(timestamp, "Created")
    expires = _instant(timestamp, "Expires")
    if not timedelta(0) < expires - created <= timedelta(seconds=MAX_TIMESTAMP_SPAN):
        raise MessageExpired("the Timestamp's Created and Expires are not 0-300 s apart", stage=_STAGE)
    if now > expires:
        raise MessageExpired("the Timestamp has expired", stage=_STAGE)
    if created > now + timedelta(seconds=max_skew_seconds):
        raise MessageExpired("the Timestamp was created in the future", stage=_STAGE)


def _instant(timestamp: etree._Element, name: str) -> datetime:
    found = timestamp.findall(f"{{{WSU_NS}}}{name}")
    if len(found) != 1:
        raise SignatureInvalid(f"the Timestamp needs exactly one wsu:{name}", stage=_STAGE)
    try:
        at = datetime.fromisoformat((found[0].text or "").strip())
    except ValueError as exc:
        raise SignatureInvalid(f"wsu:{name} is not a date-time", stage=_STAGE) from exc
    if at.tzinfo is None:
        raise SignatureInvalid(f"wsu:{name} has no time zone", stage=_STAGE)
    return at


def _result(signed: dict[str, etree._Element], cert: x509.Certificate, parts: Sequence[str],
            own_value: str) -> VerifiedEnvelope:
    body = signed["Body"]
    payload = [c for c in body if isinstance(c.tag, str)]
    if len(payload) != 1:
        raise MalformedInput("the Body must hold exactly one element", stage="receiving")

    def text(part: str) -> str:
        return (signed[part].text or "").strip()

    return VerifiedEnvelope(
        body=body,
        payload=payload[0],
        to=text("To"),
        action=text("Action"),
        message_id=text("MessageID"),
        relates_to=text("RelatesTo") if "RelatesTo" in parts else None,
        signer=cert,
        signature_value=own_value,
        confirmation=_confirmation(signed.get("SignatureConfirmation")),
    )


def _confirmation(element: etree._Element | None) -> str | None:
    """The signed SignatureConfirmation's Value (whitespace removed); None when not signed."""
    if element is None:
        return None
    return "".join((element.get("Value") or "").split())
