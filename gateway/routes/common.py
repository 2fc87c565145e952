"""Steps shared by every inbound endpoint: refusing loudly, and answering from the store.

An inbound endpoint (``adapters/<partner>/server.py``) runs its partner's checks in the order
of the contract and raises a ``gateway.core.errors.InboundRefused`` at the first that fails.
``refuse`` then records the refusal in the delivery log (raw bytes, code, detail) before the
answer is sent, so that a refused message is never lost from sight and never delivered.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from lxml import etree

from gateway.core.errors import GatewayError, InboundRefused, StoreError
from gateway.core.store import InboundRecord
from gateway.runtime import Runtime
from gateway.wire import xmlsafe
from gateway.wire.server import Answer

__all__ = ["refuse", "record_refusal", "content_digest", "sign_duo"]


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
    data = json.dumps(_plain(model), sort_keys=True, default=str)
    return hashlib.sha256(data.encode()).hexdigest()


def _plain(value: Any) -> Any:
    """``dataclasses.asdict`` for JSON, without its deep copy of every leaf (a quarter of the cost).

    The JSON must stay byte for byte what ``asdict`` gave: stored digests are compared with new
    ones (tests/unit/test_content_digest.py holds the two side by side).
    """
    if type(value) in _LEAVES:  # most values: no dataclass look-up for them
        return value
    names = _FIELDS.get(type(value))
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _FIELDS.setdefault(type(value), tuple(f.name for f in dataclasses.fields(value)))
    if names is not None:
        return {name: _plain(getattr(value, name)) for name in names}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


_FIELDS: dict[type, tuple[str, ...]] = {}
#: Types ``_plain`` returns as they are (exact types: a subclass could be a dataclass too).
_LEAVES = frozenset({str, int, float, bool, type(None)})


def sign_duo(rt: Runtime, element: etree._Element) -> bytes:
    """Validate a DUO message against the DUO XSD, then sign it (enveloped) when security is on."""
    xmlsafe.validate(element, xmlsafe.DUO_XSD, partner="duo")
    if rt.own is None:
        return etree.tostring(element, xml_declaration=True, encoding="utf-8")
    from gateway.security import xmldsig

    return xmldsig.sign_enveloped(element, rt.own)
