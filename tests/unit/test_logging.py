"""The log pipeline: JSON lines with sorted keys to standard error and the file, personal keys
masked, the level honoured, and a stream that fails never failing the caller."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.core import observability


@pytest.fixture
def log_path(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "gateway.log"
    observability.configure_logging("info", None)  # let go of the file


def _events(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_each_line_to_both_streams_sorted_and_masked(log_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    observability.configure_logging("info", str(log_path))
    log = observability.get_logger()
    log.info("inbound", partner="ind", message_id="m-1", bsn="123456782")
    log.warning("late_notification", vertraging_dagen=3)
    in_file = log_path.read_text()
    assert in_file == capsys.readouterr().err  # the same lines on standard error
    first, second = _events(in_file)
    assert list(first) == sorted(first)
    assert first["event"] == "inbound" and first["level"] == "info" and first["bsn"] == "[masked]"
    assert str(first["timestamp"]).endswith("Z")
    assert second["level"] == "warning" and second["vertraging_dagen"] == 3


def test_the_level_drops_what_is_below_it(log_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    observability.configure_logging("warning", str(log_path), stderr=False)
    log = observability.get_logger()
    log.info("chatter")
    log.error("store_unavailable", cause="OperationalError")
    assert [e["event"] for e in _events(log_path.read_text())] == ["store_unavailable"]
    assert capsys.readouterr().err == ""


def test_a_stream_that_cannot_be_written_does_not_fail_the_caller() -> None:
    gone, kept = io.StringIO(), io.StringIO()
    gone.close()  # e.g. a closed pipe on standard error: the file still gets the line
    observability._Lines([gone, kept]).msg('{"event": "inbound"}')
    assert kept.getvalue() == '{"event": "inbound"}\n'
