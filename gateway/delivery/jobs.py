"""Periodic jobs: IND gap catch-up and reconciliation, CJIB's status feed.

Each job runs on one process at a time: before a run it takes a leased row in ``job_leases``
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
from gateway.runtime import Runtime

__all__ = ["Job", "JobRunner", "Heartbeat", "heartbeat_interval", "ind_catch_up", "ind_reconcile"]

#: Rows of processes not seen for this long are removed when a process starts.
HEARTBEAT_KEEP_SECONDS = 7 * 24 * 3600.0


@dataclass
class Job:
    name: str
    interval_seconds: float
    run: Callable[[Runtime], object]
    next_at: float = 0.0


class JobRunner(threading.Thread):
    def __init__(self, rt: Runtime, jobs: list[Job] | None = None, tick_seconds: float = 0.5) -> None:
        super().__init__(name="jobs", daemon=True)
        self.rt = rt
        self.jobs = jobs if jobs is not None else default_jobs(rt)
        self.tick_seconds = tick_seconds
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            now = time.monotonic()
            for job in self.jobs:
                if now >= job.next_at:
                    job.next_at = now + job.interval_seconds
                    self.run_job(job)
            self._stop_event.wait(self.tick_seconds)

    def run_job(self, job: Job) -> None:
        owner = f"{self.rt.config.instance}:{os.getpid()}:{id(self)}"
        try:
            # The lease lasts one interval: at most one run per interval across all processes, and
            # after a crash another process takes the job over at its next tick.
            if not self.rt.store.take_job_lease(job.name, owner, max(job.interval_seconds, 5.0)):
                return
            job.run(self.rt)
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
        except StoreError:
            self.rt.log.error("heartbeat_failed", instance=self.instance, stage="lifecycle")
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
        while not self._stop_event.wait(self.interval_seconds):
            self.beat()

    def stop(self) -> None:
        """Stop beating and mark this process stopped (a clean stop: no longer alive)."""
        self._stop_event.set()
        if self.is_alive():
            self.join(10)
        try:
            self.rt.store.beat_stopped(self.process)
        except StoreError:
            self.rt.log.error("heartbeat_failed", instance=self.instance, stage="lifecycle")


def default_jobs(rt: Runtime) -> list[Job]:
    out = []
    if rt.config.partner("ind").url:
        grace = rt.config.ind.gap_grace_seconds
        out.append(Job("ind-catch-up", max(1.0, min(grace / 2, 30.0)), ind_catch_up))
        out.append(Job("ind-reconcile", rt.config.ind.reconcile_interval_seconds, ind_reconcile))
    if "cjib" in rt.config.partners and rt.secure:
        try:
            from gateway.routes import cjib_to_duo as claims
        except ImportError:
            return out
        out.append(Job("cjib-feed", rt.config.cjib.poll_interval_seconds, claims.poll_feed))
    return out


def _feed(rt: Runtime) -> object:
    client = rt.clients.get("ind-feed")
    if client is None:
        from adapters.ind.client import IndFeedClient
        pc = rt.config.partner("ind")
        anchors = pc.trust_anchor_files
        client = IndFeedClient(pc.url, rt.own, rt.trust.get("ind"), ca_file=anchors[0] if anchors else None,
                               timeout_seconds=pc.policy.timeout_seconds, clock=rt.clock)
        rt.clients["ind-feed"] = client
    return client


def ind_catch_up(rt: Runtime) -> int:
    """Fetch every missing volgnummer whose gap is older than the grace period."""
    now = rt.clock.time()
    taken = 0
    for start, seen in rt.store.ind_gaps(rt.config.ind.first_volgnummer):
        if now - seen < rt.config.ind.gap_grace_seconds:
            continue
        rt.log.warning("ind_gap", stage="receiving", first_missing=start, gap_age_seconds=round(now - seen))
        taken += fetch_from(rt, start, stop_at_present=True)
    return taken


def ind_reconcile(rt: Runtime) -> int:
    """Ask IND how far it is; take in everything after the highest number we hold."""
    return fetch_from(rt, rt.store.ind_highest() + 1, stop_at_present=False)


def fetch_from(rt: Runtime, start: int, *, stop_at_present: bool, page: int = 100) -> int:
    from adapters.ind import server as ind_server
    from gateway.core.errors import InboundRefused
    from gateway.core.store import InboundRecord
    from gateway.routes.common import record_refusal
    from gateway.wire import xmlsafe

    client = _feed(rt)
    taken = 0
    vanaf = start
    while True:
        result = client.haal_meldingen(vanaf, page)  # type: ignore[attr-defined]
        rt.store.set_kv("ind.laatste_volgnummer", str(result.laatste_volgnummer))
        if not result.meldingen:
            return taken
        for raw in result.meldingen:
            received = rt.clock.now()
            record = InboundRecord(partner="ind", operation="HaalMeldingen", raw=raw,
                                   received_at=received.timestamp(), channel="feed")
            try:
                element = xmlsafe.parse(raw, max_bytes=rt.config.ind.max_message_bytes)
                answer = ind_server.accept_melding(rt, element, record, received)
                taken += 1 if answer.status == 200 else 0
            except InboundRefused as exc:
                record_refusal(rt, record, exc, status=0, body=b"")
        highest = rt.store.ind_highest()
        vanaf = max(vanaf + len(result.meldingen), highest + 1 if not stop_at_present else vanaf + len(result.meldingen))
        if stop_at_present and not rt.store.ind_gaps(rt.config.ind.first_volgnummer):
            return taken
        if vanaf > result.laatste_volgnummer:
            return taken
