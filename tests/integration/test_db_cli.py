"""`gateway db upgrade|status` on both backends, and refusing a database this gateway does not know.

Each test writes a minimal config (TLS off: the schema check comes before anything that needs
keys) pointing at the ``store_dsn`` fixture's fresh database, and runs the real command in a
subprocess, so exit codes and standard error are what an operator sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.core.store import SCHEMA_VERSION, Store

REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, dsn: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'instance = "db-cli"\n'
        f'[store]\ndsn = "{dsn}"\n'
        f'[listen]\nhost = "127.0.0.1"\nport = 0\nmetrics_port = 0\n'
        f'[tls]\nenabled = false\n'
        f'[rules]\ndirectory = "{REPO / "config" / "rules"}"\n'
        f'[log]\nfile = "{tmp_path / "gateway.log"}"\n')
    return path


def gateway(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY__")}
    env["COLUMNS"] = "200"  # rich wraps long error lines otherwise
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=timeout)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def test_status_upgrade_status(tmp_path: Path, store_dsn: str) -> None:
    cfg = _config(tmp_path, store_dsn)

    before = gateway("db", "status", "--config", str(cfg), "--json")
    assert before.returncode == 1, before.stderr
    assert json.loads(before.stdout) == {"version": 0, "expected": SCHEMA_VERSION, "state": "behind"}

    up = gateway("db", "upgrade", "--config", str(cfg), "--json")
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout) == {"version": SCHEMA_VERSION}

    after = gateway("db", "status", "--config", str(cfg), "--json")
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["state"] == "current"

    human = gateway("db", "status", "--config", str(cfg))
    assert human.returncode == 0
    assert f"schema version {SCHEMA_VERSION}" in human.stdout and "current" in human.stdout

    # Upgrading again is a no-op: no second version row, same answer.
    again = gateway("db", "upgrade", "--config", str(cfg), "--json")
    assert again.returncode == 0 and json.loads(again.stdout) == {"version": SCHEMA_VERSION}
    store = Store(store_dsn)
    try:
        assert store.query("SELECT COUNT(*) FROM schema_version")[0][0] == SCHEMA_VERSION
        # The tables exist and are usable.
        assert store.query("SELECT COUNT(*) FROM outbox")[0][0] == 0
    finally:
        store.close()


def _newer(dsn: str) -> None:
    store = Store(dsn)
    try:
        store.migrate()
        with store.tx() as t:
            t.execute("INSERT INTO schema_version (version, applied_at) VALUES (:v, :at)",
                      {"v": SCHEMA_VERSION + 1, "at": time.time()})
    finally:
        store.close()


def test_newer_database_refused_by_every_command(tmp_path: Path, store_dsn: str) -> None:
    _newer(store_dsn)
    cfg = _config(tmp_path, store_dsn)

    status = gateway("db", "status", "--config", str(cfg), "--json")
    assert status.returncode == 1
    assert json.loads(status.stdout)["state"] == "newer"

    for args in (("run",), ("log",), ("db", "upgrade")):
        result = gateway(*args, "--config", str(cfg), timeout=60)
        message = _one_line(result.stderr)
        assert result.returncode != 0, (args, result.stdout, result.stderr)
        assert f"schema version {SCHEMA_VERSION + 1}" in message, (args, message)
        assert "upgrade the gateway" in message.lower(), (args, message)
        assert "Traceback" not in result.stderr, (args, result.stderr)
    # The refusal changed nothing.
    store = Store(store_dsn)
    try:
        assert store.version() == SCHEMA_VERSION + 1
    finally:
        store.close()


def test_log_refuses_an_empty_database_with_the_fix(tmp_path: Path, store_dsn: str) -> None:
    cfg = _config(tmp_path, store_dsn)
    empty = Store(store_dsn)  # an empty database (a missing SQLite file is refused as such: test_cli_defaults)
    assert empty.version() == 0
    empty.close()
    result = gateway("log", "--config", str(cfg))
    message = _one_line(result.stderr)
    assert result.returncode != 0
    assert "schema version 0" in message and "gateway db upgrade" in message, message
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("bad", ["not-a-number"])
def test_unknown_version_row_refused(tmp_path: Path, store_dsn: str, bad: str) -> None:
    """A schema_version table this gateway cannot read (another program's) is refused, not migrated over."""
    store = Store(store_dsn)
    try:
        with store.tx() as t:
            t.execute("CREATE TABLE schema_version (version TEXT NOT NULL, applied_at TEXT NOT NULL)")
            t.execute("INSERT INTO schema_version (version, applied_at) VALUES (:v, 'x')", {"v": bad})
    finally:
        store.close()
    cfg = _config(tmp_path, store_dsn)
    for args in (("run",), ("log",)):
        result = gateway(*args, "--config", str(cfg), timeout=60)
        assert result.returncode != 0, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)
        assert "error:" in result.stderr, (args, result.stderr)
