"""IND catch-up, end to end: pushes IND dropped come in through HaalMeldingen.

- A gap in volgnummer (a dropped push) is fetched once it is older than the grace period, not before.
- A reconciliation (IND's laatsteVolgnummer) takes in the last notifications when their pushes were
  dropped (no gap is visible then).
- A fetched notification goes through the same checks as a pushed one: a bad one in the feed is
  refused, recorded in the delivery log and counted, and never delivered.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from adapters.ind.simulator import PushFaults
from gateway.ops import health
from tests.e2e.helpers import bericht_id, cli, meldingen, wait_until
from tests.pki_fixtures import ack_body


def _ind(grace: float, reconcile: float) -> dict[str, Any]:
    return {"ind": {"gap_grace_seconds": grace, "reconcile_interval_seconds": reconcile}}


def _ready(chain: Any) -> None:
    """The reconcile job runs once at start; let it see an empty feed before IND issues anything."""
    store = chain.daemon.rt.store
    assert wait_until(lambda: store.get_kv("ind.laatste_volgnummer") is not None, 10)


def _channel(store: Any, melding_id: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in store.query(
        "SELECT channel, outcome FROM inbound WHERE message_key = :k ORDER BY id", {"k": melding_id})]


def test_dropped_push_is_fetched_after_the_grace_period(make_chain: Any) -> None:
    grace = 1.5
    chain = make_chain(overrides=_ind(grace, 3600.0))
    _ready(chain)
    store = chain.daemon.rt.store
    ms = meldingen(6, seed=31)
    results = chain.ind.push_all(chain.ind_endpoint, ms, PushFaults(drop={3}))
    assert [r.volgnummer for r in results] == [1, 2, 4, 5, 6] and all(r.accepted for r in results)
    assert chain.ind.dropped == [3]
    dropped = ms[2]
    assert wait_until(lambda: chain.duo.count(bericht_id(dropped.melding_id)) == 1, grace + 10)
    assert all(chain.duo.count(bericht_id(m.melding_id)) == 1 for m in ms)
    assert chain.duo.accepted() == 6
    assert ("feed", "accepted") in _channel(store, dropped.melding_id)
    assert _channel(store, ms[3].melding_id)[0] == ("push", "accepted")
    # Not fetched before the gap was as old as the grace period (seen when volgnummer 4 arrived).
    seen_4 = float(store.query("SELECT seen_at FROM ind_sequence WHERE volgnummer = 4")[0][0])
    taken_3 = float(store.query("SELECT received_at FROM messages WHERE message_key = :k",
                                {"k": dropped.melding_id})[0][0])
    assert grace - 0.05 <= taken_3 - seen_4 <= grace + 8
    assert wait_until(lambda: health.evaluate(chain.daemon.rt)["checks"]["ind_sequence"]["open_gaps"] == 0, 5)


def test_reconciliation_takes_in_the_last_notifications_when_their_pushes_were_dropped(make_chain: Any) -> None:
    chain = make_chain(overrides=_ind(3600.0, 1.0))  # the gap check would wait an hour: only reconcile helps
    _ready(chain)
    store = chain.daemon.rt.store
    ms = meldingen(6, seed=32)
    results = chain.ind.push_all(chain.ind_endpoint, ms, PushFaults(drop={5, 6}))
    assert [r.volgnummer for r in results] == [1, 2, 3, 4] and all(r.accepted for r in results)
    assert wait_until(lambda: all(chain.duo.count(bericht_id(m.melding_id)) == 1 for m in ms), 15)
    assert chain.duo.accepted() == 6
    for m in ms[4:]:
        assert _channel(store, m.melding_id) == [("feed", "accepted")]
    check = health.evaluate(chain.daemon.rt)["checks"]["ind_sequence"]
    assert check["highest_seen"] == 6 and check["behind_ind"] == 0 and check["open_gaps"] == 0


def test_a_bad_notification_in_the_feed_is_refused_and_logged(make_chain: Any) -> None:
    chain = make_chain(overrides=_ind(1.0, 3600.0))
    _ready(chain)
    rt = chain.daemon.rt
    ms = meldingen(5, seed=33)
    bad = dataclasses.replace(ms[2], persoon=dataclasses.replace(ms[2].persoon, bsn="123456789"))  # fails the 11-test
    ms[2] = bad
    results = chain.ind.push_all(chain.ind_endpoint, ms, PushFaults(drop={3}))
    assert all(r.accepted for r in results) and len(results) == 4

    def refused() -> list[tuple[Any, ...]]:
        return [r for r in rt.store.query(
            "SELECT channel, outcome, fault_code, operation, raw FROM inbound WHERE outcome = 'refused'")
            if bad.melding_id.encode() in rt.store.unseal("inbound.raw", r[4])]

    assert wait_until(lambda: refused(), 15)
    channel, outcome, code, operation, _ = refused()[0]
    assert (channel, outcome, code, operation) == ("feed", "refused", "BUSINESS_RULE", "HaalMeldingen")
    # The good ones around it are delivered; the bad one never is, nor is it stored as a message.
    good = [m for m in ms if m is not bad]
    assert wait_until(lambda: all(chain.duo.count(bericht_id(m.melding_id)) == 1 for m in good), 10)
    assert chain.duo.count(bericht_id(bad.melding_id)) == 0 and chain.duo.accepted() == 4
    assert not rt.store.query("SELECT id FROM messages WHERE message_key = :k", {"k": bad.melding_id})
    # Counted, and visible to operators in the delivery log.
    counted = rt.metrics.inbound.labels("ind", "HaalMeldingen", "refused", "BUSINESS_RULE")._value.get()
    assert counted >= 1
    code_, out = cli(["log", "--refused", "--partner", "ind", "--json", "--config", str(chain.config_file)])
    assert code_ == 0, out
    rows = [r for r in json.loads(out) if r["state"] == "refused"]
    assert any(r["facts"]["fault_code"] == "BUSINESS_RULE" and r["facts"]["channel"] == "feed" for r in rows)
    # The hole stays visible: the sequence check names the missing number.
    assert health.evaluate(rt)["checks"]["ind_sequence"]["first_missing"] == [3]


def test_duplicated_push_is_answered_with_the_same_acknowledgement_and_delivered_once(make_chain: Any) -> None:
    chain = make_chain()
    _ready(chain)
    ms = meldingen(3, seed=34)
    results = chain.ind.push_all(chain.ind_endpoint, ms, PushFaults(duplicate={2}))
    assert [r.volgnummer for r in results] == [1, 2, 2, 3] and all(r.accepted for r in results)
    # Revision 2: the same Body, signed afresh for this request.
    assert ack_body(results[1].acknowledgement) == ack_body(results[2].acknowledgement)
    assert wait_until(lambda: all(chain.duo.count(bericht_id(m.melding_id)) == 1 for m in ms), 10)
    assert chain.duo.accepted() == 3
    store = chain.daemon.rt.store
    assert _channel(store, ms[1].melding_id) == [("push", "accepted"), ("push", "repeat")]
    assert int(store.query("SELECT COUNT(*) FROM outbox")[0][0]) == 3
