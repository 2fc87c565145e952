"""The 11-test (elfproef) for a burgerservicenummer."""

from __future__ import annotations

__all__ = ["bsn_valid"]

_WEIGHTS = (9, 8, 7, 6, 5, 4, 3, 2, -1)


def bsn_valid(bsn: str) -> bool:
    """True when ``bsn`` is nine ASCII digits, not all zeros, whose weighted sum is divisible by 11.

    The weights are 9..2 for the first eight digits and -1 for the last one.
    """
    if len(bsn) != 9 or not all("0" <= c <= "9" for c in bsn):
        return False
    if bsn == "000000000":
        return False
    total = sum(int(c) * w for c, w in zip(bsn, _WEIGHTS, strict=True))
    return total % 11 == 0
