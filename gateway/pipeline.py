"""Steps shared by every inbound endpoint: refusing loudly, and answering from the store.

An inbound endpoint (``adapters/<partner>/server.py``) runs its partner's checks in the order
of the contract and raises a ``gateway.errors.InboundRefused`` at the first that fails.
``refuse`` then records the refusal in the delivery log (raw bytes, code, detail) before the
answer is sent, so that a refused message is never lost from sight and never delivered.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from gateway.errors import GatewayError, InboundRefused, StoreError
from gateway.runtime import Runtime
from gateway.store import InboundRecord

__all__ = ["Answer", "refuse", "record_refusal", "content_digest"]


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


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
