"""``gateway rules ...`` and ``gateway report ...``: the CLI glue over :mod:`gateway.rules.rollout`.

``gateway.cli`` registers ``rules_app`` and ``report_app`` when this module exists. The shared
helpers (config, store, ``fail``, masking) come from :mod:`gateway.cli.common`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.text import Text

from gateway.cli import common as cli
from gateway.cli.common import ConfigOpt, JsonOpt, err, fail, out, say
from gateway.core.config import sqlite_file
from gateway.core.errors import ConfigError, GatewayError
from gateway.rules import engine as rules
from gateway.rules import rollout as ruleops

__all__ = ["rules_app", "report_app"]

rules_app = typer.Typer(no_args_is_help=True, help="Rule sets: show, check, test, impact, apply.")
report_app = typer.Typer(no_args_is_help=True, help="Reports over the stored messages.")

# Printed as it is (common's consoles); rows (rules, cases, people) stay one line each at any
# width, cut with an ellipsis; --json has all.
SinceOpt = typer.Option(None, "--since", help="Only notifications received from this ISO date/time "
                                              "(Europe/Amsterdam when no zone).")
RulesetFileArg = typer.Argument(..., help="A rule set file (.yaml).")
CasesFileArg = typer.Argument(..., help="A case file (.cases.yaml).")
LimitOpt = typer.Option(50, "--limit", help="Show at most this many people in the table (--json shows all).")
PersonalOpt = typer.Option(False, "--show-personal-data", help="Unmask personal data (only for operators "
                                                               "allowed in config).")


def _ruleset_path(name: str, directory: Path) -> Path:
    """A rule set by name (in ``directory``) or by path (anything ending in .yaml or holding a /)."""
    if name.endswith((".yaml", ".yml")) or "/" in name:
        return Path(name)
    return directory / f"{name}.yaml"


def _load(path: Path) -> rules.RuleSet:
    cli.input_file(path, "rule set")
    try:
        return rules.load(path)
    except ConfigError as exc:
        fail(str(exc), 1)


def _named(cfg: Any, name: str) -> rules.RuleSet:
    return _load(_ruleset_path(name, Path(cfg.rules.directory)))


def _active(cfg: Any) -> tuple[str, str]:
    """(name, where it comes from): the store's record of `rules apply`, else ``[rules] active``."""
    from gateway.core.store import Store

    db = sqlite_file(cfg.store.dsn)
    if db is None or db.exists():  # looking must not create an empty SQLite file
        try:
            store = Store(cfg.store.dsn)
            if store.version():
                name = ruleops.active_name(store)
                store.close()
                if name:
                    return name, "store (gateway rules apply)"
        except GatewayError:
            pass
    return cfg.rules.active, "config [rules] active"


# ---------------------------------------------------------------- show

def _describe(rs: rules.RuleSet) -> dict[str, Any]:
    return {
        "name": rs.name, "version": rs.version, "file": str(rs.path),
        "regimes": [{"code": g.code,
                     "ingangsdatum_vanaf": g.vanaf.isoformat() if g.vanaf else None,
                     "ingangsdatum_tot_en_met": g.tot_en_met.isoformat() if g.tot_en_met else None,
                     "minimumleeftijd": str(g.minimum),
                     "maximumleeftijd": str(g.maximum) if g.maximum else "pensioenleeftijd"}
                    for g in rs.regimes],
        "pensioenleeftijd": [{"vanaf_jaar": year, "leeftijd": str(age)} for year, age in rs.pension],
        "rules": [{**row, "line": r.line, "omschrijving": r.omschrijving}
                  for row, r in zip(rs.table(), rs.rules, strict=True)],
        "codesets": _codesets(rs),
    }


def _codesets(rs: rules.RuleSet) -> dict[str, list[str]]:
    """The named code sets the rules use, so the table can be read without the file."""
    found: dict[str, list[str]] = {}

    def walk(c: rules.Condition) -> None:
        for part in c.parts:
            walk(part)
        if c.values and not c.label.startswith("["):
            found[c.label] = sorted(c.values)

    for r in rs.rules:
        walk(r.when)
    return dict(sorted(found.items()))


@rules_app.command("show")
def show(
    ruleset: str = typer.Option(None, "--ruleset", help="A rule set name or file (default: the active one)."),
    config: Path = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The rule table: rules in order with conditions and indications, regimes, pension ages."""
    cfg = cli.load_config(config, required=False)
    source = "--ruleset"
    if ruleset is None:
        ruleset, source = _active(cfg)
    data = {**_describe(_named(cfg, ruleset)), "chosen_by": source}
    if as_json:
        print(json.dumps(data, indent=2))
        return
    table = cli.table
    out.print(Text.assemble((data["name"], "bold"), f"  ({data['chosen_by']})"))
    say(f"version {data['version']}\nfile    {data['file']}")
    say("regimes (by ingangsdatum)", "bold")
    out.print(table(("regime", "from", "up to and including", "minimum age", "maximum age"),
                    [(g["code"], g["ingangsdatum_vanaf"] or "-", g["ingangsdatum_tot_en_met"] or "-",
                      g["minimumleeftijd"], g["maximumleeftijd"]) for g in data["regimes"]], width=out.width))
    if data["pensioenleeftijd"]:
        say("pension age (by the year of ingangsdatum)", "bold")
        out.print(table(("from year", "age"), [(str(p["vanaf_jaar"] or "earlier"), p["leeftijd"])
                                               for p in data["pensioenleeftijd"]], width=out.width))
    say("rules (the first that matches decides)", "bold")
    out.print(table(("#", "code", "plichtIndicatie", "line", "matches when"),
                    [(r["nr"], r["code"], r["plicht_indicatie"], str(r["line"]), r["when"]) for r in data["rules"]],
                    shrink={"code": 12, "plichtIndicatie": 9, "matches when": 12}, right=("#", "line"),
                    width=out.width))
    for name, codes in data["codesets"].items():
        say(f"{name}: {', '.join(codes)}")


# ---------------------------------------------------------------- check and test

@rules_app.command("check")
def check(
    file: Path = RulesetFileArg,
    as_json: bool = JsonOpt,
) -> None:
    """Load a rule set as the gateway would; a mistake is reported with its file and line (exit 1)."""
    cli.input_file(file, "FILE")
    try:
        rs = rules.load(file)
    except ConfigError as exc:
        if as_json:
            print(json.dumps({"ok": False, "file": exc.file, "line": exc.line, "error": str(exc)}, indent=2))
            raise typer.Exit(1) from None
        fail(str(exc), 1)
    never = rules.shadowed(rs)
    if never:
        _never_match(file, never, as_json)
    cases = file.with_name(f"{rs.name}.cases.yaml")
    if as_json:
        print(json.dumps({"ok": True, "name": rs.name, "version": rs.version, "rules": len(rs.rules),
                          "regimes": [g.code for g in rs.regimes],
                          "cases_file": str(cases) if cases.exists() else None}, indent=2))
        return
    out.print(Text.assemble(("ok", "green"), f" {file}: {len(rs.rules)} rules, regimes "
                            f"{', '.join(g.code for g in rs.regimes)}\nversion {rs.version}"))
    if cases.exists():
        say(f"next: gateway rules test {cases}")
    else:
        out.print(Text.assemble(("no case file", "yellow"), f" {cases}: write one before this rule set goes live"))


def _never_match(file: Path, never: list[rules.Shadowed], as_json: bool) -> NoReturn:
    """Rules that can never decide (each with its file:line and those of the rules before it that do): exit 1."""
    if as_json:
        print(json.dumps({"ok": False, "file": str(file), "never_match": [
            {"rule": n.rule.code, "line": n.rule.line, "error": n.message(file),
             "decided_by": [{"rule": r.code, "line": r.line} for r in n.by]} for n in never]}, indent=2))
        raise typer.Exit(1)
    for n in never:
        err.print(Text.assemble(("error:", "bold red"), " ", n.message(file)), soft_wrap=True)
    raise typer.Exit(1)


def _ruleset_for_cases(cases: Path, name: str | None, config: Path | None) -> rules.RuleSet:
    """``X.cases.yaml`` tests ``X.yaml`` next to it, unless --ruleset names another."""
    if name is None:
        return _load(cases.with_name(cases.name.removesuffix(".cases.yaml") + ".yaml"))
    beside = _ruleset_path(name, cases.parent)
    if beside.exists():
        return _load(beside)
    return _named(cli.load_config(config, required=False), name)


@rules_app.command("test")
def test(
    file: Path = CasesFileArg,
    ruleset: str = typer.Option(None, "--ruleset", help="Rule set name or file (default: the one the case "
                                                        "file is named after)."),
    config: Path = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Run a case file against a rule set: pass or fail per case, with its line; exit 1 on any failure."""
    cli.input_file(file, "FILE")
    rs = _ruleset_for_cases(file, ruleset, config)
    try:
        results = rules.run_cases(rs, file)
    except ConfigError as exc:
        fail(str(exc), 1)
    failed = [r for r in results if not r.passed]
    if as_json:
        print(json.dumps({"ruleset": rs.version, "cases": len(results), "failed": len(failed), "results": [
            {"name": r.name, "line": r.line, "passed": r.passed, "expected": r.expected,
             "actual": {"plicht_indicatie": r.actual.plicht_indicatie, "regel": r.actual.regel,
                        "regime": r.actual.regime}} for r in results]}, indent=2))
    else:
        for r in results:
            _print_case(file, r)
        colour = "red" if failed else "green"
        out.print(Text.assemble((f"{len(results)} case(s), {len(failed)} failed", colour), f" against {rs.version}"))
    raise typer.Exit(1 if failed else 0)


def _print_case(file: Path, r: rules.CaseResult) -> None:
    if r.passed:  # one line each, cut at the terminal width
        out.print(Text.assemble(("PASS", "green"), f" {file}:{r.line}  {r.name}"), no_wrap=True, overflow="ellipsis")
        return
    # A failure is printed whole (wrapped): what was expected and what came out is what to act on.
    got = {"plicht_indicatie": r.actual.plicht_indicatie, "regel": r.actual.regel, "regime": r.actual.regime}
    wrong = ", ".join(f"{k} expected {v}, got {got[k]}" for k, v in r.expected.items() if got[k] != v)
    out.print(Text.assemble(("FAIL", "red"), f" {file}:{r.line}  {r.name}: {wrong}"))


# ---------------------------------------------------------------- impact and apply

@rules_app.command("impact")
def impact(
    ruleset: str = typer.Option(..., "--ruleset", help="The new rule set (name in the rules directory, or file)."),
    since: str = SinceOpt,
    limit: int = LimitOpt,
    show_personal_data: bool = PersonalOpt,
    reason: str = cli.ReasonOpt,
    config: Path = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Whose indication would change under a new rule set? Read-only: nothing is stored or sent."""
    cli.at_least(limit, 1, "--limit")
    cfg = cli.load_config(config)
    unmask = cli._unmask(cfg, show_personal_data, f"rules-impact:{ruleset}", reason)
    new = _named(cfg, ruleset)
    store = cli.open_store(cfg)
    with cli.err.status(f"re-evaluating stored notifications under {new.name} ..."):
        report = ruleops.impact(store, new, cli._parse_time(since, "--since")).to_dict(unmask)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    _print_impact(report, unmask, limit)


def _print_impact(r: dict[str, Any], unmask: bool, limit: int) -> None:
    say(f"impact of {r['ruleset']}" + (f" on notifications since {r['since']}" if r["since"] else ""), "bold")
    say(f"evaluated {r['evaluated']}, unchanged {r['unchanged']} (of which {r['rule_only_changes']} only by "
         f"another rule), changed {r['changed']}; left out: {r['superseded']} replaced by an IND "
         f"CORRECTIE, {r['unreadable']} unreadable")
    for title, counts in (("by indication (old -> new)", r["by_indication"]), ("by rule (old -> new)", r["by_rule"])):
        say(title)
        for key, n in counts.items():
            say(f"  {n:6}  {key}", one_line=True)
    say("by regime (of the new rule set, by ingangsdatum)")
    for regime, g in r["by_regime"].items():
        detail = ", ".join(f"{k}: {n}" for k, n in g["by_indication"].items())
        say(f"  {regime:8} {g['count']:6}  {detail}", one_line=True)
    if not r["people"]:
        return
    say("people whose indication changes" + ("" if unmask else " (personal data masked)") + ":")
    out.print(cli.table(
        ("meldingId", "ingangsdatum", "regime", "old", "new", "person"),
        [(p["meldingId"], p["ingangsdatum"], p["regime"],
          f"{p['old']['plichtIndicatie']} ({p['old']['regel']})", f"{p['new']['plichtIndicatie']} ({p['new']['regel']})",
          _who(p["person"])) for p in r["people"][:limit]],
        shrink={"meldingId": 10, "old": 12, "new": 12, "person": 8}, width=out.width))
    if len(r["people"]) > limit:
        say(f"... and {len(r['people']) - limit} more (--limit, or --json for all)")


def _who(person: dict[str, Any]) -> str:
    return "  ".join(str(person.get(k) or "-") for k in ("bsn", "naam", "geboortedatum"))


@rules_app.command("apply")
def apply(
    ruleset: str = typer.Option(..., "--ruleset", help="The new rule set's name (a file in the rules directory)."),
    corrections: bool = typer.Option(False, "--corrections", help="Queue a DUO CORRECTIE for each person whose "
                                                                   "indication changes."),
    operator: str = typer.Option(None, "--operator", help="Who does this (default: $GATEWAY_OPERATOR or the OS user)."),
    config: Path = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Make a rule set the active one and, with --corrections, send DUO the corrected indications."""
    from gateway.runtime import build_runtime
    cfg = cli.load_config(config)
    who = operator or cli.operator()
    new = _named(cfg, ruleset)
    if new.path.resolve().parent != Path(cfg.rules.directory).resolve():
        fail(f"{new.path}: the rule set must be in the rules directory {cfg.rules.directory}", 1)
    _require_cases_pass(new)
    cli.require_database(cfg)
    try:
        rt = build_runtime(cfg)
    except (ConfigError, GatewayError) as exc:
        fail(str(exc))
    if corrections:
        with cli.err.status(f"re-evaluating and queueing corrections under {new.name} ..."):
            queued = ruleops.apply_corrections(rt, new, who)
    else:
        waiting = len(ruleops.impact(rt.store, new).changes)
        if waiting:
            fail(f"{waiting} person(s) would get another indication; add --corrections to send DUO "
                     "the corrections (see `gateway rules impact`)", 1)
        ruleops.activate(rt.store, new, who, note="no corrections needed")
        queued = 0
    result = {"active": new.name, "version": new.version, "operator": who, "corrections_queued": queued}
    if as_json:
        print(json.dumps(result, indent=2))
        return
    say(f"{new.name} is now the active rule set (recorded by {who}); {queued} correction(s) queued for "
         "DUO.\nRestart running gateways so that new notifications are assessed with it; then run this "
         "command again: it queues only what is still different.")


def _require_cases_pass(rs: rules.RuleSet) -> None:
    cases = rs.path.with_name(f"{rs.name}.cases.yaml")
    if not cases.exists():
        return
    try:
        failed = [r for r in rules.run_cases(rs, cases) if not r.passed]
    except ConfigError as exc:
        fail(str(exc), 1)
    if failed:
        fail(f"{len(failed)} case(s) in {cases} fail (first at line {failed[0].line}); "
              f"run `gateway rules test {cases}`", 1)


# ---------------------------------------------------------------- reports

@report_app.command("delays")
def report_delays(
    since: str = SinceOpt,
    limit: int = LimitOpt,
    show_personal_data: bool = PersonalOpt,
    reason: str = cli.ReasonOpt,
    config: Path = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """IND notifications that reached the gateway after the delivery window, with the delay per person."""
    cli.at_least(limit, 1, "--limit")
    cfg = cli.load_config(config)
    unmask = cli._unmask(cfg, show_personal_data, "report-delays", reason)
    store = cli.open_store(cfg)
    report = ruleops.delays(store, cli._parse_time(since, "--since")).to_dict(unmask)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    say("late IND notifications" + ("" if unmask else " (personal data masked)") + ":")
    if report["people"]:
        out.print(cli.table(
            ("received", "meldingId", "besluit", "days late", "person"),
            [(p["received"][:16].replace("T", " "), p["meldingId"], p["datumBesluit"], str(p["vertragingDagen"]),
              _who(p["person"])) for p in report["people"][:limit]],
            shrink={"meldingId": 10, "person": 8}, right=("days late",), width=out.width))
    if len(report["people"]) > limit:
        say(f"... and {len(report['people']) - limit} more (--limit, or --json for all)")
    say("days late: " + ", ".join(f"{k}: {n}" for k, n in report["distribution"].items()))
    say(f"total: {report['total']} late notification(s), {report['total_days']} day(s) in all"
         + (f", since {report['since']}" if report["since"] else ""))
