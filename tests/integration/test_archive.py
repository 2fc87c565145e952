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
from collections import Counter
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
    store = chain.daemon.rt.store
    # The daemon's first IND reconciliation runs at its start. Pushing before it has finished lets
    # it fetch a notification whose push is in flight: two intakes of one meldingId at once, whose
    # winner (the commit order) the archive's time order need not show, so the recording would not
    # replay deterministically. This test is about replay, not that race: wait for it.
    _wait(lambda: store.get_kv("ind.laatste_volgnummer") is not None)
    chain.ind.push_all(chain.ind_endpoint, meldingen, PushFaults(drop={meldingen[5].volgnummer},
                                                                 duplicate={meldingen[2].volgnummer}))
    bad = dataclasses.replace(meldingen[-1], melding_id=str(uuid.uuid4()),
                              persoon=dataclasses.replace(meldingen[-1].persoon, bsn="123456789"))
    chain.ind.push_raw(chain.ind_endpoint, chain.ind.envelope(chain.ind_endpoint, bad))
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
    from gateway.runtime import store_for
    from gateway.sandbox import start_chain

    base = tmp_path_factory.mktemp("recorded")
    # The gap catch-up fetches from the dropped notification on: a grace longer than the pushes take
    # keeps it from fetching one whose push is still in flight (the same race as above).
    chain = start_chain(base / "chain", pki_paths=pki_paths, overrides={"ind": {"gap_grace_seconds": 5.0}})
    try:
        sent = _traffic(chain)
    finally:
        chain.stop()
    store = store_for(chain.config)
    (base / "key").write_bytes(KEY)
    export(chain.config, store, base / "plain", personal_data=True)
    export(chain.config, store, base / "plain.tar", personal_data=True)
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


def test_every_answer_is_exported_also_those_stored_once(recorded: dict[str, Any]) -> None:
    # An accepted message's answer is kept once, as the message's ack (its inbound row has no
    # copy): the export must still carry it with the inbound entry, as it carries a repeat's.
    archive = read_archive(recorded["base"] / "plain")
    inbound = [e for e in archive.entries if e.kind == "inbound"]
    by_outcome = Counter(e.meta["outcome"] for e in inbound)
    assert by_outcome["accepted"] >= 10 and by_outcome["repeat"] >= 1
    for e in inbound:
        if e.meta["outcome"] in ("accepted", "repeat"):
            assert e.response, e.meta
    ind = [e for e in inbound if e.meta["route"] == "ind-duo" and e.meta["outcome"] in ("accepted", "repeat")]
    assert ind and all(b"OntvangMeldingResponse" in (e.response or b"") for e in ind)


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
    rows = [json.loads(line) for line in (path / "index.jsonl").read_text().splitlines()]
    # Payloads are stored by content: damage one that a single entry uses (a repeated push with
    # the same bytes shares its file with the first, which the reader would then name).
    uses = Counter(r.get("payload") for r in rows)
    row = next(r for r in rows[7:] if r.get("payload") and uses[r["payload"]] == 1)
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


# ---------------------------------------------------------------- export never destroys

def _cli_config(recorded: dict[str, Any], tmp_path: Path, allowed: str = "alice") -> Path:
    source = recorded["base"] / "chain" / "gateway.toml"
    target = tmp_path / "gateway.toml"
    target.write_text(source.read_text() + f'\n[operators]\npersonal_data = ["{allowed}"]\n')
    return target


def _export(args: list[str], config: Path, operator: str = "bob") -> Any:
    from gateway.cli import app

    return CliRunner().invoke(app, ["export", *args, "--config", str(config)], env={"GATEWAY_OPERATOR": operator})


def test_export_never_removes_what_it_did_not_write(recorded: dict[str, Any], tmp_path: Path) -> None:
    from gateway.archive.format import TargetRefused

    config = _cli_config(recorded, tmp_path)
    # A directory that is not an archive: refused, untouched (also with --force).
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.txt").write_text("mine")
    for extra in ([], ["--force"]):
        result = _export([str(docs), *extra], config)
        assert result.exit_code == 2 and "not empty and not a gateway archive" in result.output
        assert (docs / "notes.txt").read_text() == "mine" and sorted(p.name for p in docs.iterdir()) == ["notes.txt"]
    # A new directory, then the same again: an archive is replaced only with --force.
    fresh = tmp_path / "fresh"
    assert _export([str(fresh)], config).exit_code == 0
    first = json.loads((fresh / "manifest.json").read_text())
    again = _export([str(fresh)], config)
    assert again.exit_code == 2 and "--force" in again.output
    assert json.loads((fresh / "manifest.json").read_text()) == first
    assert _export([str(fresh), "--force"], config).exit_code == 0
    assert read_archive(fresh).manifest["exchanges"] == first["exchanges"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # nothing left beside it
    # An archive someone put a file into: that file is not the archive's, so it is never removed.
    (fresh / "notes.txt").write_text("mine")
    result = _export([str(fresh), "--force"], config)
    assert result.exit_code == 2 and "notes.txt" in result.output and (fresh / "notes.txt").read_text() == "mine"
    # A .tar name that is some other file: refused, untouched; an archive tar needs --force.
    other = tmp_path / "other.tar"
    other.write_bytes(b"not a tar")
    assert _export([str(other), "--force"], config).exit_code == 2 and other.read_bytes() == b"not a tar"
    tar = tmp_path / "a.tar"
    assert _export([str(tar)], config).exit_code == 0
    assert _export([str(tar)], config).exit_code == 2
    assert _export([str(tar), "--force"], config).exit_code == 0 and read_archive(tar).entries
    # The library refuses the same way, before collecting anything.
    with pytest.raises(TargetRefused):
        export(recorded["config"], None, docs, key=KEY)


def test_export_is_pseudonymized_unless_personal_data_is_asked_for_and_allowed(recorded: dict[str, Any],
                                                                                 tmp_path: Path) -> None:
    from gateway.core import audit
    from gateway.runtime import store_for

    config = _cli_config(recorded, tmp_path, allowed="alice")
    default = tmp_path / "default"
    assert _export([str(default)], config).exit_code == 0
    assert read_archive(default).manifest["pseudonymized"] is True
    originals = _originals(recorded)["digits"]
    assert not any(d.encode() in p.read_bytes() for p in default.rglob("*") if p.is_file() for d in originals)

    # The README's command. The same key gives the same pseudonyms in every export: CJIB's claim
    # bodies (JSON, whose signature is not archived) come out byte for byte the same.
    def claims(target: Path) -> list[bytes]:
        return [e.payload or b"" for e in read_archive(target).entries
                if e.kind == "outbound" and e.meta["partner"] == "cjib"]

    keyed = [tmp_path / "keyed-1", tmp_path / "keyed-2"]
    for target in keyed:
        assert _export([str(target), "--since", "2020-01-01", "--pseudonymize", "--key-file",
                        str(recorded["base"] / "key")], config).exit_code == 0
    assert claims(keyed[0]) and claims(keyed[0]) == claims(keyed[1]) != claims(default)

    clear = tmp_path / "clear"
    refused = _export([str(clear), "--with-personal-data", "--reason", "ticket 7"], config, operator="bob")
    assert refused.exit_code == 2 and "may not export personal data" in refused.output and not clear.exists()
    no_reason = _export([str(clear), "--with-personal-data"], config, operator="alice")
    assert no_reason.exit_code == 2 and "--reason" in no_reason.output and not clear.exists()
    mixed = _export([str(clear), "--with-personal-data", "--pseudonymize", "--reason", "x"], config, operator="alice")
    assert mixed.exit_code == 2 and not clear.exists()
    allowed = _export([str(clear), "--with-personal-data", "--reason", "ticket 7"], config, operator="alice")
    assert allowed.exit_code == 0 and "WITH PERSONAL DATA" in " ".join(allowed.output.split())
    assert read_archive(clear).manifest["pseudonymized"] is False
    store = store_for(recorded["config"])
    try:
        seen = [(e.actor, e.outcome, e.reason, e.target) for e in audit.entries(store, action="export-personal-data")]
    finally:
        store.close()
    assert seen == [("alice", "ok", "ticket 7", str(clear.resolve())), ("bob", "refused", "ticket 7", str(clear.resolve()))]
    with pytest.raises(ValueError, match="personal data"):
        export(recorded["config"], None, tmp_path / "lib")
