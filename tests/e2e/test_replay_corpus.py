"""The recorded sandbox corpus (tests/recordings/sandbox-2026, made by bench/make_corpus.py) replays clean.

A difference here means this build answers or forwards some recorded message differently than
the build that recorded it. If that is intended, run
``gateway replay tests/recordings/sandbox-2026 --update`` and commit the changed expectations.
"""

from __future__ import annotations

from pathlib import Path

from gateway.archive.format import read_archive
from gateway.archive.replay import replay

CORPUS = Path(__file__).resolve().parent.parent / "recordings" / "sandbox-2026"


def test_corpus_covers_every_route_and_kind() -> None:
    archive = read_archive(CORPUS)
    assert archive.manifest["exchanges"] >= 500 and archive.manifest["pseudonymized"]
    seen = {(e.kind, e.meta["partner"], e.meta["operation"]) for e in archive.entries}
    for kind in {("inbound", "ind", "OntvangMelding"), ("inbound", "ind", "HaalMeldingen"),
                 ("inbound", "duo", "VorderingOverdracht"), ("outbound", "duo", "InburgeraarMelding"),
                 ("outbound", "cjib", "Vordering"), ("outbound", "duo", "VorderingStatus"),
                 ("answer", "cjib", "Vordering"), ("feed", "cjib", "Statuswijziging")}:
        assert kind in seen
    outcomes = {(e.meta["partner"], e.meta.get("outcome"), e.meta.get("http_status")) for e in archive.entries}
    for expected in {("ind", "refused", 500), ("ind", "repeat", 200), ("duo", "refused", 400),
                     ("cjib", "permanent", 400), ("cjib", "retry", 503), ("duo", "retry", 503)}:
        assert expected in outcomes


def test_corpus_replays_without_differences() -> None:
    report = replay(read_archive(CORPUS))
    assert report.differences == [], "\n".join(c.diff for c in report.differences[:5])
    assert len(report.cases) > 300
