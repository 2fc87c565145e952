"""Encryption at rest on both backends (docs/operations.md, "Encryption at rest").

After a sandbox run no BSN, V-number, name or birth date of any test person is in the raw
database (the SQLite file and its write-ahead log; a pg_dump), while `gateway show
--show-personal-data` still shows them to an allowed operator; a purge with a short term removes
the purged records' ciphertext from the file and leaves the delay report as it was; a rotation
killed with SIGKILL half-way under load and run again leaves every record readable under the new
key (clear records from before encryption included); a wrong or missing key refuses to start."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from adapters.duo.simulator import generate_vorderingen
from adapters.ind.simulator import generate_meldingen
from gateway.cli import app
from gateway.core import config as config_mod
from gateway.core.clock import AMS
from gateway.core.config import sqlite_file
from gateway.core.errors import StoreKeyMismatch
from gateway.core.store import SEALED, InboundRecord, NewDelivery, Store
from gateway.ops import datakeys
from gateway.rules import rollout
from gateway.security import atrest

SEED = 4242


def _dump(store: Store) -> bytes:
    path = sqlite_file(store.dsn)
    if path is not None:
        return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
    pg_dump = shutil.which("pg_dump")
    assert pg_dump, "pg_dump is missing (postgresql-client)"
    return subprocess.run([pg_dump, store.dsn], capture_output=True, check=True, timeout=120).stdout


def _people(count: int, claims: int) -> list[dict[str, str]]:
    """Every test person the sandbox run used, with each value as the messages spell it."""
    people = []
    for m in generate_meldingen(count, SEED):
        p = m.persoon
        people.append({"bsn": p.bsn or "", "v": p.v_nummer, "name": p.geslachtsnaam, "first": p.voornamen or "",
                       "born": p.geboortedatum, "born8": p.geboortedatum.replace("-", ""), "key": m.melding_id})
    for v in generate_vorderingen(claims, SEED, dt.datetime.now(AMS).date(), broken_every=max(5, claims // 2 or 1)):
        d = v.debiteur
        people.append({"bsn": d.bsn, "v": d.v_nummer or "", "name": d.geslachtsnaam, "first": d.voornamen or "",
                       "born": d.geboortedatum.isoformat(), "born8": d.geboortedatum.strftime("%Y%m%d"),
                       "key": v.vordering_id})
    return people


def _found(dump: bytes, value: str) -> bool:
    # Whole words: a value inside random base64 or a longer word is not a leak. pg_dump writes
    # bytea in hex: each form is looked for in hex as well.
    # A value shorter than 8 characters (a first name) is looked for as the messages write it, as
    # an element's text (>Ali<) or a JSON string ("Ali"): a bare three-letter word turns up in
    # megabytes of random ciphertext by chance.
    if not value:
        return False
    v = value.encode()
    forms = [v] if len(v) >= 8 else [b">" + v + b"<", b'"' + v + b'"']
    if any(f.hex().encode() in dump for f in forms):
        return True
    if len(v) < 8:
        return any(f in dump for f in forms)
    return re.search(rb"(?<![A-Za-z0-9])" + re.escape(v) + rb"(?![A-Za-z0-9])", dump) is not None


def _holds(dump: bytes, blob: bytes) -> bool:
    """Is this stored value in the dump (as bytes in the SQLite file, in hex in a pg_dump)?"""
    return blob[-48:] in dump or blob[-48:].hex().encode() in dump


def _leaks(dump: bytes, people: list[dict[str, str]]) -> list[str]:
    return [f"{k} of {p['key']}" for p in people for k in ("bsn", "v", "name", "first", "born", "born8")
            if _found(dump, p[k])]


def _config(directory: Path, extra: str) -> Path:
    target = directory / "cli.toml"
    target.write_text((directory / "gateway.toml").read_text() + extra)
    return target


def test_a_sandbox_run_leaves_no_personal_data_in_the_database(tmp_path: Path, store_dsn: str) -> None:
    from gateway import sandbox
    from gateway.runtime import store_for

    count, claims = 6, 4
    summary = sandbox.run(tmp_path / "sb", count=count, claims=claims, seed=SEED, keep_running=False,
                          console=Console(file=io.StringIO()), dsn=store_dsn)
    assert summary["ok"], summary
    people = _people(count, claims)
    config = _config(tmp_path / "sb", '\n[operators]\npersonal_data = ["alice"]\n'
                     '\n[retention]\nnotifications = "1s"\nclaims = "1s"\n')
    cfg = config_mod.load(config)
    store = store_for(cfg)
    try:
        dump = _dump(store)
        assert len(dump) > 50_000
        assert _leaks(dump, people) == []
        # ... while the store reads them (the same values are really stored, sealed).
        stored = json.dumps([store.person(r[0]) for r in store.query("SELECT person FROM messages")])
        assert all(p["bsn"] in stored for p in people)
        status = datakeys.status(store)
        assert set(status["records"]) == {"sandbox-1"} and status["columns"]["outbox.payload"]["sandbox-1"] >= count

        # An allowed operator still sees them (and the access is audited).
        first = people[0]
        shown = CliRunner().invoke(app, ["show", first["key"], "--show-personal-data", "--reason", "ticket 15",
                                         "--json", "--config", str(config)], env={"GATEWAY_OPERATOR": "alice"})
        assert shown.exit_code == 0, shown.output
        person = json.loads(shown.output)["person"]
        assert person["bsn"] == first["bsn"] and first["name"] in json.dumps(person)
        masked = CliRunner().invoke(app, ["show", first["key"], "--json", "--config", str(config)])
        assert first["bsn"] not in masked.output

        # A purge with a short term: the purged records' ciphertext leaves the file too; the delay
        # report stays as it was.
        before = rollout.delays(store)
        sealed = [bytes(r[0]) for r in store.query("SELECT payload FROM outbox WHERE state = 'delivered'")]
        assert sealed and all(atrest.is_sealed(b) for b in sealed)
        assert all(_holds(_dump(store), b) for b in sealed)
        time.sleep(1.1)
        purged = CliRunner().invoke(app, ["purge", "--json", "--config", str(config)])
        assert purged.exit_code == 0, purged.output
        assert json.loads(purged.output)["purged"]["notifications"] >= count - 1
        dump = _dump(store)
        gone = [b for b in sealed if not _holds(dump, b)]
        assert len(gone) >= len(sealed) - 2  # all but a message still waiting on a partner's status
        after = rollout.delays(store)
        assert (after.total_days, after.buckets(), [r["vertragingDagen"] for r in after.rows]) == (
            before.total_days, before.buckets(), [r["vertragingDagen"] for r in before.rows])
    finally:
        store.close()


# ---------------------------------------------------------------- keys at start-up


def _key_file(path: Path, **keys: bytes) -> Path:
    path.write_text("".join(f"{k}:{v.hex()}\n" for k, v in keys.items()))
    path.chmod(0o600)
    return path


def _gateway_config(tmp_path: Path, dsn: str, key_file: Path) -> Path:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[store]\ndsn = "{dsn}"\n[tls]\nenabled = false\n[listen]\nport = 0\nmetrics_port = 0\n'
                      f'[encryption]\nkey_file = "{key_file}"\n')
    return config


def test_a_wrong_or_missing_key_refuses_to_start(tmp_path: Path, store: Store) -> None:
    k1 = os.urandom(32)
    keys = _key_file(tmp_path / "data.keys", k1=k1)
    config = _gateway_config(tmp_path, store.dsn, keys)
    ok = CliRunner().invoke(app, ["check-config", "--json", "--config", str(config)])
    store.use_keys(atrest.Keyring({"k1": k1}, "k1"))  # the store's records are sealed with k1
    with store.tx() as t:
        t.log_inbound(InboundRecord("ind", "OntvangMelding", b"<x/>", time.time()), "refused")
    assert '"encryption"' in ok.output

    def refused(args: list[str]) -> str:
        if args[0] == "run":  # as an operator starts it: a process of its own
            p = subprocess.run([sys.executable, "-m", "gateway.cli", *args, "--config", str(config)],
                               capture_output=True, text=True, timeout=60)
            assert p.returncode != 0
            return " ".join(p.stderr.split())
        result = CliRunner().invoke(app, [*args, "--config", str(config)], env={"COLUMNS": "300"})
        assert result.exit_code != 0
        return " ".join(result.output.split())  # as one line, however the terminal wrapped it

    _key_file(keys, k1=os.urandom(32))  # the same id, another key
    for args in (["run"], ["check-config"], ["log"]):
        assert "data key 'k1' as configured is not the key the store's records were sealed with" in refused(args)
    _key_file(keys, k2=os.urandom(32))  # k1 missing
    for args in (["run"], ["check-config"]):
        assert "sealed with data key 'k1', which is not among the configured data keys (k2)" in refused(args)
    _key_file(keys, k1=k1)
    keys.chmod(0o644)
    assert f"{keys}: the data key file must be readable by its owner only" in refused(["run"])
    keys.chmod(0o600)
    config.write_text(config.read_text().split("[encryption]")[0])  # encryption off
    assert "no data key is configured" in refused(["run"])


# ---------------------------------------------------------------- rotation


def _fill(store: Store, n: int, tag: str) -> None:
    """n messages with an inbound entry, a delivery and a receipt (bulk: one transaction)."""
    now = time.time()
    with store.tx() as t:
        for i in range(n):
            mid = int(t.all(
                "INSERT INTO messages (route, kind, message_key, content_digest, received_at, state, ack, facts, "
                "person, updated_at) VALUES ('ind-duo', 'melding', :k, 'd', :at, 'delivered', :ack, '{}', :p, :at) "
                "RETURNING id", {"k": f"{tag}-{i}", "at": now, "ack": store.seal("messages.ack", b"<ack/>"),
                                 "p": store.seal_text("messages.person", json.dumps({"bsn": f"{tag}{i}"}))})[0][0])
            t.log_inbound(InboundRecord("ind", "OntvangMelding", f"<raw>{tag}{i}</raw>".encode(), now,
                                        message_key=f"{tag}-{i}"), "accepted", message_id=mid, response_body=b"<ok/>")
            t.insert_delivery(mid, NewDelivery("duo", "InburgeraarMelding", f"{tag}-{i}",
                                               f"<payload>{tag}{i}</payload>".encode()), now)
            t.execute("UPDATE outbox SET receipt = :r WHERE message_id = :m",
                      {"r": store.seal("outbox.receipt", b"<receipt/>"), "m": mid})


def _everything_reads(store: Store) -> int:
    n = 0
    for column in SEALED:
        table, _, name = column.partition(".")
        for (value,) in store.query(f"SELECT {name} FROM {table}"):
            if value is not None:
                plain = store.unseal_text(column, value) if SEALED[column] == "text" else store.unseal(column, value)
                assert plain, column
                n += 1
    return n


def test_rotation_killed_half_way_under_load_and_run_again_leaves_every_record_readable(
        tmp_path: Path, store: Store) -> None:
    k1, k2 = os.urandom(32), os.urandom(32)
    _fill(store, 100, "legacy")  # stored in clear, before encryption was turned on
    store.use_keys(atrest.Keyring({"k1": k1}, "k1"))
    _fill(store, 500, "old")
    keys = _key_file(tmp_path / "data.keys", k1=k1, k2=k2)  # k2, the last, is current
    config = _gateway_config(tmp_path, store.dsn, keys)

    # The load: a gateway that has k2 (it reads what the rotation wrote) but still seals with k1
    # (not restarted yet) takes in messages while the rotation runs.
    store.use_keys(atrest.Keyring({"k1": k1, "k2": k2}, "k1"))
    stop = threading.Event()

    def load() -> None:
        n = 0
        while not stop.is_set():
            _fill(store, 5, f"load{n}")
            n += 1
            time.sleep(0.01)

    writer = threading.Thread(target=load, daemon=True)
    writer.start()
    try:
        env = {**os.environ, "COLUMNS": "100"}
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "keys", "rotate-data-key", "--batch", "25",
                                 "--pause-ms", "20", "--json", "--config", str(config)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            cursor = store.get_kv(datakeys.CURSOR)
            if cursor and json.loads(cursor)["after"] >= 200:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        half = datakeys.status(store)["records"]
        assert half.get("k2") and (half.get("k1") or half.get("clear")), half  # stopped half-way
        assert _everything_reads(store) > 0
    finally:
        stop.set()
        writer.join(timeout=10)

    again = CliRunner().invoke(app, ["keys", "rotate-data-key", "--json", "--config", str(config)])
    assert again.exit_code == 0, again.output
    done = json.loads(again.stdout.strip().splitlines()[-1])
    assert done["left"] == {} and done["resumed_at"]["after"] >= 200 and done["sealed"] + done["rewrapped"] > 0
    status = datakeys.status(store)
    assert set(status["records"]) == {"k2"} and status["store_keys"] == ["k2"] and status["rotation"] is None
    # Every record opens with k2 alone: k1 may leave the key file.
    only_k2 = Store(store.dsn)
    try:
        only_k2.use_keys(atrest.Keyring({"k2": k2}, "k2"))
        rows = _everything_reads(only_k2)
        assert rows >= 600 * 6
        people = [only_k2.person(r[0]) for r in only_k2.query("SELECT person FROM messages ORDER BY id")]
        assert people[0] == {"bsn": "legacy0"} and {"bsn": "old499"} in people
    finally:
        only_k2.close()
    listed = CliRunner().invoke(app, ["keys", "status", "--json", "--config", str(config)])
    assert json.loads(listed.output)["records"] == status["records"]
    with pytest.raises(StoreKeyMismatch, match="is not the key the store.s records were sealed with"):
        Store(store.dsn).use_keys(atrest.Keyring({"k2": os.urandom(32)}, "k2"))
