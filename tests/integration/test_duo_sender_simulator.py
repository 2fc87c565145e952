"""DuoSender against DuoSimulator, under uvicorn on loopback with mutual TLS and signatures both ways."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from lxml import etree

from adapters.duo import codec
from adapters.duo.client import DuoSender
from adapters.duo.errors import classify, retry_after_seconds
from adapters.duo.simulator import (
    Answer,
    DuoSimulator,
    Faults,
    generate_vorderingen,
    post_vorderingoverdracht,
)
from gateway.core.adapter import Delivery
from gateway.core.clock import SystemClock
from gateway.security import pki, tls, xmldsig
from gateway.security.keys import KeyPair, PartnerTrust, load_keypair, load_trust
from gateway.wire import xmlsafe
from gateway.wire.server import serve_in_thread
from tests.paths import SAMPLES

SAMPLE = SAMPLES / "duo-inburgeraarmelding.xml"
DUO_NS = "urn:nl:duo:inburgering:v1"


@dataclass
class Keys:
    dir: Path
    gateway: KeyPair
    duo: KeyPair
    gateway_trust: PartnerTrust
    duo_trust: PartnerTrust


@dataclass
class Rig:
    sim: DuoSimulator
    sender: DuoSender
    url: str
    keys: Keys


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    d = tmp_path_factory.mktemp("pki")
    pki.init(d)

    def pair(name: str) -> KeyPair:
        return load_keypair(d / f"{name}-key.pem", d / f"{name}.pem")

    return Keys(d, pair("gateway"), pair("duo"),
                load_trust("gateway", [d / "ca.pem"], [d / "gateway.pem"]),
                load_trust("duo", [d / "ca.pem"], [d / "duo.pem"]))


@pytest.fixture()
def rig(keys: Keys) -> Iterator[Rig]:
    sim = DuoSimulator(key=keys.duo, gateway_trust=keys.gateway_trust)
    ca = [str(keys.dir / "ca.pem")]
    with serve_in_thread(sim.app, ssl_context=tls.server_context(keys.duo, ca)) as server:
        sender = DuoSender(server.url, keys.gateway, keys.duo_trust, tls.client_context(keys.gateway, ca),
                           timeout_seconds=5, clock=SystemClock())
        yield Rig(sim, sender, server.url, keys)
        sender.close()


def melding(key: KeyPair | None, bericht_id: str, vertraging: int = 0) -> bytes:
    """The sample InburgeraarMelding with another berichtId, signed by the gateway as the core does."""
    root = xmlsafe.parse(SAMPLE.read_bytes())
    root.find(f"{{{DUO_NS}}}berichtId").text = bericht_id
    root.find(f"{{{DUO_NS}}}levering/{{{DUO_NS}}}vertragingDagen").text = str(vertraging)
    if key is None:
        return etree.tostring(root, xml_declaration=True, encoding="utf-8")
    return xmldsig.sign_enveloped(root, key)


def delivery(payload: bytes, bericht_id: str, attempt: int = 1) -> Delivery:
    return Delivery(id=1, partner="duo", operation="InburgeraarMelding", idempotency_key=bericht_id,
                    payload=payload, attempt=attempt)


def new_id() -> str:
    return str(uuid.uuid4())


def test_accepted_with_kenmerk_and_signed_receipt(rig: Rig) -> None:
    bid = new_id()
    out = rig.sender.send(delivery(melding(rig.keys.gateway, bid), bid))
    assert out.kind == "success", out.detail
    assert out.http_status == 200
    assert out.reference and out.reference.startswith("DUO-")
    assert out.receipt is not None
    ack = codec.decode_ontvangstbevestiging(xmlsafe.parse(out.receipt))
    assert ack.bericht_id == bid and ack.status == "ONTVANGEN"
    assert rig.sim.received[-1][0] == bid and rig.sim.received[-1][1] == "InburgeraarMelding"


def test_repeat_gives_the_same_bytes_and_is_taken_in_once(rig: Rig) -> None:
    bid = new_id()
    payload = melding(rig.keys.gateway, bid)
    first = rig.sender.send(delivery(payload, bid))
    second = rig.sender.send(delivery(payload, bid, attempt=2))
    assert first.kind == second.kind == "success"
    assert first.receipt == second.receipt
    assert rig.sim.count(bid) == 1
    assert [r[0] for r in rig.sim.received].count(bid) == 1


def test_same_id_other_content_is_permanent_with_an_alarm(rig: Rig) -> None:
    bid = new_id()
    assert rig.sender.send(delivery(melding(rig.keys.gateway, bid), bid)).kind == "success"
    out = rig.sender.send(delivery(melding(rig.keys.gateway, bid, vertraging=3), bid))
    assert out.kind == "permanent" and out.http_status == 409
    assert out.extra["alarm"] == "IDEMPOTENCY_CONFLICT"
    assert rig.sim.count(bid) == 1


def test_three_503s_then_accepted(rig: Rig) -> None:
    rig.sim.faults.script.extend([503, 503, 503])
    bid = new_id()
    payload = melding(rig.keys.gateway, bid)
    kinds = [rig.sender.send(delivery(payload, bid, attempt=i)) for i in range(1, 5)]
    assert [o.kind for o in kinds] == ["retry", "retry", "retry", "success"]
    assert all(o.http_status == 503 and o.retry_after_seconds == 1.0 for o in kinds[:3])
    assert rig.sim.count(bid) == 1


def test_429_with_retry_after_is_a_retry_after_that_long(rig: Rig) -> None:
    rig.sim.faults.script.append(Answer(status=429, retry_after_seconds=42))
    bid = new_id()
    out = rig.sender.send(delivery(melding(rig.keys.gateway, bid), bid))
    assert out.kind == "retry" and out.http_status == 429 and out.retry_after_seconds == 42.0
    assert rig.sim.count(bid) == 0


def test_schema_error_is_permanent_with_the_code(rig: Rig) -> None:
    bid = new_id()
    root = xmlsafe.parse(SAMPLE.read_bytes())
    root.find(f"{{{DUO_NS}}}berichtId").text = bid
    root.find(f"{{{DUO_NS}}}soortMelding").text = "ONBEKEND"
    payload = xmldsig.sign_enveloped(root, rig.keys.gateway)
    out = rig.sender.send(delivery(payload, bid))
    assert out.kind == "permanent" and out.http_status == 400
    assert out.extra["fouten"] == ["SCHEMA"]
    assert "SCHEMA" in out.detail and "ONBEKEND" not in out.detail
    assert rig.sim.count(bid) == 0


def test_unsigned_message_is_refused_as_signature(rig: Rig) -> None:
    bid = new_id()
    out = rig.sender.send(delivery(melding(None, bid), bid))
    assert out.kind == "permanent" and out.extra["fouten"] == ["SIGNATURE"]


def test_wrong_idempotency_key_is_refused(rig: Rig) -> None:
    bid = new_id()
    with httpx.Client(verify=tls.client_context(rig.keys.gateway, [str(rig.keys.dir / "ca.pem")])) as client:
        r = client.post(rig.url + "/inburgering/v1/meldingen", content=melding(rig.keys.gateway, bid),
                        headers={"Content-Type": "application/xml; charset=utf-8", "Idempotency-Key": new_id()})
    assert r.status_code == 400 and b"IDEMPOTENCY_KEY" in r.content


def test_tampered_acknowledgement_is_a_retry_never_a_success(rig: Rig) -> None:
    rig.sim.faults.script.append(Answer(tamper_ack=True))
    bid = new_id()
    payload = melding(rig.keys.gateway, bid)
    out = rig.sender.send(delivery(payload, bid))
    assert out.kind == "retry" and "SIGNATURE" in out.detail
    # DUO kept the message: the next attempt gets the genuine acknowledgement.
    again = rig.sender.send(delivery(payload, bid, attempt=2))
    assert again.kind == "success" and rig.sim.count(bid) == 1


def test_acknowledgement_signed_by_someone_else_is_a_retry(rig: Rig, keys: Keys) -> None:
    rig.sim.key = keys.gateway  # not DUO's pinned certificate
    bid = new_id()
    out = rig.sender.send(delivery(melding(keys.gateway, bid), bid))
    assert out.kind == "retry" and "CERTIFICATE" in out.detail


def test_lost_acknowledgement_and_reset_are_retries(rig: Rig) -> None:
    rig.sim.faults.script.extend([Answer(reset=True), Answer(lose_ack=True)])
    bid = new_id()
    payload = melding(rig.keys.gateway, bid)
    first = rig.sender.send(delivery(payload, bid))
    assert first.kind == "retry" and first.http_status is None and rig.sim.count(bid) == 0
    second = rig.sender.send(delivery(payload, bid, attempt=2))
    assert second.kind == "retry" and rig.sim.count(bid) == 1
    third = rig.sender.send(delivery(payload, bid, attempt=3))
    assert third.kind == "success"


def test_downtime_window_answers_503_with_the_time_left(rig: Rig) -> None:
    now = dt.datetime.now(dt.UTC)
    rig.sim.faults.downtime = [(now - dt.timedelta(minutes=1), now + dt.timedelta(minutes=10))]
    bid = new_id()
    out = rig.sender.send(delivery(melding(rig.keys.gateway, bid), bid))
    assert out.kind == "retry" and out.http_status == 503
    assert out.retry_after_seconds is not None and 500 <= out.retry_after_seconds <= 600


def test_timeout_is_a_retry(keys: Keys) -> None:
    sim = DuoSimulator(key=keys.duo, gateway_trust=keys.gateway_trust, faults=Faults(latency_seconds=1.0))
    ca = [str(keys.dir / "ca.pem")]
    with serve_in_thread(sim.app, ssl_context=tls.server_context(keys.duo, ca)) as server:
        sender = DuoSender(server.url, keys.gateway, keys.duo_trust, tls.client_context(keys.gateway, ca),
                           timeout_seconds=0.3)
        bid = new_id()
        out = sender.send(delivery(melding(keys.gateway, bid), bid))
        sender.close()
    assert out.kind == "retry" and out.http_status is None


def test_no_server_is_a_retry(keys: Keys) -> None:
    sender = DuoSender("https://127.0.0.1:9", keys.gateway, keys.duo_trust,
                       tls.client_context(keys.gateway, [str(keys.dir / "ca.pem")]), timeout_seconds=1)
    bid = new_id()
    assert sender.send(delivery(melding(keys.gateway, bid), bid)).kind == "retry"
    sender.close()


def test_vorderingstatus_goes_to_its_own_endpoint(rig: Rig) -> None:
    from gateway.core.models import VorderingStatus

    bid = new_id()
    status = VorderingStatus(bericht_id=bid, vordering_id=new_id(), status="IN_BEHANDELING_BIJ_CJIB",
                             peilmoment="2026-11-02T09:14:03+01:00", cjib_zaaknummer="CJIB-2026-1")
    payload = xmldsig.sign_enveloped(codec.encode_vorderingstatus(status), rig.keys.gateway)
    out = rig.sender.send(Delivery(id=2, partner="duo", operation="VorderingStatus", idempotency_key=bid,
                                   payload=payload, attempt=1))
    assert out.kind == "success", out.detail
    assert rig.sim.received[-1][1] == "VorderingStatus"


def test_classify_table() -> None:
    assert classify(None, None, None).kind == "retry"
    assert classify(502, {}, b"").kind == "retry"
    assert classify(503, {"retry-after": "7"}, b"").retry_after_seconds == 7.0
    assert classify(404, {}, b"").kind == "retry" and "404" in classify(404, {}, b"").detail
    assert classify(200, {}, b"not xml").kind == "retry"
    now = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)
    assert retry_after_seconds("Mon, 02 Nov 2026 08:01:00 GMT", now=now) == 60.0
    assert retry_after_seconds("soon", now=now) is None


def test_duo_sending_side_generates_valid_claims_and_breaks_rules_when_asked(keys: Keys) -> None:
    day = dt.date(2026, 11, 2)
    claims = generate_vorderingen(40, seed=3, handover_day=day, broken_every=4)
    assert claims == generate_vorderingen(40, seed=3, handover_day=day, broken_every=4)
    for i, v in enumerate(claims, 1):
        xmlsafe.validate(codec.encode_vorderingoverdracht(v), xmlsafe.DUO_XSD)
        assert bool(codec.vordering_rules(v, day)) == (i % 4 == 0)
    broken = {f.code for v in claims for f in codec.vordering_rules(v, day)}
    assert {"BSN_ELFPROEF", "VERVALDATUM_NIET_VERSTREKEN", "AANMANING_VOOR_VERVALDATUM",
            "AANMANINGSTERMIJN_TE_KORT"} <= broken


def test_post_vorderingoverdracht_signs_and_sets_the_key(keys: Keys) -> None:
    seen: list[tuple[str | None, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers.get("idempotency-key"), request.content))
        return httpx.Response(200)

    v = generate_vorderingen(1, seed=1, handover_day=dt.date(2026, 11, 2))[0]
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        assert post_vorderingoverdracht(client, "https://gw/duo/v1/vorderingen", v, keys.duo).status_code == 200
    key, body = seen[0]
    assert key == v.vordering_id
    xmldsig.verify_enveloped(xmlsafe.parse(body), load_trust("duo", [keys.dir / "ca.pem"], [keys.dir / "duo.pem"]),
                             now=dt.datetime.now(dt.UTC))


def test_scripted_refusal_is_permanent(rig: Rig) -> None:
    rig.sim.faults.script.append(400)
    bid = new_id()
    out = rig.sender.send(delivery(melding(rig.keys.gateway, bid), bid))
    assert out.kind == "permanent" and out.extra["fouten"] == ["GESIMULEERD"]
    assert rig.sim.count(bid) == 0


def test_schema_refusal_names_the_path(rig: Rig) -> None:
    bid = new_id()
    root = xmlsafe.parse(SAMPLE.read_bytes())
    root.find(f"{{{DUO_NS}}}berichtId").text = bid
    root.find(f"{{{DUO_NS}}}soortMelding").text = "ONBEKEND"
    out = rig.sender.send(delivery(xmldsig.sign_enveloped(root, rig.keys.gateway), bid))
    assert out.receipt is not None
    ack = codec.decode_ontvangstbevestiging(xmlsafe.parse(out.receipt))
    assert ack.fouten[0].pad and "soortMelding" in ack.fouten[0].pad
    assert b"ONBEKEND" not in out.receipt


def test_error_rate_and_downtime_predicate_answer_503(rig: Rig) -> None:
    rig.sim.faults.error_rate = 1.0
    bid = new_id()
    out = rig.sender.send(delivery(melding(rig.keys.gateway, bid), bid))
    assert out.kind == "retry" and out.http_status == 503 and out.retry_after_seconds == 1.0
    rig.sim.faults.error_rate = 0.0
    rig.sim.faults.downtime = lambda now: True
    assert rig.sender.send(delivery(melding(rig.keys.gateway, bid), bid)).http_status == 503
    rig.sim.faults.downtime = None
    assert rig.sender.send(delivery(melding(rig.keys.gateway, bid), bid)).kind == "success"
