"""CjibSender / CjibFeedReader against CjibSimulator, under uvicorn on loopback with mutual TLS."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from adapters.cjib import codec
from adapters.cjib.client import CjibFeedReader, CjibSender
from adapters.cjib.simulator import CjibSimulator, Faults
from gateway.core.adapter import Delivery, Outcome
from gateway.core.clock import AMS, FixedClock
from gateway.core.errors import PermanentDelivery, TransientDelivery
from gateway.core.models import CjibStatuswijziging
from gateway.mapping.cjib_to_duo import from_refusal
from gateway.mapping.duo_to_cjib import encode_body
from gateway.security import jws, pki, tls
from gateway.security.keys import KeyPair, PartnerTrust, load_keypair, load_trust
from gateway.wire.server import RunningServer, serve_in_thread
from tests.paths import SAMPLES

SAMPLE = SAMPLES / "cjib-vordering.json"
DAY = 86400


@dataclass
class Pki:
    dir: Path
    gateway: KeyPair
    cjib: KeyPair
    ind: KeyPair
    impostor: KeyPair
    cjib_trust: PartnerTrust
    gateway_trust: PartnerTrust


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    pki.init(d)
    pki.issue(d, "cjib-impostor", common_name="cjib")  # same CA, not pinned for CJIB

    def pair(name: str) -> KeyPair:
        return load_keypair(d / f"{name}-key.pem", d / f"{name}.pem")

    return Pki(d, pair("gateway"), pair("cjib"), pair("ind"), pair("cjib-impostor"),
               load_trust("cjib", [d / "ca.pem"], [d / "cjib.pem"]),
               load_trust("gateway", [d / "ca.pem"], [d / "gateway.pem"]))


@dataclass
class Rig:
    sim: CjibSimulator
    server: RunningServer
    clock: FixedClock
    sender: CjibSender
    reader: CjibFeedReader
    keys: Pki

    def client_context(self, who: KeyPair):
        return tls.client_context(who, [str(self.keys.dir / "ca.pem")])


def start(keys: Pki, *, sim_key: KeyPair | None = None, client: KeyPair | None = None,
          faults: Faults | None = None) -> Rig:
    clock = FixedClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    sim = CjibSimulator(sim_key or keys.cjib, keys.gateway_trust, clock, faults=faults,
                        dwangbevel_after_days=14, settle_after_days=42)
    server_ctx = tls.server_context(keys.cjib, [str(keys.dir / "ca.pem")])
    server = serve_in_thread(sim, ssl_context=server_ctx)
    own = client or keys.gateway
    ctx = tls.client_context(own, [str(keys.dir / "ca.pem")])
    sender = CjibSender(server.url, own, keys.cjib_trust, ctx, 10.0, clock)
    reader = CjibFeedReader(server.url, own, keys.cjib_trust, ctx, 10.0, clock)
    return Rig(sim, server, clock, sender, reader, keys)


@pytest.fixture
def rig(keys: Pki) -> Iterator[Rig]:
    r = start(keys)
    yield r
    stop(r)


def stop(r: Rig) -> None:
    r.sender.close()
    r.reader.close()
    r.server.stop()


def claim(clock: FixedClock, **changes: object) -> dict:
    """The sample claim with a fresh reference and dates that pass CJIB's rules today."""
    d = json.loads(SAMPLE.read_text(encoding="utf-8"))
    today = clock.now().astimezone(AMS).date()
    d["opdrachtgeverReferentie"] = str(uuid.uuid4())
    d["vervaldatum"] = (today - dt.timedelta(days=60)).isoformat()
    d["aanmaningsdatum"] = (today - dt.timedelta(days=30)).isoformat()
    for path, value in changes.items():
        target = d
        *parents, leaf = path.split("__")
        for p in parents:
            target = target[p]
        target[leaf] = value
    return d


def delivery(d: dict, key: str | None = None, attempt: int = 1) -> Delivery:
    return Delivery(id=1, partner="cjib", operation="Vordering", idempotency_key=key or d["opdrachtgeverReferentie"],
                    payload=encode_body(d), attempt=attempt)


# ---------------------------------------------------------------- POST /v1/vorderingen


def test_accepted_with_zaaknummer(rig: Rig) -> None:
    d = claim(rig.clock)
    o = rig.sender.send(delivery(d))
    assert o.kind == "success" and o.http_status == 201
    assert o.reference and o.receipt is not None and codec.decode_ontvangst(o.receipt).zaaknummer == o.reference
    assert o.reference.startswith(f"CJIB-{rig.clock.now().astimezone(AMS).year}-")
    assert rig.sim.accepted_count(d["opdrachtgeverReferentie"]) == 1


def test_repeat_gives_the_same_answer_and_one_case(rig: Rig) -> None:
    d = claim(rig.clock)
    first = rig.sender.send(delivery(d))
    again = rig.sender.send(delivery(d, attempt=2))
    assert first.kind == again.kind == "success"
    assert again.receipt == first.receipt and again.reference == first.reference
    assert rig.sim.accepted_count(d["opdrachtgeverReferentie"]) == 1


def test_same_key_other_body_is_permanent_with_alarm(rig: Rig) -> None:
    d = claim(rig.clock)
    assert rig.sender.send(delivery(d)).kind == "success"
    other = dict(d, bedrag={"valuta": "EUR", "centen": 1})
    o = rig.sender.send(delivery(other, key=d["opdrachtgeverReferentie"]))
    assert (o.kind, o.http_status, o.extra) == ("permanent", 422, {"alarm": "IDEMPOTENCY_CONFLICT"})
    assert rig.sim.accepted_count(d["opdrachtgeverReferentie"]) == 1


def _days_ago(rig: Rig, n: int) -> str:
    return (rig.clock.now().astimezone(AMS).date() - dt.timedelta(days=n)).isoformat()


@pytest.mark.parametrize(("rule", "changes"), [
    ("BSN_ELFPROEF", {"debiteur__bsn": "123456789"}),
    ("VERVALDATUM_NIET_VERSTREKEN", {"vervaldatum": 0, "aanmaningsdatum": 0}),
    ("AANMANING_VOOR_VERVALDATUM", {"vervaldatum": 30, "aanmaningsdatum": 40}),
    ("AANMANING_TE_RECENT", {"aanmaningsdatum": 13}),
])
def test_business_rules_refuse_permanently_with_errors(rig: Rig, rule: str, changes: dict) -> None:
    resolved = {k: (_days_ago(rig, v) if isinstance(v, int) else v) for k, v in changes.items()}
    d = claim(rig.clock, **resolved)
    o = rig.sender.send(delivery(d))
    assert (o.kind, o.http_status, o.extra["refused"]) == ("permanent", 400, True)
    assert rule in [e["code"] for e in _errors(o)]
    assert rig.sim.accepted_count(d["opdrachtgeverReferentie"]) == 0
    status = from_refusal(d["opdrachtgeverReferentie"], _errors(o), "2026-11-28T23:00:00+01:00")
    assert status.status == "AFGEWEZEN_DOOR_CJIB" and rule in [f.code for f in status.fouten]


def _errors(o: Outcome) -> list[dict[str, str]]:
    """CJIB's errors from a 400 refusal, as the sender keeps them in ``extra``."""
    errors = o.extra["errors"]
    assert isinstance(errors, list)
    return errors


def test_aanmaning_exactly_14_days_before_is_accepted(rig: Rig) -> None:
    d = claim(rig.clock, aanmaningsdatum=_days_ago(rig, 14))
    assert rig.sender.send(delivery(d)).kind == "success"


def test_schema_invalid_body_is_refused(rig: Rig) -> None:
    d = claim(rig.clock)
    del d["grondslag"]
    o = rig.sender.send(delivery(d))
    assert (o.kind, o.http_status) == ("permanent", 400)
    assert _errors(o)[0]["code"] == "SCHEMA"


def test_429_burst_is_retried_after_retry_after(rig: Rig) -> None:
    rig.sim.set_faults(Faults(burst_429_length=2, retry_after_seconds=7))
    d = claim(rig.clock)
    outcomes = [rig.sender.send(delivery(d, attempt=n)) for n in (1, 2, 3)]
    assert [(o.kind, o.http_status, o.retry_after_seconds) for o in outcomes[:2]] == [("retry", 429, 7.0)] * 2
    assert outcomes[2].kind == "success"
    assert rig.sim.accepted_count(d["opdrachtgeverReferentie"]) == 1


def test_downtime_window_gives_503_until_it_ends(rig: Rig) -> None:
    now = rig.clock.now()
    rig.sim.set_faults(Faults(downtime=((now - dt.timedelta(seconds=5), now + dt.timedelta(seconds=30)),)))
    d = claim(rig.clock)
    o = rig.sender.send(delivery(d))
    assert (o.kind, o.http_status, o.retry_after_seconds) == ("retry", 503, 30.0)
    with pytest.raises(TransientDelivery) as info:
        rig.reader.fetch(None, 10)
    assert info.value.http_status == 503 and info.value.retry_after_seconds == 30.0
    rig.clock.advance(31)
    assert rig.sender.send(delivery(d, attempt=2)).kind == "success"


def test_random_503s_are_retried(rig: Rig) -> None:
    rig.sim.set_faults(Faults(error_rate=1.0, retry_after_seconds=3))
    o = rig.sender.send(delivery(claim(rig.clock)))
    assert (o.kind, o.http_status, o.retry_after_seconds) == ("retry", 503, 3.0)


def test_in_flight_key_gets_409_and_one_case(rig: Rig) -> None:
    rig.sim.set_faults(Faults(processing_seconds=2.0))
    d = claim(rig.clock)
    results: dict[str, Outcome] = {}
    first = threading.Thread(target=lambda: results.setdefault("first", rig.sender.send(delivery(d))))
    first.start()
    deadline = time.monotonic() + 5
    while rig.sim.in_flight() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rig.sim.in_flight() == 1
    other = sender_for(rig, rig.keys.gateway)  # a second connection, as a second worker would have
    try:
        second = other.send(delivery(d, attempt=2))
    finally:
        other.close()
    first.join(10)
    assert (second.kind, second.http_status) == ("retry", 409)
    assert second.retry_after_seconds and second.retry_after_seconds > 0
    assert results["first"].kind == "success"
    assert rig.sim.accepted_count(d["opdrachtgeverReferentie"]) == 1


def sender_for(rig: Rig, who: KeyPair, trust: PartnerTrust | None = None) -> CjibSender:
    return CjibSender(rig.server.url, who, trust or rig.keys.cjib_trust, rig.client_context(who), 10.0, rig.clock)


def test_connection_reset_is_retried(rig: Rig) -> None:
    rig.sim.set_faults(Faults(reset_rate=1.0))
    d = claim(rig.clock)
    o = rig.sender.send(delivery(d))
    assert o.kind == "retry" and o.http_status is None
    assert rig.sim.reset_count() == 1 and rig.sim.accepted_count(d["opdrachtgeverReferentie"]) == 0


def test_lost_answer_then_repeat_accepts_exactly_once(rig: Rig) -> None:
    rig.sim.set_faults(Faults(lost_answer_rate=1.0))
    d = claim(rig.clock)
    lost = rig.sender.send(delivery(d))
    assert lost.kind == "retry" and lost.http_status is None
    assert rig.sim.accepted_count(d["opdrachtgeverReferentie"]) == 1  # CJIB did take it
    rig.sim.set_faults(Faults())
    again = rig.sender.send(delivery(d, attempt=2))
    assert again.kind == "success"
    assert rig.sim.accepted_count(d["opdrachtgeverReferentie"]) == 1


def test_unknown_client_certificate_is_refused_permanently(rig: Rig) -> None:
    stranger = sender_for(rig, rig.keys.ind)  # same CA, but not the gateway's pinned certificate
    try:
        o = stranger.send(delivery(claim(rig.clock)))
    finally:
        stranger.close()
    assert (o.kind, o.http_status) == ("permanent", 401)


@pytest.mark.parametrize("tamper", ["htu", "htm", "iat", "body", "missing"])
def test_request_signature_is_checked(rig: Rig, tamper: str) -> None:
    body = encode_body(claim(rig.clock))
    now = rig.clock.now()
    sig = {
        "htu": lambda: jws.sign_detached(body, rig.keys.gateway, now=now, htm="POST", htu="/v1/other"),
        "htm": lambda: jws.sign_detached(body, rig.keys.gateway, now=now, htm="PUT", htu="/v1/vorderingen"),
        "iat": lambda: jws.sign_detached(body, rig.keys.gateway, now=now - dt.timedelta(seconds=600),
                                         htm="POST", htu="/v1/vorderingen"),
        "body": lambda: jws.sign_detached(body + b" ", rig.keys.gateway, now=now, htm="POST",
                                          htu="/v1/vorderingen"),
        "missing": lambda: None,
    }[tamper]()
    headers = {"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())}
    if sig:
        headers["X-JWS-Signature"] = sig
    with httpx.Client(verify=rig.client_context(rig.keys.gateway)) as http:
        r = http.post(rig.server.url + "/v1/vorderingen", content=body, headers=headers)
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    jws.verify_detached(r.headers["x-jws-signature"], r.content, rig.keys.cjib_trust, now=rig.clock.now())


def test_bad_response_signature_is_never_success(keys: Pki) -> None:
    r = start(keys, sim_key=keys.impostor)  # TLS is still CJIB's; the JWS key is not pinned
    try:
        d = claim(r.clock)
        o = r.sender.send(delivery(d))
        assert (o.kind, o.http_status) == ("retry", 201)
        assert "signature" in o.detail and o.reference is None
        with pytest.raises(TransientDelivery):
            r.reader.fetch(None, 10)
    finally:
        stop(r)


# ---------------------------------------------------------------- GET /v1/vorderingen/{zaaknummer}


def test_get_zaak(rig: Rig) -> None:
    d = claim(rig.clock)
    zaaknummer = rig.sender.send(delivery(d)).reference
    with httpx.Client(verify=rig.client_context(rig.keys.gateway)) as http:
        found = http.get(f"{rig.server.url}/v1/vorderingen/{zaaknummer}")
        missing = http.get(f"{rig.server.url}/v1/vorderingen/CJIB-2000-999999")
    assert found.status_code == 200 and missing.status_code == 404
    zaak = json.loads(found.content)
    codec.validate("Zaak", zaak)
    assert (zaak["status"], zaak["openstaandCenten"]) == ("IN_BEHANDELING", 34000)
    jws.verify_detached(found.headers["x-jws-signature"], found.content, rig.keys.cjib_trust, now=rig.clock.now())


# ---------------------------------------------------------------- the status feed


def read_all(
    reader: CjibFeedReader, cursor: str | None, limit: int,
) -> tuple[list[CjibStatuswijziging], str | None, int]:
    entries: list[CjibStatuswijziging] = []
    pages = 0
    while True:
        page = reader.fetch(cursor, limit)
        pages += 1
        entries.extend(page.wijzigingen)
        cursor = page.volgende_cursor
        if not page.meer:
            return entries, cursor, pages


def test_feed_paging_cursor_and_status_moves(rig: Rig) -> None:
    refs = []
    for _ in range(3):
        d = claim(rig.clock)
        refs.append(d["opdrachtgeverReferentie"])
        assert rig.sender.send(delivery(d)).kind == "success"
    first = rig.reader.fetch(None, 2)
    assert [w.status for w in first.wijzigingen] == ["IN_BEHANDELING"] * 2 and first.meer
    second = rig.reader.fetch(first.volgende_cursor, 2)
    assert len(second.wijzigingen) == 1 and not second.meer
    idle = rig.reader.fetch(second.volgende_cursor, 2)
    assert idle.wijzigingen == () and idle.volgende_cursor == second.volgende_cursor and not idle.meer

    rig.sim.advance(15 * DAY)
    moved, cursor, _ = read_all(rig.reader, idle.volgende_cursor, 2)
    assert [w.status for w in moved] == ["DWANGBEVEL_UITGEVAARDIGD"] * 3
    rig.sim.advance(30 * DAY)
    settled, cursor, _ = read_all(rig.reader, cursor, 100)
    assert {w.status for w in settled} <= {"VOLDAAN", "GEDEELTELIJK_BETAALD"} and len(settled) == 3
    assert {w.opdrachtgever_referentie for w in settled} == set(refs)
    for w in settled:
        assert w.openstaand_centen == (0 if w.status == "VOLDAAN" else 17000)

    numbers = [w.volgnummer for w in (*first.wijzigingen, *second.wijzigingen, *moved, *settled)]
    assert numbers == sorted(set(numbers)) == list(range(1, 10))


def test_feed_serves_duplicates_when_asked(rig: Rig) -> None:
    for _ in range(4):
        assert rig.sender.send(delivery(claim(rig.clock))).kind == "success"
    rig.sim.set_faults(Faults(duplicate_feed_rate=1.0))
    entries, _, _ = read_all(rig.reader, None, 2)
    numbers = [w.volgnummer for w in entries]
    assert len(numbers) > len(set(numbers)) and sorted(set(numbers)) == [1, 2, 3, 4]


def test_feed_refuses_an_unknown_cursor(rig: Rig) -> None:
    with pytest.raises(PermanentDelivery) as info:
        rig.reader.fetch("not-a-cursor", 10)
    assert info.value.http_status == 400


def test_feed_429_is_transient_with_retry_after(rig: Rig) -> None:
    rig.sim.set_faults(Faults(burst_429_length=1, retry_after_seconds=9))
    with pytest.raises(TransientDelivery) as info:
        rig.reader.fetch(None, 10)
    assert (info.value.http_status, info.value.retry_after_seconds) == (429, 9.0)
    assert rig.reader.fetch(None, 10).wijzigingen == ()
