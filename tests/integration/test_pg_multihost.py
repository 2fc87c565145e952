"""Issue 23 (3): a libpq multi-host DSN with target_session_attrs=read-write works.

The first host refuses connections (nothing listens there); libpq goes on to the next, so the
gateway follows a switchover of a PostgreSQL HA pair. Uses a server of the test's own.
"""

from __future__ import annotations

import socket

import pytest

from gateway.core.store import SCHEMA_VERSION, Store
from tests import pgserver


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens there


def test_multi_host_dsn_skips_a_host_that_is_down() -> None:
    reason = pgserver.available()
    if reason:
        pytest.skip(reason)
    server = pgserver.PgServer()
    server.start()
    try:
        dsn = (f"postgresql://postgres@127.0.0.1:{_dead_port()},127.0.0.1:{server.port}/postgres"
               "?target_session_attrs=read-write&connect_timeout=3")
        store = Store(dsn)
        try:
            assert store.migrate() == SCHEMA_VERSION
            assert store.query("SELECT 1") == [(1,)]
            assert store.status()["up"] is True
        finally:
            store.close()
    finally:
        server.destroy()
