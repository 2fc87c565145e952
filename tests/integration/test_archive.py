"""Record and replay: export a sandbox run, replay it against this build, and break things on purpose."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway.archive.format import DamagedArchive, export, read_archive
from gateway.archive.replay import replay
from gateway.core.bsn import bsn_valid

KEY = b"test-key-for-the-archive-tests-0123456789"


def _wait(predicate: Any, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end and not predicate():
        time.sleep(0.1)
    assert predicate()


def _pending(store: Any) -> int:
    return int(store.query("SELECT COUNT(*) FROM outbox WHERE state = 'pending'")[0][0])


def _traffic(chain: Any) -> dict[str, Any]:
    """IND pushes (two GEWIJZIGD, a duplicate, a dropped one, a bad BSN) and DUO claims."""
    import httpx

    from adapters.duo.simulator import generate_vorderingen, post_vorderingoverdracht
    from adapters.ind.simulator import PushFaults, generate_meldingen
    from gateway.security import keys, tls

    meldingen = generate_meldingen(14, 7)
    meldingen[3] = dataclasses.replace(meldingen[3], soort_melding="GEWIJZIGD", correctie_van=None)
    meldingen[8] = dataclasses.replace(meldingen[8], soort_melding="GEWIJZIGD", correctie_van=None)
    chain.ind.push_all(chain.ind_endpoint, meldingen, PushFaults(drop={meldingen[5].volgnummer},
                                                                 duplicate={meldingen[2].volgnummer}))
    bad = dataclasses.replace(meldingen[-1], melding_id=str(uuid.uuid4()),
                              persoon=dataclasses.replace(meldingen[-1].persoon, bsn="123456789"))
    chain.ind.push_raw(chain.ind_endpoint, chain.ind.envelope(chain.ind_endpoint, bad))
    store = chain.daemon.rt.store
    _wait(lambda: int(store.query("SELECT COUNT(*) FROM ind_sequence")[0][0]) == len(meldingen))
    duo_key = keys.load_keypair(chain.pki["duo-key"], chain.pki["duo"])
    claims = generate_vorderingen(5, 3, dt.datetime.now(dt.UTC).date(), broken_every=4)
    with httpx.Client(verify=tls.client_context(duo_key, [str(chain.pki["ca"])]), timeout=30) as client:
        for v in claims:
            post_vorderingoverdracht(client, chain.duo_endpoint, v, duo_key)
    _wait(lambda: _pending(store) == 0)
    chain.cjib.advance(15 * 86400)
    _wait(lambda: int(store.query("SELECT COUNT(*) FROM messages WHERE route = 'cjib-duo'")[0][0]) > 0, 20)
    _wait(lambda: _pending(store) == 0)
    return {"meldingen": meldingen + [bad], "claims": claims}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, pki_paths: dict[str, Any]) -> dict[str, Any]:
    from gateway.core.store import Store
    from gateway.sandbox import start_chain

    base = tmp_path_factory.mktemp("recorded")
    chain = start_chain(base / "chain", pki_paths=pki_paths)
    try:
        sent = _traffic(chain)
    finally:
        chain.stop()
    store = Store(chain.config.store.dsn)
    (base / "key").write_bytes(KEY)
    export(chain.config, store, base / "plain")
    export(chain.config, store, base / "plain.tar")
    export(chain.config, store, base / "pseudo", key=KEY)
    store.close()
    return {"base": base, "config": chain.config, **sent}


def _copy(recorded: dict[str, Any], name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(recorded["base"] / name, target)
    return target


def test_unchanged_build_replays_without_differences(recorded: dict[str, Any]) -> None:
    archive = read_archive(recorded["base"] / "plain")
    kinds = archive.manifest["counts"]
    assert {"inbound", "outbound", "answer", "feed"} <= set(kinds)
    report = replay(archive)
    assert report.differences == [], [c.diff for c in report.differences]
    assert len(report.cases) >= kinds["outbound"]
    assert replay(read_archive(recorded["base"] / "plain.tar")).differences == []


def test_a_mapping_change_shows_exactly_the_affected_messages(recorded: dict[str, Any], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.cli import app
    from gateway.mapping import ind_to_duo

    path = _copy(recorded, "plain", tmp_path)
    monkeypatch.setitem(ind_to_duo.SOORT_MELDING, "GEWIJZIGD", "BEEINDIGING")
    report = replay(read_archive(path))
    changed = {ind_to_duo.bericht_id_for(m.melding_id) for m in recorded["meldingen"]
               if m.soort_melding == "GEWIJZIGD"}
    assert {c.name.split()[-1] for c in report.differences} == changed
    for case in report.differences:
        assert re.search(r"^-\s*<duo:soortMelding>WIJZIGING</duo:soortMelding>$", case.diff, re.M)
        assert re.search(r"^\+\s*<duo:soortMelding>BEEINDIGING</duo:soortMelding>$", case.diff, re.M)
    runner = CliRunner()
    junit = tmp_path / "junit.xml"
    result = runner.invoke(app, ["replay", str(path), "--junit", str(junit)])
    assert result.exit_code == 1 and "BEEINDIGING" in result.stdout
    assert junit.read_text().count("<failure") == len(changed)
    assert runner.invoke(app, ["replay", str(path), "--update"]).exit_code == 0
    assert runner.invoke(app, ["replay", str(path)]).exit_code == 0
    monkeypatch.undo()
    assert len(replay(read_archive(path)).differences) == len(changed)


def _originals(recorded: dict[str, Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"digits": set(), "names": set()}
    for m in recorded["meldingen"]:
        p = m.persoon
        out["digits"] |= {x for x in (p.bsn, p.v_nummer) if x}
        out["names"] |= {p.geslachtsnaam, *(p.voornamen or "").split()}
    for v in recorded["claims"]:
        d = v.debiteur
        out["digits"] |= {x for x in (d.bsn, d.v_nummer) if x}
        out["names"] |= {d.geslachtsnaam, *(d.voornamen or "").split(), d.adres.straat}
    out["names"].discard("")
    return out


def test_pseudonymized_archive_holds_no_personal_data(recorded: dict[str, Any]) -> None:
    root = recorded["base"] / "pseudo"
    blobs = [p.read_bytes() for p in root.rglob("*") if p.is_file()]
    originals = _originals(recorded)
    for blob in blobs:
        for digits in originals["digits"]:
            assert not re.search(rb"(?<!\d)" + digits.encode() + rb"(?!\d)", blob)
        for name in originals["names"]:
            # As a word: base64 (signatures, certificates) may hold any short letter run by chance.
            assert not re.search(rb"(?<![A-Za-z0-9+/])" + re.escape(name.encode()) + rb"(?![A-Za-z0-9+/])", blob)


def test_pseudonyms_are_consistent_and_valid(recorded: dict[str, Any]) -> None:
    from gateway.mapping.ind_to_duo import bericht_id_for

    archive = read_archive(recorded["base"] / "pseudo")
    inbound_bsn, outbound_bsn = {}, {}
    for e in archive.entries:
        text = (e.payload or b"").decode("utf-8", "replace")
        bsn = re.search(r"<(?:\w+:)?bsn>(\d{9})<", text)
        melding = re.search(r"<(?:\w+:)?meldingId>([0-9a-f-]{36})<", text)
        if e.kind == "inbound" and e.meta["partner"] == "ind" and bsn and melding:
            inbound_bsn[bericht_id_for(melding.group(1))] = bsn.group(1)
        if e.kind == "outbound" and e.meta["operation"] == "InburgeraarMelding" and bsn:
            outbound_bsn[e.meta["message_key"]] = bsn.group(1)
    assert outbound_bsn and all(inbound_bsn[k] == v for k, v in outbound_bsn.items())
    assert all(bsn_valid(b) for b in outbound_bsn.values())


def test_pseudonymized_replay_is_as_clean_as_the_original(recorded: dict[str, Any]) -> None:
    plain = replay(read_archive(recorded["base"] / "plain"))
    pseudo = replay(read_archive(recorded["base"] / "pseudo"))
    assert pseudo.differences == [] and len(pseudo.cases) == len(plain.cases)


def _damage_missing(path: Path) -> tuple[int, str]:
    row = json.loads((path / "index.jsonl").read_text().splitlines()[4])
    (path / row["payload"]).unlink()
    return row["seq"], row["payload"]


def _damage_truncated(path: Path) -> tuple[int, str]:
    lines = (path / "index.jsonl").read_text().splitlines()
    seq = json.loads(lines[-1])["seq"]
    lines[-1] = lines[-1][: len(lines[-1]) // 2]
    data = ("\n".join(lines) + "\n").encode()
    (path / "index.jsonl").write_bytes(data)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["index_sha256"] = hashlib.sha256(data).hexdigest()
    (path / "manifest.json").write_text(json.dumps(manifest))
    return seq, "index.jsonl"


def _damage_digest(path: Path) -> tuple[int, str]:
    row = json.loads((path / "index.jsonl").read_text().splitlines()[7])
    target = path / row["payload"]
    target.write_bytes(target.read_bytes().replace(b"<", b" <", 1))
    return row["seq"], row["payload"]


@pytest.mark.parametrize("damage", [_damage_missing, _damage_truncated, _damage_digest])
def test_a_damaged_archive_is_refused_naming_the_entry(recorded: dict[str, Any], tmp_path: Path, damage: Any) -> None:
    from gateway.cli import app

    path = _copy(recorded, "plain", tmp_path)
    seq, name = damage(path)
    with pytest.raises(DamagedArchive) as caught:
        read_archive(path)
    assert f"seq {seq}" in str(caught.value) and name in str(caught.value)
    result = CliRunner().invoke(app, ["replay", str(path)])
    assert result.exit_code == 2
