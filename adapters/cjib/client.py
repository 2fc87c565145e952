"""The I/O towards CJIB: ``CjibSender`` (POST claims) and ``CjibFeedReader`` (the status feed).

The sender holds a keep-alive ``gateway.wire.client.PinnedHttps`` (the hot path), the feed reader
an ``httpx.Client``; the constructors do no I/O. Keys, trust and the TLS
context come in loaded. Per the cjib-rest profile a request carries ``X-JWS-Signature`` only when
it has a body (the POST), and every answer we act on must carry a valid one from CJIB.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from adapters.cjib import codec
from adapters.cjib.errors import classify, classify_exception, feed_error, feed_transient
from gateway.core.adapter import Delivery, Outcome
from gateway.core.clock import Clock
from gateway.core.errors import InboundRefused, SecurityRefused
from gateway.core.models import CjibStatusPagina
from gateway.security import jws, tls
from gateway.security.keys import KeyPair, PartnerTrust
from gateway.wire.client import PinnedHttps, ServerCertificateRefused, Unanswered

__all__ = ["CjibSender", "CjibFeedReader", "CLAIMS_PATH", "FEED_PATH"]

CLAIMS_PATH = "/v1/vorderingen"
FEED_PATH = "/v1/statuswijzigingen"
#: Answers whose body decides what happens to a claim; a forged one must never count.
_SIGNED_STATUSES = (201, 400)


class _Answer(Protocol):
    """An httpx response (the feed) or a ``gateway.wire.client.Response`` (the sender)."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> bytes: ...


class _CjibHttp:
    """What the sender and the feed reader share: keys, trust, clock and the answer's signature check."""

    def __init__(self, base_url: str, key: KeyPair, trust: PartnerTrust, clock: Clock) -> None:
        self._base = base_url.rstrip("/")
        self._key = key
        self._trust = trust
        self._clock = clock

    def _url(self, path: str) -> str:
        return self._base + path

    def _check_signature(self, response: _Answer) -> str | None:
        """None when the answer's X-JWS-Signature verifies; otherwise why not (no values)."""
        value = response.headers.get("x-jws-signature")
        if not value:
            return "answer without X-JWS-Signature"
        try:
            jws.verify_detached(value, response.content, self._trust, now=self._clock.now())
        except SecurityRefused as exc:
            return f"answer signature refused ({exc.code})"
        return None

    def rekey(self, key: KeyPair, trust: PartnerTrust) -> None:
        """New keys for the next request (a reload or key switch); the TLS context is re-keyed in place."""
        self._key, self._trust = key, trust


class CjibSender(_CjibHttp):
    """Hands one claim (the body from ``gateway.mapping.duo_to_cjib.encode_body``) to CJIB."""

    partner = "cjib"

    def __init__(self, base_url: str, key: KeyPair, trust: PartnerTrust, ssl_context: ssl.SSLContext | None,
                 timeout_seconds: float, clock: Clock, *, max_session_seconds: float | None = None) -> None:
        super().__init__(base_url, key, trust, clock)
        # CJIB's server certificate is checked (pin, OIN, revocation) before a byte is sent, also on
        # a kept-alive connection (gateway.wire.client: about a third of httpx's CPU per call).
        self._http = PinnedHttps(self._base, ssl_context, trust, timeout_seconds=timeout_seconds,
                                 max_session_seconds=max_session_seconds)

    def send(self, delivery: Delivery) -> Outcome:
        url = self._url(CLAIMS_PATH)
        # iat must be fresh (300 s), so the JWS is made per attempt over the very same body bytes.
        signature = jws.sign_detached(delivery.payload, self._key, now=self._clock.now(),
                                      htm="POST", htu=_path_and_query(url))
        headers = {"Content-Type": "application/json", "Idempotency-Key": delivery.idempotency_key,
                   "X-JWS-Signature": signature}
        try:
            response = self._http.request("POST", CLAIMS_PATH, delivery.payload, headers)
        except ServerCertificateRefused as exc:  # nothing was sent
            refusal = exc.refusal
            return Outcome("retry", detail=f"CJIB's server certificate refused: {refusal.code}: {refusal.message}",
                           extra={"alarm": "SERVER_CERTIFICATE"})
        except Unanswered as exc:
            return classify_exception(exc)
        if response.status_code in _SIGNED_STATUSES:
            problem = self._check_signature(response)
            if problem is not None:
                return Outcome("retry", http_status=response.status_code, detail=f"CJIB {problem}")
        return classify(response.status_code, response.headers, response.content)

    def rekey(self, key: KeyPair, trust: PartnerTrust) -> None:
        super().rekey(key, trust)
        self._http.rekey(trust)

    def close(self) -> None:
        self._http.close()


class CjibFeedReader(_CjibHttp):
    """Reads CJIB's status feed, one page per call.

    ``fetch`` raises ``TransientDelivery`` (with ``retry_after_seconds`` when CJIB said) for
    429/503/5xx, no answer, an answer whose signature does not verify or whose body does not fit
    the schema; and ``PermanentDelivery`` for any other refusal (e.g. 400 for a cursor CJIB
    does not know, 401), which needs an operator (``adapters.cjib.errors.feed_error``).
    """

    partner = "cjib"

    def __init__(self, base_url: str, key: KeyPair, trust: PartnerTrust, ssl_context: ssl.SSLContext | None,
                 timeout_seconds: float, clock: Clock, *, max_session_seconds: float | None = None) -> None:
        super().__init__(base_url, key, trust, clock)
        # The feed is read now and then, not per message: httpx stays (connects lazily, no I/O here).
        # CJIB's server certificate is checked (pin, OIN, revocation) before a byte is sent.
        self._http = tls.pinned_client(ssl_context, trust, timeout_seconds=timeout_seconds,
                                       max_session_seconds=max_session_seconds)

    def close(self) -> None:
        self._http.close()

    def fetch(self, cursor: str | None, limit: int = 100) -> CjibStatusPagina:
        params: dict[str, str | int] = {"limiet": limit}
        if cursor is not None:
            params["na"] = cursor
        try:
            response = self._http.get(self._url(FEED_PATH), params=params)
        except httpx.HTTPError as exc:
            refusal = tls.refusal_of(exc)
            if refusal is not None:
                raise feed_transient(f"CJIB feed: server certificate refused: {refusal.code}") from exc
            raise feed_transient(f"no answer from CJIB ({type(exc).__name__})") from exc
        impostor = tls.unpinned_server(response, self._trust)
        if impostor is not None:
            raise feed_transient(f"CJIB feed: {impostor}")
        error = feed_error(response.status_code, response.headers, response.content)
        if error is not None:
            raise error
        return self._page(response)

    def _page(self, response: httpx.Response) -> CjibStatusPagina:
        problem = self._check_signature(response)
        if problem is not None:
            raise feed_transient(f"CJIB feed {problem}", http_status=200)
        try:
            return codec.decode_statuspagina(response.content)
        except InboundRefused as exc:
            raise feed_transient(f"CJIB feed page does not fit the schema ({exc.code})", http_status=200) from exc


def _path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")
