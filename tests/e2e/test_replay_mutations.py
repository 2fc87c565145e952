"""The mutation suite: replay must catch every kind of change to a recorded archive.

It takes the recorded corpus (tests/recordings/sandbox-2026), applies one mutation at a time
(a payload byte changed, in a message taken in or in one sent; a partner's answer changed; an
answer moved before the notification it answers; an exchange dropped or duplicated; a message's
clock moved past its signer's certificate) and asserts that replay reports a difference naming the affected message, with
the first difference in words. The unmutated archive replays clean (tests/e2e/test_replay_corpus.py
asserts that too; here it is the control of the same run).
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner

from gateway.archive.format import Archive, Entry, read_archive, write_archive
from gateway.archive.replay import Report, replay
from gateway.mapping.ind_to_duo import bericht_id_for

CORPUS = Path(__file__).resolve().parent.parent / "recordings" / "sandbox-2026"


@pytest.fixture(scope="module")
def corpus() -> Archive:
    return read_archive(CORPUS)


def _renumber(entries: list[Entry]) -> list[Entry]:
    for seq, e in enumerate(entries, 1):
        e.meta["seq"] = seq
    return entries


def _copy(archive: Archive) -> list[Entry]:
    return [copy.deepcopy(e) for e in sorted(archive.entries, key=lambda e: e.seq)]


def _push(entries: list[Entry]) -> tuple[int, Entry]:
    """An IND push that was accepted and whose DUO message was delivered at the first attempt."""
    answers = {e.meta["message_key"]: e for e in entries if e.kind == "answer" and e.meta["partner"] == "duo"}
    for i, e in enumerate(entries):
        m = e.meta
        if (e.kind == "inbound" and m["partner"] == "ind" and m.get("channel") == "push"
                and m.get("outcome") == "accepted"):
            answer = answers.get(bericht_id_for(m["message_key"]))
            if answer is not None and answer.meta["outcome"] == "success" and answer.meta["attempt"] == 1:
                return i, e
    raise AssertionError("no accepted push with a delivered DUO message in the corpus")


def _duo_answer(entries: list[Entry], push: Entry) -> tuple[int, Entry]:
    key = bericht_id_for(push.meta["message_key"])
    return next((i, e) for i, e in enumerate(entries) if e.kind == "answer" and e.meta["message_key"] == key)


# ---------------------------------------------------------------- the mutations: (entries) -> expected name part

def payload_byte(entries: list[Entry]) -> tuple[str, str]:
    _, push = _push(entries)
    raw = push.payload or b""
    body = raw.index(b"geslachtsnaam>") + len(b"geslachtsnaam>")
    push.payload = raw[:body] + bytes([raw[body] ^ 0x20]) + raw[body + 1:]  # one letter's case
    return push.meta["message_key"], "outcome: recorded accepted, replayed refused SIGNATURE"


def expectation_byte(entries: list[Entry]) -> tuple[str, str]:
    _, push = _push(entries)
    key = bericht_id_for(push.meta["message_key"])
    sent = next(e for e in entries if e.kind == "outbound" and e.meta["message_key"] == key)
    raw = sent.payload or b""
    at = raw.index(b"soortMelding>") + len(b"soortMelding>")
    sent.payload = raw[:at] + bytes([raw[at] ^ 0x20]) + raw[at + 1:]
    return key, "the message's content differs"


def partner_answer(entries: list[Entry]) -> tuple[str, str]:
    _, push = _push(entries)
    _, answer = _duo_answer(entries, push)
    answer.meta.update(http_status=400, outcome="permanent")  # DUO now refuses it for good
    answer.payload = (answer.payload or b"").replace(b"ONTVANGEN", b"AFGEWEZEN")
    return answer.meta["message_key"], "final state: recorded delivered, replayed dead"


def reorder(entries: list[Entry]) -> tuple[str, str]:
    at, push = _push(entries)
    i, answer = _duo_answer(entries, push)
    entries.pop(i)
    answer.meta["t"] = push.meta["t"] - 1  # DUO's answer, before the notification it answers
    entries.insert(at, answer)
    return answer.meta["message_key"], "event 1: recorded attempt 1: success (HTTP 200), replayed answer to attempt 1"


def drop_inbound(entries: list[Entry]) -> tuple[str, str]:
    at, push = _push(entries)
    entries.pop(at)
    return bericht_id_for(push.meta["message_key"]), "recorded, but not produced"


def drop_answer(entries: list[Entry]) -> tuple[str, str]:
    _, push = _push(entries)
    i, answer = _duo_answer(entries, push)
    entries.pop(i)
    return answer.meta["message_key"], "final state: recorded delivered, replayed pending"


def drop_outbound(entries: list[Entry]) -> tuple[str, str]:
    _, push = _push(entries)
    key = bericht_id_for(push.meta["message_key"])
    entries[:] = [e for e in entries if not (e.kind == "outbound" and e.meta["message_key"] == key)]
    return key, "produced, but not recorded"


def drop_feed(entries: list[Entry]) -> tuple[str, str]:
    # A change that may have queued nothing by itself (an echo of CJIB's acceptance): the gap in the
    # feed's sequence shows it.
    feed = [i for i, e in enumerate(entries) if e.kind == "feed"]
    entries.pop(feed[1])
    follower = entries[feed[2] - 1]
    return str(follower.meta["message_key"]), "feed sequence: volgnummer 3 follows 1"


def duplicate_inbound(entries: list[Entry]) -> tuple[str, str]:
    at, push = _push(entries)
    entries.insert(at + 1, copy.deepcopy(push))
    return push.meta["message_key"], "outcome: recorded accepted, replayed repeat"


def duplicate_answer(entries: list[Entry]) -> tuple[str, str]:
    _, push = _push(entries)
    i, answer = _duo_answer(entries, push)
    entries.insert(i + 1, copy.deepcopy(answer))
    return answer.meta["message_key"], "event 3: recorded attempt 1: success (HTTP 200), replayed answer to attempt 1"


def duplicate_outbound(entries: list[Entry]) -> tuple[str, str]:
    _, push = _push(entries)
    key = bericht_id_for(push.meta["message_key"])
    i = next(i for i, e in enumerate(entries) if e.kind == "outbound" and e.meta["message_key"] == key)
    entries.insert(i + 1, copy.deepcopy(entries[i]))
    return key, "event 2: recorded queued, replayed attempt 1"


def duplicate_feed(entries: list[Entry]) -> tuple[str, str]:
    i = next(i for i, e in enumerate(entries) if e.kind == "feed")
    entries.insert(i + 1, copy.deepcopy(entries[i]))
    return str(entries[i].meta["message_key"]), "feed change: recorded taken in, replayed repeat"


def clock_past_certificate(entries: list[Entry], archive: Archive) -> tuple[str, str]:
    at, push = _push(entries)
    cert = x509.load_pem_x509_certificate(archive.certs["ind-0.pem"])
    push.meta["t"] = (cert.not_valid_after_utc + dt.timedelta(days=1)).timestamp()
    return push.meta["message_key"], "outcome: recorded accepted, replayed refused CERTIFICATE"


MUTATIONS: list[Callable[..., tuple[str, str]]] = [
    payload_byte, expectation_byte, partner_answer, reorder, drop_inbound, drop_answer, drop_outbound, drop_feed,
    duplicate_inbound, duplicate_answer, duplicate_outbound, duplicate_feed, clock_past_certificate]


def _mutated(corpus: Archive, mutation: Callable[..., tuple[str, str]]) -> tuple[Archive, str, str]:
    entries = _copy(corpus)
    args = (entries, corpus) if mutation is clock_past_certificate else (entries,)
    key, first = mutation(*args)
    return Archive(manifest=corpus.manifest, entries=_renumber(entries), certs=corpus.certs), key, first


def _named(report: Report, key: str) -> list[str]:
    return [f"{c.name}: {c.first}" for c in report.differences if key in c.name]


def test_the_unmutated_corpus_replays_clean(corpus: Archive) -> None:
    report = replay(corpus)
    assert report.differences == [] and len(report.cases) > 300


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.__name__ for m in MUTATIONS])
def test_replay_catches_the_mutation(corpus: Archive, mutation: Callable[..., tuple[str, str]]) -> None:
    archive, key, first = _mutated(corpus, mutation)
    report = replay(archive)
    named = _named(report, key)
    assert named, f"{mutation.__name__}: no difference names {key}: {[c.name for c in report.differences]}"
    assert any(first in line for line in named), named


def test_the_cli_exits_1_naming_the_message_and_the_first_difference(corpus: Archive, tmp_path: Path) -> None:
    from gateway.cli import app

    archive, key, first = _mutated(corpus, partner_answer)
    write_archive(tmp_path / "mutated", archive.entries, dict(archive.manifest), archive.certs)
    result = CliRunner().invoke(app, ["replay", str(tmp_path / "mutated"), "--junit", str(tmp_path / "j.xml")])
    assert result.exit_code == 1
    assert any(line.startswith("DIFFERENT") and key in line and first in line for line in result.stdout.splitlines())
    assert first in (tmp_path / "j.xml").read_text()
