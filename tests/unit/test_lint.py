"""The whole checkout passes ruff and mypy, with the settings in pyproject.toml.

Both run as this interpreter's modules (the venv the suite runs in, where pydantic's mypy plugin
and the libraries' own types are installed), from the repository root so they read its
pyproject.toml. On a fresh clone mypy starts without a cache: that is the run CI pays for.
"""

from __future__ import annotations

import subprocess
import sys

from tests.paths import REPO

#: Every Python package of the project (tracked .py files live only here).
PACKAGES = ("gateway", "adapters", "bench", "tests")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=240)


def test_ruff_finds_nothing() -> None:
    done = _run("ruff", "check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_nothing() -> None:
    done = _run("mypy", *PACKAGES)
    assert done.returncode == 0, done.stdout + done.stderr
