"""Digikoppeling WUS transport rules (WT) at the gateway's IND door, over real mutual TLS.

Each test is named after its rule (docs/digikoppeling.md): it shows the refusal on the wire (a
handshake that fails, or the SOAP fault with its code), that the refusal is recorded, and that
nothing of a refused message reaches DUO.
"""

from __future__ import annotations

import ssl
import time

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.mapping.ind_to_duo import bericht_id_for
from gateway.sandbox import wait_until
from gateway.security import keys, pki, revocation, sandbox_ca, tls
from tests.conformance.conftest import Wus, fault_code

SOAP_HEADERS = {"Content-Type": "text/xml; charset=utf-8",
                "SOAPAction": '"urn:nl:ind:gegevenslevering:inburgering:v1/OntvangMelding"'}


def _post(wus: Wus, body: bytes, context: ssl.SSLContext) -> httpx.Response:
    with httpx.Client(verify=context, timeout=10) as client:
        return client.post(wus.url, content=body, headers=SOAP_HEADERS)


def _context(wus: Wus, name: str | None, *, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(wus.pki_dir / "ca.pem"))
    if name is not None:
        context.load_cert_chain(wus.pki_dir / f"{name}.pem", wus.pki_dir / f"{name}-key.pem")
    if maximum is not None:
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = maximum
    return context


def test_WT001_two_way_tls_a_client_without_certificate_is_refused(wus: Wus) -> None:
    m = wus.melding(2001)
    body = wus.chain.ind.envelope(wus.url, m)
    with pytest.raises(httpx.TransportError):
        _post(wus, body, _context(wus, None))
    assert wus.inbound(m.melding_id) == []  # refused before any byte was read
    # The same message with IND's certificate is accepted.
    assert _post(wus, body, _context(wus, "ind")).status_code == 200
    assert wus.inbound(m.melding_id) == [("accepted", None)]


def test_WT002_pkioverheid_chain_and_oin_in_subject_serialnumber(wus: Wus) -> None:
    # Our certificate: root -> intermediate -> leaf, with our OIN in subject serialNumber.
    root, intermediate = x509.load_pem_x509_certificates((wus.pki_dir / "ca.pem").read_bytes())[::-1]
    ours = x509.load_pem_x509_certificate((wus.pki_dir / "gateway.pem").read_bytes())
    ours.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(root)
    assert root.subject == root.issuer and keys.oin_of(ours) == pki.OINS["gateway"]
    assert wus.chain.config.tls.oin == pki.OINS["gateway"] and wus.chain.config.partner("ind").oin == pki.OINS["ind"]


def test_WT002_a_tls_certificate_with_another_organisations_oin_is_refused(wus: Wus) -> None:
    m = wus.melding(2002)
    other = wus.simulator("ind-wrong-oin")  # pinned for IND, chains to the anchors, but carries DUO's OIN
    try:
        status, body = other.push_raw(wus.url, wus.chain.ind.envelope(wus.url, m))
    finally:
        other.close()
    assert status == 500 and fault_code(body) == ("wsse:FailedCheck", "OIN_TLS_CERTIFICATE")
    assert wus.refusals()[-1] == "OIN_TLS_CERTIFICATE"
    assert wus.chain.duo.count(bericht_id_for(m.melding_id)) == 0


def test_WT002_a_signing_certificate_with_another_organisations_oin_is_refused(wus: Wus) -> None:
    m = wus.melding(2003)
    other = wus.simulator("ind-wrong-oin")
    try:
        signed_by_other = other.envelope(wus.url, m)
    finally:
        other.close()
    status, body = wus.chain.ind.push_raw(wus.url, signed_by_other)  # TLS as IND, signed with DUO's OIN
    assert status == 500 and fault_code(body) == ("wsse:FailedCheck", "OIN_SIGNING_CERTIFICATE")
    assert wus.refusals()[-1] == "OIN_SIGNING_CERTIFICATE"


def test_WT002_a_certificate_from_another_root_is_refused_at_the_handshake(wus: Wus, tmp_path) -> None:
    # Same subject and OIN as IND's, but from a CA the gateway does not trust.
    impostor_ca = pki.make_ca(tmp_path, "ca", common_name=pki.CA_NAME)
    pki.issue(tmp_path, "ind", ca=impostor_ca)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(wus.pki_dir / "ca.pem"))
    context.load_cert_chain(tmp_path / "ind.pem", tmp_path / "ind-key.pem")
    with pytest.raises(httpx.TransportError):
        _post(wus, wus.chain.ind.envelope(wus.url, wus.melding(2004)), context)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_WT003_tls_older_than_1_2_is_refused(wus: Wus, version: ssl.TLSVersion) -> None:
    from gateway.daemon import _server_ssl

    # The listener's own context refuses them (the client's OpenSSL may refuse them as well).
    context = _server_ssl(wus.rt)
    assert context is not None and context.minimum_version == ssl.TLSVersion.TLSv1_2
    with pytest.raises((httpx.TransportError, ssl.SSLError)):
        _post(wus, wus.chain.ind.envelope(wus.url, wus.melding(2005)), _context(wus, "ind", maximum=version))


def test_WT003_tls_1_2_and_1_3_are_accepted(wus: Wus) -> None:
    for seed, version in ((2006, ssl.TLSVersion.TLSv1_2), (2007, ssl.TLSVersion.TLSv1_3)):
        m = wus.melding(seed)
        response = _post(wus, wus.chain.ind.envelope(wus.url, m), _context(wus, "ind", maximum=version))
        assert response.status_code == 200, response.text


def test_WT004_a_revoked_certificate_is_refused_at_the_tls_door_and_at_the_signature(wus: Wus) -> None:
    revocation = wus.rt.revocation
    assert revocation is not None, "revocation checking is off"
    revocable = x509.load_pem_x509_certificate((wus.pki_dir / "ind-revocable.pem").read_bytes())
    sim = wus.simulator("ind-revocable")
    try:
        before = wus.melding(2008)
        assert sim.push(wus.url, before).accepted  # valid until the CA revokes it
        sandbox_ca.revoke(wus.pki_dir, "ind-revocable")
        t0 = time.monotonic()
        # Without a restart: the next OCSP answer (every 0.5 s here) or CRL (nextUpdate 1 s) says so.
        assert wait_until(lambda: revocation.status(revocable, time.time()) == "revoked", 10)
        seen_after = time.monotonic() - t0
        assert seen_after < 5, seen_after
        at_tls = wus.melding(2009)
        result = sim.push(wus.url, at_tls)
        assert not result.accepted and result.detail_code == "CERT_REVOKED"
        assert wus.refusals()[-1] == "CERT_REVOKED"
        # Signed with the revoked key, sent over IND's valid TLS certificate: refused at the signature.
        at_signature = wus.melding(2010)
        status, body = wus.chain.ind.push_raw(wus.url, sim.envelope(wus.url, at_signature))
        assert status == 500 and fault_code(body) == ("wsse:FailedCheck", "CERT_REVOKED")
        assert wus.refusals()[-1] == "CERT_REVOKED"
    finally:
        sim.close()
    # Nothing from it after the revocation reaches DUO; what it sent before does.
    assert wait_until(lambda: wus.chain.duo.count(bericht_id_for(before.melding_id)) == 1, 10)
    time.sleep(0.3)
    assert wus.chain.duo.count(bericht_id_for(at_tls.melding_id)) == 0
    assert wus.chain.duo.count(bericht_id_for(at_signature.melding_id)) == 0
    # IND's other certificate is unaffected.
    assert wus.chain.ind.push(wus.url, wus.melding(2011)).accepted


def test_WT005_the_crl_is_fetched_from_the_distribution_point_and_cached_in_the_store(wus: Wus) -> None:
    ind = x509.load_pem_x509_certificate((wus.pki_dir / "ind.pem").read_bytes())
    (url,) = revocation.crl_urls(ind)
    rows = {r["url"]: r for r in wus.rt.store.crl_rows()}
    assert url in rows and rows[url]["crl"] and rows[url]["last_error"] is None
    served = wus.chain.extra["ca"].served["crl"]
    # Refreshed by its nextUpdate (1 s here).
    assert wait_until(lambda: wus.chain.extra["ca"].served["crl"] > served, 5)


def test_WT005_a_crl_that_cannot_be_fetched_shows_on_health_and_in_the_metrics(wus: Wus) -> None:
    from prometheus_client import generate_latest

    from gateway.ops import health

    rt = wus.rt
    ca = wus.chain.extra["ca"]
    ca.up = False
    try:
        assert wait_until(lambda: health.evaluate(rt)["checks"]["revocation"]["status"] == "degraded", 10)
        check = health.evaluate(rt)["checks"]["revocation"]
        assert "cannot be fetched" in check["reason"] and "503" in check["reason"]
        metrics = generate_latest(rt.metrics.registry).decode()
        assert 'gateway_crl_fetch_ok{url="' + ca_url(wus) + '"} 0.0' in metrics
        assert 'outcome="failed"' in metrics
        # Within nextUpdate + grace the last good CRL still counts: IND is accepted meanwhile.
        assert wus.chain.ind.push(wus.url, wus.melding(2012)).accepted
    finally:
        ca.up = True
    assert wait_until(lambda: health.evaluate(rt)["checks"]["revocation"]["status"] == "ok", 10)


def ca_url(wus: Wus) -> str:
    return pki.crl_url(wus.chain.servers["ca"].url)


def test_WT007_several_messages_share_one_tls_session(wus: Wus) -> None:
    with httpx.Client(verify=_context(wus, "ind"), timeout=10) as client:
        answers = [client.post(wus.url, content=wus.chain.ind.envelope(wus.url, wus.melding(seed)),
                               headers=SOAP_HEADERS) for seed in (2013, 2014, 2015)]
        streams = {id(a.extensions["network_stream"]) for a in answers}
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert len(streams) == 1  # one connection, one TLS session, three messages


def test_WT002_outbound_a_server_certificate_without_the_partners_oin_is_refused(wus: Wus) -> None:
    # The outbound side's check (PartnerTrust.check_peer, as for a client): DUO's pin, IND's OIN configured.
    trust = keys.load_trust("duo", [wus.pki_dir / "ca.pem"], [wus.pki_dir / "duo.pem"], oin=pki.OINS["ind"])
    der = trust.certificates[0].public_bytes(serialization.Encoding.DER)
    assert (tls.unpinned_certificate(der, trust) or "").startswith("OIN_TLS_CERTIFICATE")
    right = keys.load_trust("duo", [wus.pki_dir / "ca.pem"], [wus.pki_dir / "duo.pem"], oin=pki.OINS["duo"])
    assert tls.unpinned_certificate(der, right) is None


async def _client_port(scope, receive, send) -> None:
    """An ASGI app that answers with the client's port: a new port is a new connection."""
    if scope["type"] != "http":
        return
    body = str(scope["client"][1]).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def test_WT008_a_tls_session_has_a_maximum_lifetime_on_our_listener(wus: Wus) -> None:
    from gateway.wire.server import serve_in_thread

    gateway = wus.pair("gateway")
    server_ctx = tls.server_context(gateway, [str(wus.pki_dir / "ca.pem")])
    with serve_in_thread(_client_port, ssl_context=server_ctx, max_session_seconds=0.5) as server, \
            httpx.Client(verify=_context(wus, "ind"), timeout=10) as client:
        first, again = client.get(server.url).text, client.get(server.url).text
        time.sleep(0.8)
        assert client.get(server.url).headers["connection"] == "close"  # served, then closed
        later = client.get(server.url).text
    assert first == again  # one session while young
    assert later != first  # a new connection (and handshake) after the lifetime
    assert wus.chain.config.tls.max_session_seconds == 3600.0  # the default, as the daemon passes it


def test_WT008_a_tls_session_has_a_maximum_lifetime_on_our_calls(wus: Wus) -> None:
    from gateway.wire.server import serve_in_thread

    duo = wus.pair("duo")
    server_ctx = tls.server_context(duo, [str(wus.pki_dir / "ca.pem")])
    trust = keys.load_trust("duo", [wus.pki_dir / "ca.pem"], [wus.pki_dir / "duo.pem"], oin=pki.OINS["duo"])
    with serve_in_thread(_client_port, ssl_context=server_ctx) as server, \
            tls.pinned_client(tls.client_context(wus.pair("gateway"), [str(wus.pki_dir / "ca.pem")]), trust,
                              timeout_seconds=10, max_session_seconds=0.5) as client:
        first, again = client.get(server.url).text, client.get(server.url).text
        time.sleep(0.8)
        later = client.get(server.url).text
    assert first == again and later != first


def test_WT008_a_tls_session_has_a_maximum_lifetime_on_the_calls_to_duo_and_cjib(wus: Wus) -> None:
    from gateway.wire.client import PinnedHttps
    from gateway.wire.server import serve_in_thread

    server_ctx = tls.server_context(wus.pair("duo"), [str(wus.pki_dir / "ca.pem")])
    trust = keys.load_trust("duo", [wus.pki_dir / "ca.pem"], [wus.pki_dir / "duo.pem"], oin=pki.OINS["duo"])
    with serve_in_thread(_client_port, ssl_context=server_ctx) as server:
        client = PinnedHttps(server.url, tls.client_context(wus.pair("gateway"), [str(wus.pki_dir / "ca.pem")]),
                             trust, timeout_seconds=10, max_session_seconds=0.5)
        first, again = (client.request("GET", "/", None, {}).content for _ in range(2))
        time.sleep(0.8)
        later = client.request("GET", "/", None, {}).content
        client.close()
    assert first == again and later != first


def test_WT008_a_tls_session_has_a_maximum_lifetime_on_the_ind_feed_client(wus: Wus) -> None:
    from adapters.ind.client import PinnedAdapter
    from adapters.ind.zeep_wsse import close_session, tls_session
    from gateway.wire.server import serve_in_thread

    server_ctx = tls.server_context(wus.pair("ind"), [str(wus.pki_dir / "ca.pem")])
    trust = keys.load_trust("ind", [wus.pki_dir / "ca.pem"], [wus.pki_dir / "ind.pem"], oin=pki.OINS["ind"])
    session = tls_session(wus.pair("gateway"), str(wus.pki_dir / "ca.pem"))
    session.mount("https://", PinnedAdapter(trust, max_session_seconds=0.5))
    try:
        with serve_in_thread(_client_port, ssl_context=server_ctx) as server:
            first, again = session.get(server.url, timeout=10).text, session.get(server.url, timeout=10).text
            time.sleep(0.8)
            later = session.get(server.url, timeout=10).text
    finally:
        close_session(session)
    assert first == again and later != first
