"""One SQLite store used by many threads: writes and one-statement reads take turns on one shared
connection (its page cache survives the commits); longer reads keep a connection per thread, so an
operator's slow read never holds up intake."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

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

        def accept(_: int, key: str = f"melding-{round_}", seq: int = round_ + 1) -> Any:
            return _accept(store, key, seq=seq)

        results = race(THREADS, accept)
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
