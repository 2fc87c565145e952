"""Time, injected: the real clock in the daemon, a fixed or stepped one in tests and replay."""

from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

__all__ = ["AMS", "Clock", "SystemClock", "FixedClock", "iso"]

AMS = ZoneInfo("Europe/Amsterdam")


class Clock:
    """Wall-clock time with a zone; ``monotonic`` for durations."""

    def now(self) -> dt.datetime:
        raise NotImplementedError

    def time(self) -> float:
        return self.now().timestamp()

    def monotonic(self) -> float:
        return time.monotonic()


class SystemClock(Clock):
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def time(self) -> float:
        return time.time()


class FixedClock(Clock):
    """A clock that stands still until moved; for tests and replay."""

    def __init__(self, at: dt.datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("a FixedClock needs an aware datetime")
        self._at = at

    def now(self) -> dt.datetime:
        return self._at

    def set(self, at: dt.datetime) -> None:
        self._at = at

    def advance(self, seconds: float) -> None:
        self._at += dt.timedelta(seconds=seconds)


def iso(at: dt.datetime) -> str:
    """xs:dateTime with zone, in Europe/Amsterdam, to the second (as the samples show)."""
    return at.astimezone(AMS).isoformat(timespec="seconds")
