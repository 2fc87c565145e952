"""DUO's answers (profile duo-xml) mapped to an ``Outcome``, in one place.

The sender has already checked the acknowledgement (schema, signature, berichtId, digest);
this module only reads ``status``, ``kenmerk`` and the ``fout`` codes. Details name codes,
never values from the message: the answer may echo personal data in ``omschrijving``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from lxml import etree

from gateway.core.adapter import Outcome
from gateway.core.errors import InboundRefused
from gateway.wire import xmlsafe

__all__ = ["DUO_NS", "DUPLICATE_CODE", "classify", "retry_after_seconds"]

DUO_NS = "urn:nl:duo:inburgering:v1"
DUPLICATE_CODE = "DUPLICAAT_MET_ANDERE_INHOUD"
_NS = {"duo": DUO_NS}


def classify(status: int | None, headers: Mapping[str, str] | None, body: bytes | None,
             *, now: dt.datetime | None = None, root: etree._Element | None = None) -> Outcome:
    """Classify one answer; ``status`` None means no answer (network failure or timeout)."""
    if status is None:
        return Outcome("retry", detail="no answer from DUO")
    headers = headers or {}
    if status in (429, 503):
        wait = retry_after_seconds(headers.get("retry-after") or headers.get("Retry-After"), now=now)
        return Outcome("retry", http_status=status, retry_after_seconds=wait,
                       detail=f"DUO is temporarily unable (HTTP {status})")
    if status >= 500:
        return Outcome("retry", http_status=status, detail=f"DUO failed (HTTP {status})")
    if status in (200, 400, 409):
        return _acknowledgement(status, body or b"", root)
    return Outcome("retry", http_status=status, detail=f"unexpected answer from DUO (HTTP {status})")


def _acknowledgement(status: int, body: bytes, root: etree._Element | None) -> Outcome:
    if root is None:  # the sender passes the root it already parsed and checked
        try:
            root = xmlsafe.parse(body)
        except InboundRefused as exc:
            return Outcome("retry", http_status=status, detail=f"unreadable acknowledgement ({exc.code})")
    if root.tag != f"{{{DUO_NS}}}Ontvangstbevestiging":
        return Outcome("retry", http_status=status, detail="the answer is not an Ontvangstbevestiging")
    ack_status = root.findtext("duo:status", namespaces=_NS)
    codes = [c.strip() for c in root.xpath("duo:fout/duo:code/text()", namespaces=_NS)]
    if status == 200 and ack_status == "ONTVANGEN":
        return Outcome("success", http_status=200, receipt=body,
                       reference=root.findtext("duo:kenmerk", namespaces=_NS))
    if status == 400 and ack_status == "AFGEWEZEN":
        return Outcome("permanent", http_status=400, receipt=body, extra={"fouten": codes},
                       detail="DUO refused the message: " + (", ".join(codes) or "no reason given"))
    if status == 409 and ack_status == "AFGEWEZEN" and DUPLICATE_CODE in codes:
        return Outcome("permanent", http_status=409, receipt=body,
                       extra={"alarm": "IDEMPOTENCY_CONFLICT", "fouten": codes},
                       detail="DUO knows this berichtId with other content")
    return Outcome("retry", http_status=status, receipt=body,
                   detail=f"acknowledgement status {ack_status or 'missing'} does not fit HTTP {status}")


def retry_after_seconds(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())

