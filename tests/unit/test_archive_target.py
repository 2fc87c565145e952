"""Writing an archive never removes a file the gateway did not write (unit: the file system only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.archive import format as fmt
from gateway.archive.format import Entry, TargetRefused, read_archive, write_archive


def _entries(text: bytes = b"<a/>") -> list[Entry]:
    return [Entry({"seq": 1, "kind": "inbound", "route": "ind-duo", "partner": "ind", "operation": "OntvangMelding",
                   "t": 1.0, "at": "1970-01-01T00:00:01+00:00"}, text)]


def test_an_archive_is_replaced_only_when_asked_and_whole(tmp_path: Path) -> None:
    target = tmp_path / "a"
    write_archive(target, _entries(), {}, {"x-0.pem": b"pem"})
    with pytest.raises(TargetRefused, match="--force"):
        write_archive(target, _entries(b"<b/>"), {}, {})
    write_archive(target, _entries(b"<b/>"), {}, {}, replace=True)
    assert read_archive(target).entries[0].payload == b"<b/>" and not (target / "certs" / "x-0.pem").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # nothing left beside it


def test_a_file_that_appears_in_the_old_archive_during_the_export_is_kept(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a"
    write_archive(target, _entries(), {}, {})
    swap = fmt._swap_in

    def late_file(new: Path, target: Path, old: Path) -> None:  # someone writes a note after the check
        (target / "notes.txt").write_text("mine")
        swap(new, target, old)

    monkeypatch.setattr(fmt, "_swap_in", late_file)
    write_archive(target, _entries(b"<b/>"), {}, {}, replace=True)
    kept = list(tmp_path.glob(".a.*.partial/old/notes.txt"))
    assert [p.read_text() for p in kept] == ["mine"]
    assert read_archive(target).entries[0].payload == b"<b/>"
    assert {p.name for p in kept[0].parent.iterdir()} == {"notes.txt"}  # the old archive's own files are gone


def test_a_directory_with_anything_else_is_never_written(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "sub" / "notes.txt").write_text("mine")
    for replace in (False, True):
        with pytest.raises(TargetRefused, match="not empty and not a gateway archive"):
            write_archive(docs, _entries(), {}, {}, replace=replace)
    assert (docs / "sub" / "notes.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    write_archive(empty, _entries(), {}, {})
    assert read_archive(empty).entries
