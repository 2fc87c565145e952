"""Shared fixtures: the sandbox PKI, a store on each backend, and a running chain.

The store fixture runs every test that uses it twice: on SQLite and on PostgreSQL. The
PostgreSQL half needs a server: set ``GATEWAY_TEST_PG_DSN`` (``.ci/run`` always does, e.g.
``postgresql://postgres@127.0.0.1:5432/postgres``); each test gets a fresh database that is
dropped afterwards. Without it the PostgreSQL half is skipped and the summary says so plainly.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.pki_fixtures import make_pki  # noqa: E402

PG_DSN = os.environ.get("GATEWAY_TEST_PG_DSN", "")
REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
_pg_skipped = 0


@pytest.fixture(scope="session")
def pki_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_pki(tmp_path_factory)


def _pg_database() -> Iterator[str]:
    import psycopg

    name = f"gw_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = PG_DSN.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_dsn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A DSN for an empty database; the test runs once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
        return
    if not PG_DSN:
        global _pg_skipped
        _pg_skipped += 1
        pytest.skip("PostgreSQL half not run: set GATEWAY_TEST_PG_DSN")
    yield from _pg_database()


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    """A fresh PostgreSQL database, for tests that are about PostgreSQL only."""
    if not PG_DSN:
        global _pg_skipped
        _pg_skipped += 1
        pytest.skip("PostgreSQL half not run: set GATEWAY_TEST_PG_DSN")
    yield from _pg_database()


@pytest.fixture
def store(store_dsn: str) -> Iterator[Any]:
    from gateway.store import Store

    s = Store(store_dsn)
    s.migrate()
    yield s
    s.close()


@pytest.fixture
def make_chain(tmp_path: Path, pki_paths: dict[str, Any], store_dsn: str) -> Iterator[Callable[..., Any]]:
    """Start the gateway and the simulated partners: ``make_chain(**start_chain kwargs)``."""
    from gateway.sandbox import start_chain

    chains: list[Any] = []

    def make(**kw: Any) -> Any:
        kw.setdefault("dsn", store_dsn)
        kw.setdefault("pki_paths", pki_paths)
        chain = start_chain(tmp_path / f"chain{len(chains)}", **kw)
        chains.append(chain)
        return chain

    yield make
    for chain in chains:
        chain.stop()


@pytest.fixture
def chain(make_chain: Callable[..., Any]) -> Any:
    return make_chain()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _pg_skipped:
        terminalreporter.write_line(
            f"NOTE: the PostgreSQL half of the suite was NOT run ({_pg_skipped} tests skipped). "
            "Run it with GATEWAY_TEST_PG_DSN=postgresql://postgres@127.0.0.1:5432/postgres "
            "(any server where the user may create databases).", yellow=True, bold=True)
