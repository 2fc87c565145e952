"""IND's side over real sockets: the HaalMeldingen feed via zeep (signed both ways, mutual TLS),
and the zeep pusher against a small stand-in for the gateway's OntvangMelding endpoint."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from lxml import etree
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.ind import codec
from adapters.ind.client import IndFeedClient
from adapters.ind.simulator import IndSimulator, PushFaults, generate_meldingen
from gateway.core.clock import iso
from gateway.core.errors import BusinessRuleViolated, CertificateRefused, InboundRefused, TransientDelivery
from gateway.security import pki, tls, wsse
from gateway.security.keys import KeyPair, PartnerTrust, load_keypair, load_trust
from gateway.wire import soap, xmlsafe
from gateway.wire.server import serve_in_thread
from tests.pki_fixtures import ack_body

NOW = dt.datetime.now(dt.UTC)


@dataclass
class Keys:
    dir: Path
    ca: str
    gateway: KeyPair
    ind: KeyPair
    gateway_trust: PartnerTrust
    ind_trust: PartnerTrust


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    d = tmp_path_factory.mktemp("pki")
    pki.init(d)

    def pair(name: str) -> KeyPair:
        return load_keypair(d / f"{name}-key.pem", d / f"{name}.pem")

    return Keys(d, str(d / "ca.pem"), pair("gateway"), pair("ind"),
                load_trust("gateway", [d / "ca.pem"], [d / "gateway.pem"]),
                load_trust("ind", [d / "ca.pem"], [d / "ind.pem"]))


class Receiver:
    """A stand-in for the gateway's OntvangMelding: verify, validate, dedup, answer signed."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self.acks: dict[str, tuple[str, bytes]] = {}
        self.lock = threading.Lock()
        self.app = Starlette(routes=[Route("/ind/meldingen", self.endpoint, methods=["POST"])])

    async def endpoint(self, request: Request) -> Response:
        try:
            return Response(self.take(await request.body()), media_type="text/xml; charset=utf-8")
        except InboundRefused as exc:
            return Response(soap.fault(exc), status_code=500, media_type="text/xml; charset=utf-8")

    def take(self, body: bytes) -> bytes:
        v = wsse.verify_envelope(xmlsafe.parse(body), self.keys.ind_trust, parts=wsse.REQUEST_PARTS,
                                 now=dt.datetime.now(dt.UTC))
        xmlsafe.validate(v.payload, xmlsafe.IND_XSD)
        m = codec.decode_melding(v.payload)
        if codec.business_rules(m):
            raise BusinessRuleViolated("a business rule is broken")
        digest = xmlsafe.sha256_b64(xmlsafe.exc_c14n(v.payload))
        with self.lock:
            if m.melding_id not in self.acks:
                ack = codec.encode_ontvangstbevestiging(str(uuid.uuid4()), m.melding_id, m.volgnummer,
                                                        iso(dt.datetime.now(dt.UTC)), digest)
                self.acks[m.melding_id] = (digest, etree.tostring(ack))
            body = self.acks[m.melding_id][1]
        # Contracts revision 2: a repeat gets the same Body, signed afresh with this request's confirmation.
        env = soap.build_envelope(etree.fromstring(body), to="http://www.w3.org/2005/08/addressing/anonymous",
                                  action=codec.ACTION_ONTVANG_RESPONSE,
                                  message_id=f"urn:uuid:{uuid.uuid4()}", relates_to=v.message_id)
        return wsse.sign_envelope(env, self.keys.gateway, parts=wsse.CONFIRMED_RESPONSE_PARTS,
                                  now=dt.datetime.now(dt.UTC), confirm=v.signature_value)


@dataclass
class Rig:
    sim: IndSimulator
    client: IndFeedClient
    receiver: Receiver
    feed_url: str
    push_url: str


@pytest.fixture()
def rig(keys: Keys) -> Iterator[Rig]:
    sim = IndSimulator(key=keys.ind, gateway_trust=keys.gateway_trust, ca_file=keys.ca)
    receiver = Receiver(keys)
    with serve_in_thread(sim.app, ssl_context=tls.server_context(keys.ind, [keys.ca])) as feed, \
            serve_in_thread(receiver.app, ssl_context=tls.server_context(keys.gateway, [keys.ca])) as gw:
        client = IndFeedClient(feed.url + "/ind/feed", keys.gateway, keys.ind_trust, ca_file=keys.ca,
                               timeout_seconds=5)
        yield Rig(sim, client, receiver, feed.url + "/ind/feed", gw.url + "/ind/meldingen")
        client.close()
        sim.close()


def test_feed_pages_through_every_issued_notification(rig: Rig) -> None:
    meldingen = generate_meldingen(25, seed=11, now=NOW)
    rig.sim.issue(meldingen)
    pages = [rig.client.haal_meldingen(vanaf, 10) for vanaf in (1, 11, 21, 26)]
    assert [len(p.meldingen) for p in pages] == [10, 10, 5, 0]
    assert all(p.laatste_volgnummer == 25 for p in pages)
    got = [codec.decode_melding(xmlsafe.parse(raw)) for p in pages for raw in p.meldingen]
    assert got == meldingen


def test_empty_feed_says_zero(rig: Rig) -> None:
    page = rig.client.haal_meldingen(1, 100)
    assert page.meldingen == () and page.laatste_volgnummer == 0


def test_pushes_with_drops_and_duplicates_and_catch_up(rig: Rig) -> None:
    meldingen = generate_meldingen(12, seed=12, now=NOW)
    results = rig.sim.push_all(rig.push_url, meldingen, PushFaults(drop={3, 7}, duplicate={5}))
    assert [r.volgnummer for r in results] == [1, 2, 4, 5, 5, 6, 8, 9, 10, 11, 12]
    assert all(r.accepted and r.http_status == 200 and r.digest_matches for r in results), [r.error for r in results]
    twice = [r.acknowledgement for r in results if r.volgnummer == 5]
    assert twice[0] is not None and twice[1] is not None
    assert ack_body(twice[0]) == ack_body(twice[1]) and twice[0] != twice[1]  # revision 2: signed afresh
    assert rig.sim.dropped == [3, 7]
    assert len(rig.receiver.acks) == 10
    # The dropped ones are in IND's feed, byte-identical in content to what was issued.
    page = rig.client.haal_meldingen(3, 1)
    assert codec.decode_melding(xmlsafe.parse(page.meldingen[0])) == meldingen[2]
    assert rig.client.haal_meldingen(7, 1).laatste_volgnummer == 12


def test_refused_push_reports_fault_and_code(rig: Rig) -> None:
    m = generate_meldingen(1, seed=13, now=NOW)[0]
    bad = replace(m, persoon=replace(m.persoon, bsn="123456789"))  # fails the 11-test
    result = rig.sim.push(rig.push_url, bad)
    assert result.http_status == 500 and not result.accepted
    assert result.fault_code == "soap:Client" and result.detail_code == "BUSINESS_RULE"


def test_raw_push_of_a_tampered_envelope_is_refused(rig: Rig) -> None:
    m = generate_meldingen(1, seed=14, now=NOW)[0]
    envelope = rig.sim.envelope(rig.push_url, m)
    status, body = rig.sim.push_raw(rig.push_url, envelope.replace(b"<ind:volgnummer>1<", b"<ind:volgnummer>2<"))
    assert status == 500 and b"SIGNATURE" in body
    status, body = rig.sim.push_raw(rig.push_url, envelope)
    assert status == 200 and b"Ontvangstbevestiging" in body


def test_unsigned_feed_request_is_refused(rig: Rig, keys: Keys) -> None:
    client = IndFeedClient(rig.feed_url, None, keys.ind_trust, ca_file=keys.ca, timeout_seconds=5)
    client.session.cert = (keys.gateway.cert_file, keys.gateway.key_file)  # TLS still mutual
    with pytest.raises(TransientDelivery) as caught:
        client.haal_meldingen(1, 10)
    assert caught.value.http_status == 500
    client.close()


def test_feed_answer_signed_by_another_party_is_refused(rig: Rig, keys: Keys) -> None:
    rig.sim.key = keys.gateway  # IND's answer now signed with a certificate not pinned for IND
    with pytest.raises(CertificateRefused):
        rig.client.haal_meldingen(1, 10)


def test_feed_down_is_transient(keys: Keys) -> None:
    client = IndFeedClient("https://127.0.0.1:9/ind/feed", keys.gateway, keys.ind_trust, ca_file=keys.ca,
                           timeout_seconds=2)
    with pytest.raises(TransientDelivery):
        client.haal_meldingen(1, 10)
    client.close()


def test_feed_server_with_a_certificate_not_pinned_for_ind_is_refused(keys: Keys) -> None:
    """IND's address answered by a server holding another partner's certificate from the same CA:
    the TLS handshake passes the CA check, the pin refuses it before anything is asked."""
    duo = load_keypair(keys.dir / "duo-key.pem", keys.dir / "duo.pem")
    sim = IndSimulator(key=keys.ind, gateway_trust=keys.gateway_trust, ca_file=keys.ca)
    sim.issue(generate_meldingen(3, seed=15, now=NOW))
    with serve_in_thread(sim.app, ssl_context=tls.server_context(duo, [keys.ca])) as impostor:
        client = IndFeedClient(impostor.url + "/ind/feed", keys.gateway, keys.ind_trust, ca_file=keys.ca,
                               timeout_seconds=5)
        try:
            with pytest.raises(CertificateRefused) as caught:
                client.haal_meldingen(1, 10)
            assert "not one pinned" in caught.value.message and caught.value.partner == "ind"
            with pytest.raises(CertificateRefused):  # every time, not only on the first connection
                client.haal_meldingen(1, 10)
        finally:
            client.close()
            sim.close()
    # The same server with IND's own certificate is IND: the pin passes.
    with serve_in_thread(sim.app, ssl_context=tls.server_context(keys.ind, [keys.ca])) as feed:
        client = IndFeedClient(feed.url + "/ind/feed", keys.gateway, keys.ind_trust, ca_file=keys.ca,
                               timeout_seconds=5)
        try:
            assert len(client.haal_meldingen(1, 10).meldingen) == 3
        finally:
            client.close()
