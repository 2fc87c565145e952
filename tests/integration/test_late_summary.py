"""The alerts job's late count (``rollout.late_summary``), counted by the database on both
backends, agrees with the row-by-row report (``rollout.delays``)."""

from __future__ import annotations

from typing import Any

from gateway.core.store import InboundRecord
from gateway.rules import rollout


def _accept(store: Any, key: str, at: float, days: int | None) -> None:
    facts: dict[str, Any] = {"meldingId": key, "volgnummer": 1}
    if days is not None:
        facts["vertragingDagen"] = days
    store.accept(route="ind-duo", kind="VergunningMelding", message_key=key, content_digest=key,
                 inbound=InboundRecord(partner="ind", operation="OntvangMelding", raw=b"<x/>", received_at=at,
                                       message_key=key),
                 ack=b"<ack/>", facts=facts, person={"bsn": "000000012"}, deliveries=[])


def test_late_summary_counts_what_the_report_lists(store: Any) -> None:
    for i, (at, days) in enumerate([(1000.0, 0), (1001.0, 3), (1002.0, 12), (1003.0, 40), (500.0, 99),
                                    (1004.0, None), (1005.0, 1)]):
        _accept(store, f"m-{i}", at, days)
    assert rollout.late_summary(store, since=1000.0, more_than_days=0) == (4, 40)
    assert rollout.late_summary(store, since=1000.0, more_than_days=5) == (2, 40)
    assert rollout.late_summary(store, since=1000.0, more_than_days=40) == (0, 0)
    assert rollout.late_summary(store, since=0.0, more_than_days=50) == (1, 99)
    report = rollout.delays(store, since=1000.0)
    late = [r["vertragingDagen"] for r in report.rows if r["vertragingDagen"] > 5]
    assert (len(late), max(late)) == rollout.late_summary(store, since=1000.0, more_than_days=5)


def test_late_summary_of_an_empty_store(store: Any) -> None:
    assert rollout.late_summary(store, since=0.0, more_than_days=0) == (0, 0)
