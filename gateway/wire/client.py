"""A small keep-alive HTTPS client for the hot outbound calls (DUO's and CJIB's senders).

httpx + httpcore + h11 cost about 1.2 ms of CPU per POST on a kept-alive mutual-TLS connection
here, ``http.client`` about 0.46 ms; this client, a TLS socket with h11's framing
(``gateway.wire.http11``), less again. It keeps what the httpx one
(``gateway.security.tls.pinned_client``) guaranteed:

* the server certificate is checked (``tls.server_refusal``: the pin, the partner's OIN,
  revocation) right after the handshake and again before every request on a kept-alive
  connection, before a byte of the request is sent;
* a connection older than ``max_session_seconds`` is not used again (Digikoppeling WT008), nor
  one idle for more than ``KEEPALIVE_SECONDS``;
* connect and read timeouts (``Timeout``); any other failure is ``Unanswered``;
* an idle connection the server has closed (or that has unexpected bytes waiting) is dropped
  before use, as httpcore does. A request that fails on the wire is not repeated here: whether
  the partner processed it cannot be known, so the caller's retry (same idempotency key) decides;
* thread safe: a request takes an idle connection from a small pool (or makes one) and gives it
  back after the answer, so outbox workers sharing one sender never share a socket;
* the answer's body is bounded (``max_response_bytes``).
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.core.errors import CertificateRefused
from gateway.wire import http11

__all__ = ["PinnedHttps", "Response", "Unanswered", "Timeout", "ServerCertificateRefused", "MAX_RESPONSE_BYTES"]

#: DUO's and CJIB's answers are a few kB; anything near this is not an answer we want in memory.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
#: An idle connection is not used after this long (httpx's keepalive_expiry): a server closing an
#: idle connection of its own accord races our next request on it.
KEEPALIVE_SECONDS = 5.0
_MAX_IDLE = 8


class Unanswered(Exception):
    """No (complete) answer: connection refused or reset, TLS failure, a broken answer."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind  # the type name of the underlying error: for the detail, never a value


class Timeout(Unanswered):
    """The partner did not connect or answer within the timeout."""


class ServerCertificateRefused(Unanswered):
    """The server's TLS certificate was refused after the handshake; nothing was sent."""

    def __init__(self, refusal: CertificateRefused) -> None:
        super().__init__("ServerCertificateRefused")
        self.refusal = refusal


@dataclass(frozen=True)
class Response:
    status_code: int
    headers: Mapping[str, str]  # names in lower case
    content: bytes


class _Connection:
    __slots__ = ("sock", "der", "born", "idle_since")

    def __init__(self, sock: socket.socket, der: bytes | None) -> None:
        self.sock = sock
        self.der = der
        self.born = self.idle_since = time.monotonic()


class PinnedHttps:
    """Keep-alive HTTP/1.1 to one partner's origin; ``trust`` None checks no pin (tests, insecure mode)."""

    def __init__(self, base_url: str, ssl_context: ssl.SSLContext | None, trust: object | None, *,
                 timeout_seconds: float, max_session_seconds: float | None = None,
                 max_response_bytes: int = MAX_RESPONSE_BYTES) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("a partner URL is http(s)://host[:port][/path]")
        self.host = parts.hostname
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = parts.path.rstrip("/")
        self._host_header = parts.netloc.rpartition("@")[2]
        self.trust = trust
        self._context = (ssl_context or ssl.create_default_context()) if self.tls else None
        self._timeout = timeout_seconds
        self._max_session_seconds = max_session_seconds
        self._max_response_bytes = max_response_bytes
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def request(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]) -> Response:
        """One exchange; raises ``Timeout``, ``ServerCertificateRefused`` or ``Unanswered``."""
        exchange = http11.Exchange(method, self.prefix + path, self._host_header, headers, body)
        conn = self._take()
        try:
            if conn is None:
                conn = self._connect()
            else:  # a kept-alive connection whose certificate was revoked since sends nothing more
                self._refuse_if_bad(conn)
            conn.sock.sendall(exchange.raw)
            answer, surplus = exchange.read(conn.sock, limit=self._max_response_bytes)
        except Unanswered:
            _close(conn)
            raise
        except http11.TooLarge as exc:
            _close(conn)
            raise Unanswered("ResponseTooLarge") from exc
        except TimeoutError as exc:
            _close(conn)
            raise Timeout(type(exc).__name__) from exc
        except (OSError, http11.BadAnswer) as exc:
            _close(conn)
            raise Unanswered(type(exc).__name__) from exc
        if answer.keep_alive and not surplus:
            self._give(conn)
        else:  # the server said Connection: close, or framed the answer by closing
            _close(conn)
        return Response(answer.status, answer.headers, answer.body)

    def rekey(self, trust: object | None) -> None:
        """New trust for the next request; idle connections go, so the next handshake uses new keys."""
        self.trust = trust
        self._drop_idle()

    def close(self) -> None:
        self._closed = True
        self._drop_idle()

    # ------------------------------------------------------------------ connections

    def _connect(self) -> _Connection:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self._timeout)
        except TimeoutError as exc:
            raise Timeout(type(exc).__name__) from exc
        except OSError as exc:
            raise Unanswered(type(exc).__name__) from exc
        try:
            if self._context is not None:  # the handshake, under the same timeout
                sock = self._context.wrap_socket(sock, server_hostname=self.host)
        except TimeoutError as exc:
            sock.close()
            raise Timeout(type(exc).__name__) from exc
        except OSError as exc:
            sock.close()
            raise Unanswered(type(exc).__name__) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        der = sock.getpeercert(True) if isinstance(sock, ssl.SSLSocket) else None
        made = _Connection(sock, der)
        try:
            self._refuse_if_bad(made)
        except ServerCertificateRefused:
            sock.close()
            raise
        return made

    def _refuse_if_bad(self, conn: _Connection) -> None:
        if self.trust is None:
            return
        from gateway.security.tls import server_refusal  # the security layer imports this module's package

        refusal = server_refusal(conn.der, self.trust)
        if refusal is not None:
            raise ServerCertificateRefused(refusal)

    def _take(self) -> _Connection | None:
        while True:
            with self._lock:
                if not self._idle:
                    return None
                conn = self._idle.pop()
            if self._usable(conn):
                return conn
            _close(conn)

    def _give(self, conn: _Connection) -> None:
        if self._aged(conn):  # WT008
            _close(conn)
            return
        conn.idle_since = time.monotonic()
        with self._lock:
            if not self._closed and len(self._idle) < _MAX_IDLE:
                self._idle.append(conn)
                return
        _close(conn)

    def _drop_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            _close(conn)

    def _aged(self, conn: _Connection) -> bool:
        limit = self._max_session_seconds
        return limit is not None and time.monotonic() - conn.born > limit

    def _usable(self, conn: _Connection) -> bool:
        """Not aged, not idle too long, and nothing to read: an idle connection that is readable
        was closed by the server."""
        sock = conn.sock
        if self._aged(conn) or time.monotonic() - conn.idle_since > KEEPALIVE_SECONDS:
            return False
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return False
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return not poller.poll(0)

def _close(conn: _Connection | None) -> None:
    if conn is not None:
        conn.sock.close()
