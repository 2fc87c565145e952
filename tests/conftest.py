"""Shared fixtures: the sandbox PKI, a store on each backend, and a running chain.

The store fixture runs every test that uses it twice: on SQLite and on PostgreSQL. The
PostgreSQL half needs a server where the user may create databases, named by
``GATEWAY_TEST_PG_DSN`` (e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``); each test gets
a fresh database that is dropped afterwards. ``scripts/test`` (and so ``.ci/run``) sets it by
itself when a server answers on 127.0.0.1:5432: it creates a database of its own for the run and
drops it afterwards. Without it the PostgreSQL half is skipped and the summary says so plainly.

Everything the suite reads lies inside the checkout (tests/paths.py): the partners' samples are
vendored under tests/fixtures/contracts, their schemas under xsd/. Tests marked ``dated`` depend
on a date (fixed clocks, certificate validity); ``scripts/test`` runs them a second time with the
system clock a year ahead (libfaketime).
"""

from __future__ import annotations

import _thread
import os
import sys
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, SupportsIndex

import pytest


def _sleep_on_the_real_monotonic_clock(seconds: float | SupportsIndex, /) -> None:
    """time.sleep that works under libfaketime (see below): a lock wait with a timeout."""
    wait = float(seconds)  # time.sleep's own signature: a float or anything with __index__
    if wait < 0:
        raise ValueError("sleep length must be non-negative")
    lock = _thread.allocate_lock()
    lock.acquire()
    lock.acquire(timeout=wait)


# The year-ahead run (scripts/test) moves the wall clock with libfaketime and leaves the monotonic
# clock alone (FAKETIME_DONT_FAKE_MONOTONIC=1): with a faked monotonic clock every timed lock wait
# (threading.Event.wait, queue.get(timeout=...)) waits a year, since libfaketime 0.9.10 does not
# intercept sem_clockwait. But then its clock_nanosleep wrapper moves time.sleep's absolute
# monotonic deadline back by the offset too, and time.sleep fails with EINVAL. So time.sleep is
# replaced, in this process only, by a lock wait on the real monotonic clock. Tests that start the
# daemon as a subprocess (tests/e2e/helpers.py) do not get the replacement: keep them out of DATED.
if os.environ.get("FAKETIME_DONT_FAKE_MONOTONIC") == "1" and "faketime" in os.environ.get("LD_PRELOAD", ""):
    time.sleep = _sleep_on_the_real_monotonic_clock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.pki_fixtures import make_pki  # noqa: E402

PG_DSN = os.environ.get("GATEWAY_TEST_PG_DSN", "")
_pg_skipped = 0


@pytest.fixture(scope="session")
def pki_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_pki(tmp_path_factory)


def _pg_database() -> Generator[str, None, None]:
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
    from gateway.core.store import Store

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


# The end-to-end tests where a date hides, marked ``dated`` here in one place (scripts/test runs
# them a second time with the system clock a year ahead): fixed clocks (the CJIB outage on
# 2026-12-01, the DUO outage, the recorded corpus replayed on its recorded clock), certificate and
# timestamp validity on the live path (mutual TLS, WS-Security, XML signatures), and dates the
# rules compare with today (hand-over days, permit dates, rule-set history). Left out: the crash,
# fail-over, retry, catch-up and shutdown tests, which are about processes and timing, not dates,
# and take most of the layer's time.
DATED = {
    "tests/e2e/test_claims.py",
    "tests/e2e/test_flow_ind_duo.py",
    "tests/e2e/test_ind_endpoint_refusals.py",
    "tests/e2e/test_outage_health.py",
    "tests/e2e/test_replay_corpus.py",
    "tests/e2e/test_zambrano_scenario.py",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "dated: depends on a date (a fixed clock, certificate validity, today in a rule); "
        "scripts/test runs these a second time with the system clock a year ahead")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.split("::", 1)[0] in DATED:
            item.add_marker(pytest.mark.dated)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _pg_skipped:
        terminalreporter.write_line(
            f"NOTE: the PostgreSQL half of the suite was NOT run ({_pg_skipped} tests skipped). "
            "Run it with GATEWAY_TEST_PG_DSN=postgresql://postgres@127.0.0.1:5432/postgres "
            "(any server where the user may create databases).", yellow=True, bold=True)
