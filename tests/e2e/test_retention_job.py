"""The running gateway purges by itself: with a short term, delivered notifications lose their
personal data and payloads, and keep their state (what is never purged: test_retention.py)."""

from __future__ import annotations

from typing import Any

from tests.e2e.helpers import bericht_id, meldingen, wait_until


def test_the_daemon_purges_delivered_notifications_past_their_term(make_chain: Any) -> None:
    chain = make_chain(overrides={
        "retention": {"notifications": "1s", "interval_seconds": 0.5}})
    store = chain.daemon.rt.store
    ms = meldingen(3, seed=91)
    for m in ms:
        assert chain.ind.push(chain.ind_endpoint, m).accepted
    assert wait_until(lambda: all(chain.duo.count(bericht_id(m.melding_id)) == 1 for m in ms), 15)
    assert wait_until(lambda: store.query("SELECT COUNT(*) FROM messages WHERE purged_at IS NOT NULL")[0][0] == 3, 15)
    rows = store.query("SELECT person, ack, state FROM messages")
    assert [(r[0], r[1], r[2]) for r in rows] == [(None, None, "delivered")] * 3
    payloads = store.query("SELECT payload FROM outbox")
    assert all(bytes(p[0]) == b"" for p in payloads)
    raws = store.query("SELECT raw FROM inbound WHERE message_id IS NOT NULL")
    assert raws and all(bytes(r[0]) == b"" for r in raws)
