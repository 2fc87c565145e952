"""docs/digikoppeling.md and tests/conformance/ stay equal: every test the table names exists,
and every conformance test is named in the table."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tests() -> set[str]:
    names = set()
    for path in (ROOT / "tests" / "conformance").glob("test_*.py"):
        if path.name == "test_table.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names |= {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}
    return names


def test_the_table_names_every_conformance_test_and_only_those() -> None:
    table = (ROOT / "docs" / "digikoppeling.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(test_[A-Za-z0-9_]+)`", table))
    assert named == _tests(), {"named but missing": named - _tests(), "not named": _tests() - named}


def test_every_rule_row_of_the_table_names_its_rule_in_its_tests() -> None:
    table = (ROOT / "docs" / "digikoppeling.md").read_text(encoding="utf-8")
    for row in table.splitlines():
        match = re.match(r"\| (W[TBA]\d{3}) ", row)
        if match is None:
            continue
        for name in re.findall(r"`(test_[A-Za-z0-9_]+)`", row):
            assert name.startswith(f"test_{match.group(1)}_"), (match.group(1), name)
