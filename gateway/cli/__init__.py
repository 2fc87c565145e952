"""The ``gateway`` command. Every command has ``--help``; those a script reads have ``--json``.

The config file comes from ``--config``, else ``$GATEWAY_CONFIG``, else ``config/gateway.toml``.
Errors are one clear line on standard error (with file and line where there is one) and a
non-zero exit code.
"""

from __future__ import annotations

import datetime as dt
import faulthandler
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import typer
from rich.text import Text

from gateway.cli.common import (
    ConfigOpt,
    JsonOpt,
    ReasonOpt,
    _parse_time,
    _unmask,
    at_least,
    err,
    fail,
    input_file,
    load_config,
    open_store,
    operator,
    out,
    output_path,
    require_database,
    say,
    table,
)
from gateway.core import config as config_mod
from gateway.core.errors import ConfigError, GatewayError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="The chain gateway between IND, DUO and CJIB.")
pki_app = typer.Typer(no_args_is_help=True, help="The sandbox PKI.")
db_app = typer.Typer(no_args_is_help=True, help="The database schema.")
app.add_typer(pki_app, name="pki")
app.add_typer(db_app, name="db")

# Options with fixed values: a wrong value is a usage error (exit 2) that lists the allowed ones.
State = Literal["queued", "retrying", "delivered", "accepted", "dead", "resolved", "refused", "refused_by_partner"]
Partner = Literal["ind", "duo", "cjib"]
Route = Literal["ind-duo", "duo-cjib", "cjib-duo", "rules-duo"]


# ---------------------------------------------------------------- the daemon


@app.command()
def run(config: Path = ConfigOpt) -> None:
    """Run the gateway daemon (partner endpoints, workers, jobs) until SIGTERM."""
    from gateway import daemon
    from gateway.core.observability import configure_logging

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

    at_least(count, 1, "--count")
    at_least(claims, 0, "--claims")
    output_path(directory, "--dir", directory=True)
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
    state: State | None = typer.Option(None, help="Only messages in this state."),
    partner: Partner | None = typer.Option(None, help="Only messages to or from this partner."),
    route: Route | None = typer.Option(None, help="Only this route."),
    since: str = typer.Option(None, help="From this ISO date/time (Europe/Amsterdam when no zone)."),
    until: str = typer.Option(None, help="Up to this ISO date/time."),
    id: str = typer.Option(None, "--id", help="A meldingId, vorderingId, berichtId or partner reference."),
    refused: bool = typer.Option(False, "--refused", help="Include refused inbound messages."),
    limit: int = typer.Option(50, help="At most this many rows."),
    show_personal_data: bool = typer.Option(False, "--show-personal-data",
                                            help="Unmask personal data (only for operators allowed in config)."),
    reason: str = ReasonOpt,
    config: Path = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The delivery log: what came in, what went out, and the state of each message."""
    from gateway.ops import views

    at_least(limit, 1, "--limit")
    cfg = load_config(config)
    unmask = _unmask(cfg, show_personal_data, "log", reason)
    store = open_store(cfg)
    f = views.LogFilter(state=state, partner=partner, route=route, since=_parse_time(since, "--since"),
                        until=_parse_time(until, "--until"), key=id, limit=limit, refused=refused)
    rows = views.log_rows(store, f, unmask=unmask)
    if as_json:
        print(json.dumps([{k: v for k, v in r.items() if k != "received_ts"} for r in rows], indent=2))
        return
    # At 80 columns each row stays one line: short times, keys cut with an ellipsis (`gateway show`
    # and --json have them whole); the kind (implied by the route) only on wide terminals.
    cells = []
    for r in rows:
        facts = r["facts"]
        detail = facts.get("fault_code") or " ".join(
            str(x) for x in (facts.get("regel"), facts.get("plichtIndicatie"), r.get("receipt")) if x)
        person = " ".join(str(v) for k, v in r["person"].items() if k in ("bsn", "naam") and v)
        cells.append([str(r["id"]), views.short_time(r["received_ts"]), r["route"], r["kind"], str(r["key"] or ""),
                      r["state"], str(r["attempts"]), str(detail), person])
    out.print(table(("id", "received", "route", "kind", "key", "state", "tries", "detail", "person"), cells,
                    drop=("kind",), shrink={"key": 10, "state": 9, "detail": 8, "person": 6}, right=("tries",)))
    say(f"{len(rows)} row(s)" + ("" if unmask else "; personal data masked"))


@app.command()
def show(
    ref: str = typer.Argument(..., help="Message id, meldingId, vorderingId, berichtId or zaaknummer."),
    show_personal_data: bool = typer.Option(False, "--show-personal-data", help="Unmask personal data (if allowed)."),
    reason: str = ReasonOpt,
    config: Path = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The full timeline of one message: received, validated, translated, each attempt, receipt."""
    from gateway.ops import views

    cfg = load_config(config)
    store = open_store(cfg)
    message_id = views.find_message(store, ref)
    if message_id is None:
        fail(f"no message found for {ref!r}")
    t = views.timeline(store, message_id, unmask=_unmask(cfg, show_personal_data, f"message:{message_id}", reason))
    if as_json:
        print(json.dumps(t, indent=2))
        return
    # The full values (keys, facts, person) wrap; the timeline's rows stay one line each.
    out.print(Text.assemble((f"message {t['id']}", "bold"), f"  {t['route']}  {t['kind']}  state ",
                            (str(t["state"]), "bold")))
    say(f"key       {t['key']}")
    say(f"received  {t['received']}")
    say("facts     " + ", ".join(f"{k}={v}" for k, v in t["facts"].items() if v is not None))
    if t["person"]:
        say("person    " + ", ".join(f"{k}={v}" for k, v in t["person"].items()))
    out.print(table(("at", "stage", "event", "detail"),
                    [(views.short_time(e["ts"]), e["stage"], e["event"], views.compact(e["detail"]))
                     for e in t["events"]], shrink={"detail": 10}))
    for d in t["deliveries"]:
        say(f"delivery {d['id']} to {d['partner']} {d['operation']}: {d['state']}, receipt {d['receipt_ref'] or '-'}"
            + (f", next attempt {d['next_attempt']}" if d["next_attempt"] else "")
            + (f", dead: {d['dead_reason']}" if d["dead_reason"] else ""))
        say(f"  key {d['idempotency_key']}")
        if d["attempts"]:
            out.print(table(("  attempt", "at", "outcome", "http", "ms", "detail"),
                            [(f"  {a['attempt']}", a["at"][11:19], a["outcome"], str(a["http_status"] or "-"),
                              str(a["duration_ms"]), a["detail"] or "") for a in d["attempts"]],
                            shrink={"detail": 10, "outcome": 7}, right=("  attempt", "http", "ms")))
    for i in t["inbound"]:
        say(f"inbound {i['id']} at {i['at']} via {i['channel']}: {i['outcome']} "
            f"(http {i['http_status']}{', ' + i['fault_code'] if i['fault_code'] else ''})")


# ---------------------------------------------------------------- mappings and config


TRANSLATE_ACCEPTS = ("translate accepts an IND VergunningMelding (bare or in its SOAP envelope) "
                     "or a DUO VorderingOverdracht")
_CLAIM_TAG = "{urn:nl:duo:inburgering:v1}VorderingOverdracht"
_OTHER_KINDS = {
    "{urn:nl:duo:inburgering:v1}InburgeraarMelding": "a DUO InburgeraarMelding (what translate writes)",
}


def _refuse_other_kinds(file: Path, data: bytes) -> None:
    """Exit 2 with one line when ``data`` is a message of a kind translate does not take."""
    from lxml import etree

    from adapters.ind.codec import IND_NS
    from gateway.wire import soap, xmlsafe

    if data.lstrip()[:1] in (b"{", b"["):
        try:
            doc = json.loads(data)
        except ValueError:
            doc = None
        cjib = isinstance(doc, dict) and "opdrachtgeverReferentie" in doc
        fail(f"{file}: this is {'a CJIB vordering (JSON, what the gateway sends CJIB)' if cjib else 'JSON'}; "
             f"{TRANSLATE_ACCEPTS}")
    try:
        root = xmlsafe.parse(data)
        payload = soap.split(root).payload if root.tag == f"{{{soap.SOAP_NS}}}Envelope" else root
    except GatewayError:
        return  # not readable XML: translate says what is wrong with it
    if payload.tag not in (f"{{{IND_NS}}}VergunningMelding", _CLAIM_TAG):
        name = etree.QName(payload)
        kind = _OTHER_KINDS.get(payload.tag) or f"a {name.localname} element ({name.namespace or 'no namespace'})"
        fail(f"{file}: this is {kind}; {TRANSLATE_ACCEPTS}")


@app.command()
def translate(
    file: Path = typer.Argument(..., help="An IND VergunningMelding (bare or in its SOAP envelope) "
                                           "or a DUO VorderingOverdracht."),
    received_at: str = typer.Option(None, "--received-at", help="The receipt time (ISO date-time with zone); default now."),
    config: Path = ConfigOpt,
) -> None:
    """Translate one message as the gateway would (standard output).

    An IND notification becomes the unsigned DUO InburgeraarMelding; a DUO claim hand-over
    (VorderingOverdracht) becomes the CJIB Vordering JSON that is sent to CJIB.
    """
    from lxml import etree

    from adapters.duo import codec as duo_codec
    from adapters.ind import codec as ind_codec
    from gateway.core.errors import InboundRefused
    from gateway.mapping import ind_to_duo
    from gateway.runtime import load_ruleset
    from gateway.wire import soap, xmlsafe

    cfg = load_config(config, required=False)
    try:
        ruleset = load_ruleset(cfg)
    except ConfigError as exc:
        fail(str(exc))
    when = dt.datetime.now(dt.UTC)
    if received_at:
        try:
            when = dt.datetime.fromisoformat(received_at)
        except ValueError:
            fail(f"--received-at: not an ISO date-time (e.g. 2026-11-02T09:14:05+01:00): {received_at!r}")
        if when.tzinfo is None:
            fail(f"--received-at needs a zone, e.g. 2026-11-02T09:14:05+01:00: {received_at!r}")
    input_file(file, "FILE")
    try:
        data = file.read_bytes()
    except OSError as exc:
        fail(f"{file}: {exc.strerror}")
    _refuse_other_kinds(file, data)
    try:
        root = xmlsafe.parse(data)
        payload = soap.split(root).payload if root.tag == f"{{{soap.SOAP_NS}}}Envelope" else root
        if payload.tag == _CLAIM_TAG:
            sys.stdout.write(_translate_claim(payload) + "\n")
            return
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


def _translate_claim(payload: Any) -> str:
    """A DUO VorderingOverdracht as the CJIB Vordering JSON (pretty; the wire form is compact)."""
    from adapters.duo import codec as duo_codec
    from gateway.mapping import duo_to_cjib
    from gateway.wire import xmlsafe

    xmlsafe.validate(payload, xmlsafe.DUO_XSD, partner="duo")
    claim = duo_codec.decode_vorderingoverdracht(payload)
    return json.dumps(duo_to_cjib.to_cjib_vordering(claim), indent=2, ensure_ascii=False, sort_keys=True)


@app.command("check-config")
def check_config(config: Path = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Validate the config, rule set, keys and certificates; report certificate expiry."""
    from gateway.ops import checks

    cfg = load_config(config, required=False)
    report = checks.check_config(cfg)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        for item in report["items"]:
            colour = {"ok": "green", "warning": "yellow", "error": "red"}[item["level"]]
            out.print(Text.assemble((f"{item['level']:8}", colour), f" {item['what']}: {item['message']}"))
    raise typer.Exit(0 if report["ok"] else 1)


# ---------------------------------------------------------------- operators


@app.command()
def health(config: Path = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Is the chain moving? Exit 0 ok, 1 degraded, 2 failing."""
    from gateway.core.errors import StoreUnavailable
    from gateway.ops import health as health_mod
    from gateway.runtime import build_runtime

    cfg = load_config(config)
    require_database(cfg)
    try:
        report = health_mod.evaluate(build_runtime(cfg))
    except StoreUnavailable as exc:  # down at start: say so, never "schema version 0"
        report = health_mod.unreachable(cfg.instance, exc)
    except (ConfigError, GatewayError) as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        colour = {"ok": "green", "degraded": "yellow", "failing": "red"}[report["status"]]
        out.print(Text(report["status"], style=f"bold {colour}"))
        # One line per route and check; a route's reasons follow it in full, as they are what to act on.
        out.print(table(("route", "status", "waiting", "oldest", "dead"),
                        [(name, r["status"], str(r["waiting"]), f"{r['oldest_undelivered_seconds']}s", str(r["dead"]))
                         for name, r in report["routes"].items()], right=("waiting", "oldest", "dead")))
        for name, r in report["routes"].items():
            for reason in r["reasons"]:
                say(f"{name}: {reason}")
        out.print(table(("check", "status", "detail"),
                        [(name, c["status"], ", ".join(f"{k}={v}" for k, v in c.items()
                                                       if k not in ("status", "cache")))
                         for name, c in report["checks"].items()], shrink={"detail": 10}))
        for name, c in report["checks"].items():
            if c["status"] != "ok" and c.get("reason"):
                say(f"{name}: {c['reason']}")
        if report.get("processes"):
            out.print(table(("process", "pid", "host", "state", "heartbeat"),
                            [(p["instance"], str(p["pid"]), p["host"], p["state"],
                              f"{p['heartbeat_age_seconds']}s ago") for p in report["processes"]],
                            shrink={"process": 8, "host": 8}, right=("pid", "heartbeat")))
    raise typer.Exit(health_mod.EXIT_CODES[report["status"]])


@app.command()
def retry(
    ids: list[int] = typer.Argument(None, help="Delivery ids (see `gateway show`)."),
    dead: bool = typer.Option(False, "--dead", help="Every dead delivery (with --partner: of that partner)."),
    partner: Partner | None = typer.Option(None, help="Only this partner's dead deliveries."),
    note: str = typer.Option(None, help="Why (kept in the operator log)."),
    config: Path = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Queue dead (or resolved) deliveries again."""
    cfg = load_config(config)
    store = open_store(cfg)
    targets = list(ids or [])
    _known_deliveries(store, targets)
    if dead:
        sql = "SELECT id FROM outbox WHERE state = 'dead'" + (" AND partner = :p" if partner else "")
        targets += [int(r[0]) for r in store.query(sql, {"p": partner} if partner else {})]
    if not targets:
        fail("name delivery ids, or use --dead [--partner P]")
    n = store.operator_retry(targets, operator(), note)
    if as_json:
        print(json.dumps({"requeued": n, "operator": operator()}))
    else:
        say(f"{n} delivery(ies) queued again by {operator()}")


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
    _known_deliveries(store, ids)
    n = store.operator_resolve(ids, operator(), note)
    if as_json:
        print(json.dumps({"resolved": n, "operator": operator()}))
    else:
        say(f"{n} delivery(ies) resolved by {operator()}")


def _known_deliveries(store: Any, ids: Sequence[int]) -> None:
    for i in ids:
        at_least(i, 1, "delivery id")
        if not store.query("SELECT 1 FROM outbox WHERE id = :id", {"id": i}):
            fail(f"no delivery with id {i} (see `gateway show`)")


# ---------------------------------------------------------------- pki and db


@pki_app.command("init")
def pki_init(
    directory: Path = typer.Argument(Path("sandbox/pki"), help="Where to write the throwaway CA and certificates."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
    ca_url: str = typer.Option("", "--ca-url", help="Base URL of the sandbox CA (CRL and OCSP) that the "
                               "certificates name, e.g. http://127.0.0.1:8099; none by default."),
    as_json: bool = JsonOpt,
) -> None:
    """Create a throwaway PKIoverheid-shaped PKI (root, intermediate, leaves with sandbox OINs) for the
    gateway and the simulated IND, DUO, CJIB."""
    from gateway.security import pki

    output_path(directory, "DIRECTORY", directory=True)
    if ca_url and not ca_url.startswith(("http://", "https://")):
        fail(f"--ca-url: not an http(s) URL: {ca_url}")
    try:
        paths = pki.init(directory, force=force, ca_url=ca_url or None)
    except OSError as exc:
        fail(f"{directory}: {exc.strerror or exc}")
    if as_json:
        print(json.dumps({k: str(v) for k, v in paths.items()}, indent=2))
    else:
        for name, path in paths.items():
            say(f"{name:16} {path}")


@pki_app.command("revoke")
def pki_revoke(
    name: str = typer.Argument(..., help="The sandbox certificate to revoke: DIR/NAME.pem (e.g. ind)."),
    directory: Path = typer.Option(Path("sandbox/pki"), "--dir", help="The sandbox PKI directory."),
    as_json: bool = JsonOpt,
) -> None:
    """Revoke a sandbox certificate: the sandbox CA lists it in its CRL and answers OCSP "revoked" from now on.

    A running gateway refuses it (CERT_REVOKED) after its next CRL fetch or OCSP question, without a restart.
    """
    from gateway.security import sandbox_ca

    if not name or "/" in name or name.endswith("-key"):
        fail(f"NAME: not a certificate name: {name}")
    try:
        serial = sandbox_ca.revoke(directory, name)
    except FileNotFoundError as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(f"{directory / (name + '.pem')}: not a certificate ({exc})")
    if as_json:
        print(json.dumps({"name": name, "serial": str(serial), "directory": str(directory)}))
    else:
        say(f"revoked {name} (serial {serial:x}); the sandbox CA's next CRL and OCSP answers list it")


@db_app.command("upgrade")
def db_upgrade(config: Path = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Apply pending schema migrations."""
    from gateway.core.store import Store

    cfg = load_config(config)
    try:
        version = Store(cfg.store.dsn).migrate()
    except GatewayError as exc:
        fail(str(exc))
    print(json.dumps({"version": version})) if as_json else say(f"schema version {version}")


@db_app.command("status")
def db_status(config: Path = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Show the database's schema version and the one this gateway needs."""
    from gateway.core.store import SCHEMA_VERSION, Store

    cfg = load_config(config)
    db = config_mod.sqlite_file(cfg.store.dsn)
    try:
        # A SQLite file that is not there is at version 0; looking does not create it.
        version = 0 if db is not None and not db.exists() else Store(cfg.store.dsn).version()
    except GatewayError as exc:
        fail(str(exc))
    state = "current" if version == SCHEMA_VERSION else ("behind" if version < SCHEMA_VERSION else "newer")
    if as_json:
        print(json.dumps({"version": version, "expected": SCHEMA_VERSION, "state": state}))
    else:
        say(f"schema version {version} (this gateway: {SCHEMA_VERSION}): {state}")
    raise typer.Exit(0 if state == "current" else 1)


def _register_optional() -> None:
    """Command groups that live in their own modules."""
    import importlib

    for module, attr, name in (("gateway.cli.rules", "rules_app", "rules"), ("gateway.cli.rules", "report_app", "report"),
                               ("gateway.cli.alerts", "alerts_app", "alerts"),
                               ("gateway.cli.operators", "operator_app", "operator"),
                               ("gateway.cli.keys", "keys_app", "keys")):
        try:
            sub = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            continue
        app.add_typer(sub, name=name)
    app.command("init")(importlib.import_module("gateway.cli.init").init)
    app.command("audit")(importlib.import_module("gateway.cli.audit").audit)
    lifecycle = importlib.import_module("gateway.cli.lifecycle")
    app.command("reload")(lifecycle.reload)
    pki_app.command("rotate")(lifecycle.rotate)
    kept = importlib.import_module("gateway.cli.retention")
    app.command("purge")(kept.purge)
    app.command("hold")(kept.hold)
    db_app.command("backup")(kept.backup)
    try:
        archive = importlib.import_module("gateway.cli.archive")
    except ImportError:
        return
    for command in ("export", "replay"):
        fn = getattr(archive, command, None)
        if fn is not None:
            app.command(command)(fn)


_register_optional()


def main() -> None:
    # A crash in a C extension (lxml, OpenSSL, SQLite) would otherwise end the daemon with no trace:
    # print every thread's Python stack to standard error first (no message data, only code lines).
    faulthandler.enable()
    try:
        app()
    except ConfigError as exc:
        fail(str(exc))


if __name__ == "__main__":
    main()
