"""Retention on both backends: a purge with a short term removes the payloads and personal fields
of final messages (from the SQLite file itself, and from a pg_dump), keeps the facts so the delay
report is unchanged, never touches a message still waiting or under hold, can be run again, and
is counted by --dry-run; `gateway db backup` copies a live SQLite store."""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

import tests.rules_history as h
from adapters.testpeople import random_bsn
from gateway.cli import app
from gateway.core import audit
from gateway.core.config import RetentionConfig, sqlite_file
from gateway.core.models import IndMelding, IndPersoon, IndVerblijf
from gateway.core.store import InboundRecord, Store
from gateway.ops import retention
from gateway.rules import rollout

BASE = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)


def _melding(n: int, late_days: int = 0) -> IndMelding:
    rng = random.Random(1000 + n)
    created = BASE + dt.timedelta(minutes=n)
    return IndMelding(
        melding_id=f"00000000-0000-4000-8000-{n:012d}", volgnummer=n, soort_melding="VERLEEND",
        aangemaakt_op=created.isoformat(),
        persoon=IndPersoon(v_nummer=f"{rng.randrange(10**9, 10**10)}", geslachtsnaam=f"Qwxyzname{n:03d}",
                           geboortedatum=(dt.date(1970, 1, 1) + dt.timedelta(days=400 * n)).isoformat(),
                           geslacht="V", nationaliteiten=("COL",), bsn=random_bsn(rng), voornamen="Rania"),
        verblijf=IndVerblijf(documentnummer=f"NL{n:07d}", documentsoort="VERBLIJFSVERGUNNING_REGULIER_BEPAALDE_TIJD",
                             verblijfsdoel="GEZINSHERENIGING", wettelijke_grondslag="VW2000_ART8_A",
                             unierechtelijke_grondslag=None, datum_besluit=created.date() - dt.timedelta(days=2 + late_days),
                             ingangsdatum=dt.date(2025, 3, 1)))


def _personal(m: IndMelding) -> list[str]:
    p = m.persoon
    return [p.bsn or "", p.v_nummer, p.geslachtsnaam, p.geboortedatum]


def _world(tmp_path: Path, store: Store) -> tuple[list[IndMelding], Any]:
    key = tmp_path / "lookup.key"
    key.write_text("k" * 40)
    cfg = h.write_config(tmp_path, store.dsn, active=h.CURRENT, console={"lookup_key_file": str(key)})
    rt = h.runtime(cfg, store)
    ms = [_melding(n, late_days=(n % 3) * 10) for n in range(1, 9)]
    h.intake(rt, ms)
    # All delivered but the last (still waiting); number 7 is under an operator's hold.
    now = time.time() - 3600
    with store.tx() as t:
        for m in ms[:-1]:
            row = t.one("SELECT id FROM messages WHERE message_key = :k", {"k": m.melding_id})
            assert row is not None, m.volgnummer
            mid = int(row[0])
            t.execute("UPDATE outbox SET state = 'delivered', delivered_at = :now, receipt = :r WHERE message_id = :m",
                      {"now": now, "r": b"<receipt/>", "m": mid})
            t.refresh_message_state(mid, now)
    held = int(store.query("SELECT id FROM messages WHERE message_key = :k", {"k": ms[6].melding_id})[0][0])
    assert retention.hold(store, held, "objection under review")
    store.log_inbound(InboundRecord(partner="ind", operation="OntvangMelding", raw=b"<refused>Qwxyzrefused</refused>",
                                    received_at=time.time() - 7200, channel="push", message_key=None), "refused",
                      fault_code="SCHEMA")
    audit.record(store, actor="alice", action="show-personal-data", reason="old", at=time.time() - 7200)
    return ms, rt


def _dump(store: Store) -> bytes:
    path = sqlite_file(store.dsn)
    if path is not None:
        return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
    pg_dump = shutil.which("pg_dump")
    assert pg_dump, "pg_dump is missing (postgresql-client)"
    return subprocess.run([pg_dump, "--data-only", store.dsn], capture_output=True, check=True, timeout=120).stdout


def test_purge_removes_personal_data_keeps_facts_and_spares_waiting_and_held(tmp_path: Path, store: Store) -> None:
    ms, rt = _world(tmp_path, store)
    before = rollout.delays(store)
    assert len({r[0] for r in store.query("SELECT DISTINCT message_id FROM person_lookup")}) == 8
    assert all(v.encode() in _dump(store) for m in ms for v in _personal(m))
    terms = RetentionConfig(notifications="30m", refused="30m", delivery_log="30m", audit="30m")

    due = retention.due(store, terms)
    assert due == {"notifications": 6, "refused": 1, "delivery_log": 0, "audit": 1}
    done = retention.purge(store, terms, batch=4)  # in batches, as a long purge runs
    assert done["notifications"] == 6 and done["refused"] == 1 and done["audit"] == 1
    assert done["delivery_log"] >= 1  # the refused message's emptied entry, now past its term too

    dump = _dump(store)
    purged, kept = ms[:6], ms[6:]
    for m in purged:
        assert not [v for v in _personal(m) if v.encode() in dump], m.volgnummer
    for m in kept:  # under hold, and still waiting: untouched
        assert all(v.encode() in dump for v in _personal(m)), m.volgnummer
    assert b"Qwxyzrefused" not in dump
    after = rollout.delays(store)
    assert (after.total_days, after.buckets(), len(after.rows)) == (before.total_days, before.buckets(),
                                                                    len(before.rows))
    assert [r["vertragingDagen"] for r in after.rows] == [r["vertragingDagen"] for r in before.rows]
    purged_ids = [r[0] for r in store.query("SELECT id FROM messages WHERE purged_at IS NOT NULL")]
    assert len(purged_ids) == 6
    looked_up = {r[0] for r in store.query("SELECT DISTINCT message_id FROM person_lookup")}
    assert not looked_up & set(purged_ids) and len(looked_up) == 2  # the held and the waiting one
    states = dict(store.query("SELECT message_key, state FROM messages"))
    assert {states[m.melding_id] for m in purged} == {"delivered"}
    assert audit.entries(store) == []
    # Run again: nothing left to do (a purge stopped half-way simply goes on from here).
    assert retention.purge(store, terms) == {"notifications": 0, "refused": 0, "delivery_log": 0, "audit": 0}
    assert retention.due(store, terms) == {"notifications": 0, "refused": 0, "delivery_log": 0, "audit": 0}


def test_cli_purge_hold_and_backup(tmp_path: Path) -> None:
    # SQLite: `db backup` is SQLite's (PostgreSQL's is pg_dump; the next test); purge and hold are
    # the functions tested on both backends above.
    store = Store(f"sqlite:///{tmp_path / 'gateway.db'}")
    store.migrate()
    ms, _ = _world(tmp_path, store)
    cfg = h.write_config(tmp_path, store.dsn, active=h.CURRENT, retention={"notifications": "30m"})
    runner = CliRunner()
    dry = runner.invoke(app, ["purge", "--dry-run", "--json", "--config", str(cfg)])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout) == {"dry_run": True, "due": {"notifications": 6}}

    released = runner.invoke(app, ["hold", ms[6].melding_id, "--release", "--json", "--config", str(cfg)])
    assert released.exit_code == 0, released.output
    no_reason = runner.invoke(app, ["hold", ms[5].melding_id, "--config", str(cfg)])
    assert no_reason.exit_code == 2 and "--reason" in no_reason.output
    held = runner.invoke(app, ["hold", ms[5].melding_id, "--reason", "court case 12", "--config", str(cfg)])
    assert held.exit_code == 0, held.output
    assert [(e.action, e.reason) for e in audit.entries(store, actor=None)][:2] == [
        ("hold", "court case 12"), ("release", None)]

    backup = tmp_path / "backup.db"
    copied = runner.invoke(app, ["db", "backup", str(backup), "--json", "--config", str(cfg)])
    assert copied.exit_code == 0, copied.output
    with sqlite3.connect(backup) as b:
        assert b.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 8
    again = runner.invoke(app, ["db", "backup", str(backup), "--config", str(cfg)])
    assert again.exit_code == 2 and "never overwrites" in again.output

    done = runner.invoke(app, ["purge", "--json", "--config", str(cfg)])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["purged"] == {"notifications": 6}  # 7 released, 6 now held
    person = dict(store.query("SELECT message_key, person FROM messages"))
    assert person[ms[5].melding_id] is not None and person[ms[6].melding_id] is None
    store.close()


def test_backup_of_a_postgresql_store_points_to_pg_dump(tmp_path: Path) -> None:
    cfg = h.write_config(tmp_path, "postgresql://nobody@127.0.0.1:1/none", active=h.CURRENT)
    result = CliRunner().invoke(app, ["db", "backup", str(tmp_path / "b.db"), "--config", str(cfg)])
    assert result.exit_code == 2 and "pg_dump" in result.output
