"""Exclusive c14n with its one parameter, InclusiveNamespaces PrefixList, for ind-wus and duo-xml.

Java WS-Security stacks (Apache WSS4J, hence CXF) put ``<ec:InclusiveNamespaces PrefixList="...">``
(xmlns:ec = the exc-c14n namespace) inside SignedInfo's CanonicalizationMethod and inside each
Reference's exc-c14n Transform by default. The prefixes listed are canonicalized as inclusive
c14n would: declared on the apex element when in scope, used or not. This module

- reads that parameter, and refuses anything else inside an exc-c14n CanonicalizationMethod or
  Transform (an unknown parameter), so a signature means one thing only;
- (the element in place is canonicalized with a Reference's own prefix list by
  ``gateway.wire.xmlsafe.exc_c14n``, for the placement and anti-wrapping comparisons);
- checks ds:Signature against the XML-DSig schema as signxml would, with ec:InclusiveNamespaces
  declared: signxml's bundled schema alone has no declaration for it, and SignedInfo's
  CanonicalizationMethod demands one (a strict wildcard), so every such signature was refused.

Refusals are ``SignatureInvalid`` (fault wsse:FailedCheck, code SIGNATURE) with a message that names
the check, never message content.
"""

from __future__ import annotations

import re
import threading
from functools import cache
from importlib import resources

from lxml import etree

from gateway.core.errors import SignatureInvalid
from gateway.wire.xmlsafe import SCHEMA_COMPILE_LOCK

__all__ = ["EC_NS", "EXC_C14N", "check_signature_schema", "prefix_list"]

EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
EC_NS = EXC_C14N  # the namespace of ec:InclusiveNamespaces is the algorithm's URI
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
_INCLUSIVE = f"{{{EC_NS}}}InclusiveNamespaces"
_STAGE = "security"
# An NCName (close enough: XML name characters without the colon) or "#default".
_PREFIX = re.compile(r"#default|[^\W\d][\w.\-]*", re.UNICODE)


def prefix_list(method: etree._Element, what: str) -> tuple[str, ...] | None:
    """The PrefixList of an exc-c14n CanonicalizationMethod or Transform; None when it has none.

    ``what`` names the element in a refusal ("SignedInfo's CanonicalizationMethod", "a Reference's
    Transform"). Refused: text, comments or elements other than one ec:InclusiveNamespaces; an
    ec:InclusiveNamespaces with children, text, an attribute other than PrefixList, or no PrefixList;
    a PrefixList that is not prefixes separated by single spaces.
    """
    if (method.text or "").strip():
        raise SignatureInvalid(f"unsupported canonicalization parameter: {what} holds text", stage=_STAGE)
    children = list(method)
    if any(child.tag != _INCLUSIVE for child in children):
        raise SignatureInvalid(f"unsupported canonicalization parameter: {what} holds something other than "
                               "ec:InclusiveNamespaces", stage=_STAGE)
    if not children:
        return None
    if len(children) > 1:
        raise SignatureInvalid(f"unsupported canonicalization parameter: {what} holds more than one "
                               "ec:InclusiveNamespaces", stage=_STAGE)
    inclusive = children[0]
    if (len(inclusive) or (inclusive.text or "").strip() or (inclusive.tail or "").strip()
            or set(inclusive.attrib) != {"PrefixList"}):
        raise SignatureInvalid(f"unsupported canonicalization parameter: ec:InclusiveNamespaces in {what} "
                               "holds more than a PrefixList", stage=_STAGE)
    value = inclusive.get("PrefixList", "")
    prefixes = tuple(value.split(" ")) if value else ()
    # Single spaces only: signxml splits on " ", so "a  b" would mean "a #default b" to it and
    # "a b" to another stack; one meaning, or a refusal.
    if not all(_PREFIX.fullmatch(p) for p in prefixes):
        raise SignatureInvalid(f"the PrefixList in {what} is not namespace prefixes separated by single spaces",
                               stage=_STAGE)
    return prefixes


_SCHEMA = """<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" elementFormDefault="qualified"
           targetNamespace="http://www.w3.org/2001/10/xml-exc-c14n#">
  <xs:import namespace="http://www.w3.org/2000/09/xmldsig#" schemaLocation="{dsig}"/>
  <xs:element name="InclusiveNamespaces">
    <xs:complexType>
      <!-- The recommendation's schema says NMTOKENS, which excludes its own "#default" and an
           empty list; prefix_list() checks the value. -->
      <xs:attribute name="PrefixList" type="xs:string" use="required"/>
    </xs:complexType>
  </xs:element>
</xs:schema>"""


def _schema() -> etree.XMLSchema:
    with SCHEMA_COMPILE_LOCK:  # see there: libxml2 must not compile two schemas at once
        return _compiled()


@cache
def _compiled() -> etree.XMLSchema:
    # The schema signxml validates ds:Signature with (its own copy of the W3C files), plus the
    # exc-c14n declaration from the recommendation's schema. Files only: no network.
    dsig = resources.files("signxml.schemas").joinpath("xmldsig1-schema.xsd")
    with resources.as_file(dsig) as path:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        return etree.XMLSchema(etree.fromstring(_SCHEMA.format(dsig=path.as_uri()).encode(), parser))


_schema_lock = threading.Lock()


def check_signature_schema(signature: etree._Element) -> None:
    """ds:Signature against the XML-DSig schema (with ec:InclusiveNamespaces declared)."""
    xsd = _schema()
    with _schema_lock:  # lxml keeps the error log on the schema object
        ok = xsd.validate(signature)
    if not ok:
        raise SignatureInvalid("ds:Signature does not follow the XML-DSig schema", stage=_STAGE)
