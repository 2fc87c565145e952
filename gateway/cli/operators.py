"""``gateway operator``: the people who may sign in to the operator console (module named operators so
it does not shadow ``gateway.cli.operator``, the OS user of a CLI action)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import typer

from gateway.cli import common as cli
from gateway.cli.common import ConfigOpt, JsonOpt, out, say

operator_app = typer.Typer(no_args_is_help=True, help="Operators of the web console (password sign-in, roles).")

_NAME = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")


@operator_app.command("add")
def add(
    name: str = typer.Argument(..., help="Sign-in name: lower-case letters, digits, . _ - (up to 64)."),
    role: list[str] = typer.Option(..., "--role", help="viewer (read, masked), operator (viewer + retry, resolve, "
                                    "roll-out), personal-data (viewer + unmask one message with a reason); repeat "
                                    "for several."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from the first line of "
                                        "standard input instead of asking twice."),
    certificate_only: bool = typer.Option(False, "--certificate-only", help="No password: this operator signs in "
                                          "only with a client certificate of the operators' CA whose CN is NAME "
                                          "([console] client_ca_files)."),
    config: Path = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Add an operator; the password (12 characters or more) is kept as an argon2id hash. An operator
    may also sign in with a client certificate whose CN is NAME (see docs/console.md)."""
    from gateway.console import auth

    if not _NAME.match(name):
        cli.fail(f"NAME: {name!r} is not a sign-in name (lower-case letters, digits, . _ -; 1-64, starting with a "
                 "letter)")
    cfg = cli.load_config(config)
    for r in role:
        if r not in auth.ROLES:
            cli.fail(f"--role: {r!r} is not a role (one of {', '.join(auth.ROLES)})")
    store = cli.open_store(cfg)
    password: str | None
    if certificate_only:
        password = None
    elif password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        auth.add_operator(store, name, list(role), password)
    except ValueError as exc:
        cli.fail(str(exc))
    if as_json:
        print(json.dumps({"name": name, "roles": sorted(set(role))}))
    else:
        say(f"operator {name} added ({', '.join(sorted(set(role)))})")


@operator_app.command("list")
def list_(config: Path = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """The console's operators, their roles and whether they are locked out (no hashes)."""
    from gateway.console import auth

    cfg = cli.load_config(config)
    rows = auth.operators(cli.open_store(cfg))
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    out.print(cli.table(("name", "roles", "failed sign-ins", "locked"),
                        [(r["name"], ", ".join(r["roles"]), str(r["failed_signins"]), "yes" if r["locked"] else "no")
                         for r in rows]))
    say(f"{len(rows)} operator(s)")
