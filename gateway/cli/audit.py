"""``gateway audit``: the audit log, newest first (who saw personal data, who acted, and why)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from gateway.cli import common as cli
from gateway.cli.common import ConfigOpt, JsonOpt, out, say


def audit(
    since: str = typer.Option(None, help="From this ISO date/time (Europe/Amsterdam when no zone)."),
    actor: str = typer.Option(None, help="Only entries of this operator."),
    action: str = typer.Option(None, help="Only this action (e.g. show-personal-data, retry, sign-in-failed)."),
    limit: int = typer.Option(100, help="At most this many entries."),
    config: Path = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The audit log: every access to personal data in clear, every sign-in and every operator action,
    with who, when, which record, the stated reason and whether it was allowed. Read-only."""
    from gateway.core import audit as audit_mod

    cli.at_least(limit, 1, "--limit")
    if action is not None and action not in audit_mod.ACTIONS:
        cli.fail(f"--action: not an action the audit log records: {action!r} (one of "
                 + ", ".join(audit_mod.ACTIONS) + ")")
    cfg = cli.load_config(config)
    store = cli.open_store(cfg)
    rows = audit_mod.entries(store, since=cli._parse_time(since, "--since"), actor=actor, action=action,
                             limit=limit)
    if as_json:
        print(json.dumps([e.to_dict() for e in rows], indent=2))
        return
    out.print(cli.table(("at", "actor", "via", "action", "target", "outcome", "reason"),
                        [(e.at.replace("T", " ")[:19], e.actor, e.channel, e.action, e.target or "-", e.outcome,
                          e.reason or "-") for e in rows],
                        drop=("via",), shrink={"reason": 8, "target": 8, "action": 8}))
    say(f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'}")
