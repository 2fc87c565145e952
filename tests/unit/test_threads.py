"""A thread's Python name reaches the operating system (``top -H``, ``ps -L``, /proc)."""

from __future__ import annotations

import threading
from pathlib import Path

from gateway.core.threads import name_this_thread, os_name


def _named_in(name: str) -> str:
    seen: list[str] = []

    def run() -> None:
        name_this_thread()
        seen.append(Path("/proc/thread-self/comm").read_text().rstrip("\n"))

    t = threading.Thread(target=run, name=name)
    t.start()
    t.join(10)
    return seen[0]


def test_the_kernel_sees_the_python_name() -> None:
    assert _named_in("duo-3") == "duo-3"


def test_a_long_name_keeps_its_first_15_bytes() -> None:
    assert _named_in("console-bulk_0123456789") == "console-bulk_01"


def test_a_name_outside_ascii_is_replaced_not_refused() -> None:
    assert os_name("inné-1") == b"inn?-1"
