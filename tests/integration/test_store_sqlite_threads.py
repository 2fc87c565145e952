"""One SQLite store used by many threads: writes and one-statement reads take turns on one shared
connection (its page cache survives the commits); longer reads keep a connection per thread, so an
operator's slow read never holds up intake."""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gateway.core.errors import StoreError
from gateway.core.store import Store
from tests.integration.test_store_concurrency import _accept, race

THREADS = 8


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'gateway.db'}")
    s.migrate()
    yield s
    s.close()


def test_threads_racing_on_one_key_store_one_message(store: Store) -> None:
    for round_ in range(5):
        results = race(THREADS, lambda i, k=f"melding-{round_}", n=round_ + 1: _accept(store, k, seq=n))
        assert sorted(r.kind for r in results) == ["accepted"] + ["repeat"] * (THREADS - 1)
        assert len({r.message_id for r in results}) == 1
    assert store.query("SELECT COUNT(*) FROM messages")[0][0] == 5
    assert store.query("SELECT COUNT(*) FROM outbox")[0][0] == 5


def test_threads_writing_and_reading_see_every_commit(store: Store) -> None:
    def work(i: int) -> list[bool]:
        seen = []
        for j in range(20):
            key = f"m{i}-{j}"
            _accept(store, key, seq=1000 * i + j + 1)
            seen.append(store.lookup("ind-duo", key) is not None)  # a one-statement read, after the commit
        return seen

    assert all(all(s) for s in race(THREADS, work))
    assert store.query("SELECT COUNT(*) FROM messages")[0][0] == THREADS * 20


def test_a_long_read_does_not_hold_up_a_write(store: Store) -> None:
    _accept(store, "before")
    reading, done = threading.Event(), threading.Event()

    def reader() -> None:
        with store.tx(write=False) as t:  # an operator's read: its own connection, a snapshot
            t.one("SELECT COUNT(*) FROM messages")
            reading.set()
            done.wait(10)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        assert reading.wait(5)
        with ThreadPoolExecutor(1) as pool:
            result = pool.submit(_accept, store, "during").result(timeout=5)  # would wait 10 s if held up
        assert result.kind == "accepted"
        assert not done.is_set()  # the read was still open while the write committed
    finally:
        done.set()
        thread.join()
    assert store.lookup("ind-duo", "during") is not None


def test_an_in_memory_store_reads_what_it_wrote() -> None:
    s = Store("sqlite:///:memory:")
    try:
        s.migrate()
        _accept(s, "one")
        assert s.query("SELECT COUNT(*) FROM messages")[0][0] == 1  # a longer read: same one database
        assert s.lookup("ind-duo", "one") is not None
    finally:
        s.close()



def _while_the_turn_is_held(store: Store, calls: list[Callable[[], Any]]) -> list[Future[Any]]:
    """Start ``calls`` in threads while another writer holds the turn (its commit in progress),
    and let go once every one of them waits in the queue."""
    pool = ThreadPoolExecutor(len(calls))
    with store._turn:
        futures = [pool.submit(call) for call in calls]
        deadline = time.monotonic() + 10
        while len(store._queue) < len(calls) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(store._queue) == len(calls)
    pool.shutdown(wait=False)
    return futures


def _batches(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    run = store._run_batch

    def counted(batch: list[Any]) -> None:
        sizes.append(len(batch))
        run(batch)

    monkeypatch.setattr(store, "_run_batch", counted)
    return sizes


def test_writers_waiting_for_their_turn_share_one_commit(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    batches = _batches(store, monkeypatch)
    futures = _while_the_turn_is_held(store, [lambda i=i: _accept(store, f"m{i}", seq=i + 1) for i in range(THREADS)])
    assert all(f.result(timeout=10).kind == "accepted" for f in futures)
    assert batches == [THREADS]  # group commit: one transaction for all of them
    assert store.query("SELECT COUNT(*) FROM messages")[0][0] == THREADS


def test_a_write_failing_in_a_shared_commit_fails_alone(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A delivery that does not exist: its attempt row breaks the foreign key. The shared
    transaction is rolled back, then each write runs alone: only that caller sees the error."""
    _accept(store, "first")
    (leased,) = store.claim("duo", "w", limit=1, lease_seconds=30)
    bogus = dataclasses.replace(leased, id=999_999)
    batches = _batches(store, monkeypatch)
    finish = functools.partial(store.finish_attempt, bogus, "w", started_at=time.time(), duration_ms=1.0,
                               http_status=200, outcome="success", detail="ok", new_state="delivered")
    futures = _while_the_turn_is_held(
        store, [finish, *(lambda i=i: _accept(store, f"m{i}", seq=i + 2) for i in range(THREADS - 1))])
    with pytest.raises(StoreError):
        futures[0].result(timeout=10)
    assert all(f.result(timeout=10).kind == "accepted" for f in futures[1:])
    assert batches == [THREADS]
    assert store.query("SELECT COUNT(*) FROM messages")[0][0] == THREADS
    assert store.query("SELECT COUNT(*) FROM attempts")[0][0] == 0
