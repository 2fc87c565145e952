"""Replay checks inbound pushes in worker processes and hands IND's to the route's store part.

The reference is ``replay(..., workers=0)``: every inbound message through its whole endpoint in
the replaying process, checks on. Both must give the same report, message for message, for the
recorded corpus and for pushes that are accepted, repeated, reused for other content, tampered
with, signed too late, or refused for their content.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from gateway.archive.format import Archive, Entry, read_archive, write_archive
from gateway.archive.replay import Report, canonical, replay, update_archive

CORPUS = Path(__file__).resolve().parent.parent / "recordings" / "sandbox-2026"


def _cases(report: Report) -> list[tuple[Any, ...]]:
    # canonical: a fault answer's wsa:MessageID is new every time. "t": Store.accept stamps a
    # message without an inbound record (a feed change's) with the wall clock, not the replay's.
    return [(c.name, c.ok, c.first, c.diff, canonical(c.produced), {k: v for k, v in c.produced_meta.items() if k != "t"})
            for c in report.cases]


def test_the_corpus_replays_the_same_with_and_without_workers() -> None:
    corpus = read_archive(CORPUS)
    reference = replay(corpus, workers=0)
    assert reference.differences == []
    for workers in (1, 2):
        assert _cases(replay(corpus, workers=workers)) == _cases(reference)


def _push(m: Any, keys: Any, at: dt.datetime) -> bytes:
    from adapters.ind import codec
    from gateway.security import wsse
    from gateway.wire import soap

    env = soap.build_envelope(codec.encode_melding(m), to="https://gateway.example/ind/meldingen",
                              action=codec.ACTION_ONTVANG, message_id="urn:uuid:" + m.melding_id)
    return bytes(wsse.sign_envelope(env, keys.own["ind"], parts=wsse.REQUEST_PARTS, now=at))


@pytest.fixture(scope="module")
def pushes(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    """60 pushes (enough for the worker pool) and the awkward ones, expectations from the reference."""
    from adapters.ind.simulator import generate_meldingen
    from gateway.archive.pseudonym import SandboxKeys

    directory = tmp_path_factory.mktemp("pushes")
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    keys = SandboxKeys.make(directory / "pki", start - dt.timedelta(days=30))
    meldingen = list(generate_meldingen(60, 11, now=start))
    raws = [(m.melding_id, _push(m, keys, start + dt.timedelta(seconds=5 * i))) for i, m in enumerate(meldingen)]
    at = start + dt.timedelta(seconds=5 * len(raws))
    first = meldingen[-1]
    other = dataclasses.replace(first, persoon=dataclasses.replace(first.persoon, geslachtsnaam="Anders"))
    tampered = raws[1][1].replace(b"geslachtsnaam>", b"geslachtsnaam>X", 1)
    raws += [(first.melding_id, raws[-1][1]),  # repeat
             (first.melding_id, _push(other, keys, at)),  # the same meldingId, other content
             (meldingen[1].melding_id, tampered),
             (meldingen[2].melding_id, _push(meldingen[2], keys, at - dt.timedelta(hours=1))),  # expired
             (meldingen[3].melding_id, b"<not-xml")]
    entries = []
    for i, (key, raw) in enumerate(raws):
        when = start + dt.timedelta(seconds=5 * i)
        meta = {"seq": i + 1, "kind": "inbound", "route": "ind-duo", "partner": "ind", "operation": "OntvangMelding",
                "channel": "push", "message_key": key, "t": when.timestamp(), "at": when.isoformat(),
                "http_status": None, "outcome": None}
        entries.append(Entry(meta, raw))
    path = directory / "archive"
    write_archive(path, entries, {"created": start.isoformat()}, keys.pems)
    recorded = read_archive(path)
    update_archive(path, recorded, replay(recorded, workers=0))
    return read_archive(path)


def test_awkward_pushes_replay_the_same_with_and_without_workers(pushes: Archive) -> None:
    reference = replay(pushes, workers=0)
    assert reference.differences == []
    fates = [c.produced_meta.get("outcome") for c in reference.cases if "answer to ind" in c.name]
    faults = {c.produced_meta.get("fault_code") for c in reference.cases if "answer to ind" in c.name}
    assert (fates.count("accepted"), fates.count("repeat"), fates.count("refused")) == (60, 1, 4), fates[60:]
    assert {"DUPLICATE_DIFFERENT_CONTENT", "SIGNATURE", "EXPIRED", "MALFORMED"} <= faults, faults
    for workers in (None, 1):
        assert _cases(replay(pushes, workers=workers)) == _cases(reference)


@pytest.fixture(scope="module")
def switching(tmp_path_factory: pytest.TempPathFactory) -> tuple[Archive, Any]:
    """60 pushes whose rule set switches twice (start events of the history), then a repeat and a
    conflict. The workers assess each push with the rule set they foresee; the second switch (an
    event without a version: the configured rule set) they do not foresee."""
    from adapters.ind.simulator import generate_meldingen
    from gateway.archive.pseudonym import SandboxKeys
    from gateway.core.config import Config, RulesConfig
    from tests import rules_history as h

    directory = tmp_path_factory.mktemp("switching")
    config = Config(rules=RulesConfig(directory=str(h.rules_dir(directory)), active=h.FAULTY))
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    keys = SandboxKeys.make(directory / "pki", start - dt.timedelta(days=30))
    meldingen = list(generate_meldingen(60, 23, now=start))
    other = dataclasses.replace(meldingen[5], persoon=dataclasses.replace(meldingen[5].persoon, geslachtsnaam="Anders"))
    pushes = [*meldingen, meldingen[30], other]
    entries = []
    for i, m in enumerate(pushes):
        when = start + dt.timedelta(seconds=5 * i)
        meta = {"seq": i + 1, "kind": "inbound", "route": "ind-duo", "partner": "ind", "operation": "OntvangMelding",
                "channel": "push", "message_key": m.melding_id, "t": when.timestamp(), "at": when.isoformat(),
                "http_status": None, "outcome": None}
        entries.append(Entry(meta, _push(m, keys, when)))

    def switch(n: int, version: str) -> dict[str, Any]:
        t = start + dt.timedelta(seconds=5 * n - 1)
        return {"source": "start", "version": version, "t": t.timestamp(), "at": t.isoformat(), "corrections": None}

    history = [switch(0, h.FAULTY), switch(20, h.CURRENT), switch(40, "")]
    path = directory / "archive"
    write_archive(path, entries, {"created": start.isoformat(), "rule_set_history": history}, keys.pems)
    recorded = read_archive(path)
    update_archive(path, recorded, replay(recorded, config=config, workers=0))
    return read_archive(path), config


def test_a_rule_set_switch_replays_the_same_with_and_without_workers(switching: tuple[Archive, Any]) -> None:
    from tests import rules_history as h

    archive, config = switching
    reference = replay(archive, config=config, workers=0)
    assert reference.differences == []
    assessed = [c.produced.split(b"regelsetVersie>")[1].split(b"@")[0].decode()
                for c in reference.cases if c.name.startswith("duo InburgeraarMelding") and c.produced]
    assert assessed == [h.FAULTY] * 20 + [h.CURRENT] * 20 + [h.FAULTY] * 20
    fates = [c.produced_meta.get("outcome") for c in reference.cases if "answer to ind" in c.name]
    assert fates[60:] == ["repeat", "refused"], fates[60:]
    for workers in (None, 1, 2):
        assert _cases(replay(archive, config=config, workers=workers)) == _cases(reference)
