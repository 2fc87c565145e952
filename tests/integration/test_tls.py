"""Mutual TLS with a real uvicorn server (gateway.wire.server) and an httpx client."""

from __future__ import annotations

import hashlib
import ssl

import httpx
import pytest

from gateway.security import tls
from gateway.wire.server import client_cert_der, serve_in_thread
from tests.pki_fixtures import keypair, make_pki


@pytest.fixture(scope="session")
def pki_paths(tmp_path_factory):
    return make_pki(tmp_path_factory)


async def echo_cert(scope, receive, send):
    """Answers with the SHA-256 of the client certificate the server saw."""
    der = client_cert_der(scope)
    body = hashlib.sha256(der).hexdigest().encode() if der else b"none"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def server(pki_paths):
    context = tls.server_context(keypair(pki_paths, "gateway"), [str(pki_paths["ca"])])
    running = serve_in_thread(echo_cert, ssl_context=context)
    yield running
    running.stop()


def test_server_context_settings(pki_paths):
    context = tls.server_context(keypair(pki_paths, "gateway"), [str(pki_paths["ca"])])
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    client = tls.client_context(keypair(pki_paths, "ind"), [str(pki_paths["ca"])])
    assert client.check_hostname and client.verify_mode == ssl.CERT_REQUIRED
    assert client.minimum_version == ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_mutual_tls_puts_the_client_certificate_in_scope(pki_paths, server, host):
    ind = keypair(pki_paths, "ind")
    context = tls.client_context(ind, [str(pki_paths["ca"])])
    with httpx.Client(verify=context) as client:
        response = client.get(f"https://{host}:{server.port}/")
    assert response.status_code == 200
    assert response.text == hashlib.sha256(ind.cert_der).hexdigest()


def test_client_without_certificate_is_refused(pki_paths, server):
    context = ssl.create_default_context(cafile=str(pki_paths["ca"]))
    with httpx.Client(verify=context) as client, pytest.raises(httpx.TransportError):
        client.get(server.url + "/")


def test_client_certificate_from_another_ca_is_refused(pki_paths, server):
    context = tls.client_context(keypair(pki_paths, "ind-other-ca"), [str(pki_paths["ca"])])
    with httpx.Client(verify=context) as client, pytest.raises(httpx.TransportError):
        client.get(server.url + "/")


def test_server_from_another_ca_is_refused(pki_paths, server):
    context = tls.client_context(keypair(pki_paths, "ind"), [str(pki_paths["other-ca"][1])])
    with httpx.Client(verify=context) as client, pytest.raises(httpx.ConnectError):
        client.get(server.url + "/")


def test_peer_protocol_name_from_design():
    from gateway.wire.server import PeerCertProtocol

    assert tls.PeerCertH11Protocol is PeerCertProtocol


def test_accepted_connections_send_without_waiting_for_an_ack(pki_paths, server):
    """TCP_NODELAY on every accepted connection: an answer is written in two parts (headers, then
    body); without it the body waited for the client's delayed ACK, about 40 ms a request."""
    import socket

    context = tls.client_context(keypair(pki_paths, "ind"), [str(pki_paths["ca"])])
    with httpx.Client(verify=context) as client:
        assert client.get(server.url + "/").status_code == 200  # the connection stays open (keep-alive)
        connections = list(server.server.server_state.connections)
        assert connections
        for protocol in connections:
            sock = protocol.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
