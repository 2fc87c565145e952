"""A free TCP port on loopback, for test servers that must be told their port before they start
(the SMTP server, a PostgreSQL server of a test's own)."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
