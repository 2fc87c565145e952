"""Steps shared by every inbound endpoint: refusing loudly, and answering from the store.

An inbound endpoint (``adapters/<partner>/server.py``) runs its partner's checks in the order
of the contract and raises a ``gateway.core.errors.InboundRefused`` at the first that fails.
``refuse`` then records the refusal in the delivery log (raw bytes, code, detail) before the
answer is sent, so that a refused message is never lost from sight and never delivered.

``check_door`` is the first check of every HTTP endpoint: the request's ``Content-Type`` (and,
for SOAP, its ``SOAPAction``) must be what the partner's contract says, or the request is
refused as ``MALFORMED`` like any other bad input (recorded, never delivered).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.core.errors import GatewayError, InboundRefused, MalformedInput, StoreError
from gateway.core.store import InboundRecord
from gateway.runtime import Runtime

__all__ = ["Answer", "Door", "check_door", "refuse", "record_refusal", "content_digest"]


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Door:
    """What a partner's contract says about the HTTP request of one endpoint."""

    partner: str
    media_type: str  # e.g. "text/xml" (compared case-insensitively)
    charset: str = "utf-8"
    #: The SOAP 1.1 ``SOAPAction`` the request must carry (None: not a SOAP endpoint).
    soap_action: str | None = None

    @property
    def content_type(self) -> str:
        return f"{self.media_type}; charset={self.charset}"


def check_door(door: Door, headers: Mapping[str, str]) -> None:
    """Refuse (``MalformedInput``) a request whose Content-Type or SOAPAction the contract does not allow.

    ``headers`` has lower-case names, as the ASGI app hands them over. The media type and the
    parameter names and the charset are compared case-insensitively (``text/xml;charset=UTF-8``
    is ``text/xml; charset=utf-8``); a missing charset is taken as the contract's (an XML
    document declares its own encoding; UTF-8 is the default), any other charset is refused.
    SOAP 1.1 clients send the SOAPAction quoted (``"urn:..."``); quoted and bare are both accepted.
    """
    raw = headers.get("content-type")
    if raw is None:
        raise MalformedInput(f"the Content-Type header is missing; the contract says {door.content_type!r}",
                             partner=door.partner, stage="receiving")
    media, params = _media_type(raw)
    charset = params.get("charset", door.charset).lower()
    if media != door.media_type.lower() or charset != door.charset.lower():
        raise MalformedInput(f"Content-Type {_shown(raw)!r} received; the contract says {door.content_type!r}",
                             partner=door.partner, stage="receiving")
    if door.soap_action is None:
        return
    action = headers.get("soapaction")
    if action is None:
        raise MalformedInput(f"the SOAPAction header is missing; the contract says {door.soap_action!r}",
                             partner=door.partner, stage="receiving")
    value = action.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].strip()
    if value != door.soap_action:
        raise MalformedInput(f"SOAPAction {_shown(action)!r} received; the contract says {door.soap_action!r}",
                             partner=door.partner, stage="receiving")


def _media_type(value: str) -> tuple[str, dict[str, str]]:
    """``type/subtype`` (lower case) and the parameters (names lower case, quotes removed)."""
    media, *rest = value.split(";")
    params: dict[str, str] = {}
    for part in rest:
        name, sep, val = part.partition("=")
        if not sep:
            continue
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] == '"':
            val = val[1:-1]
        params[name.strip().lower()] = val.strip()
    return media.strip().lower(), params


def _shown(value: str, limit: int = 100) -> str:
    """A header value fit for a fault string and the log: printable ASCII, cut at ``limit``."""
    clean = "".join(c if " " <= c <= "~" else "?" for c in value)
    return clean if len(clean) <= limit else clean[:limit] + "..."


def record_refusal(rt: Runtime, record: InboundRecord, error: GatewayError, *, status: int, body: bytes) -> None:
    """Keep the refusal in the delivery log and count it; log without personal data."""
    code = getattr(error, "rule", None) if error.code == "BUSINESS_RULE" else None
    detail = error.message if code is None else f"{code}: {error.message}"
    try:
        rt.store.log_inbound(record, "refused", fault_code=error.code, fault_detail=detail,
                             response_status=status, response_body=body)
    except StoreError:
        rt.log.error("refusal_not_recorded", partner=record.partner, operation=record.operation,
                     code=error.code, stage="receiving")
    rt.metrics.inbound.labels(record.partner, record.operation, "refused", error.code).inc()
    rt.log.warning("inbound_refused", partner=record.partner, operation=record.operation,
                   message_id=record.message_key, outcome="refused", stage=error.stage or "receiving",
                   **{k: v for k, v in error.context().items() if k in ("code", "path")})


def refuse(rt: Runtime, record: InboundRecord, error: InboundRefused, answer: Answer) -> Answer:
    record_refusal(rt, record, error, status=answer.status, body=answer.body)
    return answer


def content_digest(model: Any) -> str:
    """A digest of a decoded message's content (a dataclass), independent of its XML spelling.

    Deduplication compares content: the same notification may arrive with other namespace
    prefixes (pushed through zeep, fetched through the feed) or another signature.
    """
    data = json.dumps(dataclasses.asdict(model), sort_keys=True, default=str)
    return hashlib.sha256(data.encode()).hexdigest()
