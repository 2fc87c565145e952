"""CJIB's answers to ``POST /v1/vorderingen`` classified as ``Outcome``s, in one place.

The adapter only classifies; ``gateway.delivery.outbox`` decides when to try again.

====== ========== ==========================================================================
status kind       why
====== ========== ==========================================================================
201    success    a case was opened; ``reference`` = zaaknummer, ``receipt`` = the body
400    permanent  the content is wrong; ``extra`` = {"errors": [...], "refused": True}, and the
                  core tells DUO AFGEWEZEN_DOOR_CJIB
401    permanent  CJIB does not accept our certificate or signature; retrying will not help
409    retry      the first request with this key is still being processed at CJIB
422    permanent  the key was used before for other content; ``extra`` = {"alarm":
                  "IDEMPOTENCY_CONFLICT"} because that means a bug or tampering on our side
429    retry      rate limited; ``retry_after_seconds`` from ``Retry-After``
503    retry      unavailable; ``retry_after_seconds`` from ``Retry-After``
5xx    retry      server failure
other  retry      an unexpected answer is treated like no answer (the seam's rule)
====== ========== ==========================================================================

The status feed (``GET /v1/statuswijzigingen``) is read, not delivered, so its failures are
exceptions: ``feed_error`` gives ``TransientDelivery`` for 429/503/5xx (with
``retry_after_seconds``) and ``PermanentDelivery`` for any other non-200 answer (a cursor CJIB
does not know, 401: an operator must look).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from adapters.cjib import codec
from gateway.core.adapter import Outcome
from gateway.core.errors import DeliveryError, InboundRefused, PermanentDelivery, TransientDelivery
from gateway.wire.client import Timeout, Unanswered

__all__ = ["DEFAULT_RETRY_AFTER_SECONDS", "classify", "classify_exception", "retry_after", "feed_error",
           "feed_transient"]

#: Used for 409 (and 429/503 without a usable header): CJIB is busy with this key right now.
DEFAULT_RETRY_AFTER_SECONDS = 2.0


def classify(status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
    """Classify one answer; ``body`` is the raw response body (already signature-checked)."""
    if status == 201:
        return _accepted(body)
    if status == 400:
        return _refused(body)
    if status == 401:
        return Outcome("permanent", http_status=status, receipt=body,
                       detail="CJIB refused our certificate or signature (401)")
    if status == 422:
        return Outcome("permanent", http_status=status, receipt=body,
                       detail="CJIB: idempotency key reused with other content (422)",
                       extra={"alarm": "IDEMPOTENCY_CONFLICT"})
    if status in (409, 429, 503):
        return Outcome("retry", http_status=status, receipt=body,
                       retry_after_seconds=retry_after(headers) or DEFAULT_RETRY_AFTER_SECONDS,
                       detail=_RETRY_DETAIL[status])
    if 500 <= status < 600:
        return Outcome("retry", http_status=status, receipt=body, retry_after_seconds=retry_after(headers),
                       detail=f"CJIB server error ({status})")
    return Outcome("retry", http_status=status, receipt=body, detail=f"unexpected HTTP status {status} from CJIB")


_RETRY_DETAIL = {
    409: "CJIB is still processing the first request with this key (409)",
    429: "CJIB rate limit (429)",
    503: "CJIB temporarily unavailable (503)",
}


def classify_exception(exc: Unanswered) -> Outcome:
    """No answer (connection refused or reset, timeout, TLS failure): try again later."""
    if isinstance(exc, Timeout):
        return Outcome("retry", detail=f"no answer from CJIB in time ({exc.kind})")
    return Outcome("retry", detail=f"no answer from CJIB ({exc.kind})")


def feed_error(status: int, headers: Mapping[str, str], body: bytes) -> DeliveryError | None:
    """None for 200; otherwise the exception a feed read raises."""
    if status == 200:
        return None
    if status in (429, 503) or 500 <= status < 600:
        default = DEFAULT_RETRY_AFTER_SECONDS if status in (429, 503) else None
        return feed_transient(f"CJIB feed unavailable ({status})", http_status=status,
                              retry_after_seconds=retry_after(headers) or default)
    return PermanentDelivery(f"CJIB feed refused the request ({status})", http_status=status, receipt=body,
                             partner="cjib", stage="receiving")


def feed_transient(message: str, *, http_status: int | None = None,
                   retry_after_seconds: float | None = None) -> TransientDelivery:
    return TransientDelivery(message, http_status=http_status, retry_after_seconds=retry_after_seconds,
                             partner="cjib", stage="receiving")


def retry_after(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds; ``None`` when absent or not a number of seconds."""
    value = _header(headers, "retry-after")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP-date; CJIB promises seconds, so the caller's default applies
    return seconds if seconds >= 0 else None


def _accepted(body: bytes) -> Outcome:
    try:
        ontvangst = codec.decode_ontvangst(body)
    except InboundRefused as exc:
        # CJIB probably opened a case, but we cannot read which; a repeat with the same key
        # returns the same answer, and the attempt limit stops a loop.
        return Outcome("retry", http_status=201, receipt=body,
                       detail=f"unreadable 201 answer from CJIB ({exc.code} at {exc.path})")
    return Outcome("success", http_status=201, receipt=body, reference=ontvangst.zaaknummer,
                   detail="accepted by CJIB")


def _refused(body: bytes) -> Outcome:
    try:
        errors = [_error(e) for e in codec.decode_problem(body)["errors"]]
        detail = f"refused by CJIB (400, {len(errors)} error(s))"
    except InboundRefused:
        errors, detail = [], "refused by CJIB (400, unreadable problem body)"
    return Outcome("permanent", http_status=400, receipt=body, detail=detail,
                   extra={"errors": errors, "refused": True})


def _error(e: Mapping[str, Any]) -> dict[str, str]:
    return {"code": str(e.get("code", "")), "pointer": str(e.get("pointer", "")),
            "omschrijving": str(e.get("omschrijving", ""))}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    if isinstance(headers, httpx.Headers):
        return headers.get(name)
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None
