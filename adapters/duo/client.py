"""The gateway's sender to DUO (profile duo-xml): one attempt per ``send``, classified.

An acknowledgement is only believed after it parsed, validated against DUO's XSD, carried a
valid signature from DUO's configured certificate, named our berichtId and digested exactly
the message we sent. Anything less is a ``retry`` with a detail, never a success: DUO keeps the
message under its berichtId, so asking again is harmless and yields the same acknowledgement.
"""

from __future__ import annotations

import ssl

from lxml import etree

from adapters.duo import errors
from gateway.core.adapter import Delivery, Outcome
from gateway.core.clock import Clock, SystemClock
from gateway.core.errors import GatewayError
from gateway.security import xmldsig
from gateway.security.keys import KeyPair, PartnerTrust
from gateway.wire import xmlsafe
from gateway.wire.client import PinnedHttps, ServerCertificateRefused, Timeout, Unanswered

__all__ = ["PATHS", "DuoSender"]

PATHS = {
    "InburgeraarMelding": "/inburgering/v1/meldingen",
    "VorderingStatus": "/inburgering/v1/vorderingstatussen",
}
_NS = {"duo": errors.DUO_NS}
_CHECKED = (200, 400, 409)


class DuoSender:
    """``Sender`` for partner ``duo``; the constructor does no I/O."""

    partner = "duo"

    def __init__(self, base_url: str, own: KeyPair | None, trust: PartnerTrust | None,
                 ssl_context: ssl.SSLContext | None = None, timeout_seconds: float = 10.0,
                 clock: Clock | None = None, *, max_session_seconds: float | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        # The payload arrives signed by the core; ``own`` is kept for the TLS identity only.
        self.own = own
        self.trust = trust
        self.clock = clock or SystemClock()
        # DUO's server certificate is checked (pin, OIN, revocation) before a byte is sent, also
        # on a kept-alive connection (gateway.wire.client: about a third of httpx's CPU per call).
        self._client = PinnedHttps(self.base_url, ssl_context, trust, timeout_seconds=timeout_seconds,
                                   max_session_seconds=max_session_seconds)

    def send(self, delivery: Delivery) -> Outcome:
        path = PATHS.get(delivery.operation)
        if path is None:
            raise ValueError(f"DUO has no endpoint for operation {delivery.operation}")
        headers = {"Content-Type": "application/xml; charset=utf-8",
                   "Idempotency-Key": delivery.idempotency_key}
        try:
            response = self._client.request("POST", path, delivery.payload, headers)
        except Timeout:
            return Outcome("retry", detail="DUO did not answer in time")
        except ServerCertificateRefused as exc:  # nothing was sent
            refusal = exc.refusal
            return Outcome("retry", detail=f"DUO's server certificate refused: {refusal.code}: {refusal.message}",
                           extra={"alarm": "SERVER_CERTIFICATE"})
        except Unanswered as exc:
            return Outcome("retry", detail=f"no answer from DUO ({exc.kind})")
        root = None
        if response.status_code in _CHECKED:
            root, problem = self._check_acknowledgement(delivery, response.content)
            if problem:
                return Outcome("retry", http_status=response.status_code, receipt=response.content,
                               detail=f"acknowledgement not accepted: {problem}")
        return errors.classify(response.status_code, response.headers, response.content,
                               now=self.clock.now(), root=root)

    def _check_acknowledgement(self, delivery: Delivery, body: bytes) -> tuple[etree._Element | None, str | None]:
        """(the checked root, None) when the acknowledgement is sound; else (None, why not)."""
        try:
            root = xmlsafe.parse(body)
            xmlsafe.validate(root, xmlsafe.DUO_XSD, partner="duo")
            if self.trust is not None:
                root = xmldsig.verify_enveloped(root, self.trust, now=self.clock.now())
        except GatewayError as exc:
            return None, f"{exc.code}: {exc.message}"
        if root.tag != f"{{{errors.DUO_NS}}}Ontvangstbevestiging":
            return None, "not an Ontvangstbevestiging"
        if root.findtext("duo:berichtId", namespaces=_NS) != delivery.idempotency_key:
            return None, "berichtId differs from the message sent"
        if root.findtext("duo:berichtDigest", namespaces=_NS) != _digest_of(delivery.payload):
            return None, "berichtDigest differs from the message sent"
        return root, None

    def rekey(self, own: KeyPair | None, trust: PartnerTrust | None) -> None:
        """New keys for the next request (a reload or key switch); the TLS context is re-keyed in place."""
        self.own, self.trust = own, trust
        self._client.rekey(trust)

    def close(self) -> None:
        self._client.close()


def _digest_of(payload: bytes) -> str:
    # Our own, already signed bytes: remembered when this process signed them, else parsed the
    # same hardened way as anything else.
    return xmldsig.signed_digest(payload)
