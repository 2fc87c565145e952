"""gateway.wire.http11: the framing of the outbound client (h11), over a real socket pair."""

from __future__ import annotations

import socket

import pytest

from gateway.wire.http11 import BadAnswer, Exchange, TooLarge


def _answer(raw: bytes, *, method: str = "POST", limit: int = 1000, close: bool = True):
    ours, theirs = socket.socketpair()
    try:
        theirs.sendall(raw)
        if close:
            theirs.close()
        ours.settimeout(5)
        return Exchange(method, "/", "h", {}, b"" if method == "POST" else None).read(ours, limit=limit)
    finally:
        ours.close()
        theirs.close()


def test_the_request_is_one_piece_with_host_and_length() -> None:
    raw = Exchange("POST", "/a/b", "duo.example:8443", {"Idempotency-Key": "k-1"}, b"<x/>").raw
    assert raw == (b"POST /a/b HTTP/1.1\r\nHost: duo.example:8443\r\nIdempotency-Key: k-1\r\n"
                   b"Content-Length: 4\r\n\r\n<x/>")
    assert Exchange("GET", "/", "h", {}, None).raw == b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"


@pytest.mark.parametrize("headers", [{"Idempotency-Key": "k\r\nX-Evil: 1"}, {"X\nY": "v"}, {"X": "a\0b"}])
def test_header_injection_is_refused_before_sending(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        Exchange("POST", "/", "h", headers, b"")


def test_content_length_answer_keeps_the_connection() -> None:
    answer, surplus = _answer(b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: 5\r\n\r\nhello",
                              close=False)
    assert (answer.status, answer.body, answer.keep_alive, surplus) == (200, b"hello", True, False)
    assert answer.headers == {"content-type": "application/xml", "content-length": "5"}


def test_chunked_answer_with_extensions_and_trailers() -> None:
    answer, _ = _answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n", close=False)
    assert answer.body == b"abc0123456789" and answer.keep_alive


def test_interim_answers_are_skipped_and_connection_close_is_honoured() -> None:
    answer, _ = _answer(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\n"
                        b"Connection: close\r\nContent-Length: 0\r\n\r\n")
    assert answer.status == 503 and answer.headers["retry-after"] == "7" and not answer.keep_alive


def test_an_answer_framed_by_closing_is_read_to_the_end_and_not_kept() -> None:
    answer, _ = _answer(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")
    assert answer.body == b"until the end" and not answer.keep_alive


def test_an_obsolete_folded_header_is_unfolded() -> None:
    # RFC 9112 section 5.2: a user agent replaces each obs-fold in a response with a space.
    answer, _ = _answer(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n", close=False)
    assert answer.headers["x-a"] == "1 folded"


def test_bytes_after_the_answer_are_reported() -> None:
    _, surplus = _answer(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 200 OK\r\n", close=False)
    assert surplus


@pytest.mark.parametrize("raw", [
    b"HTTP/2 200 OK\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"ICY 200 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Header: x\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",  # the server closed before the end
    b"HTTP/1.1 200 OK\r\nContent-Le",
])
def test_malformed_answers_are_refused(raw: bytes) -> None:
    with pytest.raises(BadAnswer):
        _answer(raw)


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n01234567890",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n5\r\n67890\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n01234567890",
])
def test_bodies_over_the_bound_are_refused(raw: bytes) -> None:
    with pytest.raises(TooLarge):
        _answer(raw, limit=10)
    assert _answer(raw, limit=11)[0].body == b"01234567890"
