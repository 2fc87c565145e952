"""Rule sets as data: load, validate and evaluate the pre-assessment of the integration obligation.

DUO's policy staff own the rule table (``config/rules/<name>.yaml``, format in
``config/rules/README.md``); the gateway loads a new version without a code change. Loading
checks everything that can be checked before a message arrives and raises
:class:`gateway.core.errors.ConfigError` with the file and the YAML line: unknown fields, unknown
codes (verblijfsdoel and grondslag must be enumerations of the IND XSD, plichtIndicatie one of
DUO's), duplicate rule codes, rules that can never match, and a missing catch-all.

Evaluation is pure: the first rule whose condition holds decides (:meth:`RuleSet.evaluate`).
Ages follow the policy exactly: the age on ``ingangsdatum``, anniversaries clamped to the last
day of a short month, and for an incomplete birth date an age test is decided only when the
earliest and the latest possible birth date give the same answer.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from itertools import product
from pathlib import Path
from typing import Any, NoReturn

import yaml
from lxml import etree
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gateway.core.errors import ConfigError
from gateway.wire.xmlsafe import DUO_XSD, IND_XSD, XSD_DIR

__all__ = [
    "Shadowed",
    "shadowed",
    "ACTIVE_KEY",
    "Age",
    "CaseResult",
    "Condition",
    "Regime",
    "Rule",
    "RuleInput",
    "RuleSet",
    "Verdict",
    "active_name",
    "birth_span",
    "has_age",
    "load",
    "load_dir",
    "run_cases",
]

#: state_kv key of the rule set made active with ``gateway rules apply`` (gateway/rules/rollout.py).
ACTIVE_KEY = "rules.active"

NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
CODE_RE = re.compile(r"[A-Z0-9_]{1,80}")  # DUO CodeType: rule codes travel as duo:regel
NATIONALITY_RE = re.compile(r"[A-Z]{3}")
DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
BIRTH_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
LEEFTIJD_VALUES = ("onbeslisbaar", "onder_minimum", "maximum_bereikt")
PENSION = "pensioenleeftijd"


# ---------------------------------------------------------------- data

@dataclass(frozen=True)
class RuleInput:
    """What the rules look at, all taken from the IND notification."""

    wettelijke_grondslag: str
    verblijfsdoel: str
    nationaliteiten: tuple[str, ...]
    geboortedatum: str  # YYYY-MM-DD, MM and DD may be 00
    ingangsdatum: dt.date


@dataclass(frozen=True)
class Verdict:
    plicht_indicatie: str
    regel: str
    regime: str


@dataclass(frozen=True)
class Age:
    jaren: int
    maanden: int = 0

    def __str__(self) -> str:
        return f"{self.jaren} j" + (f" {self.maanden} m" if self.maanden else "")


@dataclass(frozen=True)
class Regime:
    code: str
    vanaf: dt.date | None  # None: all earlier dates
    tot_en_met: dt.date | None  # None: all later dates
    minimum: Age
    maximum: Age | None  # None: the pension age of the year of ingangsdatum


@dataclass(frozen=True)
class Condition:
    """One node of a rule's ``when``; equal conditions compare equal (labels aside)."""

    op: str
    values: frozenset[str] = frozenset()
    parts: tuple[Condition, ...] = ()
    value: object = None
    label: str = field(default="", compare=False)

    def text(self) -> str:
        if self.op == "not":
            return f"not ({self.parts[0].text()})"
        if self.op in ("all", "any"):
            joiner = " and " if self.op == "all" else " or "
            return joiner.join(f"({p.text()})" for p in self.parts)
        return f"{self.op}: {self.label}"


@dataclass(frozen=True)
class Rule:
    code: str
    plicht_indicatie: str
    when: Condition
    line: int
    omschrijving: str = ""


@dataclass(frozen=True)
class CaseResult:
    name: str
    passed: bool
    expected: dict[str, str]
    actual: Verdict
    line: int = 0


# ---------------------------------------------------------------- ages

def birth_span(geboortedatum: str) -> tuple[dt.date, dt.date] | None:
    """Earliest and latest possible birth date, or None when the year is unknown or the date impossible."""
    found = BIRTH_RE.fullmatch(geboortedatum)
    if found is None:
        raise ValueError("geboortedatum is not YYYY-MM-DD")
    year, month, day = (int(g) for g in found.groups())
    if year == 0:
        return None
    try:
        earliest = dt.date(year, month or 1, day or 1)
        last_month = month or 12
        latest = dt.date(year, last_month, day or calendar.monthrange(year, last_month)[1])
    except ValueError:
        return None  # e.g. 1990-02-30: the XSD pattern lets it through, no birth date fits it
    return earliest, latest


def anniversary(birth: dt.date, age: Age) -> dt.date:
    """The day on which someone born on ``birth`` reaches ``age``; 29 Feb / 31 Apr clamp to month end."""
    months = birth.month - 1 + age.jaren * 12 + age.maanden
    year, month = birth.year + months // 12, months % 12 + 1
    return dt.date(year, month, min(birth.day, calendar.monthrange(year, month)[1]))


def has_age(geboortedatum: str, age: Age, on: dt.date) -> bool | None:
    """Whether the person has reached ``age`` on ``on``; None when the possible birth dates disagree."""
    span = birth_span(geboortedatum)
    if span is None:
        return None
    earliest, latest = span
    # The anniversary moves monotonically with the birth date, so the two extremes decide.
    oldest = on >= anniversary(earliest, age)
    youngest = on >= anniversary(latest, age)
    return oldest if oldest == youngest else None


# ---------------------------------------------------------------- evaluation

@dataclass(frozen=True)
class _Facts:
    inp: RuleInput
    regime: Regime
    reached_min: bool | None
    reached_max: bool | None


def _leeftijd(value: object, f: _Facts) -> bool:
    if value == "onbeslisbaar":
        return f.reached_min is None or f.reached_max is None
    if value == "onder_minimum":
        return f.reached_min is False
    return f.reached_max is True  # maximum_bereikt


_LEAF_TESTS: dict[str, Callable[[Condition, _Facts], bool]] = {
    "altijd": lambda c, f: True,
    "grondslag_in": lambda c, f: f.inp.wettelijke_grondslag in c.values,
    "verblijfsdoel_in": lambda c, f: f.inp.verblijfsdoel in c.values,
    "nationaliteit_any_in": lambda c, f: any(n in c.values for n in f.inp.nationaliteiten),
    "regime_in": lambda c, f: f.regime.code in c.values,
    "regime_not_in": lambda c, f: f.regime.code not in c.values,
    "ingangsdatum_on_or_after": lambda c, f: f.inp.ingangsdatum >= c.value,  # type: ignore[operator]
    "ingangsdatum_before": lambda c, f: f.inp.ingangsdatum < c.value,  # type: ignore[operator]
    "leeftijd": lambda c, f: _leeftijd(c.value, f),
}


def _matches(c: Condition, f: _Facts) -> bool:
    if c.op == "not":
        return not _matches(c.parts[0], f)
    if c.op == "all":
        return all(_matches(p, f) for p in c.parts)
    if c.op == "any":
        return any(_matches(p, f) for p in c.parts)
    return _LEAF_TESTS[c.op](c, f)


class RuleSet:
    """A loaded, validated rule set. Build it with :func:`load`."""

    def __init__(self, *, name: str, version: str, path: Path, regimes: tuple[Regime, ...],
                 pension: tuple[tuple[int | None, Age], ...], rules: tuple[Rule, ...]) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.regimes = regimes
        self.pension = pension
        self.rules = rules

    def __repr__(self) -> str:
        return f"RuleSet({self.version!r})"

    def regime_for(self, ingangsdatum: dt.date) -> Regime:
        for regime in self.regimes:
            if (regime.vanaf is None or ingangsdatum >= regime.vanaf) and (
                regime.tot_en_met is None or ingangsdatum <= regime.tot_en_met
            ):
                return regime
        raise AssertionError("load() checks that the regimes cover every date")

    def pension_age(self, year: int) -> Age:
        chosen = self.pension[0][1]
        for vanaf_jaar, age in self.pension:
            if vanaf_jaar is None or year >= vanaf_jaar:
                chosen = age
        return chosen

    def maximum_age(self, regime: Regime, ingangsdatum: dt.date) -> Age:
        return regime.maximum or self.pension_age(ingangsdatum.year)

    def evaluate(self, inp: RuleInput) -> Verdict:
        """The verdict of the first rule that matches (the last rule always matches)."""
        regime = self.regime_for(inp.ingangsdatum)
        facts = _Facts(
            inp=inp,
            regime=regime,
            reached_min=has_age(inp.geboortedatum, regime.minimum, inp.ingangsdatum),
            reached_max=has_age(inp.geboortedatum, self.maximum_age(regime, inp.ingangsdatum), inp.ingangsdatum),
        )
        for rule in self.rules:
            if _matches(rule.when, facts):
                return Verdict(rule.plicht_indicatie, rule.code, regime.code)
        raise AssertionError("load() checks that the last rule is a catch-all")

    def table(self) -> list[dict[str, str]]:
        """One row per rule, in order, for ``gateway rules show``."""
        return [
            {"nr": str(i), "code": r.code, "when": r.when.text(), "plicht_indicatie": r.plicht_indicatie}
            for i, r in enumerate(self.rules, 1)
        ]


# ---------------------------------------------------------------- allowed codes (from the pinned XSDs)

@cache
def _enumeration(xsd_name: str, type_name: str) -> frozenset[str]:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    doc = etree.parse(str(XSD_DIR / xsd_name), parser)
    ns = {"xs": "http://www.w3.org/2001/XMLSchema"}
    values = doc.xpath(f"//xs:simpleType[@name='{type_name}']//xs:enumeration/@value", namespaces=ns)
    return frozenset(str(v) for v in values)


def grondslag_codes() -> frozenset[str]:
    return _enumeration(IND_XSD, "WettelijkeGrondslagType")


def verblijfsdoel_codes() -> frozenset[str]:
    return _enumeration(IND_XSD, "VerblijfsdoelType")


def plicht_codes() -> frozenset[str]:
    return _enumeration(DUO_XSD, "PlichtIndicatieType")


# ---------------------------------------------------------------- reading YAML nodes with their lines

class _Reader:
    """Walks composed YAML nodes, so that every complaint can name its line."""

    def __init__(self, file: Path) -> None:
        self.file = str(file)

    def fail(self, node: Node, message: str) -> NoReturn:
        raise ConfigError(message, file=self.file, line=node.start_mark.line + 1)

    def compose(self, data: bytes) -> Node:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError("the file is not UTF-8", file=self.file) from exc
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            raise ConfigError(f"not valid YAML: {exc.problem}", file=self.file, line=line) from exc
        if node is None:
            raise ConfigError("the file is empty", file=self.file)
        return node

    def mapping(self, node: Node, required: Iterable[str], optional: Iterable[str] = ()) -> dict[str, Node]:
        required, optional = tuple(required), tuple(optional)
        if not isinstance(node, MappingNode):
            self.fail(node, "expected a mapping (field: value)")
        out: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            if key not in required + optional:
                self.fail(key_node, f"unknown field {key!r}; allowed here: {', '.join(required + optional)}")
            if key in out:
                self.fail(key_node, f"field {key!r} appears twice")
            out[key] = value_node
        for name in required:
            if name not in out:
                self.fail(node, f"missing field {name!r}")
        return out

    def seq(self, node: Node, *, non_empty: bool = True) -> list[Node]:
        if not isinstance(node, SequenceNode):
            self.fail(node, "expected a list")
        if non_empty and not node.value:
            self.fail(node, "the list is empty")
        return list(node.value)

    def text(self, node: Node, pattern: re.Pattern[str] | None = None, what: str = "value") -> str:
        # The raw scalar text: no YAML 1.1 surprises (NO -> False, 1990-00-00 -> error).
        if not isinstance(node, ScalarNode):
            self.fail(node, f"expected a single {what}")
        value = str(node.value)
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(node, f"unknown {what} {value!r}")
        return value

    def code(self, node: Node, allowed: frozenset[str], what: str) -> str:
        value = self.text(node, what=what)
        if value not in allowed:
            self.fail(node, f"unknown {what} {value!r}")
        return value

    def integer(self, node: Node, what: str, low: int = 0, high: int = 10_000) -> int:
        value = self.text(node, re.compile(r"[0-9]{1,5}"), what)
        if not low <= int(value) <= high:
            self.fail(node, f"{what} must lie between {low} and {high}")
        return int(value)

    def date(self, node: Node, what: str = "date") -> dt.date:
        value = self.text(node, DATE_RE, what)
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            self.fail(node, f"{what} {value!r} is not a calendar date")


# ---------------------------------------------------------------- loading

def load(path: Path | str) -> RuleSet:
    """Read and validate one rule set file; raise ConfigError(file=, line=) on any problem."""
    path = Path(path)
    name = path.name.removesuffix(".yaml").removesuffix(".yml")
    if not NAME_RE.fullmatch(name):
        raise ConfigError("the file name must be [A-Za-z0-9._-]{1,64} followed by .yaml", file=str(path))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the rule set: {exc.strerror}", file=str(path)) from exc
    version = f"{name}@sha256:{hashlib.sha256(data).hexdigest()}"
    return _Loader(_Reader(path)).build(data, name=name, version=version, path=path)


def load_dir(directory: Path | str) -> dict[str, RuleSet]:
    """Every ``*.yaml`` rule set in ``directory`` (case files ``*.cases.yaml`` left out), by name."""
    sets: dict[str, RuleSet] = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        if path.name.endswith(".cases.yaml"):
            continue
        ruleset = load(path)
        sets[ruleset.name] = ruleset
    return sets


class _Loader:
    def __init__(self, reader: _Reader) -> None:
        self.r = reader
        self.codesets: dict[str, list[Node]] = {}
        self.regime_codes: frozenset[str] = frozenset()

    def build(self, data: bytes, *, name: str, version: str, path: Path) -> RuleSet:
        top = self.r.mapping(self.r.compose(data), ["regimes", "rules"], ["omschrijving", PENSION, "codesets"])
        pension = self.pension(top[PENSION]) if PENSION in top else ()
        regimes = self.regimes(top["regimes"], have_pension=bool(pension))
        if "codesets" in top:
            self.codesets = self.read_codesets(top["codesets"])
        rules = self.rules(top["rules"])
        return RuleSet(name=name, version=version, path=path, regimes=regimes, pension=pension, rules=rules)

    # -- ages and regimes

    def age(self, node: Node, *, allow_pension: bool) -> Age | None:
        if allow_pension and isinstance(node, ScalarNode) and node.value == PENSION:
            return None
        return self.age_of(self.r.mapping(node, ["jaren"], ["maanden"]))

    def age_of(self, fields: dict[str, Node]) -> Age:
        maanden = self.r.integer(fields["maanden"], "maanden", 0, 11) if "maanden" in fields else 0
        return Age(self.r.integer(fields["jaren"], "jaren", 0, 150), maanden)

    def pension(self, node: Node) -> tuple[tuple[int | None, Age], ...]:
        entries: list[tuple[int | None, Age]] = []
        for i, item in enumerate(self.r.seq(node)):
            fields = self.r.mapping(item, ["jaren"], ["maanden", "vanaf_jaar"])
            if i == 0 and "vanaf_jaar" in fields:
                self.r.fail(item, "the first pensioenleeftijd entry covers all earlier years: leave out vanaf_jaar")
            if i > 0 and "vanaf_jaar" not in fields:
                self.r.fail(item, "missing field 'vanaf_jaar'")
            year = self.r.integer(fields["vanaf_jaar"], "vanaf_jaar", 1, 9999) if i else None
            if year is not None and len(entries) > 1 and year <= (entries[-1][0] or 0):
                self.r.fail(item, "vanaf_jaar must rise from entry to entry")
            entries.append((year, self.age_of(fields)))
        return tuple(entries)

    def regimes(self, node: Node, *, have_pension: bool) -> tuple[Regime, ...]:
        items = self.r.seq(node)
        regimes: list[Regime] = []
        for i, item in enumerate(items):
            regime = self.regime(item)
            self.check_regime(item, regime, regimes, last=i == len(items) - 1, have_pension=have_pension)
            regimes.append(regime)
        self.regime_codes = frozenset(r.code for r in regimes)
        return tuple(regimes)

    def check_regime(self, item: Node, regime: Regime, earlier: list[Regime], *, last: bool,
                     have_pension: bool) -> None:
        # Regimes must cover every ingangsdatum exactly once, so regime_for() always finds one.
        if (regime.vanaf is None) != (not earlier):
            self.r.fail(item, "only the first regime, and it alone, leaves out ingangsdatum_vanaf")
        if (regime.tot_en_met is None) != last:
            self.r.fail(item, "only the last regime, and it alone, leaves out ingangsdatum_tot_en_met")
        previous_end = earlier[-1].tot_en_met if earlier else None
        if previous_end is not None and regime.vanaf != previous_end + dt.timedelta(days=1):
            self.r.fail(item, "ingangsdatum_vanaf must be the day after the previous regime's ingangsdatum_tot_en_met")
        if regime.vanaf and regime.tot_en_met and regime.tot_en_met < regime.vanaf:
            self.r.fail(item, "ingangsdatum_tot_en_met lies before ingangsdatum_vanaf")
        if regime.maximum is None and not have_pension:
            self.r.fail(item, "maximumleeftijd pensioenleeftijd needs a pensioenleeftijd table")
        if regime.code in {r.code for r in earlier}:
            self.r.fail(item, f"regime {regime.code!r} appears twice")

    def regime(self, node: Node) -> Regime:
        fields = self.r.mapping(node, ["code", "minimumleeftijd", "maximumleeftijd"],
                                ["ingangsdatum_vanaf", "ingangsdatum_tot_en_met"])
        vanaf = self.r.date(fields["ingangsdatum_vanaf"]) if "ingangsdatum_vanaf" in fields else None
        tot = self.r.date(fields["ingangsdatum_tot_en_met"]) if "ingangsdatum_tot_en_met" in fields else None
        return Regime(
            code=self.r.text(fields["code"], CODE_RE, "regime code"),
            vanaf=vanaf,
            tot_en_met=tot,
            minimum=self.age(fields["minimumleeftijd"], allow_pension=False) or Age(0),
            maximum=self.age(fields["maximumleeftijd"], allow_pension=True),
        )

    def read_codesets(self, node: Node) -> dict[str, list[Node]]:
        if not isinstance(node, MappingNode):
            self.r.fail(node, "expected a mapping of code set names to lists")
        sets: dict[str, list[Node]] = {}
        for key_node, value_node in node.value:
            set_name = self.r.text(key_node, CODE_RE, "code set name")
            if set_name in sets:
                self.r.fail(key_node, f"code set {set_name!r} appears twice")
            sets[set_name] = self.r.seq(value_node)
            for item in sets[set_name]:
                self.r.text(item, CODE_RE, "code")
        return sets

    # -- rules and conditions

    def rules(self, node: Node) -> tuple[Rule, ...]:
        rules: list[Rule] = []
        for item in self.r.seq(node):
            rule = self.rule(item)
            self.check_reachable(item, rule, rules)
            rules.append(rule)
        if rules[-1].when.op != "altijd":
            self.r.fail(node.value[-1], "the last rule must be a catch-all (when: {altijd: true})")
        return tuple(rules)

    def rule(self, node: Node) -> Rule:
        fields = self.r.mapping(node, ["code", "plicht_indicatie", "when"], ["omschrijving"])
        return Rule(
            code=self.r.text(fields["code"], CODE_RE, "rule code"),
            plicht_indicatie=self.r.code(fields["plicht_indicatie"], plicht_codes(), "plicht_indicatie"),
            when=self.condition(fields["when"]),
            line=node.start_mark.line + 1,
            omschrijving=self.r.text(fields["omschrijving"]) if "omschrijving" in fields else "",
        )

    def check_reachable(self, node: Node, rule: Rule, earlier: list[Rule]) -> None:
        for prior in earlier:
            if prior.code == rule.code:
                self.r.fail(node, f"rule code {rule.code!r} is used twice (first at line {prior.line})")
            if prior.when.op == "altijd":
                self.r.fail(node, f"rule {rule.code} can never match: rule {prior.code} "
                                  f"(line {prior.line}) before it always matches")
            if prior.when == rule.when:
                self.r.fail(node, f"rule {rule.code} can never match: rule {prior.code} "
                                  f"(line {prior.line}) before it has the same condition")

    def condition(self, node: Node) -> Condition:
        ops = ("altijd", "not", "all", "any", *(op for op in _LEAF_TESTS if op != "altijd"))
        if not isinstance(node, MappingNode) or len(node.value) != 1:
            self.r.fail(node, "a condition is a mapping with exactly one field; combine with all/any/not")
        key_node, arg = node.value[0]
        op = self.r.text(key_node, what="condition")
        if op not in ops:
            self.r.fail(key_node, f"unknown condition {op!r}; allowed: {', '.join(ops)}")
        return self.condition_of(op, arg)

    def condition_of(self, op: str, arg: Node) -> Condition:
        if op == "not":
            return Condition(op, parts=(self.condition(arg),))
        if op in ("all", "any"):
            return Condition(op, parts=tuple(self.condition(p) for p in self.r.seq(arg)))
        if op == "altijd":
            if self.r.text(arg, what="value for altijd") != "true":
                self.r.fail(arg, "altijd takes only the value true")
            return Condition(op, label="true")
        if op == "leeftijd":
            value = self.r.code(arg, frozenset(LEEFTIJD_VALUES), "leeftijd test")
            return Condition(op, value=value, label=value)
        if op.startswith("ingangsdatum_"):
            day = self.r.date(arg)
            return Condition(op, value=day, label=day.isoformat())
        codes, label = self.code_list(arg, op)
        return Condition(op, values=frozenset(codes), label=label)

    def code_list(self, arg: Node, op: str) -> tuple[list[str], str]:
        """The codes of a list or of a named code set, each checked for the condition's kind."""
        check = self.code_checker(op)
        if isinstance(arg, ScalarNode):
            set_name = self.r.text(arg)
            if set_name not in self.codesets:
                self.r.fail(arg, f"unknown code set {set_name!r} (write codes as a list: [A, B])")
            return [check(item) for item in self.codesets[set_name]], set_name
        codes = [check(item) for item in self.r.seq(arg)]
        return codes, "[" + ", ".join(codes) + "]"

    def code_checker(self, op: str) -> Callable[[Node], str]:
        if op == "grondslag_in":
            return lambda n: self.r.code(n, grondslag_codes(), "wettelijke grondslag")
        if op == "verblijfsdoel_in":
            return lambda n: self.r.code(n, verblijfsdoel_codes(), "verblijfsdoel")
        if op == "nationaliteit_any_in":
            return lambda n: self.r.text(n, NATIONALITY_RE, "nationality code (3 capital letters)")
        return lambda n: self.r.code(n, self.regime_codes, "regime")


# ---------------------------------------------------------------- rules that never decide

@dataclass(frozen=True)
class Shadowed:
    """A rule that never decides: every input it matches is decided by an earlier rule."""

    rule: Rule
    by: tuple[Rule, ...]  # the earlier rules that decide its inputs; empty: it matches no input at all

    def message(self, path: Path | str) -> str:
        if not self.by:
            return f"{path}:{self.rule.line}: rule {self.rule.code} can never match: its condition holds for no input"
        who = ", ".join(f"{r.code} ({path}:{r.line})" for r in self.by)
        return (f"{path}:{self.rule.line}: rule {self.rule.code} can never match: every case it covers is "
                f"decided earlier by {who}")


def shadowed(ruleset: RuleSet) -> list[Shadowed]:
    """The rules that can never decide, found by trying every distinguishable input.

    Conditions only test membership of codes they name, dates against the dates they name, and
    three-valued age tests, so one representative per class of inputs decides for the class: each
    named grondslag and verblijfsdoel and one unnamed; each achievable pattern of the nationality
    tests; a date in every interval between named dates and regime boundaries; every pair of age
    answers. A rule is shadowed when no representative it matches reaches it (an earlier rule
    matches first), which also catches covers made of several earlier rules.
    """
    rules = ruleset.rules
    firsts: dict[int, set[int]] = {i: set() for i in range(len(rules))}  # rule -> rules deciding its inputs
    for facts in _representatives(ruleset):
        first: int | None = None
        for i, rule in enumerate(rules):
            if _matches(rule.when, facts):
                if first is None:
                    first = i
                firsts[i].add(first)
    found = []
    for i, rule in enumerate(rules):
        if i not in firsts[i]:
            by = tuple(rules[j] for j in sorted(firsts[i]))
            found.append(Shadowed(rule, by))
    return found


def _conditions(c: Condition) -> Iterable[Condition]:
    yield c
    for part in c.parts:
        yield from _conditions(part)


def _representatives(ruleset: RuleSet) -> Iterable[_Facts]:
    leaves = [leaf for rule in ruleset.rules for leaf in _conditions(rule.when)]
    grondslagen = _with_other({v for c in leaves if c.op == "grondslag_in" for v in c.values}, grondslag_codes())
    doelen = _with_other({v for c in leaves if c.op == "verblijfsdoel_in" for v in c.values}, verblijfsdoel_codes())
    nationality_sets = sorted({c.values for c in leaves if c.op == "nationaliteit_any_in"}, key=sorted)
    days = _dates(ruleset, leaves)
    ages = [(lo, hi) for lo in (True, False, None) for hi in (True, False, None) if not (lo is False and hi is True)]
    for nationalities in _nationality_patterns(nationality_sets):
        for day in days:
            regime = ruleset.regime_for(day)
            for grondslag in grondslagen:
                for doel in doelen:
                    inp = RuleInput(grondslag, doel, nationalities, "0000-00-00", day)
                    for lo, hi in ages:
                        yield _Facts(inp, regime, lo, hi)


def _with_other(named: set[str], every: frozenset[str]) -> list[str]:
    return (sorted(named) + sorted(every - named)[:1]) or ["ANDERS"]


def _dates(ruleset: RuleSet, leaves: list[Condition]) -> list[dt.date]:
    edges = {c.value for c in leaves if c.op.startswith("ingangsdatum_") and isinstance(c.value, dt.date)}
    for g in ruleset.regimes:
        edges |= {d for d in (g.vanaf, g.tot_en_met + dt.timedelta(days=1) if g.tot_en_met else None) if d}
    ordered = sorted(edges) or [dt.date(2020, 1, 1)]
    return [ordered[0] - dt.timedelta(days=1), *ordered]


def _nationality_patterns(sets: list[frozenset[str]]) -> list[tuple[str, ...]]:
    """One nationality list per achievable pattern of answers to the ``nationaliteit_any_in`` tests."""
    patterns: dict[tuple[bool, ...], tuple[str, ...]] = {}
    for wanted in product((True, False), repeat=len(sets)):
        excluded = set().union(*(s for s, w in zip(sets, wanted, strict=True) if not w))
        chosen = []
        for s, w in zip(sets, wanted, strict=True):
            if w:
                options = sorted(s - excluded)
                if not options:
                    break
                chosen.append(options[0])
        else:
            patterns.setdefault(wanted, tuple(sorted(set(chosen))))
    return list(patterns.values())


# ---------------------------------------------------------------- cases

_INPUT_FIELDS = ("wettelijke_grondslag", "verblijfsdoel", "nationaliteit", "geboortedatum", "ingangsdatum")


def run_cases(ruleset: RuleSet, cases_path: Path | str) -> list[CaseResult]:
    """Evaluate every case in a ``*.cases.yaml`` file; ConfigError(file=, line=) if the file is malformed."""
    cases_path = Path(cases_path)
    reader = _Reader(cases_path)
    try:
        data = cases_path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the case file: {exc.strerror}", file=str(cases_path)) from exc
    top = reader.mapping(reader.compose(data), ["cases"], ["omschrijving"])
    results: list[CaseResult] = []
    seen: set[str] = set()
    for node in reader.seq(top["cases"]):
        name, inp, expected = _read_case(reader, node, ruleset)
        if name in seen:
            reader.fail(node, f"case name {name!r} is used twice")
        seen.add(name)
        actual = ruleset.evaluate(inp)
        passed = all(getattr(actual, key) == value for key, value in expected.items())
        results.append(CaseResult(name, passed, expected, actual, node.start_mark.line + 1))
    return results


def _read_case(r: _Reader, node: Node, ruleset: RuleSet) -> tuple[str, RuleInput, dict[str, str]]:
    fields = r.mapping(node, ["name", "input", "expect"])
    given = r.mapping(fields["input"], _INPUT_FIELDS)
    inp = RuleInput(
        wettelijke_grondslag=r.code(given["wettelijke_grondslag"], grondslag_codes(), "wettelijke grondslag"),
        verblijfsdoel=r.code(given["verblijfsdoel"], verblijfsdoel_codes(), "verblijfsdoel"),
        nationaliteiten=tuple(r.text(n, NATIONALITY_RE, "nationality code") for n in r.seq(given["nationaliteit"])),
        geboortedatum=r.text(given["geboortedatum"], BIRTH_RE, "geboortedatum (YYYY-MM-DD, 00 when unknown)"),
        ingangsdatum=r.date(given["ingangsdatum"], "ingangsdatum"),
    )
    want = r.mapping(fields["expect"], ["plicht_indicatie", "regel"], ["regime"])
    expected = {
        "plicht_indicatie": r.code(want["plicht_indicatie"], plicht_codes(), "plicht_indicatie"),
        "regel": r.code(want["regel"], frozenset(rule.code for rule in ruleset.rules), "rule code"),
    }
    if "regime" in want:
        expected["regime"] = r.code(want["regime"], frozenset(g.code for g in ruleset.regimes), "regime")
    return r.text(fields["name"], what="case name"), inp, expected


def active_name(store: Any) -> str | None:
    """The rule set made active with ``gateway rules apply``, if any; it overrides ``[rules] active``."""
    name: str | None = store.get_kv(ACTIVE_KEY)
    return name
