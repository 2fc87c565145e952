"""HTTP/1.1 framing for ``gateway.wire.client``: one request out as one write, one answer read back.

``http.client`` spends about half of its CPU per exchange on ``email.parser`` (the answer's
headers) and on building the request header by header (two TLS records: head and body). Our
partners' answers are small and simple, so this module frames them itself, strictly: anything
outside RFC 9112 as a server sends it (a malformed status line or header, obsolete line folding,
a Transfer-Encoding other than chunked, conflicting Content-Lengths, a bad chunk) is
``BadAnswer``, never a guess. Requests with header names or values holding CR, LF or NUL are
refused before anything is sent.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping

__all__ = ["BadAnswer", "TooLarge", "Answer", "encode_request", "read_answer"]

_MAX_HEAD_BYTES = 64 * 1024  # status line and headers together
_MAX_LINE_BYTES = 8 * 1024  # one chunk-size or trailer line
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9]{2})(?: [^\r\n]*)?")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_ILLEGAL = re.compile(r"[\r\n\0]")


class BadAnswer(Exception):
    """The answer does not parse as HTTP/1.1 (the message names the rule, never content)."""


class TooLarge(BadAnswer):
    """The answer's body is larger than the caller's bound."""


class Answer:
    __slots__ = ("status", "headers", "body", "keep_alive")

    def __init__(self, status: int, headers: dict[str, str], body: bytes, keep_alive: bool) -> None:
        self.status = status
        self.headers = headers  # names in lower case; a repeated header's values joined with ", "
        self.body = body
        self.keep_alive = keep_alive


def encode_request(method: str, target: str, host: str, headers: Mapping[str, str], body: bytes | None) -> bytes:
    """The request as bytes (head and body), with Host and Content-Length; refuses header injection."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    for name, value in headers.items():
        if _ILLEGAL.search(name) or _ILLEGAL.search(value) or not name:
            raise ValueError("a header name or value holds CR, LF or NUL")
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if body else head


class _Reader:
    """Bytes from a socket with a buffer; EOF in the middle of an answer is ``BadAnswer``."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.eof = False

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            self.eof = True
            raise BadAnswer("the server closed the connection before the answer was complete")
        self.buf += data

    def until(self, mark: bytes, limit: int) -> bytes:
        start = 0
        while True:
            found = self.buf.find(mark, start)
            if found >= 0:
                out = bytes(self.buf[:found])
                del self.buf[:found + len(mark)]
                return out
            if len(self.buf) > limit:
                raise BadAnswer("a header or chunk line is too long")
            start = max(0, len(self.buf) - len(mark) + 1)
            self._fill()

    def exactly(self, count: int) -> bytes:
        while len(self.buf) < count:
            self._fill()
        out = bytes(self.buf[:count])
        del self.buf[:count]
        return out

    def rest(self, limit: int) -> bytes:
        """Everything until the server closes (an answer framed by the end of the connection)."""
        while not self.eof:
            if len(self.buf) > limit:
                raise TooLarge("the answer is larger than the bound")
            data = self.sock.recv(65536)
            self.eof = not data
            self.buf += data
        if len(self.buf) > limit:
            raise TooLarge("the answer is larger than the bound")
        return self.exactly(len(self.buf))


def read_answer(sock: socket.socket, *, method: str, limit: int) -> tuple[Answer, bool]:
    """The final answer (1xx interim answers skipped) and whether bytes beyond it were received."""
    reader = _Reader(sock)
    while True:
        minor, status, headers = _head(reader)
        if not 100 <= status < 200:
            break
    keep_alive = minor == 1 and "close" not in _tokens(headers.get("connection", ""))
    body, framed = _body(reader, headers, status=status, method=method, limit=limit)
    return Answer(status, headers, body, keep_alive and framed), bool(reader.buf)


def _head(reader: _Reader) -> tuple[int, int, dict[str, str]]:
    lines = reader.until(b"\r\n\r\n", _MAX_HEAD_BYTES).split(b"\r\n")
    found = _STATUS_LINE.fullmatch(lines[0])
    if found is None:
        raise BadAnswer("the status line is not HTTP/1.x")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):  # also refuses obsolete line folding
            raise BadAnswer("a header line is malformed")
        key, text = name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return int(found.group(1)), int(found.group(2)), headers


def _tokens(value: str) -> set[str]:
    return {t.strip().lower() for t in value.split(",")}


def _body(reader: _Reader, headers: dict[str, str], *, status: int, method: str, limit: int) -> tuple[bytes, bool]:
    """(the body, whether its end was framed, so the connection may carry another exchange)."""
    if method == "HEAD" or status in (204, 304):
        return b"", True
    coding = headers.get("transfer-encoding")
    if coding is not None:
        if [t for t in _tokens(coding) if t] != ["chunked"]:
            raise BadAnswer("a Transfer-Encoding other than chunked")
        return _chunked(reader, limit), True
    length = headers.get("content-length")
    if length is None:
        return reader.rest(limit), False
    values = _tokens(length)
    if len(values) != 1 or not (value := values.pop()).isdigit() or not value.isascii():
        raise BadAnswer("Content-Length is not one number")
    if int(value) > limit:
        raise TooLarge("the answer is larger than the bound")
    return reader.exactly(int(value)), True


def _chunked(reader: _Reader, limit: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size_field = reader.until(b"\r\n", _MAX_LINE_BYTES).split(b";", 1)[0].strip(b" \t")
        if not _HEX.fullmatch(size_field):
            raise BadAnswer("a chunk size is malformed")
        size = int(size_field, 16)
        if size == 0:
            break
        total += size
        if total > limit:
            raise TooLarge("the answer is larger than the bound")
        parts.append(reader.exactly(size))
        if reader.exactly(2) != b"\r\n":
            raise BadAnswer("a chunk does not end with CRLF")
    while reader.until(b"\r\n", _MAX_LINE_BYTES):  # trailer fields, ignored, up to the empty line
        pass
    return b"".join(parts)
