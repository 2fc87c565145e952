"""The C allocator of a long-running ``gateway run``: few arenas, and freed memory given back.

glibc gives each thread that allocates its own malloc arena (up to 8 per core). The gateway's
threads (the request pool, the outbox workers, the jobs, the refresher) allocate and free in
turns through lxml, libxmlsec1, OpenSSL and SQLite, outside Python's own allocator, and freed
chunks scattered over many arenas stay resident: the soak (bench/RESULTS.md) saw the resident
memory grow by tens of megabytes over 100,000 notifications with no Python object left behind.
Two arenas, and ``malloc_trim`` once a minute (the ``memory`` job), keep it flat.

Elsewhere than glibc (musl, macOS) both calls do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

__all__ = ["ARENAS", "limit_arenas", "trim"]

#: ``M_ARENA_MAX`` from glibc's malloc.h.
_M_ARENA_MAX = -8
#: Arenas for the whole process: contention is low (the GIL serialises most allocation anyway).
ARENAS = 2


def _libc() -> Any | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        return None
    return libc


_LIBC = _libc()


def limit_arenas(arenas: int = ARENAS) -> bool:
    """At start-up, before the threads: at most ``arenas`` malloc arenas. True when glibc took it."""
    return _LIBC is not None and bool(_LIBC.mallopt(_M_ARENA_MAX, arenas))


def trim() -> bool:
    """Give the free memory at the top and inside each arena back to the system. True if any was."""
    return _LIBC is not None and bool(_LIBC.malloc_trim(0))
