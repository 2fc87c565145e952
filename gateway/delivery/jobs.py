"""Periodic jobs, run on a lease: the wiring (``gateway/daemon.py``) registers them.

Today's jobs are the routes' (IND gap catch-up and reconciliation in ``gateway/routes/ind_to_duo.py``,
CJIB's status feed in ``gateway/routes/cjib_to_duo.py``); this module names no partner. Each job
runs on one process at a time: before a run it takes a leased row in ``job_leases``
(``Store.take_job_lease``); a process that dies lets its lease expire and another takes over.
A job's failure is logged and retried at its next tick; it never stops the daemon.

``Heartbeat`` (its own thread, so a long job run never delays it) writes this process's row in
``heartbeats`` every few seconds; health fails when no process has written one for
``health.max_heartbeat_age_seconds``. Heartbeats are wall-clock time (``time.time()``), not the
runtime's clock: whether a process is alive is a fact of the real world, also in tests that
move the clock of the messages.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from gateway.core.errors import GatewayError, StoreError
from gateway.core.observability import log_store_error
from gateway.core.store import OUTBOX_CHANNEL, RULES_CHANNEL
from gateway.core.threads import name_this_thread
from gateway.runtime import Runtime

__all__ = ["Job", "JobRunner", "Heartbeat", "Listener", "heartbeat_interval", "RULES_POLL_SECONDS"]

#: Rows of processes not seen for this long are removed when a process starts.
HEARTBEAT_KEEP_SECONDS = 7 * 24 * 3600.0


@dataclass
class Job:
    name: str
    interval_seconds: float
    run: Callable[[Runtime], object]
    next_at: float = 0.0
    #: Leased jobs run on one process at a time; the others (e.g. following a key switch) on each.
    leased: bool = True


#: A job that failed on the store is tried again after this long (or its interval, if shorter).
RETRY_AFTER_STORE_ERROR_SECONDS = 2.0


class JobRunner(threading.Thread):
    """Runs each job when it is due; between runs it sleeps until the next one is (no tick)."""

    def __init__(self, rt: Runtime, jobs: list[Job] | None = None, tick_seconds: float = 0.05) -> None:
        super().__init__(name="jobs", daemon=True)
        self.rt = rt
        self.jobs = jobs if jobs is not None else []
        #: The shortest sleep between two looks (a job that failed may be due again at once).
        self.tick_seconds = tick_seconds
        self._stop_event = threading.Event()

    def run(self) -> None:
        name_this_thread()
        while not self._stop_event.is_set():
            now = time.monotonic()
            for job in self.jobs:
                if now >= job.next_at:
                    job.next_at = now + job.interval_seconds
                    self.run_job(job)
            soonest = min((job.next_at for job in self.jobs), default=time.monotonic() + 60.0)
            self._stop_event.wait(max(self.tick_seconds, soonest - time.monotonic()))

    def run_job(self, job: Job) -> None:
        owner = f"{self.rt.config.instance}:{os.getpid()}:{id(self)}"
        try:
            # The lease lasts one interval: at most one run per interval across all processes, and
            # after a crash another process takes the job over at its next tick.
            if job.leased and not self.rt.store.take_job_lease(job.name, owner, max(job.interval_seconds, 5.0)):
                return
            job.run(self.rt)
        except StoreError as exc:
            # The store is down (or failed): try again soon, not only after a whole interval, so
            # the job runs within seconds of the database answering again.
            job.next_at = min(job.next_at, time.monotonic() + RETRY_AFTER_STORE_ERROR_SECONDS)
            log_store_error(self.rt.log, exc, "job_failed", job=job.name, stage="processing")
        except GatewayError as exc:
            self.rt.log.warning("job_failed", job=job.name, **{"stage": "processing", **exc.context()})
        except Exception as exc:  # noqa: BLE001 - a job bug must not stop the daemon
            self.rt.log.error("job_crashed", job=job.name, stage="processing", error=type(exc).__name__)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


def heartbeat_interval(max_age_seconds: float) -> float:
    """How often a process beats: four times within the allowed age, at most every 5 s."""
    return max(0.2, min(5.0, max_age_seconds / 4))


class Heartbeat(threading.Thread):
    """This process's heartbeat: instance, pid, host, started_at, last_seen in ``heartbeats``."""

    def __init__(self, rt: Runtime, interval_seconds: float | None = None) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.rt = rt
        self.interval_seconds = interval_seconds or heartbeat_interval(rt.config.health.max_heartbeat_age_seconds)
        self.instance = rt.config.instance
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self.started_at = time.time()
        self.process = f"{self.instance}@{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self._stop_event = threading.Event()

    def beat(self) -> bool:
        try:
            self.rt.store.beat(self.process, instance=self.instance, pid=self.pid, host=self.host,
                               started_at=self.started_at)
            return True
        except StoreError as exc:
            log_store_error(self.rt.log, exc, "heartbeat_failed", instance=self.instance, stage="lifecycle")
            return False

    def start(self) -> None:
        """Beat once at once (health sees the process from its first moment), then in the thread."""
        try:
            self.rt.store.prune_heartbeats(time.time() - HEARTBEAT_KEEP_SECONDS)
        except StoreError:
            pass
        self.beat()
        super().start()

    def run(self) -> None:
        name_this_thread()
        while not self._stop_event.wait(self.interval_seconds):
            self.beat()

    def stop(self) -> None:
        """Stop beating and mark this process stopped (a clean stop: no longer alive)."""
        self._stop_event.set()
        if self.is_alive():
            self.join(10)
        try:
            self.rt.store.beat_stopped(self.process)
        except StoreError as exc:
            log_store_error(self.rt.log, exc, "heartbeat_failed", instance=self.instance, stage="lifecycle")



#: How often each process reads the active rule set from the store when nothing announced a change
#: (``gateway rules apply`` announces it on PostgreSQL, heard by the ``Listener``).
RULES_POLL_SECONDS = {"postgresql": 30.0, "sqlite": 2.5}


class Listener(threading.Thread):
    """PostgreSQL: this process's one listening connection (LISTEN/NOTIFY), so it wakes on work.

    New outbox work announced by another process (``Store``: NOTIFY in the transaction that queued
    it, for partners that process does not serve, e.g. `gateway retry` on the command line) rings
    one worker of the partner here (``Runtime.notify``); a rule set made active calls ``on_rules``.
    After each (re)connection every partner's workers look once, since announcements made while
    nobody listened are lost (the workers' fallback look covers a listener that is down).
    """

    def __init__(self, rt: Runtime, on_rules: Callable[[], None] | None = None) -> None:
        super().__init__(name="listener", daemon=True)
        self.rt = rt
        self.on_rules = on_rules
        self._stop_event = threading.Event()

    def run(self) -> None:
        name_this_thread()
        try:
            self.rt.store.listen([OUTBOX_CHANNEL, RULES_CHANNEL], self._heard, self._stop_event,
                                 on_connect=self._connected)
        except Exception as exc:  # noqa: BLE001 - the workers' fallback look still finds the work
            self.rt.log.error("listener_stopped", error=type(exc).__name__, stage="lifecycle")

    def _heard(self, channel: str, payload: str) -> None:
        if channel == OUTBOX_CHANNEL:
            self.rt.notify(payload)
        elif channel == RULES_CHANNEL and self.on_rules is not None:
            self.on_rules()

    def _connected(self) -> None:
        for bell in self.rt.wake.values():
            bell.schedule(0.0)
        if self.on_rules is not None:
            self.on_rules()

    def stop(self) -> None:
        self._stop_event.set()
        if not self.is_alive():
            return
        try:  # wakes the listening connection, which then sees the stop
            self.rt.store.notify(OUTBOX_CHANNEL, "")
        except StoreError:
            pass
        self.join(5)
