"""IND's inbound endpoint: ``OntvangMelding`` (profile ind-wus), and the checks of a fetched notification.

The checks run in the contract's order: (1) parse safely within the size cap, (2-4) the
WS-Security signature, its placement, certificate and timestamp, (5) the TLS client certificate
belongs to the signer's partner, (6) the Body against the XSD and the business rules. Only then
is the typed, verified notification handed to ``accept``, the handler the core passes in (the
route ``gateway/routes/ind_to_duo.py`` stores it and answers with the acknowledgement).
Notifications fetched with HaalMeldingen go through ``verify_melding``, the same checks from (6) on.
This module decides nothing about routes and knows no store.

Before (1), at the HTTP door (``headers`` given): the contract's ``Content-Type: text/xml;
charset=utf-8`` and ``SOAPAction`` equal to OntvangMelding's action, or a ``MALFORMED`` fault
naming the header and the value received.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

from lxml import etree

from adapters.ind import codec
from gateway.core.clock import iso
from gateway.core.errors import (
    BusinessRuleViolated,
    CertificateRefused,
    InboundRefused,
    MalformedInput,
    OinMismatch,
    SchemaInvalid,
)
from gateway.core.models import IndMelding
from gateway.wire import soap, xmlsafe
from gateway.wire.door import Door, check_door
from gateway.wire.server import Answer

__all__ = ["OPERATION", "SOAP_CT", "DOOR", "Inbound", "Verified", "handle_ontvang_melding", "verify_melding", "ack_envelope",
           "repeat_ack", "request_message_id",
           "ontvangst_id_for", "fault_answer", "unavailable_answer"]

OPERATION = "OntvangMelding"
_UUID_URN = re.compile(r"^urn:uuid:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
_ACK_NS = uuid.UUID("5d0f3c1e-7a61-4b0e-9a43-2f7c0d6b9e11")
ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"
#: The ind-wus profile's transport: POST, text/xml; charset=utf-8, SOAPAction = the operation's action.
DOOR = Door("ind", "text/xml", "utf-8", soap_action=codec.ACTION_ONTVANG)
SOAP_CT = DOOR.content_type  # our answers are sent as the requests must be


@dataclass(frozen=True)
class Inbound:
    """What the endpoint needs to know, handed over by the core."""

    max_message_bytes: int
    clock_skew_seconds: int
    public_url: str | None
    #: IND's PartnerTrust; None when security is off (no signature, no TLS client certificate).
    trust: Any | None
    #: Our OIN ("" = not configured): a ?OIN= in wsa:To must name it (Digikoppeling WA001).
    own_oin: str = ""


@dataclass(frozen=True)
class _Checked:
    payload: etree._Element
    message_id: str
    signature_value: str | None


@dataclass(frozen=True)
class Verified:
    """A notification that passed every check of the profile."""

    melding: IndMelding
    #: meldingDigest (for the acknowledgement): over the element as received.
    digest: str
    #: wsa:MessageID of the push; None for a notification fetched from the feed.
    message_id: str | None
    #: The push's ds:SignatureValue, which the answer confirms (WB014); None unsigned or fetched.
    signature_value: str | None = None


#: accept(verified) -> the answer; it may raise InboundRefused (a duplicate with other content).
Accept = Callable[[Verified], Answer]
#: refused(error, message_key, answer) -> the answer to send, after the core recorded the refusal.
Refused = Callable[[InboundRefused, str | None, Answer], Answer]


def handle_ontvang_melding(body: bytes, *, inbound: Inbound, now: dt.datetime, client_cert_der: bytes | None,
                           headers: Mapping[str, str] | None, accept: Accept, refused: Refused) -> Answer:
    """One OntvangMelding request in, one HTTP answer out: checked here, stored by ``accept``.

    ``headers`` (lower-case names) are the HTTP request's; they are checked against the
    contract first. None: an in-process call with the bytes alone (replay of the delivery
    log, which keeps no headers), where there is no HTTP door to check.
    """
    message_key: str | None = None
    try:
        if inbound.trust is not None:
            # The TLS client certificate first (pin, IND's OIN, revocation), before any byte is parsed.
            inbound.trust.check_peer(client_cert_der, now)
        if headers is not None:
            check_door(DOOR, headers)
        checked = _check_envelope(inbound, body, client_cert_der, now)
        message_key = checked.message_id
        return accept(verify_melding(checked.payload, message_id=checked.message_id,
                                     signature_value=checked.signature_value))
    except InboundRefused as exc:
        relates_to = message_key or request_message_id(body, inbound.max_message_bytes)
        return refused(exc, message_key, fault_answer(exc, relates_to))


def fault_answer(exc: InboundRefused, relates_to: str | None = None) -> Answer:
    return Answer(500, SOAP_CT, soap.fault(exc, relates_to=relates_to))


def unavailable_answer(relates_to: str | None = None) -> Answer:
    return Answer(503, SOAP_CT, soap.fault(None, faultcode="soap:Server", code="UNAVAILABLE",
                                           message="temporarily unable to store; try again later",
                                           relates_to=relates_to),
                  (("Retry-After", "5"),))


def request_message_id(body: bytes, max_bytes: int) -> str | None:
    """The request's wsa:MessageID as it stands (unverified), for a fault's RelatesTo; None when unreadable."""
    try:
        return soap.split(xmlsafe.parse(body, max_bytes=max_bytes)).message_id
    except InboundRefused:
        return None


def _check_envelope(inbound: Inbound, body: bytes, client_cert_der: bytes | None, now: dt.datetime) -> _Checked:
    root = xmlsafe.parse(body, max_bytes=inbound.max_message_bytes)
    env = soap.split(root)
    to: str | None
    action: str | None
    signature_value: str | None = None
    if inbound.trust is not None:
        from gateway.security import wsse

        trust = inbound.trust
        verified = wsse.verify_envelope(root, trust, parts=wsse.REQUEST_PARTS, now=now,
                                        max_skew_seconds=inbound.clock_skew_seconds)
        _check_tls_matches_signer(trust, client_cert_der, verified.signer)
        payload, to, action, message_id = verified.payload, verified.to, verified.action, verified.message_id
        signature_value = verified.signature_value
    else:
        payload, to, action, msg_id = env.payload, env.to, env.action, env.message_id
        message_id = msg_id or ""
    _check_addressing(inbound, to, action, message_id)
    _check_oins(inbound, to, _from_address(env))
    return _Checked(payload=payload, message_id=message_id, signature_value=signature_value)


def _check_tls_matches_signer(trust: object, client_cert_der: bytes | None, signer: object) -> None:
    if client_cert_der is None:
        raise CertificateRefused("no TLS client certificate was presented", partner="ind", stage="receiving")
    if not trust.matches(client_cert_der):  # type: ignore[attr-defined]
        raise CertificateRefused("the TLS client certificate is not IND's", partner="ind", stage="receiving")
    if not trust.matches(trust.der_of(signer)):  # type: ignore[attr-defined]
        raise CertificateRefused("the signing certificate is not IND's", partner="ind", stage="receiving")


def _check_addressing(inbound: Inbound, to: str | None, action: str | None, message_id: str | None) -> None:
    # The SOAPAction header was checked at the door (it equals OntvangMelding's action), so a
    # wsa:Action equal to that action matches it too.
    if action != codec.ACTION_ONTVANG:
        raise MalformedInput("wsa:Action is missing or not OntvangMelding's action", partner="ind")
    if not to:
        raise MalformedInput("wsa:To is missing", partner="ind")
    public = inbound.public_url
    if public and _without_oin(to) != _without_oin(public):
        raise MalformedInput("wsa:To is not this endpoint", partner="ind")
    if not message_id or not _UUID_URN.match(message_id):
        raise MalformedInput("wsa:MessageID must be urn:uuid: and a UUID", partner="ind")


def _check_oins(inbound: Inbound, to: str | None, sender: str | None) -> None:
    """WA001: an OIN in an address (the ``?OIN=`` convention) names the receiver in To, the sender in From."""
    their_oin = getattr(inbound.trust, "oin", None) if inbound.trust is not None else None
    to_oin = _oin_in(to)
    if to_oin is not None and inbound.own_oin and to_oin != inbound.own_oin:
        raise OinMismatch("the OIN in wsa:To is not this gateway's", code="OIN_TO", partner="ind")
    from_oin = _oin_in(sender)
    if from_oin is not None and their_oin and from_oin != their_oin:
        raise OinMismatch("the OIN in wsa:From is not IND's", code="OIN_FROM", partner="ind")


def _oin_in(address: str | None) -> str | None:
    if not address:
        return None
    values = parse_qs(urlsplit(address).query).get("OIN")
    return values[0] if values else None


def _without_oin(address: str | None) -> str | None:
    if not address:
        return address
    parts = urlsplit(address)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "OIN"]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _from_address(env: soap.Envelope) -> str | None:
    if env.header is None:
        return None
    return env.header.findtext(f"{{{soap.WSA_NS}}}From/{{{soap.WSA_NS}}}Address")


def verify_melding(payload: etree._Element, *, message_id: str | None = None,
                   signature_value: str | None = None) -> Verified:
    """Check (6): the Body against the XSD and the business rules; the notification, typed."""
    if payload.tag != f"{{{codec.IND_NS}}}VergunningMelding":
        raise SchemaInvalid("the Body does not hold an ind:VergunningMelding", partner="ind", stage="processing")
    xmlsafe.validate(payload, xmlsafe.IND_XSD, partner="ind")
    melding = codec.decode_melding(payload)
    for rule, text in codec.business_rules(melding):
        raise BusinessRuleViolated(text, rule=rule, partner="ind", message_id=melding.melding_id)
    if message_id is not None and message_id != f"urn:uuid:{melding.melding_id}":
        raise BusinessRuleViolated("wsa:MessageID does not equal meldingId", rule="MESSAGEID_MELDINGID",
                                   partner="ind", message_id=melding.melding_id)
    return Verified(melding=melding, digest=xmlsafe.sha256_b64(xmlsafe.exc_c14n(payload)), message_id=message_id,
                    signature_value=signature_value)


def ontvangst_id_for(melding_id: str) -> str:
    return str(uuid.uuid5(_ACK_NS, "ontvangst:" + melding_id))


def ack_envelope(own: Any | None, m: IndMelding, received: dt.datetime, digest: str, *,
                 confirm: str | None = None) -> bytes:
    """The (signed) SOAP response holding our Ontvangstbevestiging; stored, then sent.

    ``confirm`` is the request's SignatureValue: the answer's signed SignatureConfirmation (WB014).
    """
    body = codec.encode_ontvangstbevestiging(ontvangst_id_for(m.melding_id), m.melding_id,
                                             m.volgnummer, iso(received), digest)
    env = soap.build_envelope(body, to=ANONYMOUS, action=codec.ACTION_ONTVANG_RESPONSE,
                              message_id=f"urn:uuid:{uuid.uuid5(_ACK_NS, 'response:' + m.melding_id)}",
                              relates_to=f"urn:uuid:{m.melding_id}")
    return _signed(own, env, received, confirm)


def repeat_ack(own: Any | None, stored: bytes, verified: Verified, now: dt.datetime) -> bytes:
    """The answer to a repeated push (contracts revision 2): the stored Body, signed afresh.

    New Timestamp and MessageID, RelatesTo = this request's MessageID, and the SignatureConfirmation
    of this request. Unsigned (security off): the stored bytes, as before revision 2.
    """
    if own is None or verified.message_id is None:
        return stored
    payload = soap.split(xmlsafe.parse(stored)).payload
    env = soap.build_envelope(payload, to=ANONYMOUS, action=codec.ACTION_ONTVANG_RESPONSE,
                              message_id=f"urn:uuid:{uuid.uuid4()}", relates_to=verified.message_id)
    return _signed(own, env, now, verified.signature_value)


def _signed(own: Any | None, env: etree._Element, now: dt.datetime, confirm: str | None) -> bytes:
    if own is None:
        return etree.tostring(env, xml_declaration=True, encoding="utf-8")
    from gateway.security import wsse

    parts = wsse.CONFIRMED_RESPONSE_PARTS if confirm is not None else wsse.RESPONSE_PARTS
    return wsse.sign_envelope(env, own, parts=parts, now=now, confirm=confirm)
