"""What every command group of ``gateway`` shares: the consoles, ``--config`` and ``--json``,
failing with one clear line, tables and text that fit the terminal, checks of paths and counts,
loading the config, opening the store, the operator's name, masking."""

from __future__ import annotations

import datetime as dt
import getpass
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gateway.core import config as config_mod
from gateway.core.errors import ConfigError, GatewayError

__all__ = ["out", "err", "ConfigOpt", "JsonOpt", "ReasonOpt", "fail", "table", "say", "output_path", "at_least", "input_file",
           "NO_CONFIG", "load_config", "require_database", "open_store", "operator", "_parse_time", "_unmask"]

# Text from data, files and config is printed as it is: no emoji codes (":100:"), no highlighting;
# data goes out in Text objects (never parsed as markup) and through fail()/say()/table().
out = Console(emoji=False, highlight=False)
err = Console(stderr=True, emoji=False, highlight=False)

ConfigOpt = typer.Option(None, "--config", "-c", help="Config file (default: $GATEWAY_CONFIG or config/gateway.toml).")
JsonOpt = typer.Option(False, "--json", help="Machine-readable output.")
ReasonOpt = typer.Option(None, "--reason", help="Why personal data must be shown (required with "
                         "--show-personal-data; recorded in the audit log).")


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on standard error (never wrapped, never read as markup) and exit ``code``."""
    err.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)
    raise typer.Exit(code)


def table(columns: Sequence[str], rows: Sequence[Sequence[str]], *, shrink: dict[str, int] | None = None,
          drop: Sequence[str] = (), right: Sequence[str] = (), width: int | None = None) -> Table:
    """A compact table that fits the terminal (``out.width``) with every row on one line.

    Columns take their natural width when there is room. When there is not, the ``drop`` columns
    (low-value ones, in that order) are left out, then the ``shrink`` columns (name -> narrowest
    width) give up width in proportion to what they have over that, and cells are cut with an
    ellipsis. ``--json`` (and ``gateway show``) have the full values.
    """
    width = width or out.width
    gap = 2  # one space of padding and the (blank) column separator
    cols = list(columns)
    data = [[str(c) for c in r] for r in rows]

    def natural(i: int) -> int:
        return max([len(cols[i]), *(len(r[i]) for r in data)])

    def total(ws: Sequence[int]) -> int:
        return sum(ws) + gap * (len(ws) - 1)

    for name in drop:
        if total([natural(i) for i in range(len(cols))]) <= width or name not in cols:
            continue
        i = cols.index(name)
        del cols[i]
        for r in data:
            del r[i]
    widths = [natural(i) for i in range(len(cols))]
    excess = total(widths) - width
    floors = {i: min(widths[i], (shrink or {})[c]) for i, c in enumerate(cols) if c in (shrink or {})}
    room = sum(widths[i] - f for i, f in floors.items())
    if excess > 0 and room > 0:
        take = min(excess, room)
        cuts = {i: take * (widths[i] - f) // room for i, f in floors.items()}
        left = take - sum(cuts.values())
        for i in sorted(floors, key=lambda i: widths[i] - cuts[i] - floors[i], reverse=True):
            if left and widths[i] - cuts[i] > floors[i]:
                cuts[i] += 1
                left -= 1
        widths = [w - cuts.get(i, 0) for i, w in enumerate(widths)]
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold")
    for name, w in zip(cols, widths, strict=True):
        t.add_column(name, width=w, no_wrap=True, overflow="ellipsis", justify="right" if name in right else "left")
    for r in data:
        t.add_row(*(Text(c) for c in r))
    return t


def say(text: str, style: str | None = None, *, one_line: bool = False, console: Console | None = None) -> None:
    """Print ``text`` literally; ``one_line`` cuts it with an ellipsis at the terminal width."""
    (console or out).print(Text(text, style=style or ""), no_wrap=one_line, overflow="ellipsis" if one_line else None,
                           crop=True)


def output_path(path: Path, option: str, *, directory: bool) -> None:
    """Fail (exit 2, naming the value) unless ``path`` can be written as a file or directory."""
    if path.exists():
        if directory and not path.is_dir():
            fail(f"{option}: {path} exists and is not a directory")
        if not directory and path.is_dir():
            fail(f"{option}: {path} is a directory")
        if not os.access(path, os.W_OK):
            fail(f"{option}: {path} is not writable")
        return
    if not directory and not path.parent.exists():
        fail(f"{option}: {path}: the directory {path.parent} does not exist")
    parent = _nearest_existing(path)
    if not parent.is_dir():
        fail(f"{option}: {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK):
        fail(f"{option}: {path}: {parent} is not writable")


def _nearest_existing(path: Path) -> Path:
    """The closest ancestor of ``path`` that exists (a file there explains a failure)."""
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    return parent


def at_least(value: int, minimum: int, option: str) -> None:
    """Fail (exit 2, naming the value) when a count or id is below ``minimum``."""
    if value < minimum:
        fail(f"{option}: must be at least {minimum}, not {value}")


def input_file(path: Path, option: str) -> None:
    """Fail (exit 2, naming the value) unless ``path`` is a readable file."""
    if not path.exists():
        parent = _nearest_existing(path)
        fail(f"{option}: {path}: no such file" + ("" if parent.is_dir() else f" ({parent} is not a directory)"))
    if path.is_dir():
        fail(f"{option}: {path} is a directory, not a file")
    if not os.access(path, os.R_OK):
        fail(f"{option}: {path} is not readable")


NO_CONFIG = "no config: looked for --config, $GATEWAY_CONFIG, config/gateway.toml; make one with `gateway init DIR`"


def load_config(path: Path | None, *, required: bool = True) -> config_mod.Config:
    """The config from ``--config``, else ``$GATEWAY_CONFIG``, else ``config/gateway.toml``.

    Without one: exit 2 saying where it looked and how to make one; with ``required=False`` (the
    commands that work with the defaults alone, such as translate) the defaults, whose rule sets
    are the ones shipped with the gateway.
    """
    chosen = path or (Path(os.environ["GATEWAY_CONFIG"]) if os.environ.get("GATEWAY_CONFIG") else None)
    if chosen is None and Path("config/gateway.toml").exists():
        chosen = Path("config/gateway.toml")
    if chosen is None and required:
        fail(NO_CONFIG)
    if chosen is not None and not chosen.exists():
        fail(f"no config at {chosen}; make one with `gateway init DIR`")
    try:
        return config_mod.load(chosen)
    except ConfigError as exc:
        fail(str(exc))


def require_database(cfg: config_mod.Config, code: int = 2) -> None:
    """Exit ``code`` when the config names a SQLite file that does not exist (looking must not create it)."""
    db = config_mod.sqlite_file(cfg.store.dsn)
    if db is not None and not db.exists():
        fail(f"no database at {db}; run `gateway db upgrade` (or `gateway init`)", code)


def open_store(cfg: config_mod.Config) -> Any:
    """The store, for a command that reads it: a missing SQLite file is an error, never created."""
    from gateway.core.store import Store

    require_database(cfg)
    from gateway.runtime import load_data_keys

    store = Store(cfg.store.dsn)
    try:
        store.check_version()
        store.use_keys(load_data_keys(cfg), record=False)  # reading commands write nothing
    except (GatewayError, ConfigError) as exc:
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
        fail(f"{name}: not an ISO date or date-time (e.g. 2026-11-02 or 2026-11-02T09:14:05+01:00): {value!r}")
    if parsed.tzinfo is None:
        from gateway.core.clock import AMS

        parsed = parsed.replace(tzinfo=AMS)
    return parsed.timestamp()


def _unmask(cfg: config_mod.Config, asked: bool, what: str = "", reason: str | None = None) -> bool:
    """May this operator see personal data in clear? Every request is recorded in the audit log
    (allowed or refused, with ``what`` was asked for and the stated reason) before anything is shown."""
    if not asked:
        return False
    from gateway.core import audit

    allowed = operator() in cfg.operators.personal_data
    if allowed and not (reason or "").strip():
        fail("--show-personal-data needs a stated reason: add --reason TEXT (it is recorded in the audit log)")
    store = open_store(cfg)
    try:
        audit.record(store, actor=operator(), action="show-personal-data", target=what or None,
                     reason=(reason or "").strip() or None, outcome="ok" if allowed else "refused")
    except GatewayError as exc:
        fail(f"personal data is shown only when the access can be recorded, and it could not be: {exc}")
    finally:
        store.close()
    if not allowed:
        fail(f"operator {operator()!r} may not see personal data (config [operators] personal_data); "
             "the refusal is recorded in the audit log")
    return True
