"""Real alert receivers on loopback for the alert tests: an SMTP server that requires STARTTLS
(aiosmtpd, with a certificate of the test CA) and a webhook receiver (http.server)."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from tests.ports import free_port


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        with self.lock:
            self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


class SmtpServer:
    """An SMTP server on loopback that refuses mail before STARTTLS."""

    def __init__(self, cert: Path, key: Path) -> None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert), str(key))
        self.inbox = _Inbox()
        self.port = free_port()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port, tls_context=ctx,
                                     require_starttls=True)
        self.controller.start()

    @property
    def messages(self) -> list[Any]:
        with self.inbox.lock:
            return list(self.inbox.messages)

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]

    def stop(self) -> None:
        self.controller.stop()


class WebhookReceiver:
    """Records every JSON body posted to it; answers ``status`` (settable, to play a broken receiver)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if receiver.status == 200:
                    receiver.bodies.append(json.loads(body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def alerts_config(smtp: SmtpServer, webhook: WebhookReceiver, ca: Path, **extra: Any) -> dict[str, Any]:
    return {"smtp": {"host": "127.0.0.1", "port": smtp.port, "ca_file": str(ca), "sender": "gateway@example.nl",
                     "to": ["ketenbeheer@example.nl"]},
            "webhook": {"url": webhook.url}, **extra}


def receivers(pki_paths: dict[str, Any], name: str) -> Iterator[tuple[SmtpServer, WebhookReceiver]]:
    """Both receivers (the SMTP server with a certificate of the test CA), stopped afterwards; for a fixture."""
    key, cert = pki_paths["issue"](name, common_name="smtp.test")
    smtp, webhook = SmtpServer(cert, key), WebhookReceiver()
    yield smtp, webhook
    smtp.stop()
    webhook.stop()
