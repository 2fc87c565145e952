"""Outbox workers: claim due deliveries with a lease, make one attempt, decide what next.

Adapters classify (``gateway.core.adapter.Outcome``); this module decides, from the partner's
``RetryPolicy``:

- success    -> delivered; the receipt is stored; route follow-ups are queued in the same commit.
- permanent  -> dead, with the reason (an operator can ``gateway retry`` or ``gateway resolve``);
               except a refusal the route handles (CJIB 400 -> DUO is told), which is final.
- retry      -> pending again at ``now + max(Retry-After, back-off)``; back-off is exponential with
               full jitter (tenacity's ``wait_random_exponential``) between the policy's bounds.
               Out of attempts, or older than ``max_age_seconds`` -> dead.

Long waits live in the store (``next_attempt_at``), not in a sleeping thread, so they survive
restarts. A crashed worker's leases expire and another worker takes the rows. Attempt numbers
count the attempts recorded (a crash between claim and record leaves no gap, and such claims do
not use up ``max_attempts``); a row claimed ``CRASHED_CLAIMS_FACTOR × max_attempts`` times
without an attempt being recorded (it took its process down each time) goes to the dead
letters unsent. Each partner has
a circuit breaker: after ``breaker_failures`` consecutive transient failures no worker sends to
that partner for ``breaker_open_seconds``; then one probe decides whether it closes again.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import tenacity

from gateway.core.adapter import Delivery, Outcome, Sender
from gateway.core.config import RetryPolicy
from gateway.core.errors import StoreError
from gateway.core.observability import log_store_error
from gateway.core.store import NewDelivery
from gateway.core.threads import name_this_thread
from gateway.runtime import Runtime

__all__ = ["CircuitBreaker", "Worker", "WorkerPool", "backoff_seconds", "FollowUp", "CRASHED_CLAIMS_FACTOR"]

#: A row claimed this many times ``max_attempts`` without an attempt recorded goes dead unsent.
#: Above 1: a process killed while it holds a batch is not the row's fault, and must not cost
#: it its attempts; but a row that takes down every process that claims it must stop somewhere.
CRASHED_CLAIMS_FACTOR = 2

#: After a failure of the store, a worker looks again this soon (the store's own back-off applies).
STORE_RETRY_SECONDS = 1.0
#: A row due but not claimable by this worker right now (another process is claiming it; a lock):
#: look again after this long, not in a loop (new work in this process rings at once anyway).
RECHECK_SECONDS = 1.0

#: A route hook: given a finished delivery and its outcome, what to queue next, and whether a
#: permanent outcome is handled (final, not dead).
FollowUp = Callable[[Delivery, Outcome], tuple[list[NewDelivery], bool]]


def backoff_seconds(policy: RetryPolicy, attempt: int) -> float:
    """Exponential back-off with full jitter for the given (1-based) attempt number.

    Always between ``backoff_initial_seconds`` and ``backoff_max_seconds`` (as the README says):
    the jitter is drawn uniformly between the initial value and the exponential ceiling
    ``initial × 2^(attempt-1)``, capped at the maximum.
    """
    low = policy.backoff_initial_seconds
    high = max(low, policy.backoff_max_seconds)
    wait = tenacity.wait_random_exponential(multiplier=low, max=high, min=low)
    state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = max(1, attempt)
    # Clamped as well: tenacity releases before 8.3 drew from 0, not from ``min``.
    return min(high, max(low, float(wait(state))))


class CircuitBreaker:
    """closed -> (N transient failures) -> open -> (wait) -> half-open: one probe -> closed/open."""

    def __init__(self, failures: int, open_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.open_seconds = open_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._consecutive = 0
        self._open_until = 0.0
        self._probing = False

    @property
    def state(self) -> str:
        with self._lock:
            if self._open_until == 0.0:
                return "closed"
            return "half-open" if self._clock() >= self._open_until else "open"

    def allow(self) -> int:
        """How many deliveries a worker may claim now: many when closed, 1 probe, or 0."""
        with self._lock:
            if self._open_until == 0.0:
                return -1
            if self._clock() < self._open_until or self._probing:
                return 0
            self._probing = True
            return 1

    def record(self, outcome_kind: str) -> bool:
        """Count an outcome; True when this outcome opened the breaker."""
        with self._lock:
            self._probing = False
            if outcome_kind != "retry":
                self._consecutive = 0
                self._open_until = 0.0
                return False
            self._consecutive += 1
            if self._consecutive >= self.failures or self._open_until:
                self._open_until = self._clock() + self.open_seconds
                return True
            return False

    def seconds_left(self) -> float:
        """How long the breaker stays open (0 when closed or half-open)."""
        with self._lock:
            if self._open_until == 0.0:
                return 0.0
            return max(0.0, self._open_until - self._clock())

    def release_probe(self) -> None:
        with self._lock:
            self._probing = False


class Worker(threading.Thread):
    """One delivery worker for one partner."""

    def __init__(self, rt: Runtime, sender: Sender, breaker: CircuitBreaker, *, name: str,
                 follow_up: FollowUp | None = None, batch: int = 8) -> None:
        super().__init__(name=name, daemon=True)
        self.rt = rt
        self.sender = sender
        self.partner = sender.partner
        self.policy = rt.config.partner(self.partner).policy
        self.breaker = breaker
        self.follow_up = follow_up
        self.batch = batch
        # The pid keeps owners apart when several processes share one config (one `instance`).
        self.owner = f"{rt.config.instance}:{os.getpid()}:{name}"
        self.stopping = threading.Event()
        self.in_flight = threading.Event()
        # What the store could not take when it went away, kept until it answers again: the
        # outcome of an attempt that was made (recorded then, so the row does not wait for its
        # lease to run out) and the rest of the batch, claimed but not attempted (released).
        self._unrecorded: list[dict[str, Any]] = []
        self._unreleased: list[int] = []
        # What the last run_once claimed: how many rows, its limit, whether any row was ordered.
        self._claimed = 0
        self._limit = batch
        self._ordered = False
        # A delivery intake stored leased to this worker (Doorbell.hand): attempted without a claim.
        self._handed: Delivery | None = None
        self._last_state = ""  # the state the last attempt left its delivery in
        self._settled = False  # the last run_once changed no due time (see _run_handed)

    def run(self) -> None:
        name_this_thread()
        bell = self.rt.wake[self.partner]
        while not self.stopping.is_set():
            try:
                self._catch_up()
                worked = self.run_once()
                if worked:
                    # The rows this claim took beyond the first answer rings of their own.
                    bell.take(self._claimed - 1)
                    if self._claimed >= self._limit or self._ordered:
                        # A full batch: more may be due. An ordered row done: the next one of its
                        # order may be claimable now (no ring announces that).
                        continue
                if not self._settled:
                    self._schedule(bell)
            except StoreError as exc:
                log_store_error(self.rt.log, exc, partner=self.partner, stage="sending")
                bell.schedule(STORE_RETRY_SECONDS)
            if self.stopping.is_set():
                break
            if bell.wait(self.owner) == "handed":
                self._handed = bell.handed(self.owner)
        self._give_back_handed()

    def _give_back_handed(self) -> None:
        """Stopping with a delivery handed over and not attempted: release it (or, if the store
        is down, its lease runs out)."""
        if self._handed is not None:
            try:
                self.rt.store.release([self._handed.id], self.owner)
            except StoreError as exc:
                log_store_error(self.rt.log, exc, partner=self.partner, stage="sending")
            self._handed = None

    def _catch_up(self) -> None:
        """Record what the store could not take before it went away (raises StoreError while down)."""
        while self._unrecorded:
            self.rt.store.finish_attempt(**self._unrecorded[0])
            self._unrecorded.pop(0)
        if self._unreleased:
            self.rt.store.release(self._unreleased, self.owner)
            self._unreleased = []

    def _schedule(self, bell: Any) -> None:
        """Going idle: have one worker look again when the next pending row comes due (a retry's
        ``next_attempt_at``, a lease's end: another process's, if it died), or at the fallback."""
        due = self.rt.store.next_due(self.partner)
        if self.breaker.state == "open":
            bell.schedule(self.breaker.seconds_left())
        if due is None:
            return
        delay = due - self.rt.clock.time()
        # Due already, yet not claimed: a row another process (or a sibling) is about to claim,
        # or one locked for a moment. Look again soon, not in a loop.
        bell.schedule(delay if delay > 0 else RECHECK_SECONDS)

    def run_once(self) -> bool:
        """Claim and attempt one batch; False when there was nothing to do (or the breaker is open)."""
        self._claimed, self._ordered, self._settled = 0, False, False
        allowed = self.breaker.allow()
        if self._handed is not None:
            return self._run_handed(allowed)
        if allowed == 0:
            return False
        limit = self._limit = self.batch if allowed < 0 else 1
        abandoned: list[tuple[int, str, str, int]] = []
        claimed = self.rt.store.claim(self.partner, self.owner, limit=limit, lease_seconds=self.policy.lease_seconds,
                                      now=self.rt.clock.time(), max_unrecorded_claims=CRASHED_CLAIMS_FACTOR * self.policy.max_attempts,
                                      abandoned=abandoned)
        for outbox_id, operation, key, claims in abandoned:
            self.rt.log.error("delivery_abandoned", partner=self.partner, operation=operation, message_id=key,
                              outbox_id=outbox_id, claims_without_attempt=claims, stage="sending")
        if not claimed:
            if allowed == 1:
                self.breaker.release_probe()
            return False
        self._claimed = len(claimed)
        self._ordered = any(d.order_key is not None for d in claimed)
        self._attempt_all(claimed)
        return True

    def _run_handed(self, allowed: int) -> bool:
        """Attempt the delivery handed over (it is leased to this worker already), unless the
        breaker is open: then it is given back, to be claimed when the breaker lets it."""
        handed, self._handed = self._handed, None
        assert handed is not None
        if allowed == 0:
            self._unreleased = [handed.id]
            self._catch_up()
            return False
        self._claimed, self._limit, self._last_state = 1, self.batch, ""
        self._attempt_all([handed])
        # Done for good (not pending again): no due time changed, and none was taken from the
        # doorbell's schedule (a hand-over is not a poll), so there is no next_due to look up.
        self._settled = self._last_state != "pending"
        return True

    def _attempt_all(self, claimed: Sequence[Delivery]) -> None:
        lease_until = time.monotonic() + self.policy.lease_seconds
        for i, delivery in enumerate(claimed):
            if self.stopping.is_set() or (self.breaker.state == "open" and i > 0):
                # Leave the rest queued, untouched, for whoever runs next.
                self.rt.store.release([d.id for d in claimed[i:]], self.owner)
                return
            if time.monotonic() + self.policy.timeout_seconds + 5 > lease_until:
                self.rt.store.heartbeat([d.id for d in claimed[i:]], self.owner,
                                        lease_seconds=self.policy.lease_seconds, now=self.rt.clock.time())
                lease_until = time.monotonic() + self.policy.lease_seconds
            try:
                self.attempt(delivery)
            except StoreError:
                self._unreleased = [d.id for d in claimed[i + 1:]]
                raise

    def attempt(self, delivery: Delivery) -> None:
        started = self.rt.clock.time()
        t0 = time.perf_counter()
        self.in_flight.set()
        try:
            outcome = self.sender.send(delivery)
        except Exception as exc:  # noqa: BLE001 - a bug in an adapter must not stop the worker
            outcome = Outcome("retry", detail=f"adapter error: {type(exc).__name__}")
        finally:
            self.in_flight.clear()
        duration_ms = (time.perf_counter() - t0) * 1000
        opened = self.breaker.record(outcome.kind)
        self._finish(delivery, outcome, started, duration_ms)
        if opened:
            self.rt.metrics.breaker_open.labels(self.partner).set(1)
            self.rt.log.warning("circuit_open", partner=self.partner, stage="sending",
                                open_seconds=self.policy.breaker_open_seconds)
        elif outcome.kind != "retry":
            self.rt.metrics.breaker_open.labels(self.partner).set(0)

    def _finish(self, d: Delivery, outcome: Outcome, started: float, duration_ms: float) -> None:
        follow: list[NewDelivery] = []
        handled = False
        if self.follow_up is not None and outcome.kind in ("success", "permanent"):
            follow, handled = self.follow_up(d, outcome)
        state, next_at, detail = self._decide(d, outcome, handled)
        self._last_state = state
        event = _event_for(state, outcome, d)
        record: dict[str, Any] = dict(
            delivery=d, owner=self.owner, started_at=started, duration_ms=duration_ms,
            http_status=outcome.http_status, outcome=outcome.kind, detail=detail, new_state=state,
            next_attempt_at=next_at, receipt=outcome.receipt, receipt_ref=outcome.reference, enqueue=follow,
            message_event=event, now=self.rt.clock.time())
        try:
            ok = self.rt.store.finish_attempt(**record)
        except StoreError:
            self._unrecorded.append(record)  # recorded by _catch_up when the store is back
            raise
        self.rt.metrics.attempts.labels(self.partner, d.operation, outcome.kind).inc()
        self.rt.metrics.attempt_duration.labels(self.partner).observe(duration_ms / 1000)
        if state == "delivered" and ok:
            self.rt.metrics.latency.labels(self.partner, d.operation).observe(max(0.0, time.time() - d.created_at))
        for f in follow:
            self.rt.notify(f.partner)
        if "alarm" in outcome.extra:
            self.rt.metrics.alarms.labels(self.partner, str(outcome.extra["alarm"])).inc()
            self.rt.log.error("alarm", partner=self.partner, operation=d.operation, message_id=d.idempotency_key,
                              alarm=outcome.extra["alarm"], stage="sending")
        log = self.rt.log.info if outcome.kind == "success" else self.rt.log.warning
        log("attempt", partner=self.partner, operation=d.operation, message_id=d.idempotency_key,
            attempt=d.attempt, duration_ms=round(duration_ms, 2), outcome=outcome.kind, state=state,
            http_status=outcome.http_status, stage="sending", lease_kept=ok)

    def _decide(self, d: Delivery, outcome: Outcome, handled: bool) -> tuple[str, float | None, str]:
        if outcome.kind == "success":
            return "delivered", None, outcome.detail
        if outcome.kind == "permanent":
            return ("refused" if handled else "dead"), None, outcome.detail or "refused by the partner"
        age = self.rt.clock.time() - d.created_at
        # d.attempt is the attempts recorded (this one included): claims cut off by a crash are
        # not attempts made (Store.claim bounds those separately).
        if d.attempt >= self.policy.max_attempts:
            return "dead", None, f"out of attempts ({d.attempt}): {outcome.detail}"
        if age >= self.policy.max_age_seconds:
            return "dead", None, f"older than max_age_seconds: {outcome.detail}"
        wait = backoff_seconds(self.policy, d.attempt)
        if outcome.retry_after_seconds is not None:
            wait = max(wait, outcome.retry_after_seconds)
        return "pending", self.rt.clock.time() + wait, outcome.detail


def _event_for(state: str, outcome: Outcome, d: Delivery) -> tuple[str, str, dict[str, object] | None]:
    detail: dict[str, object] = {"partner": d.partner, "operation": d.operation, "attempt": d.attempt,
                                 "http_status": outcome.http_status}
    if state == "delivered":
        detail["reference"] = outcome.reference
        return ("sending", "delivered", detail)
    detail["detail"] = outcome.detail
    if state == "pending":
        detail["retry_after_seconds"] = outcome.retry_after_seconds
    return ("sending", {"pending": "attempt_failed", "dead": "dead", "refused": "refused"}[state], detail)


class WorkerPool:
    """All workers of one process; ``drain`` stops them gracefully."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.workers: list[Worker] = []
        self.breakers: dict[str, CircuitBreaker] = {}

    def add(self, sender: Sender, *, follow_up: FollowUp | None = None, batch: int = 8) -> None:
        policy = self.rt.config.partner(sender.partner).policy
        breaker = self.breakers.setdefault(sender.partner, CircuitBreaker(policy.breaker_failures,
                                                                          policy.breaker_open_seconds))
        for i in range(policy.concurrency):
            self.workers.append(Worker(self.rt, sender, breaker, name=f"{sender.partner}-{i}",
                                       follow_up=follow_up, batch=batch))

    def start(self) -> None:
        # Work queued for these partners is woken in this process; the store announces to other
        # processes (PostgreSQL NOTIFY) only work for partners no worker of this process serves.
        self.rt.store.served.update(w.partner for w in self.workers)
        for w in self.workers:
            w.start()

    def drain(self, deadline_seconds: float) -> None:
        """Stop claiming; let in-flight attempts finish within the deadline."""
        self.rt.store.served.difference_update(w.partner for w in self.workers)
        for w in self.workers:
            w.stopping.set()
        for bell in self.rt.wake.values():
            bell.set()
        end = time.monotonic() + deadline_seconds
        for w in self.workers:
            w.join(max(0.0, end - time.monotonic()))
