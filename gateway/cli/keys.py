"""``gateway keys ...``: the data keys of encryption at rest (docs/operations.md, "Encryption at
rest"): ``status`` (records per key id), ``rotate-data-key`` (every record to the current key,
batched and resumable), ``new-key`` (a line to add to the key file)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from gateway.cli import common as cli
from gateway.cli.common import ConfigOpt, JsonOpt, say

keys_app = typer.Typer(no_args_is_help=True, help="Data keys of encryption at rest: status, rotation.")

__all__ = ["keys_app"]


@keys_app.command("status")
def status(config: Path = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Stored records per data key id ("clear": stored before encryption was turned on)."""
    from gateway.ops import datakeys

    cfg = cli.load_config(config)
    store = cli.open_store(cfg)
    s = datakeys.status(store)
    if as_json:
        print(json.dumps(s, indent=2))
        return
    say(f"current key: {s['current'] or '(none: encryption at rest is off)'}")
    say(f"keys the store has used: {', '.join(s['store_keys']) or '-'}")
    out_rows = [(column, ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) or "-")
                for column, counts in s["columns"].items()]
    cli.out.print(cli.table(("column", "records per key"), out_rows))
    say("total: " + (", ".join(f"{k} {n}" for k, n in sorted(s["records"].items())) or "no records"))
    if s["rotation"]:
        say(f"a rotation to {s['rotation']['key']!r} is under way (at {s['rotation']['table']} id "
            f"{s['rotation']['after']}): run `gateway keys rotate-data-key` to finish it")


@keys_app.command("rotate-data-key")
def rotate_data_key(
    batch: int = typer.Option(500, "--batch", help="Records per transaction."),
    pause_ms: int = typer.Option(0, "--pause-ms", help="Milliseconds to wait between batches, to spare a busy gateway."),
    config: Path = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Re-wrap every record's data key with the current key ([encryption] current_key_id, else the
    last key in the file); seal records stored in clear before encryption. Runs beside the gateway,
    in batches of their own transactions; killed, it loses nothing, and run again it goes on where
    it stopped. Progress on standard error. Afterwards a key no record uses may leave the key file."""
    from rich.progress import Progress

    from gateway.ops import datakeys

    cli.at_least(batch, 1, "--batch")
    cli.at_least(pause_ms, 0, "--pause-ms")
    cfg = cli.load_config(config)
    if not cfg.encryption.enabled:
        cli.fail("encryption at rest is off: set [encryption] key_file (or key_env) first")
    store = cli.open_store(cfg)
    store.use_keys(store.keyring)  # it seals with the current key: the store records that key's check
    t0 = time.monotonic()
    total = datakeys.count(store)
    with Progress(console=cli.err, transient=False, disable=not cli.err.is_terminal and as_json) as bar:
        task = bar.add_task(f"records to key {store.keyring.current}", total=total)
        done = datakeys.rotate(store, batch=batch, pause_seconds=pause_ms / 1000,
                               progress=lambda n: bar.advance(task, n))
    done["seconds"] = round(time.monotonic() - t0, 2)
    done["key"] = store.keyring.current
    if as_json:
        print(json.dumps(done))
        return
    say(f"{done['rows']} rows looked at: {done['rewrapped']} data keys re-wrapped, {done['sealed']} clear "
        f"records sealed, with key {done['key']!r} ({done['seconds']} s)")
    if done["left"]:
        say("still under another key (written meanwhile by a process on the old key; reload it and run "
            "again): " + ", ".join(f"{k} {n}" for k, n in sorted(done["left"].items())))
    else:
        say("every record is under the current key; the other keys may leave the key file")


@keys_app.command("new-key")
def new_key(key_id: str = typer.Argument(..., help="The new key's id, e.g. 2027-01.")) -> None:
    """Print a new key as a key-file line (ID:KEY). Add it last to the key file (the last is current)."""
    from gateway.security import atrest

    if not atrest.KEY_ID.match(key_id):
        cli.fail(f"key id {key_id!r}: use 1 to 64 of A-Z a-z 0-9 . _ -")
    print(f"{key_id}:{atrest.new_key()}")
