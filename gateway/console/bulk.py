"""Bulk actions on dead letters in the background, so the console can show their progress.

A job retries or resolves each delivery exactly as ``api.act`` does one by one (each with its own
audit entry), in one worker thread of this process (one store connection, reused); the page
``/console/dead-letters/jobs/ID`` reloads itself every second until the job is done. Jobs live in
the memory of the process that serves the console: they end with it (what was done stays done).
"""

from __future__ import annotations

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from gateway.console import api
from gateway.console.auth import Session
from gateway.core.threads import name_this_thread
from gateway.runtime import Runtime

__all__ = ["Job", "start", "get"]


@dataclass
class Job:
    id: str
    operator: str
    action: str
    total: int
    done: int = 0
    skipped: int = 0  # changed state meanwhile (someone else acted): refused and audited by act
    finished: bool = False
    error: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def to_dict(self) -> dict[str, Any]:
        with self.lock:
            return {"id": self.id, "action": self.action, "total": self.total, "done": self.done,
                    "skipped": self.skipped, "finished": self.finished, "error": self.error}


class _Jobs:
    """The jobs of this process and their one worker thread (closed with the runtime's clients)."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console-bulk",
                                       initializer=name_this_thread)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _jobs(rt: Runtime) -> _Jobs:
    holder = rt.clients.get("console-bulk")
    if holder is None:
        holder = rt.clients["console-bulk"] = _Jobs()
    return holder


def start(rt: Runtime, s: Session, q: dict[str, str], action: str, expected: str | None) -> Job:
    """Check the preview's count and the role now; then act on each dead letter in the background."""
    preview = api.bulk(rt, s, q)
    if expected != str(preview["count"]):
        raise api.Refused(409, f"the dead letters changed since the preview ({expected} then, {preview['count']} "
                               "now): preview again")
    ids = api.dead_letter_ids(rt, q)
    if not ids:
        raise api.Refused(409, "no dead letters match")
    api.act(rt, s, action, str(ids[0]), q.get("reason"))  # the first one now: a refusal is seen at once
    job = Job(secrets.token_urlsafe(12), s.operator, action, len(ids), done=1)
    holder = _jobs(rt)
    holder.jobs[job.id] = job
    holder.pool.submit(_run, rt, s, job, ids[1:], q.get("reason"))
    return job


def _run(rt: Runtime, s: Session, job: Job, ids: list[int], reason: str | None) -> None:
    for i in ids:
        try:
            api.act(rt, s, job.action, str(i), reason)
            with job.lock:
                job.done += 1
        except api.Refused:
            with job.lock:
                job.skipped += 1
        except Exception as exc:  # noqa: BLE001 - the page must say the job stopped, and why
            with job.lock:
                job.error, job.finished = f"stopped: {type(exc).__name__}", True
            return
    with job.lock:
        job.finished = True


def get(rt: Runtime, s: Session, job_id: str) -> Job:
    job = _jobs(rt).jobs.get(job_id)
    if job is None:
        raise api.Refused(404, "no such bulk job in this gateway process (it may have restarted)")
    return job
