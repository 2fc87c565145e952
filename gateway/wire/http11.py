"""HTTP/1.1 framing for ``gateway.wire.client``: one request out as one write, one answer read back.

The framing is h11's (sans-I/O, the HTTP/1.1 implementation under httpcore and uvicorn), so the
answers are judged by a well-tried parser: a malformed status line or header, conflicting
Content-Lengths, a Transfer-Encoding other than chunked, a bad chunk or an answer cut short are
``BadAnswer``, never a guess; header names or values that would inject a line are refused before
anything is sent. ``http.client`` spent about half of its CPU per exchange on ``email.parser``;
h11 costs about 70 µs per exchange here.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping

import h11

__all__ = ["BadAnswer", "TooLarge", "Answer", "Exchange"]

_MAX_HEAD_BYTES = 64 * 1024


class BadAnswer(Exception):
    """The answer does not parse as HTTP/1.1 (the message names the rule, never content)."""


class TooLarge(BadAnswer):
    """The answer's body is larger than the caller's bound."""


class Answer:
    __slots__ = ("status", "headers", "body", "keep_alive")

    def __init__(self, status: int, headers: dict[str, str], body: bytes, keep_alive: bool) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive


class Exchange:
    """One request and its answer on one connection (h11 keeps the state between them)."""

    def __init__(self, method: str, target: str, host: str, headers: Mapping[str, str], body: bytes | None) -> None:
        self.method = method
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD_BYTES)
        fields = [("Host", host), *headers.items()]
        if body is not None:
            fields.append(("Content-Length", str(len(body))))
        try:
            self.raw = (self._h11.send(h11.Request(method=method, target=target, headers=fields))
                        + (self._h11.send(h11.Data(data=body)) if body else b"")
                        + self._h11.send(h11.EndOfMessage()))
        except h11.LocalProtocolError as exc:
            raise ValueError(f"the request cannot be sent: {exc}") from None

    def read(self, sock: socket.socket, *, limit: int) -> tuple[Answer, bool]:
        """The final answer (1xx skipped) and whether bytes beyond it were received."""
        conn = self._h11
        status, size = 0, 0
        headers: dict[str, str] = {}
        parts: list[bytes] = []
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise BadAnswer(f"the answer breaks HTTP/1.1: {exc}") from None
            if event is h11.NEED_DATA:
                data = sock.recv(65536)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                for name, value in event.headers:
                    key, text = name.decode("ascii"), value.decode("latin-1")
                    headers[key] = f"{headers[key]}, {text}" if key in headers else text
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    raise TooLarge("the answer is larger than the bound")
                parts.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise BadAnswer("the server closed the connection before the answer was complete")
        keep_alive = conn.our_state is h11.DONE and conn.their_state is h11.DONE
        surplus = bool(conn.trailing_data[0])
        return Answer(status, headers, b"".join(parts), keep_alive), surplus
