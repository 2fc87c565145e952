"""IND's inbound endpoint: ``OntvangMelding`` (profile ind-wus), and the feed's intake.

The checks run in the contract's order: (1) parse safely within the size cap, (2-4) the
WS-Security signature, its placement, certificate and timestamp, (5) the TLS client certificate
belongs to the signer's partner, (6) the Body against the XSD and the business rules. Only then
is the notification stored, and only after the commit is the signed acknowledgement returned.
Notifications fetched with HaalMeldingen go through ``accept_melding``, the same checks from (6) on
and the same deduplication.

Before (1), at the HTTP door (``handle_request``): the contract's ``Content-Type: text/xml;
charset=utf-8`` and ``SOAPAction`` equal to OntvangMelding's action, or a ``MALFORMED`` fault
naming the header and the value received.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from lxml import etree

from adapters.ind import codec
from gateway.core.clock import iso
from gateway.core.errors import (
    BusinessRuleViolated,
    CertificateRefused,
    DuplicateDifferentContent,
    InboundRefused,
    MalformedInput,
    SchemaInvalid,
    StoreError,
)
from gateway.core.models import InburgeraarMelding, IndMelding
from gateway.core.store import InboundRecord
from gateway.routes import ind_to_duo as routes
from gateway.routes.common import Answer, Door, check_door, content_digest, refuse
from gateway.runtime import Runtime
from gateway.wire import soap, xmlsafe

__all__ = ["OPERATION", "DOOR", "handle_request", "handle_ontvang_melding", "accept_melding", "ack_envelope", "ontvangst_id_for"]

OPERATION = "OntvangMelding"
ROUTE = "ind-duo"
_UUID_URN = re.compile(r"^urn:uuid:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
_ACK_NS = uuid.UUID("5d0f3c1e-7a61-4b0e-9a43-2f7c0d6b9e11")
ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"
SOAP_CT = "text/xml; charset=utf-8"
#: The ind-wus profile's transport: POST, text/xml; charset=utf-8, SOAPAction = the operation's action.
DOOR = Door("ind", "text/xml", "utf-8", soap_action=codec.ACTION_ONTVANG)


@dataclass(frozen=True)
class _Checked:
    payload: etree._Element
    message_id: str


def handle_request(rt: Runtime, body: bytes, headers: Mapping[str, str], cert: bytes | None) -> Answer:
    """The HTTP door (``POST /ind/meldingen``): the request's headers are checked too."""
    return handle_ontvang_melding(rt, body, client_cert_der=cert, headers=headers)


def handle_ontvang_melding(rt: Runtime, body: bytes, *, client_cert_der: bytes | None,
                           headers: Mapping[str, str] | None = None) -> Answer:
    """One OntvangMelding request in, one HTTP answer out; every outcome is in the log.

    ``headers`` (lower-case names) are the HTTP request's; they are checked against the
    contract first. None: an in-process call with the bytes alone (replay of the delivery
    log, which keeps no headers), where there is no HTTP door to check.
    """
    received = rt.clock.now()
    record = InboundRecord(partner="ind", operation=OPERATION, raw=body, received_at=received.timestamp())
    try:
        if headers is not None:
            check_door(DOOR, headers)
        checked = _check_envelope(rt, body, client_cert_der, received)
        record = InboundRecord(partner="ind", operation=OPERATION, raw=body, received_at=received.timestamp(),
                               message_key=checked.message_id)
        return accept_melding(rt, checked.payload, record, received, message_id=checked.message_id)
    except InboundRefused as exc:
        return refuse(rt, record, exc, Answer(500, SOAP_CT, soap.fault(exc)))
    except StoreError:
        rt.log.error("store_unavailable", partner="ind", operation=OPERATION, stage="processing")
        return Answer(503, SOAP_CT, soap.fault(None, faultcode="soap:Server", code="UNAVAILABLE",
                                               message="temporarily unable to store; try again later"))


def _check_envelope(rt: Runtime, body: bytes, client_cert_der: bytes | None, now: dt.datetime) -> _Checked:
    root = xmlsafe.parse(body, max_bytes=rt.config.ind.max_message_bytes)
    env = soap.split(root)
    to: str | None
    action: str | None
    if rt.secure:
        from gateway.security import wsse

        trust = rt.trust["ind"]
        verified = wsse.verify_envelope(root, trust, parts=wsse.REQUEST_PARTS, now=now,
                                        max_skew_seconds=rt.config.ind.clock_skew_seconds)
        _check_tls_matches_signer(trust, client_cert_der, verified.signer)
        payload, to, action, message_id = verified.payload, verified.to, verified.action, verified.message_id
    else:
        payload, to, action, msg_id = env.payload, env.to, env.action, env.message_id
        message_id = msg_id or ""
    _check_addressing(rt, to, action, message_id)
    return _Checked(payload=payload, message_id=message_id)


def _check_tls_matches_signer(trust: object, client_cert_der: bytes | None, signer: object) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    if client_cert_der is None:
        raise CertificateRefused("no TLS client certificate was presented", partner="ind", stage="receiving")
    if not trust.matches(client_cert_der):  # type: ignore[attr-defined]
        raise CertificateRefused("the TLS client certificate is not IND's", partner="ind", stage="receiving")
    if not trust.matches(signer.public_bytes(Encoding.DER)):  # type: ignore[attr-defined]
        raise CertificateRefused("the signing certificate is not IND's", partner="ind", stage="receiving")


def _check_addressing(rt: Runtime, to: str | None, action: str | None, message_id: str | None) -> None:
    # The SOAPAction header was checked at the door (it equals OntvangMelding's action), so a
    # wsa:Action equal to that action matches it too.
    if action != codec.ACTION_ONTVANG:
        raise MalformedInput("wsa:Action is missing or not OntvangMelding's action", partner="ind")
    if not to:
        raise MalformedInput("wsa:To is missing", partner="ind")
    public = rt.config.listen.public_url
    if public and to != public:
        raise MalformedInput("wsa:To is not this endpoint", partner="ind")
    if not message_id or not _UUID_URN.match(message_id):
        raise MalformedInput("wsa:MessageID must be urn:uuid: and a UUID", partner="ind")


def accept_melding(rt: Runtime, payload: etree._Element, record: InboundRecord, received: dt.datetime,
                   *, message_id: str | None = None) -> Answer:
    """Check (6), deduplicate, translate, store; return the signed acknowledgement."""
    if payload.tag != f"{{{codec.IND_NS}}}VergunningMelding":
        raise SchemaInvalid("the Body does not hold an ind:VergunningMelding", partner="ind", stage="processing")
    xmlsafe.validate(payload, xmlsafe.IND_XSD, partner="ind")
    melding = codec.decode_melding(payload)
    for rule, text in codec.business_rules(melding):
        raise BusinessRuleViolated(text, rule=rule, partner="ind", message_id=melding.melding_id)
    if message_id is not None and message_id != f"urn:uuid:{melding.melding_id}":
        raise BusinessRuleViolated("wsa:MessageID does not equal meldingId", rule="MESSAGEID_MELDINGID",
                                   partner="ind", message_id=melding.melding_id)
    # meldingDigest (for the acknowledgement) is over the element as received; deduplication
    # compares content, since the same notification may come with other namespace prefixes
    # (pushed through zeep, fetched through the feed).
    digest = xmlsafe.sha256_b64(xmlsafe.exc_c14n(payload))
    content = content_digest(melding)
    record = InboundRecord(partner=record.partner, operation=record.operation, raw=record.raw,
                           received_at=record.received_at, channel=record.channel,
                           message_key=melding.melding_id, content_digest=content)
    known = rt.store.lookup(ROUTE, melding.melding_id)
    if known is None:
        duo, delivery = routes.inburgeraarmelding_delivery(rt, melding, received)
        ack = ack_envelope(rt, melding, received, digest)
        result = rt.store.accept(
            route=ROUTE, kind="VergunningMelding", message_key=melding.melding_id, content_digest=content,
            inbound=record, ack=ack, facts=routes.melding_facts(melding, duo), person=routes.melding_person(melding),
            deliveries=[delivery], sequence=(melding.volgnummer, melding.melding_id),
            events=[("receiving", "received", {"channel": record.channel}),
                    ("processing", "validated", None),
                    ("processing", "translated", {"berichtId": duo.bericht_id, "regel": duo.beoordeling.regel,
                                                  "plichtIndicatie": duo.beoordeling.plicht_indicatie})])
        if result.kind == "accepted":
            _after_accept(rt, melding, duo, record.channel)
    else:
        from gateway.core.store import AcceptResult

        result = AcceptResult("repeat" if known[1] == content else "conflict", known[0], known[2])
        if result.kind == "repeat":
            rt.store.log_inbound(record, "repeat", response_status=200, response_body=known[2],
                                 message_id=known[0])
    if result.kind == "conflict":
        raise DuplicateDifferentContent("meldingId was used before for different content",
                                        partner="ind", message_id=melding.melding_id)
    outcome = "accepted" if result.kind == "accepted" else "repeat"
    rt.metrics.inbound.labels("ind", OPERATION, outcome, "").inc()
    rt.log.info("inbound", partner="ind", operation=OPERATION, message_id=melding.melding_id,
                outcome=outcome, stage="receiving", channel=record.channel)
    return Answer(200, SOAP_CT, result.ack or b"")


def _after_accept(rt: Runtime, melding: IndMelding, duo: InburgeraarMelding, channel: str) -> None:
    rt.notify("duo")
    delay = duo.levering.vertraging_dagen
    if delay > 0:
        # Loud at once: DUO must extend this person's integration term by the delay.
        rt.metrics.late.inc()
        rt.metrics.late_days.observe(delay)
        rt.log.warning("late_notification", partner="ind", message_id=melding.melding_id,
                       vertraging_dagen=delay, stage="processing", channel=channel)


def ontvangst_id_for(melding_id: str) -> str:
    return str(uuid.uuid5(_ACK_NS, "ontvangst:" + melding_id))


def ack_envelope(rt: Runtime, m: IndMelding, received: dt.datetime, digest: str) -> bytes:
    """The (signed) SOAP response holding our Ontvangstbevestiging; stored, then sent."""
    body = codec.encode_ontvangstbevestiging(ontvangst_id_for(m.melding_id), m.melding_id,
                                             m.volgnummer, iso(received), digest)
    env = soap.build_envelope(body, to=ANONYMOUS, action=codec.ACTION_ONTVANG_RESPONSE,
                              message_id=f"urn:uuid:{uuid.uuid5(_ACK_NS, 'response:' + m.melding_id)}",
                              relates_to=f"urn:uuid:{m.melding_id}")
    if rt.own is None:
        return etree.tostring(env, xml_declaration=True, encoding="utf-8")
    from gateway.security import wsse

    return wsse.sign_envelope(env, rt.own, parts=wsse.RESPONSE_PARTS, now=received)
