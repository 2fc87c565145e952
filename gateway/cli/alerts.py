"""``gateway alerts``: open and recent alerts; ``gateway alerts test`` sends a test alert."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from gateway.cli import common as cli
from gateway.cli.common import ConfigOpt, JsonOpt, out, say

alerts_app = typer.Typer(invoke_without_command=True, help="Alerts: open and recent ones; `test` checks the "
                         "channels.")


@alerts_app.callback()
def alerts(
    ctx: typer.Context,
    limit: int = typer.Option(50, help="At most this many alerts."),
    config: Path = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Open alerts first, then recent resolved ones, with how each notification fared per channel."""
    if ctx.invoked_subcommand is not None:
        return
    from gateway.ops import alerts as alerts_mod

    cli.at_least(limit, 1, "--limit")
    cfg = cli.load_config(config)
    rows = alerts_mod.listing(cli.open_store(cfg), limit=limit)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    out.print(cli.table(("id", "state", "severity", "alert", "started", "sent", "summary"),
                        [(str(r["id"]), r["state"], r["severity"], r["name"], r["started"][:16].replace("T", " "),
                          _sent(r["sends"]), r["summary"]) for r in rows],
                        drop=("severity", "started"), shrink={"summary": 12, "alert": 12}, right=("id",)))
    opened = sum(1 for r in rows if r["state"] == "open")
    say(f"{opened} open, {len(rows) - opened} resolved shown"
        + ("" if cfg.alerts.smtp or cfg.alerts.webhook else "; no alert channel configured ([alerts.smtp], "
           "[alerts.webhook])"))


def _sent(sends: list[dict[str, object]]) -> str:
    sent = sum(1 for s in sends if s["state"] == "sent")
    return f"{sent}/{len(sends)}"


@alerts_app.command("test")
def test(config: Path = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Send a test alert to every configured channel now; exit 1 when any channel fails."""
    from gateway.ops import alerts as alerts_mod

    cfg = cli.load_config(config)
    if cfg.alerts.smtp is None and cfg.alerts.webhook is None:
        cli.fail("no alert channel is configured: add [alerts.smtp] and/or [alerts.webhook] to the config")
    with cli.err.status("sending a test alert ..."):
        result = alerts_mod.send_test(cfg.alerts, cfg.instance)
    if as_json:
        print(json.dumps({name: {"ok": error is None, "error": error} for name, error in result.items()}))
    else:
        for name, error in result.items():
            say(f"{name}: " + ("sent" if error is None else f"FAILED: {error}"))
    if any(error is not None for error in result.values()):
        raise typer.Exit(1)
