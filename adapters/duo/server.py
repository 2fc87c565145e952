"""DUO's inbound endpoint: ``POST /duo/v1/vorderingen`` takes a ``VorderingOverdracht`` (duo-xml).

Order of checks: size and safe parsing; the TLS client certificate is DUO's; the enveloped
signature verifies with DUO's pinned certificate; the XSD; ``Idempotency-Key`` equals
``vorderingId``; CJIB's business rules (a claim CJIB would refuse is refused here, at once, with
a ``fout`` per broken rule, and never forwarded). Then deduplication on ``vorderingId``, the
claim stored with its CJIB delivery in one commit, and only then the signed acknowledgement.

Before all of that, at the HTTP door (``handle_request``): the contract's ``Content-Type:
application/xml; charset=utf-8``, or 400 ``AFGEWEZEN`` with ``fout`` ``MALFORMED`` naming the
header and the value received.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping

from lxml import etree

from adapters.duo import codec
from gateway.core.clock import AMS, iso
from gateway.core.errors import (
    BusinessRuleViolated,
    CertificateRefused,
    InboundRefused,
    SchemaInvalid,
    StoreError,
)
from gateway.core.models import DuoOntvangstbevestiging, Fout, VorderingOverdracht
from gateway.core.store import InboundRecord, NewDelivery
from gateway.mapping import duo_to_cjib
from gateway.routes import ind_to_duo as routes
from gateway.routes.common import Answer, Door, check_door, content_digest, record_refusal
from gateway.runtime import Runtime
from gateway.wire import xmlsafe

__all__ = ["handle_request", "handle_vorderingoverdracht", "OPERATION", "ROUTE", "DOOR"]

OPERATION = "VorderingOverdracht"
ROUTE = "duo-cjib"
MEDIA = "application/xml; charset=utf-8"
#: The duo-xml profile's transport: POST, application/xml; charset=utf-8.
DOOR = Door("duo", "application/xml", "utf-8")
_KENMERK_NS = uuid.UUID("8e3c2a71-4f0d-4c55-b1a2-6d9e0f7a3b24")


class _Refused(InboundRefused):
    """The claim is refused with one or more ``fout``."""

    def __init__(self, fouten: list[Fout], code: str) -> None:
        super().__init__(", ".join(f.code for f in fouten), stage="processing")
        self.fouten = fouten
        self.code = code


def handle_request(rt: Runtime, body: bytes, headers: Mapping[str, str], cert: bytes | None) -> Answer:
    """The HTTP door (``POST /duo/v1/vorderingen``): the request's Content-Type is checked too."""
    return _handle(rt, body, headers, cert, door=True)


def handle_vorderingoverdracht(rt: Runtime, body: bytes, headers: Mapping[str, str], cert: bytes | None) -> Answer:
    """In-process (replay of the delivery log, which keeps no Content-Type): no HTTP door to check."""
    return _handle(rt, body, headers, cert, door=False)


def _handle(rt: Runtime, body: bytes, headers: Mapping[str, str], cert: bytes | None, *, door: bool) -> Answer:
    received = rt.clock.now()
    record = InboundRecord(partner="duo", operation=OPERATION, raw=body, received_at=received.timestamp(),
                           message_key=headers.get("idempotency-key"))
    root: etree._Element | None = None
    try:
        if door:
            check_door(DOOR, headers)
        root = xmlsafe.parse(body, max_bytes=rt.config.cjib.max_message_bytes)
        v = _check(rt, root, headers, cert, received)
        return _accept(rt, root, v, record, received)
    except InboundRefused as exc:
        fouten = getattr(exc, "fouten", None) or [Fout(exc.code, exc.message, exc.path)]
        answer = _answer(rt, 400, _refusal(rt, root, record, received, fouten))
        record_refusal(rt, record, exc, status=400, body=answer.body)
        return answer
    except StoreError:
        rt.log.error("store_unavailable", partner="duo", operation=OPERATION, stage="processing")
        return Answer(503, "application/problem+json",
                      b'{"type":"about:blank","title":"temporarily unable to store","status":503}',
                      (("Retry-After", "5"),))


def _check(rt: Runtime, root: etree._Element, headers: Mapping[str, str], cert: bytes | None,
           now: dt.datetime) -> VorderingOverdracht:
    if root.tag != f"{{{codec.DUO_NS}}}VorderingOverdracht":
        raise SchemaInvalid("the message is not a duo:VorderingOverdracht", partner="duo")
    if rt.secure:
        from gateway.security import xmldsig

        trust = rt.trust["duo"]
        if cert is None or not trust.matches(cert):
            raise CertificateRefused("the TLS client certificate is not DUO's", partner="duo", stage="receiving")
        xmldsig.verify_enveloped(root, trust, now=now)
    xmlsafe.validate(root, xmlsafe.DUO_XSD, partner="duo")
    v = codec.decode_vorderingoverdracht(root)
    if headers.get("idempotency-key") != v.vordering_id:
        raise BusinessRuleViolated("Idempotency-Key does not equal vorderingId", rule="IDEMPOTENCY_KEY",
                                   partner="duo", message_id=v.vordering_id)
    fouten = codec.vordering_rules(v, now.astimezone(AMS).date())
    if fouten:
        raise _Refused(list(fouten), "BUSINESS_RULE")
    return v


def _accept(rt: Runtime, root: etree._Element, v: VorderingOverdracht, record: InboundRecord,
            received: dt.datetime) -> Answer:
    digest = _digest(rt, root)
    content = content_digest(v)
    record = InboundRecord(partner="duo", operation=OPERATION, raw=record.raw, received_at=record.received_at,
                           message_key=v.vordering_id, content_digest=content)
    known = rt.store.lookup(ROUTE, v.vordering_id)
    if known is not None:
        if known[1] == content:
            rt.store.log_inbound(record, "repeat", response_status=200, response_body=known[2], message_id=known[0])
            return Answer(200, MEDIA, known[2] or b"")
        return _conflict(rt, record, v, received, digest)
    ack = _answer(rt, 200, DuoOntvangstbevestiging(
        bericht_id=v.vordering_id, status="ONTVANGEN", ontvangen_op=iso(received), bericht_digest=digest,
        kenmerk="GW-" + str(uuid.uuid5(_KENMERK_NS, v.vordering_id))[:18])).body
    body = duo_to_cjib.encode_body(duo_to_cjib.to_cjib_vordering(v))
    result = rt.store.accept(
        route=ROUTE, kind=OPERATION, message_key=v.vordering_id, content_digest=content, inbound=record, ack=ack,
        facts={"vorderingId": v.vordering_id, "soortVordering": v.soort_vordering,
               "bedragInCenten": v.bedrag_in_centen, "beschikking": v.beschikking_kenmerk},
        person={"bsn": v.debiteur.bsn, "vNummer": v.debiteur.v_nummer,
                "naam": " ".join(x for x in (v.debiteur.voornamen, v.debiteur.voorvoegsel,
                                             v.debiteur.geslachtsnaam) if x),
                "geboortedatum": v.debiteur.geboortedatum.isoformat()},
        deliveries=[NewDelivery("cjib", "Vordering", v.vordering_id, body)],
        events=[("receiving", "received", None), ("processing", "validated", None),
                ("processing", "translated", {"to": "cjib Vordering"})])
    if result.kind == "conflict":
        return _conflict(rt, record, v, received, digest)
    if result.kind == "accepted":
        rt.notify("cjib")
    rt.metrics.inbound.labels("duo", OPERATION, result.kind, "").inc()
    rt.log.info("inbound", partner="duo", operation=OPERATION, message_id=v.vordering_id, outcome=result.kind,
                stage="receiving")
    return Answer(200, MEDIA, result.ack or b"")


def _conflict(rt: Runtime, record: InboundRecord, v: VorderingOverdracht, received: dt.datetime,
              digest: str) -> Answer:
    fout = Fout("DUPLICAAT_MET_ANDERE_INHOUD", "vorderingId was used before for another claim",
                "/VorderingOverdracht/vorderingId")
    answer = _answer(rt, 409, DuoOntvangstbevestiging(bericht_id=v.vordering_id, status="AFGEWEZEN",
                                                     ontvangen_op=iso(received), bericht_digest=digest,
                                                     fouten=(fout,)))
    from gateway.core.errors import DuplicateDifferentContent

    record_refusal(rt, record, DuplicateDifferentContent(partner="duo", message_id=v.vordering_id),
                   status=409, body=answer.body)
    rt.metrics.alarms.labels("duo", "IDEMPOTENCY_CONFLICT").inc()
    return answer


def _digest(rt: Runtime, root: etree._Element | None) -> str:
    if root is None:
        return xmlsafe.sha256_b64(b"")
    from gateway.security import xmldsig

    return xmldsig.message_digest(root)


def _refusal(rt: Runtime, root: etree._Element | None, record: InboundRecord, received: dt.datetime,
             fouten: list[Fout]) -> DuoOntvangstbevestiging:
    key = record.message_key or ""
    bericht_id = key if _is_uuid(key) else "00000000-0000-0000-0000-000000000000"
    digest = _digest(rt, root) if root is not None else xmlsafe.sha256_b64(record.raw)
    return DuoOntvangstbevestiging(bericht_id=bericht_id, status="AFGEWEZEN", ontvangen_op=iso(received),
                                   bericht_digest=digest, fouten=tuple(fouten[:100]))


def _answer(rt: Runtime, status: int, ack: DuoOntvangstbevestiging) -> Answer:
    return Answer(status, MEDIA, routes.sign_duo(rt, codec.encode_ontvangstbevestiging(ack)))


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False
