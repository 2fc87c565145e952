"""Serving ASGI apps with uvicorn: mutual TLS, the peer certificate in the scope, free ports.

uvicorn does not put the TLS client certificate into the ASGI scope (NOTES.md; uvicorn pull
requests #1119/#3132/#3133 are open). ``_PeerCert`` reads it from the transport in this one
place and puts it where the ASGI TLS extension would: ``scope["extensions"]["tls"]
["client_cert_der"]`` (DER bytes, or ``None`` on plain HTTP). It is mixed into uvicorn's two HTTP/1.1
protocols: ``PeerCertProtocol`` (h11, pure Python; the default) and ``PeerCertHttpToolsProtocol``
(httptools, the C parser, when installed; ``make_server(http="httptools")``). Issue 22 measured both
in one run (bench/RESULTS.md): httptools saved nothing measurable per notification here, so h11 stays.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools not installed: h11 only
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

__all__ = ["Answer", "PeerCertProtocol", "PeerCertHttpToolsProtocol", "DEFAULT_HTTP", "client_cert_der", "bind",
           "make_server", "RunningServer", "Server", "serve_in_thread"]

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


@dataclass(frozen=True)
class Answer:
    """One HTTP answer of an inbound endpoint: what the partner app sends back."""

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


class _PeerCert:
    """Mixed into a uvicorn HTTP protocol: the TLS client certificate in every request's scope.

    ``max_session_seconds`` (Digikoppeling WT008: TLS sessions have a maximum lifetime): the
    response on a connection older than this says ``Connection: close``, and the connection is
    closed after it (the client opens a new one, with a new handshake and a fresh certificate
    check). None: no limit. ``make_server`` sets it per server.
    """

    max_session_seconds: float | None = None
    app: Any
    cycle: Any
    transport: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._peer_der: bytes | None = None
        self._born = time.monotonic()
        inner = self.app

        async def app_with_cert(scope: Scope, receive: Any, send: Any) -> None:
            scope.setdefault("extensions", {})["tls"] = {"client_cert_der": self._peer_der}
            await inner(scope, receive, self._closing_when_aged(send))

        self.app = app_with_cert

    def _closing_when_aged(self, send: Any) -> Any:
        """``send`` that adds ``Connection: close`` to the response of an aged connection, so the
        client does not send on it again (a close without it races the client's next request)."""
        if self.max_session_seconds is None or time.monotonic() - self._born <= self.max_session_seconds:
            return send

        async def closing(message: Any) -> None:
            if message.get("type") == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        return closing

    def data_received(self, data: bytes) -> None:
        # A request takes the server's default headers when its head is parsed, in this call.
        _refresh_date(self.config, self.server_state)  # type: ignore[attr-defined]
        super().data_received(data)  # type: ignore[misc]

    def connection_made(self, transport: asyncio.Transport) -> None:
        self._born = time.monotonic()
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self._peer_der = ssl_object.getpeercert(binary_form=True)
        super().connection_made(transport)  # type: ignore[misc]

    def shutdown(self) -> None:
        # An idle keep-alive TLS connection: close() would wait for the peer's close_notify,
        # which an idle client never sends (asyncio's ssl_shutdown_timeout, 30 s), so every
        # shutdown with a partner connected stalled 30 s. Nothing is in flight: abort it.
        if self.transport.get_extra_info("ssl_object") is not None and (
                self.cycle is None or self.cycle.response_complete):
            self.transport.abort()
            return
        super().shutdown()  # type: ignore[misc]


class PeerCertProtocol(_PeerCert, H11Protocol):  # type: ignore[misc]
    """uvicorn's h11 protocol with the TLS client certificate in the scope (see ``_PeerCert``)."""


if HttpToolsProtocol is not None:
    class PeerCertHttpToolsProtocol(_PeerCert, HttpToolsProtocol):  # type: ignore[misc]
        """uvicorn's httptools protocol with the TLS client certificate in the scope (see ``_PeerCert``)."""
else:
    PeerCertHttpToolsProtocol = None  # type: ignore[assignment,misc]

#: The protocol ``make_server`` uses unless told: "h11" (see the module docstring; the bench's lever A/B sets it).
DEFAULT_HTTP = "h11"


def client_cert_der(scope: Scope) -> bytes | None:
    """The DER client certificate of this request's TLS connection, if any."""
    return scope.get("extensions", {}).get("tls", {}).get("client_cert_der")


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket; port 0 picks a free port (read it from ``getsockname()``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not left 0: asyncio sets TCP_NODELAY only on accepted sockets whose proto
    # says TCP (base_events._set_nodelay). Without it every answer (headers and body: two writes)
    # waited for the client's delayed ACK, about 40 ms a request on Linux.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def make_server(app: ASGIApp, *, ssl_context: ssl.SSLContext | None = None,
                limit_concurrency: int | None = None, graceful_seconds: float = 5.0,
                max_session_seconds: float | None = None, http: str | None = None) -> uvicorn.Server:
    """A uvicorn server for ``app``; ``http``: "h11" or "httptools" (default ``DEFAULT_HTTP``)."""
    base = PeerCertHttpToolsProtocol if (http or DEFAULT_HTTP) == "httptools" else PeerCertProtocol
    if base is None:
        raise ValueError("httptools is not installed")
    protocol = type(base.__name__, (base,), {"max_session_seconds": max_session_seconds})
    config = uvicorn.Config(
        app,
        http=protocol,
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_keep_alive=30,
        limit_concurrency=limit_concurrency,
        # An idle TLS peer that never answers close_notify would otherwise hold shutdown for
        # asyncio's 30 s SSL shutdown timeout; requests still running after this are cancelled
        # (their handler thread finishes and commits; the client retries and gets the stored answer).
        timeout_graceful_shutdown=max(1, round(graceful_seconds)),
    )
    config.load()
    # uvicorn builds its ssl context from file names; we hand it ours (client certs required,
    # trust anchors per partner, TLS 1.2 minimum).
    config.ssl = ssl_context
    server = Server(config)
    # The daemon installs its own signal handling (drain on SIGTERM).
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
    return server


class Server(uvicorn.Server):
    """uvicorn's server, whose main loop sleeps until it is told to stop.

    uvicorn's loop wakes every 0.1 s to refresh the Date header (once a second) and to see
    ``should_exit``. Here the Date header is refreshed when a request arrives (``_PeerCert.
    data_received``) and setting ``should_exit`` (from any thread) wakes the loop, so an idle
    daemon's two listeners cost nothing between requests (issue 22, idle CPU: a wake-up a second
    cost about 390 µs of CPU a second here) and a stop is as quick as before. The loop still looks once a
    ``TICK_SECONDS``, a backstop that costs nothing measurable.
    """

    TICK_SECONDS = 60.0

    @property
    def should_exit(self) -> bool:
        return bool(self.__dict__.get("_should_exit", False))

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self.__dict__["_should_exit"] = value
        if value:
            self._poke()

    def _poke(self) -> None:
        loop, waiter = self.__dict__.get("_tick_loop"), self.__dict__.get("_tick_waiter")
        if loop is None or waiter is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(_wake, waiter)
        except RuntimeError:  # the loop closed meanwhile
            pass

    async def main_loop(self) -> None:
        loop = self.__dict__["_tick_loop"] = asyncio.get_running_loop()
        should_exit = await self.on_tick(0)
        while not should_exit:
            waiter = self.__dict__["_tick_waiter"] = loop.create_future()
            if self.should_exit:  # set before this waiter existed
                _wake(waiter)
            timer = loop.call_later(self.TICK_SECONDS, _wake, waiter)
            await waiter
            timer.cancel()
            should_exit = await self.on_tick(0)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _refresh_date(config: uvicorn.Config, state: Any) -> None:
    """The Date header of the server's default headers, refreshed when its second has passed (what
    uvicorn's ``Server.on_tick`` does once a second, done when a request needs it)."""
    now = int(time.time())
    if state.__dict__.get("date_second") == now:
        return
    state.date_second = now
    date = [(b"date", formatdate(now, usegmt=True).encode())] if config.date_header else []
    state.default_headers = date + config.encoded_headers


@dataclass
class RunningServer:
    """A server running in a background thread; ``url`` is its base URL."""

    url: str
    port: int
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_in_thread(app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0,
                    ssl_context: ssl.SSLContext | None = None,
                    max_session_seconds: float | None = None) -> RunningServer:
    """Start ``app`` under uvicorn in a daemon thread and wait until it accepts connections."""
    sock = bind(host, port)
    actual = sock.getsockname()[1]
    server = make_server(app, ssl_context=ssl_context, max_session_seconds=max_session_seconds)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                              name=f"uvicorn:{actual}", daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        if not thread.is_alive():
            raise RuntimeError("the server thread died during start-up")
        threading.Event().wait(0.01)
    scheme = "https" if ssl_context is not None else "http"
    return RunningServer(url=f"{scheme}://{host}:{actual}", port=actual, server=server, thread=thread)
