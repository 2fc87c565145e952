"""The console's queries on both backends, on rows written directly: the backlog/deliveries series
of the dashboard, search paging by cursor, the person lookup filled at intake, and masking of raw
bytes."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from gateway.console import api
from gateway.core.store import NewDelivery, person_digest
from gateway.ops import views

HOUR = 3600.0


def _row(store: Any, key: str, created: float, delivered: float | None, state: str) -> None:
    with store.tx() as t:
        t.execute("INSERT INTO messages (route, kind, message_key, content_digest, received_at, state, facts, "
                  "updated_at) VALUES ('ind-duo', 'm', :k, 'd', :c, :s, '{}', :c)", {"k": key, "c": created, "s": state})
        mid = int(t.one("SELECT id FROM messages WHERE message_key = :k", {"k": key})[0])
        t.execute("INSERT INTO outbox (message_id, partner, operation, idempotency_key, payload, state, created_at, "
                  "next_attempt_at, delivered_at) VALUES (:m, 'duo', 'InburgeraarMelding', :k, :p, :s, :c, :c, :d)",
                  {"m": mid, "k": key, "p": b"", "s": state, "c": created, "d": delivered})


def test_backlog_and_deliveries_per_bucket(store: Any) -> None:
    start = 1_000_000.0
    _row(store, "old-waiting", start - 10 * HOUR, None, "pending")  # waiting all along
    _row(store, "old-done-in-1", start - 5 * HOUR, start + 1.5 * HOUR, "delivered")
    _row(store, "old-done-before", start - 5 * HOUR, start - 1 * HOUR, "delivered")  # never counted
    _row(store, "new-in-0-done-in-2", start + 0.5 * HOUR, start + 2.5 * HOUR, "delivered")
    _row(store, "new-in-1-dead", start + 1.2 * HOUR, None, "dead")
    _row(store, "old-resolved", start - 3 * HOUR, None, "resolved")  # resolved: never backlog
    rt = SimpleNamespace(store=store)
    waiting_now = store.query("SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'dead')")[0][0]
    series = api._series(rt, start, int(HOUR), 4, int(waiting_now))  # type: ignore[arg-type]
    assert [p["delivered"] for p in series] == [0, 1, 1, 0]
    # end of hour 0: old-waiting, old-done-in-1, new-in-0 = 3; hour 1: -old-done-in-1 +dead = 3;
    # hour 2: -new-in-0 = 2; hour 3: 2
    assert [p["backlog"] for p in series] == [3, 3, 2, 2]


def test_search_pages_by_cursor_and_finds_people_by_keyed_hash(store: Any) -> None:
    store.lookup_key = b"k" * 32
    for i in range(7):
        result = store.accept(route="ind-duo", kind="m", message_key=f"M-{i}", content_digest="d", inbound=None,
                              ack=None, facts={}, person={"bsn": f"11122233{i}", "vNummer": f"000000000{i}"},
                              deliveries=[NewDelivery("duo", "InburgeraarMelding", f"B-{i}", b"<x/>")])
        assert result.kind == "accepted"
    with store.tx() as t:  # two messages at the same moment: the cursor must not lose either
        t.execute("UPDATE messages SET received_at = 5.0 WHERE message_key IN ('M-2', 'M-3')")
    seen, after = [], None
    while True:
        page = views.search(store, views.Search(limit=2, after=after))
        seen += [m["key"] for m in page["messages"]]
        if page["next"] is None:
            break
        at, _, ident = page["next"].partition(":")
        after = (float(at), int(ident))
    assert sorted(seen) == [f"M-{i}" for i in range(7)] and len(seen) == 7
    found = views.search(store, views.Search(person_digest=person_digest(store.lookup_key, "bsn", "111222334")))
    assert [m["key"] for m in found["messages"]] == ["M-4"]
    assert found["messages"][0]["person"]["bsn"] == "*******34"
    assert [m["key"] for m in views.search(store, views.Search(ref="B-5"))["messages"]] == ["M-5"]
    stored = {r[0] for r in store.query("SELECT digest FROM person_lookup")}
    assert len(stored) == 14 and not any("1112223" in d for d in stored)


def test_raw_bytes_are_masked_by_whole_values() -> None:
    person = {"bsn": "123456782", "vNummer": "1234567890", "naam": "Jan de Vries", "geboortedatum": "1990-01-02"}
    raw = (b"<m><bsn>123456782</bsn><v>1234567890</v><vn>Jan</vn><vv>de</vv><gn>Vries</gn><gd>1990-01-02</gd>"
           b"<code>decode</code></m>")
    masked = views.mask_raw(raw, person)
    assert masked == ("<m><bsn>*******82</bsn><v>*******890</v><vn>J.</vn><vv>d.</vv><gn>V.</gn><gd>1990-**-**</gd>"
                      "<code>decode</code></m>")
    as_json = views.mask_raw(json.dumps({"bsn": "123456782", "achternaam": "Vries"}).encode(), person)
    assert "123456782" not in as_json and "Vries" not in as_json
    # By name, whatever the value: a claim's debtor with an address (XML to us, JSON to CJIB).
    claim = (b'<d:debiteur xmlns:d="urn:x"><d:bsn>999999990</d:bsn><d:adres><d:straat>Lange Voorhout</d:straat>'
             b'<d:postcode>2514EA</d:postcode></d:adres><d:voornamen>Anna Maria</d:voornamen></d:debiteur>')
    assert views.mask_raw(claim, None) == (
        '<d:debiteur xmlns:d="urn:x"><d:bsn>*******90</d:bsn><d:adres><d:straat>***</d:straat>'
        '<d:postcode>***</d:postcode></d:adres><d:voornamen>A. M.</d:voornamen></d:debiteur>')
    body = json.dumps({"adres": {"huisnummer": 9, "postcode": "2514EA"}, "geboortedatum": "1990-01-02",
                       "naam": {"geslachtsnaam": "Vries"}}).encode()
    assert json.loads(views.mask_raw(body, None)) == {"adres": {"huisnummer": "***", "postcode": "***"},
                                                       "geboortedatum": "1990-**-**", "naam": {"geslachtsnaam": "V."}}


def test_check_config_judges_the_console_files(tmp_path: Any) -> None:
    from gateway.core.config import Config
    from gateway.ops import checks

    def findings(**console: Any) -> list[tuple[str, str]]:
        cfg = Config.model_validate({"tls": {"enabled": True}, "console": console})
        return [(f.level, f.message) for f in checks.console_findings(cfg)]

    assert findings() == [("warning", "console.lookup_key_file is empty: search by BSN or V-number is off")]
    short = tmp_path / "short.key"
    short.write_text("too short")
    assert findings(lookup_key_file=str(short)) == [
        ("error", f"{short}: the lookup key must be at least 32 bytes")]
    good = tmp_path / "good.key"
    good.write_text("k" * 64)
    assert findings(lookup_key_file=str(good)) == []
    assert findings(lookup_key_file=str(good), client_ca_files=[str(short)])[0][0] == "error"
    assert findings(lookup_key_file=str(tmp_path / "missing"))[0][1].endswith("cannot read it (No such file or directory)")
