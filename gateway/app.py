"""The gateway's ASGI applications: the partner endpoints and the operator endpoints.

A plain ASGI router (no framework): each endpoint reads the body within its partner's size cap
and hands it, with the TLS client certificate, to the partner's ``server.py``. The handlers are
synchronous (parse, verify, validate, one commit); they run in a fixed pool of threads so a slow
commit never stalls the event loop that accepts connections. The pool is fixed (not anyio's,
whose idle threads come and go) because each thread holds its own database connection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gateway.core.threads import name_this_thread
from gateway.runtime import Runtime
from gateway.wire.server import Answer, client_cert_der

__all__ = ["partner_app", "operator_app"]

Handler = Callable[[Runtime, bytes, dict[str, str], bytes | None], Answer]


async def _read_body(receive: Callable[[], Awaitable[dict[str, Any]]], limit: int) -> bytes:
    """The body, or its first ``limit`` bytes when it is longer (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client went away")
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit or not message.get("more_body", False):
            return b"".join(chunks)[:limit]


async def _send(send: Callable[[dict[str, Any]], Awaitable[None]], answer: Answer) -> None:
    headers = [(b"content-type", answer.content_type.encode()), (b"content-length", str(len(answer.body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in answer.headers]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


def _problem(status: int, title: str, detail: str = "") -> Answer:
    body = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    return Answer(status, "application/problem+json", json.dumps(body).encode())


def _executor(rt: Runtime) -> ThreadPoolExecutor:
    pool = rt.clients.get("intake-pool")
    if pool is None:
        pool = rt.clients["intake-pool"] = _Pool(max_workers=8, thread_name_prefix="intake",
                                                    initializer=name_this_thread)
    return pool


class _Pool(ThreadPoolExecutor):
    def close(self) -> None:  # Runtime.close_clients closes everything it holds
        self.shutdown(wait=True)


async def _in_pool(rt: Runtime, fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(_executor(rt), fn, *args)


def partner_app(rt: Runtime, routes: dict[tuple[str, str], tuple[Handler, int]]) -> Any:
    """``routes`` maps (method, path) to (handler, body limit in bytes)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        route = routes.get((scope["method"], scope["path"]))
        if route is None:
            await _send(send, _problem(404, "no such endpoint"))
            return
        handler, limit = route
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            # Read one byte past the cap: an oversize message is then refused by the handler's
            # own size check and recorded like every other refusal.
            body = await _read_body(receive, limit + 1)
        except ConnectionError:
            return
        cert = client_cert_der(scope)
        answer = await _in_pool(rt, handler, rt, body, headers, cert)
        await _send(send, answer)

    return app


_CONSOLE_BODY_LIMIT = 64 * 1024


async def _console(rt: Runtime, scope: dict[str, Any], receive: Any, send: Any) -> None:
    from urllib.parse import parse_qsl

    from gateway.console import web

    try:
        body = await _read_body(receive, _CONSOLE_BODY_LIMIT)
    except ConnectionError:
        return
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    query = dict(parse_qsl(scope.get("query_string", b"").decode("utf-8", "replace"), keep_blank_values=True))
    req = web.Request(scope["method"], scope["path"], query, headers, body, client_cert_der(scope))
    await _send(send, await _in_pool(rt, web.handle, rt, req))


def operator_app(rt: Runtime) -> Any:
    """``/metrics`` (Prometheus), ``/health`` (JSON; 200 ok/degraded, 503 failing) and, unless
    ``[console] enabled = false``, the operator console and its API (``gateway.console.web``)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from gateway.console.web import is_console
    from gateway.ops import health

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/metrics":
            try:
                report = await _in_pool(rt, health.evaluate, rt)
                health.export(rt, report)
            except Exception as exc:  # noqa: BLE001 - the metrics are served from memory regardless
                rt.log.error("health_failed", error=type(exc).__name__, stage="health")
            body = generate_latest(rt.metrics.registry)
            await _send(send, Answer(200, CONTENT_TYPE_LATEST, body))
        elif scope["path"] == "/health":
            try:
                report = await _in_pool(rt, health.evaluate, rt)
            except Exception as exc:  # noqa: BLE001 - never a bare 500: a failing report that says why
                report = {"status": "failing", "error": type(exc).__name__,
                          "reason": "the health evaluation failed; see the log (health_failed)"}
                rt.log.error("health_failed", error=type(exc).__name__, stage="health")
            status = 503 if report["status"] == "failing" else 200
            await _send(send, Answer(status, "application/json", json.dumps(report, indent=2).encode()))
        elif rt.config.console.enabled and is_console(scope["path"]):
            await _console(rt, scope, receive, send)
        elif scope["path"] == "/" and rt.config.console.enabled:
            await _send(send, Answer(303, "text/plain", b"", (("location", "/console/"),)))
        else:
            await _send(send, _problem(404, "no such endpoint"))

    return app
