"""``gateway purge`` (retention), ``gateway hold`` (keep a message from being purged) and
``gateway db backup`` (an online copy of an SQLite store)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import typer

from gateway.cli import common as cli
from gateway.cli.common import ConfigOpt, JsonOpt, say


def purge(
    dry_run: bool = typer.Option(False, "--dry-run", help="Only count what is past its term; change nothing."),
    config: Path = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Remove personal data past its term ([retention] in the config): payloads and personal fields
    of final messages, refused messages' bytes, old delivery-log rows and audit entries. Keeps ids,
    times, states and codes, so counts and reports stay right. Batched and resumable."""
    from rich.progress import Progress

    from gateway.ops import retention

    cfg = cli.load_config(config)
    store = cli.open_store(cfg)
    if not any(cfg.retention.terms().values()):
        cli.fail("no retention term is configured: set [retention] notifications, claims, refused, delivery_log "
                 "or audit (e.g. notifications = \"400d\")")
    counts = retention.due(store, cfg.retention)
    if not dry_run:
        with Progress(console=cli.err, transient=True) as bar:
            tasks = {k: bar.add_task(f"purging {k}", total=n) for k, n in counts.items()}
            counts = retention.purge(store, cfg.retention, progress=lambda kind, n: bar.advance(tasks[kind], n))
    if as_json:
        print(json.dumps({"dry_run": dry_run, "purged" if not dry_run else "due": counts}))
        return
    verb = "would purge" if dry_run else "purged"
    for kind, n in counts.items():
        say(f"{kind:13} {verb} {n} (term {getattr(cfg.retention, kind)})")


def hold(
    ref: str = typer.Argument(..., help="Message id, meldingId, vorderingId, berichtId or zaaknummer."),
    reason: str = typer.Option(None, "--reason", help="Why the message must be kept (required to hold)."),
    release: bool = typer.Option(False, "--release", help="End the hold: the message follows its term again."),
    config: Path = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Keep a message from being purged (a legal hold, an objection, a case) until released."""
    from gateway.core import audit
    from gateway.ops import retention, views

    cfg = cli.load_config(config)
    store = cli.open_store(cfg)
    message_id = views.find_message(store, ref)
    if message_id is None:
        cli.fail(f"no message found for {ref!r}")
    if not release and not (reason or "").strip():
        cli.fail("--reason is required to hold a message (it is recorded in the audit log)")
    retention.hold(store, message_id, None if release else reason.strip())
    audit.record(store, actor=cli.operator(), action="release" if release else "hold", target=f"message:{message_id}",
                 reason=(reason or "").strip() or None)
    if as_json:
        print(json.dumps({"message": message_id, "held": not release}))
    else:
        say(f"message {message_id} " + ("released: it follows its retention term again" if release
                                        else "is held: it is not purged until released"))


def backup(
    target: Path = typer.Argument(..., help="The backup file to write (must not exist)."),
    config: Path = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """An online, consistent copy of the SQLite store while the gateway runs (SQLite's backup API).
    For PostgreSQL use pg_dump (docs/operations.md)."""
    from gateway.core.config import sqlite_file

    cfg = cli.load_config(config)
    source = sqlite_file(cfg.store.dsn)
    if source is None:
        cli.fail("the store is PostgreSQL: back it up with pg_dump, e.g. `pg_dump -Fc -f gateway.dump "
                 "'<dsn>'` (docs/operations.md)")
    cli.require_database(cfg)
    if target.exists():
        cli.fail(f"{target}: exists; a backup never overwrites a file")
    cli.output_path(target, "TARGET", directory=False)
    src = sqlite3.connect(source)
    dst = sqlite3.connect(target)
    try:
        with cli.err.status(f"copying {source} ..."):
            src.backup(dst, pages=256)
        pages = dst.execute("PRAGMA page_count").fetchone()[0]
        ok = dst.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        dst.close()
        src.close()
    if not ok:
        target.unlink(missing_ok=True)
        cli.fail(f"{target}: the copy failed its integrity check and was removed")
    if as_json:
        print(json.dumps({"backup": str(target), "pages": pages, "bytes": target.stat().st_size}))
    else:
        say(f"backed up {source} to {target} ({target.stat().st_size} bytes, integrity ok)")
