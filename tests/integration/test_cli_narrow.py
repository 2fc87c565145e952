"""At 80 columns the operator views show each row on one line and no line is wider than the terminal.

A small sandbox run gives the data; each command runs in a subprocess with COLUMNS=80, as in a
terminal of that width (rich follows COLUMNS).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.paths import REPO

RULE = "─"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("narrow")
    run = gateway("sandbox", "--count", "4", "--claims", "2", "--dir", str(base / "sandbox"), columns=200)
    assert run.returncode == 0, run.stdout + run.stderr
    return base / "sandbox" / "gateway.toml"


def gateway(*args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY")}
    env.update(COLUMNS=str(columns), TERM="xterm")
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=300)


def narrow(*args: str) -> list[str]:
    result = gateway(*args)
    assert result.returncode in (0, 1, 2) and result.stdout, result.stdout + result.stderr  # health: 2 = failing
    lines = result.stdout.splitlines()
    too_long = [line for line in lines if len(line) > 80]
    assert not too_long, "\n".join(too_long)
    return lines


def rows_after(lines: list[str], count: int, then: str, rule: int = 0) -> list[str]:
    """The ``count`` lines after the ``rule``-th header rule; the line after them starts with ``then``
    (so no row took a second line)."""
    starts = [i for i, line in enumerate(lines) if line and set(line.strip()) == {RULE}]
    first = starts[rule] + 1
    assert lines[first + count].startswith(then), lines[first:first + count + 1]
    return lines[first:first + count]


def as_json(*args: str) -> Any:
    result = gateway(*args, "--json")
    assert result.returncode in (0, 1, 2) and result.stdout, result.stderr
    return json.loads(result.stdout)


def test_log(config: Path) -> None:
    rows = as_json("log", "--config", str(config))
    assert len(rows) >= 8
    lines = narrow("log", "--config", str(config))
    body = rows_after(lines, len(rows), f"{len(rows)} row(s)")
    assert [line.split()[0] for line in body] == [str(r["id"]) for r in rows]
    # A long key is cut, not wrapped: its start is on its row, the rest is in --json and `show`.
    long_keys = [r for r in rows if len(str(r["key"])) > 20]
    assert long_keys
    for r in long_keys:
        row = next(line for line in body if line.split()[0] == str(r["id"]))
        assert str(r["key"])[:8] in row and str(r["key"]) not in row and "…" in row


def test_health(config: Path) -> None:
    report = as_json("health", "--config", str(config))
    lines = narrow("health", "--config", str(config))
    for name in (*report["routes"], *report["checks"]):
        assert sum(1 for line in lines if line.startswith(name + " ")) == 1, (name, lines)


def test_show(config: Path) -> None:
    rows = as_json("log", "--config", str(config), "--route", "duo-cjib")
    key = str(rows[0]["key"])
    shown = as_json("show", key, "--config", str(config))
    lines = narrow("show", key, "--config", str(config))
    assert any(key in line for line in lines)  # the full key, once, in `show`
    body = rows_after(lines, len(shown["events"]), "delivery ")
    assert [line.split()[2] for line in body] == [e["event"] for e in shown["events"]]


def test_rules_show(config: Path) -> None:
    shown = as_json("rules", "show", "--config", str(config))
    lines = narrow("rules", "show", "--config", str(config))
    # regimes, pension ages, rules: the third table holds one line per rule, numbered in order.
    first_codeset = next(iter(shown["codesets"]))
    body = rows_after(lines, len(shown["rules"]), f"{first_codeset}: ", rule=2)
    assert [line.split()[0] for line in body] == [str(r["nr"]) for r in shown["rules"]]
    assert [line.split()[3] for line in body] == [str(r["line"]) for r in shown["rules"]]


def test_report_delays(config: Path) -> None:
    lines = narrow("report", "delays", "--config", str(config))
    assert any(line.startswith("total: ") for line in lines)
