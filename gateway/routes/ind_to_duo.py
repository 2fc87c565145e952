"""Route ``ind-duo``: an IND notification -> a DUO ``InburgeraarMelding``, the whole story.

- Intake: a push (``OntvangMelding``, checked by ``adapters/ind/server.py``) or a notification
  fetched from IND's feed (``fetch_from``: the gap catch-up and the reconciliation jobs, which
  the daemon registers with the feed client it made).
- Then: deduplication on meldingId (content, not spelling), the rule set's verdict and the
  mapping (``gateway/mapping/ind_to_duo.py``), one commit holding the notification, its facts,
  the signed acknowledgement and the DUO delivery; only then the acknowledgement is answered.
- Delivery: the outbox workers send the ``InburgeraarMelding`` to DUO (``adapters/duo/client.py``).
- Follow-ups: a late notification is counted and logged at once; a rule-set roll-out re-evaluates
  stored notifications (``decode_raw``) and queues a CORRECTIE per changed person on route
  ``rules-duo`` (``queue_correction``, called by ``gateway/rules/rollout.py``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from lxml import etree

from adapters.duo import codec as duo_codec
from adapters.ind import codec as ind_codec
from adapters.ind import server as ind_server
from gateway.core.clock import AMS
from gateway.core.errors import DuplicateDifferentContent, InboundRefused, StoreError
from gateway.core.models import InburgeraarMelding, IndMelding
from gateway.core.observability import log_store_error
from gateway.core.store import AcceptResult, InboundRecord, NewDelivery
from gateway.mapping import ind_to_duo
from gateway.routes.common import content_digest, record_refusal, refuse, sign_duo
from gateway.runtime import Runtime
from gateway.wire import soap, xmlsafe
from gateway.wire.server import Answer

__all__ = ["ROUTE", "OPERATION", "handle_request", "handle_ontvang_melding", "check_push", "accept_melding", "accept_verified", "prepare", "Prepared", "fetch_from",
           "ind_catch_up", "ind_reconcile", "inburgeraarmelding_delivery", "melding_facts", "melding_person",
           "decode_raw", "queue_correction", "CORRECTION_ROUTE"]

ROUTE = "ind-duo"
#: The corrections after a rule-set roll-out travel on their own route.
CORRECTION_ROUTE = "rules-duo"
OPERATION = ind_server.OPERATION


# ---------------------------------------------------------------- intake: the push


def _inbound(rt: Runtime) -> ind_server.Inbound:
    return ind_server.Inbound(max_message_bytes=rt.config.ind.max_message_bytes,
                              clock_skew_seconds=rt.config.ind.clock_skew_seconds,
                              public_url=rt.config.listen.public_url,
                              trust=rt.trust.get("ind") if rt.secure else None, own_oin=rt.config.tls.oin)


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

    def record(message_key: str | None) -> InboundRecord:
        return InboundRecord(partner="ind", operation=OPERATION, raw=body, received_at=received.timestamp(),
                             message_key=message_key)

    def accept(verified: ind_server.Verified) -> Answer:
        return accept_verified(rt, verified, record(verified.message_id), received)

    def refused(exc: InboundRefused, message_key: str | None, answer: Answer) -> Answer:
        return refuse(rt, record(message_key), exc, answer)

    try:
        return ind_server.handle_ontvang_melding(body, inbound=_inbound(rt), now=received,
                                                 client_cert_der=client_cert_der, headers=headers,
                                                 accept=accept, refused=refused)
    except StoreError as exc:
        log_store_error(rt.log, exc, partner="ind", operation=OPERATION, stage="processing")
        return ind_server.unavailable_answer(ind_server.request_message_id(body, rt.config.ind.max_message_bytes))


def check_push(rt: Runtime, body: bytes, *, client_cert_der: bytes | None,
               now: dt.datetime) -> ind_server.Verified | None:
    """What ``handle_ontvang_melding`` makes of a push before its store part (``accept_verified``),
    every check on as configured in ``rt``; None when it refuses the push. Touches no store: replay
    runs it in worker processes (``gateway.archive.replay.prechecks``)."""
    passed: list[ind_server.Verified] = []

    def accept(verified: ind_server.Verified) -> Answer:
        passed.append(verified)
        return Answer(200, ind_server.SOAP_CT, b"")

    ind_server.handle_ontvang_melding(body, inbound=_inbound(rt), now=now, client_cert_der=client_cert_der,
                                      headers=None, accept=accept, refused=lambda exc, key, answer: answer)
    return passed[0] if passed else None


# ---------------------------------------------------------------- intake: one commit


def accept_melding(rt: Runtime, payload: etree._Element, record: InboundRecord, received: dt.datetime,
                   *, message_id: str | None = None) -> Answer:
    """Check (6), deduplicate, translate, store; return the signed acknowledgement."""
    return accept_verified(rt, ind_server.verify_melding(payload, message_id=message_id), record, received)


@dataclasses.dataclass(frozen=True)
class Prepared:
    """What ``accept_verified`` makes of a checked notification without the store: its content
    digest and, should it be new, its facts and person, the DUO delivery and the acknowledgement.
    (The facts rather than the DUO message itself: they are all the store part reads of it, and
    replay sends this between processes.)"""

    content: str
    facts: dict[str, Any]
    person: dict[str, Any]
    delivery: NewDelivery
    ack: bytes
    #: The rule set that made the assessment in ``facts`` and the DUO message (``RuleSet.version``).
    ruleset: str


def prepare(rt: Runtime, verified: ind_server.Verified, received: dt.datetime,
            ruleset: Any | None = None) -> Prepared:
    """The store-free part of ``accept_verified``, with ``ruleset`` (default: ``rt.ruleset``).
    Replay makes it in its worker processes (``gateway.archive.replay.prechecks``)."""
    ruleset = ruleset or rt.ruleset
    return Prepared(content_digest(verified.melding), *_new_message(rt, verified, received, ruleset),
                    ruleset=ruleset.version)


def _new_message(rt: Runtime, verified: ind_server.Verified, received: dt.datetime,
                 ruleset: Any) -> tuple[dict[str, Any], dict[str, Any], NewDelivery, bytes]:
    """(facts, person, DUO delivery, acknowledgement) of a new notification."""
    melding = verified.melding
    duo, delivery = inburgeraarmelding_delivery(rt, melding, received, ruleset)
    ack = ind_server.ack_envelope(rt.own, melding, received, verified.digest, confirm=verified.signature_value)
    return melding_facts(melding, duo), melding_person(melding), delivery, ack


def accept_verified(rt: Runtime, verified: ind_server.Verified, record: InboundRecord,
                    received: dt.datetime, prepared: Prepared | None = None) -> Answer:
    """Deduplicate, translate, store in one commit; return the signed acknowledgement.

    ``prepared``: ``prepare``'s result for this notification, ``rt`` and ``received``, made
    beforehand (by replay, in a worker); the caller vouches that it is what ``prepare`` would
    make now.
    """
    melding = verified.melding
    # Deduplication compares content, since the same notification may come with other namespace
    # prefixes (pushed through zeep, fetched through the feed).
    content = prepared.content if prepared is not None else content_digest(melding)
    record = InboundRecord(partner=record.partner, operation=record.operation, raw=record.raw,
                           received_at=record.received_at, channel=record.channel,
                           message_key=melding.melding_id, content_digest=content)
    known = rt.store.lookup(ROUTE, melding.melding_id)
    if known is None:
        facts, person, delivery, ack = ((prepared.facts, prepared.person, prepared.delivery, prepared.ack)
                                        if prepared is not None else _new_message(rt, verified, received, rt.ruleset))
        # An idle DUO worker of this process is reserved and the delivery stored leased to it, in
        # this commit: it sends at once, without a claim transaction of its own.
        lease = rt.reserve(delivery.partner)
        result = None
        try:
            result = rt.store.accept(
                route=ROUTE, kind="VergunningMelding", message_key=melding.melding_id, content_digest=content,
                inbound=record, ack=ack, facts=facts, person=person,
                deliveries=[delivery], sequence=(melding.volgnummer, melding.melding_id), lease=lease,
                events=[("receiving", "received", {"channel": record.channel}),
                        ("processing", "validated", None),
                        ("processing", "translated", {k: facts[k] for k in ("berichtId", "regel", "plichtIndicatie")})])
        finally:
            if lease is not None:
                rt.hand(lease, result.leased if result is not None else None)
        if result.kind == "accepted":
            _after_accept(rt, melding, facts["vertragingDagen"], record.channel, handed=result.leased is not None)
    else:
        result = AcceptResult("repeat" if known[1] == content else "conflict", known[0], known[2])
    if result.kind == "conflict":
        raise DuplicateDifferentContent("meldingId was used before for different content",
                                        partner="ind", message_id=melding.melding_id)
    answer = result.ack or b""
    if result.kind == "repeat":
        # Revision 2: a repeat gets the first answer's Body, signed afresh for this request.
        answer = ind_server.repeat_ack(rt.own, answer, verified, received)
    if known is not None:
        rt.store.log_inbound(record, "repeat", response_status=200, response_body=answer, message_id=known[0])
    outcome = "accepted" if result.kind == "accepted" else "repeat"
    rt.metrics.inbound.labels("ind", OPERATION, outcome, "").inc()
    rt.log.info("inbound", partner="ind", operation=OPERATION, message_id=melding.melding_id,
                outcome=outcome, stage="receiving", channel=record.channel)
    return Answer(200, ind_server.SOAP_CT, answer)


def _after_accept(rt: Runtime, melding: IndMelding, delay: int, channel: str, *, handed: bool = False) -> None:
    if not handed:  # a delivery handed to a worker needs no ring
        rt.notify("duo")
    if delay > 0:
        # Loud at once: DUO must extend this person's integration term by the delay.
        rt.metrics.late.inc()
        rt.metrics.late_days.observe(delay)
        rt.log.warning("late_notification", partner="ind", message_id=melding.melding_id,
                       vertraging_dagen=delay, stage="processing", channel=channel)


# ---------------------------------------------------------------- intake: IND's feed (jobs)


def ind_catch_up(rt: Runtime, feed: Any) -> int:
    """Fetch every missing volgnummer whose gap is older than the grace period."""
    now = rt.clock.time()
    taken = 0
    for start, seen in rt.store.ind_gaps(rt.config.ind.first_volgnummer):
        if now - seen < rt.config.ind.gap_grace_seconds:
            continue
        rt.log.warning("ind_gap", stage="receiving", first_missing=start, gap_age_seconds=round(now - seen))
        taken += fetch_from(rt, feed, start, stop_at_present=True)
    return taken


def ind_reconcile(rt: Runtime, feed: Any) -> int:
    """Ask IND how far it is; take in everything after the highest number we hold."""
    return fetch_from(rt, feed, rt.store.ind_highest() + 1, stop_at_present=False)


def fetch_from(rt: Runtime, feed: Any, start: int, *, stop_at_present: bool, page: int = 100) -> int:
    """Fetch from ``start`` with IND's feed client (``adapters/ind/client.IndFeedClient``) and take in."""
    client = feed
    taken = 0
    vanaf = start
    while True:
        result = client.haal_meldingen(vanaf, page)
        rt.store.set_kv("ind.laatste_volgnummer", str(result.laatste_volgnummer))
        if not result.meldingen:
            return taken
        for raw in result.meldingen:
            received = rt.clock.now()
            record = InboundRecord(partner="ind", operation="HaalMeldingen", raw=raw,
                                   received_at=received.timestamp(), channel="feed")
            try:
                element = xmlsafe.parse(raw, max_bytes=rt.config.ind.max_message_bytes)
                answer = accept_melding(rt, element, record, received)
                taken += 1 if answer.status == 200 else 0
            except InboundRefused as exc:
                record_refusal(rt, record, exc, status=0, body=b"")
        highest = rt.store.ind_highest()
        vanaf = max(vanaf + len(result.meldingen), highest + 1 if not stop_at_present else vanaf + len(result.meldingen))
        if stop_at_present and not rt.store.ind_gaps(rt.config.ind.first_volgnummer):
            return taken
        if vanaf > result.laatste_volgnummer:
            return taken


# ---------------------------------------------------------------- rule set and mapping


def inburgeraarmelding_delivery(rt: Runtime, melding: IndMelding, received_at: dt.datetime,
                                ruleset: Any | None = None) -> tuple[InburgeraarMelding, NewDelivery]:
    duo = ind_to_duo.to_inburgeraarmelding(
        melding, received_at=received_at, ruleset=ruleset or rt.ruleset,
        leveringstermijn_dagen=rt.config.ind.leveringstermijn_dagen)
    payload = sign_duo(rt, duo_codec.encode_inburgeraarmelding(duo))
    return duo, NewDelivery(partner="duo", operation="InburgeraarMelding", idempotency_key=duo.bericht_id,
                            payload=payload)


def melding_facts(melding: IndMelding, duo: InburgeraarMelding) -> dict[str, Any]:
    """What operators and reports may see without personal data."""
    return {
        "meldingId": melding.melding_id,
        "volgnummer": melding.volgnummer,
        "soortMelding": melding.soort_melding,
        "correctieVan": melding.correctie_van,
        "verblijfsdoel": melding.verblijf.verblijfsdoel,
        "wettelijkeGrondslag": melding.verblijf.wettelijke_grondslag,
        "unierechtelijkeGrondslag": melding.verblijf.unierechtelijke_grondslag,
        "datumBesluit": melding.verblijf.datum_besluit.isoformat(),
        "ingangsdatum": melding.verblijf.ingangsdatum.isoformat(),
        "berichtId": duo.bericht_id,
        "plichtIndicatie": duo.beoordeling.plicht_indicatie,
        "regel": duo.beoordeling.regel,
        "regelsetVersie": duo.beoordeling.regelset_versie,
        "vertragingDagen": duo.levering.vertraging_dagen,
        "leveringstermijnDagen": duo.levering.leveringstermijn_dagen,
    }


def melding_person(melding: IndMelding) -> dict[str, Any]:
    p = melding.persoon
    return {
        "bsn": p.bsn,
        "vNummer": p.v_nummer,
        "naam": " ".join(x for x in (p.voornamen, p.voorvoegsel, p.geslachtsnaam) if x),
        "geboortedatum": p.geboortedatum,
        "nationaliteit": list(p.nationaliteiten),
    }


# ---------------------------------------------------------------- follow-up: a rule-set roll-out


def decode_raw(raw: bytes) -> IndMelding:
    """An IND notification from the stored bytes: a pushed SOAP envelope or a bare fetched element."""
    root = xmlsafe.parse(raw)
    payload = soap.split(root).payload if root.tag == f"{{{soap.SOAP_NS}}}Envelope" else root
    return ind_codec.decode_melding(payload)


def queue_correction(rt: Any, c: Any, ruleset: Any, operator: str) -> bool:
    """Queue DUO a CORRECTIE for one changed notification (``gateway.rules.rollout.Change``) on ``rules-duo``."""
    bericht_id = ind_to_duo.correction_bericht_id(c.earlier_bericht_id, ruleset.version)
    received = dt.datetime.fromtimestamp(c.received_at, AMS)
    duo = ind_to_duo.to_inburgeraarmelding(c.melding, received_at=received, ruleset=ruleset,
                                           leveringstermijn_dagen=c.leveringstermijn_dagen)
    duo = dataclasses.replace(duo, bericht_id=bericht_id, soort_melding="CORRECTIE",
                              vervangt_bericht_id=c.earlier_bericht_id)
    payload = sign_duo(rt, duo_codec.encode_inburgeraarmelding(duo))
    facts = {
        "meldingId": c.melding_id, "berichtId": bericht_id, "vervangtBerichtId": c.earlier_bericht_id,
        "plichtIndicatie": duo.beoordeling.plicht_indicatie, "regel": duo.beoordeling.regel,
        "regelsetVersie": ruleset.version, "vorigePlichtIndicatie": c.old_indicatie, "vorigeRegel": c.old_regel,
        "regime": c.regime, "ingangsdatum": c.ingangsdatum, "operator": operator,
    }
    result = rt.store.accept(
        route=CORRECTION_ROUTE, kind="InburgeraarMelding", message_key=bericht_id,
        content_digest=f"{c.earlier_bericht_id}:{ruleset.version}", inbound=None, ack=None, facts=facts,
        person=c.person or None,
        deliveries=[NewDelivery("duo", "InburgeraarMelding", bericht_id, payload)],
        events=[("processing", "rules_correction", {"regelsetVersie": ruleset.version, "operator": operator,
                                                    "vervangtBerichtId": c.earlier_bericht_id})],
        now=rt.clock.time())
    return result.kind == "accepted"


def duo_outcome(status: int | None, headers: Mapping[str, str], body: bytes | None) -> Any:
    """DUO's answer to a delivery (a notification, a correction, a claim status), classified as the
    DUO sender does once the answer's signature has been checked (for replay)."""
    from adapters.duo import errors as duo_errors

    return duo_errors.classify(status, headers, body)
