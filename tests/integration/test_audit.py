"""The audit log on both backends: operator actions land there in the same transaction, entries come
back newest first and filtered, and the module offers no way to change an entry."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.core import audit


def _message_with_dead_delivery(store: Any) -> int:
    with store.tx() as t:
        t.execute("INSERT INTO messages (route, kind, message_key, content_digest, received_at, state, facts, "
                  "updated_at) VALUES ('ind-duo', 'melding', 'M-1', 'd', 1, 'dead', '{}', 1)")
        message_id = int(t.one("SELECT id FROM messages WHERE message_key = 'M-1'")[0])
        t.execute("INSERT INTO outbox (message_id, partner, operation, idempotency_key, payload, state, "
                  "created_at, next_attempt_at) VALUES (:m, 'duo', 'melding', 'k-1', :p, 'dead', 1, 1)",
                  {"m": message_id, "p": b"<x/>"})
        return int(t.one("SELECT id FROM outbox WHERE idempotency_key = 'k-1'")[0])


def test_actions_and_accesses_are_recorded_newest_first(store: Any) -> None:
    outbox_id = _message_with_dead_delivery(store)
    audit.record(store, actor="alice", action="show-personal-data", target="message:1", reason="ticket 1", at=10)
    audit.record(store, actor="mallory", action="show-personal-data", target="log", outcome="refused", at=20)
    assert store.operator_resolve([outbox_id], "bob", "duplicate of M-0") == 1

    every = audit.entries(store)
    assert [(e.actor, e.action, e.outcome) for e in every] == [
        ("bob", "resolve", "ok"), ("mallory", "show-personal-data", "refused"),
        ("alice", "show-personal-data", "ok")]
    assert every[0].target == f"outbox:{outbox_id}" and every[0].reason == "duplicate of M-0"
    assert every[2].at == "1970-01-01T00:00:10+00:00"
    assert [e.actor for e in audit.entries(store, action="show-personal-data", since=15)] == ["mallory"]
    assert [e.action for e in audit.entries(store, actor="alice")] == ["show-personal-data"]
    assert len(audit.entries(store, limit=1)) == 1


def test_the_audit_log_is_append_only(store: Any) -> None:
    """The module offers no way to change an entry, and the database refuses a change from anyone."""
    from gateway.core.errors import StoreError

    assert set(audit.__all__) == {"Entry", "record", "entries", "ACTIONS"}
    audit.record(store, actor="alice", action="show-personal-data", target="message:1", reason="ticket 1", at=10)
    with pytest.raises(StoreError, match="append-only"):
        with store.tx() as t:
            t.execute("UPDATE audit_log SET actor = 'mallory'")
    assert [(e.actor, e.reason) for e in audit.entries(store)] == [("alice", "ticket 1")]
    with store.tx() as t:  # retention removes entries past their term
        t.execute("DELETE FROM audit_log WHERE at < 20")
    assert audit.entries(store) == []
