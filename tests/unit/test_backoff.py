"""The delivery back-off lies between backoff_initial_seconds and backoff_max_seconds (README)."""

from __future__ import annotations

from gateway.core.config import RetryPolicy
from gateway.delivery.outbox import backoff_seconds


def test_backoff_within_the_policys_bounds() -> None:
    policy = RetryPolicy(backoff_initial_seconds=2.0, backoff_max_seconds=60.0)
    for attempt in range(1, 20):
        draws = [backoff_seconds(policy, attempt) for _ in range(300)]
        assert min(draws) >= 2.0, (attempt, min(draws))
        assert max(draws) <= 60.0, (attempt, max(draws))
        # The ceiling grows exponentially: initial x 2^(attempt-1), capped at the maximum.
        assert max(draws) <= min(60.0, 2.0 * 2 ** (attempt - 1)) + 1e-9
    late = [backoff_seconds(policy, 12) for _ in range(300)]
    assert max(late) > 30.0  # full jitter up to the maximum, not stuck at the floor


def test_backoff_when_max_below_initial() -> None:
    policy = RetryPolicy(backoff_initial_seconds=5.0, backoff_max_seconds=1.0)
    assert all(backoff_seconds(policy, a) == 5.0 for a in range(1, 6))
