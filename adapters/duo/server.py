"""DUO's inbound endpoint: ``POST /duo/v1/vorderingen`` takes a ``VorderingOverdracht`` (duo-xml).

Order of checks: size and safe parsing; the TLS client certificate is DUO's; the enveloped
signature verifies with DUO's pinned certificate; the XSD; ``Idempotency-Key`` equals
``vorderingId``; CJIB's business rules (a claim CJIB would refuse is refused here, at once, with
a ``fout`` per broken rule, and never forwarded). Only then is the typed, verified claim handed
to ``accept``, the handler the core passes in (``gateway/routes/duo_to_cjib.py``: deduplication,
the claim stored with its CJIB delivery in one commit, then the signed acknowledgement).
This module decides nothing about routes and knows no store.

Before all of that, at the HTTP door (``door=True``): the contract's ``Content-Type:
application/xml; charset=utf-8``, or 400 ``AFGEWEZEN`` with ``fout`` ``MALFORMED`` naming the
header and the value received.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lxml import etree

from adapters.duo import codec
from gateway.core.clock import AMS, iso
from gateway.core.errors import (
    BusinessRuleViolated,
    InboundRefused,
    SchemaInvalid,
)
from gateway.core.models import DuoOntvangstbevestiging, Fout, VorderingOverdracht
from gateway.wire import xmlsafe
from gateway.wire.door import Door, check_door
from gateway.wire.server import Answer

__all__ = ["handle_vorderingoverdracht", "OPERATION", "MEDIA", "DOOR", "Inbound", "Verified", "Sign", "ack_answer",
           "conflict_answer", "kenmerk_for", "unavailable_answer"]

OPERATION = "VorderingOverdracht"
#: The duo-xml profile's transport: POST, application/xml; charset=utf-8.
DOOR = Door("duo", "application/xml", "utf-8")
MEDIA = DOOR.content_type  # our answers are sent as the requests must be
_KENMERK_NS = uuid.UUID("8e3c2a71-4f0d-4c55-b1a2-6d9e0f7a3b24")


@dataclass(frozen=True)
class Inbound:
    """What the endpoint needs to know, handed over by the core."""

    max_message_bytes: int
    #: DUO's PartnerTrust; None when security is off.
    trust: Any | None
    secure: bool


@dataclass(frozen=True)
class Verified:
    """A claim that passed every check of the profile."""

    vordering: VorderingOverdracht
    #: berichtDigest (for the acknowledgement).
    digest: str


#: sign(element) -> the bytes to send: DUO XSD-checked and, with security on, signed by us.
Sign = Callable[[etree._Element], bytes]
#: accept(verified) -> the answer.
Accept = Callable[[Verified], Answer]
#: refused(error, answer) -> the answer to send, after the core recorded the refusal.
Refused = Callable[[InboundRefused, Answer], Answer]


class _Refused(InboundRefused):
    """The claim is refused with one or more ``fout``."""

    def __init__(self, fouten: list[Fout], code: str) -> None:
        super().__init__(", ".join(f.code for f in fouten), stage="processing")
        self.fouten = fouten
        self.code = code


def handle_vorderingoverdracht(body: bytes, headers: Mapping[str, str], cert: bytes | None, *, inbound: Inbound,
                               now: dt.datetime, sign: Sign, accept: Accept, refused: Refused,
                               door: bool) -> Answer:
    """One hand-over in, one HTTP answer out: checked here, stored by ``accept``.

    ``door``: an HTTP request (``POST /duo/v1/vorderingen``), whose Content-Type is checked too;
    False for an in-process call (replay of the delivery log, which keeps no Content-Type).
    """
    root: etree._Element | None = None
    try:
        if inbound.secure and inbound.trust is not None:
            # The TLS client certificate first (pin, DUO's OIN, revocation), before any byte is parsed.
            inbound.trust.check_peer(cert, now)
        if door:
            check_door(DOOR, headers)
        root = xmlsafe.parse(body, max_bytes=inbound.max_message_bytes)
        v = _check(inbound, root, headers, cert, now)
        return accept(Verified(vordering=v, digest=_digest(root)))
    except InboundRefused as exc:
        fouten = getattr(exc, "fouten", None) or [Fout(exc.code, exc.message, exc.path)]
        answer = ack_answer(sign, 400, _refusal(root, headers.get("idempotency-key"), body, now, fouten))
        return refused(exc, answer)


def unavailable_answer() -> Answer:
    return Answer(503, "application/problem+json",
                  b'{"type":"about:blank","title":"temporarily unable to store","status":503}',
                  (("Retry-After", "5"),))


def _check(inbound: Inbound, root: etree._Element, headers: Mapping[str, str], cert: bytes | None,
           now: dt.datetime) -> VorderingOverdracht:
    if root.tag != f"{{{codec.DUO_NS}}}VorderingOverdracht":
        raise SchemaInvalid("the message is not a duo:VorderingOverdracht", partner="duo")
    if inbound.secure:
        from gateway.security import xmldsig

        trust: Any = inbound.trust
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


def kenmerk_for(vordering_id: str) -> str:
    return "GW-" + str(uuid.uuid5(_KENMERK_NS, vordering_id))[:18]


def conflict_answer(sign: Sign, v: VorderingOverdracht, received: dt.datetime, digest: str) -> Answer:
    """409: the vorderingId was used before for another claim."""
    fout = Fout("DUPLICAAT_MET_ANDERE_INHOUD", "vorderingId was used before for another claim",
                "/VorderingOverdracht/vorderingId")
    return ack_answer(sign, 409, DuoOntvangstbevestiging(bericht_id=v.vordering_id, status="AFGEWEZEN",
                                                         ontvangen_op=iso(received), bericht_digest=digest,
                                                         fouten=(fout,)))


def _digest(root: etree._Element | None) -> str:
    if root is None:
        return xmlsafe.sha256_b64(b"")
    from gateway.security import xmldsig

    return xmldsig.message_digest(root)


def _refusal(root: etree._Element | None, message_key: str | None, raw: bytes, received: dt.datetime,
             fouten: list[Fout]) -> DuoOntvangstbevestiging:
    key = message_key or ""
    bericht_id = key if _is_uuid(key) else "00000000-0000-0000-0000-000000000000"
    digest = _digest(root) if root is not None else xmlsafe.sha256_b64(raw)
    return DuoOntvangstbevestiging(bericht_id=bericht_id, status="AFGEWEZEN", ontvangen_op=iso(received),
                                   bericht_digest=digest, fouten=tuple(fouten[:100]))


def ack_answer(sign: Sign, status: int, ack: DuoOntvangstbevestiging) -> Answer:
    return Answer(status, MEDIA, sign(codec.encode_ontvangstbevestiging(ack)))


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False
