"""Route ``duo-cjib``: DUO's claim hand-over -> a CJIB ``Vordering``, and CJIB's answer -> DUO.

- Intake: ``POST /duo/v1/vorderingen`` (``VorderingOverdracht``), checked by ``adapters/duo/server.py``
  (certificate, signature, XSD, Idempotency-Key, CJIB's business rules: a claim CJIB would refuse
  is refused at once, never forwarded).
- Then: deduplication on ``vorderingId``, the mapping (``gateway/mapping/duo_to_cjib.py``), one
  commit holding the claim, the signed acknowledgement and the CJIB delivery; only then the answer.
- Delivery: the outbox workers send the ``Vordering`` to CJIB (``adapters/cjib/client.py``).
- Follow-ups (``follow_up``, run by the CJIB worker in the commit that records CJIB's answer):
  when CJIB accepts a claim (201), DUO gets a ``VorderingStatus`` IN_BEHANDELING_BIJ_CJIB with the
  ``zaaknummer``; when CJIB refuses it (400), DUO gets AFGEWEZEN_DOOR_CJIB with CJIB's errors as
  ``fout`` and the claim's delivery ends as ``refused`` (not dead: the refusal reached DUO); 422
  (the id was used for another claim) goes to the dead letters with an alarm.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from adapters.cjib import codec as cjib_codec
from adapters.cjib import errors as cjib_errors
from adapters.duo import server as duo_server
from gateway.core.adapter import Delivery, Outcome
from gateway.core.clock import iso
from gateway.core.errors import DuplicateDifferentContent, InboundRefused, StoreError
from gateway.core.models import DuoOntvangstbevestiging, VorderingOverdracht
from gateway.core.observability import log_store_error
from gateway.core.store import InboundRecord, NewDelivery
from gateway.delivery.outbox import FollowUp
from gateway.mapping import cjib_to_duo, duo_to_cjib
from gateway.routes.cjib_to_duo import status_delivery
from gateway.routes.common import content_digest, record_refusal, sign_duo
from gateway.runtime import Runtime
from gateway.wire.server import Answer

__all__ = ["ROUTE", "OPERATION", "handle_request", "handle_vorderingoverdracht", "follow_up", "cjib_outcome"]

ROUTE = "duo-cjib"
OPERATION = duo_server.OPERATION
MEDIA = duo_server.MEDIA


# ---------------------------------------------------------------- intake


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

    def sign(element: object) -> bytes:
        return sign_duo(rt, element)

    def accept(verified: duo_server.Verified) -> Answer:
        return _accept(rt, verified.vordering, verified.digest, record, received)

    def refused(exc: InboundRefused, answer: Answer) -> Answer:
        record_refusal(rt, record, exc, status=answer.status, body=answer.body)
        return answer

    inbound = duo_server.Inbound(max_message_bytes=rt.config.cjib.max_message_bytes,
                                 trust=rt.trust.get("duo") if rt.secure else None, secure=rt.secure)
    try:
        return duo_server.handle_vorderingoverdracht(body, headers, cert, inbound=inbound, now=received, sign=sign,
                                                     accept=accept, refused=refused, door=door)
    except StoreError as exc:
        log_store_error(rt.log, exc, partner="duo", operation=OPERATION, stage="processing")
        return duo_server.unavailable_answer()


def _accept(rt: Runtime, v: VorderingOverdracht, digest: str, record: InboundRecord,
            received: dt.datetime) -> Answer:
    content = content_digest(v)
    record = InboundRecord(partner="duo", operation=OPERATION, raw=record.raw, received_at=record.received_at,
                           message_key=v.vordering_id, content_digest=content)
    known = rt.store.lookup(ROUTE, v.vordering_id)
    if known is not None:
        if known[1] == content:
            rt.store.log_inbound(record, "repeat", response_status=200, response_body=known[2], message_id=known[0])
            return Answer(200, MEDIA, known[2] or b"")
        return _conflict(rt, record, v, received, digest)
    ack = duo_server.ack_answer(lambda e: sign_duo(rt, e), 200, DuoOntvangstbevestiging(
        bericht_id=v.vordering_id, status="ONTVANGEN", ontvangen_op=iso(received), bericht_digest=digest,
        kenmerk=duo_server.kenmerk_for(v.vordering_id))).body
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
    answer = duo_server.conflict_answer(lambda e: sign_duo(rt, e), v, received, digest)
    record_refusal(rt, record, DuplicateDifferentContent(partner="duo", message_id=v.vordering_id),
                   status=409, body=answer.body)
    rt.metrics.alarms.labels("duo", "IDEMPOTENCY_CONFLICT").inc()
    return answer


# ---------------------------------------------------------------- follow-ups of CJIB's answer


def follow_up(rt: Runtime) -> FollowUp:
    def after_cjib(delivery: Delivery, outcome: Outcome) -> tuple[list[NewDelivery], bool]:
        if delivery.operation != "Vordering":
            return [], False
        vordering_id = delivery.idempotency_key
        peilmoment = iso(rt.clock.now())
        if outcome.kind == "success" and outcome.receipt:
            ontvangst = cjib_codec.decode_ontvangst(outcome.receipt)
            return [status_delivery(rt, cjib_to_duo.from_ontvangst(vordering_id, ontvangst, peilmoment))], False
        if outcome.kind == "permanent" and outcome.extra.get("refused"):
            errors = list(outcome.extra.get("errors") or [])  # type: ignore[call-overload]
            return [status_delivery(rt, cjib_to_duo.from_refusal(vordering_id, errors, peilmoment))], True
        return [], False

    return after_cjib


def cjib_outcome(status: int, headers: dict[str, str], body: bytes) -> Outcome:
    """CJIB's answer to a claim, classified as the CJIB sender does (for replay)."""
    return cjib_errors.classify(status, headers, body)
