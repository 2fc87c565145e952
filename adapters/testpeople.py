"""Test people that every simulator may use: numbers that pass the 11-test, and so on.

Not a partner: any ``adapters/<partner>/simulator.py`` may import this module (a simulator never
imports another partner's package).
"""

from __future__ import annotations

import random

__all__ = ["random_bsn"]


def random_bsn(rng: random.Random) -> str:
    """A random nine-digit number that passes the 11-test."""
    while True:
        digits = [rng.randint(1, 6)] + [rng.randint(0, 9) for _ in range(7)]
        check = sum(d * w for d, w in zip(digits, range(9, 1, -1), strict=True)) % 11
        if check < 10:
            return "".join(map(str, digits)) + str(check)
