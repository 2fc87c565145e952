"""Route ``cjib-duo``: a change in CJIB's status feed -> a DUO ``VorderingStatus``, the whole story.

- Intake: CJIB's status feed, read from a cursor kept in the store by the ``cjib-feed`` job (the
  daemon registers ``poll_feed`` with the feed reader it made, ``adapters/cjib/client.py``).
- Each change becomes one ``VorderingStatus`` (mapping: ``gateway/mapping/cjib_to_duo.py``),
  deduplicated on CJIB's ``volgnummer`` (a message key), stored in one commit with its delivery,
  and delivered to DUO in order per claim (the deliveries share an ``order_key``: the vorderingId).
- The feed's first IN_BEHANDELING for a claim echoes the acceptance DUO was already told about
  (route ``duo-cjib``), and is not sent twice. A change that comes back altered raises an alarm.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from adapters.duo import codec as duo_codec
from gateway.core.models import CjibStatuswijziging, VorderingStatus
from gateway.core.store import NewDelivery
from gateway.mapping import cjib_to_duo
from gateway.routes.common import sign_duo
from gateway.runtime import Runtime

__all__ = ["FEED_ROUTE", "poll_feed", "take_change", "status_delivery"]

FEED_ROUTE = "cjib-duo"


def status_delivery(rt: Runtime, status: VorderingStatus) -> NewDelivery:
    payload = sign_duo(rt, duo_codec.encode_vorderingstatus(status))
    return NewDelivery(partner="duo", operation="VorderingStatus", idempotency_key=status.bericht_id,
                       payload=payload, order_key=status.vordering_id)


def poll_feed(rt: Runtime, reader: Any, *, max_pages: int = 50) -> int:
    """Read CJIB's status feed (``reader``: ``adapters/cjib/client.CjibFeedReader``, made by the daemon)
    from the stored cursor; queue one VorderingStatus per new change."""
    if rt.store.get_kv("cjib.feed.started") is None:
        rt.store.set_kv("cjib.feed.started", str(rt.clock.time()))
    queued = 0
    for _ in range(max_pages):
        cursor = rt.store.get_kv("cjib.feed.cursor") or None  # "" (an operator reset) reads from the start
        page = reader.fetch(cursor, rt.config.cjib.feed_page_size)
        for change in page.wijzigingen:
            queued += take_change(rt, change)
        # The cursor moves only after every change of the page is stored: a crash in between
        # reads the page again, and the volgnummer deduplicates it.
        rt.store.set_kv("cjib.feed.cursor", page.volgende_cursor)
        rt.store.set_kv("cjib.feed.last_success", str(rt.clock.time()))
        if not page.meer:
            break
    if queued:
        rt.notify("duo")
    return queued


def take_change(rt: Runtime, w: CjibStatuswijziging) -> int:
    key = cjib_to_duo.feed_key(w.volgnummer)
    content = hashlib.sha256(json.dumps([w.zaaknummer, w.opdrachtgever_referentie, w.status, w.openstaand_centen,
                                         w.tijdstip], sort_keys=True).encode()).hexdigest()
    vordering_id = w.opdrachtgever_referentie
    echo = w.status == "IN_BEHANDELING" and not _feed_status_sent(rt, vordering_id)
    deliveries = [] if echo else [status_delivery(rt, cjib_to_duo.from_statuswijziging(w))]
    facts = {"volgnummer": w.volgnummer, "zaaknummer": w.zaaknummer, "vorderingId": vordering_id,
             "status": w.status, "echo_of_acceptance": echo,
             # The rest of the change, so that an archive (gateway export) can replay it.
             "tijdstip": w.tijdstip, "openstaandCenten": w.openstaand_centen,
             "redenen": [[f.code, f.omschrijving, f.pad] for f in w.redenen]}
    result = rt.store.accept(
        route=FEED_ROUTE, kind="Statuswijziging", message_key=key, content_digest=content, inbound=None,
        ack=None, facts=facts, person=None, deliveries=deliveries,
        events=[("receiving", "feed_change", {"volgnummer": w.volgnummer, "status": w.status, "echo": echo})],
        now=rt.clock.time())
    if result.kind == "conflict":
        rt.log.error("alarm", partner="cjib", alarm="FEED_CHANGE_ALTERED", message_id=key, stage="receiving")
        rt.metrics.alarms.labels("cjib", "FEED_CHANGE_ALTERED").inc()
    return 1 if result.kind == "accepted" and deliveries else 0


def _feed_status_sent(rt: Runtime, vordering_id: str) -> bool:
    """Has DUO been sent any status from the feed (not the acceptance) for this claim?"""
    accepted = cjib_to_duo.status_bericht_id(vordering_id, "accepted")
    rows = rt.store.query("SELECT COUNT(*) FROM outbox WHERE order_key = :v AND operation = 'VorderingStatus' "
                          "AND idempotency_key <> :a", {"v": vordering_id, "a": accepted})
    return int(rows[0][0]) > 0
