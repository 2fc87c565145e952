"""Each long-lived thread's name, given to the operating system as well.

Python 3.11 names its threads only for itself: ``top -H``, ``ps -L``, ``pidstat -t`` and
``/proc/<pid>/task/*/comm`` show every thread of ``gateway run`` as the interpreter, so an operator
cannot tell whether the intake, a partner's delivery workers or the jobs burn the CPU. Linux keeps
a name of at most 15 bytes per thread; each thread sets its own when it starts.
"""

from __future__ import annotations

import threading

#: Linux's limit for a thread's name (16 bytes with the terminating NUL).
OS_NAME_BYTES = 15


def os_name(name: str) -> bytes:
    """The name as the kernel keeps it: ASCII, at most 15 bytes."""
    return name.encode("ascii", "replace")[:OS_NAME_BYTES]


def name_this_thread() -> None:
    """Give the calling thread's Python name to the operating system (Linux; elsewhere nothing)."""
    try:
        with open("/proc/thread-self/comm", "wb") as comm:
            comm.write(os_name(threading.current_thread().name))
    except OSError:
        pass  # no /proc (not Linux): only the operating system's view of the name is lost
