"""Every case file under config/rules passes against its rule set, and every rule set has cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.rules import engine as rules

RULES_DIR = Path(__file__).resolve().parent.parent.parent / "config" / "rules"
CASE_FILES = sorted(RULES_DIR.glob("*.cases.yaml"))


@pytest.mark.parametrize("cases", CASE_FILES, ids=lambda p: p.name)
def test_case_file_passes(cases: Path) -> None:
    ruleset = rules.load(cases.with_name(cases.name.removesuffix(".cases.yaml") + ".yaml"))
    results = rules.run_cases(ruleset, cases)
    assert results, f"{cases} holds no cases"
    failed = [f"{cases}:{r.line}: {r.name}: expected {r.expected}, got {r.actual}" for r in results if not r.passed]
    assert not failed, "\n".join(failed)


def test_every_rule_set_has_a_case_file() -> None:
    names = rules.load_dir(RULES_DIR)
    assert names, "no rule sets in config/rules"
    missing = [n for n in names if not (RULES_DIR / f"{n}.cases.yaml").exists()]
    assert not missing, f"rule sets without cases: {missing}"


def test_every_case_file_covers_every_rule() -> None:
    for cases in CASE_FILES:
        ruleset = rules.load(cases.with_name(cases.name.removesuffix(".cases.yaml") + ".yaml"))
        covered = {r.actual.regel for r in rules.run_cases(ruleset, cases)}
        assert covered == {r.code for r in ruleset.rules}, f"{cases}: rules without a case"
