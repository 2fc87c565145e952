"""Rule sets as data: evaluation, age semantics, validation errors with file and line, versions, cases."""

import datetime as dt
import re
from pathlib import Path

import pytest

from gateway.core.errors import ConfigError
from gateway.rules import engine as rules
from gateway.rules.engine import Age, RuleInput

REPO = Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "config" / "rules"
RULESET_FILE = RULES_DIR / "inburgeringsplicht-2026.1.yaml"
CASES_FILE = RULES_DIR / "inburgeringsplicht-2026.1.cases.yaml"
FAULTY_FILE = REPO / "tests" / "fixtures" / "rules" / "inburgeringsplicht-2025.9-faulty.yaml"
D = dt.date.fromisoformat


@pytest.fixture(scope="module")
def ruleset():
    return rules.load(RULESET_FILE)


def inp(grondslag="VW2000_ART8_A", doel="GEZINSHERENIGING", nat=("SYR",), geb="1990-05-12", ingang="2026-03-01"):
    return RuleInput(grondslag, doel, tuple(nat), geb, D(ingang))


# ---------------------------------------------------------------- one case per rule

@pytest.mark.parametrize(
    "given, indicatie, regel",
    [
        (inp(grondslag="VW2000_ART8_E", doel="VERBLIJF_BIJ_MINDERJARIG_NEDERLANDS_KIND"), "NIET_PLICHTIG", "UNIERECHT_ART8E"),
        (inp(nat=("MAR", "FRA")), "NIET_PLICHTIG", "EU_EER_ZWITSERSE_NATIONALITEIT"),
        (inp(grondslag="VW2000_ART8_B"), "NIET_PLICHTIG", "GRONDSLAG_ZONDER_PLICHT"),
        (inp(doel="SEIZOENSARBEID"), "NIET_PLICHTIG", "TIJDELIJK_VERBLIJFSDOEL"),
        (inp(nat=("TUR",), ingang="2016-04-01"), "NIET_PLICHTIG", "TURKSE_NATIONALITEIT"),
        (inp(geb="0000-00-00"), "HANDMATIG_BEOORDELEN", "GEBOORTEDATUM_ONVOLLEDIG"),
        (inp(geb="2012-01-01"), "NIET_PLICHTIG", "ONDER_MINIMUMLEEFTIJD"),
        (inp(geb="1950-01-01"), "NIET_PLICHTIG", "PENSIOENGERECHTIGDE_LEEFTIJD"),
        (inp(doel="GEZINSVORMING"), "PLICHTIG", "GEZINSMIGRANT"),
        (inp(grondslag="VW2000_ART8_C", doel="NAREIS_ASIEL"), "PLICHTIG", "ASIELSTATUSHOUDER"),
        (inp(doel="MEDISCHE_BEHANDELING", grondslag="VW2000_ART8_E", nat=("USA",)), "NIET_PLICHTIG", "UNIERECHT_ART8E"),
        (inp(doel="OVERIG"), "HANDMATIG_BEOORDELEN", "GEEN_REGEL_VAN_TOEPASSING"),
    ],
)
def test_each_rule(ruleset, given, indicatie, regel):
    verdict = ruleset.evaluate(given)
    assert (verdict.plicht_indicatie, verdict.regel) == (indicatie, regel)


def test_rules_are_in_policy_order(ruleset):
    assert [r.code for r in ruleset.rules] == [
        "UNIERECHT_ART8E", "EU_EER_ZWITSERSE_NATIONALITEIT", "GRONDSLAG_ZONDER_PLICHT",
        "TIJDELIJK_VERBLIJFSDOEL", "TURKSE_NATIONALITEIT", "GEBOORTEDATUM_ONVOLLEDIG",
        "ONDER_MINIMUMLEEFTIJD", "PENSIOENGERECHTIGDE_LEEFTIJD", "GEZINSMIGRANT",
        "ASIELSTATUSHOUDER", "GEEN_REGEL_VAN_TOEPASSING",
    ]
    assert [row["nr"] for row in ruleset.table()] == [str(i) for i in range(1, 12)]


# ---------------------------------------------------------------- first match

@pytest.mark.parametrize(
    "given, regel",
    [
        # art. 8(e) wins over an EU nationality, a temporary purpose and an unknown birth date
        (inp(grondslag="VW2000_ART8_E", nat=("DEU",), doel="STUDIE", geb="0000-00-00"), "UNIERECHT_ART8E"),
        # EU nationality wins over a legal ground without obligation
        (inp(grondslag="VW2000_ART8_D", nat=("TUR", "NLD")), "EU_EER_ZWITSERSE_NATIONALITEIT"),
        # the legal ground wins over a temporary purpose
        (inp(grondslag="VW2000_ART8_G", doel="STUDIE"), "GRONDSLAG_ZONDER_PLICHT"),
        # a temporary purpose wins over Turkish nationality
        (inp(doel="ZELFSTANDIGE", nat=("TUR",), ingang="2015-01-01"), "TIJDELIJK_VERBLIJFSDOEL"),
        # Turkish nationality wins over an undecidable age
        (inp(nat=("TUR",), geb="0000-00-00", ingang="2015-01-01"), "TURKSE_NATIONALITEIT"),
        # an undecidable age wins over the age rules and the purpose rules
        (inp(geb="2008-00-00", ingang="2026-06-15"), "GEBOORTEDATUM_ONVOLLEDIG"),
        # under age wins over family migration
        (inp(geb="2009-01-01", doel="GEZINSVORMING"), "ONDER_MINIMUMLEEFTIJD"),
    ],
)
def test_first_match_decides(ruleset, given, regel):
    assert ruleset.evaluate(given).regel == regel


def test_turkish_asylum_from_2020_05_01_is_obliged(ruleset):
    before = ruleset.evaluate(inp(grondslag="VW2000_ART8_C", doel="ASIEL", nat=("TUR",), ingang="2020-04-30"))
    on = ruleset.evaluate(inp(grondslag="VW2000_ART8_C", doel="ASIEL", nat=("TUR",), ingang="2020-05-01"))
    assert (before.regel, before.plicht_indicatie) == ("TURKSE_NATIONALITEIT", "NIET_PLICHTIG")
    assert (on.regel, on.plicht_indicatie) == ("ASIELSTATUSHOUDER", "PLICHTIG")


# ---------------------------------------------------------------- regimes and ages

@pytest.mark.parametrize(
    "ingang, regime",
    [("2012-12-31", "WI2007"), ("2013-01-01", "WI2013"), ("2021-12-31", "WI2013"), ("2022-01-01", "WI2021"),
     ("1999-01-01", "WI2007"), ("2040-01-01", "WI2021")],
)
def test_regime_boundaries(ruleset, ingang, regime):
    assert ruleset.evaluate(inp(ingang=ingang)).regime == regime


def test_minimum_age_changes_at_2013(ruleset):
    # 17 years old: old enough under WI2007 (16), too young under WI2013 (18)
    assert ruleset.evaluate(inp(geb="1995-06-01", ingang="2012-12-31")).regel == "GEZINSMIGRANT"
    assert ruleset.evaluate(inp(geb="1995-06-01", ingang="2013-01-01")).regel == "ONDER_MINIMUMLEEFTIJD"


@pytest.mark.parametrize(
    "year, age",
    [(2000, Age(65)), (2012, Age(65)), (2013, Age(65, 1)), (2014, Age(65, 2)), (2015, Age(65, 3)),
     (2016, Age(65, 6)), (2017, Age(65, 9)), (2018, Age(66)), (2019, Age(66, 4)), (2021, Age(66, 4)),
     (2022, Age(66, 7)), (2023, Age(66, 10)), (2024, Age(67)), (2027, Age(67)), (2028, Age(67, 3)),
     (2060, Age(67, 3))],
)
def test_pension_age_table(ruleset, year, age):
    assert ruleset.pension_age(year) == age


@pytest.mark.parametrize(
    "geb, day_before, day",
    [
        ("1948-01-15", "2013-02-14", "2013-02-15"),  # 65 y 1 m
        ("1950-03-10", "2015-06-09", "2015-06-10"),  # 65 y 3 m
        ("1951-05-20", "2017-02-19", "2017-02-20"),  # 65 y 9 m
        ("1955-06-30", "2022-01-29", "2022-01-30"),  # 66 y 7 m
        ("1956-01-31", "2022-08-30", "2022-08-31"),  # 66 y 7 m
        ("1961-01-31", "2028-04-29", "2028-04-30"),  # 67 y 3 m: 31 April clamps to 30 April
    ],
)
def test_pension_age_in_months(ruleset, geb, day_before, day):
    assert ruleset.evaluate(inp(geb=geb, ingang=day_before)).regel == "GEZINSMIGRANT"
    assert ruleset.evaluate(inp(geb=geb, ingang=day)).regel == "PENSIOENGERECHTIGDE_LEEFTIJD"


@pytest.mark.parametrize(
    "birth, age, expected",
    [
        ("2008-02-29", Age(18), "2026-02-28"),  # non-leap target year
        ("1992-02-29", Age(16), "2008-02-29"),  # leap target year
        ("1959-08-31", Age(66, 10), "2026-06-30"),  # 31 June does not exist
        ("1960-03-31", Age(66, 11), "2027-02-28"),
        ("1960-01-15", Age(67, 3), "2027-04-15"),
        ("1990-12-31", Age(0, 2), "1991-02-28"),
    ],
)
def test_anniversary_clamps_to_month_end(birth, age, expected):
    assert rules.anniversary(D(birth), age) == D(expected)


def test_29_february_birthday(ruleset):
    assert ruleset.evaluate(inp(geb="2008-02-29", ingang="2026-02-27")).regel == "ONDER_MINIMUMLEEFTIJD"
    assert ruleset.evaluate(inp(geb="2008-02-29", ingang="2026-02-28")).regel == "GEZINSMIGRANT"


@pytest.mark.parametrize(
    "geb, span",
    [
        ("1990-00-00", ("1990-01-01", "1990-12-31")),
        ("1990-07-00", ("1990-07-01", "1990-07-31")),
        ("2008-02-00", ("2008-02-01", "2008-02-29")),
        ("1990-00-15", ("1990-01-15", "1990-12-15")),
        ("1990-07-14", ("1990-07-14", "1990-07-14")),
    ],
)
def test_birth_span(geb, span):
    assert rules.birth_span(geb) == (D(span[0]), D(span[1]))


@pytest.mark.parametrize("geb", ["0000-00-00", "0000-07-00", "1990-02-30"])
def test_birth_span_unknown(geb):
    assert rules.birth_span(geb) is None


@pytest.mark.parametrize(
    "geb, on, expected",
    [
        ("2008-00-00", "2026-06-15", None),  # some 2008 births are 18, others not
        ("2008-00-00", "2026-12-31", True),
        ("2008-00-00", "2025-12-31", False),
        ("2008-06-00", "2026-06-15", None),
        ("2008-05-00", "2026-06-15", True),
        ("2008-07-00", "2026-06-15", False),
        ("0000-00-00", "2026-06-15", None),
        ("2008-06-15", "2026-06-15", True),
        ("2008-06-16", "2026-06-15", False),
    ],
)
def test_age_test_decided_only_when_all_birth_dates_agree(geb, on, expected):
    assert rules.has_age(geb, Age(18), D(on)) is expected


@pytest.mark.parametrize(
    "geb, ingang, regel",
    [
        ("0000-00-00", "2026-06-15", "GEBOORTEDATUM_ONVOLLEDIG"),
        ("2008-00-00", "2026-06-15", "GEBOORTEDATUM_ONVOLLEDIG"),  # minimum age undecidable
        ("1959-00-00", "2026-06-15", "GEBOORTEDATUM_ONVOLLEDIG"),  # maximum age (67) undecidable
        ("1959-01-00", "2026-06-15", "PENSIOENGERECHTIGDE_LEEFTIJD"),
        ("1958-00-00", "2026-06-15", "PENSIOENGERECHTIGDE_LEEFTIJD"),
        ("2008-07-00", "2026-06-15", "ONDER_MINIMUMLEEFTIJD"),
        ("1991-00-00", "2026-10-15", "GEZINSMIGRANT"),
    ],
)
def test_incomplete_birth_dates(ruleset, geb, ingang, regel):
    assert ruleset.evaluate(inp(geb=geb, ingang=ingang)).regel == regel


# ---------------------------------------------------------------- versions

def test_version_is_name_and_file_digest(ruleset):
    assert ruleset.name == "inburgeringsplicht-2026.1"
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}@sha256:[0-9a-f]{64}", ruleset.version)  # DUO's pattern
    import hashlib

    assert ruleset.version == "inburgeringsplicht-2026.1@sha256:" + hashlib.sha256(RULESET_FILE.read_bytes()).hexdigest()


def test_version_changes_with_one_byte(tmp_path, ruleset):
    copy = tmp_path / RULESET_FILE.name
    copy.write_bytes(RULESET_FILE.read_bytes() + b" ")
    changed = rules.load(copy)
    assert changed.name == ruleset.name
    assert changed.version != ruleset.version
    copy.write_bytes(RULESET_FILE.read_bytes())
    assert rules.load(copy).version == ruleset.version


def test_load_dir_leaves_out_case_files(tmp_path):
    (tmp_path / "inburgeringsplicht-2026.1.yaml").write_bytes(RULESET_FILE.read_bytes())
    (tmp_path / "inburgeringsplicht-2026.1.cases.yaml").write_bytes(CASES_FILE.read_bytes())
    assert list(rules.load_dir(tmp_path)) == ["inburgeringsplicht-2026.1"]
    assert list(rules.load_dir(RULES_DIR)) == ["inburgeringsplicht-2026.1"]


# ---------------------------------------------------------------- validation errors: file and line

BASE = RULESET_FILE.read_text()


def variant(tmp_path, old, new, name="inburgeringsplicht-test.yaml"):
    assert old in BASE, old
    text = BASE.replace(old, new, 1)
    path = tmp_path / name
    path.write_text(text)
    return path, text


def line_of(text, needle, last=False):
    lines = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert lines, needle
    return lines[-1] if last else lines[0]


def refused(path):
    with pytest.raises(ConfigError) as info:
        rules.load(path)
    assert info.value.file == str(path)
    return info.value


@pytest.mark.parametrize(
    "old, new, marker, words",
    [
        # unknown fields
        ("    omschrijving: Gezinsmigrant\n", "    omschrijving: Gezinsmigrant\n    kleur: rood\n", "kleur: rood",
         "unknown field 'kleur'"),
        ("omschrijving: Voorbeoordeling", "versie: 3\nomschrijving: Voorbeoordeling", "versie: 3", "unknown field"),
        ("{jaren: 16}", "{jaren: 16, dagen: 3}", "dagen: 3", "unknown field 'dagen'"),
        # unknown values
        ("{grondslag_in: [VW2000_ART8_E]}", "{grondslag_in: [VW2000_ART8_Z]}", "VW2000_ART8_Z",
         "unknown wettelijke grondslag"),
        ("GEZINSDOELEN: [GEZINSHERENIGING,", "GEZINSDOELEN: [GEZINSHERENIGEN,", "GEZINSHERENIGEN,", "unknown verblijfsdoel"),
        ("    plicht_indicatie: PLICHTIG\n", "    plicht_indicatie: VERPLICHT\n", "VERPLICHT", "unknown plicht_indicatie"),
        ("{nationaliteit_any_in: [TUR]}", "{nationaliteit_any_in: [Tur]}", "[Tur]", "unknown nationality code"),
        ("{nationaliteit_any_in: EU_EER_CH}", "{nationaliteit_any_in: EU_EER}", "EU_EER}", "unknown code set"),
        ("{regime_not_in: [WI2021]}", "{regime_not_in: [WI2022]}", "WI2022", "unknown regime"),
        ("{leeftijd: onder_minimum}", "{leeftijd: te_jong}", "te_jong", "unknown leeftijd test"),
        ("{leeftijd: onder_minimum}", "{leeftijd_onder: 18}", "leeftijd_onder", "unknown condition"),
        ("{altijd: true}", "{altijd: false}", "altijd: false", "only the value true"),
        ("{ingangsdatum_on_or_after: 2020-05-01}", "{ingangsdatum_on_or_after: 2020-13-01}", "2020-13-01",
         "not a calendar date"),
        ("jaren: 65, maanden: 1}", "jaren: 65, maanden: 13}", "maanden: 13", "between 0 and 11"),
        # regimes must follow each other without gaps
        ("ingangsdatum_vanaf: 2022-01-01", "ingangsdatum_vanaf: 2022-01-02", "code: WI2021", "the day after"),
        # not YAML
        ("    when: {leeftijd: onbeslisbaar}", "    when: {leeftijd: [onbeslisbaar}", "[onbeslisbaar", "not valid YAML"),
    ],
)
def test_config_errors_name_file_and_line(tmp_path, old, new, marker, words):
    path, text = variant(tmp_path, old, new)
    err = refused(path)
    assert err.line == line_of(text, marker)
    assert words in str(err)
    assert str(err).startswith(f"{path}:{err.line}: ")


def test_duplicate_rule_code(tmp_path):
    path, text = variant(tmp_path, "code: ASIELSTATUSHOUDER", "code: GEZINSMIGRANT")
    err = refused(path)
    assert err.line == line_of(text, "code: GEZINSMIGRANT", last=True)
    assert "used twice" in str(err)


def test_rule_after_catch_all_is_unreachable(tmp_path):
    extra = "\n  - code: NA_DE_VANGNETREGEL\n    when: {verblijfsdoel_in: [OVERIG]}\n    plicht_indicatie: PLICHTIG\n"
    path = tmp_path / "inburgeringsplicht-test.yaml"
    text = BASE + extra
    path.write_text(text)
    err = refused(path)
    assert err.line == line_of(text, "NA_DE_VANGNETREGEL")
    assert "never match" in str(err) and "always matches" in str(err)


def test_rule_with_an_earlier_rules_condition_is_unreachable(tmp_path):
    # The same codes spelled out as a list equal the code set GEZINSDOELEN of rule GEZINSMIGRANT.
    path, text = variant(
        tmp_path,
        "    when: {verblijfsdoel_in: ASIELDOELEN}\n    plicht_indicatie: PLICHTIG",
        "    when: {verblijfsdoel_in: [GEZINSVORMING, GEZINSHERENIGING, VERBLIJF_BIJ_MINDERJARIG_NEDERLANDS_KIND]}\n"
        "    plicht_indicatie: PLICHTIG",
    )
    err = refused(path)
    assert err.line == line_of(text, "code: ASIELSTATUSHOUDER")
    assert "same condition" in str(err)


def test_missing_catch_all(tmp_path):
    start = BASE.index("  - code: GEEN_REGEL_VAN_TOEPASSING")
    path = tmp_path / "inburgeringsplicht-test.yaml"
    text = BASE[:start]
    path.write_text(text)
    err = refused(path)
    assert err.line == line_of(text, "code: ASIELSTATUSHOUDER")
    assert "catch-all" in str(err)


def test_bad_file_name(tmp_path):
    path = tmp_path / "regels met spaties.yaml"
    path.write_bytes(RULESET_FILE.read_bytes())
    err = refused(path)
    assert err.line is None


def test_error_messages_name_the_file(tmp_path):
    path, _ = variant(tmp_path, "code: ASIELSTATUSHOUDER", "code: GEZINSMIGRANT")
    assert str(path) in str(refused(path))


# ---------------------------------------------------------------- cases as data

def test_cases_file_passes(ruleset):
    results = rules.run_cases(ruleset, CASES_FILE)
    failed = [(r.name, r.expected, r.actual) for r in results if not r.passed]
    assert failed == []
    assert {r.actual.regel for r in results} == {rule.code for rule in ruleset.rules}  # every rule covered
    assert len(results) >= 40


def case_file(tmp_path, body):
    path = tmp_path / "x.cases.yaml"
    path.write_text(body)
    return path


GOOD_CASE = """cases:
  - name: one
    input: {wettelijke_grondslag: VW2000_ART8_A, verblijfsdoel: ASIEL, nationaliteit: [SYR],
            geboortedatum: "1990-00-00", ingangsdatum: 2026-01-01}
    expect: {plicht_indicatie: PLICHTIG, regel: ASIELSTATUSHOUDER}
"""


def test_a_failing_case_is_reported(tmp_path, ruleset):
    path = case_file(tmp_path, GOOD_CASE.replace("PLICHTIG, regel", "NIET_PLICHTIG, regel"))
    [result] = rules.run_cases(ruleset, path)
    assert result.passed is False
    assert result.actual.plicht_indicatie == "PLICHTIG"
    assert result.expected == {"plicht_indicatie": "NIET_PLICHTIG", "regel": "ASIELSTATUSHOUDER"}
    assert result.line == 2


@pytest.mark.parametrize(
    "old, new, line, words",
    [
        ("expect: {", "expect: {kleur: rood, ", 5, "unknown field"),
        ("regel: ASIELSTATUSHOUDER", "regel: ASIEL", 5, "unknown rule code"),
        ("ingangsdatum: 2026-01-01", "ingangsdatum: 2026-02-30", 4, "not a calendar date"),
        ('geboortedatum: "1990-00-00"', 'geboortedatum: "1990"', 4, "unknown geboortedatum"),
        ("verblijfsdoel: ASIEL", "verblijfsdoel: VLUCHT", 3, "unknown verblijfsdoel"),
        ("nationaliteit: [SYR]", "nationaliteit: []", 3, "empty"),
        ("    input:", "    invoer:", 3, "unknown field 'invoer'"),
    ],
)
def test_malformed_case_file(tmp_path, ruleset, old, new, line, words):
    path = case_file(tmp_path, GOOD_CASE.replace(old, new))
    with pytest.raises(ConfigError) as info:
        rules.run_cases(ruleset, path)
    assert (info.value.file, info.value.line) == (str(path), line)
    assert words in str(info.value)


def test_duplicate_case_name(tmp_path, ruleset):
    path = case_file(tmp_path, GOOD_CASE + GOOD_CASE.removeprefix("cases:\n"))
    with pytest.raises(ConfigError) as info:
        rules.run_cases(ruleset, path)
    assert info.value.line == 6


# ---------------------------------------------------------------- the faulty 2025.9 rule set

def test_faulty_rule_set_obliges_an_art8e_parent(ruleset):
    faulty = rules.load(FAULTY_FILE)
    parent = inp(grondslag="VW2000_ART8_E", doel="VERBLIJF_BIJ_MINDERJARIG_NEDERLANDS_KIND", nat=("COL",))
    assert faulty.evaluate(parent).plicht_indicatie == "PLICHTIG"
    assert ruleset.evaluate(parent).plicht_indicatie == "NIET_PLICHTIG"
    assert ruleset.evaluate(parent).regel == "UNIERECHT_ART8E"
    assert faulty.version.startswith("inburgeringsplicht-2025.9-faulty@sha256:")


def test_faulty_rule_set_fails_the_art8e_case():
    faulty = rules.load(FAULTY_FILE)
    failed = {r.name for r in rules.run_cases(faulty, CASES_FILE) if not r.passed}
    assert "art. 8(e) parent of a Dutch minor (Chavez-Vilchez) is not obliged" in failed


SMALL = """regimes:
  - {code: OUD, ingangsdatum_tot_en_met: 2012-12-31, minimumleeftijd: {jaren: 16}, maximumleeftijd: {jaren: 65}}
  - {code: NIEUW, ingangsdatum_vanaf: 2013-01-01, minimumleeftijd: {jaren: 18}, maximumleeftijd: {jaren: 67}}
rules:
  - code: OUD_OF_VROEG
    when: {any: [{regime_in: [OUD]}, {ingangsdatum_before: 2015-01-01}]}
    plicht_indicatie: NIET_PLICHTIG
  - code: REST
    when: {altijd: true}
    plicht_indicatie: PLICHTIG
"""


@pytest.mark.parametrize(
    "ingang, regel, regime",
    [("2010-01-01", "OUD_OF_VROEG", "OUD"), ("2014-12-31", "OUD_OF_VROEG", "NIEUW"), ("2015-01-01", "REST", "NIEUW")],
)
def test_any_regime_in_and_ingangsdatum_before(tmp_path, ingang, regel, regime):
    path = tmp_path / "klein.yaml"
    path.write_text(SMALL)
    verdict = rules.load(path).evaluate(inp(ingang=ingang))
    assert (verdict.regel, verdict.regime) == (regel, regime)


def test_table_rows(ruleset):
    first, *_, last = ruleset.table()
    assert first == {"nr": "1", "code": "UNIERECHT_ART8E", "when": "grondslag_in: [VW2000_ART8_E]",
                     "plicht_indicatie": "NIET_PLICHTIG"}
    assert last["when"] == "altijd: true"


# ---------------------------------------------------------------- rules that never decide

CATCH_ALL = "  - code: GEEN_REGEL_VAN_TOEPASSING"


def _before_catch_all(tmp_path, rule):
    return variant(tmp_path, CATCH_ALL, rule + CATCH_ALL)


def test_a_rule_covered_by_several_earlier_rules_never_matches(tmp_path):
    # Not the same condition as any earlier rule: the three age rules and GEZINSMIGRANT together
    # decide every input it covers.
    path, text = _before_catch_all(tmp_path, (
        "  - code: LEEFTIJD_OF_GEZIN\n"
        "    when: {any: [{leeftijd: onbeslisbaar}, {leeftijd: onder_minimum}, {leeftijd: maximum_bereikt},\n"
        "                 {verblijfsdoel_in: GEZINSDOELEN}]}\n"
        "    plicht_indicatie: HANDMATIG_BEOORDELEN\n"))
    ruleset = rules.load(path)  # loading is fine: no single earlier rule has its condition
    [found] = rules.shadowed(ruleset)
    assert found.rule.code == "LEEFTIJD_OF_GEZIN" and found.rule.line == line_of(text, "LEEFTIJD_OF_GEZIN")
    by = {r.code for r in found.by}
    assert {"GEBOORTEDATUM_ONVOLLEDIG", "ONDER_MINIMUMLEEFTIJD", "PENSIOENGERECHTIGDE_LEEFTIJD",
            "GEZINSMIGRANT"} <= by and "ASIELSTATUSHOUDER" not in by
    message = found.message(path)
    assert message.startswith(f"{path}:{found.rule.line}: rule LEEFTIJD_OF_GEZIN can never match")
    assert f"GEZINSMIGRANT ({path}:{line_of(text, 'code: GEZINSMIGRANT')})" in message


def test_a_rule_that_some_input_reaches_is_not_reported(tmp_path):
    path, _ = _before_catch_all(tmp_path, (
        "  - code: OVERIG_DOEL\n    when: {verblijfsdoel_in: [OVERIG]}\n    plicht_indicatie: HANDMATIG_BEOORDELEN\n"))
    assert rules.shadowed(rules.load(path)) == []
    assert rules.shadowed(rules.load(RULESET_FILE)) == []


def test_a_rule_that_matches_no_input_is_reported(tmp_path):
    path, _ = _before_catch_all(tmp_path, (
        "  - code: TEGENSTRIJDIG\n"
        "    when: {all: [{grondslag_in: [VW2000_ART8_A]}, {grondslag_in: [VW2000_ART8_C]}]}\n"
        "    plicht_indicatie: PLICHTIG\n"))
    [found] = rules.shadowed(rules.load(path))
    assert found.by == () and "holds for no input" in found.message(path)


def test_rules_check_names_both_files_and_lines(tmp_path):
    from typer.testing import CliRunner

    from gateway.cli import app

    path, text = _before_catch_all(tmp_path, (
        "  - code: NOG_EENS_ASIEL\n    when: {all: [{verblijfsdoel_in: ASIELDOELEN}, {regime_in: [WI2021]}]}\n"
        "    plicht_indicatie: PLICHTIG\n"))
    result = CliRunner().invoke(app, ["rules", "check", str(path)])
    assert result.exit_code == 1
    line = " ".join(result.output.split())
    assert f"{path}:{line_of(text, 'NOG_EENS_ASIEL')}: rule NOG_EENS_ASIEL can never match" in line
    assert f"ASIELSTATUSHOUDER ({path}:{line_of(text, 'code: ASIELSTATUSHOUDER')})" in line
    as_json = CliRunner().invoke(app, ["rules", "check", str(path), "--json"])
    assert as_json.exit_code == 1 and '"never_match"' in as_json.stdout
