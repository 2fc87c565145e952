"""Structured logs and Prometheus metrics, the same keys for every partner.

Every adapter call is logged by the core with ``partner``, ``operation``, ``message_id``,
``attempt``, ``duration_ms``, ``outcome`` and ``stage``. Personal data never reaches a log line
or a metric: log events carry ids (meldingId, berichtId, vorderingId are UUIDs, not persons) and
codes, and ``_drop_personal`` removes any key that names a personal field, as a second line of
defence.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["configure_logging", "get_logger", "Metrics", "PERSONAL_KEYS", "log_store_error", "LOG_INTERVAL_SECONDS"]

PERSONAL_KEYS = frozenset({
    "bsn", "v_nummer", "vnummer", "vNummer", "naam", "geslachtsnaam", "voornamen", "voorvoegsel",
    "geboortedatum", "adres", "straat", "postcode", "woonplaats", "person", "persoon", "debiteur",
})


def _drop_personal(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if key in PERSONAL_KEYS:
            event[key] = "[masked]"
    return event


_configured = False

#: structlog's level names, as ``[log] level`` gives them.
class _Lines:
    """The end of the log pipeline: each rendered line to every stream, whole and flushed at once.

    structlog's own bound logger writes the lines itself instead of handing each event to the
    standard library's logging (a ``LogRecord``, handler locks, a formatter per handler): on the
    signed path that was 210 µs of CPU a line inside the gateway, 2.5 lines a notification.
    Logging never fails the caller: a stream that cannot be written (disk full, closed) loses
    the line, as the standard library's handlers do.
    """

    def __init__(self, streams: list[Any], opened: Any | None = None) -> None:
        self.streams = streams
        self.opened = opened  # the log file, which this writer opened and closes
        self._lock = threading.Lock()  # lines from several threads are never interleaved

    def msg(self, message: str) -> None:
        line = message + "\n"
        with self._lock:
            for stream in self.streams:
                try:
                    stream.write(line)
                    stream.flush()
                except (OSError, ValueError):
                    pass

    debug = info = warning = error = critical = msg

    def close(self) -> None:
        if self.opened is not None:
            self.opened.close()


_lines: _Lines | None = None


def configure_logging(level: str = "info", file: str | None = None, *, stderr: bool = True) -> None:
    """JSON lines to standard error and/or a file."""
    global _configured, _lines
    streams: list[Any] = [sys.stderr] if stderr or not file else []
    opened = open(file, "a", encoding="utf-8") if file else None  # noqa: SIM115 - open while the process logs
    previous, _lines = _lines, _Lines(streams + [opened] if opened else streams, opened)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _drop_personal,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        logger_factory=lambda *_: _lines,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        cache_logger_on_first_use=False,
    )
    if previous is not None:
        previous.close()
    _configured = True


def get_logger(name: str = "gateway") -> Any:
    if not _configured:
        configure_logging()
    return structlog.get_logger(name)


#: A store failure with the same cause is logged at most once per this many seconds (with a count).
LOG_INTERVAL_SECONDS = 10.0
_limited: dict[tuple[str, str], list[float]] = {}  # (event, cause) -> [last logged (monotonic), suppressed]
_limited_lock = threading.Lock()


def log_store_error(log: Any, exc: Exception, event: str = "store_unavailable", *,
                    interval: float = LOG_INTERVAL_SECONDS, **fields: Any) -> bool:
    """Log a ``StoreError`` with its cause, one line per distinct cause per ``interval``.

    The line carries ``cause`` (the driver's error class, never personal data) and ``repeated``:
    how many failures with that cause were not logged since the previous line. Returns whether
    a line was written.
    """
    cause = str(getattr(exc, "cause", None) or getattr(exc, "message", None) or type(exc).__name__)
    key = (event, cause)
    now = time.monotonic()
    with _limited_lock:
        slot = _limited.setdefault(key, [float("-inf"), 0.0])
        if now - slot[0] < interval:
            slot[1] += 1
            return False
        repeated = int(slot[1])
        slot[0], slot[1] = now, 0.0
    log.error(event, cause=cause, repeated=repeated, error=type(exc).__name__, **fields)
    return True


class Metrics:
    """The gateway's metrics, in a registry of its own (one per runtime)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.inbound = Counter("gateway_inbound_total", "Inbound messages by partner and outcome",
                               ["partner", "operation", "outcome", "code"], registry=r)
        self.attempts = Counter("gateway_delivery_attempts_total", "Delivery attempts by partner and outcome",
                                ["partner", "operation", "outcome"], registry=r)
        self.latency = Histogram("gateway_delivery_latency_seconds",
                                 "From acceptance of the inbound message to the partner's receipt",
                                 ["partner", "operation"], registry=r,
                                 buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, 1800, 3600, 14400, 86400))
        self.attempt_duration = Histogram("gateway_attempt_duration_seconds", "Duration of one delivery attempt",
                                          ["partner"], registry=r)
        self.breaker_open = Gauge("gateway_circuit_open", "1 while the partner's circuit breaker is open",
                                  ["partner"], registry=r)
        self.late = Counter("gateway_late_notifications_total",
                            "IND notifications that arrived past the delivery window", registry=r)
        self.late_days = Histogram("gateway_notification_delay_days", "Days past the delivery window",
                                   registry=r, buckets=(0, 1, 7, 30, 90, 365))
        self.alarms = Counter("gateway_alarms_total", "Alarms raised (e.g. idempotency conflicts)",
                              ["partner", "alarm"], registry=r)
        self.crl_fetches = Counter("gateway_crl_fetches_total", "CRL and OCSP fetches by source and outcome",
                                   ["kind", "url", "outcome"], registry=r)
        self.crl_ok = Gauge("gateway_crl_fetch_ok", "1 when the last fetch of this CRL succeeded, 0 when it failed",
                            ["url"], registry=r)
        self.crl_stale_in = Gauge("gateway_crl_seconds_until_stale",
                                  "Seconds until this CRL is past nextUpdate + grace (negative: stale)",
                                  ["url"], registry=r)
        self.revocation_soft_fail = Counter("gateway_revocation_soft_fail_total",
                                            "Certificates accepted with unknown revocation status (soft-fail)",
                                            ["partner"], registry=r)
        self._extra: dict[str, Any] = {}

    def extra(self, name: str, make: Callable[[CollectorRegistry], Any]) -> Any:
        """Metrics another module registers on first use, kept with this registry: a cache keyed by
        ``id(metrics)`` outside it handed a new runtime the gauges of a freed one at the same address."""
        found = self._extra.get(name)
        if found is None:
            found = self._extra[name] = make(self.registry)
        return found
