"""The outbox workers' doorbell (gateway.runtime.Doorbell): wake on work, not polling."""

from __future__ import annotations

import threading
import time

from gateway.runtime import Doorbell


def _waiters(bell: Doorbell, n: int) -> tuple[list[str], list[threading.Thread]]:
    seen: list[str] = []
    lock = threading.Lock()

    def wait() -> None:
        what = bell.wait()
        with lock:
            seen.append(what)

    threads = [threading.Thread(target=wait, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    return seen, threads


def test_the_first_wait_looks_at_once_then_only_at_the_fallback() -> None:
    bell = Doorbell(fallback_seconds=60.0)
    assert bell.wait() == "poll"  # work may be queued from before the start
    seen, threads = _waiters(bell, 1)
    time.sleep(0.2)
    assert seen == []  # no polling: nothing rang, nothing is scheduled
    bell.set()
    threads[0].join(2)
    assert seen == ["wake"]


def test_one_ring_wakes_one_worker_of_several() -> None:
    bell = Doorbell(fallback_seconds=60.0)
    assert bell.wait() == "poll"
    seen, threads = _waiters(bell, 4)
    time.sleep(0.1)
    bell.ring()
    time.sleep(0.2)
    assert seen == ["work"]
    bell.ring(2)
    time.sleep(0.2)
    assert seen == ["work"] * 3
    bell.set()
    for t in threads:
        t.join(2)
    assert sorted(seen) == ["wake"] + ["work"] * 3


def test_rings_answered_by_one_claim_are_taken() -> None:
    bell = Doorbell(fallback_seconds=60.0)
    bell.wait()
    bell.ring(5)
    assert bell.wait() == "work"
    bell.take(3)  # that claim took 4 rows
    assert bell.wait() == "work"
    assert not bell.is_set()


def test_a_scheduled_look_wakes_one_waiter_at_that_moment() -> None:
    bell = Doorbell(fallback_seconds=60.0)
    bell.wait()
    seen, threads = _waiters(bell, 3)
    time.sleep(0.05)
    t0 = time.monotonic()
    bell.schedule(0.3)
    bell.schedule(5.0)  # later than planned: no effect
    while not seen and time.monotonic() - t0 < 3:
        time.sleep(0.01)
    assert seen == ["poll"] and 0.25 <= time.monotonic() - t0 < 1.5
    time.sleep(0.2)
    assert seen == ["poll"]  # the others wait on: the next look is a fallback away
    bell.set()
    for t in threads:
        t.join(2)


def test_the_fallback_look_comes_by_itself() -> None:
    bell = Doorbell(fallback_seconds=0.3)
    bell.wait()
    t0 = time.monotonic()
    assert bell.wait() == "poll"
    assert 0.25 <= time.monotonic() - t0 < 1.5


def test_a_reserved_waiter_gets_the_delivery_handed_to_it() -> None:
    bell = Doorbell(fallback_seconds=60.0)
    assert bell.wait() == "poll"
    assert bell.reserve() is None  # nobody waits
    seen: list[str] = []
    t = threading.Thread(target=lambda: seen.append(bell.wait("w1")), daemon=True)
    t.start()
    deadline = time.monotonic() + 2
    owner = None
    while owner is None and time.monotonic() < deadline:
        owner = bell.reserve()
        time.sleep(0.01)
    assert owner == "w1"
    assert bell.reserve() is None  # reserved once only
    time.sleep(0.1)
    assert seen == []  # waits for the hand-over
    bell.hand("w1", "delivery")
    t.join(2)
    assert seen == ["handed"] and bell.handed("w1") == "delivery" and bell.handed("w1") is None


def test_a_reserved_waiter_given_back_waits_on_and_a_ring_still_wakes_another() -> None:
    bell = Doorbell(fallback_seconds=60.0)
    assert bell.wait() == "poll"
    seen: list[str] = []
    first = threading.Thread(target=lambda: seen.append("w1:" + bell.wait("w1")), daemon=True)
    first.start()
    deadline = time.monotonic() + 2
    while bell.reserve() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    second = threading.Thread(target=lambda: seen.append("w2:" + bell.wait("w2")), daemon=True)
    second.start()
    time.sleep(0.1)
    bell.ring()  # w1 is reserved: w2 answers
    second.join(2)
    assert seen == ["w2:work"]
    bell.unreserve("w1")
    time.sleep(0.1)
    assert seen == ["w2:work"]  # w1 waits on: nothing to do
    bell.set()
    first.join(2)
    assert seen == ["w2:work", "w1:wake"]
