"""gateway/ops/memory.py: glibc takes the arena limit and the trim; elsewhere they do nothing."""

from __future__ import annotations

import platform
import subprocess
import sys

from gateway.ops import memory

GLIBC = platform.libc_ver()[0] == "glibc"


def test_the_arena_limit_and_the_trim_reach_glibc() -> None:
    # In a fresh interpreter: the limit is meant for start-up, before threads.
    code = "from gateway.ops import memory; print(memory.limit_arenas(), memory.trim())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == (["True", "True"] if GLIBC else ["False", "False"])


def test_trim_gives_freed_c_memory_back() -> None:
    if not GLIBC:
        assert memory.trim() is False
        return
    # 64 MB in 64 KB blocks below glibc's mmap threshold, each followed by a small block that stays:
    # once the big ones are freed they are holes no free() can give back (fragmentation), until
    # the arena is trimmed.
    code = (
        "import ctypes, ctypes.util\n"
        "from gateway.ops import memory\n"
        "libc = ctypes.CDLL(ctypes.util.find_library('c'))\n"
        "libc.malloc.restype = ctypes.c_void_p\n"
        "libc.malloc.argtypes = [ctypes.c_size_t]\n"
        "libc.free.argtypes = [ctypes.c_void_p]\n"
        "rss = lambda: int(open('/proc/self/statm').read().split()[1]) * 4096\n"
        "blocks, pins = [], []\n"
        "for _ in range(1024):\n"
        "    b = libc.malloc(65536); ctypes.memset(b, 1, 65536); blocks.append(b); pins.append(libc.malloc(64))\n"
        "for b in blocks: libc.free(b)\n"
        "before = rss(); memory.trim(); after = rss()\n"
        "print(before - after)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(out) > 32 * 2**20
