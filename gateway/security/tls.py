"""TLS contexts for mutual TLS with the partners (TLS 1.2 or newer, both sides authenticated).

The server context requires a client certificate that chains to one of the given anchors; give
each partner's listener only that partner's anchor and the listener identifies the partner.
The client context presents our certificate and checks the server's chain and host name.
"""

from __future__ import annotations

import datetime as dt
import ssl
import time
from collections.abc import Sequence
from typing import Any

import httpcore
import httpx

from gateway.core.errors import CertificateRefused
from gateway.security.keys import KeyPair
from gateway.wire.server import PeerCertProtocol

__all__ = ["server_context", "client_context", "PeerCertH11Protocol", "server_certificate", "unpinned_server",
           "unpinned_certificate", "server_refusal", "pinned_client", "refusal_of", "ServerCertificateRefused"]

# The protocol that puts the client certificate into the ASGI scope lives in gateway.wire.server;
# this is the name docs/DESIGN.md gives it.
PeerCertH11Protocol = PeerCertProtocol


def server_context(own: KeyPair, client_anchor_files: Sequence[str]) -> ssl.SSLContext:
    """A server context that refuses clients without a certificate from ``client_anchor_files``."""
    if not client_anchor_files:
        raise ValueError("a server context needs at least one client trust anchor")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(own.cert_file, own.key_file)
    for anchor in client_anchor_files:
        context.load_verify_locations(cafile=str(anchor))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(own: KeyPair, server_anchor_files: Sequence[str]) -> ssl.SSLContext:
    """A client context presenting our certificate and verifying the server against the anchors."""
    if not server_anchor_files:
        raise ValueError("a client context needs at least one server trust anchor")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(own.cert_file, own.key_file)
    for anchor in server_anchor_files:
        context.load_verify_locations(cafile=str(anchor))
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    return context


def server_certificate(response: object) -> bytes | None:
    """The DER certificate the server presented for this httpx response (None over plain HTTP)."""
    extensions = getattr(response, "extensions", {}) or {}
    stream = extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    # Positional argument: httpcore hands out the C-level _SSLSocket, which takes no keywords.
    return ssl_object.getpeercert(True) if ssl_object is not None else None


def unpinned_server(response: object, trust: object | None) -> str | None:
    """Why the server is not the partner we meant to call, or None when it is.

    The CA check in the TLS context accepts any certificate from the partner's anchor; the
    partner's own certificate is pinned here, as it is for signatures.
    """
    if trust is None:
        return None
    return unpinned_certificate(server_certificate(response), trust)


def unpinned_certificate(der: bytes | None, trust: object | None) -> str | None:
    """Why this DER server certificate is not acceptable for the partner, or None when it is.

    The one test behind every outbound call's pin: httpx answers (``unpinned_server``) and the
    requests session of IND's feed client (checked as the connection is made). Besides the pin:
    the partner's OIN in the certificate and its revocation status (``PartnerTrust.check_peer``);
    the reason starts with the refusal's code (``CERT_REVOKED: ...``).
    """
    refusal = server_refusal(der, trust)
    return None if refusal is None else f"{refusal.code}: {refusal.message}"


def server_refusal(der: bytes | None, trust: object | None) -> CertificateRefused | None:
    """The refusal of this DER server certificate for the partner, or None when it is acceptable."""
    if trust is None:
        return None
    if der is None:
        return CertificateRefused("no TLS server certificate", stage="sending")
    if not trust.matches(der):  # type: ignore[attr-defined]
        return CertificateRefused("the TLS server certificate is not one pinned for this partner", stage="sending")
    try:
        trust.check_peer(der, dt.datetime.now(dt.UTC))  # type: ignore[attr-defined]
    except CertificateRefused as exc:
        return exc
    return None


# ------------------------------------------------------------------ outbound: checked before sending

class ServerCertificateRefused(httpcore.ConnectError):
    """The server's TLS certificate was refused right after the handshake; nothing was sent."""

    def __init__(self, refusal: CertificateRefused) -> None:
        super().__init__(f"{refusal.code}: {refusal.message}")
        self.refusal = refusal


def pinned_client(ssl_context: ssl.SSLContext | None, trust: object | None, *, timeout_seconds: float,
                  follow_redirects: bool = False, max_session_seconds: float | None = None) -> httpx.Client:
    """An httpx client whose every new connection must present an acceptable server certificate
    (``server_refusal``: the pin, the partner's OIN, not revoked) before a byte of the request is sent,
    and again before every later request on a kept-alive connection.

    httpx has no hook between the TLS handshake and the request, so its connection pool gets a
    network backend that checks there (``_CheckingBackend``; the pool's backend is private to
    httpx 0.28/0.29: tests/conformance/test_outbound.py fails if that ever stops working). A
    refused connection raises ``httpx.ConnectError`` caused by ``ServerCertificateRefused``
    (``refusal_of`` finds it). ``max_session_seconds`` (WT008): a connection older than this is not
    used again (the pool drops it as one the server closed, and the next request makes a new one).
    """
    transport = httpx.HTTPTransport(verify=ssl_context if ssl_context is not None else True)
    if trust is not None or max_session_seconds is not None:
        pool = transport._pool
        pool._network_backend = _CheckingBackend(pool._network_backend, trust, max_session_seconds)
    return httpx.Client(transport=transport, timeout=httpx.Timeout(timeout_seconds), follow_redirects=follow_redirects)


def refusal_of(exc: BaseException) -> CertificateRefused | None:
    """The server-certificate refusal behind an httpx error, if that is what it was."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ServerCertificateRefused):
            return seen.refusal
        seen = seen.__cause__ or seen.__context__
    return None


class _CheckingBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend, trust: object | None,
                 max_session_seconds: float | None = None) -> None:
        self._inner = inner
        self._trust = trust
        self._max_session_seconds = max_session_seconds

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, timeout=timeout, local_address=local_address,
                                         socket_options=socket_options)
        return _CheckingStream(stream, self._trust, max_session_seconds=self._max_session_seconds)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        return self._inner.connect_unix_socket(path, timeout=timeout, socket_options=socket_options)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _CheckingStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, trust: object | None, der: bytes | None = None, *,
                 max_session_seconds: float | None = None, born: float | None = None) -> None:
        self._inner = inner
        self._trust = trust
        self._der = der
        self._max_session_seconds = max_session_seconds
        self._born = time.monotonic() if born is None else born

    def _refuse_if_bad(self, der: bytes | None) -> None:
        refusal = server_refusal(der, self._trust)
        if refusal is not None:
            self._inner.close()
            raise ServerCertificateRefused(refusal)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # Again before every write: a kept-alive connection whose certificate was revoked since
        # it was made sends nothing more (the check is in memory, microseconds).
        if self._der is not None and self._trust is not None:
            self._refuse_if_bad(self._der)
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def get_extra_info(self, info: str) -> Any:
        # httpcore asks an idle pooled connection whether it is readable (the server closed it);
        # an aged one says so, and the pool drops it instead of sending on it (WT008).
        if info == "is_readable" and self._max_session_seconds is not None \
                and time.monotonic() - self._born > self._max_session_seconds:
            return True
        return self._inner.get_extra_info(info)

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        stream = self._inner.start_tls(ssl_context, server_hostname, timeout)
        ssl_object = stream.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(True) if ssl_object is not None else None
        checked = _CheckingStream(stream, self._trust, der, max_session_seconds=self._max_session_seconds,
                                  born=self._born)
        if self._trust is not None:
            checked._refuse_if_bad(der)
        return checked
