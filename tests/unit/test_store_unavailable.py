"""Issue 23: the store says 'unreachable' (not 'schema version 0'), backs off, and reconnects by itself.

SQLite stands in for a database that goes away: a path that cannot be opened (a directory in the
database file's place) makes every transaction fail with ``StoreUnavailable``; removing the cause
lets the next transaction after the back-off reconnect, without a new Store.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.core import observability
from gateway.core.errors import StoreUnavailable
from gateway.core.store import RECONNECT_MAX_SECONDS, SCHEMA_VERSION, Store


def test_unopenable_sqlite_is_unavailable_then_recovers(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    Store(f"sqlite:///{db}").migrate()
    store = Store(f"sqlite:///{db}")
    moved = tmp_path / "moved.db"
    db.rename(moved)
    db.mkdir()  # the database file's place is taken: "unable to open database file"
    try:
        with pytest.raises(StoreUnavailable) as caught:
            store.version()  # never "0": unreachable is not empty
        assert caught.value.cause.startswith("sqlite3.OperationalError: unable to open database file")
        assert "the store is unreachable" in str(caught.value)
        status = store.status()
        assert status["up"] is False and status["cause"] == caught.value.cause and status["since"]
        # While the back-off runs, a transaction fails at once, without trying to connect.
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.query("SELECT 1")
        assert time.monotonic() - t0 < 0.05
    finally:
        db.rmdir()
        moved.rename(db)
    end = time.monotonic() + RECONNECT_MAX_SECONDS + 1
    while True:
        try:
            assert store.version() == SCHEMA_VERSION
            break
        except StoreUnavailable:
            assert time.monotonic() < end, "did not reconnect after the back-off"
            time.sleep(0.05)
    store.probe()  # a write commits: up again
    assert store.status() == {"up": True, "cause": None, "since": None}
    store.close()


def test_readonly_database_file_is_unavailable(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes to read-only files; covered by tests/e2e/test_db_outage_sqlite.py (full disk)")
    db = tmp_path / "gateway.db"
    Store(f"sqlite:///{db}").migrate()
    store = Store(f"sqlite:///{db}")
    store.query("SELECT 1")
    store.close()
    for p in tmp_path.iterdir():
        p.chmod(0o444)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(StoreUnavailable):
            store.probe()
    finally:
        tmp_path.chmod(0o755)
        for p in tmp_path.iterdir():
            p.chmod(0o644)


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def error(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))


def test_store_log_lines_are_rate_limited_per_cause() -> None:
    log = _Log()
    a = StoreUnavailable("psycopg.OperationalError (test a)")
    b = StoreUnavailable("psycopg.AdminShutdown (test b)")
    for _ in range(50):
        observability.log_store_error(log, a, interval=0.3, stage="sending")
        observability.log_store_error(log, b, interval=0.3, stage="sending")
    assert [f["cause"] for _, f in log.lines] == [a.cause, b.cause]
    assert all(f["repeated"] == 0 for _, f in log.lines)
    time.sleep(0.35)
    observability.log_store_error(log, a, interval=0.3, stage="sending")
    assert log.lines[-1][1]["cause"] == a.cause and log.lines[-1][1]["repeated"] == 49
    assert log.lines[-1][0] == "store_unavailable"
