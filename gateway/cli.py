"""The ``gateway`` command. Every command has ``--help``; those a script reads have ``--json``.

The config file comes from ``--config``, else ``$GATEWAY_CONFIG``, else ``config/gateway.toml``.
Errors are one clear line on standard error (with file and line where there is one) and a
non-zero exit code.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from gateway import config as config_mod
from gateway.errors import ConfigError, GatewayError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="The chain gateway between IND, DUO and CJIB.")
pki_app = typer.Typer(no_args_is_help=True, help="The sandbox PKI.")
db_app = typer.Typer(no_args_is_help=True, help="The database schema.")
app.add_typer(pki_app, name="pki")
app.add_typer(db_app, name="db")

out = Console()
err = Console(stderr=True)

ConfigOpt = typer.Option(None, "--config", "-c", help="Config file (default: $GATEWAY_CONFIG or config/gateway.toml).")
JsonOpt = typer.Option(False, "--json", help="Machine-readable output.")


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def load_config(path: Path | None) -> config_mod.Config:
    chosen = path or (Path(os.environ["GATEWAY_CONFIG"]) if os.environ.get("GATEWAY_CONFIG") else None)
    if chosen is None and Path("config/gateway.toml").exists():
        chosen = Path("config/gateway.toml")
    try:
        return config_mod.load(chosen)
    except ConfigError as exc:
        fail(str(exc))


def open_store(cfg: config_mod.Config) -> Any:
    from gateway.store import Store

    store = Store(cfg.store.dsn)
    try:
        store.check_version()
    except GatewayError as exc:
        fail(str(exc))
    return store


def operator() -> str:
    return os.environ.get("GATEWAY_OPERATOR") or getpass.getuser()


def _parse_time(value: str | None, name: str) -> float | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        fail(f"{name}: not an ISO date or date-time: {value!r}")
    if parsed.tzinfo is None:
        from gateway.clock import AMS

        parsed = parsed.replace(tzinfo=AMS)
    return parsed.timestamp()


# ---------------------------------------------------------------- the daemon


@app.command()
def run(config: Path = ConfigOpt) -> None:
    """Run the gateway daemon (partner endpoints, workers, jobs) until SIGTERM."""
    from gateway import daemon
    from gateway.observability import configure_logging

    cfg = load_config(config)
    configure_logging(cfg.log.level, cfg.log.file or None)
    try:
        raise typer.Exit(daemon.run(cfg))
    except (ConfigError, GatewayError) as exc:
        fail(str(exc))


@app.command()
def sandbox(
    count: int = typer.Option(50, "--count", "-n", help="How many IND notifications to push."),
    claims: int = typer.Option(10, "--claims", help="How many DUO claims to hand over to CJIB."),
    directory: Path = typer.Option(Path("sandbox"), "--dir", help="Where the sandbox keeps its PKI, config and database."),
    seed: int = typer.Option(2026, "--seed", help="Seed for the generated traffic."),
    keep_running: bool = typer.Option(False, "--keep-running", help="Leave the sandbox running until Ctrl-C."),
    as_json: bool = JsonOpt,
) -> None:
    """Start the gateway and simulated IND, DUO and CJIB on loopback; push traffic; summarize."""
    from gateway import sandbox as sandbox_mod

    try:
        summary = sandbox_mod.run(directory, count=count, claims=claims, seed=seed, keep_running=keep_running,
                                  console=err if as_json else out)
    except (ConfigError, GatewayError) as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(summary, indent=2))
    if not summary.get("ok", False):
        raise typer.Exit(1)


# ---------------------------------------------------------------- the delivery log


@app.command("log")
def log_cmd(
    state: str = typer.Option(None, help="queued, retrying, delivered, dead, resolved, refused, refused_by_partner."),
    partner: str = typer.Option(None, help="ind, duo or cjib."),
    route: str = typer.Option(None, help="ind-duo, duo-cjib, cjib-duo or rules-duo."),
    since: str = typer.Option(None, help="From this ISO date/time (Europe/Amsterdam when no zone)."),
    until: str = typer.Option(None, help="Up to this ISO date/time."),
    id: str = typer.Option(None, "--id", help="A meldingId, vorderingId, berichtId or partner reference."),
    refused: bool = typer.Option(False, "--refused", help="Include refused inbound messages."),
    limit: int = typer.Option(50, help="At most this many rows."),
    show_personal_data: bool = typer.Option(False, "--show-personal-data",
                                            help="Unmask personal data (only for operators allowed in config)."),
    config: Path = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The delivery log: what came in, what went out, and the state of each message."""
    from gateway import views

    cfg = load_config(config)
    unmask = _unmask(cfg, show_personal_data)
    store = open_store(cfg)
    f = views.LogFilter(state=state, partner=partner, route=route, since=_parse_time(since, "--since"),
                        until=_parse_time(until, "--until"), key=id, limit=limit, refused=refused)
    rows = views.log_rows(store, f, unmask=unmask)
    if as_json:
        print(json.dumps([{k: v for k, v in r.items() if k != "received_ts"} for r in rows], indent=2))
        return
    table = Table(show_lines=False)
    for col in ("id", "received", "route", "kind", "key", "state", "tries", "detail", "person"):
        table.add_column(col, overflow="fold")
    for r in rows:
        facts = r["facts"]
        detail = facts.get("fault_code") or " ".join(
            str(x) for x in (facts.get("regel"), facts.get("plichtIndicatie"), r.get("receipt")) if x)
        person = " ".join(str(v) for k, v in r["person"].items() if k in ("bsn", "naam") and v)
        table.add_row(str(r["id"]), r["received"], r["route"], r["kind"], str(r["key"] or ""), r["state"],
                      str(r["attempts"]), detail, person)
    out.print(table)
    out.print(f"{len(rows)} row(s)" + ("" if unmask else "; personal data masked"))


def _unmask(cfg: config_mod.Config, asked: bool) -> bool:
    if not asked:
        return False
    if operator() not in cfg.operators.personal_data:
        fail(f"operator {operator()!r} may not see personal data (config [operators] personal_data)")
    return True


@app.command()
def show(
    ref: str = typer.Argument(..., help="Message id, meldingId, vorderingId, berichtId or zaaknummer."),
    show_personal_data: bool = typer.Option(False, "--show-personal-data", help="Unmask personal data (if allowed)."),
    config: Path = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The full timeline of one message: received, validated, translated, each attempt, receipt."""
    from gateway import views

    cfg = load_config(config)
    store = open_store(cfg)
    message_id = views.find_message(store, ref)
    if message_id is None:
        fail(f"no message found for {ref!r}")
    t = views.timeline(store, message_id, unmask=_unmask(cfg, show_personal_data))
    if as_json:
        print(json.dumps(t, indent=2))
        return
    out.print(f"[bold]message {t['id']}[/]  route {t['route']}  {t['kind']} {t['key']}  state [bold]{t['state']}[/]")
    out.print("facts: " + ", ".join(f"{k}={v}" for k, v in t["facts"].items() if v is not None), highlight=False)
    if t["person"]:
        out.print("person: " + ", ".join(f"{k}={v}" for k, v in t["person"].items()), highlight=False)
    table = Table(title="timeline")
    for col in ("at", "stage", "event", "detail"):
        table.add_column(col)
    for e in t["events"]:
        table.add_row(e["at"], e["stage"], e["event"], json.dumps(e["detail"], sort_keys=True) if e["detail"] else "")
    out.print(table)
    for d in t["deliveries"]:
        out.print(f"delivery {d['id']} to {d['partner']} {d['operation']} key {d['idempotency_key']}: "
                  f"[bold]{d['state']}[/] receipt {d['receipt_ref'] or '-'}"
                  + (f" (next attempt {d['next_attempt']})" if d["next_attempt"] else "")
                  + (f" dead: {d['dead_reason']}" if d["dead_reason"] else ""))
        for a in d["attempts"]:
            out.print(f"  attempt {a['attempt']} at {a['at']}: {a['outcome']} http {a['http_status']} "
                      f"{a['duration_ms']} ms {a['detail'] or ''}", highlight=False)
    for i in t["inbound"]:
        out.print(f"inbound {i['id']} at {i['at']} via {i['channel']}: {i['outcome']} "
                  f"(http {i['http_status']}{', ' + i['fault_code'] if i['fault_code'] else ''})")


# ---------------------------------------------------------------- mappings and config


@app.command()
def translate(
    file: Path = typer.Argument(..., help="An IND VergunningMelding, bare or in its SOAP envelope."),
    received_at: str = typer.Option(None, "--received-at", help="The receipt time (ISO date-time with zone); default now."),
    config: Path = ConfigOpt,
) -> None:
    """Translate one IND notification into the unsigned DUO InburgeraarMelding (standard output)."""
    from lxml import etree

    from adapters.duo import codec as duo_codec
    from adapters.ind import codec as ind_codec
    from gateway import soap, xmlsafe
    from gateway.errors import InboundRefused
    from gateway.mapping import ind_to_duo
    from gateway.runtime import load_ruleset

    cfg = load_config(config)
    try:
        ruleset = load_ruleset(cfg)
    except ConfigError as exc:
        fail(str(exc))
    when = dt.datetime.now(dt.UTC)
    if received_at:
        when = dt.datetime.fromisoformat(received_at)
        if when.tzinfo is None:
            fail("--received-at needs a zone, e.g. 2026-11-02T09:14:05+01:00")
    try:
        data = file.read_bytes()
    except OSError as exc:
        fail(f"{file}: {exc.strerror}")
    try:
        root = xmlsafe.parse(data)
        payload = soap.split(root).payload if root.tag == f"{{{soap.SOAP_NS}}}Envelope" else root
        xmlsafe.validate(payload, xmlsafe.IND_XSD, partner="ind")
        melding = ind_codec.decode_melding(payload)
        problems = ind_codec.business_rules(melding)
        if problems:
            fail(f"{file}: business rule {problems[0][0]}: {problems[0][1]}")
        duo = ind_to_duo.to_inburgeraarmelding(melding, received_at=when, ruleset=ruleset,
                                               leveringstermijn_dagen=cfg.ind.leveringstermijn_dagen)
        element = duo_codec.encode_inburgeraarmelding(duo)
        xmlsafe.validate(element, xmlsafe.DUO_XSD, partner="duo")
    except InboundRefused as exc:
        line = f":{exc.path}" if exc.path else ""
        fail(f"{file}{line}: {exc.code}: {exc.message}")
    sys.stdout.write(etree.tostring(element, pretty_print=True, xml_declaration=True, encoding="utf-8").decode())


@app.command("check-config")
def check_config(config: Path = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Validate the config, rule set, keys and certificates; report certificate expiry."""
    from gateway import checks

    cfg = load_config(config)
    report = checks.check_config(cfg)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        for item in report["items"]:
            colour = {"ok": "green", "warning": "yellow", "error": "red"}[item["level"]]
            out.print(f"[{colour}]{item['level']:8}[/] {item['what']}: {item['message']}", highlight=False)
    raise typer.Exit(0 if report["ok"] else 1)


# ---------------------------------------------------------------- operators


@app.command()
def health(config: Path = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Is the chain moving? Exit 0 ok, 1 degraded, 2 failing."""
    from gateway import health as health_mod
    from gateway.runtime import build_runtime

    cfg = load_config(config)
    try:
        rt = build_runtime(cfg)
    except (ConfigError, GatewayError) as exc:
        fail(str(exc))
    report = health_mod.evaluate(rt)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        colour = {"ok": "green", "degraded": "yellow", "failing": "red"}[report["status"]]
        out.print(f"[bold {colour}]{report['status']}[/]")
        for name, r in report["routes"].items():
            out.print(f"  {name:9} {r['status']:9} waiting {r['waiting']:6} oldest {r['oldest_undelivered_seconds']:>9}s "
                      f"dead {r['dead']} {'; '.join(r['reasons'])}", highlight=False)
        for name, c in report["checks"].items():
            out.print(f"  {name:12} {c['status']}  " + ", ".join(f"{k}={v}" for k, v in c.items() if k != "status"),
                      highlight=False)
    raise typer.Exit(health_mod.EXIT_CODES[report["status"]])


@app.command()
def retry(
    ids: list[int] = typer.Argument(None, help="Delivery ids (see `gateway show`)."),
    dead: bool = typer.Option(False, "--dead", help="Every dead delivery (with --partner: of that partner)."),
    partner: str = typer.Option(None, help="Only this partner's dead deliveries."),
    note: str = typer.Option(None, help="Why (kept in the operator log)."),
    config: Path = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Queue dead (or resolved) deliveries again."""
    cfg = load_config(config)
    store = open_store(cfg)
    targets = list(ids or [])
    if dead:
        sql = "SELECT id FROM outbox WHERE state = 'dead'" + (" AND partner = :p" if partner else "")
        targets += [int(r[0]) for r in store.query(sql, {"p": partner} if partner else {})]
    if not targets:
        fail("name delivery ids, or use --dead [--partner P]")
    n = store.operator_retry(targets, operator(), note)
    if as_json:
        print(json.dumps({"requeued": n, "operator": operator()}))
    else:
        out.print(f"{n} delivery(ies) queued again by {operator()}")


@app.command()
def resolve(
    ids: list[int] = typer.Argument(..., help="Dead delivery ids."),
    note: str = typer.Option(..., "--note", help="What was done about it (kept in the operator log)."),
    config: Path = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Mark dead deliveries as handled outside the gateway."""
    cfg = load_config(config)
    store = open_store(cfg)
    n = store.operator_resolve(ids, operator(), note)
    if as_json:
        print(json.dumps({"resolved": n, "operator": operator()}))
    else:
        out.print(f"{n} delivery(ies) resolved by {operator()}")


# ---------------------------------------------------------------- pki and db


@pki_app.command("init")
def pki_init(
    directory: Path = typer.Argument(Path("sandbox/pki"), help="Where to write the throwaway CA and certificates."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
    as_json: bool = JsonOpt,
) -> None:
    """Create a throwaway CA and certificates for the gateway and the simulated IND, DUO, CJIB."""
    from gateway.security import pki

    paths = pki.init(directory, force=force)
    if as_json:
        print(json.dumps({k: str(v) for k, v in paths.items()}, indent=2))
    else:
        for name, path in paths.items():
            out.print(f"{name:16} {path}")


@db_app.command("upgrade")
def db_upgrade(config: Path = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Apply pending schema migrations."""
    from gateway.store import Store

    cfg = load_config(config)
    try:
        version = Store(cfg.store.dsn).migrate()
    except GatewayError as exc:
        fail(str(exc))
    print(json.dumps({"version": version})) if as_json else out.print(f"schema version {version}")


@db_app.command("status")
def db_status(config: Path = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Show the database's schema version and the one this gateway needs."""
    from gateway.store import SCHEMA_VERSION, Store

    cfg = load_config(config)
    try:
        version = Store(cfg.store.dsn).version()
    except GatewayError as exc:
        fail(str(exc))
    state = "current" if version == SCHEMA_VERSION else ("behind" if version < SCHEMA_VERSION else "newer")
    if as_json:
        print(json.dumps({"version": version, "expected": SCHEMA_VERSION, "state": state}))
    else:
        out.print(f"schema version {version} (this gateway: {SCHEMA_VERSION}): {state}")
    raise typer.Exit(0 if state == "current" else 1)


def _register_optional() -> None:
    """Command groups that live in their own modules."""
    import importlib

    for module, attr, name in (("gateway.cli_rules", "rules_app", "rules"), ("gateway.cli_rules", "report_app", "report")):
        try:
            sub = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            continue
        app.add_typer(sub, name=name)
    try:
        archive = importlib.import_module("gateway.cli_archive")
    except ImportError:
        return
    for command in ("export", "replay"):
        fn = getattr(archive, command, None)
        if fn is not None:
            app.command(command)(fn)


_register_optional()


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        fail(str(exc))


if __name__ == "__main__":
    main()
