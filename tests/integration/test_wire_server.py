"""The uvicorn server's own loop (gateway.wire.server.Server): idle without waking, yet a fresh
Date header on every answer and a prompt stop."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

import httpx

from gateway.wire.server import serve_in_thread


async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


def _date_of(response: httpx.Response) -> float:
    return parsedate_to_datetime(response.headers["date"]).timestamp()


def test_the_date_header_is_fresh_after_an_idle_spell_on_the_same_connection():
    running = serve_in_thread(hello)
    try:
        with httpx.Client() as client:
            first = client.get(running.url + "/")
            # The loop no longer wakes each second to refresh the Date header: it must be
            # refreshed when a request comes, also on a kept-alive connection.
            time.sleep(2.2)
            before = time.time()
            second = client.get(running.url + "/")
            after = time.time()
        assert first.status_code == second.status_code == 200
        assert int(before) <= _date_of(second) <= after
        assert _date_of(second) - _date_of(first) >= 2
        assert len(second.headers.get_list("date")) == 1
    finally:
        running.stop()


def test_a_stop_is_prompt_although_the_loop_sleeps_long():
    running = serve_in_thread(hello)
    time.sleep(0.3)  # the loop is asleep, waiting for its long tick
    t0 = time.monotonic()
    running.stop(timeout=10)
    assert not running.thread.is_alive()
    assert time.monotonic() - t0 < 2.0
