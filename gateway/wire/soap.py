"""SOAP 1.1 envelopes for profile ind-wus: build, split and fault.

``build_envelope`` makes the unsigned envelope (WS-Addressing headers with ``wsu:Id`` and an
empty ``wsse:Security``); ``gateway.security.wsse.sign_envelope`` completes it. ``split`` checks
the envelope's shape without trusting it (the security module decides what was signed).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from lxml import etree

from gateway.core.errors import InboundRefused, MalformedInput

__all__ = [
    "SOAP_NS",
    "WSA_NS",
    "WSSE_NS",
    "WSU_NS",
    "DS_NS",
    "NSMAP",
    "build_envelope",
    "Envelope",
    "split",
    "fault",
    "FAULT_ACTION",
    "UNSPECIFIED",
]

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
WSA_NS = "http://www.w3.org/2005/08/addressing"
WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
NSMAP = {"soap": SOAP_NS, "wsa": WSA_NS, "wsse": WSSE_NS, "wsu": WSU_NS}

_WSU_ID = f"{{{WSU_NS}}}Id"


def build_envelope(
    payload: etree._Element,
    *,
    to: str,
    action: str,
    message_id: str,
    relates_to: str | None = None,
) -> etree._Element:
    """An unsigned envelope around ``payload`` with the WS-Addressing headers of the profile."""
    env = etree.Element(f"{{{SOAP_NS}}}Envelope", nsmap=NSMAP)
    header = etree.SubElement(env, f"{{{SOAP_NS}}}Header")
    for name, value, wid in (
        ("To", to, "id-to"),
        ("Action", action, "id-action"),
        ("MessageID", message_id, "id-messageid"),
        ("RelatesTo", relates_to, "id-relatesto"),
    ):
        if value is None:
            continue
        el = etree.SubElement(header, f"{{{WSA_NS}}}{name}")
        el.set(_WSU_ID, wid)
        el.text = value
    sec = etree.SubElement(header, f"{{{WSSE_NS}}}Security")
    sec.set(f"{{{SOAP_NS}}}mustUnderstand", "1")
    body = etree.SubElement(env, f"{{{SOAP_NS}}}Body")
    body.set(_WSU_ID, "id-body")
    body.append(payload)
    return env


@dataclass(frozen=True)
class Envelope:
    """The parts of an envelope, as they sit in the document (not yet trusted)."""

    root: etree._Element
    header: etree._Element | None
    body: etree._Element
    payload: etree._Element
    to: str | None
    action: str | None
    message_id: str | None
    relates_to: str | None


def split(root: etree._Element) -> Envelope:
    """Check the envelope's shape: exactly one Header (optional) then one Body with one child."""
    if root.tag != f"{{{SOAP_NS}}}Envelope":
        raise MalformedInput("not a SOAP 1.1 envelope", stage="receiving")
    children = [c for c in root if isinstance(c.tag, str)]
    headers = [c for c in children if c.tag == f"{{{SOAP_NS}}}Header"]
    bodies = [c for c in children if c.tag == f"{{{SOAP_NS}}}Body"]
    if len(bodies) != 1 or len(headers) > 1 or len(children) != len(headers) + len(bodies):
        raise MalformedInput("the envelope must hold one optional Header and exactly one Body", stage="receiving")
    if headers and children.index(headers[0]) != 0:
        raise MalformedInput("the Header must come before the Body", stage="receiving")
    body = bodies[0]
    payload = [c for c in body if isinstance(c.tag, str)]
    if len(payload) != 1:
        raise MalformedInput("the Body must hold exactly one element", stage="receiving")
    header = headers[0] if headers else None

    def one(name: str) -> str | None:
        if header is None:
            return None
        found = [c for c in header if c.tag == f"{{{WSA_NS}}}{name}"]
        if len(found) > 1:
            raise MalformedInput(f"more than one wsa:{name} header", stage="receiving")
        return (found[0].text or "").strip() if found else None

    return Envelope(
        root=root,
        header=header,
        body=body,
        payload=payload[0],
        to=one("To"),
        action=one("Action"),
        message_id=one("MessageID"),
        relates_to=one("RelatesTo"),
    )


#: WS-Addressing's action for a SOAP fault, and the RelatesTo of a request whose MessageID is unknown.
FAULT_ACTION = "http://www.w3.org/2005/08/addressing/soap/fault"
UNSPECIFIED = "http://www.w3.org/2005/08/addressing/unspecified"


def fault(error: InboundRefused | None, *, faultcode: str | None = None, code: str | None = None,
          message: str | None = None, relates_to: str | None = None, addressed: bool = True) -> bytes:
    """A SOAP 1.1 Fault with ``detail/code`` as the contract lists; no personal data.

    Digikoppeling WA001: a fault carries wsa:Action (WS-Addressing's fault action), a fresh
    wsa:MessageID and wsa:RelatesTo naming the request's MessageID (``relates_to``; WS-Addressing's
    "unspecified" when the request's could not be read). ``addressed=False`` leaves them out.
    """
    fc = faultcode or (error.faultcode if error is not None else "soap:Server")
    dc = code or (error.code if error is not None else "UNAVAILABLE")
    text = message or (error.message if error is not None else "temporarily unable")
    nsmap = {"soap": SOAP_NS, "wsse": WSSE_NS, **({"wsa": WSA_NS} if addressed else {})}
    env = etree.Element(f"{{{SOAP_NS}}}Envelope", nsmap=nsmap)
    if addressed:
        header = etree.SubElement(env, f"{{{SOAP_NS}}}Header")
        for name, value in (("Action", FAULT_ACTION), ("MessageID", f"urn:uuid:{uuid.uuid4()}"),
                            ("RelatesTo", relates_to or UNSPECIFIED)):
            etree.SubElement(header, f"{{{WSA_NS}}}{name}").text = value
    body = etree.SubElement(env, f"{{{SOAP_NS}}}Body")
    f = etree.SubElement(body, f"{{{SOAP_NS}}}Fault")
    etree.SubElement(f, "faultcode").text = fc
    etree.SubElement(f, "faultstring").text = text
    detail = etree.SubElement(f, "detail")
    etree.SubElement(detail, "code").text = dc
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")
