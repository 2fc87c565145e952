"""``gateway init DIR``: a commented config and the layout beside it, for a gateway of your own.

Writes ``DIR/gateway.toml`` (the shipped example, ``config/gateway.example.toml``, with its paths
made relative to DIR), ``DIR/pki/`` for keys and certificates, ``DIR/var/`` with an empty
database at the current schema. An existing config is never overwritten (exit 2). The rule sets
are not copied: a config without ``[rules] directory`` uses the ones shipped with the gateway.
``gateway.cli`` registers :func:`init`; its helpers (from :mod:`gateway.cli.common`, the config
and the store) are imported inside the command.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from importlib.resources import files
from pathlib import Path

import typer

__all__ = ["init", "render_config"]

#: The example's paths (relative to config/) and what they become relative to DIR.
_PATHS = (("../pki/", "pki/"), ("sqlite:///../var/", "sqlite:///var/"))

#: The data key file init makes (encryption at rest), relative to DIR.
DATA_KEYS = "pki/data.keys"

_HEADER = """\
# The chain gateway's configuration, written by `gateway init`.
#
# Beside this file:
#   pki/  this gateway's TLS certificate and signing key (gateway.pem, gateway-key.pem), the
#         chain's CA (ca.pem) and the partners' certificates (ind.pem, duo.pem, cjib.pem). Keep
#         it private. For a test setup `gateway pki init {pki}` writes throwaway ones.
#         pki/data.keys holds the data keys (encryption at rest): back it up apart from the
#         database, whose backups hold only ciphertext.
#   var/  the SQLite database (gateway.db). Several gateway processes: PostgreSQL in [store] dsn,
#         then `gateway db upgrade --config {config}`.
# The rule sets are the ones shipped with the gateway unless [rules] directory names your own.
# Check this file: gateway check-config --config {config}
# Use it: --config {config}, or GATEWAY_CONFIG={config} in the environment.
#
"""


def render_config(config_file: Path) -> str:
    """The text of a new config at ``config_file``: the shipped example with paths beside it."""
    text = files("gateway").joinpath("gateway.example.toml").read_text(encoding="utf-8")
    body = text.split("\n", 1)[1] if text.startswith("#") else text  # its title line is the example's
    for old, new in _PATHS:
        body = body.replace(old, new)
    body = body.replace('[encryption]\nkey_file = ""' + " " * len(DATA_KEYS),
                        f'[encryption]\nkey_file = "{DATA_KEYS}"')
    where = config_file.resolve()
    return _HEADER.format(config=where, pki=where.parent / "pki") + body


def init(
    directory: Path = typer.Argument(..., help="Where to put gateway.toml, pki/ and var/ (made if missing)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Write a commented config (DIR/gateway.toml) and the layout for keys (pki/) and the store (var/)."""
    from gateway.cli.common import fail, out
    from gateway.core.config import load, sqlite_file
    from gateway.core.errors import ConfigError, GatewayError
    from gateway.core.store import Store
    from gateway.security import atrest

    config_file = directory / "gateway.toml"
    if config_file.exists():
        fail(f"{config_file} exists; init never overwrites a config (move it away, or choose another DIR)")
    if directory.exists() and not directory.is_dir():
        fail(f"{directory} exists and is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        pki = directory / "pki"
        pki.mkdir(mode=0o700, exist_ok=True)
        (directory / "var").mkdir(exist_ok=True)
        keys_file = directory / DATA_KEYS
        if not keys_file.exists():
            fd = os.open(keys_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write("# Data keys (encryption at rest): ID:KEY lines, the last one is current. Back this\n"
                        "# file up apart from the database: without it the stored records cannot be read.\n"
                        f"{dt.date.today():%Y-%m}-1:{atrest.new_key()}\n")
        with config_file.open("x", encoding="utf-8") as f:
            f.write(render_config(config_file))
    except OSError as exc:
        fail(f"{exc.filename or directory}: {exc.strerror}")
    try:
        cfg = load(config_file)
        db = sqlite_file(cfg.store.dsn)
        if db is not None and not db.exists():
            store = Store(cfg.store.dsn)
            store.migrate()
            from gateway.runtime import load_data_keys

            store.use_keys(load_data_keys(cfg))
            store.close()
    except (ConfigError, GatewayError) as exc:
        fail(str(exc))
    written = {"config": str(config_file), "pki": str(pki), "database": str(db) if db else cfg.store.dsn}
    if as_json:
        print(json.dumps(written, indent=2))
        return
    out.print(f"wrote {config_file}\n"
              f"made  {pki}/ (keys and certificates) and {db or cfg.store.dsn} (the store)\n"
              f"next: put this gateway's key and certificate, the CA and the partners' certificates in {pki}/ "
              f"(a test setup: gateway pki init {pki}), set the partners' URLs, then\n"
              f"      gateway check-config --config {config_file}", soft_wrap=True, markup=False)
