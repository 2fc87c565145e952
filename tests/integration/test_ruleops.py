"""Rule-set operations on a real store (SQLite and PostgreSQL): impact, roll-out with corrections, delays.

The history is taken in through the real intake path (``accept_melding``) under the faulty rule
set 2025.9, which made art. 8(e) parents of a Dutch minor PLICHTIG.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from typer.testing import CliRunner

from adapters.duo import codec as duo_codec
from adapters.testpeople import random_bsn
from gateway.cli import app
from gateway.core import config as config_mod
from gateway.core.clock import AMS
from gateway.core.models import IndMelding, IndPersoon, IndVerblijf
from gateway.mapping.ind_to_duo import bericht_id_for, correction_bericht_id
from gateway.rules import engine as rules
from gateway.rules import rollout as ruleops
from gateway.runtime import build_runtime
from tests import rules_history as h

BASE = dt.datetime(2026, 10, 1, 9, 0, tzinfo=AMS)
ART8E = "VW2000_ART8_E"


def melding(n: int, *, grondslag: str = "VW2000_ART8_A", doel: str = "GEZINSHERENIGING",
            unierecht: str | None = None, ingang: dt.date = dt.date(2025, 3, 1), late_days: int = 0,
            correctie_van: str | None = None, day: int = 0) -> IndMelding:
    """One notification, created ``day`` days after BASE and decided 2 + ``late_days`` days before that."""
    rng = random.Random(n)
    created = BASE + dt.timedelta(days=day, minutes=n)
    return IndMelding(
        melding_id=f"00000000-0000-4000-8000-{n:012d}", volgnummer=n,
        soort_melding="CORRECTIE" if correctie_van else "VERLEEND", aangemaakt_op=created.isoformat(),
        persoon=IndPersoon(v_nummer=f"{rng.randrange(10**10):010d}", geslachtsnaam="Haddad",
                           geboortedatum="1990-05-12", geslacht="V", nationaliteiten=("COL",),
                           bsn=random_bsn(rng), voornamen="Rania"),
        verblijf=IndVerblijf(
            documentnummer=f"NL{n:07d}",
            documentsoort="EU_VERBLIJFSDOCUMENT" if grondslag == ART8E else "VERBLIJFSVERGUNNING_REGULIER_BEPAALDE_TIJD",
            verblijfsdoel=doel, wettelijke_grondslag=grondslag, unierechtelijke_grondslag=unierecht,
            datum_besluit=created.date() - dt.timedelta(days=2 + late_days), ingangsdatum=ingang),
        correctie_van=correctie_van)


def zambrano(n: int, ingang: dt.date, **kw: Any) -> IndMelding:
    return melding(n, grondslag=ART8E, doel=h.ZAMBRANO_DOEL, unierecht="ZAMBRANO" if n % 2 else "CHAVEZ_VILCHEZ",
                   ingang=ingang, **kw)


def history() -> list[IndMelding]:
    """Five art. 8(e) parents across the regimes (one replaced by an IND CORRECTIE) and people who keep theirs."""
    first = zambrano(1, dt.date(2012, 12, 31))  # WI2007, last day
    return [
        first,
        zambrano(2, dt.date(2013, 1, 1)),  # WI2013, first day
        zambrano(3, dt.date(2016, 6, 1)),
        zambrano(4, dt.date(2025, 3, 1), day=10),
        zambrano(5, dt.date(2021, 12, 31), day=10),  # replaced by 9
        melding(6),  # family migrant: PLICHTIG under both
        melding(7, grondslag=ART8E, doel="VERBLIJF_ALS_FAMILIELID_VAN_UNIEBURGER", unierecht="RICHTLIJN_2004_38"),
        melding(8, doel="STUDIE", day=10),
        zambrano(9, dt.date(2022, 1, 1), correctie_van=zambrano(5, dt.date(2021, 12, 31)).melding_id, day=10),
    ]


@pytest.fixture
def setup(tmp_path: Path, store: Any) -> dict[str, Any]:
    cfg_file = h.write_config(tmp_path, store.dsn, operators={"personal_data": ["alice"]})
    rt = h.runtime(cfg_file, store)
    meldingen = history()
    h.intake(rt, meldingen)
    new = rules.load(tmp_path / "rules" / f"{h.CURRENT}.yaml")
    return {"cfg": cfg_file, "rt": rt, "new": new, "meldingen": meldingen, "store": store}


def ids(*numbers: int) -> set[str]:
    return {f"00000000-0000-4000-8000-{n:012d}" for n in numbers}


def test_impact_groups_by_indication_rule_and_regime(setup: dict[str, Any]) -> None:
    report = ruleops.impact(setup["store"], setup["new"])
    assert {c.melding_id for c in report.changes} == ids(1, 2, 3, 4, 9) == h.zambrano_parents(setup["meldingen"])
    assert report.superseded == 1 and report.evaluated == 8 and report.unreadable == 0
    assert report.by_indication() == {"PLICHTIG -> NIET_PLICHTIG": 5}
    assert report.by_rule() == {"OUDER_VAN_NEDERLANDS_KIND -> UNIERECHT_ART8E": 5}
    # The regime boundaries are visible: 2012-12-31 is WI2007, 2013-01-01 WI2013, 2022-01-01 WI2021.
    assert {r: g["count"] for r, g in report.by_regime().items()} == {"WI2007": 1, "WI2013": 2, "WI2021": 2}
    by_id = {c.melding_id: c for c in report.changes}
    assert by_id[next(iter(ids(9)))].earlier_bericht_id == bericht_id_for(next(iter(ids(9))))
    assert report.rule_only == 0  # the non-parents keep rule and indication


def test_impact_output_is_masked(setup: dict[str, Any]) -> None:
    people = ruleops.impact(setup["store"], setup["new"]).to_dict()["people"]
    for p in people:
        assert p["person"]["bsn"].startswith("*******") and p["person"]["naam"] == "R. H."
        assert p["person"]["geboortedatum"] == "1990-**-**"


def test_impact_since(setup: dict[str, Any]) -> None:
    since = (BASE + dt.timedelta(days=5)).timestamp()
    report = ruleops.impact(setup["store"], setup["new"], since)
    assert {c.melding_id for c in report.changes} == ids(4, 9)
    assert report.superseded == 1  # 5 was received after `since` and replaced by 9


def test_impact_is_read_only(setup: dict[str, Any]) -> None:
    store = setup["store"]
    before = h.snapshot(store)
    ruleops.impact(store, setup["new"])
    result = CliRunner().invoke(app, ["rules", "impact", "--ruleset", h.CURRENT, "--config", str(setup["cfg"])])
    assert result.exit_code == 0, result.output
    assert h.snapshot(store) == before


def test_apply_queues_one_correction_each_and_only_once(setup: dict[str, Any]) -> None:
    store, rt, new = setup["store"], setup["rt"], setup["new"]
    assert ruleops.apply_corrections(rt, new, "alice") == 5
    rows = store.query("SELECT o.idempotency_key, o.payload, m.facts FROM outbox o JOIN messages m "
                       "ON m.id = o.message_id WHERE m.route = 'rules-duo' ORDER BY o.id")
    assert len(rows) == 5
    for key, payload, facts in rows:
        duo = duo_codec.decode_inburgeraarmelding(etree.fromstring(store.unseal("outbox.payload", payload)))
        earlier = bericht_id_for(duo.bron.melding_id)
        assert key == duo.bericht_id == correction_bericht_id(earlier, new.version)
        assert duo.soort_melding == "CORRECTIE" and duo.vervangt_bericht_id == earlier
        assert duo.beoordeling.plicht_indicatie == "NIET_PLICHTIG" and duo.beoordeling.regel == "UNIERECHT_ART8E"
        assert duo.beoordeling.regelset_versie == new.version
        assert json.loads(facts)["vorigePlichtIndicatie"] == "PLICHTIG"
    assert ruleops.active_name(store) == h.CURRENT
    assert store.query("SELECT operator, action FROM operator_actions") == [("alice", "rules-apply")]
    # Twice: nothing new, and the impact is now empty.
    assert ruleops.apply_corrections(rt, new, "alice") == 0
    assert len(store.query("SELECT id FROM outbox WHERE partner = 'duo' AND operation = 'InburgeraarMelding'")) == 5 + 9
    assert ruleops.impact(store, new).changes == []


def test_a_later_rule_set_corrects_the_latest_correction(setup: dict[str, Any], tmp_path: Path) -> None:
    store, rt, new = setup["store"], setup["rt"], setup["new"]
    ruleops.apply_corrections(rt, new, "alice")
    faulty = rules.load(tmp_path / "rules" / f"{h.FAULTY}.yaml")
    report = ruleops.impact(store, faulty)
    assert report.by_indication() == {"NIET_PLICHTIG -> PLICHTIG": 5}
    for c in report.changes:
        assert c.earlier_bericht_id == correction_bericht_id(bericht_id_for(c.melding_id), new.version)


def test_store_recorded_rule_set_wins_over_config(setup: dict[str, Any]) -> None:
    store = setup["store"]
    cfg = config_mod.load(setup["cfg"])
    assert cfg.rules.active == h.FAULTY
    assert build_runtime(cfg, store=store).ruleset.name == h.FAULTY
    ruleops.apply_corrections(setup["rt"], setup["new"], "alice")
    assert build_runtime(cfg, store=store).ruleset.name == h.CURRENT


# ---------------------------------------------------------------- delays

def test_delay_buckets_and_since(tmp_path: Path, store: Any) -> None:
    rt = h.runtime(h.write_config(tmp_path, store.dsn), store)
    # leveringstermijn 7 days; decided 2 + late days before receipt -> delay = late - 5 when positive
    lates = {10: 0, 11: 5, 12: 6, 13: 12, 14: 35, 15: 50, 16: 96, 17: 400}
    h.intake(rt, [melding(n, late_days=d, day=n) for n, d in lates.items()])
    report = ruleops.delays(store)
    assert [r["vertragingDagen"] for r in report.rows] == [1, 7, 30, 45, 91, 395]
    assert report.buckets() == {"1-7": 2, "8-30": 1, "31-90": 1, "over 90": 2}
    assert report.total == 6 and report.total_days == 1 + 7 + 30 + 45 + 91 + 395
    later = ruleops.delays(store, (BASE + dt.timedelta(days=16)).timestamp())
    assert [r["vertragingDagen"] for r in later.rows] == [91, 395]
    assert later.to_dict()["people"][0]["person"]["bsn"].startswith("*******")


def test_delay_metrics(tmp_path: Path, store: Any) -> None:
    rt = h.runtime(h.write_config(tmp_path, store.dsn), store)
    h.intake(rt, [melding(n, late_days=d, day=n) for n, d in {20: 0, 21: 20, 22: 200}.items()])
    ruleops.export_delay_metrics(rt)
    ruleops.export_delay_metrics(rt)  # again: the gauges are registered once
    value = rt.metrics.registry.get_sample_value
    assert value("gateway_delayed_notifications", {"bucket": "8-30"}) == 1
    assert value("gateway_delayed_notifications", {"bucket": "over 90"}) == 1
    assert value("gateway_delayed_notifications", {"bucket": "1-7"}) == 0
    assert value("gateway_delayed_notifications_days") == 15 + 195


def test_health_export_includes_delay_metrics(tmp_path: Path, store: Any) -> None:
    from gateway.ops import health

    rt = h.runtime(h.write_config(tmp_path, store.dsn), store)
    h.intake(rt, [melding(23, late_days=40, day=1)])
    health.export(rt, health.evaluate(rt))
    assert rt.metrics.registry.get_sample_value("gateway_delayed_notifications", {"bucket": "31-90"}) == 1


# ---------------------------------------------------------------- the CLI

def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_cli_impact_apply_show_json(setup: dict[str, Any]) -> None:
    cfg = str(setup["cfg"])
    result = cli("rules", "impact", "--ruleset", h.CURRENT, "--json", "--config", cfg)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["changed"] == 5 and data["by_indication"] == {"PLICHTIG -> NIET_PLICHTIG": 5}
    assert data["by_regime"]["WI2013"] == {"count": 2, "by_indication": {"PLICHTIG -> NIET_PLICHTIG": 2}}
    assert all(p["person"]["bsn"].startswith("*******") for p in data["people"])

    since = cli("rules", "impact", "--ruleset", h.CURRENT, "--since", "2026-10-05", "--json", "--config", cfg)
    assert json.loads(since.stdout)["changed"] == 2

    assert cli("rules", "show", "--json", "--config", cfg).stdout.count(h.FAULTY) >= 1
    refused = cli("rules", "apply", "--ruleset", h.CURRENT, "--config", cfg)
    assert refused.exit_code == 1 and "--corrections" in refused.output

    applied = cli("rules", "apply", "--ruleset", h.CURRENT, "--corrections", "--operator", "bob", "--json",
                  "--config", cfg)
    assert applied.exit_code == 0, applied.output
    assert json.loads(applied.stdout)["corrections_queued"] == 5
    again = cli("rules", "apply", "--ruleset", h.CURRENT, "--corrections", "--operator", "bob", "--json",
                "--config", cfg)
    assert json.loads(again.stdout)["corrections_queued"] == 0

    shown = json.loads(cli("rules", "show", "--json", "--config", cfg).stdout)
    assert shown["name"] == h.CURRENT and shown["chosen_by"].startswith("store")
    assert [r["code"] for r in shown["rules"]][0] == "UNIERECHT_ART8E"
    assert [g["code"] for g in shown["regimes"]] == ["WI2007", "WI2013", "WI2021"]


def test_cli_personal_data_only_for_allowed_operators(setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = str(setup["cfg"])
    monkeypatch.setenv("GATEWAY_OPERATOR", "mallory")
    denied = cli("rules", "impact", "--ruleset", h.CURRENT, "--show-personal-data", "--json", "--config", cfg)
    assert denied.exit_code != 0 and "may not see personal data" in denied.output
    monkeypatch.setenv("GATEWAY_OPERATOR", "alice")
    unstated = cli("rules", "impact", "--ruleset", h.CURRENT, "--show-personal-data", "--json", "--config", cfg)
    assert unstated.exit_code == 2 and "--reason" in unstated.output
    shown = json.loads(cli("rules", "impact", "--ruleset", h.CURRENT, "--show-personal-data", "--json",
                           "--reason", "ticket 4711: check the roll-out", "--config", cfg).stdout)
    assert shown["people"][0]["person"]["naam"] == "Rania Haddad"
    # Both requests are in the audit log, newest first, with who, what and why; the one without a
    # reason showed nothing and is not there.
    log = json.loads(cli("audit", "--action", "show-personal-data", "--json", "--config", cfg).stdout)
    assert [(e["actor"], e["outcome"], e["target"], e["reason"]) for e in log] == [
        ("alice", "ok", f"rules-impact:{h.CURRENT}", "ticket 4711: check the roll-out"),
        ("mallory", "refused", f"rules-impact:{h.CURRENT}", None),
    ]
    only_alice = json.loads(cli("audit", "--actor", "alice", "--json", "--config", cfg).stdout)
    assert {e["action"] for e in only_alice} == {"show-personal-data"}


def test_cli_report_delays_json(tmp_path: Path, store: Any) -> None:
    cfg = h.write_config(tmp_path, store.dsn)
    h.intake(h.runtime(cfg, store), [melding(n, late_days=d, day=n) for n, d in {30: 0, 31: 8, 32: 40}.items()])
    result = cli("report", "delays", "--json", "--config", str(cfg))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["total"] == 2 and data["total_days"] == 3 + 35
    assert data["distribution"] == {"1-7": 1, "8-30": 0, "31-90": 1, "over 90": 0}
    assert [p["vertragingDagen"] for p in data["people"]] == [3, 35]
    assert all(p["person"]["bsn"].startswith("*******") for p in data["people"])
    text = cli("report", "delays", "--config", str(cfg))
    assert "total: 2 late notification(s), 38 day(s)" in text.stdout


def test_cli_check_names_file_and_line(tmp_path: Path) -> None:
    good = h.rules_dir(tmp_path) / f"{h.CURRENT}.yaml"
    ok = cli("rules", "check", str(good))
    assert ok.exit_code == 0 and "11 rules" in ok.output
    bad = tmp_path / "rules" / "kapot.yaml"
    text = good.read_text().replace("plicht_indicatie: PLICHTIG", "plicht_indicatie: MISSCHIEN", 1)
    bad.write_text(text)
    line = text.splitlines().index("    plicht_indicatie: MISSCHIEN") + 1
    refused = cli("rules", "check", str(bad))
    assert refused.exit_code == 1
    assert f"{bad}:{line}:" in refused.output.replace("\n", "") and "MISSCHIEN" in refused.output
    as_json = json.loads(cli("rules", "check", str(bad), "--json").stdout)
    assert as_json == {"ok": False, "file": str(bad), "line": line, "error": as_json["error"]}


def test_cli_test_reports_each_case_and_fails_on_one(tmp_path: Path) -> None:
    directory = h.rules_dir(tmp_path)
    cases = directory / f"{h.CURRENT}.cases.yaml"
    passed = cli("rules", "test", str(cases))
    assert passed.exit_code == 0 and "0 failed" in passed.output and "PASS" in passed.output
    # The same cases against the faulty rule set: the art. 8(e) parent cases fail, with their lines.
    failed = cli("rules", "test", str(cases), "--ruleset", h.FAULTY, "--json")
    assert failed.exit_code == 1
    data = json.loads(failed.stdout)
    wrong = [r for r in data["results"] if not r["passed"]]
    assert wrong and all(r["actual"]["regel"] == "OUDER_VAN_NEDERLANDS_KIND" for r in wrong)
    lines = cases.read_text().splitlines()
    assert all(lines[r["line"] - 1].lstrip().startswith("- name:") for r in wrong)
    text = cli("rules", "test", str(cases), "--ruleset", h.FAULTY)
    assert text.exit_code == 1 and f"FAIL {cases}:{wrong[0]['line']}" in text.output.replace("\n", "")
