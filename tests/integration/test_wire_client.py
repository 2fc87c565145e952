"""gateway.wire.client.PinnedHttps against real TLS servers on loopback (mutual TLS, the sandbox PKI)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.security import tls
from gateway.security.keys import KeyPair, PartnerTrust
from gateway.wire.client import PinnedHttps, ServerCertificateRefused, Timeout, Unanswered
from gateway.wire.server import serve_in_thread
from tests.pki_fixtures import keypair, trust


@dataclass
class Keys:
    dir: Path
    gateway: KeyPair
    duo: KeyPair
    duo_trust: PartnerTrust
    gateway_trust: PartnerTrust  # pins the gateway's certificate: the wrong one for DUO's server

    def client_context(self) -> ssl.SSLContext:
        return tls.client_context(self.gateway, [str(self.dir / "ca.pem")])

    def server_context(self) -> ssl.SSLContext:
        return tls.server_context(self.duo, [str(self.dir / "ca.pem")])


@pytest.fixture(scope="module")
def keys(pki_paths: dict[str, Any]) -> Keys:
    # The suite's sandbox PKI (tests/conftest.py), with the helpers the security tests use.
    return Keys(pki_paths["dir"], keypair(pki_paths, "gateway"), keypair(pki_paths, "duo"),
                trust(pki_paths, "duo"), trust(pki_paths, "gateway"))


class PortApp:
    """Answers with the client's port (a new port is a new connection) and counts the requests."""

    def __init__(self, *, delay: float = 0.0, body: bytes | None = None) -> None:
        self.requests = 0
        self.delay = delay
        self.body = body

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.requests += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        body = self.body if self.body is not None else str(scope["client"][1]).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture()
def app_server(keys: Keys) -> Iterator[tuple[PortApp, str]]:
    app = PortApp()
    with serve_in_thread(app, ssl_context=keys.server_context()) as server:
        yield app, server.url


def _client(keys: Keys, url: str, **kw: Any) -> PinnedHttps:
    kw.setdefault("timeout_seconds", 5)
    return PinnedHttps(url, keys.client_context(), keys.duo_trust, **kw)


def test_one_kept_alive_connection_and_a_new_one_after_the_session_lifetime(keys: Keys, app_server) -> None:
    app, url = app_server
    client = _client(keys, url, max_session_seconds=0.5)
    first, again = (client.request("GET", "/", None, {}).content for _ in range(2))
    time.sleep(0.8)
    later = client.request("GET", "/", None, {})
    client.close()
    assert first == again and later.content != first  # WT008: a new handshake after the lifetime
    assert later.status_code == 200 and later.headers["content-length"] == str(len(later.content))
    assert app.requests == 3


def test_a_server_certificate_not_pinned_gets_nothing(keys: Keys, app_server) -> None:
    app, url = app_server
    client = PinnedHttps(url, keys.client_context(), keys.gateway_trust, timeout_seconds=5)
    with pytest.raises(ServerCertificateRefused) as refused:
        client.request("POST", "/", b"<x/>", {})
    client.close()
    assert refused.value.refusal.code and app.requests == 0


def test_the_certificate_is_checked_again_before_a_request_on_a_kept_alive_connection(keys: Keys, app_server) -> None:
    app, url = app_server
    client = _client(keys, url)
    client.request("GET", "/", None, {})
    client.trust = keys.gateway_trust  # DUO's certificate no longer acceptable (as after a revocation)
    with pytest.raises(ServerCertificateRefused):
        client.request("POST", "/", b"<x/>", {})
    client.close()
    assert app.requests == 1


def test_a_server_that_does_not_answer_in_time_is_a_timeout(keys: Keys) -> None:
    with serve_in_thread(PortApp(delay=1.0), ssl_context=keys.server_context()) as server:
        client = _client(keys, server.url, timeout_seconds=0.3)
        with pytest.raises(Timeout):
            client.request("GET", "/", None, {})
        client.close()


def test_no_server_is_unanswered(keys: Keys) -> None:
    client = _client(keys, "https://127.0.0.1:9", timeout_seconds=1)
    with pytest.raises(Unanswered) as failed:
        client.request("GET", "/", None, {})
    assert failed.value.kind == "ConnectionRefusedError"


def test_an_answer_larger_than_the_bound_is_refused(keys: Keys) -> None:
    with serve_in_thread(PortApp(body=b"x" * 100), ssl_context=keys.server_context()) as server:
        client = _client(keys, server.url, max_response_bytes=99)
        with pytest.raises(Unanswered) as failed:
            client.request("GET", "/", None, {})
        assert failed.value.kind == "ResponseTooLarge"
        assert len(_client(keys, server.url, max_response_bytes=100).request("GET", "/", None, {}).content) == 100


def test_threads_sharing_one_client_each_get_whole_answers(keys: Keys, app_server) -> None:
    app, url = app_server
    client = _client(keys, url)
    answers: list[int] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(10):
                answers.append(int(client.request("GET", "/", None, {}).content))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()
    assert not errors and len(answers) == 40 and app.requests == 40
    assert len(set(answers)) <= 4  # one connection per concurrent request at most, kept alive


def test_an_idle_connection_the_server_closed_is_not_used_again(keys: Keys) -> None:
    """A server that answers one request per connection with keep-alive, then hangs up while idle."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    context = keys.server_context()
    served: list[int] = []

    def serve(count: int) -> None:
        for _ in range(count):
            raw, _ = listener.accept()
            with context.wrap_socket(raw, server_side=True) as conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(4096)
                served.append(1)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok")
                time.sleep(0.1)  # then closes, as a server's keep-alive timeout does

    thread = threading.Thread(target=serve, args=(2,), daemon=True)
    thread.start()
    client = _client(keys, f"https://127.0.0.1:{port}")
    assert client.request("GET", "/", None, {}).content == b"ok"
    time.sleep(0.4)  # the server has closed the kept-alive connection by now
    assert client.request("GET", "/", None, {}).content == b"ok"  # on a new connection, not an error
    client.close()
    thread.join(5)
    listener.close()
    assert len(served) == 2
