"""The background refresher of revocation data: CRLs (cached in the store) and OCSP answers.

One per ``gateway run`` process (not a leased job: every process needs the data in its own
memory; several processes fetching the same CRL is harmless). It starts from the store's CRL
cache, so a CA that is down at start-up does not make every certificate unknown, then fetches
every distribution point when it is due: at the CRL's nextUpdate, at the latest after
``revocation.refresh_seconds``, and ``revocation.retry_seconds`` after a failed fetch. A failed
fetch keeps the last good CRL, is recorded in the store (``gateway health`` shows it), counted in
``gateway_crl_fetches_total`` and ``gateway_crl_fetch_ok`` and logged as ``crl_fetch_failed``.
OCSP answers (for certificates that name a responder) are asked every
``revocation.ocsp_interval_seconds`` and kept in memory only.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from gateway.core.errors import StoreError
from gateway.core.threads import name_this_thread
from gateway.security import revocation as rv

__all__ = ["RevocationRefresher", "TICK_SECONDS", "LONGEST_SLEEP_SECONDS"]

#: The shortest sleep between two rounds (a fetch that failed is not tried again in a loop).
TICK_SECONDS = 1.0
#: Between rounds the refresher sleeps until the next CRL or OCSP answer is due (a CRL after an
#: hour, an OCSP answer after minutes), but never longer than this; a reload that changes what is
#: watched wakes it at once (``Revocation.on_retarget``).
LONGEST_SLEEP_SECONDS = 60.0


class RevocationRefresher:
    def __init__(self, rt: Any) -> None:
        self.rt = rt
        self.revocation: rv.Revocation = rt.revocation
        self.config = rt.config.revocation
        self._ocsp_due: dict[tuple[str, int], float] = {}
        self._stop = threading.Event()
        #: Set by ``stop`` and by a reload that changes what is watched.
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def load_cached(self) -> None:
        """Start from the store's CRL cache (a cached CRL that no longer verifies is ignored)."""
        for row in self.rt.store.crl_rows():
            if row["crl"] is not None and row["fetched_at"] is not None:
                try:
                    self.revocation.put_crl(row["url"], row["crl"], row["fetched_at"])
                except ValueError:
                    continue
            if row["last_error"] and row["attempted_at"]:
                self.revocation.failed(row["url"], row["last_error"], row["attempted_at"])

    def refresh_due(self, now: float | None = None) -> int:
        """Fetch what is due; returns how many fetches were made."""
        now = time.time() if now is None else now
        made = 0
        states = {s.url: s for s in self.revocation.crl_states()}
        for url in self.revocation.watched_crls():
            if self._crl_due(states.get(url), now):
                self._fetch_crl(url, now)
                made += 1
        if self.config.ocsp_interval_seconds > 0:
            for url, cert, issuer in self.revocation.watched_ocsp():
                key = (url, cert.serial_number)
                if now >= self._ocsp_due.get(key, 0.0):
                    self._ocsp_due[key] = now + self.config.ocsp_interval_seconds
                    self._ask_ocsp(url, cert, issuer, now)
                    made += 1
        return made

    def _crl_due(self, state: rv.CrlState | None, now: float) -> bool:
        return now >= self._crl_due_at(state)

    def _crl_due_at(self, state: rv.CrlState | None) -> float:
        if state is None:
            return 0.0
        if state.error and state.attempted_at and (state.fetched_at is None or state.attempted_at > state.fetched_at):
            return state.attempted_at + self.config.retry_seconds
        if state.fetched_at is None:
            return 0.0
        next_update = state.next_update if state.next_update is not None else float("inf")
        return min(next_update, state.fetched_at + self.config.refresh_seconds)

    def seconds_to_next(self, now: float) -> float:
        """How long the refresher may sleep: until the next CRL or OCSP answer is due, within
        [``TICK_SECONDS``, ``LONGEST_SLEEP_SECONDS``]."""
        states = {s.url: s for s in self.revocation.crl_states()}
        due = [self._crl_due_at(states.get(url)) for url in self.revocation.watched_crls()]
        if self.config.ocsp_interval_seconds > 0:
            due.extend(self._ocsp_due.get((url, cert.serial_number), 0.0)
                       for url, cert, _ in self.revocation.watched_ocsp())
        soonest = min(due, default=now + LONGEST_SLEEP_SECONDS)
        return min(max(soonest - now, TICK_SECONDS), LONGEST_SLEEP_SECONDS)

    def _fetch_crl(self, url: str, now: float) -> None:
        metrics = self.rt.metrics
        try:
            data = rv.fetch_crl(url, self.config.timeout_seconds)
            state = self.revocation.put_crl(url, data, now)
        except (httpx.HTTPError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
            self.revocation.failed(url, error, now)
            self._store(lambda: self.rt.store.crl_failed(url, error, at=now))
            metrics.crl_fetches.labels("crl", url, "failed").inc()
            metrics.crl_ok.labels(url).set(0)
            self.rt.log.warning("crl_fetch_failed", url=url, error=error, stage="revocation")
            return
        self._store(lambda: self.rt.store.crl_put(url, data, fetched_at=now, next_update=state.next_update))
        metrics.crl_fetches.labels("crl", url, "ok").inc()
        metrics.crl_ok.labels(url).set(1)
        if state.next_update is not None:
            metrics.crl_stale_in.labels(url).set(state.next_update + self.config.grace_seconds - now)

    def _ask_ocsp(self, url: str, cert: Any, issuer: Any, now: float) -> None:
        try:
            status = self.revocation.put_ocsp(cert, rv.ask_ocsp(url, cert, issuer, self.config.timeout_seconds),
                                              issuer, now)
        except (httpx.HTTPError, ValueError) as exc:
            self.rt.metrics.crl_fetches.labels("ocsp", url, "failed").inc()
            self.rt.log.warning("ocsp_failed", url=url, error=type(exc).__name__, stage="revocation")
            return
        self.rt.metrics.crl_fetches.labels("ocsp", url, "ok").inc()
        if status == "revoked":
            self.rt.log.warning("certificate_revoked", url=url, serial=str(cert.serial_number), stage="revocation")

    def _store(self, write: Any) -> None:
        try:
            write()
        except StoreError as exc:  # the memory copy still works; the next success writes again
            self.rt.log.warning("crl_cache_write_failed", error=type(exc).__name__, stage="revocation")

    # -------------------------------------------------------------- the thread

    def start(self) -> None:
        self.revocation.on_retarget = self._wake.set
        self._thread = threading.Thread(target=self._run, name="revocation", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        name_this_thread()
        while not self._stop.is_set():
            sleep = TICK_SECONDS
            try:
                self.refresh_due()
                sleep = self.seconds_to_next(time.time())
            except Exception as exc:  # noqa: BLE001 - the refresher must outlive any one failure
                self.rt.log.error("revocation_refresh_failed", error=type(exc).__name__, stage="revocation")
            self._wake.wait(sleep)
            self._wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
