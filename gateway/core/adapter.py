"""The adapter seam: how the core hands one outbound delivery to a partner.

Every partner package (``adapters/ind``, ``adapters/duo``, ``adapters/cjib``) has the same files:

- ``codec.py``     pure: bytes <-> ``gateway.core.models`` objects; no I/O, no clock, no keys loaded.
- ``client.py``    the I/O: one ``Sender`` per partner, holding one keep-alive HTTP client.
- ``server.py``    where the partner calls us (inbound endpoint), if it does.
- ``errors.py``    the partner's answers mapped to ``gateway.core.errors`` in one place.
- ``simulator.py`` the partner's side, for the sandbox and the tests.

The contract of a ``Sender``
----------------------------
- The constructor does no I/O (no connection, no DNS); keys and certificates come in already
  loaded (``gateway.security.keys``), so nothing is parsed per message.
- ``send(delivery)`` makes exactly **one** attempt and never sleeps for a retry: it returns an
  ``Outcome`` that *classifies* the answer. The core (``gateway.delivery.outbox``) decides when and
  whether to try again, from the per-partner policy in config:

  ========== ===================================================================================
  kind       what the core does
  ========== ===================================================================================
  success    marks the delivery delivered and stores ``receipt`` (the partner's answer bytes)
  retry      schedules another attempt (no sooner than ``retry_after_seconds`` when given);
             counts towards the circuit breaker and the attempt limit
  permanent  moves the delivery to the dead letters with ``detail``; never retried by itself
  ========== ===================================================================================

- ``send`` raises only for programming errors; a network failure, timeout or unexpected answer
  is an ``Outcome`` of kind ``retry``.
- The same ``Delivery`` (same ``idempotency_key`` and ``payload``) may be sent again after a
  crash; the partner's deduplication makes the repeat harmless. Payloads are signed once, when
  the delivery is queued, so a retry sends the very same bytes.
- ``close()`` releases the HTTP client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = ["Delivery", "Outcome", "Sender"]


@dataclass(frozen=True)
class Delivery:
    """One queued outbound message, as stored in the outbox."""

    id: int
    partner: str  # "duo" | "cjib" | "ind"
    operation: str  # e.g. "InburgeraarMelding", "VorderingStatus", "Vordering"
    idempotency_key: str
    payload: bytes  # exactly the bytes to send (already signed)
    attempt: int  # 1 for the first attempt
    #: When the delivery was queued (epoch seconds); for age limits and latency.
    created_at: float = 0.0
    #: Deliveries with the same order key go out in order (``Store.claim``); None: unordered.
    order_key: str | None = None


@dataclass(frozen=True)
class Outcome:
    """How a partner answered one attempt."""

    kind: Literal["success", "retry", "permanent"]
    http_status: int | None = None
    #: The partner's answer body (the receipt on success; the refusal otherwise).
    receipt: bytes | None = None
    #: The partner's own reference on success (DUO ``kenmerk``, CJIB ``zaaknummer``).
    reference: str | None = None
    retry_after_seconds: float | None = None
    #: Why, in words without personal data.
    detail: str = ""
    #: Partner-specific facts the core passes on (e.g. CJIB's ``errors`` for a 400).
    extra: dict[str, object] = field(default_factory=dict)


class Sender(Protocol):
    """A partner's sender. It may also offer ``rekey(own, trust)``: the keys for its next request
    after a reload or a key switch (gateway/reload.py)."""

    partner: str

    def send(self, delivery: Delivery) -> Outcome: ...

    def close(self) -> None: ...
